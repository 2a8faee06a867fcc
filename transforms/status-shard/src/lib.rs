//! The seed's sharding example: `Active` rows go to the target named `Active`; `Closed` rows
//! that ended within the last 365 days go to `Closed`; everything else to the default target
//! (`Archived`). A row without a status is dead-lettered.

use syncbridge_guest::{Field, Value, get};

const MICROS_PER_DAY: i64 = 86_400_000_000;

fn by_status(row: &[Field], _targets: &[String]) -> Result<Option<String>, String> {
    let status = match get(row, "status") {
        Some(Value::Text(status)) => status.as_str(),
        Some(Value::Null) | None => return Err("the row has no `status`".into()),
        Some(other) => return Err(format!("`status` should be text, got {other:?}")),
    };
    match status {
        "Active" => Ok(Some("Active".into())),
        "Closed" if ended_within_a_year(get(row, "ended_on")) => Ok(Some("Closed".into())),
        _ => Ok(None),
    }
}

/// Whether the date lies within the last 365 days (clock from WASI, which the host allows).
fn ended_within_a_year(ended: Option<&Value>) -> bool {
    let now_days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_micros() as i64) / MICROS_PER_DAY)
        .unwrap_or(0);
    let days = match ended {
        Some(Value::Date(days)) => i64::from(*days),
        Some(Value::Timestamp(micros)) => micros / MICROS_PER_DAY,
        Some(Value::Timestamptz(ts)) => ts.micros / MICROS_PER_DAY,
        _ => return false,
    };
    now_days - days <= 365
}

syncbridge_guest::routers! {
    "by_status" => by_status,
}
