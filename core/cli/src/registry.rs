//! The one place built-in connectors and rules are registered. Native plugins (from
//! `SYNCBRIDGE_PLUGIN_DIR`) and WASM modules are added to the same registry.

use syncbridge_api::Registry;

/// Everything this build ships.
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    registry.register_source::<syncbridge_postgres::PostgresSource>();
    registry.register_source::<syncbridge_sqlite::SqliteSource>();
    registry.register_source::<syncbridge_mysql::MySqlSource>();
    registry.register_source::<syncbridge_sqlserver::SqlServerSource>();
    registry.register_target::<syncbridge_sharepoint::SharePointTarget>();
    syncbridge_engine::rules::register_builtin_rules(&mut registry);
    syncbridge_wasm::register(&mut registry, syncbridge_wasm::WasmSettings::from_env());
    // Native plugins only from a directory the operator named: loading a library runs its code.
    // A refused library is logged (path and reason) and the rest of SyncBridge goes on.
    if let Some(dir) = std::env::var_os("SYNCBRIDGE_PLUGIN_DIR") {
        syncbridge_native::register_dir(&mut registry, std::path::Path::new(&dir));
    }
    registry
}
