//! A PostgreSQL → emulator sync whose mapping uses a WASM transform and whose routing uses a WASM
//! sharding predicate; then the transform's `.wasm` file is replaced and the next run writes
//! the new behaviour — the same `syncbridge` binary throughout.

mod support;

use sqlx::Connection as _;
use support::{PgDatabase, list_titles, run, syncbridge, wasm_guests};
use syncbridge_graph_emulator::{Emulator, EmulatorConfig};

#[tokio::test]
async fn wasm_transform_and_sharding_and_a_swapped_module() {
    let Some(guests) = wasm_guests() else { return };
    let Some(pg) = PgDatabase::create("wasm") else {
        return;
    };
    let mut db = sqlx::PgConnection::connect(&pg.url).await.expect("source");
    sqlx::raw_sql(
        "CREATE TABLE projects (id int PRIMARY KEY, name text NOT NULL, status text, ended_on date);
         INSERT INTO projects VALUES
           (1, 'ada LOVELACE', 'Active', NULL),
           (2, 'grace hopper', 'Closed', current_date - 10),
           (3, 'alan turing', 'Closed', date '2001-01-01'),
           (4, 'no status', NULL, NULL);",
    )
    .execute(&mut db)
    .await
    .expect("projects");

    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugin dir");
    std::fs::copy(guests.join("format.wasm"), plugins.join("names.wasm")).expect("copy");
    std::fs::copy(guests.join("status_shard.wasm"), plugins.join("shard.wasm")).expect("copy");
    let config = format!(
        "version: 1
applications: [{{ name: app }}]
databases:
  - name: pg
    application: app
    type: postgres
    database_name: {database}
    instances: [{{ label: main, url: '{url}' }}]
{sharepoint}syncs:
  - name: projects
    source: {{ database: pg, table: public.projects }}
    key: {{ strategy: PRIMARY_KEY }}
    cursor: {{ strategy: FULL_SCAN }}
    target_strategy: CONDITIONAL
    sharding: wasm:shard.wasm#by_status
    targets:
      - {{ name: Active, connection: emulator, list: Active }}
      - {{ name: Closed, connection: emulator, list: Closed }}
      - {{ name: Archived, connection: emulator, list: Archived, default: true }}
    mappings:
      - {{ source: id, target: ProjectId, target_type: number }}
      - {{ source: name, target: Title, transform: 'wasm:names.wasm#title_case' }}
      - {{ source: status, target: Status }}
      - {{ source: ended_on, target: EndedOn, target_type: dateTime }}
",
        url = pg.url,
        database = pg.name,
        sharepoint = info.config_section("emulator", &["Active", "Closed", "Archived"]),
    );
    let config_path = dir.path().join("wasm.yaml");
    std::fs::write(&config_path, config).expect("config");
    let store = format!("sqlite://{}", dir.path().join("meta.db").display());
    // Exit 1 = finished with rows in the dead-letter queue.
    let cli_expecting = |code: i32, args: &[&str]| {
        let mut command = syncbridge();
        command
            .args(["--store", &store])
            .args(args)
            .env("SYNCBRIDGE_PLUGIN_DIR", &plugins)
            .env("SYNCBRIDGE_WASM_CACHE", dir.path().join("cache"));
        let output = run(&mut command);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let cli = |args: &[&str]| cli_expecting(0, args);
    cli(&["migrate"]);
    cli(&["apply", "-f", config_path.to_str().expect("utf-8")]);
    cli(&["provision", "projects"]);
    let report: serde_json::Value =
        serde_json::from_str(&cli_expecting(1, &["run", "projects", "--json"])).expect("json");
    // The row without a status is dead-lettered by the predicate; the others are routed.
    assert_eq!(
        (report["created"].as_i64(), report["failed"].as_i64()),
        (Some(3), Some(1)),
        "{report}"
    );
    assert_eq!(list_titles(&emulator, "Active"), ["Ada Lovelace"]);
    assert_eq!(list_titles(&emulator, "Closed"), ["Grace Hopper"]);
    assert_eq!(list_titles(&emulator, "Archived"), ["Alan Turing"]);
    let dlq = cli(&["dlq", "list", "projects"]);
    assert!(dlq.contains("no `status`"), "{dlq}");
    // Reconciliation: the lists hold what is routed to them, and the row routed nowhere is
    // named (exit 1).
    let reconciled: serde_json::Value =
        serde_json::from_str(&cli_expecting(1, &["reconcile", "projects", "--json"]))
            .expect("json");
    assert_eq!(
        (
            reconciled["unassigned"].as_i64(),
            reconciled["unassigned_rows"].clone()
        ),
        (Some(1), serde_json::json!(["4"])),
        "{reconciled}"
    );
    assert!(
        reconciled["lists"]
            .as_array()
            .expect("lists")
            .iter()
            .all(|l| l["status"] == "MATCH"),
        "{reconciled}"
    );
    // The entry by id: shown, scheduled for a retry, discarded; then it is no longer open.
    let entries: serde_json::Value =
        serde_json::from_str(&cli(&["dlq", "list", "projects", "--json"])).expect("json");
    let id = entries[0]["id"].as_str().expect("an entry id").to_owned();
    let shown: serde_json::Value =
        serde_json::from_str(&cli(&["dlq", "show", &id, "--json"])).expect("json");
    assert_eq!(shown["stage_failed"], "ROUTE", "{shown}");
    for action in ["retry", "discard"] {
        let done: serde_json::Value =
            serde_json::from_str(&cli(&["dlq", action, &id, "--json"])).expect("json");
        assert_eq!(
            (done["id"].as_str(), done["action"].as_str()),
            (Some(id.as_str()), Some(action))
        );
    }
    let open: serde_json::Value =
        serde_json::from_str(&cli(&["dlq", "list", "projects", "--json"])).expect("json");
    assert_eq!(open, serde_json::json!([]), "a discarded entry is not open");
    cli_expecting(2, &["dlq", "retry", &id]);

    // A new version of the rule ships as a file; the same binary picks it up on the next run.
    std::fs::copy(guests.join("format_v2.wasm"), plugins.join("names.wasm")).expect("swap");
    let report: serde_json::Value =
        serde_json::from_str(&cli_expecting(1, &["run", "projects", "--json"])).expect("json");
    assert_eq!(report["updated"].as_i64(), Some(3), "{report}");
    assert_eq!(list_titles(&emulator, "Active"), ["ADA LOVELACE"]);
    assert_eq!(list_titles(&emulator, "Closed"), ["GRACE HOPPER"]);
    assert_eq!(list_titles(&emulator, "Archived"), ["ALAN TURING"]);
}

#[test]
fn plugins_check_names_the_world_or_the_reason() {
    let Some(guests) = wasm_guests() else { return };
    let cache = tempfile::tempdir().expect("cache");
    let check = |args: &[&str]| {
        let output = run(syncbridge()
            .env("SYNCBRIDGE_WASM_CACHE", cache.path())
            .args(["plugins", "check"])
            .args(args));
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let format = guests.join("format.wasm");
    let format = format.to_str().expect("utf-8");
    let (code, text) = check(&[format, "--function", "title_case"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("transform module, sha256") && text.contains("self-test passed"),
        "{text}"
    );
    let hostile = guests.join("hostile.wasm");
    let (code, text) = check(&[hostile.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("its self-test failed: these guests misbehave on purpose"),
        "{text}"
    );
    let (code, text) = check(&[format, "--function", "nope"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("no rule `nope`"), "{text}");
    let garbage = cache.path().join("garbage.wasm");
    std::fs::write(&garbage, b"garbage").expect("write");
    let (code, text) = check(&[garbage.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("not a WebAssembly component"), "{text}");
}

/// Hostile rows in a real run: a row that makes a rule loop forever, one that makes a rule
/// panic and one that makes a rule try to read a file each land in the dead-letter queue with
/// the reason; every other row is written.
#[tokio::test]
async fn a_hostile_rule_costs_its_rows_and_the_run_goes_on() {
    let Some(guests) = wasm_guests() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("people.db");
    let mut db =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", source.display()))
            .await
            .expect("source");
    sqlx::raw_sql(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, mood TEXT NOT NULL,
                              note TEXT NOT NULL, probe TEXT NOT NULL);
         INSERT INTO people VALUES (1, 'ada', 'fine', 'fine', 'fine'), (2, 'bob', 'spin', 'fine', 'fine'),
                                   (3, 'cy', 'fine', 'fine', 'fine'), (4, 'di', 'fine', 'panic', 'fine'),
                                   (5, 'ed', 'fine', 'fine', 'read'), (6, 'flo', 'fine', 'fine', 'fine');",
    )
    .execute(&mut db)
    .await
    .expect("people");
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugin dir");
    std::fs::copy(guests.join("hostile.wasm"), plugins.join("hostile.wasm")).expect("copy");
    let config = format!(
        "version: 1
applications: [{{ name: app }}]
databases:
  - name: people
    application: app
    type: sqlite
    database_name: {db}
    instances: [{{ label: local, db_name: '{db}' }}]
{sharepoint}syncs:
  - name: people
    source: {{ database: people, table: people }}
    key: {{ strategy: PRIMARY_KEY }}
    cursor: {{ strategy: FULL_SCAN }}
    targets: [{{ name: People, connection: emulator, list: People }}]
    mappings:
      - {{ source: name, target: Title }}
      - {{ source: mood, target: Mood, transform: 'wasm:hostile.wasm#spin' }}
      - {{ source: note, target: Note, transform: 'wasm:hostile.wasm#panic' }}
      - {{ source: probe, target: Probe, transform: 'wasm:hostile.wasm#read_file' }}
",
        db = source.display(),
        sharepoint = info.config_section("emulator", &["People"]),
    );
    let config_path = dir.path().join("people.yaml");
    std::fs::write(&config_path, config).expect("config");
    let store = format!("sqlite://{}", dir.path().join("meta.db").display());
    let cli = |code: i32, args: &[&str]| {
        let output = run(syncbridge()
            .args(["--store", &store])
            .args(args)
            .env("SYNCBRIDGE_PLUGIN_DIR", &plugins)
            .env("SYNCBRIDGE_WASM_CACHE", dir.path().join("cache"))
            .env("SYNCBRIDGE_WASM_DEADLINE_MS", "200"));
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    cli(0, &["migrate"]);
    cli(0, &["apply", "-f", config_path.to_str().expect("utf-8")]);
    cli(0, &["provision", "people"]);
    let report: serde_json::Value =
        serde_json::from_str(&cli(1, &["run", "people", "--json"])).expect("json");
    assert_eq!(
        (report["created"].as_i64(), report["failed"].as_i64()),
        (Some(3), Some(3)),
        "{report}"
    );
    let dlq = cli(0, &["dlq", "list", "people"]);
    assert!(dlq.contains("deadline of 200 ms"), "{dlq}");
    assert!(dlq.contains("trapped"), "{dlq}");
    assert!(dlq.contains("reading a file failed"), "{dlq}");
    let data = emulator.data();
    let people = data
        .sites
        .iter()
        .flat_map(|s| &s.lists)
        .find(|l| l.display_name == "People")
        .expect("list");
    assert_eq!(people.items.len(), 3);
}
