//! String formatting rules: `title_case` ("ada LOVELACE" → "Ada Lovelace"), `upper`,
//! `prefix(TEXT)` (puts TEXT in front) and `label`, which reads the row's `status` too
//! ("Apollo" → "Apollo (Active)"). Non-text values pass through unchanged.

use syncbridge_guest::{Field, Value, get};

fn title_case(value: Value, _row: &[Field], _args: &[String]) -> Result<Value, String> {
    Ok(match value {
        Value::Text(text) => Value::Text(
            text.split(' ')
                .map(|word| {
                    let mut chars = word.chars();
                    match chars.next() {
                        Some(first) => {
                            first.to_uppercase().collect::<String>()
                                + &chars.as_str().to_lowercase()
                        }
                        None => String::new(),
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        other => other,
    })
}

fn prefix(value: Value, _row: &[Field], args: &[String]) -> Result<Value, String> {
    let Some(prefix) = args.first() else {
        return Err("prefix needs its text, e.g. `wasm:format.wasm#prefix('PRJ-')`".into());
    };
    Ok(match value {
        Value::Text(text) => Value::Text(format!("{prefix}{text}")),
        Value::Int(n) => Value::Text(format!("{prefix}{n}")),
        other => other,
    })
}

fn upper(value: Value, _row: &[Field], _args: &[String]) -> Result<Value, String> {
    Ok(match value {
        Value::Text(text) => Value::Text(text.to_uppercase()),
        other => other,
    })
}

fn label(value: Value, row: &[Field], _args: &[String]) -> Result<Value, String> {
    match (value, get(row, "status")) {
        (Value::Text(name), Some(Value::Text(status))) => {
            Ok(Value::Text(format!("{name} ({status})")))
        }
        (value, _) => Ok(value),
    }
}

syncbridge_guest::field_rules! {
    "title_case" => title_case,
    "upper" => upper,
    "prefix" => prefix,
    "label" => label reads ["status"],
}
