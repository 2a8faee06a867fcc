//! Rows and batches as they flow from a source through the engine to a target.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Position, Value};

/// What a row in a batch stands for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// The row as it now is in the source (inserted or updated).
    #[default]
    Upsert,
    /// The row was deleted in the source; only its key columns carry values, the rest are null.
    /// Only change-log cursors (`LSN`) produce these; full scans find deletes by anti-join.
    Delete,
}

/// One row: values in the order of its batch's `columns`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    #[serde(default)]
    pub kind: RowKind,
    pub values: Vec<Value>,
}

impl Row {
    /// An upserted row.
    pub fn new(values: Vec<Value>) -> Self {
        Self {
            kind: RowKind::Upsert,
            values,
        }
    }

    /// A deleted row carrying its key values (other columns null).
    pub fn deleted(values: Vec<Value>) -> Self {
        Self {
            kind: RowKind::Delete,
            values,
        }
    }
}

/// A batch of rows sharing one list of column names, plus the source position reached after it.
///
/// The engine commits `position` only once every row of this batch and of all earlier batches has
/// been written to the target or dead-lettered; a source must therefore be able to resume from any
/// position it emitted.
#[derive(Debug, Clone, PartialEq)]
pub struct RowBatch {
    pub columns: Arc<[String]>,
    pub rows: Vec<Row>,
    pub position: Option<Position>,
    /// What the source noticed while reading this batch and wants on record (the engine stores
    /// each as a WARN event of the run), e.g. values it had to read as NULL.
    pub notes: Vec<String>,
    /// Empty, or one per row: a hash of the row as the source read it (its columns, their
    /// types and their values), so that two rows with the same fingerprint have the same
    /// values. A full read recognises a row unchanged since the previous full read by it,
    /// without mapping or hashing the row. A source that cannot compute one cheaply leaves
    /// this empty; a different fingerprint for equal values only costs that shortcut.
    pub fingerprints: Vec<u128>,
}

impl RowBatch {
    /// The index of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}
