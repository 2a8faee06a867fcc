//! A transform rule in a WASM module, as a [`FieldRule`] in the same registry as the built-ins.
//!
//! The protocol for a field rule: the guest's `transform` gets the row with the mapped column
//! first (holding the value being transformed) and the other columns after it; it emits exactly
//! one row, whose first field is the result. `dead-letter` sends the row to the dead-letter queue
//! with the guest's reason.

use std::path::Path;
use std::sync::{Arc, Mutex};

use syncbridge_api::{FieldRule, RowView, RuleError, Value};
use wasmtime::Store;

use crate::bindings::transform::{Transform, TransformPre};
use crate::bindings::{ErrorKind, Outcome};
use crate::convert::{from_wit, row_to_wit};
use crate::host::{Plugin, PluginKind, State, WasmError, WasmHost, describe_trap};

/// One instance, reused across calls until it traps.
struct Live {
    store: Store<State>,
    bindings: Transform,
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
        bindings
            .syncbridge_plugin_transformer()
            .call_init(&mut store, &self.config)
            .map_err(|e| describe_trap(&e, &self.host.inner.limits))?
            .map_err(|message| format!("the module refused its configuration: {message}"))?;
        Ok(Live { store, bindings })
    }
}

impl FieldRule for WasmRule {
    fn apply(&self, value: Value, row: RowView<'_>) -> Result<Value, RuleError> {
        let mut guard = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.instantiate().map_err(RuleError::new)?);
        }
        let Some(live) = guard.as_mut() else {
            return Err(RuleError::new("the WASM instance is gone"));
        };
        let input = row_to_wit(row, Some((&self.field, &value)));
        self.host.arm(&mut live.store);
        let called = live
            .bindings
            .syncbridge_plugin_transformer()
            .call_transform(&mut live.store, &input);
        match called {
            Ok(Outcome::Emit(rows)) => {
                let mut rows = rows.into_iter();
                match (rows.next(), rows.next()) {
                    (Some(first), None) => match first.into_iter().next() {
                        Some(field) => from_wit(field.value).map_err(RuleError::new),
                        None => Err(RuleError::new(
                            "the WASM rule emitted an empty row; a field rule emits one row whose first field is the result",
                        )),
                    },
                    (None, _) => Err(RuleError::new(
                        "the WASM rule emitted no row; a field rule emits exactly one",
                    )),
                    (Some(_), Some(_)) => Err(RuleError::new(
                        "the WASM rule emitted several rows; a field rule emits exactly one",
                    )),
                }
            }
            Ok(Outcome::DeadLetter(error)) => {
                let kind = match error.kind {
                    ErrorKind::InvalidInput => "invalid input",
                    ErrorKind::Unsupported => "unsupported",
                    ErrorKind::Internal => "internal error",
                };
                let field = error
                    .field
                    .map(|f| format!(" (field `{f}`)"))
                    .unwrap_or_default();
                Err(RuleError::new(format!("{kind}{field}: {}", error.message)))
            }
            Err(error) => {
                // A trapped instance refuses further calls: the next row gets a fresh one.
                *guard = None;
                Err(RuleError::new(describe_trap(
                    &error,
                    &self.host.inner.limits,
                )))
            }
        }
    }
}
