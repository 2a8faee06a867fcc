//! From the value model to SharePoint field values (graph-api.md §10), column type by column
//! type, with the documented traps handled explicitly:
//! - text longer than the column allows is refused (or truncated when configured);
//! - dates go out as UTC ISO 8601 with `Z`; a date without time is midnight UTC;
//! - numbers and currency are doubles in SharePoint: decimals are sent as the nearest double;
//! - lookups and person columns are written as `{Name}LookupId` with an integer id (person columns
//!   need the site's user id, not an Entra object id);
//! - multi-value choices carry the `@odata.type` collection annotation;
//! - hyperlink columns cannot be written through Graph: refused with that reason;
//! - NULL clears the field.

use serde_json::{Value as Json, json};
use syncbridge_api::Value;

use crate::config::TextOverflow;

/// A list column as the encoder needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// Graph's facet name: `text`, `number`, `currency`, `boolean`, `dateTime`, `choice`,
    /// `lookup`, `personOrGroup`, `hyperlinkOrPicture` …
    pub kind: String,
    pub max_length: Option<usize>,
    pub choices: Vec<String>,
    pub read_only: bool,
    /// A `dateTime` column with `format: dateOnly`.
    pub date_only: bool,
}

impl ColumnInfo {
    /// Reads a columnDefinition.
    pub fn from_graph(column: &Json) -> Option<Self> {
        let name = column.get("name")?.as_str()?.to_owned();
        let kinds = [
            "text",
            "number",
            "currency",
            "boolean",
            "dateTime",
            "choice",
            "lookup",
            "personOrGroup",
            "hyperlinkOrPicture",
            "calculated",
        ];
        let kind = kinds
            .iter()
            .find(|k| column.get(**k).is_some())
            .map_or("unknown", |k| *k)
            .to_owned();
        let facet = column.get(&kind).cloned().unwrap_or_default();
        let max_length = if kind == "text" {
            if facet
                .get("allowMultipleLines")
                .and_then(Json::as_bool)
                .unwrap_or(false)
            {
                Some(63_999)
            } else {
                Some(facet.get("maxLength").and_then(Json::as_u64).unwrap_or(255) as usize)
            }
        } else {
            None
        };
        let choices = facet
            .get("choices")
            .and_then(Json::as_array)
            .map(|c| {
                c.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let date_only = facet.get("format").and_then(Json::as_str) == Some("dateOnly");
        Some(Self {
            name,
            kind,
            max_length,
            choices,
            date_only,
            read_only: column
                .get("readOnly")
                .and_then(Json::as_bool)
                .unwrap_or(false),
        })
    }
}

/// Why a value cannot be written to its column: the row is dead-lettered with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column `{column}`: {message}")]
pub struct EncodeError {
    pub column: String,
    pub message: String,
}

fn text_of(value: &Value) -> String {
    match value {
        Value::Text(t) => t.clone(),
        Value::Decimal(d) => d.to_string(),
        Value::TimestampTz(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        other => other.to_string(),
    }
}

/// The `(key, value)` pairs to put in `fields` for one column.
pub fn encode(
    column: &ColumnInfo,
    value: &Value,
    overflow: TextOverflow,
) -> Result<Vec<(String, Json)>, EncodeError> {
    let fail = |message: String| EncodeError {
        column: column.name.clone(),
        message,
    };
    if column.read_only {
        return Err(fail("the column is read-only in SharePoint".into()));
    }
    if value.is_null() {
        let key = if matches!(column.kind.as_str(), "lookup" | "personOrGroup") {
            format!("{}LookupId", column.name)
        } else {
            column.name.clone()
        };
        return Ok(vec![(key, Json::Null)]);
    }
    let single = |json: Json| Ok(vec![(column.name.clone(), json)]);
    match column.kind.as_str() {
        "text" | "unknown" | "calculated" => {
            let mut text = text_of(value);
            if let Some(max) = column.max_length {
                let length = text.chars().count();
                if length > max {
                    match overflow {
                        TextOverflow::DeadLetter => {
                            return Err(fail(format!("{length} characters do not fit the column's maximum of {max}; shorten the value, map it to a multi-line column, or set text_overflow: truncate")));
                        }
                        TextOverflow::Truncate => text = text.chars().take(max).collect(),
                    }
                }
            }
            single(Json::String(text))
        }
        "number" | "currency" => match value {
            Value::Int(n) => single(json!(n)),
            Value::Float(f) if f.is_finite() => single(json!(f)),
            Value::Decimal(d) => single(json!(d.to_f64())),
            Value::Bool(b) => single(json!(i64::from(*b))),
            Value::Text(t) => match t.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => single(json!(f)),
                _ => Err(fail(format!("`{t}` is not a number"))),
            },
            other => Err(fail(format!("a {} value cannot go into a number column", other.type_name()))),
        },
        "boolean" => match value {
            Value::Bool(b) => single(json!(b)),
            Value::Int(0) => single(json!(false)),
            Value::Int(1) => single(json!(true)),
            Value::Text(t) if matches!(t.to_ascii_lowercase().as_str(), "true" | "yes" | "1") => single(json!(true)),
            Value::Text(t) if matches!(t.to_ascii_lowercase().as_str(), "false" | "no" | "0") => single(json!(false)),
            other => Err(fail(format!("`{other}` is not a yes/no value"))),
        },
        // A date-only column stores local midnight of the site's time zone. An instant would be
        // converted to that zone first (midnight UTC is the previous evening west of UTC, a day
        // early), so dates go as plain `YYYY-MM-DD`, which SharePoint reads as a local date.
        "dateTime" if column.date_only => {
            let date = match value {
                Value::Date(d) => *d,
                Value::Timestamp(t) => t.date(),
                Value::TimestampTz(t) => t.date_naive(),
                Value::Text(t) => chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                    .or_else(|_| chrono::DateTime::parse_from_rfc3339(t).map(|t| t.date_naive()))
                    .map_err(|_| fail(format!("`{t}` is not an ISO 8601 date")))?,
                other => return Err(fail(format!("a {} value cannot go into a date column", other.type_name()))),
            };
            single(Json::String(date.format("%Y-%m-%d").to_string()))
        }
        "dateTime" => {
            let utc = match value {
                Value::Date(d) => d.and_time(chrono::NaiveTime::MIN).and_utc(),
                Value::Timestamp(t) => t.and_utc(),
                Value::TimestampTz(t) => t.with_timezone(&chrono::Utc),
                Value::Text(t) => chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|_| fail(format!("`{t}` is not an ISO 8601 date and time")))?,
                other => return Err(fail(format!("a {} value cannot go into a date column", other.type_name()))),
            };
            single(Json::String(utc.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        }
        "choice" => match value {
            Value::Json(Json::Array(items)) => {
                let values: Vec<String> = items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect();
                for v in &values {
                    check_choice(column, v).map_err(fail)?;
                }
                Ok(vec![
                    (format!("{}@odata.type", column.name), Json::String("Collection(Edm.String)".into())),
                    (column.name.clone(), json!(values)),
                ])
            }
            other => {
                let text = text_of(other);
                check_choice(column, &text).map_err(fail)?;
                single(Json::String(text))
            }
        },
        "lookup" | "personOrGroup" => {
            let key = format!("{}LookupId", column.name);
            match value {
                Value::Int(id) => Ok(vec![(key, json!(id))]),
                Value::Json(Json::Array(ids)) => Ok(vec![
                    (format!("{key}@odata.type"), Json::String("Collection(Edm.Int32)".into())),
                    (key, Json::Array(ids.clone())),
                ]),
                other => Err(fail(format!(
                    "lookup and person columns take the integer id of the target item or site user, got `{other}`{}",
                    if column.kind == "personOrGroup" { " (person columns need the user's id in the site's User Information List, not an e-mail or Entra object id)" } else { "" }
                ))),
            }
        }
        "hyperlinkOrPicture" => Err(fail("hyperlink and picture columns cannot be written through Microsoft Graph; map the URL to a text column instead".into())),
        other => Err(fail(format!("columns of type `{other}` are not supported"))),
    }
}

fn check_choice(column: &ColumnInfo, value: &str) -> Result<(), String> {
    if column.choices.is_empty() || column.choices.iter().any(|c| c == value) {
        Ok(())
    } else {
        Err(format!(
            "`{value}` is not one of the choices: {}",
            column.choices.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(kind: &str) -> ColumnInfo {
        ColumnInfo {
            name: "C".into(),
            kind: kind.into(),
            max_length: if kind == "text" { Some(5) } else { None },
            choices: Vec::new(),
            read_only: false,
            date_only: false,
        }
    }

    #[test]
    fn text_overflow_dead_letters_or_truncates() {
        let long = Value::from("abcdefgh");
        let error = encode(&column("text"), &long, TextOverflow::DeadLetter).expect_err("too long");
        assert!(
            error.message.contains("8 characters") && error.message.contains("maximum of 5"),
            "{error}"
        );
        assert_eq!(
            encode(&column("text"), &long, TextOverflow::Truncate),
            Ok(vec![("C".into(), json!("abcde"))])
        );
    }

    #[test]
    fn dates_are_utc_with_z() {
        let tz = chrono::DateTime::parse_from_rfc3339("2024-05-01T15:00:00+02:00").expect("valid");
        assert_eq!(
            encode(
                &column("dateTime"),
                &Value::TimestampTz(tz),
                TextOverflow::DeadLetter
            ),
            Ok(vec![("C".into(), json!("2024-05-01T13:00:00Z"))])
        );
        let day = chrono::NaiveDate::from_ymd_opt(2024, 5, 1).expect("valid");
        assert_eq!(
            encode(
                &column("dateTime"),
                &Value::Date(day),
                TextOverflow::DeadLetter
            ),
            Ok(vec![("C".into(), json!("2024-05-01T00:00:00Z"))])
        );
        // Date-only columns get the date itself, whatever the value's time or zone.
        let date_only = ColumnInfo {
            date_only: true,
            ..column("dateTime")
        };
        let late =
            chrono::DateTime::parse_from_rfc3339("2024-05-01T23:30:00-05:00").expect("valid");
        for value in [
            Value::Date(day),
            Value::TimestampTz(late),
            Value::Text("2024-05-01".into()),
        ] {
            assert_eq!(
                encode(&date_only, &value, TextOverflow::DeadLetter),
                Ok(vec![("C".into(), json!("2024-05-01"))]),
                "{value:?}"
            );
        }
    }

    #[test]
    fn numbers_are_doubles_and_decimals_keep_their_digits_up_to_double_precision() {
        let value = Value::Decimal("1234.56".parse().expect("valid"));
        assert_eq!(
            encode(&column("currency"), &value, TextOverflow::DeadLetter),
            Ok(vec![("C".into(), json!(1234.56))])
        );
        assert!(
            encode(
                &column("number"),
                &Value::from("many"),
                TextOverflow::DeadLetter
            )
            .is_err()
        );
    }

    #[test]
    fn nulls_clear_and_lookups_use_lookup_ids() {
        assert_eq!(
            encode(&column("text"), &Value::Null, TextOverflow::DeadLetter),
            Ok(vec![("C".into(), Json::Null)])
        );
        assert_eq!(
            encode(&column("lookup"), &Value::Int(12), TextOverflow::DeadLetter),
            Ok(vec![("CLookupId".into(), json!(12))])
        );
        assert_eq!(
            encode(
                &column("personOrGroup"),
                &Value::Null,
                TextOverflow::DeadLetter
            ),
            Ok(vec![("CLookupId".into(), Json::Null)])
        );
        let error = encode(
            &column("personOrGroup"),
            &Value::from("ada@contoso.com"),
            TextOverflow::DeadLetter,
        )
        .expect_err("not an id");
        assert!(error.message.contains("User Information List"), "{error}");
    }

    #[test]
    fn multi_choice_carries_the_collection_annotation_and_choices_are_checked() {
        let mut choice = column("choice");
        choice.choices = vec!["A".into(), "B".into()];
        let multi = Value::Json(json!(["A", "B"]));
        assert_eq!(
            encode(&choice, &multi, TextOverflow::DeadLetter),
            Ok(vec![
                ("C@odata.type".into(), json!("Collection(Edm.String)")),
                ("C".into(), json!(["A", "B"]))
            ])
        );
        assert!(encode(&choice, &Value::from("Z"), TextOverflow::DeadLetter).is_err());
    }

    #[test]
    fn hyperlinks_are_refused_with_the_reason() {
        let error = encode(
            &column("hyperlinkOrPicture"),
            &Value::from("https://x"),
            TextOverflow::DeadLetter,
        )
        .expect_err("not writable");
        assert!(
            error
                .message
                .contains("cannot be written through Microsoft Graph"),
            "{error}"
        );
    }
}
