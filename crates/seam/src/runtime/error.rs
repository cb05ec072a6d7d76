//! Why a node could not start or had to stop, and why a command was not applied.

use thiserror::Error;

use super::RetentionError;
use crate::fault::{Class, Classify};
use crate::service::ApplyError;
use crate::store::StoreError;

/// Why a node could not start or had to stop.
#[derive(Debug, Error, Clone)]
pub enum RuntimeError {
    /// The node's configuration (or a translator's schemas, or the service's code) is wrong: an
    /// operator or the service's author has to fix it.
    #[error("{0}")]
    Config(String),
    /// The node cannot do what a request asked, as asked (a source it does not read, a replay
    /// of a service without replicas); the message says what to ask instead.
    #[error("{0}")]
    Refused(String),
    /// The request conflicts with work in progress (a replay already running).
    #[error("{0}")]
    Conflict(String),
    /// What the caller sent is malformed (a snapshot that does not check).
    #[error("{0}")]
    BadRequest(String),
    /// The service does not offer what was asked (snapshots).
    #[error("{0}")]
    Unsupported(String),
    /// The store failed; the node stops rather than risk diverging from its journal.
    #[error("store: {0}")]
    Store(String),
    /// The schema registry refused a request that retrying cannot fix (authorization, a schema
    /// it rejects).
    #[error("schema registry: {0}")]
    Registry(String),
    /// A Kafka call failed.
    #[error("kafka, {what}: {detail}")]
    Kafka {
        /// What was being done.
        what: String,
        /// What librdkafka said.
        detail: String,
    },
    /// A topic the node needs does not exist.
    #[error("topic {topic} does not exist; {}", missing_topic_fix(topic))]
    TopicMissing {
        /// The topic.
        topic: String,
    },
    /// The retention guard refused to read on.
    #[error(transparent)]
    Retention(#[from] RetentionError),
    /// The writer stopped (after an error of its own, reported separately).
    #[error("the store writer stopped")]
    WriterGone,
    /// Shutdown interrupted a retry loop.
    #[error("cancelled")]
    Cancelled,
    /// A thread panicked; a bug.
    #[error("the {0} thread panicked")]
    Panicked(String),
}

impl RuntimeError {
    pub(crate) fn kafka(what: String, e: rdkafka::error::KafkaError) -> Self {
        Self::Kafka {
            what,
            detail: e.to_string(),
        }
    }
}

impl From<StoreError> for RuntimeError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

/// Why a command was not executed.
#[derive(Debug, Error)]
pub enum ExecuteError {
    /// The service rejected it (or an emitted event did not fit its schema, or it panicked).
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The store failed to write or flush the group the command was in; whether the command
    /// survives is unknown until the service restarts (the node stops).
    #[error("the store failed, so the command may or may not have been applied: {0}")]
    Store(String),
    /// The node is stopping or stopped.
    #[error("the service is shutting down")]
    Stopped,
}

/// What to do about a missing topic: a dead-letter topic comes from the consumer's topology entry.
fn missing_topic_fix(topic: &str) -> String {
    match topic.strip_suffix(".dlq") {
        Some(service) => format!(
            "{service} runs translators, so it needs its dead-letter topic: list it under `consumers:` in the topology \
             (`- service: {service}` with `sources: []` until `seam register` adds them) and run `seam deploy -t <topology>.yaml`"
        ),
        None => "create it (e.g. `seam deploy -t <topology>.yaml`) before starting the service".into(),
    }
}

impl Classify for ExecuteError {
    fn class(&self) -> Class {
        match self {
            Self::Apply(e) => e.class(),
            Self::Store(_) => Class::Fatal,
            Self::Stopped => Class::Retryable,
        }
    }
}
