//! End-to-end tests of the `syncbridge` binary for the foundation (issue 2): migrate and apply
//! on both meta-store backends, idempotent re-apply, config errors with exit code 2, an
//! unreachable store with exit code 3, and no plaintext secret at rest.

mod support;

use std::process::Command;

use support::{PgDatabase, run, syncbridge};

const EXAMPLE: &str = "examples/local-emulator.yaml";
const EXAMPLE_SECRET: &str = "demo-client-secret-change-me";

#[test]
fn help_lists_the_commands() {
    let output = run(syncbridge().arg("--help"));
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for command in ["migrate", "apply", "schema", "status"] {
        assert!(text.contains(command), "--help lacks `{command}`:\n{text}");
    }
    assert!(
        text.contains("Exit codes"),
        "--help explains exit codes:\n{text}"
    );
}

fn apply_twice(store: &str) -> (String, String) {
    let migrate = run(syncbridge().args(["--store", store, "migrate"]));
    assert!(
        migrate.status.success(),
        "migrate failed: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let first = run(syncbridge().args(["--store", store, "apply", "-f", EXAMPLE]));
    assert!(
        first.status.success(),
        "first apply failed: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = run(syncbridge().args(["--store", store, "apply", "-f", EXAMPLE]));
    assert!(
        second.status.success(),
        "second apply failed: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    (
        String::from_utf8_lossy(&first.stdout).into_owned(),
        String::from_utf8_lossy(&second.stdout).into_owned(),
    )
}

#[test]
fn sqlite_store_apply_is_idempotent_and_keeps_secrets_encrypted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("m.db");
    let store = format!("sqlite://{}", db.display());
    let (first, second) = apply_twice(&store);
    assert!(
        first.contains("created sync_definitions projects"),
        "{first}"
    );
    assert!(
        second.contains("no changes"),
        "second apply should change nothing:\n{second}"
    );

    // The literal client secret must not be anywhere in the database files.
    for entry in std::fs::read_dir(dir.path()).expect("list dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read db file");
        let found = bytes
            .windows(EXAMPLE_SECRET.len())
            .any(|w| w == EXAMPLE_SECRET.as_bytes());
        assert!(!found, "plaintext secret found in {}", path.display());
    }

    // JSON output for scripts.
    let output = run(syncbridge().args(["--store", &store, "--json", "apply", "-f", EXAMPLE]));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json report");
    assert_eq!(report["changes"], serde_json::json!([]));
    assert!(!String::from_utf8_lossy(&output.stdout).contains(EXAMPLE_SECRET));
}

#[test]
fn postgres_store_apply_is_idempotent_and_keeps_secrets_encrypted() {
    let Some(database) = PgDatabase::create("cli_apply") else {
        return;
    };
    let (first, second) = apply_twice(&database.url);
    assert!(
        first.contains("created sync_definitions projects"),
        "{first}"
    );
    assert!(second.contains("no changes"), "{second}");
    let dump = Command::new("pg_dump")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "--data-only",
            &database.name,
        ])
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("sharepoint_connections"), "dump has data");
    assert!(
        !dump.contains(EXAMPLE_SECRET),
        "plaintext secret in the Postgres dump"
    );
}

#[test]
fn config_mistakes_exit_2_with_path_and_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("sqlite://{}", dir.path().join("m.db").display());
    let example = std::fs::read_to_string(support::repo_root().join(EXAMPLE)).expect("example");
    let cases = [
        (
            "wrong enum",
            "strategy: UPDATED_AT",
            "strategy: UPDATED",
            "syncs[0].cursor.strategy",
            "FULL_SCAN",
        ),
        (
            "missing field",
            "    database_name: projects.db\n",
            "",
            "databases[0]",
            "missing field `database_name`",
        ),
        (
            "unknown key",
            "    owner_team: Platform",
            "    owner: Platform",
            "applications[0].owner",
            "owner_team",
        ),
        (
            "dangling reference",
            "list: Closed Projects",
            "list: Closed",
            "syncs[0].targets[1].list",
            "Active Projects",
        ),
    ];
    for (what, from, to, path, hint) in cases {
        assert!(example.contains(from), "{what}: example lacks `{from}`");
        let file = dir.path().join(format!("{}.yaml", what.replace(' ', "-")));
        std::fs::write(&file, example.replacen(from, to, 1)).expect("write config");
        let output = run(syncbridge()
            .args(["--store", &store, "apply", "-f"])
            .arg(&file));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{what}: exit code; stderr:\n{stderr}"
        );
        assert!(
            stderr.contains(&file.display().to_string()),
            "{what}: names the file:\n{stderr}"
        );
        assert!(stderr.contains(path), "{what}: names `{path}`:\n{stderr}");
        assert!(stderr.contains(hint), "{what}: says `{hint}`:\n{stderr}");
        assert!(stderr.contains("fix:"), "{what}: gives a fix:\n{stderr}");
    }
}

#[test]
fn unreachable_postgres_store_exits_3_with_the_address() {
    let output = run(syncbridge().args([
        "--store",
        "postgres://sb:topsecret@127.0.0.1:1/meta",
        "migrate",
    ]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "stderr:\n{stderr}");
    assert!(
        stderr.contains("127.0.0.1:1"),
        "names the address:\n{stderr}"
    );
    assert!(
        !stderr.contains("topsecret"),
        "leaks the password:\n{stderr}"
    );
}

#[test]
fn schema_prints_a_json_schema() {
    let output = run(syncbridge().arg("schema"));
    assert!(output.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert!(schema["properties"]["syncs"].is_object(), "{schema}");
}
