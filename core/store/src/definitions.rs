//! Typed access to the declarative configuration tables (written by `syncbridge apply`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Store, StoreError, with_pool};

/// How much is configured, for `syncbridge status`.
#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow)]
pub struct InventoryCounts {
    pub applications: i64,
    pub databases: i64,
    pub database_instances: i64,
    pub sharepoint_connections: i64,
    pub sharepoint_sites: i64,
    pub sharepoint_lists: i64,
    pub provisioned_lists: i64,
    pub sync_definitions: i64,
    pub ledger_items: i64,
    pub open_failures: i64,
}

/// Counts every configured object.
pub async fn inventory_counts(store: &Store) -> Result<InventoryCounts, StoreError> {
    const SQL: &str = "SELECT
        (SELECT count(*) FROM applications) AS applications,
        (SELECT count(*) FROM databases) AS databases,
        (SELECT count(*) FROM database_instances) AS database_instances,
        (SELECT count(*) FROM sharepoint_connections) AS sharepoint_connections,
        (SELECT count(*) FROM sharepoint_sites) AS sharepoint_sites,
        (SELECT count(*) FROM sharepoint_lists) AS sharepoint_lists,
        (SELECT count(*) FROM sharepoint_lists WHERE is_provisioned) AS provisioned_lists,
        (SELECT count(*) FROM sync_definitions) AS sync_definitions,
        (SELECT count(*) FROM sync_ledger) AS ledger_items,
        (SELECT count(*) FROM failed_records WHERE resolved_at IS NULL AND discarded_at IS NULL) AS open_failures";
    with_pool!(store, pool => sqlx::query_as::<_, InventoryCounts>(SQL).fetch_one(pool).await)
        .map_err(StoreError::query("counting the configuration"))
}

/// One sync definition with its last run, for `syncbridge status`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SyncSummary {
    pub name: String,
    pub sync_mode: String,
    pub key_strategy: String,
    pub cursor_strategy: String,
    pub target_strategy: String,
    pub is_enabled: bool,
    pub targets: i64,
    pub last_run_status: Option<String>,
    pub last_run_start: Option<DateTime<Utc>>,
    pub last_run_end: Option<DateTime<Utc>>,
    pub last_run_processed: Option<i64>,
    pub last_run_failed: Option<i64>,
}

/// Every definition, by name, with its newest run.
pub async fn sync_summaries(store: &Store) -> Result<Vec<SyncSummary>, StoreError> {
    const SQL: &str = "SELECT d.name, d.sync_mode, d.key_strategy, d.cursor_strategy, d.target_strategy,
            d.is_enabled,
            (SELECT count(*) FROM sync_targets t WHERE t.sync_def_id = d.id) AS targets,
            r.status AS last_run_status, r.start_time AS last_run_start, r.end_time AS last_run_end,
            r.items_processed AS last_run_processed, r.items_failed AS last_run_failed
        FROM sync_definitions d
        LEFT JOIN sync_runs r ON r.id = (
            SELECT r2.id FROM sync_runs r2 WHERE r2.sync_def_id = d.id ORDER BY r2.start_time DESC LIMIT 1)
        ORDER BY d.name";
    with_pool!(store, pool => sqlx::query_as::<_, SyncSummary>(SQL).fetch_all(pool).await)
        .map_err(StoreError::query("listing sync definitions"))
}

/// A sync definition with everything a run needs, joined from the configuration tables.
#[derive(Debug, Clone)]
pub struct RunDefinition {
    pub id: crate::Id,
    pub name: String,
    pub sync_mode: String,
    pub key_strategy: String,
    pub key_constraint_name: Option<String>,
    pub target_strategy: String,
    pub cursor_strategy: String,
    pub cursor_column: Option<String>,
    pub cursor_options: serde_json::Value,
    pub sharding_policy: Option<serde_json::Value>,
    pub is_enabled: bool,
    pub db_type: String,
    pub database_name: String,
    pub schema_name: Option<String>,
    pub table_name: String,
    /// The `database_tables` row of the source table.
    pub table_id: crate::Id,
    /// The key columns in key order: `sync_key_columns`, else the introspected primary key.
    pub key_columns: Vec<String>,
    pub mappings: Vec<MappingRow>,
    pub targets: Vec<TargetRow>,
    pub sources: Vec<SourceRow>,
}

/// One field mapping.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MappingRow {
    pub source_column_name: String,
    pub target_column_name: String,
    pub target_type: Option<String>,
    pub sync_direction: String,
    pub is_system_field: bool,
    pub transform_rule: Option<String>,
    pub is_key: bool,
}

/// One target list with its connection. The secret columns hold ciphertext or a reference.
#[derive(Clone, sqlx::FromRow)]
pub struct TargetRow {
    pub sync_target_id: crate::Id,
    pub name: String,
    pub is_default: bool,
    pub priority: i64,
    pub list_row_id: crate::Id,
    pub list_id: Option<String>,
    pub list_name: String,
    pub list_description: Option<String>,
    pub site_row_id: crate::Id,
    pub hostname: String,
    pub site_path: String,
    pub connection_id: crate::Id,
    pub connection_name: String,
    /// The target connector (`sharepoint`, or a plugin's target kind).
    pub connector: String,
    /// A plugin target's settings.
    pub options: Option<sqlx::types::Json<serde_json::Value>>,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub client_secret_ref: Option<String>,
    pub authority_host: String,
    pub graph_base_url: String,
    pub scopes: sqlx::types::Json<Vec<String>>,
}

impl std::fmt::Debug for TargetRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetRow")
            .field("name", &self.name)
            .field("list_name", &self.list_name)
            .field("connection_name", &self.connection_name)
            .finish_non_exhaustive()
    }
}

/// One source instance bound to the definition. The password columns hold ciphertext or a
/// reference.
#[derive(Clone, sqlx::FromRow)]
pub struct SourceRow {
    pub instance_id: crate::Id,
    pub instance_label: String,
    pub role: String,
    pub priority: i64,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub db_name: Option<String>,
    pub db_user: Option<String>,
    pub db_password: Option<String>,
    pub db_password_ref: Option<String>,
    pub config: sqlx::types::Json<serde_json::Value>,
}

impl std::fmt::Debug for SourceRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceRow")
            .field("instance_label", &self.instance_label)
            .field("role", &self.role)
            .field("priority", &self.priority)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
struct DefinitionHead {
    id: crate::Id,
    name: String,
    sync_mode: String,
    key_strategy: String,
    key_constraint_name: Option<String>,
    target_strategy: String,
    cursor_strategy: String,
    cursor_column: Option<String>,
    cursor_options: sqlx::types::Json<serde_json::Value>,
    sharding_policy: Option<sqlx::types::Json<serde_json::Value>>,
    is_enabled: bool,
    db_type: String,
    database_name: String,
    schema_name: Option<String>,
    table_name: String,
    table_id: crate::Id,
}

/// Loads a definition by name; `Ok(None)` when no definition has that name.
pub async fn load_run_definition(
    store: &Store,
    name: &str,
) -> Result<Option<RunDefinition>, StoreError> {
    let head = with_pool!(store, pool => sqlx::query_as::<_, DefinitionHead>(
        "SELECT d.id, d.name, d.sync_mode, d.key_strategy, d.key_constraint_name, d.target_strategy,
                d.cursor_strategy, c.column_name AS cursor_column, d.cursor_options, d.sharding_policy,
                d.is_enabled, db.db_type, db.database_name, t.schema_name, t.table_name, t.id AS table_id
         FROM sync_definitions d
         JOIN database_tables t ON t.id = d.source_table_id
         JOIN databases db ON db.id = t.database_id
         LEFT JOIN table_columns c ON c.id = d.cursor_column_id
         WHERE d.name = $1")
        .bind(name).fetch_optional(pool).await)
    .map_err(StoreError::query("loading a sync definition"))?;
    let Some(head) = head else { return Ok(None) };

    let mut key_columns: Vec<String> = with_pool!(store, pool => sqlx::query_scalar(
        "SELECT c.column_name FROM sync_key_columns k JOIN table_columns c ON c.id = k.column_id
         WHERE k.sync_def_id = $1 ORDER BY k.ordinal_position")
        .bind(head.id).fetch_all(pool).await)
    .map_err(StoreError::query("loading key columns"))?;
    if key_columns.is_empty() {
        key_columns = with_pool!(store, pool => sqlx::query_scalar(
            "SELECT column_name FROM table_columns WHERE table_id = $1 AND is_primary_key ORDER BY ordinal_position")
            .bind(head.table_id).fetch_all(pool).await)
        .map_err(StoreError::query("loading the primary key"))?;
    }
    let mappings = with_pool!(store, pool => sqlx::query_as::<_, MappingRow>(
        "SELECT source_column_name, target_column_name, target_type, sync_direction, is_system_field,
                transform_rule, is_key
         FROM field_mappings WHERE sync_def_id = $1 ORDER BY created_at, source_column_name")
        .bind(head.id).fetch_all(pool).await)
    .map_err(StoreError::query("loading mappings"))?;
    let targets = with_pool!(store, pool => sqlx::query_as::<_, TargetRow>(
        "SELECT st.id AS sync_target_id, st.name, st.is_default, st.priority,
                l.id AS list_row_id, l.list_id, l.display_name AS list_name, l.description AS list_description,
                s.id AS site_row_id, s.hostname, s.site_path,
                c.id AS connection_id, c.name AS connection_name, c.connector, c.options, c.tenant_id, c.client_id, c.client_secret,
                c.client_secret_ref, c.authority_host, c.graph_base_url, c.scopes
         FROM sync_targets st
         JOIN sharepoint_lists l ON l.id = st.target_list_id
         JOIN sharepoint_sites s ON s.id = st.site_id
         JOIN sharepoint_connections c ON c.id = st.connection_id
         WHERE st.sync_def_id = $1 AND st.status = 'ACTIVE'
         ORDER BY st.priority")
        .bind(head.id).fetch_all(pool).await)
    .map_err(StoreError::query("loading targets"))?;
    let sources = with_pool!(store, pool => sqlx::query_as::<_, SourceRow>(
        "SELECT i.id AS instance_id, i.instance_label, ss.role, ss.priority, i.host, i.port, i.db_name,
                i.db_user, i.db_password, i.db_password_ref, i.config
         FROM sync_sources ss JOIN database_instances i ON i.id = ss.database_instance_id
         WHERE ss.sync_def_id = $1 AND ss.is_enabled AND i.status = 'ACTIVE'
         ORDER BY CASE ss.role WHEN 'PRIMARY' THEN 0 ELSE 1 END, ss.priority")
        .bind(head.id).fetch_all(pool).await)
    .map_err(StoreError::query("loading source instances"))?;

    Ok(Some(RunDefinition {
        id: head.id,
        name: head.name,
        sync_mode: head.sync_mode,
        key_strategy: head.key_strategy,
        key_constraint_name: head.key_constraint_name,
        target_strategy: head.target_strategy,
        cursor_strategy: head.cursor_strategy,
        cursor_column: head.cursor_column,
        cursor_options: head.cursor_options.0,
        sharding_policy: head.sharding_policy.map(|p| p.0),
        is_enabled: head.is_enabled,
        db_type: head.db_type,
        database_name: head.database_name,
        schema_name: head.schema_name,
        table_name: head.table_name,
        table_id: head.table_id,
        key_columns,
        mappings,
        targets,
        sources,
    }))
}

/// The names of every definition, for "unknown sync" messages.
pub async fn sync_names(store: &Store) -> Result<Vec<String>, StoreError> {
    with_pool!(store, pool => sqlx::query_scalar("SELECT name FROM sync_definitions ORDER BY name").fetch_all(pool).await)
        .map_err(StoreError::query("listing sync definitions"))
}

/// Records a list's GUID once provisioning or discovery found it.
pub async fn set_list_provisioned(
    store: &Store,
    list_row_id: crate::Id,
    list_id: &str,
) -> Result<(), StoreError> {
    with_pool!(store, pool => sqlx::query(
        "UPDATE sharepoint_lists SET list_id = $2, is_provisioned = TRUE, last_provisioned_at = $3 WHERE id = $1")
        .bind(list_row_id).bind(list_id).bind(Utc::now()).execute(pool).await.map(|_| ()))
    .map_err(StoreError::query("recording a provisioned list"))
}

/// The instances of a logical database, first the one to read from (role, then priority).
pub async fn database_sources(
    store: &Store,
    database_id: crate::Id,
) -> Result<Vec<SourceRow>, StoreError> {
    with_pool!(store, pool => sqlx::query_as::<_, SourceRow>(
        "SELECT i.id AS instance_id, i.instance_label, i.role, i.priority, i.host, i.port, i.db_name,
                i.db_user, i.db_password, i.db_password_ref, i.config
         FROM database_instances i WHERE i.database_id = $1 AND i.status = 'ACTIVE'
         ORDER BY CASE i.role WHEN 'PRIMARY' THEN 0 ELSE 1 END, i.priority")
        .bind(database_id).fetch_all(pool).await)
    .map_err(StoreError::query("loading database instances"))
}
