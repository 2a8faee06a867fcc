-- Intents to create items (DESIGN.md §4, step 2), one row per list's share of a batch: the
-- identities a run is about to create in a list, recorded before the creates are sent and
-- deleted in the transaction that records their outcomes in the ledger. A row per batch instead
-- of a `PENDING_CREATE` ledger row per item, so each new ledger row is written once.
CREATE TABLE sync_create_intents (
    id             UUID PRIMARY KEY,
    sync_def_id    UUID NOT NULL REFERENCES sync_definitions (id) ON DELETE CASCADE,
    sp_list_id     TEXT NOT NULL,
    sync_target_id UUID REFERENCES sync_targets (id) ON DELETE SET NULL,
    run_id         UUID REFERENCES sync_runs (id) ON DELETE SET NULL,
    identities     TEXT NOT NULL,   -- JSON array of [source_identity, source_identity_hash]
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX ix_sync_create_intents_def ON sync_create_intents (sync_def_id);
