//! The `LSN` cursor on SQL Server: change tracking when the table has it, else rowversion.
//!
//! **Change tracking.** The first read notes `CHANGE_TRACKING_CURRENT_VERSION()`, snapshots the
//! table by key (resumable), then reads the changes since the noted version, so nothing
//! committed during the snapshot is lost. Later reads check the version against
//! `CHANGE_TRACKING_MIN_VALID_VERSION` (before and after reading `CHANGETABLE`): if cleanup
//! purged changes since the last run, deletes in the gap cannot be known, and the read fails
//! with [`ConnectorError::requires_full_read`]: the engine then reads the whole table again in
//! the same run and deletes what vanished (a purge noticed only after `CHANGETABLE` was read
//! fails that run; the next one starts over the same way). Changed keys
//! are re-read from the table in batches: a key found is an upsert, a key gone is a delete.
//! Batches end on version boundaries, so each position is a version every earlier change is in.
//!
//! **rowversion.** Rows with `rv > last AND rv < MIN_ACTIVE_ROWVERSION()`, in rowversion order
//! (`MIN_ACTIVE_ROWVERSION`, not `@@DBTS`, so a row written by a transaction still open is read
//! when it commits rather than skipped). It sees inserts and updates, not deletes: schedule a
//! periodic `run --full` to catch those, or enable change tracking.

use std::sync::Arc;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use syncbridge_api::{
    BatchStream, ConnectorError, CursorSpec, KeysetPlan, KeysetPosition, Position, ReadRequest,
    Row, RowBatch, Value,
};

use crate::catalog::{self, CatalogColumn};
use crate::connect::{self, Param, rows};
use crate::convert::{self, ReadAs};
use crate::read::{keyset_stream, param_from_value, select_list};
use crate::{SqlServerConfig, quote, table_sql};

/// Where an `LSN` read stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
enum LsnPosition {
    ChangeTracking {
        /// Every change up to this version is read (after the snapshot, if one is under way).
        version: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<KeysetPosition>,
    },
    Rowversion {
        /// The last rowversion read, as hex.
        after: String,
    },
}

impl LsnPosition {
    fn to_position(&self) -> Option<Position> {
        serde_json::to_string(self).ok().map(Position)
    }
}

fn int_of(rows: &[tiberius::Row]) -> Option<i64> {
    rows.first().and_then(|r| convert::int(r, 0))
}

pub(crate) async fn read(
    config: SqlServerConfig,
    address: String,
    request: ReadRequest,
) -> Result<BatchStream, ConnectorError> {
    let mut client = connect::open(&config).await?;
    let object = catalog::object_id(&mut client, &address, &request.table).await?;
    let catalog = catalog::columns_of(&mut client, &address, object).await?;
    let from: Option<LsnPosition> = match &request.from {
        Some(position) => Some(serde_json::from_str(&position.0).map_err(|e| {
            ConnectorError::internal(format!(
                "unreadable SQL Server LSN position `{}`: {e}",
                position.0
            ))
            .with_hint("run with --full to start over")
        })?),
        None => None,
    };
    let min_valid = int_of(
        &rows(
            &mut client,
            &address,
            "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(@P1) AS [v]",
            vec![Param::Int(object)],
        )
        .await?,
    );
    let rowversion = catalog
        .iter()
        .find(|c| c.type_name == "timestamp" || c.type_name == "rowversion")
        .cloned();
    match (min_valid, rowversion, from) {
        (Some(min_valid), _, from @ (None | Some(LsnPosition::ChangeTracking { .. }))) => {
            change_tracking(config, client, address, request, catalog, object, min_valid, from)
        }
        (None, Some(column), from @ (None | Some(LsnPosition::Rowversion { .. }))) => {
            rowversion_stream(client, address, request, catalog, column, from)
        }
        (Some(_), _, Some(LsnPosition::Rowversion { .. })) | (None, Some(_), Some(LsnPosition::ChangeTracking { .. })) => {
            Err(ConnectorError::user(format!(
                "the change capture of `{}` changed since the last run (change tracking turned on or off)",
                request.table
            ))
            .with_hint("run with --full to start over with the new method"))
        }
        (None, None, _) => Err(ConnectorError::user(format!(
            "cursor LSN on SQL Server needs change tracking on `{}`, or a rowversion column",
            request.table
        ))
        .with_hint(format!(
            "ALTER DATABASE [{db}] SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 7 DAYS, AUTO_CLEANUP = ON); ALTER TABLE {t} ENABLE CHANGE_TRACKING; or use cursor UPDATED_AT or FULL_SCAN",
            db = config.database,
            t = table_sql(&request.table)
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
fn change_tracking(
    config: SqlServerConfig,
    mut client: connect::Connection,
    address: String,
    request: ReadRequest,
    catalog: Vec<CatalogColumn>,
    object: i64,
    min_valid: i64,
    from: Option<LsnPosition>,
) -> Result<BatchStream, ConnectorError> {
    let (version, snapshot) = match from {
        Some(LsnPosition::ChangeTracking { version, snapshot }) => (Some(version), snapshot),
        _ => (None, None),
    };
    if let (Some(version), None) = (version, &snapshot)
        && version < min_valid
    {
        return Err(purged(&request, version, min_valid));
    }
    let snapshot_request = ReadRequest {
        cursor: CursorSpec::FullScan,
        from: snapshot.as_ref().and_then(KeysetPosition::to_position),
        ..request.clone()
    };
    let plan = KeysetPlan::new(&snapshot_request, &catalog, "SQL Server", |c| {
        format!("CAST({} AS nvarchar(max))", quote(c))
    })?;
    let snapshotting = version.is_none() || snapshot.is_some();
    let stream = async_stream::try_stream! {
        let version = match version {
            Some(version) => version,
            None => int_of(&rows(&mut client, &address, "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS [v]", Vec::new()).await?)
                .ok_or_else(|| ConnectorError::user("change tracking is off for the database"))?,
        };
        if snapshotting {
            // The snapshot runs on its own connection; this one reads the changes afterwards.
            let reader = connect::open(&config).await?;
            let mut batches = Box::pin(keyset_stream(reader, address.clone(), &snapshot_request, plan));
            while let Some(item) = batches.next().await {
                let (mut batch, position) = item?;
                batch.position = LsnPosition::ChangeTracking { version, snapshot: Some(position) }.to_position();
                yield batch;
            }
            // The snapshot is complete: from here on, only changes since `version`.
            yield RowBatch {
                columns: Arc::from(Vec::<String>::new()),
                rows: Vec::new(),
                position: LsnPosition::ChangeTracking { version, snapshot: None }.to_position(),
                notes: Vec::new(),
                fingerprints: Vec::new(), unconverted: None, };
        }
        let mut changes = changed_keys(&mut client, &address, &request, &catalog, object, version).await?;
        let batch_size = request.batch_size.max(1);
        let columns: Arc<[String]> = if request.columns.is_empty() {
            catalog.iter().map(|c| c.name.clone()).collect::<Vec<_>>().into()
        } else {
            request.columns.clone().into()
        };
        while !changes.keys.is_empty() {
            // A batch of keys, extended to the end of its version.
            let mut take = batch_size.min(changes.keys.len());
            while take < changes.keys.len() && changes.keys[take].0 == changes.keys[take - 1].0 {
                take += 1;
            }
            let part: Vec<(i64, Vec<Value>)> = changes.keys.drain(..take).collect();
            let last_version = part.last().map(|(v, _)| *v).unwrap_or(version);
            let rows_out = reread(&mut client, &address, &request, &catalog, &columns, &part).await?;
            yield RowBatch {
                columns: columns.clone(),
                rows: rows_out,
                position: LsnPosition::ChangeTracking { version: last_version, snapshot: None }.to_position(),
                notes: Vec::new(),
                fingerprints: Vec::new(), unconverted: None, };
        }
        if changes.current > version {
            yield RowBatch {
                columns: columns.clone(),
                rows: Vec::new(),
                position: LsnPosition::ChangeTracking { version: changes.current, snapshot: None }.to_position(),
                notes: Vec::new(),
                fingerprints: Vec::new(), unconverted: None, };
        }
    };
    Ok(stream.boxed())
}

fn purged(request: &ReadRequest, version: i64, min_valid: i64) -> ConnectorError {
    ConnectorError::user(format!(
        "the change tracking history of `{}` was cleaned up past this sync's position (version {version}, oldest kept {min_valid}): rows deleted in between cannot be known",
        request.table
    ))
    .with_hint("the table is read again in full (deletes are found by comparison); consider a longer CHANGE_RETENTION")
    .requires_full_read()
}

/// The keys changed since `version`, in version order, and the version they run up to.
struct Changes {
    keys: Vec<(i64, Vec<Value>)>,
    current: i64,
}

async fn changed_keys(
    client: &mut connect::Connection,
    address: &str,
    request: &ReadRequest,
    catalog: &[CatalogColumn],
    object: i64,
    version: i64,
) -> Result<Changes, ConnectorError> {
    let current = int_of(
        &rows(
            client,
            address,
            "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS [v]",
            Vec::new(),
        )
        .await?,
    )
    .unwrap_or(version);
    let key_list = request
        .key
        .iter()
        .map(|k| format!("[ct].{}", quote(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT [ct].[SYS_CHANGE_VERSION], [ct].[SYS_CHANGE_OPERATION], {key_list} FROM CHANGETABLE(CHANGES {}, @P1) AS [ct] ORDER BY [ct].[SYS_CHANGE_VERSION]",
        table_sql(&request.table)
    );
    let raw = rows(client, address, &sql, vec![Param::Int(version)]).await?;
    // Cleanup may have run while we read: the changes are only complete if it did not pass us.
    let min_valid = int_of(
        &rows(
            client,
            address,
            "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(@P1) AS [v]",
            vec![Param::Int(object)],
        )
        .await?,
    )
    .unwrap_or(0);
    if version < min_valid {
        return Err(purged(request, version, min_valid));
    }
    let read_as: Vec<ReadAs> = std::iter::repeat_n(ReadAs::Plain, 2)
        .chain(request.key.iter().map(|k| {
            catalog
                .iter()
                .find(|c| &c.name == k)
                .map_or(ReadAs::Plain, |c| c.read_as)
        }))
        .collect();
    let mut keys = Vec::with_capacity(raw.len());
    for row in raw {
        let values = convert::row(row, &read_as).map_err(|m| {
            ConnectorError::user(format!("a change-tracking row of `{}`: {m}", request.table))
        })?;
        let Some(Value::Int(changed)) = values.first() else {
            continue;
        };
        if *changed > current {
            continue; // read next time, from `current`
        }
        keys.push((*changed, values[2..].to_vec()));
    }
    Ok(Changes { keys, current })
}

/// The current rows of `keys`: found ones as upserts, missing ones as deletes.
async fn reread(
    client: &mut connect::Connection,
    address: &str,
    request: &ReadRequest,
    catalog: &[CatalogColumn],
    columns: &[String],
    keys: &[(i64, Vec<Value>)],
) -> Result<Vec<Row>, ConnectorError> {
    let find = |name: &String| {
        catalog
            .iter()
            .find(|c| &c.name == name)
            .cloned()
            .ok_or_else(|| {
                ConnectorError::user(format!("table `{}` has no column `{name}`", request.table))
            })
    };
    let read: Vec<CatalogColumn> = columns.iter().map(find).collect::<Result<_, _>>()?;
    let key_columns: Vec<CatalogColumn> = request.key.iter().map(find).collect::<Result<_, _>>()?;
    let read_as: Vec<ReadAs> = read.iter().chain(&key_columns).map(|c| c.read_as).collect();
    let mut params = Vec::new();
    let mut terms = Vec::new();
    for (_, key) in keys {
        let parts: Vec<String> = key_columns
            .iter()
            .zip(key)
            .map(|(c, v)| {
                params.push(param_from_value(v));
                format!("{} = @P{}", quote(&c.name), params.len())
            })
            .collect();
        terms.push(format!("({})", parts.join(" AND ")));
    }
    let sql = format!(
        "SELECT {} FROM {} WHERE {}",
        select_list(&read, &key_columns),
        table_sql(&request.table),
        terms.join(" OR ")
    );
    let raw = rows(client, address, &sql, params).await?;
    let mut found: Vec<(Vec<Value>, Vec<Value>)> = Vec::with_capacity(raw.len());
    for row in raw {
        let mut values = convert::row(row, &read_as)
            .map_err(|m| ConnectorError::user(format!("a value of `{}`: {m}", request.table)))?;
        let key = values.split_off(read.len());
        found.push((key, values));
    }
    let mut out = Vec::with_capacity(keys.len());
    for (_, key) in keys {
        match found.iter().position(|(k, _)| k == key) {
            Some(i) => out.push(Row::new(found.swap_remove(i).1)),
            None => {
                let values = columns
                    .iter()
                    .map(|c| match request.key.iter().position(|k| k == c) {
                        Some(i) => key[i].clone(),
                        None => Value::Null,
                    })
                    .collect();
                out.push(Row::deleted(values));
            }
        }
    }
    Ok(out)
}

fn rowversion_stream(
    mut client: connect::Connection,
    address: String,
    request: ReadRequest,
    catalog: Vec<CatalogColumn>,
    column: CatalogColumn,
    from: Option<LsnPosition>,
) -> Result<BatchStream, ConnectorError> {
    let names: Vec<String> = if request.columns.is_empty() {
        catalog.iter().map(|c| c.name.clone()).collect()
    } else {
        request.columns.clone()
    };
    let read: Vec<CatalogColumn> = names
        .iter()
        .map(|n| {
            catalog
                .iter()
                .find(|c| &c.name == n)
                .cloned()
                .ok_or_else(|| {
                    ConnectorError::user(format!("table `{}` has no column `{n}`", request.table))
                })
        })
        .collect::<Result<_, _>>()?;
    let read_as: Vec<ReadAs> = read
        .iter()
        .map(|c| c.read_as)
        .chain([ReadAs::Plain])
        .collect();
    let mut after: Vec<u8> = match from {
        Some(LsnPosition::Rowversion { after }) => hex::decode(&after).map_err(|e| {
            ConnectorError::internal(format!("unreadable rowversion `{after}`: {e}"))
        })?,
        _ => vec![0; 8],
    };
    let batch_size = request.batch_size.max(1);
    let rv = quote(&column.name);
    let sql = format!(
        "SELECT TOP ({batch_size}) {}, {rv} AS [sb_rv] FROM {} WHERE {rv} > @P1 AND {rv} < MIN_ACTIVE_ROWVERSION() ORDER BY {rv}",
        select_list(&read, &[]),
        table_sql(&request.table)
    );
    let columns: Arc<[String]> = names.into();
    let table = request.table.to_string();
    let stream = async_stream::try_stream! {
        loop {
            let raw = rows(&mut client, &address, &sql, vec![Param::Bytes(after.clone())]).await?;
            let count = raw.len();
            if count == 0 {
                break;
            }
            let mut out = Vec::with_capacity(count);
            for row in raw {
                let mut values = convert::row(row, &read_as)
                    .map_err(|m| ConnectorError::user(format!("a value of `{table}`: {m}")))?;
                if let Some(Value::Bytes(rv)) = values.pop() {
                    after = rv;
                }
                out.push(Row::new(values));
            }
            let hex = hex::encode(&after);
            yield RowBatch {
                columns: columns.clone(),
                rows: out,
                position: LsnPosition::Rowversion { after: hex }.to_position(),
                notes: Vec::new(),
                fingerprints: Vec::new(), unconverted: None, };
            if count < batch_size {
                break;
            }
        }
    };
    Ok(stream.boxed())
}
