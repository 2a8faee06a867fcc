//! A tiny dynamic-SQL layer over one meta-store transaction, so `apply` is written once for both
//! backends. Table and column names come only from this crate's code, never from user input;
//! every value is a bind parameter.

use syncbridge_store::{BeginWrite, Id, Store, StorePool};

/// A bound or decoded value. Every variant is nullable so a decoded column compares directly
/// with the desired one.
#[derive(Debug, Clone, PartialEq)]
pub enum Sql {
    Id(Option<Id>),
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Json(Option<serde_json::Value>),
    Time(Option<chrono::DateTime<chrono::Utc>>),
}

impl Sql {
    pub fn text(value: impl Into<String>) -> Self {
        Sql::Text(Some(value.into()))
    }

    pub fn opt_text(value: Option<impl Into<String>>) -> Self {
        Sql::Text(value.map(Into::into))
    }

    /// The same kind of value, null: used to tell the decoder what to read.
    pub fn null_like(&self) -> Self {
        match self {
            Sql::Id(_) => Sql::Id(None),
            Sql::Text(_) => Sql::Text(None),
            Sql::Int(_) => Sql::Int(None),
            Sql::Bool(_) => Sql::Bool(None),
            Sql::Json(_) => Sql::Json(None),
            Sql::Time(_) => Sql::Time(None),
        }
    }

    /// A JSON rendering for the audit log.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Sql::Id(v) => v.map_or(serde_json::Value::Null, |id| id.to_string().into()),
            Sql::Text(v) => v.clone().map_or(serde_json::Value::Null, Into::into),
            Sql::Int(v) => v.map_or(serde_json::Value::Null, Into::into),
            Sql::Bool(v) => v.map_or(serde_json::Value::Null, Into::into),
            Sql::Json(v) => v.clone().unwrap_or(serde_json::Value::Null),
            Sql::Time(v) => v.map_or(serde_json::Value::Null, |t| t.to_rfc3339().into()),
        }
    }
}

/// An open transaction on either backend.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

macro_rules! bind_all {
    ($query:expr, $values:expr) => {{
        let mut query = $query;
        for value in $values {
            query = match value {
                Sql::Id(v) => query.bind(*v),
                Sql::Text(v) => query.bind(v.clone()),
                Sql::Int(v) => query.bind(*v),
                Sql::Bool(v) => query.bind(*v),
                Sql::Json(v) => query.bind(v.clone().map(sqlx::types::Json)),
                Sql::Time(v) => query.bind(*v),
            };
        }
        query
    }};
}

macro_rules! decode_row {
    ($row:expr, $kinds:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        let mut out = Vec::with_capacity($kinds.len());
        for (index, kind) in $kinds.iter().enumerate() {
            out.push(match kind {
                Sql::Id(_) => Sql::Id(row.try_get::<Option<Id>, _>(index)?),
                Sql::Text(_) => Sql::Text(row.try_get::<Option<String>, _>(index)?),
                Sql::Int(_) => Sql::Int(row.try_get::<Option<i64>, _>(index)?),
                Sql::Bool(_) => Sql::Bool(row.try_get::<Option<bool>, _>(index)?),
                Sql::Json(_) => Sql::Json(
                    row.try_get::<Option<sqlx::types::Json<serde_json::Value>>, _>(index)?
                        .map(|json| json.0),
                ),
                Sql::Time(_) => {
                    Sql::Time(row.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(index)?)
                }
            });
        }
        out
    }};
}

impl Tx {
    /// Begins on the store's writer, taking the write lock at once ([`BeginWrite`]): `apply`
    /// reads before it writes, and on SQLite a deferred transaction that does so fails with
    /// "database is locked" when another connection writes at that moment.
    pub async fn begin(store: &Store) -> Result<Self, sqlx::Error> {
        Ok(match store.writer() {
            StorePool::Sqlite(pool) => Tx::Sqlite(pool.begin_write().await?),
            StorePool::Postgres(pool) => Tx::Postgres(pool.begin_write().await?),
        })
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }

    pub async fn execute(&mut self, sql: &str, values: &[Sql]) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Tx::Sqlite(tx) => bind_all!(sqlx::query(sql), values)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Tx::Postgres(tx) => bind_all!(sqlx::query(sql), values)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    /// Runs a query and decodes every row as the kinds in `columns` (values ignored).
    pub async fn fetch_all(
        &mut self,
        sql: &str,
        values: &[Sql],
        columns: &[Sql],
    ) -> Result<Vec<Vec<Sql>>, sqlx::Error> {
        let mut out = Vec::new();
        match self {
            Tx::Sqlite(tx) => {
                for row in bind_all!(sqlx::query(sql), values)
                    .fetch_all(&mut **tx)
                    .await?
                {
                    out.push(decode_row!(&row, columns));
                }
            }
            Tx::Postgres(tx) => {
                for row in bind_all!(sqlx::query(sql), values)
                    .fetch_all(&mut **tx)
                    .await?
                {
                    out.push(decode_row!(&row, columns));
                }
            }
        }
        Ok(out)
    }
}
