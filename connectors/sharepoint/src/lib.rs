//! The SharePoint Online target: lists reached through Microsoft Graph.
//!
//! Split by concern, like Vector's HTTP sink: [`config`] (what to connect to), [`auth`]
//! (client-credentials tokens, cached), [`batch`] (`$batch` bodies serialized once, answers read
//! without building JSON trees), [`service`] (one request, retry classification, the
//! tenant-wide `Retry-After` gate), [`sink`] (the `Target`: batching through `$batch`, one outcome
//! per operation), [`encoder`] (values to SharePoint field formats), [`pacing`] (adaptive
//! concurrency and the resource-unit pacer that follows `RateLimit-*` headers).
//!
//! It talks to `https://graph.microsoft.com/v1.0` by default and to whatever base URL and
//! authority the configuration names — the local emulator in tests.

pub mod auth;
pub mod batch;
pub mod config;
pub mod encoder;
pub mod pacing;
pub mod service;
pub mod sink;

pub use config::{SharePointConfig, TextOverflow};
pub use sink::SharePointTarget;
