//! Values across the boundary: `syncbridge_api::Value` ↔ the WIT `value`, exactly.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike as _};
use syncbridge_api::{RowView, Value};

use crate::bindings::{Field, Timestamptz, Value as WitValue};

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");

pub fn to_wit(value: &Value) -> WitValue {
    match value {
        Value::Null => WitValue::Null,
        Value::Bool(b) => WitValue::Boolean(*b),
        Value::Int(i) => WitValue::Int(*i),
        Value::Float(f) => WitValue::Float(*f),
        Value::Decimal(d) => WitValue::Decimal(d.to_string()),
        Value::Text(t) => WitValue::Text(t.clone()),
        Value::Bytes(b) => WitValue::Bytes(b.clone()),
        Value::Date(d) => WitValue::Date((*d - EPOCH).num_days() as i32),
        Value::Time(t) => WitValue::Time(
            i64::from(t.num_seconds_from_midnight()) * 1_000_000
                + i64::from(t.nanosecond() / 1_000),
        ),
        Value::Timestamp(ts) => WitValue::Timestamp(ts.and_utc().timestamp_micros()),
        Value::TimestampTz(ts) => WitValue::Timestamptz(Timestamptz {
            micros: ts.timestamp_micros(),
            offset_seconds: ts.offset().local_minus_utc(),
        }),
        Value::Uuid(u) => {
            let (high, low) = u.as_u64_pair();
            WitValue::Uuid((high, low))
        }
        Value::Json(j) => WitValue::Json(j.to_string()),
    }
}

/// Back from the guest; a value that cannot be one of ours is the guest's error.
pub fn from_wit(value: WitValue) -> Result<Value, String> {
    Ok(match value {
        WitValue::Null => Value::Null,
        WitValue::Boolean(b) => Value::Bool(b),
        WitValue::Int(i) => Value::Int(i),
        WitValue::Float(f) => Value::Float(f),
        WitValue::Decimal(d) => Value::Decimal(
            d.parse()
                .map_err(|e| format!("the guest returned `{d}` as a decimal: {e}"))?,
        ),
        WitValue::Text(t) => Value::Text(t),
        WitValue::Bytes(b) => Value::Bytes(b),
        WitValue::Date(days) => Value::Date(
            EPOCH
                .checked_add_signed(chrono::Duration::days(i64::from(days)))
                .ok_or_else(|| format!("the guest returned day {days}, out of range"))?,
        ),
        WitValue::Time(micros) => {
            let seconds = u32::try_from(micros.div_euclid(1_000_000))
                .map_err(|_| format!("the guest returned time {micros} µs, out of range"))?;
            let nanos = (micros.rem_euclid(1_000_000) * 1_000) as u32;
            Value::Time(
                NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos)
                    .ok_or_else(|| format!("the guest returned time {micros} µs, out of range"))?,
            )
        }
        WitValue::Timestamp(micros) => Value::Timestamp(
            DateTime::from_timestamp_micros(micros)
                .map(|t| t.naive_utc())
                .ok_or_else(|| format!("the guest returned timestamp {micros} µs, out of range"))?,
        ),
        WitValue::Timestamptz(Timestamptz {
            micros,
            offset_seconds,
        }) => {
            let offset = FixedOffset::east_opt(offset_seconds)
                .ok_or_else(|| format!("the guest returned offset {offset_seconds} s"))?;
            let utc: NaiveDateTime = DateTime::from_timestamp_micros(micros)
                .map(|t| t.naive_utc())
                .ok_or_else(|| format!("the guest returned timestamp {micros} µs, out of range"))?;
            Value::TimestampTz(DateTime::from_naive_utc_and_offset(utc, offset))
        }
        WitValue::Uuid((high, low)) => Value::Uuid(uuid::Uuid::from_u64_pair(high, low)),
        WitValue::Json(text) => Value::Json(
            serde_json::from_str(&text)
                .map_err(|e| format!("the guest returned invalid JSON: {e}"))?,
        ),
    })
}

/// A row as the guest sees it.
pub fn row_to_wit(row: RowView<'_>) -> Vec<Field> {
    row.columns
        .iter()
        .zip(row.values)
        .map(|(name, value)| Field {
            name: name.clone(),
            value: to_wit(value),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_goes_there_and_back() {
        let values = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-7),
            Value::Float(1.5),
            Value::Decimal("-12.3400".parse().expect("decimal")),
            Value::Text("ada".into()),
            Value::Bytes(vec![0, 255]),
            Value::Date(NaiveDate::from_ymd_opt(1969, 12, 31).expect("date")),
            Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 59, 123_456).expect("time")),
            Value::Timestamp(
                NaiveDate::from_ymd_opt(2026, 11, 30)
                    .and_then(|d| d.and_hms_micro_opt(1, 2, 3, 4))
                    .expect("timestamp"),
            ),
            Value::TimestampTz(
                DateTime::parse_from_rfc3339("2026-11-30T01:02:03.000004-05:00").expect("tz"),
            ),
            Value::Uuid(uuid::Uuid::from_u128(
                0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
            )),
            Value::Json(serde_json::json!({"a": [1, null]})),
        ];
        for value in values {
            assert_eq!(from_wit(to_wit(&value)).expect("back"), value);
        }
    }
}
