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

fn services_required() -> bool {
    std::env::var("SYNCBRIDGE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// A database created for one test on the local PostgreSQL, dropped when the test ends.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    /// Creates `sbtest_<prefix>_<random>`; `None` (after printing SKIPPED) when PostgreSQL is not
    /// reachable and services are not required.
    pub fn create(prefix: &str) -> Option<Self> {
        let name = format!("sbtest_{prefix}_{}", uuid::Uuid::new_v4().simple());
        let output = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!("CREATE DATABASE \"{name}\""))
            .output();
        match output {
            Ok(output) if output.status.success() => Some(Self {
                url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                name,
            }),
            other => {
                let why = match other {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                    Err(error) => error.to_string(),
                };
                assert!(
                    !services_required(),
                    "PostgreSQL on 127.0.0.1:5432 is required: {why}"
                );
                println!("SKIPPED: PostgreSQL on 127.0.0.1:5432 is not reachable: {why}");
                None
            }
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .output();
    }
}
