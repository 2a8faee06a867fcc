//! `syncbridge plugins check|list`: WASM modules, as the engine would load them.

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
        PluginsCommand::List => {
            let dir = &settings.plugin_dir;
            let entries = std::fs::read_dir(dir).map_err(|e| {
                CliError::bad_input(format!(
                    "cannot read the plugin directory {} ({e}); set SYNCBRIDGE_PLUGIN_DIR",
                    dir.display()
                ))
            })?;
            let mut paths: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect();
            paths.sort();
            let modules: Vec<Module> = paths.iter().map(|p| check(&host, p, None)).collect();
            if global.json {
                print_json(&modules)?;
            } else if modules.is_empty() {
                println!("no .wasm modules in {}", dir.display());
            } else {
                for module in &modules {
                    match &module.error {
                        None => println!(
                            "{:<40} {:<10} {}",
                            module.path,
                            module.world.as_deref().unwrap_or("?"),
                            module.sha256.as_deref().unwrap_or("?")
                        ),
                        Some(error) => println!("{:<40} refused: {error}", module.path),
                    }
                }
            }
            Ok(if modules.iter().all(|m| m.error.is_none()) {
                Exit::Ok
            } else {
                Exit::Failures
            })
        }
    }
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
