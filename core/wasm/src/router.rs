//! A sharding predicate in a WASM module, as a [`ShardRouter`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use syncbridge_api::{RouteDecision, RowView, RuleError, ShardRouter};
use wasmtime::Store;

use crate::bindings::shard::{Shard, ShardPre};
use crate::bindings::{Field, RowError};
use crate::convert::row_to_wit;
use crate::host::{Plugin, PluginKind, State, WasmError, WasmHost, describe_trap, outside_runtime};
use crate::module::{Module, Starter};

pub(crate) struct Live {
    store: Store<State>,
    bindings: Shard,
}

/// Starts instances of a sharding module with its function and the sync's target names.
pub(crate) struct RouterStarter {
    host: WasmHost,
    config: Vec<(String, String)>,
    targets: Vec<String>,
}

impl Starter for RouterStarter {
    type Pre = ShardPre<State>;
    type Live = Live;
    const KIND: PluginKind = PluginKind::Shard;

    fn prepare(host: &WasmHost, plugin: &Plugin) -> Result<Self::Pre, WasmError> {
        host.shard_pre(plugin)
    }

    fn start(&self, plugin: &Plugin, pre: &Self::Pre) -> Result<Live, String> {
        let limits = &self.host.inner.limits;
        let mut store = self.host.store(plugin);
        self.host.arm(&mut store);
        let bindings = pre
            .instantiate(&mut store)
            .map_err(|e| describe_trap(&e, limits))?;
        self.host.arm(&mut store);
        bindings
            .syncbridge_plugin_router()
            .call_init(&mut store, &self.config, &self.targets)
            .map_err(|e| describe_trap(&e, limits))?
            .map_err(|message| format!("the module refused its configuration: {message}"))?;
        Ok(Live { store, bindings })
    }
}

/// `sharding: wasm:MODULE#FUNCTION`: one call decides a whole batch.
pub struct WasmRouter {
    starter: RouterStarter,
    path: PathBuf,
    module: Mutex<Module<RouterStarter>>,
}

impl std::fmt::Debug for WasmRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRouter")
            .field("path", &self.path)
            .field("targets", &self.starter.targets)
            .finish()
    }
}

impl WasmRouter {
    /// Loads the module and runs its `init` with the target names once.
    pub fn new(
        host: &WasmHost,
        path: &Path,
        function: &str,
        targets: &[String],
    ) -> Result<Self, WasmError> {
        let starter = RouterStarter {
            host: host.clone(),
            config: vec![("function".to_owned(), function.to_owned())],
            targets: targets.to_vec(),
        };
        let module = outside_runtime(|| Module::load(host, path, &starter))?;
        Ok(Self {
            starter,
            path: path.to_owned(),
            module: Mutex::new(module),
        })
    }

    /// Routes `rows`; when the call traps, halves the batch until the row that traps is
    /// alone, so it alone fails.
    fn decide(
        &self,
        module: &mut Module<RouterStarter>,
        rows: &[Vec<Field>],
    ) -> Vec<RouteDecision> {
        if rows.is_empty() {
            return Vec::new();
        }
        let live = match module.live(&self.starter) {
            Ok(live) => live,
            Err(reason) => {
                return rows
                    .iter()
                    .map(|_| RouteDecision::Failed(RuleError::new(reason.clone())))
                    .collect();
            }
        };
        self.starter.host.arm(&mut live.store);
        let called = live
            .bindings
            .syncbridge_plugin_router()
            .call_route_batch(&mut live.store, rows);
        match called {
            Ok(results) if results.len() == rows.len() => {
                results.into_iter().map(|r| self.decision(r)).collect()
            }
            Ok(results) => {
                let message = format!(
                    "the sharding module answered {} decisions for {} rows",
                    results.len(),
                    rows.len()
                );
                rows.iter()
                    .map(|_| RouteDecision::Failed(RuleError::new(message.clone())))
                    .collect()
            }
            Err(error) => {
                module.live = None;
                if rows.len() == 1 {
                    return vec![RouteDecision::Failed(RuleError::new(describe_trap(
                        &error,
                        &self.starter.host.inner.limits,
                    )))];
                }
                let (left, right) = rows.split_at(rows.len() / 2);
                let mut out = self.decide(module, left);
                out.extend(self.decide(module, right));
                out
            }
        }
    }

    fn decision(&self, result: Result<Option<String>, RowError>) -> RouteDecision {
        let targets = &self.starter.targets;
        match result {
            Ok(None) => RouteDecision::Default,
            Ok(Some(name)) if targets.contains(&name) => RouteDecision::Target(name),
            Ok(Some(name)) => RouteDecision::Failed(RuleError::new(format!(
                "the sharding module chose `{name}`, which is not a target of this sync (targets: {})",
                targets.join(", ")
            ))),
            Err(error) => RouteDecision::Failed(RuleError::new(error.message)),
        }
    }
}

impl ShardRouter for WasmRouter {
    fn route(&self, rows: &[RowView<'_>]) -> Vec<RouteDecision> {
        let input: Vec<Vec<Field>> = rows.iter().map(|row| row_to_wit(*row)).collect();
        outside_runtime(|| {
            let mut module = self.module.lock().unwrap_or_else(|p| p.into_inner());
            module.refresh(&self.starter.host, &self.path, &self.starter);
            self.decide(&mut module, &input)
        })
    }
}
