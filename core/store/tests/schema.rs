//! The schema on both backends: every seed table, the seed's unique indexes, enforced foreign
//! keys, idempotent migrations.

use syncbridge_store::runtime;
use syncbridge_store::testing::{TestStore, insert_definition};
use syncbridge_store::{Backend, Id, Store, with_pool};

/// Every table of shared/seeds/data-model.md plus the DLQ, pending children, background windows
/// and the audit log.
const TABLES: &[&str] = &[
    "applications",
    "databases",
    "database_instances",
    "database_tables",
    "table_columns",
    "table_constraints",
    "table_indexes",
    "source_table_metrics",
    "sharepoint_connections",
    "sharepoint_sites",
    "sharepoint_lists",
    "sharepoint_columns",
    "target_list_metrics",
    "sync_definitions",
    "sync_targets",
    "sync_sources",
    "sync_key_columns",
    "field_mappings",
    "introspection_runs",
    "sync_ledger",
    "sync_cursors",
    "schema_snapshots",
    "sync_runs",
    "sync_metrics",
    "sync_events",
    "failed_records",
    "pending_children",
    "background_sync_schedules",
    "audit_log",
];

/// The seed's unique indexes (§4), by the columns they cover.
const UNIQUE_INDEXES: &[(&str, &str)] = &[
    ("databases", "ux_databases_app_name_env"),
    ("database_tables", "ux_database_tables_name"),
    ("table_columns", "ux_table_columns_name"),
    ("sharepoint_connections", "ux_sharepoint_connections_app"),
    ("sharepoint_lists", "ux_sharepoint_lists_list"),
    ("field_mappings", "ux_field_mappings_source"),
    ("sync_targets", "ux_sync_targets_list"),
    ("sync_key_columns", "ux_sync_key_columns"),
    ("sync_ledger", "ux_sync_ledger_identity"),
    ("sync_cursors", "ux_sync_cursors_scope"),
    ("sync_metrics", "ux_sync_metrics_scope"),
];

async fn tables(store: &Store) -> Vec<String> {
    with_pool!(store, pool => match store.backend() {
        Backend::Sqlite => sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(pool).await,
        Backend::Postgres => sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'").fetch_all(pool).await,
    })
    .expect("catalog query")
}

async fn unique_indexes(store: &Store) -> Vec<(String, String)> {
    with_pool!(store, pool => match store.backend() {
        Backend::Sqlite => sqlx::query_as("SELECT tbl_name, name FROM sqlite_master WHERE type = 'index' AND sql LIKE 'CREATE UNIQUE%'").fetch_all(pool).await,
        Backend::Postgres => sqlx::query_as("SELECT tablename::text, indexname::text FROM pg_indexes WHERE schemaname = 'public' AND indexdef LIKE 'CREATE UNIQUE%'").fetch_all(pool).await,
    })
    .expect("catalog query")
}

#[tokio::test]
async fn every_seed_table_and_unique_index_exists() {
    for store in TestStore::all().await {
        let found = tables(&store).await;
        for table in TABLES {
            assert!(
                found.iter().any(|t| t == table),
                "{}: table {table} missing",
                store.backend()
            );
        }
        let indexes = unique_indexes(&store).await;
        for (table, index) in UNIQUE_INDEXES {
            assert!(
                indexes.iter().any(|(t, i)| t == table && i == index),
                "{}: unique index {index} on {table} missing",
                store.backend()
            );
        }
        store.migrate().await.expect("migrating twice is a no-op");
    }
}

async fn insert_application(store: &Store, name: &str) -> Result<Id, sqlx::Error> {
    let id = Id::new();
    with_pool!(store, pool => sqlx::query("INSERT INTO applications (id, name, status, created_at) VALUES ($1, $2, 'ACTIVE', $3)")
        .bind(id)
        .bind(name)
        .bind(chrono::Utc::now())
        .execute(pool).await.map(|r| r.rows_affected()))?;

    Ok(id)
}

#[tokio::test]
async fn ids_round_trip_and_constraints_hold() {
    for store in TestStore::all().await {
        let backend = store.backend();
        let id = insert_application(&store, "pmo").await.expect("insert");
        let back: Id = with_pool!(store, pool => sqlx::query_scalar("SELECT id FROM applications WHERE name = $1").bind("pmo").fetch_one(pool).await)
            .expect("select");
        assert_eq!(back, id, "{backend}");
        assert!(
            insert_application(&store, "pmo").await.is_err(),
            "{backend}: unique name"
        );
        let orphan = with_pool!(store, pool => sqlx::query(
            "INSERT INTO databases (id, application_id, name, db_type, environment, database_name, status, created_at) VALUES ($1, $2, 'd', 'postgres', 'PROD', 'd', 'ACTIVE', $3)")
            .bind(Id::new()).bind(Id::new()).bind(chrono::Utc::now()).execute(pool).await.map(|r| r.rows_affected()));
        assert!(orphan.is_err(), "{backend}: foreign keys are enforced");
        let bad_enum = with_pool!(store, pool => sqlx::query(
            "INSERT INTO applications (id, name, status, created_at) VALUES ($1, 'x', 'SLEEPING', $2)")
            .bind(Id::new()).bind(chrono::Utc::now()).execute(pool).await.map(|r| r.rows_affected()));
        assert!(bad_enum.is_err(), "{backend}: CHECK constraints hold");
    }
}

/// Migration 0005 copies the SQLite ledger into a table whose foreign keys are checked at
/// commit: a store migrated before it keeps its ledger rows, and the keys still hold after.
#[tokio::test]
async fn sqlite_ledger_rows_survive_their_keys_being_deferred() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let earlier = dir.path().join("migrations");
    std::fs::create_dir(&earlier).expect("directory");
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/sqlite");
    for entry in std::fs::read_dir(&all).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name.as_str() < "0005" {
            std::fs::copy(&path, earlier.join(&name)).expect("copy");
        }
    }
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("meta.db").display()
    ))
    .await
    .expect("store");
    with_pool!(store, pool => async { sqlx::migrate::Migrator::new(earlier.as_path()).await?.run(pool).await }.await)
        .expect("migrations up to 0004");
    let def = insert_definition(&store).await;
    let run = runtime::start_run(&store, def, "PUSH").await.expect("run");
    let (ledger, now) = (Id::new(), chrono::Utc::now());
    with_pool!(store, pool => sqlx::query(
        "INSERT INTO sync_ledger (id, sync_def_id, source_identity, source_identity_hash, source_key_strategy, sp_list_id, sp_item_id,
             content_hash, sync_state, last_run_id, created_at, updated_at)
         VALUES ($1, $2, '7', 'h7', 'PRIMARY_KEY', 'list-a', 70, 'c7', 'SYNCED', $3, $4, $4)")
        .bind(ledger).bind(def).bind(run).bind(now).execute(pool).await.map(|r| r.rows_affected()))
    .expect("a store as migration 0004 left it, with a ledger row");

    store.migrate().await.expect("migration 0005");
    let row: (Id, String, Option<i64>, Option<String>, Option<Id>) = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, source_identity_hash, sp_item_id, content_hash, last_run_id FROM sync_ledger WHERE sync_def_id = $1")
        .bind(def).fetch_one(pool).await)
    .expect("the ledger row");
    assert_eq!(
        row,
        (
            ledger,
            "h7".to_owned(),
            Some(70),
            Some("c7".to_owned()),
            Some(run)
        )
    );
    let orphan = with_pool!(store, pool => sqlx::query(
        "INSERT INTO sync_ledger (id, sync_def_id, source_identity, source_identity_hash, source_key_strategy, created_at, updated_at)
         VALUES ($1, $2, '8', 'h8', 'PRIMARY_KEY', $3, $3)")
        .bind(Id::new()).bind(Id::new()).bind(now).execute(pool).await.map(|r| r.rows_affected()));
    assert!(orphan.is_err(), "the definition's key still holds");
    store.migrate().await.expect("migrating twice is a no-op");
}
