//! Graceful stop: on SIGTERM `syncbridge run` finishes the writes in flight, records them and
//! exits 1 with the run recorded as FAILED, "stopped before the end", leaving no intent behind; a
//! second signal stops it at once (exit 130). Either way the next run completes the sync with
//! every row exactly once. Also: progress lines without a terminal, and the `--json` document
//! of a run that failed under way.

mod support;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use support::{run, syncbridge};
use syncbridge_graph_emulator::{Emulator, EmulatorConfig, FaultConfig, RunningEmulator};

const ROWS: i64 = 6_000;

fn keys(emulator: &RunningEmulator) -> Vec<String> {
    let mut keys: Vec<String> = emulator
        .data()
        .sites
        .iter()
        .flat_map(|s| &s.lists)
        .flat_map(|l| l.items.values())
        .filter_map(|i| {
            i.fields
                .get("SyncBridgeKey")
                .and_then(|k| k.as_str())
                .map(str::to_owned)
        })
        .collect();
    keys.sort();
    keys
}

fn terminate(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Writes begun and not recorded as done: create intents, and ledger rows in another state
/// than SYNCED (a pending update, move or delete).
async fn pending_intents(store_path: &Path) -> i64 {
    let mut meta = sqlx::SqliteConnection::connect(&format!("sqlite://{}", store_path.display()))
        .await
        .expect("meta-store");
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM sync_create_intents)
              + (SELECT count(*) FROM sync_ledger WHERE sync_state <> 'SYNCED')",
    )
    .fetch_one(&mut meta)
    .await
    .expect("intents")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_writes_in_flight_and_a_second_signal_stops_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("projects.db");
    let mut db =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", source.display()))
            .await
            .expect("source");
    sqlx::query("CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, budget NUMERIC(12,2), started_on DATE, ended_on DATE, updated_at DATETIME NOT NULL)")
        .execute(&mut db)
        .await
        .expect("table");
    let mut tx = db.begin().await.expect("tx");
    for id in 1..=ROWS {
        sqlx::query("INSERT INTO projects VALUES ($1, $2, 'Active', '1.00', '2025-01-01', NULL, '2026-01-01 00:00:00')")
            .bind(id)
            .bind(format!("Project {id}"))
            .execute(&mut *tx)
            .await
            .expect("row");
    }
    tx.commit().await.expect("commit");

    // Every $batch takes 30 ms more, so a run lasts long enough to be interrupted.
    let mut config = EmulatorConfig::default();
    config.faults.latency_ms = 30;
    config.faults.kinds = vec!["batch".into()];
    let emulator = Emulator::start_local(config).await.expect("emulator");
    let example =
        std::fs::read_to_string(support::repo_root().join("examples/local-emulator.yaml"))
            .expect("example");
    let config_path = dir.path().join("config.yaml");
    std::fs::write(
        &config_path,
        example
            .replace("http://127.0.0.1:8765", &emulator.authority_host())
            .replace("projects.db", &source.display().to_string()),
    )
    .expect("config");
    let store_path = dir.path().join("meta.db");
    let store = format!("sqlite://{}", store_path.display());
    for args in [
        vec!["migrate"],
        vec!["apply", "-f", config_path.to_str().expect("utf-8")],
        vec!["provision", "projects"],
    ] {
        let output = run(syncbridge().args(["--store", &store]).args(&args));
        assert!(output.status.success(), "{args:?}");
    }
    let spawn = || {
        syncbridge()
            .args(["--store", &store, "run", "projects", "--batch-size", "100"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn run")
    };

    // One signal: the run finishes what it sent, records it, and stops.
    let child = spawn();
    std::thread::sleep(Duration::from_millis(700));
    terminate(&child);
    let output = child.wait_with_output().expect("run ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("finishing the batches in flight"),
        "{stderr}"
    );
    assert_eq!(
        pending_intents(&store_path).await,
        0,
        "no intent left behind"
    );
    let written = keys(&emulator).len();
    assert!(
        written > 0 && written < ROWS as usize,
        "stopped part-way ({written} of {ROWS})"
    );

    // Two signals: it stops at once.
    let child = spawn();
    std::thread::sleep(Duration::from_millis(500));
    terminate(&child);
    std::thread::sleep(Duration::from_millis(20));
    terminate(&child);
    let started = Instant::now();
    let output = child.wait_with_output().expect("run ends");
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // The next runs complete the sync: every row once. Without a terminal, progress is logged
    // (here after every batch).
    let output = run(syncbridge()
        .args(["--store", &store, "run", "projects", "--full"])
        .args(["--batch-size", "1000", "--progress-every", "0"])
        .env("RUST_LOG", "info"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.lines().any(|line| line.contains(" progress ")
            && line.contains("read=")
            && line.contains("created=")),
        "{stderr}"
    );
    let keys = keys(&emulator);
    assert_eq!(keys.len(), ROWS as usize, "every row is an item");
    let mut unique = keys.clone();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "no row twice");

    // A run that fails once under way still prints its document with `--json`: here SharePoint
    // answers every delete 503.
    sqlx::query("DELETE FROM projects WHERE id = 1")
        .execute(&mut db)
        .await
        .expect("delete");
    emulator.set_faults(FaultConfig {
        seed: 1,
        rate_503: 1.0,
        retry_after_seconds: 0.0,
        kinds: vec!["item.delete".into()],
        ..FaultConfig::default()
    });
    let output = run(syncbridge().args(["--store", &store, "run", "projects", "--full", "--json"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("one JSON document ({e}): {stderr}"));
    assert_eq!(report["status"], "FAILED", "{report}");
    assert_eq!(report["processed"], ROWS - 1, "{report}");
    assert!(report["run_id"].is_string(), "{report}");
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("503") || e.contains("serviceNotAvailable")),
        "{report}"
    );
}
