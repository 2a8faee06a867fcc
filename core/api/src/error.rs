//! The error every connector and rule returns: what went wrong, whose fault it is, whether to retry.
//!
//! The engine needs the last two to decide between retrying, dead-lettering one row and stopping
//! the run; the CLI needs the domain to pick an exit code (user → 2, external → 3, internal → 4).

use std::time::Duration;

/// Whose fault a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorDomain {
    /// Bad configuration or data: retrying will not help until the user changes something.
    User,
    /// A dependency (database, Graph) failed or is unreachable.
    External,
    /// A bug in SyncBridge or a plugin.
    Internal,
}

/// Whether the same operation may succeed if tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHint {
    /// Try again, no sooner than `after` when the dependency said so (e.g. `Retry-After`).
    Retry { after: Option<Duration> },
    /// Do not retry as is.
    NoRetry,
}

/// A failure reported by a connector or rule.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    domain: ErrorDomain,
    retry: RetryHint,
    message: String,
    hint: Option<String>,
    full_read: bool,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ConnectorError {
    /// The user's configuration or data is wrong; not retriable.
    pub fn user(message: impl Into<String>) -> Self {
        Self::new(ErrorDomain::User, RetryHint::NoRetry, message)
    }

    /// A dependency failed; retriable unless marked otherwise with [`ConnectorError::permanent`].
    pub fn external(message: impl Into<String>) -> Self {
        Self::new(
            ErrorDomain::External,
            RetryHint::Retry { after: None },
            message,
        )
    }

    /// A bug; not retriable.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorDomain::Internal, RetryHint::NoRetry, message)
    }

    fn new(domain: ErrorDomain, retry: RetryHint, message: impl Into<String>) -> Self {
        Self {
            domain,
            retry,
            message: message.into(),
            hint: None,
            full_read: false,
            source: None,
        }
    }

    /// Adds what the user can do about it.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Keeps the underlying cause for `Error::source` chains.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Marks the failure as not retriable.
    pub fn permanent(mut self) -> Self {
        self.retry = RetryHint::NoRetry;
        self
    }

    /// Marks the failure as retriable, no sooner than `after`.
    pub fn retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry = RetryHint::Retry { after };
        self
    }

    pub fn domain(&self) -> ErrorDomain {
        self.domain
    }

    pub fn retry(&self) -> RetryHint {
        self.retry
    }

    pub fn is_retriable(&self) -> bool {
        matches!(self.retry, RetryHint::Retry { .. })
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Marks a read that cannot continue from its position (a change log purged past it): the
    /// engine then reads the whole table again in the same run and finds deletes by comparison.
    pub fn requires_full_read(mut self) -> Self {
        self.full_read = true;
        self
    }

    /// See [`ConnectorError::requires_full_read`].
    pub fn is_full_read_required(&self) -> bool {
        self.full_read
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}
