//! The [`Source`] trait: where rows come from.
//!
//! # Delivery guarantee
//! A source emits batches in an order it can resume from: every [`RowBatch`] carries the
//! [`Position`] reached after it, and [`Source::read`] started from that position yields everything
//! after it and possibly some rows again, never fewer. Sources therefore give *at-least-once*
//! delivery; the engine turns that into exactly-once items through the ledger and content hashes.
//! The engine commits a position only after the target acknowledged every row below it, then calls
//! [`Source::acknowledge`] so change-log sources can release what they kept for us.

use std::future::Future;
use std::time::Duration;

use futures::stream::BoxStream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{BoxFuture, ConnectorError, RowBatch, TableDescriptor, TableRef, Value};

/// A stream of batches, ending when the source has nothing more to give for this read.
pub type BatchStream = BoxStream<'static, Result<RowBatch, ConnectorError>>;

/// An opaque resume point (a watermark, a log sequence number, a binlog file and offset …).
///
/// Only the source that produced a position interprets it; the meta-store keeps it as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub String);

/// How a read decides which rows to return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "strategy")]
pub enum CursorSpec {
    /// Every row, in key order. Deletes are found by the engine (anti-join with its ledger).
    FullScan,
    /// Rows whose `column` is at or after the watermark minus `look_back`, ordered by
    /// (`column`, key). The look-back re-reads rows committed late by long transactions; re-read
    /// rows are no-ops thanks to content hashes.
    UpdatedAt {
        column: String,
        #[serde(with = "duration_secs")]
        look_back: Duration,
    },
    /// The database's change log (logical decoding, binlog, change tracking). With no position
    /// yet, a source first snapshots the table, then streams changes from a point taken before the
    /// snapshot began, so nothing committed in between is lost.
    Lsn {
        /// Source-specific options (slot name, plugin, server id …).
        #[serde(default)]
        options: serde_json::Value,
    },
}

mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

/// What to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadRequest {
    pub table: TableRef,
    /// The columns to return, in this order; empty means all, in table order.
    pub columns: Vec<String>,
    /// The columns that order and resume the read (the key, in key order). Always non-empty for
    /// full scans: keyset pagination needs a total order.
    pub key: Vec<String>,
    pub cursor: CursorSpec,
    /// Resume after this position; `None` starts from the beginning.
    pub from: Option<Position>,
    /// Rows per batch; memory use is bounded by this, not by the table size.
    pub batch_size: usize,
    /// The reader converts rows itself: a source may hand them over as read
    /// ([`RowBatch::unconverted`](crate::RowBatch)), with their fingerprints. Sources that
    /// cannot ignore it. Not carried to native plugins, whose rows always come converted.
    #[serde(skip)]
    pub defer_conversion: bool,
}

/// A change to apply to a source table (two-way sync).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    pub table: TableRef,
    /// The row's key columns and values.
    pub key: Vec<(String, Value)>,
    /// The fields to set; empty with `delete` set removes the row.
    pub fields: Vec<(String, Value)>,
    pub delete: bool,
}

/// The result of one [`RowChange`].
#[derive(Debug)]
#[non_exhaustive]
pub enum WriteBackOutcome {
    Applied,
    /// No row with that key exists any more.
    NotFound,
    Rejected(ConnectorError),
}

/// A source of rows, as a connector author writes it.
///
/// Implement this with plain `async fn`s; the engine uses it through [`ErasedSource`].
pub trait Source: Send + Sync + Sized + 'static {
    /// The connector's configuration, deserialized from the user's config.
    type Config: DeserializeOwned + Send + 'static;

    /// The name configs use for this connector (`postgres`, `mysql` …).
    const KIND: &'static str;

    /// Connects (or prepares to): errors here are reported before any run starts.
    fn connect(config: Self::Config) -> impl Future<Output = Result<Self, ConnectorError>> + Send;

    /// A cheap round trip proving the source is reachable and usable.
    fn healthcheck(&self) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// Describes the given tables, or every table and view when `tables` is `None`.
    fn introspect(
        &self,
        tables: Option<&[TableRef]>,
    ) -> impl Future<Output = Result<Vec<TableDescriptor>, ConnectorError>> + Send;

    /// Starts a read; the stream ends when everything up to now has been returned.
    fn read(
        &self,
        request: ReadRequest,
    ) -> impl Future<Output = Result<BatchStream, ConnectorError>> + Send;

    /// Called once the engine has durably committed `position`: a change-log source may now
    /// release everything up to it (advance a replication slot, purge a buffer).
    fn acknowledge(
        &self,
        _request: &ReadRequest,
        _position: &Position,
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send {
        async { Ok(()) }
    }

    /// Releases what the source keeps on the server for reads like `request` (a PostgreSQL
    /// replication slot), when a sync is removed or must start over. Nothing by default.
    fn release(
        &self,
        _request: &ReadRequest,
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send {
        async { Ok(()) }
    }

    /// Applies changes coming back from the target (two-way sync). Sources that cannot write
    /// keep the default, which refuses.
    fn write_back(
        &self,
        _changes: Vec<RowChange>,
    ) -> impl Future<Output = Result<Vec<WriteBackOutcome>, ConnectorError>> + Send {
        async {
            Err(
                ConnectorError::user(format!("the {} source cannot write back", Self::KIND))
                    .with_hint("use sync_mode ONE_WAY_PUSH or a source that supports two-way sync"),
            )
        }
    }
}

/// The object-safe form of [`Source`] that the engine and the plugin hosts use.
pub trait ErasedSource: Send + Sync {
    fn kind(&self) -> &'static str;
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), ConnectorError>>;
    fn introspect<'a>(
        &'a self,
        tables: Option<&'a [TableRef]>,
    ) -> BoxFuture<'a, Result<Vec<TableDescriptor>, ConnectorError>>;
    fn read(&self, request: ReadRequest) -> BoxFuture<'_, Result<BatchStream, ConnectorError>>;
    fn acknowledge<'a>(
        &'a self,
        request: &'a ReadRequest,
        position: &'a Position,
    ) -> BoxFuture<'a, Result<(), ConnectorError>>;
    fn release<'a>(&'a self, request: &'a ReadRequest)
    -> BoxFuture<'a, Result<(), ConnectorError>>;
    fn write_back(
        &self,
        changes: Vec<RowChange>,
    ) -> BoxFuture<'_, Result<Vec<WriteBackOutcome>, ConnectorError>>;
}

impl<S: Source> ErasedSource for S {
    fn kind(&self) -> &'static str {
        S::KIND
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(Source::healthcheck(self))
    }

    fn introspect<'a>(
        &'a self,
        tables: Option<&'a [TableRef]>,
    ) -> BoxFuture<'a, Result<Vec<TableDescriptor>, ConnectorError>> {
        Box::pin(Source::introspect(self, tables))
    }

    fn read(&self, request: ReadRequest) -> BoxFuture<'_, Result<BatchStream, ConnectorError>> {
        Box::pin(Source::read(self, request))
    }

    fn acknowledge<'a>(
        &'a self,
        request: &'a ReadRequest,
        position: &'a Position,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(Source::acknowledge(self, request, position))
    }

    fn release<'a>(
        &'a self,
        request: &'a ReadRequest,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(Source::release(self, request))
    }

    fn write_back(
        &self,
        changes: Vec<RowChange>,
    ) -> BoxFuture<'_, Result<Vec<WriteBackOutcome>, ConnectorError>> {
        Box::pin(Source::write_back(self, changes))
    }
}
