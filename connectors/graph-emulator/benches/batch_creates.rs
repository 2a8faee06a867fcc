//! Item creates per second through `$batch` (20 creates per request) with throttling off, from
//! several concurrent clients, compared with the same HTTP exchanges against a trivial server
//! that answers a fixed batch response without doing any work. The ratio shows how much of the
//! round trip the emulator itself costs; machines are noisy, so both run in the same process
//! one after the other.
//!
//! `cargo bench -p syncbridge-graph-emulator -- [ITEMS] [CLIENTS]` (defaults 20000 and 4).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncbridge_graph_emulator::{Emulator, EmulatorConfig};

const BATCH: usize = 20;

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let items = args.first().copied().unwrap_or(20_000);
    let clients = args.get(1).copied().unwrap_or(4).max(1);
    let http = reqwest::Client::new();

    let emulator = Emulator::start_local(EmulatorConfig::default())
        .await
        .expect("the emulator starts");
    let info = emulator.connection_info();
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
    let token = token["access_token"].as_str().expect("token").to_owned();
    let auth = format!("Bearer {token}");
    let site: Value = http
        .get(format!(
            "{}/sites/{}:{}",
            emulator.base_url(),
            info.site_hostname,
            info.site_path
        ))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("site")
        .json()
        .await
        .expect("site json");
    let site = site["id"].as_str().expect("site id").to_owned();
    let list: Value = http
        .post(format!("{}/sites/{site}/lists", emulator.base_url()))
        .header("Authorization", &auth)
        .json(&json!({"displayName": "Bench", "columns": [
            {"name": "Key", "text": {"maxLength": 64}, "indexed": true, "enforceUniqueValues": true},
            {"name": "Amount", "number": {}},
        ]}))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("list json");
    let list = list["id"].as_str().expect("list id").to_owned();
    let items_url = format!("/sites/{site}/lists/{list}/items");

    // The same request bodies go to both servers.
    let batches: Vec<Value> = (0..items.div_ceil(BATCH))
        .map(|b| {
            let requests: Vec<Value> = (0..BATCH)
                .map(|i| b * BATCH + i)
                .filter(|n| *n < items)
                .map(|n| {
                    json!({"id": (n % BATCH + 1).to_string(), "method": "POST", "url": items_url,
                           "headers": {"Content-Type": "application/json"},
                           "body": {"fields": {"Title": format!("Item {n}"), "Key": format!("k{n}"), "Amount": n}}})
                })
                .collect();
            json!({"requests": requests})
        })
        .collect();

    let baseline_addr = start_baseline().await;
    let baseline = drive(
        &http,
        &format!("http://{baseline_addr}/v1.0/$batch"),
        &auth,
        &batches,
        clients,
    )
    .await;
    let measured = drive(
        &http,
        &format!("{}/$batch", emulator.base_url()),
        &auth,
        &batches,
        clients,
    )
    .await;
    let created = emulator.counts().get("item.create", 201);
    assert_eq!(created as usize, items, "every create succeeded");

    let rate = |d: Duration| items as f64 / d.as_secs_f64();
    println!("items: {items}, clients: {clients}, batch size: {BATCH}");
    println!(
        "baseline (fixed answer, no work): {:>9.0} creates/s ({:.2} s)",
        rate(baseline),
        baseline.as_secs_f64()
    );
    println!(
        "graph emulator:                   {:>9.0} creates/s ({:.2} s)",
        rate(measured),
        measured.as_secs_f64()
    );
    println!(
        "emulator / baseline throughput:   {:>9.2}",
        rate(measured) / rate(baseline)
    );
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Sends every batch, `clients` at a time; returns the elapsed time.
async fn drive(
    http: &reqwest::Client,
    url: &str,
    auth: &str,
    batches: &[Value],
    clients: usize,
) -> Duration {
    let started = Instant::now();
    let chunks: Vec<Vec<Value>> = (0..clients)
        .map(|c| batches.iter().skip(c).step_by(clients).cloned().collect())
        .collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let http = http.clone();
            let url = url.to_owned();
            let auth = auth.to_owned();
            tokio::spawn(async move {
                for batch in chunk {
                    let response = http
                        .post(&url)
                        .header("Authorization", &auth)
                        .json(&batch)
                        .send()
                        .await
                        .expect("batch request");
                    assert_eq!(response.status().as_u16(), 200);
                    let body: Value = response.json().await.expect("batch json");
                    assert!(body["responses"].is_array());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
    started.elapsed()
}

/// A server that parses the batch and answers 201 for each entry with a small item body, the
/// least any Graph server must do.
async fn start_baseline() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .expect("bind the baseline");
    let addr = listener.local_addr().expect("baseline address");
    let app = axum::Router::new().fallback(|body: axum::body::Bytes| async move {
        let batch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let responses: Vec<Value> = batch["requests"]
            .as_array()
            .map(|requests| {
                requests
                    .iter()
                    .map(|r| json!({"id": r["id"], "status": 201, "headers": {"Content-Type": "application/json"},
                                    "body": {"id": "1", "fields": r["body"]["fields"]}}))
                    .collect()
            })
            .unwrap_or_default();
        axum::Json(json!({"responses": responses}))
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}
