//! The WASM host: transform rules (`wasm:MODULE#FUNCTION` in a mapping) and sharding predicates
//! (`sharding: wasm:MODULE#FUNCTION` in a sync) run as WebAssembly components that implement the
//! `syncbridge:plugin@0.1.0` worlds (`plugins-sdk/wit/syncbridge.wit`).
//!
//! What a guest can do is bounded by default:
//! - **memory**: each instance's linear memory is capped (64 MiB unless configured); growing
//!   past it traps;
//! - **time**: each call has a wall-clock deadline (1 s unless configured), enforced with
//!   wasmtime's epoch interruption and a ticker thread;
//! - **capabilities**: WASI is linked with an empty context — no files, no environment, no
//!   sockets, stdio discarded; a guest logs through the `host.log` import.
//!
//! A trap (panic, deadline, memory cap) costs the row being processed, never the run: the
//! instance is dropped, the row is reported as failed with the reason, and the next call gets a
//! fresh instance. Modules are compiled once and cached on disk by content hash and wasmtime
//! version (only artifacts this host wrote are ever loaded back); a module whose file changed is
//! compiled again on its next load.

mod bindings;
mod convert;
mod host;
mod module;
mod register;
mod router;
mod rule;

pub use host::{Plugin, PluginKind, WasmError, WasmHost, WasmLimits};
pub use register::{WasmSettings, register};
pub use router::WasmRouter;
pub use rule::WasmRule;
