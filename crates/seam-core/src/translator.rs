//! Translators: the consumer-side component that maps a foreign event to the consumer's own
//! commands (seed 004). The producer never knows who reads it; the consumer decides what it takes
//! in and in what shape. Identity is allowed, but a translator must exist.

use apache_avro::types::Value;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// Why a translator could not map an event.
#[derive(Debug, Error)]
pub enum TranslateError {
    /// The event's value does not have the shape the translator's type expects.
    #[error("the {record} event does not fit the translator's type: {detail}")]
    Shape {
        /// Record name.
        record: String,
        /// Cause.
        detail: String,
    },
    /// The event is well-formed but carries something the translator cannot map.
    #[error("{0}")]
    Invalid(String),
}

/// A foreign event as a translator sees it: decoded through the consumer's reader schema.
#[derive(Debug, Clone)]
pub struct ForeignEvent {
    /// Topic it was read from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Kafka key: the subject.
    pub subject: String,
    /// `seam-event-id`, when the producer is a seam service.
    pub event_id: Option<String>,
    /// Full name of the writer's record.
    pub record: String,
    /// The value in the reader's shape.
    pub value: Value,
}

impl ForeignEvent {
    /// The value as the translator's own type (the reader's view of the record).
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, TranslateError> {
        apache_avro::from_value(&self.value).map_err(|e| TranslateError::Shape {
            record: self.record.clone(),
            detail: e.to_string(),
        })
    }
}

/// Maps one source service's events to commands `C` of the consumer. Must be pure and
/// deterministic: the same event always gives the same commands, so redelivery and replay agree.
pub trait Translator<C>: Send + Sync + 'static {
    /// The source service; its topic is `<source>.events`.
    fn source(&self) -> &str;

    /// The records this translator reads, each with its reader schema (the consumer's view of the
    /// fields it needs). Records not listed are not decoded (see [`Translator::ignores`]).
    fn reader_schemas(&self) -> Vec<(&'static str, &'static str)>;

    /// The records of the source this translator deliberately does not take in (full names).
    /// A record it neither reads nor ignores is skipped too, but counted as unhandled and shown
    /// by `seam status` and `GET /status`: a type the producer added that nobody decided about.
    fn ignores(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// The commands for one event; empty to ignore it.
    fn translate(&self, event: &ForeignEvent) -> Result<Vec<C>, TranslateError>;
}

/// Sources whose events are on a topic no seam service writes (`kind: external` in the
/// topology), by service name: their topic is the one the topology names.
fn external_topics() -> &'static std::sync::RwLock<std::collections::BTreeMap<String, String>> {
    static TOPICS: std::sync::OnceLock<std::sync::RwLock<std::collections::BTreeMap<String, String>>> =
        std::sync::OnceLock::new();
    TOPICS.get_or_init(Default::default)
}

/// Declares, for this process, that `service` is an external source whose events are on
/// `topic` (loading a topology declares its external services): every consumer, command and
/// report of the process then reads `topic` where it would read `<service>.events`.
pub fn route_external(service: &str, topic: &str) {
    let mut topics = external_topics().write().unwrap_or_else(|p| p.into_inner());
    topics.insert(service.to_string(), topic.to_string());
}

/// Whether `service` was declared an external source in this process.
pub fn is_external(service: &str) -> bool {
    external_topics()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .contains_key(service)
}

/// The topic a service publishes to: `<service>.events`, or an external source's own topic.
pub fn events_topic(service: &str) -> String {
    if let Some(topic) = external_topics().read().unwrap_or_else(|p| p.into_inner()).get(service) {
        return topic.clone();
    }
    format!("{service}.events")
}

/// The dead-letter topic of a consumer.
pub fn dlq_topic(consumer: &str) -> String {
    format!("{consumer}.dlq")
}

/// A foreign event as a translator under test receives it: `value` (any `Serialize` with the
/// reader's fields) stands for the decoded payload.
pub fn test_event<T: serde::Serialize>(source: &str, record: &str, value: T) -> ForeignEvent {
    ForeignEvent {
        topic: events_topic(source),
        partition: 0,
        offset: 0,
        subject: String::new(),
        event_id: Some(format!("{source}/1")),
        record: record.to_string(),
        value: apache_avro::to_value(value).unwrap_or(Value::Null),
    }
}

/// Checks that a translator's reader schema (its `.avsc` file) is the schema of the Rust type it
/// decodes into, so the file and the type cannot drift apart.
pub fn check_reader_type<T: apache_avro::AvroSchema>(reader_schema: &str) -> Result<(), String> {
    let file = apache_avro::Schema::parse_str(reader_schema).map_err(|e| format!("reader schema: {e}"))?;
    crate::codec::catalog::check_schema_of::<T>(&file, "the reader type")
}

/// Checks that a translator's reader schema can read what the producer's schema writes (Avro
/// schema resolution, the tolerant reader), naming the incompatibility when it cannot.
pub fn check_reader(writer_schema: &str, reader_schema: &str) -> Result<(), String> {
    let writer = apache_avro::Schema::parse_str(writer_schema).map_err(|e| format!("writer schema: {e}"))?;
    let reader = apache_avro::Schema::parse_str(reader_schema).map_err(|e| format!("reader schema: {e}"))?;
    apache_avro::schema_compatibility::SchemaCompatibility::can_read(&writer, &reader)
        .map(|_| ())
        .map_err(|e| format!("the reader cannot read what the writer writes: {e}"))
}
