//! Typed access to the inventory: what introspection found in a source database.
//!
//! Writing a table is idempotent: rows are matched by their natural keys (schema + table,
//! column name, constraint name, index name) and updated in place; columns, constraints and
//! indexes that disappeared are removed (the schema snapshot keeps the history for drift).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;

use crate::{BeginWrite, Id, Store, StoreError, with_pool};

/// One introspected table, as the inventory stores it.
#[derive(Debug, Clone, Serialize)]
pub struct TableRecord {
    pub schema_name: Option<String>,
    pub table_name: String,
    /// `BASE` or `VIEW`.
    pub table_type: String,
    /// Primary key columns, comma-separated, in key order.
    pub primary_key: Option<String>,
    pub row_estimate: Option<i64>,
    pub columns: Vec<ColumnRecord>,
    pub constraints: Vec<ConstraintRecord>,
    pub indexes: Vec<IndexRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ColumnRecord {
    pub ordinal_position: i64,
    pub column_name: String,
    /// The source's own type name.
    pub data_type: String,
    /// The portable kind (`text`, `int`, `decimal` …), to tell compatible type changes from
    /// incompatible ones.
    #[serde(default)]
    pub kind: String,
    pub is_nullable: bool,
    pub default_value: Option<String>,
    pub is_identity: bool,
    pub is_primary_key: bool,
    pub is_unique: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ConstraintRecord {
    pub constraint_name: String,
    /// `PRIMARY_KEY`, `FOREIGN_KEY`, `UNIQUE` or `CHECK`.
    pub constraint_type: String,
    pub columns: Vec<String>,
    pub referenced_table: Option<String>,
    pub definition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct IndexRecord {
    pub index_name: String,
    pub is_unique: bool,
    pub index_method: Option<String>,
    pub columns: Vec<String>,
    pub definition: Option<String>,
}

/// A logical database by name: `(id, db_type, database_name)`.
pub async fn database_by_name(
    store: &Store,
    name: &str,
) -> Result<Option<(Id, String, String)>, StoreError> {
    with_pool!(store, pool => sqlx::query_as::<_, (Id, String, String)>(
        "SELECT id, db_type, database_name FROM databases WHERE name = $1")
        .bind(name).fetch_optional(pool).await)
    .map_err(StoreError::query("finding a database"))
}

/// Starts an introspection run.
pub async fn start_introspection(store: &Store, instance: Id) -> Result<Id, StoreError> {
    let id = Id::new();
    with_pool!(store, pool => sqlx::query(
        "INSERT INTO introspection_runs (id, database_instance_id, started_at, status) VALUES ($1, $2, $3, 'RUNNING')")
        .bind(id).bind(instance).bind(Utc::now()).execute(pool).await.map(|_| ()))
    .map_err(StoreError::query("starting an introspection run"))?;
    Ok(id)
}

/// Ends an introspection run with its statistics.
pub async fn finish_introspection(
    store: &Store,
    run: Id,
    success: bool,
    stats: serde_json::Value,
) -> Result<(), StoreError> {
    with_pool!(store, pool => sqlx::query(
        "UPDATE introspection_runs SET ended_at = $2, status = $3, stats = $4 WHERE id = $1")
        .bind(run).bind(Utc::now()).bind(if success { "SUCCESS" } else { "FAILED" }).bind(Json(stats))
        .execute(pool).await.map(|_| ()))
    .map_err(StoreError::query("finishing an introspection run"))
}

/// Writes one table's description, a schema snapshot and a row-count metric. Returns the table id.
pub async fn put_table(
    store: &Store,
    database: Id,
    instance: Id,
    table: &TableRecord,
) -> Result<Id, StoreError> {
    let now: DateTime<Utc> = Utc::now();
    let err = StoreError::query("writing the inventory");
    with_pool!(store, pool => async {
        let mut tx = pool.begin_write().await?;
        let existing: Option<Id> = sqlx::query_scalar(
            "SELECT id FROM database_tables WHERE database_id = $1 AND schema_name IS NOT DISTINCT FROM $2 AND table_name = $3")
            .bind(database).bind(&table.schema_name).bind(&table.table_name).fetch_optional(&mut *tx).await?;
        let table_id = match existing {
            Some(id) => {
                sqlx::query("UPDATE database_tables SET table_type = $2, primary_key = $3, row_estimate = $4, last_introspected_at = $5 WHERE id = $1")
                    .bind(id).bind(&table.table_type).bind(&table.primary_key).bind(table.row_estimate).bind(now)
                    .execute(&mut *tx).await?;
                id
            }
            None => {
                let id = Id::new();
                sqlx::query("INSERT INTO database_tables (id, database_id, schema_name, table_name, table_type, primary_key, row_estimate, last_introspected_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(id).bind(database).bind(&table.schema_name).bind(&table.table_name).bind(&table.table_type)
                    .bind(&table.primary_key).bind(table.row_estimate).bind(now)
                    .execute(&mut *tx).await?;
                id
            }
        };
        for column in &table.columns {
            sqlx::query(
                "INSERT INTO table_columns (id, table_id, ordinal_position, column_name, data_type, is_nullable, default_value, is_identity, is_primary_key, is_unique)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (table_id, column_name) DO UPDATE SET ordinal_position = excluded.ordinal_position,
                    data_type = excluded.data_type, is_nullable = excluded.is_nullable, default_value = excluded.default_value,
                    is_identity = excluded.is_identity, is_primary_key = excluded.is_primary_key, is_unique = excluded.is_unique")
                .bind(Id::new()).bind(table_id).bind(column.ordinal_position).bind(&column.column_name).bind(&column.data_type)
                .bind(column.is_nullable).bind(&column.default_value).bind(column.is_identity).bind(column.is_primary_key).bind(column.is_unique)
                .execute(&mut *tx).await?;
        }
        // Columns no longer in the table are removed unless a mapping or key still names them
        // (drift reports those).
        let names: Vec<String> = table.columns.iter().map(|c| c.column_name.clone()).collect();
        let stale: Vec<(Id, String)> = sqlx::query_as("SELECT id, column_name FROM table_columns WHERE table_id = $1")
            .bind(table_id).fetch_all(&mut *tx).await?;
        for id in stale.into_iter().filter(|(_, n)| !names.contains(n)).map(|(id, _)| id) {
            let used: i64 = sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM field_mappings WHERE source_column_id = $1) + (SELECT count(*) FROM sync_key_columns WHERE column_id = $1)")
                .bind(id).fetch_one(&mut *tx).await?;
            if used == 0 {
                sqlx::query("DELETE FROM table_columns WHERE id = $1").bind(id).execute(&mut *tx).await?;
            }
        }
        sqlx::query("DELETE FROM table_constraints WHERE table_id = $1").bind(table_id).execute(&mut *tx).await?;
        for constraint in &table.constraints {
            sqlx::query("INSERT INTO table_constraints (id, table_id, constraint_name, constraint_type, columns, referenced_table, definition) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(Id::new()).bind(table_id).bind(&constraint.constraint_name).bind(&constraint.constraint_type)
                .bind(Json(&constraint.columns)).bind(&constraint.referenced_table).bind(&constraint.definition)
                .execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM table_indexes WHERE table_id = $1").bind(table_id).execute(&mut *tx).await?;
        for index in &table.indexes {
            sqlx::query("INSERT INTO table_indexes (id, table_id, index_name, is_unique, index_method, columns, definition) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(Id::new()).bind(table_id).bind(&index.index_name).bind(index.is_unique).bind(&index.index_method)
                .bind(Json(&index.columns)).bind(&index.definition)
                .execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_snapshots (id, table_id, database_instance_id, captured_at, columns, constraints, indexes) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(Id::new()).bind(table_id).bind(instance).bind(now)
            .bind(Json(&table.columns)).bind(Json(&table.constraints)).bind(Json(&table.indexes))
            .execute(&mut *tx).await?;
        sqlx::query("INSERT INTO source_table_metrics (id, table_id, database_instance_id, captured_at, row_count) VALUES ($1, $2, $3, $4, $5)")
            .bind(Id::new()).bind(table_id).bind(instance).bind(now).bind(table.row_estimate)
            .execute(&mut *tx).await?;
        tx.commit().await?;
        Ok::<Id, sqlx::Error>(table_id)
    }.await)
    .map_err(err)
}

/// Counts of what the inventory holds for a database (for reports and tests).
pub async fn inventory_summary(
    store: &Store,
    database: Id,
) -> Result<(i64, i64, i64, i64), StoreError> {
    with_pool!(store, pool => sqlx::query_as::<_, (i64, i64, i64, i64)>(
        "SELECT (SELECT count(*) FROM database_tables WHERE database_id = $1),
                (SELECT count(*) FROM table_columns c JOIN database_tables t ON t.id = c.table_id WHERE t.database_id = $1 AND c.data_type IS NOT NULL),
                (SELECT count(*) FROM table_constraints c JOIN database_tables t ON t.id = c.table_id WHERE t.database_id = $1),
                (SELECT count(*) FROM table_indexes c JOIN database_tables t ON t.id = c.table_id WHERE t.database_id = $1)")
        .bind(database).fetch_one(pool).await)
    .map_err(StoreError::query("summarizing the inventory"))
}

/// The newest schema snapshot of a table: `(captured_at, columns, constraints, indexes)`.
pub type Snapshot = (
    DateTime<Utc>,
    Vec<ColumnRecord>,
    Vec<ConstraintRecord>,
    Vec<IndexRecord>,
);

/// The newest schema snapshot of a table, if introspection ever recorded one.
pub async fn latest_snapshot(store: &Store, table_id: Id) -> Result<Option<Snapshot>, StoreError> {
    type Row = (
        DateTime<Utc>,
        Json<Vec<ColumnRecord>>,
        Json<Vec<ConstraintRecord>>,
        Json<Vec<IndexRecord>>,
    );
    let row = with_pool!(store, pool => sqlx::query_as::<_, Row>(
        "SELECT captured_at, columns, constraints, indexes FROM schema_snapshots WHERE table_id = $1
         ORDER BY captured_at DESC LIMIT 1")
        .bind(table_id).fetch_optional(pool).await)
    .map_err(StoreError::query("reading a schema snapshot"))?;
    Ok(row.map(|(at, columns, constraints, indexes)| (at, columns.0, constraints.0, indexes.0)))
}
