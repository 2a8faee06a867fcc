-- A compact copy of each definition's ledger for full reads (identity, list, content), saved
-- when a full read loads it and dropped by every ledger write: `generation` counts the writes,
-- so a copy is saved only if no write came between reading the ledger and saving it.
CREATE TABLE sync_ledger_digests (
    sync_def_id TEXT PRIMARY KEY REFERENCES sync_definitions (id) ON DELETE CASCADE,
    generation  INTEGER NOT NULL DEFAULT 0,
    lists       TEXT,   -- JSON array of the list ids the entries' list numbers refer to
    entries     BLOB,   -- NULL once a ledger write made the copy stale
    saved_at    TEXT
);
