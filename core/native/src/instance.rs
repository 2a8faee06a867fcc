//! An open connector inside a plugin, and the one way calls reach it.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use syncbridge_api::ConnectorError;
use syncbridge_plugin::abi::Str;

use crate::{Answer, NativePlugin, call_raw};

/// A connector instance the plugin opened; closed when dropped.
#[derive(Debug)]
pub struct Instance {
    plugin: Arc<NativePlugin>,
    pointer: NonNull<c_void>,
    kind: String,
}

// SAFETY: the ABI requires instances to accept calls from several threads at once (the SDK keeps
// its per-instance state behind a mutex), and the pointer is only ever passed back to the plugin.
unsafe impl Send for Instance {}
// SAFETY: as above.
unsafe impl Sync for Instance {}

impl Instance {
    /// Opens a connector of `kind` (blocking).
    pub fn open(
        plugin: Arc<NativePlugin>,
        role: u32,
        kind: &str,
        config: &serde_json::Value,
    ) -> Result<Self, ConnectorError> {
        let config = serde_json::to_vec(config).map_err(|e| {
            ConnectorError::internal(format!("cannot encode the configuration: {e}"))
        })?;
        let mut pointer: *mut c_void = std::ptr::null_mut();
        let vtable = plugin.vtable;
        let answer = call_raw(vtable, |out| {
            // SAFETY: the plugin was loaded; the slices and `pointer` outlive the call.
            unsafe {
                (vtable.open)(
                    role,
                    Str::new(kind.as_bytes()),
                    Str::new(&config),
                    &mut pointer,
                    out,
                )
            }
        });
        match answer {
            Answer::Ok(_) => {
                let pointer = NonNull::new(pointer).ok_or_else(|| {
                    ConnectorError::internal(format!(
                        "plugin `{}` opened `{kind}` without returning an instance",
                        plugin.manifest.name
                    ))
                })?;
                Ok(Self {
                    plugin,
                    pointer,
                    kind: kind.to_owned(),
                })
            }
            failure => Err(plugin.failure("open", failure)),
        }
    }

    /// One call (blocking): `request` is a `SourceCall` or `TargetCall`.
    pub fn call<R: Serialize, T: DeserializeOwned>(
        &self,
        name: &str,
        request: &R,
    ) -> Result<T, ConnectorError> {
        let request = serde_json::to_vec(request)
            .map_err(|e| ConnectorError::internal(format!("cannot encode a `{name}` call: {e}")))?;
        let vtable = self.plugin.vtable;
        let answer = call_raw(vtable, |out| {
            // SAFETY: the instance is open until `self` drops; the request outlives the call.
            unsafe { (vtable.call)(self.pointer.as_ptr(), Str::new(&request), out) }
        });
        match answer {
            Answer::Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ConnectorError::internal(format!(
                    "plugin `{}` answered `{name}` with something this SyncBridge cannot read: {e}",
                    self.plugin.manifest.name
                ))
            }),
            failure => Err(self.plugin.failure(name, failure)),
        }
    }

    /// One call on tokio's blocking pool.
    pub async fn call_async<R, T>(
        self: &Arc<Self>,
        name: &'static str,
        request: R,
    ) -> Result<T, ConnectorError>
    where
        R: Serialize + Send + 'static,
        T: DeserializeOwned + Send + 'static,
    {
        let instance = self.clone();
        tokio::task::spawn_blocking(move || instance.call(name, &request))
            .await
            .map_err(|e| ConnectorError::internal(format!("a plugin call did not finish: {e}")))?
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn plugin(&self) -> &NativePlugin {
        &self.plugin
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: the instance came from `open` and is closed exactly once, here.
        unsafe { (self.plugin.vtable.close)(self.pointer.as_ptr()) };
    }
}
