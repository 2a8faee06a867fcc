//! Row identity and content hashes.
//!
//! `source_identity` is the key values in key order, each rendered canonically and escaped, joined
//! with `|`: a `|` inside a value is written `\|`, a backslash `\\`, and NULL is `\N` — which no
//! escaped string can produce — so NULL and the empty string differ and no two key tuples share an
//! encoding. `source_identity_hash` is SHA-256 over the key strategy and the identity; it does not
//! involve the database instance, so failing over or moving a database never duplicates an item.
//!
//! The content hash is SHA-256 over a length-prefixed, type-tagged encoding of the pushed fields
//! (by target column name, in a fixed order) and the target list: equal hashes mean "nothing to
//! write", and a row that moves to another list always hashes differently.

use std::fmt::Write as _;

use chrono::{Datelike as _, NaiveDate, NaiveTime, Timelike as _};
use sha2::{Digest, Sha256};
use syncbridge_api::Value;

/// Renders a value as canonical text (the same value always gives the same text, whatever source
/// it came from): decimals normalized, timestamps with zone in UTC, JSON with sorted keys.
pub fn canonical_text(value: &Value) -> Option<String> {
    let mut out = String::new();
    write_canonical(&mut out, value).then_some(out)
}

/// Appends the canonical text of a value to `out`; `false` (and nothing appended) for NULL.
/// Hashing every pushed value of every row goes through here, so it writes into the caller's
/// buffer and formats dates and times by hand (chrono's `format` interprets its pattern on
/// every call); the output is the same as `%Y-%m-%d`, `%H:%M:%S%.f` and
/// `%Y-%m-%dT%H:%M:%S%.f`, which it falls back to for years outside 0–9999 and leap seconds.
pub fn write_canonical(out: &mut String, value: &Value) -> bool {
    // Writing to a String cannot fail.
    let _ = match value {
        Value::Null => return false,
        Value::Bool(v) => write!(out, "{v}"),
        Value::Int(v) => {
            out.push_str(itoa::Buffer::new().format(*v));
            Ok(())
        }
        Value::Float(v) => {
            if *v == 0.0 {
                out.push('0'); // -0.0 and 0.0 are the same number
                Ok(())
            } else {
                write!(out, "{v}")
            }
        }
        Value::Decimal(v) => write!(out, "{}", v.normalized()),
        Value::Text(v) => {
            out.push_str(v);
            Ok(())
        }
        Value::Bytes(v) => {
            out.push_str(&hex::encode(v));
            Ok(())
        }
        Value::Date(v) => write_date(out, v),
        Value::Time(v) => write_time(out, v),
        Value::Timestamp(v) => write_date(out, &v.date()).and_then(|()| {
            out.push('T');
            write_time(out, &v.time())
        }),
        Value::TimestampTz(v) => {
            let utc = v.naive_utc();
            write_date(out, &utc.date()).and_then(|()| {
                out.push('T');
                write_time(out, &utc.time())?;
                out.push('Z');
                Ok(())
            })
        }
        Value::Uuid(v) => write!(out, "{}", v.hyphenated()),
        // serde_json's map is ordered by key, so this is canonical.
        Value::Json(v) => write!(out, "{v}"),
    };
    true
}

/// `%Y-%m-%d`.
fn write_date(out: &mut String, date: &NaiveDate) -> std::fmt::Result {
    let year = date.year();
    if (0..=9999).contains(&year) {
        push_padded(out, year as u32, 4);
        out.push('-');
        push_padded(out, date.month(), 2);
        out.push('-');
        push_padded(out, date.day(), 2);
        Ok(())
    } else {
        write!(out, "{}", date.format("%Y-%m-%d"))
    }
}

/// `%H:%M:%S%.f`: the fraction with 3, 6 or 9 digits, as many as it needs, or none.
fn write_time(out: &mut String, time: &NaiveTime) -> std::fmt::Result {
    let nanos = time.nanosecond();
    if nanos >= 1_000_000_000 {
        return write!(out, "{}", time.format("%H:%M:%S%.f")); // a leap second
    }
    push_padded(out, time.hour(), 2);
    out.push(':');
    push_padded(out, time.minute(), 2);
    out.push(':');
    push_padded(out, time.second(), 2);
    if nanos != 0 {
        let (fraction, digits) = if nanos.is_multiple_of(1_000_000) {
            (nanos / 1_000_000, 3)
        } else if nanos.is_multiple_of(1_000) {
            (nanos / 1_000, 6)
        } else {
            (nanos, 9)
        };
        out.push('.');
        push_padded(out, fraction, digits);
    }
    Ok(())
}

/// `value` in decimal, zero-padded to `width` digits (`value` has at most `width` digits).
/// The formatting machinery (`{:02}`) cost more than the rest of a row's canonical text.
fn push_padded(out: &mut String, value: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let mut rest = value;
    for digit in digits[..width].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    debug_assert_eq!(rest, 0, "{value} has more than {width} digits");
    for digit in &digits[..width] {
        out.push(char::from(*digit));
    }
}

/// Escapes one identity component (written in place; copied only when it has something to
/// escape).
fn push_component(out: &mut String, value: &Value) {
    let start = out.len();
    if !write_canonical(out, value) {
        out.push_str("\\N");
        return;
    }
    if out.as_bytes()[start..]
        .iter()
        .any(|b| matches!(b, b'\\' | b'|'))
    {
        let text = out.split_off(start);
        for ch in text.chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                '|' => out.push_str("\\|"),
                other => out.push(other),
            }
        }
    }
}

/// The human-readable identity of a row from its key values, in key order.
pub fn source_identity<'a>(key_values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    write_source_identity(&mut out, key_values);
    out
}

/// [`source_identity`] appended to `out` (a full read reuses one buffer for every row).
pub fn write_source_identity<'a>(
    out: &mut String,
    key_values: impl IntoIterator<Item = &'a Value>,
) {
    for (index, value) in key_values.into_iter().enumerate() {
        if index > 0 {
            out.push('|');
        }
        push_component(out, value);
    }
}

/// SHA-256 (hex) of the key strategy and the identity.
pub fn source_identity_hash(strategy: &str, identity: &str) -> String {
    lower_hex(&source_identity_digest(strategy, identity))
}

/// A digest in lower-case hex. `hex::encode` builds its string a `char` at a time (142 ns for
/// 32 bytes); this fills a buffer from the same table (23 ns), twice for every pushed row.
pub fn lower_hex(digest: &[u8; 32]) -> String {
    let mut out = [0u8; 64];
    hex::encode_to_slice(digest, &mut out).expect("64 bytes hold 32 in hex");
    String::from_utf8(out.to_vec()).expect("hex is ASCII")
}

/// [`source_identity_hash`] as bytes.
pub fn source_identity_digest(strategy: &str, identity: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(strategy.as_bytes());
    hasher.update([0u8]);
    hasher.update(identity.as_bytes());
    hasher.finalize().into()
}

fn type_tag(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int(_) => 2,
        Value::Float(_) => 3,
        Value::Decimal(_) => 4,
        Value::Text(_) => 5,
        Value::Bytes(_) => 6,
        Value::Date(_) => 7,
        Value::Time(_) => 8,
        Value::Timestamp(_) => 9,
        Value::TimestampTz(_) => 10,
        Value::Uuid(_) => 11,
        Value::Json(_) => 12,
    }
}

fn push_framed(encoded: &mut Vec<u8>, bytes: &[u8]) {
    encoded.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    encoded.extend_from_slice(bytes);
}

/// SHA-256 (hex) over the target list and the pushed fields, as `(target column, value)` pairs.
/// The pairs are hashed in column-name order, so mapping order does not matter.
pub fn content_hash<'a>(
    target_list: &str,
    fields: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> String {
    lower_hex(&content_digest(target_list, fields))
}

/// [`content_hash`] as bytes.
pub fn content_digest<'a>(
    target_list: &str,
    fields: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> [u8; 32] {
    let mut fields: Vec<(&str, &Value)> = fields.into_iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut encoded = Vec::with_capacity(256);
    let mut text = String::with_capacity(64);
    digest_sorted(&mut encoded, &mut text, target_list, fields.into_iter());
    Sha256::digest(&encoded).into()
}

/// [`content_digest`] with buffers kept from one row to the next: a full read hashes every row.
#[derive(Debug, Default)]
pub struct ContentEncoder {
    encoded: Vec<u8>,
    text: String,
    order: Vec<usize>,
}

impl ContentEncoder {
    /// [`content_digest`] of `(target column, value)` fields.
    pub fn digest(&mut self, target_list: &str, fields: &[(impl AsRef<str>, Value)]) -> [u8; 32] {
        let Self {
            encoded,
            text,
            order,
        } = self;
        order.clear();
        order.extend(0..fields.len());
        order.sort_by(|a, b| fields[*a].0.as_ref().cmp(fields[*b].0.as_ref()));
        let sorted = order.iter().map(|&i| (fields[i].0.as_ref(), &fields[i].1));
        digest_sorted(encoded, text, target_list, sorted);
        Sha256::digest(encoded.as_slice()).into()
    }
}

/// Writes the encoding [`content_digest`] hashes into `encoded` (cleared first), fields given
/// in column-name order. Built whole and hashed in one call: a hasher update per piece (four a
/// field) cost more than the hashing in full reads.
fn digest_sorted<'a>(
    encoded: &mut Vec<u8>,
    text: &mut String,
    target_list: &str,
    fields: impl Iterator<Item = (&'a str, &'a Value)>,
) {
    encoded.clear();
    push_framed(encoded, target_list.as_bytes());
    for (name, value) in fields {
        push_framed(encoded, name.as_bytes());
        encoded.push(type_tag(value));
        text.clear();
        write_canonical(text, value);
        push_framed(encoded, text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes an identity back into components (`None` for NULL), to prove the encoding is
    /// unambiguous.
    fn decode(identity: &str) -> Vec<Option<String>> {
        let mut out = Vec::new();
        let mut current = String::new();
        let mut is_null = false;
        let mut chars = identity.chars();
        while let Some(ch) = chars.next() {
            match ch {
                '\\' => match chars.next() {
                    Some('N') => is_null = true,
                    Some(other) => current.push(other),
                    None => panic!("dangling escape"),
                },
                '|' => {
                    out.push(if is_null {
                        None
                    } else {
                        Some(std::mem::take(&mut current))
                    });
                    is_null = false;
                }
                other => current.push(other),
            }
        }
        out.push(if is_null { None } else { Some(current) });
        out
    }

    /// The canonical text of dates and times as chrono's `format` wrote it before.
    fn chrono_text(value: &Value) -> String {
        match value {
            Value::Date(v) => v.format("%Y-%m-%d").to_string(),
            Value::Time(v) => v.format("%H:%M:%S%.f").to_string(),
            Value::Timestamp(v) => v.format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
            Value::TimestampTz(v) => v
                .with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%S%.fZ")
                .to_string(),
            other => panic!("not a date or time: {other:?}"),
        }
    }

    #[test]
    fn dates_and_times_read_as_chrono_wrote_them() {
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("valid");
        let time = |h, m, s, n| NaiveTime::from_hms_nano_opt(h, m, s, n).expect("valid");
        let values = [
            Value::Date(date(2024, 2, 29)),
            Value::Date(date(1, 1, 1)),
            Value::Date(date(-44, 3, 15)),
            Value::Date(date(12345, 12, 31)),
            Value::Time(time(0, 0, 0, 0)),
            Value::Time(time(23, 59, 59, 5_000_000)),
            Value::Time(time(1, 2, 3, 120_000)),
            Value::Time(time(1, 2, 3, 7)),
            Value::Time(time(23, 59, 59, 1_500_000_000)), // a leap second
            Value::Timestamp(date(9999, 12, 31).and_time(time(23, 59, 59, 999_999_999))),
            Value::Timestamp(date(10000, 1, 1).and_time(time(0, 0, 0, 0))),
            Value::TimestampTz(
                chrono::DateTime::parse_from_rfc3339("2024-01-01T00:30:00.25+05:45")
                    .expect("valid"),
            ),
        ];
        for value in &values {
            assert_eq!(
                canonical_text(value).as_deref(),
                Some(chrono_text(value).as_str())
            );
        }
    }

    #[test]
    fn null_and_empty_string_differ() {
        let null = source_identity([&Value::Null]);
        let empty = source_identity([&Value::Text(String::new())]);
        assert_ne!(null, empty);
        assert_ne!(
            source_identity_hash("PRIMARY_KEY", &null),
            source_identity_hash("PRIMARY_KEY", &empty)
        );
    }

    #[test]
    fn delimiters_inside_values_are_escaped() {
        let a = source_identity([&Value::from("a|b"), &Value::from("c")]);
        let b = source_identity([&Value::from("a"), &Value::from("b|c")]);
        assert_ne!(a, b);
        assert_eq!(a, "a\\|b|c");
        assert_eq!(source_identity([&Value::from("\\N")]), "\\\\N");
    }

    #[test]
    fn identity_is_stable_across_equal_representations() {
        let a = source_identity([&Value::Decimal("1.50".parse().expect("valid"))]);
        let b = source_identity([&Value::Decimal("1.5".parse().expect("valid"))]);
        assert_eq!(a, b);
        let utc = chrono::DateTime::parse_from_rfc3339("2024-01-01T10:00:00Z").expect("valid");
        let cet = chrono::DateTime::parse_from_rfc3339("2024-01-01T11:00:00+01:00").expect("valid");
        assert_eq!(
            source_identity([&Value::TimestampTz(utc)]),
            source_identity([&Value::TimestampTz(cet)])
        );
    }

    #[test]
    fn strategy_is_part_of_the_hash() {
        assert_ne!(
            source_identity_hash("PRIMARY_KEY", "1"),
            source_identity_hash("HASHED", "1")
        );
    }

    #[test]
    fn content_hash_sees_list_type_and_value() {
        let five = Value::Int(5);
        let five_text = Value::from("5");
        let base = content_hash("list-a", [("Count", &five)]);
        assert_ne!(
            base,
            content_hash("list-b", [("Count", &five)]),
            "a move must rewrite"
        );
        assert_ne!(base, content_hash("list-a", [("Count", &five_text)]));
        assert_ne!(base, content_hash("list-a", [("Count", &Value::Null)]));
        assert_eq!(base, content_hash("list-a", [("Count", &Value::Int(5))]));
    }

    #[test]
    fn content_hash_ignores_mapping_order_but_not_field_names() {
        let (a, b) = (Value::from("x"), Value::from("y"));
        assert_eq!(
            content_hash("l", [("A", &a), ("B", &b)]),
            content_hash("l", [("B", &b), ("A", &a)])
        );
        assert_ne!(
            content_hash("l", [("A", &a), ("B", &b)]),
            content_hash("l", [("A", &b), ("B", &a)])
        );
        // Framing: moving characters between name and value changes the hash.
        let (ab, c) = (Value::from("bc"), Value::from("c"));
        assert_ne!(
            content_hash("l", [("A", &ab)]),
            content_hash("l", [("Ab", &c)])
        );
    }

    fn component() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            "[a-z|\\\\N]{0,6}".prop_map(Some),
            any::<String>().prop_map(Some),
        ]
    }

    proptest! {
        #[test]
        fn digests_in_hex_are_what_hex_encode_writes(digest in any::<[u8; 32]>()) {
            prop_assert_eq!(lower_hex(&digest), hex::encode(digest));
        }

        #[test]
        fn timestamps_read_as_chrono_wrote_them(
            seconds in -80_000_000_000i64..300_000_000_000,
            nanos in prop_oneof![Just(0u32), (0u32..1000).prop_map(|m| m * 1_000_000),
                                 (0u32..1_000_000).prop_map(|u| u * 1000), 0u32..1_000_000_000],
            offset in -50_000i32..50_000,
        ) {
            let utc = chrono::DateTime::from_timestamp(seconds, nanos).expect("in range");
            let zone = chrono::FixedOffset::east_opt(offset).expect("valid offset");
            for value in [
                Value::Date(utc.date_naive()),
                Value::Time(utc.time()),
                Value::Timestamp(utc.naive_utc()),
                Value::TimestampTz(utc.with_timezone(&zone)),
            ] {
                prop_assert_eq!(canonical_text(&value), Some(chrono_text(&value)));
            }
        }

        #[test]
        fn identity_encoding_round_trips(parts in proptest::collection::vec(component(), 1..5)) {
            let values: Vec<Value> = parts.iter().map(|p| p.clone().map_or(Value::Null, Value::Text)).collect();
            let identity = source_identity(&values);
            prop_assert_eq!(decode(&identity), parts);
        }

        #[test]
        fn distinct_key_tuples_have_distinct_identities(
            a in proptest::collection::vec(component(), 1..4),
            b in proptest::collection::vec(component(), 1..4),
        ) {
            let to_values = |parts: &Vec<Option<String>>| -> Vec<Value> {
                parts.iter().map(|p| p.clone().map_or(Value::Null, Value::Text)).collect()
            };
            let (ia, ib) = (source_identity(&to_values(&a)), source_identity(&to_values(&b)));
            prop_assert_eq!(ia == ib, a == b);
        }

        #[test]
        fn content_hash_is_injective_on_text_fields(
            a in proptest::collection::btree_map("[A-Z][a-z]{0,3}", any::<String>(), 0..4),
            b in proptest::collection::btree_map("[A-Z][a-z]{0,3}", any::<String>(), 0..4),
        ) {
            let va: Vec<(String, Value)> = a.iter().map(|(k, v)| (k.clone(), Value::Text(v.clone()))).collect();
            let vb: Vec<(String, Value)> = b.iter().map(|(k, v)| (k.clone(), Value::Text(v.clone()))).collect();
            let ha = content_hash("l", va.iter().map(|(k, v)| (k.as_str(), v)));
            let hb = content_hash("l", vb.iter().map(|(k, v)| (k.as_str(), v)));
            prop_assert_eq!(ha == hb, a == b);
        }
    }
}
