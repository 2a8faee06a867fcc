//! `syncbridge drift` against a real PostgreSQL table (issue 5): dropping a mapped column makes
//! `drift --check` exit 1 with CRITICAL; adding a column reports MEDIUM and exits 0.

mod support;

use support::{PgDatabase, run, syncbridge};

#[test]
fn dropped_mapped_column_is_critical_and_new_column_is_medium() {
    let Some(database) = PgDatabase::create("drift") else {
        return;
    };
    let psql = |sql: &str| {
        let output = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                &database.name,
                "-qc",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    psql("CREATE TABLE projects (id int PRIMARY KEY, name text, status text)");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\napplications: [{{ name: a }}]\ndatabases:\n  - {{ name: pg, application: a, type: postgres, database_name: {}, instances: [{{ label: m, host: 127.0.0.1, port: 5432, user: postgres }}] }}\nsharepoint:\n  - {{ name: sp, tenant_id: t, client_id: c, client_secret: s, sites: [{{ hostname: h.sharepoint.com, path: /sites/x, lists: [{{ name: L }}] }}] }}\nsyncs:\n  - name: projects\n    source: {{ database: pg, table: public.projects }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {{ strategy: FULL_SCAN }}\n    targets: [{{ name: t, connection: sp, list: L }}]\n    mappings: [{{ source: name, target: Title }}, {{ source: status, target: Status }}]\n",
            database.name
        ),
    )
    .expect("config");
    let store = format!("sqlite://{}", dir.path().join("m.db").display());
    for args in [
        vec!["migrate"],
        vec!["apply", "-f", config.to_str().expect("utf-8")],
        vec!["introspect", "pg"],
    ] {
        let output = run(syncbridge().args(["--store", &store]).args(&args));
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let clean = run(syncbridge().args(["--store", &store, "drift", "--check"]));
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );

    psql("ALTER TABLE projects ADD COLUMN budget numeric");
    psql("CREATE INDEX ix_projects_name ON projects (name)");
    let added = run(syncbridge().args(["--store", &store, "drift", "--check"]));
    let text = String::from_utf8_lossy(&added.stdout);
    assert_eq!(added.status.code(), Some(0), "{text}");
    assert!(text.contains("MEDIUM") && text.contains("budget"), "{text}");
    assert!(
        text.contains("LOW") && text.contains("new index `ix_projects_name`"),
        "{text}"
    );

    psql("ALTER TABLE projects DROP COLUMN status");
    let dropped = run(syncbridge().args(["--store", &store, "--json", "drift", "--check"]));
    assert_eq!(
        dropped.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&dropped.stderr)
    );
    let findings: serde_json::Value = serde_json::from_slice(&dropped.stdout).expect("json");
    assert_eq!(findings[0]["severity"], "CRITICAL", "{findings}");
    assert_eq!(findings[0]["column"], "status");
}
