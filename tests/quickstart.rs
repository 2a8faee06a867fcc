//! `syncbridge quickstart` end to end (issue 6): a generated SQLite table, the in-process Graph
//! emulator, three provisioned lists, a full sync, edits with moves and deletes, incremental and
//! full syncs, and a reconciliation that must match list by list.

mod support;

use support::{run, syncbridge};

#[test]
fn quickstart_ends_with_every_list_matching_the_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = run(syncbridge()
        // Text logs at info, colour left to the binary: the checks below see what it decides.
        .env_remove("NO_COLOR")
        .env_remove("SYNCBRIDGE_LOG_FORMAT")
        .env("RUST_LOG", "info")
        // The default size, where the edits' rows would overlap (ids divisible by 50 and 97,
        // 50 and 101, 97 and 101) had the edits not kept them apart.
        .args(["--json", "quickstart", "--rows", "10000", "--dir"])
        .arg(dir.path()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "quickstart failed: {stderr}");
    // Its log lines reach a pipe here, so they come without a terminal's colour codes.
    assert!(
        stderr.contains("created a new master key file"),
        "the quickstart logs the key it creates: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes in logs written to a pipe: {stderr:?}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON document");
    assert_eq!(summary["first_run"]["created"], 10000, "{summary}");
    assert_eq!(summary["first_run"]["failed"], 0);
    let edits = &summary["edits"];
    let incremental = &summary["incremental_run"];
    assert_eq!(incremental["created"], edits["inserted"], "{summary}");
    assert_eq!(incremental["moved"], edits["moved"], "{summary}");
    assert_eq!(incremental["updated"], edits["updated"], "{summary}");
    assert_eq!(
        summary["full_run"]["deleted"], edits["deleted"],
        "{summary}"
    );
    assert_eq!(
        summary["full_run"]["created"], 0,
        "a full rerun writes only deletes"
    );
    assert_eq!(summary["full_run"]["updated"], 0);
    let lists = summary["reconcile"].as_array().expect("reconcile rows");
    assert_eq!(lists.len(), 3);
    for list in lists {
        assert_eq!(list["status"], "MATCH", "{list}");
    }

    // The meta-store it leaves behind answers status and runs.
    let store = format!("sqlite://{}", dir.path().join("meta.db").display());
    let runs = run(syncbridge().args(["--store", &store, "--json", "runs"]));
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).expect("runs json");
    assert_eq!(runs.as_array().expect("runs").len(), 3);
    let status = run(syncbridge().args(["--store", &store, "status"]));
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("projects") && text.contains("COMPLETED"),
        "{text}"
    );
    assert!(
        !text.contains("demo-client-secret"),
        "status shows no secret"
    );
}

/// With 101 rows the last row is one the edits delete: the rows inserted after it take new ids,
/// so each is created, and the delete is found (a new row once took the deleted row's id).
#[test]
fn quickstart_inserts_never_reuse_a_deleted_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = run(syncbridge()
        .args(["--json", "quickstart", "--rows", "101", "--dir"])
        .arg(dir.path()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "quickstart failed: {stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON document");
    assert_eq!(summary["edits"]["deleted"], 1, "{summary}");
    assert_eq!(
        summary["incremental_run"]["created"], summary["edits"]["inserted"],
        "{summary}"
    );
    assert_eq!(summary["full_run"]["deleted"], 1, "{summary}");
}
