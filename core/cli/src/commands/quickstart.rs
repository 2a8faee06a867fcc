//! `syncbridge quickstart`: the whole job on embedded defaults, in seconds.
//!
//! It builds a SQLite `projects` table, starts the Graph emulator in process, applies
//! `examples/local-emulator.yaml` (embedded in the binary) pointed at both, provisions the
//! Active / Closed / Archived lists, runs a first sync, edits the source (updates, status changes
//! that move items between lists, deletes, inserts), runs an incremental sync and a full one
//! (which finds the deletes), then reconciles: the rows each list should hold, computed with SQL
//! straight from the source, against the items the emulator holds.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use sqlx::Connection as _;
use syncbridge_config::apply::{ApplyOptions, apply};
use syncbridge_engine::run::{Engine, RunOptions, RunReport};
use syncbridge_graph_emulator::{Emulator, EmulatorConfig};
use syncbridge_store::Store;
use syncbridge_store::secrets::MasterKey;

use crate::cli::{GlobalArgs, QuickstartArgs};
use crate::commands::print_json;
use crate::commands::run::engine_error;
use crate::exit::{CliError, Exit};

const EXAMPLE: &str = include_str!("../../../../examples/local-emulator.yaml");
const SYNC: &str = "projects";

#[derive(Debug, Serialize)]
struct ListCheck {
    list: String,
    source_rows: i64,
    items: usize,
    status: &'static str,
}

#[derive(Debug, Serialize)]
struct Summary {
    dir: String,
    rows: usize,
    first_run: RunReport,
    edits: Edits,
    incremental_run: RunReport,
    full_run: RunReport,
    reconcile: Vec<ListCheck>,
    duration_ms: u128,
}

#[derive(Debug, Default, Serialize)]
struct Edits {
    updated: u64,
    moved: u64,
    deleted: u64,
    inserted: u64,
}

fn internal(what: &str) -> impl Fn(sqlx::Error) -> CliError + '_ {
    move |error| CliError::internal(format!("quickstart: {what}: {error}"))
}

pub async fn run(global: &GlobalArgs, args: &QuickstartArgs) -> Result<Exit, CliError> {
    let started = Instant::now();
    let say = |text: String| {
        if !global.json {
            println!("{text}");
        }
    };
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| CliError::bad_input(format!("cannot create {}: {e}", args.dir.display())))?;
    let dir = std::fs::canonicalize(&args.dir)
        .map_err(|e| CliError::bad_input(format!("cannot use {}: {e}", args.dir.display())))?;
    for name in ["projects.db", "meta.db", "meta.db-wal", "meta.db-shm"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let source_path = dir.join("projects.db");
    build_table(&source_path, args.rows).await?;
    say(format!(
        "1. created {} with {} projects",
        source_path.display(),
        args.rows
    ));

    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .map_err(|e| CliError::internal(e.to_string()))?;
    let info = emulator.connection_info();
    say(format!(
        "2. started the Graph emulator at {}",
        info.base_url
    ));

    let key = Arc::new(
        MasterKey::load_or_create_file(&dir.join("master.key"))
            .map_err(|e| CliError::bad_input(e.to_string()))?,
    );
    let store_url = format!("sqlite://{}", dir.join("meta.db").display());
    let store = Store::connect(&store_url)
        .await
        .map_err(crate::commands::store_error)?;
    store
        .migrate()
        .await
        .map_err(crate::commands::store_error)?;
    let config_text = EXAMPLE
        .replace("http://127.0.0.1:8765", &info.authority_host)
        .replace("projects.db", &source_path.display().to_string());
    let config = syncbridge_config::load_str(
        &config_text,
        Path::new("examples/local-emulator.yaml"),
        &crate::commands::known_names(),
    )?;
    let options = ApplyOptions {
        prune: false,
        dry_run: false,
        actor: "quickstart".into(),
        master_key: Some(key.clone()),
    };
    let applied = apply(&store, &config, &options)
        .await
        .map_err(|e| CliError::internal(e.to_string()))?;
    say(format!(
        "3. applied examples/local-emulator.yaml to {store_url} ({} objects)",
        applied.changes.len()
    ));

    let engine = Engine::new(
        store.clone(),
        Arc::new(crate::registry::builtin()),
        Some(key),
    );
    let lists = engine.provision(SYNC).await.map_err(engine_error)?;
    say(format!(
        "4. provisioned {} (each with the hidden, unique SyncBridgeKey column)",
        lists
            .iter()
            .map(|l| l.list.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let run = |full: bool| RunOptions {
        full,
        ..RunOptions::default()
    };
    let bar = super::run::progress_bar(global, SYNC);
    let first_run = engine
        .run(
            SYNC,
            &RunOptions {
                progress: bar.as_ref().map(super::run::progress_callback),
                estimate_rows: bar.is_some(),
                ..run(false)
            },
        )
        .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let first_run = first_run.map_err(engine_error)?;
    say(format!("5. first sync: {}", describe(&first_run)));

    let edits = edit_source(&source_path).await?;
    say(format!(
        "6. edited the source: {} budgets updated, {} projects closed (they move lists), {} deleted, {} inserted",
        edits.updated, edits.moved, edits.deleted, edits.inserted
    ));
    let incremental_run = engine.run(SYNC, &run(false)).await.map_err(engine_error)?;
    say(format!(
        "7. incremental sync (UPDATED_AT): {}",
        describe(&incremental_run)
    ));
    let full_run = engine.run(SYNC, &run(true)).await.map_err(engine_error)?;
    say(format!(
        "8. full sync (finds deletes): {}",
        describe(&full_run)
    ));

    let reconcile = reconcile(&source_path, &emulator).await?;
    let all_match = reconcile.iter().all(|c| c.status == "MATCH");
    say("9. reconciliation, source rows routed by SQL vs items in each list:".to_owned());
    say(format!(
        "   {:<20} {:>11} {:>8}  STATUS",
        "LIST", "SOURCE ROWS", "ITEMS"
    ));
    for check in &reconcile {
        say(format!(
            "   {:<20} {:>11} {:>8}  {}",
            check.list, check.source_rows, check.items, check.status
        ));
    }
    let duration_ms = started.elapsed().as_millis();
    say(format!(
        "done in {:.1} s. Explore with: syncbridge --store {store_url} status | runs | dlq list",
        duration_ms as f64 / 1000.0
    ));
    say(format!(
        "(commands that decrypt the stored client secret need this run's key: export SYNCBRIDGE_MASTER_KEY_FILE={})",
        dir.join("master.key").display()
    ));
    emulator.shutdown().await;
    store.close().await;
    if global.json {
        print_json(&Summary {
            dir: dir.display().to_string(),
            rows: args.rows,
            first_run,
            edits,
            incremental_run,
            full_run,
            reconcile,
            duration_ms,
        })?;
    }
    Ok(if all_match { Exit::Ok } else { Exit::Failures })
}

fn describe(report: &RunReport) -> String {
    format!(
        "{} processed, {} created, {} updated, {} moved, {} deleted, {} unchanged, {} failed ({} ms)",
        report.processed,
        report.created,
        report.updated,
        report.moved,
        report.deleted,
        report.unchanged,
        report.failed,
        report.duration_ms
    )
}

async fn connect(path: &Path) -> Result<sqlx::SqliteConnection, CliError> {
    sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .map_err(internal("opening the sample database"))
}

fn timestamp(at: chrono::DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A deterministic `projects` table: half active, a third closed (some more than a year ago),
/// the rest on hold.
async fn build_table(path: &Path, rows: usize) -> Result<(), CliError> {
    let mut db = connect(path).await?;
    sqlx::query(
        "CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
            budget NUMERIC(12,2), started_on DATE, ended_on DATE, updated_at DATETIME NOT NULL)",
    )
    .execute(&mut db)
    .await
    .map_err(internal("creating the table"))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_124);
    let today = Utc::now().date_naive();
    let base = Utc::now() - Duration::days(1);
    let mut tx = db
        .begin()
        .await
        .map_err(internal("starting a transaction"))?;
    for id in 1..=rows {
        let roll: u32 = rng.random_range(0..10);
        let status = match roll {
            0..=4 => "Active",
            5..=7 => "Closed",
            _ => "On hold",
        };
        let started = today - Duration::days(rng.random_range(30..1500));
        let ended = (status == "Closed").then(|| today - Duration::days(rng.random_range(1..730)));
        let budget = format!(
            "{}.{:02}",
            rng.random_range(1_000..2_000_000),
            rng.random_range(0..100)
        );
        sqlx::query("INSERT INTO projects VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(id as i64)
            .bind(format!("  Project {id:05} "))
            .bind(status)
            .bind(budget)
            .bind(started.to_string())
            .bind(ended.map(|d| d.to_string()))
            .bind(timestamp(base - Duration::seconds(rows as i64 - id as i64)))
            .execute(&mut *tx)
            .await
            .map_err(internal("inserting rows"))?;
    }
    tx.commit().await.map_err(internal("committing rows"))?;
    Ok(())
}

/// Updates, status changes, deletes and inserts, each stamping `updated_at`. Each touches rows
/// the others leave alone, so every count shows again in the runs that follow (the deletes in
/// the full run).
async fn edit_source(path: &Path) -> Result<Edits, CliError> {
    let mut db = connect(path).await?;
    let now = timestamp(Utc::now());
    let today = Utc::now().date_naive().to_string();
    let updated = sqlx::query(
        "UPDATE projects SET budget = budget + 1000, updated_at = $1 WHERE id % 50 = 0",
    )
    .bind(&now)
    .execute(&mut db)
    .await
    .map_err(internal("updating budgets"))?
    .rows_affected();
    let mut edits = Edits {
        updated,
        ..Edits::default()
    };
    edits.moved = sqlx::query("UPDATE projects SET status = 'Closed', ended_on = $2, updated_at = $1 WHERE id % 97 = 0 AND id % 50 <> 0 AND status = 'Active'")
        .bind(&now)
        .bind(&today)
        .execute(&mut db)
        .await
        .map_err(internal("closing projects"))?
        .rows_affected();
    // Read before the deletes, so no new row takes the id of one deleted.
    let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM projects")
        .fetch_one(&mut db)
        .await
        .map_err(internal("reading the next id"))?;
    edits.deleted =
        sqlx::query("DELETE FROM projects WHERE id % 101 = 0 AND id % 50 <> 0 AND id % 97 <> 0")
            .execute(&mut db)
            .await
            .map_err(internal("deleting projects"))?
            .rows_affected();
    for id in next..next + 100 {
        sqlx::query("INSERT INTO projects VALUES ($1, $2, 'Active', '5000.00', $3, NULL, $4)")
            .bind(id)
            .bind(format!("New project {id}"))
            .bind(&today)
            .bind(&now)
            .execute(&mut db)
            .await
            .map_err(internal("inserting projects"))?;
        edits.inserted += 1;
    }
    Ok(edits)
}

/// Counts, with SQL independent of the engine's router, the rows each list should hold, and
/// compares them with the emulator's items.
async fn reconcile(
    path: &Path,
    emulator: &syncbridge_graph_emulator::RunningEmulator,
) -> Result<Vec<ListCheck>, CliError> {
    let mut db = connect(path).await?;
    let cutoff = (Utc::now() - Duration::hours(8760))
        .date_naive()
        .to_string();
    let queries = [
        (
            "Active Projects",
            "SELECT count(*) FROM projects WHERE status = 'Active'".to_owned(),
        ),
        (
            "Closed Projects",
            format!(
                "SELECT count(*) FROM projects WHERE status = 'Closed' AND ended_on > '{cutoff}'"
            ),
        ),
        (
            "Archived Projects",
            format!(
                "SELECT count(*) FROM projects WHERE NOT (status = 'Active' OR (status = 'Closed' AND ended_on > '{cutoff}'))"
            ),
        ),
    ];
    let data = emulator.data();
    let mut out = Vec::new();
    for (list, sql) in queries {
        let source_rows: i64 = sqlx::query_scalar(&sql)
            .fetch_one(&mut db)
            .await
            .map_err(internal("counting rows"))?;
        let items = data
            .sites
            .iter()
            .flat_map(|s| &s.lists)
            .find(|l| l.display_name == list)
            .map_or(0, |l| l.items.len());
        let status = if source_rows as usize == items {
            "MATCH"
        } else {
            "MISMATCH"
        };
        out.push(ListCheck {
            list: list.to_owned(),
            source_rows,
            items,
            status,
        });
    }
    Ok(out)
}
