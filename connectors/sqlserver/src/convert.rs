//! tiberius values into SyncBridge values, exactly.

use std::str::FromStr as _;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use syncbridge_api::{Decimal, Value};
use tiberius::{ColumnData, FromSql};

/// How a column is read: as is, or through a cast that avoids a tiberius panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadAs {
    Plain,
    /// `decimal(38,38)`: tiberius asserts scale < 38; read as text, parsed here.
    DecimalText,
    /// `hierarchyid`, `sql_variant`: read as their text form.
    Text,
}

impl ReadAs {
    /// The select-list expression for column `quoted`.
    pub(crate) fn expression(self, quoted: &str) -> String {
        match self {
            ReadAs::Plain => quoted.to_owned(),
            ReadAs::DecimalText => format!("CAST({quoted} AS varchar(50))"),
            ReadAs::Text => format!("CAST({quoted} AS nvarchar(4000))"),
        }
    }
}

fn chrono_value<'a, T: FromSql<'a>>(data: &'a ColumnData<'static>) -> Result<Option<T>, String> {
    T::from_sql(data).map_err(|e| e.to_string())
}

/// One value.
pub(crate) fn value(data: &ColumnData<'static>, read_as: ReadAs) -> Result<Value, String> {
    if read_as == ReadAs::DecimalText {
        return match data {
            ColumnData::String(None) => Ok(Value::Null),
            ColumnData::String(Some(text)) => Decimal::from_str(text.trim())
                .map(Value::Decimal)
                .map_err(|e| format!("`{text}` is not a decimal: {e}")),
            other => Err(format!("expected a decimal as text, got {other:?}")),
        };
    }
    Ok(match data {
        ColumnData::U8(v) => v.map_or(Value::Null, |v| Value::Int(i64::from(v))),
        ColumnData::I16(v) => v.map_or(Value::Null, |v| Value::Int(i64::from(v))),
        ColumnData::I32(v) => v.map_or(Value::Null, |v| Value::Int(i64::from(v))),
        ColumnData::I64(v) => v.map_or(Value::Null, Value::Int),
        ColumnData::F32(v) => v.map_or(Value::Null, |v| Value::Float(f64::from(v))),
        ColumnData::F64(v) => v.map_or(Value::Null, Value::Float),
        ColumnData::Bit(v) => v.map_or(Value::Null, Value::Bool),
        ColumnData::String(v) => v
            .as_ref()
            .map_or(Value::Null, |s| Value::Text(s.to_string())),
        ColumnData::Guid(v) => v.map_or(Value::Null, Value::Uuid),
        ColumnData::Binary(v) => v.as_ref().map_or(Value::Null, |b| Value::Bytes(b.to_vec())),
        ColumnData::Numeric(v) => match v {
            None => Value::Null,
            Some(n) => Decimal::new(n.value(), n.scale())
                .map(Value::Decimal)
                .ok_or_else(|| format!("the decimal {n} has more than 38 digits"))?,
        },
        ColumnData::Xml(v) => v
            .as_ref()
            .map_or(Value::Null, |x| Value::Text(x.to_string())),
        ColumnData::Date(_) => chrono_value::<NaiveDate>(data)?.map_or(Value::Null, Value::Date),
        ColumnData::Time(_) => chrono_value::<NaiveTime>(data)?.map_or(Value::Null, Value::Time),
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            chrono_value::<NaiveDateTime>(data)?.map_or(Value::Null, Value::Timestamp)
        }
        ColumnData::DateTimeOffset(_) => {
            chrono_value::<DateTime<FixedOffset>>(data)?.map_or(Value::Null, Value::TimestampTz)
        }
    })
}

/// A row's values, in order.
pub(crate) fn row(row: tiberius::Row, read_as: &[ReadAs]) -> Result<Vec<Value>, String> {
    row.into_iter()
        .enumerate()
        .map(|(i, data)| value(&data, read_as.get(i).copied().unwrap_or(ReadAs::Plain)))
        .collect()
}

/// A catalog value as text (`None` for NULL).
pub(crate) fn text(row: &tiberius::Row, index: usize) -> Option<String> {
    row.try_get::<&str, _>(index)
        .ok()
        .flatten()
        .map(str::to_owned)
}

/// A catalog value as an integer of any width.
pub(crate) fn int(row: &tiberius::Row, index: usize) -> Option<i64> {
    let cell = row.cells().nth(index)?.1;
    match cell {
        ColumnData::U8(v) => v.map(i64::from),
        ColumnData::I16(v) => v.map(i64::from),
        ColumnData::I32(v) => v.map(i64::from),
        ColumnData::I64(v) => *v,
        ColumnData::Bit(v) => v.map(i64::from),
        _ => None,
    }
}
