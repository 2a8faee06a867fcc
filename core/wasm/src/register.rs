//! Putting the WASM host into the registry, next to the built-in rules.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use syncbridge_api::{FieldRule, Registry, RuleError, ShardRouter, WasmRef};

use crate::{WasmHost, WasmLimits, WasmRouter, WasmRule};

/// Where modules and compiled artifacts live.
#[derive(Debug, Clone)]
pub struct WasmSettings {
    /// Relative module paths in configs are resolved here.
    pub plugin_dir: PathBuf,
    /// Compiled modules are cached here.
    pub cache_dir: PathBuf,
    pub limits: WasmLimits,
}

impl WasmSettings {
    /// From the environment: `SYNCBRIDGE_PLUGIN_DIR` (default: the working directory),
    /// `SYNCBRIDGE_WASM_CACHE` (default: `$XDG_CACHE_HOME/syncbridge/wasm`, else
    /// `~/.cache/syncbridge/wasm`), and the limits `SYNCBRIDGE_WASM_MEMORY_MB` (64),
    /// `SYNCBRIDGE_WASM_DEADLINE_MS` (1000) and `SYNCBRIDGE_WASM_FUEL` (off). A limit that does
    /// not parse keeps its default, with a warning.
    pub fn from_env() -> Self {
        let plugin_dir = std::env::var_os("SYNCBRIDGE_PLUGIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        let cache_dir = std::env::var_os("SYNCBRIDGE_WASM_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("syncbridge/wasm"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/syncbridge/wasm"))
            })
            .unwrap_or_else(|| std::env::temp_dir().join("syncbridge-wasm"));
        let defaults = WasmLimits::default();
        let limits = WasmLimits {
            memory_bytes: number("SYNCBRIDGE_WASM_MEMORY_MB")
                .map_or(defaults.memory_bytes, |mb| (mb as usize) << 20),
            deadline: number("SYNCBRIDGE_WASM_DEADLINE_MS")
                .map_or(defaults.deadline, std::time::Duration::from_millis),
            fuel_per_call: number("SYNCBRIDGE_WASM_FUEL").or(defaults.fuel_per_call),
        };
        Self {
            plugin_dir,
            cache_dir,
            limits,
        }
    }

    fn module_path(&self, module: &str) -> PathBuf {
        self.plugin_dir.join(Path::new(module))
    }
}

fn number(variable: &str) -> Option<u64> {
    let text = std::env::var(variable).ok()?;
    match text.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            tracing::warn!(variable, value = %text, "not a whole number; keeping the default");
            None
        }
    }
}

/// Registers `wasm:` rules and sharding predicates. The host starts on first use, so a build
/// whose configs use no WASM pays nothing.
pub fn register(registry: &mut Registry, settings: WasmSettings) {
    let settings = Arc::new(settings);
    let host: Arc<OnceLock<Result<WasmHost, String>>> = Arc::new(OnceLock::new());
    let get_host = {
        let settings = settings.clone();
        let host = host.clone();
        move || -> Result<WasmHost, RuleError> {
            host.get_or_init(|| {
                WasmHost::new(&settings.cache_dir, settings.limits).map_err(|e| e.to_string())
            })
            .clone()
            .map_err(RuleError::new)
        }
    };
    let rules = {
        let settings = settings.clone();
        let get_host = get_host.clone();
        Arc::new(
            move |reference: &WasmRef,
                  field: &str,
                  args: &[String]|
                  -> Result<Box<dyn FieldRule>, RuleError> {
                let host = get_host()?;
                let path = settings.module_path(&reference.module);
                WasmRule::new(&host, &path, &reference.function, field, args)
                    .map(|rule| Box::new(rule) as Box<dyn FieldRule>)
                    .map_err(|e| RuleError::new(e.to_string()))
            },
        )
    };
    let routers = Arc::new(
        move |reference: &WasmRef, targets: &[String]| -> Result<Box<dyn ShardRouter>, RuleError> {
            let host = get_host()?;
            let path = settings.module_path(&reference.module);
            WasmRouter::new(&host, &path, &reference.function, targets)
                .map(|router| Box::new(router) as Box<dyn ShardRouter>)
                .map_err(|e| RuleError::new(e.to_string()))
        },
    );
    registry.register_wasm(rules, routers);
}
