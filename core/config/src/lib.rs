//! SyncBridge declarative configuration: types, JSON Schema, validation, apply
