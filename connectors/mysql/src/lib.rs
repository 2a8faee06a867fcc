//! The MySQL / MariaDB source, on `mysql_async`.
//!
//! # Delivery guarantee
//! As for PostgreSQL: reads are keyset-paginated on the key (`FULL_SCAN`) or on (watermark
//! column, key) (`UPDATED_AT`, restarting `look_back` before the committed watermark), and every
//! batch carries the position after its last row. The keyset condition is written out
//! (`k1 > ? OR (k1 = ? AND k2 > ?)`), because MariaDB does not use an index for row-value
//! comparisons.
//!
//! # Exact values
//! Values come over the binary protocol and are converted by the column's catalog type:
//! `DECIMAL` arrives as text and stays exact (up to the core model's 38 digits, a clear error
//! beyond); `BIGINT UNSIGNED` becomes a decimal (it does not fit `i64`); `TINYINT(1)` is a boolean,
//! decided from `COLUMN_TYPE`; every connection sets `time_zone = '+00:00'`, so `TIMESTAMP`
//! values are UTC instants while `DATETIME` stays wall-clock time; zero dates (`0000-00-00`)
//! become NULL, with a warning naming the column.

mod binlog;

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use futures::StreamExt as _;
use mysql_async::prelude::Queryable as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use syncbridge_api::{
    BatchStream, ColumnDescriptor, ConnectorError, ConstraintDescriptor, ConstraintKind,
    CursorSpec, DataType, Decimal, IndexDescriptor, KeysetPlan, PlanColumn, ReadRequest, Row,
    RowBatch, Source, TableDescriptor, TableKind, TableRef, Value,
};

/// Where the database is (the engine fills this from the instance row).
#[derive(Debug, Clone, Deserialize)]
pub struct MySqlSourceConfig {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub database: String,
    #[serde(default = "default_user")]
    pub user: String,
    /// Never printed.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Connections in the pool.
    #[serde(default = "default_pool")]
    pub pool_size: usize,
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}
fn default_port() -> u16 {
    3306
}
fn default_user() -> String {
    "root".to_owned()
}
fn default_pool() -> usize {
    4
}

/// A connected MySQL or MariaDB source.
#[derive(Debug, Clone)]
pub struct MySqlSource {
    pool: mysql_async::Pool,
    address: String,
    database: String,
}

/// Quotes an identifier with backticks.
pub fn quote(identifier: &str) -> String {
    format!("`{}`", identifier.replace('`', "``"))
}

/// One column as the catalog describes it.
#[derive(Debug, Clone)]
struct CatalogColumn {
    name: String,
    data_type: Result<DataType, String>,
}

impl MySqlSource {
    fn table_sql(&self, table: &TableRef) -> String {
        format!(
            "{}.{}",
            quote(table.schema.as_deref().unwrap_or(&self.database)),
            quote(&table.name)
        )
    }

    fn error(&self, what: &str, error: mysql_async::Error) -> ConnectorError {
        classify(&self.address, what, error)
    }

    async fn conn(&self) -> Result<mysql_async::Conn, ConnectorError> {
        self.pool.get_conn().await.map_err(|e| {
            ConnectorError::external(format!("cannot reach MySQL at {}: {e}", self.address))
                .with_hint("check the instance's host, port, database, user and password")
        })
    }

    async fn rows(
        &self,
        what: &str,
        sql: &str,
        params: Vec<mysql_async::Value>,
    ) -> Result<Vec<Vec<mysql_async::Value>>, ConnectorError> {
        let mut conn = self.conn().await?;
        let rows: Vec<mysql_async::Row> = conn
            .exec(sql, mysql_async::Params::Positional(params))
            .await
            .map_err(|e| self.error(what, e))?;
        Ok(rows.into_iter().map(mysql_async::Row::unwrap).collect())
    }

    async fn columns_of(&self, table: &TableRef) -> Result<Vec<CatalogColumn>, ConnectorError> {
        let schema = table
            .schema
            .clone()
            .unwrap_or_else(|| self.database.clone());
        let rows = self
            .rows(
                "reading columns",
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                vec![schema.into(), table.name.clone().into()],
            )
            .await?;
        if rows.is_empty() {
            return Err(ConnectorError::user(format!(
                "table `{table}` does not exist in {}",
                self.address
            ))
            .with_hint("check the definition's `source.table` (database.table or table)"));
        }
        Ok(rows
            .iter()
            .map(|r| {
                let name = text(&r[0]).unwrap_or_default();
                let data_type = text(&r[1]).unwrap_or_default();
                let column_type = text(&r[2]).unwrap_or_default();
                CatalogColumn {
                    data_type: map_type(
                        &data_type,
                        &column_type,
                        number(&r[3]),
                        number(&r[4]),
                        number(&r[5]),
                    )
                    .ok_or_else(|| column_type.clone()),
                    name,
                }
            })
            .collect())
    }

    async fn describe(
        &self,
        schema: &str,
        name: &str,
        table_type: &str,
        rows_estimate: Option<i64>,
    ) -> Result<TableDescriptor, ConnectorError> {
        let params = || -> Vec<mysql_async::Value> { vec![schema.into(), name.into()] };
        let what = format!("describing {schema}.{name}");
        let columns = self
            .rows(
                &what,
                "SELECT COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, COLUMN_TYPE, CHARACTER_MAXIMUM_LENGTH,
                        NUMERIC_PRECISION, NUMERIC_SCALE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                params(),
            )
            .await?;
        let key_columns = self
            .rows(
                &what,
                "SELECT tc.CONSTRAINT_NAME, tc.CONSTRAINT_TYPE, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA,
                        k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME
                 FROM information_schema.TABLE_CONSTRAINTS tc
                 LEFT JOIN information_schema.KEY_COLUMN_USAGE k
                   ON k.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND k.TABLE_NAME = tc.TABLE_NAME
                  AND k.CONSTRAINT_NAME = tc.CONSTRAINT_NAME
                 WHERE tc.TABLE_SCHEMA = ? AND tc.TABLE_NAME = ?
                 ORDER BY tc.CONSTRAINT_NAME, k.ORDINAL_POSITION",
                params(),
            )
            .await?;
        let index_columns = self
            .rows(
                &what,
                "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, INDEX_TYPE FROM information_schema.STATISTICS
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                params(),
            )
            .await?;

        let mut constraints: Vec<ConstraintDescriptor> = Vec::new();
        for row in &key_columns {
            let constraint = text(&row[0]).unwrap_or_default();
            let kind = match text(&row[1]).unwrap_or_default().as_str() {
                "PRIMARY KEY" => ConstraintKind::PrimaryKey,
                "UNIQUE" => ConstraintKind::Unique,
                "FOREIGN KEY" => ConstraintKind::ForeignKey,
                _ => ConstraintKind::Check,
            };
            // The primary key is named PRIMARY in every table; keep it unique per table.
            let index = match constraints.iter().position(|c| c.name == constraint) {
                Some(index) => index,
                None => {
                    constraints.push(ConstraintDescriptor {
                        name: constraint.clone(),
                        kind,
                        columns: Vec::new(),
                        referenced_table: text(&row[4])
                            .map(|t| TableRef::new(text(&row[3]).as_deref(), &t)),
                        referenced_columns: Vec::new(),
                        definition: None,
                    });
                    constraints.len() - 1
                }
            };
            if let Some(column) = text(&row[2]) {
                constraints[index].columns.push(column);
            }
            if let Some(column) = text(&row[5]) {
                constraints[index].referenced_columns.push(column);
            }
        }
        let mut indexes: Vec<IndexDescriptor> = Vec::new();
        for row in &index_columns {
            let index_name = text(&row[0]).unwrap_or_default();
            let column = text(&row[2]).unwrap_or_else(|| "(expression)".to_owned());
            match indexes.iter_mut().find(|i| i.name == index_name) {
                Some(index) => index.columns.push(column),
                None => indexes.push(IndexDescriptor {
                    name: index_name,
                    is_unique: number(&row[1]) == Some(0),
                    method: text(&row[3]).map(|m| m.to_ascii_lowercase()),
                    columns: vec![column],
                    definition: None,
                }),
            }
        }
        let primary: Vec<String> = constraints
            .iter()
            .find(|c| c.kind == ConstraintKind::PrimaryKey)
            .map(|c| c.columns.clone())
            .unwrap_or_default();
        let single_unique: Vec<String> = indexes
            .iter()
            .filter(|i| i.is_unique && i.columns.len() == 1)
            .map(|i| i.columns[0].clone())
            .collect();
        let columns = columns
            .iter()
            .map(|r| {
                let name = text(&r[0]).unwrap_or_default();
                let data_type = text(&r[2]).unwrap_or_default();
                let column_type = text(&r[3]).unwrap_or_default();
                let extra = text(&r[9]).unwrap_or_default();
                ColumnDescriptor {
                    ordinal: number(&r[1])
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0),
                    data_type: map_type(
                        &data_type,
                        &column_type,
                        number(&r[4]),
                        number(&r[5]),
                        number(&r[6]),
                    )
                    .unwrap_or(DataType::Text { max_length: None }),
                    nullable: text(&r[7]).as_deref() == Some("YES"),
                    default: text(&r[8]),
                    is_identity: extra.contains("auto_increment"),
                    is_primary_key: primary.contains(&name),
                    is_unique: single_unique.contains(&name),
                    native_type: column_type,
                    name,
                }
            })
            .collect();
        Ok(TableDescriptor {
            table: TableRef::new(Some(schema), name),
            kind: if table_type == "VIEW" {
                TableKind::View
            } else {
                TableKind::Base
            },
            columns,
            constraints,
            indexes,
            row_estimate: rows_estimate,
        })
    }
}

fn classify(address: &str, what: &str, error: mysql_async::Error) -> ConnectorError {
    match error {
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => {
            ConnectorError::external(format!("MySQL at {address}: {what}: {error}"))
        }
        other => ConnectorError::user(format!("MySQL at {address}: {what}: {other}")).permanent(),
    }
}

impl PlanColumn for CatalogColumn {
    fn name(&self) -> &str {
        &self.name
    }

    fn unreadable(&self) -> Option<&str> {
        self.data_type.as_ref().err().map(String::as_str)
    }
}

impl Source for MySqlSource {
    type Config = MySqlSourceConfig;
    const KIND: &'static str = "mysql";

    async fn connect(config: Self::Config) -> Result<Self, ConnectorError> {
        let constraints = mysql_async::PoolConstraints::new(0, config.pool_size.max(1))
            .ok_or_else(|| ConnectorError::user("pool_size must be at least 1"))?;
        let options = mysql_async::OptsBuilder::default()
            .ip_or_hostname(config.host.clone())
            .tcp_port(config.port)
            .user(Some(config.user.clone()))
            .pass(
                config
                    .password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned()),
            )
            .db_name(Some(config.database.clone()))
            .prefer_socket(false)
            // TIMESTAMP values are read as UTC instants on every connection.
            .init(vec!["SET time_zone = '+00:00'".to_owned()])
            .pool_opts(mysql_async::PoolOpts::default().with_constraints(constraints));
        Ok(Self {
            pool: mysql_async::Pool::new(options),
            address: format!("{}:{}/{}", config.host, config.port, config.database),
            database: config.database,
        })
    }

    async fn healthcheck(&self) -> Result<(), ConnectorError> {
        let mut conn = self.conn().await?;
        conn.query_drop("SELECT 1").await.map_err(|e| {
            ConnectorError::external(format!("cannot reach MySQL at {}: {e}", self.address))
        })
    }

    async fn introspect(
        &self,
        tables: Option<&[TableRef]>,
    ) -> Result<Vec<TableDescriptor>, ConnectorError> {
        let listed = self
            .rows(
                "listing tables",
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, TABLE_ROWS FROM information_schema.TABLES
                 WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
                vec![self.database.clone().into()],
            )
            .await?;
        let mut out = Vec::new();
        for row in &listed {
            let (schema, name) = (
                text(&row[0]).unwrap_or_default(),
                text(&row[1]).unwrap_or_default(),
            );
            let wanted = tables.is_none_or(|ts| {
                ts.iter()
                    .any(|t| t.name == name && t.schema.as_deref().is_none_or(|s| s == schema))
            });
            if wanted {
                let table_type = text(&row[2]).unwrap_or_default();
                out.push(
                    self.describe(&schema, &name, &table_type, number(&row[3]))
                        .await?,
                );
            }
        }
        // Byte order of names, whatever the server's collation.
        out.sort_by(|a, b| a.table.name.cmp(&b.table.name));
        if let Some(wanted) = tables
            && let Some(missing) = wanted
                .iter()
                .find(|t| !out.iter().any(|d| d.table.name == t.name))
        {
            return Err(ConnectorError::user(format!(
                "table `{missing}` does not exist in {}",
                self.address
            ))
            .with_hint("check the definition's `source.table`"));
        }
        Ok(out)
    }

    async fn read(&self, request: ReadRequest) -> Result<BatchStream, ConnectorError> {
        match request.cursor {
            CursorSpec::Lsn { .. } => self.read_binlog(request).await,
            _ => self.read_keyset(request).await,
        }
    }
}

impl MySqlSource {
    /// Keyset reads for `FULL_SCAN` and `UPDATED_AT` (and the snapshot phase of `LSN`).
    pub(crate) async fn read_keyset(
        &self,
        request: ReadRequest,
    ) -> Result<BatchStream, ConnectorError> {
        let catalog = self.columns_of(&request.table).await?;
        let plan = KeysetPlan::new(&request, &catalog, "MySQL", |c| {
            format!("CAST({} AS CHAR)", quote(c))
        })?;
        let (read_columns, order_columns) = (plan.read.clone(), plan.order.clone());
        let look_back = plan.look_back.as_secs();
        let select_list = read_columns
            .iter()
            .map(|c| quote(&c.name))
            .chain(
                order_columns
                    .iter()
                    .map(|c| format!("CAST({} AS CHAR)", quote(&c.name))),
            )
            .enumerate()
            .map(|(i, expression)| format!("{expression} AS sb_c{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let order_names: Vec<String> = order_columns.iter().map(|c| quote(&c.name)).collect();
        let order_sql = order_names.join(", ");
        let base = format!(
            "SELECT {select_list} FROM {}",
            self.table_sql(&request.table)
        );
        let pool = self.pool.clone();
        let address = self.address.clone();
        let table_name = request.table.to_string();
        let shared: Arc<[String]> = plan.columns.clone().into();
        let batch_size = request.batch_size.max(1);
        let width = read_columns.len();
        let stream = async_stream::try_stream! {
            let (mut after, start) = plan.start();
            loop {
                let mut sql = base.clone();
                let mut binds: Vec<mysql_async::Value> = Vec::new();
                match (&after, &plan.watermark, &start) {
                    (Some(values), _, _) => {
                        let (condition, params) = keyset(&order_names, values);
                        sql.push_str(&format!(" WHERE {condition}"));
                        binds.extend(params);
                    }
                    (None, Some(column), Some(mark)) => {
                        sql.push_str(&format!(" WHERE {} >= ? - INTERVAL {look_back} SECOND", quote(&column.name)));
                        binds.push(mark.clone().into());
                    }
                    _ => {}
                }
                sql.push_str(&format!(" ORDER BY {order_sql} LIMIT {batch_size}"));
                let mut conn = pool.get_conn().await.map_err(|e| ConnectorError::external(format!("cannot reach MySQL at {address}: {e}")))?;
                let rows: Vec<mysql_async::Row> = conn
                    .exec(sql.as_str(), mysql_async::Params::Positional(binds))
                    .await
                    .map_err(|e| classify(&address, "reading rows", e))?;
                drop(conn);
                if rows.is_empty() {
                    break;
                }
                let count = rows.len();
                let mut out = Vec::with_capacity(count);
                let mut last = Vec::new();
                let mut zero_dates = 0usize;
                for row in rows {
                    let values = row.unwrap();
                    let mut converted = Vec::with_capacity(width);
                    for (column, value) in read_columns.iter().zip(&values) {
                        let data_type = column.data_type.as_ref().map_err(|t| ConnectorError::internal(t.clone()))?;
                        let value = convert(value, data_type).map_err(|m| ConnectorError::user(format!("column `{}` of `{table_name}`: {m}", column.name)))?;
                        if matches!(value, Converted::ZeroDate) {
                            zero_dates += 1;
                        }
                        converted.push(value.into_value());
                    }
                    out.push(Row::new(converted));
                    last = values[width..].iter().map(text).collect();
                }
                let mut notes = Vec::new();
                if zero_dates > 0 {
                    tracing::warn!(table = %table_name, values = zero_dates, "zero dates (0000-00-00) read as NULL");
                    notes.push(format!("{zero_dates} zero dates (0000-00-00) in `{table_name}` read as NULL"));
                }
                let position = plan.position_after(&last).to_position();
                let full = count == batch_size;
                after = Some(last);
                yield RowBatch { columns: shared.clone(), rows: out, position, notes, fingerprints: Vec::new(), unconverted: None, };
                if !full {
                    break;
                }
            }
        };
        Ok(stream.boxed())
    }
}

/// The expanded keyset condition `c1 > ? OR (c1 = ? AND c2 > ?) OR …` and its parameters.
fn keyset(columns: &[String], after: &[Option<String>]) -> (String, Vec<mysql_async::Value>) {
    let mut terms = Vec::new();
    let mut params = Vec::new();
    for (i, last) in columns.iter().enumerate() {
        let mut parts = Vec::new();
        for (j, column) in columns[..i].iter().enumerate() {
            parts.push(format!("{column} = ?"));
            params.push(after.get(j).cloned().flatten().into());
        }
        parts.push(format!("{last} > ?"));
        params.push(after.get(i).cloned().flatten().into());
        terms.push(format!("({})", parts.join(" AND ")));
    }
    (terms.join(" OR "), params)
}

/// A catalog value as text (information_schema values come as bytes or numbers).
fn text(value: &mysql_async::Value) -> Option<String> {
    use mysql_async::Value as V;
    match value {
        V::NULL => None,
        V::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        V::Int(i) => Some(i.to_string()),
        V::UInt(u) => Some(u.to_string()),
        V::Float(f) => Some(f.to_string()),
        V::Double(d) => Some(d.to_string()),
        V::Date(y, m, d, h, mi, s, us) => Some(format!(
            "{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"
        )),
        V::Time(negative, days, h, m, s, us) => Some(format!(
            "{}{:02}:{m:02}:{s:02}.{us:06}",
            if *negative { "-" } else { "" },
            u64::from(*days) * 24 + u64::from(*h)
        )),
    }
}

fn number(value: &mysql_async::Value) -> Option<i64> {
    text(value).and_then(|t| t.parse().ok())
}

/// The portable type of a column, from `DATA_TYPE` and `COLUMN_TYPE`; `None` for types
/// SyncBridge cannot read (spatial types).
fn map_type(
    data_type: &str,
    column_type: &str,
    char_length: Option<i64>,
    precision: Option<i64>,
    scale: Option<i64>,
) -> Option<DataType> {
    let column_type = column_type.to_ascii_lowercase();
    let unsigned = column_type.contains("unsigned");
    let int = |bits: u8| DataType::Int { bits, unsigned };
    Some(match data_type.to_ascii_lowercase().as_str() {
        // MySQL's BOOLEAN is TINYINT(1); only the display width tells it from a small number.
        "tinyint" if column_type.starts_with("tinyint(1)") => DataType::Bool,
        "tinyint" => int(8),
        "smallint" | "year" => int(16),
        "mediumint" | "int" | "integer" => int(32),
        // Beyond i64: kept exact as a decimal with scale 0.
        "bigint" if unsigned => DataType::Decimal {
            precision: Some(20),
            scale: Some(0),
        },
        "bigint" => int(64),
        "decimal" | "numeric" => DataType::Decimal {
            precision: precision.and_then(|p| u8::try_from(p).ok()),
            scale: scale.and_then(|s| u8::try_from(s).ok()),
        },
        "float" => DataType::Float { bits: 32 },
        "double" | "real" => DataType::Float { bits: 64 },
        "bit" if column_type == "bit(1)" => DataType::Bool,
        "char" | "varchar" => DataType::Text {
            max_length: char_length.and_then(|n| u32::try_from(n).ok()),
        },
        "tinytext" | "text" | "mediumtext" | "longtext" | "set" | "inet4" | "inet6" => {
            DataType::Text { max_length: None }
        }
        "json" => DataType::Json,
        "enum" => DataType::Enum {
            values: enum_values(&column_type),
        },
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "bit" => {
            DataType::Bytes {
                max_length: char_length.and_then(|n| u32::try_from(n).ok()),
            }
        }
        "uuid" => DataType::Uuid,
        "date" => DataType::Date,
        "datetime" => DataType::Timestamp,
        "timestamp" => DataType::TimestampTz,
        "time" => DataType::Time,
        _ => return None,
    })
}

/// The values of `enum('a','b''c')`.
fn enum_values(column_type: &str) -> Vec<String> {
    let Some(inner) = column_type
        .strip_prefix("enum(")
        .and_then(|r| r.strip_suffix(')'))
    else {
        return Vec::new();
    };
    let mut values = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('\'', false) => quoted = true,
            ('\'', true) if chars.peek() == Some(&'\'') => {
                current.push('\'');
                chars.next();
            }
            ('\'', true) => {
                quoted = false;
                values.push(std::mem::take(&mut current));
            }
            (c, true) => current.push(c),
            _ => {}
        }
    }
    values
}

/// A converted value, or a zero date the caller reports.
enum Converted {
    Value(Value),
    ZeroDate,
}

impl Converted {
    fn into_value(self) -> Value {
        match self {
            Self::Value(value) => value,
            Self::ZeroDate => Value::Null,
        }
    }
}

/// Converts a binary-protocol value by the column's portable type.
fn convert(value: &mysql_async::Value, data_type: &DataType) -> Result<Converted, String> {
    use mysql_async::Value as V;
    let done = |v: Value| Ok(Converted::Value(v));
    if matches!(value, V::NULL) {
        return done(Value::Null);
    }
    let as_text = || text(value).unwrap_or_default();
    let bad = |what: &str| format!("`{}` is not a valid {what}", as_text());
    match data_type {
        DataType::Bool => match value {
            V::Int(i) => done(Value::Bool(*i != 0)),
            V::UInt(u) => done(Value::Bool(*u != 0)),
            V::Bytes(b) => done(Value::Bool(
                b.iter().any(|byte| *byte != 0 && *byte != b'0'),
            )),
            _ => Err(bad("boolean")),
        },
        DataType::Int { .. } => match value {
            V::Int(i) => done(Value::Int(*i)),
            V::UInt(u) => i64::try_from(*u)
                .map(|i| Converted::Value(Value::Int(i)))
                .map_err(|_| bad("64-bit integer")),
            _ => as_text()
                .parse()
                .map(|i| Converted::Value(Value::Int(i)))
                .map_err(|_| bad("integer")),
        },
        DataType::Float { .. } => match value {
            // Through the shortest decimal rendering: 1.1 stored as FLOAT reads 1.1, not
            // 1.100000023841858.
            V::Float(f) => done(Value::Float(
                f.to_string().parse().map_err(|_| bad("number"))?,
            )),
            V::Double(d) => done(Value::Float(*d)),
            _ => as_text()
                .parse()
                .map(|f| Converted::Value(Value::Float(f)))
                .map_err(|_| bad("number")),
        },
        DataType::Decimal { .. } => {
            // DECIMAL(65,30) renders all 30 places; trailing zeros carry no digits.
            let rendered = as_text();
            let trimmed = if rendered.contains('.') {
                rendered.trim_end_matches('0').trim_end_matches('.')
            } else {
                rendered.as_str()
            };
            Decimal::from_str(trimmed)
                .map(|d| Converted::Value(Value::Decimal(d)))
                .map_err(|e| format!("{e} (in MySQL: CAST(col AS CHAR) or AS DOUBLE in a view)"))
        }
        DataType::Date => match value {
            V::Date(0, 0, 0, ..) => Ok(Converted::ZeroDate),
            V::Date(y, m, d, ..) => {
                NaiveDate::from_ymd_opt(i32::from(*y), u32::from(*m), u32::from(*d))
                    .map(|d| Converted::Value(Value::Date(d)))
                    .ok_or_else(|| bad("date"))
            }
            _ => Err(bad("date")),
        },
        DataType::Timestamp | DataType::TimestampTz => match value {
            V::Date(0, 0, 0, ..) => Ok(Converted::ZeroDate),
            V::Date(y, m, d, h, mi, s, us) => {
                let at = NaiveDate::from_ymd_opt(i32::from(*y), u32::from(*m), u32::from(*d))
                    .and_then(|date| {
                        date.and_hms_micro_opt(u32::from(*h), u32::from(*mi), u32::from(*s), *us)
                    })
                    .ok_or_else(|| bad("date and time"))?;
                if matches!(data_type, DataType::TimestampTz) {
                    // The session time zone is UTC.
                    let utc = FixedOffset::east_opt(0).ok_or_else(|| bad("timestamp"))?;
                    done(Value::TimestampTz(DateTime::from_naive_utc_and_offset(
                        at, utc,
                    )))
                } else {
                    done(Value::Timestamp(at))
                }
            }
            _ => NaiveDateTime::parse_from_str(&as_text(), "%Y-%m-%d %H:%M:%S%.f")
                .map(|t| Converted::Value(Value::Timestamp(t)))
                .map_err(|_| bad("date and time")),
        },
        DataType::Time => match value {
            V::Time(false, 0, h, m, s, us) => {
                NaiveTime::from_hms_micro_opt(u32::from(*h), u32::from(*m), u32::from(*s), *us)
                    .map(|t| Converted::Value(Value::Time(t)))
                    .ok_or_else(|| bad("time"))
            }
            _ => Err(format!(
                "`{}` is a duration outside 00:00–24:00, which a time of day cannot hold; read it with CAST(col AS CHAR)",
                as_text()
            )),
        },
        DataType::Uuid => syncbridge_uuid(&as_text())
            .map(Converted::Value)
            .ok_or_else(|| bad("UUID")),
        DataType::Json => serde_json::from_str(&as_text())
            .map(|j| Converted::Value(Value::Json(j)))
            .map_err(|_| bad("JSON document")),
        DataType::Bytes { .. } => match value {
            V::Bytes(b) => done(Value::Bytes(b.clone())),
            _ => done(Value::Bytes(as_text().into_bytes())),
        },
        DataType::Text { .. } | DataType::Enum { .. } => match value {
            V::Bytes(b) => String::from_utf8(b.clone())
                .map(|t| Converted::Value(Value::Text(t)))
                .map_err(|_| {
                    "the text is not valid UTF-8; check the column's character set".to_owned()
                }),
            _ => done(Value::Text(as_text())),
        },
    }
}

fn syncbridge_uuid(text: &str) -> Option<Value> {
    text.parse().ok().map(Value::Uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_handle_quotes_and_commas() {
        assert_eq!(
            enum_values("enum('a','b''c','d,e')"),
            vec!["a".to_owned(), "b'c".to_owned(), "d,e".to_owned()]
        );
    }

    #[test]
    fn keyset_is_written_out() {
        let (sql, params) = keyset(
            &["`a`".into(), "`b`".into()],
            &[Some("1".into()), Some("x".into())],
        );
        assert_eq!(sql, "(`a` > ?) OR (`a` = ? AND `b` > ?)");
        assert_eq!(params.len(), 3);
    }

    #[test]
    fn tinyint_one_is_boolean_and_unsigned_bigint_is_exact() {
        assert_eq!(
            map_type("tinyint", "tinyint(1)", None, Some(3), Some(0)),
            Some(DataType::Bool)
        );
        assert_eq!(
            map_type("tinyint", "tinyint(4)", None, Some(3), Some(0)),
            Some(DataType::Int {
                bits: 8,
                unsigned: false
            })
        );
        assert_eq!(
            map_type("bigint", "bigint(20) unsigned", None, Some(20), Some(0)),
            Some(DataType::Decimal {
                precision: Some(20),
                scale: Some(0)
            })
        );
        assert_eq!(map_type("geometry", "geometry", None, None, None), None);
    }
}
