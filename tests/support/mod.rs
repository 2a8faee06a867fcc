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
