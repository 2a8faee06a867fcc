//! Reading `$batch` answers: the target's one-pass read of what it uses (each entry's id,
//! status and headers, and of its body the created item's id or the error) against parsing the
//! same answer into a JSON tree, as a client without a typed reader would. The answer is a real
//! one: 20 creates answered by the Graph emulator, which echoes every created item whole, as
//! Graph does.
//!
//! `cargo bench -p syncbridge-sharepoint --bench answers -- [READS]` (default 20,000).

use std::hint::black_box;
use std::time::Instant;

use syncbridge_api::{CollectionSpec, DataType, FieldSpec, Target as _};
use syncbridge_graph_emulator::EmulatorConfig;
use syncbridge_sharepoint::SharePointTarget;
use syncbridge_sharepoint::batch::{BatchAnswer, SubRequest, SubRequestBody, batch_body};
use syncbridge_sharepoint::service::GraphService;

#[path = "../tests/support/mod.rs"]
mod support;

const ROUNDS: usize = 5;

#[tokio::main]
async fn main() {
    let reads: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let emulator = support::emulator(EmulatorConfig::default()).await;
    let info = emulator.connection_info();
    let config = support::config(&emulator, &info.client_secret);
    let target = SharePointTarget::connect(config.clone())
        .await
        .expect("connect");
    let text = |name: &str, data_type| FieldSpec {
        name: name.into(),
        data_type,
        required: false,
        indexed: false,
        unique: false,
        hidden: false,
    };
    let spec = CollectionSpec {
        name: "Answers".into(),
        description: None,
        fields: vec![
            text("Title", DataType::Text { max_length: None }),
            text("Amount", DataType::Float { bits: 64 }),
            text("Due", DataType::Date),
            FieldSpec {
                unique: true,
                indexed: true,
                hidden: true,
                ..text(
                    "SyncBridgeKey",
                    DataType::Text {
                        max_length: Some(64),
                    },
                )
            },
        ],
        key_field: "SyncBridgeKey".into(),
    };
    let list = target.provision(&spec).await.expect("provision").collection;

    // Sent as the target sends its writes: sub-requests serialized once, joined into a body,
    // posted through the target's own service (its token, its retries).
    let site = emulator.data().sites[0].id.clone();
    let items = format!("/sites/{site}/lists/{}/items", list.id);
    let fields: Vec<serde_json::Map<String, serde_json::Value>> = (1..=20u32)
        .map(|g| {
            serde_json::json!({"Title": format!("item {g}"), "Amount": f64::from(g) / 10.0,
                               "Due": "2024-01-01", "SyncBridgeKey": format!("{g:064x}")})
            .as_object()
            .cloned()
            .expect("an object")
        })
        .collect();
    let requests: Vec<SubRequest> = fields
        .iter()
        .enumerate()
        .map(|(id, fields)| {
            SubRequest::new(
                id,
                &reqwest::Method::POST,
                &items,
                Some(SubRequestBody::Fields { fields }),
            )
            .expect("sub-request")
        })
        .collect();
    let answer = GraphService::new(config)
        .expect("service")
        .send_serialized(
            reqwest::Method::POST,
            "/$batch",
            Some(batch_body(&requests)),
            requests.iter().map(SubRequest::cost).sum(),
            &[],
        )
        .await
        .expect("batch")
        .text;

    // Both readers must find the 20 created items, or the comparison means nothing.
    let typed_ids = read_typed(&answer);
    assert_eq!(typed_ids, 20, "the typed read found {typed_ids} item ids");
    assert_eq!(read_tree(&answer), 20);

    let (mut typed, mut tree) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        typed.push(time(reads, || read_typed(&answer)));
        tree.push(time(reads, || read_tree(&answer)));
    }
    let (typed, tree) = (median(typed), median(tree));
    println!(
        "a $batch answer of 20 created items ({} bytes), medians of {ROUNDS} rounds of {reads} reads:",
        answer.len()
    );
    println!("  typed one-pass read:  {:>8.1} µs per answer", typed * 1e6);
    println!("  JSON tree:            {:>8.1} µs per answer", tree * 1e6);
    println!("  tree / typed:         {:>8.2}", tree / typed);
}

/// What the target reads of an answer; the number of created item ids found.
fn read_typed(answer: &str) -> usize {
    BatchAnswer::read(answer)
        .responses
        .into_iter()
        .filter(|entry| {
            black_box((entry.index(), entry.status()));
            black_box(entry.headers().get("Retry-After"));
            true
        })
        .filter_map(|entry| entry.into_body().item_id())
        .count()
}

fn read_tree(answer: &str) -> usize {
    let tree: serde_json::Value = serde_json::from_str(answer).expect("json");
    tree["responses"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|entry| entry["body"]["id"].as_str().is_some())
                .count()
        })
        .unwrap_or(0)
}

/// Seconds per call.
fn time(reads: usize, read: impl Fn() -> usize) -> f64 {
    let started = Instant::now();
    for _ in 0..reads {
        black_box(read());
    }
    started.elapsed().as_secs_f64() / reads as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
