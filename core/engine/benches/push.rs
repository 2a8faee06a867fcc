//! The initial push of a PostgreSQL table through the whole engine (read, map, hash, route,
//! ledger intents, `$batch` writes, ledger confirmations, cursor) into the Graph emulator,
//! against a minimal client that posts the same items, precomputed, through `$batch` at the same
//! concurrency to the same emulator, measured in the same run. The target: a ratio of at
//! least 0.8.
//!
//! `cargo bench -p syncbridge-engine --bench push -- [ROWS]` (default 100,000).

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

const CONCURRENCY: usize = 4;

#[tokio::main]
async fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let Some(pg) = PgDatabase::create("push") else {
        eprintln!("PostgreSQL on 127.0.0.1:5432 is needed");
        return;
    };
    let mut db = sqlx::PgConnection::connect(&pg.url).await.expect("source");
    sqlx::raw_sql(&format!(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, amount numeric(12,2), due date);
         INSERT INTO items SELECT g, 'item ' || g, (g % 1000) / 10.0, date '2024-01-01' + (g % 365)
         FROM generate_series(1, {rows}) g;"
    ))
    .execute(&mut db)
    .await
    .expect("rows");

    let emulator = Emulator::start(
        EmulatorConfig::default(),
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("emulator");
    let info = emulator.connection_info();
    let text = format!(
        "version: 1\napplications: [{{ name: app }}]\ndatabases:\n  - name: pg\n    application: app\n    type: postgres\n    database_name: {}\n    instances: [{{ label: main, host: 127.0.0.1, port: 5432, user: postgres }}]\nsharepoint:\n  - name: emulator\n    tenant_id: {}\n    client_id: {}\n    client_secret: {}\n    authority_host: {}\n    graph_base_url: {}\n    sites:\n      - hostname: {}\n        path: {}\n        lists: [{{ name: Items }}, {{ name: Baseline }}]\nsyncs:\n  - name: items\n    source: {{ database: pg, table: public.items }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {{ strategy: FULL_SCAN }}\n    targets: [{{ name: t, connection: emulator, list: Items }}]\n    mappings:\n      - {{ source: name, target: Title }}\n      - {{ source: amount, target: Amount }}\n      - {{ source: due, target: Due }}\n  - name: baseline\n    source: {{ database: pg, table: public.items }}\n    key: {{ strategy: PRIMARY_KEY }}\n    cursor: {{ strategy: FULL_SCAN }}\n    targets: [{{ name: t, connection: emulator, list: Baseline }}]\n    mappings:\n      - {{ source: name, target: Title }}\n      - {{ source: amount, target: Amount }}\n      - {{ source: due, target: Due }}\n",
        pg.name,
        info.tenant_id,
        info.client_id,
        info.client_secret,
        info.authority_host,
        info.base_url,
        info.site_hostname,
        info.site_path,
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
    engine.provision("items").await.expect("provision");
    engine
        .provision("baseline")
        .await
        .expect("provision baseline");

    // The baseline: the same items, precomputed (including the identity column), posted in
    // batches of 20 with the same concurrency.
    let site = info.site_hostname.clone();
    let data = emulator.data();
    let site_id = data.sites[0].id.clone();
    let list_id = data.sites[0]
        .lists
        .iter()
        .find(|l| l.display_name == "Baseline")
        .expect("baseline list")
        .id
        .clone();
    let _ = site;
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
    let auth = format!("Bearer {}", token["access_token"].as_str().expect("token"));
    let url = format!("/sites/{site_id}/lists/{list_id}/items");
    let batches: Vec<Value> = (1..=rows)
        .collect::<Vec<_>>()
        .chunks(20)
        .map(|chunk| {
            json!({"requests": chunk.iter().enumerate().map(|(i, g)| json!({
                "id": (i + 1).to_string(), "method": "POST", "url": url,
                "headers": {"Content-Type": "application/json"},
                "body": {"fields": {"Title": format!("item {g}"), "Amount": (g % 1000) as f64 / 10.0,
                                    "Due": "2024-01-01", "SyncBridgeKey": format!("{g:064x}")}}
            })).collect::<Vec<_>>()})
        })
        .collect();
    let batch_url = format!("{}/$batch", info.base_url);
    let started = Instant::now();
    futures::stream::iter(batches.into_iter().map(|batch| {
        let http = http.clone();
        let auth = auth.clone();
        let batch_url = batch_url.clone();
        async move {
            let response = http
                .post(&batch_url)
                .header("Authorization", auth)
                .json(&batch)
                .send()
                .await
                .expect("batch");
            assert_eq!(response.status().as_u16(), 200);
            let _: Value = response.json().await.expect("batch json");
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    let baseline = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let report = engine
        .run(
            "items",
            &RunOptions {
                batch_size: 1000,
                ..RunOptions::default()
            },
        )
        .await
        .expect("push");
    let pushed = started.elapsed().as_secs_f64();
    assert_eq!(report.created as u64, rows, "{report:?}");

    let rate = |secs: f64| rows as f64 / secs;
    println!("rows: {rows}, $batch of 20, concurrency {CONCURRENCY}, meta-store SQLite");
    println!(
        "minimal client (precomputed items): {:>8.0} items/s ({baseline:.1} s)",
        rate(baseline)
    );
    println!(
        "engine, PostgreSQL → emulator:      {:>8.0} items/s ({pushed:.1} s)",
        rate(pushed)
    );
    println!(
        "engine / minimal client:            {:>8.2}",
        rate(pushed) / rate(baseline)
    );
}
