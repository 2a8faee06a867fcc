//! Rules over mapped rows: field transforms and shard routers.
//!
//! Both are synchronous and CPU-only by contract (no I/O): they run once per row on the hot path,
//! and the WASM host implements the same traits for guest modules. A failure costs one row (it goes
//! to the dead-letter queue with the [`RuleError`]), never the run.

use crate::Value;

/// Why a rule failed for one row. The message names the rule and the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    pub message: String,
}

impl RuleError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A read-only view of one mapped row: column names and values side by side.
#[derive(Debug, Clone, Copy)]
pub struct RowView<'a> {
    pub columns: &'a [String],
    pub values: &'a [Value],
}

impl<'a> RowView<'a> {
    /// The value of a column by name.
    pub fn get(&self, column: &str) -> Option<&'a Value> {
        self.columns
            .iter()
            .position(|c| c == column)
            .and_then(|i| self.values.get(i))
    }
}

/// A transform rule over one field (`trim`, `round(2)`, `wasm:fmt#title_case` …).
///
/// It sees the whole row so rules such as `concat` or `default` can use other fields.
pub trait FieldRule: Send + Sync {
    fn apply(&self, value: Value, row: RowView<'_>) -> Result<Value, RuleError>;

    /// The rule over a batch: value i belongs to row i. Rules whose calls cost more than their
    /// work (WASM) override it to make one call per batch.
    fn apply_batch(
        &self,
        values: Vec<Value>,
        rows: &[RowView<'_>],
    ) -> Vec<Result<Value, RuleError>> {
        values
            .into_iter()
            .zip(rows)
            .map(|(value, row)| self.apply(value, *row))
            .collect()
    }

    /// Whether the result depends on the row alone (no clock, no randomness, no outside
    /// state): a row that reads the same as before then maps to the same value. A full read
    /// skips rows by their [`RowBatch::fingerprints`](crate::RowBatch::fingerprints) only
    /// when every rule and the router say so. `false` unless a rule overrides it.
    fn depends_only_on_row(&self) -> bool {
        false
    }

    /// Columns of the row the rule reads besides the mapped one (`concat(first, ' ', last)`
    /// reads `first` and `last`): the run reads them from the source even when no mapping
    /// pushes them.
    fn columns(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Where one row goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDecision {
    /// The target (by its `sync_targets` name) whose predicate matched first.
    Target(String),
    /// No predicate matched: the definition's default target.
    Default,
    /// The predicate could not be evaluated for this row: dead-letter it.
    Failed(RuleError),
}

/// Chooses a target for each row of a batch (built-in CEL predicates or a WASM module).
pub trait ShardRouter: Send + Sync {
    /// One decision per row, in order.
    fn route(&self, rows: &[RowView<'_>]) -> Vec<RouteDecision>;

    /// Whether a row's decision depends on the row alone (see
    /// [`FieldRule::depends_only_on_row`]); a predicate that reads the clock does not.
    fn depends_only_on_row(&self) -> bool {
        false
    }
}
