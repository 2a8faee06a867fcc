//! Loading native plugins for real: the example plugins load and work through the ABI, and each
//! kind of broken library is refused with its path and the reason while the others still load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use futures::StreamExt as _;
use syncbridge_api::{
    CollectionSpec, CursorSpec, DataType, ErrorDomain, FieldSpec, ReadRequest, Registry, TableRef,
    Value, WriteOp, WriteOutcome,
};
use syncbridge_native::testing::build_plugins;

const CSV: &str = "syncbridge-example-csv-source";
const JSONL: &str = "syncbridge-example-jsonl-target";
const WRONG_ABI: &str = "syncbridge-fixture-wrong-abi";
const NO_DECLARATION: &str = "syncbridge-fixture-no-declaration";
const PANICS: &str = "syncbridge-fixture-panics-on-load";
const PANICS_IN_CALL: &str = "syncbridge-fixture-panics-in-call";

fn libraries() -> &'static HashMap<String, PathBuf> {
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BUILT.get_or_init(|| {
        build_plugins(&[
            CSV,
            JSONL,
            WRONG_ABI,
            NO_DECLARATION,
            PANICS,
            PANICS_IN_CALL,
        ])
    })
}

fn library(name: &str) -> &'static Path {
    &libraries()[name]
}

/// A plugin directory holding copies of `names`, plus extra files.
fn plugin_dir(names: &[&str], extra: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in names {
        let source = library(name);
        let file = source.file_name().expect("a file name");
        std::fs::copy(source, dir.path().join(file)).expect("copy the library");
    }
    for (file, bytes) in extra {
        std::fs::write(dir.path().join(file), bytes).expect("write");
    }
    dir
}

#[test]
fn a_library_of_another_abi_version_is_refused_by_its_version() {
    let refusal = syncbridge_native::load(library(WRONG_ABI)).expect_err("refused");
    assert_eq!(refusal.path, library(WRONG_ABI));
    assert!(
        refusal.reason.contains("ABI version 999") && refusal.reason.contains("version 1"),
        "{refusal}"
    );
    assert!(refusal.to_string().contains("wrong_abi"), "{refusal}");
}

#[test]
fn a_library_without_the_declaration_is_refused() {
    let refusal = syncbridge_native::load(library(NO_DECLARATION)).expect_err("refused");
    assert!(
        refusal
            .reason
            .contains("does not export `syncbridge_plugin_declaration`"),
        "{refusal}"
    );
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let dir = plugin_dir(&[], &[("notes.so", b"these are not machine instructions")]);
    let refusal = syncbridge_native::load(&dir.path().join("notes.so")).expect_err("refused");
    assert!(
        refusal.reason.contains("not a loadable dynamic library"),
        "{refusal}"
    );
    assert!(refusal.to_string().contains("notes.so"), "{refusal}");
}

#[test]
fn a_plugin_that_panics_while_loading_is_refused_and_the_process_goes_on() {
    let refusal = syncbridge_native::load(library(PANICS)).expect_err("refused");
    assert!(
        refusal.reason.contains("panicked while loading")
            && refusal.reason.contains("the licence file is missing"),
        "{refusal}"
    );
    // Asking again gives the same answer without running the library's code again.
    let again = syncbridge_native::load(library(PANICS)).expect_err("refused");
    assert_eq!(again, refusal);
}

#[test]
fn a_directory_scan_registers_the_good_plugins_and_refuses_the_bad_ones() {
    let dir = plugin_dir(
        &[CSV, JSONL, WRONG_ABI, NO_DECLARATION, PANICS],
        &[
            ("broken.so", b"\x7fELF but not really"),
            ("README.txt", b"ignored"),
        ],
    );
    let mut registry = Registry::new();
    let refusals = syncbridge_native::register_dir(&mut registry, dir.path());
    let mut refused: Vec<String> = refusals
        .iter()
        .map(|r| {
            r.path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    refused.sort();
    assert_eq!(refused.len(), 4, "{refusals:?}");
    assert!(refused.iter().any(|f| f == "broken.so"));
    assert_eq!(registry.source_kinds(), vec!["csv".to_owned()]);
    assert_eq!(registry.target_kinds(), vec!["jsonl".to_owned()]);

    let csv = syncbridge_native::load(library(CSV)).expect("loads");
    assert_eq!(csv.manifest.name, CSV);
    assert_eq!(csv.manifest.sources, vec!["csv".to_owned()]);
    assert!(csv.manifest.targets.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_csv_plugin_reads_through_the_abi() {
    let data = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        data.path().join("projects.csv"),
        "id,name,budget,started_on,active\n3,Gamma,10.50,2024-03-01,true\n1,Alpha,,2024-01-01,false\n2,\"Beta, with a comma\",7,2024-02-01,true\n",
    )
    .expect("write csv");
    let mut registry = Registry::new();
    let plugin = syncbridge_native::load(library(CSV)).expect("loads");
    syncbridge_native::register(&mut registry, &[plugin]);
    let factory = registry.source("csv").expect("registered");

    let error = factory(serde_json::json!({"path": data.path().join("missing")}))
        .await
        .err()
        .expect("a missing directory is refused");
    assert_eq!(error.domain(), ErrorDomain::User);
    assert!(error.message().contains("needs a directory"), "{error}");
    assert!(error.hint().is_some_and(|h| h.contains("database_name")));

    let source = factory(serde_json::json!({"path": data.path()}))
        .await
        .expect("opens");
    source.healthcheck().await.expect("healthy");
    let tables = source.introspect(None).await.expect("introspects");
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].primary_key(), vec!["id".to_owned()]);
    let budget = tables[0].column("budget").expect("budget");
    assert_eq!(
        budget.data_type,
        DataType::Decimal {
            precision: None,
            scale: None
        }
    );
    assert_eq!(
        tables[0].column("started_on").expect("date").data_type,
        DataType::Date
    );

    let request = ReadRequest {
        table: TableRef::new(None, "projects"),
        columns: vec!["id".into(), "name".into(), "budget".into()],
        key: vec!["id".into()],
        cursor: CursorSpec::FullScan,
        from: None,
        batch_size: 2,
        defer_conversion: false,
    };
    let batches: Vec<_> = source
        .read(request.clone())
        .await
        .expect("reads")
        .collect()
        .await;
    assert_eq!(batches.len(), 2);
    let first = batches[0].as_ref().expect("a batch");
    assert_eq!(
        first.rows[0].values,
        vec![Value::Int(1), Value::from("Alpha"), Value::Null]
    );
    assert_eq!(first.rows[1].values[1], Value::from("Beta, with a comma"));
    // Resuming from the first batch's position gives the rest only.
    let resumed: Vec<_> = source
        .read(ReadRequest {
            from: first.position.clone(),
            ..request.clone()
        })
        .await
        .expect("reads")
        .collect()
        .await;
    let rest = resumed[0].as_ref().expect("a batch");
    assert_eq!(rest.rows.len(), 1);
    assert_eq!(rest.rows[0].values[0], Value::Int(3));

    // An error inside the plugin comes back as the connector's error, not a crash.
    let error = source
        .read(ReadRequest {
            cursor: CursorSpec::UpdatedAt {
                column: "started_on".into(),
                look_back: std::time::Duration::ZERO,
            },
            ..request
        })
        .await
        .err()
        .expect("refused");
    assert!(
        error.message().contains("only the FULL_SCAN cursor"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jsonl_plugin_writes_through_the_abi() {
    let out = tempfile::tempdir().expect("temp dir");
    let mut registry = Registry::new();
    let plugin = syncbridge_native::load(library(JSONL)).expect("loads");
    syncbridge_native::register(&mut registry, &[plugin]);
    let target = registry.target("jsonl").expect("registered")(serde_json::json!({
        "directory": out.path(), "connection": "files", "site_hostname": "local", "site_path": "/"
    }))
    .await
    .expect("opens");
    target.healthcheck().await.expect("healthy");
    assert!(
        target
            .location()
            .is_some_and(|l| l.url.is_some_and(|u| u.starts_with("file://")))
    );
    let report = target
        .provision(&CollectionSpec {
            name: "Projects".into(),
            description: None,
            fields: vec![FieldSpec {
                name: "Title".into(),
                data_type: DataType::Text { max_length: None },
                required: false,
                indexed: false,
                unique: false,
                hidden: false,
            }],
            key_field: "SyncKey".into(),
        })
        .await
        .expect("provisions");
    assert!(report.created);
    let list = report.collection;
    let outcomes = target
        .write(
            &list,
            vec![
                WriteOp::Create {
                    key: "k1".into(),
                    fields: vec![("Title".into(), Value::from("One"))],
                },
                WriteOp::Create {
                    key: "k2".into(),
                    fields: vec![("Title".into(), Value::from("Two"))],
                },
            ],
        )
        .await
        .expect("writes");
    let ids: Vec<_> = outcomes
        .iter()
        .map(|o| match o {
            WriteOutcome::Created { item_id } => *item_id,
            other => panic!("{other:?}"),
        })
        .collect();
    let outcomes = target
        .write(
            &list,
            vec![
                WriteOp::Update {
                    item_id: ids[0],
                    fields: vec![("Title".into(), Value::from("Uno"))],
                },
                WriteOp::Delete { item_id: ids[1] },
                WriteOp::Delete { item_id: ids[1] },
            ],
        )
        .await
        .expect("writes");
    assert!(matches!(
        outcomes[..],
        [
            WriteOutcome::Updated,
            WriteOutcome::Deleted,
            WriteOutcome::NotFound
        ]
    ));
    assert_eq!(
        target
            .find_by_key(&list, "SyncKey", "k1")
            .await
            .expect("finds"),
        Some(ids[0])
    );
    assert_eq!(
        target
            .find_by_key(&list, "SyncKey", "k2")
            .await
            .expect("finds"),
        None
    );
    let keys = target.list_keys(&list, "SyncKey").await.expect("lists");
    assert_eq!(keys, vec![(ids[0], "k1".to_owned())]);
    let file = std::fs::read_to_string(out.path().join("Projects.jsonl")).expect("the file");
    assert_eq!(file.lines().count(), 1);
    assert!(file.contains("\"Title\":\"Uno\""), "{file}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_a_call_fails_that_call_and_the_plugin_stays_usable() {
    let mut registry = Registry::new();
    let plugin = syncbridge_native::load(library(PANICS_IN_CALL)).expect("loads");
    syncbridge_native::register(&mut registry, &[plugin]);
    let source = registry.source("panicky").expect("registered")(serde_json::json!({}))
        .await
        .expect("opens");
    for _ in 0..2 {
        let error = source.healthcheck().await.expect_err("panics");
        assert_eq!(error.domain(), ErrorDomain::Internal);
        assert!(
            error
                .message()
                .contains("panicked in `healthcheck`: healthcheck exploded"),
            "{error}"
        );
        assert!(
            error
                .hint()
                .is_some_and(|h| h.contains("bug in the plugin"))
        );
    }
    let request = ReadRequest {
        table: TableRef::new(None, "t"),
        columns: Vec::new(),
        key: vec!["id".into()],
        cursor: CursorSpec::FullScan,
        from: None,
        batch_size: 10,
        defer_conversion: false,
    };
    let items: Vec<_> = source.read(request).await.expect("starts").collect().await;
    assert_eq!(
        items.len(),
        2,
        "one batch, then the panic as an error, then the end"
    );
    assert_eq!(items[0].as_ref().expect("a batch").rows.len(), 1);
    let error = items[1].as_ref().expect_err("the panic");
    assert!(
        error.message().contains("the second batch exploded"),
        "{error}"
    );
    assert!(
        source
            .introspect(None)
            .await
            .expect("still answers")
            .is_empty()
    );
}
