//! The one place built-in connectors and rules are registered. Native plugins and WASM modules
//! are added to the same registry when they load.

use syncbridge_api::Registry;

/// Everything this build ships.
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    registry.register_source::<syncbridge_postgres::PostgresSource>();
    registry.register_source::<syncbridge_sqlite::SqliteSource>();
    registry.register_source::<syncbridge_mysql::MySqlSource>();
    registry.register_target::<syncbridge_sharepoint::SharePointTarget>();
    syncbridge_engine::rules::register_builtin_rules(&mut registry);
    syncbridge_wasm::register(&mut registry, syncbridge_wasm::WasmSettings::from_env());
    registry
}
