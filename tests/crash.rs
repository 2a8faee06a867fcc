//! Crash safety (DESIGN.md §4): `syncbridge run` is killed with SIGKILL at random moments during
//! the initial sync of 20,000 rows (6 trials) and again while half of them move between lists
//! (6 trials); after a final run every source row is exactly one item, in exactly the list its
//! shard says, with the right content.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use sqlx::Connection as _;
use support::{run, syncbridge};
use syncbridge_graph_emulator::{Emulator, EmulatorConfig, RunningEmulator};

const ROWS: i64 = 20_000;
const TRIALS: usize = 6;

async fn source(path: &Path) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .expect("source db")
}

fn config(emulator: &RunningEmulator, source: &Path) -> String {
    let example =
        std::fs::read_to_string(support::repo_root().join("examples/local-emulator.yaml"))
            .expect("example");
    example
        .replace("http://127.0.0.1:8765", &emulator.authority_host())
        .replace("projects.db", &source.display().to_string())
}

/// One item as the check reads it.
#[derive(Debug)]
struct Item {
    list: String,
    title: String,
    status: String,
    project_id: Option<i64>,
}

/// Every item, by identity key.
fn items(emulator: &RunningEmulator) -> HashMap<String, Vec<Item>> {
    let mut out: HashMap<String, Vec<Item>> = HashMap::new();
    for list in emulator.data().sites.iter().flat_map(|s| &s.lists) {
        for item in list.items.values() {
            let text = |name: &str| {
                item.fields
                    .get(name)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned()
            };
            out.entry(text("SyncBridgeKey")).or_default().push(Item {
                list: list.display_name.clone(),
                title: text("Title"),
                status: text("Status"),
                project_id: item
                    .fields
                    .get("ProjectId")
                    .and_then(serde_json::Value::as_f64)
                    .map(|n| n as i64),
            });
        }
    }
    out
}

/// Every source row is exactly one item, in the list its shard says, with its current title,
/// status and id, and every item is a source row's.
async fn assert_every_row_is_one_item(
    db: &mut sqlx::SqliteConnection,
    meta: &Path,
    emulator: &RunningEmulator,
    after: &str,
) {
    let rows: Vec<(i64, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, name, status, ended_on FROM projects")
            .fetch_all(&mut *db)
            .await
            .expect("rows");
    let items = items(emulator);
    let total: usize = items.values().map(Vec::len).sum();
    assert_eq!(total, rows.len(), "{after}: item count equals row count");
    let ledger_keys: HashMap<String, i64> = {
        let meta = format!("sqlite://{}", meta.display());
        let mut meta = sqlx::SqliteConnection::connect(&meta).await.expect("meta");
        sqlx::query_as::<_, (String, String)>(
            "SELECT source_identity_hash, source_identity FROM sync_ledger",
        )
        .fetch_all(&mut meta)
        .await
        .expect("ledger")
        .into_iter()
        .map(|(hash, identity)| (hash, identity.parse().expect("numeric identity")))
        .collect()
    };
    let by_id: HashMap<i64, &(i64, String, String, Option<String>)> =
        rows.iter().map(|r| (r.0, r)).collect();
    let closed_since = (chrono::Utc::now() - chrono::Duration::hours(8760))
        .date_naive()
        .to_string();
    for (key, copies) in &items {
        assert_eq!(
            copies.len(),
            1,
            "{after}: identity {key} has {} items: {copies:?}",
            copies.len()
        );
        let id = ledger_keys
            .get(key)
            .unwrap_or_else(|| panic!("{after}: item {key} has no ledger row"));
        let (_, name, status, ended) = by_id[id];
        let expected = match (status.as_str(), ended.as_deref()) {
            ("Active", _) => "Active Projects",
            ("Closed", Some(day)) if day > closed_since.as_str() => "Closed Projects",
            _ => "Archived Projects",
        };
        let item = &copies[0];
        assert_eq!(
            item.list, expected,
            "{after}: row {id} is in the wrong list"
        );
        assert_eq!(
            (item.title.as_str(), item.status.as_str(), item.project_id),
            (name.trim(), status.as_str(), Some(*id)),
            "{after}: row {id} has stale content"
        );
    }
}

/// Runs `syncbridge run` and kills it after `delay` (if it is still running).
fn run_and_kill(store: &str, delay: Duration) -> bool {
    let mut child = syncbridge()
        .args(["--store", store, "run", "projects", "--batch-size", "150"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn run");
    std::thread::sleep(delay);
    let killed = matches!(child.try_wait(), Ok(None));
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_never_duplicate_or_lose_an_item() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source_path = dir.path().join("projects.db");
    let mut db = source(&source_path).await;
    sqlx::query("CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, budget NUMERIC(12,2), started_on DATE, ended_on DATE, updated_at DATETIME NOT NULL)")
        .execute(&mut db)
        .await
        .expect("table");
    // Closed a month ago: in "Closed Projects" (closed within 365 days), however far from the
    // 365-day boundary the test runs.
    let closed_on = (chrono::Utc::now() - chrono::Duration::days(30))
        .date_naive()
        .to_string();
    let mut tx = db.begin().await.expect("tx");
    for id in 1..=ROWS {
        let status = ["Active", "Closed", "On hold"][(id % 3) as usize];
        let ended = (status == "Closed").then_some(closed_on.as_str());
        sqlx::query("INSERT INTO projects VALUES ($1, $2, $3, '10.00', '2025-01-01', $4, $5)")
            .bind(id)
            .bind(format!("Project {id}"))
            .bind(status)
            .bind(ended)
            .bind(format!(
                "2026-01-01 00:{:02}:{:02}",
                (id / 60) % 60,
                id % 60
            ))
            .execute(&mut *tx)
            .await
            .expect("row");
    }
    tx.commit().await.expect("commit");

    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config(&emulator, &source_path)).expect("config");
    let store = format!("sqlite://{}", dir.path().join("meta.db").display());
    for args in [
        vec!["migrate"],
        vec!["apply", "-f", config_path.to_str().expect("utf-8")],
        vec!["provision", "projects"],
    ] {
        let output = run(syncbridge().args(["--store", &store]).args(&args));
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut kills = 0;
    let store_for_threads = store.clone();
    // Phase 1: the initial sync, killed again and again.
    for _ in 0..TRIALS {
        let delay = Duration::from_millis(rng.random_range(150..1500));
        let store = store_for_threads.clone();
        kills += usize::from(
            tokio::task::spawn_blocking(move || run_and_kill(&store, delay))
                .await
                .expect("join"),
        );
    }
    // The kills interrupted creates under way: the next runs found their intents.
    let meta = format!("sqlite://{}", dir.path().join("meta.db").display());
    let mut meta = sqlx::SqliteConnection::connect(&meta).await.expect("meta");
    let recoveries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sync_events WHERE event_type = 'RECOVERY'")
            .fetch_one(&mut meta)
            .await
            .expect("recovery events");
    let intents_left: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_create_intents")
        .fetch_one(&mut meta)
        .await
        .expect("intents");
    assert!(
        recoveries + intents_left > 0,
        "no killed run left a create intent behind: the test did not exercise recovery"
    );
    // Phase 2: half the rows change shard (moves), killed mid-run too.
    sqlx::query("UPDATE projects SET status = CASE status WHEN 'Active' THEN 'On hold' WHEN 'On hold' THEN 'Active' ELSE status END, name = name || ' v2', updated_at = '2026-06-01 00:00:00' WHERE id % 2 = 0")
        .execute(&mut db)
        .await
        .expect("moves");
    for _ in 0..TRIALS {
        let delay = Duration::from_millis(rng.random_range(150..1500));
        let store = store_for_threads.clone();
        kills += usize::from(
            tokio::task::spawn_blocking(move || run_and_kill(&store, delay))
                .await
                .expect("join"),
        );
    }
    assert!(
        kills >= 10,
        "at least 10 runs were killed mid-way ({kills} of {})",
        2 * TRIALS
    );

    // A final, uninterrupted run, which must settle everything the kills left behind; then a
    // full one, which must find nothing left to do.
    for full in [false, true] {
        let mut args = vec!["--store", store.as_str(), "run", "projects", "--json"];
        if full {
            args.push("--full");
        }
        let output = run(syncbridge().args(&args));
        assert!(
            output.status.success(),
            "final run: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let after = if full {
            "the full run"
        } else {
            "the final run"
        };
        if full {
            let report: serde_json::Value =
                serde_json::from_slice(&output.stdout).expect("--json prints one document");
            for counter in ["created", "updated", "moved", "deleted", "failed"] {
                assert_eq!(report[counter], 0, "{after} wrote something: {report}");
            }
        }
        assert_every_row_is_one_item(&mut db, &dir.path().join("meta.db"), &emulator, after).await;
    }
    // The killed runs never recorded an end; the next run marked them.
    let meta = format!("sqlite://{}", dir.path().join("meta.db").display());
    let mut meta = sqlx::SqliteConnection::connect(&meta).await.expect("meta");
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM sync_runs GROUP BY status ORDER BY status")
            .fetch_all(&mut meta)
            .await
            .expect("runs");
    assert!(
        statuses.iter().all(|(status, _)| status != "RUNNING"),
        "{statuses:?}"
    );
    let noticed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sync_events WHERE event_type = 'UNFINISHED_RUNS'")
            .fetch_one(&mut meta)
            .await
            .expect("events");
    assert!(noticed > 0, "the run after a kill says so");
}
