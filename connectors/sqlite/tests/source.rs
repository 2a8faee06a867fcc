//! The SQLite source on real SQLite files: introspection, quoting, type mapping, keyset reads
//! over composite keys, and UPDATED_AT with its look-back.

use futures::TryStreamExt as _;
use sqlx::Connection as _;
use syncbridge_api::{CursorSpec, DataType, ReadRequest, RowBatch, Source as _, TableRef, Value};
use syncbridge_sqlite::{SqliteSource, SqliteSourceConfig};

async fn database(sql: &str) -> (tempfile::TempDir, SqliteSource) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("source.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut connection = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("create database");
    sqlx::raw_sql(sql)
        .execute(&mut connection)
        .await
        .expect("schema and data");
    connection.close().await.expect("close");
    let source = SqliteSource::connect(SqliteSourceConfig {
        path: path.display().to_string(),
    })
    .await
    .expect("connects");
    (dir, source)
}

fn request(table: &str, key: &[&str], cursor: CursorSpec, batch_size: usize) -> ReadRequest {
    ReadRequest {
        table: TableRef::new(None, table),
        columns: Vec::new(),
        key: key.iter().map(|k| k.to_string()).collect(),
        cursor,
        from: None,
        batch_size,
        defer_conversion: false,
    }
}

async fn read_all(source: &SqliteSource, request: ReadRequest) -> Vec<RowBatch> {
    source
        .read(request)
        .await
        .expect("read starts")
        .try_collect()
        .await
        .expect("read completes")
}

#[tokio::test]
async fn awkward_names_and_types_read_correctly() {
    let (_dir, source) = database(
        r#"CREATE TABLE "select" ("Mixed Case" INTEGER PRIMARY KEY, "we""ird" TEXT NOT NULL, amount NUMERIC(12,2),
               flag BOOLEAN, day DATE, at DATETIME, doc JSON, blob BLOB);
           INSERT INTO "select" VALUES (1, 'a|b', '1234.50', 1, '2024-02-29', '2024-02-29 10:11:12', '{"k": [1]}', x'00ff');
           INSERT INTO "select" VALUES (2, '', NULL, 0, NULL, NULL, NULL, NULL);"#,
    )
    .await;
    let tables = source.introspect(None).await.expect("introspects");
    assert_eq!(tables.len(), 1);
    let table = &tables[0];
    assert_eq!(table.primary_key(), vec!["Mixed Case"]);
    assert_eq!(
        table.column("amount").expect("amount").data_type,
        DataType::Decimal {
            precision: Some(12),
            scale: Some(2)
        }
    );
    assert_eq!(table.row_estimate, Some(2));

    let batches = read_all(
        &source,
        request("select", &["Mixed Case"], CursorSpec::FullScan, 1),
    )
    .await;
    assert_eq!(batches.len(), 2, "batch size 1 gives one row per batch");
    let first = &batches[0].rows[0].values;
    assert_eq!(first[0], Value::Int(1));
    assert_eq!(first[1], Value::from("a|b"));
    assert_eq!(
        first[2],
        Value::Decimal("1234.50".parse().expect("decimal"))
    );
    assert_eq!(first[3], Value::Bool(true));
    assert_eq!(
        first[4],
        Value::Date(chrono::NaiveDate::from_ymd_opt(2024, 2, 29).expect("date"))
    );
    assert!(matches!(first[5], Value::Timestamp(_)));
    assert_eq!(first[6], Value::Json(serde_json::json!({"k": [1]})));
    assert_eq!(first[7], Value::Bytes(vec![0, 255]));
    let second = &batches[1].rows[0].values;
    assert_eq!(
        second[1],
        Value::from(""),
        "empty string stays distinct from NULL"
    );
    assert_eq!(second[2], Value::Null);
}

#[tokio::test]
async fn composite_keys_page_without_gaps_or_repeats() {
    let mut sql = String::from(
        "CREATE TABLE t (region TEXT, code INTEGER, v TEXT, PRIMARY KEY (region, code));",
    );
    for region in ["eu", "us", "apac"] {
        for code in 0..7 {
            sql.push_str(&format!("INSERT INTO t VALUES ('{region}', {code}, 'x');"));
        }
    }
    let (_dir, source) = database(&sql).await;
    let batches = read_all(
        &source,
        request("t", &["region", "code"], CursorSpec::FullScan, 4),
    )
    .await;
    let keys: Vec<(Value, Value)> = batches
        .iter()
        .flat_map(|b| {
            b.rows
                .iter()
                .map(|r| (r.values[0].clone(), r.values[1].clone()))
        })
        .collect();
    assert_eq!(keys.len(), 21);
    let unique: std::collections::HashSet<String> = keys.iter().map(|k| format!("{k:?}")).collect();
    assert_eq!(unique.len(), 21, "no row twice");

    // Resuming from a batch's position continues right after it.
    let mut resume = request("t", &["region", "code"], CursorSpec::FullScan, 100);
    resume.from = batches[1].position.clone();
    let rest = read_all(&source, resume).await;
    assert_eq!(rest.iter().map(|b| b.rows.len()).sum::<usize>(), 21 - 8);
}

#[tokio::test]
async fn updated_at_re_reads_the_look_back_window() {
    let (dir, source) = database(
        "CREATE TABLE p (id INTEGER PRIMARY KEY, updated_at DATETIME NOT NULL);
         INSERT INTO p VALUES (1, '2026-01-01 10:00:00'), (2, '2026-01-01 10:05:00'), (3, '2026-01-01 10:10:00');",
    )
    .await;
    let spec = CursorSpec::UpdatedAt {
        column: "updated_at".into(),
        look_back: std::time::Duration::from_secs(60),
    };
    let batches = read_all(&source, request("p", &["id"], spec.clone(), 10)).await;
    assert_eq!(batches[0].rows.len(), 3);
    let position = batches
        .last()
        .and_then(|b| b.position.clone())
        .expect("position");

    // A long transaction commits a row stamped before the watermark, inside the look-back.
    let url = format!("sqlite://{}", dir.path().join("source.db").display());
    let mut writer = sqlx::SqliteConnection::connect(&url).await.expect("writer");
    sqlx::query("INSERT INTO p VALUES (4, '2026-01-01 10:09:30')")
        .execute(&mut writer)
        .await
        .expect("insert");
    let mut again = request("p", &["id"], spec, 10);
    again.from = Some(position);
    let ids: Vec<Value> = read_all(&source, again)
        .await
        .iter()
        .flat_map(|b| b.rows.iter().map(|r| r.values[0].clone()))
        .collect();
    assert!(
        ids.contains(&Value::Int(4)),
        "the late row is found: {ids:?}"
    );
    assert!(
        !ids.contains(&Value::Int(1)),
        "rows before the window are not re-read: {ids:?}"
    );
}

#[tokio::test]
async fn missing_tables_and_columns_are_named() {
    let (_dir, source) = database("CREATE TABLE t (id INTEGER PRIMARY KEY);").await;
    let error = source
        .introspect(Some(&[TableRef::new(None, "nope")]))
        .await
        .expect_err("missing table");
    assert!(error.to_string().contains("nope"), "{error}");
    let mut bad = request("t", &["id"], CursorSpec::FullScan, 10);
    bad.columns = vec!["id".into(), "ghost".into()];
    let error = source.read(bad).await.err().expect("missing column");
    assert!(error.to_string().contains("ghost"), "{error}");
}
