//! One error type for the whole core. Every message names where the problem is (a file or an
//! argument), the field, and what was expected; the binding layer maps each kind to one Python
//! exception class.

use std::fmt;

/// What went wrong, with enough context for a user to fix the input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input does not fit the contract: `{origin}: {field}: {message}`.
    #[error("{origin}: {field}: {message}")]
    Invalid {
        /// the file path or argument name
        origin: String,
        /// the header key, array or option at fault
        field: String,
        /// what was expected and what was found
        message: String,
    },
    /// The operating system refused (missing file, permissions, mmap failure).
    #[error("{origin}: {source}")]
    Io {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// A progress callback asked to stop (Ctrl-C in Python).
    #[error("interrupted")]
    Interrupted,
    /// A bug: a panic inside the core or a dependency, caught at the binding layer so that it
    /// reaches the user as an error, not as a crash or a `PanicException`.
    #[error("internal error (please report it at the datacarto issue tracker): {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(origin: impl fmt::Display, field: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Invalid { origin: origin.to_string(), field: field.to_string(), message: message.to_string() }
    }

    pub fn io(origin: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io { origin: origin.to_string(), source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
