//! Version 2 of the format rules, as a team would ship it: `title_case` now writes names in
//! capitals. The end-to-end test swaps it in for `format` without rebuilding SyncBridge.

use syncbridge_guest::{Field, Value};

fn title_case(value: Value, _row: &[Field], _args: &[String]) -> Result<Value, String> {
    Ok(match value {
        Value::Text(text) => Value::Text(text.to_uppercase()),
        other => other,
    })
}

syncbridge_guest::field_rules! {
    "title_case" => title_case,
}
