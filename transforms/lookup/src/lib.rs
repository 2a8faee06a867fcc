//! `country_name`: maps ISO 3166 alpha-2 codes to names through a table compiled into the
//! module; an unknown code goes to the dead-letter queue (the table needs the entry).

use syncbridge_guest::{Field, Value};

const COUNTRIES: &[(&str, &str)] = &[
    ("AT", "Austria"),
    ("BE", "Belgium"),
    ("CA", "Canada"),
    ("CH", "Switzerland"),
    ("DE", "Germany"),
    ("ES", "Spain"),
    ("FR", "France"),
    ("GB", "United Kingdom"),
    ("IT", "Italy"),
    ("NL", "Netherlands"),
    ("US", "United States"),
];

fn country_name(value: Value, _row: &[Field], _args: &[String]) -> Result<Value, String> {
    match value {
        Value::Null => Ok(Value::Null),
        Value::Text(code) => COUNTRIES
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(code.trim()))
            .map(|(_, name)| Value::Text((*name).to_owned()))
            .ok_or_else(|| format!("no country with code `{code}` in the lookup table")),
        other => Err(format!("country_name needs a text code, got {other:?}")),
    }
}

syncbridge_guest::field_rules! {
    "country_name" => country_name,
}
