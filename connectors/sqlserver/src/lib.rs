//! The SQL Server source, on tiberius (TDS 7.4).
//!
//! - **Connections** are opened per operation (introspection, each read), with TLS **required
//!   by default**; `options.encrypt` (`required`, `on`, `off`, `not_supported`) and
//!   `options.trust_cert` (only when asked: it accepts any certificate) change that.
//! - **Introspection** reads the catalog views (`sys.tables`, `sys.views`, `sys.columns`,
//!   `sys.types`, `sys.key_constraints`, `sys.indexes`, `sys.index_columns`,
//!   `sys.dm_db_partition_stats`) with one simple query each and joins them here.
//! - **Reads** are keyset-paginated with `TOP (n)` and the expanded predicate
//!   `k1 > @a OR (k1 = @a AND k2 > @b)` (T-SQL has no row-value comparison), identifiers
//!   bracket-quoted. `UPDATED_AT` pages on (watermark, key) from the committed watermark minus
//!   the look-back.
//! - **Types**: exact (decimal up to 38 digits as SyncBridge decimals; `datetimeoffset` keeps its
//!   offset). tiberius 0.12 panics on some values: `decimal(38,38)` is read through
//!   `CAST(… AS varchar(50))`; `hierarchyid` and `sql_variant` through `CAST(… AS nvarchar(4000))`;
//!   `geography` / `geometry` and other CLR types are refused, naming the column.
//! - **`LSN`** is SQL Server **change tracking** when the table has it (deletes included), else
//!   the table's **rowversion** column (inserts and updates; read below
//!   `MIN_ACTIVE_ROWVERSION()` so a transaction still open is not skipped): see `src/changes.rs`.

mod catalog;
mod changes;
mod connect;
mod convert;
mod read;

use serde::Deserialize;
use syncbridge_api::{
    BatchStream, ConnectorError, CursorSpec, ReadRequest, Source, TableDescriptor, TableRef,
};

pub use connect::Encrypt;

/// What the engine passes: the instance's address and credentials, and `options`.
#[derive(Debug, Clone, Deserialize)]
pub struct SqlServerConfig {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub database: String,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub options: SqlServerOptions,
}

fn default_host() -> String {
    "localhost".to_owned()
}

fn default_port() -> u16 {
    1433
}

/// `instances[].options` of a SQL Server database.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlServerOptions {
    /// TLS: `required` (the default), `on`, `off` (TLS for the login only) or `not_supported`
    /// (plaintext; only for test servers and trusted networks).
    #[serde(default)]
    pub encrypt: Encrypt,
    /// Accept the server's certificate without checking it (self-signed development servers).
    #[serde(default)]
    pub trust_cert: bool,
    /// Seconds to wait for the TCP connection (default 15).
    #[serde(default)]
    pub connect_timeout_seconds: Option<u64>,
}

/// A SQL Server database.
#[derive(Debug, Clone)]
pub struct SqlServerSource {
    config: SqlServerConfig,
}

impl SqlServerSource {
    fn address(&self) -> String {
        format!(
            "{}:{}/{}",
            self.config.host, self.config.port, self.config.database
        )
    }
}

/// `[name]`, with `]` doubled.
pub(crate) fn quote(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// `[schema].[table]` (`dbo` when the reference has no schema).
pub(crate) fn table_sql(table: &TableRef) -> String {
    format!(
        "{}.{}",
        quote(table.schema.as_deref().unwrap_or("dbo")),
        quote(&table.name)
    )
}

impl Source for SqlServerSource {
    type Config = SqlServerConfig;
    const KIND: &'static str = "sqlserver";

    async fn connect(config: SqlServerConfig) -> Result<Self, ConnectorError> {
        let source = Self { config };
        // Fail early on a wrong address or credentials.
        connect::open(&source.config).await?;
        Ok(source)
    }

    async fn healthcheck(&self) -> Result<(), ConnectorError> {
        let mut client = connect::open(&self.config).await?;
        connect::rows(
            &mut client,
            &self.address(),
            "SELECT DB_NAME() AS [db]",
            Vec::new(),
        )
        .await
        .map(|_| ())
    }

    async fn introspect(
        &self,
        tables: Option<&[TableRef]>,
    ) -> Result<Vec<TableDescriptor>, ConnectorError> {
        let mut client = connect::open(&self.config).await?;
        catalog::describe(&mut client, &self.address(), tables).await
    }

    async fn read(&self, request: ReadRequest) -> Result<BatchStream, ConnectorError> {
        match request.cursor {
            CursorSpec::Lsn { .. } => {
                changes::read(self.config.clone(), self.address(), request).await
            }
            _ => read::keyset(self.config.clone(), self.address(), request).await,
        }
    }
}
