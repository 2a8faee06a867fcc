//! The PostgreSQL source.
//!
//! # Delivery guarantee
//! Reads are keyset-paginated on the key (`FULL_SCAN`) or on (watermark column, key)
//! (`UPDATED_AT`), and every batch carries the position after its last row, so a read resumes
//! from any emitted position, on any instance of the same database. `UPDATED_AT` restarts
//! `look_back` before the committed watermark, because statement time is not commit time: a long
//! transaction can commit rows stamped before the watermark. Repeats are no-ops for the engine.
//!
//! # Exact values
//! Every column is read as its text rendering (its type's output function, arrays as JSON) and
//! converted by its catalog type, so `numeric(38, s)` stays exact and no driver type mapping can
//! silently round. Keyset pages are read with `COPY (SELECT …) TO STDOUT` (see `copy`), change
//! log look-ups with queries (`col::text`). Positions keep key values as text and cast them back
//! to the column's type in SQL.

mod copy;
mod lsn;

use std::str::FromStr;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use futures::{StreamExt as _, TryStreamExt as _};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row as _};
use syncbridge_api::{
    BatchStream, ColumnDescriptor, ConnectorError, ConstraintDescriptor, ConstraintKind,
    CursorSpec, DataType, Decimal, IndexDescriptor, KeysetPlan, PlanColumn, Position, ReadRequest,
    Row, RowBatch, RowConverter, Source, TableDescriptor, TableKind, TableRef, UnconvertedRows,
    Value,
};

/// Where the database is (the engine fills this from the instance row).
#[derive(Debug, Clone, Deserialize)]
pub struct PostgresSourceConfig {
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
    pub pool_size: u32,
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}
fn default_port() -> u16 {
    5432
}
fn default_user() -> String {
    "postgres".to_owned()
}
fn default_pool() -> u32 {
    4
}

/// A connected PostgreSQL source.
#[derive(Debug, Clone)]
pub struct PostgresSource {
    pool: PgPool,
    address: String,
    /// The database name (part of derived replication slot names).
    database: String,
}

/// Quotes an identifier for PostgreSQL.
pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn table_sql(table: &TableRef) -> String {
    match &table.schema {
        Some(schema) => format!("{}.{}", quote(schema), quote(&table.name)),
        None => quote(&table.name),
    }
}

impl PostgresSource {
    fn error(&self, what: &str, error: sqlx::Error) -> ConnectorError {
        match error {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                ConnectorError::external(format!("PostgreSQL at {}: {what}: {error}", self.address))
            }
            other => {
                ConnectorError::user(format!("PostgreSQL at {}: {what}: {other}", self.address))
                    .permanent()
            }
        }
    }
}

/// `(name, format_type, base type, typtype, typmod, enum labels, type category)`.
type ColumnTypeRow = (
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<Vec<String>>,
    Option<String>,
);

/// `(attnum, name, format_type, base type, typtype, typmod, not null, default, identity, enum
/// labels, type category)`.
type DescribedColumnRow = (
    i16,
    String,
    String,
    String,
    String,
    Option<i64>,
    bool,
    Option<String>,
    String,
    Option<Vec<String>>,
    Option<String>,
);

/// `(name, contype, columns, referenced schema, referenced table, referenced columns, definition)`.
type ConstraintRow = (
    String,
    String,
    Vec<String>,
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
    String,
);

/// A batch a `COPY` chunk completed: its rows, their fingerprints
/// ([`RowBatch::fingerprints`]) and its last row's key (where the next page starts).
struct CopiedBatch {
    rows: Rows,
    fingerprints: Vec<u128>,
    last_key: Vec<Option<String>>,
}

/// The rows of a batch being copied: converted as they arrive, or kept as read for the reader
/// to convert ([`ReadRequest::defer_conversion`]).
enum Rows {
    Converted(Vec<Row>),
    AsRead(UnconvertedRows),
}

impl Rows {
    fn new(deferred: Option<&RowConverter>, capacity: usize) -> Self {
        match deferred {
            Some(convert) => Self::AsRead(UnconvertedRows::new(convert.clone())),
            None => Self::Converted(Vec::with_capacity(capacity)),
        }
    }

    fn push(&mut self, line: &[u8], read: &[CatalogColumn]) -> Result<(), ConnectorError> {
        match self {
            Self::Converted(rows) => rows.push(Row::new(line_values(line, read)?)),
            Self::AsRead(rows) => rows.push(line),
        }
        Ok(())
    }

    fn len(&self) -> usize {
        match self {
            Self::Converted(rows) => rows.len(),
            Self::AsRead(rows) => rows.len(),
        }
    }

    /// `(rows, unconverted)` of a [`RowBatch`].
    fn into_parts(self) -> (Vec<Row>, Option<UnconvertedRows>) {
        match self {
            Self::Converted(rows) => (rows, None),
            Self::AsRead(rows) => (Vec::new(), Some(rows)),
        }
    }
}

/// One column as the catalog describes it, with what reading needs.
#[derive(Debug, Clone)]
struct CatalogColumn {
    name: String,
    /// `format_type` spelling, used to cast key values back.
    sql_type: String,
    data_type: Result<DataType, String>,
    is_array: bool,
}

impl PlanColumn for CatalogColumn {
    fn name(&self) -> &str {
        &self.name
    }

    fn unreadable(&self) -> Option<&str> {
        self.data_type.as_ref().err().map(String::as_str)
    }
}

impl Source for PostgresSource {
    type Config = PostgresSourceConfig;
    const KIND: &'static str = "postgres";

    async fn connect(config: Self::Config) -> Result<Self, ConnectorError> {
        let mut options = PgConnectOptions::new()
            .host(&config.host)
            .port(config.port)
            .database(&config.database)
            .username(&config.user)
            .application_name("syncbridge");
        if let Some(password) = &config.password {
            options = options.password(password.expose_secret());
        }
        let address = format!("{}:{}/{}", config.host, config.port, config.database);
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size.max(1))
            .acquire_timeout(std::time::Duration::from_secs(15))
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            address,
            database: config.database,
        })
    }

    async fn healthcheck(&self) -> Result<(), ConnectorError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| {
                ConnectorError::external(format!(
                    "cannot reach PostgreSQL at {}: {e}",
                    self.address
                ))
                .with_hint("check the instance's host, port, database, user and password")
            })
    }

    async fn introspect(
        &self,
        tables: Option<&[TableRef]>,
    ) -> Result<Vec<TableDescriptor>, ConnectorError> {
        let listed: Vec<(i64, String, String, String, f32)> = sqlx::query_as(
            "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text, c.reltuples
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg_toast%' AND NOT c.relispartition
             ORDER BY 2, 3",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error("listing tables", e))?;
        let mut out = Vec::new();
        for (oid, schema, name, kind, tuples) in listed {
            let wanted = tables.is_none_or(|ts| {
                ts.iter()
                    .any(|t| t.name == name && t.schema.as_deref().is_none_or(|s| s == schema))
            });
            if wanted {
                out.push(self.describe(oid, &schema, &name, &kind, tuples).await?);
            }
        }
        if let Some(wanted) = tables {
            for table in wanted {
                if !out.iter().any(|d| {
                    d.table.name == table.name
                        && table
                            .schema
                            .as_ref()
                            .is_none_or(|s| d.table.schema.as_ref() == Some(s))
                }) {
                    return Err(ConnectorError::user(format!(
                        "table `{table}` does not exist in {}",
                        self.address
                    ))
                    .with_hint("check the definition's `source.table` (schema.table)"));
                }
            }
        }
        Ok(out)
    }

    async fn read(&self, request: ReadRequest) -> Result<BatchStream, ConnectorError> {
        match &request.cursor {
            CursorSpec::Lsn { options } => {
                let options = options.clone();
                self.read_lsn(request, &options).await
            }
            _ => self.read_keyset(request).await,
        }
    }

    async fn acknowledge(
        &self,
        request: &ReadRequest,
        position: &Position,
    ) -> Result<(), ConnectorError> {
        if matches!(request.cursor, CursorSpec::Lsn { .. }) {
            self.acknowledge_lsn(position).await
        } else {
            Ok(())
        }
    }

    async fn release(&self, request: &ReadRequest) -> Result<(), ConnectorError> {
        match &request.cursor {
            CursorSpec::Lsn { options } => {
                let slot = lsn::slot_name(options, &self.database, &request.table)?;
                self.drop_slot(&slot).await
            }
            _ => Ok(()),
        }
    }
}

/// Rows per keyset query of a read (at least the batch size): one query per batch cost a round
/// trip and a plan each, and rows are converted while the rest of the page arrives.
const READ_PAGE_ROWS: usize = 10_000;

impl PostgresSource {
    /// Keyset reads for `FULL_SCAN` and `UPDATED_AT` (and the snapshot phase of `LSN`).
    async fn read_keyset(&self, request: ReadRequest) -> Result<BatchStream, ConnectorError> {
        let catalog = self.columns_of(&request.table).await?;
        let plan = KeysetPlan::new(&request, &catalog, "PostgreSQL", |c| {
            format!("{}::text", quote(c))
        })?;
        let (read_columns, order_columns) = (plan.read.clone(), plan.order.clone());
        let look_back = plan.look_back.as_secs();
        // A key column that is also read is not copied twice: its position is taken from the
        // read column's field (rendered alike).
        let mut extra_columns = Vec::new();
        let key_fields: Vec<usize> = order_columns
            .iter()
            .map(|key| {
                match read_columns
                    .iter()
                    .position(|c| c.name == key.name && !c.is_array)
                {
                    Some(index) => index,
                    None => {
                        extra_columns.push(key.clone());
                        read_columns.len() + extra_columns.len() - 1
                    }
                }
            })
            .collect();
        let select_list = copy_select_list(&read_columns, &extra_columns);
        // A row's fingerprint is the hash of its line, seeded with what the line is made of:
        // the same text read as other columns or types is another row.
        let fingerprint_seed =
            twox_hash::XxHash3_64::oneshot(format!("{select_list}\n{read_columns:?}").as_bytes());
        let order_sql = order_columns
            .iter()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let base = format!("SELECT {select_list} FROM {}", table_sql(&request.table));
        let pool = self.pool.clone();
        let address = self.address.clone();
        let shared: Arc<[String]> = plan.columns.clone().into();
        let batch_size = request.batch_size.max(1);
        let page_rows = batch_size.max(READ_PAGE_ROWS);
        let deferred: Option<RowConverter> = request.defer_conversion.then(|| {
            let read = read_columns.clone();
            let convert: RowConverter =
                Arc::new(move |line: &[u8]| Ok(Row::new(line_values(line, &read)?)));
            convert
        });
        let stream = async_stream::try_stream! {
            let (mut after, start) = plan.start();
            loop {
                let mut sql = format!("COPY ({base}");
                match (&after, &plan.watermark, &start) {
                    (Some(values), _, _) => {
                        // Expanded form keeps NULL-free keys index-friendly and exact per type.
                        let bounds: Vec<String> = order_columns.iter().zip(values).map(|(c, v)| copy::literal(v.as_deref(), &c.sql_type)).collect();
                        sql.push_str(&format!(" WHERE ({order_sql}) > ({})", bounds.join(", ")));
                    }
                    (None, Some(column), Some(mark)) => {
                        sql.push_str(&format!(" WHERE {} >= {} - make_interval(secs => {look_back})", quote(&column.name), copy::literal(Some(mark), &column.sql_type)));
                    }
                    _ => {}
                }
                sql.push_str(&format!(" ORDER BY {order_sql} LIMIT {page_rows}) TO STDOUT"));
                let reading = |e: sqlx::Error| ConnectorError::external(format!("PostgreSQL at {address}: reading rows: {e}"));
                let mut connection = copy::CopyConnection::new(pool.acquire().await.map_err(reading)?);
                let mut in_page = 0;
                {
                    // Rows are converted as they arrive and handed on a batch at a time; the
                    // position of a batch is its last row's key.
                    let mut chunks = connection.get().copy_out_raw(&sql).await.map_err(reading)?;
                    let mut lines = copy::Lines::default();
                    let mut out = Rows::new(deferred.as_ref(), batch_size);
                    let mut prints = Vec::with_capacity(batch_size);
                    let mut ready: Vec<CopiedBatch> = Vec::new();
                    let mut last_line = Vec::new();
                    loop {
                        let chunk = chunks.try_next().await.map_err(reading)?;
                        let end = chunk.is_none();
                        if let Some(chunk) = chunk {
                            lines.feed(&chunk, |line| {
                                in_page += 1;
                                out.push(line, &read_columns)?;
                                prints.push(twox_hash::XxHash3_128::oneshot_with_seed(fingerprint_seed, line));
                                if out.len() == batch_size {
                                    let rows = std::mem::replace(&mut out, Rows::new(deferred.as_ref(), batch_size));
                                    let fingerprints = std::mem::replace(&mut prints, Vec::with_capacity(batch_size));
                                    ready.push(CopiedBatch { rows, fingerprints, last_key: line_keys(line, &key_fields)? });
                                } else {
                                    last_line.clear();
                                    last_line.extend_from_slice(line);
                                }
                                Ok::<_, ConnectorError>(())
                            })?;
                        } else if lines.has_partial() {
                            Err(ConnectorError::external(format!("PostgreSQL at {address}: reading rows: the copy ended inside a row")))?;
                        } else if out.len() > 0 {
                            let rows = std::mem::replace(&mut out, Rows::new(deferred.as_ref(), 0));
                            ready.push(CopiedBatch { rows, fingerprints: std::mem::take(&mut prints), last_key: line_keys(&last_line, &key_fields)? });
                        }
                        for CopiedBatch { rows, fingerprints, last_key } in ready.drain(..) {
                            let position = plan.position_after(&last_key).to_position();
                            after = Some(last_key);
                            let (rows, unconverted) = rows.into_parts();
                            yield RowBatch { columns: shared.clone(), rows, position, notes: Vec::new(), fingerprints, unconverted };
                        }
                        if end {
                            break;
                        }
                    }
                }
                connection.finished();
                if in_page < page_rows {
                    break;
                }
            }
        };
        Ok(stream.boxed())
    }
}

impl PostgresSource {
    async fn columns_of(&self, table: &TableRef) -> Result<Vec<CatalogColumn>, ConnectorError> {
        let oid = self.oid(table).await?;
        let rows: Vec<ColumnTypeRow> = sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
                    COALESCE(bt.typname, t.typname)::text, COALESCE(bt.typtype, t.typtype)::text,
                    CASE WHEN a.atttypmod > 0 THEN a.atttypmod::int8 END,
                    (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = COALESCE(bt.oid, t.oid)),
                    (COALESCE(bt.typcategory, t.typcategory))::text
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
             WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(oid)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error("reading columns", e))?;
        Ok(rows
            .into_iter()
            .map(
                |(name, sql_type, base, typtype, typmod, enum_values, category)| {
                    let category = category.unwrap_or_default();
                    let data_type = map_type(&base, &typtype, typmod, enum_values, &category)
                        .ok_or_else(|| sql_type.clone());
                    CatalogColumn {
                        name,
                        sql_type,
                        data_type,
                        is_array: category == "A",
                    }
                },
            )
            .collect())
    }

    async fn oid(&self, table: &TableRef) -> Result<i64, ConnectorError> {
        sqlx::query_scalar::<_, i64>("SELECT to_regclass($1)::oid::int8")
            .bind(table_sql(table))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error("finding the table", e))?
            .ok_or_else(|| ConnectorError::user(format!("table `{table}` does not exist")))
    }

    async fn describe(
        &self,
        oid: i64,
        schema: &str,
        name: &str,
        kind: &str,
        tuples: f32,
    ) -> Result<TableDescriptor, ConnectorError> {
        let err = |e| self.error(&format!("describing {schema}.{name}"), e);
        let columns: Vec<DescribedColumnRow> = sqlx::query_as(
            "SELECT a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod),
                    COALESCE(bt.typname, t.typname)::text, COALESCE(bt.typtype, t.typtype)::text,
                    CASE WHEN a.atttypmod > 0 THEN a.atttypmod::int8 END, a.attnotnull,
                    pg_get_expr(d.adbin, d.adrelid), a.attidentity::text,
                    (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = COALESCE(bt.oid, t.oid)),
                    (COALESCE(bt.typcategory, t.typcategory))::text
             FROM pg_attribute a
             JOIN pg_type t ON t.oid = a.atttypid
             LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(oid)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        let constraints: Vec<ConstraintRow> = sqlx::query_as(
            "SELECT c.conname::text, c.contype::text,
                    ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
                    rn.nspname::text, r.relname::text,
                    CASE WHEN c.confrelid <> 0 THEN ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i) END,
                    pg_get_constraintdef(c.oid)
             FROM pg_constraint c
             LEFT JOIN pg_class r ON r.oid = c.confrelid
             LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
             WHERE c.conrelid = $1::oid AND c.contype IN ('p', 'u', 'f', 'c') ORDER BY c.conname",
        )
        .bind(oid)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        let indexes: Vec<(String, bool, String, Vec<String>, String)> = sqlx::query_as(
            "SELECT i.relname::text, x.indisunique, am.amname::text,
                    ARRAY(SELECT COALESCE(a.attname::text, '(expression)') FROM unnest(x.indkey) WITH ORDINALITY k(n, o) LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o),
                    pg_get_indexdef(x.indexrelid)
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam
             WHERE x.indrelid = $1::oid ORDER BY 1",
        )
        .bind(oid)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        let constraints: Vec<ConstraintDescriptor> = constraints
            .into_iter()
            .map(
                |(name, kind, columns, ref_schema, ref_table, ref_columns, definition)| {
                    ConstraintDescriptor {
                        name,
                        kind: match kind.as_str() {
                            "p" => ConstraintKind::PrimaryKey,
                            "u" => ConstraintKind::Unique,
                            "f" => ConstraintKind::ForeignKey,
                            _ => ConstraintKind::Check,
                        },
                        columns,
                        referenced_table: ref_table
                            .map(|t| TableRef::new(ref_schema.as_deref(), &t)),
                        referenced_columns: ref_columns.unwrap_or_default(),
                        definition: Some(definition),
                    }
                },
            )
            .collect();
        let primary: Vec<String> = constraints
            .iter()
            .find(|c| c.kind == ConstraintKind::PrimaryKey)
            .map(|c| c.columns.clone())
            .unwrap_or_default();
        let single_unique: Vec<String> = indexes
            .iter()
            .filter(|i| i.1 && i.3.len() == 1)
            .map(|i| i.3[0].clone())
            .collect();
        let columns = columns
            .into_iter()
            .map(
                |(
                    num,
                    name,
                    native,
                    base,
                    typtype,
                    typmod,
                    not_null,
                    default,
                    identity,
                    enum_values,
                    category,
                )| ColumnDescriptor {
                    ordinal: u32::try_from(num).unwrap_or(0),
                    data_type: map_type(
                        &base,
                        &typtype,
                        typmod,
                        enum_values,
                        category.as_deref().unwrap_or(""),
                    )
                    .unwrap_or(DataType::Text { max_length: None }),
                    is_primary_key: primary.contains(&name),
                    is_unique: single_unique.contains(&name),
                    is_identity: !identity.is_empty()
                        || default
                            .as_deref()
                            .is_some_and(|d| d.starts_with("nextval(")),
                    nullable: !not_null,
                    default,
                    native_type: native,
                    name,
                },
            )
            .collect();
        Ok(TableDescriptor {
            table: TableRef::new(Some(schema), name),
            kind: if kind == "v" || kind == "m" {
                TableKind::View
            } else {
                TableKind::Base
            },
            columns,
            constraints,
            indexes: indexes
                .into_iter()
                .map(
                    |(name, unique, method, columns, definition)| IndexDescriptor {
                        name,
                        is_unique: unique,
                        method: Some(method),
                        columns,
                        definition: Some(definition),
                    },
                )
                .collect(),
            // PostgreSQL reports -1 (14+) or 0 for a table never analyzed: unknown, not empty.
            row_estimate: (tuples > 0.0).then_some(tuples as i64),
        })
    }
}

/// The select list of a query read: each read column as its text rendering (arrays as JSON),
/// then each extra column (keys, for positions) as text.
fn select_list(read: &[CatalogColumn], extra: &[CatalogColumn]) -> String {
    outputs(read, extra, |_| true)
}

/// [`select_list`] for a `COPY`, which renders every value with its type's output function:
/// the `::text` cast is left out where it renders the same text (a cast through text costs the
/// server a copy of every value). Text types keep it (`character(n)::text` drops the padding,
/// `inet::text` adds the mask; for `text` and `varchar` it costs nothing).
fn copy_select_list(read: &[CatalogColumn], extra: &[CatalogColumn]) -> String {
    outputs(read, extra, |c| {
        matches!(c.data_type, Ok(DataType::Text { .. }) | Err(_))
    })
}

/// Read columns (arrays as JSON), then extra columns, each cast to text where `cast` says so.
/// Outputs get positional aliases: an output named like a table column would make
/// `ORDER BY col` sort the text rendering instead.
fn outputs(
    read: &[CatalogColumn],
    extra: &[CatalogColumn],
    cast: impl Fn(&CatalogColumn) -> bool,
) -> String {
    let rendered = |c: &CatalogColumn, as_json: bool| {
        if as_json {
            format!("to_json({})::text", quote(&c.name))
        } else if cast(c) {
            format!("{}::text", quote(&c.name))
        } else {
            quote(&c.name)
        }
    };
    read.iter()
        .map(|c| rendered(c, c.is_array))
        .chain(extra.iter().map(|c| rendered(c, false)))
        .enumerate()
        .map(|(i, expression)| format!("{expression} AS sb_c{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The values of the read columns, the first outputs of a row built by [`select_list`].
fn row_values(
    row: &sqlx::postgres::PgRow,
    read: &[CatalogColumn],
) -> Result<Vec<Value>, ConnectorError> {
    read.iter()
        .enumerate()
        .map(|(index, column)| {
            let text: Option<&str> = row
                .try_get(index)
                .map_err(|e| ConnectorError::internal(format!("column `{}`: {e}", column.name)))?;
            let data_type = column
                .data_type
                .as_ref()
                .map_err(|t| ConnectorError::internal(t.clone()))?;
            convert(text, data_type, column.is_array)
                .map_err(|m| ConnectorError::user(format!("column `{}`: {m}", column.name)))
        })
        .collect()
}

/// The text of `count` outputs from `from` on (the extra columns of [`select_list`]).
fn texts_after(row: &sqlx::postgres::PgRow, from: usize, count: usize) -> Vec<Option<String>> {
    (from..from + count)
        .map(|i| row.try_get::<Option<String>, _>(i).ok().flatten())
        .collect()
}

/// The values of the read columns, the first fields of a line of a copy of
/// [`copy_select_list`]. A plain loop: every value of a full read passes here.
fn line_values(line: &[u8], read: &[CatalogColumn]) -> Result<Vec<Value>, ConnectorError> {
    let mut values = Vec::with_capacity(read.len());
    let mut fields = copy::fields(line);
    for column in read {
        let Some(field) = fields.next() else {
            return Err(ConnectorError::internal("a copied row has too few fields"));
        };
        let bad = |m: String| ConnectorError::user(format!("column `{}`: {m}", column.name));
        let text = field.map_err(bad)?;
        let data_type = column
            .data_type
            .as_ref()
            .map_err(|t| ConnectorError::internal(t.clone()))?;
        values.push(convert(text.as_deref(), data_type, column.is_array).map_err(bad)?);
    }
    Ok(values)
}

/// The text of the key fields of a line, at `positions`.
fn line_keys(line: &[u8], positions: &[usize]) -> Result<Vec<Option<String>>, ConnectorError> {
    let fields: Vec<_> = copy::fields(line).collect();
    positions
        .iter()
        .map(|&position| match fields.get(position) {
            Some(Ok(text)) => Ok(text.as_deref().map(str::to_owned)),
            Some(Err(m)) => Err(ConnectorError::user(format!("a key column: {m}"))),
            None => Err(ConnectorError::internal("a copied row has too few fields")),
        })
        .collect()
}

/// The portable type of a catalog type; `None` for types SyncBridge cannot read directly.
fn map_type(
    base: &str,
    typtype: &str,
    typmod: Option<i64>,
    enum_values: Option<Vec<String>>,
    category: &str,
) -> Option<DataType> {
    if category == "A" {
        return Some(DataType::Json);
    }
    if typtype == "e" {
        return Some(DataType::Enum {
            values: enum_values.unwrap_or_default(),
        });
    }
    Some(match base {
        "bool" => DataType::Bool,
        "int2" => DataType::Int {
            bits: 16,
            unsigned: false,
        },
        "int4" => DataType::Int {
            bits: 32,
            unsigned: false,
        },
        "int8" => DataType::Int {
            bits: 64,
            unsigned: false,
        },
        "float4" => DataType::Float { bits: 32 },
        "float8" => DataType::Float { bits: 64 },
        "numeric" => {
            let (precision, scale) = match typmod {
                Some(m) if m >= 4 => (Some(((m - 4) >> 16) as u8), Some(((m - 4) & 0xffff) as u8)),
                _ => (None, None),
            };
            DataType::Decimal { precision, scale }
        }
        "money" => DataType::Decimal {
            precision: None,
            scale: Some(2),
        },
        "varchar" | "bpchar" => DataType::Text {
            max_length: typmod.filter(|m| *m > 4).map(|m| (m - 4) as u32),
        },
        "text" | "name" | "citext" | "interval" | "tsvector" | "inet" | "cidr" | "macaddr"
        | "xml" | "bit" | "varbit" => DataType::Text { max_length: None },
        "date" => DataType::Date,
        "time" | "timetz" => DataType::Time,
        "timestamp" => DataType::Timestamp,
        "timestamptz" => DataType::TimestampTz,
        "uuid" => DataType::Uuid,
        "json" | "jsonb" => DataType::Json,
        "bytea" => DataType::Bytes { max_length: None },
        _ => return None,
    })
}

/// Converts a column's text rendering to its portable value.
fn convert(text: Option<&str>, data_type: &DataType, is_array: bool) -> Result<Value, String> {
    let Some(text) = text else {
        return Ok(Value::Null);
    };
    let bad = |what: &str| format!("`{text}` is not a valid {what}");
    if is_array {
        return serde_json::from_str(text)
            .map(Value::Json)
            .map_err(|_| bad("array"));
    }
    Ok(match data_type {
        DataType::Bool => Value::Bool(text == "t" || text == "true"),
        DataType::Int { .. } => Value::Int(text.parse().map_err(|_| bad("integer"))?),
        DataType::Float { .. } => Value::Float(match text {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            other => other.parse().map_err(|_| bad("number"))?,
        }),
        DataType::Decimal { .. } => {
            // `money` renders with a currency sign and group separators.
            let parsed = if text.contains(['$', ',']) {
                let cleaned: String = text.chars().filter(|c| !matches!(c, '$' | ',')).collect();
                Decimal::from_str(&cleaned)
            } else {
                Decimal::from_str(text)
            };
            Value::Decimal(
                parsed.map_err(|e| format!("{e}; cast the column to text or float in a view"))?,
            )
        }
        DataType::Date => Value::Date(
            parse_iso_date(text)
                .or_else(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
                .ok_or_else(|| bad("date (infinity and BC dates are not supported)"))?,
        ),
        DataType::Time => {
            // `10:11:12`, `10:11:12.5`, or with a zone (`10:11:12+02`): the zone is dropped.
            let clock = text.split(['+', '-']).next().unwrap_or(text);
            Value::Time(NaiveTime::parse_from_str(clock, "%H:%M:%S%.f").map_err(|_| bad("time"))?)
        }
        DataType::Timestamp => Value::Timestamp(
            parse_iso_timestamp(text)
                .and_then(|(at, zone)| zone.is_none().then_some(at))
                .map_or_else(
                    || NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"),
                    Ok,
                )
                .map_err(|_| bad("timestamp"))?,
        ),
        DataType::TimestampTz => Value::TimestampTz(
            parse_iso_timestamp(text)
                .and_then(|(at, zone)| {
                    let zone = chrono::FixedOffset::east_opt(zone?)?;
                    at.and_local_timezone(zone).single()
                })
                .map_or_else(
                    || {
                        chrono::DateTime::parse_from_str(
                            &format!("{text}00"),
                            "%Y-%m-%d %H:%M:%S%.f%z",
                        )
                        .or_else(|_| {
                            chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%z")
                        })
                    },
                    Ok,
                )
                .map_err(|_| bad("timestamp with time zone"))?,
        ),
        DataType::Uuid => Value::Uuid(uuid::Uuid::parse_str(text).map_err(|_| bad("UUID"))?),
        DataType::Json => {
            Value::Json(serde_json::from_str(text).map_err(|_| bad("JSON document"))?)
        }
        DataType::Bytes { .. } => {
            let hex = text.strip_prefix("\\x").ok_or_else(|| bad("bytea"))?;
            Value::Bytes(
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad("bytea"))?,
            )
        }
        DataType::Text { .. } | DataType::Enum { .. } => Value::Text(text.to_owned()),
    })
}

/// `YYYY-MM-DD`, the ISO rendering of a date, read without a format string (chrono's
/// `parse_from_str` interprets its pattern on every call, which showed in full reads); `None`
/// for anything else, which the caller reads the slow way.
fn parse_iso_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(
        digits(&bytes[0..4])? as i32,
        digits(&bytes[5..7])?,
        digits(&bytes[8..10])?,
    )
}

/// `YYYY-MM-DD HH:MM:SS[.f…][±HH[:MM[:SS]]]`, the ISO rendering of a timestamp: the local
/// date and time and the zone offset in seconds, if any; `None` for anything else.
fn parse_iso_timestamp(text: &str) -> Option<(NaiveDateTime, Option<i32>)> {
    let bytes = text.as_bytes();
    if bytes.len() < 19 || bytes[10] != b' ' || bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let date = parse_iso_date(&text[..10])?;
    let (hour, minute, second) = (
        digits(&bytes[11..13])?,
        digits(&bytes[14..16])?,
        digits(&bytes[17..19])?,
    );
    let mut rest = &bytes[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let length = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if length == 0 || length > 9 {
            return None;
        }
        nanos = digits(&fraction[..length])? * 10u32.pow(9 - length as u32);
        rest = &fraction[length..];
    }
    let zone = match rest {
        [] => None,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            // `HH`, `HH:MM` or `HH:MM:SS`.
            if !matches!(rest.len(), 2 | 5 | 8) {
                return None;
            }
            let mut seconds = 0i32;
            for (part, unit) in rest.split(|b| *b == b':').zip([3600, 60, 1]) {
                if part.len() != 2 {
                    return None;
                }
                seconds += digits(part)? as i32 * unit;
            }
            Some(if *sign == b'-' { -seconds } else { seconds })
        }
        _ => return None,
    };
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    Some((date.and_time(time), zone))
}

/// The value of a run of ASCII digits; `None` if one is not a digit.
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |value, b| {
        b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast ISO readers agree with chrono's format-string parsing, and leave to it what they
    /// do not read.
    #[test]
    fn iso_dates_and_timestamps_read_as_chrono_reads_them() {
        for text in ["2024-02-29", "0001-01-01", "9999-12-31"] {
            assert_eq!(
                parse_iso_date(text),
                NaiveDate::parse_from_str(text, "%Y-%m-%d").ok(),
                "{text}"
            );
        }
        for text in [
            "2023-02-29",
            "2024-1-01",
            "10000-01-01",
            "2024-01-01 BC",
            "infinity",
        ] {
            assert_eq!(parse_iso_date(text), None, "{text}");
        }
        for text in [
            "2024-01-01 00:00:00",
            "2024-01-01 10:11:12.5",
            "2024-01-01 10:11:12.123456",
        ] {
            let expected = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok();
            assert_eq!(
                parse_iso_timestamp(text).map(|(at, _)| at),
                expected,
                "{text}"
            );
        }
        for text in [
            "2024-01-01 00:00:00+00",
            "2024-06-30 23:59:59.999999-07",
            "1900-01-01 12:00:00+05:45",
            "1890-01-01 12:00:00+00:53:28",
        ] {
            let expected =
                chrono::DateTime::parse_from_str(&format!("{text}00"), "%Y-%m-%d %H:%M:%S%.f%z")
                    .or_else(|_| chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%z"))
                    .ok();
            let fast = parse_iso_timestamp(text).and_then(|(at, zone)| {
                at.and_local_timezone(chrono::FixedOffset::east_opt(zone?)?)
                    .single()
            });
            if let Some(expected) = expected {
                assert_eq!(fast, Some(expected), "{text}");
            }
            assert!(fast.is_some(), "{text}");
        }
        for text in [
            "2024-01-01T00:00:00",
            "2024-01-01 24:00:00",
            "2024-01-01 00:00:00.",
            "x",
        ] {
            assert_eq!(parse_iso_timestamp(text), None, "{text}");
        }
    }

    #[test]
    fn values_convert_from_their_text() {
        let date = DataType::Date;
        assert_eq!(
            convert(Some("2024-03-01"), &date, false),
            Ok(Value::Date(
                NaiveDate::from_ymd_opt(2024, 3, 1).expect("valid")
            ))
        );
        assert!(convert(Some("infinity"), &date, false).is_err());
        let money = DataType::Decimal {
            precision: None,
            scale: Some(2),
        };
        assert_eq!(
            convert(Some("$1,234.50"), &money, false),
            Ok(Value::Decimal("1234.50".parse().expect("valid")))
        );
        let zoned = convert(
            Some("2024-01-01 10:00:00+02"),
            &DataType::TimestampTz,
            false,
        );
        assert_eq!(
            zoned,
            Ok(Value::TimestampTz(
                chrono::DateTime::parse_from_rfc3339("2024-01-01T10:00:00+02:00").expect("valid")
            ))
        );
    }
}
