//! Writing to Oort's log from a sink; lines are tagged with the rule, action and instance.

use crate::__private::bindings::oort::sink::host::{self, Level};

/// Logs at trace level.
pub fn trace(message: &str) {
    host::log(Level::Trace, message);
}

/// Logs at debug level.
pub fn debug(message: &str) {
    host::log(Level::Debug, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    host::log(Level::Info, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    host::log(Level::Warn, message);
}

/// Logs at error level.
pub fn error(message: &str) {
    host::log(Level::Error, message);
}
