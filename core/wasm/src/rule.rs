//! A transform rule in a WASM module, as a [`FieldRule`] in the same registry as the built-ins.
//!
//! The protocol for a field rule: `init` names the other columns the function reads; each batch
//! goes in one `transform-values` call with the column names once (the mapped column first, then
//! those) and each row's values in that order; the guest answers the new value or the reason to
//! dead-letter the row. A call that traps is halved until the row that traps is alone, so only
//! that row fails.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use syncbridge_api::{FieldRule, RowView, RuleError, Value};
use wasmtime::Store;

use crate::bindings::transform::{Transform, TransformPre};
use crate::bindings::{ErrorKind, RowError, Value as WitValue};
use crate::convert::{from_wit, to_wit};
use crate::host::{Plugin, PluginKind, State, WasmError, WasmHost, describe_trap, outside_runtime};

/// One instance, reused across calls until it traps, with what its `init` asked for.
struct Live {
    store: Store<State>,
    bindings: Transform,
    /// The other columns the function reads; `None` = all of them.
    reads: Option<Vec<String>>,
}

/// The module a rule runs, and when its file was last seen.
struct Module {
    plugin: Arc<Plugin>,
    pre: TransformPre<State>,
    stamp: Option<FileStamp>,
    live: Option<Live>,
}

/// `wasm:MODULE#FUNCTION` as a field rule.
pub struct WasmRule {
    host: WasmHost,
    path: PathBuf,
    config: Vec<(String, String)>,
    field: String,
    module: Mutex<Module>,
}

impl std::fmt::Debug for WasmRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRule")
            .field("path", &self.path)
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
        outside_runtime(|| Self::new_here(host, path, function, field, args))
    }

    fn new_here(
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
        let stamp = FileStamp::of(path);
        let rule = Self {
            host: host.clone(),
            path: path.to_owned(),
            config,
            field: field.to_owned(),
            module: Mutex::new(Module {
                plugin: plugin.clone(),
                pre: pre.clone(),
                stamp,
                live: None,
            }),
        };
        let live = rule
            .instantiate(&plugin, &pre)
            .map_err(|reason| WasmError::Instantiate {
                path: path.to_owned(),
                reason,
            })?;
        rule.module.lock().unwrap_or_else(|p| p.into_inner()).live = Some(live);
        Ok(rule)
    }

    /// Between batches: when the file changed, load it; the next batch runs the new module.
    /// A file that does not load (say, half copied) keeps the old module, with a warning.
    fn refresh(&self, module: &mut Module) {
        let stamp = FileStamp::of(&self.path);
        if stamp == module.stamp {
            return;
        }
        module.stamp = stamp;
        let loaded = self.host.load(&self.path).and_then(|plugin| {
            if plugin.hash == module.plugin.hash {
                return Ok(None);
            }
            if plugin.kind != PluginKind::Transform {
                return Err(WasmError::WrongKind {
                    path: self.path.clone(),
                    found: plugin.kind,
                    wanted: PluginKind::Transform,
                });
            }
            let pre = self.host.transform_pre(&plugin)?;
            let live =
                self.instantiate(&plugin, &pre)
                    .map_err(|reason| WasmError::Instantiate {
                        path: self.path.clone(),
                        reason,
                    })?;
            Ok(Some((plugin, pre, live)))
        });
        match loaded {
            Ok(Some((plugin, pre, live))) => {
                tracing::info!(module = %self.path.display(), hash = %&plugin.hash[..12], "WASM module changed; the next batch runs the new one");
                *module = Module {
                    plugin,
                    pre,
                    stamp: module.stamp,
                    live: Some(live),
                };
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(module = %self.path.display(), error = %error, "WASM module changed but cannot be used; keeping the one loaded");
            }
        }
    }

    fn instantiate(&self, plugin: &Plugin, pre: &TransformPre<State>) -> Result<Live, String> {
        let mut store = self.host.store(plugin);
        self.host.arm(&mut store);
        let bindings = pre
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
        module: &mut Module,
        columns: &[String],
        rows: &[Vec<WitValue>],
    ) -> Vec<Result<Value, RuleError>> {
        if rows.is_empty() {
            return Vec::new();
        }
        if module.live.is_none() {
            match self.instantiate(&module.plugin, &module.pre) {
                Ok(fresh) => module.live = Some(fresh),
                Err(reason) => {
                    return rows
                        .iter()
                        .map(|_| Err(RuleError::new(reason.clone())))
                        .collect();
                }
            }
        }
        let Some(current) = module.live.as_mut() else {
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
                module.live = None;
                if rows.len() == 1 {
                    return vec![Err(RuleError::new(describe_trap(
                        &error,
                        &self.host.inner.limits,
                    )))];
                }
                let (left, right) = rows.split_at(rows.len() / 2);
                let mut out = self.call(module, columns, left);
                out.extend(self.call(module, columns, right));
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
        outside_runtime(|| self.apply_batch_here(values, rows))
    }
}

impl WasmRule {
    fn apply_batch_here(
        &self,
        values: Vec<Value>,
        rows: &[RowView<'_>],
    ) -> Vec<Result<Value, RuleError>> {
        let mut module = self.module.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh(&mut module);
        if module.live.is_none() {
            match self.instantiate(&module.plugin, &module.pre) {
                Ok(fresh) => module.live = Some(fresh),
                Err(reason) => {
                    return values
                        .iter()
                        .map(|_| Err(RuleError::new(reason.clone())))
                        .collect();
                }
            }
        }
        let reads = module.live.as_ref().and_then(|l| l.reads.clone());
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

/// What tells a changed file without reading it: modification time and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
}

impl FileStamp {
    pub(crate) fn of(path: &Path) -> Option<Self> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(Self {
            modified: metadata.modified().ok(),
            len: metadata.len(),
        })
    }
}
