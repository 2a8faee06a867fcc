//! The `LSN` cursor: PostgreSQL logical decoding over SQL, with the `test_decoding` plugin.
//!
//! # Snapshot, then stream
//! The first read (no position) creates the replication slot, then reads the whole table by key
//! (the snapshot phase, resumable like a `FULL_SCAN`), then streams the changes the slot kept
//! since it was created. A transaction that committed between the slot's creation and the end of
//! the snapshot is seen twice, which the engine's content hashes make harmless; nothing committed
//! after the slot's creation can be missed, because the slot keeps it until acknowledged.
//!
//! # Positions
//! Changes are taken whole transactions at a time, in commit order, and the position is the
//! commit LSN of the last one. The engine commits a position after the target acknowledged the
//! batch, then [`acknowledge`](PostgresSource::acknowledge_lsn) advances the slot to it, so the
//! server can release the WAL. Only key columns are taken from the decoded change; the row's
//! current state is read from the table (unchanged TOAST values are not in the change stream),
//! and a key whose last change in the batch is a delete, or whose row is gone, becomes a delete.

use std::collections::BTreeMap;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use syncbridge_api::{
    BatchStream, ConnectorError, CursorSpec, KeysetPlan, Position, ReadRequest, Row, RowBatch,
    RowKind, TableRef, Value,
};

use crate::{
    CatalogColumn, PostgresSource, convert, quote, row_values, select_list, table_sql, texts_after,
};

/// Where an `LSN` read is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub(crate) enum LsnPosition {
    /// Reading the table as it is, by key; `after` is the last key read (as a `FULL_SCAN`
    /// position), `start` the slot's consistent point.
    Snapshot {
        slot: String,
        start: String,
        after: Option<Position>,
    },
    /// Streaming the changes committed after `lsn`.
    Stream { slot: String, lsn: String },
}

/// The slot name: `options.slot`, or one derived from the database and table (stable across
/// releases: FNV-1a, not the standard library's hasher).
pub(crate) fn slot_name(
    options: &serde_json::Value,
    database: &str,
    table: &TableRef,
) -> Result<String, ConnectorError> {
    if let Some(slot) = options.get("slot").and_then(serde_json::Value::as_str) {
        let valid = !slot.is_empty()
            && slot.len() <= 63
            && slot
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(ConnectorError::user(format!(
                "replication slot name `{slot}` is not valid"
            ))
            .with_hint("use lower-case letters, digits and underscores, at most 63 characters"));
        }
        return Ok(slot.to_owned());
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{database}\u{0}{table}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Ok(format!("syncbridge_{hash:016x}"))
}

/// One decoded change to the table being read: its kind and key values (as text).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    pub delete: bool,
    pub key: Vec<Option<String>>,
}

/// A decoded transaction: its commit LSN and the changes to our table.
#[derive(Debug, Clone)]
struct Transaction {
    commit: String,
    changes: Vec<Change>,
}

/// Parses one `test_decoding` line for `table_prefix` (`table public.items: `): nothing for
/// other tables and for lines without the key (a table without a replica identity). An update
/// that changed the key (`old-key: … new-tuple: …`) is the old key's delete and the new key's
/// upsert.
pub(crate) fn parse_change(data: &str, table_prefix: &str, key: &[String]) -> Vec<Change> {
    let Some((kind, tuple)) = data
        .strip_prefix(table_prefix)
        .and_then(|rest| rest.split_once(": "))
    else {
        return Vec::new();
    };
    let delete = match kind {
        "INSERT" | "UPDATE" => false,
        "DELETE" => true,
        _ => return Vec::new(),
    };
    let key_of = |tuple: &str| -> Option<Vec<Option<String>>> {
        let values = parse_tuple(tuple);
        key.iter()
            .map(|k| {
                values
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.clone())
                    .filter(Option::is_some)
            })
            .collect()
    };
    match tuple
        .strip_prefix("old-key: ")
        .and_then(|t| t.split_once(" new-tuple: "))
    {
        Some((old, new)) => [(old, true), (new, false)]
            .into_iter()
            .filter_map(|(tuple, delete)| key_of(tuple).map(|key| Change { delete, key }))
            .collect(),
        None => key_of(tuple)
            .map(|key| Change { delete, key })
            .into_iter()
            .collect(),
    }
}

/// `a[integer]:1 b[text]:'it''s' c[text]:null` → `[(a, Some(1)), (b, Some(it's)), (c, None)]`.
pub(crate) fn parse_tuple(tuple: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut chars = tuple.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        // Column name, possibly double-quoted.
        let mut name = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        name.push('"');
                        chars.next();
                    } else {
                        break;
                    }
                } else {
                    name.push(c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '[' {
                    break;
                }
                name.push(c);
                chars.next();
            }
        }
        // `[type]` (types may hold spaces and brackets of their own, e.g. `integer[]`).
        if chars.next() != Some('[') {
            break;
        }
        let mut depth = 1;
        for c in chars.by_ref() {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
        if chars.next() != Some(':') {
            break;
        }
        let value = if chars.peek() == Some(&'\'') {
            chars.next();
            let mut text = String::new();
            while let Some(c) = chars.next() {
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        text.push('\'');
                        chars.next();
                    } else {
                        break;
                    }
                } else {
                    text.push(c);
                }
            }
            Some(text)
        } else {
            let mut token = String::new();
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                token.push(c);
                chars.next();
            }
            (token != "null").then_some(token)
        };
        out.push((name, value));
    }
    out
}

impl PostgresSource {
    async fn wal_level(&self) -> Result<String, ConnectorError> {
        sqlx::query_scalar::<_, String>("SHOW wal_level")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error("reading wal_level", e))
    }

    async fn slot_exists(&self, slot: &str) -> Result<bool, ConnectorError> {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
        )
        .bind(slot)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error("looking for the replication slot", e))
    }

    /// Drops the slot a `LSN` sync reads from, releasing the WAL it holds (when a definition is
    /// removed, or before a fresh snapshot).
    pub async fn drop_slot(&self, slot: &str) -> Result<(), ConnectorError> {
        sqlx::query(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
        )
        .bind(slot)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(|e| self.error("dropping the replication slot", e))
    }

    /// The `LSN` read: snapshot, then stream (see the module docs).
    pub(crate) async fn read_lsn(
        &self,
        request: ReadRequest,
        options: &serde_json::Value,
    ) -> Result<BatchStream, ConnectorError> {
        let level = self.wal_level().await?;
        if level != "logical" {
            return Err(ConnectorError::user(format!(
                "the LSN cursor needs wal_level = logical on PostgreSQL at {}, which has `{level}`",
                self.address
            ))
            .with_hint(
                "run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL, or use UPDATED_AT",
            ));
        }
        let slot = slot_name(options, &self.database, &request.table)?;
        let position: Option<LsnPosition> = match &request.from {
            Some(position) => Some(serde_json::from_str(&position.0).map_err(|e| {
                ConnectorError::internal(format!("unreadable LSN position `{}`: {e}", position.0))
            })?),
            None => None,
        };
        let position = match position {
            None => {
                // A fresh start: a new slot, then the snapshot.
                self.drop_slot(&slot).await?;
                let start: String = sqlx::query_scalar(
                    "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'test_decoding')",
                )
                .bind(&slot)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.error("creating the replication slot", e))?;
                LsnPosition::Snapshot {
                    slot: slot.clone(),
                    start,
                    after: None,
                }
            }
            Some(position) => {
                let slot = match &position {
                    LsnPosition::Snapshot { slot, .. } | LsnPosition::Stream { slot, .. } => slot,
                };
                if !self.slot_exists(slot).await? {
                    return Err(ConnectorError::user(format!(
                        "replication slot `{slot}` no longer exists on {}",
                        self.address
                    ))
                    .with_hint("a run reads the whole table again, with a new snapshot and slot")
                    .requires_full_read());
                }
                position
            }
        };

        let catalog = self.columns_of(&request.table).await?;
        // The same column checks as a keyset read: unknown or unreadable columns are named with
        // the cast that works around them.
        KeysetPlan::new(
            &ReadRequest {
                cursor: CursorSpec::FullScan,
                from: None,
                ..request.clone()
            },
            &catalog,
            "PostgreSQL",
            |c| format!("{}::text", quote(c)),
        )?;
        let key_columns: Vec<CatalogColumn> = request
            .key
            .iter()
            .map(|k| {
                catalog
                    .iter()
                    .find(|c| &c.name == k)
                    .cloned()
                    .ok_or_else(|| {
                        ConnectorError::user(format!(
                            "table `{}` has no key column `{k}`",
                            request.table
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        let snapshot = match &position {
            LsnPosition::Snapshot { after, .. } => Some(
                self.read_keyset(ReadRequest {
                    cursor: CursorSpec::FullScan,
                    from: after.clone(),
                    ..request.clone()
                })
                .await?,
            ),
            LsnPosition::Stream { .. } => None,
        };
        let source = self.clone();
        let table_prefix = format!(
            "table {}.{}: ",
            request.table.schema.as_deref().unwrap_or("public"),
            request.table.name
        );
        let batch_size = request.batch_size.max(1);
        let stream = async_stream::try_stream! {
            let (slot, mut lsn) = match position {
                LsnPosition::Snapshot { slot, start, .. } => {
                    if let Some(mut snapshot) = snapshot {
                        while let Some(batch) = snapshot.next().await {
                            let batch = batch?;
                            let next = LsnPosition::Snapshot { slot: slot.clone(), start: start.clone(), after: batch.position.clone() };
                            yield RowBatch { position: serde_json::to_string(&next).ok().map(Position), ..batch };
                        }
                    }
                    (slot, start)
                }
                LsnPosition::Stream { slot, lsn } => (slot, lsn),
            };
            loop {
                let transactions = source.peek(&slot, &lsn, &table_prefix, &request.key).await?;
                if transactions.is_empty() {
                    // Tell the engine where the stream is, so the slot advances past changes to
                    // other tables too.
                    let next = LsnPosition::Stream { slot: slot.clone(), lsn: lsn.clone() };
                    yield RowBatch { columns: request_columns(&request, &catalog).into(), rows: Vec::new(), position: serde_json::to_string(&next).ok().map(Position), notes: Vec::new(), fingerprints: Vec::new(), unconverted: None, };
                    break;
                }
                // Whole transactions, up to about one batch of changes.
                let mut latest: BTreeMap<Vec<Option<String>>, bool> = BTreeMap::new();
                let mut taken = 0;
                for transaction in &transactions {
                    for change in &transaction.changes {
                        latest.insert(change.key.clone(), change.delete);
                    }
                    lsn = transaction.commit.clone();
                    taken += transaction.changes.len();
                    if taken >= batch_size {
                        break;
                    }
                }
                let batch = source.current_rows(&request, &catalog, &key_columns, &latest).await?;
                let next = LsnPosition::Stream { slot: slot.clone(), lsn: lsn.clone() };
                yield RowBatch { position: serde_json::to_string(&next).ok().map(Position), ..batch };
            }
        };
        Ok(stream.boxed())
    }

    /// Decoded transactions committed after `after`, in commit order, keeping only changes to
    /// the table (transactions without any still move the position).
    async fn peek(
        &self,
        slot: &str,
        after: &str,
        table_prefix: &str,
        key: &[String],
    ) -> Result<Vec<Transaction>, ConnectorError> {
        // No filter on the change LSN in SQL: a transaction's BEGIN and first change carry the
        // LSN of the previous COMMIT, so whole transactions are kept by their commit LSN.
        let rows = sqlx::query(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_changes($1, NULL, NULL, 'include-xids', '0')",
        )
        .bind(slot)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error("reading changes from the replication slot", e))?;
        let mut out = Vec::new();
        let mut changes = Vec::new();
        for row in rows {
            let lsn: String = row
                .try_get(0)
                .map_err(|e| self.error("reading a change", e))?;
            let data: String = row
                .try_get(1)
                .map_err(|e| self.error("reading a change", e))?;
            if data == "BEGIN" || data.starts_with("BEGIN ") {
                changes.clear();
            } else if data == "COMMIT" || data.starts_with("COMMIT ") {
                let changes = std::mem::take(&mut changes);
                if lsn_value(&lsn) > lsn_value(after) {
                    out.push(Transaction {
                        commit: lsn,
                        changes,
                    });
                }
            } else {
                changes.extend(parse_change(&data, table_prefix, key));
            }
        }
        Ok(out)
    }

    /// The rows of `keys` as they are now: an upsert for each row found, a delete for each key
    /// whose last change was a delete or whose row is gone.
    async fn current_rows(
        &self,
        request: &ReadRequest,
        catalog: &[CatalogColumn],
        key_columns: &[CatalogColumn],
        keys: &BTreeMap<Vec<Option<String>>, bool>,
    ) -> Result<RowBatch, ConnectorError> {
        let columns = request_columns(request, catalog);
        let read: Vec<CatalogColumn> = columns
            .iter()
            .filter_map(|name| catalog.iter().find(|c| &c.name == name).cloned())
            .collect();
        let wanted: Vec<&Vec<Option<String>>> = keys
            .iter()
            .filter(|(_, deleted)| !**deleted)
            .map(|(key, _)| key)
            .collect();
        let mut found: BTreeMap<Vec<Option<String>>, Row> = BTreeMap::new();
        if !wanted.is_empty() {
            let select_list = select_list(&read, key_columns);
            let mut binds = Vec::new();
            let mut terms = Vec::new();
            for key in &wanted {
                let parts: Vec<String> = key_columns
                    .iter()
                    .zip(key.iter())
                    .map(|(column, value)| {
                        binds.push(value.clone());
                        format!(
                            "{} = ${}::{}",
                            quote(&column.name),
                            binds.len(),
                            column.sql_type
                        )
                    })
                    .collect();
                terms.push(format!("({})", parts.join(" AND ")));
            }
            let sql = format!(
                "SELECT {select_list} FROM {} WHERE {}",
                table_sql(&request.table),
                terms.join(" OR ")
            );
            let mut query = sqlx::query(&sql);
            for value in &binds {
                query = query.bind(value.clone());
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.error("reading changed rows", e))?;
            for row in rows {
                let values = row_values(&row, &read)?;
                let key = texts_after(&row, read.len(), key_columns.len());
                found.insert(key, Row::new(values));
            }
        }
        let mut rows = Vec::with_capacity(keys.len());
        for key in keys.keys() {
            match found.remove(key) {
                Some(row) => rows.push(row),
                None => rows.push(delete_row(&columns, key_columns, key, catalog)?),
            }
        }
        Ok(RowBatch {
            columns: columns.into(),
            rows,
            position: None,
            notes: Vec::new(),
            fingerprints: Vec::new(),
            unconverted: None,
        })
    }

    /// Advances the slot to an acknowledged stream position (snapshot positions hold nothing).
    pub(crate) async fn acknowledge_lsn(&self, position: &Position) -> Result<(), ConnectorError> {
        let Ok(LsnPosition::Stream { slot, lsn }) = serde_json::from_str(&position.0) else {
            return Ok(());
        };
        sqlx::query("SELECT pg_replication_slot_advance($1, $2::pg_lsn)")
            .bind(&slot)
            .bind(&lsn)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| self.error("advancing the replication slot", e))
    }
}

/// A textual LSN (`16/B374D848`) as a number, for comparisons.
pub(crate) fn lsn_value(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
}

fn request_columns(request: &ReadRequest, catalog: &[CatalogColumn]) -> Vec<String> {
    if request.columns.is_empty() {
        catalog.iter().map(|c| c.name.clone()).collect()
    } else {
        request.columns.clone()
    }
}

/// A delete row: the key columns carry their values, the rest are null.
fn delete_row(
    columns: &[String],
    key_columns: &[CatalogColumn],
    key: &[Option<String>],
    catalog: &[CatalogColumn],
) -> Result<Row, ConnectorError> {
    let mut values = vec![Value::Null; columns.len()];
    for (column, value) in key_columns.iter().zip(key) {
        if let Some(index) = columns.iter().position(|c| c == &column.name) {
            let data_type = catalog
                .iter()
                .find(|c| c.name == column.name)
                .and_then(|c| c.data_type.as_ref().ok())
                .ok_or_else(|| ConnectorError::internal(format!("key column `{}`", column.name)))?;
            values[index] = convert(value.as_deref(), data_type, false)
                .map_err(|m| ConnectorError::user(format!("key column `{}`: {m}", column.name)))?;
        }
    }
    let mut row = Row::new(values);
    row.kind = RowKind::Delete;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_decoding_lines_parse() {
        let key = vec!["id".to_owned()];
        let prefix = "table public.items: ";
        let change = |delete: bool, id: &str| Change {
            delete,
            key: vec![Some(id.into())],
        };
        assert_eq!(
            parse_change(
                "table public.items: INSERT: id[integer]:1 name[text]:'it''s a [test]' note[text]:null",
                prefix,
                &key
            ),
            vec![change(false, "1")]
        );
        assert_eq!(
            parse_change("table public.items: DELETE: id[integer]:7", prefix, &key),
            vec![change(true, "7")]
        );
        assert_eq!(
            parse_change(
                "table public.items: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 name[text]:'x'",
                prefix,
                &key
            ),
            vec![change(true, "1"), change(false, "2")]
        );
        assert!(parse_change("table public.other: INSERT: id[integer]:1", prefix, &key).is_empty());
        assert!(
            parse_change("table public.items: DELETE: (no-tuple-data)", prefix, &key).is_empty()
        );
        let tuple = parse_tuple(
            "\"Mixed Case\"[character varying]:'a b' tags[text[]]:'{a,b}' at[timestamp with time zone]:'2024-01-01 00:00:00+00'",
        );
        assert_eq!(tuple[0], ("Mixed Case".to_owned(), Some("a b".to_owned())));
        assert_eq!(tuple[1], ("tags".to_owned(), Some("{a,b}".to_owned())));
        assert_eq!(tuple[2].1.as_deref(), Some("2024-01-01 00:00:00+00"));
    }

    #[test]
    fn lsns_compare_as_numbers() {
        assert!(lsn_value("0/1BA92F98") > lsn_value("0/1BA92DF8"));
        assert!(lsn_value("1/0") > lsn_value("0/FFFFFFFF"));
        assert_eq!(lsn_value("nonsense"), None);
    }

    #[test]
    fn slot_names_are_stable_and_checked() {
        let table = TableRef::new(Some("public"), "items");
        let a = slot_name(&serde_json::json!({}), "db", &table).expect("derived");
        assert_eq!(
            a,
            slot_name(&serde_json::json!({}), "db", &table).expect("again")
        );
        assert!(a.starts_with("syncbridge_") && a.len() == 27, "{a}");
        assert_ne!(
            a,
            slot_name(&serde_json::json!({}), "other", &table).expect("other db")
        );
        assert_eq!(
            slot_name(&serde_json::json!({"slot": "mine_1"}), "db", &table).expect("given"),
            "mine_1"
        );
        assert!(slot_name(&serde_json::json!({"slot": "Bad-Name"}), "db", &table).is_err());
    }
}
