//! The single writer of a service's store. API commands, translated foreign events and redrives
//! queue here; the writer applies whatever is queued against one write set and commits it with
//! one atomic store write (group commit). The flusher makes it durable and answers every request
//! in the group while the writer goes on with the next (`flusher.rs`).
//!
//! Because one write carries the model change, the journal entries it emitted and the positions
//! it reached, a crash can never separate them (invariant 3); because positions and applied event
//! ids are checked before applying, redelivered and re-posted events change nothing (invariant 1).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug_span, warn};

use super::ExecuteError;
use crate::codec::Catalog;
use crate::dlq;
use crate::envelope;
use crate::failpoint;
use crate::fault::{Class, Classify};
use crate::metrics::Metrics;
use crate::offsets::{Delivery, OffsetMap};
use crate::service::{Apply, ApplyError, Cause, Service};
use crate::store::{EventKey, Store, WriteSet};

use super::flusher::{Flusher, Job};
use super::pipeline::{Prepared, RawEvent};
use super::progress::Progress;
use super::recent::Recent;
use super::redrive;
use super::RuntimeError;

/// Requests queued in one group at most; bounds the work (and memory) of one commit.
const MAX_GROUP: usize = 256;

/// A foreign record after the pipeline.
pub(crate) struct Inbound<C> {
    pub raw: RawEvent,
    pub prepared: Prepared<C>,
}

/// What the last chunk of a bootstrap stores with it.
#[derive(Debug, Clone)]
pub(crate) struct BootstrapEnd {
    /// The snapshot's offset map: the positions to read on from.
    pub positions: OffsetMap,
    /// The source journal and seq the snapshot covers: every event of it up to the seq counts
    /// as taken in (from snapshots of older versions: not known).
    pub covered: Option<(crate::store::JournalId, u64)>,
}

/// A snapshot as the writer exported it to its spool: the journal seq and the record count.
pub(crate) type Exported = (u64, u64);

/// Work run exclusively on the writer; an error discards what it staged.
pub type ExclusiveJob = Box<dyn FnOnce(&Store, &mut WriteSet) -> Result<(), RuntimeError> + Send>;

pub(crate) enum Request<C> {
    Command {
        command: C,
        cause: Cause,
        reply: oneshot::Sender<Result<Vec<u64>, ExecuteError>>,
    },
    Foreign {
        items: Vec<Inbound<C>>,
        /// Fires once the batch is applied and visible, before it is durable: the consumer polls
        /// on meanwhile instead of waiting for the flush.
        applied: Option<oneshot::Sender<()>>,
        /// Answers once the batch is durable (or failed).
        reply: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// One chunk of parked letters prepared by the redriver, applied in order in one write;
    /// `control` is the DLQ control reader's position to store with it.
    Redrive {
        items: Vec<redrive::Item<C>>,
        control: Option<(String, i32, i64)>,
        reply: oneshot::Sender<Result<redrive::ChunkOutcome, RuntimeError>>,
    },
    /// Export the state for a snapshot into the file `spool`, then hold every commit until
    /// `release` fires or its sender is dropped, so the caller can read the topic's offsets at
    /// exactly this cut.
    Snapshot {
        spool: std::path::PathBuf,
        reply: oneshot::Sender<Result<Exported, ApplyError>>,
        release: oneshot::Receiver<()>,
    },
    /// One chunk of a snapshot being loaded: applied with the resume marker in the same write;
    /// the last chunk also stores the snapshot's offset map as positions and clears the marker.
    Bootstrap {
        topic: String,
        marker: (u64, u64),
        items: Vec<Inbound<C>>,
        finish: Option<BootstrapEnd>,
        reply: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// Runs `job` alone on the writer after committing what came before: nothing else commits
    /// while it runs, and what it stages commits (durably) in one write when it succeeds; the
    /// writer then takes its positions from the store again.
    Exclusive {
        job: ExclusiveJob,
        reply: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// Foreign events posted over HTTP (putEvents): no Kafka position, deduplicated by event id.
    Put {
        items: Vec<Inbound<C>>,
        reply: oneshot::Sender<Result<Vec<PutOutcome>, RuntimeError>>,
    },
}

/// What happened to one event posted with putEvents.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum PutOutcome {
    /// Applied now.
    Applied,
    /// Already taken in earlier (by id): nothing changed.
    Duplicate,
    /// Not an event this service reads.
    Filtered,
    /// Its subject is parked behind a dead letter; it was parked too, to keep order.
    Parked,
    /// The previous event about its subject has not been taken in yet: applying it now would
    /// break the subject's order, so nothing was stored. Post the missing event first, or let
    /// the topic deliver both in order.
    OutOfOrder {
        /// The event id of the missing predecessor, or why the order cannot be checked.
        missing: String,
    },
    /// It cannot be taken in; nothing was stored.
    Rejected {
        /// Why.
        reason: String,
    },
}

/// What became of one foreign event the writer took in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TakenIn {
    /// Its commands were applied.
    Applied,
    /// Already taken in by its event id (a republished copy).
    Duplicate,
    /// Read before at this position (Kafka redelivered it).
    Redelivered,
    /// The translator had nothing for the consumer.
    Filtered,
    /// A record type no translator declares.
    Unhandled,
    /// Parked behind a dead letter, or dead-lettered itself (counted where it is parked).
    DeadLettered,
}

impl TakenIn {
    /// The metric label of a skipped event; `None` for one counted elsewhere.
    fn skipped(self) -> Option<&'static str> {
        match self {
            Self::Duplicate => Some("duplicate"),
            Self::Redelivered => Some("redelivered"),
            Self::Filtered => Some("filtered"),
            Self::Unhandled => Some("unhandled"),
            Self::Applied | Self::DeadLettered => None,
        }
    }
}

/// An answer held until its group is durable.
pub(crate) enum Reply {
    Command(
        oneshot::Sender<Result<Vec<u64>, ExecuteError>>,
        Result<Vec<u64>, ApplyError>,
    ),
    Foreign(oneshot::Sender<Result<(), RuntimeError>>),
    Redrive(
        oneshot::Sender<Result<redrive::ChunkOutcome, RuntimeError>>,
        redrive::ChunkOutcome,
    ),
    Put(oneshot::Sender<Result<Vec<PutOutcome>, RuntimeError>>, Vec<PutOutcome>),
}

pub(crate) struct Writer<S: Service> {
    /// The journal of the last event read from each source partition, as stored (filled as
    /// needed; emptied when an exclusive job may have changed it).
    pub journals: std::cell::RefCell<HashMap<(String, i32), Option<String>>>,
    pub name: String,
    pub service: Arc<S>,
    pub store: Store,
    pub catalog: Arc<Catalog>,
    pub metrics: Metrics,
    pub durable: Arc<Progress>,
    pub outbox: Arc<Progress>,
    /// Where committed journal entries go for the publisher (none where nothing publishes).
    pub recent: Option<Arc<Recent>>,
}

pub(crate) struct Group {
    pub(crate) set: WriteSet,
    replies: Vec<Reply>,
    applied: Vec<oneshot::Sender<()>>,
    outbox_queued: bool,
}

impl Group {
    /// Answers every request still waiting in the group with a store failure.
    pub(crate) fn fail(&mut self, why: &str) {
        self.applied.clear();
        for reply in std::mem::take(&mut self.replies) {
            reply.fail(why);
        }
    }
}

impl Reply {
    /// Answers: the group is durable.
    pub(crate) fn succeed(self) {
        match self {
            Reply::Command(tx, result) => {
                let _ = tx.send(result.map_err(ExecuteError::Apply));
            }
            Reply::Foreign(tx) => {
                let _ = tx.send(Ok(()));
            }
            Reply::Redrive(tx, summary) => {
                let _ = tx.send(Ok(summary));
            }
            Reply::Put(tx, outcomes) => {
                let _ = tx.send(Ok(outcomes));
            }
        }
    }

    /// Answers: the store failed while making the group durable.
    pub(crate) fn fail(self, why: &str) {
        let failure = || RuntimeError::Store(why.to_string());
        match self {
            Reply::Command(tx, _) => {
                let _ = tx.send(Err(ExecuteError::Store(why.to_string())));
            }
            Reply::Foreign(tx) => {
                let _ = tx.send(Err(failure()));
            }
            Reply::Redrive(tx, _) => {
                let _ = tx.send(Err(failure()));
            }
            Reply::Put(tx, _) => {
                let _ = tx.send(Err(failure()));
            }
        }
    }
}

impl<S: Service> Writer<S> {
    /// Runs until every sender is gone; the last group is committed before returning. On a
    /// failure every request of the group still waiting is answered with it.
    pub fn run(self, mut rx: mpsc::Receiver<Request<S::Command>>) -> Result<(), RuntimeError> {
        let mut positions = self.store.positions()?;
        let flusher = Flusher::start(
            &self.name,
            self.store.clone(),
            Arc::clone(&self.durable),
            Arc::clone(&self.outbox),
            self.metrics.clone(),
        )?;
        while let Some(first) = rx.blocking_recv() {
            flusher.check()?;
            let mut group = self.group()?;
            let mut next = Some(first);
            let mut taken = 0;
            let mut result = Ok(());
            while let Some(request) = next.take() {
                taken += 1;
                result = self.handle(&mut group, &mut positions, request);
                if result.is_err() {
                    break;
                }
                if taken < MAX_GROUP {
                    next = rx.try_recv().ok();
                }
            }
            if let Err(e) = result.and_then(|()| self.commit_written(&mut group, &flusher)) {
                group.fail(&e.to_string());
                return Err(e);
            }
        }
        flusher.finish()
    }

    /// Takes one request into the group (some commit what came before first).
    pub(crate) fn handle(
        &self,
        group: &mut Group,
        positions: &mut OffsetMap,
        request: Request<S::Command>,
    ) -> Result<(), RuntimeError> {
        match request {
            Request::Command { command, cause, reply } => {
                let result = self.command(&mut group.set, &command, &cause);
                if let Err(e) = &result {
                    if e.class() == Class::Fatal {
                        let why = e.to_string();
                        let _ = reply.send(Err(ExecuteError::Store(why.clone())));
                        return Err(RuntimeError::Store(why));
                    }
                }
                group.replies.push(Reply::Command(reply, result));
            }
            Request::Foreign { items, applied, reply } => {
                match self.foreign(group, positions, items) {
                    Ok(()) => {
                        group.replies.push(Reply::Foreign(reply));
                        group.applied.extend(applied);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.clone()));
                        return Err(e);
                    }
                }
                failpoint::hit("writer.mid-group");
            }
            Request::Snapshot { spool, reply, release } => {
                self.commit(group)?;
                let spool_failed = |e: std::io::Error| {
                    ApplyError::Store(crate::store::StoreError::Corrupt {
                        what: "snapshot spool",
                        detail: format!("{}: {e}", spool.display()),
                    })
                };
                let result = crate::snapshot::spool::RawWriter::create(&spool)
                    .map_err(spool_failed)
                    .and_then(|raw| {
                        let mut out = crate::service::SnapshotOut::spooled(&self.store, &self.catalog, raw);
                        crate::fault::panic::catch(|| self.service.snapshot(&mut out))
                            .map_err(ApplyError::Panicked)
                            .and_then(|r| r)?;
                        out.finish().map_err(spool_failed)
                    })
                    .map(|count| (self.store.last_seq().unwrap_or(0), count));
                let exported = result.is_ok();
                let _ = reply.send(result);
                if exported {
                    // Hold every commit until the caller has read the topic's offsets at this cut
                    // and releases, or gives up (drops the sender): never on a timer of its own,
                    // or a map read after it could run ahead of the state.
                    let _ = release.blocking_recv();
                }
            }
            Request::Bootstrap {
                topic,
                marker,
                items,
                finish,
                reply,
            } => {
                for Inbound { raw, prepared } in items {
                    if let Err(e) = self.take_in(group, &raw, prepared) {
                        let _ = reply.send(Err(e.clone()));
                        return Err(e);
                    }
                    group.set.keep();
                }
                match finish {
                    Some(end) => {
                        for (t, p, o) in end.positions.iter() {
                            positions.set(t, p, o);
                            group.set.set_position(t, p, o);
                        }
                        if let Some((journal, seq)) = &end.covered {
                            group.set.take_through(&self.store, &topic, journal, *seq)?;
                        }
                        group.set.set_bootstrap_marker(&topic, None);
                    }
                    None => group.set.set_bootstrap_marker(&topic, Some(marker)),
                }
                group.set.keep();
                group.replies.push(Reply::Foreign(reply));
            }
            Request::Exclusive { job, reply } => {
                self.commit(group)?;
                match job(&self.store, &mut group.set) {
                    Ok(()) => {
                        group.set.keep();
                        // A job may queue DLQ records (a swap's resolved letters, discards).
                        group.outbox_queued = true;
                        self.commit(group)?;
                        // The job may have moved positions (a replay's swap, an accepted gap):
                        // what is new and what is a redelivery is decided by the stored ones.
                        *positions = self.store.positions()?;
                        self.journals.borrow_mut().clear();
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        group.set.discard();
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Request::Put { items, reply } => match self.put(group, items) {
                Ok(outcomes) => group.replies.push(Reply::Put(reply, outcomes)),
                Err(e) => {
                    let _ = reply.send(Err(e.clone()));
                    return Err(e);
                }
            },
            Request::Redrive { items, control, reply } => match self.redrive(group, positions, items, control) {
                Ok(outcome) => group.replies.push(Reply::Redrive(reply, outcome)),
                Err(e) => {
                    let _ = reply.send(Err(e.clone()));
                    return Err(e);
                }
            },
        }
        Ok(())
    }

    /// Commits a group without flushing (offline use: replays and tests).
    pub(crate) fn commit_quietly(&self, mut group: Group) -> Result<(), RuntimeError> {
        self.store.commit(&mut group.set, false)?;
        Ok(())
    }

    pub(crate) fn group(&self) -> Result<Group, RuntimeError> {
        Ok(Group {
            set: self.store.write_set()?,
            replies: Vec::new(),
            applied: Vec::new(),
            outbox_queued: false,
        })
    }

    /// Commits what the group kept, durably, and answers its requests; the group goes on from
    /// there. For steps that must see everything before them durable (snapshot, redrive,
    /// exclusive jobs); the flush also covers groups still queued at the flusher.
    fn commit(&self, group: &mut Group) -> Result<(), RuntimeError> {
        let last_seq = group.set.last_seq();
        if !group.set.is_empty() {
            failpoint::hit("writer.before-commit");
            let started = std::time::Instant::now();
            let entries = self.store.commit(&mut group.set, true)?;
            self.metrics.committed(started.elapsed().as_secs_f64());
            self.hand_over(entries);
            failpoint::hit("writer.after-commit");
        } else {
            // Nothing of its own to write, but groups written before may still wait for the
            // flusher: raising the durable seq over them unflushed would let the publisher
            // publish entries a crash can take back.
            self.store.flush()?;
        }
        for applied in std::mem::take(&mut group.applied) {
            let _ = applied.send(());
        }
        self.durable.raise(last_seq);
        if std::mem::take(&mut group.outbox_queued) {
            self.outbox.nudge();
        }
        for reply in std::mem::take(&mut group.replies) {
            reply.succeed();
        }
        Ok(())
    }

    /// Leaves committed entries for the publisher.
    fn hand_over(&self, entries: Vec<crate::store::JournalEntry>) {
        if let Some(recent) = &self.recent {
            recent.push(entries);
        }
    }

    /// Writes what the group kept (visible at once), tells waiting consumers it is applied,
    /// and leaves the flush and the answers to the flusher.
    fn commit_written(&self, group: &mut Group, flusher: &Flusher) -> Result<(), RuntimeError> {
        let job = self.write(group)?;
        flusher.queue(job)
    }

    /// Writes what the group kept without flushing and tells waiting consumers it is applied;
    /// the returned job holds its answers until the flush.
    pub(crate) fn write(&self, group: &mut Group) -> Result<Job, RuntimeError> {
        let last_seq = group.set.last_seq();
        if !group.set.is_empty() {
            failpoint::hit("writer.before-commit");
            let started = std::time::Instant::now();
            let entries = self.store.commit(&mut group.set, false)?;
            self.metrics.committed(started.elapsed().as_secs_f64());
            self.hand_over(entries);
        }
        for applied in std::mem::take(&mut group.applied) {
            let _ = applied.send(());
        }
        Ok(Job {
            last_seq,
            outbox: std::mem::take(&mut group.outbox_queued),
            replies: std::mem::take(&mut group.replies),
        })
    }

    fn apply_all(&self, set: &mut WriteSet, commands: &[S::Command], cause: &Cause) -> Result<Vec<u64>, ApplyError> {
        let mut ctx = Apply::new(&self.store, set, &self.catalog, cause, envelope::now_ms());
        for command in commands {
            crate::fault::panic::catch(|| self.service.apply(&mut ctx, command)).map_err(ApplyError::Panicked)??;
        }
        Ok(ctx.take_emitted())
    }

    /// A foreign event's commands: a placeholder key they write is the replica's from then on.
    fn apply_foreign(&self, set: &mut WriteSet, commands: &[S::Command], cause: &Cause) -> Result<(), ApplyError> {
        self.apply_all(set, commands, cause)?;
        set.settle_placeholders(&self.store)?;
        Ok(())
    }

    pub(crate) fn command(
        &self,
        set: &mut WriteSet,
        command: &S::Command,
        cause: &Cause,
    ) -> Result<Vec<u64>, ApplyError> {
        match self.apply_all(set, std::slice::from_ref(command), cause) {
            Ok(seqs) => {
                set.keep();
                self.metrics.command("applied");
                Ok(seqs)
            }
            Err(e) => {
                set.discard();
                self.metrics.command("rejected");
                Err(e)
            }
        }
    }

    pub(crate) fn foreign(
        &self,
        group: &mut Group,
        positions: &mut OffsetMap,
        items: Vec<Inbound<S::Command>>,
    ) -> Result<(), RuntimeError> {
        // Counted per batch, not per event: metrics stay off the per-event path.
        let mut counts: HashMap<(String, TakenIn), u64> = HashMap::new();
        // Positions reached, staged once per partition at the end: same commit, fewer writes.
        let mut reached: Vec<(String, i32, i64)> = Vec::new();
        for Inbound { raw, prepared } in items {
            let _span = debug_span!("take_in", service = %self.name, topic = %raw.topic, partition = raw.partition, offset = raw.offset).entered();
            let outcome = if positions.classify(&raw.topic, raw.partition, raw.offset) == Delivery::Redelivered {
                TakenIn::Redelivered
            } else {
                positions.advance(&raw.topic, raw.partition, raw.offset);
                let outcome = self.take_in(group, &raw, prepared)?;
                self.note_journal(group, &raw)?;
                group.set.keep();
                match reached
                    .iter_mut()
                    .find(|(t, p, _)| *p == raw.partition && *t == raw.topic)
                {
                    Some(r) => r.2 = raw.offset + 1,
                    None => reached.push((raw.topic.clone(), raw.partition, raw.offset + 1)),
                }
                outcome
            };
            if outcome != TakenIn::DeadLettered {
                *counts.entry((raw.topic, outcome)).or_default() += 1;
            }
        }
        for (topic, partition, next) in reached {
            group.set.set_position(&topic, partition, next);
        }
        group.set.keep();
        for ((topic, outcome), n) in counts {
            match outcome.skipped() {
                None => self.metrics.applied(&topic, n),
                Some(reason) => self.metrics.skipped(&topic, reason, n),
            }
        }
        Ok(())
    }

    /// Records which source journal the partition of a Kafka event was read from, when it
    /// changes: the consumer tells a recreated topic by it.
    fn note_journal(&self, group: &mut Group, raw: &RawEvent) -> Result<(), RuntimeError> {
        let Some(EventKey::Tracked { journal, .. }) = raw.key() else {
            return Ok(());
        };
        let at = (raw.topic.clone(), raw.partition);
        let mut journals = self.journals.borrow_mut();
        let known = match journals.get(&at) {
            Some(known) => known.clone(),
            None => self.store.partition_journal(&raw.topic, raw.partition)?,
        };
        if known.as_deref() != Some(journal.id.as_str()) {
            group
                .set
                .set_partition_journal(&raw.topic, raw.partition, Some(&journal.id));
        }
        journals.insert(at, Some(journal.id));
        Ok(())
    }

    fn put(&self, group: &mut Group, items: Vec<Inbound<S::Command>>) -> Result<Vec<PutOutcome>, RuntimeError> {
        let mut outcomes = Vec::with_capacity(items.len());
        for Inbound { raw, prepared } in items {
            let outcome = match prepared {
                // A client posted something unusable: tell it, store nothing.
                Prepared::Poison { reason, .. } => PutOutcome::Rejected { reason },
                prepared => match self.missing_predecessor(group, &raw)? {
                    Some(missing) => PutOutcome::OutOfOrder { missing },
                    None => match self.take_in(group, &raw, prepared)? {
                        TakenIn::Applied => PutOutcome::Applied,
                        TakenIn::Duplicate | TakenIn::Redelivered => PutOutcome::Duplicate,
                        TakenIn::Filtered | TakenIn::Unhandled => PutOutcome::Filtered,
                        TakenIn::DeadLettered
                            if group
                                .set
                                .is_parked(&self.store, &raw.topic, &raw.subject().unwrap_or_default())? =>
                        {
                            PutOutcome::Parked
                        }
                        TakenIn::DeadLettered => PutOutcome::Rejected {
                            reason: "the translated command failed; see the consumer's DLQ".into(),
                        },
                    },
                },
            };
            group.set.keep();
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// For an event posted with putEvents (no Kafka partition orders it): the event id of the
    /// previous event about its subject when that one was not taken in yet, or why the order
    /// cannot be checked; `None` when it may be taken in now (or is a duplicate).
    fn missing_predecessor(&self, group: &mut Group, raw: &RawEvent) -> Result<Option<String>, RuntimeError> {
        let Some(key) = raw.key() else {
            return Ok(Some("it has no seam-event-id".into()));
        };
        if group.set.is_taken(&self.store, &key)? {
            return Ok(None);
        }
        let EventKey::Tracked { topic, journal, .. } = &key else {
            return Ok(Some(
                "it carries no seam-journal (published by an older seam or another producer), so its order cannot be checked; it is taken in from the topic".into(),
            ));
        };
        let Some(prev) = raw.prev_seq() else {
            return Ok(Some(
                "it carries no seam-prev-seq, so its order cannot be checked; it is taken in from the topic".into(),
            ));
        };
        if prev == 0 {
            return Ok(None);
        }
        let service = raw
            .event_id()
            .and_then(|id| id.rsplit_once('/'))
            .map(|(s, _)| s.to_string())
            .unwrap_or_default();
        let id = envelope::event_id(&service, prev);
        let predecessor = if prev >= journal.start {
            EventKey::Tracked {
                topic: topic.clone(),
                journal: journal.clone(),
                seq: prev,
            }
        } else {
            EventKey::Legacy { id: id.clone() }
        };
        Ok((!group.set.is_taken(&self.store, &predecessor)?).then_some(id))
    }

    /// Applies, skips or parks one new foreign event; the caller stages its position and counts
    /// the outcome (dead letters are counted here).
    fn take_in(
        &self,
        group: &mut Group,
        raw: &RawEvent,
        prepared: Prepared<S::Command>,
    ) -> Result<TakenIn, RuntimeError> {
        let subject = raw.subject().unwrap_or_default();
        let key = raw.key();
        if let Some(key) = &key {
            if group.set.is_taken(&self.store, key)? {
                return Ok(TakenIn::Duplicate);
            }
        }
        // Whatever happens below, the event is taken in: applied, filtered, or held by a dead
        // letter (which a redrive applies, and a redelivery must not park again).
        let outcome = if group.set.is_parked(&self.store, &raw.topic, &subject)? {
            let reason = format!("subject {subject} is parked behind an earlier dead letter; it waits for a redrive");
            self.park(group, raw, "parked", reason)?;
            self.metrics.parked(&raw.topic);
            TakenIn::DeadLettered
        } else {
            match prepared {
                Prepared::Filtered => TakenIn::Filtered,
                Prepared::Unhandled { record } => {
                    group.set.count_unhandled(&self.store, &raw.topic, &record)?;
                    self.metrics.unhandled(&raw.topic, &record);
                    TakenIn::Unhandled
                }
                Prepared::Poison { kind, reason } => {
                    warn!(service = %self.name, topic = %raw.topic, partition = raw.partition, offset = raw.offset, %kind, %reason, "dead-lettering a poison event");
                    self.metrics.dead_lettered(&raw.topic, &kind);
                    self.park(group, raw, &kind, reason)?;
                    TakenIn::DeadLettered
                }
                Prepared::Commands(commands) => {
                    let span = apply_span(&self.name, raw, "apply");
                    let cause = cause_of(raw, &span);
                    let _in_span = span.enter();
                    match self.apply_foreign(&mut group.set, &commands, &cause) {
                        Ok(()) => TakenIn::Applied,
                        Err(e) if e.class() == Class::Fatal => return Err(RuntimeError::Store(e.to_string())),
                        Err(e) => {
                            group.set.discard();
                            warn!(service = %self.name, topic = %raw.topic, partition = raw.partition, offset = raw.offset, error = %e, "a translated command failed; dead-lettering the event");
                            let kind = match e {
                                ApplyError::Panicked(_) => "panic",
                                _ => "apply",
                            };
                            self.metrics.dead_lettered(&raw.topic, kind);
                            self.park(group, raw, kind, format!("applying the translated command failed: {e}"))?;
                            TakenIn::DeadLettered
                        }
                    }
                }
            }
        };
        if let Some(key) = &key {
            group.set.take(&self.store, key)?;
        }
        Ok(outcome)
    }

    fn park(&self, group: &mut Group, raw: &RawEvent, kind: &str, reason: String) -> Result<(), RuntimeError> {
        let letter = raw.dead_letter(&self.name, kind, reason);
        group.set.park(&self.store, &letter, dlq::dead_letter_record(&letter))?;
        group.outbox_queued = true;
        Ok(())
    }

    /// Applies one chunk of prepared parked letters in order; a letter no longer parked (a
    /// replay resolved it meanwhile) is skipped, and a subject whose letter fails keeps the rest
    /// of its letters parked. A subject with no letters left is unparked.
    fn redrive(
        &self,
        group: &mut Group,
        positions: &mut OffsetMap,
        items: Vec<redrive::Item<S::Command>>,
        control: Option<(String, i32, i64)>,
    ) -> Result<redrive::ChunkOutcome, RuntimeError> {
        let mut outcome = redrive::ChunkOutcome::default();
        if let Some((topic, partition, next)) = control {
            positions.set(&topic, partition, next);
            group.set.set_position(&topic, partition, next);
            group.set.keep();
        }
        let mut blocked: HashSet<(String, String)> = HashSet::new();
        let mut subjects: Vec<(String, String)> = Vec::new();
        for redrive::Item { parked, raw, prepared } in items {
            let letter = &parked.letter;
            let id = (letter.topic.clone(), letter.subject.clone().unwrap_or_default());
            if subjects.last() != Some(&id) {
                subjects.push(id.clone());
            }
            if blocked.contains(&id) || !group.set.is_parked_event(&self.store, &parked.key)? {
                continue;
            }
            let _span = debug_span!("redrive", service = %self.name, topic = %raw.topic, partition = raw.partition, offset = raw.offset).entered();
            // A parked letter is an event not applied yet: nothing else applies it while it is
            // parked, and whatever removes it (a redrive, a replay's swap) removes it in the
            // write that applies it.
            let failure = match prepared {
                Prepared::Filtered | Prepared::Unhandled { .. } => None,
                Prepared::Poison { reason, .. } => Some(reason),
                Prepared::Commands(commands) => {
                    let span = apply_span(&self.name, &raw, "redrive");
                    let applied = {
                        let _in_span = span.enter();
                        self.apply_foreign(&mut group.set, &commands, &cause_of(&raw, &span))
                    };
                    match applied {
                        Ok(()) => None,
                        Err(e) if e.class() == Class::Fatal => return Err(RuntimeError::Store(e.to_string())),
                        Err(e) => Some(format!("applying the translated command failed: {e}")),
                    }
                }
            };
            match failure {
                None => {
                    // Parked by an older version, its event may not be marked yet.
                    if let Some(key) = raw.key() {
                        group.set.take(&self.store, &key)?;
                    }
                    group.set.unpark_event(&self.store, &parked)?;
                    group.set.queue_outbox(dlq::outcome_record(letter, None));
                    group.set.keep();
                    outcome.summary.redriven += 1;
                    self.metrics.applied(&raw.topic, 1);
                }
                Some(reason) => {
                    group.set.discard();
                    group.set.queue_outbox(dlq::outcome_record(letter, Some(&reason)));
                    group.set.keep();
                    outcome.summary.failed += 1;
                    blocked.insert(id);
                }
            }
            group.outbox_queued = true;
        }
        for (topic, subject) in subjects {
            if !blocked.contains(&(topic.clone(), subject.clone()))
                && !group.set.has_parked_events(&self.store, &topic, &subject)?
            {
                group.set.unpark_subject(&topic, &subject);
                group.set.keep();
            }
        }
        outcome.blocked = blocked.into_iter().collect();
        Ok(outcome)
    }
}

/// The exported span of applying `raw`, continuing its producer's trace; disabled when not
/// exporting or the event carries no trace.
fn apply_span(service: &str, raw: &RawEvent, what: &'static str) -> tracing::Span {
    if !crate::trace::exporting() || raw.traceparent().is_none() {
        return tracing::Span::none();
    }
    let record = raw.header(envelope::EVENT_TYPE).unwrap_or("event");
    tracing::info_span!(target: crate::trace::TARGET, "apply", otel.name = %format!("{what} {record}"), service = %service, topic = %raw.topic, partition = raw.partition, offset = raw.offset)
}

/// Correlation, causation and trace of commands translated from `raw`, applied in `span`.
fn cause_of(raw: &RawEvent, span: &tracing::Span) -> Cause {
    let causation = raw
        .event_id()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}/{}/{}", raw.topic, raw.partition, raw.offset));
    Cause {
        correlation_id: Some(
            raw.correlation_id()
                .map(str::to_string)
                .unwrap_or_else(|| causation.clone()),
        ),
        causation_id: Some(causation),
        trace: crate::trace::continue_in(span, raw.traceparent(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Adds quantities per subject: not idempotent by itself, so a doubled event shows.
    struct Tally;

    impl Service for Tally {
        type Command = (String, i64);

        fn apply(&self, ctx: &mut Apply<'_>, (subject, qty): &(String, i64)) -> Result<(), ApplyError> {
            let total: i64 = ctx.get(subject)?.unwrap_or_default();
            ctx.put(subject, &(total + qty))
        }
    }

    #[derive(Debug, Clone)]
    struct Ev {
        partition: i32,
        offset: i64,
        subject: String,
        qty: i64,
        id: String,
    }

    fn events(spec: &[(i32, u8, u8)]) -> Vec<Ev> {
        let mut next = [0i64; 3];
        spec.iter()
            .enumerate()
            .map(|(n, (p, s, q))| {
                let offset = next[*p as usize];
                next[*p as usize] += 1;
                Ev {
                    partition: *p,
                    offset,
                    subject: format!("s/{s}"),
                    qty: i64::from(*q),
                    id: format!("src/{n}"),
                }
            })
            .collect()
    }

    fn inbound(e: &Ev) -> Inbound<(String, i64)> {
        Inbound {
            raw: RawEvent {
                topic: "src.events".into(),
                partition: e.partition,
                offset: e.offset,
                key: Some(e.subject.clone().into_bytes()),
                value: None,
                headers: vec![(envelope::EVENT_ID.into(), Some(e.id.clone().into_bytes()))].into(),
            },
            prepared: Prepared::Commands(vec![(e.subject.clone(), e.qty)]),
        }
    }

    /// Feeds batches to a real writer over a fresh store; `rewind_after` forgets positions after
    /// that many batches (as after a lost store of offsets), so only event ids can deduplicate.
    fn run(batches: &[Vec<Ev>], rewind_after: Option<usize>) -> String {
        let dir = std::env::temp_dir().join(format!(
            "seam-writer-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let store = crate::store::open(&dir).expect("store");
        let mut digest = String::new();
        let mut start = 0;
        let splits: Vec<usize> = rewind_after.into_iter().chain([batches.len()]).collect();
        for end in splits {
            let writer = Writer {
                journals: Default::default(),
                name: "tally".into(),
                service: Arc::new(Tally),
                store: store.clone(),
                catalog: Arc::new(Catalog::default()),
                metrics: Metrics::new("tally"),
                durable: Arc::new(Progress::new(0)),
                outbox: Arc::new(Progress::new(0)),
                recent: None,
            };
            let (tx, rx) = mpsc::channel(8);
            let handle = std::thread::spawn(move || writer.run(rx));
            for batch in batches.get(start..end).unwrap_or_default() {
                let (reply, answer) = oneshot::channel();
                tx.blocking_send(Request::Foreign {
                    items: batch.iter().map(inbound).collect(),
                    applied: None,
                    reply,
                })
                .expect("send");
                answer.blocking_recv().expect("reply").expect("applied");
            }
            drop(tx);
            handle.join().expect("writer thread").expect("writer");
            if end < batches.len() {
                store.clear_positions("src.events").expect("rewind");
            }
            digest = store.digest().expect("digest");
            start = if end < batches.len() { 0 } else { end };
        }
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
        digest
    }

    /// Emits one event per command.
    struct Emitting;

    #[derive(serde::Serialize)]
    struct Added {
        subject: String,
    }

    impl crate::service::Event for Added {
        const RECORD: &'static str = "t.Added";
    }

    impl Service for Emitting {
        type Command = String;

        fn apply(&self, ctx: &mut Apply<'_>, subject: &String) -> Result<(), ApplyError> {
            ctx.put(subject, &1)?;
            ctx.emit(
                subject,
                &Added {
                    subject: subject.clone(),
                },
            )
            .map(|_| ())
        }

        fn snapshot(&self, out: &mut crate::service::SnapshotOut<'_>) -> Result<(), ApplyError> {
            for entry in out.scan::<i32>("")? {
                let (k, _) = entry?;
                out.emit(&k, &Added { subject: k.clone() })?;
            }
            Ok(())
        }
    }

    /// A writer of [`Emitting`] over a fresh store in a folder named by `label`.
    fn emitting_writer(label: &str) -> (std::path::PathBuf, Store, Writer<Emitting>) {
        let dir = std::env::temp_dir().join(format!("seam-writer-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = crate::store::open(&dir).expect("store");
        let catalog = Catalog::from_sources([(
            "Added.avsc",
            r#"{"type":"record","name":"Added","namespace":"t","fields":[{"name":"subject","type":"string"}]}"#,
        )])
        .expect("catalog");
        let writer = Writer {
            journals: Default::default(),
            name: "emitting".into(),
            service: Arc::new(Emitting),
            store: store.clone(),
            catalog: Arc::new(catalog),
            metrics: Metrics::new("emitting"),
            durable: Arc::new(Progress::new(0)),
            outbox: Arc::new(Progress::new(0)),
            recent: None,
        };
        (dir, store, writer)
    }

    /// A command request for `subject` and the receiver of its answer.
    fn command(subject: &str) -> (Request<String>, oneshot::Receiver<Result<Vec<u64>, ExecuteError>>) {
        let (reply, answer) = oneshot::channel();
        let request = Request::Command {
            command: subject.to_string(),
            cause: Cause::default(),
            reply,
        };
        (request, answer)
    }

    fn journal_subjects(store: &Store) -> Vec<String> {
        store
            .journal_from(1, 10)
            .expect("journal")
            .into_iter()
            .map(|e| e.subject)
            .collect()
    }

    /// A redrive chunk in the middle of a group leaves the group numbering the journal on from
    /// where it was: no seq is used twice.
    #[test]
    fn a_redrive_mid_group_keeps_the_journal_gapless_and_unique() {
        let (dir, store, writer) = emitting_writer("mid");
        let (tx, rx) = mpsc::channel(8);
        let (a, a_done) = command("a");
        let (b, b_done) = command("b");
        let (reply, redriven) = oneshot::channel();
        // Queued before the writer starts, so all three land in one group.
        tx.blocking_send(a).expect("send");
        tx.blocking_send(Request::Redrive {
            items: Vec::new(),
            control: None,
            reply,
        })
        .expect("send");
        tx.blocking_send(b).expect("send");
        let handle = std::thread::spawn(move || writer.run(rx));
        redriven.blocking_recv().expect("redrive reply").expect("redrive");
        assert_eq!(a_done.blocking_recv().expect("a").expect("applied"), vec![1]);
        assert_eq!(b_done.blocking_recv().expect("b").expect("applied"), vec![2]);
        drop(tx);
        handle.join().expect("thread").expect("writer");
        assert_eq!(journal_subjects(&store), ["a", "b"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A snapshot in the middle of a group commits what came before and the group
    /// goes on numbering the journal from there: no seq is used twice.
    #[test]
    fn a_snapshot_mid_group_keeps_the_journal_gapless_and_unique() {
        let (dir, store, writer) = emitting_writer("snap");
        let (tx, rx) = mpsc::channel(8);
        let (a, a_done) = command("a");
        let (b, b_done) = command("b");
        let (reply, snap) = oneshot::channel();
        let (release, held) = oneshot::channel();
        // Queued before the writer starts, so all three land in one group.
        tx.blocking_send(a).expect("send");
        let spool = dir.join("export.records");
        tx.blocking_send(Request::Snapshot {
            spool: spool.clone(),
            reply,
            release: held,
        })
        .expect("send");
        tx.blocking_send(b).expect("send");
        let handle = std::thread::spawn(move || writer.run(rx));
        let (seq, records) = snap.blocking_recv().expect("snapshot reply").expect("snapshot");
        assert_eq!((seq, records), (1, 1), "the snapshot is at the first command");
        let exported: Vec<_> = crate::snapshot::spool::RawReader::open(&spool)
            .expect("spool")
            .collect::<Result<_, _>>()
            .expect("read");
        assert_eq!(exported.len(), 1);
        assert_eq!(exported[0].0, "a");
        let _ = release.send(());
        assert_eq!(a_done.blocking_recv().expect("a").expect("applied"), vec![1]);
        assert_eq!(b_done.blocking_recv().expect("b").expect("applied"), vec![2]);
        drop(tx);
        handle.join().expect("thread").expect("writer");
        assert_eq!(journal_subjects(&store), ["a", "b"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Applying any prefix twice (redelivered with positions intact, or re-read after the
        /// positions were lost) leaves the same digest as applying everything once.
        #[test]
        fn applying_any_prefix_twice_changes_nothing(
            spec in proptest::collection::vec((0i32..3, 0u8..5, 1u8..9), 1..60),
            cut in 0usize..60,
            size in 1usize..8,
        ) {
            let evs = events(&spec);
            let cut = cut.min(evs.len());
            let once: Vec<Vec<Ev>> = evs.chunks(size).map(<[Ev]>::to_vec).collect();
            let reference = run(&once, None);

            let mut redelivered: Vec<Vec<Ev>> = evs[..cut].chunks(size).map(<[Ev]>::to_vec).collect();
            redelivered.extend(evs.chunks(size).map(<[Ev]>::to_vec));
            prop_assert_eq!(&run(&redelivered, None), &reference);

            let prefix_batches = evs[..cut].chunks(size).count();
            let mut rewound: Vec<Vec<Ev>> = evs[..cut].chunks(size).map(<[Ev]>::to_vec).collect();
            rewound.extend(evs.chunks(size).map(<[Ev]>::to_vec));
            prop_assert_eq!(&run(&rewound, Some(prefix_batches)), &reference);
        }
    }
}
