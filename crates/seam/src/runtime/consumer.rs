//! The consumer loop: one `BaseConsumer` on its own thread polls the service's source topics in
//! batches, runs each record through decode and translate and hands the batch to the writer.
//! It is pipelined: while the writer applies batch N the consumer polls, decodes and translates
//! batch N+1, and waits for N's apply only before handing N+1 over; flushes finish meanwhile.
//!
//! Positions come from the store, not from the group: on every assignment the consumer seeks each
//! partition to its stored position (after the retention guard), and group offsets are committed
//! only so tools can see progress, once a batch is durable. A batch counts as pending from the
//! moment it is handed over, so a revocation, which runs inside `poll`, first waits until every
//! batch handed over is applied and durable, and never finds half-applied work. At most one
//! batch waits for its apply and a few for their flush, which bounds memory.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn};

use crate::failpoint;
use crate::metrics::Metrics;
use crate::store::Store;

use super::pipeline::{Pipeline, RawEvent};
use super::rebuild::Rebuilds;
use super::retention;
use super::retention::RetentionError;
use super::writer::{Inbound, Request};
use super::RuntimeError;
use crate::store::EventKey;

/// How often lag gauges are refreshed.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// Rebalance handling and statistics for the consumer.
pub(crate) struct Context {
    service: String,
    store: Store,
    metrics: Metrics,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    fatal: Option<RuntimeError>,
    assigned: BTreeSet<(String, i32)>,
    ends: HashMap<(String, i32), i64>,
    /// Batches applied but not yet durable, oldest first.
    pending: VecDeque<Pending>,
    /// Durable next offsets not yet committed to the group, and when the group last got some.
    uncommitted: HashMap<(String, i32), i64>,
    last_commit: Option<Instant>,
}

/// Group offsets are for tools to see progress (positions live in the store): committed at most
/// this often while reading, and always before a revocation or a stop.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// A batch the writer applied whose flush is still running.
struct Pending {
    durable: oneshot::Receiver<Result<(), RuntimeError>>,
    /// The next offset of each partition the batch reached.
    next: Vec<(String, i32, i64)>,
}

/// Batches handed to the writer and not yet durable, at most; then the consumer waits for the
/// oldest.
const MAX_PENDING: usize = 4;

impl Context {
    fn fail(&self, error: RuntimeError) {
        if let Ok(mut s) = self.state.lock() {
            s.fatal.get_or_insert(error);
        }
    }

    fn take_fatal(&self) -> Option<RuntimeError> {
        self.state.lock().ok().and_then(|mut s| s.fatal.take())
    }

    /// Commits the group offsets of pending batches that became durable; with `wait`, waits
    /// for all of them (before a revocation or at the end). Fails on the writer's failure.
    fn settle(&self, consumer: &BaseConsumer<Self>, wait: bool) -> Result<(), RuntimeError> {
        self.settle_to(consumer, if wait { 0 } else { usize::MAX })
    }

    /// Like [`Self::settle`], waiting for the oldest pending batches until at most `keep` are
    /// left (`usize::MAX`: no waiting; 0: all).
    fn settle_to(&self, consumer: &BaseConsumer<Self>, keep: usize) -> Result<(), RuntimeError> {
        let wait = keep == 0;
        let mut done = Vec::new();
        let result = loop {
            let Some((mut front, left)) = self
                .state
                .lock()
                .ok()
                .and_then(|mut s| s.pending.pop_front().map(|f| (f, s.pending.len())))
            else {
                break Ok(());
            };
            let outcome = if left >= keep {
                front.durable.blocking_recv().map_err(|_| RuntimeError::WriterGone)
            } else {
                match front.durable.try_recv() {
                    Ok(r) => Ok(r),
                    Err(oneshot::error::TryRecvError::Empty) => {
                        if let Ok(mut s) = self.state.lock() {
                            s.pending.push_front(front);
                        }
                        break Ok(());
                    }
                    Err(oneshot::error::TryRecvError::Closed) => Err(RuntimeError::WriterGone),
                }
            };
            match outcome.and_then(|r| r) {
                Ok(()) => done.extend(front.next),
                Err(e) => break Err(e),
            }
        };
        let due = match self.state.lock() {
            Ok(mut s) => {
                for (topic, partition, next) in done {
                    s.uncommitted.insert((topic, partition), next);
                }
                let due = wait || s.last_commit.is_none_or(|t| t.elapsed() >= COMMIT_EVERY);
                if due && !s.uncommitted.is_empty() {
                    s.last_commit = Some(Instant::now());
                    std::mem::take(&mut s.uncommitted)
                } else {
                    HashMap::new()
                }
            }
            Err(_) => HashMap::new(),
        };
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in due {
            let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(next));
        }
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                debug!(service = %self.service, error = %e, "committing group offsets (visibility only) failed");
            }
        }
        result
    }

    fn pending(&self) -> usize {
        self.state.lock().map(|s| s.pending.len()).unwrap_or(0)
    }

    fn assigned(&self) -> Vec<(String, i32)> {
        self.state
            .lock()
            .map(|s| s.assigned.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Commits the store's positions of `partitions` to the group, for visibility.
    fn commit_positions(&self, consumer: &BaseConsumer<Self>, partitions: &[(String, i32)], mode: CommitMode) {
        let Ok(positions) = self.store.positions() else { return };
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in partitions {
            let next = positions.position(topic, *partition);
            if next > 0 {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(next));
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, mode) {
                debug!(service = %self.service, error = %e, "committing group offsets (visibility only) failed");
            }
        }
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) -> Result<(), RuntimeError> {
        let positions = self.store.positions()?;
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        retention::check(consumer, &partitions, &positions)?;
        let mut seeked = TopicPartitionList::new();
        for (topic, partition) in &partitions {
            let next = positions.position(topic, *partition);
            seeked
                .add_partition_offset(topic, *partition, Offset::Offset(next))
                .map_err(|e| RuntimeError::kafka("building the assignment".into(), e))?;
        }
        let assigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(&seeked),
            _ => consumer.assign(&seeked),
        };
        assigned.map_err(|e| RuntimeError::kafka("assigning partitions".into(), e))?;
        if let Ok(mut s) = self.state.lock() {
            s.assigned.extend(partitions.iter().cloned());
        }
        info!(service = %self.service, partitions = ?partitions, "partitions assigned; reading from the stored positions");
        Ok(())
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        // Everything polled so far is applied; wait until it is durable too.
        if let Err(e) = self.settle(consumer, true) {
            self.fail(e);
        }
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        self.commit_positions(consumer, &partitions, CommitMode::Sync);
        let result = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(e) = result {
            warn!(service = %self.service, error = %e, "unassigning revoked partitions failed");
        }
        if let Ok(mut s) = self.state.lock() {
            for p in &partitions {
                s.assigned.remove(p);
            }
        }
        for (topic, partition) in &partitions {
            self.metrics.remove_lag(topic, *partition);
        }
        info!(service = %self.service, partitions = ?partitions, "partitions revoked; everything polled from them is applied");
    }
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        if let Ok(mut s) = self.state.lock() {
            for (name, topic) in &statistics.topics {
                for (id, p) in &topic.partitions {
                    let end = if p.ls_offset >= 0 { p.ls_offset } else { p.hi_offset };
                    if *id >= 0 && end >= 0 {
                        s.ends.insert((name.clone(), *id), end);
                    }
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = self.assign(consumer, tpl) {
                    // The protocol still needs an answer; assign nothing and stop the loop.
                    let _ = consumer.unassign();
                    self.fail(e);
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                warn!(service = %self.service, error = ?other, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }
}

/// The consumer thread's settings and handles.
pub(crate) struct ConsumerLoop<C> {
    pub service: String,
    pub group_id: String,
    pub instance_id: String,
    pub client: ClientConfig,
    pub store: Store,
    pub pipeline: Arc<Pipeline<C>>,
    /// The topics to read; grows when a source is registered (after its bootstrap).
    pub topics: watch::Receiver<Vec<String>>,
    pub writer: mpsc::Sender<Request<C>>,
    pub metrics: Metrics,
    pub cancel: CancellationToken,
    pub max_batch: usize,
    /// Where a source whose events are gone goes instead of stopping the node.
    pub rebuilds: Arc<Rebuilds>,
}

impl<C: Send + 'static> ConsumerLoop<C> {
    /// Runs until cancelled or a fatal error; the last batch is always finished.
    pub fn run(mut self) -> Result<(), RuntimeError> {
        loop {
            let topics = self.topics.borrow_and_update().clone();
            if topics.is_empty() {
                info!(service = %self.service, "no sources to read yet; waiting for a registration");
                while !self.topics.has_changed().unwrap_or(false) {
                    if self.cancel.is_cancelled() {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            match self.consume(&topics) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                // The events this consumer needs next are gone: leave that source alone (the
                // node names the way out) and go on reading the others.
                Err(RuntimeError::Retention(e)) => {
                    self.rebuilds.mark(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The static member id for reading `topics`. A static member that rejoins with another
    /// subscription is not rebalanced by the broker (KAFKA-12759), so its new topics would stay
    /// unassigned: each set of topics gets its own id.
    fn member_id(&self, topics: &[String]) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(topics.join("\n").as_bytes());
        let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("{}-{short}", self.instance_id)
    }

    /// Reads `topics` as one group member until cancelled (false) or the topics change (true).
    fn consume(&mut self, topics: &[String]) -> Result<bool, RuntimeError> {
        let context = Context {
            service: self.service.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            state: Mutex::default(),
        };
        let mut client = self.client.clone();
        if client.get("session.timeout.ms").is_none() {
            // The member of an earlier topic set lingers this long before its partitions move.
            // Shorter risks losing the session while a killed broker's coordinator role fails
            // over (about 10 s in KRaft), and a static member rejoining then gets fenced.
            client.set("session.timeout.ms", "30000");
        }
        let consumer: BaseConsumer<Context> = client
            .set("group.id", &self.group_id)
            .set("group.instance.id", self.member_id(topics))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            .set("isolation.level", "read_committed")
            .set("statistics.interval.ms", "1000")
            .create_with_context(context)
            .map_err(|e| RuntimeError::kafka("creating the consumer".into(), e))?;
        let partitions = retention::partitions_of(&consumer, topics)?;
        retention::check(&consumer, &partitions, &self.store.positions()?)?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|e| RuntimeError::kafka(format!("subscribing to {topics:?}"), e))?;
        info!(service = %self.service, group = %self.group_id, topics = ?topics, "consumer subscribed");

        let mut last_lag = Instant::now();
        // Which source journal each partition was read from, as this member sends batches.
        let mut journals = HashMap::new();
        // The last batch handed over, until the writer says it is applied.
        let mut unapplied = None;
        let result = loop {
            if self.cancel.is_cancelled() {
                break Ok(false);
            }
            if let Some(e) = consumer.context().take_fatal() {
                break Err(e);
            }
            if self.topics.has_changed().unwrap_or(false) {
                break Ok(true);
            }
            let batch = match self.poll_batch(&consumer) {
                Ok(b) => b,
                Err(e) => break Err(e),
            };
            if !batch.is_empty() {
                if let Err(e) = self.process(&consumer, batch, &mut journals, &mut unapplied) {
                    break Err(e);
                }
            }
            // Batches that became durable meanwhile get their group offsets, batch or not.
            if let Err(e) = consumer.context().settle(&consumer, false) {
                break Err(e);
            }
            if last_lag.elapsed() >= LAG_EVERY {
                self.update_lag(&consumer);
                last_lag = Instant::now();
            }
        };
        let settled = consumer.context().settle(&consumer, true);
        let result = result.and_then(|more| settled.map(|()| more));
        let assigned = consumer.context().assigned();
        consumer
            .context()
            .commit_positions(&consumer, &assigned, CommitMode::Sync);
        consumer.unsubscribe();
        result
    }

    fn poll_batch(&self, consumer: &BaseConsumer<Context>) -> Result<Vec<RawEvent>, RuntimeError> {
        let mut batch = Vec::new();
        let mut timeout = Duration::from_millis(100);
        while batch.len() < self.max_batch {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => batch.push(RawEvent::from_message(&m)),
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                    // librdkafka found our offset out of range: name the gap precisely.
                    let assigned = consumer.context().assigned();
                    retention::check(consumer, &assigned, &self.store.positions()?)?;
                    return Err(RuntimeError::Kafka {
                        what: "reading".into(),
                        detail: "an offset went out of range (auto.offset.reset=error); check the topic's retention"
                            .into(),
                    });
                }
                Some(Err(e)) => {
                    warn!(service = %self.service, error = %e, "consumer error; librdkafka retries");
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        Ok(batch)
    }

    /// Decodes and translates `batch` (while the writer may still apply the one before), waits
    /// for that one's apply, then hands this one over and leaves it in `unapplied`.
    fn process(
        &self,
        consumer: &BaseConsumer<Context>,
        batch: Vec<RawEvent>,
        journals: &mut HashMap<(String, i32), Option<String>>,
        unapplied: &mut Option<oneshot::Receiver<()>>,
    ) -> Result<(), RuntimeError> {
        let first = batch.first().map(|r| (r.topic.clone(), r.partition, r.offset));
        let _span = info_span!("batch", service = %self.service, events = batch.len(), first = ?first).entered();
        failpoint::hit("consumer.polled");
        let intake = take_in(&self.store, batch, journals, |raw| {
            self.pipeline.prepare(raw, &self.cancel).map(Some)
        })?;
        // A recreated topic is set aside before anything of it reaches the store; the loop
        // then reads its other sources without it.
        for e in intake.recreated {
            self.rebuilds.mark(e);
        }
        if intake.items.is_empty() {
            return Ok(());
        }
        let items: Vec<Inbound<C>> = intake
            .items
            .into_iter()
            .map(|(raw, prepared)| Inbound { raw, prepared })
            .collect();
        let ctx = consumer.context();
        if let Some(before) = unapplied.take() {
            if before.blocking_recv().is_err() {
                // That batch failed before it was applied: its reply says why.
                ctx.settle(consumer, true)?;
                return Err(RuntimeError::WriterGone);
            }
            failpoint::hit("consumer.applied");
        }
        let (applied_tx, applied) = oneshot::channel();
        let (reply, durable) = oneshot::channel();
        // Pending from now on: a revocation waits for it to be applied and durable.
        if let Ok(mut s) = ctx.state.lock() {
            s.pending.push_back(Pending {
                durable,
                next: intake.next.into_iter().map(|((t, p), o)| (t, p, o)).collect(),
            });
        }
        self.writer
            .blocking_send(Request::Foreign {
                items,
                applied: Some(applied_tx),
                reply,
            })
            .map_err(|_| RuntimeError::WriterGone)?;
        *unapplied = Some(applied);
        if ctx.pending() > MAX_PENDING {
            ctx.settle_to(consumer, MAX_PENDING)?;
        }
        Ok(())
    }

    fn update_lag(&self, consumer: &BaseConsumer<Context>) {
        let Ok(positions) = self.store.positions() else { return };
        let ctx = consumer.context();
        let ends = ctx.state.lock().map(|s| s.ends.clone()).unwrap_or_default();
        // librdkafka's position also steps over transaction markers, which never reach the store.
        let mut read = HashMap::new();
        if let Ok(tpl) = consumer.position() {
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    read.insert((e.topic().to_string(), e.partition()), o);
                }
            }
        }
        for (topic, partition) in ctx.assigned() {
            let key = (topic.clone(), partition);
            if let Some(end) = ends.get(&key) {
                let at = positions
                    .position(&topic, partition)
                    .max(read.get(&key).copied().unwrap_or(0));
                self.metrics.set_lag(&topic, partition, (end - at).max(0));
            }
        }
    }
}

/// What a polled batch gives the writer, decided the same way by the service's consumer loop
/// and by the simulator's.
#[derive(Debug)]
pub struct Intake<P> {
    /// The events to apply, in order, each with what `prepare` made of it.
    pub items: Vec<(RawEvent, P)>,
    /// Per partition, the offset after the last event taken: the position once applied.
    pub next: HashMap<(String, i32), i64>,
    /// Topics found recreated under this consumer: nothing of them is taken, they wait for a
    /// rebuild.
    pub recreated: Vec<RetentionError>,
    /// Where `prepare` could not go on yet (the registry is out; the simulator's prepare only):
    /// this event and what follows in the batch are not taken, and are read again.
    pub held_at: Option<(String, i32, i64)>,
}

/// Takes in a polled batch: each event's journal is checked against its partition's (a
/// recreated topic is set aside whole, before anything of it reaches the store), then decoded
/// and translated by `prepare`. `prepare` answers `None` when it cannot go on now.
pub fn take_in<P>(
    store: &Store,
    batch: impl IntoIterator<Item = RawEvent>,
    journals: &mut HashMap<(String, i32), Option<String>>,
    mut prepare: impl FnMut(&RawEvent) -> Result<Option<P>, RuntimeError>,
) -> Result<Intake<P>, RuntimeError> {
    let mut intake = Intake {
        items: Vec::new(),
        next: HashMap::new(),
        recreated: Vec::new(),
        held_at: None,
    };
    for raw in batch {
        if intake.recreated.iter().any(|e| e.topic() == raw.topic) {
            continue;
        }
        if let Some(e) = another_journal(store, &raw, journals)? {
            intake.recreated.push(e);
            continue;
        }
        let Some(prepared) = prepare(&raw)? else {
            intake.held_at = Some((raw.topic.clone(), raw.partition, raw.offset));
            break;
        };
        intake.next.insert((raw.topic.clone(), raw.partition), raw.offset + 1);
        intake.items.push((raw, prepared));
    }
    Ok(intake)
}

/// The event's journal against the one its partition was read from so far (`journals`, filled
/// from the store as needed): another one means the topic was recreated under this consumer
/// (and grew past its position, or the retention guard would have refused it).
pub fn another_journal(
    store: &Store,
    raw: &RawEvent,
    journals: &mut HashMap<(String, i32), Option<String>>,
) -> Result<Option<RetentionError>, RuntimeError> {
    let Some(EventKey::Tracked { journal, .. }) = raw.key() else {
        return Ok(None);
    };
    let at = (raw.topic.clone(), raw.partition);
    let known = match journals.get(&at) {
        Some(known) => known.clone(),
        None => store.partition_journal(&raw.topic, raw.partition)?,
    };
    match known {
        Some(before) if before != journal.id => Ok(Some(RetentionError::Recreated {
            topic: raw.topic.clone(),
            partition: raw.partition,
            position: raw.offset,
            before,
            now: journal.id,
            remedy: RetentionError::default_remedy(&raw.topic, false),
        })),
        _ => {
            journals.insert(at, Some(journal.id));
            Ok(None)
        }
    }
}
