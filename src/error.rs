//! The one error classification the stage runner understands.
//!
//! Every error inside a stage becomes a [`StageError`] at the stage boundary, and the runner
//! maps it to an ack kind in one place (`bus::runner`). Nothing else decides retryability.

use std::time::Duration;

/// How a handler's failure must be treated.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A transient failure of this input (a provider 5xx, a timeout): NAK and try again later.
    #[error("retryable: {reason}")]
    Retryable {
        /// Why the attempt failed.
        reason: String,
        /// How long to wait; the runner's backoff when absent.
        after: Option<Duration>,
    },
    /// The input can never succeed (bad data, unknown tenant): dead-letter it and TERM.
    #[error("rejected: {reason}")]
    Rejected {
        /// Why the input is refused; stored with the dead letter.
        reason: String,
    },
    /// Our own infrastructure (PostgreSQL, NATS) is unreachable: hold the message, pause and
    /// retry in place. The delivery count does not grow while we wait, so an outage never
    /// dead-letters good work.
    #[error("dependency unavailable: {dependency}: {reason}")]
    Unavailable {
        /// `postgres` or `nats`.
        dependency: &'static str,
        /// The underlying failure.
        reason: String,
    },
}

impl StageError {
    /// Returns a retryable error with the runner's default backoff.
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self::Retryable {
            reason: reason.into(),
            after: None,
        }
    }

    /// Returns a rejection with its reason.
    pub fn rejected(reason: impl Into<String>) -> Self {
        Self::Rejected {
            reason: reason.into(),
        }
    }
}

impl From<sqlx::Error> for StageError {
    /// Classifies database errors: lost connections pause the stage, anything else is a
    /// retryable failure of this input (a constraint race, a serialization failure).
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable {
                dependency: "postgres",
                reason: error.to_string(),
            },
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("08")) => {
                // SQLSTATE class 08: connection exception.
                Self::Unavailable {
                    dependency: "postgres",
                    reason: error.to_string(),
                }
            }
            _ => Self::retryable(format!("database: {error}")),
        }
    }
}
