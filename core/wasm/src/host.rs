//! Loading modules (compile once, cache by content hash) and the sandbox every instance runs in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::{shard, transform};

/// How often the deadline clock ticks.
const TICK: Duration = Duration::from_millis(10);
/// The interfaces a plugin can export.
const TRANSFORMER: &str = "syncbridge:plugin/transformer@0.1.0";
const ROUTER: &str = "syncbridge:plugin/router@0.1.0";

/// Bounds on every instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WasmLimits {
    /// The most linear memory an instance may grow to.
    pub memory_bytes: usize,
    /// The longest one call may run (wall clock).
    pub deadline: Duration,
    /// Optional: the most WebAssembly instructions (fuel units) one call may execute, for a
    /// deterministic budget on top of the deadline. Off by default (it costs 5–10 %).
    pub fuel_per_call: Option<u64>,
}

impl Default for WasmLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            deadline: Duration::from_secs(1),
            fuel_per_call: None,
        }
    }
}

/// Why a module cannot be used. Messages name the file and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("cannot read WASM module {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a WebAssembly component ({reason}); build it for `wasm32-wasip2` against plugins-sdk/wit (see plugins-sdk/README.md)"
    )]
    NotAComponent { path: PathBuf, reason: String },
    #[error(
        "{path} does not implement a SyncBridge world: it exports {exports}, but a transform must export `{TRANSFORMER}` and a sharding predicate `{ROUTER}`"
    )]
    WrongWorld { path: PathBuf, exports: String },
    #[error("{path} cannot be instantiated: {reason}")]
    Instantiate { path: PathBuf, reason: String },
    #[error("{path} is a {found} module, but it is used as a {wanted}")]
    WrongKind {
        path: PathBuf,
        found: PluginKind,
        wanted: PluginKind,
    },
    #[error("the module cache {dir} cannot be used: {reason}")]
    Cache { dir: PathBuf, reason: String },
    #[error("the WASM engine cannot start: {0}")]
    Engine(String),
}

/// Which world a module implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Transform,
    Shard,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Transform => "transform",
            PluginKind::Shard => "sharding",
        })
    }
}

/// A loaded module.
pub struct Plugin {
    pub path: PathBuf,
    /// SHA-256 of the `.wasm` file, hex.
    pub hash: String,
    pub kind: PluginKind,
    pub(crate) component: Component,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("hash", &self.hash)
            .field("kind", &self.kind)
            .finish()
    }
}

/// What each instance's store holds: an empty WASI context (no files, env, network), its
/// resource table, and the memory cap.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    module: Arc<str>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl transform::syncbridge::plugin::types::Host for State {}

impl transform::syncbridge::plugin::host::Host for State {
    fn log(&mut self, level: transform::syncbridge::plugin::host::Level, message: String) {
        use transform::syncbridge::plugin::host::Level;
        let module = &*self.module;
        match level {
            Level::Trace => tracing::trace!(module, "{message}"),
            Level::Debug => tracing::debug!(module, "{message}"),
            Level::Info => tracing::info!(module, "{message}"),
            Level::Warn => tracing::warn!(module, "{message}"),
            Level::Error => tracing::error!(module, "{message}"),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    pub(crate) limits: WasmLimits,
    transform_linker: Linker<State>,
    shard_linker: Linker<State>,
    cache_dir: PathBuf,
    /// Loaded modules by file, with the hash they had.
    loaded: Mutex<HashMap<PathBuf, Arc<Plugin>>>,
}

/// The WASM host. Cheap to clone; one per process is enough.
#[derive(Clone)]
pub struct WasmHost {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for WasmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmHost")
            .field("limits", &self.inner.limits)
            .field("cache_dir", &self.inner.cache_dir)
            .finish()
    }
}

impl WasmHost {
    /// A host whose compiled modules are cached in `cache_dir` (created if missing).
    pub fn new(cache_dir: &Path, limits: WasmLimits) -> Result<Self, WasmError> {
        let mut config = Config::new();
        // Calls are synchronous; the async machinery would triple the cost of a call.
        config.concurrency_support(false);
        config.epoch_interruption(true);
        config.consume_fuel(limits.fuel_per_call.is_some());
        let engine = Engine::new(&config).map_err(|e| WasmError::Engine(e.to_string()))?;
        let mut transform_linker = Linker::new(&engine);
        let mut shard_linker = Linker::new(&engine);
        for linker in [&mut transform_linker, &mut shard_linker] {
            wasmtime_wasi::p2::add_to_linker_sync(linker)
                .map_err(|e| WasmError::Engine(e.to_string()))?;
        }
        transform::Transform::add_to_linker::<State, HasSelf<State>>(&mut transform_linker, |s| s)
            .map_err(|e| WasmError::Engine(e.to_string()))?;
        shard::Shard::add_to_linker::<State, HasSelf<State>>(&mut shard_linker, |s| s)
            .map_err(|e| WasmError::Engine(e.to_string()))?;
        std::fs::create_dir_all(cache_dir).map_err(|e| WasmError::Cache {
            dir: cache_dir.to_owned(),
            reason: e.to_string(),
        })?;
        // The deadline clock: one tick every 10 ms while the engine lives.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(|e| WasmError::Engine(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                limits,
                transform_linker,
                shard_linker,
                cache_dir: cache_dir.to_owned(),
                loaded: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Loads a module: from memory when the file is unchanged, else from the compiled cache,
    /// else compiled now (and cached).
    pub fn load(&self, path: &Path) -> Result<Arc<Plugin>, WasmError> {
        let bytes = std::fs::read(path).map_err(|source| WasmError::Read {
            path: path.to_owned(),
            source,
        })?;
        let hash = hex::encode(Sha256::digest(&bytes));
        if let Some(plugin) = self
            .inner
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .filter(|p| p.hash == hash)
        {
            return Ok(plugin.clone());
        }
        let component = self.compile(path, &bytes, &hash)?;
        let kind = self.kind_of(path, &component)?;
        let plugin = Arc::new(Plugin {
            path: path.to_owned(),
            hash,
            kind,
            component,
        });
        // Resolving the imports now refuses a module that needs what we do not provide.
        match kind {
            PluginKind::Transform => {
                self.transform_pre(&plugin)?;
            }
            PluginKind::Shard => {
                self.shard_pre(&plugin)?;
            }
        }
        tracing::info!(module = %path.display(), hash = %&plugin.hash[..12], kind = %kind, "WASM module loaded");
        self.inner
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_owned(), plugin.clone());
        Ok(plugin)
    }

    /// Every module loaded so far.
    pub fn loaded(&self) -> Vec<Arc<Plugin>> {
        self.inner
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    #[allow(unsafe_code)] // see the SAFETY notes: only our own artifacts are deserialized
    fn compile(&self, path: &Path, bytes: &[u8], hash: &str) -> Result<Component, WasmError> {
        let engine = &self.inner.engine;
        // Keyed by the module's hash and the engine's (its version and the settings that shape
        // compiled code), so an upgrade or a settings change never loads a stale artifact.
        let engine_key = {
            use std::hash::{Hash as _, Hasher as _};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut hasher);
            hasher.finish()
        };
        let artifact = self
            .inner
            .cache_dir
            .join(format!("{hash}-engine-{engine_key:016x}.cwasm"));
        if artifact.exists() {
            // SAFETY: the cache directory holds only artifacts this host wrote from
            // `precompile_component`, named by the source's hash; a file from another wasmtime
            // version is refused by `deserialize_file` with an error, not loaded.
            match unsafe { Component::deserialize_file(engine, &artifact) } {
                Ok(component) => return Ok(component),
                Err(error) => {
                    tracing::warn!(artifact = %artifact.display(), error = %error, "compiled module unusable; compiling again");
                }
            }
        }
        if wasmtime::Engine::detect_precompiled(bytes).is_some() {
            return Err(WasmError::NotAComponent {
                path: path.to_owned(),
                reason: "it is a precompiled artifact; only .wasm files are accepted".into(),
            });
        }
        let compiled =
            engine
                .precompile_component(bytes)
                .map_err(|error| WasmError::NotAComponent {
                    path: path.to_owned(),
                    reason: format!("{error:#}"),
                })?;
        let temporary = artifact.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&temporary, &compiled)
            .and_then(|()| std::fs::rename(&temporary, &artifact))
            .map_err(|e| WasmError::Cache {
                dir: self.inner.cache_dir.clone(),
                reason: e.to_string(),
            })?;
        // SAFETY: as above; the artifact was written by this host just now.
        unsafe { Component::deserialize_file(engine, &artifact) }.map_err(|e| WasmError::Cache {
            dir: self.inner.cache_dir.clone(),
            reason: e.to_string(),
        })
    }

    fn kind_of(&self, path: &Path, component: &Component) -> Result<PluginKind, WasmError> {
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.inner.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        if exports.iter().any(|e| e == TRANSFORMER) {
            Ok(PluginKind::Transform)
        } else if exports.iter().any(|e| e == ROUTER) {
            Ok(PluginKind::Shard)
        } else {
            Err(WasmError::WrongWorld {
                path: path.to_owned(),
                exports: if exports.is_empty() {
                    "nothing".into()
                } else {
                    exports
                        .iter()
                        .map(|e| format!("`{e}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
        }
    }

    pub(crate) fn transform_pre(
        &self,
        plugin: &Plugin,
    ) -> Result<transform::TransformPre<State>, WasmError> {
        self.inner
            .transform_linker
            .instantiate_pre(&plugin.component)
            .and_then(transform::TransformPre::new)
            .map_err(|e| WasmError::Instantiate {
                path: plugin.path.clone(),
                reason: format!("{e:#}"),
            })
    }

    pub(crate) fn shard_pre(&self, plugin: &Plugin) -> Result<shard::ShardPre<State>, WasmError> {
        self.inner
            .shard_linker
            .instantiate_pre(&plugin.component)
            .and_then(shard::ShardPre::new)
            .map_err(|e| WasmError::Instantiate {
                path: plugin.path.clone(),
                reason: format!("{e:#}"),
            })
    }

    /// Runs the module's `self-test` export in a fresh instance: `Err` says what it found wrong
    /// (or why it could not run).
    pub fn self_test(&self, plugin: &Plugin) -> Result<(), String> {
        outside_runtime(|| self.self_test_here(plugin))
    }

    fn self_test_here(&self, plugin: &Plugin) -> Result<(), String> {
        let mut store = self.store(plugin);
        self.arm(&mut store);
        let limits = &self.inner.limits;
        let outcome = match plugin.kind {
            PluginKind::Transform => {
                let pre = self.transform_pre(plugin).map_err(|e| e.to_string())?;
                let bindings = pre
                    .instantiate(&mut store)
                    .map_err(|e| describe_trap(&e, limits))?;
                bindings
                    .syncbridge_plugin_transformer()
                    .call_self_test(&mut store)
            }
            PluginKind::Shard => {
                let pre = self.shard_pre(plugin).map_err(|e| e.to_string())?;
                let bindings = pre
                    .instantiate(&mut store)
                    .map_err(|e| describe_trap(&e, limits))?;
                bindings
                    .syncbridge_plugin_router()
                    .call_self_test(&mut store)
            }
        };
        outcome.map_err(|e| describe_trap(&e, limits))?
    }

    /// A fresh store: empty WASI context, memory cap, deadline armed per call.
    pub(crate) fn store(&self, plugin: &Plugin) -> Store<State> {
        let mut wasi = WasiCtxBuilder::new();
        if plugin.kind == PluginKind::Transform {
            // A transform is a function of its row: it sees a clock stopped at the epoch, so
            // the same row always gives the same value. Sharding predicates keep the real
            // clock, for date arithmetic ("ended within a year").
            wasi.wall_clock(StoppedClock).monotonic_clock(StoppedClock);
        }
        let state = State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.inner.limits.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            module: Arc::from(plugin.path.display().to_string()),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.limits);
        store
    }

    /// Arms the deadline for the next call.
    pub(crate) fn arm(&self, store: &mut Store<State>) {
        let ticks = (self.inner.limits.deadline.as_millis() / TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        if let Some(fuel) = self.inner.limits.fuel_per_call {
            // Refilled per call; `set_fuel` only fails when fuel is not enabled, which it is.
            let _ = store.set_fuel(fuel);
        }
    }
}

/// Runs `work` where WASI's synchronous host calls may block: WASI drives its I/O through tokio
/// with `block_on`, which panics on a thread that is running async tasks — so from inside a
/// runtime the work moves to a scoped thread of its own (one per batch, not per row).
pub(crate) fn outside_runtime<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    std::thread::scope(|scope| match scope.spawn(work).join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// A clock that never moves from 1970-01-01T00:00:00Z.
struct StoppedClock;

impl wasmtime_wasi::HostWallClock for StoppedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Explains a failed call: deadline, memory cap, or the guest's own trap.
pub(crate) fn describe_trap(error: &wasmtime::Error, limits: &WasmLimits) -> String {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::Interrupt => format!(
                "the WASM call ran past its deadline of {} ms and was stopped",
                limits.deadline.as_millis()
            ),
            wasmtime::Trap::StackOverflow => "the WASM call overflowed its stack".into(),
            wasmtime::Trap::OutOfFuel => format!(
                "the WASM call used up its fuel of {} instructions and was stopped",
                limits.fuel_per_call.unwrap_or_default()
            ),
            other => format!("the WASM guest trapped: {other}"),
        };
    }
    let text = format!("{error:#}");
    if text.contains("growing memory") || text.contains("memory") && text.contains("limit") {
        format!(
            "the WASM guest went past its memory cap of {} MiB and was stopped",
            limits.memory_bytes >> 20
        )
    } else {
        format!("the WASM call failed: {text}")
    }
}
