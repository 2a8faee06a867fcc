//! Keyset reads (`FULL_SCAN`, `UPDATED_AT`, and the snapshot of `LSN`).

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use futures::StreamExt as _;
use syncbridge_api::{
    BatchStream, ConnectorError, DataType, KeysetPlan, KeysetPosition, ReadRequest, Row, RowBatch,
    Value,
};

use crate::catalog::{self, CatalogColumn};
use crate::connect::{self, Connection, Param, rows};
use crate::convert::{self, ReadAs};
use crate::{SqlServerConfig, quote, table_sql};

/// A key or watermark value as kept in positions (a format this module parses back).
pub(crate) fn position_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Timestamp(t) => Some(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
        Value::TimestampTz(t) => Some(t.to_rfc3339()),
        Value::Date(d) => Some(d.format("%Y-%m-%d").to_string()),
        Value::Bytes(b) => Some(hex::encode(b)),
        Value::Text(t) => Some(t.clone()),
        other => Some(other.to_string()),
    }
}

/// A parameter for a value read back from a position, typed by its column.
pub(crate) fn param_from_text(text: &str, data_type: &DataType) -> Result<Param, ConnectorError> {
    let bad = |e: String| {
        ConnectorError::internal(format!(
            "unreadable SQL Server position value `{text}`: {e}"
        ))
    };
    Ok(match data_type {
        DataType::Int { .. } => Param::Int(
            text.parse()
                .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?,
        ),
        DataType::Bool => Param::Int(i64::from(text == "true" || text == "1")),
        DataType::Timestamp => Param::Timestamp(
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .map_err(|e| bad(e.to_string()))?,
        ),
        DataType::Date => Param::Date(
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| bad(e.to_string()))?,
        ),
        DataType::Bytes { .. } => Param::Bytes(hex::decode(text).map_err(|e| bad(e.to_string()))?),
        // Decimal, UUID, text, datetimeoffset: SQL Server converts the text implicitly.
        _ => Param::Text(text.to_owned()),
    })
}

/// A parameter for a value read from the server (change-tracking keys).
pub(crate) fn param_from_value(value: &Value) -> Param {
    match value {
        Value::Int(v) => Param::Int(*v),
        Value::Bool(v) => Param::Int(i64::from(*v)),
        Value::Timestamp(t) => Param::Timestamp(*t),
        Value::Date(d) => Param::Date(*d),
        Value::Bytes(b) => Param::Bytes(b.clone()),
        other => Param::Text(position_text(other).unwrap_or_default()),
    }
}

/// The select list: the read columns, then the order columns (for positions).
pub(crate) fn select_list(read: &[CatalogColumn], order: &[CatalogColumn]) -> String {
    read.iter()
        .chain(order)
        .enumerate()
        .map(|(i, c)| format!("{} AS [sb_c{i}]", c.read_as.expression(&quote(&c.name))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The expanded keyset condition `(k1 > @Pn) OR (k1 = @Pn+1 AND k2 > @Pn+2) …`, with its
/// parameters numbered from `first`.
pub(crate) fn keyset_condition(
    order: &[CatalogColumn],
    after: &[Option<String>],
    first: usize,
) -> Result<(String, Vec<Param>), ConnectorError> {
    let mut terms = Vec::new();
    let mut params = Vec::new();
    let mut n = first;
    for i in 0..order.len() {
        let mut parts = Vec::new();
        for (j, column) in order[..=i].iter().enumerate() {
            let op = if j == i { ">" } else { "=" };
            let text = after.get(j).cloned().flatten().ok_or_else(|| {
                ConnectorError::user(format!(
                    "a NULL in key column `{}` cannot be paged past",
                    column.name
                ))
                .with_hint("key columns must be NOT NULL; choose another key")
            })?;
            let data_type = column
                .data_type
                .clone()
                .unwrap_or(DataType::Text { max_length: None });
            params.push(param_from_text(&text, &data_type)?);
            parts.push(format!("{} {op} @P{n}", quote(&column.name)));
            n += 1;
        }
        terms.push(format!("({})", parts.join(" AND ")));
    }
    Ok((terms.join(" OR "), params))
}

/// Reads converted rows; the last `extra` values of each row are returned separately as text.
pub(crate) fn convert_rows(
    raw: Vec<tiberius::Row>,
    read_as: &[ReadAs],
    width: usize,
    table: &str,
) -> Result<(Vec<Row>, Vec<Option<String>>), ConnectorError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut last = Vec::new();
    for row in raw {
        let mut values = convert::row(row, read_as)
            .map_err(|m| ConnectorError::user(format!("a value of `{table}`: {m}")))?;
        let extra = values.split_off(width);
        last = extra.iter().map(position_text).collect();
        out.push(Row::new(values));
    }
    Ok((out, last))
}

/// A keyset read as a stream of batches, each with its [`KeysetPosition`].
pub(crate) fn keyset_stream(
    mut client: Connection,
    address: String,
    request: &ReadRequest,
    plan: KeysetPlan<CatalogColumn>,
) -> impl futures::Stream<Item = Result<(RowBatch, KeysetPosition), ConnectorError>> + Send + 'static
{
    let read = plan.read.clone();
    let order = plan.order.clone();
    let read_as: Vec<ReadAs> = read.iter().chain(&order).map(|c| c.read_as).collect();
    let width = read.len();
    let batch_size = request.batch_size.max(1);
    let base = format!(
        "SELECT TOP ({batch_size}) {} FROM {}",
        select_list(&read, &order),
        table_sql(&request.table)
    );
    let order_sql = order
        .iter()
        .map(|c| quote(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let table = request.table.to_string();
    let columns: Arc<[String]> = plan.columns.clone().into();
    async_stream::try_stream! {
        let (mut after, start) = plan.start();
        loop {
            let mut sql = base.clone();
            let mut params = Vec::new();
            match (&after, &plan.watermark, &start) {
                (Some(values), _, _) => {
                    let (condition, p) = keyset_condition(&order, values, 1)?;
                    sql.push_str(&format!(" WHERE {condition}"));
                    params = p;
                }
                (None, Some(column), Some(mark)) => {
                    sql.push_str(&format!(" WHERE {} >= @P1", quote(&column.name)));
                    params.push(watermark_param(column, mark, plan.look_back)?);
                }
                _ => {}
            }
            sql.push_str(&format!(" ORDER BY {order_sql}"));
            let raw = rows(&mut client, &address, &sql, params).await?;
            if raw.is_empty() {
                break;
            }
            let count = raw.len();
            let (out, last) = convert_rows(raw, &read_as, width, &table)?;
            let position = plan.position_after(&last);
            after = Some(last);
            yield (RowBatch { columns: columns.clone(), rows: out, position: None, notes: Vec::new(), fingerprints: Vec::new(), unconverted: None, }, position);
            if count < batch_size {
                break;
            }
        }
    }
}

/// The watermark minus the look-back, as a parameter of the watermark column's type.
fn watermark_param(
    column: &CatalogColumn,
    mark: &str,
    look_back: std::time::Duration,
) -> Result<Param, ConnectorError> {
    let back = chrono::Duration::from_std(look_back).unwrap_or_default();
    match column.data_type {
        Some(DataType::Timestamp) => {
            let at = NaiveDateTime::parse_from_str(mark, "%Y-%m-%dT%H:%M:%S%.f").map_err(|e| {
                ConnectorError::internal(format!("unreadable watermark `{mark}`: {e}"))
            })?;
            Ok(Param::Timestamp(at - back))
        }
        Some(DataType::Date) => {
            let day = NaiveDate::parse_from_str(mark, "%Y-%m-%d").map_err(|e| {
                ConnectorError::internal(format!("unreadable watermark `{mark}`: {e}"))
            })?;
            Ok(Param::Date(
                day - chrono::Duration::days((back.num_seconds() + 86_399) / 86_400),
            ))
        }
        _ => Err(ConnectorError::user(format!(
            "the UPDATED_AT column `{}` is {}, not a date or datetime",
            column.name, column.type_name
        ))
        .with_hint(
            "use a datetime2, datetime or date column, or cursor LSN (change tracking, rowversion)",
        )),
    }
}

/// `FULL_SCAN` and `UPDATED_AT`.
pub(crate) async fn keyset(
    config: SqlServerConfig,
    address: String,
    request: ReadRequest,
) -> Result<BatchStream, ConnectorError> {
    let mut client = connect::open(&config).await?;
    let object = catalog::object_id(&mut client, &address, &request.table).await?;
    let catalog = catalog::columns_of(&mut client, &address, object).await?;
    let plan = KeysetPlan::new(&request, &catalog, "SQL Server", |c| {
        format!("CAST({} AS nvarchar(max))", quote(c))
    })?;
    let stream = keyset_stream(client, address, &request, plan).map(|item| {
        item.map(|(mut batch, position)| {
            batch.position = position.to_position();
            batch
        })
    });
    Ok(stream.boxed())
}
