//! Native connector plugins end to end, through the `syncbridge` binary: the example CSV source
//! plugin syncing to the Graph emulator, PostgreSQL syncing to the example JSON-lines target
//! plugin, and `plugins list` over a plugin directory.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sqlx::Connection as _;
use support::{PgDatabase, list_titles, run, syncbridge};
use syncbridge_graph_emulator::{Emulator, EmulatorConfig};

const CSV: &str = "syncbridge-example-csv-source";
const JSONL: &str = "syncbridge-example-jsonl-target";
const PANICS: &str = "syncbridge-fixture-panics-on-load";

fn libraries() -> &'static HashMap<String, PathBuf> {
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BUILT.get_or_init(|| syncbridge_native::testing::build_plugins(&[CSV, JSONL, PANICS]))
}

/// A plugin directory with copies of these plugins' libraries.
fn plugin_dir(root: &Path, names: &[&str]) -> PathBuf {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).expect("plugin dir");
    for name in names {
        let library = &libraries()[*name];
        std::fs::copy(library, dir.join(library.file_name().expect("file name"))).expect("copy");
    }
    dir
}

/// Runs `syncbridge` with a store in `root` and the plugin directory, expecting `code`.
fn cli(root: &Path, plugins: &Path, code: i32, args: &[&str]) -> String {
    let mut command = syncbridge();
    command
        .args([
            "--store",
            &format!("sqlite://{}", root.join("meta.db").display()),
        ])
        .args(args)
        .env("SYNCBRIDGE_PLUGIN_DIR", plugins);
    let output = run(&mut command);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn plugins_list_shows_both_example_plugins_and_refuses_a_broken_one() {
    let root = tempfile::tempdir().expect("temp dir");
    let plugins = plugin_dir(root.path(), &[CSV, JSONL]);
    let listing = cli(
        root.path(),
        &plugins,
        0,
        &["plugins", "list", "--dir", plugins.to_str().expect("utf-8")],
    );
    assert!(
        listing.contains(&format!("{CSV} 0.1.0 (ABI 1) provides source `csv`")),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("{JSONL} 0.1.0 (ABI 1) provides target `jsonl`")),
        "{listing}"
    );

    // A broken plugin is listed as refused (exit 1); the good ones are still shown.
    plugin_dir(root.path(), &[PANICS]);
    std::fs::write(plugins.join("libnotes.so"), "not a library").expect("write");
    let listing = cli(root.path(), &plugins, 1, &["--json", "plugins", "list"]);
    let listing: serde_json::Value = serde_json::from_str(&listing).expect("json");
    let native = listing["native"].as_array().expect("native plugins");
    assert_eq!(native.len(), 4, "{listing}");
    let by_name = |file: &str| {
        native
            .iter()
            .find(|l| l["path"].as_str().is_some_and(|p| p.ends_with(file)))
            .unwrap_or_else(|| panic!("{file} listed: {listing}"))
    };
    assert_eq!(
        by_name("libnotes.so")["error"]
            .as_str()
            .map(|e| e.contains("not a loadable dynamic library")),
        Some(true)
    );
    assert_eq!(
        by_name("panics_on_load.so")["error"]
            .as_str()
            .map(|e| e.contains("panicked while loading")),
        Some(true)
    );
    assert_eq!(
        by_name("csv_source.so")["sources"],
        serde_json::json!(["csv"])
    );
    assert_eq!(by_name("csv_source.so")["abi_version"], 1);
}

#[tokio::test]
async fn a_csv_plugin_source_syncs_to_the_emulator() {
    let root = tempfile::tempdir().expect("temp dir");
    // The broken plugin sits next to the good one: SyncBridge refuses it and goes on.
    let plugins = plugin_dir(root.path(), &[CSV, PANICS]);
    let data = root.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    std::fs::write(
        data.join("projects.csv"),
        "id,name,budget\n1,Alpha,10.50\n2,Beta,7\n3,Gamma,\n",
    )
    .expect("csv");
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let config = format!(
        "version: 1
applications: [{{ name: app }}]
databases:
  - name: files
    application: app
    type: csv
    database_name: {data}
    instances: [{{ label: local }}]
{sharepoint}syncs:
  - name: projects
    source: {{ database: files, table: projects }}
    key: {{ strategy: PRIMARY_KEY }}
    cursor: {{ strategy: FULL_SCAN }}
    targets: [{{ name: main, connection: emulator, list: Projects }}]
    mappings:
      - {{ source: id, target: ProjectId, target_type: number }}
      - {{ source: name, target: Title }}
      - {{ source: budget, target: Budget, target_type: currency }}
",
        data = data.display(),
        sharepoint = info.config_section("emulator", &["Projects"]),
    );
    let config_path = root.path().join("csv.yaml");
    std::fs::write(&config_path, config).expect("config");
    let (r, p) = (root.path(), plugins.as_path());
    cli(r, p, 0, &["migrate"]);
    cli(
        r,
        p,
        0,
        &["apply", "-f", config_path.to_str().expect("utf-8")],
    );
    cli(r, p, 0, &["introspect", "files"]);
    cli(r, p, 0, &["provision", "projects"]);
    let report: serde_json::Value =
        serde_json::from_str(&cli(r, p, 0, &["run", "projects", "--json"])).expect("json");
    assert_eq!(report["created"].as_i64(), Some(3), "{report}");
    assert_eq!(
        list_titles(&emulator, "Projects"),
        ["Alpha", "Beta", "Gamma"]
    );

    // Edit the file: one update, one delete, one insert; the next run writes exactly those.
    std::fs::write(
        data.join("projects.csv"),
        "id,name,budget\n1,Alpha,10.50\n2,Beta (renamed),7\n4,Delta,1\n",
    )
    .expect("csv");
    let report: serde_json::Value =
        serde_json::from_str(&cli(r, p, 0, &["run", "projects", "--json"])).expect("json");
    assert_eq!(
        (
            report["created"].as_i64(),
            report["updated"].as_i64(),
            report["deleted"].as_i64(),
            report["unchanged"].as_i64()
        ),
        (Some(1), Some(1), Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(
        list_titles(&emulator, "Projects"),
        ["Alpha", "Beta (renamed)", "Delta"]
    );
    let reconcile = cli(r, p, 0, &["reconcile", "projects"]);
    assert!(
        reconcile.contains("MATCH") && !reconcile.contains("MISMATCH"),
        "{reconcile}"
    );
}

#[tokio::test]
async fn postgres_syncs_to_a_jsonl_plugin_target() {
    let Some(pg) = PgDatabase::create("native_jsonl") else {
        return;
    };
    let mut db = sqlx::PgConnection::connect(&pg.url).await.expect("source");
    sqlx::raw_sql(
        "CREATE TABLE projects (id int PRIMARY KEY, name text NOT NULL, budget numeric(12,2));
         INSERT INTO projects SELECT g, 'Project ' || g, g * 1.5 FROM generate_series(1, 250) g;",
    )
    .execute(&mut db)
    .await
    .expect("projects");
    let root = tempfile::tempdir().expect("temp dir");
    let plugins = plugin_dir(root.path(), &[JSONL]);
    let out = root.path().join("out");
    let config = format!(
        "version: 1
applications: [{{ name: app }}]
databases:
  - name: pg
    application: app
    type: postgres
    database_name: {database}
    instances: [{{ label: main, url: '{url}' }}]
sharepoint:
  - name: files
    type: jsonl
    options: {{ directory: '{out}' }}
    sites:
      - hostname: localhost
        path: /exports
        lists: [{{ name: Projects }}]
syncs:
  - name: projects
    source: {{ database: pg, table: public.projects }}
    key: {{ strategy: PRIMARY_KEY }}
    cursor: {{ strategy: FULL_SCAN }}
    targets: [{{ name: main, connection: files, list: Projects }}]
    mappings:
      - {{ source: id, target: ProjectId, target_type: number }}
      - {{ source: name, target: Title }}
      - {{ source: budget, target: Budget, target_type: currency }}
",
        url = pg.url,
        database = pg.name,
        out = out.display(),
    );
    let config_path = root.path().join("jsonl.yaml");
    std::fs::write(&config_path, config).expect("config");
    let (r, p) = (root.path(), plugins.as_path());
    cli(r, p, 0, &["migrate"]);
    cli(
        r,
        p,
        0,
        &["apply", "-f", config_path.to_str().expect("utf-8")],
    );
    cli(r, p, 0, &["provision", "projects"]);
    let report: serde_json::Value =
        serde_json::from_str(&cli(r, p, 0, &["run", "projects", "--json"])).expect("json");
    assert_eq!(report["created"].as_i64(), Some(250), "{report}");

    let items = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join("Projects.jsonl"))
            .expect("the list file")
            .lines()
            .map(|l| serde_json::from_str(l).expect("an item"))
            .collect()
    };
    let first = items();
    assert_eq!(first.len(), 250);
    let seven = first
        .iter()
        .find(|i| i["fields"]["ProjectId"] == 7)
        .expect("item 7");
    assert_eq!(seven["fields"]["Title"], "Project 7");
    assert_eq!(seven["fields"]["Budget"], "10.50");

    sqlx::raw_sql(
        "UPDATE projects SET name = 'Seven' WHERE id = 7; DELETE FROM projects WHERE id = 8;",
    )
    .execute(&mut db)
    .await
    .expect("edits");
    let report: serde_json::Value =
        serde_json::from_str(&cli(r, p, 0, &["run", "projects", "--json"])).expect("json");
    assert_eq!(
        (
            report["updated"].as_i64(),
            report["deleted"].as_i64(),
            report["unchanged"].as_i64()
        ),
        (Some(1), Some(1), Some(248)),
        "{report}"
    );
    let second = items();
    assert_eq!(second.len(), 249);
    assert!(second.iter().any(|i| i["fields"]["Title"] == "Seven"));
    assert!(!second.iter().any(|i| i["fields"]["ProjectId"] == 8));
    let reconcile = cli(r, p, 0, &["reconcile", "projects"]);
    assert!(
        reconcile.contains("MATCH") && !reconcile.contains("MISMATCH"),
        "{reconcile}"
    );
}
