//! The HTTP sink's worker thread: a session at a time (one group consumer, one DLQ producer),
//! polling a batch, decoding and translating it, delivering its calls in order, producing its
//! dead letters, and only then committing its offsets.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use seam::codec::Registry;
use seam::runtime::{Pipeline, Prepared, RawEvent};
use seam::translator::dlq_topic;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::command::HttpCommand;
use crate::deliver::{deliver, Delivered};
use crate::{HttpSinkError, HttpSinkMetrics, HttpSinkOptions, State};

/// Most events per batch (one offset commit).
const BATCH: usize = 500;

pub(crate) struct Worker {
    service: String,
    base_url: String,
    pipeline: Pipeline<HttpCommand>,
    client: ClientConfig,
    metrics: HttpSinkMetrics,
    state: Arc<Mutex<State>>,
    handle: Handle,
    stop: CancellationToken,
    http: reqwest::Client,
}

/// Why a session ended.
enum End {
    Stop,
    Retry(String),
}

impl Worker {
    pub(crate) fn new(
        options: HttpSinkOptions,
        client: ClientConfig,
        registry: Arc<Registry>,
        metrics: HttpSinkMetrics,
        state: Arc<Mutex<State>>,
        handle: Handle,
        stop: CancellationToken,
    ) -> Result<Self, HttpSinkError> {
        let pipeline = Pipeline::new(options.translators, registry, handle.clone())
            .map_err(|e| HttpSinkError::Config(e.to_string()))?;
        if pipeline.topics().is_empty() {
            return Err(HttpSinkError::Config(format!(
                "the HTTP sink of {} has no translators, so it reads nothing",
                options.service
            )));
        }
        Ok(Self {
            service: options.service,
            base_url: options.base_url,
            pipeline,
            client,
            metrics,
            state,
            handle,
            stop,
            http: reqwest::Client::new(),
        })
    }

    fn set_trouble(&self, trouble: Option<String>) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).trouble = trouble;
    }

    pub(crate) fn run(self) {
        let mut pause = Duration::from_millis(200);
        loop {
            match self.session() {
                End::Stop => return,
                End::Retry(why) => {
                    warn!(service = %self.service, error = %why, "HTTP sink session ended; starting again from the committed offsets");
                    self.set_trouble(Some(why));
                }
            }
            let until = Instant::now() + pause;
            while Instant::now() < until {
                if self.stop.is_cancelled() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    fn session(&self) -> End {
        let consumer: BaseConsumer = match self
            .client
            .clone()
            .set("group.id", format!("seam-http-sink-{}", self.service))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .create()
        {
            Ok(c) => c,
            Err(e) => return End::Retry(format!("creating the consumer: {e}")),
        };
        let producer: FutureProducer = match self
            .client
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
        {
            Ok(p) => p,
            Err(e) => return End::Retry(format!("creating the DLQ producer: {e}")),
        };
        let topics = self.pipeline.topics();
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(e) = consumer.subscribe(&names) {
            return End::Retry(format!("subscribing to {topics:?}: {e}"));
        }
        info!(service = %self.service, ?topics, api = %self.base_url, "HTTP sink reading");
        loop {
            if self.stop.is_cancelled() {
                return End::Stop;
            }
            let batch = match RawEvent::poll_batch(&consumer, BATCH, Duration::from_millis(100)) {
                Ok(b) => b,
                Err(e) => return End::Retry(format!("reading the source topics: {e}")),
            };
            if batch.is_empty() {
                continue;
            }
            self.set_trouble(None);
            let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
            for raw in &batch {
                let prepared = match self.pipeline.prepare(raw, &self.stop) {
                    Ok(p) => p,
                    Err(seam::runtime::RuntimeError::Cancelled) => return End::Stop,
                    Err(e) => return End::Retry(e.to_string()),
                };
                let letter = match prepared {
                    Prepared::Commands(calls) => match self.call_all(raw, &calls) {
                        Some(Ok(())) => {
                            self.metrics.event(&raw.topic, "delivered");
                            None
                        }
                        Some(Err((kind, reason))) => Some((kind, reason)),
                        None => return End::Stop,
                    },
                    Prepared::Filtered | Prepared::Unhandled { .. } => {
                        self.metrics.event(&raw.topic, "skipped");
                        None
                    }
                    Prepared::Poison { kind, reason } => Some((kind, reason)),
                };
                if let Some((kind, reason)) = letter {
                    if let Err(e) = self.dead_letter(&producer, raw, &kind, &reason) {
                        return End::Retry(e);
                    }
                    self.metrics.event(&raw.topic, "dead-lettered");
                }
                next.insert((raw.topic.clone(), raw.partition), raw.offset + 1);
            }
            let mut list = TopicPartitionList::new();
            for ((topic, partition), offset) in &next {
                if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                    return End::Retry(format!("committing {topic}/{partition}: {e}"));
                }
            }
            if let Err(e) = consumer.commit(&list, CommitMode::Sync) {
                // A rebalance took the partitions: their calls come again, with the same keys.
                return End::Retry(format!("committing offsets: {e}"));
            }
        }
    }

    /// Delivers an event's calls in order; `None` when stopping, `Some(Err)` with the letter's
    /// kind and reason when the API refused one (the calls after it are not sent).
    #[allow(clippy::type_complexity)]
    fn call_all(&self, raw: &RawEvent, calls: &[HttpCommand]) -> Option<Result<(), (String, String)>> {
        let base = match raw.event_id() {
            Some(id) => id.to_string(),
            None => format!("{}/{}/{}", raw.topic, raw.partition, raw.offset),
        };
        for (i, call) in calls.iter().enumerate() {
            let key = format!("{base}/{i}");
            let retried = |why: &str| {
                self.metrics.retry();
                warn!(service = %self.service, error = %why, "the API did not take a call; sending it again");
            };
            let outcome = self
                .handle
                .block_on(deliver(&self.http, &self.base_url, call, &key, &self.stop, &retried));
            match outcome {
                Delivered::Taken(status) => self.metrics.call(status),
                Delivered::Stopped => return None,
                Delivered::Refused { status, answer } => {
                    return Some(Err((
                        format!("http-{status}"),
                        format!(
                            "{} {}{} (idempotency key {key}) was refused with {status}: {answer}",
                            call.method, self.base_url, call.path
                        ),
                    )))
                }
            }
        }
        Some(Ok(()))
    }

    fn dead_letter(&self, producer: &FutureProducer, raw: &RawEvent, kind: &str, reason: &str) -> Result<(), String> {
        let letter = raw.dead_letter(&self.service, kind, reason.to_string());
        let record = seam::dlq::dead_letter_record(&letter);
        let topic = dlq_topic(&self.service);
        let mut out = FutureRecord::<[u8], [u8]>::to(&topic).headers(seam::headers::to_headers(&record.headers));
        if let Some(k) = record.key.as_deref() {
            out = out.key(k);
        }
        if let Some(v) = record.value.as_deref() {
            out = out.payload(v);
        }
        self.handle
            .block_on(producer.send(out, Duration::from_secs(30)))
            .map(|_| ())
            .map_err(|(e, _)| {
                format!("producing a dead letter to {topic} (does it exist? `seam deploy` creates it): {e}")
            })
    }
}
