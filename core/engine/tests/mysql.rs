//! Real MariaDB → the Graph emulator through the push engine: introspect, provision, sync, edit
//! the table, sync again (updates in place, deletes on a full run), rerun writes nothing.

mod common;

use std::sync::Arc;

use sqlx::Connection as _;
use syncbridge_engine::run::RunOptions;
use syncbridge_graph_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use syncbridge_store::testing::{MariaDatabase, TcpRelay};

fn titles(emulator: &RunningEmulator, list: &str) -> Vec<String> {
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

#[tokio::test]
async fn a_mariadb_table_syncs_edits_and_resyncs() {
    let Some(db) = MariaDatabase::create("e2e") else {
        return;
    };
    let mut sql = String::from(
        "CREATE TABLE products (sku VARCHAR(20) PRIMARY KEY, name VARCHAR(80) NOT NULL,
            price DECIMAL(10,2), active TINYINT(1) NOT NULL, added DATE,
            changed TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);",
    );
    for i in 1..=30 {
        sql.push_str(&format!(
            "INSERT INTO products (sku, name, price, active, added) VALUES ('S{i:03}', 'Product {i}', {i}.50, {}, '2024-01-{:02}');",
            i % 2,
            i % 28 + 1
        ));
    }
    db.execute(&sql);

    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let text = format!(
        "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: shop\n    application: app\n    type: mysql\n    database_name: {}\n    instances: [{{ label: main, host: 127.0.0.1, port: 3306, user: root }}]\n{}syncs:\n  - name: products\n    source: {{ database: shop, table: products }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {{ strategy: UPDATED_AT, column: changed }}\n    targets: [{{ name: t, connection: emulator, list: Products }}]\n    mappings:\n      - {{ source: name, target: Title }}\n      - {{ source: price, target: Price }}\n      - {{ source: active, target: Active }}\n      - {{ source: added, target: Added }}\n",
        db.name,
        info.config_section("emulator", &["Products"]),
    );
    let (store, key) = common::applied(&text).await;
    let engine = common::engine(&store, &key);

    engine.introspect("shop").await.expect("introspect");
    engine.provision("products").await.expect("provision");
    let first = engine
        .run("products", &RunOptions::default())
        .await
        .expect("first run");
    assert_eq!((first.created, first.failed), (30, 0), "{first:?}");
    assert_eq!(titles(&emulator, "Products").len(), 30);
    let list = emulator
        .data()
        .sites
        .iter()
        .flat_map(|s| s.lists.clone())
        .find(|l| l.display_name == "Products")
        .expect("list");
    let item = list
        .items
        .values()
        .find(|i| i.fields.get("Title").and_then(|v| v.as_str()) == Some("Product 3"))
        .expect("item");
    assert_eq!(item.fields["Price"], 3.5);
    assert_eq!(item.fields["Active"], true, "TINYINT(1) arrives as yes/no");

    // Edit two rows (the TIMESTAMP moves on), delete one.
    db.execute(
        "UPDATE products SET name = CONCAT(name, ' (new)'), changed = NOW() + INTERVAL 1 MINUTE WHERE sku IN ('S001', 'S002');
         DELETE FROM products WHERE sku = 'S030';",
    );
    let second = engine
        .run("products", &RunOptions::default())
        .await
        .expect("incremental run");
    assert_eq!((second.updated, second.created), (2, 0), "{second:?}");
    let full = engine
        .run(
            "products",
            &RunOptions {
                full: true,
                ..RunOptions::default()
            },
        )
        .await
        .expect("full run");
    assert_eq!(
        (full.deleted, full.created, full.updated),
        (1, 0, 0),
        "{full:?}"
    );
    let titles = titles(&emulator, "Products");
    assert_eq!(titles.len(), 29);
    assert!(titles.contains(&"Product 1 (new)".to_owned()));
    let again = engine
        .run("products", &RunOptions::default())
        .await
        .expect("rerun");
    assert_eq!((again.created, again.updated, again.deleted), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_fails_over_to_the_next_instance_when_one_goes_away() {
    let Some(db) = MariaDatabase::create("failover") else {
        return;
    };
    let mut sql = String::from(
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, changed DATETIME NOT NULL);",
    );
    for i in 1..=200 {
        sql.push_str(&format!(
            "INSERT INTO items VALUES ({i}, 'item {i}', '2024-01-01 00:00:00' + INTERVAL {i} SECOND);"
        ));
    }
    db.execute(&sql);
    let relay = TcpRelay::start("127.0.0.1:3306").await;
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let text = format!(
        "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: shop\n    application: app\n    type: mysql\n    database_name: {}\n    instances:\n      - {{ label: first, host: 127.0.0.1, port: {}, user: root, priority: 1 }}\n      - {{ label: second, host: 127.0.0.1, port: 3306, user: root, priority: 2 }}\n{}syncs:\n  - name: items\n    source: {{ database: shop, table: items }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {{ strategy: UPDATED_AT, column: changed }}\n    targets: [{{ name: t, connection: emulator, list: Items }}]\n    mappings: [{{ source: name, target: Title }}]\n",
        db.name,
        relay.port,
        info.config_section("emulator", &["Items"]),
    );
    let (store, key) = common::applied(&text).await;
    let engine = common::engine(&store, &key);
    engine.provision("items").await.expect("provision");

    // The first instance goes away once 50 rows have been processed.
    let cut = relay.cutter();
    let progress: syncbridge_engine::run::ProgressFn = Arc::new(move |progress| {
        if progress.counters.processed >= 50 {
            cut();
        }
    });
    let report = engine
        .run(
            "items",
            &RunOptions {
                batch_size: 10,
                progress: Some(progress),
                ..RunOptions::default()
            },
        )
        .await
        .expect("the run survives the lost instance");
    assert!(relay.is_cut(), "the first instance was cut");
    assert_eq!((report.created, report.failed), (200, 0), "{report:?}");
    let titles = titles(&emulator, "Items");
    let mut unique = titles.clone();
    unique.dedup();
    assert_eq!(
        (titles.len(), unique.len()),
        (200, 200),
        "every row exactly once"
    );
    let events = common::run_events(&store, &report).await;
    assert!(
        common::has_event(&events, Some("WARN"), "FAILOVER", "`second`"),
        "{events:?}"
    );
}

/// `UPDATED_AT` under concurrent writers: while rows are inserted and renamed — one of them in a
/// transaction that commits late with an older timestamp — runs keep going; after the writers
/// stop, one more run leaves every row as exactly one item with its latest name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updated_at_under_concurrent_writers_loses_nothing() {
    let Some(db) = MariaDatabase::create("writers") else {
        return;
    };
    let mut sql = String::from(
        "CREATE TABLE tasks (id INT PRIMARY KEY, name VARCHAR(80) NOT NULL,
            changed TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6));",
    );
    for i in 1..=40 {
        sql.push_str(&format!(
            "INSERT INTO tasks (id, name) VALUES ({i}, 'task {i} v0');"
        ));
    }
    db.execute(&sql);
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let text = format!(
        "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: work\n    application: app\n    type: mysql\n    database_name: {}\n    instances: [{{ label: main, host: 127.0.0.1, port: 3306, user: root }}]\n{}syncs:\n  - name: tasks\n    source: {{ database: work, table: tasks }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {{ strategy: UPDATED_AT, column: changed, look_back_seconds: 60 }}\n    targets: [{{ name: t, connection: emulator, list: Tasks }}]\n    mappings:\n      - {{ source: name, target: Title }}\n",
        db.name,
        info.config_section("emulator", &["Tasks"]),
    );
    let (store, key) = common::applied(&text).await;
    let engine = common::engine(&store, &key);
    engine.provision("tasks").await.expect("provision");

    let database = db.name.clone();
    let writer = std::thread::spawn(move || {
        let db = MariaDatabase { name: database };
        for round in 1..=30 {
            let id = 40 + round;
            let renamed = (round * 7) % 40 + 1;
            db.execute(&format!(
                "INSERT INTO tasks (id, name) VALUES ({id}, 'task {id} v0');
                 UPDATE tasks SET name = 'task {renamed} v{round}' WHERE id = {renamed};"
            ));
            if round == 10 {
                // A writer whose change carries a timestamp older than what runs have seen
                // (as a transaction that took its time to commit).
                db.execute(
                    "UPDATE tasks SET name = 'task 3 late', changed = NOW(6) - INTERVAL 20 SECOND WHERE id = 3;",
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::mem::forget(db); // the test's own handle drops the database
    });
    let options = RunOptions {
        batch_size: 7,
        ..RunOptions::default()
    };
    let mut runs = 0;
    while !writer.is_finished() {
        engine
            .run("tasks", &options)
            .await
            .expect("run under writes");
        runs += 1;
    }
    writer.join().expect("writer");
    let last = engine.run("tasks", &options).await.expect("last run");
    assert_eq!(last.failed, 0, "{last:?}");
    assert!(runs >= 2, "the writers overlapped {runs} runs");

    let mut expected = db.query("SELECT name FROM tasks ORDER BY name");
    expected.sort();
    let items = titles(&emulator, "Tasks");
    assert_eq!(items.len(), 70, "one item per row, no duplicates");
    assert_eq!(items, expected, "every row with its latest name");
    assert!(items.iter().any(|t| t == "task 3 late"));
}

/// The `LSN` cursor on MariaDB reads the binary log: the first run snapshots the table; later
/// runs — each with a fresh engine, as after a restart — see exactly the inserts, updates and
/// deletes logged since, once, including an update that changed a key.
#[tokio::test]
async fn binlog_captures_inserts_updates_and_deletes_once_across_restarts() {
    let Some(db) = MariaDatabase::create("binlog") else {
        return;
    };
    let settings = db.query("SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format");
    if settings.first().map(String::as_str) != Some("1\tROW") {
        assert!(
            !syncbridge_store::testing::services_required(),
            "CI starts MariaDB with log_bin and binlog_format=ROW; it has {settings:?}"
        );
        println!("SKIPPED: MariaDB has no row-based binary log ({settings:?})");
        return;
    }
    db.execute(
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL);
         INSERT INTO items VALUES (1, 'item 1'), (2, 'item 2'), (3, 'item 3'), (4, 'item 4'), (5, 'item 5');",
    );
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let text = format!(
        "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: shop\n    application: app\n    type: mysql\n    database_name: {}\n    instances: [{{ label: main, host: 127.0.0.1, port: 3306, user: root }}]\n{}syncs:\n  - name: items\n    source: {{ database: shop, table: items }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {{ strategy: LSN }}\n    targets: [{{ name: t, connection: emulator, list: Items }}]\n    mappings: [{{ source: name, target: Title }}]\n",
        db.name,
        info.config_section("emulator", &["Items"]),
    );
    let (store, key) = common::applied(&text).await;
    let engine = || common::engine(&store, &key);
    engine().provision("items").await.expect("provision");
    let first = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("snapshot run");
    assert_eq!((first.created, first.failed), (5, 0), "{first:?}");

    // Changes while SyncBridge is not running, across a switch to a new log file: inserts, an
    // update, a delete, a key change, a row inserted and deleted again, and a change to another
    // table.
    db.execute(
        "INSERT INTO items VALUES (6, 'item 6'), (7, 'item 7');
         FLUSH BINARY LOGS;
         UPDATE items SET name = 'renamed' WHERE id = 1;
         DELETE FROM items WHERE id = 2;
         UPDATE items SET id = 30 WHERE id = 3;
         INSERT INTO items VALUES (8, 'brief'); DELETE FROM items WHERE id = 8;
         CREATE TABLE other (id INT PRIMARY KEY); INSERT INTO other VALUES (1);",
    );
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
        (3, 1, 2, 0),
        "{second:?}"
    );
    assert_eq!(
        titles(&emulator, "Items"),
        ["item 3", "item 4", "item 5", "item 6", "item 7", "renamed"]
    );

    // Nothing since: nothing read, nothing written.
    let third = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("quiet run");
    assert_eq!(
        (third.processed, third.created, third.updated, third.deleted),
        (0, 0, 0, 0),
        "{third:?}"
    );

    // The binary log file the position names is gone (purged, as `expire_logs_days` does) while
    // rows change: the server refuses to read from it, so the run reads the table again in
    // full, deletes what vanished, and carries on from the log's end. (The position is pointed
    // at a file that never existed: purging the shared server's logs would disturb other tests.)
    let mut meta = sqlx::SqliteConnection::connect(store.url())
        .await
        .expect("meta-store");
    let moved = sqlx::query(
        "UPDATE sync_cursors SET cursor_value = replace(cursor_value, '\"file\":\"', '\"file\":\"purged-')
          WHERE cursor_scope = 'SOURCE'",
    )
    .execute(&mut meta)
    .await
    .expect("cursor");
    assert_eq!(moved.rows_affected(), 1);
    db.execute(
        "DELETE FROM items WHERE id = 4; UPDATE items SET name = 'again' WHERE id = 5;
         INSERT INTO items VALUES (9, 'item 9');",
    );
    let reset = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("the run reads the table again");
    assert_eq!(
        (reset.created, reset.updated, reset.deleted, reset.failed),
        (1, 1, 1, 0),
        "{reset:?}"
    );
    assert_eq!(
        titles(&emulator, "Items"),
        ["again", "item 3", "item 6", "item 7", "item 9", "renamed"]
    );
    let events = common::run_events(&store, &reset).await;
    assert!(
        common::has_event(&events, Some("WARN"), "SOURCE_RESET", "no longer on"),
        "{events:?}"
    );
    db.execute("UPDATE items SET name = 'once more' WHERE id = 6;");
    let after = engine()
        .run("items", &RunOptions::default())
        .await
        .expect("stream run");
    assert_eq!((after.processed, after.updated), (1, 1), "{after:?}");
}

/// The handover from snapshot to stream loses nothing: rows inserted and changed while the
/// snapshot is being read — behind its keyset position, where it will not look again — arrive
/// through the binary log in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_snapshot_hands_over_to_the_stream_without_losing_writes() {
    let Some(db) = MariaDatabase::create("handover") else {
        return;
    };
    let settings = db.query("SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format");
    if settings.first().map(String::as_str) != Some("1\tROW") {
        assert!(
            !syncbridge_store::testing::services_required(),
            "CI starts MariaDB with log_bin and binlog_format=ROW; it has {settings:?}"
        );
        println!("SKIPPED: MariaDB has no row-based binary log ({settings:?})");
        return;
    }
    let mut sql =
        String::from("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL);");
    for i in (10..=200).step_by(10) {
        sql.push_str(&format!("INSERT INTO items VALUES ({i}, 'item {i}');"));
    }
    db.execute(&sql);
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let text = format!(
        "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: shop\n    application: app\n    type: mysql\n    database_name: {}\n    instances: [{{ label: main, host: 127.0.0.1, port: 3306, user: root }}]\n{}syncs:\n  - name: items\n    source: {{ database: shop, table: items }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {{ strategy: LSN }}\n    targets: [{{ name: t, connection: emulator, list: Items }}]\n    mappings: [{{ source: name, target: Title }}]\n",
        db.name,
        info.config_section("emulator", &["Items"]),
    );
    let (store, key) = common::applied(&text).await;
    let engine = common::engine(&store, &key);
    engine.provision("items").await.expect("provision");

    // Once the snapshot has passed id 50: a row behind it, a rename behind it, a delete ahead.
    let database = db.name.clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = done.clone();
    let progress: syncbridge_engine::run::ProgressFn = Arc::new(move |progress| {
        if progress.counters.processed >= 6 && !once.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let db = MariaDatabase {
                name: database.clone(),
            };
            db.execute(
                "INSERT INTO items VALUES (15, 'late row');
                 UPDATE items SET name = 'renamed late' WHERE id = 20;
                 DELETE FROM items WHERE id = 190;",
            );
            std::mem::forget(db);
        }
    });
    let report = engine
        .run(
            "items",
            &RunOptions {
                batch_size: 3,
                progress: Some(progress),
                ..RunOptions::default()
            },
        )
        .await
        .expect("snapshot and stream");
    assert!(
        done.load(std::sync::atomic::Ordering::SeqCst),
        "the writes happened mid-snapshot"
    );
    assert_eq!(report.failed, 0, "{report:?}");
    let mut expected = db.query("SELECT name FROM items");
    expected.sort();
    assert_eq!(titles(&emulator, "Items"), expected);
    assert!(expected.contains(&"late row".to_owned()));
    assert!(expected.contains(&"renamed late".to_owned()));
    assert!(!expected.contains(&"item 190".to_owned()));
}

/// A zero date (`0000-00-00`) is read as NULL, and the run records that as a WARN event naming
/// the table and the count.
#[tokio::test]
async fn zero_dates_are_read_as_null_with_an_event() {
    let Some(db) = MariaDatabase::create("zerodates") else {
        return;
    };
    db.execute(
        "SET SESSION sql_mode = '';
         CREATE TABLE events (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL, happened DATE);
         INSERT INTO events VALUES (1, 'real', '2024-05-01'), (2, 'zero', '0000-00-00'), (3, 'none', NULL);",
    );
    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let text = format!(
        "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: cal\n    application: app\n    type: mysql\n    database_name: {}\n    instances: [{{ label: main, host: 127.0.0.1, port: 3306, user: root }}]\n{}syncs:\n  - name: events\n    source: {{ database: cal, table: events }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {{ strategy: FULL_SCAN }}\n    targets: [{{ name: t, connection: emulator, list: Events }}]\n    mappings:\n      - {{ source: name, target: Title }}\n      - {{ source: happened, target: Happened }}\n",
        db.name,
        info.config_section("emulator", &["Events"]),
    );
    let (store, key) = common::applied(&text).await;
    let engine = common::engine(&store, &key);
    engine.provision("events").await.expect("provision");
    let report = engine
        .run("events", &RunOptions::default())
        .await
        .expect("run");
    assert_eq!((report.created, report.failed), (3, 0), "{report:?}");
    let events = common::run_events(&store, &report).await;
    assert!(
        common::has_event(
            &events,
            Some("WARN"),
            "SOURCE_NOTE",
            "1 zero dates (0000-00-00) in `events` read as NULL"
        ),
        "{events:?}"
    );
}
