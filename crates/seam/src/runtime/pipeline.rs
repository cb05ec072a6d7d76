//! Decode and translate: the pure part of taking in a foreign event, run on the consumer thread
//! so the writer only applies. Retryable failures (registry unavailable) are retried here with
//! backoff; everything else ends as commands, a filter, or poison with its reason.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::codec::{Attempt, Decoder, Registry};
use crate::envelope;
use crate::fault::{Class, Classify};
use crate::store::{EventKey, JournalId};
use crate::translator::{events_topic, ForeignEvent, Translator};

use super::RuntimeError;

/// A foreign record with everything needed to apply it, dead-letter it, or redrive it later.
#[derive(Debug, Clone)]
pub struct RawEvent {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: crate::headers::RawHeaders,
}

impl RawEvent {
    /// Copies a consumed Kafka message (the consumer's and the replay reader's one way in).
    pub fn from_message(m: &rdkafka::message::BorrowedMessage<'_>) -> Self {
        use rdkafka::message::Message;
        Self {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers: crate::headers::RawHeaders::from_borrowed(m.headers()),
        }
    }

    /// The event a dead letter holds, as it was read (redrive and discard take it up again).
    pub fn from_letter(letter: &crate::store::DeadLetter) -> Self {
        Self {
            topic: letter.topic.clone(),
            partition: letter.partition,
            offset: letter.offset,
            key: letter.key.clone(),
            value: letter.value.clone(),
            headers: letter.headers.as_slice().into(),
        }
    }

    /// Up to `max` records of `consumer`: waits up to `first` for one, then takes what is
    /// already there. A failure is returned only when it comes before any record (the records
    /// before it are worth applying first). For consumers that apply in batches (the sinks).
    pub fn poll_batch<C: rdkafka::consumer::ConsumerContext>(
        consumer: &rdkafka::consumer::BaseConsumer<C>,
        max: usize,
        first: Duration,
    ) -> Result<Vec<Self>, rdkafka::error::KafkaError> {
        let mut out = Vec::new();
        let mut wait = first;
        while out.len() < max {
            match consumer.poll(wait) {
                None => break,
                Some(Ok(m)) => out.push(Self::from_message(&m)),
                Some(Err(e)) if out.is_empty() => return Err(e),
                Some(Err(_)) => break,
            }
            wait = Duration::ZERO;
        }
        Ok(out)
    }

    /// This event as a dead letter of `consumer`: the original bytes and coordinates, and why.
    pub fn dead_letter(&self, consumer: &str, kind: &str, reason: String) -> crate::store::DeadLetter {
        crate::store::DeadLetter {
            consumer: consumer.to_string(),
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            subject: self.subject(),
            key: self.key.clone(),
            value: self.value.clone(),
            headers: self.headers.to_pairs(),
            class: Class::Poison,
            kind: kind.to_string(),
            reason,
            time_ms: envelope::now_ms(),
        }
    }

    /// The subject: the key as text (lossy for non-UTF-8 keys, which still group consistently).
    pub fn subject(&self) -> Option<String> {
        self.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// A UTF-8 header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// `seam-event-id`.
    pub fn event_id(&self) -> Option<&str> {
        self.header(envelope::EVENT_ID)
    }

    /// `seam-correlation-id`.
    pub fn correlation_id(&self) -> Option<&str> {
        self.header(envelope::CORRELATION_ID)
    }

    /// `traceparent`: the span that emitted or published the event.
    pub fn traceparent(&self) -> Option<&str> {
        self.header(envelope::TRACEPARENT)
    }

    /// `seam-prev-seq`: the seq of the previous event about the same subject.
    pub fn prev_seq(&self) -> Option<u64> {
        self.header(envelope::PREV_SEQ).and_then(|p| p.parse().ok())
    }

    /// How this event is recognised when it comes again; `None` without an event id.
    pub fn key(&self) -> Option<EventKey> {
        let id = self.event_id()?;
        let seq = id
            .rsplit_once('/')
            .filter(|(service, n)| {
                !service.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (*n == "0" || !n.starts_with('0'))
            })
            .and_then(|(_, n)| n.parse::<u64>().ok());
        let journal = self.header(envelope::JOURNAL).and_then(JournalId::parse);
        Some(match (seq, journal) {
            (Some(seq), Some(journal)) => EventKey::Tracked {
                topic: self.topic.clone(),
                journal,
                seq,
            },
            (Some(_), None) => EventKey::Legacy { id: id.to_string() },
            (None, _) => EventKey::Other { id: id.to_string() },
        })
    }
}

/// What the pipeline made of a record.
#[derive(Debug)]
pub enum Prepared<C> {
    /// Commands to apply, in order.
    Commands(Vec<C>),
    /// Nothing to apply: a record type the translator ignores, or an event it translated to
    /// no command.
    Filtered,
    /// A record type the translator neither reads nor ignores: skipped, and counted so an
    /// operator sees a type the producer added that nobody decided about.
    Unhandled {
        /// The record's full name.
        record: String,
    },
    /// The record cannot be taken in: dead-letter it.
    Poison {
        /// Stable short name of the failure.
        kind: String,
        /// Full message.
        reason: String,
    },
}

/// One attempt at preparing a record.
#[derive(Debug)]
pub enum Ready<C> {
    /// Prepared.
    Done(Prepared<C>),
    /// A failure that passes (the registry is unavailable): try again later.
    Transient(String),
}

/// What a translator declares about its source's record types.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Declared {
    /// Record types it reads (full names).
    pub reads: Vec<String>,
    /// Record types it deliberately ignores.
    pub ignores: Vec<String>,
    /// The reader schema it decodes each record it reads through, as compiled into this
    /// process: what `seam deploy` checks a new producer schema against while it runs.
    #[serde(default)]
    pub readers: BTreeMap<String, String>,
}

impl Declared {
    /// The declarations of `translator`.
    pub fn of<C: 'static>(translator: &dyn Translator<C>) -> Self {
        Self {
            reads: translator
                .reader_schemas()
                .into_iter()
                .map(|(r, _)| r.to_string())
                .collect(),
            ignores: translator.ignores().into_iter().map(str::to_string).collect(),
            readers: translator
                .reader_schemas()
                .into_iter()
                .map(|(r, s)| (r.to_string(), s.to_string()))
                .collect(),
        }
    }

    /// Whether the translator decided about `record`.
    pub fn covers(&self, record: &str) -> bool {
        self.reads.iter().chain(&self.ignores).any(|r| r == record)
    }
}

struct Source<C> {
    translator: Box<dyn Translator<C>>,
    decoder: Decoder,
    /// The translator's `ignores`, asked once (not per event of such a type).
    ignores: std::collections::HashSet<String>,
}

/// Translators by source topic, each with its decoder. Sources can be added while the node runs
/// (`seam register`); they are never removed from a running node.
pub struct Pipeline<C> {
    sources: RwLock<HashMap<String, Arc<Source<C>>>>,
    registry: Arc<Registry>,
    runtime: Handle,
}

impl<C: 'static> Pipeline<C> {
    /// Builds a decoder for each translator.
    pub fn new(
        translators: Vec<Box<dyn Translator<C>>>,
        registry: Arc<Registry>,
        runtime: Handle,
    ) -> Result<Self, RuntimeError> {
        let pipeline = Self {
            sources: RwLock::new(HashMap::new()),
            registry,
            runtime,
        };
        for translator in translators {
            pipeline.add(translator)?;
        }
        Ok(pipeline)
    }

    /// Adds a source; refuses a second translator for the same topic.
    pub fn add(&self, translator: Box<dyn Translator<C>>) -> Result<(), RuntimeError> {
        let topic = events_topic(translator.source());
        let decoder = Decoder::new(Arc::clone(&self.registry), translator.reader_schemas())
            .map_err(|e| RuntimeError::Config(format!("translator for {topic}: {e}")))?;
        let mut sources = self.sources.write().unwrap_or_else(|p| p.into_inner());
        if sources.contains_key(&topic) {
            return Err(RuntimeError::Config(format!(
                "two translators read {topic}; a consumer has exactly one translator per source"
            )));
        }
        let ignores = translator.ignores().into_iter().map(str::to_string).collect();
        sources.insert(
            topic,
            Arc::new(Source {
                translator,
                decoder,
                ignores,
            }),
        );
        Ok(())
    }

    /// Per source topic, the records the registry knows for it that its translator neither
    /// reads nor ignores: their events will be skipped and counted as unhandled.
    pub async fn undeclared(&self) -> Result<BTreeMap<String, Vec<String>>, crate::codec::RegistryError> {
        let sources: Vec<(String, Arc<Source<C>>)> = {
            let sources = self.sources.read().unwrap_or_else(|p| p.into_inner());
            sources.iter().map(|(t, s)| (t.clone(), Arc::clone(s))).collect()
        };
        let mut out = BTreeMap::new();
        for (topic, source) in sources {
            let missing: Vec<String> = self
                .registry
                .records_of(&topic)
                .await?
                .into_iter()
                .filter(|r| !source.decoder.reads(r) && !source.ignores.contains(r))
                .collect();
            if !missing.is_empty() {
                out.insert(topic, missing);
            }
        }
        Ok(out)
    }

    /// Per source topic, the record types its translator reads and the ones it ignores.
    pub fn declared(&self) -> BTreeMap<String, Declared> {
        let sources = self.sources.read().unwrap_or_else(|p| p.into_inner());
        sources
            .iter()
            .map(|(topic, s)| (topic.clone(), Declared::of(s.translator.as_ref())))
            .collect()
    }

    /// The source topics, sorted.
    pub fn topics(&self) -> Vec<String> {
        let sources = self.sources.read().unwrap_or_else(|p| p.into_inner());
        let mut topics: Vec<_> = sources.keys().cloned().collect();
        topics.sort();
        topics
    }

    /// Decodes and translates one record. Retryable failures back off and retry until
    /// `cancel` fires; fatal ones stop the consumer.
    pub fn prepare(&self, raw: &RawEvent, cancel: &CancellationToken) -> Result<Prepared<C>, RuntimeError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.try_prepare(raw)? {
                Ready::Done(prepared) => return Ok(prepared),
                Ready::Transient(why) => {
                    tracing::warn!(topic = %raw.topic, partition = raw.partition, offset = raw.offset, error = %why, "retrying after a transient error");
                }
            }
            if cancel.is_cancelled() {
                return Err(RuntimeError::Cancelled);
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One attempt at [`Pipeline::prepare`]: the record prepared, or the transient failure
    /// (registry unavailable) that makes it worth trying again later. The simulator calls this
    /// directly, so a registry outage costs it a step, never a sleep.
    pub fn try_prepare(&self, raw: &RawEvent) -> Result<Ready<C>, RuntimeError> {
        // Cloned out, so no lock is held across registry calls and backoff: a registration
        // (which takes the write lock) never waits for an outage.
        let source = {
            let sources = self.sources.read().unwrap_or_else(|p| p.into_inner());
            match sources.get(&raw.topic) {
                Some(source) => Arc::clone(source),
                None => return Ok(Ready::Done(Prepared::Filtered)),
            }
        };
        let payload = raw.value.as_deref().unwrap_or_default();
        let attempt = match source.decoder.try_decode(payload) {
            Ok(Attempt::NeedSchema(id)) => self
                .runtime
                .block_on(source.decoder.fetch(id))
                .and_then(|()| source.decoder.try_decode(payload)),
            other => other,
        };
        let decoded = match attempt {
            Ok(Attempt::Done(decoded)) => decoded,
            Ok(Attempt::Unread(record)) => {
                return Ok(Ready::Done(if source.ignores.contains(&record) {
                    Prepared::Filtered
                } else {
                    Prepared::Unhandled { record }
                }))
            }
            Ok(Attempt::NeedSchema(id)) => return Ok(Ready::Transient(format!("schema id {id} not fetched yet"))),
            Err(e) => match e.class() {
                Class::Poison => {
                    return Ok(Ready::Done(Prepared::Poison {
                        kind: e.kind().to_string(),
                        reason: e.to_string(),
                    }))
                }
                Class::Fatal => return Err(RuntimeError::Registry(e.to_string())),
                Class::Retryable => return Ok(Ready::Transient(e.to_string())),
            },
        };
        let event = ForeignEvent {
            topic: raw.topic.clone(),
            partition: raw.partition,
            offset: raw.offset,
            subject: raw.subject().unwrap_or_default(),
            event_id: raw.event_id().map(str::to_string),
            record: decoded.record,
            value: decoded.value,
        };
        Ok(Ready::Done(
            match crate::fault::panic::catch(|| source.translator.translate(&event)) {
                Ok(Ok(commands)) if commands.is_empty() => Prepared::Filtered,
                Ok(Ok(commands)) => Prepared::Commands(commands),
                Ok(Err(e)) => Prepared::Poison {
                    kind: "translator".into(),
                    reason: e.to_string(),
                },
                Err(message) => Prepared::Poison {
                    kind: "panic".into(),
                    reason: format!("the translator panicked: {message}"),
                },
            },
        ))
    }
}
