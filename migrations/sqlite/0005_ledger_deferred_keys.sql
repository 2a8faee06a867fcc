-- The ledger's foreign keys are checked when a transaction commits instead of after every
-- statement. Why: SQLite keeps a statement journal (a copy of every page a statement changes,
-- so that statement alone can be undone) for any multi-row statement that may fail midway, and
-- an immediate foreign key makes every insert one. A run records its outcomes in transactions
-- of thousands of rows, each of which touches pages all over the identity index; the journal
-- was the largest single cost of recording them (`benches/push.rs`, BENCHMARKS.md). A violation
-- still fails the transaction, at its commit. Actions (`ON DELETE …`) still run at once.
--
-- SQLite cannot change a constraint in place: the table is copied into a new one.
CREATE TABLE sync_ledger_new (
    id                   TEXT PRIMARY KEY,
    sync_def_id          TEXT NOT NULL REFERENCES sync_definitions (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    source_identity      TEXT NOT NULL,
    source_identity_hash TEXT NOT NULL,
    source_key_strategy  TEXT NOT NULL CHECK (source_key_strategy IN ('PRIMARY_KEY', 'UNIQUE_CONSTRAINT', 'COMPOSITE_COLUMNS', 'HASHED')),
    source_instance_id   TEXT REFERENCES database_instances (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,
    sp_list_id           TEXT,
    sp_item_id           INTEGER,
    content_hash         TEXT,
    last_source_ts       TEXT,
    last_sync_ts         TEXT,
    provenance           TEXT NOT NULL DEFAULT 'PUSH' CHECK (provenance IN ('PUSH', 'PULL')),
    -- added: the idempotency protocol's state machine (DESIGN.md §4)
    sync_state           TEXT NOT NULL DEFAULT 'SYNCED' CHECK (sync_state IN ('PENDING_CREATE', 'SYNCED', 'PENDING_MOVE', 'PENDING_DELETE')),
    pending_list_id      TEXT,                                   -- added: the list a pending create or move goes to
    sync_target_id       TEXT REFERENCES sync_targets (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,
    last_run_id          TEXT REFERENCES sync_runs (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
INSERT INTO sync_ledger_new (id, sync_def_id, source_identity, source_identity_hash, source_key_strategy,
        source_instance_id, sp_list_id, sp_item_id, content_hash, last_source_ts, last_sync_ts, provenance,
        sync_state, pending_list_id, sync_target_id, last_run_id, created_at, updated_at)
    SELECT id, sync_def_id, source_identity, source_identity_hash, source_key_strategy,
        source_instance_id, sp_list_id, sp_item_id, content_hash, last_source_ts, last_sync_ts, provenance,
        sync_state, pending_list_id, sync_target_id, last_run_id, created_at, updated_at
    FROM sync_ledger;
DROP TABLE sync_ledger;
ALTER TABLE sync_ledger_new RENAME TO sync_ledger;
CREATE UNIQUE INDEX ux_sync_ledger_identity ON sync_ledger (sync_def_id, source_identity_hash);
CREATE INDEX ix_sync_ledger_state ON sync_ledger (sync_def_id, sync_state);
