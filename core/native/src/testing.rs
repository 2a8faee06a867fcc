//! Builds the workspace's plugin crates for tests and says where the libraries are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `packages` (cdylib crates of this workspace) with the cargo running the tests and
/// returns each package's dynamic library. Panics with cargo's output when the build fails.
pub fn build_plugins(packages: &[&str]) -> HashMap<String, PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = workspace_root();
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args(["build", "--message-format=json-render-diagnostics"]);
    for package in packages {
        command.args(["-p", package]);
    }
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "building {packages:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut libraries = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact"
            || !message["target"]["crate_types"]
                .as_array()
                .is_some_and(|types| types.iter().any(|t| t == "cdylib"))
        {
            continue;
        }
        let name = message["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .replace('_', "-");
        let library = message["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .map(PathBuf::from)
            .find(|path| crate::is_library_name(path));
        if let Some(library) = library {
            libraries.insert(name, library);
        }
    }
    for package in packages {
        assert!(
            libraries.contains_key(*package),
            "cargo built no dynamic library for {package}"
        );
    }
    libraries
}

/// The workspace's root directory (where `Cargo.lock` is).
pub fn workspace_root() -> PathBuf {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    while !dir.join("Cargo.lock").exists() {
        if !dir.pop() {
            panic!("no Cargo.lock above {}", env!("CARGO_MANIFEST_DIR"));
        }
    }
    dir
}
