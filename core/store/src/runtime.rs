//! Typed access to the runtime tables the engine writes: runs, events, the ledger, cursors and
//! the dead-letter queue.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use sqlx::Row as _;
use sqlx::types::Json;

use crate::{Backend, BeginWrite, Id, Store, StoreError, StorePool, with_pool, with_writer};

/// Counters of one run, as `sync_runs` stores them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunCounters {
    pub processed: i64,
    pub created: i64,
    pub updated: i64,
    pub moved: i64,
    pub deleted: i64,
    pub unchanged: i64,
    pub failed: i64,
}

/// Records the start of a run.
pub async fn start_run(store: &Store, sync_def_id: Id, run_type: &str) -> Result<Id, StoreError> {
    let id = Id::new();
    let now = Utc::now();
    with_writer!(store, pool => sqlx::query(
        "INSERT INTO sync_runs (id, sync_def_id, run_type, status, start_time, created_at) VALUES ($1, $2, $3, 'RUNNING', $4, $4)")
        .bind(id).bind(sync_def_id).bind(run_type).bind(now)
        .execute(pool).await.map(|_| ()))
    .map_err(StoreError::query("starting a run"))?;
    Ok(id)
}

/// Marks the definition's other runs still RUNNING as FAILED: their process ended (killed,
/// crashed, or stopped at once by a second signal) before it could record an end. Called by a
/// run that holds the definition's lock ([`crate::lock`]), so no other run is alive; returns
/// how many were closed.
pub async fn close_unfinished_runs(
    store: &Store,
    sync_def_id: Id,
    current: Id,
) -> Result<u64, StoreError> {
    with_writer!(store, pool => sqlx::query(
        "UPDATE sync_runs SET status = 'FAILED', end_time = $3,
            error_message = 'ended without recording an end (the process was killed or crashed); a later run resumed safely'
         WHERE sync_def_id = $1 AND status = 'RUNNING' AND id <> $2")
        .bind(sync_def_id).bind(current).bind(Utc::now())
        .execute(pool).await.map(|r| r.rows_affected()))
    .map_err(StoreError::query("closing unfinished runs"))
}

/// Records the end of a run with its counters.
pub async fn finish_run(
    store: &Store,
    run_id: Id,
    status: &str,
    counters: RunCounters,
    error: Option<&str>,
) -> Result<(), StoreError> {
    with_writer!(store, pool => sqlx::query(
        "UPDATE sync_runs SET status = $2, end_time = $3, items_processed = $4, items_failed = $5,
            items_created = $6, items_updated = $7, items_moved = $8, items_deleted = $9,
            items_unchanged = $10, error_message = $11 WHERE id = $1")
        .bind(run_id).bind(status).bind(Utc::now()).bind(counters.processed).bind(counters.failed)
        .bind(counters.created).bind(counters.updated).bind(counters.moved).bind(counters.deleted)
        .bind(counters.unchanged).bind(error)
        .execute(pool).await.map(|_| ()))
    .map_err(StoreError::query("finishing a run"))
}

/// Adds a notable event to a run.
pub async fn add_event(
    store: &Store,
    run_id: Id,
    severity: &str,
    event_type: &str,
    message: &str,
    payload: Option<serde_json::Value>,
) -> Result<(), StoreError> {
    with_writer!(store, pool => sqlx::query(
        "INSERT INTO sync_events (id, sync_run_id, severity, event_type, message, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(Id::new()).bind(run_id).bind(severity).bind(event_type).bind(message)
        .bind(payload.map(Json)).bind(Utc::now())
        .execute(pool).await.map(|_| ()))
    .map_err(StoreError::query("recording an event"))
}

/// A run's events, oldest first: `(severity, event_type, message)`.
pub async fn run_events(
    store: &Store,
    run_id: Id,
) -> Result<Vec<(String, String, String)>, StoreError> {
    with_pool!(store, pool => sqlx::query_as::<_, (String, String, String)>(
        "SELECT severity, event_type, message FROM sync_events WHERE sync_run_id = $1 ORDER BY created_at, id")
        .bind(run_id).fetch_all(pool).await)
    .map_err(StoreError::query("reading run events"))
}

/// The payload of a run's first event of `event_type` (`None` without one, or without a
/// payload).
pub async fn run_event_payload(
    store: &Store,
    run_id: Id,
    event_type: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    let payload: Option<Option<Json<serde_json::Value>>> =
        with_pool!(store, pool => sqlx::query_scalar(
        "SELECT payload FROM sync_events WHERE sync_run_id = $1 AND event_type = $2
          ORDER BY created_at, id LIMIT 1")
        .bind(run_id).bind(event_type).fetch_optional(pool).await)
        .map_err(StoreError::query("reading a run event"))?;
    Ok(payload.flatten().map(|Json(value)| value))
}

/// One run, for `syncbridge runs`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunRecord {
    pub id: Id,
    pub sync_name: String,
    pub status: String,
    pub start_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub items_processed: i64,
    pub items_created: i64,
    pub items_updated: i64,
    pub items_moved: i64,
    pub items_deleted: i64,
    pub items_unchanged: i64,
    pub items_failed: i64,
    pub error_message: Option<String>,
}

/// The newest runs, optionally of one definition.
pub async fn recent_runs(
    store: &Store,
    sync_name: Option<&str>,
    limit: i64,
) -> Result<Vec<RunRecord>, StoreError> {
    with_pool!(store, pool => sqlx::query_as::<_, RunRecord>(
        "SELECT r.id, d.name AS sync_name, r.status, r.start_time, r.end_time, r.items_processed,
                r.items_created, r.items_updated, r.items_moved, r.items_deleted, r.items_unchanged,
                r.items_failed, r.error_message
         FROM sync_runs r JOIN sync_definitions d ON d.id = r.sync_def_id
         WHERE $1 IS NULL OR d.name = $1
         ORDER BY r.start_time DESC LIMIT $2")
        .bind(sync_name).bind(limit).fetch_all(pool).await)
    .map_err(StoreError::query("listing runs"))
}

/// The ledger's record of one source row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LedgerRow {
    pub id: Id,
    pub source_identity: String,
    pub source_identity_hash: String,
    pub sp_list_id: Option<String>,
    pub sp_item_id: Option<i64>,
    pub content_hash: Option<String>,
    /// `PENDING_CREATE`, `SYNCED`, `PENDING_MOVE` or `PENDING_DELETE`.
    pub sync_state: String,
    pub pending_list_id: Option<String>,
}

const LEDGER_COLUMNS: &str = "id, source_identity, source_identity_hash, sp_list_id, sp_item_id, content_hash, sync_state, pending_list_id";

/// The ledger rows of these identity hashes (missing ones are simply absent).
pub async fn ledger_rows(
    store: &Store,
    sync_def_id: Id,
    hashes: &[String],
) -> Result<Vec<LedgerRow>, StoreError> {
    let mut out = Vec::with_capacity(hashes.len());
    // Chunks keep the statement under both backends' parameter limits.
    for chunk in hashes.chunks(500) {
        match store.pool() {
            StorePool::Sqlite(pool) => {
                out.extend(sqlite_ledger_rows(pool, sync_def_id, chunk).await?)
            }
            StorePool::Postgres(pool) => {
                let placeholders: Vec<String> =
                    (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
                let sql = format!(
                    "SELECT {LEDGER_COLUMNS} FROM sync_ledger WHERE sync_def_id = $1 AND source_identity_hash IN ({})",
                    placeholders.join(", ")
                );
                let mut query = sqlx::query_as::<_, LedgerRow>(&sql).bind(sync_def_id);
                for hash in chunk {
                    query = query.bind(hash);
                }
                out.extend(
                    query
                        .fetch_all(pool)
                        .await
                        .map_err(StoreError::query("reading the ledger"))?,
                );
            }
        }
    }
    Ok(out)
}

/// SQLite's share of [`ledger_rows`]: the rows come back as one JSON array. The driver hands
/// each result row from SQLite's worker thread to the caller as a message of its own, which cost
/// more than the look-ups; one aggregated row per chunk costs one message. Parameters are
/// anonymous (see `put_ledger_rows_sql`).
async fn sqlite_ledger_rows(
    pool: &sqlx::SqlitePool,
    sync_def_id: Id,
    hashes: &[String],
) -> Result<Vec<LedgerRow>, StoreError> {
    type Fields = (
        String,
        String,
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
        String,
        Option<String>,
    );
    let sql = format!(
        "SELECT json_group_array(json_array({LEDGER_COLUMNS})) FROM sync_ledger
          WHERE sync_def_id = ? AND source_identity_hash IN ({})",
        vec!["?"; hashes.len()].join(", ")
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql).bind(sync_def_id);
    for hash in hashes {
        query = query.bind(hash);
    }
    let text = query
        .fetch_one(pool)
        .await
        .map_err(StoreError::query("reading the ledger"))?;
    let rows: Vec<Fields> = serde_json::from_str(&text).map_err(|error| {
        StoreError::query("reading the ledger")(sqlx::Error::Decode(Box::new(error)))
    })?;
    rows.into_iter()
        .map(
            |(id, identity, hash, list, item, content, state, pending)| {
                let id = id.parse().map_err(|error: uuid::Error| {
                    StoreError::query("reading the ledger")(sqlx::Error::Decode(Box::new(error)))
                })?;
                Ok(LedgerRow {
                    id,
                    source_identity: identity,
                    source_identity_hash: hash,
                    sp_list_id: list,
                    sp_item_id: item,
                    content_hash: content,
                    sync_state: state,
                    pending_list_id: pending,
                })
            },
        )
        .collect()
}

/// Ledger rows left in a pending state by an interrupted run.
pub async fn pending_ledger_rows(
    store: &Store,
    sync_def_id: Id,
) -> Result<Vec<LedgerRow>, StoreError> {
    let sql = format!(
        // `IN` rather than `<> 'SYNCED'`: the state index then finds the few pending rows
        // instead of walking every synced one.
        "SELECT {LEDGER_COLUMNS} FROM sync_ledger
          WHERE sync_def_id = $1 AND sync_state IN ('PENDING_CREATE', 'PENDING_MOVE', 'PENDING_DELETE')"
    );
    with_pool!(store, pool => sqlx::query_as::<_, LedgerRow>(&sql).bind(sync_def_id).fetch_all(pool).await)
        .map_err(StoreError::query("reading pending ledger rows"))
}

/// Every ledger row of a definition, in identity-hash order, `limit` at a time after `after`.
pub async fn ledger_page(
    store: &Store,
    sync_def_id: Id,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<LedgerRow>, StoreError> {
    // Two statements rather than `($2 IS NULL OR hash > $2)`: with the OR, SQLite cannot seek the
    // index to `hash > $2` and every page scanned the sync's ledger from its start (quadratic).
    let sql = match after {
        Some(_) => format!(
            "SELECT {LEDGER_COLUMNS} FROM sync_ledger WHERE sync_def_id = $1 AND source_identity_hash > $2
             ORDER BY source_identity_hash LIMIT $3"
        ),
        None => format!(
            "SELECT {LEDGER_COLUMNS} FROM sync_ledger WHERE sync_def_id = $1 AND $2 IS NULL
             ORDER BY source_identity_hash LIMIT $3"
        ),
    };
    with_pool!(store, pool => sqlx::query_as::<_, LedgerRow>(&sql).bind(sync_def_id).bind(after).bind(limit).fetch_all(pool).await)
        .map_err(StoreError::query("paging the ledger"))
}

/// What a full read needs to know of one ledger row: whether a source row with this identity
/// is unchanged, and which ledger rows the read did not meet (deletes). Hashes are given as
/// hex prefixes (the first 32 characters, 128 bits), borrowed from the page being read, so
/// visiting a million rows allocates nothing per row.
#[derive(Debug, Clone, Copy)]
pub struct LedgerDigestRow<'a> {
    pub identity_hash_prefix: &'a str,
    /// `SYNCED`, with an item, in one of the lists asked about: that list's index and the
    /// content hash prefix. `None` for any other row (it cannot be left alone as it is).
    pub synced_to: Option<(usize, &'a str)>,
}

/// Rowids of [`visit_ledger_digest`] per SQLite query.
const DIGEST_ROWS_PER_PAGE: i64 = 20_000;

/// SQLite queries of [`visit_ledger_digest`] under way at once (the pool has four connections).
const DIGEST_PAGES_AT_ONCE: usize = 3;

/// The most lists [`visit_ledger_digest`] tells apart (one letter each); rows synced to any
/// other list come without `synced_to`.
const DIGEST_MAX_LISTS: usize = 26;

/// Calls `visit` for every ledger row of a definition, in no particular order; `lists` are the
/// lists whose synced rows come with their content hash.
///
/// SQLite: the table's rows between the definition's first and last rowid are read in rowid
/// order (`NOT INDEXED`), a page at a time, each page as one string of fixed-width records
/// (identity prefix, then `-`, or a list letter and the content prefix). Following the identity
/// index would visit the table's pages in hash order, a random page read per row; the driver
/// hands every result row from its worker thread as a message of its own, which cost more than
/// reading the rows; and the fixed-width records took half the time of a JSON array, on either
/// side. PostgreSQL streams one query.
pub async fn visit_ledger_digest(
    store: &Store,
    sync_def_id: Id,
    lists: &[&str],
    mut visit: impl FnMut(LedgerDigestRow<'_>),
) -> Result<(), StoreError> {
    let failed = |source: sqlx::Error| StoreError::Query {
        doing: "reading the ledger",
        source,
    };
    let lists = &lists[..lists.len().min(DIGEST_MAX_LISTS)];
    match store.pool() {
        StorePool::Sqlite(pool) => {
            let letters: String = lists
                .iter()
                .enumerate()
                .map(|(i, _)| format!("WHEN ? THEN '{}' ", (b'A' + i as u8) as char))
                .collect();
            let mark = if lists.is_empty() {
                "'-'".to_owned()
            } else {
                format!(
                    "CASE WHEN sync_state = 'SYNCED' AND sp_item_id IS NOT NULL AND length(content_hash) >= 32
                          THEN CASE sp_list_id {letters}ELSE '-' END ELSE '-' END"
                )
            };
            let sql = format!(
                "SELECT group_concat(substr(hash, 1, 32) || mark ||
                        CASE mark WHEN '-' THEN '' ELSE substr(content, 1, 32) END, '')
                   FROM (SELECT source_identity_hash AS hash, content_hash AS content, {mark} AS mark
                           FROM sync_ledger NOT INDEXED WHERE rowid > ? AND rowid <= ? AND sync_def_id = ?)"
            );
            // The definition's own rowid range, so the pages below cover its rows and not
            // every definition's. Found in the state index, whose entries end in their rowid:
            // its states one step each (a skip scan), then the first and the last rowid of each
            // state one step each. Sub-millisecond where `min(rowid), max(rowid)` over the
            // definition's index entries read all of them (~0.1 µs each).
            let (low, high): (Option<i64>, Option<i64>) = sqlx::query_as(
                "WITH RECURSIVE states (state) AS (
                     SELECT (SELECT min(sync_state) FROM sync_ledger INDEXED BY ix_sync_ledger_state
                              WHERE sync_def_id = $1)
                     UNION ALL
                     SELECT (SELECT min(sync_state) FROM sync_ledger INDEXED BY ix_sync_ledger_state
                              WHERE sync_def_id = $1 AND sync_state > states.state)
                       FROM states WHERE states.state IS NOT NULL)
                 SELECT min((SELECT rowid FROM sync_ledger INDEXED BY ix_sync_ledger_state
                              WHERE sync_def_id = $1 AND sync_state = states.state ORDER BY rowid LIMIT 1)),
                        max((SELECT rowid FROM sync_ledger INDEXED BY ix_sync_ledger_state
                              WHERE sync_def_id = $1 AND sync_state = states.state ORDER BY rowid DESC LIMIT 1))
                   FROM states WHERE state IS NOT NULL",
            )
            .bind(sync_def_id)
            .fetch_one(pool)
            .await
            .map_err(failed)?;
            let (Some(low), Some(high)) = (low, high) else {
                return Ok(()); // no ledger rows for this definition
            };
            // Pages are ranges of rowids, independent of each other: several are built at once
            // on SQLite's worker threads (one per connection) while this task takes them apart
            // in order.
            let sql: Arc<str> = sql.into();
            let lists: Arc<[String]> = lists.iter().map(|l| (*l).to_owned()).collect();
            let fetch = |after: i64| {
                let (pool, sql, lists) = (pool.clone(), sql.clone(), lists.clone());
                tokio::spawn(async move {
                    let mut query = sqlx::query_scalar::<_, Option<String>>(&sql);
                    for list in lists.iter() {
                        query = query.bind(list.as_str());
                    }
                    query
                        .bind(after)
                        .bind(after.saturating_add(DIGEST_ROWS_PER_PAGE))
                        .bind(sync_def_id)
                        .fetch_one(&pool)
                        .await
                })
            };
            let starts = (low - 1..high).step_by(DIGEST_ROWS_PER_PAGE as usize);
            let mut pages = futures::stream::iter(starts)
                .map(fetch)
                .buffered(DIGEST_PAGES_AT_ONCE);
            while let Some(page) = pages.next().await {
                let page = page
                    .map_err(|error| failed(sqlx::Error::Protocol(format!("{error}"))))?
                    .map_err(failed)?;
                visit_digest_records(page.as_deref().unwrap_or_default(), lists.len(), &mut visit)
                    .map_err(failed)?;
            }
            Ok(())
        }
        StorePool::Postgres(pool) => {
            let mut rows = sqlx::query(
                "SELECT left(source_identity_hash, 32), left(content_hash, 32), sp_list_id,
                        sync_state = 'SYNCED' AND sp_item_id IS NOT NULL
                   FROM sync_ledger WHERE sync_def_id = $1",
            )
            .bind(sync_def_id)
            .fetch(pool);
            while let Some(row) = rows.try_next().await.map_err(failed)? {
                let content: Option<&str> = row.try_get(1).map_err(failed)?;
                let list: Option<&str> = row.try_get(2).map_err(failed)?;
                let synced: bool = row.try_get(3).map_err(failed)?;
                let list_index = list.and_then(|list| lists.iter().position(|l| *l == list));
                visit(LedgerDigestRow {
                    identity_hash_prefix: row.try_get(0).map_err(failed)?,
                    synced_to: match (synced, list_index, content) {
                        (true, Some(index), Some(content)) if content.len() == 32 => {
                            Some((index, content))
                        }
                        _ => None,
                    },
                });
            }
            Ok(())
        }
    }
}

/// Takes apart one page of [`visit_ledger_digest`]'s SQLite records: 32 characters of identity
/// hash, then `-`, or the letter of one of `lists` lists and 32 characters of content hash.
fn visit_digest_records(
    mut records: &str,
    lists: usize,
    visit: &mut impl FnMut(LedgerDigestRow<'_>),
) -> Result<(), sqlx::Error> {
    let malformed = || {
        sqlx::Error::Decode(
            "a ledger row's identity or content hash is not SHA-256 hex, so sync_ledger was \
             changed outside SyncBridge: delete the rows whose source_identity_hash or \
             content_hash is not 64 hexadecimal characters, and the definition's row in \
             sync_ledger_digests (a full run then finds their items by the identity column)"
                .into(),
        )
    };
    while !records.is_empty() {
        let (identity, rest) = records.split_at_checked(32).ok_or_else(malformed)?;
        let (mark, rest) = rest.split_at_checked(1).ok_or_else(malformed)?;
        records = rest;
        let synced_to = match mark.as_bytes()[0] {
            b'-' => None,
            letter => {
                let list = usize::from(letter.wrapping_sub(b'A'));
                if list >= lists {
                    return Err(malformed());
                }
                let (content, rest) = records.split_at_checked(32).ok_or_else(malformed)?;
                records = rest;
                Some((list, content))
            }
        };
        visit(LedgerDigestRow {
            identity_hash_prefix: identity,
            synced_to,
        });
    }
    Ok(())
}

/// What to write for one ledger row.
#[derive(Debug, Clone)]
pub struct LedgerWrite<'a> {
    pub sync_def_id: Id,
    pub source_identity: &'a str,
    pub source_identity_hash: &'a str,
    pub key_strategy: &'a str,
    pub source_instance_id: Option<Id>,
    pub sp_list_id: Option<&'a str>,
    pub sp_item_id: Option<i64>,
    pub content_hash: Option<&'a str>,
    pub sync_state: &'a str,
    pub pending_list_id: Option<&'a str>,
    pub sync_target_id: Option<Id>,
    pub run_id: Id,
    /// The writer has seen no ledger row for the identity (a row created for the first time).
    /// On SQLite such rows are inserted without the upsert, whose possible update would need a
    /// statement journal (see migration 0005); should a row exist after all, it is upserted.
    pub fresh: bool,
}

/// Inserts or replaces the ledger row of one identity.
pub async fn put_ledger(store: &Store, write: &LedgerWrite<'_>) -> Result<(), StoreError> {
    put_ledger_many(store, std::slice::from_ref(write)).await
}

/// Ledger rows per `INSERT` of [`put_ledger_many`]: with [`LEDGER_ROW_PARAMETERS`] each, a
/// statement stays far below SQLite's 32,766 and PostgreSQL's 65,535 parameters.
const LEDGER_ROWS_PER_STATEMENT: usize = 500;

/// Parameters of each row in [`put_ledger_rows_sql`]: id, source identity and its hash, list,
/// item, content hash, state, pending list, sync target.
const LEDGER_ROW_PARAMETERS: usize = 9;

/// What every row of one ledger statement shares, bound once per statement rather than once
/// per row (with the statement's timestamp): a run's rows all share them, and binding them per
/// row formatted the same ids and timestamps thousands of times (`benches/push.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SharedLedgerValues<'a> {
    sync_def_id: Id,
    key_strategy: &'a str,
    source_instance_id: Option<Id>,
    run_id: Id,
}

impl<'a> SharedLedgerValues<'a> {
    fn of(write: &LedgerWrite<'a>) -> Self {
        Self {
            sync_def_id: write.sync_def_id,
            key_strategy: write.key_strategy,
            source_instance_id: write.source_instance_id,
            run_id: write.run_id,
        }
    }
}

/// How [`put_ledger_rows_sql`] treats a row whose identity is in the ledger already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnExisting {
    /// Replace it (an upsert).
    Update,
    /// Leave it and skip the row (SQLite's `INSERT OR IGNORE`): no statement in it can fail
    /// midway, so SQLite keeps no statement journal for it. The caller counts the rows
    /// inserted and upserts the statement's rows if any was skipped.
    Ignore,
}

/// An upsert of `rows` ledger rows, or with [`OnExisting::Ignore`] (SQLite only) an insert of
/// those not in the ledger yet. Each row has [`LEDGER_ROW_PARAMETERS`] parameters; the
/// [`SharedLedgerValues`] and the timestamp are five more, bound once: first on PostgreSQL
/// (`$1`–`$5`, which every row names), last on SQLite.
///
/// SQLite gets anonymous `?` parameters: the driver looks every numbered (`$N`) parameter up by
/// name, which SQLite answers with a linear scan, so a statement with thousands of numbered
/// parameters binds in quadratic time. The rows are then a `VALUES` table joined to the one
/// row of shared values, which comes last (SQLite numbers anonymous parameters in order).
fn put_ledger_rows_sql(backend: Backend, rows: usize, existing: OnExisting) -> String {
    let verb = match existing {
        OnExisting::Update => "INSERT",
        OnExisting::Ignore => "INSERT OR IGNORE",
    };
    let mut sql = format!(
        "{verb} INTO sync_ledger (id, source_identity, source_identity_hash, sp_list_id, sp_item_id,
            content_hash, sync_state, pending_list_id, sync_target_id, sync_def_id, source_key_strategy,
            source_instance_id, last_run_id, last_sync_ts, created_at, updated_at, provenance) "
    );
    match backend {
        Backend::Sqlite => {
            sql.push_str("SELECT ");
            for column in 1..=LEDGER_ROW_PARAMETERS {
                sql.push_str(&format!("r.column{column}, "));
            }
            sql.push_str(
                "s.column1, s.column2, s.column3, s.column4, s.column5, s.column5, s.column5, 'PUSH' FROM (VALUES ",
            );
            for row in 0..rows {
                if row > 0 {
                    sql.push_str(", ");
                }
                sql.push_str("(?");
                sql.push_str(&", ?".repeat(LEDGER_ROW_PARAMETERS - 1));
                sql.push(')');
            }
            // `CROSS JOIN` keeps the rows the outer loop; `WHERE true` tells SQLite's parser
            // that an `ON CONFLICT` after it is the upsert's, not a join constraint.
            sql.push_str(") AS r CROSS JOIN (VALUES (?, ?, ?, ?, ?)) AS s WHERE true");
        }
        Backend::Postgres => {
            sql.push_str("VALUES ");
            for row in 0..rows {
                if row > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for offset in 0..LEDGER_ROW_PARAMETERS {
                    sql.push_str(&format!("${}, ", 6 + row * LEDGER_ROW_PARAMETERS + offset));
                }
                sql.push_str("$1, $2, $3, $4, $5, $5, $5, 'PUSH')");
            }
        }
    }
    if existing == OnExisting::Ignore {
        return sql;
    }
    sql.push_str(
        " ON CONFLICT (sync_def_id, source_identity_hash) DO UPDATE SET
            source_identity = excluded.source_identity, source_instance_id = excluded.source_instance_id,
            sp_list_id = excluded.sp_list_id, sp_item_id = excluded.sp_item_id,
            content_hash = excluded.content_hash, last_sync_ts = excluded.last_sync_ts,
            provenance = 'PUSH', sync_state = excluded.sync_state, pending_list_id = excluded.pending_list_id,
            sync_target_id = excluded.sync_target_id, last_run_id = excluded.last_run_id,
            updated_at = excluded.updated_at",
    );
    sql
}

/// Writes many ledger rows in one transaction: all or none. When one identity appears more than
/// once, the last write wins, as if they had been written one after the other.
///
/// Rows go in multi-row statements: one statement per row costs a round trip to the database
/// (or to SQLite's worker thread) each, which dominated the engine's time.
pub async fn put_ledger_many(store: &Store, writes: &[LedgerWrite<'_>]) -> Result<(), StoreError> {
    settle_create_intents(store, &[], writes).await
}

/// [`put_ledger_many`] that also deletes create intents in the same transaction: each intent's
/// outcomes (created items, or nothing for creates that failed) are then recorded exactly when
/// the intent is gone.
pub async fn settle_create_intents(
    store: &Store,
    intents: &[Id],
    writes: &[LedgerWrite<'_>],
) -> Result<(), StoreError> {
    if writes.is_empty() && intents.is_empty() {
        return Ok(());
    }
    // PostgreSQL refuses to touch one row twice in a statement: keep each identity's last write.
    let mut last: std::collections::HashMap<(Id, &str), usize> =
        std::collections::HashMap::with_capacity(writes.len());
    for (index, write) in writes.iter().enumerate() {
        last.insert((write.sync_def_id, write.source_identity_hash), index);
    }
    let unique: Vec<&LedgerWrite<'_>> = writes
        .iter()
        .enumerate()
        .filter(|(index, w)| last.get(&(w.sync_def_id, w.source_identity_hash)) == Some(index))
        .map(|(_, w)| w)
        .collect();
    let backend = store.backend();
    // Fresh rows first, in statements of their own (SQLite: inserted, see `OnExisting::Ignore`).
    let (mut fresh, mut known): (Vec<&LedgerWrite<'_>>, Vec<&LedgerWrite<'_>>) = unique
        .iter()
        .copied()
        .partition(|w| w.fresh && backend == Backend::Sqlite);
    // In identity-hash order (after what the statements share, which keeps them whole): each
    // row's seek into the identity index then lands next to the previous row's, on pages
    // still in the processor's caches. SQLite's thread spent ~8 % less CPU per pushed row
    // (`benches/push.rs`, `PUSH_BENCH_ONLY=engine`). On PostgreSQL, transactions that upsert
    // the same identities lock them in the same order, so they cannot deadlock each other.
    for writes in [&mut fresh, &mut known] {
        writes.sort_unstable_by_key(|w| (SharedLedgerValues::of(w), w.source_identity_hash));
    }
    let statements = ledger_statements(&fresh)
        .map(|chunk| (chunk, OnExisting::Ignore))
        .chain(ledger_statements(&known).map(|chunk| (chunk, OnExisting::Update)));
    let now = Utc::now();
    with_writer!(store, pool => async {
        let mut tx = pool.begin_write().await?;
        for (chunk, mut existing) in statements {
            let shared = SharedLedgerValues::of(chunk[0]);
            loop {
                let sql = put_ledger_rows_sql(backend, chunk.len(), existing);
                let mut query = sqlx::query(&sql);
                // Shared values first on PostgreSQL, last on SQLite (see `put_ledger_rows_sql`).
                macro_rules! bind_shared {
                    ($query:expr) => {
                        $query
                            .bind(shared.sync_def_id).bind(shared.key_strategy)
                            .bind(shared.source_instance_id).bind(shared.run_id).bind(now)
                    };
                }
                if backend == Backend::Postgres {
                    query = bind_shared!(query);
                }
                for write in chunk {
                    query = query
                        .bind(Id::new()).bind(write.source_identity).bind(write.source_identity_hash)
                        .bind(write.sp_list_id).bind(write.sp_item_id).bind(write.content_hash)
                        .bind(write.sync_state).bind(write.pending_list_id).bind(write.sync_target_id);
                }
                if backend == Backend::Sqlite {
                    query = bind_shared!(query);
                }
                let inserted = query.execute(&mut *tx).await?.rows_affected();
                // A skipped row was in the ledger after all (or breaks a constraint, which the
                // upsert then reports): the statement's rows are upserted.
                if existing == OnExisting::Ignore && inserted < chunk.len() as u64 {
                    existing = OnExisting::Update;
                    continue;
                }
                break;
            }
        }
        let mut definitions: Vec<Id> = unique.iter().map(|w| w.sync_def_id).collect();
        definitions.sort_unstable();
        definitions.dedup();
        for sync_def_id in definitions {
            sqlx::query(BUMP_LEDGER_GENERATION).bind(sync_def_id).execute(&mut *tx).await?;
        }
        for intent in intents {
            sqlx::query("DELETE FROM sync_create_intents WHERE id = $1").bind(intent).execute(&mut *tx).await?;
        }
        tx.commit().await
    }.await)
    .map_err(StoreError::query("writing the ledger"))
}

/// Ledger writes in statements: consecutive writes with the same [`SharedLedgerValues`], at
/// most [`LEDGER_ROWS_PER_STATEMENT`] at a time.
fn ledger_statements<'w, 'a>(
    writes: &'w [&'w LedgerWrite<'a>],
) -> impl Iterator<Item = &'w [&'w LedgerWrite<'a>]> {
    writes
        .chunk_by(|a, b| SharedLedgerValues::of(a) == SharedLedgerValues::of(b))
        .flat_map(|same| same.chunks(LEDGER_ROWS_PER_STATEMENT))
}

/// The identities a run is about to create in one list, recorded before the creates are sent
/// (DESIGN.md §4, step 2) and deleted by [`settle_create_intents`] once their outcomes are in
/// the ledger. One left behind was interrupted: recovery looks each identity up in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateIntent {
    pub id: Id,
    pub sp_list_id: String,
    pub sync_target_id: Option<Id>,
    /// `(source_identity, source_identity_hash)` of every row to create.
    pub identities: Vec<(String, String)>,
}

/// Records a create intent (one row, however many identities).
pub async fn record_create_intent(
    store: &Store,
    sync_def_id: Id,
    run_id: Id,
    intent: &CreateIntent,
) -> Result<(), StoreError> {
    let identities = serde_json::to_string(&intent.identities).map_err(|error| {
        StoreError::query("recording a create intent")(sqlx::Error::Encode(Box::new(error)))
    })?;
    with_writer!(store, pool => sqlx::query(
        "INSERT INTO sync_create_intents (id, sync_def_id, sp_list_id, sync_target_id, run_id, identities, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(intent.id).bind(sync_def_id).bind(&intent.sp_list_id).bind(intent.sync_target_id)
        .bind(run_id).bind(&identities).bind(Utc::now())
        .execute(pool).await.map(|_| ()))
    .map_err(StoreError::query("recording a create intent"))
}

/// The create intents an interrupted run left behind, oldest first.
pub async fn create_intents(
    store: &Store,
    sync_def_id: Id,
) -> Result<Vec<CreateIntent>, StoreError> {
    let rows: Vec<(Id, String, Option<Id>, String)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, sp_list_id, sync_target_id, identities FROM sync_create_intents
          WHERE sync_def_id = $1 ORDER BY created_at, id")
        .bind(sync_def_id).fetch_all(pool).await)
    .map_err(StoreError::query("reading create intents"))?;
    rows.into_iter()
        .map(|(id, sp_list_id, sync_target_id, identities)| {
            let identities = serde_json::from_str(&identities).map_err(|error| {
                StoreError::query("reading create intents")(sqlx::Error::Decode(Box::new(error)))
            })?;
            Ok(CreateIntent {
                id,
                sp_list_id,
                sync_target_id,
                identities,
            })
        })
        .collect()
}

/// Counts a ledger write of one definition and drops its saved digest, in the write's
/// transaction: a digest saved for an earlier generation is never taken for the ledger.
const BUMP_LEDGER_GENERATION: &str =
    "INSERT INTO sync_ledger_digests (sync_def_id, generation) VALUES ($1, 1)
    ON CONFLICT (sync_def_id) DO UPDATE SET generation = sync_ledger_digests.generation + 1,
        lists = NULL, entries = NULL, saved_at = NULL";

/// How many ledger writes a definition has had (0 before the first), and whether a digest
/// saved at that generation is there.
pub async fn ledger_digest_state(
    store: &Store,
    sync_def_id: Id,
) -> Result<(i64, bool), StoreError> {
    with_pool!(store, pool => sqlx::query_as::<_, (i64, bool)>(
        "SELECT generation, entries IS NOT NULL FROM sync_ledger_digests WHERE sync_def_id = $1")
        .bind(sync_def_id).fetch_optional(pool).await)
    .map(|state| state.unwrap_or((0, false)))
    .map_err(StoreError::query("reading the ledger generation"))
}

/// A compact copy of a definition's ledger saved by [`save_ledger_digest`], current as of
/// `generation`. Its `entries` are the engine's to encode and decode.
#[derive(Debug, Clone)]
pub struct SavedLedgerDigest {
    pub lists: Vec<String>,
    pub entries: Vec<u8>,
}

/// The ledger's generation, and its saved digest if one is current.
pub async fn saved_ledger_digest(
    store: &Store,
    sync_def_id: Id,
) -> Result<(i64, Option<SavedLedgerDigest>), StoreError> {
    let row: Option<(i64, Option<String>, Option<Vec<u8>>)> =
        with_pool!(store, pool => sqlx::query_as(
        "SELECT generation, lists, entries FROM sync_ledger_digests WHERE sync_def_id = $1")
        .bind(sync_def_id).fetch_optional(pool).await)
        .map_err(StoreError::query("reading the saved ledger digest"))?;
    let Some((generation, lists, entries)) = row else {
        return Ok((0, None));
    };
    let saved = match (lists, entries) {
        (Some(lists), Some(entries)) => serde_json::from_str(&lists)
            .ok()
            .map(|lists| SavedLedgerDigest { lists, entries }),
        _ => None,
    };
    Ok((generation, saved))
}

/// Saves a digest of the ledger as it was at `generation`; nothing (and `false`) when a ledger
/// write came since, which makes the copy stale.
pub async fn save_ledger_digest(
    store: &Store,
    sync_def_id: Id,
    generation: i64,
    lists: &[String],
    entries: &[u8],
) -> Result<bool, StoreError> {
    let lists = serde_json::to_string(lists).unwrap_or_else(|_| "[]".to_owned());
    with_writer!(store, pool => sqlx::query(
        "INSERT INTO sync_ledger_digests (sync_def_id, generation, lists, entries, saved_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (sync_def_id) DO UPDATE SET lists = excluded.lists, entries = excluded.entries,
             saved_at = excluded.saved_at
         WHERE sync_ledger_digests.generation = excluded.generation")
        .bind(sync_def_id).bind(generation).bind(lists).bind(entries).bind(Utc::now())
        .execute(pool).await.map(|r| r.rows_affected() == 1))
    .map_err(StoreError::query("saving the ledger digest"))
}

/// Identity hashes with an open dead-letter entry (so a success can resolve it).
pub async fn open_failure_hashes(
    store: &Store,
    sync_def_id: Id,
) -> Result<Vec<String>, StoreError> {
    with_pool!(store, pool => sqlx::query_scalar::<_, String>(
        "SELECT source_identity_hash FROM failed_records WHERE sync_def_id = $1 AND source_identity_hash IS NOT NULL
           AND resolved_at IS NULL AND discarded_at IS NULL")
        .bind(sync_def_id).fetch_all(pool).await)
    .map_err(StoreError::query("reading open dead-letter entries"))
}

/// Removes the ledger row of one identity (after its item was deleted).
pub async fn delete_ledger(store: &Store, sync_def_id: Id, hash: &str) -> Result<(), StoreError> {
    with_writer!(store, pool => async {
        let mut tx = pool.begin_write().await?;
        sqlx::query("DELETE FROM sync_ledger WHERE sync_def_id = $1 AND source_identity_hash = $2")
            .bind(sync_def_id).bind(hash).execute(&mut *tx).await?;
        sqlx::query(BUMP_LEDGER_GENERATION).bind(sync_def_id).execute(&mut *tx).await?;
        tx.commit().await
    }.await)
    .map_err(StoreError::query("deleting a ledger row"))
}

/// Records that a source instance answered a health check now.
pub async fn mark_instance_verified(store: &Store, instance_id: Id) -> Result<(), StoreError> {
    with_writer!(store, pool => sqlx::query("UPDATE database_instances SET last_verified_at = $2 WHERE id = $1")
        .bind(instance_id).bind(Utc::now()).execute(pool).await.map(|_| ()))
    .map_err(StoreError::query("recording an instance check"))
}

/// Forgets every source cursor of a definition: the next run reads from the start.
pub async fn delete_source_cursors(store: &Store, sync_def_id: Id) -> Result<u64, StoreError> {
    with_writer!(store, pool => sqlx::query("DELETE FROM sync_cursors WHERE sync_def_id = $1 AND cursor_scope = 'SOURCE'")
        .bind(sync_def_id).execute(pool).await.map(|r| r.rows_affected()))
    .map_err(StoreError::query("deleting cursors"))
}

/// Reads a source cursor (`None` before the first committed run).
pub async fn source_cursor(
    store: &Store,
    sync_def_id: Id,
    instance: Option<Id>,
) -> Result<Option<String>, StoreError> {
    with_pool!(store, pool => sqlx::query_scalar::<_, String>(
        "SELECT cursor_value FROM sync_cursors WHERE sync_def_id = $1 AND cursor_scope = 'SOURCE'
            AND source_instance_id IS NOT DISTINCT FROM $2 AND target_list_id IS NULL")
        .bind(sync_def_id).bind(instance).fetch_optional(pool).await)
    .map_err(StoreError::query("reading a cursor"))
}

/// Commits a source cursor.
pub async fn put_source_cursor(
    store: &Store,
    sync_def_id: Id,
    instance: Option<Id>,
    cursor_type: &str,
    value: &str,
    run_id: Id,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let updated = with_writer!(store, pool => sqlx::query(
        "UPDATE sync_cursors SET cursor_type = $3, cursor_value = $4, last_run_id = $5, updated_at = $6
         WHERE sync_def_id = $1 AND cursor_scope = 'SOURCE' AND source_instance_id IS NOT DISTINCT FROM $2 AND target_list_id IS NULL")
        .bind(sync_def_id).bind(instance).bind(cursor_type).bind(value).bind(run_id).bind(now)
        .execute(pool).await.map(|r| r.rows_affected()))
    .map_err(StoreError::query("committing a cursor"))?;
    if updated == 0 {
        with_writer!(store, pool => sqlx::query(
            "INSERT INTO sync_cursors (id, sync_def_id, cursor_scope, cursor_type, cursor_value, source_instance_id, last_run_id, updated_at, created_at)
             VALUES ($1, $2, 'SOURCE', $3, $4, $5, $6, $7, $7)")
            .bind(Id::new()).bind(sync_def_id).bind(cursor_type).bind(value).bind(instance).bind(run_id).bind(now)
            .execute(pool).await.map(|_| ()))
        .map_err(StoreError::query("committing a cursor"))?;
    }
    Ok(())
}

/// Reads a target list's change cursor (a delta link), `None` before the first read.
pub async fn target_cursor(
    store: &Store,
    sync_def_id: Id,
    target_list_id: Id,
) -> Result<Option<String>, StoreError> {
    with_pool!(store, pool => sqlx::query_scalar::<_, String>(
        "SELECT cursor_value FROM sync_cursors WHERE sync_def_id = $1 AND cursor_scope = 'TARGET'
            AND target_list_id = $2 AND source_instance_id IS NULL")
        .bind(sync_def_id).bind(target_list_id).fetch_optional(pool).await)
    .map_err(StoreError::query("reading a target cursor"))
}

/// Commits a target list's change cursor (`DELTA_LINK`).
pub async fn put_target_cursor(
    store: &Store,
    sync_def_id: Id,
    target_list_id: Id,
    value: &str,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let updated = with_writer!(store, pool => sqlx::query(
        "UPDATE sync_cursors SET cursor_value = $3, updated_at = $4
         WHERE sync_def_id = $1 AND cursor_scope = 'TARGET' AND target_list_id = $2 AND source_instance_id IS NULL")
        .bind(sync_def_id).bind(target_list_id).bind(value).bind(now)
        .execute(pool).await.map(|r| r.rows_affected()))
    .map_err(StoreError::query("committing a target cursor"))?;
    if updated == 0 {
        with_writer!(store, pool => sqlx::query(
            "INSERT INTO sync_cursors (id, sync_def_id, cursor_scope, cursor_type, cursor_value, target_list_id, updated_at, created_at)
             VALUES ($1, $2, 'TARGET', 'DELTA_LINK', $3, $4, $5, $5)")
            .bind(Id::new()).bind(sync_def_id).bind(value).bind(target_list_id).bind(now)
            .execute(pool).await.map(|_| ()))
        .map_err(StoreError::query("committing a target cursor"))?;
    }
    Ok(())
}

/// One dead-lettered row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FailedRecord {
    pub id: Id,
    pub sync_def_id: Id,
    pub source_identity: Option<String>,
    pub source_identity_hash: Option<String>,
    pub target_list_id: Option<String>,
    pub stage_failed: String,
    pub error_code: Option<String>,
    pub error_message: String,
    pub raw_data: Option<Json<serde_json::Value>>,
    pub normalized_data: Option<Json<serde_json::Value>>,
    pub retry_count: i64,
    pub max_retries: i64,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub discarded_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A new dead-letter entry.
#[derive(Debug, Clone)]
pub struct NewFailure<'a> {
    pub sync_def_id: Id,
    pub run_id: Option<Id>,
    pub source_identity: Option<&'a str>,
    pub source_identity_hash: Option<&'a str>,
    pub target_list_id: Option<&'a str>,
    pub stage: &'a str,
    pub error_code: Option<&'a str>,
    pub error_message: &'a str,
    pub raw_data: Option<serde_json::Value>,
    pub normalized_data: Option<serde_json::Value>,
}

/// How long after its failure an entry that has failed `retries` times before is retried:
/// five minutes, doubling with every retry that failed again, at most a day.
pub fn retry_delay(retries: i64) -> chrono::Duration {
    // From 9 doublings on the wait is a day anyway; the clamp keeps the power small.
    let doublings = retries.clamp(0, 16) as u32;
    (chrono::Duration::minutes(5) * 2_i32.pow(doublings)).min(chrono::Duration::days(1))
}

/// Dead-letters a row. An open entry for the same identity is updated instead (its retry count
/// grows, and so does the wait before the next retry, see [`retry_delay`]), so a row failing on
/// every run stays one entry.
pub async fn record_failure(store: &Store, failure: &NewFailure<'_>) -> Result<(), StoreError> {
    let now = Utc::now();
    let retries: Option<i64> = with_pool!(store, pool => sqlx::query_scalar(
        "SELECT retry_count FROM failed_records
         WHERE sync_def_id = $1 AND source_identity_hash = $2 AND resolved_at IS NULL AND discarded_at IS NULL")
        .bind(failure.sync_def_id).bind(failure.source_identity_hash)
        .fetch_optional(pool).await)
    .map_err(StoreError::query("reading a dead-letter entry"))?;
    if let Some(retries) = retries {
        let retries = retries + 1;
        with_writer!(store, pool => sqlx::query(
            "UPDATE failed_records SET sync_run_id = $3, target_list_id = $4, stage_failed = $5, error_code = $6,
                error_message = $7, raw_data = $8, normalized_data = $9, retry_count = $10,
                next_retry_at = $11, updated_at = $12
             WHERE sync_def_id = $1 AND source_identity_hash = $2 AND resolved_at IS NULL AND discarded_at IS NULL")
            .bind(failure.sync_def_id).bind(failure.source_identity_hash).bind(failure.run_id)
            .bind(failure.target_list_id).bind(failure.stage).bind(failure.error_code).bind(failure.error_message)
            .bind(failure.raw_data.clone().map(Json)).bind(failure.normalized_data.clone().map(Json))
            .bind(retries).bind(now + retry_delay(retries)).bind(now)
            .execute(pool).await.map(|_| ()))
        .map_err(StoreError::query("dead-lettering a row"))?;
        return Ok(());
    }
    with_writer!(store, pool => sqlx::query(
        "INSERT INTO failed_records (id, sync_def_id, sync_run_id, source_identity, source_identity_hash,
            target_list_id, stage_failed, error_code, error_message, raw_data, normalized_data, retry_count,
            max_retries, next_retry_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, 5, $12, $13, $13)")
        .bind(Id::new()).bind(failure.sync_def_id).bind(failure.run_id).bind(failure.source_identity)
        .bind(failure.source_identity_hash).bind(failure.target_list_id).bind(failure.stage)
        .bind(failure.error_code).bind(failure.error_message)
        .bind(failure.raw_data.clone().map(Json)).bind(failure.normalized_data.clone().map(Json))
        .bind(now + retry_delay(0)).bind(now)
        .execute(pool).await.map(|_| ()))
    .map_err(StoreError::query("dead-lettering a row"))
}

/// Marks the open entry of an identity resolved (the row synced on a later attempt).
pub async fn resolve_failure(store: &Store, sync_def_id: Id, hash: &str) -> Result<(), StoreError> {
    with_writer!(store, pool => sqlx::query(
        "UPDATE failed_records SET resolved_at = $3, updated_at = $3
         WHERE sync_def_id = $1 AND source_identity_hash = $2 AND resolved_at IS NULL AND discarded_at IS NULL")
        .bind(sync_def_id).bind(hash).bind(Utc::now()).execute(pool).await.map(|_| ()))
    .map_err(StoreError::query("resolving a dead-letter entry"))
}

/// After a complete read of the whole table that started at `read_started_at`: resolves the
/// open entries not dead-lettered again since. Such a row was read and found in step (an entry
/// for a row that synced is resolved as it syncs), or it is gone from the source, and a retry
/// would bring it back. Returns how many entries were resolved.
pub async fn resolve_failures_not_met(
    store: &Store,
    sync_def_id: Id,
    read_started_at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    with_writer!(store, pool => sqlx::query(
        "UPDATE failed_records SET resolved_at = $3, updated_at = $3
         WHERE sync_def_id = $1 AND resolved_at IS NULL AND discarded_at IS NULL AND updated_at < $2")
        .bind(sync_def_id).bind(read_started_at).bind(Utc::now()).execute(pool).await.map(|r| r.rows_affected()))
    .map_err(StoreError::query("resolving dead-letter entries"))
}

const FAILED_COLUMNS: &str = "id, sync_def_id, source_identity, source_identity_hash, target_list_id, stage_failed,
    error_code, error_message, raw_data, normalized_data, retry_count, max_retries, next_retry_at, resolved_at,
    discarded_at, created_at";

/// Open dead-letter entries, newest first, optionally of one definition.
pub async fn open_failures(
    store: &Store,
    sync_def_id: Option<Id>,
) -> Result<Vec<FailedRecord>, StoreError> {
    let sql = format!(
        "SELECT {FAILED_COLUMNS} FROM failed_records WHERE ($1 IS NULL OR sync_def_id = $1)
           AND resolved_at IS NULL AND discarded_at IS NULL ORDER BY created_at DESC"
    );
    with_pool!(store, pool => sqlx::query_as::<_, FailedRecord>(&sql).bind(sync_def_id).fetch_all(pool).await)
        .map_err(StoreError::query("listing dead-letter entries"))
}

/// Open entries whose retry is due (`next_retry_at` passed, retries left, raw row kept).
pub async fn due_failures(
    store: &Store,
    sync_def_id: Id,
    now: DateTime<Utc>,
) -> Result<Vec<FailedRecord>, StoreError> {
    let sql = format!(
        "SELECT {FAILED_COLUMNS} FROM failed_records WHERE sync_def_id = $1 AND resolved_at IS NULL
           AND discarded_at IS NULL AND raw_data IS NOT NULL AND retry_count < max_retries
           AND (next_retry_at IS NULL OR next_retry_at <= $2) ORDER BY created_at"
    );
    with_pool!(store, pool => sqlx::query_as::<_, FailedRecord>(&sql).bind(sync_def_id).bind(now).fetch_all(pool).await)
        .map_err(StoreError::query("reading due dead-letter entries"))
}

/// One dead-letter entry by id.
pub async fn failure(store: &Store, id: Id) -> Result<Option<FailedRecord>, StoreError> {
    let sql = format!("SELECT {FAILED_COLUMNS} FROM failed_records WHERE id = $1");
    with_pool!(store, pool => sqlx::query_as::<_, FailedRecord>(&sql).bind(id).fetch_optional(pool).await)
        .map_err(StoreError::query("reading a dead-letter entry"))
}

/// Discards an entry: it is kept for the record but never retried.
pub async fn discard_failure(store: &Store, id: Id) -> Result<bool, StoreError> {
    with_writer!(store, pool => sqlx::query(
        "UPDATE failed_records SET discarded_at = $2, updated_at = $2 WHERE id = $1 AND resolved_at IS NULL AND discarded_at IS NULL")
        .bind(id).bind(Utc::now()).execute(pool).await.map(|r| r.rows_affected() > 0))
    .map_err(StoreError::query("discarding a dead-letter entry"))
}

/// Makes an entry due for retry now, with at least one retry left (an entry that used up its
/// automatic retries gets one more; its retry count still tells how often it failed).
pub async fn retry_failure_now(store: &Store, id: Id) -> Result<bool, StoreError> {
    with_writer!(store, pool => sqlx::query(
        "UPDATE failed_records SET next_retry_at = $2, updated_at = $2,
            max_retries = CASE WHEN max_retries > retry_count THEN max_retries ELSE retry_count + 1 END
         WHERE id = $1 AND resolved_at IS NULL AND discarded_at IS NULL")
        .bind(id).bind(Utc::now()).execute(pool).await.map(|r| r.rows_affected() > 0))
    .map_err(StoreError::query("scheduling a retry"))
}

/// What a run did to one list, for `sync_metrics`.
#[derive(Debug, Clone, Copy)]
pub struct RunMetrics {
    pub sync_def_id: Id,
    pub source_instance_id: Id,
    pub target_list_id: Id,
    pub run_id: Id,
    /// Items the run created, updated or moved into the list.
    pub written: i64,
    /// The run read everything it had to (rows it dead-lettered aside).
    pub completed: bool,
}

/// Records a run in `sync_metrics`: its id, the items it wrote (added to the total), and, when
/// it completed, its time as the last sync (`last_sync_ts`).
pub async fn put_run_metrics(store: &Store, metrics: &RunMetrics) -> Result<(), StoreError> {
    let now = Utc::now();
    let synced_at = metrics.completed.then_some(now);
    with_writer!(store, pool => sqlx::query(
        "INSERT INTO sync_metrics (id, sync_def_id, source_instance_id, target_list_id, last_sync_ts,
            total_rows_synced, last_run_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (sync_def_id, source_instance_id, target_list_id) DO UPDATE SET
            last_sync_ts = COALESCE(excluded.last_sync_ts, sync_metrics.last_sync_ts),
            total_rows_synced = sync_metrics.total_rows_synced + excluded.total_rows_synced,
            last_run_id = excluded.last_run_id")
        .bind(Id::new()).bind(metrics.sync_def_id).bind(metrics.source_instance_id)
        .bind(metrics.target_list_id).bind(synced_at).bind(metrics.written).bind(metrics.run_id)
        .execute(pool).await.map(|_| ()))
    .map_err(StoreError::query("recording run metrics"))
}

/// Records a reconciliation of one list in `sync_metrics`.
#[allow(clippy::too_many_arguments)]
pub async fn put_reconcile_metrics(
    store: &Store,
    sync_def_id: Id,
    source_instance_id: Id,
    target_list_id: Id,
    source_row_count: i64,
    target_row_count: i64,
    status: &str,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let delta = target_row_count - source_row_count;
    with_writer!(store, pool => sqlx::query(
        "INSERT INTO sync_metrics (id, sync_def_id, source_instance_id, target_list_id, last_reconcile_at,
            source_row_count, target_row_count, reconcile_delta, reconcile_status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (sync_def_id, source_instance_id, target_list_id) DO UPDATE SET
            last_reconcile_at = excluded.last_reconcile_at, source_row_count = excluded.source_row_count,
            target_row_count = excluded.target_row_count, reconcile_delta = excluded.reconcile_delta,
            reconcile_status = excluded.reconcile_status")
        .bind(Id::new()).bind(sync_def_id).bind(source_instance_id).bind(target_list_id).bind(now)
        .bind(source_row_count).bind(target_row_count).bind(delta).bind(status)
        .execute(pool).await.map(|_| ()))
    .map_err(StoreError::query("recording reconciliation metrics"))
}
