//! Opening a tiberius connection with the configured encryption, and running one query.

use serde::Deserialize;
use syncbridge_api::ConnectorError;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt as _};

use crate::SqlServerConfig;

pub(crate) type Connection = Client<Compat<TcpStream>>;

/// TLS for the connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encrypt {
    /// TLS for everything; the server must support it (the default).
    #[default]
    Required,
    /// TLS when the server supports it.
    On,
    /// TLS for the login packet only.
    Off,
    /// No TLS at all.
    NotSupported,
}

/// Opens a connection and logs in.
pub(crate) async fn open(config: &SqlServerConfig) -> Result<Connection, ConnectorError> {
    let address = format!("{}:{}", config.host, config.port);
    let mut tds = Config::new();
    tds.host(&config.host);
    tds.port(config.port);
    tds.database(&config.database);
    tds.application_name("syncbridge");
    match (&config.user, &config.password) {
        (Some(user), password) => tds.authentication(AuthMethod::sql_server(
            user,
            password.as_deref().unwrap_or_default(),
        )),
        (None, _) => {
            return Err(
                ConnectorError::user(format!("no user for SQL Server at {address}")).with_hint(
                    "set `user` and `password` on the instance (SQL Server authentication)",
                ),
            );
        }
    }
    tds.encryption(match config.options.encrypt {
        Encrypt::Required => EncryptionLevel::Required,
        Encrypt::On => EncryptionLevel::On,
        Encrypt::Off => EncryptionLevel::Off,
        Encrypt::NotSupported => EncryptionLevel::NotSupported,
    });
    if config.options.trust_cert {
        tds.trust_cert();
    }
    let timeout =
        std::time::Duration::from_secs(config.options.connect_timeout_seconds.unwrap_or(15));
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(&address))
        .await
        .map_err(|_| {
            ConnectorError::external(format!(
                "SQL Server at {address} did not answer within {} s",
                timeout.as_secs()
            ))
            .with_hint("check the host, the port and the firewall")
        })?
        .map_err(|e| {
            ConnectorError::external(format!("cannot reach SQL Server at {address}: {e}"))
                .with_hint("check the host and port, and that SQL Server accepts TCP connections")
        })?;
    tcp.set_nodelay(true).ok();
    Client::connect(tds, tcp.compat_write())
        .await
        .map_err(|e| classify(&format!("{address}/{}", config.database), "logging in", e))
}

/// Turns a tiberius error into whose fault it is, with what to do.
pub(crate) fn classify(
    address: &str,
    doing: &str,
    error: tiberius::error::Error,
) -> ConnectorError {
    use tiberius::error::Error as E;
    match &error {
        E::Server(token) => {
            let message = format!(
                "SQL Server at {address} refused {doing}: {} (error {})",
                token.message(),
                token.code()
            );
            match token.code() {
                // Login failed; cannot open the database.
                18456 | 4060 => ConnectorError::user(message)
                    .with_hint("check the user, the password and the database name"),
                // Invalid object / column name, permission denied, syntax.
                207 | 208 | 229 | 102 | 4104 => ConnectorError::user(message)
                    .with_hint("run `syncbridge introspect` and `syncbridge drift` to compare the table with the mappings"),
                // Deadlock victim, timeouts, the server shutting down: retriable.
                1205 | 1222 | 6005 | 40613 | 40501 => ConnectorError::external(message),
                _ => ConnectorError::external(message).permanent(),
            }
        }
        E::Tls(_) => ConnectorError::external(format!(
            "TLS with SQL Server at {address} failed while {doing}: {error}"
        ))
        .with_hint("set `options.trust_cert: true` for a self-signed certificate, or `options.encrypt` to what the server supports"),
        E::Io { .. } => ConnectorError::external(format!(
            "the connection to SQL Server at {address} broke while {doing}: {error}"
        )),
        _ => ConnectorError::external(format!(
            "SQL Server at {address} failed while {doing}: {error}"
        )),
    }
}

/// A parameter of a query.
pub(crate) enum Param {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    Timestamp(chrono::NaiveDateTime),
    Date(chrono::NaiveDate),
}

/// Runs one query with parameters (`@P1` …) and returns all its rows.
pub(crate) async fn rows(
    client: &mut Connection,
    address: &str,
    sql: &str,
    params: Vec<Param>,
) -> Result<Vec<tiberius::Row>, ConnectorError> {
    let mut query = tiberius::Query::new(sql.to_owned());
    for param in params {
        match param {
            Param::Int(v) => query.bind(v),
            Param::Text(v) => query.bind(v),
            Param::Bytes(v) => query.bind(v),
            Param::Timestamp(v) => query.bind(v),
            Param::Date(v) => query.bind(v),
        }
    }
    let stream = query
        .query(client)
        .await
        .map_err(|e| classify(address, "a query", e))?;
    stream
        .into_first_result()
        .await
        .map_err(|e| classify(address, "reading a result", e))
}
