//! The C ABI between SyncBridge and a native plugin, version [`ABI_VERSION`].
//!
//! A plugin is a dynamic library exporting one static, [`DECLARATION_SYMBOL`], of type
//! [`Declaration`]. The host reads its first field, `abi_version`, before anything else and refuses
//! the library unless it equals [`ABI_VERSION`]; only then does it follow `vtable`. Everything
//! else crosses the boundary as bytes:
//!
//! - **Requests** ([`Str`]) are borrowed from the caller for the duration of the call.
//! - **Answers** ([`Buffer`]) are allocated by the plugin and handed back to it through
//!   [`VTableV1::free_buffer`]: whoever allocates frees, so host and plugin may use different
//!   allocators.
//! - **The encoding** is UTF-8 JSON of the types in [`crate::wire`] (themselves built from
//!   `syncbridge-api`'s value model), so a plugin can be written in any language that can export
//!   a C symbol.
//! - **Status codes** ([`STATUS_OK`], [`STATUS_ERROR`], [`STATUS_PANIC`]) say how to read the
//!   answer: the call's result, a [`crate::wire::WireError`], or a panic message as plain text.
//!
//! No Rust standard-library type, trait object or async runtime type crosses the boundary, so the
//! host and the plugin need not be built by the same compiler. Plugins are loaded once and never
//! unloaded: Rust libraries register thread-local destructors that outlive `dlclose`.

use std::ffi::c_void;

/// The version of this ABI. A change to any `#[repr(C)]` type or to the meaning of a call bumps it.
pub const ABI_VERSION: u32 = 1;

/// The name of the exported [`Declaration`] static, NUL-terminated for `dlsym`.
pub const DECLARATION_SYMBOL: &[u8] = b"syncbridge_plugin_declaration\0";

/// The call succeeded; the answer holds the call's result as JSON.
pub const STATUS_OK: i32 = 0;
/// The call failed; the answer holds a [`crate::wire::WireError`] as JSON.
pub const STATUS_ERROR: i32 = 1;
/// The plugin panicked; the answer holds the panic message as UTF-8 text.
pub const STATUS_PANIC: i32 = 2;

/// What a connector instance is opened as.
pub const ROLE_SOURCE: u32 = 1;
/// What a connector instance is opened as.
pub const ROLE_TARGET: u32 = 2;

/// The exported static. `abi_version` comes first and stays first in every future version.
#[repr(C)]
#[derive(Debug)]
pub struct Declaration {
    pub abi_version: u32,
    /// Only valid when `abi_version == ABI_VERSION`.
    pub vtable: &'static VTableV1,
}

/// Bytes borrowed for the duration of one call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Str {
    pub ptr: *const u8,
    pub len: usize,
}

impl Str {
    pub fn new(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid for `'a`.
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: guaranteed by the caller (the other side of the ABI passes a live slice).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Bytes owned by the plugin until the host returns them with [`VTableV1::free_buffer`].
#[repr(C)]
#[derive(Debug)]
pub struct Buffer {
    pub ptr: *mut u8,
    pub len: usize,
    pub capacity: usize,
}

impl Buffer {
    pub const EMPTY: Buffer = Buffer {
        ptr: std::ptr::null_mut(),
        len: 0,
        capacity: 0,
    };

    /// Hands a vector over the boundary (the plugin side).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        Self {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            capacity: bytes.capacity(),
        }
    }

    /// Takes a vector back (the plugin side, in `free_buffer`).
    ///
    /// # Safety
    /// The buffer must come from [`Buffer::from_vec`] in this same library and not be freed yet.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: the parts came from a `Vec<u8>` of this library's allocator (caller's promise).
        unsafe { Vec::from_raw_parts(self.ptr, self.len, self.capacity) }
    }

    /// Reads the bytes without taking ownership (the host side).
    ///
    /// # Safety
    /// The buffer must have been filled by the plugin and not freed yet.
    pub unsafe fn as_bytes(&self) -> &[u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: the plugin filled `ptr`/`len` from a live vector (caller's promise).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Log levels of [`HostV1::log`], as `tracing` orders them.
pub const LOG_ERROR: u32 = 1;
pub const LOG_WARN: u32 = 2;
pub const LOG_INFO: u32 = 3;
pub const LOG_DEBUG: u32 = 4;
pub const LOG_TRACE: u32 = 5;

/// What the host offers a plugin: a way into its logs (a plugin's own `tracing` subscriber would
/// print nowhere, since each library has its own copy of `tracing`'s globals).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HostV1 {
    /// `level` is one of the `LOG_*` constants; `target` names the module, `message` is the text
    /// with its fields. Both are UTF-8 and borrowed for the call.
    pub log: extern "C" fn(level: u32, target: Str, message: Str),
}

/// The calls of ABI version 1. Every function catches panics and reports them as
/// [`STATUS_PANIC`]; none may be called before `load` returned [`STATUS_OK`].
#[repr(C)]
#[derive(Debug)]
pub struct VTableV1 {
    /// Called once, first. Fills `out` with the plugin's [`crate::wire::Manifest`] as JSON.
    pub load: unsafe extern "C" fn(host: *const HostV1, out: *mut Buffer) -> i32,
    /// Opens a connector of `kind` ([`ROLE_SOURCE`] or [`ROLE_TARGET`]) with its JSON
    /// configuration. On success `instance` is set and `out` holds `null`.
    pub open: unsafe extern "C" fn(
        role: u32,
        kind: Str,
        config: Str,
        instance: *mut *mut c_void,
        out: *mut Buffer,
    ) -> i32,
    /// One call on an open instance: `request` is a [`crate::wire::SourceCall`] or
    /// [`crate::wire::TargetCall`] as JSON. Instances accept calls from several threads at once.
    pub call: unsafe extern "C" fn(instance: *mut c_void, request: Str, out: *mut Buffer) -> i32,
    /// Closes an instance; it must not be used afterwards.
    pub close: unsafe extern "C" fn(instance: *mut c_void),
    /// Frees a buffer this plugin filled.
    pub free_buffer: unsafe extern "C" fn(buffer: Buffer),
}
