//! The host side of native plugins: loads dynamic libraries built with `syncbridge-plugin`,
//! checks them, and registers their connectors into the same [`Registry`] as the built-ins.
//!
//! A library is refused, with its path and the reason, when it cannot be loaded, does not export
//! the declaration, speaks another ABI version, or fails (or panics) while loading; the others
//! load and SyncBridge goes on. Loaded libraries are never unloaded (see
//! [`syncbridge_plugin::abi`]).
//!
//! Calls into a plugin block (the ABI is synchronous and the plugin runs its own runtime), so the
//! async connector methods run them on tokio's blocking pool.

mod instance;
mod source;
mod target;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use syncbridge_api::{ConnectorError, ErasedSource, ErasedTarget, Registry};
use syncbridge_plugin::abi::{
    Buffer, DECLARATION_SYMBOL, Declaration, HostV1, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_WARN,
    STATUS_ERROR, STATUS_OK, STATUS_PANIC, Str, VTableV1,
};
use syncbridge_plugin::wire::{Manifest, WireError};

pub use instance::Instance;
pub use source::NativeSource;
/// The plugin ABI version this SyncBridge speaks.
pub use syncbridge_plugin::abi::ABI_VERSION;
pub use target::NativeTarget;

/// A loaded plugin library.
#[derive(Debug)]
pub struct NativePlugin {
    pub path: PathBuf,
    pub manifest: Manifest,
    vtable: &'static VTableV1,
}

/// Why a library was not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin {}: {reason}", path.display())]
pub struct Refusal {
    pub path: PathBuf,
    pub reason: String,
}

/// The file name endings of dynamic libraries on this platform's conventions.
const LIBRARY_EXTENSIONS: [&str; 3] = ["so", "dylib", "dll"];

/// True for file names a plugin directory scan considers (`.so`, `.dylib`, `.dll`).
pub fn is_library_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| LIBRARY_EXTENSIONS.contains(&e))
}

/// Every library in `dir` (not recursive), loaded or refused, in file name order.
pub fn scan(dir: &Path) -> std::io::Result<Vec<LoadResult>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && is_library_name(path))
        .collect();
    paths.sort();
    Ok(paths.iter().map(|path| load(path)).collect())
}

/// What loading a library gave, kept for the life of the process.
type LoadResult = Result<Arc<NativePlugin>, Refusal>;

/// Libraries already loaded in this process, by canonical path: loading is done once, and a
/// library is never unloaded.
fn loaded() -> &'static Mutex<HashMap<PathBuf, LoadResult>> {
    static LOADED: std::sync::OnceLock<Mutex<HashMap<PathBuf, LoadResult>>> =
        std::sync::OnceLock::new();
    LOADED.get_or_init(Default::default)
}

/// Loads one library (once per process) and checks it.
pub fn load(path: &Path) -> Result<Arc<NativePlugin>, Refusal> {
    let refuse = |reason: String| Refusal {
        path: path.to_owned(),
        reason,
    };
    let canonical = path
        .canonicalize()
        .map_err(|e| refuse(format!("cannot read the file: {e}")))?;
    let mut cache = loaded()
        .lock()
        .map_err(|_| refuse("the plugin table is poisoned".to_owned()))?;
    if let Some(known) = cache.get(&canonical) {
        return known.clone();
    }
    let result = load_uncached(&canonical).map_err(refuse);
    cache.insert(canonical, result.clone());
    result
}

fn load_uncached(path: &Path) -> Result<Arc<NativePlugin>, String> {
    // SAFETY: loading runs the library's initialisers; that is what loading a plugin means, and
    // the operator put the file in the plugin directory. Nothing else can be checked first.
    let library = unsafe { libloading::Library::new(path) }.map_err(|error| {
        format!("not a loadable dynamic library ({error}); the plugin directory should hold only plugins built with syncbridge-plugin")
    })?;
    // SAFETY: the symbol is looked up as an address only; nothing is read through it yet.
    let symbol = unsafe { library.get::<*const Declaration>(DECLARATION_SYMBOL) }.map_err(|_| {
        "does not export `syncbridge_plugin_declaration`: it is not a SyncBridge plugin (build it with `syncbridge_plugin::declare_plugin!`)".to_owned()
    })?;
    let declaration: *const Declaration = *symbol;
    // SAFETY: `abi_version` is the first field of every version's declaration, a `u32` at offset
    // 0 of the exported static, so reading it is valid whatever version the plugin speaks.
    let abi_version = unsafe { declaration.cast::<u32>().read() };
    if abi_version != ABI_VERSION {
        return Err(format!(
            "speaks plugin ABI version {abi_version}, this SyncBridge speaks version {ABI_VERSION}; rebuild the plugin against syncbridge-plugin {}",
            env!("CARGO_PKG_VERSION")
        ));
    }
    // SAFETY: the version matched, so the static has the layout of `Declaration`; it lives as
    // long as the library, which is never unloaded (leaked below).
    let vtable: &'static VTableV1 = unsafe { (*declaration).vtable };
    // Never unloaded: Rust libraries leave thread-local destructors behind (see the ABI docs).
    std::mem::forget(library);

    let host = HostV1 { log: host_log };
    let answer = call_raw(vtable, |out| {
        // SAFETY: `load` is the vtable's first call, made once per library (the cache above);
        // `host` and `out` outlive the call.
        unsafe { (vtable.load)(&host, out) }
    });
    let manifest = match answer {
        Answer::Ok(bytes) => serde_json::from_slice::<Manifest>(&bytes)
            .map_err(|e| format!("sent a manifest this SyncBridge cannot read: {e}"))?,
        Answer::Error(error) => return Err(format!("refused to load: {}", error.message)),
        Answer::Panic(message) => return Err(format!("panicked while loading: {message}")),
    };
    tracing::debug!(
        plugin = %manifest.name,
        version = %manifest.version,
        path = %path.display(),
        sources = ?manifest.sources,
        targets = ?manifest.targets,
        "native plugin loaded"
    );
    Ok(Arc::new(NativePlugin {
        path: path.to_owned(),
        manifest,
        vtable,
    }))
}

/// The host's log, as plugins see it.
extern "C" fn host_log(level: u32, target: Str, message: Str) {
    // SAFETY: the plugin passes slices that live for this call.
    let (target, message) = unsafe { (target.as_bytes(), message.as_bytes()) };
    let target = String::from_utf8_lossy(target);
    let message = String::from_utf8_lossy(message);
    match level {
        LOG_ERROR => tracing::error!(plugin_target = %target, "{message}"),
        LOG_WARN => tracing::warn!(plugin_target = %target, "{message}"),
        LOG_INFO => tracing::info!(plugin_target = %target, "{message}"),
        LOG_DEBUG => tracing::debug!(plugin_target = %target, "{message}"),
        _ => tracing::trace!(plugin_target = %target, "{message}"),
    }
}

/// A decoded answer of one ABI call.
enum Answer {
    Ok(Vec<u8>),
    Error(WireError),
    Panic(String),
}

/// Makes one call, copies the answer out and returns the buffer to the plugin.
fn call_raw(vtable: &VTableV1, call: impl FnOnce(*mut Buffer) -> i32) -> Answer {
    let mut buffer = Buffer::EMPTY;
    let status = call(&mut buffer);
    // SAFETY: the plugin filled `buffer` (or left it empty) during the call.
    let bytes = unsafe { buffer.as_bytes() }.to_vec();
    if !buffer.ptr.is_null() {
        // SAFETY: the buffer was filled by this plugin and is returned exactly once.
        unsafe { (vtable.free_buffer)(buffer) };
    }
    match status {
        STATUS_OK => Answer::Ok(bytes),
        STATUS_ERROR => {
            Answer::Error(
                serde_json::from_slice(&bytes).unwrap_or_else(|_| WireError {
                    domain: "internal".to_owned(),
                    retriable: false,
                    retry_after_ms: None,
                    message: format!(
                        "the plugin reported an error this SyncBridge cannot read: {}",
                        String::from_utf8_lossy(&bytes)
                    ),
                    hint: None,
                }),
            )
        }
        STATUS_PANIC => Answer::Panic(String::from_utf8_lossy(&bytes).into_owned()),
        other => Answer::Panic(format!("unknown status {other}")),
    }
}

/// A connector kind for the whole process (`ErasedSource::kind` is `'static`): leaked once when
/// the kind is registered, not once per opened connector.
fn static_kind(kind: &str) -> &'static str {
    Box::leak(kind.to_owned().into_boxed_str())
}

/// Registers the connectors of `plugins` into `registry`. A kind the registry already has (a
/// built-in, or an earlier plugin) is not replaced: the plugin's is skipped with a warning.
pub fn register(registry: &mut Registry, plugins: &[Arc<NativePlugin>]) {
    for plugin in plugins {
        for kind in &plugin.manifest.sources {
            if registry.source(kind).is_ok() {
                tracing::warn!(plugin = %plugin.manifest.name, kind, "a source of this kind exists already; the plugin's is not used");
                continue;
            }
            let plugin = plugin.clone();
            let kind_name = static_kind(kind);
            registry.register_source_factory(
                kind,
                Arc::new(move |config| {
                    let plugin = plugin.clone();
                    Box::pin(async move {
                        let source = NativeSource::open(plugin, kind_name, config).await?;
                        Ok(Box::new(source) as Box<dyn ErasedSource>)
                    })
                }),
            );
        }
        for kind in &plugin.manifest.targets {
            if registry.target(kind).is_ok() {
                tracing::warn!(plugin = %plugin.manifest.name, kind, "a target of this kind exists already; the plugin's is not used");
                continue;
            }
            let plugin = plugin.clone();
            let kind_name = static_kind(kind);
            registry.register_target_factory(
                kind,
                Arc::new(move |config| {
                    let plugin = plugin.clone();
                    Box::pin(async move {
                        let target = NativeTarget::open(plugin, kind_name, config).await?;
                        Ok(Box::new(target) as Box<dyn ErasedTarget>)
                    })
                }),
            );
        }
    }
}

/// Loads every plugin in `dir` and registers the ones that load; refusals are logged as
/// warnings and returned. A missing directory is not an error (there are simply no plugins).
pub fn register_dir(registry: &mut Registry, dir: &Path) -> Vec<Refusal> {
    let results = match scan(dir) {
        Ok(results) => results,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot read the plugin directory");
            return Vec::new();
        }
    };
    let mut plugins = Vec::new();
    let mut refusals = Vec::new();
    for result in results {
        match result {
            Ok(plugin) => plugins.push(plugin),
            Err(refusal) => {
                tracing::warn!(path = %refusal.path.display(), reason = %refusal.reason, "native plugin refused");
                refusals.push(refusal);
            }
        }
    }
    register(registry, &plugins);
    refusals
}

impl NativePlugin {
    /// An error for a call that went wrong on the plugin's side.
    fn failure(&self, what: &str, answer: Answer) -> ConnectorError {
        match answer {
            Answer::Ok(_) => ConnectorError::internal("not a failure"),
            Answer::Error(error) => error.into(),
            Answer::Panic(message) => ConnectorError::internal(format!(
                "plugin `{}` panicked in `{what}`: {message}",
                self.manifest.name
            ))
            .with_hint(format!(
                "this is a bug in the plugin ({}); report it to its authors",
                self.path.display()
            )),
        }
    }
}
