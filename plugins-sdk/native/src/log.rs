//! A plugin's `tracing` events, forwarded to the host's log.
//!
//! The plugin links its own copy of `tracing`, whose global subscriber the host's does not see;
//! [`install`] sets one in the plugin that hands every event to [`HostV1::log`], so connector
//! authors log with the ordinary `tracing::info!` and the lines land in SyncBridge's output with
//! the plugin's name.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

use crate::abi::{HostV1, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_TRACE, LOG_WARN, Str};

struct HostLayer {
    host: HostV1,
}

/// Collects an event's message and fields as `message key=value …`.
#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for HostLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = match *event.metadata().level() {
            Level::ERROR => LOG_ERROR,
            Level::WARN => LOG_WARN,
            Level::INFO => LOG_INFO,
            Level::DEBUG => LOG_DEBUG,
            Level::TRACE => LOG_TRACE,
        };
        let mut line = Line::default();
        event.record(&mut line);
        let target = event.metadata().target();
        (self.host.log)(
            level,
            Str::new(target.as_bytes()),
            Str::new(line.0.as_bytes()),
        );
    }
}

/// Makes the host's log the plugin's global `tracing` subscriber (once; later calls do nothing).
pub fn install(host: HostV1, plugin: &str) {
    let subscriber = tracing_subscriber::registry().with(HostLayer { host });
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        tracing::debug!(plugin, "plugin log forwarded to the host");
    }
}
