//! `syncbridge dlq list|show|retry|discard`: the dead-letter queue.

use syncbridge_store::Id;
use syncbridge_store::runtime::{discard_failure, failure, open_failures, retry_failure_now};

use crate::cli::{DlqArgs, DlqCommand, GlobalArgs};
use crate::commands::{open_migrated_store, print_json, store_error};
use crate::exit::{CliError, Exit};

fn parse_id(text: &str) -> Result<Id, CliError> {
    text.parse().map_err(|_| {
        CliError::bad_input(format!(
            "`{text}` is not a dead-letter entry id (see `syncbridge dlq list`)"
        ))
    })
}

pub async fn run(global: &GlobalArgs, args: &DlqArgs) -> Result<Exit, CliError> {
    let store = open_migrated_store(global).await?;
    match &args.command {
        DlqCommand::List { sync } => {
            let def = match sync {
                Some(name) => Some(
                    syncbridge_store::definitions::load_run_definition(&store, name)
                        .await
                        .map_err(store_error)?
                        .ok_or_else(|| {
                            CliError::bad_input(format!("no sync definition named `{name}`"))
                        })?
                        .id,
                ),
                None => None,
            };
            let entries = open_failures(&store, def).await.map_err(store_error)?;
            if global.json {
                print_json(&entries)?;
            } else if entries.is_empty() {
                println!("the dead-letter queue is empty");
            } else {
                for entry in &entries {
                    println!(
                        "{}  {:<9} {:<24} retries {}/{}  {}",
                        entry.id,
                        entry.stage_failed,
                        entry.source_identity.as_deref().unwrap_or("?"),
                        entry.retry_count,
                        entry.max_retries,
                        entry.error_message
                    );
                }
            }
        }
        DlqCommand::Show { id } => {
            let entry = failure(&store, parse_id(id)?)
                .await
                .map_err(store_error)?
                .ok_or_else(|| CliError::bad_input(format!("no dead-letter entry {id}")))?;
            if global.json {
                print_json(&entry)?;
            } else {
                let text = serde_json::to_string_pretty(&entry)
                    .map_err(|e| CliError::internal(e.to_string()))?;
                println!("{text}");
            }
        }
        DlqCommand::Retry { id } => {
            if !retry_failure_now(&store, parse_id(id)?)
                .await
                .map_err(store_error)?
            {
                return Err(CliError::bad_input(format!(
                    "no open dead-letter entry {id}"
                )));
            }
            if global.json {
                print_json(&serde_json::json!({"id": id, "action": "retry"}))?;
            } else {
                println!("entry {id} will be retried by the next run of its sync");
            }
        }
        DlqCommand::Discard { id } => {
            if !discard_failure(&store, parse_id(id)?)
                .await
                .map_err(store_error)?
            {
                return Err(CliError::bad_input(format!(
                    "no open dead-letter entry {id}"
                )));
            }
            if global.json {
                print_json(&serde_json::json!({"id": id, "action": "discard"}))?;
            } else {
                println!("entry {id} discarded (kept for the record, never retried)");
            }
        }
    }
    Ok(Exit::Ok)
}
