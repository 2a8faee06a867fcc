//! What a rule or a router runs: the loaded module, its instance, and when its file was last
//! seen — loaded once, and loaded again between batches when the file changes.

use std::path::Path;
use std::sync::Arc;

use crate::host::{Plugin, PluginKind, WasmError, WasmHost};

/// How a rule or router turns a loaded module into a running instance.
pub(crate) trait Starter {
    /// The module with its imports resolved (cheap to instantiate again).
    type Pre: Clone;
    /// A running instance.
    type Live;
    const KIND: PluginKind;
    fn prepare(host: &WasmHost, plugin: &Plugin) -> Result<Self::Pre, WasmError>;
    /// Instantiates and runs `init`.
    fn start(&self, plugin: &Plugin, pre: &Self::Pre) -> Result<Self::Live, String>;
}

pub(crate) struct Module<S: Starter> {
    pub plugin: Arc<Plugin>,
    pub pre: S::Pre,
    stamp: Option<FileStamp>,
    /// `None` after a trap: the next call starts a fresh instance.
    pub live: Option<S::Live>,
}

impl<S: Starter> Module<S> {
    /// Loads the module and starts it once, so a bad module or configuration fails before any
    /// row moves.
    pub fn load(host: &WasmHost, path: &Path, starter: &S) -> Result<Self, WasmError> {
        let stamp = FileStamp::of(path);
        let plugin = host.load(path)?;
        if plugin.kind != S::KIND {
            return Err(WasmError::WrongKind {
                path: path.to_owned(),
                found: plugin.kind,
                wanted: S::KIND,
            });
        }
        let pre = S::prepare(host, &plugin)?;
        let live = starter
            .start(&plugin, &pre)
            .map_err(|reason| WasmError::Instantiate {
                path: path.to_owned(),
                reason,
            })?;
        Ok(Self {
            plugin,
            pre,
            stamp,
            live: Some(live),
        })
    }

    /// Between batches: when the file changed, load it; the next batch runs the new module.
    /// A file that does not load (say, half copied) keeps the working module, with a warning.
    pub fn refresh(&mut self, host: &WasmHost, path: &Path, starter: &S) {
        let stamp = FileStamp::of(path);
        if stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        match host.load(path) {
            Ok(plugin) if plugin.hash == self.plugin.hash => return,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(module = %path.display(), error = %error, "WASM module changed but cannot be used; keeping the one loaded");
                return;
            }
        }
        match Self::load(host, path, starter) {
            Ok(fresh) => {
                tracing::info!(module = %path.display(), hash = %&fresh.plugin.hash[..12], "WASM module changed; the next batch runs the new one");
                *self = fresh;
            }
            Err(error) => {
                tracing::warn!(module = %path.display(), error = %error, "WASM module changed but cannot be used; keeping the one loaded");
            }
        }
    }

    /// The running instance, started afresh if the last one trapped.
    pub fn live(&mut self, starter: &S) -> Result<&mut S::Live, String> {
        if self.live.is_none() {
            self.live = Some(starter.start(&self.plugin, &self.pre)?);
        }
        self.live
            .as_mut()
            .ok_or_else(|| "the WASM instance is gone".to_owned())
    }
}

/// What tells a changed file without reading it: modification time and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(Self {
            modified: metadata.modified().ok(),
            len: metadata.len(),
        })
    }
}
