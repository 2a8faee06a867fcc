//! `syncbridge run SYNC`, `syncbridge provision SYNC` and `syncbridge runs [SYNC]`.

use std::sync::Arc;

use syncbridge_engine::run::{Engine, EngineError, RunOptions};
use syncbridge_store::runtime::recent_runs;

use crate::cli::{DriftArgs, GlobalArgs, IntrospectArgs, RunArgs, RunsArgs, SyncArgs};
use crate::commands::{open_migrated_store, print_json, store_error};
use crate::exit::{CliError, Exit};

pub fn engine_error(error: EngineError) -> CliError {
    let exit = match &error {
        EngineError::UnknownSync { .. }
        | EngineError::UnknownDatabase { .. }
        | EngineError::UnknownConnection { .. }
        | EngineError::Config { .. } => Exit::BadInput,
        EngineError::Store(store) if store.is_unreachable() => Exit::Unreachable,
        EngineError::Store(store) if store.is_bad_input() => Exit::BadInput,
        EngineError::Busy { .. } => Exit::Failures,
        EngineError::Connector { error, .. } => match error.domain() {
            syncbridge_api::ErrorDomain::User => Exit::BadInput,
            syncbridge_api::ErrorDomain::External => Exit::Unreachable,
            syncbridge_api::ErrorDomain::Internal => Exit::Internal,
        },
        _ => Exit::Internal,
    };
    CliError::new(exit, error.to_string())
}

async fn engine(global: &GlobalArgs) -> Result<Engine, CliError> {
    let store = open_migrated_store(global).await?;
    Ok(Engine::new(
        store,
        Arc::new(crate::registry::builtin()),
        None,
    ))
}

/// Stops gracefully on the first Ctrl-C / SIGTERM, at once on the second.
fn shutdown_token() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let signal = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::warn!(
            "finishing the batches in flight, then stopping (press Ctrl-C again to stop now)"
        );
        signal.cancel();
        wait_for_signal().await;
        tracing::warn!("stopping now; the next run resumes safely");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(stream) => stream,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(global: &GlobalArgs, args: &RunArgs) -> Result<Exit, CliError> {
    let engine = engine(global).await?;
    let bar = progress_bar(global, &args.sync);
    let options = RunOptions {
        full: args.full,
        dry_run: args.dry_run,
        batch_size: args.batch_size,
        shutdown: shutdown_token(),
        progress: Some(match &bar {
            Some(bar) => progress_callback(bar),
            None => progress_log(std::time::Duration::from_secs(args.progress_every)),
        }),
        estimate_rows: bar.is_some(),
    };
    let started = chrono::Utc::now();
    let report = engine.run(&args.sync, &options).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            // A run refused as busy never started: the run found would be the other one.
            if global.json
                && !matches!(error, EngineError::Busy { .. })
                && let Err(reading) = print_failed_run(&engine, &args.sync, started).await
            {
                // The run's own error is the one to report.
                tracing::warn!(error = %reading, "could not print the failed run's document");
            }
            return Err(engine_error(error));
        }
    };
    if global.json {
        print_json(&report)?;
    } else {
        if args.dry_run {
            for change in &report.planned {
                match &change.from_list {
                    Some(from) => println!(
                        "would move   {} from {from} to {}",
                        change.identity, change.list
                    ),
                    None => println!(
                        "would {:<6} {} in {}",
                        change.action, change.identity, change.list
                    ),
                }
            }
            if report.planned_not_listed > 0 {
                println!(
                    "… and {} more changes, not listed (the counts below include them)",
                    report.planned_not_listed
                );
            }
        }
        println!(
            "{} {}: {} processed, {} created, {} updated, {} moved, {} deleted, {} unchanged, {} failed in {} ms{}",
            args.sync,
            report.status.to_lowercase(),
            report.processed,
            report.created,
            report.updated,
            report.moved,
            report.deleted,
            report.unchanged,
            report.failed,
            report.duration_ms,
            if args.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        );
        if report.failed > 0 {
            println!("failed rows are in the dead-letter queue: `syncbridge dlq list`");
        }
    }
    Ok(if report.failed > 0 || report.status != "COMPLETED" {
        Exit::Failures
    } else {
        Exit::Ok
    })
}

pub async fn provision(global: &GlobalArgs, args: &SyncArgs) -> Result<Exit, CliError> {
    let engine = engine(global).await?;
    let reports = engine.provision(&args.sync).await.map_err(engine_error)?;
    if global.json {
        print_json(&reports)?;
        return Ok(Exit::Ok);
    }
    for report in &reports {
        let what = if report.created { "created" } else { "exists" };
        let added = if report.added_fields.is_empty() {
            String::new()
        } else {
            format!(", added {}", report.added_fields.join(", "))
        };
        println!("{}: {what} ({}){added}", report.list, report.list_id);
        for field in &report.incompatible_fields {
            println!("  incompatible, left unchanged: {field}");
        }
    }
    Ok(
        if reports.iter().any(|r| !r.incompatible_fields.is_empty()) {
            Exit::Failures
        } else {
            Exit::Ok
        },
    )
}

pub async fn runs(global: &GlobalArgs, args: &RunsArgs) -> Result<Exit, CliError> {
    let store = open_migrated_store(global).await?;
    let runs = recent_runs(&store, args.sync.as_deref(), args.limit)
        .await
        .map_err(store_error)?;
    if global.json {
        print_json(&runs)?;
        return Ok(Exit::Ok);
    }
    if runs.is_empty() {
        println!("no runs yet");
        return Ok(Exit::Ok);
    }
    println!(
        "{:<36} {:<20} {:<10} {:<20} {:>9} {:>7} {:>7} {:>6} {:>7} {:>9} {:>6}",
        "RUN",
        "SYNC",
        "STATUS",
        "STARTED",
        "PROCESSED",
        "CREATED",
        "UPDATED",
        "MOVED",
        "DELETED",
        "UNCHANGED",
        "FAILED"
    );
    for run in runs {
        println!(
            "{:<36} {:<20} {:<10} {:<20} {:>9} {:>7} {:>7} {:>6} {:>7} {:>9} {:>6}",
            run.id.to_string(),
            run.sync_name,
            run.status,
            run.start_time.format("%Y-%m-%d %H:%M:%S").to_string(),
            run.items_processed,
            run.items_created,
            run.items_updated,
            run.items_moved,
            run.items_deleted,
            run.items_unchanged,
            run.items_failed
        );
    }
    Ok(Exit::Ok)
}

pub async fn introspect(global: &GlobalArgs, args: &IntrospectArgs) -> Result<Exit, CliError> {
    let engine = engine(global).await?;
    let report = engine
        .introspect(&args.database)
        .await
        .map_err(engine_error)?;
    if global.json {
        print_json(&report)?;
    } else {
        println!(
            "{}: {} tables, {} views, {} columns, {} constraints, {} indexes recorded in the inventory",
            report.database,
            report.tables,
            report.views,
            report.columns,
            report.constraints,
            report.indexes
        );
    }
    Ok(Exit::Ok)
}

pub async fn drift(global: &GlobalArgs, args: &DriftArgs) -> Result<Exit, CliError> {
    let threshold: syncbridge_engine::drift::Severity =
        args.threshold.parse().map_err(CliError::bad_input)?;
    let engine = engine(global).await?;
    let findings = engine
        .drift(args.sync.as_deref())
        .await
        .map_err(engine_error)?;
    if global.json {
        print_json(&findings)?;
    } else if findings.is_empty() {
        println!("no drift: every source table matches its snapshot and mappings");
    } else {
        for finding in &findings {
            println!(
                "{:<8} {} ({}): {}",
                format!("{:?}", finding.severity).to_uppercase(),
                finding.table,
                finding.sync,
                finding.message
            );
        }
    }
    let failing = findings.iter().any(|f| f.severity >= threshold);
    Ok(if args.check && failing {
        Exit::Failures
    } else {
        Exit::Ok
    })
}

pub async fn reconcile(global: &GlobalArgs, args: &SyncArgs) -> Result<Exit, CliError> {
    let engine = engine(global).await?;
    let reconciliation = engine.reconcile(&args.sync).await.map_err(engine_error)?;
    let lists = &reconciliation.lists;
    if global.json {
        print_json(&reconciliation)?;
    } else {
        println!(
            "{:<28} {:>11} {:>8}  STATUS",
            "LIST", "SOURCE ROWS", "ITEMS"
        );
        for list in lists {
            println!(
                "{:<28} {:>11} {:>8}  {}",
                list.list, list.source_rows, list.items, list.status
            );
            if !list.missing.is_empty() {
                println!("  rows without an item: {}", list.missing.join(", "));
            }
            if !list.unexpected.is_empty() {
                println!("  items without a row: {}", list.unexpected.join(", "));
            }
        }
        if reconciliation.unassigned > 0 {
            println!(
                "{} source rows belong to no list: a rule or the routing fails for them (`syncbridge dlq list` has the reason){}",
                reconciliation.unassigned,
                if reconciliation.unassigned_rows.is_empty() {
                    String::new()
                } else {
                    format!(": {}", reconciliation.unassigned_rows.join(", "))
                }
            );
        }
    }
    Ok(if reconciliation.matches() {
        Exit::Ok
    } else {
        Exit::Failures
    })
}

pub async fn sharepoint(
    global: &GlobalArgs,
    args: &crate::cli::SharepointArgs,
) -> Result<Exit, CliError> {
    let crate::cli::SharepointCommand::Discover { connection } = &args.command;
    let engine = engine(global).await?;
    let lists = engine.discover(connection).await.map_err(engine_error)?;
    if global.json {
        print_json(&lists)?;
    } else {
        println!(
            "{:<40} {:<28} {:>7} {:>8}",
            "SITE", "LIST", "COLUMNS", "ITEMS"
        );
        for list in &lists {
            println!(
                "{:<40} {:<28} {:>7} {:>8}",
                list.site,
                list.list,
                list.columns,
                list.items.map_or_else(|| "?".to_owned(), |n| n.to_string())
            );
        }
    }
    Ok(Exit::Ok)
}

pub async fn release(global: &GlobalArgs, args: &SyncArgs) -> Result<Exit, CliError> {
    let engine = engine(global).await?;
    engine.release(&args.sync).await.map_err(engine_error)?;
    if global.json {
        print_json(&serde_json::json!({"sync": args.sync, "released": true}))?;
    } else {
        println!(
            "Released what the source kept for `{}`; its next run reads everything again.",
            args.sync
        );
    }
    Ok(Exit::Ok)
}

pub async fn changes(global: &GlobalArgs, args: &SyncArgs) -> Result<Exit, CliError> {
    let engine = engine(global).await?;
    let lists = engine
        .target_changes(&args.sync)
        .await
        .map_err(engine_error)?;
    if global.json {
        print_json(&lists)?;
    } else {
        println!("{:<28} {:>9} {:>8}  NOTE", "LIST", "UPSERTED", "DELETED");
        for list in &lists {
            let note = if list.first_read {
                "first read: every item counts"
            } else if list.reset {
                "position expired: list enumerated again"
            } else {
                ""
            };
            println!(
                "{:<28} {:>9} {:>8}  {note}",
                list.list, list.upserted, list.deleted
            );
        }
    }
    Ok(Exit::Ok)
}

/// Shows a run's progress on a bar from [`progress_bar`].
pub(crate) fn progress_callback(
    bar: &indicatif::ProgressBar,
) -> syncbridge_engine::run::ProgressFn {
    let bar = bar.clone();
    std::sync::Arc::new(move |p: &syncbridge_engine::run::Progress| {
        let c = &p.counters;
        if let Some(expected) = p.expected_rows
            && bar.length() != Some(expected)
        {
            // A known total turns the spinner into a bar with an ETA.
            bar.set_length(expected);
            bar.set_style(progress_style(true));
        }
        bar.set_position(c.processed.max(0) as u64);
        bar.set_message(format!(
            "{} created, {} updated, {} moved, {} deleted, {} unchanged, {} failed",
            c.created, c.updated, c.moved, c.deleted, c.unchanged, c.failed
        ));
    })
}

/// With `--json`, a run that failed still prints its document, read back from its record:
/// `status` FAILED, the counters up to the failure, and `error`. Nothing when the run failed
/// before it was recorded (an unknown sync, a bad config: the error says it all).
async fn print_failed_run(
    engine: &Engine,
    sync: &str,
    started: chrono::DateTime<chrono::Utc>,
) -> Result<(), CliError> {
    let runs = recent_runs(engine.store(), Some(sync), 1)
        .await
        .map_err(store_error)?;
    let Some(run) = runs.into_iter().find(|run| run.start_time >= started) else {
        return Ok(());
    };
    /// The run's report, and why it failed.
    #[derive(serde::Serialize)]
    struct FailedRun<'a> {
        #[serde(flatten)]
        report: syncbridge_engine::run::RunReport,
        error: Option<&'a str>,
    }
    print_json(&FailedRun {
        report: (&run).into(),
        error: run.error_message.as_deref(),
    })
}

/// Logs a run's progress at most once per `every` (rows read and the counters), for runs
/// without a progress bar: cron, a service's journal, a pipe, `--json`.
fn progress_log(every: std::time::Duration) -> syncbridge_engine::run::ProgressFn {
    let last = std::sync::Mutex::new(std::time::Instant::now());
    std::sync::Arc::new(move |p: &syncbridge_engine::run::Progress| {
        let Ok(mut last) = last.lock() else {
            return;
        };
        if last.elapsed() < every {
            return;
        }
        *last = std::time::Instant::now();
        let c = &p.counters;
        tracing::info!(
            read = c.processed,
            created = c.created,
            updated = c.updated,
            moved = c.moved,
            deleted = c.deleted,
            unchanged = c.unchanged,
            failed = c.failed,
            "progress"
        );
    })
}

/// A progress line on an interactive terminal (rows read, rate, counters; with the source's
/// row estimate, a bar with an ETA); nothing when output is piped or `--json` is set, where the
/// log lines and the final summary suffice.
pub(crate) fn progress_bar(global: &GlobalArgs, sync: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal as _;
    if global.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(progress_style(false));
    bar.set_prefix(sync.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}

/// The progress line: a spinner while the total is unknown, a bar with an ETA once it is known.
fn progress_style(total_known: bool) -> indicatif::ProgressStyle {
    let template = if total_known {
        "{spinner} {prefix} [{bar:30}] {pos}/~{len} rows ({rate}, ETA {eta}) {msg}"
    } else {
        "{spinner} {prefix} {pos} rows read ({rate}) {msg}"
    };
    indicatif::ProgressStyle::with_template(template)
        .map(|style| {
            style.progress_chars("=> ").with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} rows/s", state.per_sec());
                },
            )
        })
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner())
}
