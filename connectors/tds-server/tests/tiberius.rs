//! The test server against the real client: tiberius connects over TCP, logs in, and reads
//! every supported type back exactly, through batches and `sp_executesql` with parameters.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use futures::TryStreamExt as _;
use syncbridge_tds_server::{Column, Database, SqlType, SqlValue, TdsServer};
use tiberius::numeric::Numeric;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt as _};
use uuid::Uuid;

type Tds = Client<Compat<TcpStream>>;

async fn connect(server: &TdsServer, database: &str) -> tiberius::Result<Tds> {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(server.address().port());
    config.database(database);
    config.authentication(AuthMethod::sql_server("sync", "not-checked"));
    config.encryption(EncryptionLevel::NotSupported);
    let tcp = TcpStream::connect(server.address()).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a date")
}

fn time(h: u32, m: u32, s: u32, nanos: u32) -> NaiveTime {
    NaiveTime::from_hms_nano_opt(h, m, s, nanos).expect("a time")
}

/// A table with a column of every type, and rows at the boundaries.
fn typed_database() -> Database {
    let mut db = Database::new("sales");
    db.create_table(
        "dbo",
        "everything",
        vec![
            Column::new("id", SqlType::Int).not_null(),
            Column::new("tiny", SqlType::TinyInt),
            Column::new("small", SqlType::SmallInt),
            Column::new("big", SqlType::BigInt),
            Column::new("flag", SqlType::Bit),
            Column::new("price", SqlType::Decimal(38, 4)),
            Column::new("ratio", SqlType::Float),
            Column::new("approx", SqlType::Real),
            Column::new("name", SqlType::NVarChar(Some(50))),
            Column::new("code", SqlType::VarChar(Some(10))),
            Column::new("notes", SqlType::NVarChar(None)),
            Column::new("blob", SqlType::VarBinary(Some(16))),
            Column::new("born", SqlType::Date),
            Column::new("at", SqlType::Time(7)),
            Column::new("legacy", SqlType::DateTime),
            Column::new("stamp", SqlType::DateTime2(7)),
            Column::new("zoned", SqlType::DateTimeOffset(7)),
            Column::new("guid", SqlType::UniqueIdentifier),
        ],
        &["id"],
    );
    db
}

fn row_one() -> Vec<(&'static str, SqlValue)> {
    vec![
        ("id", SqlValue::Int(1)),
        ("tiny", SqlValue::Int(255)),
        ("small", SqlValue::Int(-32768)),
        ("big", SqlValue::Int(i64::MAX)),
        ("flag", SqlValue::Bool(true)),
        // 34 digits before the point, 4 after: beyond rust_decimal's 28.
        (
            "price",
            SqlValue::Decimal(-9_999_999_999_999_999_999_999_999_999_999_999_999, 4),
        ),
        ("ratio", SqlValue::Float(-1.5e300)),
        ("approx", SqlValue::Float(0.25)),
        ("name", SqlValue::Text("Zoë – 東京 🚀".into())),
        ("code", SqlValue::Text("ABC-é".into())),
        ("notes", SqlValue::Text("x".repeat(100_000))),
        ("blob", SqlValue::Bytes(vec![0, 1, 254, 255])),
        ("born", SqlValue::Date(date(1, 1, 1))),
        ("at", SqlValue::Time(time(23, 59, 59, 999_999_900))),
        (
            "legacy",
            SqlValue::DateTime(date(1900, 1, 1).and_time(time(0, 0, 1, 0))),
        ),
        (
            "stamp",
            SqlValue::DateTime(date(9999, 12, 31).and_time(time(23, 59, 59, 999_999_900))),
        ),
        (
            "zoned",
            SqlValue::DateTimeOffset(
                DateTime::parse_from_rfc3339("2024-02-29T23:30:00.1234567+05:45").expect("rfc3339"),
            ),
        ),
        (
            "guid",
            SqlValue::Guid(Uuid::parse_str("6F9619FF-8B86-D011-B42D-00C04FC964FF").expect("uuid")),
        ),
    ]
}

#[tokio::test]
async fn every_type_round_trips_exactly_with_nulls() {
    let mut db = typed_database();
    db.insert("dbo", "everything", &row_one()).expect("row 1");
    db.insert("dbo", "everything", &[("id", SqlValue::Int(2))])
        .expect("row 2: all NULL");
    let server = TdsServer::start(db).await.expect("server");
    let mut client = connect(&server, "sales").await.expect("login");

    let rows = client
        .simple_query("SELECT * FROM [dbo].[everything] ORDER BY [id]")
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r.get::<i32, _>("id"), Some(1));
    assert_eq!(r.get::<u8, _>("tiny"), Some(255));
    assert_eq!(r.get::<i16, _>("small"), Some(-32768));
    assert_eq!(r.get::<i64, _>("big"), Some(i64::MAX));
    assert_eq!(r.get::<bool, _>("flag"), Some(true));
    let price: Numeric = r.get("price").expect("price");
    assert_eq!(
        (price.value(), price.scale()),
        (-9_999_999_999_999_999_999_999_999_999_999_999_999, 4)
    );
    assert_eq!(r.get::<f64, _>("ratio"), Some(-1.5e300));
    assert_eq!(r.get::<f32, _>("approx"), Some(0.25));
    assert_eq!(r.get::<&str, _>("name"), Some("Zoë – 東京 🚀"));
    assert_eq!(r.get::<&str, _>("code"), Some("ABC-é"));
    assert_eq!(r.get::<&str, _>("notes").map(str::len), Some(100_000));
    assert_eq!(r.get::<&[u8], _>("blob"), Some(&[0u8, 1, 254, 255][..]));
    assert_eq!(r.get::<NaiveDate, _>("born"), Some(date(1, 1, 1)));
    assert_eq!(
        r.get::<NaiveTime, _>("at"),
        Some(time(23, 59, 59, 999_999_900))
    );
    assert_eq!(
        r.get::<NaiveDateTime, _>("legacy"),
        Some(date(1900, 1, 1).and_time(time(0, 0, 1, 0)))
    );
    assert_eq!(
        r.get::<NaiveDateTime, _>("stamp"),
        Some(date(9999, 12, 31).and_time(time(23, 59, 59, 999_999_900)))
    );
    let zoned: DateTime<FixedOffset> = r.get("zoned").expect("zoned");
    assert_eq!(zoned.to_rfc3339(), "2024-02-29T23:30:00.123456700+05:45");
    assert_eq!(
        r.get::<Uuid, _>("guid"),
        Some(Uuid::parse_str("6F9619FF-8B86-D011-B42D-00C04FC964FF").expect("uuid"))
    );
    // Row 2: every nullable column NULL (sent as NBCROW).
    let r = &rows[1];
    assert_eq!(r.get::<i32, _>("id"), Some(2));
    assert_eq!(r.get::<u8, _>("tiny"), None);
    assert_eq!(r.get::<Numeric, _>("price"), None);
    assert_eq!(r.get::<&str, _>("notes"), None);
    assert_eq!(r.get::<&[u8], _>("blob"), None);
    assert_eq!(r.get::<DateTime<FixedOffset>, _>("zoned"), None);
    assert_eq!(r.get::<Uuid, _>("guid"), None);
}

#[tokio::test]
async fn parameters_of_every_kind_are_decoded() {
    let mut db = typed_database();
    db.insert("dbo", "everything", &row_one()).expect("row 1");
    db.insert(
        "dbo",
        "everything",
        &[
            ("id", SqlValue::Int(2)),
            ("name", SqlValue::Text("two".into())),
        ],
    )
    .expect("row 2");
    let server = TdsServer::start(db).await.expect("server");
    let mut client = connect(&server, "sales").await.expect("login");
    let long = "y".repeat(5000); // sent as nvarchar(max), PLP
    let guid = Uuid::parse_str("6F9619FF-8B86-D011-B42D-00C04FC964FF").expect("uuid");
    let born = date(1, 1, 1);
    let rows = client
        .query(
            "SELECT [id] FROM [dbo].[everything] WHERE [id] > @P1 AND [name] = @P2 AND [guid] = @P3 AND [born] = @P4 AND [flag] = @P5 AND [big] > @P6 AND [notes] <> @P7 AND [legacy] < @P8",
            &[
                &0i32,
                &"Zoë – 東京 🚀",
                &guid,
                &born,
                &true,
                &1i64,
                &long.as_str(),
                &date(2000, 1, 1).and_time(time(0, 0, 0, 0)),
            ],
        )
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<i32, _>(0), Some(1));
    // A NULL parameter compares as unknown: no row.
    let none: Option<i32> = None;
    let rows = client
        .query(
            "SELECT [id] FROM [dbo].[everything] WHERE [id] = @P1",
            &[&none],
        )
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert!(rows.is_empty());
    assert!(server.queries().iter().any(|q| q.contains("@P8")));
}

#[tokio::test]
async fn a_large_table_streams_over_many_packets() {
    let mut db = Database::new("big");
    db.create_table(
        "dbo",
        "rows",
        vec![
            Column::new("id", SqlType::BigInt).not_null(),
            Column::new("label", SqlType::NVarChar(Some(40))),
        ],
        &["id"],
    );
    for id in 0..200_000i64 {
        db.insert(
            "dbo",
            "rows",
            &[
                ("id", SqlValue::Int(id)),
                ("label", SqlValue::Text(format!("row number {id}"))),
            ],
        )
        .expect("insert");
    }
    let server = TdsServer::start(db).await.expect("server");
    let mut client = connect(&server, "big").await.expect("login");
    let mut stream = client
        .simple_query("SELECT [id], [label] FROM [dbo].[rows] ORDER BY [id]")
        .await
        .expect("query")
        .into_row_stream();
    let mut count = 0i64;
    while let Some(row) = stream.try_next().await.expect("a row") {
        assert_eq!(row.get::<i64, _>(0), Some(count));
        count += 1;
    }
    assert_eq!(count, 200_000);
}

#[tokio::test]
async fn errors_arrive_as_server_errors() {
    let mut db = typed_database();
    for id in 1..=50 {
        db.insert("dbo", "everything", &[("id", SqlValue::Int(id))])
            .expect("insert");
    }
    let server = TdsServer::start(db).await.expect("server");

    let Err(wrong) = connect(&server, "nosuchdb").await else {
        panic!("a login to a database that does not exist succeeded");
    };
    assert!(
        wrong
            .to_string()
            .contains("Cannot open database \"nosuchdb\""),
        "{wrong}"
    );

    let mut client = connect(&server, "sales").await.expect("login");
    let error = fails(&mut client, "SELECT [nope] FROM [dbo].[everything]").await;
    assert!(error.contains("Invalid column name 'nope'"), "{error}");
    let error = fails(&mut client, "SELECT * FROM [dbo].[missing]").await;
    assert!(error.contains("Invalid object name"), "{error}");
    let error = fails(&mut client, "SELEC 1").await;
    assert!(error.contains("Incorrect syntax"), "{error}");

    // A result cut off by a server error after 20 rows: the rows before it arrive, then the error.
    server.fail_reads_after("everything", 20);
    let mut stream = client
        .simple_query("SELECT [id] FROM [dbo].[everything] ORDER BY [id]")
        .await
        .expect("sent")
        .into_row_stream();
    let mut seen = 0;
    let error = loop {
        match stream.try_next().await {
            Ok(Some(_)) => seen += 1,
            Ok(None) => panic!("the stream ended without the error"),
            Err(error) => break error,
        }
    };
    assert_eq!(seen, 20);
    assert!(error.to_string().contains("deadlock victim"), "{error}");
}

/// The error a batch ends with (tiberius reports it when the request is sent or while reading).
async fn fails(client: &mut Tds, sql: &str) -> String {
    match client.simple_query(sql).await {
        Err(error) => error.to_string(),
        Ok(stream) => match stream.into_first_result().await {
            Err(error) => error.to_string(),
            Ok(rows) => panic!("`{sql}` returned {} rows instead of failing", rows.len()),
        },
    }
}
