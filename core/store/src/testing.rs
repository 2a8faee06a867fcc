//! Fresh, migrated meta-stores for tests, on both backends.
//!
//! SQLite lives in a temporary directory. PostgreSQL gets a uniquely named database on
//! `postgres://postgres@127.0.0.1:5432` (override with `SYNCBRIDGE_TEST_PG_URL`, a URL to the
//! server's maintenance database), dropped when the [`TestStore`] is dropped. When PostgreSQL is
//! unreachable the Postgres store is skipped with a `SKIPPED:` line, unless
//! `SYNCBRIDGE_REQUIRE_SERVICES=1`, where that is a test failure.

use std::ops::Deref;

use sqlx::Connection as _;

use crate::{Id, Store};

/// A store for one test; its database disappears when dropped.
#[derive(Debug)]
pub struct TestStore {
    store: Store,
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, database: String },
}

impl Deref for TestStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

impl TestStore {
    /// The store's URL (for driving the binary against the same store).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A migrated SQLite store in a temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("meta.db").display());
        let store = Store::connect(&url).await.expect("SQLite store opens");
        store.migrate().await.expect("SQLite migrations apply");
        Self {
            store,
            url,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A migrated store in a new PostgreSQL database, or `None` (after printing why) when the
    /// server is unreachable and services are not required.
    pub async fn postgres() -> Option<Self> {
        let admin_url = admin_url();
        let database = format!("sbtest_{}", uuid::Uuid::new_v4().simple());
        let created = async {
            let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::query(&format!("CREATE DATABASE \"{database}\""))
                .execute(&mut admin)
                .await?;
            admin.close().await
        }
        .await;
        if let Err(error) = created {
            let why = format!(
                "PostgreSQL at {} is not usable: {error}",
                crate::redact_url(&admin_url)
            );
            assert!(
                !services_required(),
                "{why} (SYNCBRIDGE_REQUIRE_SERVICES=1)"
            );
            println!("SKIPPED: {why}");
            return None;
        }
        let url = database_url(&admin_url, &database);
        let store = Store::connect(&url)
            .await
            .expect("test database accepts connections");
        store.migrate().await.expect("PostgreSQL migrations apply");
        Some(Self {
            store,
            url,
            cleanup: Cleanup::Postgres {
                admin_url,
                database,
            },
        })
    }

    /// SQLite always, and PostgreSQL when reachable (see [`TestStore::postgres`]).
    pub async fn all() -> Vec<Self> {
        let mut stores = vec![Self::sqlite().await];
        stores.extend(Self::postgres().await);
        stores
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let Cleanup::Postgres {
            admin_url,
            database,
        } = &self.cleanup
        else {
            return;
        };
        let (admin_url, database) = (admin_url.clone(), database.clone());
        // Dropping runs outside any async context we could borrow; a short-lived thread with its
        // own runtime drops the database, and `WITH (FORCE)` ends our pool's connections (closing
        // them from here could wait on the test's runtime, which is blocked in this drop). Best
        // effort: a leftover database has a unique name and harms nothing.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!(
                        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                    ))
                    .execute(&mut admin)
                    .await;
                }
            });
        })
        .join();
    }
}

/// True when CI demands every service (`SYNCBRIDGE_REQUIRE_SERVICES=1`).
pub fn services_required() -> bool {
    std::env::var("SYNCBRIDGE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn admin_url() -> String {
    std::env::var("SYNCBRIDGE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn database_url(admin_url: &str, database: &str) -> String {
    let base = admin_url.split('?').next().unwrap_or(admin_url);
    match base.rfind('/') {
        Some(slash) if slash > base.find("://").map_or(0, |i| i + 2) => {
            format!("{}/{database}", &base[..slash])
        }
        _ => format!("{base}/{database}"),
    }
}

/// A database created for one test on the local PostgreSQL, dropped when the test ends.
#[derive(Debug)]
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    /// Creates `sbtest_<prefix>_<random>`; `None` (after printing SKIPPED) when PostgreSQL is not
    /// reachable and services are not required.
    pub fn create(prefix: &str) -> Option<Self> {
        let name = format!("sbtest_{prefix}_{}", uuid::Uuid::new_v4().simple());
        let output = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!("CREATE DATABASE \"{name}\""))
            .output();
        match output {
            Ok(output) if output.status.success() => Some(Self {
                url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                name,
            }),
            other => {
                let why = match other {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                    Err(error) => error.to_string(),
                };
                assert!(
                    !services_required(),
                    "PostgreSQL on 127.0.0.1:5432 is required: {why}"
                );
                println!("SKIPPED: PostgreSQL on 127.0.0.1:5432 is not reachable: {why}");
                None
            }
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

/// A database created for one test on the local MariaDB (root, empty password), dropped when
/// the test ends. Statements run through the `mariadb` client, so tests need no driver of their
/// own to set up data.
#[derive(Debug)]
pub struct MariaDatabase {
    pub name: String,
}

fn mariadb(database: Option<&str>, sql: &str) -> std::io::Result<std::process::Output> {
    let mut command = std::process::Command::new("mariadb");
    command.args(["-uroot", "-h127.0.0.1", "-P3306", "--protocol=TCP"]);
    if let Some(database) = database {
        command.args(["-D", database]);
    }
    command.args(["-N", "-B", "-e", sql]).output()
}

impl MariaDatabase {
    /// Creates `sbtest_<prefix>_<random>`; `None` (after printing SKIPPED) when MariaDB is not
    /// reachable and services are not required.
    pub fn create(prefix: &str) -> Option<Self> {
        let name = format!("sbtest_{prefix}_{}", uuid::Uuid::new_v4().simple());
        match mariadb(None, &format!("CREATE DATABASE `{name}`")) {
            Ok(output) if output.status.success() => Some(Self { name }),
            other => {
                let why = match other {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                    Err(error) => error.to_string(),
                };
                assert!(
                    !services_required(),
                    "MariaDB on 127.0.0.1:3306 is required: {why}"
                );
                println!("SKIPPED: MariaDB on 127.0.0.1:3306 is not reachable: {why}");
                None
            }
        }
    }

    /// Runs SQL in this database; panics with the server's message when it fails.
    pub fn execute(&self, sql: &str) {
        let output = mariadb(Some(&self.name), sql).expect("the mariadb client runs");
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl MariaDatabase {
    /// Runs a query in this database: one line per row, columns separated by tabs.
    pub fn query(&self, sql: &str) -> Vec<String> {
        let output = mariadb(Some(&self.name), sql).expect("the mariadb client runs");
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for MariaDatabase {
    fn drop(&mut self) {
        let _ = mariadb(None, &format!("DROP DATABASE IF EXISTS `{}`", self.name));
    }
}

/// A TCP relay to a local server that a test can cut: stands for a database instance that goes
/// away (connections drop, new ones are refused).
#[derive(Debug)]
pub struct TcpRelay {
    pub port: u16,
    cut: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl TcpRelay {
    /// Relays `127.0.0.1:<new port>` to `target` (e.g. `127.0.0.1:3306`).
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the relay listens");
        let port = listener.local_addr().expect("relay address").port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        let target = target.to_owned();
        tokio::spawn(async move {
            let mut stop = watch.clone();
            loop {
                tokio::select! {
                    _ = stop.wait_for(|cut| *cut) => return,
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { return };
                        let mut stop = watch.clone();
                        let target = target.clone();
                        tokio::spawn(async move {
                            let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                                return;
                            };
                            tokio::select! {
                                _ = stop.wait_for(|cut| *cut) => {}
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            }
                        });
                    }
                }
            }
        });
        Self {
            port,
            cut: std::sync::Arc::new(cut),
        }
    }

    /// Drops every relayed connection and refuses new ones.
    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }

    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }

    /// A handle that cuts the relay from elsewhere (a progress callback).
    pub fn cutter(&self) -> impl Fn() + Send + Sync + 'static {
        let cut = self.cut.clone();
        move || {
            let _ = cut.send(true);
        }
    }
}

/// Inserts the minimal configuration a sync definition needs (application, database, table,
/// definition) and returns the definition's id. Plain SQL, so it also serves a store migrated
/// only part of the way.
pub async fn insert_definition(store: &Store) -> Id {
    let (app, db, table, def) = (Id::new(), Id::new(), Id::new(), Id::new());
    let now = chrono::Utc::now();
    crate::with_pool!(store, pool => async {
        sqlx::query("INSERT INTO applications (id, name, created_at) VALUES ($1, 'a', $2)").bind(app).bind(now).execute(pool).await?;
        sqlx::query("INSERT INTO databases (id, application_id, name, db_type, environment, database_name, created_at) VALUES ($1, $2, 'd', 'sqlite', 'DEV', 'd', $3)")
            .bind(db).bind(app).bind(now).execute(pool).await?;
        sqlx::query("INSERT INTO database_tables (id, database_id, table_name) VALUES ($1, $2, 't')").bind(table).bind(db).execute(pool).await?;
        sqlx::query("INSERT INTO sync_definitions (id, name, source_table_id, sync_mode, key_strategy, cursor_strategy, created_at, updated_at)
                     VALUES ($1, 's', $2, 'ONE_WAY_PUSH', 'PRIMARY_KEY', 'FULL_SCAN', $3, $3)")
            .bind(def).bind(table).bind(now).execute(pool).await?;
        Ok::<_, sqlx::Error>(())
    }.await)
    .expect("configuration rows");
    def
}
