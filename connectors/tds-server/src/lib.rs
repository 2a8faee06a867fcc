//! A TDS 7.4 test server: the wire protocol SQL Server speaks, in front of an in-memory
//! database, so the SQL Server source is tested over a real TDS connection with tiberius as the
//! client, on machines where no SQL Server can run.
//!
//! Plain TCP on `127.0.0.1:0` (PRELOGIN answers "encryption not supported"); LOGIN7 with the
//! database name checked; SQL batches and `sp_executesql` RPCs with decoded parameters;
//! results as COLMETADATA + ROW/NBCROW for every type of [`SqlType`], split into packets of
//! [`wire::PACKET_SIZE`] (so results over 64 KiB span many); errors as ERROR tokens. Queries are
//! answered by evaluating them against the model ([`query`]), not by matching their text.
//! Written from the MS-TDS specification.
//!
//! Faults for tests: [`TdsServer::fail_reads_after`] cuts a result off with a server error after
//! some rows; every query received is kept ([`TdsServer::queries`]).

pub mod model;
pub mod query;
pub mod types;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::{TcpListener, TcpStream};

pub use model::{Column, Database, ModelError, Table};
pub use query::SqlError;
pub use types::{SqlType, SqlValue};
use wire::{DONE_COUNT, DONE_ERROR, DONE_MORE, Response};

#[derive(Debug)]
struct State {
    database: Database,
    /// Cut results from this table off after this many rows.
    fail_after: Option<(String, usize)>,
    queries: Vec<String>,
}

/// A running test server; stops when dropped.
#[derive(Debug)]
pub struct TdsServer {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TdsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TdsServer {
    /// Listens on `127.0.0.1:0` and serves `database`.
    pub async fn start(database: Database) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            database,
            fail_after: None,
            queries: Vec::new(),
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    if let Err(error) = serve(stream, state).await {
                        tracing::debug!(%error, "TDS test connection ended");
                    }
                });
            }
        });
        Ok(Self {
            address,
            state,
            task,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Reads or changes the database (between queries).
    pub fn with_database<R>(&self, change: impl FnOnce(&mut Database) -> R) -> R {
        change(&mut lock(&self.state).database)
    }

    /// Makes every later read of `table` fail with a server error after `rows` rows.
    pub fn fail_reads_after(&self, table: &str, rows: usize) {
        lock(&self.state).fail_after = Some((table.to_owned(), rows));
    }

    /// Every SQL text received so far (batches and `sp_executesql` statements).
    pub fn queries(&self) -> Vec<String> {
        lock(&self.state).queries.clone()
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    let Some((kind, _)) = wire::read_message(&mut reader).await? else {
        return Ok(());
    };
    if kind != wire::PRELOGIN {
        return Ok(());
    }
    wire::write_message(
        &mut writer,
        wire::TABULAR_RESULT,
        &wire::prelogin_response(),
    )
    .await?;
    let Some((kind, payload)) = wire::read_message(&mut reader).await? else {
        return Ok(());
    };
    if kind != wire::LOGIN7 {
        // A client that goes on with TLS records in PRELOGIN packets wanted encryption, which
        // this server declined: hang up, as a server would on a failed handshake.
        tracing::debug!(kind, "the client did not log in (did it ask for TLS?)");
        return Ok(());
    }
    let login = wire::parse_login(&payload);
    let mut response = Response::default();
    let database = lock(&state).database.name.clone();
    if !login.database.is_empty() && !login.database.eq_ignore_ascii_case(&database) {
        response.error(
            4060,
            11,
            &format!(
                "Cannot open database \"{}\" requested by the login. The login failed.",
                login.database
            ),
        );
        response.done(0xFD, DONE_ERROR, 0, 0);
        wire::write_message(&mut writer, wire::TABULAR_RESULT, &response.bytes).await?;
        return Ok(());
    }
    response.login_ack(&database);
    wire::write_message(&mut writer, wire::TABULAR_RESULT, &response.bytes).await?;

    while let Some((kind, payload)) = wire::read_message(&mut reader).await? {
        let response = match kind {
            wire::SQL_BATCH => match wire::parse_batch(&payload) {
                Ok(sql) => run(&state, &sql, &HashMap::new(), false),
                Err(message) => protocol_error(&message),
            },
            wire::RPC => match wire::parse_rpc(&payload) {
                Ok(call) if call.procedure == "sp_executesql" => {
                    let mut params = call.params.into_iter();
                    match params.next() {
                        Some((_, SqlValue::Text(sql))) => {
                            params.next(); // the declarations
                            let named: HashMap<String, SqlValue> = params
                                .enumerate()
                                .map(|(i, (name, value))| {
                                    let name = if name.is_empty() {
                                        format!("@P{}", i + 1)
                                    } else {
                                        name
                                    };
                                    (name, value)
                                })
                                .collect();
                            run(&state, &sql, &named, true)
                        }
                        _ => protocol_error("sp_executesql without a statement"),
                    }
                }
                Ok(call) => {
                    let mut response = Response::default();
                    response.error(
                        2812,
                        16,
                        &format!("Could not find stored procedure '{}'.", call.procedure),
                    );
                    response.done(0xFD, DONE_ERROR, 0, 0);
                    response
                }
                Err(message) => protocol_error(&message),
            },
            wire::ATTENTION => {
                let mut response = Response::default();
                response.done(0xFD, 0x0020, 0, 0);
                response
            }
            other => protocol_error(&format!("packet type 0x{other:02X} is not supported")),
        };
        wire::write_message(&mut writer, wire::TABULAR_RESULT, &response.bytes).await?;
    }
    Ok(())
}

fn protocol_error(message: &str) -> Response {
    let mut response = Response::default();
    response.error(
        4002,
        16,
        &format!("The incoming TDS stream is incorrect: {message}"),
    );
    response.done(0xFD, DONE_ERROR, 0, 0);
    response
}

/// Runs a batch (or the statement of an `sp_executesql`) and builds the whole response.
fn run(state: &Mutex<State>, sql: &str, params: &HashMap<String, SqlValue>, rpc: bool) -> Response {
    let (outcomes, fail_after) = {
        let mut state = lock(state);
        state.queries.push(sql.to_owned());
        (
            query::execute(&state.database, sql, params),
            state.fail_after.clone(),
        )
    };
    let mut response = Response::default();
    // Inside an RPC, statement results end with DONEINPROC; the call with RETURNSTATUS + DONEPROC.
    let done_token = if rpc { 0xFF } else { 0xFD };
    match outcomes {
        Err(error) => {
            response.error(error.number, error.class, &error.message);
            response.done(done_token, DONE_ERROR, 0, 0);
        }
        Ok(outcomes) => {
            let count = outcomes.len();
            for (i, outcome) in outcomes.into_iter().enumerate() {
                let more = if i + 1 < count || rpc { DONE_MORE } else { 0 };
                match outcome {
                    query::Outcome::Done => response.done(done_token, more, 0, 0),
                    query::Outcome::Rows {
                        columns,
                        rows,
                        source,
                    } => {
                        response.columns(&columns);
                        let types: Vec<SqlType> = columns.iter().map(|c| c.1.clone()).collect();
                        let cut = fail_after
                            .as_ref()
                            .filter(|(table, _)| {
                                source
                                    .as_deref()
                                    .is_some_and(|s| s.eq_ignore_ascii_case(table))
                            })
                            .map(|(_, n)| *n);
                        let mut sent = 0u64;
                        let mut failed = false;
                        for (n, row) in rows.iter().enumerate() {
                            if cut.is_some_and(|cut| n >= cut) {
                                response.error(
                                    1205,
                                    13,
                                    "Transaction (Process ID 52) was deadlocked on lock resources with another process and has been chosen as the deadlock victim. Rerun the transaction.",
                                );
                                failed = true;
                                break;
                            }
                            if let Err(message) = response.row(&types, row) {
                                response.error(8152, 16, &message);
                                failed = true;
                                break;
                            }
                            sent += 1;
                        }
                        if failed {
                            response.done(done_token, DONE_ERROR, 0xC1, 0);
                            break;
                        }
                        response.done(done_token, more | DONE_COUNT, 0xC1, sent);
                    }
                }
            }
        }
    }
    if rpc {
        response.return_status(0);
        response.done(0xFE, 0, 0, 0);
    }
    response
}
