//! Loading configs: the examples load and match the JSON Schema; each kind of mistake is reported
//! with its path, the bad value and the fix (issue 2: wrong enum, missing field, unknown key,
//! dangling reference).

use std::path::{Path, PathBuf};

use syncbridge_config::{ConfigError, Known, load_file, load_str};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn known() -> Known {
    Known {
        source_kinds: vec![
            "postgres".into(),
            "sqlite".into(),
            "mysql".into(),
            "sqlserver".into(),
        ],
        target_kinds: vec!["sharepoint".into()],
        rule_names: vec![
            "trim".into(),
            "upper".into(),
            "lower".into(),
            "round".into(),
        ],
    }
}

fn example_text(name: &str) -> String {
    std::fs::read_to_string(examples_dir().join(name)).expect("example exists")
}

/// Loads an example with its environment references replaced by fixed values.
fn load_example(name: &str) -> Result<syncbridge_config::Config, ConfigError> {
    let text = example_text(name)
        .replace("${env:GRAPH_TENANT_ID}", "contoso.onmicrosoft.com")
        .replace(
            "${env:GRAPH_CLIENT_ID}",
            "11111111-2222-3333-4444-555555555555",
        )
        .replace(
            "${env:GRAPH_AUTHORITY_HOST}",
            "https://login.microsoftonline.com",
        )
        .replace("${env:GRAPH_BASE_URL}", "https://graph.microsoft.com/v1.0")
        .replace(
            "${env:PMO_DB_URL}",
            "postgres://sync@db1.example.com:5432/pmo",
        )
        .replace(
            "${env:PMO_DB_REPLICA_URL}",
            "postgres://sync@db2.example.com:5432/pmo",
        );
    load_str(&text, Path::new(name), &known())
}

#[test]
fn every_example_loads_and_matches_the_schema() {
    let schema = syncbridge_config::json_schema();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let mut checked = 0;
    for entry in std::fs::read_dir(examples_dir()).expect("examples dir") {
        let path = entry.expect("entry").path();
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if !matches!(ext, "yaml" | "yml" | "json") {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name")
            .to_owned();
        let config = load_example(&name).unwrap_or_else(|e| panic!("{e}"));
        let as_json = serde_json::to_value(&config).expect("serializes");
        let errors: Vec<String> = validator
            .iter_errors(&as_json)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{name} does not match the schema: {errors:?}"
        );
        checked += 1;
    }
    assert!(checked >= 1, "no example config found");
}

fn problems_of(yaml: &str) -> ConfigError {
    load_str(yaml, Path::new("bad.yaml"), &known()).expect_err("config must be refused")
}

fn mutate(from: &str, to: &str) -> String {
    let text = example_text("postgres-to-sharepoint.yaml")
        .replace("${env:GRAPH_TENANT_ID}", "t")
        .replace("${env:GRAPH_CLIENT_ID}", "c")
        .replace("${env:GRAPH_AUTHORITY_HOST}", "https://login.example")
        .replace("${env:GRAPH_BASE_URL}", "https://graph.example/v1.0")
        .replace("${env:PMO_DB_URL}", "postgres://sync@db1.example:5432/pmo")
        .replace(
            "${env:PMO_DB_REPLICA_URL}",
            "postgres://sync@db2.example:5432/pmo",
        );
    assert!(text.contains(from), "example lacks `{from}`");
    text.replacen(from, to, 1)
}

#[test]
fn wrong_enum_names_path_value_and_allowed_values() {
    let error = problems_of(&mutate("mode: ONE_WAY_PUSH", "mode: ONE_WAY"));
    let text = error.to_string();
    assert_eq!(error.problems[0].path, "syncs[0].mode", "{text}");
    assert!(text.contains("ONE_WAY`"), "{text}");
    assert!(
        text.contains("ONE_WAY_PUSH") && text.contains("ARCHIVE_ONLY"),
        "{text}"
    );
    assert!(text.starts_with("bad.yaml"), "{text}");
}

#[test]
fn wrong_enum_deep_inside_a_list() {
    let error = problems_of(&mutate("direction: PULL_ONLY", "direction: SIDEWAYS"));
    assert_eq!(
        error.problems[0].path, "syncs[1].mappings[4].direction",
        "{error}"
    );
}

#[test]
fn missing_field_names_the_object_and_the_field() {
    let error = problems_of(&mutate(
        "      table: public.projects\n    mode: ONE_WAY_PUSH",
        "    mode: ONE_WAY_PUSH",
    ));
    let text = error.to_string();
    assert_eq!(error.problems[0].path, "syncs[0].source", "{text}");
    assert!(text.contains("missing field `table`"), "{text}");
    assert!(error.problems[0].fix.is_some());
}

#[test]
fn unknown_key_is_refused_with_the_keys_that_exist() {
    let error = problems_of(&mutate(
        "    owner_team: Project",
        "    owner_teem: Project",
    ));
    let text = error.to_string();
    assert_eq!(
        error.problems[0].path, "applications[0].owner_teem",
        "{text}"
    );
    assert!(
        text.contains("unknown field `owner_teem`") && text.contains("owner_team"),
        "{text}"
    );
}

#[test]
fn dangling_reference_lists_what_is_defined() {
    let error = problems_of(&mutate("list: Closed Projects", "list: Closed Projcts"));
    let text = error.to_string();
    assert_eq!(error.problems[0].path, "syncs[1].targets[1].list", "{text}");
    assert!(
        text.contains("Closed Projcts") && text.contains("Active Projects"),
        "{text}"
    );
}

#[test]
fn semantic_problems_are_all_reported_at_once() {
    let text = mutate("      column: updated_at\n", "")
        .replacen("default: true", "default: false", 1)
        .replacen("type: postgres", "type: oracle", 1);
    let error = problems_of(&text);
    let paths: Vec<&str> = error.problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"syncs[0].cursor.column"), "{error}");
    assert!(paths.contains(&"syncs[1].targets"), "{error}");
    assert!(paths.contains(&"databases[0].type"), "{error}");
    assert!(error.to_string().contains("postgres, sqlite"), "{error}");
}

#[test]
fn json_files_load_too() {
    let config = load_example("postgres-to-sharepoint.yaml").expect("example loads");
    let json = serde_json::to_string(&config).expect("serializes");
    let again = load_str(&json, Path::new("quickstart.json"), &known()).expect("json loads");
    assert_eq!(config, again);
}

#[test]
fn unreadable_and_empty_files_say_so() {
    let error = load_file(Path::new("/nonexistent/sb.yaml"), &known()).expect_err("missing file");
    assert!(
        error.to_string().contains("cannot read the file"),
        "{error}"
    );
    let error = problems_of("");
    assert!(error.to_string().contains("empty"), "{error}");
    let error = problems_of("version: [1,");
    assert!(error.to_string().contains("not valid YAML"), "{error}");
}

#[test]
fn secrets_never_show_in_debug_output() {
    let text = mutate(
        "url: postgres://sync@db1.example:5432/pmo",
        "url: postgres://sync:hunter2-literal@db1.example:5432/pmo",
    );
    let config = load_str(&text, Path::new("x.yaml"), &known()).expect("loads");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("hunter2-literal"),
        "secret leaked into Debug"
    );
    assert!(
        debug.contains("${env:GRAPH_CLIENT_SECRET}"),
        "references stay visible"
    );
}

#[test]
fn target_connections_are_checked_by_their_type() {
    // SharePoint needs its app registration.
    let error = problems_of(&mutate(
        "    client_secret: ${env:GRAPH_CLIENT_SECRET}\n",
        "",
    ));
    assert_eq!(
        error.problems[0].path, "sharepoint[0].client_secret",
        "{error}"
    );
    let error = problems_of(&mutate("    tenant_id: t\n", ""));
    assert_eq!(error.problems[0].path, "sharepoint[0].tenant_id", "{error}");
    // A target type nothing provides is named, with where plugin kinds come from.
    let error = problems_of(&mutate(
        "  - name: contoso\n",
        "  - name: contoso\n    type: jsonl\n",
    ));
    let text = error.to_string();
    assert_eq!(error.problems[0].path, "sharepoint[0].type", "{text}");
    assert!(
        text.contains("unknown target type `jsonl`") && text.contains("SYNCBRIDGE_PLUGIN_DIR"),
        "{text}"
    );
    // A plugin target needs no app registration, and keeps its options.
    let text = mutate(
        "    tenant_id: t\n    client_id: c\n    client_secret: ${env:GRAPH_CLIENT_SECRET}\n",
        "    type: jsonl\n    options: { directory: /var/lib/exports }\n",
    );
    let known = Known {
        target_kinds: vec!["sharepoint".into(), "jsonl".into()],
        ..known()
    };
    let config = load_str(&text, Path::new("ok.yaml"), &known).expect("loads");
    assert_eq!(config.sharepoint[0].connector, "jsonl");
    assert_eq!(
        config.sharepoint[0].options["directory"],
        "/var/lib/exports"
    );
    assert!(config.sharepoint[0].client_secret.is_none());
}

#[test]
fn hashed_keys_are_refused_with_an_incremental_cursor() {
    let error = problems_of(&mutate(
        "      strategy: PRIMARY_KEY\n",
        "      strategy: HASHED\n",
    ));
    let text = error.to_string();
    assert_eq!(error.problems[0].path, "syncs[0].cursor.strategy", "{text}");
    assert!(text.contains("FULL_SCAN"), "{text}");
    let fixed = mutate("      strategy: PRIMARY_KEY\n", "      strategy: HASHED\n").replacen(
        "      strategy: UPDATED_AT\n      column: updated_at\n      look_back_seconds: 300\n",
        "      strategy: FULL_SCAN\n",
        1,
    );
    load_str(&fixed, Path::new("ok.yaml"), &known()).expect("HASHED with FULL_SCAN loads");
}

#[test]
fn the_key_column_is_not_a_mapping_target() {
    let error = problems_of(&mutate("target: Owner", "target: SyncBridgeKey"));
    let text = error.to_string();
    assert_eq!(
        error.problems[0].path, "syncs[1].mappings[3].target",
        "{text}"
    );
    assert!(text.contains("identity"), "{text}");
}
