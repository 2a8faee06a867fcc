//! `syncbridge plugins check|list`: native connector libraries and WASM modules, as SyncBridge
//! would load them.

use std::path::Path;

use serde::Serialize;
use syncbridge_wasm::{PluginKind, WasmHost, WasmRouter, WasmRule, WasmSettings};

use crate::cli::{GlobalArgs, PluginsArgs, PluginsCommand};
use crate::commands::print_json;
use crate::exit::{CliError, Exit};

#[derive(Debug, Serialize)]
struct Module {
    path: String,
    world: Option<String>,
    sha256: Option<String>,
    error: Option<String>,
}

pub fn run(global: &GlobalArgs, args: &PluginsArgs) -> Result<Exit, CliError> {
    let settings = WasmSettings::from_env();
    let host = WasmHost::new(&settings.cache_dir, settings.limits)
        .map_err(|e| CliError::internal(e.to_string()))?;
    match &args.command {
        PluginsCommand::Check { file, function } => {
            let module = check(&host, file, function.as_deref());
            let ok = module.error.is_none();
            if global.json {
                print_json(&module)?;
            } else if let Some(error) = &module.error {
                eprintln!("error: {error}");
            } else {
                println!(
                    "{}: {} module, sha256 {}, self-test passed{}",
                    module.path,
                    module.world.as_deref().unwrap_or("?"),
                    module.sha256.as_deref().unwrap_or("?"),
                    function
                        .as_deref()
                        .map(|f| format!(", function `{f}` accepted"))
                        .unwrap_or_default()
                );
            }
            Ok(if ok { Exit::Ok } else { Exit::BadInput })
        }
        PluginsCommand::List { dir } => {
            let dir = dir.clone().unwrap_or_else(|| settings.plugin_dir.clone());
            list(global, &host, &dir)
        }
    }
}

/// A native plugin library, as `plugins list` reports it.
#[derive(Debug, Serialize)]
struct Library {
    path: String,
    name: Option<String>,
    version: Option<String>,
    abi_version: Option<u32>,
    sources: Vec<String>,
    targets: Vec<String>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Listing {
    directory: String,
    native: Vec<Library>,
    wasm: Vec<Module>,
}

fn list(global: &GlobalArgs, host: &WasmHost, dir: &Path) -> Result<Exit, CliError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        CliError::bad_input(format!(
            "cannot read the plugin directory {} ({e}); set SYNCBRIDGE_PLUGIN_DIR or pass --dir",
            dir.display()
        ))
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let native: Vec<Library> = paths
        .iter()
        .filter(|p| syncbridge_native::is_library_name(p))
        .map(|p| match syncbridge_native::load(p) {
            Ok(plugin) => Library {
                path: p.display().to_string(),
                name: Some(plugin.manifest.name.clone()),
                version: Some(plugin.manifest.version.clone()),
                abi_version: Some(syncbridge_native::ABI_VERSION),
                sources: plugin.manifest.sources.clone(),
                targets: plugin.manifest.targets.clone(),
                error: None,
            },
            Err(refusal) => Library {
                path: p.display().to_string(),
                name: None,
                version: None,
                abi_version: None,
                sources: Vec::new(),
                targets: Vec::new(),
                error: Some(refusal.reason),
            },
        })
        .collect();
    let wasm: Vec<Module> = paths
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .map(|p| check(host, p, None))
        .collect();
    let all_loaded =
        native.iter().all(|l| l.error.is_none()) && wasm.iter().all(|m| m.error.is_none());
    if global.json {
        print_json(&Listing {
            directory: dir.display().to_string(),
            native,
            wasm,
        })?;
    } else if native.is_empty() && wasm.is_empty() {
        println!(
            "no plugins in {} (native: .so/.dylib/.dll, WASM: .wasm)",
            dir.display()
        );
    } else {
        if !native.is_empty() {
            println!(
                "native connector plugins (ABI version {}):",
                syncbridge_native::ABI_VERSION
            );
            for library in &native {
                let file = file_name(&library.path);
                match &library.error {
                    None => {
                        let provides: Vec<String> = library
                            .sources
                            .iter()
                            .map(|k| format!("source `{k}`"))
                            .chain(library.targets.iter().map(|k| format!("target `{k}`")))
                            .collect();
                        println!(
                            "  {} {} (ABI {}) provides {}  [{file}]",
                            library.name.as_deref().unwrap_or("?"),
                            library.version.as_deref().unwrap_or("?"),
                            library.abi_version.unwrap_or_default(),
                            if provides.is_empty() {
                                "nothing".to_owned()
                            } else {
                                provides.join(", ")
                            }
                        );
                    }
                    Some(error) => println!("  {file}: refused: {error}"),
                }
            }
        }
        if !wasm.is_empty() {
            println!("WASM modules:");
            for module in &wasm {
                let file = file_name(&module.path);
                match &module.error {
                    None => println!(
                        "  {file} {} sha256 {}",
                        module.world.as_deref().unwrap_or("?"),
                        module.sha256.as_deref().unwrap_or("?")
                    ),
                    Some(error) => println!("  {file}: refused: {error}"),
                }
            }
        }
    }
    Ok(if all_loaded { Exit::Ok } else { Exit::Failures })
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_owned())
}

fn check(host: &WasmHost, path: &Path, function: Option<&str>) -> Module {
    let mut module = Module {
        path: path.display().to_string(),
        world: None,
        sha256: None,
        error: None,
    };
    let plugin = match host.load(path) {
        Ok(plugin) => plugin,
        Err(error) => {
            module.error = Some(error.to_string());
            return module;
        }
    };
    module.world = Some(
        match plugin.kind {
            PluginKind::Transform => "transform",
            PluginKind::Shard => "shard",
        }
        .to_owned(),
    );
    module.sha256 = Some(plugin.hash.clone());
    if let Err(failure) = host.self_test(&plugin) {
        module.error = Some(format!(
            "{}: its self-test failed: {failure}",
            path.display()
        ));
        return module;
    }
    if let Some(function) = function {
        let accepted = match plugin.kind {
            PluginKind::Transform => WasmRule::new(host, path, function, "value", &[]).map(|_| ()),
            PluginKind::Shard => WasmRouter::new(host, path, function, &[]).map(|_| ()),
        };
        if let Err(error) = accepted {
            module.error = Some(error.to_string());
        }
    }
    module
}
