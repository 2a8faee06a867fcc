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
