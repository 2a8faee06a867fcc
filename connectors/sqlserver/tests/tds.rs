//! The SQL Server source over real TDS, against the TDS test server: introspection, type
//! mapping (with the values tiberius would panic on), keyset reads, `UPDATED_AT`, change
//! tracking and rowversion cursors, a purged change-tracking gap, a server error mid-stream —
//! and every SQL text the source sent parsed by a T-SQL parser.

use chrono::{DateTime, NaiveDate};
use futures::StreamExt as _;
use syncbridge_api::{
    ConstraintKind, CursorSpec, DataType, ErrorDomain, Position, ReadRequest, RowBatch, RowKind,
    Source as _, TableRef, Value,
};
use syncbridge_sqlserver::{SqlServerConfig, SqlServerSource};
use syncbridge_tds_server::{Column, Database, SqlType, SqlValue, TdsServer};

fn config(server: &TdsServer) -> SqlServerConfig {
    serde_json::from_value(serde_json::json!({
        "host": "127.0.0.1",
        "port": server.address().port(),
        "database": "pmo",
        "user": "sync",
        "password": "secret",
        "options": { "encrypt": "not_supported" }
    }))
    .expect("config")
}

fn projects() -> Database {
    let mut db = Database::new("pmo");
    db.create_table(
        "dbo",
        "projects",
        vec![
            Column::new("region", SqlType::NVarChar(Some(10))).not_null(),
            Column::new("id", SqlType::Int).not_null(),
            Column::new("name", SqlType::NVarChar(Some(100))).not_null(),
            Column::new("budget", SqlType::Decimal(12, 2)),
            Column::new("ratio", SqlType::Decimal(38, 38)),
            Column::new("path", SqlType::Unsupported("hierarchyid")),
            Column::new("updated_at", SqlType::DateTime2(7)).not_null(),
            Column::new("zoned", SqlType::DateTimeOffset(7)),
            Column::new("ref", SqlType::UniqueIdentifier),
        ],
        &["region", "id"],
    )
    .unique
    .push(("UQ_projects_ref".into(), vec!["ref".into()]));
    db
}

fn at(day: u32, second: u32) -> SqlValue {
    SqlValue::DateTime(
        NaiveDate::from_ymd_opt(2024, 5, day)
            .and_then(|d| d.and_hms_opt(12, 0, second))
            .expect("a time"),
    )
}

fn project(region: &str, id: i64, name: &str, day: u32) -> Vec<(&'static str, SqlValue)> {
    vec![
        ("region", SqlValue::Text(region.into())),
        ("id", SqlValue::Int(id)),
        ("name", SqlValue::Text(name.into())),
        ("budget", SqlValue::Decimal(123_456_789 + id as i128, 2)),
        (
            "ratio",
            SqlValue::Decimal(12_345_678_901_234_567_890_123_456_789_012_345_678, 38),
        ),
        ("path", SqlValue::Text(format!("/{id}/"))),
        ("updated_at", at(day, id as u32 % 60)),
        (
            "zoned",
            SqlValue::DateTimeOffset(
                DateTime::parse_from_rfc3339("2024-05-01T08:00:00-07:00").expect("rfc3339"),
            ),
        ),
    ]
}

fn request(cursor: CursorSpec, from: Option<Position>, batch_size: usize) -> ReadRequest {
    ReadRequest {
        table: TableRef::new(Some("dbo"), "projects"),
        columns: vec![
            "region".into(),
            "id".into(),
            "name".into(),
            "budget".into(),
            "ratio".into(),
            "path".into(),
            "zoned".into(),
        ],
        key: vec!["region".into(), "id".into()],
        cursor,
        from,
        batch_size,
        defer_conversion: false,
    }
}

async fn read_all(source: &SqlServerSource, request: ReadRequest) -> Vec<RowBatch> {
    source
        .read(request)
        .await
        .expect("read starts")
        .map(|b| b.expect("a batch"))
        .collect()
        .await
}

fn ids(batches: &[RowBatch]) -> Vec<(String, i64, RowKind)> {
    batches
        .iter()
        .flat_map(|b| &b.rows)
        .map(|r| match (&r.values[0], &r.values[1]) {
            (Value::Text(region), Value::Int(id)) => (region.clone(), *id, r.kind),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// Every statement the server received parses as T-SQL (the one rewrite is CHANGETABLE's
/// `CHANGES` keyword, which sqlparser's grammar lacks).
fn assert_all_parse(server: &TdsServer) {
    let queries = server.queries();
    assert!(!queries.is_empty());
    for sql in queries {
        let text = syncbridge_tds_server::query::rewrite_changetable(&sql);
        if let Err(error) =
            sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::MsSqlDialect {}, &text)
        {
            panic!("`{sql}` is not valid T-SQL: {error}");
        }
    }
}

#[tokio::test]
async fn introspection_reads_the_catalog() {
    let mut db = projects();
    db.create_table(
        "sales",
        "maps",
        vec![
            Column::new("id", SqlType::BigInt).not_null(),
            Column::new("shape", SqlType::Unsupported("geography")),
        ],
        &["id"],
    );
    for id in 1..=3 {
        db.insert("dbo", "projects", &project("EU", id, "p", 1))
            .expect("insert");
    }
    let server = TdsServer::start(db).await.expect("server");
    let source = SqlServerSource::connect(config(&server))
        .await
        .expect("connects");
    source.healthcheck().await.expect("healthy");
    let tables = source.introspect(None).await.expect("introspects");
    let names: Vec<String> = tables.iter().map(|t| t.table.to_string()).collect();
    assert_eq!(names, ["dbo.projects", "sales.maps"]);
    let projects = &tables[0];
    assert_eq!(projects.primary_key(), ["region", "id"]);
    assert_eq!(projects.row_estimate, Some(3));
    let unique = projects
        .constraints
        .iter()
        .find(|c| c.kind == ConstraintKind::Unique)
        .expect("unique");
    assert_eq!(unique.columns, ["ref"]);
    let column = |name: &str| projects.column(name).expect(name);
    assert_eq!(
        column("budget").data_type,
        DataType::Decimal {
            precision: Some(12),
            scale: Some(2)
        }
    );
    assert_eq!(column("budget").native_type, "decimal(12,2)");
    assert_eq!(
        column("name").data_type,
        DataType::Text {
            max_length: Some(100)
        }
    );
    assert!(!column("name").nullable && column("budget").nullable);
    assert_eq!(column("zoned").data_type, DataType::TimestampTz);
    assert_eq!(column("ref").data_type, DataType::Uuid);
    assert!(column("region").is_primary_key && column("id").is_primary_key);
    // Without VIEW DATABASE STATE, row estimates come from sys.partitions.
    server.with_database(|db| db.deny_view_database_state = true);
    let tables = source.introspect(None).await.expect("introspects");
    assert_eq!(tables[0].row_estimate, Some(3));
    // One table by name; an unknown one is named.
    let one = source
        .introspect(Some(&[TableRef::new(Some("sales"), "maps")]))
        .await
        .expect("one");
    assert_eq!(one.len(), 1);
    let error = source
        .introspect(Some(&[TableRef::new(None, "nope")]))
        .await
        .expect_err("unknown");
    assert!(error.message().contains("`nope` does not exist"), "{error}");
    // A geography column is refused with its name and type, and what to do.
    let error = source
        .read(ReadRequest {
            table: TableRef::new(Some("sales"), "maps"),
            columns: vec!["id".into(), "shape".into()],
            key: vec!["id".into()],
            cursor: CursorSpec::FullScan,
            from: None,
            batch_size: 10,
            defer_conversion: false,
        })
        .await
        .err()
        .expect("refused");
    assert!(
        error.message().contains("`shape`") && error.message().contains("geography"),
        "{error}"
    );
    assert!(error.hint().is_some_and(|h| h.contains("CAST")));
    assert_all_parse(&server);
}

#[tokio::test]
async fn keyset_reads_page_by_the_composite_key_and_resume() {
    let mut db = projects();
    // Ties on the first key column; inserted out of order.
    for (region, id) in [
        ("US", 2),
        ("EU", 3),
        ("US", 1),
        ("EU", 1),
        ("EU", 2),
        ("AP", 9),
    ] {
        db.insert(
            "dbo",
            "projects",
            &project(region, id, &format!("{region}-{id}"), 1),
        )
        .expect("insert");
    }
    let server = TdsServer::start(db).await.expect("server");
    let source = SqlServerSource::connect(config(&server))
        .await
        .expect("connects");
    let batches = read_all(&source, request(CursorSpec::FullScan, None, 2)).await;
    assert_eq!(batches.len(), 3);
    let order: Vec<(String, i64)> = ids(&batches).into_iter().map(|(r, i, _)| (r, i)).collect();
    let expected: Vec<(String, i64)> = [
        ("AP", 9),
        ("EU", 1),
        ("EU", 2),
        ("EU", 3),
        ("US", 1),
        ("US", 2),
    ]
    .iter()
    .map(|(r, i)| ((*r).to_owned(), *i))
    .collect();
    assert_eq!(order, expected);
    // Values: exact decimals, decimal(38,38) through text, hierarchyid through a cast, the offset kept.
    let first = &batches[0].rows[0].values;
    assert_eq!(first[3].to_string(), "1234567.98");
    assert_eq!(
        first[4].to_string(),
        "0.12345678901234567890123456789012345678"
    );
    assert_eq!(first[5], Value::Text("/9/".into()));
    match &first[6] {
        Value::TimestampTz(t) => assert_eq!(t.to_rfc3339(), "2024-05-01T08:00:00-07:00"),
        other => panic!("{other:?}"),
    }
    // Resume after the second batch: only the last two rows.
    let rest = read_all(
        &source,
        request(CursorSpec::FullScan, batches[1].position.clone(), 2),
    )
    .await;
    let rest: Vec<i64> = ids(&rest).into_iter().map(|(_, i, _)| i).collect();
    assert_eq!(rest, [1, 2]);
    assert!(server.queries().iter().any(|q| q.contains("TOP (2)")
        && q.contains("([region] > @P1) OR ([region] = @P2 AND [id] > @P3)")));
    assert_all_parse(&server);
}

#[tokio::test]
async fn updated_at_reads_from_the_watermark_minus_the_look_back() {
    let mut db = projects();
    for id in 1..=4 {
        db.insert("dbo", "projects", &project("EU", id, "p", id as u32))
            .expect("insert");
    }
    let server = TdsServer::start(db).await.expect("server");
    let source = SqlServerSource::connect(config(&server))
        .await
        .expect("connects");
    let cursor = CursorSpec::UpdatedAt {
        column: "updated_at".into(),
        look_back: std::time::Duration::from_secs(3600),
    };
    let first = read_all(&source, request(cursor.clone(), None, 10)).await;
    assert_eq!(ids(&first).len(), 4);
    let position = first.last().and_then(|b| b.position.clone());
    // One row changes (a later timestamp), one is added; the last row before the watermark
    // comes again because of the look-back (a no-op for the engine).
    server.with_database(|db| {
        db.update(
            "dbo",
            "projects",
            &[SqlValue::Text("EU".into()), SqlValue::Int(2)],
            &[
                ("name", SqlValue::Text("renamed".into())),
                ("updated_at", at(9, 0)),
            ],
        )
        .expect("update");
        db.insert("dbo", "projects", &project("EU", 5, "new", 10))
            .expect("insert");
    });
    let second = read_all(&source, request(cursor, position, 10)).await;
    let second: Vec<i64> = ids(&second).into_iter().map(|(_, i, _)| i).collect();
    assert_eq!(second, [4, 2, 5]);
    assert_all_parse(&server);
}

#[tokio::test]
async fn change_tracking_snapshots_then_captures_inserts_updates_and_deletes() {
    let mut db = projects();
    for id in 1..=5 {
        db.insert("dbo", "projects", &project("EU", id, "p", 1))
            .expect("insert");
    }
    db.enable_change_tracking("dbo", "projects")
        .expect("tracking");
    let server = TdsServer::start(db).await.expect("server");
    let source = SqlServerSource::connect(config(&server))
        .await
        .expect("connects");
    let lsn = CursorSpec::Lsn {
        options: serde_json::Value::Null,
    };

    // First read: the snapshot of 5 rows, resumable, then a position past it.
    let first = read_all(&source, request(lsn.clone(), None, 2)).await;
    assert_eq!(ids(&first).len(), 5);
    let position = first
        .last()
        .and_then(|b| b.position.clone())
        .expect("a position");
    assert!(position.0.contains("change_tracking"), "{position:?}");

    server.with_database(|db| {
        let key = |id: i64| [SqlValue::Text("EU".into()), SqlValue::Int(id)];
        db.insert("dbo", "projects", &project("EU", 6, "six", 2))
            .expect("insert");
        db.update(
            "dbo",
            "projects",
            &key(2),
            &[("name", SqlValue::Text("two".into()))],
        )
        .expect("update");
        db.delete("dbo", "projects", &key(3)).expect("delete");
        db.insert("dbo", "projects", &project("EU", 7, "gone", 2))
            .expect("insert");
        db.delete("dbo", "projects", &key(7)).expect("delete");
    });
    let second = read_all(&source, request(lsn.clone(), Some(position), 2)).await;
    let mut changes = ids(&second);
    changes.sort_by_key(|(region, id, _)| (region.clone(), *id));
    assert_eq!(
        changes,
        [
            ("EU".to_owned(), 2, RowKind::Upsert),
            ("EU".to_owned(), 3, RowKind::Delete),
            ("EU".to_owned(), 6, RowKind::Upsert),
            ("EU".to_owned(), 7, RowKind::Delete),
        ]
    );
    let renamed = second
        .iter()
        .flat_map(|b| &b.rows)
        .find(|r| r.values[1] == Value::Int(2))
        .expect("row 2");
    assert_eq!(renamed.values[2], Value::Text("two".into()));
    // Nothing new: no rows, and the position holds.
    let position = second
        .last()
        .and_then(|b| b.position.clone())
        .expect("a position");
    let third = read_all(&source, request(lsn.clone(), Some(position.clone()), 2)).await;
    assert!(ids(&third).is_empty());

    // Cleanup purges history past the position: the read refuses, asking for a full read.
    server.with_database(|db| {
        db.update(
            "dbo",
            "projects",
            &[SqlValue::Text("EU".into()), SqlValue::Int(1)],
            &[("name", SqlValue::Text("x".into()))],
        )
        .expect("update");
        db.purge_change_tracking("dbo", "projects").expect("purge");
    });
    let error = source
        .read(request(lsn, Some(position), 2))
        .await
        .err()
        .expect("refused");
    assert_eq!(error.domain(), ErrorDomain::User);
    assert!(error.message().contains("cleaned up"), "{error}");
    assert!(error.is_full_read_required(), "{error}");
    assert!(
        server
            .queries()
            .iter()
            .any(|q| q.contains("CHANGETABLE(CHANGES"))
    );
    assert_all_parse(&server);
}

#[tokio::test]
async fn rowversion_reads_below_the_minimum_active_rowversion() {
    let mut db = Database::new("pmo");
    db.create_table(
        "dbo",
        "projects",
        vec![
            Column::new("region", SqlType::NVarChar(Some(10))).not_null(),
            Column::new("id", SqlType::Int).not_null(),
            Column::new("name", SqlType::NVarChar(Some(100))),
            Column::new("rv", SqlType::RowVersion).not_null(),
        ],
        &["region", "id"],
    );
    for id in 1..=3 {
        db.insert(
            "dbo",
            "projects",
            &[
                ("region", SqlValue::Text("EU".into())),
                ("id", SqlValue::Int(id)),
            ],
        )
        .expect("insert");
    }
    let server = TdsServer::start(db).await.expect("server");
    let source = SqlServerSource::connect(config(&server))
        .await
        .expect("connects");
    let lsn = CursorSpec::Lsn {
        options: serde_json::Value::Null,
    };
    let request = |from| ReadRequest {
        table: TableRef::new(Some("dbo"), "projects"),
        columns: vec!["region".into(), "id".into(), "name".into()],
        key: vec!["region".into(), "id".into()],
        cursor: lsn.clone(),
        from,
        batch_size: 2,
        defer_conversion: false,
    };
    let first = read_all(&source, request(None)).await;
    assert_eq!(ids(&first).len(), 3);
    let position = first.last().and_then(|b| b.position.clone());

    // Row 1 is updated and committed; row 4 is written by a transaction still open (its
    // rowversion is active), then row 5 commits after it.
    let open = server.with_database(|db| {
        db.update(
            "dbo",
            "projects",
            &[SqlValue::Text("EU".into()), SqlValue::Int(1)],
            &[("name", SqlValue::Text("one".into()))],
        )
        .expect("update");
        db.insert(
            "dbo",
            "projects",
            &[
                ("region", SqlValue::Text("EU".into())),
                ("id", SqlValue::Int(4)),
            ],
        )
        .expect("insert");
        let open = db.rowversion;
        db.active_rowversions.push(open);
        db.insert(
            "dbo",
            "projects",
            &[
                ("region", SqlValue::Text("EU".into())),
                ("id", SqlValue::Int(5)),
            ],
        )
        .expect("insert");
        open
    });
    let second = read_all(&source, request(position)).await;
    let second_ids: Vec<i64> = ids(&second).into_iter().map(|(_, i, _)| i).collect();
    // Only row 1: rows at or after the open transaction's rowversion wait for it.
    assert_eq!(second_ids, [1]);
    let position = second.last().and_then(|b| b.position.clone());
    server.with_database(|db| db.active_rowversions.retain(|v| *v != open));
    let third = read_all(&source, request(position)).await;
    let third_ids: Vec<i64> = ids(&third).into_iter().map(|(_, i, _)| i).collect();
    assert_eq!(third_ids, [4, 5]);
    assert!(
        server
            .queries()
            .iter()
            .any(|q| q.contains("MIN_ACTIVE_ROWVERSION()"))
    );
    assert_all_parse(&server);
}

#[tokio::test]
async fn a_server_error_mid_stream_is_a_clear_retriable_error() {
    let mut db = projects();
    for id in 1..=10 {
        db.insert("dbo", "projects", &project("EU", id, "p", 1))
            .expect("insert");
    }
    let server = TdsServer::start(db).await.expect("server");
    let source = SqlServerSource::connect(config(&server))
        .await
        .expect("connects");
    server.fail_reads_after("projects", 3);
    let items: Vec<_> = source
        .read(request(CursorSpec::FullScan, None, 5))
        .await
        .expect("starts")
        .collect()
        .await;
    let error = items
        .iter()
        .find_map(|i| i.as_ref().err())
        .expect("an error");
    assert!(
        error.message().contains("deadlock victim") && error.message().contains("127.0.0.1"),
        "{error}"
    );
    assert!(error.is_retriable());

    // Unreachable server and wrong database: named, with what to do.
    let mut wrong = config(&server);
    wrong.database = "nosuch".into();
    let error = SqlServerSource::connect(wrong).await.expect_err("refused");
    assert_eq!(error.domain(), ErrorDomain::User);
    assert!(error.message().contains("Cannot open database"), "{error}");
    let mut closed = config(&server);
    closed.port = 1;
    let error = SqlServerSource::connect(closed).await.expect_err("refused");
    assert_eq!(error.domain(), ErrorDomain::External);
    assert!(
        error
            .message()
            .contains("cannot reach SQL Server at 127.0.0.1:1"),
        "{error}"
    );
}

#[tokio::test]
async fn a_large_table_streams_in_batches() {
    let mut db = Database::new("pmo");
    db.create_table(
        "dbo",
        "events",
        vec![
            Column::new("id", SqlType::BigInt).not_null(),
            Column::new("label", SqlType::NVarChar(Some(40))),
        ],
        &["id"],
    );
    for id in 0..200_000i64 {
        db.insert(
            "dbo",
            "events",
            &[
                ("id", SqlValue::Int(id)),
                ("label", SqlValue::Text(format!("event {id}"))),
            ],
        )
        .expect("insert");
    }
    let server = TdsServer::start(db).await.expect("server");
    let source = SqlServerSource::connect(config(&server))
        .await
        .expect("connects");
    let mut stream = source
        .read(ReadRequest {
            table: TableRef::new(None, "events"),
            columns: Vec::new(),
            key: vec!["id".into()],
            cursor: CursorSpec::FullScan,
            from: None,
            batch_size: 10_000,
            defer_conversion: false,
        })
        .await
        .expect("starts");
    let (mut rows, mut batches, mut next) = (0usize, 0usize, 0i64);
    while let Some(batch) = stream.next().await {
        let batch = batch.expect("a batch");
        assert!(batch.rows.len() <= 10_000);
        for row in &batch.rows {
            assert_eq!(row.values[0], Value::Int(next));
            next += 1;
        }
        rows += batch.rows.len();
        batches += 1;
    }
    assert_eq!((rows, batches), (200_000, 20));
}
