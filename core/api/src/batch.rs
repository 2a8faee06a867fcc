//! Rows and batches as they flow from a source through the engine to a target.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{ConnectorError, Position, Value};

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
    /// Rows handed over as read, not yet converted into values (only when the reader asked for
    /// that, with [`ReadRequest::defer_conversion`](crate::ReadRequest)). When set, `rows` is
    /// empty and this holds one entry per row (and per fingerprint); the reader converts them
    /// with [`RowBatch::convert_rows`].
    pub unconverted: Option<UnconvertedRows>,
}

/// Converts one row as its source read it (e.g. a `COPY` line) into values.
pub type RowConverter = Arc<dyn Fn(&[u8]) -> Result<Row, ConnectorError> + Send + Sync>;

/// Rows a source read but left for the reader to convert: the bytes of each row as read, and
/// the source's function that converts one.
///
/// Why: most rows of a full read are unchanged, and the engine recognises those by their
/// fingerprints alone. Converting them into values would be the largest part of reading them.
#[derive(Clone)]
pub struct UnconvertedRows {
    text: Vec<u8>,
    ends: Vec<usize>,
    convert: RowConverter,
}

impl UnconvertedRows {
    pub fn new(convert: RowConverter) -> Self {
        Self {
            text: Vec::new(),
            ends: Vec::new(),
            convert,
        }
    }

    /// Adds a row (its bytes as read).
    pub fn push(&mut self, row: &[u8]) {
        self.text.extend_from_slice(row);
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The bytes of a row as read.
    pub fn row_text(&self, index: usize) -> &[u8] {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.text[start..self.ends[index]]
    }

    /// Converts a row.
    pub fn convert(&self, index: usize) -> Result<Row, ConnectorError> {
        (self.convert)(self.row_text(index))
    }
}

impl std::fmt::Debug for UnconvertedRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnconvertedRows")
            .field("rows", &self.ends.len())
            .field("bytes", &self.text.len())
            .finish()
    }
}

impl PartialEq for UnconvertedRows {
    /// The same rows as read (the converter is not compared).
    fn eq(&self, other: &Self) -> bool {
        self.ends == other.ends && self.text == other.text
    }
}

impl RowBatch {
    /// The index of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The rows of the batch, converted or not.
    pub fn len(&self) -> usize {
        match &self.unconverted {
            Some(unconverted) => unconverted.len(),
            None => self.rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Converts the rows handed over unconverted (see [`RowBatch::unconverted`]), all but
    /// those `skip` names: a skipped row is left without values (`Row::new(vec![])`), so skip
    /// only rows that will not be looked at. Nothing to do for a batch already converted.
    pub fn convert_rows(&mut self, skip: impl Fn(usize) -> bool) -> Result<(), ConnectorError> {
        let Some(unconverted) = self.unconverted.take() else {
            return Ok(());
        };
        let mut rows = Vec::with_capacity(unconverted.len());
        for index in 0..unconverted.len() {
            if skip(index) {
                rows.push(Row::new(Vec::new()));
            } else {
                match unconverted.convert(index) {
                    Ok(row) => rows.push(row),
                    Err(error) => {
                        self.unconverted = Some(unconverted);
                        return Err(error);
                    }
                }
            }
        }
        self.rows = rows;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of rows as read, `"<id>,<name>"` each; a name `!` does not convert.
    fn batch_as_read(lines: &[&str]) -> RowBatch {
        let convert: RowConverter = Arc::new(|line: &[u8]| {
            let text =
                std::str::from_utf8(line).map_err(|e| ConnectorError::user(e.to_string()))?;
            let (id, name) = text.split_once(',').expect("two fields");
            if name == "!" {
                return Err(ConnectorError::user(format!("row {id} does not convert")));
            }
            Ok(Row::new(vec![
                Value::Int(id.parse().expect("id")),
                Value::Text(name.to_owned()),
            ]))
        });
        let mut unconverted = UnconvertedRows::new(convert);
        for line in lines {
            unconverted.push(line.as_bytes());
        }
        RowBatch {
            columns: vec!["id".to_owned(), "name".to_owned()].into(),
            rows: Vec::new(),
            position: None,
            notes: Vec::new(),
            fingerprints: Vec::new(),
            unconverted: Some(unconverted),
        }
    }

    #[test]
    fn unconverted_rows_convert_all_but_the_skipped_ones() {
        let mut batch = batch_as_read(&["1,a", "2,", "3,c"]);
        assert_eq!(batch.len(), 3);
        assert_eq!(
            batch.unconverted.as_ref().map(|u| u.row_text(1)),
            Some(&b"2,"[..])
        );
        batch.convert_rows(|i| i == 2).expect("converts");
        assert_eq!(batch.unconverted, None);
        assert_eq!(
            batch.rows,
            vec![
                Row::new(vec![Value::Int(1), Value::Text("a".into())]),
                Row::new(vec![Value::Int(2), Value::Text(String::new())]),
                Row::new(Vec::new()),
            ]
        );
        assert_eq!(batch.len(), 3);
        // Converted once: a second call has nothing left to do.
        batch.convert_rows(|_| false).expect("nothing to convert");
        assert_eq!(batch.rows.len(), 3);
    }

    #[test]
    fn a_row_that_does_not_convert_leaves_the_batch_as_read() {
        let mut batch = batch_as_read(&["1,a", "2,!"]);
        let error = batch.convert_rows(|_| false).expect_err("row 2 fails");
        assert!(
            error.to_string().contains("row 2 does not convert"),
            "{error}"
        );
        assert!(batch.rows.is_empty());
        assert_eq!(batch.len(), 2);
        // Skipping the row that fails converts the rest.
        batch.convert_rows(|i| i == 1).expect("converts");
        assert_eq!(
            batch.rows[0].values,
            vec![Value::Int(1), Value::Text("a".into())]
        );
    }
}
