//! The push pipeline: take rows from a source and make the target lists match, writing only what
//! changed, never duplicating or losing an item.
//!
//! Stages, each in its own module: [`identity`] (who a row is, and a hash of what it says),
//! [`rules`] (built-in field transforms), [`router`] (CEL sharding predicates).

pub mod connect;
pub mod discover;
pub mod drift;
pub mod identity;
pub mod introspect;
pub mod mapping;
pub mod plan;
pub mod provision;
pub mod router;
pub mod rules;
pub mod run;
