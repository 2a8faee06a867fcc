//! The same source against a real SQL Server, when one is reachable: set
//! `SYNCBRIDGE_MSSQL_URL=sqlserver://USER:PASSWORD@HOST:PORT?trust_cert=true` (a login allowed to
//! create databases). Each test creates its own database and drops it. Without the variable the
//! tests print SKIPPED: no SQL Server can run on the machines this project is built on, and the
//! TDS test server (`tests/tds.rs`) covers the same paths on every run.

use futures::StreamExt as _;
use syncbridge_api::{CursorSpec, ReadRequest, RowKind, Source as _, TableRef};
use syncbridge_sqlserver::{SqlServerConfig, SqlServerSource};

/// The server's settings from `SYNCBRIDGE_MSSQL_URL`, or `None` (after saying SKIPPED).
fn server() -> Option<SqlServerConfig> {
    let Ok(url) = std::env::var("SYNCBRIDGE_MSSQL_URL") else {
        println!(
            "SKIPPED: set SYNCBRIDGE_MSSQL_URL=sqlserver://USER:PASSWORD@HOST:PORT to test against a real SQL Server"
        );
        return None;
    };
    let rest = url
        .strip_prefix("sqlserver://")
        .expect("SYNCBRIDGE_MSSQL_URL starts with sqlserver://");
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (credentials, address) = rest.rsplit_once('@').expect("USER:PASSWORD@HOST:PORT");
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let address = address.trim_end_matches('/');
    let (host, port) = address.split_once(':').unwrap_or((address, "1433"));
    let trust_cert = query.contains("trust_cert=true");
    Some(
        serde_json::from_value(serde_json::json!({
            "host": host,
            "port": port.parse::<u16>().expect("a port"),
            "database": "master",
            "user": user,
            "password": password,
            "options": { "trust_cert": trust_cert }
        }))
        .expect("config"),
    )
}

/// Runs T-SQL batches with a plain tiberius client (setting up what the test reads).
async fn execute(config: &SqlServerConfig, database: &str, batches: &[&str]) {
    let mut tds = tiberius::Config::new();
    tds.host(&config.host);
    tds.port(config.port);
    tds.database(database);
    tds.authentication(tiberius::AuthMethod::sql_server(
        config.user.as_deref().unwrap_or_default(),
        config.password.as_deref().unwrap_or_default(),
    ));
    if config.options.trust_cert {
        tds.trust_cert();
    }
    let tcp = tokio::net::TcpStream::connect((config.host.as_str(), config.port))
        .await
        .expect("tcp");
    use tokio_util::compat::TokioAsyncWriteCompatExt as _;
    let mut client = tiberius::Client::connect(tds, tcp.compat_write())
        .await
        .expect("login");
    for batch in batches {
        client
            .simple_query(*batch)
            .await
            .expect(batch)
            .into_results()
            .await
            .expect(batch);
    }
}

#[tokio::test]
async fn change_tracking_on_a_real_server() {
    let Some(mut config) = server() else { return };
    let database = format!("syncbridge_test_{}", std::process::id());
    execute(&config, "master", &[
        &format!("CREATE DATABASE [{database}]"),
        &format!("ALTER DATABASE [{database}] SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 1 DAYS, AUTO_CLEANUP = ON)"),
    ])
    .await;
    execute(&config, &database, &[
        "CREATE TABLE dbo.projects (id int NOT NULL PRIMARY KEY, name nvarchar(100) NOT NULL, budget decimal(38,38) NULL, at datetimeoffset NULL)",
        "ALTER TABLE dbo.projects ENABLE CHANGE_TRACKING",
        "INSERT INTO dbo.projects VALUES (1, N'one', 0.5, '2024-05-01T08:00:00-07:00'), (2, N'two', NULL, NULL)",
    ])
    .await;
    config.database = database.clone();
    let source = SqlServerSource::connect(config.clone())
        .await
        .expect("connects");
    let tables = source.introspect(None).await.expect("introspects");
    assert_eq!(tables[0].primary_key(), ["id"]);
    let request = |from| ReadRequest {
        table: TableRef::new(Some("dbo"), "projects"),
        columns: vec!["id".into(), "name".into(), "budget".into(), "at".into()],
        key: vec!["id".into()],
        cursor: CursorSpec::Lsn {
            options: serde_json::Value::Null,
        },
        from,
        batch_size: 10,
        defer_conversion: false,
    };
    let first: Vec<_> = source
        .read(request(None))
        .await
        .expect("reads")
        .map(|b| b.expect("batch"))
        .collect()
        .await;
    assert_eq!(first.iter().map(|b| b.rows.len()).sum::<usize>(), 2);
    let position = first.last().and_then(|b| b.position.clone());
    execute(
        &config,
        &database,
        &[
            "UPDATE dbo.projects SET name = N'uno' WHERE id = 1",
            "DELETE FROM dbo.projects WHERE id = 2",
        ],
    )
    .await;
    let second: Vec<_> = source
        .read(request(position))
        .await
        .expect("reads")
        .map(|b| b.expect("batch"))
        .collect()
        .await;
    let kinds: Vec<RowKind> = second
        .iter()
        .flat_map(|b| &b.rows)
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, [RowKind::Upsert, RowKind::Delete]);
    drop(source);
    config.database = "master".into();
    execute(
        &config,
        "master",
        &[
            &format!("ALTER DATABASE [{database}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE"),
            &format!("DROP DATABASE [{database}]"),
        ],
    )
    .await;
}
