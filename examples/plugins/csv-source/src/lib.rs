//! An example native plugin: a source whose "database" is a directory and whose tables are the
//! `*.csv` files in it (`projects.csv` is table `projects`).
//!
//! It is an ordinary [`Source`] implementation, exported with one macro line at the bottom.
//!
//! - **Columns** come from the header row; each column's type is inferred from its values
//!   (integer, decimal, boolean, date, timestamp, else text). An empty field is NULL.
//! - **Key**: a column named `id` is reported as the primary key (or the column named by the
//!   `primary_key` option); syncs may name any other key columns.
//! - **Cursor**: `FULL_SCAN` only (a file has no change log or reliable modification column);
//!   deletes are found by the engine. Rows are served in key order and every batch carries the
//!   last key, so a read resumes after it.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use futures::StreamExt as _;
use serde::Deserialize;
use syncbridge_plugin::api::{
    BatchStream, ColumnDescriptor, ConnectorError, ConstraintDescriptor, ConstraintKind,
    CursorSpec, DataType, Decimal, Position, ReadRequest, Row, RowBatch, Source, TableDescriptor,
    TableKind, TableRef, Value,
};

/// The source's configuration: what SyncBridge passes for `databases[]` with `type: csv`.
#[derive(Debug, Clone, Deserialize)]
pub struct CsvConfig {
    /// The directory holding the CSV files (a database's `database_name` / instance `db_name`).
    pub path: PathBuf,
    /// Options from the instance's `options:` map.
    #[serde(default)]
    pub options: CsvOptions,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CsvOptions {
    /// The field separator (default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// The column reported as primary key (default `id`, when there is one).
    #[serde(default)]
    pub primary_key: Option<String>,
}

/// A directory of CSV files.
#[derive(Debug, Clone)]
pub struct CsvSource {
    dir: PathBuf,
    delimiter: u8,
    primary_key: String,
}

/// A file read whole: its header, inferred types and typed rows.
#[derive(Debug)]
struct Table {
    columns: Vec<String>,
    types: Vec<DataType>,
    rows: Vec<Vec<Value>>,
}

impl CsvSource {
    fn file(&self, table: &TableRef) -> PathBuf {
        self.dir.join(format!("{}.csv", table.name))
    }

    fn tables(&self) -> Result<Vec<TableRef>, ConnectorError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| {
            ConnectorError::user(format!("cannot list {}: {e}", self.dir.display()))
        })?;
        let mut tables: Vec<TableRef> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|x| x == "csv"))
            .filter_map(|path| {
                let stem = path.file_stem()?.to_str()?.to_owned();
                Some(TableRef::new(None, &stem))
            })
            .collect();
        tables.sort();
        Ok(tables)
    }

    fn load(&self, table: &TableRef) -> Result<Table, ConnectorError> {
        let path = self.file(table);
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .from_path(&path)
            .map_err(|e| read_error(&path, e))?;
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| read_error(&path, e))?
            .iter()
            .map(str::to_owned)
            .collect();
        let mut raw: Vec<csv::StringRecord> = Vec::new();
        for record in reader.records() {
            raw.push(record.map_err(|e| read_error(&path, e))?);
        }
        let types: Vec<DataType> = (0..columns.len())
            .map(|i| {
                infer(
                    raw.iter()
                        .filter_map(|r| r.get(i))
                        .filter(|v| !v.is_empty()),
                )
            })
            .collect();
        let rows = raw
            .iter()
            .map(|record| {
                types
                    .iter()
                    .enumerate()
                    .map(|(i, data_type)| parse(record.get(i).unwrap_or(""), data_type))
                    .collect()
            })
            .collect();
        Ok(Table {
            columns,
            types,
            rows,
        })
    }
}

fn read_error(path: &Path, error: csv::Error) -> ConnectorError {
    let hint = "check that the file exists and is comma-separated UTF-8 with a header row";
    if error.is_io_error() {
        ConnectorError::user(format!("cannot read {}: {error}", path.display())).with_hint(hint)
    } else {
        ConnectorError::user(format!("{} is not valid CSV: {error}", path.display()))
            .with_hint(hint)
    }
}

fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()
}

/// The narrowest type every non-empty value of a column parses as.
fn infer<'a>(values: impl Iterator<Item = &'a str> + Clone) -> DataType {
    let all = |check: &dyn Fn(&str) -> bool| values.clone().all(check);
    if values.clone().next().is_none() {
        DataType::Text { max_length: None }
    } else if all(&|v| v.parse::<i64>().is_ok()) {
        DataType::Int {
            bits: 64,
            unsigned: false,
        }
    } else if all(&|v| Decimal::from_str(v).is_ok()) {
        DataType::Decimal {
            precision: None,
            scale: None,
        }
    } else if all(&|v| v == "true" || v == "false") {
        DataType::Bool
    } else if all(&|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok()) {
        DataType::Date
    } else if all(&|v| parse_timestamp(v).is_some()) {
        DataType::Timestamp
    } else {
        DataType::Text { max_length: None }
    }
}

fn parse(text: &str, data_type: &DataType) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    let parsed = match data_type {
        DataType::Int { .. } => text.parse().ok().map(Value::Int),
        DataType::Decimal { .. } => Decimal::from_str(text).ok().map(Value::Decimal),
        DataType::Bool => Some(Value::Bool(text == "true")),
        DataType::Date => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .map(Value::Date),
        DataType::Timestamp => parse_timestamp(text).map(Value::Timestamp),
        _ => None,
    };
    parsed.unwrap_or_else(|| Value::Text(text.to_owned()))
}

/// Orders key values: NULL first, then by value within a type.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Int(a), Value::Int(b)) => a.cmp(b),
        (Value::Decimal(a), Value::Decimal(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Date(a), Value::Date(b)) => a.cmp(b),
        (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
        (Value::Text(a), Value::Text(b)) => a.cmp(b),
        (a, b) => a.to_string().cmp(&b.to_string()),
    }
}

fn compare_keys(a: &[Value], b: &[Value]) -> Ordering {
    a.iter()
        .zip(b)
        .map(|(a, b)| compare(a, b))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

impl Source for CsvSource {
    type Config = CsvConfig;
    const KIND: &'static str = "csv";

    async fn connect(config: CsvConfig) -> Result<Self, ConnectorError> {
        if !config.path.is_dir() {
            return Err(ConnectorError::user(format!(
                "the csv source needs a directory, and {} is not one",
                config.path.display()
            ))
            .with_hint("set the database's `database_name` (or the instance's `db_name`) to the directory holding the .csv files"));
        }
        let delimiter = config.options.delimiter.unwrap_or(',');
        if !delimiter.is_ascii() {
            return Err(ConnectorError::user(format!(
                "the csv delimiter `{delimiter}` is not an ASCII character"
            )));
        }
        tracing::info!(dir = %config.path.display(), "csv source opened");
        Ok(Self {
            dir: config.path,
            delimiter: delimiter as u8,
            primary_key: config
                .options
                .primary_key
                .unwrap_or_else(|| "id".to_owned()),
        })
    }

    async fn healthcheck(&self) -> Result<(), ConnectorError> {
        self.tables().map(|_| ())
    }

    async fn introspect(
        &self,
        tables: Option<&[TableRef]>,
    ) -> Result<Vec<TableDescriptor>, ConnectorError> {
        let tables = match tables {
            Some(tables) => tables.to_vec(),
            None => self.tables()?,
        };
        let mut described = Vec::new();
        for table in tables {
            let loaded = self.load(&table)?;
            let has_key = loaded.columns.contains(&self.primary_key);
            let columns = loaded
                .columns
                .iter()
                .zip(&loaded.types)
                .enumerate()
                .map(|(i, (name, data_type))| ColumnDescriptor {
                    name: name.clone(),
                    ordinal: i as u32 + 1,
                    data_type: data_type.clone(),
                    native_type: "csv".to_owned(),
                    nullable: *name != self.primary_key,
                    default: None,
                    is_identity: false,
                    is_primary_key: *name == self.primary_key,
                    is_unique: *name == self.primary_key,
                })
                .collect();
            let constraints = if has_key {
                vec![ConstraintDescriptor {
                    name: format!("{}_pkey", table.name),
                    kind: ConstraintKind::PrimaryKey,
                    columns: vec![self.primary_key.clone()],
                    referenced_table: None,
                    referenced_columns: Vec::new(),
                    definition: None,
                }]
            } else {
                Vec::new()
            };
            described.push(TableDescriptor {
                table,
                kind: TableKind::Base,
                columns,
                constraints,
                indexes: Vec::new(),
                row_estimate: Some(loaded.rows.len() as i64),
            });
        }
        Ok(described)
    }

    async fn read(&self, request: ReadRequest) -> Result<BatchStream, ConnectorError> {
        if !matches!(request.cursor, CursorSpec::FullScan) {
            return Err(ConnectorError::user(
                "the csv source reads whole files: only the FULL_SCAN cursor is supported",
            )
            .with_hint("set the sync's `cursor.strategy` to FULL_SCAN"));
        }
        let table = self.load(&request.table)?;
        let index = |name: &String| {
            table.columns.iter().position(|c| c == name).ok_or_else(|| {
                ConnectorError::user(format!(
                    "{} has no column `{name}`; it has {}",
                    self.file(&request.table).display(),
                    table.columns.join(", ")
                ))
            })
        };
        let wanted: Vec<String> = if request.columns.is_empty() {
            table.columns.clone()
        } else {
            request.columns.clone()
        };
        let picks = wanted.iter().map(index).collect::<Result<Vec<_>, _>>()?;
        let keys = request
            .key
            .iter()
            .map(index)
            .collect::<Result<Vec<_>, _>>()?;
        let after: Option<Vec<Value>> = match &request.from {
            Some(position) => Some(serde_json::from_str(&position.0).map_err(|e| {
                ConnectorError::user(format!("`{}` is not a csv position: {e}", position.0))
                    .with_hint("run with --full to start over")
            })?),
            None => None,
        };

        let key_of =
            |row: &Vec<Value>| -> Vec<Value> { keys.iter().map(|&i| row[i].clone()).collect() };
        let mut rows: Vec<(Vec<Value>, Vec<Value>)> = table
            .rows
            .into_iter()
            .map(|row| (key_of(&row), row))
            .filter(|(key, _)| {
                after
                    .as_ref()
                    .is_none_or(|after| compare_keys(key, after) == Ordering::Greater)
            })
            .collect();
        rows.sort_by(|a, b| compare_keys(&a.0, &b.0));

        let columns: Arc<[String]> = wanted.into();
        let batch_size = request.batch_size.max(1);
        let mut batches = Vec::new();
        for chunk in rows.chunks(batch_size) {
            let last = chunk.last().map(|(key, _)| key.clone()).unwrap_or_default();
            let position = serde_json::to_string(&last)
                .map_err(|e| ConnectorError::internal(format!("cannot encode a position: {e}")))?;
            batches.push(Ok(RowBatch {
                columns: columns.clone(),
                rows: chunk
                    .iter()
                    .map(|(_, row)| Row::new(picks.iter().map(|&i| row[i].clone()).collect()))
                    .collect(),
                position: Some(Position(position)),
                notes: Vec::new(),
                fingerprints: Vec::new(),
                unconverted: None,
            }));
        }
        Ok(futures::stream::iter(batches).boxed())
    }
}

syncbridge_plugin::declare_source_plugin!(CsvSource);
