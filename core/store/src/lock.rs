//! One run of a definition at a time.
//!
//! Two runs of the same definition would each plan from the ledger the other is changing:
//! SharePoint's unique key column keeps them from creating an item twice, but they would mark
//! each other's work, dead-letter entries and records in ways neither can tell apart. So a run
//! holds its definition's lock from start to end, and a second run is refused while it does.
//!
//! The lock dies with the process that holds it, however it ends (SIGKILL included), so a
//! killed run never blocks the next one:
//! - PostgreSQL: a session-level advisory lock, on a connection of its own held for the run
//!   (the server releases it when the connection closes). The session asks the server to probe
//!   the connection after 30 s of silence, so a lock whose host vanished (a crash, a network
//!   cut) is freed within about a minute instead of the system's two hours. By hand:
//!   `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'` for the
//!   session that holds it.
//! - SQLite: an exclusive `flock` on a file beside the database, `FILE.locks/DEFINITION`, with
//!   the database's canonical path (the kernel releases it when the process's file is closed).

use crate::{Id, Store, StoreError, StorePool};

/// A definition's run lock, released when dropped.
#[derive(Debug)]
pub struct RunLock {
    held: Held,
}

#[derive(Debug)]
#[expect(dead_code, reason = "held, never read: dropping it releases the lock")]
enum Held {
    File(std::fs::File),
    Postgres(sqlx::PgConnection),
    /// An in-memory SQLite store: no other process can reach it.
    Nothing,
}

/// Takes `sync_def_id`'s run lock; `None` while another run (of this process or another) holds
/// it.
pub async fn try_lock_definition(
    store: &Store,
    sync_def_id: Id,
) -> Result<Option<RunLock>, StoreError> {
    let held = match store.pool() {
        StorePool::Sqlite(_) => {
            let Some(path) = store.sqlite_path() else {
                return Ok(Some(RunLock {
                    held: Held::Nothing,
                }));
            };
            let mut directory = path.as_os_str().to_owned();
            directory.push(".locks");
            let directory = std::path::PathBuf::from(directory);
            let file = std::fs::create_dir_all(&directory)
                .and_then(|()| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(directory.join(sync_def_id.to_string()))
                })
                .map_err(|source| StoreError::Lock {
                    path: directory.display().to_string(),
                    source,
                })?;
            match file.try_lock() {
                Ok(()) => Held::File(file),
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(StoreError::Lock {
                        path: directory.display().to_string(),
                        source,
                    });
                }
            }
        }
        StorePool::Postgres(pool) => {
            let mut connection = pool
                .acquire()
                .await
                .map_err(StoreError::query("taking a connection for the run lock"))?
                .detach();
            sqlx::raw_sql(
                "SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10;
                 SET tcp_keepalives_count = 3",
            )
            .execute(&mut connection)
            .await
            .map_err(StoreError::query("setting up the run lock's connection"))?;
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(advisory_key(sync_def_id))
                .fetch_one(&mut connection)
                .await
                .map_err(StoreError::query("taking the run lock"))?;
            if !locked {
                return Ok(None);
            }
            Held::Postgres(connection)
        }
    };
    Ok(Some(RunLock { held }))
}

impl RunLock {
    /// Releases the lock now. Dropping it releases it too, but on PostgreSQL only once the
    /// server notices the closed connection, a moment later: a run that follows at once could
    /// find it still held.
    pub async fn release(self) {
        if let Held::Postgres(mut connection) = self.held {
            let _ = sqlx::query("SELECT pg_advisory_unlock_all()")
                .execute(&mut connection)
                .await;
            let _ = sqlx::Connection::close(connection).await;
        }
    }
}

/// The advisory lock key of a definition: its id folded to 64 bits.
fn advisory_key(sync_def_id: Id) -> i64 {
    let (high, low) = sync_def_id.0.as_u64_pair();
    i64::from_ne_bytes((high ^ low).to_ne_bytes())
}
