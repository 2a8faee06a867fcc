//! The `LSN` cursor on MySQL / MariaDB: the binary log, read as a replica would.
//!
//! # Snapshot, then stream
//! The first read (no position) notes where the binary log ends, then reads the whole table by
//! key (resumable like a `FULL_SCAN`), then streams the changes logged since the noted point. A
//! transaction that committed during the snapshot is seen twice, which the engine's content
//! hashes make harmless; nothing logged after the noted point can be missed.
//!
//! # Positions
//! Changes are taken whole transactions at a time (up to the `XID` event that commits them), in
//! log order; the position is the binary log file and the offset after the last transaction
//! taken. Only the key columns are taken from the logged rows (by column position, so the log
//! needs no column names); each row's current state is read from the table, and a key whose row
//! is gone becomes a delete. Needs `log_bin` on and `binlog_format = ROW`.

use std::collections::BTreeMap;

use futures::StreamExt as _;
use mysql_async::binlog::events::{EventData, RowsEventData};
use mysql_async::binlog::value::BinlogValue;
use serde::{Deserialize, Serialize};
use syncbridge_api::{
    BatchStream, ConnectorError, CursorSpec, KeysetPlan, Position, ReadRequest, Row, RowBatch,
    RowKind, Value,
};

use crate::{CatalogColumn, MySqlSource, classify, convert, quote, text};

/// Where an `LSN` read is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub(crate) enum BinlogPosition {
    /// Reading the table as it is, by key; `after` is the last key read, `file`/`pos` where the
    /// log ended when the snapshot began.
    Snapshot {
        file: String,
        pos: u64,
        after: Option<Position>,
    },
    /// Streaming the changes logged after `file`/`pos`; `gtid` is the same point as a global
    /// transaction id where the server can tell (MariaDB), for people reading positions.
    Stream {
        file: String,
        pos: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gtid: Option<String>,
    },
}

/// One logged transaction's changes to the table: key (as text) → deleted.
struct Transaction {
    file: String,
    end: u64,
    keys: Vec<(Vec<Option<String>>, bool)>,
}

impl MySqlSource {
    /// `log_bin` must be on and `binlog_format` ROW.
    async fn check_binlog(&self) -> Result<(), ConnectorError> {
        let rows = self
            .rows(
                "reading the binary log settings",
                "SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format",
                Vec::new(),
            )
            .await?;
        let (on, format) = rows
            .first()
            .map(|r| (text(&r[0]), text(&r[1])))
            .unwrap_or_default();
        if on.as_deref() != Some("1") {
            return Err(ConnectorError::user(format!(
                "the LSN cursor reads the binary log, which is off on {}",
                self.address
            ))
            .with_hint("start the server with log_bin and binlog_format=ROW, or use UPDATED_AT"));
        }
        if format.as_deref() != Some("ROW") {
            return Err(ConnectorError::user(format!(
                "the LSN cursor needs binlog_format = ROW on {}, which has `{}`",
                self.address,
                format.unwrap_or_default()
            ))
            .with_hint("set binlog_format=ROW in the server's configuration and restart it"));
        }
        Ok(())
    }

    /// Where the binary log ends now.
    async fn binlog_end(&self) -> Result<(String, u64), ConnectorError> {
        let rows = match self
            .rows(
                "reading the binary log position",
                "SHOW MASTER STATUS",
                Vec::new(),
            )
            .await
        {
            Ok(rows) => rows,
            // MySQL 8.4 renamed the statement.
            Err(_) => {
                self.rows(
                    "reading the binary log position",
                    "SHOW BINARY LOG STATUS",
                    Vec::new(),
                )
                .await?
            }
        };
        let row = rows.first().ok_or_else(|| {
            ConnectorError::user(format!("{} reports no binary log", self.address))
                .with_hint("start the server with log_bin and binlog_format=ROW")
        })?;
        let file = text(&row[0]).unwrap_or_default();
        let pos = text(&row[1]).and_then(|p| p.parse().ok()).unwrap_or(4);
        Ok((file, pos))
    }

    /// The `LSN` read: snapshot, then stream (see the module docs).
    pub(crate) async fn read_binlog(
        &self,
        request: ReadRequest,
    ) -> Result<BatchStream, ConnectorError> {
        self.check_binlog().await?;
        let position = match &request.from {
            Some(position) => serde_json::from_str(&position.0).map_err(|e| {
                ConnectorError::internal(format!(
                    "unreadable binary log position `{}`: {e}",
                    position.0
                ))
            })?,
            None => {
                let (file, pos) = self.binlog_end().await?;
                BinlogPosition::Snapshot {
                    file,
                    pos,
                    after: None,
                }
            }
        };
        let catalog = self.columns_of(&request.table).await?;
        KeysetPlan::new(
            &ReadRequest {
                cursor: CursorSpec::FullScan,
                from: None,
                ..request.clone()
            },
            &catalog,
            "MySQL",
            |c| format!("CAST({} AS CHAR)", quote(c)),
        )?;
        let key_indexes: Vec<usize> = request
            .key
            .iter()
            .map(|k| {
                catalog.iter().position(|c| &c.name == k).ok_or_else(|| {
                    ConnectorError::user(format!(
                        "table `{}` has no key column `{k}`",
                        request.table
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let snapshot = match &position {
            BinlogPosition::Snapshot { after, .. } => Some(
                self.read_keyset(ReadRequest {
                    cursor: CursorSpec::FullScan,
                    from: after.clone(),
                    ..request.clone()
                })
                .await?,
            ),
            BinlogPosition::Stream { .. } => None,
        };
        let source = self.clone();
        let schema = request
            .table
            .schema
            .clone()
            .unwrap_or_else(|| self.database.clone());
        let batch_size = request.batch_size.max(1);
        let stream = async_stream::try_stream! {
            let (mut file, mut pos) = match position {
                BinlogPosition::Snapshot { file, pos, .. } => {
                    if let Some(mut snapshot) = snapshot {
                        while let Some(batch) = snapshot.next().await {
                            let batch = batch?;
                            let next = BinlogPosition::Snapshot { file: file.clone(), pos, after: batch.position.clone() };
                            yield RowBatch { position: serde_json::to_string(&next).ok().map(Position), ..batch };
                        }
                    }
                    (file, pos)
                }
                BinlogPosition::Stream { file, pos, .. } => (file, pos),
            };
            let transactions = source.logged_since(&file, pos, &schema, &request.table.name, &key_indexes).await?;
            let mut latest: BTreeMap<Vec<Option<String>>, bool> = BTreeMap::new();
            for transaction in transactions {
                for (key, deleted) in transaction.keys {
                    latest.insert(key, deleted);
                }
                file = transaction.file;
                pos = transaction.end;
                if latest.len() >= batch_size {
                    let batch = source.current_rows(&request, &catalog, &key_indexes, &std::mem::take(&mut latest)).await?;
                    let gtid = source.gtid_at(&file, pos).await;
                    let next = BinlogPosition::Stream { file: file.clone(), pos, gtid };
                    yield RowBatch { position: serde_json::to_string(&next).ok().map(Position), ..batch };
                }
            }
            // The rest, or an empty batch that still moves the position past other tables' changes.
            let batch = source.current_rows(&request, &catalog, &key_indexes, &latest).await?;
            let gtid = source.gtid_at(&file, pos).await;
            let next = BinlogPosition::Stream { file, pos, gtid };
            yield RowBatch { position: serde_json::to_string(&next).ok().map(Position), ..batch };
        };
        Ok(stream.boxed())
    }

    /// The transactions logged after `file`/`pos` up to the end of the log now, each with the
    /// keys it changed in the table (transactions that changed nothing of it still move the
    /// position).
    async fn logged_since(
        &self,
        file: &str,
        pos: u64,
        schema: &str,
        table: &str,
        key_indexes: &[usize],
    ) -> Result<Vec<Transaction>, ConnectorError> {
        let conn = self.conn().await?;
        // A replica id of our own, unlikely to collide with a real replica's.
        let server_id = 0x5b00_0000 | (std::process::id() & 0x00ff_ffff);
        let mut stream = conn
            .get_binlog_stream(
                mysql_async::BinlogStreamRequest::new(server_id)
                    .with_filename(file.as_bytes())
                    .with_pos(pos)
                    .with_non_blocking(),
            )
            .await
            .map_err(|e| self.binlog_error(file, e))?;
        let mut out = Vec::new();
        let mut current_file = file.to_owned();
        let mut keys: Vec<(Vec<Option<String>>, bool)> = Vec::new();
        while let Some(event) = stream.next().await {
            let event = event.map_err(|e| self.binlog_error(&current_file, e))?;
            let data = event.read_data().map_err(|e| {
                ConnectorError::internal(format!("unreadable binary log event: {e}"))
            })?;
            match data {
                // The server opens the stream with an artificial rotate (position 0) naming
                // the file we asked for; it comes before the format description, so its name
                // still carries the checksum bytes. Only real rotates move to another file.
                Some(EventData::RotateEvent(rotate)) if event.header().log_pos() != 0 => {
                    current_file = rotate.name().into_owned();
                }
                Some(EventData::RowsEvent(rows)) => {
                    let Some(tme) = stream.get_tme(rows.table_id()) else {
                        continue;
                    };
                    if tme.database_name() != schema || tme.table_name() != table {
                        continue;
                    }
                    let deleting = matches!(
                        rows,
                        RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_)
                    );
                    for row in rows.rows(tme) {
                        let (before, after) = row.map_err(|e| {
                            ConnectorError::internal(format!("unreadable logged row: {e}"))
                        })?;
                        let key_of =
                            |row: &mysql_async::binlog::row::BinlogRow| -> Vec<Option<String>> {
                                key_indexes
                                    .iter()
                                    .map(|&i| match row.as_ref(i) {
                                        Some(BinlogValue::Value(value)) => text(value),
                                        _ => None,
                                    })
                                    .collect()
                            };
                        if let Some(before) = &before {
                            let key = key_of(before);
                            // An update that changed the key removes the old one.
                            let moved = after.as_ref().is_some_and(|a| key_of(a) != key);
                            if deleting || moved {
                                keys.push((key, true));
                            }
                        }
                        if let Some(after) = &after {
                            keys.push((key_of(after), false));
                        }
                    }
                }
                Some(EventData::XidEvent(_)) => {
                    out.push(Transaction {
                        file: current_file.clone(),
                        end: u64::from(event.header().log_pos()),
                        keys: std::mem::take(&mut keys),
                    });
                }
                Some(EventData::QueryEvent(query)) if query.query() == "COMMIT" => {
                    // Tables without transactions end their statements with a COMMIT query.
                    out.push(Transaction {
                        file: current_file.clone(),
                        end: u64::from(event.header().log_pos()),
                        keys: std::mem::take(&mut keys),
                    });
                }
                _ => {}
            }
        }
        let _ = stream.close().await;
        Ok(out)
    }

    /// The GTID position of `file`/`pos` on MariaDB (`BINLOG_GTID_POS`); `None` elsewhere.
    async fn gtid_at(&self, file: &str, pos: u64) -> Option<String> {
        let rows = self
            .rows(
                "reading the GTID position",
                "SELECT BINLOG_GTID_POS(?, ?)",
                vec![file.into(), pos.into()],
            )
            .await
            .ok()?;
        rows.first()
            .and_then(|r| text(&r[0]))
            .filter(|g| !g.is_empty())
    }

    fn binlog_error(&self, file: &str, error: mysql_async::Error) -> ConnectorError {
        let text = error.to_string();
        if text.contains("Could not find first log file") || text.contains("1236") {
            return ConnectorError::user(format!(
                "the binary log `{file}` is no longer on {} ({text})",
                self.address
            ))
            .with_hint("a run reads the whole table again and continues from the binary log's end")
            .requires_full_read();
        }
        classify(&self.address, "reading the binary log", error)
    }

    /// The rows of `keys` as they are now: an upsert for each row found, a delete for each key
    /// whose row is gone.
    async fn current_rows(
        &self,
        request: &ReadRequest,
        catalog: &[CatalogColumn],
        key_indexes: &[usize],
        keys: &BTreeMap<Vec<Option<String>>, bool>,
    ) -> Result<RowBatch, ConnectorError> {
        let columns: Vec<String> = request.columns.clone();
        let read: Vec<&CatalogColumn> = columns
            .iter()
            .filter_map(|name| catalog.iter().find(|c| &c.name == name))
            .collect();
        let key_names: Vec<&str> = key_indexes
            .iter()
            .map(|&i| catalog[i].name.as_str())
            .collect();
        let mut found: BTreeMap<Vec<Option<String>>, Row> = BTreeMap::new();
        let wanted: Vec<&Vec<Option<String>>> = keys.keys().collect();
        for chunk in wanted.chunks(500) {
            let mut terms = Vec::new();
            let mut params: Vec<mysql_async::Value> = Vec::new();
            for key in chunk {
                let parts: Vec<String> = key_names
                    .iter()
                    .zip(key.iter())
                    .map(|(name, value)| match value {
                        Some(value) => {
                            params.push(value.clone().into());
                            format!("{} = ?", quote(name))
                        }
                        None => format!("{} IS NULL", quote(name)),
                    })
                    .collect();
                terms.push(format!("({})", parts.join(" AND ")));
            }
            let select: Vec<String> = read
                .iter()
                .map(|c| quote(&c.name))
                .chain(
                    key_names
                        .iter()
                        .map(|k| format!("CAST({} AS CHAR)", quote(k))),
                )
                .collect();
            let sql = format!(
                "SELECT {} FROM {} WHERE {}",
                select.join(", "),
                self.table_sql(&request.table),
                terms.join(" OR ")
            );
            for values in self.rows("reading changed rows", &sql, params).await? {
                let mut converted = Vec::with_capacity(read.len());
                for (column, value) in read.iter().zip(&values) {
                    let data_type = column
                        .data_type
                        .as_ref()
                        .map_err(|t| ConnectorError::internal(t.clone()))?;
                    let value = convert(value, data_type).map_err(|m| {
                        ConnectorError::user(format!(
                            "column `{}` of `{}`: {m}",
                            column.name, request.table
                        ))
                    })?;
                    converted.push(value.into_value());
                }
                let key: Vec<Option<String>> = values[read.len()..].iter().map(text).collect();
                found.insert(key, Row::new(converted));
            }
        }
        let mut rows = Vec::with_capacity(keys.len());
        for key in keys.keys() {
            match found.remove(key) {
                Some(row) => rows.push(row),
                None => rows.push(delete_row(&columns, &read, &key_names, key)),
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
}

/// A delete for a key whose row is gone, carrying the key values converted as a read would
/// convert them, so the engine finds the same identity (text when a value does not convert).
fn delete_row(
    columns: &[String],
    read: &[&CatalogColumn],
    key_names: &[&str],
    key: &[Option<String>],
) -> Row {
    let mut values = vec![Value::Null; columns.len()];
    for (name, value) in key_names.iter().zip(key) {
        let (Some(index), Some(text)) = (columns.iter().position(|c| c == name), value) else {
            continue;
        };
        let typed = read
            .iter()
            .find(|c| c.name == *name)
            .and_then(|c| c.data_type.as_ref().ok())
            .and_then(|t| convert(&mysql_async::Value::Bytes(text.clone().into_bytes()), t).ok());
        values[index] = typed.map_or_else(|| Value::Text(text.clone()), |c| c.into_value());
    }
    let mut row = Row::new(values);
    row.kind = RowKind::Delete;
    row
}
