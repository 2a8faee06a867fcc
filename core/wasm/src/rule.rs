//! A transform rule in a WASM module, as a [`FieldRule`] in the same registry as the built-ins.
//!
//! The protocol for a field rule: `init` names the other columns the function reads; each batch
//! goes in one `transform-values` call with the column names once (the mapped column first, then
//! those) and each row's values in that order; the guest answers the new value or the reason to
//! dead-letter the row. A call that traps is halved until the row that traps is alone, so only
//! that row fails.

use std::path::Path;
use std::sync::{Arc, Mutex};

use syncbridge_api::{FieldRule, RowView, RuleError, Value};
use wasmtime::Store;

use crate::bindings::transform::{Transform, TransformPre};
use crate::bindings::{ErrorKind, RowError, Value as WitValue};
use crate::convert::{from_wit, to_wit};
use crate::host::{Plugin, PluginKind, State, WasmError, WasmHost, describe_trap};

/// One instance, reused across calls until it traps, with what its `init` asked for.
struct Live {
    store: Store<State>,
    bindings: Transform,
    /// The other columns the function reads; `None` = all of them.
    reads: Option<Vec<String>>,
}

/// `wasm:MODULE#FUNCTION` as a field rule.
pub struct WasmRule {
    host: WasmHost,
    plugin: Arc<Plugin>,
    pre: TransformPre<State>,
    config: Vec<(String, String)>,
    field: String,
    live: Mutex<Option<Live>>,
}

impl std::fmt::Debug for WasmRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRule")
            .field("plugin", &self.plugin)
            .field("config", &self.config)
            .finish()
    }
}

impl WasmRule {
    /// Loads the module and runs its `init` once, so a bad module or configuration fails
    /// before any row moves.
    pub fn new(
        host: &WasmHost,
        path: &Path,
        function: &str,
        field: &str,
        args: &[String],
    ) -> Result<Self, WasmError> {
        let plugin = host.load(path)?;
        if plugin.kind != PluginKind::Transform {
            return Err(WasmError::WrongKind {
                path: path.to_owned(),
                found: plugin.kind,
                wanted: PluginKind::Transform,
            });
        }
        let pre = host.transform_pre(&plugin)?;
        let mut config = vec![
            ("function".to_owned(), function.to_owned()),
            ("field".to_owned(), field.to_owned()),
        ];
        config.extend(
            args.iter()
                .enumerate()
                .map(|(i, a)| (format!("arg{i}"), a.clone())),
        );
        let rule = Self {
            host: host.clone(),
            plugin,
            pre,
            config,
            field: field.to_owned(),
            live: Mutex::new(None),
        };
        let live = rule
            .instantiate()
            .map_err(|reason| WasmError::Instantiate {
                path: path.to_owned(),
                reason,
            })?;
        *rule.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(live);
        Ok(rule)
    }

    fn instantiate(&self) -> Result<Live, String> {
        let mut store = self.host.store(&self.plugin);
        self.host.arm(&mut store);
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| describe_trap(&e, &self.host.inner.limits))?;
        self.host.arm(&mut store);
        let reads = bindings
            .syncbridge_plugin_transformer()
            .call_init(&mut store, &self.config)
            .map_err(|e| describe_trap(&e, &self.host.inner.limits))?
            .map_err(|message| format!("the module refused its configuration: {message}"))?;
        let reads = if reads.iter().any(|r| r == "*") {
            None
        } else {
            Some(reads)
        };
        Ok(Live {
            store,
            bindings,
            reads,
        })
    }

    /// The column names of one batch: the mapped column, then what the rule reads.
    fn columns(&self, reads: Option<&[String]>, row: Option<&RowView<'_>>) -> Vec<String> {
        let mut columns = vec![self.field.clone()];
        match reads {
            Some(reads) => columns.extend(reads.iter().cloned()),
            None => {
                if let Some(row) = row {
                    columns.extend(row.columns.iter().filter(|c| **c != self.field).cloned());
                }
            }
        }
        columns
    }

    /// Calls `transform-values`; on a trap, a fresh instance and halves, down to the row.
    fn call(
        &self,
        live: &mut Option<Live>,
        columns: &[String],
        rows: &[Vec<WitValue>],
    ) -> Vec<Result<Value, RuleError>> {
        if rows.is_empty() {
            return Vec::new();
        }
        if live.is_none() {
            match self.instantiate() {
                Ok(fresh) => *live = Some(fresh),
                Err(reason) => {
                    return rows
                        .iter()
                        .map(|_| Err(RuleError::new(reason.clone())))
                        .collect();
                }
            }
        }
        let Some(current) = live.as_mut() else {
            return Vec::new();
        };
        self.host.arm(&mut current.store);
        let called = current
            .bindings
            .syncbridge_plugin_transformer()
            .call_transform_values(&mut current.store, columns, rows);
        match called {
            Ok(results) if results.len() == rows.len() => results
                .into_iter()
                .map(|result| match result {
                    Ok(value) => from_wit(value).map_err(RuleError::new),
                    Err(error) => Err(rule_error(error)),
                })
                .collect(),
            Ok(results) => {
                let message = format!(
                    "the WASM rule answered {} values for {} rows",
                    results.len(),
                    rows.len()
                );
                rows.iter()
                    .map(|_| Err(RuleError::new(message.clone())))
                    .collect()
            }
            Err(error) => {
                // A trapped instance refuses further calls: drop it, then find the row.
                *live = None;
                if rows.len() == 1 {
                    return vec![Err(RuleError::new(describe_trap(
                        &error,
                        &self.host.inner.limits,
                    )))];
                }
                let (left, right) = rows.split_at(rows.len() / 2);
                let mut out = self.call(live, columns, left);
                out.extend(self.call(live, columns, right));
                out
            }
        }
    }
}

fn rule_error(error: RowError) -> RuleError {
    let kind = match error.kind {
        ErrorKind::InvalidInput => "invalid input",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::Internal => "internal error",
    };
    let field = error
        .field
        .map(|f| format!(" (field `{f}`)"))
        .unwrap_or_default();
    RuleError::new(format!("{kind}{field}: {}", error.message))
}

impl FieldRule for WasmRule {
    fn apply(&self, value: Value, row: RowView<'_>) -> Result<Value, RuleError> {
        self.apply_batch(vec![value], &[row])
            .pop()
            .unwrap_or_else(|| Err(RuleError::new("the WASM rule answered nothing")))
    }

    fn apply_batch(
        &self,
        values: Vec<Value>,
        rows: &[RowView<'_>],
    ) -> Vec<Result<Value, RuleError>> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.is_none() {
            match self.instantiate() {
                Ok(fresh) => *live = Some(fresh),
                Err(reason) => {
                    return values
                        .iter()
                        .map(|_| Err(RuleError::new(reason.clone())))
                        .collect();
                }
            }
        }
        let reads = live.as_ref().and_then(|l| l.reads.clone());
        let columns = self.columns(reads.as_deref(), rows.first());
        let input: Vec<Vec<WitValue>> = values
            .iter()
            .zip(rows)
            .map(|(value, row)| {
                let mut out = Vec::with_capacity(columns.len());
                out.push(to_wit(value));
                for column in &columns[1..] {
                    out.push(row.get(column).map_or(WitValue::Null, to_wit));
                }
                out
            })
            .collect();
        self.call(&mut live, &columns, &input)
    }
}
