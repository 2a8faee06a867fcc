//! SyncBridge's declarative configuration: the file format, its JSON Schema, validation with
//! errors that name the place and the fix, and `apply` into the meta-store.
//!
//! A config file describes *what should exist* (applications, databases and their instances,
//! SharePoint connections, sites and lists, sync definitions with keys, cursors, targets and
//! mappings). Applying it is idempotent: the meta-store is changed only where it differs, every
//! change is written to the audit log, and a second apply reports that nothing changed.

mod load;
pub mod model;
mod secret_ref;
mod validate;

pub use load::{ConfigError, Problem, load_file, load_str};
pub use model::Config;
pub use secret_ref::{SECRET_FIELDS, SecretRef};
pub use validate::{HASHED_NEEDS_FULL_SCAN, KEY_COLUMN, Known, SYSTEM_FIELDS};

/// The JSON Schema of the config file format, for editors and CI checks.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default()
}

pub mod apply;
