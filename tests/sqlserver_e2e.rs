//! A table served over TDS by the test server, synced to the Graph emulator by the `syncbridge`
//! binary with the push engine: a full initial run, then change tracking carrying an insert,
//! an update and a delete in the next run.

mod support;

use support::{list_titles, run, syncbridge};
use syncbridge_graph_emulator::{Emulator, EmulatorConfig};
use syncbridge_tds_server::{Column, Database, SqlType, SqlValue, TdsServer};

fn project(id: i64, name: &str) -> Vec<(&'static str, SqlValue)> {
    vec![
        ("id", SqlValue::Int(id)),
        ("name", SqlValue::Text(name.into())),
        ("budget", SqlValue::Decimal(i128::from(id) * 1000 + 50, 2)),
        (
            "started_on",
            SqlValue::Date(chrono::NaiveDate::from_ymd_opt(2024, 1, 1 + id as u32).expect("date")),
        ),
    ]
}

// The binary runs as a child process while this test's runtime serves TDS: two workers, so
// the blocking wait for the child leaves one free for the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tds_table_syncs_to_the_emulator_with_change_tracking() {
    let mut db = Database::new("pmo");
    db.create_table(
        "dbo",
        "projects",
        vec![
            Column::new("id", SqlType::Int).not_null(),
            Column::new("name", SqlType::NVarChar(Some(200))).not_null(),
            Column::new("budget", SqlType::Decimal(12, 2)),
            Column::new("started_on", SqlType::Date),
        ],
        &["id"],
    );
    for id in 1..=25 {
        db.insert("dbo", "projects", &project(id, &format!("Project {id}")))
            .expect("insert");
    }
    db.enable_change_tracking("dbo", "projects")
        .expect("tracking");
    let server = TdsServer::start(db).await.expect("TDS server");
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "version: 1
applications: [{{ name: app }}]
databases:
  - name: pmo
    application: app
    type: sqlserver
    database_name: pmo
    instances:
      - label: main
        host: 127.0.0.1
        port: {port}
        user: sync
        password: not-checked-by-the-test-server
        options: {{ encrypt: not_supported }}
{sharepoint}syncs:
  - name: projects
    source: {{ database: pmo, table: dbo.projects }}
    key: {{ strategy: PRIMARY_KEY }}
    cursor: {{ strategy: LSN }}
    targets: [{{ name: main, connection: emulator, list: Projects }}]
    mappings:
      - {{ source: id, target: ProjectId, target_type: number }}
      - {{ source: name, target: Title }}
      - {{ source: budget, target: Budget, target_type: currency }}
      - {{ source: started_on, target: StartedOn, target_type: dateTime }}
",
        port = server.address().port(),
        sharepoint = info.config_section("emulator", &["Projects"]),
    );
    let config_path = dir.path().join("sqlserver.yaml");
    std::fs::write(&config_path, config).expect("config");
    let store = format!("sqlite://{}", dir.path().join("meta.db").display());
    let cli = |args: &[&str]| {
        let mut command = syncbridge();
        command.args(["--store", &store]).args(args);
        let output = run(&mut command);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    cli(&["migrate"]);
    cli(&["apply", "-f", config_path.to_str().expect("utf-8")]);
    let introspected = cli(&["introspect", "pmo"]);
    assert!(
        introspected.contains("1 tables") && introspected.contains("4 columns"),
        "{introspected}"
    );
    cli(&["provision", "projects"]);
    let report: serde_json::Value =
        serde_json::from_str(&cli(&["run", "projects", "--json"])).expect("json");
    assert_eq!(report["created"].as_i64(), Some(25), "{report}");
    assert_eq!(list_titles(&emulator, "Projects").len(), 25);

    server.with_database(|db| {
        db.insert("dbo", "projects", &project(26, "Project 26"))
            .expect("insert");
        db.update(
            "dbo",
            "projects",
            &[SqlValue::Int(3)],
            &[("name", SqlValue::Text("Project three".into()))],
        )
        .expect("update");
        db.delete("dbo", "projects", &[SqlValue::Int(4)])
            .expect("delete");
    });
    let report: serde_json::Value =
        serde_json::from_str(&cli(&["run", "projects", "--json"])).expect("json");
    assert_eq!(
        (
            report["processed"].as_i64(),
            report["created"].as_i64(),
            report["updated"].as_i64(),
            report["deleted"].as_i64()
        ),
        (Some(3), Some(1), Some(1), Some(1)),
        "{report}"
    );
    let titles = list_titles(&emulator, "Projects");
    assert_eq!(titles.len(), 25);
    assert!(titles.contains(&"Project three".to_owned()));
    assert!(!titles.contains(&"Project 4".to_owned()));
    let reconcile = cli(&["reconcile", "projects"]);
    assert!(
        reconcile.contains("MATCH") && !reconcile.contains("MISMATCH"),
        "{reconcile}"
    );

    // A delete whose change-tracking history is cleaned up before the next run: the source
    // cannot continue from its position, so the run reads the whole table again and finds the
    // delete by comparison (with a WARN event saying so).
    server.with_database(|db| {
        db.delete("dbo", "projects", &[SqlValue::Int(5)])
            .expect("delete");
        db.purge_change_tracking("dbo", "projects").expect("purge");
    });
    let report: serde_json::Value =
        serde_json::from_str(&cli(&["run", "projects", "--json"])).expect("json");
    assert_eq!(
        (
            report["processed"].as_i64(),
            report["deleted"].as_i64(),
            report["unchanged"].as_i64()
        ),
        (Some(24), Some(1), Some(24)),
        "{report}"
    );
    assert!(!list_titles(&emulator, "Projects").contains(&"Project 5".to_owned()));
    assert_eq!(list_titles(&emulator, "Projects").len(), 24);
    // And change tracking carries on from the new snapshot.
    server.with_database(|db| {
        db.insert("dbo", "projects", &project(27, "Project 27"))
            .expect("insert");
    });
    let report: serde_json::Value =
        serde_json::from_str(&cli(&["run", "projects", "--json"])).expect("json");
    assert_eq!(report["created"].as_i64(), Some(1), "{report}");
}
