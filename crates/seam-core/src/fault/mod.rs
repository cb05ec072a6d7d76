//! How an error is handled is decided by what kind of error it is, not by where it happened.
//!
//! Every error the runtime meets while consuming is one of three classes: retry it (the world
//! will get better: a broker restarts, the registry comes back), dead-letter it (this event will
//! never apply as it is: move past it, park its subject) or stop (configuration or invariant
//! broken: stop cleanly and say why).

/// What the runtime does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Back off and try the same work again.
    Retryable,
    /// Send the event to the DLQ, park its subject, move on.
    Poison,
    /// Stop the runtime cleanly and report.
    Fatal,
}

/// Errors that know their class.
pub trait Classify {
    /// The class of this error.
    fn class(&self) -> Class;
}

pub mod panic;
