//! The crate's one error type.

use thiserror::Error;

/// Why the simulator could not start or a request to it failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SimError {
    /// A [`SimConfig`](crate::SimConfig) field is out of range; `field` names it.
    #[error("invalid config field `{field}`: {reason}")]
    InvalidConfig {
        /// Name of the offending field, as spelled in the config.
        field: &'static str,
        /// What the field must satisfy.
        reason: String,
    },
    /// A [`RestFault`](crate::RestFault) Discord could not commit.
    #[error("invalid rest fault: {0}")]
    InvalidRestFault(String),
    /// A member's action Discord would not let happen (a component the message lacks, a
    /// modal already sent, a private thread they are not in); the reason says which.
    #[error("refused: {0}")]
    Refused(String),
    /// The listener could not report its local address.
    #[error("listener i/o error: {0}")]
    Io(#[from] std::io::Error),
}
