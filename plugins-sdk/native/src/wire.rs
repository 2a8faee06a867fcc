//! What crosses the ABI, as JSON: the calls, their answers and errors.
//!
//! Rows and values use `syncbridge-api`'s own serde forms (a value is externally tagged:
//! `{"int": 5}`, `{"decimal": "12.50"}`, `"null"`), so they round-trip without losing their type.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncbridge_api::{
    CollectionRef, CollectionSpec, ConnectorError, ErrorDomain, ItemId, Position, ReadRequest,
    RetryHint, Row, RowBatch, RowChange, TableRef, WriteBackOutcome, WriteOp, WriteOutcome,
};

/// What a plugin says about itself when it loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    /// The version of this SDK the plugin was built with.
    pub sdk_version: String,
    /// The source kinds it provides (what `databases[].type` names).
    pub sources: Vec<String>,
    /// The target kinds it provides (what a target connection's `type` names).
    pub targets: Vec<String>,
}

/// A call on a source instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum SourceCall {
    /// → `null`
    Healthcheck,
    /// → `[TableDescriptor]`
    Introspect { tables: Option<Vec<TableRef>> },
    /// Starts a read → a stream id (`u64`).
    Read { request: ReadRequest },
    /// → the stream's next [`WireBatch`], or `null` at its end (the stream is then closed).
    Next { stream: u64 },
    /// Drops a stream before its end → `null`.
    CloseStream { stream: u64 },
    /// → `null`
    Acknowledge {
        request: ReadRequest,
        position: Position,
    },
    /// → `null`
    Release { request: ReadRequest },
    /// → `[WireWriteBackOutcome]`
    WriteBack { changes: Vec<RowChange> },
}

/// A call on a target instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum TargetCall {
    /// → `null`
    Healthcheck,
    /// → `TargetLocation` or `null`
    Location,
    /// → `[RemoteCollection]`
    Discover,
    /// → `ProvisionReport`
    Provision { spec: CollectionSpec },
    /// → `[WireWriteOutcome]`, one per op
    Write {
        collection: CollectionRef,
        ops: Vec<WriteOp>,
    },
    /// → `ItemId` or `null`
    FindByKey {
        collection: CollectionRef,
        key_field: String,
        key: String,
    },
    /// → `RemoteChangePage`
    ReadChanges {
        collection: CollectionRef,
        from: Option<Position>,
    },
    /// → `[[ItemId, String]]`
    ListKeys {
        collection: CollectionRef,
        key_field: String,
    },
}

/// A [`RowBatch`] on the wire. The wire carries values: rows a source handed over unconverted
/// are converted on the way ([`RowBatch::convert_rows`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireBatch {
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
    pub position: Option<Position>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl TryFrom<RowBatch> for WireBatch {
    type Error = ConnectorError;

    fn try_from(mut batch: RowBatch) -> Result<Self, ConnectorError> {
        batch.convert_rows(|_| false)?;
        Ok(Self {
            columns: batch.columns.to_vec(),
            rows: batch.rows,
            position: batch.position,
            notes: batch.notes,
        })
    }
}

impl From<WireBatch> for RowBatch {
    fn from(batch: WireBatch) -> Self {
        Self {
            columns: batch.columns.into(),
            rows: batch.rows,
            position: batch.position,
            notes: batch.notes,
            fingerprints: Vec::new(),
            unconverted: None,
        }
    }
}

/// A [`ConnectorError`] on the wire: whose fault, whether to retry, what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// `user`, `external` or `internal`.
    pub domain: String,
    pub retriable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl From<&ConnectorError> for WireError {
    fn from(error: &ConnectorError) -> Self {
        let domain = match error.domain() {
            ErrorDomain::User => "user",
            ErrorDomain::External => "external",
            ErrorDomain::Internal => "internal",
        };
        let (retriable, retry_after_ms) = match error.retry() {
            RetryHint::Retry { after } => (true, after.map(|d| d.as_millis() as u64)),
            RetryHint::NoRetry => (false, None),
        };
        // The whole cause chain, since the source error itself cannot cross.
        let mut message = error.message().to_owned();
        let mut cause = std::error::Error::source(error);
        while let Some(inner) = cause {
            message.push_str(": ");
            message.push_str(&inner.to_string());
            cause = inner.source();
        }
        Self {
            domain: domain.to_owned(),
            retriable,
            retry_after_ms,
            message,
            hint: error.hint().map(str::to_owned),
        }
    }
}

impl From<WireError> for ConnectorError {
    fn from(error: WireError) -> Self {
        let base = match error.domain.as_str() {
            "user" => ConnectorError::user(error.message),
            "external" => ConnectorError::external(error.message),
            _ => ConnectorError::internal(error.message),
        };
        let base = if error.retriable {
            base.retry_after(error.retry_after_ms.map(Duration::from_millis))
        } else {
            base.permanent()
        };
        match error.hint {
            Some(hint) => base.with_hint(hint),
            None => base,
        }
    }
}

/// A [`WriteOutcome`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum WireWriteOutcome {
    Created { item_id: ItemId },
    Updated,
    Deleted,
    NotFound,
    Rejected { code: String, message: String },
    Failed { error: WireError },
}

impl From<WriteOutcome> for WireWriteOutcome {
    fn from(outcome: WriteOutcome) -> Self {
        match outcome {
            WriteOutcome::Created { item_id } => Self::Created { item_id },
            WriteOutcome::Updated => Self::Updated,
            WriteOutcome::Deleted => Self::Deleted,
            WriteOutcome::NotFound => Self::NotFound,
            // The wire has one refusal; the host records a plugin's as a write's.
            WriteOutcome::Rejected { code, message }
            | WriteOutcome::Unencodable { code, message } => Self::Rejected { code, message },
            WriteOutcome::Failed(error) => Self::Failed {
                error: WireError::from(&error),
            },
            // A variant added to the API after this SDK: report it as a failure to retry.
            #[allow(unreachable_patterns)]
            other => Self::Failed {
                error: WireError::from(&ConnectorError::internal(format!(
                    "the plugin returned an outcome this SDK cannot send: {other:?}"
                ))),
            },
        }
    }
}

impl From<WireWriteOutcome> for WriteOutcome {
    fn from(outcome: WireWriteOutcome) -> Self {
        match outcome {
            WireWriteOutcome::Created { item_id } => Self::Created { item_id },
            WireWriteOutcome::Updated => Self::Updated,
            WireWriteOutcome::Deleted => Self::Deleted,
            WireWriteOutcome::NotFound => Self::NotFound,
            WireWriteOutcome::Rejected { code, message } => Self::Rejected { code, message },
            WireWriteOutcome::Failed { error } => Self::Failed(error.into()),
        }
    }
}

/// A [`WriteBackOutcome`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum WireWriteBackOutcome {
    Applied,
    NotFound,
    Rejected { error: WireError },
}

impl From<WriteBackOutcome> for WireWriteBackOutcome {
    fn from(outcome: WriteBackOutcome) -> Self {
        match outcome {
            WriteBackOutcome::Applied => Self::Applied,
            WriteBackOutcome::NotFound => Self::NotFound,
            WriteBackOutcome::Rejected(error) => Self::Rejected {
                error: WireError::from(&error),
            },
            #[allow(unreachable_patterns)]
            other => Self::Rejected {
                error: WireError::from(&ConnectorError::internal(format!(
                    "the plugin returned an outcome this SDK cannot send: {other:?}"
                ))),
            },
        }
    }
}

impl From<WireWriteBackOutcome> for WriteBackOutcome {
    fn from(outcome: WireWriteBackOutcome) -> Self {
        match outcome {
            WireWriteBackOutcome::Applied => Self::Applied,
            WireWriteBackOutcome::NotFound => Self::NotFound,
            WireWriteBackOutcome::Rejected { error } => Self::Rejected(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_domain_retry_and_hint_across_the_wire() {
        let error = ConnectorError::external("throttled")
            .retry_after(Some(Duration::from_millis(1500)))
            .with_hint("wait");
        let wire = WireError::from(&error);
        let json = serde_json::to_string(&wire).expect("serializes");
        let back: ConnectorError = serde_json::from_str::<WireError>(&json)
            .expect("parses")
            .into();
        assert_eq!(back.domain(), ErrorDomain::External);
        assert_eq!(
            back.retry(),
            RetryHint::Retry {
                after: Some(Duration::from_millis(1500))
            }
        );
        assert_eq!(back.message(), "throttled");
        assert_eq!(back.hint(), Some("wait"));

        let user: ConnectorError = WireError::from(&ConnectorError::user("bad path")).into();
        assert_eq!(user.domain(), ErrorDomain::User);
        assert!(!user.is_retriable());
    }

    #[test]
    fn calls_are_tagged_json() {
        let call = TargetCall::FindByKey {
            collection: CollectionRef {
                id: "1".into(),
                name: "Projects".into(),
            },
            key_field: "SyncKey".into(),
            key: "abc".into(),
        };
        let json = serde_json::to_value(&call).expect("serializes");
        assert_eq!(json["call"], "find_by_key");
        assert_eq!(json["key"], "abc");
    }
}
