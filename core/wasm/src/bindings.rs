//! Host bindings generated from `plugins-sdk/wit` (one module per world; the shard world reuses
//! the transform world's shared interfaces).

pub mod transform {
    wasmtime::component::bindgen!({
        path: "../../plugins-sdk/wit",
        world: "transform",
    });
}

pub mod shard {
    wasmtime::component::bindgen!({
        path: "../../plugins-sdk/wit",
        world: "shard",
        with: {
            "syncbridge:plugin/types": super::transform::syncbridge::plugin::types,
            "syncbridge:plugin/host": super::transform::syncbridge::plugin::host,
        },
    });
}

pub use transform::syncbridge::plugin::types::{ErrorKind, Field, RowError, Timestamptz, Value};
