//! Typed access to the declarative configuration tables.
