//! `syncbridge schema`: the config file's JSON Schema on stdout.

use crate::exit::CliError;

pub fn run() -> Result<(), CliError> {
    let schema = syncbridge_config::json_schema();
    let text = serde_json::to_string_pretty(&schema)
        .map_err(|e| CliError::internal(format!("cannot print the schema: {e}")))?;
    println!("{text}");
    Ok(())
}
