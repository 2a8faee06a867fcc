//! One module per subcommand.

pub mod apply;
pub mod dlq;
pub mod emulator;
pub mod migrate;
pub mod plugins;
pub mod quickstart;
pub mod run;
pub mod schema;
pub mod status;

use syncbridge_store::Store;

use crate::cli::GlobalArgs;
use crate::exit::{CliError, Exit};

/// Opens the meta-store named by `--store`, mapping failures to exit codes: a malformed URL is
/// bad input (2), an unreachable server is a dependency failure (3).
pub async fn open_store(global: &GlobalArgs) -> Result<Store, CliError> {
    Store::connect(&global.store).await.map_err(store_error)
}

/// Opens the meta-store and brings its schema up to date.
pub async fn open_migrated_store(global: &GlobalArgs) -> Result<Store, CliError> {
    let store = open_store(global).await?;
    store.migrate().await.map_err(store_error)?;
    Ok(store)
}

pub fn store_error(error: syncbridge_store::StoreError) -> CliError {
    let exit = if error.is_unreachable() {
        Exit::Unreachable
    } else if error.is_bad_input() {
        Exit::BadInput
    } else {
        Exit::Internal
    };
    CliError::new(exit, error.to_string())
}

/// Prints `value` as one line of JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string(value)
        .map_err(|e| CliError::internal(format!("cannot encode the result as JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// The connector kinds and rule names this build knows, for config validation.
pub fn known_names() -> syncbridge_config::Known {
    let registry = crate::registry::builtin();
    syncbridge_config::Known {
        source_kinds: registry.source_kinds(),
        target_kinds: registry.target_kinds(),
        rule_names: registry.rule_names(),
    }
}
