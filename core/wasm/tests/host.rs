//! The WASM host against real components built from `transforms/` for `wasm32-wasip2`: the
//! example rules and predicate work, and hostile guests cost one row each, never the host.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use syncbridge_api::{FieldRule as _, RouteDecision, RowView, ShardRouter as _, Value};
use syncbridge_wasm::{WasmError, WasmHost, WasmLimits, WasmRouter, WasmRule};

/// Builds the guests once per test binary; `None` (after saying why) when the `wasm32-wasip2`
/// target is missing and services are not required.
fn guests() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let manifest = root.join("transforms/Cargo.toml");
            let output = std::process::Command::new(env!("CARGO"))
                .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
                .arg(&manifest)
                .output()
                .expect("cargo runs");
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(
                    std::env::var("SYNCBRIDGE_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "building the WASM guests failed (run `rustup target add wasm32-wasip2`):\n{stderr}"
                );
                println!("SKIPPED: the WASM guests do not build here (`rustup target add wasm32-wasip2`)");
                return None;
            }
            Some(root.join("transforms/target/wasm32-wasip2/release"))
        })
        .as_deref()
}

fn host(cache: &Path) -> WasmHost {
    WasmHost::new(
        cache,
        WasmLimits {
            memory_bytes: 32 << 20,
            deadline: Duration::from_millis(300),
            fuel_per_call: None,
        },
    )
    .expect("host")
}

fn apply(rule: &WasmRule, value: Value) -> Result<Value, String> {
    let columns = vec!["name".to_owned(), "country".to_owned()];
    let values = vec![value.clone(), Value::Text("DE".into())];
    rule.apply(
        value,
        RowView {
            columns: &columns,
            values: &values,
        },
    )
    .map_err(|e| e.message)
}

#[test]
fn example_rules_transform_values() {
    let Some(dir) = guests() else { return };
    let cache = tempfile::tempdir().expect("cache");
    let host = host(cache.path());
    let title = WasmRule::new(&host, &dir.join("format.wasm"), "title_case", "name", &[])
        .expect("title_case");
    assert_eq!(
        apply(&title, Value::Text("ada LOVELACE".into())),
        Ok(Value::Text("Ada Lovelace".into()))
    );
    assert_eq!(apply(&title, Value::Int(3)), Ok(Value::Int(3)));
    let prefix = WasmRule::new(
        &host,
        &dir.join("format.wasm"),
        "prefix",
        "name",
        &["PRJ-".to_owned()],
    )
    .expect("prefix");
    assert_eq!(
        apply(&prefix, Value::Int(42)),
        Ok(Value::Text("PRJ-42".into()))
    );
    let round = WasmRule::new(
        &host,
        &dir.join("currency.wasm"),
        "round_currency",
        "name",
        &[],
    )
    .expect("round_currency");
    assert_eq!(
        apply(&round, Value::Decimal("19.995".parse().expect("decimal"))),
        Ok(Value::Decimal("20.00".parse().expect("decimal")))
    );
    assert_eq!(
        apply(&round, Value::Decimal("-0.004".parse().expect("decimal"))),
        Ok(Value::Decimal("0.00".parse().expect("decimal")))
    );
    let lookup = WasmRule::new(&host, &dir.join("lookup.wasm"), "country_name", "name", &[])
        .expect("country_name");
    assert_eq!(
        apply(&lookup, Value::Text("fr".into())),
        Ok(Value::Text("France".into()))
    );
    let error = apply(&lookup, Value::Text("XX".into())).expect_err("unknown code");
    assert!(error.contains("no country with code `XX`"), "{error}");
}

#[test]
fn hostile_guests_cost_one_row_and_the_next_row_works() {
    let Some(dir) = guests() else { return };
    let cache = tempfile::tempdir().expect("cache");
    let host = host(cache.path());
    let rule = |function: &str| {
        WasmRule::new(&host, &dir.join("hostile.wasm"), function, "name", &[]).expect("loads")
    };

    // Each trap costs its row; the same rule then handles the next row on a fresh instance.
    for (function, reason) in [
        ("spin", "deadline of 300 ms"),
        ("hog", "memory cap of 32 MiB"),
        ("panic", "trapped"),
    ] {
        let hostile = rule(function);
        let started = Instant::now();
        let error = apply(&hostile, Value::Text(function.into())).expect_err("stopped");
        let took = started.elapsed();
        assert!(error.contains(reason), "{function}: {error}");
        if function == "spin" {
            assert!(took < Duration::from_secs(3), "stopped after {took:?}");
        }
        assert_eq!(
            apply(&hostile, Value::Text("fine".into())),
            Ok(Value::Text("fine".into()))
        );
    }

    let read = rule("read_file");
    let error = apply(&read, Value::Text("read".into())).expect_err("no files");
    assert!(error.contains("reading a file failed"), "{error}");

    // Transforms see a stopped clock: the same row always gives the same value.
    let clock = rule("clock");
    assert_eq!(apply(&clock, Value::Null), Ok(Value::Int(0)));

    let connect = rule("connect");
    let error = apply(&connect, Value::Text("connect".into())).expect_err("no network");
    assert!(error.contains("connecting failed"), "{error}");
}

#[test]
fn modules_that_do_not_fit_are_refused_with_the_reason() {
    let Some(dir) = guests() else { return };
    let cache = tempfile::tempdir().expect("cache");
    let host = host(cache.path());

    let garbage = cache.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm at all").expect("write");
    let error = WasmRule::new(&host, &garbage, "f", "name", &[]).expect_err("refused");
    assert!(matches!(error, WasmError::NotAComponent { .. }), "{error}");
    assert!(error.to_string().contains("wasm32-wasip2"), "{error}");

    // A core module (the empty one) is not a component.
    let core = cache.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let error = WasmRule::new(&host, &core, "f", "name", &[]).expect_err("refused");
    assert!(matches!(error, WasmError::NotAComponent { .. }), "{error}");

    let error = WasmRule::new(
        &host,
        &dir.join("status_shard.wasm"),
        "by_status",
        "name",
        &[],
    )
    .expect_err("a router is not a rule");
    assert!(matches!(error, WasmError::WrongKind { .. }), "{error}");

    let error = WasmRule::new(&host, &dir.join("format.wasm"), "nope", "name", &[])
        .expect_err("unknown function");
    assert!(
        error
            .to_string()
            .contains("no rule `nope` in this module; it has: title_case, upper, prefix, label"),
        "{error}"
    );

    let error = WasmRule::new(&host, &dir.join("missing.wasm"), "f", "name", &[])
        .expect_err("missing file");
    assert!(matches!(error, WasmError::Read { .. }), "{error}");
}

#[test]
fn the_sharding_example_routes_and_dead_letters() {
    let Some(dir) = guests() else { return };
    let cache = tempfile::tempdir().expect("cache");
    let host = host(cache.path());
    let targets = vec![
        "Active".to_owned(),
        "Closed".to_owned(),
        "Archived".to_owned(),
    ];
    let router = WasmRouter::new(&host, &dir.join("status_shard.wasm"), "by_status", &targets)
        .expect("router");
    let today = chrono::Utc::now().date_naive();
    let columns = vec!["status".to_owned(), "ended_on".to_owned()];
    let rows = [
        vec![Value::Text("Active".into()), Value::Null],
        vec![
            Value::Text("Closed".into()),
            Value::Date(today - chrono::Duration::days(30)),
        ],
        vec![
            Value::Text("Closed".into()),
            Value::Date(today - chrono::Duration::days(800)),
        ],
        vec![Value::Null, Value::Null],
    ];
    let views: Vec<RowView<'_>> = rows
        .iter()
        .map(|values| RowView {
            columns: &columns,
            values,
        })
        .collect();
    let decisions = router.route(&views);
    assert_eq!(decisions[0], RouteDecision::Target("Active".into()));
    assert_eq!(decisions[1], RouteDecision::Target("Closed".into()));
    assert_eq!(decisions[2], RouteDecision::Default);
    assert!(
        matches!(&decisions[3], RouteDecision::Failed(e) if e.message.contains("no `status`")),
        "{:?}",
        decisions[3]
    );
}

#[test]
fn compiled_modules_are_cached_and_a_changed_file_is_compiled_again() {
    let Some(dir) = guests() else { return };
    let cache = tempfile::tempdir().expect("cache");
    let work = tempfile::tempdir().expect("work");
    let module = work.path().join("rule.wasm");
    std::fs::copy(dir.join("format.wasm"), &module).expect("copy");
    let first = host(cache.path()).load(&module).expect("load");
    let artifacts = std::fs::read_dir(cache.path()).expect("cache dir").count();
    assert_eq!(artifacts, 1, "one compiled artifact");
    // A second host (another process) finds it.
    let again = host(cache.path()).load(&module).expect("load from cache");
    assert_eq!(first.hash, again.hash);
    // The file changes: the next load sees the new module.
    let host = host(cache.path());
    host.load(&module).expect("load");
    std::fs::copy(dir.join("currency.wasm"), &module).expect("swap");
    let swapped = host.load(&module).expect("reload");
    assert_ne!(swapped.hash, first.hash);
    let rule = WasmRule::new(&host, &module, "round_currency", "name", &[]).expect("new rule");
    assert_eq!(
        apply(&rule, Value::Int(2)),
        Ok(Value::Decimal("2.00".parse().expect("decimal")))
    );
}

#[test]
fn an_optional_fuel_budget_stops_a_loop_deterministically() {
    let Some(dir) = guests() else { return };
    let cache = tempfile::tempdir().expect("cache");
    let host = WasmHost::new(
        cache.path(),
        WasmLimits {
            fuel_per_call: Some(50_000_000),
            deadline: Duration::from_secs(30),
            ..WasmLimits::default()
        },
    )
    .expect("host");
    let spin = WasmRule::new(&host, &dir.join("hostile.wasm"), "spin", "name", &[]).expect("loads");
    let error = apply(&spin, Value::Text("spin".into())).expect_err("stopped");
    assert!(error.contains("used up its fuel of 50000000"), "{error}");
    assert_eq!(
        apply(&spin, Value::Text("fine".into())),
        Ok(Value::Text("fine".into()))
    );
}

/// One call per batch: the rule reads only the columns it asked for, and a row that traps in
/// the middle of a batch is the only one that fails.
#[test]
fn batches_go_in_one_call_and_a_trapping_row_fails_alone() {
    use syncbridge_api::FieldRule as _;
    let Some(dir) = guests() else { return };
    let cache = tempfile::tempdir().expect("cache");
    let host = host(cache.path());
    let columns = vec!["name".to_owned(), "status".to_owned(), "secret".to_owned()];
    let rows: Vec<Vec<Value>> = ["Apollo", "panic", "Gemini"]
        .iter()
        .map(|name| {
            vec![
                Value::Text((*name).into()),
                Value::Text("Active".into()),
                Value::Text("not sent".into()),
            ]
        })
        .collect();
    let views: Vec<RowView<'_>> = rows
        .iter()
        .map(|values| RowView {
            columns: &columns,
            values,
        })
        .collect();
    let values = || rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>();

    let label =
        WasmRule::new(&host, &dir.join("format.wasm"), "label", "name", &[]).expect("label");
    let labelled = label.apply_batch(values(), &views);
    assert_eq!(labelled[0], Ok(Value::Text("Apollo (Active)".into())));
    assert_eq!(labelled[2], Ok(Value::Text("Gemini (Active)".into())));

    let panic =
        WasmRule::new(&host, &dir.join("hostile.wasm"), "panic", "name", &[]).expect("panic");
    let results = panic.apply_batch(values(), &views);
    assert_eq!(results[0], Ok(Value::Text("Apollo".into())));
    assert!(
        matches!(&results[1], Err(e) if e.message.contains("trapped")),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2], Ok(Value::Text("Gemini".into())));
}

/// A guest written in C (tools/componentize: wit-bindgen's C bindings, clang with wasi-libc,
/// the WASI preview 1 adapter) runs through the same world as the Rust ones.
#[test]
fn a_c_guest_targets_the_same_world() {
    use syncbridge_api::FieldRule as _;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = tempfile::tempdir().expect("out");
    let module = out.path().join("initials.wasm");
    let built = std::process::Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--release", "--manifest-path"])
        .arg(root.join("tools/componentize/Cargo.toml"))
        .args(["--", "--wit"])
        .arg(root.join("plugins-sdk/wit"))
        .args(["--world", "transform", "--out"])
        .arg(&module)
        .arg(root.join("transforms/c-guest/initials.c"))
        .output()
        .expect("cargo runs");
    if !built.status.success() {
        let stderr = String::from_utf8_lossy(&built.stderr);
        assert!(
            std::env::var("SYNCBRIDGE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "building the C guest failed (apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32):\n{stderr}"
        );
        println!("SKIPPED: the C guest does not build here (clang with wasi-libc is needed)");
        return;
    }
    let cache = tempfile::tempdir().expect("cache");
    let host = host(cache.path());
    let rule = WasmRule::new(&host, &module, "initials", "name", &[]).expect("C rule");
    let columns = vec!["name".to_owned()];
    let rows = [
        vec![Value::Text("ada lovelace".into())],
        vec![Value::Int(3)],
        vec![Value::Text("grace brewster hopper".into())],
    ];
    let views: Vec<RowView<'_>> = rows
        .iter()
        .map(|values| RowView {
            columns: &columns,
            values,
        })
        .collect();
    let results = rule.apply_batch(rows.iter().map(|r| r[0].clone()).collect(), &views);
    assert_eq!(results[0], Ok(Value::Text("A.L.".into())));
    assert!(
        matches!(&results[1], Err(e) if e.message.contains("initials needs a text value")),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2], Ok(Value::Text("G.B.H.".into())));
    let error = WasmRule::new(&host, &module, "other", "name", &[]).expect_err("unknown");
    assert!(error.to_string().contains("it has: initials"), "{error}");
}

/// A rule notices its file changed between batches: the next batch runs the new module, and a
/// file that does not load keeps the module that works.
#[test]
fn a_changed_file_takes_over_at_the_next_batch() {
    let Some(dir) = guests() else { return };
    let cache = tempfile::tempdir().expect("cache");
    let work = tempfile::tempdir().expect("work");
    let module = work.path().join("names.wasm");
    std::fs::copy(dir.join("format.wasm"), &module).expect("copy");
    let host = host(cache.path());
    let rule = WasmRule::new(&host, &module, "title_case", "name", &[]).expect("rule");
    assert_eq!(
        apply(&rule, Value::Text("ada lovelace".into())),
        Ok(Value::Text("Ada Lovelace".into()))
    );
    std::fs::copy(dir.join("format_v2.wasm"), &module).expect("swap");
    assert_eq!(
        apply(&rule, Value::Text("ada lovelace".into())),
        Ok(Value::Text("ADA LOVELACE".into()))
    );
    std::fs::write(&module, b"half a file").expect("break");
    assert_eq!(
        apply(&rule, Value::Text("grace hopper".into())),
        Ok(Value::Text("GRACE HOPPER".into())),
        "the working module stays"
    );
}
