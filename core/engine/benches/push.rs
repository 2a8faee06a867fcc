//! The initial push of a PostgreSQL table through the whole engine (read, map, hash, route,
//! ledger intents, `$batch` writes, ledger confirmations, cursor) into the Graph emulator,
//! against a minimal client that posts the same items, precomputed, through `$batch` at the same
//! concurrency to the same emulator, measured in the same run. The target: a ratio of at
//! least 0.8.
//!
//! Two rounds:
//! - **instant service**: the emulator answers as fast as it can, in this process, on the same
//!   cores. Every microsecond the engine spends per row (ledger, hashing) shows, so this round
//!   measures the engine's CPU cost per row against a client that does no bookkeeping. Besides
//!   the wall-clock ratio it reports the CPU time of each side, split into the emulator's thread,
//!   the rest of the process (the engine's own work, or the minimal client's) and the PostgreSQL
//!   server (the engine's read): wall-clock rounds vary by a third on a shared machine, CPU time
//!   much less.
//! - **service latency**: every `$batch` takes `LATENCY_MS` more, as a remote service does.
//!   This round measures whether the engine keeps the service busy (its pipeline) rather than
//!   its CPU cost.
//!
//! `cargo bench -p syncbridge-engine --bench push -- [ROWS] [LATENCY_ROWS]` (default 100,000
//! rows for both rounds; the latency round takes about a minute per side at 100,000 rows).
//! With `PUSH_BENCH_ONLY=engine` (or `minimal`) only that side's instant-service rounds run,
//! for a profiler to record one side alone.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt as _;
use serde_json::{Value, json};
use sqlx::Connection as _;
use syncbridge_api::Registry;
use syncbridge_config::apply::{ApplyOptions, apply};
use syncbridge_engine::run::{Engine, RunOptions};
use syncbridge_graph_emulator::{Emulator, EmulatorConfig};
use syncbridge_store::secrets::MasterKey;
use syncbridge_store::testing::{PgDatabase, TestStore};

/// The allocator of the `syncbridge` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONCURRENCY: usize = 4;
/// Rounds of the instant-service comparison.
const ROUNDS: usize = 3;
/// Added to every `$batch` in the second round.
const LATENCY_MS: u64 = 50;

/// On the runtime the `syncbridge` binary builds, so the figures are the binary's.
fn main() {
    syncbridge_threads::runtime()
        .expect("runtime")
        .block_on(bench());
}

async fn bench() {
    let numbers: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rows = numbers.first().copied().unwrap_or(100_000);
    let slow_rows = numbers.get(1).copied().unwrap_or(rows);
    let Some(pg) = PgDatabase::create("push") else {
        eprintln!("PostgreSQL on 127.0.0.1:5432 is needed");
        return;
    };
    let mut db = sqlx::PgConnection::connect(&pg.url).await.expect("source");
    for (table, count) in [("items", rows), ("slow_items", slow_rows)] {
        sqlx::raw_sql(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, name text NOT NULL, amount numeric(12,2), due date);
             INSERT INTO {table} SELECT g, 'item ' || g, (g % 1000) / 10.0, date '2024-01-01' + (g % 365)
             FROM generate_series(1, {count}) g;"
        ))
        .execute(&mut db)
        .await
        .expect("rows");
    }

    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("emulator");
    let info = emulator.connection_info();
    let sync = |name: &str, table: &str, list: &str| {
        format!(
            "  - name: {name}\n    source: {{ database: pg, table: public.{table} }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {{ strategy: FULL_SCAN }}\n    targets: [{{ name: t, connection: emulator, list: {list} }}]\n    mappings:\n      - {{ source: name, target: Title }}\n      - {{ source: amount, target: Amount }}\n      - {{ source: due, target: Due }}\n"
        )
    };
    let lists: Vec<String> = (1..=ROUNDS)
        .flat_map(|round| [format!("Items{round}"), format!("Baseline{round}")])
        .chain(["SlowItems".to_owned(), "SlowBaseline".to_owned()])
        .collect();
    let lists: Vec<&str> = lists.iter().map(String::as_str).collect();
    let text = format!(
        "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: pg\n    application: app\n    type: postgres\n    database_name: {}\n    instances: [{{ label: main, host: 127.0.0.1, port: 5432, user: postgres }}]\n{}syncs:\n{}{}{}",
        pg.name,
        info.config_section("emulator", &lists),
        // The baseline lists are provisioned by syncs of their own, which never run.
        (1..=ROUNDS)
            .map(|round| {
                sync(&format!("items{round}"), "items", &format!("Items{round}"))
                    + &sync(
                        &format!("baseline{round}"),
                        "items",
                        &format!("Baseline{round}"),
                    )
            })
            .collect::<String>(),
        sync("slow_items", "slow_items", "SlowItems"),
        sync("slow_baseline", "slow_items", "SlowBaseline"),
    );
    let config = syncbridge_config::load_str(
        &text,
        Path::new("push.yaml"),
        &syncbridge_config::Known::default(),
    )
    .expect("config");
    let store = TestStore::sqlite().await;
    let key = Arc::new(
        MasterKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").expect("key"),
    );
    apply(
        &store,
        &config,
        &ApplyOptions {
            prune: false,
            dry_run: false,
            actor: "bench".into(),
            master_key: Some(key.clone()),
        },
    )
    .await
    .expect("apply");
    let mut registry = Registry::new();
    registry.register_source::<syncbridge_postgres::PostgresSource>();
    registry.register_target::<syncbridge_sharepoint::SharePointTarget>();
    let engine = Engine::new((*store).clone(), Arc::new(registry), Some(key));
    let names = (1..=ROUNDS)
        .flat_map(|round| [format!("items{round}"), format!("baseline{round}")])
        .chain(["slow_items".to_owned(), "slow_baseline".to_owned()]);
    for name in names {
        engine.provision(&name).await.expect("provision");
    }

    let http = reqwest::Client::new();
    let token: Value = http
        .post(&info.token_url)
        .form(&[
            ("client_id", info.client_id.as_str()),
            ("client_secret", info.client_secret.as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    let client = MinimalClient {
        http,
        auth: format!("Bearer {}", token["access_token"].as_str().expect("token")),
        batch_url: format!("{}/$batch", info.base_url),
    };
    let list_url = |name: &str| {
        let data = emulator.data();
        let site = &data.sites[0];
        let list = site
            .lists
            .iter()
            .find(|l| l.display_name == name)
            .expect("list");
        format!("/sites/{}/lists/{}/items", site.id, list.id)
    };

    println!("$batch of 20, concurrency {CONCURRENCY}, meta-store SQLite");
    // Rounds alternate between the two, each into lists of its own, and the medians are
    // compared: single rounds of either vary by a third on this machine.
    let (mut baselines, mut pushes) = (Vec::new(), Vec::new());
    let (mut baseline_cpu, mut push_cpu) = (Vec::new(), Vec::new());
    let only = std::env::var("PUSH_BENCH_ONLY").unwrap_or_default();
    assert!(
        ["", "engine", "minimal"].contains(&only.as_str()),
        "PUSH_BENCH_ONLY is `engine` or `minimal` (or unset for both sides), not `{only}`"
    );
    for round in 1..=ROUNDS {
        if only != "engine" {
            let (secs, cpu) = client
                .post_all(&list_url(&format!("Baseline{round}")), rows)
                .await;
            baselines.push(secs);
            baseline_cpu.push(cpu);
        }
        if only != "minimal" {
            let before = CpuTime::now();
            pushes.push(push(&engine, &format!("items{round}"), rows).await);
            push_cpu.push(CpuTime::now().since(before));
        }
    }
    let per_thousand = |secs: f64| secs * 1000.0 / rows as f64 * 1000.0;
    if !only.is_empty() {
        // One side only, for a profiler: there is no ratio to report.
        let (secs, cpu) = if only == "engine" {
            (pushes, push_cpu)
        } else {
            (baselines, baseline_cpu)
        };
        let cpu = CpuTime::median(cpu);
        println!(
            "{only} only, {rows} rows: rounds {secs:.2?} s; CPU per 1,000 rows (median) emulator {:.1} ms + the rest {:.1} ms (SQLite {:.1} ms) + PostgreSQL {:.1} ms",
            per_thousand(cpu.emulator),
            per_thousand(cpu.rest),
            per_thousand(cpu.sqlite),
            per_thousand(cpu.postgres)
        );
        return;
    }
    report(
        &format!("instant service, median of {ROUNDS} rounds"),
        rows,
        median(baselines),
        median(pushes),
    );
    let (baseline_cpu, push_cpu) = (CpuTime::median(baseline_cpu), CpuTime::median(push_cpu));
    println!(
        "  CPU time per 1,000 rows (medians): emulator's thread + the rest of the process + PostgreSQL:"
    );
    for (side, cpu) in [("minimal client", baseline_cpu), ("engine", push_cpu)] {
        println!(
            "    {side:<15} {:>6.1} ms + {:>6.1} ms + {:>6.1} ms (cores idle {:>5.1} ms)",
            per_thousand(cpu.emulator),
            per_thousand(cpu.rest),
            per_thousand(cpu.postgres),
            per_thousand(cpu.idle)
        );
    }
    println!(
        "  CPU, minimal client / engine:       {:>8.2}",
        baseline_cpu.total() / push_cpu.total()
    );

    reqwest::Client::new()
        .post(format!("{}/faults", emulator.admin_url()))
        .json(&json!({"latency_ms": LATENCY_MS, "kinds": ["batch"]}))
        .send()
        .await
        .expect("latency set")
        .error_for_status()
        .expect("latency accepted");
    let (baseline, _) = client.post_all(&list_url("SlowBaseline"), slow_rows).await;
    let pushed = push(&engine, "slow_items", slow_rows).await;
    report(
        &format!("service latency {LATENCY_MS} ms per $batch"),
        slow_rows,
        baseline,
        pushed,
    );
}

/// Posts precomputed items (including the identity column) in batches of 20 with the same
/// concurrency as the engine, and nothing else.
struct MinimalClient {
    http: reqwest::Client,
    auth: String,
    batch_url: String,
}

impl MinimalClient {
    /// The time and CPU time the posting took (the items are built before).
    async fn post_all(&self, items_url: &str, rows: u64) -> (f64, CpuTime) {
        let batches: Vec<Value> = (1..=rows)
            .collect::<Vec<_>>()
            .chunks(20)
            .map(|chunk| {
                json!({"requests": chunk.iter().enumerate().map(|(i, g)| json!({
                    "id": (i + 1).to_string(), "method": "POST", "url": items_url,
                    "headers": {"Content-Type": "application/json"},
                    "body": {"fields": {"Title": format!("item {g}"), "Amount": (g % 1000) as f64 / 10.0,
                                        "Due": "2024-01-01", "SyncBridgeKey": format!("{g:064x}")}}
                })).collect::<Vec<_>>()})
            })
            .collect();
        let (started, cpu) = (Instant::now(), CpuTime::now());
        futures::stream::iter(batches.into_iter().map(|batch| async move {
            let response = self
                .http
                .post(&self.batch_url)
                .header("Authorization", &self.auth)
                .json(&batch)
                .send()
                .await
                .expect("batch");
            assert_eq!(response.status().as_u16(), 200);
            let _: Value = response.json().await.expect("batch json");
        }))
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        (started.elapsed().as_secs_f64(), CpuTime::now().since(cpu))
    }
}

async fn push(engine: &Engine, sync: &str, rows: u64) -> f64 {
    let started = Instant::now();
    let report = engine
        .run(
            sync,
            &RunOptions {
                batch_size: 1000,
                ..RunOptions::default()
            },
        )
        .await
        .expect("push");
    assert_eq!(report.created as u64, rows, "{report:?}");
    started.elapsed().as_secs_f64()
}

/// CPU time this process has used (user + system): on the emulator's thread, and in all
/// other threads (live or ended) together, read from `/proc` (Linux).
#[derive(Debug, Clone, Copy, Default)]
struct CpuTime {
    emulator: f64,
    rest: f64,
    /// The PostgreSQL server's processes (all of them: the bench's database is local), which
    /// serve the engine's read.
    postgres: f64,
    /// Both cores' idle time (the whole machine's, from `/proc/stat`): time no thread was
    /// ready to run, while the other side waited for something.
    idle: f64,
    /// Of `rest`: the threads of SQLite connections (the meta-store's).
    sqlite: f64,
}

impl CpuTime {
    fn now() -> Self {
        let (_, total) = proc_cpu_seconds("/proc/self/stat")
            .expect("the CPU figures read /proc/self/stat, which needs Linux");
        let emulator = cpu_seconds_named("/proc/self/task", "graph-emulator");
        // Processes that end in between lose their time; the server's long-lived ones (and the
        // engine's pooled connections) do not.
        let postgres = cpu_seconds_named("/proc", "postgres");
        Self {
            emulator,
            rest: total - emulator,
            postgres,
            idle: machine_idle_seconds(),
            sqlite: cpu_seconds_named("/proc/self/task", "sqlx-sqlite-wor"),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            emulator: self.emulator - before.emulator,
            rest: self.rest - before.rest,
            postgres: self.postgres - before.postgres,
            idle: self.idle - before.idle,
            sqlite: self.sqlite - before.sqlite,
        }
    }

    fn total(self) -> f64 {
        self.emulator + self.rest + self.postgres
    }

    /// The round whose total is the median.
    fn median(mut rounds: Vec<Self>) -> Self {
        rounds.sort_by(|a, b| a.total().total_cmp(&b.total()));
        rounds[rounds.len() / 2]
    }
}

/// `USER_HZ`, the unit of `/proc` CPU times: 100 on every Linux architecture we build for.
const TICKS_PER_SECOND: f64 = 100.0;

/// The machine's idle seconds (all cores), from the first line of `/proc/stat`.
fn machine_idle_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .next()
        .and_then(|cpu| cpu.split_whitespace().nth(4))
        .and_then(|idle| idle.parse::<f64>().ok())
        .map_or(0.0, |ticks| ticks / TICKS_PER_SECOND)
}

/// The CPU seconds of the entries of a `/proc` directory (processes, or a process's threads)
/// with this name.
fn cpu_seconds_named(dir: &str, name: &str) -> f64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| proc_cpu_seconds(entry.path().join("stat")))
        .filter(|(found, _)| found == name)
        .map(|(_, secs)| secs)
        .sum()
}

/// A process's or thread's name and CPU seconds (`utime + stime`) from its `stat` file.
fn proc_cpu_seconds(path: impl AsRef<Path>) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (head, tail) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    // After the name: state (field 3) … utime (14), stime (15).
    let fields: Vec<&str> = tail.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / TICKS_PER_SECOND))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn report(round: &str, rows: u64, baseline: f64, pushed: f64) {
    let rate = |secs: f64| rows as f64 / secs;
    println!("{round}, {rows} rows:");
    println!(
        "  minimal client (precomputed items): {:>8.0} items/s ({baseline:.1} s)",
        rate(baseline)
    );
    println!(
        "  engine, PostgreSQL → emulator:      {:>8.0} items/s ({pushed:.1} s)",
        rate(pushed)
    );
    println!(
        "  engine / minimal client:            {:>8.2}",
        rate(pushed) / rate(baseline)
    );
}
