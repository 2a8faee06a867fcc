//! `syncbridge apply -f FILE`: upsert a declarative config into the meta-store.

use syncbridge_config::apply::{Action, ApplyOptions, apply};

use crate::cli::{ApplyArgs, GlobalArgs};
use crate::commands::{open_migrated_store, print_json};
use crate::exit::{CliError, Exit};

pub async fn run(global: &GlobalArgs, args: &ApplyArgs) -> Result<Exit, CliError> {
    let config = syncbridge_config::load_file(&args.file, &crate::commands::known_names())?;
    let store = open_migrated_store(global).await?;
    let options = ApplyOptions {
        prune: args.prune,
        dry_run: args.dry_run,
        actor: std::env::var("USER").unwrap_or_else(|_| "syncbridge".to_owned()),
        master_key: None,
    };
    let report = apply(&store, &config, &options).await.map_err(|error| {
        let exit = if error.is_unreachable() {
            Exit::Unreachable
        } else if error.is_bad_input() {
            Exit::BadInput
        } else {
            Exit::Internal
        };
        CliError::new(exit, format!("{}: {error}", args.file.display()))
    })?;

    if global.json {
        print_json(&report)?;
        return Ok(Exit::Ok);
    }
    if report.is_noop() {
        println!(
            "{}: no changes ({} objects already up to date)",
            args.file.display(),
            report.unchanged
        );
        return Ok(Exit::Ok);
    }
    for change in &report.changes {
        let action = match (change.action, report.dry_run) {
            (Action::Create, false) => "created",
            (Action::Update, false) => "updated",
            (Action::Delete, false) => "deleted",
            (Action::Create, true) => "would create",
            (Action::Update, true) => "would update",
            (Action::Delete, true) => "would delete",
        };
        let fields = if change.fields.is_empty() {
            String::new()
        } else {
            format!(" ({})", change.fields.join(", "))
        };
        println!("{action} {} {}{fields}", change.entity, change.name);
    }
    println!(
        "{}: {} change{}, {} unchanged{}",
        args.file.display(),
        report.changes.len(),
        if report.changes.len() == 1 { "" } else { "s" },
        report.unchanged,
        if report.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    Ok(Exit::Ok)
}
