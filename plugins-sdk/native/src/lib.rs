//! Native SyncBridge plugins: source and target connectors in a dynamic library that SyncBridge
//! loads at run time, without being rebuilt.
//!
//! A plugin implements the ordinary [`api::Source`] and [`api::Target`] traits, exactly as the
//! built-in connectors do, and exports them with one macro:
//!
//! ```ignore
//! use syncbridge_plugin::api::{ConnectorError, Source /* … */};
//!
//! pub struct CsvSource { /* … */ }
//! impl Source for CsvSource { /* KIND = "csv", connect, introspect, read … */ }
//!
//! syncbridge_plugin::declare_source_plugin!(CsvSource);
//! ```
//!
//! and a `Cargo.toml` with `crate-type = ["cdylib"]`. The library goes into the plugin directory
//! (`SYNCBRIDGE_PLUGIN_DIR`); `syncbridge plugins list` shows it, and configs name its kind
//! (`databases[].type: csv`).
//!
//! Under the macro lies a small C ABI ([`abi`]) carrying JSON ([`wire`]); the host side lives in
//! SyncBridge. What the SDK takes care of, so a plugin does not have to:
//! - **Panics** are caught at every entry point and reported as errors naming the plugin.
//! - **Async**: the plugin gets its own tokio runtime (two worker threads); the host calls it from
//!   blocking threads, so a plugin's `async fn`s run as they would in a built-in connector.
//! - **Memory**: answers are freed by the plugin that allocated them.
//! - **Logs**: `tracing` events are forwarded to SyncBridge's log.
//!
//! A plugin crate must not `forbid(unsafe_code)`: the exported static needs `#[no_mangle]`.

pub mod abi;
mod export;
pub mod log;
pub mod wire;

pub use export::{PluginSpec, panic_message, vtable};
/// The connector traits and types, re-exported so a plugin needs only this crate.
pub use syncbridge_api as api;

/// Exports connectors as a SyncBridge plugin. Use once per library.
///
/// ```ignore
/// syncbridge_plugin::declare_plugin! {
///     name: "files",                       // shown by `syncbridge plugins list`
///     version: env!("CARGO_PKG_VERSION"),
///     sources: [CsvSource],                // optional
///     targets: [JsonlTarget],              // optional
///     on_load: || Ok(()),                  // optional check run when SyncBridge loads the library
/// }
/// ```
#[macro_export]
macro_rules! declare_plugin {
    (
        name: $name:expr,
        version: $version:expr
        $(, sources: [$($source:ty),* $(,)?])?
        $(, targets: [$($target:ty),* $(,)?])?
        $(, on_load: $on_load:expr)?
        $(,)?
    ) => {
        #[doc(hidden)]
        pub struct __SyncbridgePlugin;

        impl $crate::PluginSpec for __SyncbridgePlugin {
            const NAME: &'static str = $name;
            const VERSION: &'static str = $version;

            fn register(registry: &mut $crate::api::Registry) {
                let _ = &registry;
                $($(registry.register_source::<$source>();)*)?
                $($(registry.register_target::<$target>();)*)?
            }

            $(
                fn on_load() -> ::std::result::Result<(), $crate::api::ConnectorError> {
                    ($on_load)()
                }
            )?
        }

        #[doc(hidden)]
        static __SYNCBRIDGE_VTABLE: $crate::abi::VTableV1 = $crate::vtable::<__SyncbridgePlugin>();

        /// The declaration SyncBridge reads first (see `syncbridge_plugin::abi`).
        #[allow(unsafe_code, non_upper_case_globals)]
        #[unsafe(no_mangle)]
        pub static syncbridge_plugin_declaration: $crate::abi::Declaration =
            $crate::abi::Declaration {
                abi_version: $crate::abi::ABI_VERSION,
                vtable: &__SYNCBRIDGE_VTABLE,
            };
    };
}

/// Exports one source connector as a plugin named after the crate.
#[macro_export]
macro_rules! declare_source_plugin {
    ($source:ty) => {
        $crate::declare_plugin! {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            sources: [$source],
        }
    };
}

/// Exports one target connector as a plugin named after the crate.
#[macro_export]
macro_rules! declare_target_plugin {
    ($target:ty) => {
        $crate::declare_plugin! {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            targets: [$target],
        }
    };
}
