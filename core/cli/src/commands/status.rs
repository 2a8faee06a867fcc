//! `syncbridge status`: what is configured and how the last runs went. Never shows a secret.

use syncbridge_store::definitions::{inventory_counts, sync_summaries};

use crate::cli::GlobalArgs;
use crate::commands::{open_migrated_store, print_json, store_error};
use crate::exit::{CliError, Exit};

pub async fn run(global: &GlobalArgs) -> Result<Exit, CliError> {
    let store = open_migrated_store(global).await?;
    let counts = inventory_counts(&store).await.map_err(store_error)?;
    let syncs = sync_summaries(&store).await.map_err(store_error)?;
    if global.json {
        print_json(&serde_json::json!({
            "store": syncbridge_store::redact_url(&global.store),
            "backend": store.backend().to_string(),
            "counts": counts,
            "syncs": syncs,
        }))?;
        return Ok(Exit::Ok);
    }
    println!(
        "meta-store: {} ({})",
        syncbridge_store::redact_url(&global.store),
        store.backend()
    );
    println!(
        "inventory: {} applications, {} databases ({} instances), {} SharePoint connections ({} sites, {} lists, {} provisioned)",
        counts.applications,
        counts.databases,
        counts.database_instances,
        counts.sharepoint_connections,
        counts.sharepoint_sites,
        counts.sharepoint_lists,
        counts.provisioned_lists
    );
    println!(
        "ledger: {} items; dead-letter queue: {} open",
        counts.ledger_items, counts.open_failures
    );
    if syncs.is_empty() {
        println!("no sync definitions yet: `syncbridge apply -f FILE` adds them");
        return Ok(Exit::Ok);
    }
    println!();
    println!(
        "{:<24} {:<13} {:<18} {:<11} {:>7} {:<8} LAST RUN",
        "SYNC", "MODE", "KEY", "CURSOR", "TARGETS", "ENABLED"
    );
    for sync in &syncs {
        let last = match (&sync.last_run_status, sync.last_run_start) {
            (Some(status), Some(start)) => format!(
                "{status} at {} ({} processed, {} failed)",
                start.format("%Y-%m-%d %H:%M:%S UTC"),
                sync.last_run_processed.unwrap_or(0),
                sync.last_run_failed.unwrap_or(0)
            ),
            _ => "never".to_owned(),
        };
        println!(
            "{:<24} {:<13} {:<18} {:<11} {:>7} {:<8} {last}",
            sync.name,
            sync.sync_mode,
            sync.key_strategy,
            sync.cursor_strategy,
            sync.targets,
            if sync.is_enabled { "yes" } else { "no" }
        );
    }
    Ok(Exit::Ok)
}
