//! The database sink: the consuming side of a CRUD service. Its translators turn foreign events
//! into SQL statements ([`SinkCommand`]) on the service's own PostgreSQL database, and each
//! batch of events commits in ONE database transaction with the positions it advances
//! (`seam_positions`), the source-journal watermarks that recognise an event coming again
//! (`seam_applied`) and its dead letters (`seam_dead_letters`, produced to `<service>.dlq`
//! afterwards). A crash anywhere, of the sink or of PostgreSQL, leaves the database either
//! before or after the whole batch; the sink reads on from the committed positions, so every
//! event takes effect exactly once with no seam store.
//!
//! A source registered late (`seam register`) is bootstrapped from its snapshot in one
//! transaction that also stores the snapshot's offset map as positions; the snapshot is kept in
//! `seam_bootstraps` until then, so a crash in the middle does the same bootstrap again at the
//! next start.

pub mod apply;
pub mod command;
mod end;
mod http;
pub mod metrics;
mod outbox;
pub mod tables;
mod worker;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use seam::runtime::Registration;
use seam::translator::Translator;
use seam_local::cluster::Endpoints;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

pub use command::{quote, SinkCommand, SqlValue};
pub use http::routes;
pub use metrics::SinkMetrics;

/// Why a sink could not start.
#[derive(Debug, Error)]
pub enum SinkError {
    /// The topology and the linked translators do not fit, or an option is wrong.
    #[error("{0}")]
    Config(String),
    /// No cluster or no registry.
    #[error(transparent)]
    Cluster(#[from] seam_local::cluster::ClusterError),
}

/// What a sink needs.
pub struct SinkOptions {
    /// The consuming service.
    pub service: String,
    /// Its database (a `postgres://` URL).
    pub database: String,
    /// The sources the topology says it reads; one registered later with `seam register` is
    /// read from the positions its bootstrap stored.
    pub sources: Vec<String>,
    /// Every translator linked into this build, one per source it can read.
    pub translators: Vec<Box<dyn Translator<SinkCommand>>>,
}

/// A request from the HTTP API to the worker.
enum Request {
    /// Bootstrap `source` from a checked snapshot, or read it from its first offset.
    Register { source: String, snapshot: Option<Vec<u8>> },
}

/// What the worker and the HTTP API share.
pub struct Shared {
    service: String,
    metrics: SinkMetrics,
    /// Per source with a linked translator: how its registration stands.
    registrations: Mutex<BTreeMap<String, Registration>>,
    /// Committed positions, per topic and partition.
    positions: Mutex<tables::Positions>,
    /// Why the worker is not applying right now (reconnecting), if it is not.
    trouble: Mutex<Option<String>>,
    requests: Mutex<std::sync::mpsc::Sender<Request>>,
}

impl Shared {
    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The sink's metrics.
    pub fn metrics(&self) -> &SinkMetrics {
        &self.metrics
    }

    fn set_registration(&self, source: &str, r: Registration) {
        lock(&self.registrations).insert(source.to_string(), r);
    }

    fn registration(&self, source: &str) -> Option<Registration> {
        lock(&self.registrations).get(source).cloned()
    }

    fn set_trouble(&self, trouble: Option<String>) {
        *lock(&self.trouble) = trouble;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running sink: its worker thread and what the HTTP API reads.
pub struct Sink {
    shared: Arc<Shared>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    /// Checks the options against the linked translators and starts the worker, which connects
    /// (and reconnects) to the database and the cluster on its own.
    pub fn start(options: SinkOptions, endpoints: &Endpoints) -> Result<Self, SinkError> {
        let mut linked = BTreeMap::new();
        for t in options.translators {
            let source = t.source().to_string();
            if linked.insert(source.clone(), t).is_some() {
                return Err(SinkError::Config(format!(
                    "two translators of {} read {source}; a consumer has exactly one translator per source",
                    options.service
                )));
            }
        }
        for source in &options.sources {
            if !linked.contains_key(source) {
                return Err(SinkError::Config(format!(
                    "the topology says {} reads {source}, but this build links no translator for it; add the translator and rebuild, or remove the source from the topology",
                    options.service
                )));
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared {
            service: options.service.clone(),
            metrics: SinkMetrics::new(&options.service),
            registrations: Mutex::new(linked.keys().map(|s| (s.clone(), Registration::Available)).collect()),
            positions: Mutex::new(Default::default()),
            trouble: Mutex::new(Some("starting".into())),
            requests: Mutex::new(tx),
        });
        let registry = Arc::new(
            seam::codec::Registry::new(endpoints.registry()?)
                .map_err(|e| SinkError::Config(format!("the schema registry: {e}")))?,
        );
        let stop = CancellationToken::new();
        let worker = worker::Worker::new(
            Arc::clone(&shared),
            options.database,
            options.sources,
            linked,
            endpoints.client(),
            registry,
            tokio::runtime::Handle::current(),
            stop.clone(),
            rx,
        );
        let thread = std::thread::Builder::new()
            .name(format!("seam-sink-{}", options.service))
            .spawn(move || worker.run())
            .map_err(|e| SinkError::Config(format!("starting the sink's thread: {e}")))?;
        Ok(Self {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// What the HTTP API serves.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Stops the worker after the batch it is applying, and waits for it.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
