-- Generated from migrations/schema.sql.in by migrations/render.py (sqlite).
-- The meta-store schema, written once and rendered for each backend by render.py:
--   TEXT       UUID (Postgres) | TEXT (SQLite)              TEXT   TIMESTAMPTZ | TEXT
--   TEXT     JSONB | TEXT                                  INTEGER  BIGINT | INTEGER
-- Tables and columns follow shared/seeds/data-model.md; additions are marked "added:".
-- Closed vocabularies are CHECK constraints; databases.db_type stays open (plugins add types).

-- ───────────────────────────── inventory ─────────────────────────────

CREATE TABLE applications (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,                                   -- added: unique, referenced by config
    owner_team  TEXT,
    description TEXT,
    status      TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'ARCHIVED')),
    created_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX ux_applications_name ON applications (name);

CREATE TABLE databases (
    id             TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications (id),
    name           TEXT NOT NULL,                                -- added: unique, referenced by config
    db_type        TEXT NOT NULL,
    environment    TEXT NOT NULL CHECK (environment IN ('DEV', 'STAGING', 'PROD')),
    database_name  TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'DISABLED')),
    created_at     TEXT NOT NULL
);
CREATE UNIQUE INDEX ux_databases_app_name_env ON databases (application_id, database_name, environment);
CREATE UNIQUE INDEX ux_databases_name ON databases (name);

CREATE TABLE database_instances (
    id               TEXT PRIMARY KEY,
    database_id      TEXT NOT NULL REFERENCES databases (id) ON DELETE CASCADE,
    instance_label   TEXT NOT NULL,
    host             TEXT,
    port             INTEGER,
    db_name          TEXT,
    db_user          TEXT,
    db_password      TEXT,                                       -- ciphertext (enc:v1:…), never plaintext
    db_password_ref  TEXT,                                       -- added: ${env:…} / ${file:…} reference
    config           TEXT NOT NULL DEFAULT '{}',
    role             TEXT NOT NULL DEFAULT 'PRIMARY' CHECK (role IN ('PRIMARY', 'SECONDARY')),
    priority         INTEGER NOT NULL DEFAULT 1,
    status           TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'DISABLED')),
    valid_from       TEXT,
    valid_to         TEXT,
    last_verified_at TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE UNIQUE INDEX ux_database_instances_label ON database_instances (database_id, instance_label);
CREATE INDEX ix_database_instances_status ON database_instances (database_id, status, priority);

CREATE TABLE database_tables (
    id                   TEXT PRIMARY KEY,
    database_id          TEXT NOT NULL REFERENCES databases (id) ON DELETE CASCADE,
    schema_name          TEXT,
    table_name           TEXT NOT NULL,
    table_type           TEXT NOT NULL DEFAULT 'BASE' CHECK (table_type IN ('BASE', 'VIEW')),
    primary_key          TEXT,
    row_estimate         INTEGER,
    last_introspected_at TEXT
);
-- A table without a schema (SQLite, MySQL) must still be unique: NULL schemas compare equal here.
CREATE UNIQUE INDEX ux_database_tables_name ON database_tables (database_id, COALESCE(schema_name, ''), table_name);

CREATE TABLE table_columns (
    id               TEXT PRIMARY KEY,
    table_id         TEXT NOT NULL REFERENCES database_tables (id) ON DELETE CASCADE,
    ordinal_position INTEGER,
    column_name      TEXT NOT NULL,
    data_type        TEXT,                                       -- NULL until introspected
    is_nullable      BOOLEAN,
    default_value    TEXT,
    is_identity      BOOLEAN NOT NULL DEFAULT FALSE,
    is_primary_key   BOOLEAN NOT NULL DEFAULT FALSE,
    is_unique        BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE UNIQUE INDEX ux_table_columns_name ON table_columns (table_id, column_name);

CREATE TABLE table_constraints (
    id               TEXT PRIMARY KEY,
    table_id         TEXT NOT NULL REFERENCES database_tables (id) ON DELETE CASCADE,
    constraint_name  TEXT NOT NULL,
    constraint_type  TEXT NOT NULL CHECK (constraint_type IN ('PRIMARY_KEY', 'FOREIGN_KEY', 'UNIQUE', 'CHECK')),
    columns          TEXT NOT NULL DEFAULT '[]',
    referenced_table TEXT,
    definition       TEXT
);
CREATE INDEX ix_table_constraints_type ON table_constraints (table_id, constraint_type);
CREATE UNIQUE INDEX ux_table_constraints_name ON table_constraints (table_id, constraint_name);

CREATE TABLE table_indexes (
    id           TEXT PRIMARY KEY,
    table_id     TEXT NOT NULL REFERENCES database_tables (id) ON DELETE CASCADE,
    index_name   TEXT NOT NULL,
    is_unique    BOOLEAN NOT NULL DEFAULT FALSE,
    index_method TEXT,
    columns      TEXT NOT NULL DEFAULT '[]',
    definition   TEXT
);
CREATE INDEX ix_table_indexes_unique ON table_indexes (table_id, is_unique);
CREATE UNIQUE INDEX ux_table_indexes_name ON table_indexes (table_id, index_name);

CREATE TABLE source_table_metrics (
    id                   TEXT PRIMARY KEY,
    table_id             TEXT NOT NULL REFERENCES database_tables (id) ON DELETE CASCADE,
    database_instance_id TEXT NOT NULL REFERENCES database_instances (id) ON DELETE CASCADE,
    captured_at          TEXT NOT NULL,
    row_count            INTEGER,
    max_updated_at       TEXT
);
CREATE INDEX ix_source_table_metrics ON source_table_metrics (table_id, database_instance_id, captured_at);

CREATE TABLE introspection_runs (
    id                   TEXT PRIMARY KEY,
    database_instance_id TEXT NOT NULL REFERENCES database_instances (id) ON DELETE CASCADE,
    started_at           TEXT NOT NULL,
    ended_at             TEXT,
    status               TEXT NOT NULL CHECK (status IN ('RUNNING', 'SUCCESS', 'FAILED')),
    stats                TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX ix_introspection_runs_instance ON introspection_runs (database_instance_id, started_at);

CREATE TABLE schema_snapshots (
    id                   TEXT PRIMARY KEY,
    table_id             TEXT NOT NULL REFERENCES database_tables (id) ON DELETE CASCADE,
    database_instance_id TEXT REFERENCES database_instances (id) ON DELETE CASCADE,
    captured_at          TEXT NOT NULL,
    columns              TEXT NOT NULL,
    constraints          TEXT NOT NULL,
    indexes              TEXT NOT NULL
);
CREATE INDEX ix_schema_snapshots_table ON schema_snapshots (table_id, captured_at);

-- ───────────────────────────── SharePoint ─────────────────────────────

CREATE TABLE sharepoint_connections (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,                              -- added: unique, referenced by config
    tenant_id         TEXT NOT NULL,
    client_id         TEXT NOT NULL,
    client_secret     TEXT,                                       -- ciphertext (enc:v1:…), never plaintext
    client_secret_ref TEXT,                                       -- added: ${env:…} / ${file:…} reference
    authority_host    TEXT NOT NULL DEFAULT 'https://login.microsoftonline.com',
    graph_base_url    TEXT NOT NULL DEFAULT 'https://graph.microsoft.com/v1.0',  -- added: emulator or sovereign clouds
    scopes            TEXT NOT NULL DEFAULT '["https://graph.microsoft.com/.default"]',
    status            TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'DISABLED')),
    last_verified_at  TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE UNIQUE INDEX ux_sharepoint_connections_app ON sharepoint_connections (tenant_id, client_id);
CREATE UNIQUE INDEX ux_sharepoint_connections_name ON sharepoint_connections (name);

CREATE TABLE sharepoint_sites (
    id            TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES sharepoint_connections (id) ON DELETE CASCADE,
    tenant_id     TEXT NOT NULL,
    hostname      TEXT NOT NULL,
    site_path     TEXT NOT NULL,
    site_id       TEXT,                                           -- Graph's composite id, once resolved
    web_url       TEXT,
    status        TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'DISABLED'))
);
CREATE UNIQUE INDEX ux_sharepoint_sites_path ON sharepoint_sites (connection_id, hostname, site_path);

CREATE TABLE sharepoint_lists (
    id                  TEXT PRIMARY KEY,
    site_id             TEXT NOT NULL REFERENCES sharepoint_sites (id) ON DELETE CASCADE,
    list_id             TEXT,                                     -- the list GUID, once provisioned or discovered
    display_name        TEXT NOT NULL,
    description         TEXT,
    template            TEXT,
    is_provisioned      BOOLEAN NOT NULL DEFAULT FALSE,
    last_provisioned_at TEXT
);
CREATE UNIQUE INDEX ux_sharepoint_lists_list ON sharepoint_lists (site_id, list_id);
CREATE UNIQUE INDEX ux_sharepoint_lists_name ON sharepoint_lists (site_id, display_name);

CREATE TABLE sharepoint_columns (
    id           TEXT PRIMARY KEY,
    list_id      TEXT NOT NULL REFERENCES sharepoint_lists (id) ON DELETE CASCADE,
    column_name  TEXT NOT NULL,
    display_name TEXT,                                            -- added: internal vs display name
    column_type  TEXT,
    is_required  BOOLEAN NOT NULL DEFAULT FALSE,
    is_readonly  BOOLEAN NOT NULL DEFAULT FALSE,
    is_indexed   BOOLEAN NOT NULL DEFAULT FALSE,                  -- added
    is_hidden    BOOLEAN NOT NULL DEFAULT FALSE                   -- added
);
CREATE UNIQUE INDEX ux_sharepoint_columns_name ON sharepoint_columns (list_id, column_name);

CREATE TABLE target_list_metrics (
    id               TEXT PRIMARY KEY,
    target_list_id   TEXT NOT NULL REFERENCES sharepoint_lists (id) ON DELETE CASCADE,
    captured_at      TEXT NOT NULL,
    item_count       INTEGER,
    last_modified_at TEXT
);
CREATE INDEX ix_target_list_metrics ON target_list_metrics (target_list_id, captured_at);

-- ───────────────────────────── sync configuration ─────────────────────────────

CREATE TABLE sync_definitions (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,                           -- added: unique, `syncbridge run NAME`
    source_table_id     TEXT NOT NULL REFERENCES database_tables (id),
    target_list_id      TEXT REFERENCES sharepoint_lists (id) ON DELETE SET NULL,
    sync_mode           TEXT NOT NULL CHECK (sync_mode IN ('ONE_WAY_PUSH', 'TWO_WAY', 'ARCHIVE_ONLY')),
    conflict_policy     TEXT NOT NULL DEFAULT 'SOURCE_WINS' CHECK (conflict_policy IN ('SOURCE_WINS', 'DESTINATION_WINS', 'LATEST_WINS')),
    key_strategy        TEXT NOT NULL CHECK (key_strategy IN ('PRIMARY_KEY', 'UNIQUE_CONSTRAINT', 'COMPOSITE_COLUMNS', 'HASHED')),
    key_constraint_name TEXT,
    target_strategy     TEXT NOT NULL DEFAULT 'SINGLE' CHECK (target_strategy IN ('SINGLE', 'CONDITIONAL')),
    cursor_strategy     TEXT NOT NULL CHECK (cursor_strategy IN ('UPDATED_AT', 'LSN', 'FULL_SCAN')),
    cursor_column_id    TEXT REFERENCES table_columns (id) ON DELETE SET NULL,
    cursor_options      TEXT NOT NULL DEFAULT '{}',             -- added: look-back window, LSN options
    sharding_policy     TEXT,
    schedule_cron       TEXT,
    background_window   TEXT,                                   -- added: daily window and row budget
    is_enabled          BOOLEAN NOT NULL DEFAULT TRUE,
    created_at          TEXT NOT NULL,                             -- added
    updated_at          TEXT NOT NULL                              -- added
);
CREATE UNIQUE INDEX ux_sync_definitions_name ON sync_definitions (name);

CREATE TABLE sync_targets (
    id             TEXT PRIMARY KEY,
    sync_def_id    TEXT NOT NULL REFERENCES sync_definitions (id) ON DELETE CASCADE,
    target_list_id TEXT NOT NULL REFERENCES sharepoint_lists (id) ON DELETE CASCADE,
    connection_id  TEXT NOT NULL REFERENCES sharepoint_connections (id) ON DELETE CASCADE,
    site_id        TEXT NOT NULL REFERENCES sharepoint_sites (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,                                -- added: what sharding predicates route to
    is_default     BOOLEAN NOT NULL DEFAULT FALSE,
    priority       INTEGER NOT NULL DEFAULT 1,
    status         TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'DISABLED')),
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE UNIQUE INDEX ux_sync_targets_list ON sync_targets (sync_def_id, target_list_id);
CREATE UNIQUE INDEX ux_sync_targets_name ON sync_targets (sync_def_id, name);

CREATE TABLE sync_sources (
    id                   TEXT PRIMARY KEY,
    sync_def_id          TEXT NOT NULL REFERENCES sync_definitions (id) ON DELETE CASCADE,
    database_instance_id TEXT NOT NULL REFERENCES database_instances (id) ON DELETE CASCADE,
    role                 TEXT NOT NULL DEFAULT 'PRIMARY' CHECK (role IN ('PRIMARY', 'SECONDARY')),
    priority             INTEGER NOT NULL DEFAULT 1,
    is_enabled           BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE UNIQUE INDEX ux_sync_sources_instance ON sync_sources (sync_def_id, database_instance_id);

CREATE TABLE sync_key_columns (
    id               TEXT PRIMARY KEY,
    sync_def_id      TEXT NOT NULL REFERENCES sync_definitions (id) ON DELETE CASCADE,
    column_id        TEXT NOT NULL REFERENCES table_columns (id) ON DELETE CASCADE,
    ordinal_position INTEGER NOT NULL,
    is_required      BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE UNIQUE INDEX ux_sync_key_columns ON sync_key_columns (sync_def_id, column_id);

CREATE TABLE field_mappings (
    id                 TEXT PRIMARY KEY,
    sync_def_id        TEXT NOT NULL REFERENCES sync_definitions (id) ON DELETE CASCADE,
    source_column_id   TEXT NOT NULL REFERENCES table_columns (id) ON DELETE CASCADE,
    source_column_name TEXT NOT NULL,
    target_column_id   TEXT REFERENCES sharepoint_columns (id) ON DELETE SET NULL,
    target_column_name TEXT NOT NULL,
    target_type        TEXT,
    sync_direction     TEXT NOT NULL DEFAULT 'PUSH_ONLY' CHECK (sync_direction IN ('BIDIRECTIONAL', 'PUSH_ONLY', 'PULL_ONLY')),
    is_system_field    BOOLEAN NOT NULL DEFAULT FALSE,
    transform_rule     TEXT,
    is_key             BOOLEAN NOT NULL DEFAULT FALSE,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
CREATE UNIQUE INDEX ux_field_mappings_source ON field_mappings (sync_def_id, source_column_id);

-- Multi-day first syncs (shared/seeds/bridge-dlq-and-windows.md): progress through a window.
CREATE TABLE background_sync_schedules (
    id                TEXT PRIMARY KEY,
    sync_def_id       TEXT NOT NULL REFERENCES sync_definitions (id) ON DELETE CASCADE,
    is_enabled        BOOLEAN NOT NULL DEFAULT TRUE,
    sync_window_start TEXT NOT NULL,                             -- HH:MM
    sync_window_end   TEXT NOT NULL,                             -- HH:MM; earlier than start spans midnight
    days_to_complete  INTEGER,
    rows_per_day      INTEGER,
    daily_row_budget  INTEGER,
    rows_today        INTEGER NOT NULL DEFAULT 0,
    current_offset    INTEGER NOT NULL DEFAULT 0,
    next_run_at       TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE UNIQUE INDEX ux_background_sync_schedules ON background_sync_schedules (sync_def_id);

-- ───────────────────────────── runtime ─────────────────────────────

CREATE TABLE sync_runs (
    id              TEXT PRIMARY KEY,
    sync_def_id     TEXT NOT NULL REFERENCES sync_definitions (id) ON DELETE CASCADE,
    run_type        TEXT NOT NULL DEFAULT 'PUSH' CHECK (run_type IN ('PUSH', 'INGRESS', 'CDC')),
    status          TEXT NOT NULL CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED')),
    start_time      TEXT NOT NULL,
    end_time        TEXT,
    items_processed INTEGER NOT NULL DEFAULT 0,
    items_failed    INTEGER NOT NULL DEFAULT 0,
    items_created   INTEGER NOT NULL DEFAULT 0,                     -- added: per-outcome counters
    items_updated   INTEGER NOT NULL DEFAULT 0,
    items_moved     INTEGER NOT NULL DEFAULT 0,
    items_deleted   INTEGER NOT NULL DEFAULT 0,
    items_unchanged INTEGER NOT NULL DEFAULT 0,
    error_message   TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX ix_sync_runs_def ON sync_runs (sync_def_id, start_time);

CREATE TABLE sync_events (
    id          TEXT PRIMARY KEY,
    sync_run_id TEXT NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    severity    TEXT NOT NULL CHECK (severity IN ('INFO', 'WARN', 'ERROR')),
    event_type  TEXT NOT NULL,
    message     TEXT NOT NULL,
    payload     TEXT,
    created_at  TEXT NOT NULL                                     -- added
);
CREATE INDEX ix_sync_events_run ON sync_events (sync_run_id, created_at);

CREATE TABLE sync_ledger (
    id                   TEXT PRIMARY KEY,
    sync_def_id          TEXT NOT NULL REFERENCES sync_definitions (id) ON DELETE CASCADE,
    source_identity      TEXT NOT NULL,
    source_identity_hash TEXT NOT NULL,
    source_key_strategy  TEXT NOT NULL CHECK (source_key_strategy IN ('PRIMARY_KEY', 'UNIQUE_CONSTRAINT', 'COMPOSITE_COLUMNS', 'HASHED')),
    source_instance_id   TEXT REFERENCES database_instances (id) ON DELETE SET NULL,
    sp_list_id           TEXT,
    sp_item_id           INTEGER,
    content_hash         TEXT,
    last_source_ts       TEXT,
    last_sync_ts         TEXT,
    provenance           TEXT NOT NULL DEFAULT 'PUSH' CHECK (provenance IN ('PUSH', 'PULL')),
    -- added: the idempotency protocol's state machine (DESIGN.md §4)
    sync_state           TEXT NOT NULL DEFAULT 'SYNCED' CHECK (sync_state IN ('PENDING_CREATE', 'SYNCED', 'PENDING_MOVE', 'PENDING_DELETE')),
    pending_list_id      TEXT,                                   -- added: the list a pending create or move goes to
    sync_target_id       TEXT REFERENCES sync_targets (id) ON DELETE SET NULL,
    last_run_id          TEXT REFERENCES sync_runs (id) ON DELETE SET NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE UNIQUE INDEX ux_sync_ledger_identity ON sync_ledger (sync_def_id, source_identity_hash);
CREATE INDEX ix_sync_ledger_state ON sync_ledger (sync_def_id, sync_state);

CREATE TABLE sync_cursors (
    id                 TEXT PRIMARY KEY,
    sync_def_id        TEXT NOT NULL REFERENCES sync_definitions (id) ON DELETE CASCADE,
    cursor_scope       TEXT NOT NULL CHECK (cursor_scope IN ('SOURCE', 'TARGET')),
    cursor_type        TEXT NOT NULL CHECK (cursor_type IN ('TIMESTAMP', 'LSN', 'DELTA_LINK', 'KEYSET')),
    cursor_value       TEXT NOT NULL,
    source_instance_id TEXT REFERENCES database_instances (id) ON DELETE CASCADE,
    target_list_id     TEXT REFERENCES sharepoint_lists (id) ON DELETE CASCADE,
    last_run_id        TEXT REFERENCES sync_runs (id) ON DELETE SET NULL,
    updated_at         TEXT NOT NULL,
    created_at         TEXT NOT NULL
);
-- NULL scopes compare equal, so there is one cursor per (definition, scope, instance, list).
CREATE UNIQUE INDEX ux_sync_cursors_scope ON sync_cursors (sync_def_id, cursor_scope, COALESCE(source_instance_id, ''), COALESCE(target_list_id, ''));

CREATE TABLE sync_metrics (
    id                 TEXT PRIMARY KEY,
    sync_def_id        TEXT NOT NULL REFERENCES sync_definitions (id) ON DELETE CASCADE,
    source_instance_id TEXT REFERENCES database_instances (id) ON DELETE CASCADE,
    target_list_id     TEXT REFERENCES sharepoint_lists (id) ON DELETE CASCADE,
    last_sync_ts       TEXT,
    total_rows_synced  INTEGER NOT NULL DEFAULT 0,
    last_run_id        TEXT REFERENCES sync_runs (id) ON DELETE SET NULL,
    last_reconcile_at  TEXT,
    source_row_count   INTEGER,
    target_row_count   INTEGER,
    reconcile_delta    INTEGER,
    reconcile_status   TEXT NOT NULL DEFAULT 'UNKNOWN' CHECK (reconcile_status IN ('MATCH', 'MISMATCH', 'UNKNOWN'))
);
CREATE UNIQUE INDEX ux_sync_metrics_scope ON sync_metrics (sync_def_id, source_instance_id, target_list_id);

-- Dead-letter queue (shared/seeds/bridge-dlq-and-windows.md): one row per failed source row.
CREATE TABLE failed_records (
    id                   TEXT PRIMARY KEY,
    sync_def_id          TEXT NOT NULL REFERENCES sync_definitions (id) ON DELETE CASCADE,
    sync_run_id          TEXT REFERENCES sync_runs (id) ON DELETE SET NULL,
    source_identity      TEXT,
    source_identity_hash TEXT,
    target_list_id       TEXT,
    stage_failed         TEXT NOT NULL CHECK (stage_failed IN ('READ', 'IDENTITY', 'TRANSFORM', 'ROUTE', 'ENCODE', 'WRITE')),
    error_code           TEXT,
    error_message        TEXT NOT NULL,
    raw_data             TEXT,
    normalized_data      TEXT,
    retry_count          INTEGER NOT NULL DEFAULT 0,
    max_retries          INTEGER NOT NULL DEFAULT 5,
    next_retry_at        TEXT,
    resolved_at          TEXT,
    discarded_at         TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE INDEX ix_failed_records_retry ON failed_records (sync_def_id, next_retry_at) WHERE resolved_at IS NULL AND discarded_at IS NULL;
CREATE INDEX ix_failed_records_identity ON failed_records (sync_def_id, source_identity_hash);
CREATE INDEX ix_failed_records_run ON failed_records (sync_run_id);

-- Children waiting for their parent item (a lookup column fed by a foreign key).
CREATE TABLE pending_children (
    id                   TEXT PRIMARY KEY,
    sync_def_id          TEXT NOT NULL REFERENCES sync_definitions (id) ON DELETE CASCADE,
    sync_run_id          TEXT REFERENCES sync_runs (id) ON DELETE SET NULL,
    child_identity_hash  TEXT NOT NULL,
    parent_sync_def_id   TEXT REFERENCES sync_definitions (id) ON DELETE CASCADE,
    parent_identity_hash TEXT NOT NULL,
    child_payload        TEXT NOT NULL,
    retry_count          INTEGER NOT NULL DEFAULT 0,
    max_retries          INTEGER NOT NULL DEFAULT 10,
    next_retry_at        TEXT,
    created_at           TEXT NOT NULL
);
CREATE INDEX ix_pending_children_parent ON pending_children (parent_sync_def_id, parent_identity_hash);
CREATE UNIQUE INDEX ux_pending_children_child ON pending_children (sync_def_id, child_identity_hash);

-- Every configuration change, with what it was before and after (secrets never recorded).
CREATE TABLE audit_log (
    id         TEXT PRIMARY KEY,
    entity     TEXT NOT NULL,
    entity_id  TEXT,
    action     TEXT NOT NULL CHECK (action IN ('CREATE', 'UPDATE', 'DELETE')),
    before     TEXT,
    after      TEXT,
    actor      TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX ix_audit_log_entity ON audit_log (entity, entity_id, created_at);
