//! The writer driven one step at a time: what the deterministic simulator (`seam-sim`) runs
//! instead of the writer and flusher threads. Requests go through the same `Writer::handle` as
//! on the writer thread and answers through the flusher's own `settle`; only the moments are
//! the caller's: a group is written (visible, not durable) by [`Stepper::write`] and made
//! durable by [`Stepper::flush`], so a schedule can crash a node between the two.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::flusher::{settle, Job};
use super::pipeline::{Prepared, RawEvent};
use super::progress::Progress;
use super::writer::{BootstrapEnd, Group, Inbound, PutOutcome, Request, Writer};
use super::{ExecuteError, RuntimeError};
use crate::codec::Catalog;
use crate::metrics::Metrics;
use crate::offsets::OffsetMap;
use crate::service::{ApplyError, Cause, Service};
use crate::store::{JournalId, Store};

/// An answer the writer gives when a later step settles it.
#[derive(Debug)]
pub struct Answer<T>(oneshot::Receiver<T>);

impl<T> Answer<T> {
    /// `None` while unanswered; `Some(None)` once it never will be (the request was lost with
    /// its group); `Some(Some(answer))` once answered.
    pub fn poll(&mut self) -> Option<Option<T>> {
        match self.0.try_recv() {
            Ok(answer) => Some(Some(answer)),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(None),
        }
    }
}

/// A snapshot export's answer: the journal seq of the cut and the record count.
pub type Exported = Result<(u64, u64), ApplyError>;

fn answer<T>() -> (oneshot::Sender<T>, Answer<T>) {
    let (tx, rx) = oneshot::channel();
    (tx, Answer(rx))
}

fn inbound<C>(items: Vec<(RawEvent, Prepared<C>)>) -> Vec<Inbound<C>> {
    items
        .into_iter()
        .map(|(raw, prepared)| Inbound { raw, prepared })
        .collect()
}

/// A service's writer, stepped by the caller.
pub struct Stepper<S: Service> {
    writer: Writer<S>,
    positions: OffsetMap,
    group: Option<Group>,
    written: Vec<Job>,
}

impl<S: Service> Stepper<S> {
    /// A writer for `service` over `store`, reading its positions from the store as the writer
    /// thread does when it starts.
    pub fn new(name: &str, store: Store, service: Arc<S>, catalog: Arc<Catalog>) -> Result<Self, RuntimeError> {
        let positions = store.positions()?;
        let durable = Arc::new(Progress::new(store.last_seq()?));
        Ok(Self {
            writer: Writer {
                journals: Default::default(),
                name: name.to_string(),
                service,
                store,
                catalog,
                metrics: Metrics::new(name),
                durable,
                outbox: Arc::new(Progress::new(0)),
                recent: None,
            },
            positions,
            group: None,
            written: Vec::new(),
        })
    }

    /// Hands every entry this writer commits from now on to a publisher, in memory, as the
    /// node's writer does; the relay reads them with [`super::relay::Relay::reading`].
    pub fn hand_over(&mut self) -> Arc<super::recent::Recent> {
        Arc::clone(
            self.writer
                .recent
                .get_or_insert_with(|| Arc::new(super::recent::Recent::default())),
        )
    }

    fn handle(&mut self, request: Request<S::Command>) -> Result<(), RuntimeError> {
        let mut group = match self.group.take() {
            Some(group) => group,
            None => self.writer.group()?,
        };
        match self.writer.handle(&mut group, &mut self.positions, request) {
            Ok(()) => {
                self.group = Some(group);
                Ok(())
            }
            Err(e) => {
                group.fail(&e.to_string());
                Err(e)
            }
        }
    }

    /// Queues one of the service's own commands into the open group; answered at the flush.
    pub fn command(
        &mut self,
        command: S::Command,
        cause: Cause,
    ) -> Result<Answer<Result<Vec<u64>, ExecuteError>>, RuntimeError> {
        let (reply, answer) = answer();
        self.handle(Request::Command { command, cause, reply })?;
        Ok(answer)
    }

    /// Takes in a batch read from Kafka, as the consumer hands it over; answered at the flush.
    pub fn foreign(
        &mut self,
        items: Vec<(RawEvent, Prepared<S::Command>)>,
    ) -> Result<Answer<Result<(), RuntimeError>>, RuntimeError> {
        let (reply, answer) = answer();
        let items = inbound(items);
        self.handle(Request::Foreign {
            items,
            applied: None,
            reply,
        })?;
        Ok(answer)
    }

    /// Takes in events posted with putEvents; answered at the flush.
    pub fn put(
        &mut self,
        items: Vec<(RawEvent, Prepared<S::Command>)>,
    ) -> Result<Answer<Result<Vec<PutOutcome>, RuntimeError>>, RuntimeError> {
        let (reply, answer) = answer();
        let items = inbound(items);
        self.handle(Request::Put { items, reply })?;
        Ok(answer)
    }

    /// Exports the state for a snapshot into the file `spool` (commits what came before first,
    /// durably): answers the journal seq of the cut and the record count. The writer thread
    /// then holds every commit until the offsets are read; a stepped writer holds because the
    /// caller sends it nothing until then.
    pub fn snapshot(&mut self, spool: std::path::PathBuf) -> Result<Answer<Exported>, RuntimeError> {
        let (reply, answer) = answer();
        let (release, held) = oneshot::channel();
        drop(release);
        self.handle(Request::Snapshot {
            spool,
            reply,
            release: held,
        })?;
        Ok(answer)
    }

    /// One chunk of a snapshot being loaded for `topic`, with its resume marker `(seq, next
    /// record)`; the last chunk (`finish`: the snapshot's offset map and the source journal and
    /// seq it covers) stores the map as positions and clears the marker. Answered at the flush.
    pub fn bootstrap(
        &mut self,
        topic: &str,
        marker: (u64, u64),
        items: Vec<(RawEvent, Prepared<S::Command>)>,
        finish: Option<(OffsetMap, Option<(JournalId, u64)>)>,
    ) -> Result<Answer<Result<(), RuntimeError>>, RuntimeError> {
        let (reply, answer) = answer();
        let items = inbound(items);
        self.handle(Request::Bootstrap {
            topic: topic.to_string(),
            marker,
            items,
            finish: finish.map(|(positions, covered)| BootstrapEnd { positions, covered }),
            reply,
        })?;
        Ok(answer)
    }

    /// One chunk of prepared parked letters (`redrive::page`), applied in order in one write;
    /// answered at the flush.
    pub fn redrive(
        &mut self,
        items: Vec<super::redrive::Item<S::Command>>,
    ) -> Result<Answer<Result<super::redrive::ChunkOutcome, RuntimeError>>, RuntimeError> {
        let (reply, answer) = answer();
        self.handle(Request::Redrive {
            items,
            control: None,
            reply,
        })?;
        Ok(answer)
    }

    /// Runs `job` alone on the writer after committing what came before (a replay's compare and
    /// swap); what it stages commits durably in one write when it succeeds. Answered at once.
    pub fn exclusive(
        &mut self,
        job: super::writer::ExclusiveJob,
    ) -> Result<Answer<Result<(), RuntimeError>>, RuntimeError> {
        let (reply, answer) = answer();
        self.handle(Request::Exclusive { job, reply })?;
        Ok(answer)
    }

    /// Writes the open group: visible at once, durable only after [`Stepper::flush`].
    pub fn write(&mut self) -> Result<(), RuntimeError> {
        if let Some(mut group) = self.group.take() {
            match self.writer.write(&mut group) {
                Ok(job) => self.written.push(job),
                Err(e) => {
                    group.fail(&e.to_string());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Flushes every written group and answers its requests, as the flusher thread does.
    pub fn flush(&mut self) -> Result<(), RuntimeError> {
        let jobs = std::mem::take(&mut self.written);
        let result = self.writer.store.flush().map_err(|e| e.to_string());
        let failed = result.clone().err();
        settle(jobs, result, &self.writer.durable, &self.writer.outbox);
        match failed {
            Some(why) => Err(RuntimeError::Store(why)),
            None => Ok(()),
        }
    }

    /// Whether groups wait for a write or a flush.
    pub fn is_idle(&self) -> bool {
        self.group.is_none() && self.written.is_empty()
    }

    /// The last journal seq known durable: the publisher reads up to it.
    pub fn durable_seq(&self) -> u64 {
        self.writer.durable.get()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.writer.store
    }
}
