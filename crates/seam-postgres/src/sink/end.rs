//! How a sink session ends.

use super::apply::{describe, Failure};

/// Why a session ended.
pub(super) enum End {
    /// Asked to stop.
    Stop,
    /// Something that passes: start a new session after a pause.
    Retry(String),
}

impl From<tokio_postgres::Error> for End {
    fn from(e: tokio_postgres::Error) -> Self {
        End::Retry(format!("PostgreSQL: {}", describe(&e)))
    }
}

impl From<Failure> for End {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Transient(e) => e.into(),
            Failure::Statement => End::Retry("a statement failed outside a savepoint".into()),
        }
    }
}
