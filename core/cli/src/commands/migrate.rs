//! `syncbridge migrate`: create or upgrade the meta-store's tables.

use crate::cli::GlobalArgs;
use crate::commands::{open_migrated_store, print_json};
use crate::exit::{CliError, Exit};

pub async fn run(global: &GlobalArgs) -> Result<Exit, CliError> {
    let store = open_migrated_store(global).await?;
    let backend = store.backend().to_string();
    if global.json {
        print_json(&serde_json::json!({ "status": "migrated", "backend": backend }))?;
    } else {
        println!("meta-store is up to date ({backend})");
    }
    Ok(Exit::Ok)
}
