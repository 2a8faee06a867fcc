//! The PostgreSQL source on the real server (127.0.0.1:5432), each test in its own database:
//! Sakila introspected and read completely, awkward identifiers, exact numerics, composite keys,
//! and UPDATED_AT catching rows committed late with older timestamps.

use std::process::Command;

use futures::TryStreamExt as _;
use sqlx::Connection as _;
use syncbridge_api::{
    ConstraintKind, CursorSpec, DataType, ReadRequest, RowBatch, Source as _, TableRef, Value,
};
use syncbridge_postgres::{PostgresSource, PostgresSourceConfig};

/// A fresh database on the local server, dropped with the test.
struct Database {
    name: String,
    url: String,
    _guard: syncbridge_store::testing::PgDatabase,
}

impl Database {
    fn create() -> Option<Self> {
        let guard = syncbridge_store::testing::PgDatabase::create("pg")?;
        Some(Self {
            name: guard.name.clone(),
            url: guard.url.clone(),
            _guard: guard,
        })
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn psql_file(&self, path: &str) {
        let output = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-q",
                "-v",
                "ON_ERROR_STOP=0",
                "-d",
                &self.name,
                "-f",
                path,
            ])
            .output()
            .expect("psql");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn execute(&self, sql: &str) {
        let mut db = sqlx::PgConnection::connect(&self.url())
            .await
            .expect("connect");
        sqlx::raw_sql(sql).execute(&mut db).await.expect("sql");
    }

    async fn source(&self) -> PostgresSource {
        let config: PostgresSourceConfig =
            serde_json::from_value(serde_json::json!({"database": self.name})).expect("config");
        PostgresSource::connect(config).await.expect("connects")
    }
}

fn request(
    schema: &str,
    table: &str,
    key: &[&str],
    cursor: CursorSpec,
    batch: usize,
) -> ReadRequest {
    ReadRequest {
        table: TableRef::new(Some(schema), table),
        columns: Vec::new(),
        key: key.iter().map(|k| k.to_string()).collect(),
        cursor,
        from: None,
        batch_size: batch,
        defer_conversion: false,
    }
}

async fn read_all(source: &PostgresSource, request: ReadRequest) -> Vec<RowBatch> {
    source
        .read(request)
        .await
        .expect("read")
        .try_collect()
        .await
        .expect("complete")
}

#[tokio::test]
async fn sakila_introspects_like_the_catalog_and_reads_completely() {
    let Some(db) = Database::create() else { return };
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/sakila");
    db.psql_file(&format!("{data}/postgres-schema.sql"));
    db.psql_file(&format!("{data}/postgres-data.sql"));
    let source = db.source().await;
    let tables = source.introspect(None).await.expect("introspects");
    let mut admin = sqlx::PgConnection::connect(&db.url())
        .await
        .expect("connect");
    let (catalog_columns, catalog_pks, catalog_fks, catalog_indexes): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'),
                (SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public' AND contype = 'p'),
                (SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public' AND contype = 'f'),
                (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public')",
    )
    .fetch_one(&mut admin)
    .await
    .expect("catalog");
    let ours = |kind: ConstraintKind| {
        tables
            .iter()
            .flat_map(|t| &t.constraints)
            .filter(|c| c.kind == kind)
            .count() as i64
    };
    assert_eq!(
        tables.iter().map(|t| t.columns.len() as i64).sum::<i64>(),
        catalog_columns
    );
    assert_eq!(ours(ConstraintKind::PrimaryKey), catalog_pks);
    assert_eq!(ours(ConstraintKind::ForeignKey), catalog_fks);
    assert_eq!(
        tables.iter().map(|t| t.indexes.len() as i64).sum::<i64>(),
        catalog_indexes
    );

    // Every base table with a primary key reads completely.
    for table in tables
        .iter()
        .filter(|t| !t.primary_key().is_empty() && t.kind == syncbridge_api::TableKind::Base)
    {
        let key: Vec<String> = table.primary_key();
        let request = ReadRequest {
            key: key.clone(),
            ..request("public", &table.table.name, &[], CursorSpec::FullScan, 500)
        };
        let rows: usize = read_all(&source, request)
            .await
            .iter()
            .map(|b| b.rows.len())
            .sum();
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM public.\"{}\"",
            table.table.name
        ))
        .fetch_one(&mut admin)
        .await
        .expect("count");
        assert_eq!(rows as i64, count, "table {}", table.table.name);
    }

    let film = tables
        .iter()
        .find(|t| t.table.name == "film")
        .expect("film");
    assert!(
        matches!(film.column("rating").expect("rating").data_type, DataType::Enum { ref values } if values.contains(&"PG-13".to_owned()))
    );
    assert_eq!(
        film.column("special_features").expect("features").data_type,
        DataType::Json
    );
    let batches = read_all(
        &source,
        request("public", "film", &["film_id"], CursorSpec::FullScan, 1000),
    )
    .await;
    let first = &batches[0];
    let at = |name: &str| first.column_index(name).expect("column");
    let row = &first.rows[0].values;
    assert!(matches!(
        row[at("special_features")],
        Value::Json(serde_json::Value::Array(_)) | Value::Null
    ));
    assert!(matches!(row[at("rating")], Value::Text(_)));
    assert!(
        matches!(row[at("fulltext")], Value::Text(_)),
        "tsvector reads as its text form"
    );
    assert!(matches!(row[at("rental_rate")], Value::Decimal(_)));
}

#[tokio::test]
async fn awkward_identifiers_exact_numbers_and_composite_keys() {
    let Some(db) = Database::create() else { return };
    db.execute(r#"CREATE SCHEMA "Odd Schema";
        CREATE TABLE "Odd Schema"."select" ("Mixed Case" int, "we""ird" text, amount numeric(38,10), at timestamptz, tags text[], PRIMARY KEY ("Mixed Case", "we""ird"));
        INSERT INTO "Odd Schema"."select" SELECT i % 5, 'k' || i, 1234567890123456789012345678.0123456789, '2024-01-01 10:00:00+02', ARRAY['a','b'] FROM generate_series(1, 23) i;"#).await;
    let source = db.source().await;
    let batches = read_all(
        &source,
        request(
            "Odd Schema",
            "select",
            &["Mixed Case", "we\"ird"],
            CursorSpec::FullScan,
            4,
        ),
    )
    .await;
    let rows: Vec<&Vec<Value>> = batches
        .iter()
        .flat_map(|b| b.rows.iter().map(|r| &r.values))
        .collect();
    assert_eq!(rows.len(), 23);
    let unique: std::collections::HashSet<String> = rows
        .iter()
        .map(|r| format!("{:?}{:?}", r[0], r[1]))
        .collect();
    assert_eq!(unique.len(), 23, "no repeats across pages");
    assert_eq!(
        rows[0][2],
        Value::Decimal(
            "1234567890123456789012345678.0123456789"
                .parse()
                .expect("38 digits")
        )
    );
    match &rows[0][3] {
        Value::TimestampTz(t) => assert_eq!(
            t.with_timezone(&chrono::Utc).to_rfc3339(),
            "2024-01-01T08:00:00+00:00"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(rows[0][4], Value::Json(serde_json::json!(["a", "b"])));
}

#[tokio::test]
async fn updated_at_catches_late_commits_inside_the_look_back() {
    let Some(db) = Database::create() else { return };
    db.execute("CREATE TABLE p (id int PRIMARY KEY, updated_at timestamptz NOT NULL);
        INSERT INTO p SELECT i, '2026-01-01 10:00:00+00'::timestamptz + i * interval '1 second' FROM generate_series(1, 10) i;").await;
    let source = db.source().await;
    let spec = CursorSpec::UpdatedAt {
        column: "updated_at".into(),
        look_back: std::time::Duration::from_secs(30),
    };
    let first = read_all(&source, request("public", "p", &["id"], spec.clone(), 3)).await;
    assert_eq!(first.iter().map(|b| b.rows.len()).sum::<usize>(), 10);
    let position = first
        .last()
        .and_then(|b| b.position.clone())
        .expect("position");
    // A long transaction commits a row stamped before the watermark.
    db.execute("INSERT INTO p VALUES (11, '2026-01-01 10:00:05+00')")
        .await;
    let mut again = request("public", "p", &["id"], spec, 3);
    again.from = Some(position);
    let ids: Vec<Value> = read_all(&source, again)
        .await
        .iter()
        .flat_map(|b| b.rows.iter().map(|r| r.values[0].clone()))
        .collect();
    assert!(ids.contains(&Value::Int(11)), "{ids:?}");
}

#[tokio::test]
async fn unsupported_types_name_the_column_and_the_cast() {
    let Some(db) = Database::create() else { return };
    db.execute("CREATE TABLE g (id int PRIMARY KEY, spot point)")
        .await;
    let source = db.source().await;
    let error = source
        .read(request("public", "g", &["id"], CursorSpec::FullScan, 10))
        .await
        .err()
        .expect("point is unsupported");
    let text = error.to_string();
    assert!(text.contains("spot") && text.contains("point"), "{text}");
    assert!(
        error.hint().is_some_and(|h| h.contains("::text")),
        "{error:?}"
    );
}

/// Awkward text (tabs, newlines, backslashes, quotes, `\N` as text), bytes and NULLs come back
/// as stored, and a read resumes after such keys from a position.
#[tokio::test]
async fn escaped_text_and_nulls_survive_reads_and_resumes() {
    let Some(db) = Database::create() else { return };
    db.execute(
        r#"CREATE TABLE t (k text PRIMARY KEY, note text, data bytea, doc jsonb);
        INSERT INTO t VALUES
          (E'a\tb', E'line 1\nline 2', '\x00ff'::bytea, '{"q": "x\"y", "t": "\t"}'),
          (E'c\\d', NULL, NULL, NULL),
          ('e''f', '\N', ''::bytea, '[]'),
          (''' ); DROP TABLE t; --', E'\r\u00fc', '\x5c'::bytea, 'null'),
          ('g', '', NULL, '1');"#,
    )
    .await;
    let source = db.source().await;
    let rows = |batches: &[RowBatch]| -> Vec<Vec<Value>> {
        batches
            .iter()
            .flat_map(|b| b.rows.iter().map(|r| r.values.clone()))
            .collect()
    };
    let all = rows(
        &read_all(
            &source,
            request("public", "t", &["k"], CursorSpec::FullScan, 2),
        )
        .await,
    );
    assert_eq!(all.len(), 5);
    let by_key = |key: &str| {
        all.iter()
            .find(|r| r[0] == Value::Text(key.to_owned()))
            .unwrap_or_else(|| panic!("{key:?} read"))
            .clone()
    };
    assert_eq!(by_key("a\tb")[1], Value::Text("line 1\nline 2".into()));
    assert_eq!(by_key("a\tb")[2], Value::Bytes(vec![0x00, 0xff]));
    assert_eq!(
        by_key("a\tb")[3],
        Value::Json(serde_json::json!({"q": "x\"y", "t": "\t"}))
    );
    assert_eq!(by_key("c\\d")[1..], [Value::Null, Value::Null, Value::Null]);
    assert_eq!(by_key("e'f")[1], Value::Text("\\N".into()));
    assert_eq!(by_key("e'f")[2], Value::Bytes(Vec::new()));
    assert_eq!(
        by_key("' ); DROP TABLE t; --")[1],
        Value::Text("\r\u{fc}".into())
    );
    assert_eq!(
        by_key("' ); DROP TABLE t; --")[2],
        Value::Bytes(vec![b'\\'])
    );
    assert_eq!(by_key("g")[1], Value::Text(String::new()));

    // Resume after each batch's position: the rest of the table, in order, once.
    let batches = read_all(
        &source,
        request("public", "t", &["k"], CursorSpec::FullScan, 1),
    )
    .await;
    for (index, batch) in batches.iter().enumerate() {
        let mut resumed = request("public", "t", &["k"], CursorSpec::FullScan, 2);
        resumed.from = batch.position.clone();
        let rest = rows(&read_all(&source, resumed).await);
        assert_eq!(rest, all[index + 1..].to_vec(), "after batch {index}");
    }
}

/// A reader that converts rows itself (`defer_conversion`) gets the same rows, fingerprints
/// and positions, with the rows as read: converting them gives what the source converts.
#[tokio::test]
async fn rows_left_unconverted_convert_to_the_rows_the_source_converts() {
    let Some(db) = Database::create() else { return };
    db.execute(
        r#"CREATE TABLE t (id int PRIMARY KEY, name text, amount numeric(12,2), due date, tags text[]);
        INSERT INTO t SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE E'item\t' || g END,
            (g % 1000) / 10.0, date '2024-01-01' + g, ARRAY['a', 'b,' || g]
        FROM generate_series(1, 25) g;"#,
    )
    .await;
    let source = db.source().await;
    let converted = read_all(
        &source,
        request("public", "t", &["id"], CursorSpec::FullScan, 10),
    )
    .await;
    let mut deferred_request = request("public", "t", &["id"], CursorSpec::FullScan, 10);
    deferred_request.defer_conversion = true;
    let mut deferred = read_all(&source, deferred_request).await;
    assert_eq!(deferred.len(), converted.len());
    assert_eq!(deferred.iter().map(RowBatch::len).sum::<usize>(), 25);
    for (left, done) in deferred.iter_mut().zip(&converted) {
        assert!(left.rows.is_empty(), "rows are left as read");
        assert_eq!(
            left.unconverted.as_ref().map(|u| u.len()),
            Some(done.rows.len())
        );
        assert_eq!(left.fingerprints, done.fingerprints);
        assert_eq!(left.position, done.position);
        left.convert_rows(|_| false).expect("the rows convert");
        assert_eq!(left.rows, done.rows);
    }
}

/// Pages are read through `COPY`; a read dropped midway (a stopped run) must not hand the
/// pool a connection with the rest of the copy still on it. With a pool of one connection,
/// the next read would fail on the left-over messages.
#[tokio::test]
async fn a_read_dropped_midway_leaves_the_pool_usable() {
    let Some(db) = Database::create() else { return };
    db.execute(
        "CREATE TABLE t (id int PRIMARY KEY, note text);
         INSERT INTO t SELECT g, 'note ' || g FROM generate_series(1, 25000) g;",
    )
    .await;
    let config: PostgresSourceConfig =
        serde_json::from_value(serde_json::json!({"database": db.name, "pool_size": 1}))
            .expect("config");
    let source = PostgresSource::connect(config).await.expect("connects");
    let mut stream = source
        .read(request("public", "t", &["id"], CursorSpec::FullScan, 100))
        .await
        .expect("read");
    for _ in 0..3 {
        stream.try_next().await.expect("batch").expect("a batch");
    }
    drop(stream);

    // Three pages of 10,000 rows at most, each once, in key order.
    let batches = read_all(
        &source,
        request("public", "t", &["id"], CursorSpec::FullScan, 1000),
    )
    .await;
    let ids: Vec<Value> = batches
        .iter()
        .flat_map(|b| b.rows.iter().map(|r| r.values[0].clone()))
        .collect();
    assert_eq!(ids.len(), 25_000);
    assert!(
        ids.iter()
            .zip(1..)
            .all(|(id, expected)| *id == Value::Int(expected)),
        "every row once, in key order"
    );
}
