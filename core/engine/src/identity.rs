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

use sha2::{Digest, Sha256};
use syncbridge_api::Value;

/// Renders a value as canonical text (the same value always gives the same text, whatever source
/// it came from): decimals normalized, timestamps with zone in UTC, JSON with sorted keys.
pub fn canonical_text(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(v) => v.to_string(),
        Value::Int(v) => v.to_string(),
        Value::Float(v) => {
            if *v == 0.0 {
                "0".to_owned() // -0.0 and 0.0 are the same number
            } else {
                v.to_string()
            }
        }
        Value::Decimal(v) => v.normalized().to_string(),
        Value::Text(v) => v.clone(),
        Value::Bytes(v) => hex::encode(v),
        Value::Date(v) => v.format("%Y-%m-%d").to_string(),
        Value::Time(v) => v.format("%H:%M:%S%.f").to_string(),
        Value::Timestamp(v) => v.format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
        Value::TimestampTz(v) => v
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.fZ")
            .to_string(),
        Value::Uuid(v) => v.hyphenated().to_string(),
        // serde_json's map is ordered by key, so this is canonical.
        Value::Json(v) => v.to_string(),
    })
}

/// Escapes one identity component.
fn push_component(out: &mut String, value: &Value) {
    match canonical_text(value) {
        None => out.push_str("\\N"),
        Some(text) => {
            for ch in text.chars() {
                match ch {
                    '\\' => out.push_str("\\\\"),
                    '|' => out.push_str("\\|"),
                    other => out.push(other),
                }
            }
        }
    }
}

/// The human-readable identity of a row from its key values, in key order.
pub fn source_identity<'a>(key_values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    for (index, value) in key_values.into_iter().enumerate() {
        if index > 0 {
            out.push('|');
        }
        push_component(&mut out, value);
    }
    out
}

/// SHA-256 (hex) of the key strategy and the identity.
pub fn source_identity_hash(strategy: &str, identity: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(strategy.as_bytes());
    hasher.update([0u8]);
    hasher.update(identity.as_bytes());
    hex::encode(hasher.finalize())
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

fn update_framed(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// SHA-256 (hex) over the target list and the pushed fields, as `(target column, value)` pairs.
/// The pairs are hashed in column-name order, so mapping order does not matter.
pub fn content_hash<'a>(
    target_list: &str,
    fields: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> String {
    let mut fields: Vec<(&str, &Value)> = fields.into_iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut hasher = Sha256::new();
    update_framed(&mut hasher, target_list.as_bytes());
    for (name, value) in fields {
        update_framed(&mut hasher, name.as_bytes());
        hasher.update([type_tag(value)]);
        update_framed(
            &mut hasher,
            canonical_text(value).unwrap_or_default().as_bytes(),
        );
    }
    hex::encode(hasher.finalize())
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
