//! A no-change rerun of a large PostgreSQL table, measured in the same run against
//! `COPY (SELECT …) TO STDOUT` of the same rows (the least any full read can cost):
//! - `FULL_SCAN`: every row is read and recognised unchanged by its fingerprint in the ledger's
//!   digest saved by the previous run; nothing is written. The target: at most 2× the
//!   `COPY`. Also measured: the same rerun when no digest is saved (it reads its digest from
//!   the ledger, and maps and hashes every row).
//! - `UPDATED_AT`: only rows changed since the cursor are read; with no change the run reads
//!   nothing. The target: under one second.
//! - Graph writes per row, counted by the emulator (and asserted): none for the unchanged rows
//!   of all the reruns above, and exactly one per changed row when one row in a thousand then
//!   changes.
//!
//! Setup pushes the table once into the emulator (the rerun needs a full ledger); it is not
//! measured. `cargo bench -p syncbridge-engine --bench rerun -- [ROWS]` (default 1,000,000).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures::TryStreamExt as _;
use sqlx::Connection as _;
use syncbridge_api::Registry;
use syncbridge_config::apply::{ApplyOptions, apply};
use syncbridge_engine::run::{Engine, RunOptions, RunReport};
use syncbridge_graph_emulator::{Emulator, EmulatorConfig};
use syncbridge_store::secrets::MasterKey;
use syncbridge_store::testing::{PgDatabase, TestStore};
use syncbridge_store::with_pool;

/// The allocator of the `syncbridge` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// On the runtime the `syncbridge` binary builds, so the figures are the binary's.
fn main() {
    syncbridge_threads::runtime()
        .expect("runtime")
        .block_on(bench());
}

async fn bench() {
    let rows: i64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let Some(pg) = PgDatabase::create("rerun") else {
        eprintln!("PostgreSQL on 127.0.0.1:5432 is needed");
        return;
    };
    let mut db = sqlx::PgConnection::connect(&pg.url).await.expect("source");
    sqlx::raw_sql(&format!(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, amount numeric(12,2), due date,
                             updated_at timestamptz NOT NULL);
         INSERT INTO items (id, name, amount, due, updated_at)
         SELECT g, 'item ' || g, (g % 1000) / 10.0, date '2024-01-01' + (g % 365),
                timestamptz '2024-01-01T00:00:00Z' + g * interval '1 minute'
         FROM generate_series(1, {rows}) g;
         -- What an UPDATED_AT cursor reads by: the timestamp, then the key.
         CREATE INDEX items_updated_at ON items (updated_at, id);
         ANALYZE items;"
    ))
    .execute(&mut db)
    .await
    .expect("rows");

    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let config_text = |cursor: &str| {
        format!(
            "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: pg\n    application: app\n    type: postgres\n    database_name: {}\n    instances: [{{ label: main, host: 127.0.0.1, port: 5432, user: postgres }}]\n{}syncs:\n  - name: items\n    source: {{ database: pg, table: public.items }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {cursor}\n    targets: [{{ name: t, connection: emulator, list: Items }}]\n    mappings:\n      - {{ source: name, target: Title }}\n      - {{ source: amount, target: Amount }}\n      - {{ source: due, target: Due }}\n",
            pg.name,
            info.config_section("emulator", &["Items"]),
        )
    };
    let store = TestStore::sqlite().await;
    let key = Arc::new(
        MasterKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").expect("key"),
    );
    let apply_cursor = |cursor: &'static str| {
        let text = config_text(cursor);
        let store = store.clone();
        let key = key.clone();
        async move {
            let config = syncbridge_config::load_str(
                &text,
                Path::new("rerun.yaml"),
                &syncbridge_config::Known::default(),
            )
            .expect("config");
            apply(
                &store,
                &config,
                &ApplyOptions {
                    prune: false,
                    dry_run: false,
                    actor: "bench".into(),
                    master_key: Some(key),
                },
            )
            .await
            .expect("apply");
        }
    };
    apply_cursor("{ strategy: FULL_SCAN }").await;
    let mut registry = Registry::new();
    registry.register_source::<syncbridge_postgres::PostgresSource>();
    registry.register_target::<syncbridge_sharepoint::SharePointTarget>();
    let engine = Engine::new((*store).clone(), Arc::new(registry), Some(key.clone()));
    engine.provision("items").await.expect("provision");

    let started = Instant::now();
    let initial = run(&engine).await;
    assert_eq!(initial.created, rows, "{initial:?}");
    let pushed = GraphWrites::of(&emulator);
    assert_eq!(pushed.items, rows as u64, "one create per row");
    println!(
        "setup: initial push of {rows} rows in {:.1} s ({} item writes in {} $batch requests)",
        started.elapsed().as_secs_f64(),
        pushed.items,
        pushed.batches
    );

    // The push noted each row's fingerprint: every rerun recognises the rows by it alone.
    // Each measured three times, the median kept: single runs of either vary by a third here.
    let mut copies = Vec::new();
    // Rows the reruns below read and found unchanged, for the writes per unchanged row.
    let mut unchanged_rows = 0;
    let mut fulls = Vec::new();
    for _ in 0..3 {
        let (copied, copy_secs) = copy_out(&pg.url).await;
        assert_eq!(copied, rows as usize);
        copies.push(copy_secs);
        let started = Instant::now();
        let full = run(&engine).await;
        let full_secs = started.elapsed().as_secs_f64();
        fulls.push(full_secs);
        assert_eq!((full.processed, full.unchanged), (rows, rows), "{full:?}");
        unchanged_rows += full.unchanged;
        let recognised = recognised(&store, &full).await;
        println!(
            "  COPY {copy_secs:.2} s, FULL_SCAN rerun {full_secs:.2} s ({recognised} rows recognised by fingerprint)"
        );
        assert_eq!(recognised, rows, "every unchanged row is recognised");
    }
    let (copy_secs, full_secs) = (median(copies), median(fulls));

    // The same rerun without the digest saved beside the ledger (as after a ledger written by
    // hand): the run reads its digest from the ledger, which holds no fingerprints, so it maps
    // and hashes every row.
    with_pool!(store, pool => sqlx::query("UPDATE sync_ledger_digests SET entries = NULL")
        .execute(pool).await.map(|_| ()))
    .expect("drop the saved digest");
    let started = Instant::now();
    let from_ledger = run(&engine).await;
    let from_ledger_secs = started.elapsed().as_secs_f64();
    assert_eq!(from_ledger.unchanged, rows, "{from_ledger:?}");
    unchanged_rows += from_ledger.unchanged;

    apply_cursor("{ strategy: UPDATED_AT, column: updated_at }").await;
    // The first run with the new cursor reads everything once and commits a position.
    let started = Instant::now();
    let first = run(&engine).await;
    let first_secs = started.elapsed().as_secs_f64();
    assert_eq!(first.unchanged, rows, "{first:?}");
    unchanged_rows += first.unchanged;
    let started = Instant::now();
    let incremental = run(&engine).await;
    let incremental_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        incremental.created + incremental.updated + incremental.deleted,
        0,
        "{incremental:?}"
    );
    unchanged_rows += incremental.unchanged;
    // Six reruns since the push, every row they read unchanged: what they sent to Graph.
    let unchanged_writes = GraphWrites::of(&emulator).since(pushed);

    // One row in a thousand changes; the UPDATED_AT rerun reads those and writes each once.
    let changed = sqlx::query(
        "UPDATE items SET name = name || ' (edited)', updated_at = now() WHERE id % 1000 = 1",
    )
    .execute(&mut db)
    .await
    .expect("changes")
    .rows_affected();
    let before = GraphWrites::of(&emulator);
    let edited = run(&engine).await;
    assert_eq!(edited.updated, changed as i64, "{edited:?}");
    let changed_writes = GraphWrites::of(&emulator).since(before);
    // Counts, not timings: a wrong one is a bug, whatever the machine.
    assert_eq!(unchanged_writes.items, 0, "no write for an unchanged row");
    assert_eq!(changed_writes.items, changed, "one write per changed row");

    println!("no-change rerun of {rows} rows:");
    println!("  COPY … TO STDOUT:          {copy_secs:>7.2} s  (median of 3)");
    println!(
        "  FULL_SCAN rerun:           {full_secs:>7.2} s  (median of 3; {:.2}× COPY; target ≤ 2×)",
        full_secs / copy_secs
    );
    println!(
        "  FULL_SCAN, no saved digest:{from_ledger_secs:>7.2} s  ({:.2}× COPY)",
        from_ledger_secs / copy_secs
    );
    println!(
        "  UPDATED_AT, first run:     {first_secs:>7.2} s  (no position yet: reads every row)"
    );
    println!(
        "  UPDATED_AT rerun:          {incremental_secs:>7.3} s  ({} rows read; target < 1 s)",
        incremental.processed
    );
    println!("Graph writes (creates, updates, deletes, inside `$batch` too):");
    println!(
        "  per unchanged row:         {:>7.3}    ({} for {unchanged_rows} unchanged rows read by six reruns; target 0)",
        unchanged_writes.items as f64 / unchanged_rows as f64,
        unchanged_writes.items
    );
    println!(
        "  per changed row:           {:>7.3}    ({} for {changed} rows changed, in {} $batch requests; target 1)",
        changed_writes.items as f64 / changed as f64,
        changed_writes.items,
        changed_writes.batches
    );
}

/// What the emulator has been sent so far: item writes (each request inside a `$batch` counts)
/// and `$batch` requests.
#[derive(Debug, Clone, Copy)]
struct GraphWrites {
    items: u64,
    batches: u64,
}

impl GraphWrites {
    fn of(emulator: &syncbridge_graph_emulator::RunningEmulator) -> Self {
        let counts = emulator.counts();
        Self {
            items: ["item.create", "item.update", "item.delete"]
                .iter()
                .map(|kind| counts.kind(kind))
                .sum(),
            batches: counts.kind("batch"),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            items: self.items - before.items,
            batches: self.batches - before.batches,
        }
    }
}

async fn run(engine: &Engine) -> RunReport {
    engine
        .run(
            "items",
            &RunOptions {
                batch_size: 1000,
                ..RunOptions::default()
            },
        )
        .await
        .expect("run")
}

/// The rows a run recognised by their fingerprints, from its `ROWS_RECOGNISED` event.
async fn recognised(store: &syncbridge_store::Store, report: &RunReport) -> i64 {
    let run_id = report
        .run_id
        .as_deref()
        .expect("run id")
        .parse()
        .expect("id");
    syncbridge_store::runtime::run_event_payload(store, run_id, "ROWS_RECOGNISED")
        .await
        .expect("events")
        .map_or(0, |payload| {
            payload["recognised"].as_i64().expect("a count")
        })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn copy_out(url: &str) -> (usize, f64) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let started = Instant::now();
    let chunks = conn
        .copy_out_raw("COPY (SELECT id, name, amount, due FROM items ORDER BY id) TO STDOUT")
        .await
        .expect("copy");
    let lines: usize = chunks
        .map_ok(|chunk| chunk.iter().filter(|b| **b == b'\n').count())
        .try_fold(0, |total, n| async move { Ok(total + n) })
        .await
        .expect("copy data");
    (lines, started.elapsed().as_secs_f64())
}
