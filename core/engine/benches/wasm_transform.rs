//! WASM transform throughput on an 8-column row against the same rule built in, measured in the
//! same run: the mapping stage (`Mapper::map_batch`, batches of 1,000 rows, all 8 columns mapped,
//! `upper` on the name) with the built-in `upper` and with `wasm:format.wasm#upper`, and the
//! rule alone (`apply_batch`). The targets: WASM at most 3× the built-in, and at least
//! 1,000,000 rows/s on one core.
//!
//! Builds `transforms/` for `wasm32-wasip2` first (`rustup target add wasm32-wasip2`).
//! `cargo bench -p syncbridge-engine --bench wasm_transform -- [ROWS]` (default 1,000,000).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use syncbridge_api::{Registry, Row, RowView, Value};
use syncbridge_engine::mapping::{Mapper, MappingSpec};

/// The allocator of the `syncbridge` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 1000;

fn main() {
    let rows: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(root.join("transforms/Cargo.toml"))
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "the guests build (rustup target add wasm32-wasip2)"
    );
    let cache = tempfile::tempdir().expect("cache");
    let mut registry = Registry::new();
    syncbridge_engine::rules::register_builtin_rules(&mut registry);
    syncbridge_wasm::register(
        &mut registry,
        syncbridge_wasm::WasmSettings {
            plugin_dir: root.join("transforms/target/wasm32-wasip2/release"),
            cache_dir: cache.path().to_owned(),
            limits: syncbridge_wasm::WasmLimits::default(),
        },
    );
    let registry = Arc::new(registry);

    let columns: Vec<String> = [
        "id", "name", "email", "amount", "created", "active", "country", "ext_id",
    ]
    .iter()
    .map(|c| (*c).to_owned())
    .collect();
    let mapper = |rule: &str| {
        let specs: Vec<MappingSpec> = columns
            .iter()
            .map(|c| MappingSpec {
                source: c.clone(),
                target: c.clone(),
                direction: "PUSH_ONLY".into(),
                transform: (c == "name").then(|| rule.to_owned()),
                is_system_field: false,
            })
            .collect();
        Mapper::new(&registry, &specs).expect("mapper")
    };
    let day = NaiveDate::from_ymd_opt(2026, 1, 1).expect("date");
    let data: Vec<Row> = (0..BATCH)
        .map(|i| {
            Row::new(vec![
                Value::Int(i as i64),
                Value::Text(format!("project number {i}")),
                Value::Text(format!("owner{i}@example.com")),
                Value::Decimal(format!("{i}.25").parse().expect("decimal")),
                Value::Timestamp(day.and_hms_opt(12, 0, 0).expect("time")),
                Value::Bool(i % 2 == 0),
                Value::Text("DE".into()),
                Value::Uuid(uuid::Uuid::from_u128(i as u128)),
            ])
        })
        .collect();
    let batch: Vec<&Row> = data.iter().collect();
    let batches = rows.div_ceil(BATCH);

    let stage = |mapper: &Mapper| {
        // Warm up (the WASM instance, caches), then measure.
        mapper.map_batch(&columns, &batch);
        let started = Instant::now();
        for _ in 0..batches {
            let mapped = mapper.map_batch(&columns, &batch);
            assert!(mapped.iter().all(Result::is_ok));
        }
        (batches * BATCH) as f64 / started.elapsed().as_secs_f64()
    };
    let native_stage = stage(&mapper("upper"));
    let wasm_stage = stage(&mapper("wasm:format.wasm#upper"));

    let views: Vec<RowView<'_>> = data
        .iter()
        .map(|row| RowView {
            columns: &columns,
            values: &row.values,
        })
        .collect();
    let rule_alone = |spec: &str| {
        let rule: Box<dyn syncbridge_api::FieldRule> = if spec.starts_with("wasm:") {
            registry.wasm_rules().expect("wasm")(
                &syncbridge_api::WasmRef::parse(spec).expect("ref"),
                "name",
                &[],
            )
            .expect("wasm rule")
        } else {
            syncbridge_engine::rules::build_rule(&registry, spec).expect("rule")
        };
        let names = || data.iter().map(|r| r.values[1].clone()).collect::<Vec<_>>();
        rule.apply_batch(names(), &views);
        let started = Instant::now();
        for _ in 0..batches {
            let out = rule.apply_batch(names(), &views);
            assert!(out.iter().all(Result::is_ok));
        }
        (batches * BATCH) as f64 / started.elapsed().as_secs_f64()
    };
    let native_rule = rule_alone("upper");
    let wasm_rule = rule_alone("wasm:format.wasm#upper");

    println!(
        "{} rows of 8 columns, batches of {BATCH}, one thread",
        batches * BATCH
    );
    println!("mapping stage, all 8 columns, `upper` on one:");
    println!("  built-in upper:        {native_stage:>12.0} rows/s");
    println!("  wasm:format.wasm#upper {wasm_stage:>12.0} rows/s");
    println!(
        "  built-in / WASM:       {:>12.2}× (target ≤ 3×)",
        native_stage / wasm_stage
    );
    println!("the rule alone (apply_batch on the name column):");
    println!("  built-in upper:        {native_rule:>12.0} rows/s");
    println!("  wasm:format.wasm#upper {wasm_rule:>12.0} rows/s (target ≥ 1,000,000)");
    println!(
        "  built-in / WASM:       {:>12.2}×",
        native_rule / wasm_rule
    );
}
