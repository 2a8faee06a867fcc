//! `examples/postgres-to-sharepoint.yaml` runs unchanged against the emulator: every address and
//! secret comes from the environment, as it would for a real tenant.

mod support;

use sqlx::Connection as _;
use support::{PgDatabase, run, syncbridge};
use syncbridge_graph_emulator::{Emulator, EmulatorConfig};

#[tokio::test]
async fn the_postgres_example_runs_unchanged_with_addresses_from_the_environment() {
    let Some(pg) = PgDatabase::create("example") else {
        return;
    };
    let mut db = sqlx::PgConnection::connect(&pg.url).await.expect("source");
    sqlx::raw_sql(
        "CREATE TABLE projects (id int PRIMARY KEY, name text NOT NULL, status text NOT NULL,
                                budget numeric(12,2), owner_email text, notes text, ended_on date,
                                updated_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO projects (id, name, status, budget, owner_email, notes, ended_on)
         SELECT g, ' project ' || g, (ARRAY['Active','Closed','Closed'])[g % 3 + 1], g * 10.005,
                'owner' || g || '@example.com', 'note ' || g,
                CASE WHEN g % 3 = 0 THEN NULL WHEN g % 2 = 0 THEN current_date - 30 ELSE date '2001-01-01' END
         FROM generate_series(1, 60) g;",
    )
    .execute(&mut db)
    .await
    .expect("projects");

    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("sqlite://{}", dir.path().join("meta.db").display());
    let with_env = |command: &mut std::process::Command| {
        command
            .env("PMO_DB_URL", &pg.url)
            .env("PMO_DB_REPLICA_URL", &pg.url)
            .env("GRAPH_AUTHORITY_HOST", &info.authority_host)
            .env("GRAPH_BASE_URL", &info.base_url)
            .env("GRAPH_TENANT_ID", &info.tenant_id)
            .env("GRAPH_CLIENT_ID", &info.client_id)
            .env("GRAPH_CLIENT_SECRET", &info.client_secret);
    };
    for args in [
        vec!["migrate"],
        vec!["apply", "-f", "examples/postgres-to-sharepoint.yaml"],
        vec!["provision", "projects-all"],
        vec!["provision", "projects-by-status"],
        vec!["run", "projects-all", "--json"],
        vec!["run", "projects-by-status", "--json"],
    ] {
        let mut command = syncbridge();
        command.args(["--store", &store]).args(&args);
        with_env(&mut command);
        let output = run(&mut command);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !stdout.contains(&info.client_secret),
            "the secret never shows"
        );
        if args[0] == "run" {
            let report: serde_json::Value = serde_json::from_str(&stdout).expect("json report");
            assert_eq!(report["status"], "COMPLETED", "{report}");
            assert_eq!(report["created"], 60, "{report}");
            assert_eq!(report["failed"], 0, "{report}");
        }
    }

    let data = emulator.data();
    let count = |name: &str| {
        data.sites
            .iter()
            .flat_map(|s| &s.lists)
            .find(|l| l.display_name == name)
            .map_or(0, |l| l.items.len())
    };
    assert_eq!(count("Projects"), 60);
    // 20 Active; of the 40 Closed, those ended within a year (even ids among them) go to
    // Closed Projects, the rest (ended long ago, or never) to the default list.
    assert_eq!(count("Active Projects"), 20);
    let closed_recently = (1..=60).filter(|g| g % 3 != 0 && g % 2 == 0).count();
    assert_eq!(count("Closed Projects"), closed_recently);
    assert_eq!(count("Archived Projects"), 40 - closed_recently);

    // Directions: PUSH_ONLY and BIDIRECTIONAL fields are written, PULL_ONLY ones never.
    let by_status = data
        .sites
        .iter()
        .flat_map(|s| &s.lists)
        .filter(|l| l.display_name != "Projects");
    let mut seen = 0;
    for item in by_status.flat_map(|l| l.items.values()) {
        let field = |name: &str| item.fields.get(name).and_then(|v| v.as_str());
        let id = item
            .fields
            .get("ProjectId")
            .and_then(serde_json::Value::as_f64)
            .expect("ProjectId") as i64;
        assert_eq!(field("Title"), Some(format!(" project {id}").as_str()));
        assert_eq!(
            field("Owner"),
            Some(format!("owner{id}@example.com").as_str())
        );
        assert!(!item.fields.contains_key("Notes"), "{:?}", item.fields);
        seen += 1;
    }
    assert_eq!(seen, 60);
}
