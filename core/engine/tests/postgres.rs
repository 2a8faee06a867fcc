//! Real PostgreSQL → the Graph emulator through the engine, for every key strategy: the primary
//! key taken from the catalog, composite columns, a named unique constraint, and a hash of the
//! whole row for a table without a key.

mod common;

use std::path::Path;
use std::sync::Arc;

use sqlx::Connection as _;
use syncbridge_api::Registry;
use syncbridge_config::apply::{ApplyOptions, apply};
use syncbridge_engine::run::{Engine, RunOptions};
use syncbridge_graph_emulator::{Emulator, EmulatorConfig, FaultConfig, RunningEmulator};
use syncbridge_store::secrets::MasterKey;
use syncbridge_store::testing::TestStore;
use syncbridge_store::with_pool;

/// The titles of a list's items, sorted.
fn list_items(emulator: &RunningEmulator, list: &str) -> Vec<String> {
    let mut titles: Vec<String> = emulator
        .data()
        .sites
        .iter()
        .flat_map(|s| &s.lists)
        .filter(|l| l.display_name == list)
        .flat_map(|l| {
            l.items.values().map(|i| {
                i.fields
                    .get("Title")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned()
            })
        })
        .collect();
    titles.sort();
    titles
}

fn config(emulator: &RunningEmulator, database: &str) -> String {
    let info = emulator.connection_info();
    let sync = |name: &str, table: &str, key: &str, list: &str, title: &str| {
        format!(
            "  - name: {name}\n    source: {{ database: pg, table: {table} }}\n    key: {key}\n    cursor: {{ strategy: FULL_SCAN }}\n    targets: [{{ name: t, connection: emulator, list: {list} }}]\n    mappings: [{{ source: {title}, target: Title }}]\n"
        )
    };
    format!(
        "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: pg\n    application: app\n    type: postgres\n    database_name: {database}\n    instances: [{{ label: main, host: 127.0.0.1, port: 5432, user: postgres }}]\n{}syncs:\n{}{}{}{}",
        info.config_section("emulator", &["ByPk", "ByColumns", "ByUnique", "ByHash"]),
        sync(
            "pk",
            "public.projects",
            "{ strategy: PRIMARY_KEY }",
            "ByPk",
            "name"
        ),
        sync(
            "columns",
            "public.projects",
            "{ strategy: COMPOSITE_COLUMNS, columns: [region, code] }",
            "ByColumns",
            "name"
        ),
        sync(
            "unique",
            "public.projects",
            "{ strategy: UNIQUE_CONSTRAINT, constraint: projects_name_key }",
            "ByUnique",
            "name"
        ),
        sync(
            "hashed",
            "public.logs",
            "{ strategy: HASHED }",
            "ByHash",
            "message"
        ),
    )
}

#[tokio::test]
async fn every_key_strategy_from_postgres() {
    let Some(pg) = syncbridge_store::testing::PgDatabase::create("src") else {
        return;
    };
    let database = pg.name.clone();
    let url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    let mut db = sqlx::PgConnection::connect(&url).await.expect("source");
    sqlx::raw_sql(
        "CREATE TABLE projects (region text, code int, name text UNIQUE NOT NULL, PRIMARY KEY (region, code));
         INSERT INTO projects SELECT r, c, r || '-' || c FROM unnest(ARRAY['eu','us']) r, generate_series(1, 20) c;
         CREATE TABLE logs (message text, level text);
         INSERT INTO logs SELECT 'log ' || i, 'info' FROM generate_series(1, 15) i;",
    )
    .execute(&mut db)
    .await
    .expect("tables");

    let store = TestStore::sqlite().await;
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let key = Arc::new(
        MasterKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").expect("key"),
    );
    let config = syncbridge_config::load_str(
        &config(&emulator, &database),
        Path::new("pg.yaml"),
        &syncbridge_config::Known::default(),
    )
    .expect("config");
    apply(
        &store,
        &config,
        &ApplyOptions {
            prune: false,
            dry_run: false,
            actor: "t".into(),
            master_key: Some(key.clone()),
        },
    )
    .await
    .expect("apply");
    let engine = common::engine(&store, &key);

    for (sync, list, rows) in [
        ("pk", "ByPk", 40),
        ("columns", "ByColumns", 40),
        ("unique", "ByUnique", 40),
        ("hashed", "ByHash", 15),
    ] {
        engine.provision(sync).await.expect("provision");
        let report = engine.run(sync, &RunOptions::default()).await.expect("run");
        assert_eq!((report.created, report.failed), (rows, 0), "{sync}");
        assert_eq!(list_items(&emulator, list).len(), rows as usize, "{sync}");
        let again = engine
            .run(sync, &RunOptions::default())
            .await
            .expect("rerun");
        assert_eq!(
            (again.unchanged, again.created, again.updated),
            (rows, 0, 0),
            "{sync}: a rerun writes nothing"
        );
    }

    // A changed row: keyed strategies update in place; HASHED sees a new identity (create) and
    // the old one vanishes (delete).
    sqlx::raw_sql("UPDATE projects SET name = name || '!' WHERE code = 1; UPDATE logs SET message = 'changed' WHERE message = 'log 1';")
        .execute(&mut db)
        .await
        .expect("edits");
    let pk = engine.run("pk", &RunOptions::default()).await.expect("pk");
    assert_eq!((pk.updated, pk.created, pk.deleted), (2, 0, 0));
    let unique = engine
        .run("unique", &RunOptions::default())
        .await
        .expect("unique");
    assert_eq!(
        (unique.created, unique.deleted),
        (2, 2),
        "the unique key itself changed: new identity, old one deleted"
    );
    let hashed = engine
        .run("hashed", &RunOptions::default())
        .await
        .expect("hashed");
    assert_eq!((hashed.created, hashed.deleted, hashed.updated), (1, 1, 0));
    let titles = list_items(&emulator, "ByHash");
    assert!(
        titles.contains(&"changed".to_owned()) && !titles.contains(&"log 1".to_owned()),
        "{titles:?}"
    );

    drop(db);
    drop(pg);
}

#[tokio::test]
async fn introspection_fills_the_inventory_idempotently() {
    let Some(pg) = syncbridge_store::testing::PgDatabase::create("src") else {
        return;
    };
    let database = pg.name.clone();
    let url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    let mut db = sqlx::PgConnection::connect(&url).await.expect("source");
    sqlx::raw_sql(
        "CREATE TABLE parent (id int PRIMARY KEY, code text UNIQUE);
         CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent(id), note text CHECK (length(note) < 100));
         CREATE INDEX child_note ON child (note);
         CREATE VIEW v AS SELECT id FROM parent;",
    )
    .execute(&mut db)
    .await
    .expect("tables");
    for store in TestStore::all().await {
        let emulator = Emulator::start_local(EmulatorConfig::default())
            .await
            .expect("emulator");
        let key = Arc::new(
            MasterKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").expect("key"),
        );
        let _ = &emulator;
        let yaml = format!(
            "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: pg\n    application: app\n    type: postgres\n    database_name: {database}\n    instances: [{{ label: main, host: 127.0.0.1, port: 5432, user: postgres }}]\n"
        );
        let config = syncbridge_config::load_str(
            &yaml,
            Path::new("pg.yaml"),
            &syncbridge_config::Known::default(),
        )
        .expect("config");
        apply(
            &store,
            &config,
            &ApplyOptions {
                prune: false,
                dry_run: false,
                actor: "t".into(),
                master_key: Some(key.clone()),
            },
        )
        .await
        .expect("apply");
        let mut registry = Registry::new();
        registry.register_source::<syncbridge_postgres::PostgresSource>();
        let engine = Engine::new((*store).clone(), Arc::new(registry), Some(key));
        let first = engine.introspect("pg").await.expect("introspect");
        assert_eq!((first.tables, first.views), (2, 1), "{first:?}");
        let database_id = syncbridge_store::inventory::database_by_name(&store, "pg")
            .await
            .expect("db")
            .expect("exists")
            .0;
        let counts = syncbridge_store::inventory::inventory_summary(&store, database_id)
            .await
            .expect("summary");
        // 3 tables; columns 2 + 3 + 1; constraints: 2 PK, 1 unique, 1 FK, 1 check; indexes: 2 PK, 1 unique, 1 plain.
        assert_eq!(counts, (3, 6, 5, 4), "{}", store.backend());
        engine.introspect("pg").await.expect("again");
        assert_eq!(
            syncbridge_store::inventory::inventory_summary(&store, database_id)
                .await
                .expect("summary"),
            counts,
            "a rerun updates, never duplicates"
        );
    }
    drop(db);
    drop(pg);
}

/// Provisioning from a real table's catalog types: each column gets the documented SharePoint
/// type, the hidden unique key column is added, and provisioning again changes nothing.
#[tokio::test]
async fn provisioning_follows_the_table_schema_and_is_idempotent() {
    let Some(pg) = syncbridge_store::testing::PgDatabase::create("prov") else {
        return;
    };
    let url = format!("postgres://postgres@127.0.0.1:5432/{}", pg.name);
    let mut db = sqlx::PgConnection::connect(&url).await.expect("source");
    sqlx::raw_sql(
        "CREATE TYPE stage AS ENUM ('draft', 'live', 'retired');
         CREATE TABLE items (id int PRIMARY KEY, label varchar(40) NOT NULL, notes text,
            price numeric(12,2), qty int, active boolean, due date, seen timestamptz, stage stage);
         INSERT INTO items VALUES (1, 'one', 'n', 9.99, 3, true, '2024-05-01', now(), 'live');",
    )
    .execute(&mut db)
    .await
    .expect("schema");
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let columns = [
        "label", "notes", "price", "qty", "active", "due", "seen", "stage",
    ];
    let mappings: Vec<String> = columns
        .iter()
        .map(|c| {
            let target = if *c == "label" {
                "Title".to_owned()
            } else {
                format!("X{c}")
            };
            format!("{{ source: {c}, target: {target} }}")
        })
        .collect();
    let text = format!(
        "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: pg\n    application: app\n    type: postgres\n    database_name: {}\n    instances: [{{ label: main, host: 127.0.0.1, port: 5432, user: postgres }}]\n{}syncs:\n  - name: items\n    source: {{ database: pg, table: public.items }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {{ strategy: FULL_SCAN }}\n    targets: [{{ name: t, connection: emulator, list: Items }}]\n    mappings: [{}]\n",
        pg.name,
        info.config_section("emulator", &["Items"]),
        mappings.join(", "),
    );
    let (store, key) = common::applied(&text).await;
    let engine = common::engine(&store, &key);
    engine.introspect("pg").await.expect("introspect");

    let first = engine.provision("items").await.expect("provision");
    assert!(first.iter().all(|l| l.created), "{first:?}");
    let data = emulator.data();
    let list = data
        .sites
        .iter()
        .flat_map(|s| &s.lists)
        .find(|l| l.display_name == "Items")
        .expect("list");
    let facet = |name: &str| {
        let column = list
            .columns
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("column {name}"));
        (column.kind.clone(), column.facet.clone())
    };
    assert_eq!(
        facet("Xnotes").1["allowMultipleLines"],
        true,
        "text without a length"
    );
    assert_eq!(facet("Xprice").0, "number");
    assert_eq!(facet("Xqty").0, "number");
    assert_eq!(facet("Xactive").0, "boolean");
    assert_eq!(
        facet("Xdue"),
        ("dateTime".into(), serde_json::json!({"format": "dateOnly"}))
    );
    assert_eq!(facet("Xseen").1["format"], "dateTime");
    assert_eq!(facet("Xstage").0, "choice");
    assert_eq!(
        facet("Xstage").1["choices"],
        serde_json::json!(["draft", "live", "retired"])
    );
    let key_column = list
        .columns
        .iter()
        .find(|c| c.name == "SyncBridgeKey")
        .expect("identity column");
    assert!(key_column.hidden && key_column.indexed && key_column.enforce_unique_values);

    let second = engine.provision("items").await.expect("provision again");
    assert!(
        second
            .iter()
            .all(|l| !l.created && l.added_fields.is_empty() && l.incompatible_fields.is_empty()),
        "{second:?}"
    );
    let report = engine
        .run("items", &RunOptions::default())
        .await
        .expect("run");
    assert_eq!((report.created, report.failed), (1, 0));
}

/// The first instance (a relay to the same server) goes away in the middle of a run: the run
/// continues on the second from the last position read, every row lands exactly once, a
/// FAILOVER event names the instance, and both instances carry `last_verified_at`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_fails_over_when_the_first_instance_goes_away() {
    let Some(pg) = syncbridge_store::testing::PgDatabase::create("failover") else {
        return;
    };
    let mut db = sqlx::PgConnection::connect(&pg.url).await.expect("source");
    sqlx::raw_sql(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 12000) g;",
    )
    .execute(&mut db)
    .await
    .expect("rows");
    let relay = syncbridge_store::testing::TcpRelay::start("127.0.0.1:5432").await;
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let text = format!(
        "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: pg\n    application: app\n    type: postgres\n    database_name: {}\n    instances:\n      - {{ label: first, host: 127.0.0.1, port: {}, user: postgres, priority: 1 }}\n      - {{ label: second, host: 127.0.0.1, port: 5432, user: postgres, priority: 2 }}\n{}syncs:\n  - name: items\n    source: {{ database: pg, table: public.items }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {{ strategy: FULL_SCAN }}\n    targets: [{{ name: t, connection: emulator, list: Items }}]\n    mappings: [{{ source: name, target: Title }}]\n",
        pg.name,
        relay.port,
        info.config_section("emulator", &["Items"]),
    );
    let (store, key) = common::applied(&text).await;
    let engine = common::engine(&store, &key);
    engine.provision("items").await.expect("provision");

    let cut = relay.cutter();
    let progress: syncbridge_engine::run::ProgressFn = Arc::new(move |progress| {
        // The source reads pages of 10,000 rows: the cut falls inside the first, so the
        // second page's query meets the lost instance.
        if progress.counters.processed >= 2000 {
            cut();
        }
    });
    let report = engine
        .run(
            "items",
            &RunOptions {
                batch_size: 1000,
                progress: Some(progress),
                ..RunOptions::default()
            },
        )
        .await
        .expect("the run survives the lost instance");
    assert!(relay.is_cut());
    assert_eq!(
        (report.created, report.failed, report.deleted),
        (12000, 0, 0),
        "{report:?}"
    );
    let mut titles = list_items(&emulator, "Items");
    titles.dedup();
    assert_eq!(titles.len(), 12000, "every row exactly once");
    let events = common::run_events(&store, &report).await;
    assert!(
        common::has_event(&events, None, "FAILOVER", "`second`"),
        "{events:?}"
    );
    let mut meta = sqlx::SqliteConnection::connect(store.url())
        .await
        .expect("meta-store");
    let verified: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT instance_label, last_verified_at FROM database_instances ORDER BY instance_label",
    )
    .fetch_all(&mut meta)
    .await
    .expect("instances");
    assert!(
        verified.iter().all(|(_, at)| at.is_some()),
        "both instances were verified: {verified:?}"
    );
}

/// On a multi-threaded runtime a run's loop runs on a thread of its own at background priority,
/// so the runtime's workers (the writes to the target) come first; the run is otherwise the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_loops_on_a_thread_of_its_own_at_background_priority() {
    let Some(pg) = syncbridge_store::testing::PgDatabase::create("run_thread") else {
        return;
    };
    let mut db = sqlx::PgConnection::connect(&pg.url).await.expect("source");
    sqlx::raw_sql(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 300) g;",
    )
    .execute(&mut db)
    .await
    .expect("rows");
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let text = format!(
        "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: pg\n    application: app\n    type: postgres\n    database_name: {}\n    instances: [{{ label: main, host: 127.0.0.1, port: 5432, user: postgres }}]\n{}syncs:\n  - name: items\n    source: {{ database: pg, table: public.items }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {{ strategy: FULL_SCAN }}\n    targets: [{{ name: t, connection: emulator, list: Items }}]\n    mappings: [{{ source: name, target: Title }}]\n",
        pg.name,
        info.config_section("emulator", &["Items"]),
    );
    let (store, key) = common::applied(&text).await;
    let engine = common::engine(&store, &key);
    engine.provision("items").await.expect("provision");

    // The progress callback runs in the run's loop: it reports where that loop runs.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let progress: syncbridge_engine::run::ProgressFn = Arc::new({
        let seen = seen.clone();
        move |_| {
            let thread = std::thread::current().name().map(str::to_owned);
            let nice = syncbridge_threads::thread_nice(None).expect("nice");
            seen.lock().expect("seen").push((thread, nice));
        }
    });
    let own_nice = syncbridge_threads::thread_nice(None).expect("nice");
    let report = engine
        .run(
            "items",
            &RunOptions {
                batch_size: 100,
                progress: Some(progress),
                ..RunOptions::default()
            },
        )
        .await
        .expect("run");
    assert_eq!((report.created, report.failed), (300, 0), "{report:?}");
    assert_eq!(list_items(&emulator, "Items").len(), 300);
    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 3, "one call a batch: {seen:?}");
    let background = own_nice.map(|own| own.max(syncbridge_threads::BACKGROUND_NICE));
    for (thread, nice) in seen {
        assert_eq!(thread.as_deref(), Some("syncbridge-run"));
        assert_eq!(nice, background);
    }
    // The caller's thread is left as it was.
    assert_eq!(
        syncbridge_threads::thread_nice(None).expect("nice"),
        own_nice
    );
}

/// The LSN cursor end to end: the first run snapshots the table through a new replication slot;
/// later runs — each with a fresh engine, as after a restart — see exactly the inserts, updates
/// and deletes committed since, once; the slot is advanced after each committed batch.
#[tokio::test]
async fn lsn_captures_inserts_updates_and_deletes_once_across_restarts() {
    let Some(pg) = syncbridge_store::testing::PgDatabase::create("lsn") else {
        return;
    };
    let mut db = sqlx::PgConnection::connect(&pg.url).await.expect("source");
    if !logical_decoding(&mut db).await {
        return;
    }
    sqlx::raw_sql(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, note text);
         INSERT INTO items SELECT g, 'item ' || g, repeat('x', 3000) FROM generate_series(1, 5) g;",
    )
    .execute(&mut db)
    .await
    .expect("rows");
    let slot = format!("sbtest_{}", &pg.name[pg.name.len() - 12..]);
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let cursor = format!("{{ strategy: LSN, slot: {slot} }}");
    let (store, key) = common::applied(&items_config(&pg.name, &emulator, &cursor)).await;
    let engine = || common::engine(&store, &key);
    engine().provision("items").await.expect("provision");

    let first = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("snapshot run");
    assert_eq!((first.created, first.failed), (5, 0), "{first:?}");
    assert_eq!(slots(&mut db, &slot).await, 1, "the slot was created");

    // Changes while SyncBridge is not running: two inserts, an update that leaves the TOASTed
    // column alone, a delete, a row inserted and deleted again, and a change to another table.
    sqlx::raw_sql(
        "INSERT INTO items VALUES (6, 'item 6', NULL), (7, 'item 7', NULL);
         UPDATE items SET name = 'renamed' WHERE id = 1;
         DELETE FROM items WHERE id = 2;
         INSERT INTO items VALUES (8, 'brief', NULL); DELETE FROM items WHERE id = 8;
         CREATE TABLE other (id int PRIMARY KEY); INSERT INTO other VALUES (1);",
    )
    .execute(&mut db)
    .await
    .expect("changes");
    let second = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("stream run");
    assert_eq!(
        (
            second.created,
            second.updated,
            second.deleted,
            second.failed
        ),
        (2, 1, 1, 0),
        "{second:?}"
    );
    let titles = list_items(&emulator, "Items");
    assert_eq!(
        titles,
        ["item 3", "item 4", "item 5", "item 6", "item 7", "renamed"]
    );

    // Nothing since: nothing written, and the slot holds no more changes for us.
    let third = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("quiet run");
    assert_eq!(
        (third.created, third.updated, third.deleted),
        (0, 0, 0),
        "{third:?}"
    );
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_logical_slot_peek_changes($1, NULL, NULL) WHERE data LIKE 'table public.items:%'",
    )
    .bind(&slot)
    .fetch_one(&mut db)
    .await
    .expect("pending");
    assert_eq!(pending, 0, "acknowledged changes were released");

    // The slot is lost (dropped by an administrator) while rows change: the next run cannot
    // continue from its position, reads the table again in full with a new slot, and deletes
    // what vanished meanwhile.
    sqlx::query("SELECT pg_drop_replication_slot($1)")
        .bind(&slot)
        .execute(&mut db)
        .await
        .expect("slot dropped");
    sqlx::raw_sql(
        "DELETE FROM items WHERE id = 3; UPDATE items SET name = 'again' WHERE id = 4;
         INSERT INTO items VALUES (9, 'item 9', NULL);",
    )
    .execute(&mut db)
    .await
    .expect("changes without a slot");
    let reset = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("the run reads the table again");
    assert_eq!(
        (reset.created, reset.updated, reset.deleted, reset.failed),
        (1, 1, 1, 0),
        "{reset:?}"
    );
    let titles = list_items(&emulator, "Items");
    assert_eq!(
        titles,
        ["again", "item 5", "item 6", "item 7", "item 9", "renamed"]
    );
    let events = common::run_events(&store, &reset).await;
    assert!(
        common::has_event(&events, Some("WARN"), "SOURCE_RESET", "no longer exists"),
        "{events:?}"
    );
    // Change capture carries on from the new slot.
    sqlx::raw_sql("UPDATE items SET name = 'once more' WHERE id = 5;")
        .execute(&mut db)
        .await
        .expect("a change");
    let after = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("stream run");
    assert_eq!((after.processed, after.updated), (1, 1), "{after:?}");

    // Releasing the sync drops its slot (the WAL it held is freed) and its position.
    engine().release("items").await.expect("release");
    assert_eq!(slots(&mut db, &slot).await, 0, "the slot was dropped");
}

/// A config with one sync, `items`: `public.items` of database `database`, keyed by its primary
/// key, read with `cursor`, `name` pushed to the Title of list Items.
fn items_config(database: &str, emulator: &RunningEmulator, cursor: &str) -> String {
    format!(
        "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: pg\n    application: app\n    type: postgres\n    database_name: {database}\n    instances: [{{ label: main, host: 127.0.0.1, port: 5432, user: postgres }}]\n{}syncs:\n  - name: items\n    source: {{ database: pg, table: public.items }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {cursor}\n    targets: [{{ name: t, connection: emulator, list: Items }}]\n    mappings: [{{ source: name, target: Title }}]\n",
        emulator
            .connection_info()
            .config_section("emulator", &["Items"]),
    )
}

/// Whether the server decodes its WAL logically (CI sets `wal_level = logical`); prints
/// `SKIPPED:` when it does not and services are not required.
async fn logical_decoding(db: &mut sqlx::PgConnection) -> bool {
    let wal_level: String = sqlx::query_scalar("SHOW wal_level")
        .fetch_one(db)
        .await
        .expect("wal_level");
    if wal_level != "logical" {
        assert!(
            !syncbridge_store::testing::services_required(),
            "CI switches PostgreSQL to wal_level=logical; it has {wal_level}"
        );
        println!("SKIPPED: wal_level is {wal_level}, not logical");
        return false;
    }
    true
}

/// Replication slots of that name.
async fn slots(db: &mut sqlx::PgConnection, slot: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1")
        .bind(slot)
        .fetch_one(db)
        .await
        .expect("slots")
}

/// Where a replication slot starts keeping WAL: a slot dropped and created again moves on.
async fn restart_lsn(db: &mut sqlx::PgConnection, slot: &str) -> String {
    sqlx::query_scalar("SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1")
        .bind(slot)
        .fetch_one(db)
        .await
        .expect("restart_lsn")
}

/// A database with table `items` (id, name) of `rows` rows and a sync of it, `items`
/// ([`items_config`]), applied and provisioned.
struct Items {
    pg: syncbridge_store::testing::PgDatabase,
    db: sqlx::PgConnection,
    slot: String,
    emulator: RunningEmulator,
    store: TestStore,
    key: Arc<MasterKey>,
}

/// [`Items`], read with the `LSN` cursor (its slot named after the database) or `FULL_SCAN`;
/// `None` (after saying why) without PostgreSQL, or logical decoding for `LSN`, when services
/// are not required.
async fn items(name: &str, rows: i64, lsn: bool) -> Option<Items> {
    let pg = syncbridge_store::testing::PgDatabase::create(name)?;
    let mut db = sqlx::PgConnection::connect(&pg.url).await.expect("source");
    if lsn && !logical_decoding(&mut db).await {
        return None;
    }
    sqlx::raw_sql(&format!(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, {rows}) g;"
    ))
    .execute(&mut db)
    .await
    .expect("rows");
    let slot = format!("sbtest_{}", &pg.name[pg.name.len() - 12..]);
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let cursor = if lsn {
        format!("{{ strategy: LSN, slot: {slot} }}")
    } else {
        "{ strategy: FULL_SCAN }".to_owned()
    };
    let (store, key) = common::applied(&items_config(&pg.name, &emulator, &cursor)).await;
    common::engine(&store, &key)
        .provision("items")
        .await
        .expect("provision");
    Some(Items {
        pg,
        db,
        slot,
        emulator,
        store,
        key,
    })
}

/// A dry run of an `LSN` definition neither creates nor replaces its replication slot, even
/// with `--full`: the next real run continues from its committed position and still sees every
/// change made since.
#[tokio::test]
async fn dry_runs_leave_the_replication_slot_alone() {
    let Some(Items {
        pg: _pg,
        mut db,
        slot,
        emulator,
        store,
        key,
    }) = items("lsn_dry", 5, true).await
    else {
        return;
    };
    let engine = || common::engine(&store, &key);
    let dry = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let dry_full = RunOptions {
        full: true,
        dry_run: true,
        ..RunOptions::default()
    };

    // Graph writes of every kind, as the emulator counts them.
    let writes = || {
        let counts = emulator.counts();
        ["item.create", "item.update", "item.delete"].map(|kind| counts.kind(kind))
    };
    let planned = engine().run("items", &dry).await.expect("first dry run");
    assert_eq!(planned.created, 5, "{planned:?}");
    assert_eq!(slots(&mut db, &slot).await, 0, "a dry run creates no slot");
    assert_eq!(writes(), [0, 0, 0], "a dry run sends no write");
    let first = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("snapshot run");
    assert_eq!((first.created, first.failed), (5, 0), "{first:?}");

    // Changes, then dry runs from the start and from the position: the slot stays as it is.
    sqlx::raw_sql("INSERT INTO items VALUES (6, 'item 6'); DELETE FROM items WHERE id = 2;")
        .execute(&mut db)
        .await
        .expect("changes");
    let held = restart_lsn(&mut db, &slot).await;
    let written = writes();
    let full = engine().run("items", &dry_full).await.expect("dry --full");
    assert_eq!((full.created, full.deleted), (1, 1), "{full:?}");
    let incremental = engine().run("items", &dry).await.expect("dry run");
    assert_eq!(
        (incremental.created, incremental.deleted),
        (1, 1),
        "{incremental:?}"
    );
    assert_eq!(
        restart_lsn(&mut db, &slot).await,
        held,
        "the slot was not replaced"
    );
    assert_eq!(writes(), written, "dry runs send no write");

    let next = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("stream run");
    assert_eq!(
        (next.created, next.deleted, next.failed),
        (1, 1, 0),
        "the changes made before the dry runs: {next:?}"
    );
    let titles = list_items(&emulator, "Items");
    assert_eq!(titles, ["item 1", "item 3", "item 4", "item 5", "item 6"]);
}

/// Open dead-letter entries of the store: `(identity, retry count)`, by identity.
async fn open_entries(store: &TestStore) -> Vec<(String, i64)> {
    let mut open: Vec<(String, i64)> = syncbridge_store::runtime::open_failures(store, None)
        .await
        .expect("dlq")
        .into_iter()
        .map(|f| (f.source_identity.unwrap_or_default(), f.retry_count))
        .collect();
    open.sort();
    open
}

/// Makes every open entry due, as if its wait had passed.
async fn time_passes(store: &TestStore) {
    with_pool!(store, pool => sqlx::query("UPDATE failed_records SET next_retry_at = $1 WHERE resolved_at IS NULL")
        .bind(chrono::Utc::now() - chrono::Duration::seconds(1))
        .execute(pool)
        .await
        .map(|_| ()))
    .expect("backdated");
}

/// Every create answered 429 until the faults are cleared.
fn creates_throttled(emulator: &RunningEmulator) {
    emulator.set_faults(FaultConfig {
        seed: 1,
        rate_429: 1.0,
        retry_after_seconds: 0.0,
        kinds: vec!["item.create".into()],
        ..FaultConfig::default()
    });
}

/// `LSN`: dead-lettered rows wait for their retry (an incremental run before it is due leaves
/// them), are retried from the stored row once due, and a row deleted in the source meanwhile
/// is not brought back by its retry.
#[tokio::test]
async fn lsn_retries_dead_letters_when_due_and_never_revives_a_deleted_row() {
    let Some(Items {
        pg: _pg,
        mut db,
        slot: _,
        emulator,
        store,
        key,
    }) = items("lsn_dlq", 6, true).await
    else {
        return;
    };
    let engine = || common::engine(&store, &key);

    creates_throttled(&emulator);
    let first = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("the run completes despite the failures");
    assert_eq!((first.created, first.failed), (0, 6), "{first:?}");
    assert_eq!(open_entries(&store).await.len(), 6);

    // The service recovers. Row 2 is deleted and row 3 changes before the retries are due: the
    // change is written (its entry resolved), the delete resolves row 2's entry, and the other
    // entries wait.
    emulator.set_faults(FaultConfig::default());
    sqlx::raw_sql("DELETE FROM items WHERE id = 2; UPDATE items SET name = 'three' WHERE id = 3;")
        .execute(&mut db)
        .await
        .expect("changes");
    let second = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("stream run");
    assert_eq!(
        (second.created, second.deleted, second.failed),
        (1, 0, 0),
        "{second:?}"
    );
    assert_eq!(
        open_entries(&store).await,
        [
            ("1".into(), 0),
            ("4".into(), 0),
            ("5".into(), 0),
            ("6".into(), 0)
        ],
        "retries not due yet"
    );

    time_passes(&store).await;
    let third = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("retry run");
    assert_eq!((third.created, third.failed), (4, 0), "{third:?}");
    assert!(open_entries(&store).await.is_empty());
    let titles = list_items(&emulator, "Items");
    assert_eq!(titles, ["item 1", "item 4", "item 5", "item 6", "three"]);
}

/// `FULL_SCAN`: the read itself retries dead-lettered rows, as they are now (no second attempt
/// from the stored copy, so a row that keeps failing counts once per run), and resolves the
/// entries of rows gone from the source instead of bringing them back.
#[tokio::test]
async fn full_reads_retry_dead_letters_once_and_resolve_those_of_deleted_rows() {
    let Some(Items {
        pg: _pg,
        mut db,
        emulator,
        store,
        key,
        ..
    }) = items("scan_dlq", 5, false).await
    else {
        return;
    };
    let engine = || common::engine(&store, &key);
    sqlx::query("INSERT INTO items VALUES (6, repeat('x', 300))")
        .execute(&mut db)
        .await
        .expect("a row too long for a Title");

    creates_throttled(&emulator);
    let first = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("the run completes despite the failures");
    assert_eq!((first.created, first.failed), (0, 6), "{first:?}");

    // The service recovers, row 2 is deleted, and the retries are due. Row 6 is too long for a
    // Title whatever the service does.
    emulator.set_faults(FaultConfig::default());
    sqlx::raw_sql("DELETE FROM items WHERE id = 2;")
        .execute(&mut db)
        .await
        .expect("delete");
    time_passes(&store).await;
    let second = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("second run");
    assert_eq!(
        (second.created, second.failed, second.deleted),
        (4, 1, 0),
        "{second:?}"
    );
    assert_eq!(open_entries(&store).await, [("6".into(), 1)]);

    time_passes(&store).await;
    let third = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("third run");
    assert_eq!(
        (third.created, third.unchanged, third.failed),
        (0, 4, 1),
        "{third:?}"
    );
    assert_eq!(open_entries(&store).await, [("6".into(), 2)]);
    let titles = list_items(&emulator, "Items");
    assert_eq!(titles, ["item 1", "item 3", "item 4", "item 5"]);
}

/// A row without an identity (here a HASHED row whose mapping fails) is dead-lettered under a
/// hash of its raw values: failing on every run, it stays one entry whose retry count grows.
#[tokio::test]
async fn rows_without_an_identity_stay_one_dead_letter_entry_each() {
    let Some(pg) = syncbridge_store::testing::PgDatabase::create("raw_dlq") else {
        return;
    };
    let mut db = sqlx::PgConnection::connect(&pg.url).await.expect("source");
    sqlx::raw_sql(
        "CREATE TABLE items (id int, name text NOT NULL);
         INSERT INTO items VALUES (1, 'one'), (2, 'two');",
    )
    .execute(&mut db)
    .await
    .expect("rows");
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let config = items_config(&pg.name, &emulator, "{ strategy: FULL_SCAN }")
        .replacen(
            "key: { strategy: PRIMARY_KEY }",
            "key: { strategy: HASHED }",
            1,
        )
        .replacen("target: Title }", "target: Title, transform: round(2) }", 1);
    let (store, key) = common::applied(&config).await;
    let engine = common::engine(&store, &key);
    engine.provision("items").await.expect("provision");
    for retries in 0..2 {
        let report = engine
            .run("items", &RunOptions::default())
            .await
            .expect("run");
        assert_eq!((report.created, report.failed), (0, 2), "{report:?}");
        let open = syncbridge_store::runtime::open_failures(&store, None)
            .await
            .expect("dlq");
        let mut seen: Vec<(&str, Option<&str>, i64)> = open
            .iter()
            .map(|f| {
                (
                    f.stage_failed.as_str(),
                    f.source_identity_hash.as_deref().map(|h| &h[..4]),
                    f.retry_count,
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("TRANSFORM", Some("raw:"), retries),
                ("TRANSFORM", Some("raw:"), retries)
            ],
            "run {retries}"
        );
    }
}

/// Reconciliation counts, list by list, the rows the source routes there against the items
/// present, and names the rows that differ: by identity, with the item id for items whose row
/// is gone.
#[tokio::test]
async fn reconcile_names_the_rows_that_differ() {
    let Some(Items {
        pg: _pg,
        mut db,
        emulator: _emulator,
        store,
        key,
        ..
    }) = items("reconcile", 5, false).await
    else {
        return;
    };
    let engine = common::engine(&store, &key);
    engine
        .run("items", &RunOptions::default())
        .await
        .expect("run");
    let lists = engine.reconcile("items").await.expect("reconcile").lists;
    assert_eq!(
        (lists[0].source_rows, lists[0].items, lists[0].status),
        (5, 5, "MATCH")
    );

    sqlx::raw_sql("DELETE FROM items WHERE id = 2; INSERT INTO items VALUES (9, 'item 9');")
        .execute(&mut db)
        .await
        .expect("changes");
    let lists = engine.reconcile("items").await.expect("reconcile").lists;
    let list = &lists[0];
    assert_eq!(
        (list.source_rows, list.items, list.status),
        (5, 5, "MISMATCH")
    );
    assert_eq!(list.missing, ["9"]);
    assert_eq!(list.unexpected.len(), 1, "{:?}", list.unexpected);
    assert!(
        list.unexpected[0].starts_with("2 (item "),
        "{:?}",
        list.unexpected
    );
    let metrics: Vec<String> = with_pool!(store, pool => sqlx::query_scalar("SELECT reconcile_status FROM sync_metrics").fetch_all(pool).await)
        .expect("metrics");
    assert_eq!(metrics, ["MISMATCH"]);

    engine
        .run("items", &RunOptions::default())
        .await
        .expect("run");
    let lists = engine.reconcile("items").await.expect("reconcile").lists;
    assert_eq!(lists[0].status, "MATCH", "{lists:?}");
}

/// `ARCHIVE_ONLY` writes each row once: later changes and deletes in the source leave the
/// items as they were, and new rows are added.
#[tokio::test]
async fn archive_only_writes_each_row_once_from_postgres() {
    let Some(pg) = syncbridge_store::testing::PgDatabase::create("archive") else {
        return;
    };
    let mut db = sqlx::PgConnection::connect(&pg.url).await.expect("source");
    sqlx::raw_sql(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5) g;",
    )
    .execute(&mut db)
    .await
    .expect("rows");
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let config = items_config(&pg.name, &emulator, "{ strategy: FULL_SCAN }").replacen(
        "    key: ",
        "    mode: ARCHIVE_ONLY\n    key: ",
        1,
    );
    let (store, key) = common::applied(&config).await;
    let engine = common::engine(&store, &key);
    engine.provision("items").await.expect("provision");
    let first = engine
        .run("items", &RunOptions::default())
        .await
        .expect("run");
    assert_eq!((first.created, first.failed), (5, 0), "{first:?}");

    sqlx::raw_sql(
        "UPDATE items SET name = 'renamed' WHERE id = 1; DELETE FROM items WHERE id = 2;
         INSERT INTO items VALUES (6, 'item 6');",
    )
    .execute(&mut db)
    .await
    .expect("changes");
    let second = engine
        .run("items", &RunOptions::default())
        .await
        .expect("run");
    assert_eq!(
        (
            second.created,
            second.updated,
            second.deleted,
            second.failed
        ),
        (1, 0, 0, 0),
        "{second:?}"
    );
    let titles = list_items(&emulator, "Items");
    assert_eq!(
        titles,
        ["item 1", "item 2", "item 3", "item 4", "item 5", "item 6"]
    );
}

/// A full read recognises rows that read as they did at the previous full read by their
/// fingerprint, without mapping or hashing them, and only while the run would map and route
/// them the same way: a changed row, a changed mapping, or a predicate that reads the clock
/// sends rows through mapping and hashing again, and every change is written.
#[tokio::test]
async fn full_reads_recognise_unchanged_rows_by_their_fingerprint() {
    let Some(pg) = syncbridge_store::testing::PgDatabase::create("fingerprint") else {
        return;
    };
    let mut db = sqlx::PgConnection::connect(&pg.url).await.expect("source");
    sqlx::raw_sql(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, status text NOT NULL, ended_on date);
         INSERT INTO items SELECT g, 'item ' || g, 'Active', NULL FROM generate_series(1, 30) g;",
    )
    .execute(&mut db)
    .await
    .expect("table");
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let config = |title_rule: &str| {
        let sync = |name: &str, targets: &str| {
            format!(
                "  - name: {name}\n    source: {{ database: pg, table: public.items }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {{ strategy: FULL_SCAN }}\n{targets}    mappings:\n      - {{ source: name, target: Title{title_rule} }}\n      - {{ source: status, target: Status }}\n      - {{ source: ended_on, target: EndedOn }}\n"
            )
        };
        let conditional = |closed_when: &str, prefix: &str| {
            format!(
                "    target_strategy: CONDITIONAL\n    targets:\n      - {{ name: closed, connection: emulator, list: {prefix}Closed, when: \"{closed_when}\" }}\n      - {{ name: other, connection: emulator, list: {prefix}Other, default: true }}\n"
            )
        };
        format!(
            "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: pg\n    application: app\n    type: postgres\n    database_name: {}\n    instances: [{{ label: main, host: 127.0.0.1, port: 5432, user: postgres }}]\n{}syncs:\n{}{}{}",
            pg.name,
            info.config_section(
                "emulator",
                &[
                    "Plain",
                    "RoutedClosed",
                    "RoutedOther",
                    "DatedClosed",
                    "DatedOther"
                ]
            ),
            sync(
                "plain",
                "    targets: [{ name: t, connection: emulator, list: Plain }]\n"
            ),
            sync("routed", &conditional("status == 'Closed'", "Routed")),
            sync(
                "dated",
                &conditional(
                    "status == 'Closed' && ended_on > now - duration('8760h')",
                    "Dated"
                )
            ),
        )
    };
    let (store, key) = common::applied(&config("")).await;
    let engine = common::engine(&store, &key);
    let full = RunOptions::default();
    // The rows recognised by fingerprint in a run, from its ROWS_RECOGNISED event (0 without).
    let recognised = |report: syncbridge_engine::run::RunReport| {
        let store = store.clone();
        async move {
            let run_id = report
                .run_id
                .as_deref()
                .expect("run id")
                .parse()
                .expect("id");
            let payload =
                syncbridge_store::runtime::run_event_payload(&store, run_id, "ROWS_RECOGNISED")
                    .await
                    .expect("events");
            let count = payload.map_or(0, |p| p["recognised"].as_i64().expect("a count"));
            (report, count)
        }
    };

    for sync in ["plain", "routed", "dated"] {
        engine.provision(sync).await.expect("provision");
        // The push notes the fingerprints of the rows it creates.
        let (first, none) = recognised(engine.run(sync, &full).await.expect("first")).await;
        assert_eq!((first.created, none), (30, 0), "{sync}");
        let expected = if sync == "dated" { 0 } else { 30 };
        for rerun in ["second", "third"] {
            let (report, by_fingerprint) =
                recognised(engine.run(sync, &full).await.expect(rerun)).await;
            assert_eq!(
                (
                    report.unchanged,
                    report.created + report.updated,
                    by_fingerprint
                ),
                (30, 0, expected),
                "{sync}, {rerun} run: rows are recognised unless a predicate reads the clock"
            );
        }
    }

    // Without the digest saved beside the ledger (it is then read from the ledger, which
    // holds no fingerprints), a run finds every row unchanged by hashing it, and notes its
    // fingerprint again.
    with_pool!(store, pool => sqlx::query(
        "UPDATE sync_ledger_digests SET entries = NULL
          WHERE sync_def_id = (SELECT id FROM sync_definitions WHERE name = 'plain')")
        .execute(pool).await.map(|r| r.rows_affected()))
    .map(|dropped| assert_eq!(dropped, 1, "plain's saved digest"))
    .expect("drop the saved digest");
    let (hashed, none) = recognised(engine.run("plain", &full).await.expect("hashed")).await;
    assert_eq!((hashed.unchanged, none), (30, 0), "{hashed:?}");
    let (learned, by_fingerprint) =
        recognised(engine.run("plain", &full).await.expect("learned")).await;
    assert_eq!((learned.unchanged, by_fingerprint), (30, 30), "{learned:?}");

    sqlx::raw_sql(
        "UPDATE items SET name = 'renamed' WHERE id = 3;
         UPDATE items SET status = 'Closed', ended_on = current_date WHERE id = 4;
         INSERT INTO items VALUES (31, 'item 31', 'Active', NULL);
         DELETE FROM items WHERE id = 5;",
    )
    .execute(&mut db)
    .await
    .expect("edits");
    let (plain, by_fingerprint) =
        recognised(engine.run("plain", &full).await.expect("plain")).await;
    assert_eq!(
        (
            plain.updated,
            plain.created,
            plain.deleted,
            plain.unchanged,
            by_fingerprint
        ),
        (2, 1, 1, 27, 27),
        "{plain:?}"
    );
    let (routed, by_fingerprint) =
        recognised(engine.run("routed", &full).await.expect("routed")).await;
    assert_eq!(
        (
            routed.updated,
            routed.moved,
            routed.created,
            routed.deleted,
            by_fingerprint
        ),
        (1, 1, 1, 1, 27),
        "{routed:?}"
    );
    let (dated, by_fingerprint) =
        recognised(engine.run("dated", &full).await.expect("dated")).await;
    assert_eq!(
        (
            dated.updated,
            dated.moved,
            dated.created,
            dated.deleted,
            by_fingerprint
        ),
        (1, 1, 1, 1, 0),
        "{dated:?}"
    );
    assert_eq!(
        list_items(&emulator, "RoutedClosed"),
        vec!["item 4".to_owned()]
    );
    assert_eq!(
        list_items(&emulator, "DatedClosed"),
        vec!["item 4".to_owned()]
    );

    // The run that wrote kept the fingerprints of the rows it did not write, and noted those
    // of the rows it wrote.
    let (again, by_fingerprint) =
        recognised(engine.run("plain", &full).await.expect("again")).await;
    assert_eq!((again.unchanged, by_fingerprint), (30, 30), "{again:?}");

    // A changed mapping maps every row differently: none is recognised, all are written.
    let text = config(", transform: upper");
    let changed = syncbridge_config::load_str(
        &text,
        Path::new("test.yaml"),
        &syncbridge_config::Known::default(),
    )
    .expect("config");
    apply(
        &store,
        &changed,
        &ApplyOptions {
            prune: false,
            dry_run: false,
            actor: "t".into(),
            master_key: Some(key.clone()),
        },
    )
    .await
    .expect("apply");
    let (upper, by_fingerprint) =
        recognised(engine.run("plain", &full).await.expect("upper")).await;
    assert_eq!((upper.updated, by_fingerprint), (30, 0), "{upper:?}");
    let (after_upper, by_fingerprint) =
        recognised(engine.run("plain", &full).await.expect("after upper")).await;
    assert_eq!(
        (after_upper.unchanged, by_fingerprint),
        (30, 30),
        "{after_upper:?}"
    );
    let titles = list_items(&emulator, "Plain");
    assert_eq!(titles.first().map(String::as_str), Some("ITEM 1"));
    assert!(titles.contains(&"RENAMED".to_owned()), "{titles:?}");
    drop(db);
    drop(pg);
}
