//! A transform rule in a WASM module, as a [`FieldRule`] in the same registry as the built-ins.
//!
//! The protocol for a field rule: `init` names the other columns the function reads; each batch
//! goes in one `transform-values` call with the column names once (the mapped column first, then
//! those) and each row's values in that order; the guest answers the new value or the reason to
//! dead-letter the row. A call that traps is halved until the row that traps is alone, so only
//! that row fails.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use syncbridge_api::{FieldRule, RowView, RuleError, Value};
use wasmtime::Store;

use crate::bindings::transform::{Transform, TransformPre};
use crate::bindings::{ErrorKind, RowError, Value as WitValue};
use crate::convert::{from_wit, to_wit};
use crate::host::{Plugin, PluginKind, State, WasmError, WasmHost, describe_trap, outside_runtime};
use crate::module::{Module, Starter};

/// One instance, reused across calls until it traps, with what its `init` asked for.
pub(crate) struct Live {
    store: Store<State>,
    bindings: Transform,
    /// The other columns the function reads; `None` = all of them.
    reads: Option<Vec<String>>,
}

/// Starts instances of a transform module with the rule's configuration.
pub(crate) struct RuleStarter {
    host: WasmHost,
    config: Vec<(String, String)>,
}

impl Starter for RuleStarter {
    type Pre = TransformPre<State>;
    type Live = Live;
    const KIND: PluginKind = PluginKind::Transform;

    fn prepare(host: &WasmHost, plugin: &Plugin) -> Result<Self::Pre, WasmError> {
        host.transform_pre(plugin)
    }

    fn start(&self, plugin: &Plugin, pre: &Self::Pre) -> Result<Live, String> {
        let limits = &self.host.inner.limits;
        let mut store = self.host.store(plugin);
        self.host.arm(&mut store);
        let bindings = pre
            .instantiate(&mut store)
            .map_err(|e| describe_trap(&e, limits))?;
        self.host.arm(&mut store);
        let reads = bindings
            .syncbridge_plugin_transformer()
            .call_init(&mut store, &self.config)
            .map_err(|e| describe_trap(&e, limits))?
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
}

/// `wasm:MODULE#FUNCTION` as a field rule.
pub struct WasmRule {
    starter: RuleStarter,
    path: PathBuf,
    field: String,
    module: Mutex<Module<RuleStarter>>,
}

impl std::fmt::Debug for WasmRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRule")
            .field("path", &self.path)
            .field("config", &self.starter.config)
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
        let mut config = vec![
            ("function".to_owned(), function.to_owned()),
            ("field".to_owned(), field.to_owned()),
        ];
        config.extend(
            args.iter()
                .enumerate()
                .map(|(i, a)| (format!("arg{i}"), a.clone())),
        );
        let starter = RuleStarter {
            host: host.clone(),
            config,
        };
        let module = outside_runtime(|| Module::load(host, path, &starter))?;
        Ok(Self {
            starter,
            path: path.to_owned(),
            field: field.to_owned(),
            module: Mutex::new(module),
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
        module: &mut Module<RuleStarter>,
        columns: &[String],
        rows: &[Vec<WitValue>],
    ) -> Vec<Result<Value, RuleError>> {
        if rows.is_empty() {
            return Vec::new();
        }
        let live = match module.live(&self.starter) {
            Ok(live) => live,
            Err(reason) => {
                return rows
                    .iter()
                    .map(|_| Err(RuleError::new(reason.clone())))
                    .collect();
            }
        };
        self.starter.host.arm(&mut live.store);
        let called = live
            .bindings
            .syncbridge_plugin_transformer()
            .call_transform_values(&mut live.store, columns, rows);
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
                module.live = None;
                if rows.len() == 1 {
                    return vec![Err(RuleError::new(describe_trap(
                        &error,
                        &self.starter.host.inner.limits,
                    )))];
                }
                let (left, right) = rows.split_at(rows.len() / 2);
                let mut out = self.call(module, columns, left);
                out.extend(self.call(module, columns, right));
                out
            }
        }
    }

    fn apply_batch_here(
        &self,
        values: Vec<Value>,
        rows: &[RowView<'_>],
    ) -> Vec<Result<Value, RuleError>> {
        let mut module = self.module.lock().unwrap_or_else(|p| p.into_inner());
        module.refresh(&self.starter.host, &self.path, &self.starter);
        let reads = match module.live(&self.starter) {
            Ok(live) => live.reads.clone(),
            Err(reason) => {
                return values
                    .iter()
                    .map(|_| Err(RuleError::new(reason.clone())))
                    .collect();
            }
        };
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
        self.call(&mut module, &columns, &input)
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
        outside_runtime(|| self.apply_batch_here(values, rows))
    }
}
