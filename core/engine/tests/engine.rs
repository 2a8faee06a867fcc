//! The engine end to end on real components: a SQLite source file, the Graph emulator, and the
//! meta-store on both backends. Dry runs write nothing; failed writes are dead-lettered and
//! retried from their raw row; ARCHIVE_ONLY writes each row once.

use std::path::Path;
use std::sync::Arc;

use sqlx::Connection as _;
use syncbridge_api::Registry;
use syncbridge_config::apply::{ApplyOptions, apply};
use syncbridge_engine::run::{Engine, RunOptions};
use syncbridge_graph_emulator::{Emulator, EmulatorConfig, FaultConfig, RunningEmulator};
use syncbridge_store::runtime;
use syncbridge_store::secrets::MasterKey;
use syncbridge_store::testing::TestStore;

struct Fixture {
    _dir: tempfile::TempDir,
    source: std::path::PathBuf,
    emulator: RunningEmulator,
    engine: Engine,
}

fn registry() -> Arc<Registry> {
    let mut registry = Registry::new();
    registry.register_source::<syncbridge_sqlite::SqliteSource>();
    registry.register_target::<syncbridge_sharepoint::SharePointTarget>();
    syncbridge_engine::rules::register_builtin_rules(&mut registry);
    Arc::new(registry)
}

async fn execute(path: &Path, sql: &str) {
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .expect("source");
    sqlx::raw_sql(sql)
        .execute(&mut db)
        .await
        .expect("source sql");
}

/// A source with `rows` projects, the emulator, and the example config applied and provisioned.
async fn fixture(store: &TestStore, rows: i64, mode: &str) -> Fixture {
    fixture_keyed(
        store,
        rows,
        mode,
        "strategy: PRIMARY_KEY\n      columns: [id]",
    )
    .await
}

/// [`fixture`] with another `key:` block (its lines after `key:`, indented by six spaces).
async fn fixture_keyed(store: &TestStore, rows: i64, mode: &str, key: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("projects.db");
    let mut sql = String::from(
        "CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, budget NUMERIC(12,2), started_on DATE, ended_on DATE, updated_at DATETIME NOT NULL);",
    );
    for id in 1..=rows {
        sql.push_str(&format!("INSERT INTO projects VALUES ({id}, 'P{id}', 'Active', '1.00', '2025-01-01', NULL, '2026-01-01 00:00:{:02}');", id % 60));
    }
    execute(&source, &sql).await;
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/local-emulator.yaml"),
    )
    .expect("example");
    let text = example
        .replace("http://127.0.0.1:8765", &emulator.authority_host())
        .replace("projects.db", &source.display().to_string())
        .replace(
            "    key:\n      strategy: PRIMARY_KEY\n      columns: [id]",
            &format!("    mode: {mode}\n    key:\n      {key}"),
        );
    let config = syncbridge_config::load_str(
        &text,
        Path::new("test.yaml"),
        &syncbridge_config::Known::default(),
    )
    .expect("config");
    let key = Arc::new(
        MasterKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").expect("key"),
    );
    let options = ApplyOptions {
        prune: false,
        dry_run: false,
        actor: "test".into(),
        master_key: Some(key.clone()),
    };
    apply(store, &config, &options).await.expect("apply");
    let engine = Engine::new((**store).clone(), registry(), Some(key));
    engine.provision("projects").await.expect("provision");
    Fixture {
        _dir: dir,
        source,
        emulator,
        engine,
    }
}

fn items(emulator: &RunningEmulator) -> usize {
    emulator
        .data()
        .sites
        .iter()
        .flat_map(|s| &s.lists)
        .map(|l| l.items.len())
        .sum()
}

#[tokio::test]
async fn dry_run_plans_and_writes_nothing() {
    for store in TestStore::all().await {
        let fx = fixture(&store, 30, "ONE_WAY_PUSH").await;
        let report = fx
            .engine
            .run(
                "projects",
                &RunOptions {
                    dry_run: true,
                    ..RunOptions::default()
                },
            )
            .await
            .expect("dry run");
        assert_eq!(report.created, 30, "{}", store.backend());
        assert_eq!(report.planned.len(), 30);
        assert_eq!(
            fx.emulator.counts().kind("item.create"),
            0,
            "a dry run sends no write"
        );
        assert_eq!(items(&fx.emulator), 0);
        assert!(
            runtime::recent_runs(&store, None, 5)
                .await
                .expect("runs")
                .is_empty(),
            "and records no run"
        );
        let real = fx
            .engine
            .run("projects", &RunOptions::default())
            .await
            .expect("run");
        assert_eq!((real.created, items(&fx.emulator)), (30, 30));
        let again = fx
            .engine
            .run(
                "projects",
                &RunOptions {
                    full: true,
                    ..RunOptions::default()
                },
            )
            .await
            .expect("rerun");
        assert_eq!(
            (again.unchanged, again.created, again.updated),
            (30, 0, 0),
            "unchanged rows cost no write"
        );
        // Per list: the items written by all runs, the last run, when the list was in step.
        let metrics: Vec<(i64, Option<String>, bool)> = syncbridge_store::with_pool!(store, pool => sqlx::query_as(
            "SELECT total_rows_synced, CAST(last_run_id AS TEXT), last_sync_ts IS NOT NULL FROM sync_metrics ORDER BY total_rows_synced DESC")
            .fetch_all(pool).await)
        .expect("metrics");
        let last = again.run_id.clone();
        assert_eq!(
            metrics,
            [
                (30, last.clone(), true),
                (0, last.clone(), true),
                (0, last, true)
            ],
            "{}: one row per list",
            store.backend()
        );

        // An update, a move and a delete, planned and not sent.
        let closed_on = (chrono::Utc::now() - chrono::Duration::days(3)).date_naive();
        execute(
            &fx.source,
            &format!(
                "UPDATE projects SET name = 'renamed' WHERE id = 1;
                 UPDATE projects SET status = 'Closed', ended_on = '{closed_on}' WHERE id = 2;
                 DELETE FROM projects WHERE id = 3;"
            ),
        )
        .await;
        let writes = |kind: &str| fx.emulator.counts().kind(kind);
        let before = (
            writes("item.create"),
            writes("item.update"),
            writes("item.delete"),
        );
        let plan = fx
            .engine
            .run(
                "projects",
                &RunOptions {
                    dry_run: true,
                    full: true,
                    ..RunOptions::default()
                },
            )
            .await
            .expect("dry run");
        assert_eq!(
            (plan.created, plan.updated, plan.moved, plan.deleted),
            (0, 1, 1, 1),
            "{}",
            store.backend()
        );
        let mut actions: Vec<&str> = plan.planned.iter().map(|p| p.action).collect();
        actions.sort();
        assert_eq!(actions, ["delete", "move", "update"]);
        assert_eq!(
            (
                writes("item.create"),
                writes("item.update"),
                writes("item.delete")
            ),
            before,
            "a dry run sends no write"
        );
        assert_eq!(items(&fx.emulator), 30);

        // Run for real: the metrics add the update and the move to the lists' totals.
        fx.engine
            .run(
                "projects",
                &RunOptions {
                    full: true,
                    ..RunOptions::default()
                },
            )
            .await
            .expect("run");
        let totals: Vec<i64> = syncbridge_store::with_pool!(store, pool => sqlx::query_scalar(
            "SELECT total_rows_synced FROM sync_metrics ORDER BY total_rows_synced DESC")
            .fetch_all(pool).await)
        .expect("metrics");
        assert_eq!(totals, [31, 1, 0], "{}", store.backend());
    }
}

#[tokio::test]
async fn a_dry_run_lists_a_bounded_number_of_changes_and_counts_them_all() {
    let store = TestStore::sqlite().await;
    let rows = syncbridge_engine::run::PLANNED_LISTED as i64 + 25;
    let fx = fixture(&store, rows, "ONE_WAY_PUSH").await;
    let report = fx
        .engine
        .run(
            "projects",
            &RunOptions {
                dry_run: true,
                ..RunOptions::default()
            },
        )
        .await
        .expect("dry run");
    assert_eq!(report.created, rows);
    assert_eq!(
        (report.planned.len(), report.planned_not_listed),
        (syncbridge_engine::run::PLANNED_LISTED, 25)
    );
}

#[tokio::test]
async fn a_run_is_refused_while_another_run_of_the_definition_holds_it() {
    for store in TestStore::all().await {
        let fx = fixture(&store, 5, "ONE_WAY_PUSH").await;
        let def: syncbridge_store::Id =
            syncbridge_store::with_pool!(store, pool => sqlx::query_scalar(
            "SELECT id FROM sync_definitions WHERE name = 'projects'")
            .fetch_one(pool).await)
            .expect("definition");
        let other_run = syncbridge_store::lock::try_lock_definition(&store, def)
            .await
            .expect("lock")
            .expect("free");
        let error = fx
            .engine
            .run("projects", &RunOptions::default())
            .await
            .expect_err("refused while another run holds the definition");
        assert!(
            matches!(error, syncbridge_engine::run::EngineError::Busy { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("another run"), "{error}");
        assert_eq!(items(&fx.emulator), 0, "{}", store.backend());
        assert!(
            matches!(
                fx.engine.release("projects").await,
                Err(syncbridge_engine::run::EngineError::Busy { .. })
            ),
            "nor is the source's position dropped under a run"
        );
        let plan = fx
            .engine
            .run(
                "projects",
                &RunOptions {
                    dry_run: true,
                    ..RunOptions::default()
                },
            )
            .await
            .expect("a dry run needs no lock");
        assert_eq!(plan.created, 5);
        other_run.release().await;
        let report = fx
            .engine
            .run("projects", &RunOptions::default())
            .await
            .expect("runs once the other has ended");
        assert_eq!(report.created, 5, "{}", store.backend());
    }
}

#[tokio::test]
async fn failed_writes_are_dead_lettered_and_retried_from_the_raw_row() {
    for store in TestStore::all().await {
        let fx = fixture(&store, 25, "ONE_WAY_PUSH").await;
        fx.emulator.set_faults(FaultConfig {
            seed: 1,
            rate_429: 1.0,
            rate_503: 0.0,
            retry_after_seconds: 0.0,
            kinds: vec!["item.create".into()],
            ..FaultConfig::default()
        });
        let report = fx
            .engine
            .run("projects", &RunOptions::default())
            .await
            .expect("run completes despite failures");
        assert_eq!(
            (report.created, report.failed),
            (0, 25),
            "{}",
            store.backend()
        );
        let open = runtime::open_failures(&store, None).await.expect("dlq");
        assert_eq!(open.len(), 25);
        assert_eq!(open[0].stage_failed, "WRITE");
        assert!(open[0].raw_data.is_some() && open[0].normalized_data.is_some());

        // The service recovers; `dlq retry` makes the entries due; the next (incremental) run,
        // whose cursor is already past these rows, writes them from the queue.
        fx.emulator.set_faults(FaultConfig::default());
        for entry in &open {
            assert!(
                runtime::retry_failure_now(&store, entry.id)
                    .await
                    .expect("retry")
            );
        }
        let report = fx
            .engine
            .run("projects", &RunOptions::default())
            .await
            .expect("retry run");
        assert_eq!(
            (report.created, report.failed),
            (25, 0),
            "{}",
            store.backend()
        );
        assert!(
            runtime::open_failures(&store, None)
                .await
                .expect("dlq")
                .is_empty(),
            "entries resolved"
        );
        let events: Vec<String> = syncbridge_store::with_pool!(store, pool => sqlx::query_scalar("SELECT event_type FROM sync_events ORDER BY created_at").fetch_all(pool).await).expect("events");
        assert_eq!(
            events,
            vec!["ROWS_DEAD_LETTERED".to_owned(), "RUN_COMPLETED".to_owned()],
            "{}",
            store.backend()
        );
        assert_eq!(items(&fx.emulator), 25);
    }
}

#[tokio::test]
async fn a_value_the_list_refuses_costs_one_row() {
    let store = TestStore::sqlite().await;
    let fx = fixture(&store, 10, "ONE_WAY_PUSH").await;
    execute(
        &fx.source,
        &format!(
            "UPDATE projects SET name = '{}' WHERE id = 4",
            "x".repeat(300)
        ),
    )
    .await;
    let report = fx
        .engine
        .run("projects", &RunOptions::default())
        .await
        .expect("run");
    assert_eq!((report.created, report.failed), (9, 1));
    let open = runtime::open_failures(&store, None).await.expect("dlq");
    assert_eq!(open[0].source_identity.as_deref(), Some("4"));
    assert_eq!(open[0].stage_failed, "ENCODE", "refused before sending");
    assert!(
        open[0].error_message.contains("Title") && open[0].error_message.contains("255"),
        "{}",
        open[0].error_message
    );
}

#[tokio::test]
async fn archive_only_writes_each_row_once() {
    let store = TestStore::sqlite().await;
    let fx = fixture(&store, 10, "ARCHIVE_ONLY").await;
    fx.engine
        .run("projects", &RunOptions::default())
        .await
        .expect("first");
    execute(&fx.source, "UPDATE projects SET name = 'changed', status = 'On hold', updated_at = '2026-06-01 00:00:00' WHERE id <= 3; DELETE FROM projects WHERE id = 10;").await;
    let report = fx
        .engine
        .run(
            "projects",
            &RunOptions {
                full: true,
                ..RunOptions::default()
            },
        )
        .await
        .expect("second");
    assert_eq!(
        (report.updated, report.moved, report.deleted, report.created),
        (0, 0, 0, 0),
        "{report:?}"
    );
    assert_eq!(items(&fx.emulator), 10);
}

#[tokio::test]
async fn unknown_and_unprovisioned_syncs_are_explained() {
    let store = TestStore::sqlite().await;
    let engine = Engine::new((*store).clone(), registry(), None);
    let error = engine
        .run("nope", &RunOptions::default())
        .await
        .expect_err("unknown");
    assert!(
        error
            .to_string()
            .contains("no sync definition named `nope`"),
        "{error}"
    );
}

#[tokio::test]
async fn reconcile_compares_routed_rows_with_list_items() {
    let store = TestStore::sqlite().await;
    let fx = fixture(&store, 12, "ONE_WAY_PUSH").await;
    fx.engine
        .run("projects", &RunOptions::default())
        .await
        .expect("run");
    let lists = fx
        .engine
        .reconcile("projects")
        .await
        .expect("reconcile")
        .lists;
    assert!(lists.iter().all(|l| l.status == "MATCH"), "{lists:?}");
    assert_eq!(lists.iter().map(|l| l.items).sum::<usize>(), 12);

    execute(&fx.source, "INSERT INTO projects VALUES (99, 'late', 'Active', '1.00', '2025-01-01', NULL, '2026-01-01 00:00:00')").await;
    let lists = fx
        .engine
        .reconcile("projects")
        .await
        .expect("reconcile")
        .lists;
    let active = lists
        .iter()
        .find(|l| l.list == "Active Projects")
        .expect("active list");
    assert_eq!(
        (active.status, active.source_rows, active.items),
        ("MISMATCH", 13, 12)
    );
    assert_eq!(active.missing, vec!["99".to_owned()]);
}

#[tokio::test]
async fn target_changes_are_read_through_delta_across_runs() {
    for store in TestStore::all().await {
        let fx = fixture(&store, 10, "ONE_WAY_PUSH").await;
        fx.engine
            .run("projects", &RunOptions::default())
            .await
            .expect("run");
        let first = fx.engine.target_changes("projects").await.expect("changes");
        assert!(first.iter().all(|l| l.first_read), "{first:?}");
        assert_eq!(first.iter().map(|l| l.upserted).sum::<usize>(), 10);

        // Nothing changed since: an empty round from the stored delta link.
        let quiet = fx.engine.target_changes("projects").await.expect("changes");
        assert!(
            quiet
                .iter()
                .all(|l| !l.first_read && l.upserted == 0 && l.deleted == 0),
            "{quiet:?}"
        );

        // A source edit and a deletion reach the lists; the next read reports exactly those.
        execute(
            &fx.source,
            "UPDATE projects SET name = 'renamed', updated_at = '2030-01-01 00:00:00' WHERE id = 1",
        )
        .await;
        execute(&fx.source, "DELETE FROM projects WHERE id = 2").await;
        fx.engine
            .run(
                "projects",
                &RunOptions {
                    full: true,
                    ..RunOptions::default()
                },
            )
            .await
            .expect("run");
        let after = fx.engine.target_changes("projects").await.expect("changes");
        assert_eq!(
            (
                after.iter().map(|l| l.upserted).sum::<usize>(),
                after.iter().map(|l| l.deleted).sum::<usize>()
            ),
            (1, 1),
            "{after:?}"
        );

        // An expired position restarts with a full enumeration, flagged.
        fx.emulator.reset_delta();
        let again = fx.engine.target_changes("projects").await.expect("changes");
        assert!(again.iter().all(|l| l.reset), "{again:?}");
        assert_eq!(again.iter().map(|l| l.upserted).sum::<usize>(), 9);
    }
}

#[tokio::test]
async fn discovery_records_every_list_with_columns_and_counts() {
    for store in TestStore::all().await {
        let fx = fixture(&store, 7, "ONE_WAY_PUSH").await;
        fx.engine
            .run("projects", &RunOptions::default())
            .await
            .expect("run");
        // A list SyncBridge did not create.
        let info = fx.emulator.connection_info();
        let target = syncbridge_sharepoint::SharePointTarget::connect(
            serde_json::from_value(serde_json::json!({
                "graph_base_url": info.base_url, "authority_host": info.authority_host,
                "tenant_id": info.tenant_id, "client_id": info.client_id,
                "client_secret": info.client_secret, "site_hostname": info.site_hostname,
                "site_path": info.site_path,
            }))
            .expect("config"),
        )
        .await
        .expect("connect");
        use syncbridge_api::Target as _;
        target
            .provision(&syncbridge_api::CollectionSpec {
                name: "Foreign".into(),
                description: None,
                fields: vec![syncbridge_api::FieldSpec {
                    name: "Notes".into(),
                    data_type: syncbridge_api::DataType::Text { max_length: None },
                    required: false,
                    indexed: false,
                    unique: false,
                    hidden: false,
                }],
                key_field: "Notes".into(),
            })
            .await
            .expect("foreign list");

        let found = fx.engine.discover("emulator").await.expect("discover");
        assert_eq!(found.len(), 4, "{found:?}");
        assert_eq!(found.iter().filter_map(|l| l.items).sum::<u64>(), 7);
        let known = syncbridge_store::sharepoint::known_lists(&store, "emulator")
            .await
            .expect("known lists");
        let names: Vec<&str> = known.iter().map(|l| l.display_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Active Projects",
                "Archived Projects",
                "Closed Projects",
                "Foreign"
            ]
        );
        let foreign = known
            .iter()
            .find(|l| l.display_name == "Foreign")
            .expect("Foreign");
        assert!(!foreign.is_provisioned && foreign.list_id.is_some());
        assert!(
            foreign.columns >= 2,
            "Title and Notes at least: {foreign:?}"
        );
        assert!(
            known
                .iter()
                .filter(|l| l.display_name != "Foreign")
                .all(|l| l.is_provisioned)
        );
        assert_eq!(known.iter().filter_map(|l| l.item_count).sum::<i64>(), 7);

        let sites = syncbridge_store::sharepoint::site_location(&store, "emulator")
            .await
            .expect("sites");
        assert!(
            sites.iter().all(|(id, url)| {
                id.as_deref()
                    .is_some_and(|id| id.starts_with("contoso.sharepoint.com,"))
                    && url.as_deref() == Some("https://contoso.sharepoint.com/sites/projects")
            }),
            "{sites:?}"
        );

        // Again: the same lists (matched by id), a second metrics row each.
        fx.engine
            .discover("emulator")
            .await
            .expect("discover again");
        let again = syncbridge_store::sharepoint::known_lists(&store, "emulator")
            .await
            .expect("known lists");
        assert_eq!(again.len(), 4);
        assert!(again.iter().all(|l| l.metrics == 2), "{again:?}");

        let error = fx
            .engine
            .discover("nope")
            .await
            .expect_err("unknown connection");
        assert!(
            error
                .to_string()
                .contains("no SharePoint connection named `nope`")
        );
    }
}

/// Graph requests per changed row: exactly one write per changed row, none for unchanged rows
/// (the emulator counts every request, inside `$batch` too).
#[tokio::test]
async fn one_write_per_changed_row_and_none_for_unchanged_rows() {
    let store = TestStore::sqlite().await;
    let fx = fixture(&store, 300, "ONE_WAY_PUSH").await;
    let writes = |emulator: &RunningEmulator| {
        let counts = emulator.counts();
        counts.kind("item.create") + counts.kind("item.update") + counts.kind("item.delete")
    };
    fx.engine
        .run("projects", &RunOptions::default())
        .await
        .expect("initial run");
    assert_eq!(fx.emulator.counts().kind("item.create"), 300);
    let before = writes(&fx.emulator);

    // Seven rows change content without changing list; nothing else changes.
    execute(
        &fx.source,
        "UPDATE projects SET name = name || ' (edited)', updated_at = '2030-01-01 00:00:00' WHERE id IN (3, 30, 60, 90, 120, 150, 299)",
    )
    .await;
    let report = fx
        .engine
        .run("projects", &RunOptions::default())
        .await
        .expect("incremental run");
    assert_eq!(report.updated, 7, "{report:?}");
    assert_eq!(
        writes(&fx.emulator) - before,
        7,
        "exactly one write per changed row"
    );
    assert_eq!(fx.emulator.counts().kind("item.update"), 7);

    // A full rerun reads every row and writes nothing.
    let before = writes(&fx.emulator);
    let report = fx
        .engine
        .run(
            "projects",
            &RunOptions {
                full: true,
                ..RunOptions::default()
            },
        )
        .await
        .expect("full rerun");
    assert_eq!(
        (report.processed, report.unchanged),
        (300, 300),
        "{report:?}"
    );
    assert_eq!(writes(&fx.emulator), before, "no write for unchanged rows");
}

/// Writes run while later batches are read and planned; a row whose identity is still being
/// written waits for that write, so it is planned against the ledger's final state: three source
/// rows sharing one identity, one per batch, become one item (a create, then two updates) rather
/// than a refused duplicate create.
#[tokio::test]
async fn a_row_waits_for_the_write_of_its_identity_still_in_flight() {
    let store = TestStore::sqlite().await;
    let fx = fixture_keyed(
        &store,
        6,
        "ONE_WAY_PUSH",
        "strategy: COMPOSITE_COLUMNS\n      columns: [name]",
    )
    .await;
    execute(
        &fx.source,
        "UPDATE projects SET name = 'Shared' WHERE id IN (2, 3, 4)",
    )
    .await;
    let report = fx
        .engine
        .run(
            "projects",
            &RunOptions {
                batch_size: 1,
                ..RunOptions::default()
            },
        )
        .await
        .expect("run");
    assert_eq!(
        (
            report.processed,
            report.created,
            report.updated,
            report.failed
        ),
        (6, 4, 2, 0),
        "{report:?}"
    );
    assert_eq!(items(&fx.emulator), 4);
    assert_eq!(fx.emulator.counts().kind("item.create"), 4);
}

/// Full reads take their ledger digest from the copy saved beside the ledger while no ledger
/// write came since, and still see every change: a full run saves it, a no-change full rerun
/// writes nothing and leaves it, edits and a delete are found with it, and a malformed copy is
/// passed over for the ledger.
#[tokio::test]
async fn full_reads_take_the_saved_ledger_digest_and_still_see_changes() {
    use syncbridge_api::Value;
    use syncbridge_engine::identity::{source_identity, source_identity_hash};

    for store in TestStore::all().await {
        let backend = store.backend();
        let fx = fixture(&store, 120, "ONE_WAY_PUSH").await;
        let def = fx
            .engine
            .definition("projects")
            .await
            .expect("definition")
            .id;
        let full = RunOptions {
            full: true,
            ..RunOptions::default()
        };
        let report = fx.engine.run("projects", &full).await.expect("initial");
        assert_eq!(report.created, 120, "{backend}: {report:?}");
        let (generation, saved) = runtime::ledger_digest_state(&store, def)
            .await
            .expect("state");
        assert!(
            saved,
            "{backend}: the run that wrote saves the digest again"
        );

        let report = fx.engine.run("projects", &full).await.expect("rerun");
        assert_eq!(
            (report.unchanged, report.created + report.updated),
            (120, 0),
            "{backend}"
        );
        assert_eq!(
            runtime::ledger_digest_state(&store, def)
                .await
                .expect("state"),
            (generation, true),
            "{backend}: a no-change run writes no ledger row and keeps the copy"
        );

        // The copy lists identities in the order the read met the rows (the cursor's order:
        // `updated_at`, which the fixture sets to `id % 60` seconds, then `id`), so the next
        // read finds them in order; a copy in another order is found all the same, and saved
        // again in read order (at the same generation: nothing was written).
        let mut read_order: Vec<i64> = (1..=120).collect();
        read_order.sort_by_key(|id| (id % 60, *id));
        let expected_order: Vec<String> = read_order
            .into_iter()
            .map(|id| {
                source_identity_hash("PRIMARY_KEY", &source_identity([&Value::Int(id)]))[..32]
                    .to_owned()
            })
            .collect();
        let (saved_lists, saved_entries) = saved_copy(&store, def).await;
        assert_eq!(identities(&saved_entries), expected_order, "{backend}");
        let (header, entries) = saved_entries.split_at(SAVED_HEADER_BYTES);
        let reversed: Vec<u8> = entries
            .chunks_exact(SAVED_ENTRY_BYTES)
            .rev()
            .flatten()
            .copied()
            .collect();
        let reversed = [header, &reversed].concat();
        assert!(
            runtime::save_ledger_digest(&store, def, generation, &saved_lists, &reversed)
                .await
                .expect("save"),
            "{backend}"
        );
        let report = fx
            .engine
            .run("projects", &full)
            .await
            .expect("reversed copy");
        assert_eq!(
            (
                report.unchanged,
                report.created + report.updated + report.deleted
            ),
            (120, 0),
            "{backend}: {report:?}"
        );
        let (_, resaved) = saved_copy(&store, def).await;
        assert_eq!(identities(&resaved), expected_order, "{backend}");
        assert_eq!(
            runtime::ledger_digest_state(&store, def)
                .await
                .expect("state"),
            (generation, true),
            "{backend}"
        );

        execute(
            &fx.source,
            "UPDATE projects SET name = 'renamed' WHERE id IN (4, 77); DELETE FROM projects WHERE id = 9;",
        )
        .await;
        let report = fx.engine.run("projects", &full).await.expect("edits");
        assert_eq!(
            (report.updated, report.deleted, report.unchanged),
            (2, 1, 117),
            "{backend}: {report:?}"
        );
        assert_eq!(items(&fx.emulator), 119, "{backend}");
        let (after_edits, saved) = runtime::ledger_digest_state(&store, def)
            .await
            .expect("state");
        assert!(after_edits > generation && saved, "{backend}");

        // A copy that is not whole entries is passed over: the ledger decides.
        let lists = runtime::saved_ledger_digest(&store, def)
            .await
            .expect("saved")
            .1
            .expect("a saved digest")
            .lists;
        assert!(
            runtime::save_ledger_digest(&store, def, after_edits, &lists, b"torn")
                .await
                .expect("save"),
            "{backend}"
        );
        execute(
            &fx.source,
            "UPDATE projects SET name = 'again' WHERE id = 5;",
        )
        .await;
        let report = fx
            .engine
            .run("projects", &full)
            .await
            .expect("malformed copy");
        assert_eq!(
            (report.updated, report.created, report.unchanged),
            (1, 0, 118),
            "{backend}: {report:?}"
        );
        assert_eq!(items(&fx.emulator), 119, "{backend}");
    }
}

/// Recovery (DESIGN.md §4, step 4): a create intent left by an interrupted run is resolved by
/// looking each identity up in the list — items that were created are adopted, not created
/// again; identities that were never created are created by the next read. A `PENDING_CREATE`
/// ledger row (as earlier versions recorded intents) is resolved the same way.
#[tokio::test]
async fn interrupted_create_intents_are_resolved_by_key_look_up() {
    use syncbridge_api::Value;
    use syncbridge_engine::identity::{source_identity, source_identity_hash};

    for store in TestStore::all().await {
        let backend = store.backend();
        let fx = fixture(&store, 30, "ONE_WAY_PUSH").await;
        let def = fx.engine.definition("projects").await.expect("definition");
        let report = fx
            .engine
            .run("projects", &RunOptions::default())
            .await
            .expect("initial");
        assert_eq!(report.created, 30, "{backend}");
        let ledger = runtime::ledger_page(&store, def.id, None, 100)
            .await
            .expect("ledger");
        let row = |id: i64| {
            let identity = source_identity([&Value::Int(id)]);
            ledger
                .iter()
                .find(|r| r.source_identity == identity)
                .cloned()
                .unwrap_or_else(|| panic!("{backend}: ledger row of {id}"))
        };
        let (three, seven, eleven) = (row(3), row(7), row(11));
        let list = three.sp_list_id.clone().expect("list");
        assert_eq!(
            three.source_identity_hash,
            source_identity_hash(&def.key_strategy, &three.source_identity),
            "{backend}: the identity is computed as the engine does"
        );

        // Rows 3 and 7 were created but their outcome never reached the ledger; row 31 was
        // about to be created when the run died; row 11's intent is a `PENDING_CREATE` row.
        runtime::delete_ledger(&store, def.id, &three.source_identity_hash)
            .await
            .expect("forget 3");
        runtime::delete_ledger(&store, def.id, &seven.source_identity_hash)
            .await
            .expect("forget 7");
        execute(
            &fx.source,
            "INSERT INTO projects VALUES (31, 'P31', 'Active', '1.00', '2025-01-01', NULL, '2026-01-01 00:00:31');",
        )
        .await;
        let new_identity = source_identity([&Value::Int(31)]);
        let new_hash = source_identity_hash(&def.key_strategy, &new_identity);
        let run_id = runtime::start_run(&store, def.id, "PUSH")
            .await
            .expect("run");
        let intent = runtime::CreateIntent {
            id: syncbridge_store::Id::new(),
            sp_list_id: list.clone(),
            sync_target_id: None,
            identities: vec![
                (
                    three.source_identity.clone(),
                    three.source_identity_hash.clone(),
                ),
                (
                    seven.source_identity.clone(),
                    seven.source_identity_hash.clone(),
                ),
                (new_identity, new_hash.clone()),
            ],
        };
        runtime::record_create_intent(&store, def.id, run_id, &intent)
            .await
            .expect("intent");
        assert_eq!(
            runtime::create_intents(&store, def.id)
                .await
                .expect("intents"),
            vec![intent],
            "{backend}: the intent reads back as recorded"
        );
        runtime::put_ledger(
            &store,
            &runtime::LedgerWrite {
                sync_def_id: def.id,
                source_identity: &eleven.source_identity,
                source_identity_hash: &eleven.source_identity_hash,
                key_strategy: &def.key_strategy,
                source_instance_id: None,
                sp_list_id: None,
                sp_item_id: None,
                content_hash: None,
                sync_state: "PENDING_CREATE",
                pending_list_id: Some(&list),
                sync_target_id: None,
                run_id,
                fresh: false,
            },
        )
        .await
        .expect("pending create");

        let report = fx
            .engine
            .run(
                "projects",
                &RunOptions {
                    full: true,
                    ..RunOptions::default()
                },
            )
            .await
            .expect("recovering run");
        // 3, 7 and 11 are adopted without a content hash, so the read updates them once.
        assert_eq!(
            (report.created, report.updated, report.unchanged),
            (1, 3, 27),
            "{backend}: {report:?}"
        );
        assert_eq!(
            items(&fx.emulator),
            31,
            "{backend}: no item was created twice"
        );
        assert!(
            runtime::create_intents(&store, def.id)
                .await
                .expect("intents")
                .is_empty(),
            "{backend}: the intent is settled"
        );
        let ledger = runtime::ledger_page(&store, def.id, None, 100)
            .await
            .expect("ledger");
        assert_eq!(ledger.len(), 31, "{backend}");
        assert!(
            ledger
                .iter()
                .all(|r| r.sync_state == "SYNCED" && r.sp_item_id.is_some()),
            "{backend}: every row is synced to an item"
        );
        let adopted = |hash: &str| {
            ledger
                .iter()
                .find(|r| r.source_identity_hash == hash)
                .and_then(|r| r.sp_item_id)
        };
        assert_eq!(
            adopted(&three.source_identity_hash),
            three.sp_item_id,
            "{backend}: 3 keeps its item"
        );
        assert_eq!(
            adopted(&seven.source_identity_hash),
            seven.sp_item_id,
            "{backend}: 7 keeps its item"
        );
        assert_eq!(
            adopted(&eleven.source_identity_hash),
            eleven.sp_item_id,
            "{backend}: 11 keeps its item"
        );
    }
}

/// The target lists and entries of the ledger digest copy saved for a definition.
async fn saved_copy(store: &TestStore, def: syncbridge_store::Id) -> (Vec<String>, Vec<u8>) {
    let saved = runtime::saved_ledger_digest(store, def)
        .await
        .expect("saved")
        .1
        .expect("a saved digest");
    (saved.lists, saved.entries)
}

/// A saved digest: a format tag and a config hash, then entries of an identity hash prefix,
/// a list number, a content hash prefix and a row fingerprint.
const SAVED_HEADER_BYTES: usize = 4 + 32;
const SAVED_ENTRY_BYTES: usize = 16 + 1 + 16 + 16;

/// The identity hash prefixes (hex) of a saved digest's entries, in their order.
fn identities(saved: &[u8]) -> Vec<String> {
    saved[SAVED_HEADER_BYTES..]
        .chunks_exact(SAVED_ENTRY_BYTES)
        .map(|entry| hex::encode(&entry[..16]))
        .collect()
}
