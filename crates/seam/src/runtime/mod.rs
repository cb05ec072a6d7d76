//! A running service instance: its store, the single writer, the publisher of its journal, and
//! (when it consumes) the consumer loop with its translators, DLQ shipper and redrive reader.
//!
//! Each part runs on its own named thread (librdkafka's `BaseConsumer` and sled are blocking
//! APIs; a thread per role keeps the hot loops free of async overhead). They share one
//! cancellation token: shutdown is one signal, then the consumer finishes its batch, the writer
//! commits what is queued, the publisher and shipper drain what is durable within a deadline.

mod applier;
pub mod bootstrap;
mod config;
pub mod consumer;
mod discard;
mod dlq;
mod error;
mod export;
mod flusher;
pub mod in_flight;
pub mod journal_schemas;
mod pipeline;
mod progress;
mod publisher;
mod rebuild;
pub mod recent;
pub mod redrive;
pub mod register;
pub mod relay;
mod replay;
pub mod retention;
pub mod spool;
mod start;
pub mod step;
mod swap;
mod watermarks;
mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::codec::{Catalog, Registry};
use crate::metrics::Metrics;
use crate::service::{Cause, Service};
use crate::store::Store;
use crate::translator::{events_topic, Translator};

pub use applier::Applier;
pub use bootstrap::{is_url, SnapshotSource};
pub use config::{NodeConfig, SharedEngine};
pub use discard::DiscardSummary;
pub use error::{ExecuteError, RuntimeError};
pub use pipeline::{Declared, Pipeline, Prepared, RawEvent, Ready};
pub use progress::Progress;
pub use redrive::RedriveSummary;
pub use register::{RegisterFrom, Registered, Registration};
pub use replay::{compare_and_swap, plan as replay_plan, ReplayReport, ReplayRequest, ReplayStatus, Swap};
pub use retention::RetentionError;
pub use spool::{Arrival, MAX_BYTES as SPOOL_MAX_BYTES};
pub use step::{Answer, Stepper};
pub use swap::LetterReport;
pub use writer::{ExclusiveJob, PutOutcome};

pub(super) struct Worker {
    name: &'static str,
    handle: JoinHandle<()>,
}

/// A running service instance.
pub struct Node<S: Service> {
    name: String,
    store_dir: PathBuf,
    /// The engine of the store (and of a replay's shadow store).
    store_engine: crate::store::StoreEngine,
    service: Arc<S>,
    client: ClientConfig,
    /// Translators of sources not read yet, waiting for a registration.
    spares: Mutex<Vec<Box<dyn Translator<S::Command>>>>,
    /// The topics the consumer reads; a registration adds one when its bootstrap is done.
    topics: Arc<watch::Sender<Vec<String>>>,
    /// Sources not read until they are rebuilt (the retention guard found their events gone).
    rebuilds: Arc<rebuild::Rebuilds>,
    registrations: Arc<Mutex<BTreeMap<String, Registration>>>,
    replay: Arc<Mutex<Option<ReplayStatus>>>,
    bootstrapped: Arc<Mutex<BTreeMap<String, crate::snapshot::SnapshotMeta>>>,
    pipeline: Option<Arc<Pipeline<S::Command>>>,
    catalog: Arc<Catalog>,
    registry: Arc<Registry>,
    /// The schema each journal entry was written with.
    journal_schemas: Arc<journal_schemas::JournalSchemas>,
    store: Store,
    /// The last journal seq that is durable (flushed); what getEvents may show.
    durable: Arc<Progress>,
    /// The last journal seq on the topic, as the publisher knows it.
    published: watch::Receiver<u64>,
    metrics: Metrics,
    writer: Option<mpsc::Sender<writer::Request<S::Command>>>,
    cancel: CancellationToken,
    failure: watch::Receiver<Option<RuntimeError>>,
    upstream: Vec<Worker>,
    core: Vec<Worker>,
    downstream: Vec<Worker>,
    drain: Duration,
}

impl<S: Service> std::fmt::Debug for Node<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("service", &self.name).finish()
    }
}

pub(super) fn spawn(
    name: &'static str,
    service: &str,
    failed: &Arc<watch::Sender<Option<RuntimeError>>>,
    cancel: &CancellationToken,
    body: impl FnOnce() -> Result<(), RuntimeError> + Send + 'static,
) -> Result<Worker, RuntimeError> {
    let failed = Arc::clone(failed);
    let cancel = cancel.clone();
    let service = service.to_string();
    let handle = std::thread::Builder::new()
        .name(format!("seam-{name}"))
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body))
                .unwrap_or_else(|_| Err(RuntimeError::Panicked(name.to_string())));
            match result {
                Ok(()) | Err(RuntimeError::Cancelled) => {}
                Err(RuntimeError::WriterGone) => cancel.cancel(),
                Err(e) => {
                    error!(%service, thread = name, error = %e, "stopping the service");
                    failed.send_if_modified(|slot| {
                        let first = slot.is_none();
                        slot.get_or_insert(e);
                        first
                    });
                    cancel.cancel();
                }
            }
        })
        .map_err(|e| RuntimeError::Config(format!("cannot start the {name} thread: {e}")))?;
    Ok(Worker { name, handle })
}

impl<S: Service> Node<S> {
    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store, for queries (reads see every committed write).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The last journal seq that is durable: entries up to it survive any crash.
    pub fn durable_seq(&self) -> u64 {
        self.durable.get()
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Applies one of the service's own commands; returns the seqs of the events it emitted once
    /// they are durable.
    pub async fn execute(&self, command: S::Command, cause: Cause) -> Result<Vec<u64>, ExecuteError> {
        self.submit(command, cause).await?.await
    }

    /// Queues one of the service's own commands and returns once the writer has it, with a
    /// future of its outcome: a driver that feeds commands in a fixed order (a CDC source, one per
    /// transaction) keeps several in flight, so they share store flushes, while the writer still
    /// applies them in the order submitted.
    pub async fn submit(
        &self,
        command: S::Command,
        cause: Cause,
    ) -> Result<impl std::future::Future<Output = Result<Vec<u64>, ExecuteError>> + Send + 'static, ExecuteError> {
        let writer = self.writer.as_ref().ok_or(ExecuteError::Stopped)?;
        let (reply, answer) = oneshot::channel();
        writer
            .send(writer::Request::Command { command, cause, reply })
            .await
            .map_err(|_| ExecuteError::Stopped)?;
        Ok(async move { answer.await.map_err(|_| ExecuteError::Stopped)? })
    }

    /// Re-applies parked events in order (what a redrive request on the DLQ topic triggers).
    /// Letters are decoded off the writer, so a registry outage delays only the redrive.
    pub async fn redrive(&self, request: crate::dlq::RedriveRequest) -> Result<RedriveSummary, RuntimeError> {
        let redriver = self.redriver()?;
        tokio::task::spawn_blocking(move || redriver.run(&request, None))
            .await
            .map_err(|_| RuntimeError::Panicked("redrive".into()))?
    }

    /// Settles dead letters that can never be redriven, without applying their events (`seam
    /// dlq discard`, `POST /dead-letters/discard`): recorded with who and why on the DLQ topic,
    /// the subject unparked once none of its letters is left. With `redrive_rest`, the letters
    /// of the subject it leaves are redriven right after (skip one letter, let later ones through).
    pub async fn discard(&self, request: crate::dlq::DiscardRequest) -> Result<DiscardSummary, RuntimeError> {
        request.check().map_err(RuntimeError::Refused)?;
        let redriver = self.redriver()?;
        let discard::Queued {
            request: job,
            answer,
            out,
        } = discard::queue(&request, None, true);
        redriver.writer.send(job).await.map_err(|_| RuntimeError::WriterGone)?;
        answer.await.map_err(|_| RuntimeError::WriterGone)??;
        let mut summary = discard::taken(&out);
        if request.redrive_rest && summary.still_parked > 0 {
            let rest = crate::dlq::RedriveRequest {
                subject: Some(request.subject.clone()),
                topic: request.topic.clone(),
            };
            summary.redrive = Some(
                tokio::task::spawn_blocking(move || redriver.run(&rest, None))
                    .await
                    .map_err(|_| RuntimeError::Panicked("redrive".into()))??,
            );
        }
        info!(service = %self.name, subject = %request.subject, by = %request.by, reason = %request.reason, discarded = summary.discarded, "dead letters discarded");
        Ok(summary)
    }

    fn redriver(&self) -> Result<redrive::Redriver<S::Command>, RuntimeError> {
        Ok(redrive::Redriver {
            store: self.store.clone(),
            pipeline: self.pipeline.clone().ok_or_else(|| {
                RuntimeError::Refused(format!("{} takes in no foreign events; nothing is parked", self.name))
            })?,
            writer: self.writer.clone().ok_or(RuntimeError::WriterGone)?,
            cancel: self.cancel.clone(),
        })
    }

    /// putEvents: takes in foreign events posted directly (not read from Kafka) through the same
    /// decode, translate and apply path. Idempotent by `seam-event-id`; no positions move.
    pub async fn put_events(&self, events: Vec<RawEvent>) -> Result<Vec<PutOutcome>, RuntimeError> {
        let pipeline = self.pipeline.clone().ok_or_else(|| {
            RuntimeError::Refused(format!(
                "{} has no translators; it takes in no foreign events",
                self.name
            ))
        })?;
        let cancel = self.cancel.clone();
        let items = tokio::task::spawn_blocking(move || {
            events
                .into_iter()
                .map(|raw| {
                    pipeline
                        .prepare(&raw, &cancel)
                        .map(|prepared| writer::Inbound { raw, prepared })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|_| RuntimeError::Panicked("put-events".into()))??;
        let writer = self.writer.as_ref().ok_or(RuntimeError::WriterGone)?;
        let (reply, answer) = oneshot::channel();
        writer
            .send(writer::Request::Put { items, reply })
            .await
            .map_err(|_| RuntimeError::WriterGone)?;
        answer.await.map_err(|_| RuntimeError::WriterGone)?
    }

    /// The snapshots this node bootstrapped from (at start or by registration), by source service.
    pub fn bootstrapped(&self) -> BTreeMap<String, crate::snapshot::SnapshotMeta> {
        self.bootstrapped.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// The source topics this node reads (`<source>.events`), sorted; a source being registered
    /// joins when its bootstrap is done.
    pub fn sources(&self) -> Vec<String> {
        self.topics.borrow().clone()
    }

    /// Per source topic (read now, or waiting for `seam register`), the record types its
    /// translator reads and ignores: what `seam deploy` checks a producer's schemas against.
    pub fn declared(&self) -> BTreeMap<String, Declared> {
        let mut out = self.pipeline.as_ref().map(|p| p.declared()).unwrap_or_default();
        if let Ok(spares) = self.spares.lock() {
            for t in spares.iter() {
                out.insert(events_topic(t.source()), Declared::of(t.as_ref()));
            }
        }
        out
    }

    /// The sources this node does not read until they are rebuilt (the events it needs next are
    /// gone), by topic, with what is gone and what to do.
    pub fn needs_rebuild(&self) -> BTreeMap<String, String> {
        self.rebuilds
            .all()
            .into_iter()
            .map(|(t, e)| (t, e.to_string()))
            .collect()
    }

    /// The store directory (registrations spool snapshots inside it).
    pub fn store_dir(&self) -> &std::path::Path {
        &self.store_dir
    }

    /// The running or last replay.
    pub fn replay_status(&self) -> Option<ReplayStatus> {
        self.replay.lock().ok().and_then(|s| s.clone())
    }

    /// The service itself (what HTTP asks about its commands).
    pub fn service(&self) -> &S {
        &self.service
    }

    /// The service's event catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The schema each journal entry was written with (getEvents reads entries with it).
    pub fn journal_schemas(&self) -> &journal_schemas::JournalSchemas {
        &self.journal_schemas
    }

    /// The registry client (cached ids and writer schemas).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Resolves when a part of the node failed (the node is then stopping); pending forever
    /// while it runs well.
    pub async fn failed(&self) -> RuntimeError {
        let mut rx = self.failure.clone();
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return e;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// [`Node::shutdown`] for a node shared with an HTTP server that has just stopped: its
    /// connection tasks drop their handles a moment later, so this waits for them (up to 30 s).
    pub async fn shutdown_shared(node: Arc<Self>) -> Result<(), RuntimeError> {
        let mut node = node;
        let patience = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match Arc::try_unwrap(node) {
                Ok(n) => return n.shutdown().await,
                Err(shared) if std::time::Instant::now() < patience => {
                    node = shared;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(shared) => {
                    shared.cancel.cancel();
                    return Err(RuntimeError::Config(format!(
                        "{} is still in use 30 s after its server stopped; its parts were cancelled without draining",
                        shared.name
                    )));
                }
            }
        }
    }

    /// Stops cleanly: the consumer finishes its batch, the writer commits, the publisher and DLQ
    /// shipper drain within the configured deadline. Returns the first failure, if any.
    pub async fn shutdown(mut self) -> Result<(), RuntimeError> {
        self.cancel.cancel();
        let grace = self.drain + Duration::from_secs(30);
        join(std::mem::take(&mut self.upstream), grace).await;
        self.writer = None;
        join(std::mem::take(&mut self.core), grace).await;
        join(std::mem::take(&mut self.downstream), grace).await;
        info!(service = %self.name, "service stopped");
        match self.failure.borrow().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Where a node writes the snapshots it exports, inside its store directory.
pub(super) const SNAPSHOTS_DIR: &str = "seam-snapshots";

async fn join(workers: Vec<Worker>, grace: Duration) {
    for worker in workers {
        let name = worker.name;
        let joined = tokio::task::spawn_blocking(move || worker.handle.join());
        if tokio::time::timeout(grace, joined).await.is_err() {
            error!(thread = name, "did not stop within {grace:?}; leaving it");
        }
    }
}
