//! The publisher's decisions, one step at a time, with Kafka behind [`EventLog`]: the same
//! code runs on librdkafka in a service (`publisher.rs` drives it with real sleeps) and in the
//! deterministic simulator (which drives it between other processes' steps, on its own log).
//!
//! A step never sleeps and never retries by itself: a failure the cluster or the registry may
//! get over is answered as [`Step::Wait`], and the driver decides how long to pause.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::runtime::Handle;
use tracing::warn;

use crate::codec::{wire, Catalog, Registry};
use crate::envelope;
use crate::failpoint;
use crate::fault::{Class, Classify};
use crate::partitioner::partition_for;
use crate::store::{JournalEntry, JournalId, Store};
use crate::translator::events_topic;

use super::journal_schemas::JournalSchemas;
use super::recent::Recent;
use super::RuntimeError;

/// Kafka as the publisher uses it: one transactional producer (its `transactional.id` is the
/// service's) and a `read_committed` reader of its own topic's tail.
pub trait EventLog {
    /// How many partitions `topic` has.
    fn partitions(&mut self, topic: &str) -> Result<i32, LogError>;
    /// Fences every earlier incarnation of the producer and aborts what it left open.
    fn init_transactions(&mut self) -> Result<(), LogError>;
    /// A partition's low and high watermarks.
    fn watermarks(&mut self, topic: &str, partition: i32) -> Result<(i64, i64), LogError>;
    /// Visits the committed records of a partition from `from` to its end, in offset order,
    /// with their event-id and journal headers.
    fn scan(&mut self, topic: &str, partition: i32, from: i64, each: &mut TailVisitor<'_>) -> Result<(), LogError>;
    /// Begins a transaction.
    fn begin(&mut self) -> Result<(), LogError>;
    /// Sends one entry inside the open transaction.
    fn send(&mut self, out: &Outgoing<'_>) -> Result<(), LogError>;
    /// Commits the open transaction once every send of it is acknowledged.
    fn commit(&mut self) -> Result<(), LogError>;
    /// Aborts the open transaction; its sends never become visible.
    fn abort(&mut self) -> Result<(), LogError>;
}

/// Called with a tail record's event-id and journal headers.
pub type TailVisitor<'a> = dyn FnMut(Option<&[u8]>, Option<&[u8]>) + 'a;

/// One journal entry on its way to a partition.
pub struct Outgoing<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition the subject hashes to.
    pub partition: i32,
    /// The publishing service (its headers name it).
    pub service: &'a str,
    /// The journal the entry belongs to.
    pub journal: &'a JournalId,
    /// The entry.
    pub entry: &'a JournalEntry,
    /// The Confluent-framed body.
    pub payload: &'a [u8],
}

/// Why a call to the log failed, by what the publisher does next.
#[derive(Debug)]
pub enum LogError {
    /// The call did not finish (the cluster is away, an outcome is unknown): make it again.
    Again(String),
    /// The transaction failed: abort it and send the batch again.
    Abort(String),
    /// The publisher cannot go on (fenced by another instance, a missing topic).
    Fatal(RuntimeError),
}

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The tail is recovered: every entry below `next` is on the topic.
    Started {
        /// The first seq still to publish.
        next: u64,
    },
    /// Nothing durable is left to publish.
    Idle,
    /// Work inside a transaction.
    Progress(String),
    /// A failure the cluster or registry may get over; step again after a pause.
    Wait(String),
    /// A transaction committed the entries up to `end`: `count` events went out.
    Committed {
        /// The last seq of the batch.
        end: u64,
        /// Events sent (entries already out were skipped).
        count: u64,
    },
}

/// What one step is given: the log, a runtime to wait on the registry client with, the
/// writer's durable seq (nothing above it is read), and how much it may do.
pub struct Turn<'a> {
    /// The log.
    pub log: &'a mut dyn EventLog,
    /// Where the registry client's calls run.
    pub runtime: &'a Handle,
    /// The writer's durable seq.
    pub durable: u64,
    /// How much the step may do.
    pub limits: Limits,
}

/// How much one step may do: the simulator takes small bites, a service whole batches.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries per transaction at most.
    pub batch: usize,
    /// Sends per step at most.
    pub sends: usize,
}

/// The publisher of one service's journal.
pub struct Relay {
    service: String,
    topic: String,
    store: Store,
    catalog: Arc<Catalog>,
    registry: Arc<Registry>,
    schemas: Arc<JournalSchemas>,
    /// The writer's latest entries in memory, read before the store.
    recent: Option<Arc<Recent>>,
    state: State,
}

enum State {
    /// Registering the catalog's schemas (an incompatible one stops the service at start).
    Registering,
    /// Fencing earlier incarnations and recovering the tail.
    Starting,
    /// Publishing.
    Running(Box<Running>),
}

struct Running {
    partitions: i32,
    next: u64,
    /// The last seq of this journal on each partition.
    last: HashMap<i32, u64>,
    txn: Txn,
}

enum Txn {
    None,
    /// A transaction open, with sends left.
    Open(Batch),
    /// Every send made: committing.
    Committing(Batch),
    /// Aborting (an abort the cluster did not finish is made again before anything else, since
    /// the producer refuses to begin until it finishes); the batch is read again after.
    Aborting,
}

struct Batch {
    entries: Vec<JournalEntry>,
    ids: Vec<u32>,
    todo: VecDeque<(usize, i32)>,
    sent: HashMap<i32, u64>,
    count: u64,
    end: u64,
}

impl Relay {
    /// The publisher of `store`'s journal to `<service>.events`, not started.
    pub fn new(
        service: &str,
        store: Store,
        catalog: Arc<Catalog>,
        registry: Arc<Registry>,
        schemas: Arc<JournalSchemas>,
    ) -> Self {
        Self {
            service: service.to_string(),
            topic: events_topic(service),
            store,
            catalog,
            registry,
            schemas,
            recent: None,
            state: State::Registering,
        }
    }

    /// Takes the entries to publish from the writer's hand-over where it has them, and reads
    /// the store only for what it does not have.
    pub fn reading(mut self, recent: Arc<Recent>) -> Self {
        self.recent = Some(recent);
        self
    }

    /// The first seq not known to be on the topic, once started.
    pub fn next(&self) -> Option<u64> {
        match &self.state {
            State::Running(r) => Some(r.next),
            _ => None,
        }
    }

    /// Whether a transaction is open (or being aborted).
    pub fn in_transaction(&self) -> bool {
        matches!(&self.state, State::Running(r) if !matches!(r.txn, Txn::None))
    }

    /// Whether a step could do anything, given the writer's `durable` seq.
    pub fn has_work(&self, durable: u64) -> bool {
        match &self.state {
            State::Running(r) => !matches!(r.txn, Txn::None) || r.next <= durable,
            _ => true,
        }
    }

    /// One step: at most one transaction call and `limits.sends` sends. Entries above
    /// `durable` are never read, so nothing a crash could take back goes out.
    pub fn step(&mut self, turn: Turn<'_>) -> Result<Step, RuntimeError> {
        match &mut self.state {
            State::Registering => {
                for record in self.catalog.records() {
                    match turn.runtime.block_on(self.registry.register(&self.topic, record)) {
                        Ok(_) => {}
                        Err(e) if e.class() == Class::Retryable => {
                            return Ok(Step::Wait(format!("registering the event schemas: {e}")))
                        }
                        Err(e) => return Err(RuntimeError::Config(e.to_string())),
                    }
                }
                self.state = State::Starting;
                Ok(Step::Progress("event schemas registered".into()))
            }
            State::Starting => self.start(turn.log),
            State::Running(r) => {
                let journal = Journal {
                    service: &self.service,
                    topic: &self.topic,
                    store: &self.store,
                    schemas: &self.schemas,
                    recent: self.recent.as_deref(),
                };
                r.step(&journal, turn)
            }
        }
    }

    fn start(&mut self, log: &mut dyn EventLog) -> Result<Step, RuntimeError> {
        let actual = match log.partitions(&self.topic) {
            Ok(n) => n,
            Err(e) => return waiting(e, "reading the topic's partitions"),
        };
        let partitions = hashing_partitions(&self.service, &self.store, &self.topic, actual)?;
        if let Err(e) = log.init_transactions() {
            return waiting(e, "initialising transactions");
        }
        let tail = match read_tail(log, &self.service, &self.topic, partitions) {
            Ok(tail) => tail,
            Err(e) => return waiting(e, "reading the topic tail"),
        };
        let floor = resume(&self.service, &self.store, &tail)?;
        self.state = State::Running(Box::new(Running {
            partitions,
            next: floor + 1,
            last: tail.last,
            txn: Txn::None,
        }));
        Ok(Step::Started { next: floor + 1 })
    }
}

/// What a running relay reads and names: its service, topic, store and writer schemas.
struct Journal<'a> {
    service: &'a str,
    topic: &'a str,
    store: &'a Store,
    schemas: &'a JournalSchemas,
    recent: Option<&'a Recent>,
}

impl Running {
    fn step(&mut self, j: &Journal<'_>, turn: Turn<'_>) -> Result<Step, RuntimeError> {
        let Turn {
            log,
            runtime,
            durable,
            limits,
        } = turn;
        match std::mem::replace(&mut self.txn, Txn::None) {
            Txn::Aborting => match log.abort() {
                Ok(()) => Ok(Step::Progress("transaction aborted".into())),
                Err(LogError::Again(e)) => {
                    self.txn = Txn::Aborting;
                    Ok(Step::Wait(format!(
                        "aborting the publish transaction did not finish ({e}); retrying the abort"
                    )))
                }
                Err(LogError::Abort(e)) => {
                    warn!(service = %j.service, error = %e, "aborting the publish transaction failed");
                    Ok(Step::Progress("transaction abort failed".into()))
                }
                Err(LogError::Fatal(e)) => Err(e),
            },
            Txn::None => {
                if self.next > durable {
                    return Ok(Step::Idle);
                }
                let handed = j.recent.and_then(|r| r.take(self.next, durable, limits.batch));
                let entries: Vec<JournalEntry> = match handed {
                    Some(entries) => entries,
                    None => j
                        .store
                        .journal_from(self.next, limits.batch)?
                        .into_iter()
                        .filter(|e| e.seq <= durable)
                        .collect(),
                };
                let Some(end) = entries.last().map(|e| e.seq) else {
                    return Err(RuntimeError::Store(format!("journal entry {} is missing", self.next)));
                };
                let mut ids = Vec::with_capacity(entries.len());
                for entry in &entries {
                    if let Some(id) = j.schemas.cached_id(entry) {
                        ids.push(id);
                        continue;
                    }
                    match runtime.block_on(j.schemas.id(entry)) {
                        Ok(id) => ids.push(id),
                        Err(e) if e.class() == Class::Retryable => {
                            return Ok(Step::Wait(format!(
                                "finding the writer schema's id of entry {}: {e}",
                                entry.seq
                            )))
                        }
                        Err(e) => return Err(RuntimeError::Config(e.to_string())),
                    }
                }
                if let Err(e) = log.begin() {
                    return waiting(e, "beginning a publish transaction");
                }
                let todo = placements(&entries, self.partitions, &self.last).into();
                let from = self.next;
                self.txn = Txn::Open(Batch {
                    entries,
                    ids,
                    todo,
                    sent: HashMap::new(),
                    count: 0,
                    end,
                });
                Ok(Step::Progress(format!("transaction begun for {from}..={end}")))
            }
            Txn::Open(mut batch) => {
                let journal = j.store.journal_id().clone();
                for _ in 0..limits.sends {
                    let Some(&(i, partition)) = batch.todo.front() else {
                        break;
                    };
                    let entry = &batch.entries[i];
                    let payload = wire::frame(batch.ids[i], &entry.body);
                    let out = Outgoing {
                        topic: j.topic,
                        partition,
                        service: j.service,
                        journal: &journal,
                        entry,
                        payload: &payload,
                    };
                    match log.send(&out) {
                        Ok(()) => {}
                        Err(LogError::Fatal(e)) => return Err(e),
                        Err(LogError::Again(e) | LogError::Abort(e)) => {
                            self.txn = Txn::Aborting;
                            return Ok(Step::Wait(format!(
                                "sending entry {} failed ({e}); aborting and sending the batch again",
                                entry.seq
                            )));
                        }
                    }
                    batch.sent.insert(partition, entry.seq);
                    batch.count += 1;
                    batch.todo.pop_front();
                    if i == batch.entries.len() / 2 {
                        failpoint::hit("publisher.mid-batch");
                    }
                }
                if batch.todo.is_empty() {
                    failpoint::hit("publisher.before-commit");
                    let sent = batch.count;
                    self.txn = Txn::Committing(batch);
                    Ok(Step::Progress(format!("{sent} sent; committing")))
                } else {
                    let left = batch.todo.len();
                    self.txn = Txn::Open(batch);
                    Ok(Step::Progress(format!("{left} to send")))
                }
            }
            Txn::Committing(batch) => match log.commit() {
                Ok(()) => {
                    failpoint::hit("publisher.after-commit");
                    self.last.extend(batch.sent);
                    j.store.set_published_seq(batch.end)?;
                    self.next = batch.end + 1;
                    Ok(Step::Committed {
                        end: batch.end,
                        count: batch.count,
                    })
                }
                // The outcome is unknown; the commit is retried, not the batch.
                Err(LogError::Again(e)) => {
                    self.txn = Txn::Committing(batch);
                    Ok(Step::Wait(format!(
                        "committing the publish transaction ({e}); retrying the commit"
                    )))
                }
                Err(LogError::Abort(e)) => {
                    self.txn = Txn::Aborting;
                    Ok(Step::Wait(format!(
                        "the publish transaction failed ({e}); aborting and sending the batch again"
                    )))
                }
                Err(LogError::Fatal(e)) => Err(e),
            },
        }
    }
}

/// A log failure outside a transaction: waited out unless fatal.
fn waiting(e: LogError, what: &str) -> Result<Step, RuntimeError> {
    match e {
        LogError::Again(e) | LogError::Abort(e) => Ok(Step::Wait(format!("{what}: {e}"))),
        LogError::Fatal(e) => Err(e),
    }
}

/// The last entry of `service` on each partition: read backwards in growing windows from the
/// end, so a long topic costs a short read.
fn read_tail(log: &mut dyn EventLog, service: &str, topic: &str, partitions: i32) -> Result<Tail, LogError> {
    let mut tail = Tail {
        topic: topic.to_string(),
        empty: true,
        ..Tail::default()
    };
    for partition in 0..partitions {
        let (low, high) = log.watermarks(topic, partition)?;
        let mut found = None;
        if high > low {
            tail.empty = false;
            let mut window = 64i64;
            loop {
                let start = (high - window).max(low);
                log.scan(topic, partition, start, &mut |id, journal| {
                    let ours = id
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(envelope::parse_event_id)
                        .filter(|(s, _)| *s == service);
                    if let Some((_, seq)) = ours {
                        let journal = journal
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .and_then(JournalId::parse);
                        found = Some((seq, journal));
                    }
                })?;
                if found.is_some() || start == low {
                    break;
                }
                window *= 8;
            }
        }
        match found {
            Some((seq, journal)) => {
                tail.last.insert(partition, seq);
                tail.journals.insert(partition, journal);
            }
            None => {
                tail.last.insert(partition, 0);
            }
        }
    }
    Ok(tail)
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
