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
//!
//! The decisions are [`super::relay::Relay`]'s, which the simulator runs too; this module is
//! its librdkafka side ([`RdLog`]) and the loop that pauses between its steps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn};

use crate::codec::{Catalog, Registry};
use crate::envelope;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::translator::events_topic;

use super::in_flight::InFlight;
use super::journal_schemas::JournalSchemas;
use super::progress::Progress;
use super::recent::Recent;
use super::relay::{EventLog, Limits, LogError, Outgoing, Relay, Step, TailVisitor, Turn};
use super::RuntimeError;

/// How long a publish transaction may stay open before the coordinator aborts it. A batch
/// commits within milliseconds; the margin is for a broker failover mid-batch (KRaft elects a
/// new leader within the broker session timeout, 9 s by default). Kept short because a
/// transaction left open by a killed publisher holds read_committed consumers of the topic at
/// its first offset until a restarted publisher fences it or this expires.
const TXN_TIMEOUT: Duration = Duration::from_secs(20);
/// Entries per transaction at most.
const MAX_BATCH: usize = 5000;
/// The first pause after a failure the relay waits out; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(5);

pub(crate) struct Publisher {
    pub service: String,
    pub client: ClientConfig,
    pub store: Store,
    pub catalog: Arc<Catalog>,
    pub registry: Arc<Registry>,
    /// Each entry's own writer schema and id.
    pub schemas: Arc<JournalSchemas>,
    pub durable: Arc<Progress>,
    /// The entries the writer committed, in memory.
    pub recent: Arc<Recent>,
    /// The last seq known to be on the topic (snapshots wait for it to reach their cut).
    pub published: Arc<tokio::sync::watch::Sender<u64>>,
    pub metrics: Metrics,
    pub cancel: CancellationToken,
    pub runtime: Handle,
    /// How long to keep publishing durable entries after cancellation.
    pub drain: Duration,
}

impl Publisher {
    /// Steps the relay until cancelled (and drained) or failed, pausing only where it waits.
    pub fn run(self) -> Result<(), RuntimeError> {
        let topic = events_topic(&self.service);
        let _span = info_span!("publisher", service = %self.service, %topic).entered();
        let mut log = RdLog::new(&self.client, &self.service)?;
        let mut relay = Relay::new(
            &self.service,
            self.store.clone(),
            Arc::clone(&self.catalog),
            Arc::clone(&self.registry),
            Arc::clone(&self.schemas),
        )
        .reading(Arc::clone(&self.recent));
        let limits = Limits {
            batch: MAX_BATCH,
            sends: usize::MAX,
        };
        let mut pause = FIRST_PAUSE;
        let mut deadline = None;
        // When the open transaction's first send went out (for seam_publish_transaction_seconds).
        let mut transaction: Option<Instant> = None;
        loop {
            let durable = self.durable.get();
            if let Some(next) = relay.next() {
                self.metrics.set_backlog(durable.saturating_sub(next - 1));
            }
            if self.cancel.is_cancelled() {
                let end = *deadline.get_or_insert_with(|| Instant::now() + self.drain);
                match relay.next() {
                    Some(next) if next > durable && !relay.in_transaction() => return Ok(()),
                    next if Instant::now() > end => {
                        let backlog = next.map(|n| (durable + 1).saturating_sub(n));
                        warn!(
                            ?backlog,
                            "publisher stopped with entries unpublished; they go out on the next start"
                        );
                        return Ok(());
                    }
                    _ => {}
                }
            }
            let stepped = Instant::now();
            let step = relay.step(Turn {
                log: &mut log,
                runtime: &self.runtime,
                durable,
                limits,
            })?;
            if !matches!(step, Step::Wait(_)) {
                pause = FIRST_PAUSE;
            }
            match step {
                Step::Started { next } => {
                    self.published.send_replace(next - 1);
                    info!(next, "publisher started; tail recovered");
                }
                Step::Idle => {
                    self.durable.wait_beyond(durable, Duration::from_millis(200));
                }
                Step::Progress(_) => {
                    transaction.get_or_insert(stepped);
                }
                Step::Wait(why) => {
                    if self.cancel.is_cancelled() && relay.next().is_none() {
                        return Err(RuntimeError::Cancelled);
                    }
                    warn!(%why, "publisher waits and retries");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Step::Committed { end, count } => {
                    self.published.send_replace(end);
                    self.metrics.published(count);
                    let began = transaction.take().unwrap_or(stepped);
                    self.metrics.published_transaction(began.elapsed().as_secs_f64());
                }
            }
        }
    }
}

/// [`EventLog`] on librdkafka: a transactional producer whose sends are counted until their
/// delivery reports arrive, and a tail reader created while the tail is read.
struct RdLog {
    client: ClientConfig,
    service: String,
    producer: ThreadedProducer<InFlight>,
    tail: Option<BaseConsumer<TailContext>>,
}

impl RdLog {
    fn new(client: &ClientConfig, service: &str) -> Result<Self, RuntimeError> {
        let producer = client
            .clone()
            .set("transactional.id", format!("seam-publisher-{service}"))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("transaction.timeout.ms", TXN_TIMEOUT.as_millis().to_string())
            .create_with_context(InFlight::default())
            .map_err(|e| RuntimeError::kafka("creating the publisher".into(), e))?;
        Ok(Self {
            client: client.clone(),
            service: service.to_string(),
            producer,
            tail: None,
        })
    }

    fn tail_reader(&mut self) -> Result<&BaseConsumer<TailContext>, LogError> {
        if self.tail.is_none() {
            let consumer = self
                .client
                .clone()
                .set("group.id", format!("seam-tail-{}", self.service))
                .set("isolation.level", "read_committed")
                .set("enable.partition.eof", "true")
                .set("enable.auto.commit", "false")
                .create_with_context(TailContext)
                .map_err(|e| LogError::Fatal(RuntimeError::kafka("creating the tail reader".into(), e)))?;
            self.tail = Some(consumer);
        }
        Ok(self.tail.as_ref().unwrap_or_else(|| unreachable!("created above")))
    }

    /// Whatever the transaction failed with: fatal when another instance fenced this one.
    fn failed(e: KafkaError) -> LogError {
        if let KafkaError::Transaction(rd) = &e {
            if rd.is_fatal() {
                return LogError::Fatal(RuntimeError::Kafka {
                    what: "publishing".into(),
                    detail: format!(
                        "{e}; another publisher with the same transactional id took over (two instances of one service?)"
                    ),
                });
            }
        }
        LogError::Abort(e.to_string())
    }
}

impl EventLog for RdLog {
    fn partitions(&mut self, topic: &str) -> Result<i32, LogError> {
        let consumer: BaseConsumer = self
            .client
            .create()
            .map_err(|e| LogError::Fatal(RuntimeError::kafka("creating a metadata client".into(), e)))?;
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| LogError::Fatal(RuntimeError::kafka(format!("reading metadata of {topic}"), e)))?;
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len() as i32),
            _ => Err(LogError::Fatal(RuntimeError::TopicMissing {
                topic: topic.to_string(),
            })),
        }
    }

    fn init_transactions(&mut self) -> Result<(), LogError> {
        self.producer.init_transactions(TXN_TIMEOUT).map_err(|e| {
            LogError::Fatal(RuntimeError::kafka(
                format!("initialising transactions for {}", events_topic(&self.service)),
                e,
            ))
        })
    }

    fn watermarks(&mut self, topic: &str, partition: i32) -> Result<(i64, i64), LogError> {
        let consumer = self.tail_reader()?;
        super::watermarks::watermarks(consumer, topic, partition).map_err(LogError::Fatal)
    }

    fn scan(&mut self, topic: &str, partition: i32, from: i64, each: &mut TailVisitor<'_>) -> Result<(), LogError> {
        let consumer = self.tail_reader()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(from))
            .map_err(|e| LogError::Fatal(RuntimeError::kafka("building the tail assignment".into(), e)))?;
        consumer
            .assign(&tpl)
            .map_err(|e| LogError::Fatal(RuntimeError::kafka("assigning the tail reader".into(), e)))?;
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    let header = |name: &str| {
                        m.headers()
                            .and_then(|hs| hs.iter().find(|h| h.key == name))
                            .and_then(|h| h.value)
                    };
                    each(header(envelope::EVENT_ID), header(envelope::JOURNAL));
                }
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok(()),
                Some(Err(e)) => warn!(error = %e, "reading the topic tail"),
                None => {}
            }
            if Instant::now() > give_up {
                return Err(LogError::Fatal(RuntimeError::Kafka {
                    what: format!("reading the tail of {topic}/{partition}"),
                    detail: "no end of partition within 60 s".into(),
                }));
            }
        }
    }

    fn begin(&mut self) -> Result<(), LogError> {
        // The tail is read once, at start.
        self.tail = None;
        self.producer.begin_transaction().map_err(Self::failed)
    }

    fn send(&mut self, out: &Outgoing<'_>) -> Result<(), LogError> {
        // Exported, each publish is a span of the emitting span's trace, and the consumer's
        // apply continues from it.
        let published = match &out.entry.trace {
            Some(parent) if crate::trace::exporting() => {
                let span = tracing::info_span!(target: crate::trace::TARGET, "publish", otel.name = %format!("publish {}", out.entry.record), service = %out.service, topic = %out.topic, partition = out.partition, subject = %out.entry.subject, seq = out.entry.seq);
                crate::trace::continue_in(&span, Some(parent), false)
            }
            _ => None,
        };
        let headers = crate::headers::headers(out.service, out.journal, out.entry, published.as_deref());
        let mut record = BaseRecord::to(out.topic)
            .partition(out.partition)
            .key(out.entry.subject.as_bytes())
            .payload(out.payload)
            .headers(headers);
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.producer.context().sent();
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(Self::failed(e)),
            }
        }
    }

    fn commit(&mut self) -> Result<(), LogError> {
        // Wait for the acknowledgements here, so commit_transaction's own flush finds nothing.
        match self.producer.context().wait(TXN_TIMEOUT) {
            Some(0) => {}
            Some(failed) => return Err(LogError::Abort(format!("{failed} sends of the transaction failed"))),
            None => {
                return Err(LogError::Abort(format!(
                    "sends were not acknowledged within {} s",
                    TXN_TIMEOUT.as_secs()
                )))
            }
        }
        match self.producer.commit_transaction(TXN_TIMEOUT) {
            Ok(()) => Ok(()),
            // The outcome is unknown; librdkafka wants the commit retried, not the batch.
            Err(KafkaError::Transaction(rd)) if rd.is_retriable() && !rd.txn_requires_abort() => {
                Err(LogError::Again(rd.to_string()))
            }
            Err(e) => Err(Self::failed(e)),
        }
    }

    /// Aborts the open transaction; its unsent messages are purged, and their failed delivery
    /// reports are drained so the next transaction starts from zero. An abort that times out
    /// (the cluster is unreachable longer than the transaction timeout) continues in the
    /// background and must be called again to finish (librdkafka's
    /// `rd_kafka_abort_transaction`): until it does, every `begin_transaction` is refused.
    fn abort(&mut self) -> Result<(), LogError> {
        let result = match self.producer.abort_transaction(TXN_TIMEOUT) {
            Ok(()) => Ok(()),
            Err(KafkaError::Transaction(rd)) if rd.is_retriable() => return Err(LogError::Again(rd.to_string())),
            Err(e) => Err(Self::failed(e)),
        };
        let _ = self.producer.context().wait(TXN_TIMEOUT);
        result
    }
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
