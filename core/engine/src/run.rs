//! One run of a sync definition: read → identity → map → route → ledger diff → write → commit.
//!
//! # The idempotency protocol (DESIGN.md §4)
//! Before creates are sent, the meta-store records the intent: one `sync_create_intents` row per
//! list's share of a batch, naming the list and every identity. After the target answers, the
//! ledger records each item id and content hash (`SYNCED`) and the intent is deleted, in one
//! transaction, so each new ledger row is written once. A move records `PENDING_MOVE` (new list
//! pending, old item still current), creates in the new list, deletes the old item, then records
//! `SYNCED`. A delete records `PENDING_DELETE` first. At the start of every run, intents and
//! pending rows left by a crash (and `PENDING_CREATE` rows, which earlier versions wrote instead
//! of intents) are resolved by looking the identity up in the list's hidden, unique key column:
//! found → adopt the item; absent → forget the intent (the row is read again, because the cursor
//! only advances after every row below it is synced or dead-lettered).
//!
//! The result: whatever fails in between, each source row ends as exactly one item in exactly the
//! list its shard says.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt as _;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use syncbridge_api::{
    BatchStream, CollectionRef, ConnectorError, CursorSpec, ErasedSource, ErasedTarget, ItemId,
    Position, ReadRequest, Registry, RouteDecision, Row, RowBatch, RowKind, RowView, RuleError,
    ShardRouter, TableRef, Value, WasmRef, WriteOp, WriteOutcome,
};
use syncbridge_store::definitions::{RunDefinition, load_run_definition, sync_names};
use syncbridge_store::runtime::{self, LedgerRow, LedgerWrite, NewFailure, RunCounters};
use syncbridge_store::secrets::MasterKey;
use syncbridge_store::{Id, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::connect::{source_config, target_config};
use crate::identity::{
    ContentEncoder, lower_hex, source_identity_digest, source_identity_hash, write_source_identity,
};
use crate::mapping::{Field, MappedRow, Mapper, MappingSpec, SourceView};
use crate::plan::{Mode, Planned, Synced, deletes_vanished_rows, plan_row};
use crate::router::CelRouter;

/// The hidden, indexed, unique column that holds each item's identity hash.
pub const KEY_FIELD: &str = syncbridge_config::KEY_COLUMN;

/// Called after every source batch with the progress so far (progress bars, logs).
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Where a run stands.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub counters: RunCounters,
    /// Rows the read is expected to see: the source catalog's estimate for a full read; `None`
    /// for a read from a cursor (only the changes) or when the catalog does not know.
    pub expected_rows: Option<u64>,
}

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Ignore the committed cursor and read everything (also finds deletes).
    pub full: bool,
    /// Plan only: read and compare, write nothing anywhere.
    pub dry_run: bool,
    /// Rows per source batch.
    pub batch_size: usize,
    /// Stops the run after the batch in flight (graceful shutdown).
    pub shutdown: CancellationToken,
    /// Told about progress after every batch.
    pub progress: Option<ProgressFn>,
    /// Before a read from the start, ask the source's catalog for a row estimate, for a
    /// progress bar's ETA ([`Progress::expected_rows`]); an extra query (on SQLite a count).
    pub estimate_rows: bool,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("full", &self.full)
            .field("dry_run", &self.dry_run)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            full: false,
            dry_run: false,
            batch_size: 1000,
            shutdown: CancellationToken::new(),
            progress: None,
            estimate_rows: false,
        }
    }
}

/// One planned write, for `--dry-run`.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedChange {
    pub action: &'static str,
    pub identity: String,
    pub list: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_list: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: Option<String>,
    pub status: String,
    pub processed: i64,
    pub created: i64,
    pub updated: i64,
    pub moved: i64,
    pub deleted: i64,
    pub unchanged: i64,
    pub failed: i64,
    pub duration_ms: u128,
    /// A dry run's planned changes, the first [`PLANNED_LISTED`] of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<PlannedChange>,
    /// Planned changes beyond those listed (counted in the counters all the same).
    #[serde(skip_serializing_if = "is_zero")]
    pub planned_not_listed: u64,
}

impl From<&runtime::RunRecord> for RunReport {
    /// A recorded run as its report (no plan: dry runs are not recorded).
    fn from(run: &runtime::RunRecord) -> Self {
        let duration = run
            .end_time
            .map_or(0, |end| (end - run.start_time).num_milliseconds());
        Self {
            run_id: Some(run.id.to_string()),
            status: run.status.clone(),
            processed: run.items_processed,
            created: run.items_created,
            updated: run.items_updated,
            moved: run.items_moved,
            deleted: run.items_deleted,
            unchanged: run.items_unchanged,
            failed: run.items_failed,
            duration_ms: u128::try_from(duration).unwrap_or(0),
            planned: Vec::new(),
            planned_not_listed: 0,
        }
    }
}

/// How many planned changes a dry run lists: its memory stays bounded on any table, and the
/// counters count them all.
pub const PLANNED_LISTED: usize = 10_000;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why a run could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No definition has that name.
    #[error("no sync definition named `{name}`; defined: {}", if available.is_empty() { "none (apply a config first)".to_owned() } else { available.join(", ") })]
    UnknownSync {
        name: String,
        available: Vec<String>,
    },
    /// No logical database has that name.
    #[error("no database named `{name}`; apply a config that defines it (`databases[].name`)")]
    UnknownDatabase { name: String },
    /// No SharePoint connection has that name (or it has no active site).
    #[error(
        "no SharePoint connection named `{name}` with an active site; apply a config that defines it (`sharepoint[].name` with `sites`)"
    )]
    UnknownConnection { name: String },
    /// The definition cannot run as configured.
    #[error("sync `{sync}`: {message}")]
    Config { sync: String, message: String },
    /// The meta-store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A source or target failed in a way that stops the run.
    #[error("sync `{sync}`: {error}{}", error.hint().map(|h| format!("\n  fix: {h}")).unwrap_or_default())]
    Connector { sync: String, error: ConnectorError },
    /// Another run of the definition is under way (it holds the definition's run lock).
    #[error(
        "sync `{sync}`: another run of it is under way{}; wait for it to end (or stop it with Ctrl-C / SIGTERM) and run again",
        since.as_ref().map(|s| format!(" (run {s})")).unwrap_or_default()
    )]
    Busy { sync: String, since: Option<String> },
}

impl EngineError {
    fn config(def: &RunDefinition, message: impl Into<String>) -> Self {
        Self::Config {
            sync: def.name.clone(),
            message: message.into(),
        }
    }
}

/// Shared by every run of one process.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    registry: Arc<Registry>,
    master_key: Option<Arc<MasterKey>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// A target list bound for this run.
struct BoundTarget {
    name: String,
    sync_target_id: Id,
    list_row_id: Id,
    collection: CollectionRef,
    target: Arc<dyn ErasedTarget>,
}

/// A ledger row to write, owned, so a batch's rows can be written in one transaction.
struct Entry {
    identity: String,
    hash: String,
    list: Option<String>,
    item: Option<i64>,
    content: Option<String>,
    state: &'static str,
    pending: Option<String>,
    target: Option<Id>,
    /// No ledger row for the identity was seen (see `LedgerWrite::fresh`).
    fresh: bool,
}

/// What a write task needs to record ledger rows on its own.
#[derive(Clone)]
struct LedgerWriter {
    store: Store,
    sync_def_id: Id,
    key_strategy: String,
    instance_id: Id,
    run_id: Id,
}

impl LedgerWriter {
    /// Writes ledger rows in one transaction.
    async fn put(&self, entries: &[Entry]) -> Result<(), StoreError> {
        runtime::put_ledger_many(&self.store, &self.writes(entries)).await
    }

    async fn record_create_intent(&self, intent: &runtime::CreateIntent) -> Result<(), StoreError> {
        runtime::record_create_intent(&self.store, self.sync_def_id, self.run_id, intent).await
    }

    /// Writes ledger rows and deletes the create intents they settle, in one transaction.
    async fn settle(&self, entries: &[Entry], intents: &[Id]) -> Result<(), StoreError> {
        runtime::settle_create_intents(&self.store, intents, &self.writes(entries)).await
    }

    fn writes<'e>(&'e self, entries: &'e [Entry]) -> Vec<LedgerWrite<'e>> {
        entries
            .iter()
            .map(|e| LedgerWrite {
                sync_def_id: self.sync_def_id,
                source_identity: &e.identity,
                source_identity_hash: &e.hash,
                key_strategy: &self.key_strategy,
                source_instance_id: Some(self.instance_id),
                sp_list_id: e.list.as_deref(),
                sp_item_id: e.item,
                content_hash: e.content.as_deref(),
                sync_state: e.state,
                pending_list_id: e.pending.as_deref(),
                sync_target_id: e.target,
                run_id: self.run_id,
                fresh: e.fresh,
            })
            .collect()
    }
}

/// What one source row became before writing.
struct Prepared {
    /// The ledger may hold the identity. `false`: a full read's digest shows it does not, or
    /// (once planned) the ledger was asked and does not.
    in_ledger: bool,
    identity: String,
    hash: String,
    target: usize,
    fields: Vec<Field>,
    content_hash: String,
    /// The row as read, for the dead-letter queue (turned into JSON only if it goes there).
    raw: Row,
    columns: Arc<[String]>,
}

/// The stack of a run's own thread: a main thread's, where the loop ran before it had a thread
/// of its own.
const RUN_THREAD_STACK: usize = 8 * 1024 * 1024;

/// Writes dispatched to a target but not yet recorded, at most this many at once. Each is one
/// list's share of a source batch; while they are under way the run reads, maps and plans the
/// next batches, so memory stays bounded by `(WRITES_IN_FLIGHT + 1 + BATCHES_READ_AHEAD) ×
/// batch_size` rows (plus a full read's ledger digest, about 50 bytes a ledger row).
const WRITES_IN_FLIGHT: usize = 4;

/// One list's share of a batch, written by a task of its own while the run goes on.
struct WriteJob {
    index: usize,
    rows: Vec<(Prepared, Planned)>,
    /// The create intent recorded for the job's creates, deleted when their outcomes are.
    intent: Option<Id>,
    handle: tokio::task::JoinHandle<Result<Vec<WriteOutcome>, EngineError>>,
}

/// What waits to be recorded, oldest first: writes, and the read positions to commit once
/// every write before them is recorded (so a cursor never passes a row that is not synced or
/// dead-lettered).
enum Pending {
    Write(WriteJob),
    Commit(Position),
}

/// The run's writes under way. Dropping it (a failed run) aborts them: the ledger's intents make
/// that safe, as after a crash.
#[derive(Default)]
struct InFlight {
    queue: VecDeque<Pending>,
    writes: usize,
    /// Identity hashes of the rows being written: a later batch that touches one of them waits
    /// until they are recorded, so it plans against the ledger's final state.
    hashes: HashSet<String>,
    /// Outcomes of finished writes not yet in the ledger.
    unrecorded: Unrecorded,
}

/// Outcomes of finished writes, recorded together once they reach
/// [`ROWS_PER_LEDGER_TRANSACTION`] rows, before a read position is committed, and whenever the
/// run waits for every write (at the end of a read, before a failover, when a row's identity
/// is still being written).
///
/// Why: the ledger's identity index is keyed by SHA-256 hashes, so every transaction dirties
/// index pages all over it and writes each to the WAL; recording 4,000 rows at a time instead
/// of each batch's 1,000 cut the engine's own CPU time per pushed row by about a sixth (52 → 44
/// ms per 1,000 rows in `benches/push.rs`). What it costs: after a crash, the create intents of
/// up to that many more rows are recovered by looking their identities up in the lists.
#[derive(Default)]
struct Unrecorded {
    entries: Vec<Entry>,
    /// The create intents the entries settle, deleted in the same transaction.
    intents: Vec<Id>,
    /// The identities of the rows whose writes the entries record, released once recorded.
    hashes: Vec<String>,
}

/// See [`Unrecorded`].
const ROWS_PER_LEDGER_TRANSACTION: usize = 4_000;

impl Drop for InFlight {
    fn drop(&mut self) {
        for pending in &self.queue {
            if let Pending::Write(job) = pending {
                job.handle.abort();
            }
        }
    }
}

/// Mapped rows keep their source view only for a router, the one reader of it.
fn source_view(router: Option<&dyn ShardRouter>) -> SourceView {
    if router.is_some() {
        SourceView::Keep
    } else {
        SourceView::Skip
    }
}

/// A batch's shard decisions: one router call for the batch's mapped rows (a WASM router
/// decides a whole batch in one call; the CEL router builds its context once), taken back one
/// per mapped row, in order.
struct BatchRoutes(Option<std::vec::IntoIter<RouteDecision>>);

impl BatchRoutes {
    fn decide<'m>(
        router: Option<&dyn ShardRouter>,
        rows: impl Iterator<Item = &'m MappedRow>,
    ) -> Self {
        Self(router.map(|router| {
            let views: Vec<RowView<'_>> = rows.map(MappedRow::view).collect();
            router.route(&views).into_iter()
        }))
    }

    /// The next mapped row's decision: the default target when there is no router.
    fn next(&mut self) -> RouteDecision {
        match &mut self.0 {
            None => RouteDecision::Default,
            Some(decisions) => decisions.next().unwrap_or_else(|| {
                RouteDecision::Failed(RuleError::new("the router gave no decision for the row"))
            }),
        }
    }
}

/// Key look-ups under way at once while a create intent is resolved.
const RECOVERY_LOOKUPS_IN_FLIGHT: usize = 8;

/// Source batches read ahead of the one being processed. The source's next query (and the
/// decoding of its rows) then overlaps mapping, hashing and planning, instead of waiting for
/// them; memory grows by at most this many batches.
const BATCHES_READ_AHEAD: usize = 2;

/// A source stream driven by a task of its own, [`BATCHES_READ_AHEAD`] batches ahead of the
/// run. Dropping it stops the task (and drops the source's stream) at once.
///
/// Rows the source hands over unconverted ([`ReadRequest::defer_conversion`]) are converted
/// by this task, alongside the run, while `convert` is set; the run clears it once its ledger
/// digest can recognise most rows by their fingerprints, and then converts only the rows it
/// does not recognise ([`RunState::process_batch`]).
struct ReadAhead {
    batches: tokio::sync::mpsc::Receiver<Result<RowBatch, ConnectorError>>,
    task: tokio::task::JoinHandle<()>,
    ended: bool,
    convert: Arc<AtomicBool>,
}

impl ReadAhead {
    fn start(mut stream: BatchStream) -> Self {
        let (sender, batches) = tokio::sync::mpsc::channel(BATCHES_READ_AHEAD);
        let convert = Arc::new(AtomicBool::new(true));
        let converting = convert.clone();
        let task = tokio::spawn(async move {
            while let Some(batch) = stream.next().await {
                let batch = match batch {
                    Ok(mut batch) if converting.load(Ordering::Relaxed) => {
                        batch.convert_rows(|_| false).map(|()| batch)
                    }
                    other => other,
                };
                let failed = batch.is_err();
                if sender.send(batch).await.is_err() || failed {
                    break;
                }
            }
        });
        Self {
            batches,
            task,
            ended: false,
            convert,
        }
    }

    /// Leaves the rows handed over unconverted to the run from now on.
    fn leave_conversion_to_the_run(&self) {
        self.convert.store(false, Ordering::Relaxed);
    }

    /// The next batch; `None` at the end of the stream. A read task that died (a panic in the
    /// source) is an error, never a silent end: a full read taken as complete would delete rows.
    async fn next(&mut self) -> Option<Result<RowBatch, ConnectorError>> {
        if self.ended {
            return None;
        }
        match self.batches.recv().await {
            Some(batch) => Some(batch),
            None => {
                self.ended = true;
                match (&mut self.task).await {
                    Ok(()) => None,
                    Err(error) => Some(Err(ConnectorError::internal(format!(
                        "reading the source failed: {error}"
                    )))),
                }
            }
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The source a run reads from and its request, for acknowledging committed positions.
#[derive(Clone, Copy)]
struct Reading<'s> {
    source: &'s dyn ErasedSource,
    request: &'s ReadRequest,
}

impl Engine {
    pub fn new(store: Store, registry: Arc<Registry>, master_key: Option<Arc<MasterKey>>) -> Self {
        Self {
            store,
            registry,
            master_key,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn master_key(&self) -> Result<Arc<MasterKey>, ConnectorError> {
        self.key()
    }

    /// Loads a definition by name.
    pub async fn definition(&self, name: &str) -> Result<RunDefinition, EngineError> {
        match load_run_definition(&self.store, name).await? {
            Some(def) => Ok(def),
            None => Err(EngineError::UnknownSync {
                name: name.to_owned(),
                available: sync_names(&self.store).await?,
            }),
        }
    }

    fn key(&self) -> Result<Arc<MasterKey>, ConnectorError> {
        match &self.master_key {
            Some(key) => Ok(key.clone()),
            None => MasterKey::load()
                .map(Arc::new)
                .map_err(|e| ConnectorError::user(e.to_string())),
        }
    }

    /// Connects the first healthy source instance, by role and priority.
    pub async fn connect_source(
        &self,
        def: &RunDefinition,
    ) -> Result<(Id, Box<dyn ErasedSource>), EngineError> {
        self.connect_source_excluding(def, &[]).await
    }

    /// Connects the first healthy source instance not in `exclude` (failover in the middle of a
    /// run), and records when it was last verified.
    pub async fn connect_source_excluding(
        &self,
        def: &RunDefinition,
        exclude: &[Id],
    ) -> Result<(Id, Box<dyn ErasedSource>), EngineError> {
        let factory = self
            .registry
            .source(&def.db_type)
            .map_err(|e| EngineError::config(def, e.to_string()))?;
        let mut last_error = None;
        let key = || self.key();
        for instance in def
            .sources
            .iter()
            .filter(|i| !exclude.contains(&i.instance_id))
        {
            let config = source_config(&def.database_name, instance, &key).map_err(|error| {
                EngineError::Connector {
                    sync: def.name.clone(),
                    error,
                }
            })?;
            match factory(config).await {
                Ok(source) => match source.healthcheck().await {
                    Ok(()) => {
                        runtime::mark_instance_verified(&self.store, instance.instance_id).await?;
                        return Ok((instance.instance_id, source));
                    }
                    Err(error) => {
                        tracing::warn!(sync = %def.name, instance = %instance.instance_label, error = %error, "source instance unhealthy; trying the next");
                        last_error = Some(error);
                    }
                },
                Err(error) => {
                    tracing::warn!(sync = %def.name, instance = %instance.instance_label, error = %error, "source instance unreachable; trying the next");
                    last_error = Some(error);
                }
            }
        }
        Err(EngineError::Connector {
            sync: def.name.clone(),
            error: last_error.unwrap_or_else(|| {
                ConnectorError::user("no enabled source instance")
                    .with_hint("bind an instance in `source.instances` and apply")
            }),
        })
    }

    /// Connects each distinct SharePoint connection and site once.
    async fn connect_targets(
        &self,
        def: &RunDefinition,
        require_lists: bool,
    ) -> Result<Vec<BoundTarget>, EngineError> {
        let mut by_site: HashMap<Id, Arc<dyn ErasedTarget>> = HashMap::new();
        let mut bound = Vec::new();
        for row in &def.targets {
            let target = match by_site.get(&row.site_row_id) {
                Some(target) => target.clone(),
                None => {
                    let factory = self
                        .registry
                        .target(&row.connector)
                        .map_err(|e| EngineError::config(def, unknown_target(e)))?;
                    let key = || self.key();
                    let config =
                        target_config(row, &key).map_err(|error| EngineError::Connector {
                            sync: def.name.clone(),
                            error,
                        })?;
                    let target: Arc<dyn ErasedTarget> =
                        Arc::from(factory(config).await.map_err(|error| {
                            EngineError::Connector {
                                sync: def.name.clone(),
                                error,
                            }
                        })?);
                    by_site.insert(row.site_row_id, target.clone());
                    target
                }
            };
            let list_id = match (&row.list_id, require_lists) {
                (Some(id), _) => id.clone(),
                (None, false) => String::new(),
                (None, true) => {
                    return Err(EngineError::config(
                        def,
                        format!(
                            "list `{}` is not provisioned yet; run `syncbridge provision {}` first",
                            row.list_name, def.name
                        ),
                    ));
                }
            };
            bound.push(BoundTarget {
                name: row.name.clone(),
                sync_target_id: row.sync_target_id,
                list_row_id: row.list_row_id,
                collection: CollectionRef {
                    id: list_id,
                    name: row.list_name.clone(),
                },
                target,
            });
        }
        if bound.is_empty() {
            return Err(EngineError::config(
                def,
                "the definition has no active target",
            ));
        }
        Ok(bound)
    }

    /// The key columns the source's catalog defines: the primary key, or the named unique
    /// constraint.
    async fn key_from_catalog(
        &self,
        def: &RunDefinition,
        source: &dyn ErasedSource,
    ) -> Result<Vec<String>, EngineError> {
        let table = TableRef {
            schema: def.schema_name.clone(),
            name: def.table_name.clone(),
        };
        let described = self.describe_table(def, source).await?.ok_or_else(|| {
            EngineError::config(def, format!("table `{table}` was not found in the source"))
        })?;
        let columns = match (def.key_strategy.as_str(), &def.key_constraint_name) {
            ("UNIQUE_CONSTRAINT", Some(name)) => described
                .constraints
                .iter()
                .find(|c| &c.name == name && matches!(c.kind, syncbridge_api::ConstraintKind::Unique | syncbridge_api::ConstraintKind::PrimaryKey))
                .map(|c| c.columns.clone())
                .ok_or_else(|| {
                    let available: Vec<&str> = described.constraints.iter().filter(|c| c.kind == syncbridge_api::ConstraintKind::Unique).map(|c| c.name.as_str()).collect();
                    EngineError::config(def, format!("table `{table}` has no unique constraint `{name}`; unique constraints: {}", if available.is_empty() { "none".to_owned() } else { available.join(", ") }))
                })?,
            _ => described.primary_key(),
        };
        if columns.is_empty() {
            return Err(EngineError::config(
                def,
                format!(
                    "table `{table}` has no primary key; use key strategy COMPOSITE_COLUMNS with `columns`, or HASHED"
                ),
            ));
        }
        Ok(columns)
    }

    /// One connected target per target row, for provisioning (lists may not exist yet).
    pub(crate) async fn connect_targets_for_provisioning(
        &self,
        def: &RunDefinition,
    ) -> Result<Vec<Arc<dyn ErasedTarget>>, EngineError> {
        Ok(self
            .connect_targets(def, false)
            .await?
            .into_iter()
            .map(|t| t.target)
            .collect())
    }

    /// Runs the definition `name` once.
    ///
    /// On a multi-threaded runtime the run's loop (reading, mapping, hashing, planning, binding
    /// ledger rows) runs on a thread of its own at background priority
    /// ([`syncbridge_threads::yield_current_thread`]), while the tasks it starts (the writes to
    /// the target, the source's read-ahead) run on the runtime's workers. The loop computes for
    /// milliseconds per batch and can wait; the requests to the target are the run's critical
    /// path (`benches/push.rs`: a median of 0.81 of the minimal client against 0.77 with the loop
    /// on the caller's thread, BENCHMARKS.md).
    /// Dropping the returned future stops the run as before: its loop is dropped on its thread.
    pub async fn run(&self, name: &str, options: &RunOptions) -> Result<RunReport, EngineError> {
        let handle = tokio::runtime::Handle::current();
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            // One thread runs everything: there is nothing to yield to.
            return self.run_here(name, options).await;
        }
        let (engine, sync, options) = (self.clone(), name.to_owned(), options.clone());
        let stop = CancellationToken::new();
        let _stop_when_dropped = stop.clone().drop_guard();
        let (answer, answered) = tokio::sync::oneshot::channel();
        let span = tracing::Span::current();
        let started = std::thread::Builder::new()
            .name("syncbridge-run".into())
            .stack_size(RUN_THREAD_STACK)
            .spawn({
                let sync = sync.clone();
                move || {
                    syncbridge_threads::yield_current_thread();
                    let run = async {
                        tokio::select! {
                            report = engine.run_here(&sync, &options) => Some(report),
                            () = stop.cancelled() => None,
                        }
                    };
                    let run = Box::pin(tracing::Instrument::instrument(run, span));
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        handle.block_on(run)
                    }));
                    let _ = answer.send(outcome);
                }
            });
        let failed = |error: ConnectorError| EngineError::Connector { sync, error };
        if let Err(error) = started {
            return Err(failed(
                ConnectorError::internal(format!("cannot start the run's thread: {error}"))
                    .with_hint("the system refused a new thread: check the process's thread and memory limits (`ulimit -u`, `ulimit -v`)"),
            ));
        }
        match answered.await {
            Ok(Ok(Some(report))) => report,
            // Stopped only when this future is dropped, which then cannot see this.
            Ok(Ok(None)) => Err(failed(ConnectorError::internal("the run was stopped"))),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(failed(ConnectorError::internal(
                "the run's thread ended without an answer",
            ))),
        }
    }

    /// [`Self::run`] on the calling task.
    async fn run_here(&self, name: &str, options: &RunOptions) -> Result<RunReport, EngineError> {
        let started = Instant::now();
        let def = self.definition(name).await?;
        if !def.is_enabled {
            return Err(EngineError::config(
                &def,
                "the definition is disabled (`enabled: false`)",
            ));
        }
        // One run of a definition at a time; a dry run writes nothing and needs no lock.
        if options.dry_run {
            return self.run_locked(def, options, started).await;
        }
        let lock = self.lock(&def).await?;
        let report = self.run_locked(def, options, started).await;
        lock.release().await;
        report
    }

    /// Takes the definition's run lock, or says which run holds it.
    async fn lock(
        &self,
        def: &RunDefinition,
    ) -> Result<syncbridge_store::lock::RunLock, EngineError> {
        if let Some(lock) = syncbridge_store::lock::try_lock_definition(&self.store, def.id).await?
        {
            return Ok(lock);
        }
        let since = runtime::recent_runs(&self.store, Some(&def.name), 1)
            .await?
            .into_iter()
            .find(|run| run.status == "RUNNING")
            .map(|run| format!("{}, started {}", run.id, run.start_time));
        Err(EngineError::Busy {
            sync: def.name.clone(),
            since,
        })
    }

    /// A run of `def`, under its lock unless it is a dry run.
    async fn run_locked(
        &self,
        def: RunDefinition,
        options: &RunOptions,
        started: Instant,
    ) -> Result<RunReport, EngineError> {
        let Connected {
            def,
            mapper,
            targets,
            router,
            instance_id,
            source,
        } = self.prepare(def).await?;

        let open_failures = runtime::open_failure_hashes(&self.store, def.id)
            .await?
            .into_iter()
            .collect();
        let mut run = RunState::new(self, &def, &targets, options, instance_id, open_failures);
        run.fingerprint_config = fingerprint_config(&def, &mapper, router.as_deref());
        // A read of the whole table meets every dead-lettered row that still exists, as it is
        // now; retrying the stored copies first would write them twice, and bring back rows
        // gone from the source. (Archives keep rows gone from the source: they retry them.)
        let reads_everything = options.full || def.cursor_strategy == "FULL_SCAN";
        if !options.dry_run {
            let run_id = runtime::start_run(&self.store, def.id, "PUSH").await?;
            run.run_id = Some(run_id);
            // This run holds the definition's lock: any other run still RUNNING is dead.
            let unfinished = runtime::close_unfinished_runs(&self.store, def.id, run_id).await?;
            if unfinished > 0 {
                runtime::add_event(
                    &self.store,
                    run_id,
                    "WARN",
                    "UNFINISHED_RUNS",
                    &format!("{unfinished} earlier runs ended without recording an end (killed or crashed); marked FAILED, and this run resumes from what they recorded"),
                    None,
                )
                .await?;
            }
            run.recover().await?;
            if !(reads_everything && deletes_vanished_rows(run.mode)) {
                run.retry_dead_letters(&mapper, router.as_deref()).await?;
            }
        }
        let outcome = run
            .stream(source.as_ref(), &mapper, router.as_deref())
            .await;
        let full_read = reads_everything || run.read_restarted;
        let outcome = match outcome {
            Ok(complete) if complete && full_read => {
                let outcome = run.delete_vanished().await.map(|()| complete);
                if outcome.is_ok() {
                    run.refresh_saved_digest().await;
                }
                outcome
            }
            other => other,
        };
        let status = match &outcome {
            Ok(true) => "COMPLETED",
            Ok(false) | Err(_) => "FAILED",
        };
        let error_text = match &outcome {
            Ok(false) => Some("stopped before the end (shutdown requested)".to_owned()),
            Err(error) => Some(error.to_string()),
            Ok(true) => None,
        };
        if let Some(run_id) = run.run_id {
            runtime::finish_run(
                &self.store,
                run_id,
                status,
                run.counters,
                error_text.as_deref(),
            )
            .await?;
            if run.recognised > 0 {
                let message = format!(
                    "{} of {} rows read were recognised unchanged by their fingerprint, without mapping or hashing them",
                    run.recognised, run.counters.processed
                );
                runtime::add_event(
                    &self.store,
                    run_id,
                    "INFO",
                    "ROWS_RECOGNISED",
                    &message,
                    Some(serde_json::json!({
                        "recognised": run.recognised,
                        "read": run.counters.processed,
                    })),
                )
                .await?;
            }
            let summary = serde_json::to_value(run.counters).ok();
            let (severity, kind, message) = match (&error_text, run.counters.failed) {
                (Some(error), _) => ("ERROR", "RUN_FAILED", error.clone()),
                (None, 0) => ("INFO", "RUN_COMPLETED", "run completed".to_owned()),
                (None, failed) => (
                    "WARN",
                    "ROWS_DEAD_LETTERED",
                    format!("{failed} rows went to the dead-letter queue"),
                ),
            };
            runtime::add_event(&self.store, run_id, severity, kind, &message, summary).await?;
            let completed = matches!(outcome, Ok(true));
            for (target, written) in targets.iter().zip(&run.written) {
                runtime::put_run_metrics(
                    &self.store,
                    &runtime::RunMetrics {
                        sync_def_id: def.id,
                        source_instance_id: run.instance_id,
                        target_list_id: target.list_row_id,
                        run_id,
                        written: *written,
                        completed,
                    },
                )
                .await?;
            }
        }
        outcome?;
        let counters = run.counters;
        Ok(RunReport {
            run_id: run.run_id.map(|id| id.to_string()),
            status: status.to_owned(),
            processed: counters.processed,
            created: counters.created,
            updated: counters.updated,
            moved: counters.moved,
            deleted: counters.deleted,
            unchanged: counters.unchanged,
            failed: counters.failed,
            duration_ms: started.elapsed().as_millis(),
            planned: run.planned,
            planned_not_listed: run.planned_not_listed,
        })
    }
}

/// Everything a read needs, connected.
struct Connected {
    def: RunDefinition,
    mapper: Mapper,
    targets: Vec<BoundTarget>,
    router: Option<Box<dyn ShardRouter>>,
    instance_id: Id,
    source: Box<dyn ErasedSource>,
}

impl Engine {
    /// Compiles the mappings and the router, connects the targets and the first healthy source
    /// instance, and completes the key from the source's catalog when the config did not list it.
    async fn prepare(&self, def: RunDefinition) -> Result<Connected, EngineError> {
        // Also checked when a config is applied; a definition written to the store another way
        // is checked here.
        if def.key_strategy == "HASHED" && def.cursor_strategy != "FULL_SCAN" {
            return Err(EngineError::config(
                &def,
                format!(
                    "{} (it has {}); use FULL_SCAN, or key the rows by columns",
                    syncbridge_config::HASHED_NEEDS_FULL_SCAN,
                    def.cursor_strategy
                ),
            ));
        }
        let specs: Vec<MappingSpec> = def
            .mappings
            .iter()
            .map(|m| MappingSpec {
                source: m.source_column_name.clone(),
                target: m.target_column_name.clone(),
                direction: m.sync_direction.clone(),
                transform: m.transform_rule.clone(),
                is_system_field: m.is_system_field,
            })
            .collect();
        let mapper = Mapper::new(&self.registry, &specs)
            .map_err(|e| EngineError::config(&def, e.message))?;
        let targets = self.connect_targets(&def, true).await?;
        let router = build_router(&def, &targets, &self.registry)?;
        let (instance_id, source) = self.connect_source(&def).await?;
        let mut def = def;
        if def.key_columns.is_empty() && def.key_strategy != "HASHED" {
            def.key_columns = self.key_from_catalog(&def, source.as_ref()).await?;
        }
        Ok(Connected {
            def,
            mapper,
            targets,
            router,
            instance_id,
            source,
        })
    }

    /// The source's description of the definition's table (`None` when it does not exist).
    pub(crate) async fn describe_table(
        &self,
        def: &RunDefinition,
        source: &dyn ErasedSource,
    ) -> Result<Option<syncbridge_api::TableDescriptor>, EngineError> {
        let table = TableRef {
            schema: def.schema_name.clone(),
            name: def.table_name.clone(),
        };
        Ok(source
            .introspect(Some(std::slice::from_ref(&table)))
            .await
            .map_err(|error| EngineError::Connector {
                sync: def.name.clone(),
                error,
            })?
            .into_iter()
            .next())
    }
}

/// One list's reconciliation.
#[derive(Debug, Clone, Serialize)]
pub struct ListReconcile {
    pub list: String,
    /// Source rows that route to this list.
    pub source_rows: usize,
    pub items: usize,
    /// `MATCH` or `MISMATCH`.
    pub status: &'static str,
    /// Identities of source rows without an item here (at most 20).
    pub missing: Vec<String>,
    /// Items here without a source row routed to this list (at most 20): the identity the
    /// ledger knows the item by and its item id (`42 (item 7)`), or the item id alone.
    pub unexpected: Vec<String>,
}

/// A definition's reconciliation: each list, and the source rows that belong to none.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    pub lists: Vec<ListReconcile>,
    /// Source rows that belong to no list: a rule, the identity or the routing fails for them
    /// (a run dead-letters them).
    pub unassigned: u64,
    /// Identities of those rows (at most 20; rows without one are only counted).
    pub unassigned_rows: Vec<String>,
}

impl Reconciliation {
    /// Every list matches and every source row belongs to a list.
    pub fn matches(&self) -> bool {
        self.unassigned == 0 && self.lists.iter().all(|l| l.status == "MATCH")
    }
}

/// What a full read says the lists should hold (see [`RunState::expected`]).
struct Expected {
    /// Per target: identity hash → identity.
    lists: Vec<HashMap<String, String>>,
    unassigned: u64,
    unassigned_rows: Vec<String>,
}

impl Expected {
    fn unassigned(&mut self, identity: Option<String>) {
        self.unassigned += 1;
        if let Some(identity) = identity
            && self.unassigned_rows.len() < 20
        {
            self.unassigned_rows.push(identity);
        }
    }
}

impl Engine {
    /// Compares, list by list, the source rows a definition routes there with the items present,
    /// and records the result in `sync_metrics`. Writes nothing to the target.
    pub async fn reconcile(&self, name: &str) -> Result<Reconciliation, EngineError> {
        let def = self.definition(name).await?;
        let Connected {
            def,
            mapper,
            targets,
            router,
            instance_id,
            source,
        } = self.prepare(def).await?;
        let options = RunOptions {
            dry_run: true,
            full: true,
            ..RunOptions::default()
        };
        let mut state = RunState::new(self, &def, &targets, &options, instance_id, HashSet::new());
        let expected = state
            .expected(source.as_ref(), &mapper, router.as_deref())
            .await?;
        let mut out = Vec::new();
        for (index, target) in targets.iter().enumerate() {
            let keys = target
                .target
                .list_keys(&target.collection, KEY_FIELD)
                .await
                .map_err(|error| EngineError::Connector {
                    sync: def.name.clone(),
                    error,
                })?;
            let present: HashSet<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
            let wanted = &expected.lists[index];
            let missing: Vec<String> = wanted
                .iter()
                .filter(|(h, _)| !present.contains(h.as_str()))
                .map(|(_, i)| i.clone())
                .take(20)
                .collect();
            let unexpected: Vec<&(ItemId, String)> = keys
                .iter()
                .filter(|(_, k)| !wanted.contains_key(k))
                .take(20)
                .collect();
            let hashes: Vec<String> = unexpected.iter().map(|(_, k)| k.clone()).collect();
            let known: HashMap<String, String> = runtime::ledger_rows(&self.store, def.id, &hashes)
                .await?
                .into_iter()
                .map(|row| (row.source_identity_hash, row.source_identity))
                .collect();
            let unexpected: Vec<String> = unexpected
                .iter()
                .map(|(item, key)| match known.get(key) {
                    Some(identity) => format!("{identity} (item {})", item.0),
                    None => format!("item {}", item.0),
                })
                .collect();
            let status =
                if missing.is_empty() && unexpected.is_empty() && wanted.len() == keys.len() {
                    "MATCH"
                } else {
                    "MISMATCH"
                };
            runtime::put_reconcile_metrics(
                &self.store,
                def.id,
                instance_id,
                target.list_row_id,
                wanted.len() as i64,
                keys.len() as i64,
                status,
            )
            .await?;
            out.push(ListReconcile {
                list: target.collection.name.clone(),
                source_rows: wanted.len(),
                items: keys.len(),
                status,
                missing,
                unexpected,
            });
        }
        Ok(Reconciliation {
            lists: out,
            unassigned: expected.unassigned,
            unassigned_rows: expected.unassigned_rows,
        })
    }
}

/// What a row's fingerprint ([`RowBatch::fingerprints`]) stands for in a run: a hash of
/// everything besides the row that decides the row's mapped content and list — the mode, the
/// key, the mappings with their rules, the sharding policy and the target lists. A digest
/// entry's fingerprint is used only by a run with the same hash. `None` (fingerprints not used)
/// when a rule or the router depends on more than the row (the clock, a WASM module's state):
/// such a row can change list or content while it reads the same.
fn fingerprint_config(
    def: &RunDefinition,
    mapper: &Mapper,
    router: Option<&dyn ShardRouter>,
) -> Option<[u8; 32]> {
    if !mapper.depends_only_on_row() || router.is_some_and(|r| !r.depends_only_on_row()) {
        return None;
    }
    let targets: Vec<_> = def
        .targets
        .iter()
        .map(|t| (&t.name, t.is_default, t.priority, &t.list_id))
        .collect();
    let described = format!(
        "{:?}",
        (
            &def.sync_mode,
            &def.key_strategy,
            &def.key_constraint_name,
            &def.key_columns,
            &def.target_strategy,
            &def.sharding_policy,
            mapper,
            targets,
        )
    );
    Some(Sha256::digest(described.as_bytes()).into())
}

/// The router for CONDITIONAL definitions; `None` for SINGLE (everything to the one target).
fn build_router(
    def: &RunDefinition,
    targets: &[BoundTarget],
    registry: &Registry,
) -> Result<Option<Box<dyn ShardRouter>>, EngineError> {
    if def.target_strategy != "CONDITIONAL" {
        return Ok(None);
    }
    let policy = def.sharding_policy.as_ref();
    if let Some(wasm) = policy.and_then(|p| p.get("wasm")).and_then(|w| w.as_str()) {
        let reference = WasmRef::parse(wasm).map_err(|e| EngineError::config(def, e.message))?;
        let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
        return registry
            .wasm_routers()
            .map_err(|e| EngineError::config(def, e.message))?(&reference, &names)
        .map(Some)
        .map_err(|e| EngineError::config(def, format!("sharding `{wasm}`: {}", e.message)));
    }
    let rules: Vec<(String, String)> = policy
        .and_then(|p| p.get("rules"))
        .and_then(|r| r.as_array())
        .map(|rules| {
            rules
                .iter()
                .filter_map(|r| {
                    Some((
                        r.get("target")?.as_str()?.to_owned(),
                        r.get("when")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    for (target, _) in &rules {
        if !targets.iter().any(|t| &t.name == target) {
            return Err(EngineError::config(
                def,
                format!("a sharding rule routes to `{target}`, which is not a target"),
            ));
        }
    }
    CelRouter::new(&rules)
        .map(|router| Some(Box::new(router) as Box<dyn ShardRouter>))
        .map_err(|e| EngineError::config(def, e.message))
}

struct RunState<'a> {
    engine: &'a Engine,
    def: &'a RunDefinition,
    mode: Mode,
    targets: &'a [BoundTarget],
    options: &'a RunOptions,
    run_id: Option<Id>,
    instance_id: Id,
    counters: RunCounters,
    /// Items created, updated or moved in, per target (by index), for `sync_metrics`.
    written: Vec<i64>,
    planned: Vec<PlannedChange>,
    planned_not_listed: u64,
    /// Identity hashes met before the digest was loaded (first 16 bytes): dead letters retried
    /// ahead of the read, or rows read before a restart. Folded into the digest when it loads.
    seen: HashSet<[u8; 16]>,
    /// Identity hashes with an open dead-letter entry, resolved when the row syncs.
    open_failures: HashSet<String>,
    in_flight: InFlight,
    /// On full reads: what the ledger says about every synced item, so unchanged rows are
    /// recognised without a ledger query (see [`LedgerDigest`]).
    digest: Option<LedgerDigest>,
    /// The source could not continue from the committed position and the read started over
    /// from the beginning: a full read, after which vanished rows are deleted.
    read_restarted: bool,
    /// What a row's fingerprint stands for in this run (see [`fingerprint_config`]); `None`
    /// when rows cannot be recognised by their fingerprints.
    fingerprint_config: Option<[u8; 32]>,
    /// Rows a full read recognised unchanged by their fingerprint (counted in `unchanged` too).
    recognised: i64,
    /// When the read last started from the beginning: after a complete read, dead-letter
    /// entries not failed again since are resolved (see [`Self::delete_vanished`]).
    read_started_at: chrono::DateTime<chrono::Utc>,
}

/// A compact copy of the ledger, loaded once at the start of a full read. It decides two things
/// without a ledger query per batch, which dominated no-change full scans:
/// - *unchanged*: a row whose identity is synced to the same list with the same content. Any
///   other row goes through the ledger as before, and its entry turns stale, so a second
///   occurrence of the identity in the same read is not judged on old data;
/// - *vanished*: entries no row of the read touched; when there are none, the ledger is not
///   paged again to look for deletes.
///
/// Identity and content hashes are kept as their first 16 bytes (128 bits). The copy saved
/// beside the ledger keeps its entries in the order the full read that saved it met the rows,
/// so the next full read (which reads in the same key order) finds each row's entry where the
/// previous one ended, without a look-up in a map of every entry — on a large table such a
/// look-up missed the processor's caches for every row. A row met out of order (an insert, a
/// changed key, a copy read from the ledger) is found through a map built the first time one
/// is needed.
///
/// An entry also keeps the fingerprint ([`RowBatch::fingerprints`]) of the row a full read
/// last found unchanged, when the run's [`fingerprint_config`] allows it: the next full read
/// recognises a row that reads the same, where the previous one ended, without mapping or
/// hashing it. Fingerprints are saved with the copy and its config hash, and only a run with
/// the same config hash uses them.
#[derive(Debug)]
struct LedgerDigest {
    lists: Vec<String>,
    /// The ledger generation the entries were read at.
    generation: i64,
    entries: Vec<DigestEntry>,
    /// The entry after the last one a row found: where the next row is looked for first.
    next: usize,
    /// Entry positions by identity, built on the first row not found near `next`.
    index: Option<FxHashMap<[u8; 16], u32>>,
    /// Identities met that no entry holds: rows new to the ledger when the copy was taken.
    met_new: FxHashSet<[u8; 16]>,
    /// Every identity met, in the order met: the order of the next saved copy.
    read_order: Vec<[u8; 16]>,
    /// Rows whose entry was looked up in `index` (or found in no entry).
    out_of_order: usize,
    /// The run's [`fingerprint_config`]: entry fingerprints are kept and learned only with one.
    config: Option<[u8; 32]>,
    /// Entries whose fingerprint this read set or changed.
    learned: usize,
    /// The rows this read is writing, with the list and content written and the row's
    /// fingerprint: where the ledger holds that list and content once the writes are
    /// recorded, the saved copy carries the fingerprint, and the next full read recognises
    /// the row (the first rerun after a push included).
    written: Vec<DigestEntry>,
}

/// Entries looked at from `next` on before the map: a row deleted from the source leaves its
/// entry behind, and a few such in a row should not cost the map.
const LOOK_AHEAD: usize = 8;

/// What a full read's digest tells of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DigestVerdict {
    /// Synced to the same list with the same content: nothing to do.
    Unchanged,
    /// The ledger had no row with this identity when the digest loaded, and no row of this
    /// run had it before.
    NotInLedger,
    /// Anything else: the ledger decides.
    AskLedger,
}

#[derive(Debug, Clone, Copy)]
struct DigestEntry {
    identity: [u8; 16],
    content: [u8; 16],
    /// Index into [`LedgerDigest::lists`]; [`NO_LIST`] when the row is synced to none of them.
    list: u8,
    /// The fingerprint of the row last found unchanged or written, [`NO_FINGERPRINT`] when
    /// none.
    fingerprint: u128,
    /// Synced, and not touched by this read yet: can still be judged unchanged.
    usable: bool,
    /// A row of this read had this identity.
    seen: bool,
}

impl DigestEntry {
    /// An entry as the ledger has it: synced to list number `list` with `content`, or not
    /// usable ([`NO_LIST`]).
    fn synced_to(identity: [u8; 16], list: u8, content: [u8; 16]) -> Self {
        Self {
            identity,
            content,
            list,
            fingerprint: NO_FINGERPRINT,
            usable: list != NO_LIST,
            seen: false,
        }
    }
}

impl LedgerDigest {
    /// `lists`: the run's target lists; only rows synced to one of them can be unchanged.
    ///
    /// Taken from the copy saved beside the ledger when it is current (no ledger write since
    /// it was saved); otherwise read from the ledger (and saved after the read, in read order:
    /// [`RunState::refresh_saved_digest`]).
    ///
    /// `config`: the run's [`fingerprint_config`]; saved fingerprints of another are dropped.
    async fn load(
        store: &Store,
        sync_def_id: Id,
        lists: Vec<String>,
        config: Option<[u8; 32]>,
    ) -> Result<Self, EngineError> {
        let (generation, saved) = runtime::saved_ledger_digest(store, sync_def_id).await?;
        let mut entries = None;
        if let Some(saved) = saved.filter(|saved| saved.lists == lists) {
            entries = decode_saved_digest(&saved.entries, lists.len()).map(
                |(saved_config, mut entries)| {
                    if config != Some(saved_config) {
                        for entry in &mut entries {
                            entry.fingerprint = NO_FINGERPRINT;
                        }
                    }
                    entries
                },
            );
            if entries.is_none() {
                tracing::warn!(
                    sync_def_id = %sync_def_id,
                    "the saved ledger digest is malformed or in an older format; reading the ledger instead"
                );
            }
        }
        let entries = match entries {
            Some(entries) => entries,
            None => read_ledger_digest(store, sync_def_id, &lists, 0).await?,
        };
        Ok(Self {
            lists,
            generation,
            read_order: Vec::with_capacity(entries.len()),
            entries,
            next: 0,
            index: None,
            met_new: FxHashSet::default(),
            out_of_order: 0,
            config,
            learned: 0,
            written: Vec::new(),
        })
    }

    /// Notes a row this read writes (see [`LedgerDigest::written`]).
    fn note_written(
        &mut self,
        identity: [u8; 16],
        list: usize,
        content: [u8; 16],
        fingerprint: Option<u128>,
    ) {
        let (Some(_), Some(fingerprint), Ok(list)) = (self.config, fingerprint, u8::try_from(list))
        else {
            return;
        };
        if fingerprint != NO_FINGERPRINT && list != NO_LIST {
            let mut entry = DigestEntry::synced_to(identity, list, content);
            entry.fingerprint = fingerprint;
            self.written.push(entry);
        }
    }

    /// The entries of a batch's rows that read as they did when their entry was last found
    /// unchanged, by position in `fingerprints` (empty when the batch has none). Looked for
    /// where the previous row's entry ended (a few entries ahead, as [`LedgerDigest::meet`]),
    /// among entries not met yet in this read; the batch's rows must then be met in order.
    fn recognise(&self, batch: &RowBatch) -> Vec<Option<usize>> {
        let fingerprints = &batch.fingerprints;
        if self.config.is_none() || fingerprints.len() != batch.len() {
            return Vec::new();
        }
        // Rows handed over unconverted are all upserts.
        let is_delete = |i: usize| batch.rows.get(i).is_some_and(|r| r.kind == RowKind::Delete);
        let mut next = self.next;
        fingerprints
            .iter()
            .enumerate()
            .map(|(i, &fingerprint)| {
                if is_delete(i) || fingerprint == NO_FINGERPRINT {
                    return None;
                }
                let end = self.entries.len().min(next + LOOK_AHEAD);
                let position = (next..end).find(|&i| {
                    let entry = &self.entries[i];
                    entry.fingerprint == fingerprint && entry.usable && !entry.seen
                })?;
                next = position + 1;
                Some(position)
            })
            .collect()
    }

    /// Whether most entries carry a fingerprint this run can use: most rows of a full read
    /// will then be recognised, and the rows are best converted only when they are not.
    fn recognises_most_rows(&self) -> bool {
        let fingerprinted = self
            .entries
            .iter()
            .filter(|entry| entry.fingerprint != NO_FINGERPRINT)
            .count();
        self.config.is_some() && fingerprinted * 2 > self.entries.len()
    }

    /// Gives `entries` (read from the ledger after this read wrote) the fingerprints this
    /// digest holds for the same identity, list and content, those of the rows this read
    /// wrote first: a fingerprint stands for a row that maps to that content in that list,
    /// which stays true whoever wrote the ledger. A write that did not land leaves the ledger
    /// with another content (or none), and its row without a fingerprint.
    fn keep_fingerprints(&self, entries: &mut [DigestEntry]) {
        let known: FxHashMap<[u8; 16], &DigestEntry> = self
            .entries
            .iter()
            .filter(|entry| entry.fingerprint != NO_FINGERPRINT)
            .chain(&self.written)
            .map(|entry| (entry.identity, entry))
            .collect();
        if known.is_empty() {
            return;
        }
        for entry in entries {
            if let Some(old) = known.get(&entry.identity)
                && old.list == entry.list
                && old.content == entry.content
            {
                entry.fingerprint = old.fingerprint;
            }
        }
    }

    /// Meets a row [`LedgerDigest::recognise`] found at `position`.
    fn meet_at(&mut self, position: usize) {
        self.read_order.push(self.entries[position].identity);
        self.entries[position].seen = true;
        self.next = position + 1;
    }

    /// The position of the entry of a row the read met (noting the identity as met, in order);
    /// `Err` with whether this is the first row of the read with this identity when no entry
    /// holds it.
    fn meet(&mut self, identity: &[u8; 16]) -> Result<usize, bool> {
        self.read_order.push(*identity);
        let (next, end) = (self.next, self.entries.len().min(self.next + LOOK_AHEAD));
        let position = match (next..end).find(|&i| self.entries[i].identity == *identity) {
            Some(position) => Some(position),
            None => {
                self.out_of_order += 1;
                self.position(identity)
            }
        };
        match position {
            Some(position) => {
                self.next = position + 1;
                self.entries[position].seen = true;
                Ok(position)
            }
            None => Err(self.met_new.insert(*identity)),
        }
    }

    /// The position of an identity's entry, through the map (built on first use).
    fn position(&mut self, identity: &[u8; 16]) -> Option<usize> {
        let entries = &self.entries;
        let index = self.index.get_or_insert_with(|| {
            let mut index = FxHashMap::with_capacity_and_hasher(entries.len(), Default::default());
            for (position, entry) in entries.iter().enumerate() {
                index.insert(entry.identity, position as u32);
            }
            index
        });
        index.get(identity).map(|&position| position as usize)
    }

    /// Notes that a row of the read had this identity.
    fn see(&mut self, identity: &[u8; 16]) {
        let _ = self.meet(identity);
    }

    /// Whether some ledger row was not touched by the read (a delete candidate).
    fn any_unseen(&self) -> bool {
        self.entries.iter().any(|entry| !entry.seen)
    }

    /// Whether the ledger row with this identity held an entry no row of the read touched.
    fn vanished(&mut self, identity: &[u8; 16]) -> bool {
        self.position(identity)
            .is_some_and(|position| !self.entries[position].seen)
    }

    /// Whether the next read would find its rows out of place in a copy saved in the current
    /// order (one row in a hundred or more was).
    fn order_changed(&self) -> bool {
        self.out_of_order * 100 >= self.read_order.len().max(1)
    }
}

/// Entries as saved ([`SAVED_ENTRY_BYTES`] each), in their order.
fn encode_digest(entries: &[DigestEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * SAVED_ENTRY_BYTES);
    for entry in entries {
        out.extend_from_slice(&entry.identity);
        out.push(entry.list);
        out.extend_from_slice(&entry.content);
        out.extend_from_slice(&entry.fingerprint.to_le_bytes());
    }
    out
}

/// Bytes per entry of a saved digest: identity prefix, list number (or [`NO_LIST`]), content
/// prefix, row fingerprint (little-endian).
const SAVED_ENTRY_BYTES: usize = 49;
const NO_LIST: u8 = u8::MAX;
const NO_FINGERPRINT: u128 = 0;
/// The start of a saved digest in this format, before the [`fingerprint_config`] it was saved
/// with (zeros for none) and the entries. A copy in an earlier format lacks it and is not read.
const SAVED_DIGEST_MAGIC: &[u8; 4] = b"SBD2";
const SAVED_HEADER_BYTES: usize = SAVED_DIGEST_MAGIC.len() + 32;

/// Reads the digest's entries from the ledger (in the ledger's order). `expected_rows` only
/// sizes the list (counting the ledger's rows first would read its index once more).
async fn read_ledger_digest(
    store: &Store,
    sync_def_id: Id,
    lists: &[String],
    expected_rows: usize,
) -> Result<Vec<DigestEntry>, EngineError> {
    let mut entries = Vec::with_capacity(expected_rows);
    let names: Vec<&str> = lists.iter().map(String::as_str).collect();
    runtime::visit_ledger_digest(store, sync_def_id, &names, |row| {
        let (list, content) = match row.synced_to {
            Some((list, content)) => (list as u8, hash_prefix(content)),
            None => (NO_LIST, [0; 16]),
        };
        entries.push(DigestEntry::synced_to(
            hash_prefix(row.identity_hash_prefix),
            list,
            content,
        ));
    })
    .await?;
    Ok(entries)
}

/// The config hash and the entries of a saved digest; `None` when it is not in this format,
/// not whole entries, or names a list that is not there.
fn decode_saved_digest(saved: &[u8], lists: usize) -> Option<([u8; 32], Vec<DigestEntry>)> {
    let header = saved.get(..SAVED_HEADER_BYTES)?;
    let (magic, config) = header.split_at(SAVED_DIGEST_MAGIC.len());
    let entries = &saved[SAVED_HEADER_BYTES..];
    if magic != SAVED_DIGEST_MAGIC || !entries.len().is_multiple_of(SAVED_ENTRY_BYTES) {
        return None;
    }
    let entries = entries
        .chunks_exact(SAVED_ENTRY_BYTES)
        .map(|entry| {
            let (identity, rest) = entry.split_at(16);
            let (list, rest) = (rest[0], &rest[1..]);
            if list != NO_LIST && usize::from(list) >= lists {
                return None;
            }
            let (content, fingerprint) = rest.split_at(16);
            let mut entry =
                DigestEntry::synced_to(identity.try_into().ok()?, list, content.try_into().ok()?);
            entry.fingerprint = u128::from_le_bytes(fingerprint.try_into().ok()?);
            Some(entry)
        })
        .collect::<Option<_>>()?;
    Some((config.try_into().ok()?, entries))
}

/// Saved entries reordered: first those of `order`'s identities in that order (each once), then
/// the rest in their order.
fn in_read_order(entries: &[u8], order: &[[u8; 16]]) -> Vec<u8> {
    let mut by_identity: FxHashMap<&[u8], &[u8]> =
        FxHashMap::with_capacity_and_hasher(entries.len() / SAVED_ENTRY_BYTES, Default::default());
    for entry in entries.chunks_exact(SAVED_ENTRY_BYTES) {
        by_identity.insert(&entry[..16], entry);
    }
    let mut out = Vec::with_capacity(entries.len());
    for identity in order {
        if let Some(entry) = by_identity.remove(&identity[..]) {
            out.extend_from_slice(entry);
        }
    }
    for entry in entries.chunks_exact(SAVED_ENTRY_BYTES) {
        if by_identity.remove(&entry[..16]).is_some() {
            out.extend_from_slice(entry);
        }
    }
    out
}

/// Saves a digest read at `generation`. A digest only saves time, so a failure to save is a
/// warning, not a failed run.
async fn save_ledger_digest(
    store: &Store,
    sync_def_id: Id,
    generation: i64,
    lists: &[String],
    config: Option<[u8; 32]>,
    entries: &[u8],
) {
    let mut saved = Vec::with_capacity(SAVED_HEADER_BYTES + entries.len());
    saved.extend_from_slice(SAVED_DIGEST_MAGIC);
    saved.extend_from_slice(&config.unwrap_or([0; 32]));
    saved.extend_from_slice(entries);
    match runtime::save_ledger_digest(store, sync_def_id, generation, lists, &saved).await {
        Ok(saved) => tracing::debug!(
            sync_def_id = %sync_def_id,
            entries = entries.len() / SAVED_ENTRY_BYTES,
            saved,
            "ledger digest saved (false: the ledger changed meanwhile)"
        ),
        Err(error) => tracing::warn!(
            sync_def_id = %sync_def_id,
            error = %error,
            "could not save the ledger digest; the next full read reads the ledger"
        ),
    }
}

/// The first 16 bytes of a SHA-256.
fn prefix(hash: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash[..16]);
    out
}

/// The first 16 bytes of a hex SHA-256 (zeros for text that is not hex: such a hash matches
/// nothing real).
fn hash_prefix(hash: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    if let Some(prefix) = hash.get(..32)
        && hex::decode_to_slice(prefix, &mut out).is_err()
    {
        out = [0u8; 16];
    }
    out
}

fn row_json(columns: &[String], row: &Row) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .zip(&row.values)
        .map(|(c, v)| {
            (
                c.clone(),
                serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect();
    serde_json::Value::Object(map)
}

impl<'a> RunState<'a> {
    fn new(
        engine: &'a Engine,
        def: &'a RunDefinition,
        targets: &'a [BoundTarget],
        options: &'a RunOptions,
        instance_id: Id,
        open_failures: HashSet<String>,
    ) -> Self {
        Self {
            engine,
            def,
            mode: Mode::from_sync_mode(&def.sync_mode),
            targets,
            options,
            run_id: None,
            instance_id,
            counters: RunCounters::default(),
            written: vec![0; targets.len()],
            planned: Vec::new(),
            planned_not_listed: 0,
            seen: HashSet::new(),
            open_failures,
            in_flight: InFlight::default(),
            digest: None,
            read_restarted: false,
            fingerprint_config: None,
            recognised: 0,
            read_started_at: chrono::Utc::now(),
        }
    }
    fn default_target(&self) -> usize {
        self.targets
            .iter()
            .position(|t| {
                self.def
                    .targets
                    .iter()
                    .any(|row| row.sync_target_id == t.sync_target_id && row.is_default)
            })
            .unwrap_or(0)
    }

    /// The target a routing decision names: its own, or the default one (no predicate matched,
    /// or a target the definition no longer has); a failed predicate is the row's error.
    fn target_index(&self, decision: RouteDecision) -> Result<usize, RuleError> {
        match decision {
            RouteDecision::Default => Ok(self.default_target()),
            RouteDecision::Target(name) => Ok(self
                .targets
                .iter()
                .position(|t| t.name == name)
                .unwrap_or_else(|| self.default_target())),
            RouteDecision::Failed(error) => Err(error),
        }
    }

    fn target_by_list(&self, list_id: &str) -> Option<&BoundTarget> {
        self.targets.iter().find(|t| t.collection.id == list_id)
    }

    fn connector_error(&self, error: ConnectorError) -> EngineError {
        EngineError::Connector {
            sync: self.def.name.clone(),
            error,
        }
    }

    /// Resolves ledger rows a previous run left pending (crash recovery).
    async fn recover(&mut self) -> Result<(), EngineError> {
        let store = &self.engine.store;
        let pending = runtime::pending_ledger_rows(store, self.def.id).await?;
        let intents = runtime::create_intents(store, self.def.id).await?;
        let writes = pending.len() + intents.iter().map(|i| i.identities.len()).sum::<usize>();
        if writes > 0 {
            tracing::info!(sync = %self.def.name, rows = writes, "resolving writes a previous run left pending");
            if let Some(run_id) = self.run_id {
                let message = format!("resolving {writes} writes an interrupted run left pending");
                runtime::add_event(store, run_id, "WARN", "RECOVERY", &message, None).await?;
            }
        }
        for intent in intents {
            self.resolve_create_intent(intent).await?;
        }
        for row in pending {
            match row.sync_state.as_str() {
                "PENDING_CREATE" | "PENDING_MOVE" => {
                    let Some(list) = row
                        .pending_list_id
                        .as_deref()
                        .and_then(|l| self.target_by_list(l))
                    else {
                        runtime::delete_ledger(store, self.def.id, &row.source_identity_hash)
                            .await?;
                        continue;
                    };
                    let found = list
                        .target
                        .find_by_key(&list.collection, KEY_FIELD, &row.source_identity_hash)
                        .await
                        .map_err(|e| self.connector_error(e))?;
                    match (found, row.sync_state.as_str()) {
                        (Some(item), state) => {
                            if state == "PENDING_MOVE" {
                                self.delete_old_copy(&row).await?;
                            }
                            // Adopt the item; a null content hash makes the next read update it.
                            self.put(
                                &row.source_identity,
                                &row.source_identity_hash,
                                Some(&list.collection.id.clone()),
                                Some(item.0),
                                None,
                                "SYNCED",
                                None,
                                Some(list.sync_target_id),
                            )
                            .await?;
                        }
                        (None, "PENDING_MOVE") => {
                            // The new copy never appeared: the old item is still current.
                            let old_list = row.sp_list_id.clone();
                            self.put(
                                &row.source_identity,
                                &row.source_identity_hash,
                                old_list.as_deref(),
                                row.sp_item_id,
                                None,
                                "SYNCED",
                                None,
                                None,
                            )
                            .await?;
                        }
                        (None, _) => {
                            runtime::delete_ledger(store, self.def.id, &row.source_identity_hash)
                                .await?
                        }
                    }
                }
                "PENDING_DELETE" => {
                    self.delete_item(&row).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Resolves creates an interrupted run may or may not have sent: an identity found in the
    /// list's key column is adopted (a null content hash makes the next read update the item);
    /// one not found was never created, and its row is read again (the cursor never passed
    /// it). The adoptions and the intent's deletion are one transaction.
    async fn resolve_create_intent(
        &mut self,
        intent: runtime::CreateIntent,
    ) -> Result<(), EngineError> {
        let mut adopted = Vec::new();
        if let Some(list) = self.target_by_list(&intent.sp_list_id) {
            // Look-ups are independent: several at once, as a remote service answers each
            // after a round trip (an intent holds a batch's share of rows).
            let lookups: Vec<_> = futures::stream::iter(intent.identities.into_iter().map(
                |(identity, hash)| async move {
                    let found = list
                        .target
                        .find_by_key(&list.collection, KEY_FIELD, &hash)
                        .await;
                    (identity, hash, found)
                },
            ))
            .buffered(RECOVERY_LOOKUPS_IN_FLIGHT)
            .collect()
            .await;
            for (identity, hash, found) in lookups {
                let found = found.map_err(|e| self.connector_error(e))?;
                if let Some(item) = found {
                    adopted.push(Entry {
                        identity,
                        hash,
                        list: Some(list.collection.id.clone()),
                        item: Some(item.0),
                        content: None,
                        state: "SYNCED",
                        pending: None,
                        target: Some(list.sync_target_id),
                        fresh: false,
                    });
                }
            }
        }
        // A list that is no longer a target of the definition: nothing there is ours to adopt.
        self.record_outcomes(&adopted, intent.id).await
    }

    /// Processes again the dead-lettered rows whose retry is due, from the raw row they kept
    /// (rows below an `UPDATED_AT` cursor are never read again otherwise). A row that fails again
    /// stays in the queue with one more retry counted; one that syncs is resolved.
    async fn retry_dead_letters(
        &mut self,
        mapper: &Mapper,
        router: Option<&dyn ShardRouter>,
    ) -> Result<(), EngineError> {
        let due =
            runtime::due_failures(&self.engine.store, self.def.id, chrono::Utc::now()).await?;
        if due.is_empty() {
            return Ok(());
        }
        tracing::info!(sync = %self.def.name, rows = due.len(), "retrying dead-lettered rows");
        let mut groups: Vec<(Vec<String>, Vec<Row>)> = Vec::new();
        for entry in due {
            let Some(serde_json::Value::Object(raw)) = entry.raw_data.map(|j| j.0) else {
                continue;
            };
            let columns: Vec<String> = raw.keys().cloned().collect();
            let values: Vec<Value> = raw
                .values()
                .map(|v| serde_json::from_value(v.clone()).unwrap_or(Value::Null))
                .collect();
            match groups.iter_mut().find(|(c, _)| *c == columns) {
                Some((_, rows)) => rows.push(Row::new(values)),
                None => groups.push((columns, vec![Row::new(values)])),
            }
        }
        let processed = self.counters.processed;
        for (columns, rows) in groups {
            let mut batch = RowBatch {
                columns: columns.into(),
                rows,
                position: None,
                notes: Vec::new(),
                fingerprints: Vec::new(),
                unconverted: None,
            };
            self.process_batch(&mut batch, mapper, router, None).await?;
        }
        self.drain(0, None).await?;
        // Retries are not part of this run's read.
        self.counters.processed = processed;
        Ok(())
    }

    /// Deletes the item a moved row left in its old list (404 counts as done).
    async fn delete_old_copy(&self, row: &LedgerRow) -> Result<(), EngineError> {
        let (Some(list_id), Some(item)) = (row.sp_list_id.as_deref(), row.sp_item_id) else {
            return Ok(());
        };
        let Some(list) = self.target_by_list(list_id) else {
            return Ok(());
        };
        let outcomes = list
            .target
            .write(
                &list.collection,
                vec![WriteOp::Delete {
                    item_id: ItemId(item),
                }],
            )
            .await
            .map_err(|e| self.connector_error(e))?;
        match outcomes.into_iter().next() {
            Some(WriteOutcome::Deleted | WriteOutcome::NotFound) => Ok(()),
            Some(WriteOutcome::Failed(error)) => Err(self.connector_error(error)),
            Some(other) => Err(self.connector_error(ConnectorError::external(format!(
                "deleting item {item} of {list_id}: {other:?}"
            )))),
            None => Err(self.connector_error(ConnectorError::internal(
                "the target returned no outcome for a delete",
            ))),
        }
    }

    /// Deletes a row's item and forgets the row (`PENDING_DELETE` first, so a crash retries).
    async fn delete_item(&mut self, row: &LedgerRow) -> Result<(), EngineError> {
        self.put(
            &row.source_identity,
            &row.source_identity_hash,
            row.sp_list_id.as_deref(),
            row.sp_item_id,
            row.content_hash.as_deref(),
            "PENDING_DELETE",
            None,
            None,
        )
        .await?;
        self.delete_old_copy(row).await?;
        runtime::delete_ledger(&self.engine.store, self.def.id, &row.source_identity_hash).await?;
        Ok(())
    }

    /// Records a recovered intent's outcomes in the ledger and, in the same transaction,
    /// deletes the intent (nothing in a dry run).
    async fn record_outcomes(&self, entries: &[Entry], intent: Id) -> Result<(), EngineError> {
        if let Some(ledger) = self.ledger_writer() {
            ledger.settle(entries, &[intent]).await?;
        }
        Ok(())
    }

    /// Records the outcomes [`Self::complete`] set aside, in one transaction, and lets later
    /// batches touch their identities again.
    async fn record_unrecorded(&mut self) -> Result<(), EngineError> {
        let Unrecorded {
            entries,
            intents,
            hashes,
        } = std::mem::take(&mut self.in_flight.unrecorded);
        if let Some(ledger) = self.ledger_writer() {
            ledger.settle(&entries, &intents).await?;
        }
        for hash in &hashes {
            self.in_flight.hashes.remove(hash);
        }
        Ok(())
    }

    /// The ledger's writer for this run; `None` in a dry run, which writes nothing.
    fn ledger_writer(&self) -> Option<LedgerWriter> {
        Some(LedgerWriter {
            store: self.engine.store.clone(),
            sync_def_id: self.def.id,
            key_strategy: self.def.key_strategy.clone(),
            instance_id: self.instance_id,
            run_id: self.run_id?,
        })
    }

    /// Marks a row's open dead-letter entry resolved, if it has one.
    async fn resolved(&mut self, hash: &str) -> Result<(), EngineError> {
        if self.run_id.is_none() {
            return Ok(()); // a dry run
        }
        if self.open_failures.remove(hash) {
            runtime::resolve_failure(&self.engine.store, self.def.id, hash).await?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn put(
        &self,
        identity: &str,
        hash: &str,
        list: Option<&str>,
        item: Option<i64>,
        content: Option<&str>,
        state: &str,
        pending_list: Option<&str>,
        sync_target_id: Option<Id>,
    ) -> Result<(), EngineError> {
        let Some(run_id) = self.run_id else {
            return Ok(());
        };
        runtime::put_ledger(
            &self.engine.store,
            &LedgerWrite {
                sync_def_id: self.def.id,
                source_identity: identity,
                source_identity_hash: hash,
                key_strategy: &self.def.key_strategy,
                source_instance_id: Some(self.instance_id),
                sp_list_id: list,
                sp_item_id: item,
                content_hash: content,
                sync_state: state,
                pending_list_id: pending_list,
                sync_target_id,
                run_id,
                fresh: false,
            },
        )
        .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn dead_letter(
        &mut self,
        identity: Option<&str>,
        hash: Option<&str>,
        list: Option<&str>,
        stage: &str,
        code: Option<&str>,
        message: &str,
        raw: serde_json::Value,
        normalized: Option<serde_json::Value>,
    ) -> Result<(), EngineError> {
        self.counters.failed += 1;
        tracing::warn!(sync = %self.def.name, identity = identity.unwrap_or("?"), stage, error = message, "row dead-lettered");
        if self.options.dry_run {
            return Ok(());
        }
        // A row without an identity (a key column missing, or a HASHED row that did not map)
        // is known by its raw values, so it stays one entry however often it fails.
        let raw_hash = match hash {
            Some(_) => None,
            None => Some(format!(
                "raw:{}",
                lower_hex(&Sha256::digest(raw.to_string().as_bytes()).into())
            )),
        };
        let hash = hash.or(raw_hash.as_deref());
        if let Some(hash) = hash {
            // Open from now on: a later batch of this run that syncs or deletes the row
            // resolves it.
            self.open_failures.insert(hash.to_owned());
        }
        runtime::record_failure(
            &self.engine.store,
            &NewFailure {
                sync_def_id: self.def.id,
                run_id: self.run_id,
                source_identity: identity,
                source_identity_hash: hash,
                target_list_id: list,
                stage,
                error_code: code,
                error_message: message,
                raw_data: Some(raw),
                normalized_data: normalized,
            },
        )
        .await?;
        Ok(())
    }

    fn read_request(&self, from: Option<Position>, mapper: &Mapper) -> ReadRequest {
        let mut columns: Vec<String> = Vec::new();
        let mapped = mapper.source_columns();
        for column in self
            .def
            .key_columns
            .iter()
            .map(String::as_str)
            .chain(mapped.iter().map(String::as_str))
            .chain(self.def.cursor_column.as_deref())
        {
            if !columns.iter().any(|c| c == column) {
                columns.push(column.to_owned());
            }
        }
        let mut cursor = cursor_spec(self.def);
        if self.options.dry_run && from.is_none() {
            // A plain scan: an `LSN` read from the start replaces the replication slot, and the
            // next real run, which continues from the committed position, would miss every
            // change made in between.
            cursor = CursorSpec::FullScan;
        }
        let key = if self.def.key_columns.is_empty() {
            columns.clone()
        } else {
            self.def.key_columns.clone()
        };
        ReadRequest {
            table: TableRef {
                schema: self.def.schema_name.clone(),
                name: self.def.table_name.clone(),
            },
            columns,
            key,
            cursor,
            from,
            batch_size: self.options.batch_size.max(1),
            defer_conversion: false,
        }
    }

    /// Reads everything and routes it without writing: per target, identity hash → identity.
    async fn expected(
        &mut self,
        source: &dyn ErasedSource,
        mapper: &Mapper,
        router: Option<&dyn ShardRouter>,
    ) -> Result<Expected, EngineError> {
        let mut out = Expected {
            lists: vec![HashMap::new(); self.targets.len()],
            unassigned: 0,
            unassigned_rows: Vec::new(),
        };
        let mut request = self.read_request(None, mapper);
        request.cursor = CursorSpec::FullScan;
        let mut stream = source
            .read(request)
            .await
            .map_err(|e| self.connector_error(e))?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| self.connector_error(e))?;
            // Mapped and routed a batch at a time, as a run does.
            let rows: Vec<&Row> = batch.rows.iter().collect();
            let keys = self.key_positions(&batch.columns);
            let mut mapped: Vec<(&Row, MappedRow)> = Vec::with_capacity(rows.len());
            for (row, result) in
                rows.iter()
                    .zip(mapper.map_batch_with(&batch.columns, &rows, source_view(router)))
            {
                match result {
                    Ok(row_mapped) => mapped.push((*row, row_mapped)),
                    Err(_) => out.unassigned(self.identity_of(keys.as_deref(), row, None)),
                }
            }
            let mut routes = BatchRoutes::decide(router, mapped.iter().map(|(_, m)| m));
            for (row, mapped) in &mapped {
                let decision = routes.next();
                let Some(identity) = self.identity_of(keys.as_deref(), row, Some(&mapped.fields))
                else {
                    out.unassigned(None);
                    continue;
                };
                let Ok(target) = self.target_index(decision) else {
                    out.unassigned(Some(identity));
                    continue;
                };
                let hash = source_identity_hash(&self.def.key_strategy, &identity);
                out.lists[target].insert(hash, identity);
            }
        }
        Ok(out)
    }

    /// Streams the source; `Ok(false)` when stopped early by shutdown.
    async fn stream(
        &mut self,
        source: &dyn ErasedSource,
        mapper: &Mapper,
        router: Option<&dyn ShardRouter>,
    ) -> Result<bool, EngineError> {
        let full_scan = self.def.cursor_strategy == "FULL_SCAN";
        let from = if self.options.full || full_scan {
            None
        } else {
            runtime::source_cursor(&self.engine.store, self.def.id, Some(self.instance_id))
                .await?
                .map(Position)
        };
        if from.is_none() {
            self.read_started_at = chrono::Utc::now();
        }
        // A read from the beginning meets every row: the digest answers for most of them
        // (also on the first read of an `UPDATED_AT` or `LSN` definition). Loaded once the
        // source's read is under way, which it overlaps.
        let mut digest_wanted = from.is_none();
        let expected_rows = match (self.options.estimate_rows, &from) {
            (true, None) => self.expected_rows(source).await,
            _ => None,
        };
        // The instance read from: the one the run connected, or another after a failover.
        let mut replacement: Option<Box<dyn ErasedSource>> = None;
        let mut tried = vec![self.instance_id];
        // The position after the last batch read, whether or not it was committed: a failover
        // resumes there (positions are portable between instances of one database).
        let mut from = from;
        'instances: loop {
            let current: &dyn ErasedSource = replacement.as_deref().unwrap_or(source);
            let mut request = self.read_request(from.clone(), mapper);
            // Rows recognised by their fingerprints need no values (see `ReadAhead`).
            request.defer_conversion = self.fingerprint_config.is_some();
            // A source whose change log was purged past the position asks for a full read: the
            // read starts over (once), at `read` or once its stream is under way.
            let can_restart = request.from.is_some() && !self.read_restarted;
            let mut stream = match current.read(request.clone()).await {
                Ok(stream) => ReadAhead::start(stream),
                Err(error) if can_restart && error.is_full_read_required() => {
                    self.restart_in_full(&error).await?;
                    from = None;
                    continue 'instances;
                }
                Err(error) => {
                    replacement = Some(self.fail_over(error, &mut tried).await?);
                    continue 'instances;
                }
            };
            if std::mem::take(&mut digest_wanted) && self.digest.is_none() {
                self.load_digest().await?;
            }
            if self
                .digest
                .as_ref()
                .is_some_and(LedgerDigest::recognises_most_rows)
            {
                stream.leave_conversion_to_the_run();
            }
            let reading = Reading {
                source: current,
                request: &request,
            };
            while let Some(batch) = stream.next().await {
                let mut batch = match batch {
                    Ok(batch) => batch,
                    Err(error) => {
                        drop(stream);
                        self.drain(0, Some(reading)).await?;
                        if can_restart && error.is_full_read_required() {
                            self.restart_in_full(&error).await?;
                            from = None;
                        } else {
                            replacement = Some(self.fail_over(error, &mut tried).await?);
                        }
                        continue 'instances;
                    }
                };
                self.record_notes(&batch.notes).await?;
                self.process_batch(&mut batch, mapper, router, Some(reading))
                    .await?;
                if let Some(position) = &batch.position {
                    from = Some(position.clone());
                    if self.run_id.is_some() && !full_scan {
                        self.in_flight
                            .queue
                            .push_back(Pending::Commit(position.clone()));
                    }
                }
                self.drain(WRITES_IN_FLIGHT, Some(reading)).await?;
                if let Some(progress) = &self.options.progress {
                    progress(&Progress {
                        counters: self.counters,
                        expected_rows,
                    });
                }
                if self.options.shutdown.is_cancelled() {
                    tracing::info!(sync = %self.def.name, "stopping after the batches in flight, as asked");
                    self.drain(0, Some(reading)).await?;
                    return Ok(false);
                }
            }
            self.drain(0, Some(reading)).await?;
            return Ok(true);
        }
    }

    /// The source cannot continue from its position (its change log was purged past it): the
    /// read starts over from the beginning, as a full read after which vanished rows are
    /// deleted, and the run says so with a WARN `SOURCE_RESET` event.
    async fn restart_in_full(&mut self, error: &ConnectorError) -> Result<(), EngineError> {
        tracing::warn!(sync = %self.def.name, %error, "the source cannot continue from its position; reading the whole table again");
        if let Some(run_id) = self.run_id {
            runtime::add_event(
                &self.engine.store,
                run_id,
                "WARN",
                "SOURCE_RESET",
                &format!(
                    "{}; the whole table is read again and vanished rows are deleted",
                    error.message()
                ),
                None,
            )
            .await?;
        }
        self.read_restarted = true;
        // The read meets every row again: what the dead-letter retries and the partial read
        // met before counts no more (a row they wrote and that is gone since is deleted).
        self.seen.clear();
        self.read_started_at = chrono::Utc::now();
        if self.digest.is_none() {
            self.load_digest().await?;
        }
        Ok(())
    }

    /// What the source noticed while reading (values read as NULL …), as WARN events of the run.
    async fn record_notes(&self, notes: &[String]) -> Result<(), EngineError> {
        let Some(run_id) = self.run_id else {
            return Ok(());
        };
        for note in notes {
            runtime::add_event(
                &self.engine.store,
                run_id,
                "WARN",
                "SOURCE_NOTE",
                note,
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// Records finished writes, oldest first, until at most `limit` are under way, committing
    /// each read position once every write before it is recorded. With `limit` 0 every
    /// outcome is in the ledger when it returns.
    async fn drain(
        &mut self,
        limit: usize,
        reading: Option<Reading<'_>>,
    ) -> Result<(), EngineError> {
        loop {
            match self.in_flight.queue.front() {
                Some(Pending::Commit(_)) => {}
                Some(Pending::Write(_)) if self.in_flight.writes > limit => {}
                _ => break,
            }
            match self.in_flight.queue.pop_front() {
                Some(Pending::Commit(position)) => {
                    self.record_unrecorded().await?;
                    self.commit(&position, reading).await?;
                }
                Some(Pending::Write(job)) => {
                    self.in_flight.writes -= 1;
                    self.complete(job).await?;
                    // Waiting for every write (the end of a read, or a row whose identity is
                    // being written): each write's outcomes are recorded while the later ones
                    // are still under way, rather than all of them after the last.
                    if limit == 0 {
                        self.record_unrecorded().await?;
                    }
                }
                None => break,
            }
        }
        if limit == 0 {
            self.record_unrecorded().await?;
        }
        Ok(())
    }

    /// Waits for the writes of an identity still under way before its row is planned or
    /// dead-lettered again, so the later event is the one that counts.
    async fn settle(
        &mut self,
        hash: &str,
        reading: Option<Reading<'_>>,
    ) -> Result<(), EngineError> {
        if self.in_flight.hashes.contains(hash) {
            self.drain(0, reading).await?;
        }
        Ok(())
    }

    /// Commits a read position: the cursor, then the source's own bookmark (a replication slot).
    async fn commit(
        &mut self,
        position: &Position,
        reading: Option<Reading<'_>>,
    ) -> Result<(), EngineError> {
        let Some(run_id) = self.run_id else {
            return Ok(());
        };
        let cursor_type = if self.def.cursor_strategy == "LSN" {
            "LSN"
        } else {
            "TIMESTAMP"
        };
        runtime::put_source_cursor(
            &self.engine.store,
            self.def.id,
            Some(self.instance_id),
            cursor_type,
            &position.0,
            run_id,
        )
        .await?;
        if let Some(reading) = reading {
            reading
                .source
                .acknowledge(reading.request, position)
                .await
                .map_err(|e| self.connector_error(e))?;
        }
        Ok(())
    }

    /// The catalog's row estimate for a full read, for progress and ETA; `None` when the
    /// catalog does not know or cannot be asked (progress is not worth failing a run over).
    async fn expected_rows(&self, source: &dyn ErasedSource) -> Option<u64> {
        match self.engine.describe_table(self.def, source).await {
            Ok(table) => table
                .and_then(|t| t.row_estimate)
                .and_then(|n| u64::try_from(n).ok()),
            Err(error) => {
                tracing::debug!(sync = %self.def.name, error = %error, "no row estimate for progress");
                None
            }
        }
    }

    /// A read failed: when the failure is retriable (the instance went away) and another
    /// instance is healthy, switch to it and record the event; otherwise the run stops with the
    /// original error. Change-log (`LSN`) positions belong to one server, so they never fail
    /// over.
    async fn fail_over(
        &mut self,
        error: ConnectorError,
        tried: &mut Vec<Id>,
    ) -> Result<Box<dyn ErasedSource>, EngineError> {
        if !error.is_retriable() || self.def.cursor_strategy == "LSN" {
            return Err(self.connector_error(error));
        }
        let (instance_id, source) =
            match self.engine.connect_source_excluding(self.def, tried).await {
                Ok(next) => next,
                Err(_) => return Err(self.connector_error(error)),
            };
        tried.push(instance_id);
        let label = self
            .def
            .sources
            .iter()
            .find(|i| i.instance_id == instance_id)
            .map_or_else(String::new, |i| i.instance_label.clone());
        tracing::warn!(sync = %self.def.name, instance = %label, error = %error, "source instance failed mid-run; continuing on the next");
        if let Some(run_id) = self.run_id {
            runtime::add_event(
                &self.engine.store,
                run_id,
                "WARN",
                "FAILOVER",
                &format!("reading failed ({error}); continued on instance `{label}`"),
                Some(serde_json::json!({"instance": label})),
            )
            .await?;
        }
        self.instance_id = instance_id;
        Ok(source)
    }

    /// Where the key columns are among a batch's `columns` (`None` when one is missing).
    fn key_positions(&self, columns: &[String]) -> Option<Vec<usize>> {
        self.def
            .key_columns
            .iter()
            .map(|key| columns.iter().position(|c| c == key))
            .collect()
    }

    /// A row's identity: its key values at `keys` (from [`RunState::key_positions`]), or its
    /// mapped fields for `HASHED`.
    fn identity_of(
        &self,
        keys: Option<&[usize]>,
        row: &Row,
        mapped: Option<&[Field]>,
    ) -> Option<String> {
        let mut identity = String::new();
        self.write_identity(&mut identity, keys, row, mapped)
            .then_some(identity)
    }

    /// [`RunState::identity_of`] into a buffer (cleared first); `false` without an identity.
    fn write_identity(
        &self,
        out: &mut String,
        keys: Option<&[usize]>,
        row: &Row,
        mapped: Option<&[Field]>,
    ) -> bool {
        out.clear();
        if self.def.key_strategy == "HASHED" {
            let Some(fields) = mapped else { return false };
            write_source_identity(out, fields.iter().map(|(_, v)| v));
            return true;
        }
        let Some(keys) = keys else { return false };
        write_source_identity(out, keys.iter().map(|&index| &row.values[index]));
        true
    }

    async fn process_batch(
        &mut self,
        batch: &mut RowBatch,
        mapper: &Mapper,
        router: Option<&dyn ShardRouter>,
        reading: Option<Reading<'_>>,
    ) -> Result<(), EngineError> {
        let recognised = match &self.digest {
            Some(digest) => digest.recognise(batch),
            None => Vec::new(),
        };
        let is_recognised = |i: usize| recognised.get(i).is_some_and(Option::is_some);
        // A recognised row is only counted: its values are never looked at.
        batch
            .convert_rows(is_recognised)
            .map_err(|error| self.connector_error(error))?;
        let batch = &*batch;
        let columns = &batch.columns;
        // Rules run once per batch (a WASM rule makes one call for all the rows).
        let upserts: Vec<&Row> = batch
            .rows
            .iter()
            .enumerate()
            .filter(|&(i, row)| row.kind != RowKind::Delete && !is_recognised(i))
            .map(|(_, row)| row)
            .collect();
        let mapped_rows = mapper.map_batch_with(columns, &upserts, source_view(router));
        let keys = self.key_positions(columns);
        let mut routes =
            BatchRoutes::decide(router, mapped_rows.iter().filter_map(|m| m.as_ref().ok()));
        let mut mapped_rows = mapped_rows.into_iter();
        let mut prepared: Vec<Prepared> = Vec::with_capacity(batch.rows.len());
        let mut deletes: Vec<String> = Vec::new();
        // Kept across rows: most rows of a full read are unchanged and need neither.
        let mut identity = String::new();
        let mut encoder = ContentEncoder::default();
        for (i, row) in batch.rows.iter().enumerate() {
            self.counters.processed += 1;
            if let (Some(Some(position)), Some(digest)) = (recognised.get(i), self.digest.as_mut())
            {
                digest.meet_at(*position);
                self.counters.unchanged += 1;
                self.recognised += 1;
                continue;
            }
            if row.kind == RowKind::Delete {
                if let Some(identity) = self.identity_of(keys.as_deref(), row, None) {
                    deletes.push(source_identity_hash(&self.def.key_strategy, &identity));
                }
                continue;
            }
            let mapped = match mapped_rows
                .next()
                .unwrap_or_else(|| Err(RuleError::new("the row was not mapped")))
            {
                Ok(mapped) => mapped,
                Err(error) => {
                    let identity = self.identity_of(keys.as_deref(), row, None);
                    let hash = identity
                        .as_deref()
                        .map(|i| source_identity_hash(&self.def.key_strategy, i));
                    if let Some(hash) = &hash {
                        self.see(hash_prefix(hash));
                        self.settle(hash, reading).await?;
                    }
                    self.dead_letter(
                        identity.as_deref(),
                        hash.as_deref(),
                        None,
                        "TRANSFORM",
                        None,
                        &error.message,
                        row_json(columns, row),
                        None,
                    )
                    .await?;
                    continue;
                }
            };
            // Taken for every mapped row, in order, as the router was given them.
            let decision = routes.next();
            if !self.write_identity(&mut identity, keys.as_deref(), row, Some(&mapped.fields)) {
                self.dead_letter(
                    None,
                    None,
                    None,
                    "IDENTITY",
                    None,
                    "the row lacks a key column",
                    row_json(columns, row),
                    None,
                )
                .await?;
                continue;
            };
            let identity_digest = source_identity_digest(&self.def.key_strategy, &identity);
            let target = match self.target_index(decision) {
                Ok(index) => index,
                Err(error) => {
                    let hash = lower_hex(&identity_digest);
                    self.see(prefix(&identity_digest));
                    self.settle(&hash, reading).await?;
                    let normalized = serde_json::to_value(&mapped.fields).ok();
                    self.dead_letter(
                        Some(&identity),
                        Some(&hash),
                        None,
                        "ROUTE",
                        None,
                        &error.message,
                        row_json(columns, row),
                        normalized,
                    )
                    .await?;
                    continue;
                }
            };
            let content = encoder.digest(&self.targets[target].collection.id, &mapped.fields);
            let fingerprint = batch.fingerprints.get(i).copied();
            let verdict = self.digest_verdict(&identity_digest, target, &content, fingerprint);
            if verdict == DigestVerdict::Unchanged {
                self.counters.unchanged += 1;
                continue;
            }
            if let Some(digest) = self.digest.as_mut() {
                digest.note_written(
                    prefix(&identity_digest),
                    target,
                    prefix(&content),
                    fingerprint,
                );
            }
            prepared.push(Prepared {
                in_ledger: verdict == DigestVerdict::AskLedger,
                identity: identity.clone(),
                hash: lower_hex(&identity_digest),
                target,
                fields: mapped.fields,
                content_hash: lower_hex(&content),
                raw: row.clone(),
                columns: columns.clone(),
            });
        }

        // Rows the digest shows absent from the ledger are not looked up (an initial push).
        let mut hashes: Vec<String> = prepared
            .iter()
            .filter(|p| p.in_ledger)
            .map(|p| p.hash.clone())
            .collect();
        hashes.extend(deletes.iter().cloned());
        if hashes.iter().any(|h| self.in_flight.hashes.contains(h)) {
            self.drain(0, reading).await?;
        }
        let ledger: HashMap<String, LedgerRow> = if hashes.is_empty() {
            HashMap::new()
        } else {
            runtime::ledger_rows(&self.engine.store, self.def.id, &hashes)
                .await?
                .into_iter()
                .map(|row| (row.source_identity_hash.clone(), row))
                .collect()
        };

        // Deletes from the change log; a deleted row's open dead-letter entry is resolved, so
        // no retry brings the row back.
        if deletes_vanished_rows(self.mode) {
            for hash in &deletes {
                if let Some(row) = ledger.get(hash) {
                    self.plan_delete(row).await?;
                }
                self.resolved(hash).await?;
            }
        }

        // Group the writes per target list.
        let mut per_target: Vec<Vec<(Prepared, Planned)>> =
            (0..self.targets.len()).map(|_| Vec::new()).collect();
        for mut row in prepared {
            let known = ledger.get(&row.hash);
            row.in_ledger &= known.is_some();
            let synced = known.and_then(|l| match (l.sp_list_id.as_deref(), l.sp_item_id) {
                (Some(list), Some(item)) if l.sync_state == "SYNCED" => Some(Synced {
                    list,
                    item_id: item,
                    content_hash: l.content_hash.as_deref().unwrap_or(""),
                }),
                _ => None,
            });
            let list_id = self.targets[row.target].collection.id.clone();
            let planned = plan_row(self.mode, synced.as_ref(), &list_id, &row.content_hash);
            if self.options.dry_run {
                self.record_plan(&row, &planned);
                continue;
            }
            if planned == Planned::Skip {
                self.counters.unchanged += 1;
                continue;
            }
            per_target[row.target].push((row, planned));
        }
        for (index, rows) in per_target.into_iter().enumerate() {
            if !rows.is_empty() {
                self.write_to(index, rows).await?;
            }
        }
        Ok(())
    }

    /// What the digest of a full read tells of this row, noting the identity as met either way.
    /// A row that is not left alone turns its entry stale, and an identity the ledger did not
    /// hold gets a stale entry, so a second row with the identity in the same read goes
    /// through the ledger.
    ///
    /// An unchanged row's fingerprint is noted in its entry, for the next full read.
    fn digest_verdict(
        &mut self,
        identity: &[u8; 32],
        target: usize,
        content: &[u8; 32],
        fingerprint: Option<u128>,
    ) -> DigestVerdict {
        let Some(digest) = self.digest.as_mut() else {
            self.see(prefix(identity));
            return DigestVerdict::AskLedger;
        };
        let position = match digest.meet(&prefix(identity)) {
            Ok(position) => position,
            Err(true) => return DigestVerdict::NotInLedger,
            Err(false) => return DigestVerdict::AskLedger,
        };
        // As `plan_row` decides Skip for a synced item.
        let item = digest.entries[position];
        let unchanged = item.usable
            && (self.mode == Mode::ArchiveOnly
                || (digest.lists[usize::from(item.list)] == self.targets[target].collection.id
                    && item.content == prefix(content)))
            && (self.in_flight.hashes.is_empty()
                || !self.in_flight.hashes.contains(&lower_hex(identity)));
        let entry = &mut digest.entries[position];
        entry.usable = unchanged;
        let fingerprint = match (unchanged, digest.config, fingerprint) {
            (true, Some(_), Some(fingerprint)) => fingerprint,
            _ => NO_FINGERPRINT,
        };
        if entry.fingerprint != fingerprint {
            entry.fingerprint = fingerprint;
            digest.learned += 1;
        }
        if unchanged {
            DigestVerdict::Unchanged
        } else {
            DigestVerdict::AskLedger
        }
    }

    /// Loads the ledger digest for a full read, with the identities met before it.
    async fn load_digest(&mut self) -> Result<(), EngineError> {
        let lists = self
            .targets
            .iter()
            .map(|t| t.collection.id.clone())
            .collect();
        let mut digest = LedgerDigest::load(
            &self.engine.store,
            self.def.id,
            lists,
            self.fingerprint_config,
        )
        .await?;
        for identity in self.seen.drain() {
            digest.see(&identity);
        }
        self.digest = Some(digest);
        Ok(())
    }

    /// Notes that a row with this identity (hash prefix) was met in this run (it is not a
    /// delete).
    fn see(&mut self, identity: [u8; 16]) {
        match self.digest.as_mut() {
            Some(digest) => digest.see(&identity),
            None => {
                self.seen.insert(identity);
            }
        }
    }

    fn record_plan(&mut self, row: &Prepared, planned: &Planned) {
        let list = self.targets[row.target].collection.name.clone();
        let (action, from_list) = match planned {
            Planned::Create => ("create", None),
            Planned::Update { .. } => ("update", None),
            Planned::Skip => {
                self.counters.unchanged += 1;
                return;
            }
            Planned::Move { from_list, .. } => (
                "move",
                Some(
                    self.target_by_list(from_list)
                        .map_or_else(|| from_list.clone(), |t| t.collection.name.clone()),
                ),
            ),
        };
        match action {
            "create" => self.counters.created += 1,
            "update" => self.counters.updated += 1,
            _ => self.counters.moved += 1,
        }
        self.list_planned(PlannedChange {
            action,
            identity: row.identity.clone(),
            list,
            from_list,
        });
    }

    /// Keeps a dry run's planned change for the report, up to [`PLANNED_LISTED`].
    fn list_planned(&mut self, change: PlannedChange) {
        if self.planned.len() < PLANNED_LISTED {
            self.planned.push(change);
        } else {
            self.planned_not_listed += 1;
        }
    }

    async fn plan_delete(&mut self, row: &LedgerRow) -> Result<(), EngineError> {
        if self.options.dry_run {
            self.counters.deleted += 1;
            let list = row
                .sp_list_id
                .as_deref()
                .and_then(|l| self.target_by_list(l))
                .map(|t| t.collection.name.clone())
                .unwrap_or_default();
            self.list_planned(PlannedChange {
                action: "delete",
                identity: row.source_identity.clone(),
                list,
                from_list: None,
            });
            return Ok(());
        }
        self.delete_item(row).await?;
        self.counters.deleted += 1;
        Ok(())
    }

    /// Sends one list's share of a batch on its way; [`Self::drain`] records the outcomes.
    async fn write_to(
        &mut self,
        index: usize,
        rows: Vec<(Prepared, Planned)>,
    ) -> Result<(), EngineError> {
        let job = self.dispatch(index, rows).await?;
        self.in_flight.writes += 1;
        self.in_flight.queue.push_back(Pending::Write(job));
        Ok(())
    }

    /// Records the intents of one list's share of a batch, then starts its writes in a task.
    async fn dispatch(
        &mut self,
        index: usize,
        rows: Vec<(Prepared, Planned)>,
    ) -> Result<WriteJob, EngineError> {
        let target = &self.targets[index];
        let list_id = target.collection.id.clone();
        let sync_target_id = target.sync_target_id;
        // Intents first: a crash after the target created an item is recovered by key look-up.
        // Creates share one intent row; a move is a ledger row of its own (it also names the
        // item it replaces).
        let creates: Vec<(String, String)> = rows
            .iter()
            .filter(|(_, planned)| matches!(planned, Planned::Create))
            .map(|(row, _)| (row.identity.clone(), row.hash.clone()))
            .collect();
        let ledger = self.ledger_writer();
        let intent = (!creates.is_empty() && ledger.is_some()).then(|| runtime::CreateIntent {
            id: Id::new(),
            sp_list_id: list_id.clone(),
            sync_target_id: Some(sync_target_id),
            identities: creates,
        });
        let intent_id = intent.as_ref().map(|i| i.id);
        let moves: Vec<Entry> = rows
            .iter()
            .filter_map(|(row, planned)| match planned {
                Planned::Move {
                    from_list,
                    from_item,
                } => Some(Entry {
                    identity: row.identity.clone(),
                    hash: row.hash.clone(),
                    list: Some(from_list.clone()),
                    item: Some(*from_item),
                    content: None,
                    state: "PENDING_MOVE",
                    pending: Some(list_id.clone()),
                    target: Some(sync_target_id),
                    fresh: false,
                }),
                _ => None,
            })
            .collect();
        let ops: Vec<WriteOp> = rows
            .iter()
            .map(|(row, planned)| {
                let mut fields: Vec<(String, Value)> = row
                    .fields
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.clone()))
                    .collect();
                match planned {
                    Planned::Update { item_id } => WriteOp::Update {
                        item_id: ItemId(*item_id),
                        fields,
                    },
                    _ => {
                        fields.push((KEY_FIELD.to_owned(), Value::Text(row.hash.clone())));
                        WriteOp::Create {
                            key: row.hash.clone(),
                            fields,
                        }
                    }
                }
            })
            .collect();
        let target = self.targets[index].target.clone();
        let collection = self.targets[index].collection.clone();
        let sync = self.def.name.clone();
        // The task records the intents before it writes, so the run reads on meanwhile.
        let handle = tokio::spawn(async move {
            if let Some(ledger) = ledger {
                ledger.put(&moves).await?;
                if let Some(intent) = &intent {
                    ledger.record_create_intent(intent).await?;
                }
            }
            target
                .write(&collection, ops)
                .await
                .map_err(|error| EngineError::Connector { sync, error })
        });
        self.in_flight
            .hashes
            .extend(rows.iter().map(|(row, _)| row.hash.clone()));
        Ok(WriteJob {
            index,
            rows,
            intent: intent_id,
            handle,
        })
    }

    /// Waits for one write task and records every outcome.
    async fn complete(&mut self, job: WriteJob) -> Result<(), EngineError> {
        let WriteJob {
            index,
            rows,
            intent,
            handle,
        } = job;
        let answered = handle.await;
        // The identities stay in flight until their outcomes are recorded.
        self.in_flight
            .unrecorded
            .hashes
            .extend(rows.iter().map(|(row, _)| row.hash.clone()));
        let outcomes = answered.map_err(|error| {
            self.connector_error(ConnectorError::internal(format!(
                "a write task ended abnormally: {error}"
            )))
        })??;
        let target = &self.targets[index];
        let list_id = target.collection.id.clone();
        let sync_target_id = target.sync_target_id;
        if outcomes.len() != rows.len() {
            return Err(self.connector_error(ConnectorError::internal(format!(
                "the target answered {} outcomes for {} writes",
                outcomes.len(),
                rows.len()
            ))));
        }
        let mut recreate = Vec::new();
        let mut synced: Vec<Entry> = Vec::new();
        for ((row, planned), outcome) in rows.into_iter().zip(outcomes) {
            match outcome {
                WriteOutcome::Created { item_id } => {
                    if let Planned::Move {
                        from_list,
                        from_item,
                    } = &planned
                    {
                        let old = LedgerRow {
                            id: Id::new(),
                            source_identity: row.identity.clone(),
                            source_identity_hash: row.hash.clone(),
                            sp_list_id: Some(from_list.clone()),
                            sp_item_id: Some(*from_item),
                            content_hash: None,
                            sync_state: "PENDING_MOVE".into(),
                            pending_list_id: None,
                        };
                        self.delete_old_copy(&old).await?;
                        self.counters.moved += 1;
                    } else {
                        self.counters.created += 1;
                    }
                    self.written[index] += 1;
                    self.resolved(&row.hash).await?;
                    synced.push(Entry {
                        fresh: planned == Planned::Create && !row.in_ledger,
                        identity: row.identity,
                        hash: row.hash,
                        list: Some(list_id.clone()),
                        item: Some(item_id.0),
                        content: Some(row.content_hash),
                        state: "SYNCED",
                        pending: None,
                        target: Some(sync_target_id),
                    });
                }
                WriteOutcome::Updated => {
                    let Planned::Update { item_id } = planned else {
                        continue;
                    };
                    self.counters.updated += 1;
                    self.written[index] += 1;
                    self.resolved(&row.hash).await?;
                    synced.push(Entry {
                        identity: row.identity,
                        hash: row.hash,
                        list: Some(list_id.clone()),
                        item: Some(item_id),
                        content: Some(row.content_hash),
                        state: "SYNCED",
                        pending: None,
                        target: Some(sync_target_id),
                        fresh: false,
                    });
                }
                WriteOutcome::NotFound => {
                    // Someone deleted the item in SharePoint: create it again.
                    recreate.push(row);
                }
                WriteOutcome::Deleted => {}
                WriteOutcome::Rejected { code, message } => {
                    self.refused(&row, &planned, &list_id, "WRITE", &code, &message)
                        .await?;
                }
                WriteOutcome::Unencodable { code, message } => {
                    self.refused(&row, &planned, &list_id, "ENCODE", &code, &message)
                        .await?;
                }
                WriteOutcome::Failed(error) => {
                    let message = error.to_string();
                    self.refused(&row, &planned, &list_id, "WRITE", "retriable", &message)
                        .await?;
                }
                other => {
                    // An outcome this engine does not know: not recorded as written.
                    let message = format!("the target answered {other:?}");
                    self.refused(&row, &planned, &list_id, "WRITE", "unknown", &message)
                        .await?;
                }
            }
        }
        let unrecorded = &mut self.in_flight.unrecorded;
        unrecorded.entries.extend(synced);
        unrecorded.intents.extend(intent);
        if unrecorded.entries.len() >= ROWS_PER_LEDGER_TRANSACTION {
            self.record_unrecorded().await?;
        }
        if !recreate.is_empty() {
            let rows: Vec<(Prepared, Planned)> = recreate
                .into_iter()
                .map(|row| (row, Planned::Create))
                .collect();
            let job = self.dispatch(index, rows).await?;
            Box::pin(self.complete(job)).await?;
        }
        Ok(())
    }

    /// The target refused a row's write or failed it for good (`WRITE`), or could not encode it
    /// (`ENCODE`): its intent is dropped and the row dead-lettered.
    async fn refused(
        &mut self,
        row: &Prepared,
        planned: &Planned,
        list_id: &str,
        stage: &str,
        code: &str,
        message: &str,
    ) -> Result<(), EngineError> {
        self.forget_intent(row, planned).await?;
        let normalized = serde_json::to_value(&row.fields).ok();
        self.dead_letter(
            Some(&row.identity),
            Some(&row.hash),
            Some(list_id),
            stage,
            Some(code),
            message,
            row_json(&row.columns, &row.raw),
            normalized,
        )
        .await
    }

    /// After a refused create or move, the ledger goes back to what is true in the target.
    async fn forget_intent(&self, row: &Prepared, planned: &Planned) -> Result<(), EngineError> {
        match planned {
            Planned::Create => {
                runtime::delete_ledger(&self.engine.store, self.def.id, &row.hash).await?
            }
            Planned::Move {
                from_list,
                from_item,
            } => {
                self.put(
                    &row.identity,
                    &row.hash,
                    Some(from_list),
                    Some(*from_item),
                    None,
                    "SYNCED",
                    None,
                    None,
                )
                .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// After a complete full read: saves a copy of the ledger digest in the order this read met
    /// the rows, so the next full read takes it instead of reading the ledger and finds its
    /// rows in order — unless the saved copy is current and was in order. The entries come from
    /// the loaded digest when no ledger write happened since it was read, from the ledger
    /// otherwise (keeping the fingerprints of rows the ledger still holds as they were).
    async fn refresh_saved_digest(&self) {
        let (Some(digest), false) = (&self.digest, self.options.dry_run) else {
            return;
        };
        let store = &self.engine.store;
        let refreshed = async {
            let (generation, saved) = runtime::ledger_digest_state(store, self.def.id).await?;
            if saved && !digest.order_changed() && digest.learned == 0 {
                return Ok(());
            }
            let entries = if generation == digest.generation {
                encode_digest(&digest.entries)
            } else {
                // About what the ledger holds: what it held, or the rows this read met.
                let expected = digest.entries.len().max(digest.read_order.len());
                let mut entries =
                    read_ledger_digest(store, self.def.id, &digest.lists, expected).await?;
                digest.keep_fingerprints(&mut entries);
                encode_digest(&entries)
            };
            let entries = in_read_order(&entries, &digest.read_order);
            let config = digest.config;
            save_ledger_digest(
                store,
                self.def.id,
                generation,
                &digest.lists,
                config,
                &entries,
            )
            .await;
            Ok::<_, EngineError>(())
        };
        if let Err(error) = refreshed.await {
            tracing::warn!(sync = %self.def.name, error = %error,
                "could not save the ledger digest; the next full read reads the ledger");
        }
    }

    /// After a complete full read: items whose source row is gone are deleted, and the open
    /// dead-letter entries the read did not fail again are resolved (see
    /// [`runtime::resolve_failures_not_met`]).
    async fn delete_vanished(&mut self) -> Result<(), EngineError> {
        if !deletes_vanished_rows(self.mode) {
            return Ok(());
        }
        if self.run_id.is_some() {
            // No margin for a clock stepping back: an entry spared by mistake would be retried
            // from its stored row, which may revive a row deleted since.
            let resolved = runtime::resolve_failures_not_met(
                &self.engine.store,
                self.def.id,
                self.read_started_at,
            )
            .await?;
            if resolved > 0 {
                tracing::info!(sync = %self.def.name, entries = resolved,
                    "dead-letter entries resolved: their rows are gone or back in step");
            }
        }
        if self.digest.is_none() {
            // Every full read loads it before reading; deletes are judged by it alone.
            self.load_digest().await?;
        }
        if self.digest.as_ref().is_some_and(|d| !d.any_unseen()) {
            return Ok(()); // every ledger row was met: nothing vanished
        }
        let mut after: Option<String> = None;
        loop {
            let page =
                runtime::ledger_page(&self.engine.store, self.def.id, after.as_deref(), 1000)
                    .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.source_identity_hash.clone());
            for row in page {
                // A row missing from the digest was written by this run.
                let vanished = self
                    .digest
                    .as_mut()
                    .is_some_and(|digest| digest.vanished(&hash_prefix(&row.source_identity_hash)));
                if vanished {
                    self.plan_delete(&row).await?;
                }
            }
        }
        Ok(())
    }
}

/// What changed in one target list since the previous `changes` read.
#[derive(Debug, Clone, Serialize)]
pub struct ListChanges {
    pub list: String,
    /// Items created or edited (the latest state of each, once).
    pub upserted: usize,
    pub deleted: usize,
    /// The stored position had expired: this read enumerated the whole list again.
    pub reset: bool,
    /// True on the first read of a list: every item counts as upserted.
    pub first_read: bool,
    /// Up to 20 changed item ids.
    pub sample: Vec<i64>,
}

impl Engine {
    /// Reads, list by list, what changed in the target since the last call (SharePoint:
    /// `items/delta`), and stores where to continue as the list's TARGET cursor. Shows edits made
    /// in SharePoint behind the sync's back; writes nothing to the target.
    pub async fn target_changes(&self, name: &str) -> Result<Vec<ListChanges>, EngineError> {
        let def = self.definition(name).await?;
        let Connected { def, targets, .. } = self.prepare(def).await?;
        let mut out = Vec::new();
        for target in &targets {
            let from = runtime::target_cursor(&self.store, def.id, target.list_row_id).await?;
            let first_read = from.is_none();
            let mut position = from.map(syncbridge_api::Position);
            let mut latest: std::collections::BTreeMap<i64, bool> = Default::default();
            let mut reset = false;
            loop {
                let page = target
                    .target
                    .read_changes(&target.collection, position.take())
                    .await
                    .map_err(|error| EngineError::Connector {
                        sync: def.name.clone(),
                        error,
                    })?;
                if page.reset {
                    reset = true;
                    latest.clear();
                }
                // The latest state per item wins: an item may appear more than once.
                for change in page.changes {
                    match change {
                        syncbridge_api::RemoteChange::Upserted { item_id, .. } => {
                            latest.insert(item_id.0, false);
                        }
                        syncbridge_api::RemoteChange::Deleted { item_id } => {
                            latest.insert(item_id.0, true);
                        }
                    }
                }
                let more = page.more;
                position = Some(page.next);
                if !more {
                    break;
                }
            }
            if let Some(position) = &position {
                runtime::put_target_cursor(&self.store, def.id, target.list_row_id, &position.0)
                    .await?;
            }
            out.push(ListChanges {
                list: target.collection.name.clone(),
                upserted: latest.values().filter(|deleted| !**deleted).count(),
                deleted: latest.values().filter(|deleted| **deleted).count(),
                reset,
                first_read,
                sample: latest.keys().take(20).copied().collect(),
            });
        }
        Ok(out)
    }
}

impl Engine {
    /// Releases what the source keeps for a sync (PostgreSQL: drops its replication slot) and
    /// forgets its source cursors, so the next run starts with a full read. For a sync that is
    /// being removed, or an `LSN` sync that must start over.
    pub async fn release(&self, name: &str) -> Result<(), EngineError> {
        let def = self.definition(name).await?;
        // Not while a run reads from the slot and commits positions.
        let lock = self.lock(&def).await?;
        let released = self.release_locked(&def).await;
        lock.release().await;
        released
    }

    async fn release_locked(&self, def: &RunDefinition) -> Result<(), EngineError> {
        let (_, source) = self.connect_source(def).await?;
        let cursor = cursor_spec(def);
        let request = ReadRequest {
            table: TableRef {
                schema: def.schema_name.clone(),
                name: def.table_name.clone(),
            },
            columns: Vec::new(),
            key: def.key_columns.clone(),
            cursor,
            from: None,
            batch_size: 1,
            defer_conversion: false,
        };
        source
            .release(&request)
            .await
            .map_err(|error| EngineError::Connector {
                sync: def.name.clone(),
                error,
            })?;
        runtime::delete_source_cursors(&self.store, def.id).await?;
        Ok(())
    }
}

/// How a definition's reads find rows, from its cursor strategy and options.
fn cursor_spec(def: &RunDefinition) -> CursorSpec {
    match def.cursor_strategy.as_str() {
        "UPDATED_AT" => CursorSpec::UpdatedAt {
            column: def.cursor_column.clone().unwrap_or_default(),
            look_back: std::time::Duration::from_secs(
                def.cursor_options
                    .get("look_back_seconds")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(300),
            ),
        },
        "LSN" => CursorSpec::Lsn {
            options: def.cursor_options.clone(),
        },
        _ => CursorSpec::FullScan,
    }
}

/// An unknown target kind, with where plugin kinds come from.
fn unknown_target(error: syncbridge_api::UnknownName) -> String {
    format!(
        "{error}; plugin target kinds come from the native plugins in SYNCBRIDGE_PLUGIN_DIR (see `syncbridge plugins list`)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_prefixes_decode_hex_and_refuse_the_rest() {
        let hash = crate::identity::source_identity_hash("PRIMARY_KEY", "42");
        let bytes = hex::decode(&hash).expect("hex");
        assert_eq!(hash_prefix(&hash)[..], bytes[..16]);
        assert_eq!(hash_prefix(&hash[..32])[..], bytes[..16]);
        assert_eq!(hash_prefix(&hash[..31]), [0u8; 16], "too short");
        let mut bad = hash.clone();
        bad.replace_range(5..6, "g");
        assert_eq!(hash_prefix(&bad), [0u8; 16], "not hex");
    }
}
