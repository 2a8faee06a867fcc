//! The SharePoint side of the CLI against the Graph emulator: a wrong client secret stops a run
//! at once with exit 3, the AADSTS code and no secret; `sharepoint discover` and `changes` work
//! from a config file.

mod support;

use std::path::Path;

use support::{run, syncbridge};
use syncbridge_graph_emulator::{Emulator, EmulatorConfig, RunningEmulator};

fn config(emulator: &RunningEmulator, source: &Path, secret: &str) -> String {
    let example =
        std::fs::read_to_string(support::repo_root().join("examples/local-emulator.yaml"))
            .expect("example");
    example
        .replace("http://127.0.0.1:8765", &emulator.authority_host())
        .replace("projects.db", &source.display().to_string())
        .replace("demo-client-secret-change-me", secret)
}

async fn setup(dir: &Path) -> std::path::PathBuf {
    use sqlx::Connection as _;
    let source = dir.join("projects.db");
    let mut db =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", source.display()))
            .await
            .expect("source");
    sqlx::raw_sql(
        "CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, budget NUMERIC(12,2), started_on DATE, ended_on DATE, updated_at DATETIME NOT NULL);
         INSERT INTO projects VALUES (1, 'one', 'Active', '1.00', '2025-01-01', NULL, '2026-01-01 00:00:00');
         INSERT INTO projects VALUES (2, 'two', 'Closed', '2.00', '2025-01-01', '2025-06-01', '2026-01-01 00:00:00');",
    )
    .execute(&mut db)
    .await
    .expect("rows");
    source
}

#[tokio::test]
async fn a_wrong_client_secret_exits_3_with_the_aadsts_code_and_never_the_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = setup(dir.path()).await;
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let secret = "not-the-secret-4f9a2c";
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config(&emulator, &source, secret)).expect("config");
    let store = format!("sqlite://{}", dir.path().join("meta.db").display());
    for args in [
        vec!["migrate"],
        vec!["apply", "-f", config_path.to_str().expect("utf-8")],
    ] {
        let output = run(syncbridge().args(["--store", &store]).args(&args));
        assert!(output.status.success(), "{args:?}");
    }
    let output = run(syncbridge().args(["--store", &store, "run", "projects"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("AADSTS7000215"), "{stderr}");
    assert!(
        !stderr.contains(secret) && !stdout.contains(secret),
        "{stderr}"
    );
    assert_eq!(
        emulator.counts().kind("item.create"),
        0,
        "nothing was written"
    );
}

#[tokio::test]
async fn discover_and_changes_from_the_command_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = setup(dir.path()).await;
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let config_path = dir.path().join("config.yaml");
    std::fs::write(
        &config_path,
        config(&emulator, &source, "demo-client-secret-change-me"),
    )
    .expect("config");
    let store = format!("sqlite://{}", dir.path().join("meta.db").display());
    for args in [
        vec!["migrate"],
        vec!["apply", "-f", config_path.to_str().expect("utf-8")],
        vec!["provision", "projects"],
        vec!["run", "projects"],
    ] {
        let output = run(syncbridge().args(["--store", &store]).args(&args));
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = run(syncbridge().args([
        "--store",
        &store,
        "--json",
        "sharepoint",
        "discover",
        "emulator",
    ]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lists: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(lists.as_array().map(Vec::len), Some(3), "{lists}");
    let items: u64 = lists
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|l| l["items"].as_u64())
        .sum();
    assert_eq!(items, 2);

    let output = run(syncbridge().args(["--store", &store, "--json", "changes", "projects"]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let changes: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let upserted: u64 = changes
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|l| l["upserted"].as_u64())
        .sum();
    assert_eq!(upserted, 2, "{changes}");

    let output = run(syncbridge().args(["--store", &store, "sharepoint", "discover", "nope"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no SharePoint connection named `nope`")
    );
}
