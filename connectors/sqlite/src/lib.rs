//! The SQLite source: the embedded quickstart's database and small deployments' too.
//!
//! # Delivery guarantee
//! Reads are keyset-paginated on the key (`FULL_SCAN`) or on (watermark column, key)
//! (`UPDATED_AT`) and every batch carries the position after its last row, so a read resumes
//! from any emitted position. `UPDATED_AT` restarts `look_back` before the committed watermark:
//! rows committed late with an older timestamp are read again (at-least-once; the engine's
//! content hashes make the repeats no-ops). Memory is bounded by the batch size.
//!
//! SQLite is dynamically typed, so values are converted by the column's *declared* type
//! (`DATE`, `NUMERIC(12,2)`, `BOOLEAN` …) with the stored value's own type as a fallback.

use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{Row as _, SqlitePool, TypeInfo as _, ValueRef as _};
use syncbridge_api::{
    BatchStream, ColumnDescriptor, ConnectorError, ConstraintDescriptor, ConstraintKind,
    CursorSpec, DataType, Decimal, IndexDescriptor, Position, ReadRequest, Row, RowBatch, Source,
    TableDescriptor, TableKind, TableRef, Value,
};

/// Where the database is. Other keys the engine passes (host, user …) are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct SqliteSourceConfig {
    /// The database file.
    pub path: String,
}

/// A connected SQLite source.
#[derive(Debug, Clone)]
pub struct SqliteSource {
    pool: SqlitePool,
    path: String,
}

/// A stored value exactly as SQLite holds it, for positions (comparisons must use raw values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Raw {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Where a read stopped: the watermark (for `UPDATED_AT`) and the key of the last row.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    watermark: Option<Raw>,
    after: Vec<Raw>,
}

/// Quotes an identifier: `"` doubled, the whole wrapped in `"`.
pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn table_sql(table: &TableRef) -> String {
    quote(&table.name)
}

fn source_error(what: &str, error: sqlx::Error) -> ConnectorError {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => {
            ConnectorError::external(format!("{what}: {error}"))
        }
        other => ConnectorError::user(format!("{what}: {other}")).permanent(),
    }
}

impl Source for SqliteSource {
    type Config = SqliteSourceConfig;
    const KIND: &'static str = "sqlite";

    async fn connect(config: Self::Config) -> Result<Self, ConnectorError> {
        let options = SqliteConnectOptions::new()
            .filename(&config.path)
            .read_only(true)
            .create_if_missing(false);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|error| {
                ConnectorError::user(format!(
                    "cannot open the SQLite database `{}`: {error}",
                    config.path
                ))
                .with_hint("check the instance's db_name: it is the path of the database file")
            })?;
        Ok(Self {
            pool,
            path: config.path,
        })
    }

    async fn healthcheck(&self) -> Result<(), ConnectorError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| source_error(&self.path, e))
    }

    async fn introspect(
        &self,
        tables: Option<&[TableRef]>,
    ) -> Result<Vec<TableDescriptor>, ConnectorError> {
        let listed: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| source_error("listing tables", e))?;
        let mut out = Vec::new();
        for (name, kind) in listed {
            if let Some(wanted) = tables
                && !wanted.iter().any(|t| t.name == name)
            {
                continue;
            }
            out.push(
                self.describe(
                    &name,
                    if kind == "view" {
                        TableKind::View
                    } else {
                        TableKind::Base
                    },
                )
                .await?,
            );
        }
        if let Some(wanted) = tables {
            for table in wanted {
                if !out.iter().any(|d| d.table.name == table.name) {
                    return Err(ConnectorError::user(format!(
                        "table `{}` does not exist in {}",
                        table.name, self.path
                    ))
                    .with_hint("check the definition's `source.table`"));
                }
            }
        }
        Ok(out)
    }

    async fn read(&self, request: ReadRequest) -> Result<BatchStream, ConnectorError> {
        // Only the declared types are needed here: a full introspection would also count every
        // row of the table on each read.
        let declared = self.declared_types(&request.table.name).await?;
        let columns: Vec<String> = if request.columns.is_empty() {
            declared.iter().map(|(name, _)| name.clone()).collect()
        } else {
            request.columns.clone()
        };
        let mut types = Vec::with_capacity(columns.len());
        for column in &columns {
            let found = declared
                .iter()
                .find(|(name, _)| name == column)
                .ok_or_else(|| {
                    ConnectorError::user(format!(
                        "table `{}` has no column `{column}`",
                        request.table
                    ))
                    .with_hint("correct the mapping, or run `syncbridge drift` to see what changed")
                })?;
            types.push(found.1.clone());
        }
        if request.key.is_empty() {
            return Err(ConnectorError::user(format!(
                "reading `{}` needs key columns to page by",
                request.table
            )));
        }
        let cursor: Option<Cursor> = match &request.from {
            Some(position) => Some(serde_json::from_str(&position.0).map_err(|e| {
                ConnectorError::internal(format!(
                    "unreadable SQLite position `{}`: {e}",
                    position.0
                ))
            })?),
            None => None,
        };
        let (order, watermark_column, look_back) = match &request.cursor {
            CursorSpec::UpdatedAt { column, look_back } => {
                let mut order = vec![column.clone()];
                order.extend(request.key.iter().cloned());
                (order, Some(column.clone()), look_back.as_secs_f64())
            }
            CursorSpec::FullScan => (request.key.clone(), None, 0.0),
            CursorSpec::Lsn { .. } => {
                return Err(ConnectorError::user(
                    "SQLite has no change log: use cursor strategy UPDATED_AT or FULL_SCAN",
                ));
            }
        };
        let select_list = columns
            .iter()
            .map(|c| quote(c))
            .chain(order.iter().map(|c| quote(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let order_sql = order
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        let base = format!("SELECT {select_list} FROM {}", table_sql(&request.table));
        let pool = self.pool.clone();
        let shared_columns: std::sync::Arc<[String]> = columns.clone().into();
        let batch_size = request.batch_size.max(1);
        let width = columns.len();

        let stream = async_stream::try_stream! {
            // First page: from the watermark minus the look-back (UPDATED_AT) or after the key.
            let mut after: Option<Vec<Raw>> = match (&cursor, &watermark_column) {
                (Some(c), None) => Some(c.after.clone()),
                _ => None,
            };
            let start = cursor.as_ref().and_then(|c| c.watermark.clone());
            loop {
                let mut sql = base.clone();
                let mut binds: Vec<Raw> = Vec::new();
                match (&after, &watermark_column, &start) {
                    (Some(values), _, _) => {
                        let placeholders = vec!["?"; values.len()].join(", ");
                        sql.push_str(&format!(" WHERE ({order_sql}) > ({placeholders})"));
                        binds.extend(values.iter().cloned());
                    }
                    (None, Some(column), Some(watermark)) => {
                        sql.push_str(&format!(" WHERE julianday({}) >= julianday(?) - ?", quote(column)));
                        binds.push(watermark.clone());
                        binds.push(Raw::Real(look_back / 86_400.0));
                    }
                    _ => {}
                }
                sql.push_str(&format!(" ORDER BY {order_sql} LIMIT {batch_size}"));
                let mut query = sqlx::query(&sql);
                for value in &binds {
                    query = match value {
                        Raw::Null => query.bind(None::<i64>),
                        Raw::Int(v) => query.bind(*v),
                        Raw::Real(v) => query.bind(*v),
                        Raw::Text(v) => query.bind(v.clone()),
                        Raw::Blob(v) => query.bind(v.clone()),
                    };
                }
                let rows = query.fetch_all(&pool).await.map_err(|e| source_error("reading rows", e))?;
                if rows.is_empty() {
                    break;
                }
                let mut out = Vec::with_capacity(rows.len());
                let mut last_order = Vec::new();
                for row in &rows {
                    let mut values = Vec::with_capacity(width);
                    for (index, data_type) in types.iter().enumerate() {
                        values.push(convert(row, index, data_type).map_err(|message| {
                            ConnectorError::user(format!("column `{}`: {message}", shared_columns[index]))
                        })?);
                    }
                    out.push(Row::new(values));
                    last_order = (width..width + order.len()).map(|i| raw(row, i)).collect();
                }
                let position = Cursor {
                    watermark: watermark_column.as_ref().map(|_| last_order[0].clone()),
                    after: last_order.clone(),
                };
                let full = rows.len() == batch_size;
                after = Some(last_order);
                let position = serde_json::to_string(&position).map(Position).ok();
                yield RowBatch { columns: shared_columns.clone(), rows: out, position, notes: Vec::new(), fingerprints: Vec::new(), unconverted: None, };
                if !full {
                    break;
                }
            }
        };
        Ok(stream.boxed())
    }
}

impl SqliteSource {
    /// Each column's name and portable type, from the declared types; an error naming the
    /// table when it does not exist.
    async fn declared_types(&self, name: &str) -> Result<Vec<(String, DataType)>, ConnectorError> {
        let columns: Vec<(String, String)> =
            sqlx::query_as("SELECT name, type FROM pragma_table_info(?) ORDER BY cid")
                .bind(name)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| source_error(&format!("describing `{name}`"), e))?;
        if columns.is_empty() {
            return Err(ConnectorError::user(format!(
                "table `{name}` does not exist in {}",
                self.path
            ))
            .with_hint("check the definition's `source.table`"));
        }
        Ok(columns
            .into_iter()
            .map(|(column, declared)| (column, declared_type(&declared)))
            .collect())
    }

    async fn describe(
        &self,
        name: &str,
        kind: TableKind,
    ) -> Result<TableDescriptor, ConnectorError> {
        let err = |e| source_error(&format!("describing `{name}`"), e);
        let info: Vec<(i64, String, String, bool, Option<String>, i64)> =
            sqlx::query_as("SELECT cid, name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid")
                .bind(name)
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        let index_list: Vec<(String, bool, String)> =
            sqlx::query_as("SELECT name, \"unique\", origin FROM pragma_index_list(?)")
                .bind(name)
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        let mut indexes = Vec::new();
        let mut constraints = Vec::new();
        for (index_name, unique, origin) in index_list {
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info(?) ORDER BY seqno")
                    .bind(&index_name)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err)?;
            if origin == "u" {
                constraints.push(ConstraintDescriptor {
                    name: index_name.clone(),
                    kind: ConstraintKind::Unique,
                    columns: columns.clone(),
                    referenced_table: None,
                    referenced_columns: Vec::new(),
                    definition: None,
                });
            }
            indexes.push(IndexDescriptor {
                name: index_name,
                is_unique: unique,
                method: Some("btree".into()),
                columns,
                definition: None,
            });
        }
        let mut pk: Vec<(i64, String)> = info
            .iter()
            .filter(|c| c.5 > 0)
            .map(|c| (c.5, c.1.clone()))
            .collect();
        pk.sort();
        if !pk.is_empty() {
            constraints.insert(
                0,
                ConstraintDescriptor {
                    name: format!("{name}_pkey"),
                    kind: ConstraintKind::PrimaryKey,
                    columns: pk.iter().map(|(_, c)| c.clone()).collect(),
                    referenced_table: None,
                    referenced_columns: Vec::new(),
                    definition: None,
                },
            );
        }
        let fks: Vec<(i64, String, String, Option<String>)> =
            sqlx::query_as("SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?) ORDER BY id, seq")
                .bind(name)
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        let mut by_id: std::collections::BTreeMap<i64, ConstraintDescriptor> =
            std::collections::BTreeMap::new();
        for (id, table, from, to) in fks {
            let entry = by_id.entry(id).or_insert_with(|| ConstraintDescriptor {
                name: format!("{name}_fk{id}"),
                kind: ConstraintKind::ForeignKey,
                columns: Vec::new(),
                referenced_table: Some(TableRef::new(None, &table)),
                referenced_columns: Vec::new(),
                definition: None,
            });
            entry.columns.push(from);
            entry.referenced_columns.extend(to);
        }
        constraints.extend(by_id.into_values());
        let single_unique: Vec<&str> = indexes
            .iter()
            .filter(|i| i.is_unique && i.columns.len() == 1)
            .map(|i| i.columns[0].as_str())
            .collect();
        let columns = info
            .iter()
            .map(
                |(cid, column, declared, not_null, default, pk_pos)| ColumnDescriptor {
                    name: column.clone(),
                    ordinal: u32::try_from(*cid + 1).unwrap_or(0),
                    data_type: declared_type(declared),
                    native_type: declared.clone(),
                    nullable: !not_null && *pk_pos == 0,
                    default: default.clone(),
                    is_identity: *pk_pos == 1
                        && pk.len() == 1
                        && declared.eq_ignore_ascii_case("INTEGER"),
                    is_primary_key: *pk_pos > 0,
                    is_unique: single_unique.contains(&column.as_str())
                        || (*pk_pos > 0 && pk.len() == 1),
                },
            )
            .collect();
        let row_estimate: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {}", quote(name)))
                .fetch_one(&self.pool)
                .await
                .map_err(err)?;
        Ok(TableDescriptor {
            table: TableRef::new(None, name),
            kind,
            columns,
            constraints,
            indexes,
            row_estimate: Some(row_estimate),
        })
    }
}

/// The portable type of a declared SQLite type, by SQLite's affinity rules plus the names
/// people write for dates, booleans, decimals, UUIDs and JSON.
pub fn declared_type(declared: &str) -> DataType {
    let upper = declared.to_ascii_uppercase();
    let args: Vec<u32> = upper
        .split_once('(')
        .map(|(_, rest)| {
            rest.trim_end_matches(')')
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let base = upper.split('(').next().unwrap_or("").trim();
    match base {
        "BOOLEAN" | "BOOL" => DataType::Bool,
        "DATE" => DataType::Date,
        "TIME" => DataType::Time,
        "DATETIME" | "TIMESTAMP" => DataType::Timestamp,
        "TIMESTAMPTZ" => DataType::TimestampTz,
        "UUID" => DataType::Uuid,
        "JSON" | "JSONB" => DataType::Json,
        "DECIMAL" | "NUMERIC" => DataType::Decimal {
            precision: args.first().and_then(|p| u8::try_from(*p).ok()),
            scale: args.get(1).and_then(|s| u8::try_from(*s).ok()),
        },
        _ if base.contains("INT") => DataType::Int {
            bits: 64,
            unsigned: false,
        },
        _ if base.contains("CHAR") || base.contains("CLOB") || base.contains("TEXT") => {
            DataType::Text {
                max_length: args.first().copied(),
            }
        }
        _ if base.contains("BLOB") || base.is_empty() => DataType::Bytes { max_length: None },
        _ if base.contains("REAL") || base.contains("FLOA") || base.contains("DOUB") => {
            DataType::Float { bits: 64 }
        }
        _ => DataType::Decimal {
            precision: None,
            scale: None,
        },
    }
}

fn raw(row: &SqliteRow, index: usize) -> Raw {
    let Ok(value) = row.try_get_raw(index) else {
        return Raw::Null;
    };
    if value.is_null() {
        return Raw::Null;
    }
    match value.type_info().name() {
        "INTEGER" => row.try_get::<i64, _>(index).map_or(Raw::Null, Raw::Int),
        "REAL" => row.try_get::<f64, _>(index).map_or(Raw::Null, Raw::Real),
        "BLOB" => row
            .try_get::<Vec<u8>, _>(index)
            .map_or(Raw::Null, Raw::Blob),
        _ => row.try_get::<String, _>(index).map_or(Raw::Null, Raw::Text),
    }
}

fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(parsed) = NaiveDateTime::parse_from_str(text, format) {
            return Some(parsed);
        }
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.naive_utc())
}

/// Converts stored value `index` of `row` to the column's portable type.
fn convert(row: &SqliteRow, index: usize, data_type: &DataType) -> Result<Value, String> {
    let stored = raw(row, index);
    let mismatch = |what: &str| format!("stored value {stored:?} is not a valid {what}");
    Ok(match (&stored, data_type) {
        (Raw::Null, _) => Value::Null,
        (Raw::Int(v), DataType::Bool) => Value::Bool(*v != 0),
        (Raw::Text(t), DataType::Bool) => match t.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Value::Bool(true),
            "false" | "f" | "0" | "no" => Value::Bool(false),
            _ => return Err(mismatch("boolean")),
        },
        (Raw::Int(v), DataType::Decimal { .. }) => Value::Decimal(Decimal::from(*v)),
        (Raw::Real(v), DataType::Decimal { .. }) => {
            Value::Decimal(Decimal::from_str(&v.to_string()).map_err(|e| e.to_string())?)
        }
        (Raw::Text(t), DataType::Decimal { .. }) => {
            Value::Decimal(Decimal::from_str(t).map_err(|e| e.to_string())?)
        }
        (Raw::Text(t), DataType::Date) => Value::Date(
            NaiveDate::parse_from_str(t.get(..10).unwrap_or(t), "%Y-%m-%d")
                .map_err(|_| mismatch("date"))?,
        ),
        (Raw::Text(t), DataType::Time) => {
            Value::Time(NaiveTime::from_str(t).map_err(|_| mismatch("time"))?)
        }
        (Raw::Text(t), DataType::Timestamp) => {
            Value::Timestamp(parse_timestamp(t).ok_or_else(|| mismatch("timestamp"))?)
        }
        (Raw::Text(t), DataType::TimestampTz) => Value::TimestampTz(
            chrono::DateTime::parse_from_rfc3339(t).map_err(|_| mismatch("timestamp with zone"))?,
        ),
        (Raw::Int(v), DataType::Timestamp) => Value::Timestamp(
            chrono::DateTime::from_timestamp(*v, 0)
                .ok_or_else(|| mismatch("unix time"))?
                .naive_utc(),
        ),
        (Raw::Text(t), DataType::Uuid) => {
            Value::Uuid(uuid::Uuid::parse_str(t).map_err(|_| mismatch("UUID"))?)
        }
        (Raw::Text(t), DataType::Json) => {
            Value::Json(serde_json::from_str(t).map_err(|_| mismatch("JSON document"))?)
        }
        (Raw::Int(v), _) => Value::Int(*v),
        (Raw::Real(v), _) => Value::Float(*v),
        (Raw::Text(t), _) => Value::Text(t.clone()),
        (Raw::Blob(b), _) => Value::Bytes(b.clone()),
    })
}
