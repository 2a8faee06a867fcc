//! The plugin side of the ABI: the `extern "C"` functions [`crate::declare_plugin!`] exports.
//!
//! Each entry point catches panics (a panic unwinding into the host would abort it), decodes its
//! JSON request, runs the connector's ordinary `async fn` on the plugin's own tokio runtime and
//! encodes the answer into a [`Buffer`] the host later hands back to [`free_buffer`].

use std::collections::HashMap;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use futures::StreamExt as _;
use serde::Serialize;
use syncbridge_api::{BatchStream, ConnectorError, ErasedSource, ErasedTarget, Registry, TableRef};

use crate::abi::{
    Buffer, HostV1, ROLE_SOURCE, ROLE_TARGET, STATUS_ERROR, STATUS_OK, STATUS_PANIC, Str, VTableV1,
};
use crate::wire::{
    Manifest, SourceCall, TargetCall, WireBatch, WireError, WireWriteBackOutcome, WireWriteOutcome,
};

/// What [`crate::declare_plugin!`] knows about the plugin; implemented by the macro.
pub trait PluginSpec: 'static {
    const NAME: &'static str;
    const VERSION: &'static str;
    /// Registers the plugin's connectors (the macro lists them).
    fn register(registry: &mut Registry);
    /// Runs once when the host loads the library, before anything else.
    fn on_load() -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// The plugin's state, built by `load`.
struct Plugin {
    registry: Registry,
    runtime: tokio::runtime::Runtime,
}

static PLUGIN: OnceLock<Plugin> = OnceLock::new();

/// The table of entry points for `P`; the macro puts it in a static.
pub const fn vtable<P: PluginSpec>() -> VTableV1 {
    VTableV1 {
        load: load::<P>,
        open,
        call,
        close,
        free_buffer,
    }
}

/// Writes `bytes` into `out`.
///
/// # Safety
/// `out` must be valid for writes (the host passes a pointer to its own `Buffer`).
unsafe fn answer(out: *mut Buffer, status: i32, bytes: Vec<u8>) -> i32 {
    if !out.is_null() {
        // SAFETY: `out` points to a live `Buffer` of the caller (caller's promise).
        unsafe { out.write(Buffer::from_vec(bytes)) };
    }
    status
}

/// Runs `body`, turning its result or panic into a status and an answer.
///
/// # Safety
/// `out` must be valid for writes.
unsafe fn guarded<T: Serialize>(
    out: *mut Buffer,
    body: impl FnOnce() -> Result<T, ConnectorError>,
) -> i32 {
    let (status, bytes) = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => match serde_json::to_vec(&value) {
            Ok(bytes) => (STATUS_OK, bytes),
            Err(error) => (
                STATUS_ERROR,
                error_bytes(&ConnectorError::internal(format!(
                    "the plugin could not encode its answer: {error}"
                ))),
            ),
        },
        Ok(Err(error)) => (STATUS_ERROR, error_bytes(&error)),
        Err(panic) => (STATUS_PANIC, panic_message(&*panic).into_bytes()),
    };
    // SAFETY: forwarded from the caller.
    unsafe { answer(out, status, bytes) }
}

fn error_bytes(error: &ConnectorError) -> Vec<u8> {
    serde_json::to_vec(&WireError::from(error)).unwrap_or_else(|_| b"{}".to_vec())
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ConnectorError> {
    serde_json::from_slice(bytes).map_err(|error| {
        ConnectorError::internal(format!(
            "the plugin could not decode the host's {what}: {error}"
        ))
        .with_hint("the host and the plugin disagree on the wire format; rebuild the plugin against this SyncBridge's SDK")
    })
}

fn plugin() -> Result<&'static Plugin, ConnectorError> {
    PLUGIN
        .get()
        .ok_or_else(|| ConnectorError::internal("the plugin was called before it was loaded"))
}

unsafe extern "C" fn load<P: PluginSpec>(host: *const HostV1, out: *mut Buffer) -> i32 {
    // SAFETY: the host passes a valid `HostV1` (or null) and a writable `out`.
    let host = unsafe { host.as_ref() }.copied();
    // SAFETY: `out` is the host's buffer.
    unsafe {
        guarded(out, || {
            if let Some(host) = host {
                crate::log::install(host, P::NAME);
                // A panic is reported to the caller as an error; its message goes to the host's
                // log rather than straight to stderr.
                std::panic::set_hook(Box::new(|info| {
                    tracing::error!(target: "panic", "{info}");
                }));
            }
            P::on_load()?;
            let mut registry = Registry::new();
            P::register(&mut registry);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(format!("plugin-{}", P::NAME))
                .enable_all()
                .build()
                .map_err(|error| {
                    ConnectorError::internal(format!("the plugin's runtime did not start: {error}"))
                })?;
            let manifest = Manifest {
                name: P::NAME.to_owned(),
                version: P::VERSION.to_owned(),
                sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
                sources: registry.source_kinds(),
                targets: registry.target_kinds(),
            };
            // A second `load` (the host never does this) keeps the first state.
            let _ = PLUGIN.set(Plugin { registry, runtime });
            Ok(manifest)
        })
    }
}

/// An open connector and the reads in progress on it.
enum Instance {
    Source {
        source: Box<dyn ErasedSource>,
        streams: Mutex<HashMap<u64, BatchStream>>,
        next_stream: AtomicU64,
    },
    Target(Box<dyn ErasedTarget>),
}

unsafe extern "C" fn open(
    role: u32,
    kind: Str,
    config: Str,
    instance: *mut *mut c_void,
    out: *mut Buffer,
) -> i32 {
    // SAFETY: the host passes slices that live for this call and writable pointers.
    unsafe {
        let kind = kind.as_bytes();
        let config = config.as_bytes();
        guarded(out, || {
            let plugin = plugin()?;
            let kind = std::str::from_utf8(kind)
                .map_err(|_| ConnectorError::internal("the connector kind is not UTF-8"))?;
            let config: serde_json::Value = decode(config, "configuration")?;
            let opened = match role {
                ROLE_SOURCE => {
                    let factory = plugin
                        .registry
                        .source(kind)
                        .map_err(|e| ConnectorError::user(e.to_string()))?;
                    Instance::Source {
                        source: plugin.runtime.block_on(factory(config))?,
                        streams: Mutex::new(HashMap::new()),
                        next_stream: AtomicU64::new(1),
                    }
                }
                ROLE_TARGET => {
                    let factory = plugin
                        .registry
                        .target(kind)
                        .map_err(|e| ConnectorError::user(e.to_string()))?;
                    Instance::Target(plugin.runtime.block_on(factory(config))?)
                }
                other => {
                    return Err(ConnectorError::internal(format!("unknown role {other}")));
                }
            };
            instance.write(Box::into_raw(Box::new(opened)).cast());
            Ok(())
        })
    }
}

unsafe extern "C" fn call(instance: *mut c_void, request: Str, out: *mut Buffer) -> i32 {
    // SAFETY: `instance` came from `open` and is not closed (the host's promise); `request`
    // lives for this call; `out` is writable.
    unsafe {
        let instance = &*instance.cast::<Instance>();
        let request = request.as_bytes();
        guarded(out, || {
            let plugin = plugin()?;
            match instance {
                Instance::Source {
                    source,
                    streams,
                    next_stream,
                } => {
                    let call: SourceCall = decode(request, "source call")?;
                    source_call(plugin, source.as_ref(), streams, next_stream, call)
                }
                Instance::Target(target) => {
                    let call: TargetCall = decode(request, "target call")?;
                    target_call(plugin, target.as_ref(), call)
                }
            }
        })
    }
}

fn json(value: impl Serialize) -> Result<serde_json::Value, ConnectorError> {
    serde_json::to_value(value).map_err(|error| {
        ConnectorError::internal(format!("the plugin could not encode its answer: {error}"))
    })
}

fn source_call(
    plugin: &Plugin,
    source: &dyn ErasedSource,
    streams: &Mutex<HashMap<u64, BatchStream>>,
    next_stream: &AtomicU64,
    call: SourceCall,
) -> Result<serde_json::Value, ConnectorError> {
    let runtime = &plugin.runtime;
    let lock = || {
        streams
            .lock()
            .map_err(|_| ConnectorError::internal("the plugin's stream table is poisoned"))
    };
    match call {
        SourceCall::Healthcheck => json(runtime.block_on(source.healthcheck())?),
        SourceCall::Introspect { tables } => {
            let tables: Option<&[TableRef]> = tables.as_deref();
            json(runtime.block_on(source.introspect(tables))?)
        }
        SourceCall::Read { request } => {
            let stream = runtime.block_on(source.read(request))?;
            let id = next_stream.fetch_add(1, Ordering::Relaxed);
            lock()?.insert(id, stream);
            json(id)
        }
        SourceCall::Next { stream: id } => {
            // Taken out of the table while it is polled, so reads on other streams go on.
            let mut stream = lock()?.remove(&id).ok_or_else(|| {
                ConnectorError::internal(format!("no open stream {id} in the plugin"))
            })?;
            match runtime.block_on(stream.next()) {
                Some(Ok(batch)) => {
                    let batch = WireBatch::try_from(batch)?;
                    lock()?.insert(id, stream);
                    json(batch)
                }
                Some(Err(error)) => Err(error),
                None => json(None::<WireBatch>),
            }
        }
        SourceCall::CloseStream { stream } => {
            lock()?.remove(&stream);
            json(())
        }
        SourceCall::Acknowledge { request, position } => {
            json(runtime.block_on(source.acknowledge(&request, &position))?)
        }
        SourceCall::Release { request } => json(runtime.block_on(source.release(&request))?),
        SourceCall::WriteBack { changes } => {
            let outcomes = runtime.block_on(source.write_back(changes))?;
            json(
                outcomes
                    .into_iter()
                    .map(WireWriteBackOutcome::from)
                    .collect::<Vec<_>>(),
            )
        }
    }
}

fn target_call(
    plugin: &Plugin,
    target: &dyn ErasedTarget,
    call: TargetCall,
) -> Result<serde_json::Value, ConnectorError> {
    let runtime = &plugin.runtime;
    match call {
        TargetCall::Healthcheck => json(runtime.block_on(target.healthcheck())?),
        TargetCall::Location => json(target.location()),
        TargetCall::Discover => json(runtime.block_on(target.discover())?),
        TargetCall::Provision { spec } => json(runtime.block_on(target.provision(&spec))?),
        TargetCall::Write { collection, ops } => {
            let outcomes = runtime.block_on(target.write(&collection, ops))?;
            json(
                outcomes
                    .into_iter()
                    .map(WireWriteOutcome::from)
                    .collect::<Vec<_>>(),
            )
        }
        TargetCall::FindByKey {
            collection,
            key_field,
            key,
        } => json(runtime.block_on(target.find_by_key(&collection, &key_field, &key))?),
        TargetCall::ReadChanges { collection, from } => {
            json(runtime.block_on(target.read_changes(&collection, from))?)
        }
        TargetCall::ListKeys {
            collection,
            key_field,
        } => json(runtime.block_on(target.list_keys(&collection, &key_field))?),
    }
}

unsafe extern "C" fn close(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // A connector whose drop panics must not take the host down; the instance is gone either way.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `instance` came from `Box::into_raw` in `open` and the host closes it once.
        drop(unsafe { Box::from_raw(instance.cast::<Instance>()) });
    }));
}

unsafe extern "C" fn free_buffer(buffer: Buffer) {
    // SAFETY: the host returns buffers this library filled, once each.
    drop(unsafe { buffer.into_vec() });
}
