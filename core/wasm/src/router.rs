//! A sharding predicate in a WASM module, as a [`ShardRouter`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use syncbridge_api::{RouteDecision, RowView, RuleError, ShardRouter};
use wasmtime::Store;

use crate::bindings::shard::{Shard, ShardPre};
use crate::bindings::{Field, RowError};
use crate::convert::row_to_wit;
use crate::host::{Plugin, PluginKind, State, WasmError, WasmHost, describe_trap, outside_runtime};
use crate::rule::FileStamp;

struct Live {
    store: Store<State>,
    bindings: Shard,
}

/// The module a router runs, and when its file was last seen.
struct Module {
    plugin: Arc<Plugin>,
    pre: ShardPre<State>,
    stamp: Option<FileStamp>,
    live: Option<Live>,
}

/// `sharding: wasm:MODULE#FUNCTION`: one call decides a whole batch.
pub struct WasmRouter {
    host: WasmHost,
    path: PathBuf,
    config: Vec<(String, String)>,
    targets: Vec<String>,
    module: Mutex<Module>,
}

impl std::fmt::Debug for WasmRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRouter")
            .field("path", &self.path)
            .field("targets", &self.targets)
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
        outside_runtime(|| Self::new_here(host, path, function, targets))
    }

    fn new_here(
        host: &WasmHost,
        path: &Path,
        function: &str,
        targets: &[String],
    ) -> Result<Self, WasmError> {
        let plugin = host.load(path)?;
        if plugin.kind != PluginKind::Shard {
            return Err(WasmError::WrongKind {
                path: path.to_owned(),
                found: plugin.kind,
                wanted: PluginKind::Shard,
            });
        }
        let pre = host.shard_pre(&plugin)?;
        let router = Self {
            host: host.clone(),
            path: path.to_owned(),
            config: vec![("function".to_owned(), function.to_owned())],
            targets: targets.to_vec(),
            module: Mutex::new(Module {
                plugin: plugin.clone(),
                pre: pre.clone(),
                stamp: FileStamp::of(path),
                live: None,
            }),
        };
        let live = router
            .instantiate(&plugin, &pre)
            .map_err(|reason| WasmError::Instantiate {
                path: path.to_owned(),
                reason,
            })?;
        router.module.lock().unwrap_or_else(|p| p.into_inner()).live = Some(live);
        Ok(router)
    }

    /// Between batches: when the file changed, load it (see `WasmRule`).
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
            if plugin.kind != PluginKind::Shard {
                return Err(WasmError::WrongKind {
                    path: self.path.clone(),
                    found: plugin.kind,
                    wanted: PluginKind::Shard,
                });
            }
            let pre = self.host.shard_pre(&plugin)?;
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

    fn instantiate(&self, plugin: &Plugin, pre: &ShardPre<State>) -> Result<Live, String> {
        let mut store = self.host.store(plugin);
        self.host.arm(&mut store);
        let bindings = pre
            .instantiate(&mut store)
            .map_err(|e| describe_trap(&e, &self.host.inner.limits))?;
        self.host.arm(&mut store);
        bindings
            .syncbridge_plugin_router()
            .call_init(&mut store, &self.config, &self.targets)
            .map_err(|e| describe_trap(&e, &self.host.inner.limits))?
            .map_err(|message| format!("the module refused its configuration: {message}"))?;
        Ok(Live { store, bindings })
    }

    /// Routes `rows`; when the call traps, halves the batch until the row that traps is
    /// alone, so it alone fails.
    fn decide(&self, module: &mut Module, rows: &[Vec<Field>]) -> Vec<RouteDecision> {
        if rows.is_empty() {
            return Vec::new();
        }
        if module.live.is_none() {
            match self.instantiate(&module.plugin, &module.pre) {
                Ok(fresh) => module.live = Some(fresh),
                Err(reason) => {
                    return rows
                        .iter()
                        .map(|_| RouteDecision::Failed(RuleError::new(reason.clone())))
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
            .syncbridge_plugin_router()
            .call_route_batch(&mut current.store, rows);
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
                        &self.host.inner.limits,
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
        match result {
            Ok(None) => RouteDecision::Default,
            Ok(Some(name)) if self.targets.contains(&name) => RouteDecision::Target(name),
            Ok(Some(name)) => RouteDecision::Failed(RuleError::new(format!(
                "the sharding module chose `{name}`, which is not a target of this sync (targets: {})",
                self.targets.join(", ")
            ))),
            Err(error) => RouteDecision::Failed(RuleError::new(error.message)),
        }
    }
}

impl ShardRouter for WasmRouter {
    fn route(&self, rows: &[RowView<'_>]) -> Vec<RouteDecision> {
        let input: Vec<Vec<Field>> = rows.iter().map(|row| row_to_wit(*row, None)).collect();
        outside_runtime(|| {
            let mut module = self.module.lock().unwrap_or_else(|p| p.into_inner());
            self.refresh(&mut module);
            self.decide(&mut module, &input)
        })
    }
}
