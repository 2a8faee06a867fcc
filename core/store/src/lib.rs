//! The SyncBridge meta-store: inventory, configuration, ledger, cursors, runs and the
//! dead-letter queue, on SQLite (the embedded default, one file) or PostgreSQL (production,
//! shared by several hosts).
//!
//! # One code path for two databases
//! Both backends get the same SQL: `$n` placeholders (SQLite accepts them), `ON CONFLICT … DO
//! UPDATE`, `RETURNING`, timestamps bound from Rust rather than `now()`. [`with_pool!`] expands a
//! query body once per backend, so typed store code is written once and type-checked for both.
//! The schemas are separate migration histories (`migrations/sqlite`, `migrations/postgres`),
//! rendered from one template so they start out identical, and embedded in the binary.

pub mod definitions;
mod id;
pub mod inventory;
pub mod lock;
pub mod runtime;
pub mod secrets;
pub mod sharepoint;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

pub use id::Id;

/// Runs `$body` with `$pool` bound to the concrete pool of whichever backend `$store` uses.
///
/// ```ignore
/// let count: i64 = with_pool!(store, pool => sqlx::query_scalar("SELECT count(*) FROM applications").fetch_one(pool).await)?;
/// ```
#[macro_export]
macro_rules! with_pool {
    // The shared expansion: `$pools` is a `&StorePool`.
    (@on $pools:expr, $pool:ident => $body:expr) => {
        match $pools {
            $crate::StorePool::Sqlite($pool) => $body,
            $crate::StorePool::Postgres($pool) => $body,
        }
    };
    ($store:expr, $pool:ident => $body:expr) => {
        $crate::with_pool!(@on $store.pool(), $pool => $body)
    };
}

/// [`with_pool!`] on the store's writer ([`Store::writer`]).
#[macro_export]
macro_rules! with_writer {
    ($store:expr, $pool:ident => $body:expr) => {
        $crate::with_pool!(@on $store.writer(), $pool => $body)
    };
}

/// Starts a transaction that is going to write, on the writer ([`with_writer!`]) or the pool.
///
/// On SQLite it begins `IMMEDIATE`: the transaction takes the write lock at `BEGIN`, waiting
/// in the busy handler (up to the store's busy timeout) while another connection writes. A
/// deferred transaction that reads first and writes later cannot wait: SQLite answers its
/// first write at once with `SQLITE_BUSY` ("database is locked") when another connection
/// holds the write lock, because waiting there could deadlock two readers that both want to
/// write. On PostgreSQL it is a plain `BEGIN`, whose row locks wait by themselves.
pub trait BeginWrite {
    type Database: sqlx::Database;

    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>> + Send;
}

impl BeginWrite for SqlitePool {
    type Database = sqlx::Sqlite;

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Database = sqlx::Postgres;

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// The connection pool of one backend.
#[derive(Debug, Clone)]
pub enum StorePool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Which database holds the meta-store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// Why the meta-store cannot be used. Messages name the store without its password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The `--store` value is not a store URL.
    #[error(
        "`{url}` is not a meta-store URL; use sqlite://PATH or postgres://USER@HOST:PORT/DATABASE"
    )]
    BadUrl { url: String },
    /// The SQLite file cannot be opened or created.
    #[error(
        "cannot open the SQLite meta-store {path}: {source}; check that the directory exists and is writable"
    )]
    SqliteOpen {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    /// The PostgreSQL server did not accept a connection.
    #[error(
        "cannot reach the PostgreSQL meta-store at {address} (database `{database}`): {reason}; check that the server runs and accepts connections from here"
    )]
    Unreachable {
        address: String,
        database: String,
        reason: String,
    },
    /// Applying migrations failed.
    #[error("cannot migrate the meta-store: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("meta-store query failed while {doing}: {source}")]
    Query {
        doing: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A run's lock file beside the SQLite meta-store cannot be made or locked.
    #[error(
        "cannot lock the definition's runs in {path}: {source}; check that the meta-store's directory is writable"
    )]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// A dependency is down (exit code 3).
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            StoreError::Query { source, .. } => {
                matches!(
                    source,
                    sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
                )
            }
            _ => false,
        }
    }

    /// The user must fix the input (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            StoreError::BadUrl { .. } | StoreError::SqliteOpen { .. } | StoreError::Lock { .. }
        )
    }

    /// Wraps a query error with what was being done.
    pub fn query(doing: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| StoreError::Query { doing, source }
    }
}

/// A connected meta-store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: StorePool,
    /// Where the engine's frequent writes go (see [`Store::writer`]).
    writer: StorePool,
    /// SQLite only: the task that copies the write-ahead log into the database file, stopped
    /// when the last clone of the store is dropped (see [`Checkpointer`]).
    _checkpointer: Option<Arc<Checkpointer>>,
    /// SQLite only: the database file (`None` in memory), beside which runs lock their
    /// definitions ([`lock`]).
    sqlite_path: Option<std::path::PathBuf>,
}

/// How often the SQLite [`Checkpointer`] looks at the write-ahead log.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// SQLite's own checkpoint, on the connection that commits once the log holds this many pages
/// (160 MiB of [`PAGE_SIZE`] pages; 40 MiB in a store created with 4 KiB pages). The
/// [`Checkpointer`] has copied nearly all of them by then, so this one copies what is left and
/// lets the next write start the log over: the log only restarts after a checkpoint that copied
/// every frame, which a checkpoint beside a busy writer rarely does.
const AUTOCHECKPOINT_PAGES: &str = "10000";

/// The page size of a new SQLite store (an existing one keeps its own: WAL mode cannot change
/// it). The ledger's identity index takes rows in hash order, so a transaction's rows land on
/// pages all over it; with larger pages they land on fewer, and each page costs SQLite work of
/// its own besides its bytes (finding it, a log frame, a checksum, splits; a shallower tree).
/// The push measured 20.7-21.0 ms of the engine's own CPU per 1,000 rows against 23.1-23.5 with
/// 4 KiB pages (8 KiB: 21.4-21.8); the reruns of `benches/rerun.rs` did not change.
const PAGE_SIZE: u32 = 16 * 1024;

/// Copies SQLite's write-ahead log back into the database file on a connection of the read
/// pool, once a [`CHECKPOINT_INTERVAL`], in `PASSIVE` mode (it waits for no reader or writer).
///
/// SQLite would otherwise checkpoint on whichever connection commits when the log passes its
/// threshold: in a run that is the one writer, which then stops for the copy and the `fsync`
/// of the database file while every ledger write, intent and cursor queues behind it, and
/// `$batch` requests wait for their intents. In the push bench (`benches/push.rs`, 100,000
/// rows) the engine's round fell from 8.4–8.9 s to 7.0–8.1 s with the copying moved here, and
/// the time the machine spent waiting for the disk during it from ~8 % to ~2 %.
#[derive(Debug)]
struct Checkpointer(tokio::task::JoinHandle<()>);

impl Checkpointer {
    fn start(pool: SqlitePool) -> Self {
        Self(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(CHECKPOINT_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is at once, when the log has nothing to copy.
            ticks.tick().await;
            loop {
                ticks.tick().await;
                // Answers (busy, frames in the log, frames copied), read to the end so the
                // statement holds no read transaction afterwards.
                let checkpoint = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_all(&pool)
                    .await;
                match checkpoint {
                    Ok(_) => {}
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(error) => {
                        tracing::warn!(%error, "the SQLite meta-store's checkpoint failed; trying again in a second");
                    }
                }
            }
        }))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The name sqlx gives each SQLite connection's thread (`sqlx-sqlite-worker-N`), as far as the
/// system keeps it. Each time a meta-store connection opens, every such thread of the process
/// is set to [`syncbridge_threads::BACKGROUND_NICE`]: a ledger transaction computes for tens of
/// milliseconds, and the runtime's threads, which carry the requests to Graph, come first
/// (`benches/push.rs`, BENCHMARKS.md). A SQLite source's threads running then are set too: their
/// reads are bulk work as well.
pub const SQLITE_CONNECTION_THREADS: &str = "sqlx-sqlite-";

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

impl Store {
    /// Connects to `sqlite://PATH` (created if missing) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            return Self::connect_sqlite(path).await;
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Self::connect_postgres(url).await;
        }
        Err(StoreError::BadUrl {
            url: redact_url(url),
        })
    }

    async fn connect_sqlite(path: &str) -> Result<Self, StoreError> {
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() {
            return Err(StoreError::BadUrl {
                url: format!("sqlite://{path}"),
            });
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .page_size(PAGE_SIZE)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL never corrupts; a power cut may lose the last commits, which the
            // idempotency protocol tolerates (the list's unique key column refuses duplicates).
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            // The ledger's identity index takes rows in hash order, so a batch touches pages all
            // over it: a 64 MiB page cache cuts the cost of a ledger row (measured with
            // `benches/push.rs`).
            .pragma("cache_size", "-65536")
            // Most checkpoints are the `Checkpointer`'s, off the writer (see the constant).
            .pragma("wal_autocheckpoint", AUTOCHECKPOINT_PAGES)
            // Reads through a memory map (up to 1 GiB) instead of a read call per page: a full
            // scan's ledger look-ups land all over a ledger larger than the page cache.
            .pragma("mmap_size", "1073741824");
        let open = |connections: u32| {
            SqlitePoolOptions::new()
                .max_connections(connections)
                .after_connect(|_connection, _meta| {
                    Box::pin(async {
                        syncbridge_threads::yield_threads_named(SQLITE_CONNECTION_THREADS);
                        Ok(())
                    })
                })
                .connect_with(options.clone())
        };
        let opened = async { Ok::<_, sqlx::Error>((open(4).await?, open(1).await?)) };
        let (pool, writer) = opened.await.map_err(|source| StoreError::SqliteOpen {
            path: path.to_owned(),
            source,
        })?;
        let checkpointer = Checkpointer::start(pool.clone());
        let in_memory = path == ":memory:" || path.starts_with("file::memory:");
        // One name for the file however the URL spells it (relative, through a link), so runs
        // lock the same files beside it.
        let sqlite_path = (!in_memory).then(|| {
            std::fs::canonicalize(path).unwrap_or_else(|_| std::path::PathBuf::from(path))
        });
        Ok(Self {
            pool: StorePool::Sqlite(pool),
            writer: StorePool::Sqlite(writer),
            _checkpointer: Some(Arc::new(checkpointer)),
            sqlite_path,
        })
    }

    async fn connect_postgres(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|_| StoreError::BadUrl {
            url: redact_url(url),
        })?;
        let address = format!("{}:{}", options.get_host(), options.get_port());
        let database = options.get_database().unwrap_or("postgres").to_owned();
        // One direct connection first: it fails at once when nothing listens, where a pool
        // would keep retrying until its acquire timeout.
        let probe = <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)
            .await
            .map_err(|error| StoreError::Unreachable {
                address: address.clone(),
                database: database.clone(),
                reason: describe_connect_error(&error),
            })?;
        let _ = sqlx::Connection::close(probe).await;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(options);
        Ok(Self {
            writer: StorePool::Postgres(pool.clone()),
            pool: StorePool::Postgres(pool),
            _checkpointer: None,
            sqlite_path: None,
        })
    }

    /// Creates or upgrades every table.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            StorePool::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
            StorePool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        }
        .map_err(StoreError::Migrate)
    }

    /// The pool for the writes a run makes again and again (ledger, cursors, events, dead
    /// letters), for [`with_writer!`]. On SQLite it is one connection of its own:
    /// - SQLite takes one writer at a time, and a second connection that tries to write waits
    ///   in SQLite's busy handler, which *sleeps* (1, 2, 5, 10 … ms) before trying again;
    ///   writers queue for this connection instead, woken the moment the previous one is done;
    /// - a connection drops its whole page cache when another connection wrote since its last
    ///   transaction, so writes spread over a pool read every page they touch again; the one
    ///   writer keeps its cache warm.
    ///
    /// On PostgreSQL it is the pool itself.
    pub fn writer(&self) -> &StorePool {
        &self.writer
    }

    /// The pool, for [`with_pool!`].
    pub fn pool(&self) -> &StorePool {
        &self.pool
    }

    /// The SQLite database file; `None` for PostgreSQL or a store in memory.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.sqlite_path.as_deref()
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            StorePool::Sqlite(_) => Backend::Sqlite,
            StorePool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        for pools in [&self.writer, &self.pool] {
            with_pool!(@on pools, pool => pool.close().await);
        }
    }
}

/// A connection error in words, without the URL (which may hold a password).
fn describe_connect_error(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::PoolTimedOut => "timed out".to_owned(),
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Tls(tls) => format!("TLS: {tls}"),
        other => other.to_string(),
    }
}

/// The URL with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[tokio::test]
    async fn bad_urls_are_bad_input() {
        let error = Store::connect("mysql://u:pw@h/db")
            .await
            .expect_err("not a store");
        assert!(error.is_bad_input());
        assert!(!error.to_string().contains("pw"));
    }

    /// The page size is set before the log mode, which fixes it for good.
    #[tokio::test]
    async fn new_sqlite_stores_get_their_page_size() {
        let store = testing::TestStore::sqlite().await;
        let StorePool::Sqlite(pool) = store.writer() else {
            unreachable!("a SQLite store");
        };
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(pool)
            .await
            .expect("page size");
        assert_eq!(page_size, i64::from(PAGE_SIZE));
    }

    #[tokio::test]
    async fn sqlite_writes_reach_the_database_file_in_the_background() {
        let store = testing::TestStore::sqlite().await;
        let path = std::path::PathBuf::from(store.url().trim_start_matches("sqlite://"));
        let StorePool::Sqlite(writer) = store.writer() else {
            unreachable!("a SQLite store");
        };
        sqlx::raw_sql("CREATE TABLE filler (bytes BLOB NOT NULL)")
            .execute(writer)
            .await
            .expect("table");
        let file_size = || std::fs::metadata(&path).expect("database file").len();
        let before = file_size();
        // 2 MiB in the log: far below SQLite's own threshold, so only the checkpointer copies
        // them while the store stays open.
        sqlx::query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 512) INSERT INTO filler SELECT randomblob(4096) FROM n")
            .execute(writer)
            .await
            .expect("rows");
        let deadline = std::time::Instant::now() + CHECKPOINT_INTERVAL * 5;
        while file_size() < before + 2 * 1024 * 1024 {
            assert!(
                std::time::Instant::now() < deadline,
                "the log was not copied into the database file within {:?}",
                CHECKPOINT_INTERVAL * 5
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn unreachable_postgres_names_the_address_not_the_password() {
        let error = Store::connect("postgres://sb:topsecret@127.0.0.1:1/meta")
            .await
            .expect_err("nothing listens on port 1");
        assert!(error.is_unreachable(), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("127.0.0.1:1") && !text.contains("topsecret"),
            "{text}"
        );
    }
}
