//! The MySQL source against the real MariaDB 10.11 on 127.0.0.1:3306, each test in its own
//! database: every type trap with a row that exercises it, introspection, keyset reads over a
//! composite key with ties, and UPDATED_AT with a late commit inside the look-back.

use std::time::Duration;

use futures::TryStreamExt as _;
use syncbridge_api::{
    ConstraintKind, CursorSpec, DataType, Position, ReadRequest, RowBatch, Source as _, TableRef,
    Value,
};
use syncbridge_mysql::{MySqlSource, MySqlSourceConfig};
use syncbridge_store::testing::MariaDatabase;

async fn connect(db: &MariaDatabase) -> MySqlSource {
    let config: MySqlSourceConfig =
        serde_json::from_value(serde_json::json!({"database": db.name})).expect("config");
    MySqlSource::connect(config).await.expect("connect")
}

async fn read_all(
    source: &MySqlSource,
    table: &str,
    key: &[&str],
    cursor: CursorSpec,
    from: Option<Position>,
    batch_size: usize,
) -> Vec<RowBatch> {
    source
        .read(ReadRequest {
            table: TableRef::new(None, table),
            columns: Vec::new(),
            key: key.iter().map(|k| (*k).to_owned()).collect(),
            cursor,
            from,
            batch_size,
            defer_conversion: false,
        })
        .await
        .expect("read")
        .try_collect()
        .await
        .expect("batches")
}

fn column(batch: &RowBatch, row: usize, name: &str) -> Value {
    let index = batch.column_index(name).expect("column");
    batch.rows[row].values[index].clone()
}

#[tokio::test]
async fn every_type_trap_reads_as_documented() {
    let Some(db) = MariaDatabase::create("mytypes") else {
        return;
    };
    db.execute(
        "SET SESSION sql_mode = '';
         CREATE TABLE traps (
            id INT PRIMARY KEY,
            flag TINYINT(1), small TINYINT, big BIGINT UNSIGNED, exact DECIMAL(65,30),
            zero_date DATE, zero_dt DATETIME, at_ts TIMESTAMP NULL, at_dt DATETIME(6),
            doc JSON, colour ENUM('red','green','it''s'), tags SET('a','b','c'),
            data BLOB, body TEXT, ratio FLOAT, label VARCHAR(20), clock TIME);
         SET SESSION time_zone = '+02:00';
         INSERT INTO traps VALUES (1, 1, 7, 18446744073709551615, 12345678901234567.123456789012345678901,
            '0000-00-00', '0000-00-00 00:00:00', '2024-05-01 12:00:00', '2024-05-01 12:00:00.123456',
            '{\"k\": [1, 2]}', 'it''s', 'a,c', X'00FF10', 'héllo', 1.1, 'label', '10:11:12');
         INSERT INTO traps (id, flag) VALUES (2, 0);",
    );
    let source = connect(&db).await;
    let tables = source
        .introspect(Some(&[TableRef::new(None, "traps")]))
        .await
        .expect("introspect");
    let types: std::collections::HashMap<&str, &DataType> = tables[0]
        .columns
        .iter()
        .map(|c| (c.name.as_str(), &c.data_type))
        .collect();
    assert_eq!(types["flag"], &DataType::Bool, "TINYINT(1) is a boolean");
    assert_eq!(
        types["small"],
        &DataType::Int {
            bits: 8,
            unsigned: false
        }
    );
    assert!(matches!(
        types["big"],
        DataType::Decimal { scale: Some(0), .. }
    ));
    assert_eq!(types["at_ts"], &DataType::TimestampTz);
    assert_eq!(types["at_dt"], &DataType::Timestamp);
    assert_eq!(
        types["colour"],
        &DataType::Enum {
            values: vec!["red".into(), "green".into(), "it's".into()]
        }
    );
    assert!(matches!(types["data"], DataType::Bytes { .. }));

    let batches = read_all(&source, "traps", &["id"], CursorSpec::FullScan, None, 10).await;
    let b = &batches[0];
    assert_eq!(column(b, 0, "flag"), Value::Bool(true));
    assert_eq!(column(b, 1, "flag"), Value::Bool(false));
    assert_eq!(column(b, 0, "small"), Value::Int(7));
    assert_eq!(
        column(b, 0, "big").to_string(),
        "18446744073709551615",
        "BIGINT UNSIGNED beyond i64 stays exact"
    );
    assert_eq!(
        column(b, 0, "exact").to_string(),
        "12345678901234567.123456789012345678901",
        "DECIMAL digits kept exactly"
    );
    assert_eq!(column(b, 0, "zero_date"), Value::Null, "zero date is NULL");
    assert_eq!(
        column(b, 0, "zero_dt"),
        Value::Null,
        "zero datetime is NULL"
    );
    // Written at 12:00 in +02:00: the TIMESTAMP is the instant 10:00 UTC; the DATETIME keeps the
    // wall-clock time it was given.
    assert_eq!(
        column(b, 0, "at_ts"),
        Value::TimestampTz(
            chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:00+00:00").expect("instant")
        )
    );
    assert_eq!(
        column(b, 0, "at_dt"),
        Value::Timestamp(
            chrono::NaiveDateTime::parse_from_str(
                "2024-05-01 12:00:00.123456",
                "%Y-%m-%d %H:%M:%S%.f"
            )
            .expect("datetime")
        )
    );
    // MariaDB's JSON is LONGTEXT with a json_valid check: it reads as text holding the document.
    let doc = column(b, 0, "doc");
    assert!(
        matches!(&doc, Value::Text(t) if t.contains("\"k\"")) || matches!(&doc, Value::Json(_)),
        "{doc:?}"
    );
    assert_eq!(column(b, 0, "colour"), Value::Text("it's".into()));
    assert_eq!(column(b, 0, "tags"), Value::Text("a,c".into()));
    assert_eq!(column(b, 0, "data"), Value::Bytes(vec![0x00, 0xff, 0x10]));
    assert_eq!(column(b, 0, "body"), Value::Text("héllo".into()));
    assert_eq!(column(b, 0, "ratio"), Value::Float(1.1));
    assert_eq!(
        column(b, 0, "clock"),
        Value::Time(chrono::NaiveTime::from_hms_opt(10, 11, 12).expect("time"))
    );

    // A decimal beyond the core model's 38 digits is refused with the way out.
    db.execute(
        "CREATE TABLE wide (id INT PRIMARY KEY, v DECIMAL(65,0));
         INSERT INTO wide VALUES (1, 12345678901234567890123456789012345678901234567890);",
    );
    let error = source
        .read(ReadRequest {
            table: TableRef::new(None, "wide"),
            columns: Vec::new(),
            key: vec!["id".into()],
            cursor: CursorSpec::FullScan,
            from: None,
            batch_size: 10,
            defer_conversion: false,
        })
        .await
        .expect("read starts")
        .try_collect::<Vec<_>>()
        .await
        .expect_err("too wide");
    assert!(
        error.to_string().contains("column `v`")
            && error.to_string().contains("38 significant digits"),
        "{error}"
    );
}

#[tokio::test]
async fn introspection_reports_keys_indexes_and_foreign_keys() {
    let Some(db) = MariaDatabase::create("myintro") else {
        return;
    };
    db.execute(
        "CREATE TABLE owners (id INT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(80) NOT NULL UNIQUE);
         CREATE TABLE pets (owner_id INT NOT NULL, name VARCHAR(40) NOT NULL, kind VARCHAR(10),
            PRIMARY KEY (owner_id, name), KEY ix_kind (kind),
            CONSTRAINT fk_owner FOREIGN KEY (owner_id) REFERENCES owners (id));
         CREATE VIEW pet_names AS SELECT name FROM pets;",
    );
    let source = connect(&db).await;
    let tables = source.introspect(None).await.expect("introspect");
    let names: Vec<&str> = tables.iter().map(|t| t.table.name.as_str()).collect();
    assert_eq!(
        names,
        ["owners", "pet_names", "pets"],
        "sorted by name bytes"
    );
    let owners = &tables[0];
    assert_eq!(owners.primary_key(), ["id"]);
    let id = &owners.columns[0];
    assert!(id.is_identity && id.is_primary_key && !id.nullable);
    assert!(owners.columns[1].is_unique, "email is unique");
    assert_eq!(
        owners.columns[1].data_type,
        DataType::Text {
            max_length: Some(80)
        }
    );
    let pets = &tables[2];
    assert_eq!(pets.primary_key(), ["owner_id", "name"]);
    let fk = pets
        .constraints
        .iter()
        .find(|c| c.kind == ConstraintKind::ForeignKey)
        .expect("foreign key");
    assert_eq!(
        (
            fk.name.as_str(),
            fk.columns.clone(),
            fk.referenced_table.as_ref().map(|t| t.name.clone()),
            fk.referenced_columns.clone()
        ),
        (
            "fk_owner",
            vec!["owner_id".to_owned()],
            Some("owners".to_owned()),
            vec!["id".to_owned()]
        )
    );
    assert!(
        pets.indexes
            .iter()
            .any(|i| i.name == "ix_kind" && !i.is_unique)
    );
    assert_eq!(tables[1].kind, syncbridge_api::TableKind::View);

    let error = source
        .introspect(Some(&[TableRef::new(None, "nope")]))
        .await
        .expect_err("missing table");
    assert!(
        error.to_string().contains("`nope` does not exist"),
        "{error}"
    );
}

#[tokio::test]
async fn keyset_reads_page_a_composite_key_with_ties_and_resume() {
    let Some(db) = MariaDatabase::create("mykeys") else {
        return;
    };
    let mut sql =
        String::from("CREATE TABLE ties (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b));");
    for a in 0..5 {
        for b in ["x", "y", "z", "xx"] {
            sql.push_str(&format!("INSERT INTO ties VALUES ({a}, '{b}', {a});"));
        }
    }
    db.execute(&sql);
    let source = connect(&db).await;
    let batches = read_all(&source, "ties", &["a", "b"], CursorSpec::FullScan, None, 3).await;
    let keys: Vec<(Value, Value)> = batches
        .iter()
        .flat_map(|b| {
            b.rows
                .iter()
                .map(|r| (r.values[0].clone(), r.values[1].clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(keys.len(), 20, "every row once");
    let mut sorted = keys.clone();
    sorted.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
    sorted.dedup();
    assert_eq!(sorted.len(), 20, "no row twice");
    assert_eq!(batches.len(), 7);

    // Resuming from the third batch's position yields exactly the rows after it.
    let from = batches[2].position.clone();
    let rest = read_all(&source, "ties", &["a", "b"], CursorSpec::FullScan, from, 3).await;
    let rest_count: usize = rest.iter().map(RowBatch::len).sum();
    assert_eq!(rest_count, 20 - 9);
}

#[tokio::test]
async fn updated_at_rereads_the_look_back_and_catches_late_commits() {
    let Some(db) = MariaDatabase::create("myupd") else {
        return;
    };
    db.execute(
        "CREATE TABLE events (id INT PRIMARY KEY, note VARCHAR(20), changed DATETIME(3) NOT NULL);
         INSERT INTO events VALUES (1, 'a', '2024-01-01 10:00:00'), (2, 'b', '2024-01-01 10:00:05'),
            (3, 'c', '2024-01-01 10:00:10');",
    );
    let source = connect(&db).await;
    let cursor = CursorSpec::UpdatedAt {
        column: "changed".into(),
        look_back: Duration::from_secs(30),
    };
    let first = read_all(&source, "events", &["id"], cursor.clone(), None, 2).await;
    assert_eq!(first.iter().map(RowBatch::len).sum::<usize>(), 3);
    let position = first.last().and_then(|b| b.position.clone());

    // A writer that started before the last read commits a row stamped before the watermark.
    db.execute("INSERT INTO events VALUES (4, 'late', '2024-01-01 10:00:02');");
    let second = read_all(&source, "events", &["id"], cursor, position, 2).await;
    let ids: Vec<Value> = second
        .iter()
        .flat_map(|b| {
            b.rows
                .iter()
                .map(|r| r.values[0].clone())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        ids.contains(&Value::Int(4)),
        "the late row is read: {ids:?}"
    );
}
