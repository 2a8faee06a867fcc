//! Reading a config file: YAML or JSON → interpolated JSON tree → typed [`Config`] → validated.
//!
//! YAML goes through `serde-saphyr` (pure Rust, panic-free, maintained; `serde_yaml` is deprecated
//! and `unsafe-libyaml` unmaintained) into a `serde_json::Value`, so both formats share one path
//! from there on and every error can name its place as a JSON path (`syncs[2].mappings[0].direction`)
//! through `serde_path_to_error`.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::Config;
use crate::secret_ref::{SECRET_FIELDS, interpolate};
use crate::validate::{Known, validate};

/// One thing wrong with a config file: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path inside the file (`syncs[0].cursor.column`), empty for the whole file.
    pub path: String,
    pub message: String,
    pub fix: Option<String>,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            fix: None,
        }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// A config file that cannot be used, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(
            f,
            "{} has {count} problem{}",
            self.file.display(),
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            let place = if problem.path.is_empty() {
                "(file)"
            } else {
                &problem.path
            };
            write!(f, "\n  {place}: {}", problem.message)?;
            if let Some(fix) = &problem.fix {
                write!(f, "\n    fix: {fix}")?;
            }
        }
        Ok(())
    }
}

/// Loads, interpolates, parses and validates a config file.
///
/// `known` lists the connector kinds and rule names that exist, so a typo is caught here rather
/// than at run time.
pub fn load_file(path: &Path, known: &Known) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
        file: path.to_owned(),
        problems: vec![
            Problem::new("", format!("cannot read the file: {error}"))
                .fix("check the path given to -f"),
        ],
    })?;
    load_str(&text, path, known)
}

/// Like [`load_file`], for text already in memory; `path` is used for messages and to pick the
/// format (`.json` is JSON, anything else YAML, which also accepts JSON).
pub fn load_str(text: &str, path: &Path, known: &Known) -> Result<Config, ConfigError> {
    let fail = |problems| ConfigError {
        file: path.to_owned(),
        problems,
    };
    let is_json = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    let mut tree: serde_json::Value = if is_json {
        serde_json::from_str(text)
            .map_err(|error| fail(vec![Problem::new("", format!("not valid JSON: {error}"))]))?
    } else {
        serde_saphyr::from_str(text)
            .map_err(|error| fail(vec![Problem::new("", format!("not valid YAML: {error}"))]))?
    };
    if tree.is_null() {
        return Err(fail(vec![
            Problem::new("", "the file is empty").fix("start from `examples/local-emulator.yaml`"),
        ]));
    }

    let mut problems = Vec::new();
    interpolate(&mut tree, "", SECRET_FIELDS, &mut problems);
    if !problems.is_empty() {
        return Err(fail(problems));
    }

    let config: Config = serde_path_to_error::deserialize(tree).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = error.into_inner().to_string();
        let fix = fix_for_serde_message(&message);
        let mut problem = Problem::new(path, message);
        if let Some(fix) = fix {
            problem = problem.fix(fix);
        }
        fail(vec![problem])
    })?;

    let problems = validate(&config, known);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(fail(problems))
    }
}

/// Turns serde's wording into advice.
fn fix_for_serde_message(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some("remove the key or correct its spelling (`syncbridge schema` lists every key)".into())
    } else if message.starts_with("unknown variant") {
        Some("use one of the values listed".into())
    } else if message.starts_with("missing field") {
        Some("add the field; `syncbridge schema` documents it".into())
    } else if message.starts_with("invalid type") {
        Some("change the value to the expected type".into())
    } else {
        None
    }
}
