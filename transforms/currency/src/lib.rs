//! `round_currency(N)`: rounds a decimal half away from zero to N places (2 by default), exactly
//! (on the decimal's text, never through a float). Floats and integers are accepted too.

use syncbridge_guest::{Field, Value};

fn round_currency(value: Value, _row: &[Field], args: &[String]) -> Result<Value, String> {
    let places: usize = match args.first() {
        Some(text) => text
            .parse()
            .map_err(|_| format!("round_currency takes a number of places, got `{text}`"))?,
        None => 2,
    };
    match value {
        Value::Null => Ok(Value::Null),
        Value::Int(n) => Ok(Value::Decimal(format!("{n}.{}", "0".repeat(places)))),
        Value::Float(f) => Ok(Value::Decimal(format!("{f:.places$}"))),
        Value::Decimal(text) => round_text(&text, places).map(Value::Decimal),
        other => Err(format!("round_currency needs a number, got {other:?}")),
    }
}

/// Rounds a canonical decimal string half away from zero.
fn round_text(text: &str, places: usize) -> Result<String, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(format!("`{text}` is not a decimal"));
    }
    let mut kept: Vec<u8> = whole
        .bytes()
        .chain(fraction.bytes().chain(std::iter::repeat(b'0')).take(places))
        .collect();
    let round_up = fraction.as_bytes().get(places).is_some_and(|d| *d >= b'5');
    if round_up {
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, b'1');
                break;
            }
            i -= 1;
            if kept[i] == b'9' {
                kept[i] = b'0';
            } else {
                kept[i] += 1;
                break;
            }
        }
    }
    let split = kept.len() - places;
    let whole = String::from_utf8_lossy(&kept[..split]).into_owned();
    let fraction = String::from_utf8_lossy(&kept[split..]).into_owned();
    let sign = if negative && kept.iter().any(|d| *d != b'0') {
        "-"
    } else {
        ""
    };
    Ok(if places == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    })
}

/// Run by `syncbridge plugins check`: the rounding cases that matter.
fn self_test() -> Result<(), String> {
    for (input, places, expected) in [
        ("19.995", 2, "20.00"),
        ("-0.004", 2, "0.00"),
        ("-2.5", 0, "-3"),
        ("999.999", 2, "1000.00"),
        ("1", 2, "1.00"),
    ] {
        let got = round_text(input, places)?;
        if got != expected {
            return Err(format!(
                "round_text({input}, {places}) gave {got}, expected {expected}"
            ));
        }
    }
    Ok(())
}

syncbridge_guest::field_rules! {
    "round_currency" => round_currency;
    self_test = self_test,
}
