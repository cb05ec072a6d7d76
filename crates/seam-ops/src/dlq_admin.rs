//! Operator actions on DLQ topics, shared by `seam dlq` and tests: read a consumer's dead
//! letters with their status, and ask a running consumer to redrive parked subjects.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use thiserror::Error;

use seam::dlq::{
    discard_request_record, fold, redrive_request_record, DiscardRequest, DlqRecord, Listed, RedriveRequest,
};
use seam::store::OutboxRecord;
use seam::translator::dlq_topic;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a DLQ action failed.
#[derive(Debug, Error)]
pub enum DlqError {
    /// The consumer has no DLQ topic on this cluster.
    #[error("there is no DLQ topic {topic}; is {consumer} a consumer deployed on this cluster? (`seam dlq list` shows every consumer with a DLQ)")]
    NoTopic {
        /// The consumer.
        consumer: String,
        /// The topic looked for.
        topic: String,
    },
    /// Kafka refused or timed out.
    #[error("kafka, {what}: {detail}; is the cluster reachable? (`seam local status`, or check SEAM_BROKERS)")]
    Kafka {
        /// What was being done.
        what: String,
        /// What librdkafka said.
        detail: String,
    },
}

fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> DlqError {
    let what = what.into();
    move |e| DlqError::Kafka {
        what,
        detail: e.to_string(),
    }
}

struct Quiet;

/// Client errors surface as the failed call's error; here they are only debug detail.
impl rdkafka::ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "DLQ reader client error");
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(?level, fac, log_message, "librdkafka");
    }
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

fn reader(client: &ClientConfig) -> Result<BaseConsumer<Quiet>, DlqError> {
    client
        .clone()
        .set("group.id", "seam-dlq-admin")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(Quiet)
        .map_err(kafka("creating a DLQ reader"))
}

/// The consumers that have a DLQ topic, sorted.
pub fn consumers(client: &ClientConfig) -> Result<Vec<String>, DlqError> {
    let consumer = reader(client)?;
    let metadata = consumer
        .fetch_metadata(None, TIMEOUT)
        .map_err(kafka("listing topics"))?;
    let mut names: Vec<String> = metadata
        .topics()
        .iter()
        .filter_map(|t| t.name().strip_suffix(".dlq").map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// Every record of a consumer's DLQ topic, from the start to the current end.
pub fn read(client: &ClientConfig, consumer_name: &str) -> Result<Vec<DlqRecord>, DlqError> {
    let topic = dlq_topic(consumer_name);
    let consumer = reader(client)?;
    let metadata = consumer
        .fetch_metadata(Some(&topic), TIMEOUT)
        .map_err(kafka(format!("reading metadata of {topic}")))?;
    let partitions: Vec<i32> = match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions().iter().map(|p| p.id()).collect(),
        _ => {
            return Err(DlqError::NoTopic {
                consumer: consumer_name.to_string(),
                topic,
            })
        }
    };
    let mut tpl = TopicPartitionList::new();
    let mut open = std::collections::BTreeSet::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(&topic, p, TIMEOUT)
            .map_err(kafka(format!("reading offsets of {topic}")))?;
        if high > low {
            tpl.add_partition_offset(&topic, p, Offset::Offset(low))
                .map_err(kafka("building the assignment"))?;
            open.insert(p);
        }
    }
    let mut records = Vec::new();
    if open.is_empty() {
        return Ok(records);
    }
    consumer.assign(&tpl).map_err(kafka(format!("reading {topic}")))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !open.is_empty() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => records.push(DlqRecord::new(
                m.partition(),
                m.offset(),
                &seam::headers::owned_pairs(m.headers()),
            )),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => {
                return Err(DlqError::Kafka {
                    what: format!("reading {topic}"),
                    detail: e.to_string(),
                })
            }
            None => {}
        }
    }
    Ok(records)
}

/// The dead letters of one consumer, or of every consumer with a DLQ topic.
pub fn list(client: &ClientConfig, consumer: Option<&str>) -> Result<Vec<Listed>, DlqError> {
    let names = match consumer {
        Some(c) => vec![c.to_string()],
        None => consumers(client)?,
    };
    let mut out = Vec::new();
    for name in names {
        out.extend(fold(&name, &read(client, &name)?));
    }
    Ok(out)
}

/// Writes a redrive request to the consumer's DLQ topic; the running consumer applies it.
/// Returns the request's time (RFC 3339): outcomes at or after it answer this request.
pub async fn request_redrive(
    client: &ClientConfig,
    consumer: &str,
    request: &RedriveRequest,
) -> Result<String, DlqError> {
    send_request(client, consumer, &redrive_request_record(request), "redrive").await
}

/// Writes a discard request to the consumer's DLQ topic; the running consumer applies it and
/// answers `discarded` per letter. Returns the request's time, as [`request_redrive`].
pub async fn request_discard(
    client: &ClientConfig,
    consumer: &str,
    request: &DiscardRequest,
) -> Result<String, DlqError> {
    send_request(client, consumer, &discard_request_record(request), "discard").await
}

async fn send_request(
    client: &ClientConfig,
    consumer: &str,
    record: &OutboxRecord,
    what: &str,
) -> Result<String, DlqError> {
    let topic = dlq_topic(consumer);
    let reader = reader(client)?;
    let metadata = reader
        .fetch_metadata(Some(&topic), TIMEOUT)
        .map_err(kafka(format!("reading metadata of {topic}")))?;
    if !metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
    {
        return Err(DlqError::NoTopic {
            consumer: consumer.to_string(),
            topic,
        });
    }
    let producer: FutureProducer = client
        .clone()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .map_err(kafka("creating a producer"))?;
    let time = record
        .headers
        .iter()
        .find(|(k, _)| k == seam::dlq::TIME)
        .and_then(|(_, v)| v.clone())
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    let mut future = FutureRecord::<[u8], [u8]>::to(&topic).headers(seam::headers::to_headers(&record.headers));
    if let Some(k) = &record.key {
        future = future.key(k.as_slice());
    }
    producer
        .send(future, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| DlqError::Kafka {
            what: format!("writing the {what} request to {topic}"),
            detail: e.to_string(),
        })?;
    Ok(time)
}
