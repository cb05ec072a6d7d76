//! The publisher (outbox relay): ships durable journal entries, in seq order, to
//! `<service>.events`, keyed by subject.
//!
//! Exactly once per entry across crashes comes from two things together:
//! - a transactional producer with a stable `transactional.id`: on start `init_transactions`
//!   fences any earlier incarnation and aborts whatever it left open, so nothing half-sent can
//!   surface later;
//! - recovery from the topic tail: the publisher picks each entry's partition itself (Kafka's
//!   murmur2 of the subject), so the last committed seq on each partition says exactly which
//!   entries are already out. Entries at or below it are skipped, the rest are sent.
//!
//! It only reads entries up to the writer's durable seq, so it never publishes an entry that a
//! crash could still take back (invariant 4).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn};

use crate::codec::{wire, Catalog, Registry};
use crate::envelope;
use crate::failpoint;
use crate::fault::{Class, Classify};
use crate::metrics::Metrics;
use crate::partitioner::partition_for;
use crate::store::{JournalEntry, JournalId, Store};
use crate::translator::events_topic;

use super::in_flight::InFlight;
use super::journal_schemas::JournalSchemas;
use super::progress::Progress;
use super::RuntimeError;

/// How long a publish transaction may stay open before the coordinator aborts it. A batch
/// commits within milliseconds; the margin is for a broker failover mid-batch (KRaft elects a
/// new leader within the broker session timeout, 9 s by default). Kept short because a
/// transaction left open by a killed publisher holds read_committed consumers of the topic at
/// its first offset until a restarted publisher fences it or this expires.
const TXN_TIMEOUT: Duration = Duration::from_secs(20);
/// Entries per transaction at most.
const MAX_BATCH: usize = 5000;

pub(crate) struct Publisher {
    pub service: String,
    pub client: ClientConfig,
    pub store: Store,
    pub catalog: Arc<Catalog>,
    pub registry: Arc<Registry>,
    /// Each entry's own writer schema and id.
    pub schemas: Arc<JournalSchemas>,
    pub durable: Arc<Progress>,
    /// The last seq known to be on the topic (snapshots wait for it to reach their cut).
    pub published: Arc<tokio::sync::watch::Sender<u64>>,
    pub metrics: Metrics,
    pub cancel: CancellationToken,
    pub runtime: Handle,
    /// How long to keep publishing durable entries after cancellation.
    pub drain: Duration,
}

impl Publisher {
    pub fn run(self) -> Result<(), RuntimeError> {
        let topic = events_topic(&self.service);
        // Registered up front so an incompatible schema stops the service at start.
        for record in self.catalog.records() {
            let mut backoff = Duration::from_millis(200);
            loop {
                match self.runtime.block_on(self.registry.register(&topic, record)) {
                    Ok(_) => break,
                    Err(e) if e.class() == Class::Retryable => {
                        if self.cancel.is_cancelled() {
                            return Err(RuntimeError::Cancelled);
                        }
                        warn!(service = %self.service, error = %e, "registering the event schemas; retrying");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => return Err(RuntimeError::Config(e.to_string())),
                }
            }
        }
        let partitions = hashing_partitions(&self.service, &self.store, &topic, self.partition_count(&topic)?)?;
        let producer: ThreadedProducer<InFlight> = self
            .client
            .clone()
            .set("transactional.id", format!("seam-publisher-{}", self.service))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("transaction.timeout.ms", TXN_TIMEOUT.as_millis().to_string())
            .create_with_context(InFlight::default())
            .map_err(|e| RuntimeError::kafka("creating the publisher".into(), e))?;
        producer
            .init_transactions(TXN_TIMEOUT)
            .map_err(|e| RuntimeError::kafka(format!("initialising transactions for {topic}"), e))?;
        let tail = self.tail(&topic, partitions)?;
        let floor = resume(&self.service, &self.store, &tail)?;
        let mut last = tail.last;
        let mut next = floor + 1;
        self.published.send_replace(floor);
        info!(service = %self.service, %topic, next, "publisher started; tail recovered");
        let mut deadline = None;
        loop {
            let durable = self.durable.get();
            self.metrics.set_backlog(durable.saturating_sub(next - 1));
            if next > durable {
                if self.cancel.is_cancelled() {
                    return Ok(());
                }
                self.durable.wait_beyond(durable, Duration::from_millis(200));
                continue;
            }
            if self.cancel.is_cancelled() {
                let end = *deadline.get_or_insert_with(|| std::time::Instant::now() + self.drain);
                if std::time::Instant::now() > end {
                    warn!(service = %self.service, backlog = durable + 1 - next, "publisher stopped with entries unpublished; they go out on the next start");
                    return Ok(());
                }
            }
            let entries: Vec<_> = self
                .store
                .journal_from(next, MAX_BATCH)?
                .into_iter()
                .filter(|e| e.seq <= durable)
                .collect();
            let Some(batch_end) = entries.last().map(|e| e.seq) else {
                return Err(RuntimeError::Store(format!("journal entry {next} is missing")));
            };
            let _span =
                info_span!("publish", service = %self.service, topic = %topic, from = next, to = batch_end).entered();
            let ids = self.schema_ids(&entries)?;
            let mut attempt = 0u32;
            let sent = loop {
                match self.send_batch(&producer, &topic, partitions, &ids, &entries, &last) {
                    Ok(s) => break s,
                    Err(Failure::Retry(e)) => {
                        attempt += 1;
                        warn!(service = %self.service, error = %e, attempt, "publish transaction failed; retrying the batch");
                        std::thread::sleep(Duration::from_millis(200 * u64::from(attempt.min(25))));
                    }
                    Err(Failure::Fatal(e)) => return Err(e),
                }
            };
            let (sent, count) = sent;
            for (partition, seq) in sent {
                last.insert(partition, seq);
            }
            self.store.set_published_seq(batch_end)?;
            self.published.send_replace(batch_end);
            self.metrics.published(count);
            next = batch_end + 1;
        }
    }

    fn partition_count(&self, topic: &str) -> Result<i32, RuntimeError> {
        let consumer: BaseConsumer = self
            .client
            .create()
            .map_err(|e| RuntimeError::kafka("creating a metadata client".into(), e))?;
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| RuntimeError::kafka(format!("reading metadata of {topic}"), e))?;
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len() as i32),
            _ => Err(RuntimeError::TopicMissing {
                topic: topic.to_string(),
            }),
        }
    }

    /// What the topic's tail says about what is out.
    fn tail(&self, topic: &str, partitions: i32) -> Result<Tail, RuntimeError> {
        let consumer: BaseConsumer<TailContext> = self
            .client
            .clone()
            .set("group.id", format!("seam-tail-{}", self.service))
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create_with_context(TailContext)
            .map_err(|e| RuntimeError::kafka("creating the tail reader".into(), e))?;
        let mut last = HashMap::new();
        let mut journals = HashMap::new();
        let mut empty = true;
        for partition in 0..partitions {
            let (low, high) = super::watermarks::watermarks(&consumer, topic, partition)?;
            if high <= low {
                last.insert(partition, 0);
                continue;
            }
            empty = false;
            let mut window = 64i64;
            let found = loop {
                let start = (high - window).max(low);
                let found = self.last_seq_in(&consumer, topic, partition, start)?;
                if found.is_some() || start == low {
                    break found;
                }
                window *= 8;
            };
            if let Some((seq, journal)) = found {
                last.insert(partition, seq);
                journals.insert(partition, journal);
            } else {
                last.insert(partition, 0);
            }
        }
        Ok(Tail {
            topic: topic.to_string(),
            last,
            empty,
            journals,
        })
    }

    fn last_seq_in(
        &self,
        consumer: &BaseConsumer<TailContext>,
        topic: &str,
        partition: i32,
        start: i64,
    ) -> Result<Option<(u64, Option<JournalId>)>, RuntimeError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(|e| RuntimeError::kafka("building the tail assignment".into(), e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| RuntimeError::kafka("assigning the tail reader".into(), e))?;
        let mut found = None;
        let give_up = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    if let Some((service, seq)) =
                        crate::headers::header(m.headers(), envelope::EVENT_ID).and_then(envelope::parse_event_id)
                    {
                        if service == self.service {
                            let journal =
                                crate::headers::header(m.headers(), envelope::JOURNAL).and_then(JournalId::parse);
                            found = Some((seq, journal));
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok(found),
                Some(Err(e)) => warn!(service = %self.service, error = %e, "reading the topic tail"),
                None => {}
            }
            if std::time::Instant::now() > give_up {
                return Err(RuntimeError::Kafka {
                    what: format!("reading the tail of {topic}/{partition}"),
                    detail: "no end of partition within 60 s".into(),
                });
            }
        }
    }

    /// The registry id of each entry's own writer schema, retrying while the registry is away.
    fn schema_ids(&self, entries: &[JournalEntry]) -> Result<Vec<u32>, RuntimeError> {
        let mut ids = Vec::with_capacity(entries.len());
        for entry in entries {
            if let Some(id) = self.schemas.cached_id(entry) {
                ids.push(id);
                continue;
            }
            let mut backoff = Duration::from_millis(200);
            let id = loop {
                match self.runtime.block_on(self.schemas.id(entry)) {
                    Ok(id) => break id,
                    Err(e) if e.class() == Class::Retryable => {
                        if self.cancel.is_cancelled() {
                            return Err(RuntimeError::Cancelled);
                        }
                        warn!(service = %self.service, seq = entry.seq, error = %e, "finding the writer schema's id; retrying");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => return Err(RuntimeError::Config(e.to_string())),
                }
            };
            ids.push(id);
        }
        Ok(ids)
    }

    fn send_batch(
        &self,
        producer: &ThreadedProducer<InFlight>,
        topic: &str,
        partitions: i32,
        ids: &[u32],
        entries: &[JournalEntry],
        last: &HashMap<i32, u64>,
    ) -> Result<(HashMap<i32, u64>, u64), Failure> {
        producer.begin_transaction().map_err(classify)?;
        let mut sent = HashMap::new();
        let mut count = 0u64;
        for (i, partition) in placements(entries, partitions, last) {
            let entry = &entries[i];
            let payload = wire::frame(ids[i], &entry.body);
            let headers = crate::headers::headers(&self.service, self.store.journal_id(), entry);
            let mut record = BaseRecord::to(topic)
                .partition(partition)
                .key(entry.subject.as_bytes())
                .payload(&payload)
                .headers(headers);
            loop {
                match producer.send(record) {
                    Ok(()) => {
                        producer.context().sent();
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => {
                        abort(producer, &self.cancel);
                        return Err(Failure::Retry(e.to_string()));
                    }
                }
            }
            sent.insert(partition, entry.seq);
            count += 1;
            if i == entries.len() / 2 {
                failpoint::hit("publisher.mid-batch");
            }
        }
        failpoint::hit("publisher.before-commit");
        // Wait for the acknowledgements here, so commit_transaction's own flush finds nothing.
        match producer.context().wait(TXN_TIMEOUT) {
            Some(0) => {}
            Some(failed) => {
                abort(producer, &self.cancel);
                return Err(Failure::Retry(format!("{failed} sends of the transaction failed")));
            }
            None => {
                abort(producer, &self.cancel);
                return Err(Failure::Retry(format!(
                    "sends were not acknowledged within {} s",
                    TXN_TIMEOUT.as_secs()
                )));
            }
        }
        loop {
            match producer.commit_transaction(TXN_TIMEOUT) {
                Ok(()) => break,
                // The outcome is unknown; librdkafka wants the commit retried, not the batch.
                Err(KafkaError::Transaction(rd)) if rd.is_retriable() && !rd.txn_requires_abort() => {
                    warn!(service = %self.service, error = %rd, "committing the publish transaction; retrying the commit");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    let failure = classify(e);
                    if matches!(failure, Failure::Retry(_)) {
                        abort(producer, &self.cancel);
                    }
                    return Err(failure);
                }
            }
        }
        failpoint::hit("publisher.after-commit");
        Ok((sent, count))
    }
}

/// What a topic's tail says: per partition, the last seq of this service committed there (0 when
/// none) and the journal of that entry (where it names one), and whether the topic is empty.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    /// The topic.
    pub topic: String,
    /// Last committed seq per partition.
    pub last: HashMap<i32, u64>,
    /// Whether no partition holds a record.
    pub empty: bool,
    /// The journal of each partition's last entry.
    pub journals: HashMap<i32, Option<JournalId>>,
}

/// How many partitions the publisher hashes subjects over, given the topic's `actual` count:
/// the count the journal was first published with, kept when the topic grows. A subject's
/// events then never move partition, so every reader sees them in order: a consumer that is
/// behind, a replay, a new consumer reading from offset 0. Partitions added later stay empty
/// for this service (a warning says so); a topic with fewer partitions than that is refused.
pub fn hashing_partitions(service: &str, store: &Store, topic: &str, actual: i32) -> Result<i32, RuntimeError> {
    match store.publish_partitions()? {
        None => {
            store.set_publish_partitions(actual)?;
            Ok(actual)
        }
        Some(kept) if kept == actual => Ok(kept),
        Some(kept) if kept < actual => {
            warn!(%service, %topic, kept, actual, "the topic grew; subjects stay hashed over the partitions the journal started with, so each subject's events stay in order; the added partitions stay empty for this service");
            Ok(kept)
        }
        Some(kept) => Err(RuntimeError::Config(format!(
            "{topic} has {actual} partitions, but {service}'s journal was published over {kept}: the topic was recreated smaller. \
             Recreate it with {kept} partitions (set partitions: {kept} in the topology and deploy)"
        ))),
    }
}

/// Where publishing resumes after a start: every entry at or below the returned seq is out.
/// Refuses a store that is not the one that published to the topic, since publishing from it
/// would skip its entries as already out or repeat event ids.
pub fn resume(service: &str, store: &Store, tail: &Tail) -> Result<u64, RuntimeError> {
    let topic = &tail.topic;
    let ours = store.journal_id();
    for (partition, journal) in &tail.journals {
        let seq = tail.last.get(partition).copied().unwrap_or(0);
        let foreign = match journal {
            Some(j) => j != ours,
            // Written before journals were named: only a store that journaled then wrote it.
            None => seq >= ours.start,
        };
        if foreign {
            return Err(RuntimeError::Config(format!(
                "{topic} partition {partition} ends with entry {seq} of {service} from journal {}, but this store keeps journal {}: \
                 the store is not the one that published to this topic (a new store, or one restored from another store's backup), \
                 and publishing from it would skip its entries as already out or repeat event ids. \
                 Restore the store that belongs to the topic, or delete and recreate the topic to start over",
                journal.as_ref().map(JournalId::header).unwrap_or_else(|| "(unnamed, older version)".into()),
                ours.header()
            )));
        }
    }
    let journal_end = store.last_seq()?;
    if let Some(&ahead) = tail.last.values().filter(|s| **s > journal_end).max() {
        // Publishing from here would skip this journal's entries as "already out".
        return Err(RuntimeError::Config(format!(
            "{topic} holds entries of {service} up to seq {ahead}, but this store's journal ends at seq {journal_end}: \
             the store is not the one that published to this topic (a new store, or one restored from an older backup). \
             Restore the store that belongs to the topic, or delete and recreate the topic to start over"
        )));
    }
    let published = store.published_seq()?;
    Ok(if tail.empty && published > 0 {
        // The topic is authoritative: if it was recreated empty, everything goes out again.
        warn!(%service, %topic, published, "the topic is empty although entries were published before (recreated?); publishing the whole journal again");
        0
    } else {
        published.max(tail.last.values().copied().min().unwrap_or(0))
    })
}

/// The entries of a batch still to send, by index, with their partition: the partition is the
/// subject's (Kafka's murmur2), and an entry at or below its partition's last seq is out already.
pub fn placements(entries: &[JournalEntry], partitions: i32, last: &HashMap<i32, u64>) -> Vec<(usize, i32)> {
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            let partition = partition_for(entry.subject.as_bytes(), partitions);
            (entry.seq > last.get(&partition).copied().unwrap_or(0)).then_some((i, partition))
        })
        .collect()
}

/// Aborts the open transaction; its unsent messages are purged, and their failed delivery
/// reports are drained so the next transaction starts from zero. An abort that times out (the
/// cluster is unreachable longer than the transaction timeout) continues in the background and
/// must be called again to finish (librdkafka's `rd_kafka_abort_transaction`): until it does,
/// every `begin_transaction` is refused, and the publisher would retry a batch it can never
/// start. So a retriable failure is retried here, until cancelled.
fn abort(producer: &ThreadedProducer<InFlight>, cancel: &CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match producer.abort_transaction(TXN_TIMEOUT) {
            Ok(()) => break,
            Err(KafkaError::Transaction(rd)) if rd.is_retriable() && !cancel.is_cancelled() => {
                warn!(error = %rd, "aborting the publish transaction did not finish; retrying the abort");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                warn!(error = %e, "aborting the publish transaction failed");
                break;
            }
        }
    }
    let _ = producer.context().wait(TXN_TIMEOUT);
}

/// The tail reader's context: reaching the end of a partition is the point, not an error.
struct TailContext;

impl rdkafka::ClientContext for TailContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end_of_partition = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end_of_partition {
            warn!(%error, reason, "tail reader error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for TailContext {}

enum Failure {
    Retry(String),
    Fatal(RuntimeError),
}

fn classify(e: KafkaError) -> Failure {
    if let KafkaError::Transaction(rd) = &e {
        if rd.is_fatal() {
            return Failure::Fatal(RuntimeError::Kafka {
                what: "publishing".into(),
                detail: format!(
                    "{e}; another publisher with the same transactional id took over (two instances of one service?)"
                ),
            });
        }
    }
    Failure::Retry(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grown_topic_keeps_the_partition_count_the_journal_started_with() {
        let store = Store::in_memory();
        assert_eq!(
            hashing_partitions("orders", &store, "orders.events", 3).expect("first"),
            3
        );
        assert_eq!(
            hashing_partitions("orders", &store, "orders.events", 4).expect("grown"),
            3
        );
        assert_eq!(
            hashing_partitions("orders", &store, "orders.events", 3).expect("same"),
            3
        );
        let smaller = hashing_partitions("orders", &store, "orders.events", 2).expect_err("smaller");
        assert!(
            smaller.to_string().contains("Recreate it with 3 partitions"),
            "{smaller}"
        );
    }
}
