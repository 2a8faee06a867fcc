//! Exit codes and the error type every command returns.
//!
//! A command fails with a [`CliError`] that already knows its exit code, so the mapping from
//! "what went wrong" to "what the shell sees" is decided where the failure is understood.

use std::fmt;
use std::process::ExitCode;

use syncbridge_api::{ConnectorError, ErrorDomain};

/// What the process exit code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// The command finished, but some items failed or drift was found.
    Failures = 1,
    /// Usage, config or validation error: fix the input.
    BadInput = 2,
    /// A database or Graph could not be reached.
    Unreachable = 3,
    /// A bug.
    Internal = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// A failed command: its exit code and a message for stderr.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(Exit::BadInput, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Exit::Internal, message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<syncbridge_config::ConfigError> for CliError {
    fn from(error: syncbridge_config::ConfigError) -> Self {
        Self::bad_input(error.to_string())
    }
}

impl From<ConnectorError> for CliError {
    fn from(error: ConnectorError) -> Self {
        let exit = match error.domain() {
            ErrorDomain::User => Exit::BadInput,
            ErrorDomain::External => Exit::Unreachable,
            ErrorDomain::Internal => Exit::Internal,
        };
        let mut message = error.message().to_owned();
        if let Some(hint) = error.hint() {
            message.push_str("\n  fix: ");
            message.push_str(hint);
        }
        Self::new(exit, message)
    }
}
