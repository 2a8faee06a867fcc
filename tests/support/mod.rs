//! Helpers shared by the end-to-end tests: the binary, the repository root, fresh PostgreSQL
//! databases with the SKIPPED / `SYNCBRIDGE_REQUIRE_SERVICES` convention.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root (tests run with the crate directory as working directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A `syncbridge` command run from the repository root, with a throwaway master key.
pub fn syncbridge() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_syncbridge"));
    command.current_dir(repo_root());
    command.env(
        "SYNCBRIDGE_MASTER_KEY",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    );
    command.env_remove("SYNCBRIDGE_STORE");
    command
}

pub fn run(command: &mut Command) -> Output {
    command.output().expect("the syncbridge binary runs")
}

/// A database created for one test on the local PostgreSQL (shared with the other crates' tests).
#[allow(unused_imports)] // not every test binary needs PostgreSQL
pub use syncbridge_store::testing::PgDatabase;

/// The example WASM guests of `transforms/`, built for `wasm32-wasip2` once per test binary;
/// `None` (after saying why) when the target is missing and services are not required.
pub fn wasm_guests() -> Option<&'static std::path::Path> {
    static BUILT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let manifest = repo_root().join("transforms/Cargo.toml");
            let output = Command::new(env!("CARGO"))
                .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
                .arg(&manifest)
                .output()
                .expect("cargo runs");
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(
                    !syncbridge_store::testing::services_required(),
                    "building the WASM guests failed (run `rustup target add wasm32-wasip2`):\n{stderr}"
                );
                println!("SKIPPED: the WASM guests do not build here (`rustup target add wasm32-wasip2`)");
                return None;
            }
            Some(repo_root().join("transforms/target/wasm32-wasip2/release"))
        })
        .as_deref()
}

/// The `Title` of every item of the emulator's list named `list`, sorted.
pub fn list_titles(
    emulator: &syncbridge_graph_emulator::RunningEmulator,
    list: &str,
) -> Vec<String> {
    let data = emulator.data();
    let mut titles: Vec<String> = data
        .sites
        .iter()
        .flat_map(|s| &s.lists)
        .filter(|l| l.display_name == list)
        .flat_map(|l| l.items.values())
        .filter_map(|item| item.fields.get("Title")?.as_str().map(str::to_owned))
        .collect();
    titles.sort();
    titles
}
