//! A running service instance: its store, the single writer, the publisher of its journal, and
//! (when it consumes) the consumer loop with its translators, DLQ shipper and redrive reader.
//!
//! Each part runs on its own named thread (librdkafka's `BaseConsumer` and sled are blocking
//! APIs; a thread per role keeps the hot loops free of async overhead). They share one
//! cancellation token: shutdown is one signal, then the consumer finishes its batch, the writer
//! commits what is queued, the publisher and shipper drain what is durable within a deadline.

mod applier;
mod bootstrap;
mod consumer;
mod discard;
mod dlq;
mod flusher;
pub mod in_flight;
pub mod journal_schemas;
mod pipeline;
mod progress;
mod publisher;
mod rebuild;
mod redrive;
mod register;
mod replay;
pub mod retention;
mod spool;
mod swap;
mod watermarks;
mod writer;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::codec::{Catalog, Registry};
use crate::fault::{Class, Classify};
use crate::metrics::Metrics;
use crate::service::{ApplyError, Cause, Service};
use crate::store::{Store, StoreError};
use crate::translator::{dlq_topic, events_topic, Translator};

pub use applier::Applier;
pub use bootstrap::{is_url, SnapshotSource};
pub use discard::DiscardSummary;
pub use pipeline::{Declared, RawEvent};
pub use progress::Progress;
pub use redrive::RedriveSummary;
pub use register::{RegisterFrom, Registered, Registration};
pub use replay::{ReplayReport, ReplayRequest, ReplayStatus};
pub use retention::RetentionError;
pub use spool::{Arrival, MAX_BYTES as SPOOL_MAX_BYTES};
pub use swap::LetterReport;
pub use writer::PutOutcome;

/// Why a node could not start or had to stop.
#[derive(Debug, Error, Clone)]
pub enum RuntimeError {
    /// The node's configuration (or a translator's schemas) is wrong.
    #[error("{0}")]
    Config(String),
    /// The store failed; the node stops rather than risk diverging from its journal.
    #[error("store: {0}")]
    Store(String),
    /// The schema registry refused a request that retrying cannot fix (authorization, a schema
    /// it rejects).
    #[error("schema registry: {0}")]
    Registry(String),
    /// A Kafka call failed.
    #[error("kafka, {what}: {detail}")]
    Kafka {
        /// What was being done.
        what: String,
        /// What librdkafka said.
        detail: String,
    },
    /// A topic the node needs does not exist.
    #[error("topic {topic} does not exist; {}", missing_topic_fix(topic))]
    TopicMissing {
        /// The topic.
        topic: String,
    },
    /// The retention guard refused to read on.
    #[error(transparent)]
    Retention(#[from] RetentionError),
    /// The writer stopped (after an error of its own, reported separately).
    #[error("the store writer stopped")]
    WriterGone,
    /// Shutdown interrupted a retry loop.
    #[error("cancelled")]
    Cancelled,
    /// A thread panicked; a bug.
    #[error("the {0} thread panicked")]
    Panicked(String),
}

impl RuntimeError {
    pub(crate) fn kafka(what: String, e: rdkafka::error::KafkaError) -> Self {
        Self::Kafka {
            what,
            detail: e.to_string(),
        }
    }
}

impl From<StoreError> for RuntimeError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

/// Why a command was not executed.
#[derive(Debug, Error)]
pub enum ExecuteError {
    /// The service rejected it (or an emitted event did not fit its schema, or it panicked).
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The store failed to write or flush the group the command was in; whether the command
    /// survives is unknown until the service restarts (the node stops).
    #[error("the store failed, so the command may or may not have been applied: {0}")]
    Store(String),
    /// The node is stopping or stopped.
    #[error("the service is shutting down")]
    Stopped,
}

/// What to do about a missing topic: a dead-letter topic comes from the consumer's topology entry.
fn missing_topic_fix(topic: &str) -> String {
    match topic.strip_suffix(".dlq") {
        Some(service) => format!(
            "{service} runs translators, so it needs its dead-letter topic: list it under `consumers:` in the topology \
             (`- service: {service}` with `sources: []` until `seam register` adds them) and run `seam deploy -t <topology>.yaml`"
        ),
        None => "create it (e.g. `seam deploy -t <topology>.yaml`) before starting the service".into(),
    }
}

impl Classify for ExecuteError {
    fn class(&self) -> Class {
        match self {
            Self::Apply(e) => e.class(),
            Self::Store(_) => Class::Fatal,
            Self::Stopped => Class::Retryable,
        }
    }
}

/// How to run a node. Defaults follow the README; every field can come from the service's own
/// config file, environment or flags.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The service name: topic `<service>.events`, DLQ `<service>.dlq`, group `<service>`.
    pub service: String,
    /// The store directory (one per service instance).
    pub store_dir: PathBuf,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Schema registry URL (Confluent API).
    pub registry: String,
    /// Extra librdkafka properties for every client (security settings, tuning).
    pub kafka: BTreeMap<String, String>,
    /// Consumer group id; defaults to the service name.
    pub group_id: Option<String>,
    /// Static group membership id of this instance (`group.instance.id`); defaults to the service
    /// name. A restarted instance takes its partitions back at once instead of waiting out the
    /// session timeout of its crashed predecessor; a second process with the same id is fenced.
    /// A digest of the topics read is appended, because the broker does not rebalance a static
    /// member whose subscription changed (KAFKA-12759): after `seam register` the consumer joins
    /// as a new member, and the old one's partitions move after the session timeout (30 s unless
    /// `session.timeout.ms` is set in `kafka`).
    pub instance_id: Option<String>,
    /// Most records per consumer batch (one store commit covers at least one batch).
    pub max_batch: usize,
    /// How long shutdown keeps publishing durable entries and dead letters.
    pub drain: Duration,
    /// Snapshots to bootstrap from, by source service: used only for a source this store does
    /// not read yet (or whose bootstrap was interrupted).
    pub bootstrap: BTreeMap<String, SnapshotSource>,
    /// The sources (service names) to read from the start; translators given for other sources
    /// wait for `seam register`. `None`: every translator given is read.
    pub sources: Option<BTreeSet<String>>,
    /// The storage engine to use instead of opening sled in `store_dir` (another engine, or one
    /// that injects faults in tests). `store_dir` still holds spooled snapshots and replays.
    pub engine: Option<SharedEngine>,
}

/// An engine handed to a node in its configuration.
#[derive(Clone)]
pub struct SharedEngine(pub Arc<dyn crate::store::Engine>);

impl std::fmt::Debug for SharedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedEngine")
    }
}

impl NodeConfig {
    /// A configuration with defaults: batches of 2000, 10 s drain.
    pub fn new(service: &str, store_dir: PathBuf, brokers: &str, registry: &str) -> Self {
        Self {
            service: service.to_string(),
            store_dir,
            brokers: brokers.to_string(),
            registry: registry.to_string(),
            kafka: BTreeMap::new(),
            group_id: None,
            instance_id: None,
            max_batch: 2000,
            drain: Duration::from_secs(10),
            bootstrap: BTreeMap::new(),
            sources: None,
            engine: None,
        }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("client.id", format!("seam-{}", self.service));
        for (k, v) in &self.kafka {
            c.set(k, v);
        }
        c
    }
}

struct Worker {
    name: &'static str,
    handle: JoinHandle<()>,
}

/// A running service instance.
pub struct Node<S: Service> {
    name: String,
    store_dir: PathBuf,
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
    pipeline: Option<Arc<pipeline::Pipeline<S::Command>>>,
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

fn spawn(
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
    /// Opens the store, checks the topics, and starts every part. Must be called inside a tokio
    /// runtime (registry calls and replies are async).
    pub async fn start(
        config: NodeConfig,
        service: S,
        catalog: Catalog,
        translators: Vec<Box<dyn Translator<S::Command>>>,
    ) -> Result<Self, RuntimeError> {
        let runtime = tokio::runtime::Handle::current();
        let store = if let Some(engine) = &config.engine {
            Store::with_engine(Arc::clone(&engine.0))?
        } else {
            let dir = config.store_dir.clone();
            tokio::task::spawn_blocking(move || crate::store::open(&dir))
                .await
                .map_err(|_| RuntimeError::Panicked("store-open".into()))?
                .map_err(|e| {
                    RuntimeError::Store(format!(
                        "{e}; is another instance of this service using the same store directory?"
                    ))
                })?
        };
        let registry = Arc::new(Registry::new(&config.registry).map_err(|e| RuntimeError::Config(e.to_string()))?);
        let catalog = Arc::new(catalog);
        let metrics = Metrics::new(&config.service);
        let consumes = !translators.is_empty();
        if let Some(sources) = &config.sources {
            let missing: Vec<&String> = sources
                .iter()
                .filter(|s| !translators.iter().any(|t| t.source() == s.as_str()))
                .collect();
            if !missing.is_empty() {
                let has: Vec<String> = translators
                    .iter()
                    .map(|t| format!("{}-to-{}", t.source(), config.service))
                    .collect();
                return Err(RuntimeError::Config(format!(
                    "{} is to read {} (translator {}), but this binary has no such translator (it has {has:?}); \
                     deploy a build that has it, or remove the subscription from the topology",
                    config.service,
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    missing
                        .iter()
                        .map(|s| format!("{s}-to-{}", config.service))
                        .collect::<Vec<_>>()
                        .join(", "),
                )));
            }
        }
        let (translators, spares): (Vec<_>, Vec<_>) = translators
            .into_iter()
            .partition(|t| config.sources.as_ref().is_none_or(|s| s.contains(t.source())));
        let pipeline = if consumes {
            Some(Arc::new(pipeline::Pipeline::new(
                translators,
                Arc::clone(&registry),
                runtime.clone(),
            )?))
        } else {
            None
        };
        // A bootstrap interrupted by a crash resumes from the snapshot it was loading; one that
        // never started takes the spooled (or given) snapshot. Snapshots given as URLs are
        // downloaded and spooled first, so a crash during their load resumes from that copy.
        spool::sweep(&config.store_dir);
        let _ = std::fs::remove_dir_all(config.store_dir.join(SNAPSHOTS_DIR));
        let stored = store.positions()?;
        let mut bootstraps: BTreeMap<String, PathBuf> = BTreeMap::new();
        for topic in pipeline.as_ref().map(|p| p.topics()).unwrap_or_default() {
            let source = topic.trim_end_matches(".events").to_string();
            let marker = store.bootstrap_marker(&topic)?;
            let reads = stored.iter().any(|(t, _, _)| t == topic);
            if reads && marker.is_none() {
                spool::unspool(&config.store_dir, &source, None);
                continue;
            }
            let spools = spool::spools(&config.store_dir, &source);
            let chosen = match marker {
                Some((seq, _)) => match spools.get(&seq) {
                    Some(path) => Some(path.clone()),
                    None => match config.bootstrap.get(&source) {
                        Some(SnapshotSource::File(path)) => Some(path.clone()),
                        Some(SnapshotSource::Url(url)) => {
                            let arrival = spool::download(&config.store_dir, &source, url).await?;
                            if arrival.meta.seq != seq {
                                return Err(RuntimeError::Config(format!(
                                    "the bootstrap of {topic} from the snapshot at seq {seq} was interrupted and its spooled copy is gone; {url} now serves seq {}; start with that same snapshot (`--bootstrap {source}=FILE`)",
                                    arrival.meta.seq
                                )));
                            }
                            Some(arrival.claim(&config.store_dir)?)
                        }
                        None => {
                            return Err(RuntimeError::Config(format!(
                                "the bootstrap of {topic} from the snapshot at seq {seq} was interrupted and its spooled copy {} is gone; start with the same snapshot (`--bootstrap {source}=FILE`)",
                                spool::spooled(&config.store_dir, &source, seq).display()
                            )))
                        }
                    },
                },
                None => match config.bootstrap.get(&source) {
                    Some(SnapshotSource::File(path)) => Some(path.clone()),
                    Some(SnapshotSource::Url(url)) => {
                        let arrival = spool::download(&config.store_dir, &source, url).await?;
                        Some(arrival.claim(&config.store_dir)?)
                    }
                    // A registration claimed this before the crash; the newest one wins.
                    None => spools.values().next_back().cloned(),
                },
            };
            if let Some(path) = chosen {
                bootstraps.insert(source, path);
            }
        }
        for source in config.bootstrap.keys() {
            if !pipeline
                .as_ref()
                .is_some_and(|p| p.topics().contains(&events_topic(source)))
            {
                return Err(RuntimeError::Config(format!(
                    "a snapshot is given for {source}, but {} has no translator for it",
                    config.service
                )));
            }
        }
        let mut needed = Vec::new();
        if catalog.records().next().is_some() {
            needed.push(events_topic(&config.service));
        }
        // Sources about to be bootstrapped are checked against the snapshot's map instead.
        let sources: Vec<String> = pipeline
            .as_ref()
            .map(|p| p.topics())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| {
                let reads = stored.iter().any(|(topic, _, _)| topic == t);
                reads || !bootstraps.keys().any(|s| events_topic(s) == *t)
            })
            .collect();
        if pipeline.is_some() {
            needed.push(dlq_topic(&config.service));
        }
        let gone = {
            let client = config.client();
            let positions = store.positions()?;
            let sources = sources.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<RetentionError>, RuntimeError> {
                let probe: BaseConsumer = client
                    .create()
                    .map_err(|e| RuntimeError::kafka("connecting".into(), e))?;
                retention::partitions_of(&probe, &needed)?;
                // A source whose next events this consumer needs are gone is not read (the
                // node names the way out); the others are.
                let mut gone = Vec::new();
                for topic in &sources {
                    let partitions = retention::partitions_of(&probe, std::slice::from_ref(topic))?;
                    match retention::check(&probe, &partitions, &positions) {
                        Ok(()) => {}
                        Err(RuntimeError::Retention(e)) => gone.push(e),
                        Err(e) => return Err(e),
                    }
                }
                Ok(gone)
            })
            .await
            .map_err(|_| RuntimeError::Panicked("topic-check".into()))??
        };

        let cancel = CancellationToken::new();
        let (failed_tx, failure) = watch::channel(None);
        let failed = Arc::new(failed_tx);
        // What the store holds may be in the page cache only (a process crash keeps it, a power
        // loss may not): flush before calling any of it durable.
        {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.flush())
                .await
                .map_err(|_| RuntimeError::Panicked("store-flush".into()))??;
        }
        let journal_schemas = {
            let (store, catalog, registry) = (store.clone(), Arc::clone(&catalog), Arc::clone(&registry));
            let topic = events_topic(&config.service);
            tokio::task::spawn_blocking(move || journal_schemas::JournalSchemas::new(&topic, store, &catalog, registry))
                .await
                .map_err(|_| RuntimeError::Panicked("journal-schemas".into()))??
        };
        let journal_schemas = Arc::new(journal_schemas);
        let durable = Arc::new(Progress::new(store.last_seq()?));
        let outbox = Arc::new(Progress::new(0));
        let (writer_tx, writer_rx) = mpsc::channel(1024);
        let name = config.service.clone();

        let service = Arc::new(service);
        let w = writer::Writer {
            journals: Default::default(),
            name: name.clone(),
            service: Arc::clone(&service),
            store: store.clone(),
            catalog: Arc::clone(&catalog),
            metrics: metrics.clone(),
            durable: Arc::clone(&durable),
            outbox: Arc::clone(&outbox),
        };
        let core = vec![spawn("writer", &name, &failed, &cancel, move || w.run(writer_rx))?];

        let mut downstream = Vec::new();
        // Zero until the publisher has recovered the topic's tail: the topic, not the store's
        // bookkeeping, says what is out.
        let (published_tx, published) = watch::channel(0);
        let published_tx = Arc::new(published_tx);
        if catalog.records().next().is_some() {
            let p = publisher::Publisher {
                service: name.clone(),
                client: config.client(),
                store: store.clone(),
                catalog: Arc::clone(&catalog),
                registry: Arc::clone(&registry),
                schemas: Arc::clone(&journal_schemas),
                durable: Arc::clone(&durable),
                published: Arc::clone(&published_tx),
                metrics: metrics.clone(),
                cancel: cancel.clone(),
                runtime: runtime.clone(),
                drain: config.drain,
            };
            downstream.push(spawn("publisher", &name, &failed, &cancel, move || p.run())?);
        }
        let mut upstream = Vec::new();
        let pipeline_handle = pipeline.clone();
        let readable: Vec<String> = pipeline
            .as_ref()
            .map(|p| p.topics())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !gone.iter().any(|e| e.topic() == t))
            .collect();
        let (topics_tx, topics_rx) = watch::channel(readable);
        let topics_tx = Arc::new(topics_tx);
        let rebuilds = Arc::new(rebuild::Rebuilds::new(
            &name,
            service.replicas(),
            Arc::clone(&topics_tx),
            metrics.clone(),
        ));
        for e in gone {
            rebuilds.mark(e);
        }
        let mut bootstrapped = BTreeMap::new();
        if let Some(p) = &pipeline {
            for (source, from) in &bootstraps {
                let done = bootstrap::run(
                    &name,
                    source,
                    from,
                    &store,
                    &registry,
                    p,
                    &writer_tx,
                    &config.client(),
                    &cancel,
                    &|_, _, _| {},
                )
                .await;
                match done {
                    Ok(meta) => {
                        spool::unspool(&config.store_dir, source, None);
                        if let Some(meta) = meta {
                            bootstrapped.insert(source.clone(), meta);
                        }
                    }
                    Err(e) => {
                        cancel.cancel();
                        return Err(e);
                    }
                }
            }
        }
        if let Some(pipeline) = pipeline {
            let shipper = dlq::Shipper {
                service: name.clone(),
                client: config.client(),
                store: store.clone(),
                outbox: Arc::clone(&outbox),
                metrics: metrics.clone(),
                cancel: cancel.clone(),
                runtime: runtime.clone(),
                drain: config.drain,
            };
            downstream.push(spawn("dlq-shipper", &name, &failed, &cancel, move || shipper.run())?);
            let control = dlq::Control {
                service: name.clone(),
                client: config.client(),
                store: store.clone(),
                redriver: redrive::Redriver {
                    store: store.clone(),
                    pipeline: Arc::clone(&pipeline),
                    writer: writer_tx.clone(),
                    cancel: cancel.clone(),
                },
                cancel: cancel.clone(),
            };
            upstream.push(spawn("dlq-control", &name, &failed, &cancel, move || control.run())?);
            let consumer = consumer::ConsumerLoop {
                topics: topics_rx,
                service: name.clone(),
                group_id: config.group_id.clone().unwrap_or_else(|| name.clone()),
                instance_id: config.instance_id.clone().unwrap_or_else(|| name.clone()),
                client: config.client(),
                store: store.clone(),
                pipeline,
                writer: writer_tx.clone(),
                metrics: metrics.clone(),
                cancel: cancel.clone(),
                max_batch: config.max_batch.max(1),
                rebuilds: Arc::clone(&rebuilds),
            };
            upstream.push(spawn("consumer", &name, &failed, &cancel, move || consumer.run())?);
        }
        if let Some(pipeline) = pipeline_handle.clone() {
            // A type a producer publishes that no translator decision covers is worth a warning
            // now, before its events are skipped (and counted) one by one. In the background: a
            // registry outage must not hold the start.
            let name = name.clone();
            tokio::spawn(async move {
                match pipeline.undeclared().await {
                    Ok(undeclared) => {
                        for (topic, records) in undeclared {
                            warn!(service = %name, %topic, ?records, "the translator neither reads nor ignores these record types its source publishes: their events will be skipped and counted as unhandled (seam status shows them); declare each in the translator's reader_schemas or ignores");
                        }
                    }
                    Err(e) => {
                        warn!(service = %name, error = %e, "could not list the sources' record types in the registry")
                    }
                }
            });
        }
        info!(service = %name, "service started");
        Ok(Self {
            bootstrapped: Arc::new(Mutex::new(bootstrapped)),
            store_dir: config.store_dir.clone(),
            service,
            spares: Mutex::new(spares),
            topics: topics_tx,
            rebuilds,
            registrations: Arc::default(),
            replay: Arc::default(),
            client: config.client(),
            name,
            pipeline: pipeline_handle,
            catalog,
            registry,
            journal_schemas,
            store,
            durable,
            published,
            metrics,
            writer: Some(writer_tx),
            cancel,
            failure,
            upstream,
            core,
            downstream,
            drain: config.drain,
        })
    }

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
        let writer = self.writer.as_ref().ok_or(ExecuteError::Stopped)?;
        let (reply, answer) = oneshot::channel();
        writer
            .send(writer::Request::Command { command, cause, reply })
            .await
            .map_err(|_| ExecuteError::Stopped)?;
        answer.await.map_err(|_| ExecuteError::Stopped)?
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
        request.check().map_err(RuntimeError::Config)?;
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
                RuntimeError::Config(format!("{} takes in no foreign events; nothing is parked", self.name))
            })?,
            writer: self.writer.clone().ok_or(RuntimeError::WriterGone)?,
            cancel: self.cancel.clone(),
        })
    }

    /// putEvents: takes in foreign events posted directly (not read from Kafka) through the same
    /// decode, translate and apply path. Idempotent by `seam-event-id`; no positions move.
    pub async fn put_events(&self, events: Vec<RawEvent>) -> Result<Vec<PutOutcome>, RuntimeError> {
        let pipeline = self.pipeline.clone().ok_or_else(|| {
            RuntimeError::Config(format!(
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

    /// Exports the service's state as a snapshot with the offset map of its topic at exactly the
    /// same cut (invariant 5). Commits pause until the publisher has published through the
    /// snapshot's seq and the offsets are read; if the publisher does not get there within
    /// `deadline`, the snapshot fails (never a map past its state) and commits go on.
    pub async fn snapshot(&self, deadline: Duration) -> Result<crate::snapshot::Exported, RuntimeError> {
        let writer = self.writer.as_ref().ok_or(RuntimeError::WriterGone)?;
        let dir = self.store_dir.join(SNAPSHOTS_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::Store(format!("creating {}: {e}", dir.display())))?;
        let stem = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        // The export's records; removed however this ends.
        let spool = TempFile(dir.join(format!("{stem}.records")));
        let (reply, answer) = oneshot::channel();
        let (release, held) = oneshot::channel();
        writer
            .send(writer::Request::Snapshot {
                spool: spool.0.clone(),
                reply,
                release: held,
            })
            .await
            .map_err(|_| RuntimeError::WriterGone)?;
        let (seq, count) = answer
            .await
            .map_err(|_| RuntimeError::WriterGone)?
            .map_err(|e| match e {
                ApplyError::Store(e) => RuntimeError::Store(e.to_string()),
                e => RuntimeError::Config(e.to_string()),
            })?;
        // Commits are held from here until `release` is sent or dropped (any early return).
        let mut published = self.published.clone();
        let reached = tokio::time::timeout(deadline, published.wait_for(|p| *p >= seq))
            .await
            .map(|r| r.is_ok());
        match reached {
            Ok(true) => {}
            Ok(false) => return Err(RuntimeError::WriterGone),
            Err(_) => {
                return Err(RuntimeError::Kafka {
                    what: "taking a snapshot".into(),
                    detail: format!(
                        "the publisher has not published through seq {seq} within {deadline:?} (it is at seq {}; is the registry or a broker down?); commits were held meanwhile and go on now; try again once it has caught up (`seam status` shows the backlog)",
                        *published.borrow()
                    ),
                })
            }
        }
        let topic = events_topic(&self.name);
        // The high watermark, not the last stable offset: every entry up to `seq` is committed,
        // but the markers of the last transaction may still be on their way and would hold the
        // stable offset back, so the map would point into data the snapshot already holds.
        let mut client = self.client.clone();
        client.set("isolation.level", "read_uncommitted");
        let t = topic.clone();
        let offsets = tokio::task::spawn_blocking(move || -> Result<crate::offsets::OffsetMap, RuntimeError> {
            let probe: BaseConsumer = client
                .create()
                .map_err(|e| RuntimeError::kafka("connecting".into(), e))?;
            let mut map = crate::offsets::OffsetMap::default();
            for (_, p) in retention::partitions_of(&probe, std::slice::from_ref(&t))? {
                let (_, high) = watermarks::watermarks(&probe, &t, p)?;
                map.set(&t, p, high);
            }
            Ok(map)
        })
        .await
        .map_err(|_| RuntimeError::Panicked("snapshot-offsets".into()))?;
        let _ = release.send(());
        let offsets = offsets?;
        // Commits go on; now the schema ids and the file.
        let mut ids: BTreeMap<String, u32> = BTreeMap::new();
        let mut schemas = BTreeMap::new();
        for r in self.catalog.records() {
            let id = self
                .registry
                .register(&topic, r)
                .await
                .map_err(|e| RuntimeError::Registry(e.to_string()))?;
            ids.insert(r.full_name.clone(), id);
            schemas.insert(id, r.source.clone());
        }
        let meta = crate::snapshot::SnapshotMeta {
            service: self.name.clone(),
            seq,
            offsets,
            created: crate::envelope::rfc3339(crate::envelope::now_ms()),
            schemas,
            records: count,
            journal: Some(self.store.journal_id().clone()),
        };
        let path = dir.join(format!("{stem}.avro"));
        let (raw, out, m) = (spool.0.clone(), path.clone(), meta.clone());
        tokio::task::spawn_blocking(move || write_snapshot(&raw, &out, &m, &ids))
            .await
            .map_err(|_| RuntimeError::Panicked("snapshot-write".into()))?
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&path);
            })?;
        Ok(crate::snapshot::Exported::new(meta, path))
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

    /// How the registration of `source` stands; for a source read since start, its positions;
    /// `None` when this build has no translator for it.
    pub fn registration(&self, source: &str) -> Result<Option<Registration>, RuntimeError> {
        let registrations = self
            .registrations
            .lock()
            .map_err(|_| RuntimeError::Panicked("registrations".into()))?;
        self.registration_of(source, &registrations)
    }

    /// [`Node::registration`] while the caller holds the registrations lock.
    fn registration_of(
        &self,
        source: &str,
        registrations: &BTreeMap<String, Registration>,
    ) -> Result<Option<Registration>, RuntimeError> {
        let topic = events_topic(source);
        if let Some(e) = self.rebuilds.get(&topic) {
            return Ok(Some(Registration::NeedsRebuild { error: e.to_string() }));
        }
        match registrations.get(source).cloned() {
            Some(Registration::Reading {
                snapshot_seq, already, ..
            }) => {
                let positions = self.store.positions()?;
                return Ok(Some(Registration::reading(&topic, &positions, snapshot_seq, already)));
            }
            Some(r) => return Ok(Some(r)),
            None => {}
        }
        if self.topics.borrow().contains(&topic) {
            return Ok(Some(Registration::reading(
                &topic,
                &self.store.positions()?,
                None,
                true,
            )));
        }
        let spare = self
            .spares
            .lock()
            .map(|s| s.iter().any(|t| t.source() == source))
            .unwrap_or(false);
        let added = self.pipeline.as_ref().is_some_and(|p| p.topics().contains(&topic));
        Ok((spare || added).then_some(Registration::Available))
    }

    /// Receives `source`'s snapshot (an upload) into a file next to the store and checks it
    /// whole, for [`Node::register`]; nothing is held in memory.
    pub async fn receive_snapshot<St, E>(&self, source: &str, chunks: St, limit: u64) -> Result<Arrival, RuntimeError>
    where
        St: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        spool::receive(&self.store_dir, source, chunks, limit).await
    }

    /// Adds `source` to what this node reads, without a restart: bootstraps it from the snapshot
    /// (spooled first, so a crash resumes it), or checks the topic still starts at offset 0, then
    /// subscribes from exactly the resulting positions. Returns at once; [`Node::registration`]
    /// reports progress. A source already read is left alone, and while a bootstrap of it runs
    /// another request changes nothing: the check and the start are one step under one lock, so
    /// two requests never start two bootstraps or replace the snapshot being loaded.
    pub fn register(&self, source: &str, from: RegisterFrom) -> Result<Registered, RuntimeError> {
        let topic = events_topic(source);
        if let Some(e) = self.rebuilds.get(&topic) {
            return Err(RuntimeError::Config(format!(
                "{} does not read {source} until it is rebuilt; a new registration would load a snapshot over what it holds. {e}",
                self.name
            )));
        }
        let mut registrations = self
            .registrations
            .lock()
            .map_err(|_| RuntimeError::Panicked("registrations".into()))?;
        match self.registration_of(source, &registrations)? {
            Some(r @ Registration::Bootstrapping { .. }) => return Ok(Registered::Running(r)),
            Some(r @ Registration::Reading { .. }) if self.store.bootstrap_marker(&topic)?.is_none() => {
                return Ok(Registered::Already(r));
            }
            _ => {}
        }
        let pipeline = self.pipeline.clone().ok_or_else(|| {
            RuntimeError::Config(format!(
                "{} takes in no foreign events; it has no translators",
                self.name
            ))
        })?;
        if !pipeline.topics().contains(&topic) {
            let mut spares = self
                .spares
                .lock()
                .map_err(|_| RuntimeError::Panicked("register".into()))?;
            let Some(i) = spares.iter().position(|t| t.source() == source) else {
                return Err(RuntimeError::Config(format!(
                    "this build of {} has no translator for {source}; add the translator crate `{source}-to-{}` to the service and redeploy it",
                    self.name, self.name
                )));
            };
            pipeline.add(spares.remove(i))?;
        }
        let from = match from {
            RegisterFrom::Snapshot(arrival) => {
                if arrival.meta.service != source {
                    return Err(RuntimeError::Config(format!(
                        "the snapshot is of {}, not of {source}",
                        arrival.meta.service
                    )));
                }
                let seq = arrival.meta.seq;
                let path = arrival.claim(&self.store_dir)?;
                spool::unspool(&self.store_dir, source, Some(seq));
                Some(path)
            }
            RegisterFrom::Beginning => None,
        };
        let status = Registration::Bootstrapping {
            loaded: 0,
            total: 0,
            seq: 0,
        };
        registrations.insert(source.to_string(), status.clone());
        drop(registrations);
        let set = {
            let source = source.to_string();
            let registrations = Arc::clone(&self.registrations);
            Arc::new(move |r: Registration| {
                if let Ok(mut all) = registrations.lock() {
                    all.insert(source.clone(), r);
                }
            })
        };
        let writer = self.writer.clone().ok_or(RuntimeError::WriterGone)?;
        let (name, source) = (self.name.clone(), source.to_string());
        let (store, registry, client) = (self.store.clone(), Arc::clone(&self.registry), self.client.clone());
        let (cancel, topics, store_dir) = (self.cancel.clone(), Arc::clone(&self.topics), self.store_dir.clone());
        let bootstrapped = Arc::clone(&self.bootstrapped);
        tokio::spawn(async move {
            let loaded = match &from {
                Some(path) => {
                    let progress = {
                        let set = Arc::clone(&set);
                        move |loaded, total, seq| set(Registration::Bootstrapping { loaded, total, seq })
                    };
                    bootstrap::run(
                        &name, &source, path, &store, &registry, &pipeline, &writer, &client, &cancel, &progress,
                    )
                    .await
                    .map(|meta| {
                        meta.map(|m| {
                            let seq = m.seq;
                            if let Ok(mut b) = bootstrapped.lock() {
                                b.insert(source.clone(), m);
                            }
                            seq
                        })
                    })
                }
                None => {
                    let (client, topic, store) = (client.clone(), topic.clone(), store.clone());
                    tokio::task::spawn_blocking(move || -> Result<Option<u64>, RuntimeError> {
                        let probe: BaseConsumer = client
                            .create()
                            .map_err(|e| RuntimeError::kafka("connecting".into(), e))?;
                        let partitions = retention::partitions_of(&probe, std::slice::from_ref(&topic))?;
                        retention::check(&probe, &partitions, &store.positions()?)?;
                        Ok(None)
                    })
                    .await
                    .unwrap_or_else(|_| Err(RuntimeError::Panicked("register-check".into())))
                }
            };
            drop(writer);
            match loaded.and_then(|seq| Ok((seq, store.positions()?))) {
                Ok((seq, positions)) => {
                    spool::unspool(&store_dir, &source, None);
                    topics.send_modify(|t| {
                        t.push(topic.clone());
                        t.sort();
                        t.dedup();
                    });
                    info!(service = %name, %topic, "registered; reading from the bootstrap's positions");
                    set(Registration::reading(&topic, &positions, seq, false));
                }
                Err(e) => {
                    error!(service = %name, %topic, error = %e, "registration failed");
                    set(Registration::Failed { error: e.to_string() });
                }
            }
        });
        Ok(Registered::Started(status))
    }

    /// Reads on from the log start of a source whose events this consumer needs were deleted
    /// (or whose topic was recreated), knowingly: the events in between are never taken in. For
    /// a consumer that keeps no replica of the source it could rebuild (`seam register
    /// --accept-gap`); the positions move in one write and the source is read again.
    pub async fn accept_gap(&self, source: &str) -> Result<Registration, RuntimeError> {
        let topic = events_topic(source);
        let Some(gap) = self.rebuilds.get(&topic) else {
            return Err(RuntimeError::Config(format!(
                "{} has no gap to accept in {source}: it reads it (or has not registered it)",
                self.name
            )));
        };
        let (client, t, positions) = (self.client.clone(), topic.clone(), self.store.positions()?);
        // A trimmed log is read on from where it starts now; a recreated topic, whole.
        let whole = gap.recreated();
        let moved = tokio::task::spawn_blocking(move || -> Result<Vec<(i32, i64)>, RuntimeError> {
            let probe: BaseConsumer = client
                .create()
                .map_err(|e| RuntimeError::kafka("connecting".into(), e))?;
            let mut moved = Vec::new();
            for (_, p) in retention::partitions_of(&probe, std::slice::from_ref(&t))? {
                let (low, high) = watermarks::watermarks(&probe, &t, p)?;
                let at = positions.position(&t, p);
                if whole || at < low || at > high {
                    moved.push((p, low));
                }
            }
            Ok(moved)
        })
        .await
        .map_err(|_| RuntimeError::Panicked("accept-gap".into()))??;
        let writer = self.writer.clone().ok_or(RuntimeError::WriterGone)?;
        let (reply, answer) = oneshot::channel();
        let t = topic.clone();
        let job: writer::ExclusiveJob = Box::new(move |store, set| {
            for (p, offset) in &moved {
                set.set_position(&t, *p, *offset);
            }
            if whole {
                for k in store.partition_journal_keys(&t).map_err(|e| e.to_string())? {
                    set.stage_raw(k, None);
                }
            }
            Ok(())
        });
        writer
            .send(writer::Request::Exclusive { job, reply })
            .await
            .map_err(|_| RuntimeError::WriterGone)?;
        answer.await.map_err(|_| RuntimeError::WriterGone)??;
        tracing::warn!(service = %self.name, %topic, gap = %gap, "accepted the gap: reading on from the log start");
        self.rebuilds.done(&topic);
        Ok(Registration::reading(&topic, &self.store.positions()?, None, false))
    }

    /// Starts rebuilding the replicas of `request.sources` in a shadow store (one replay at a
    /// time); [`Node::replay_status`] reports progress and, at the end, the comparison and swap.
    pub fn replay(&self, request: ReplayRequest) -> Result<ReplayStatus, RuntimeError> {
        if let Some(s @ ReplayStatus::Running { .. }) = self.replay_status() {
            return Err(RuntimeError::Config(format!(
                "a replay of {} is already running ({s:?}); wait for it to finish",
                self.name
            )));
        }
        // Sources waiting for a rebuild count as read: rebuilding them is what a replay is for.
        let waiting = self.rebuilds.all();
        let mut reading = self.sources();
        reading.extend(waiting.keys().cloned());
        reading.sort();
        reading.dedup();
        let names: Vec<String> = reading
            .iter()
            .map(|t| t.trim_end_matches(".events").to_string())
            .collect();
        let (replicas, sources) = replay::plan(&self.name, &self.service.replicas(), &request.sources, &names)?;
        let rebuilding: BTreeSet<String> = sources
            .iter()
            .map(|s| events_topic(s))
            .filter(|t| waiting.contains_key(t))
            .collect();
        for s in &sources {
            if !reading.contains(&events_topic(s)) {
                return Err(RuntimeError::Config(format!(
                    "{} does not read {s} yet; register it first (`seam register {} --source {s}`)",
                    self.name, self.name
                )));
            }
        }
        let mut snapshots = replay::snapshot_sources(&request.snapshots);
        snapshots.retain(|s, _| sources.contains(s));
        if !request.snapshots.is_empty() {
            if let Some(missing) = sources.iter().find(|s| !snapshots.contains_key(*s)) {
                return Err(RuntimeError::Config(format!(
                    "a replay from snapshots needs one for every source it reads ({sources:?}); {missing} has none"
                )));
            }
        }
        let pipeline = self.pipeline.clone().ok_or_else(|| {
            RuntimeError::Config(format!(
                "{} takes in no foreign events; there is nothing to replay",
                self.name
            ))
        })?;
        let writer = self.writer.clone().ok_or(RuntimeError::WriterGone)?;
        let status = ReplayStatus::Running {
            phase: "starting".into(),
            done: 0,
            total: 0,
        };
        if let Ok(mut s) = self.replay.lock() {
            *s = Some(status.clone());
        }
        let job = replay::Replay {
            name: self.name.clone(),
            service: Arc::clone(&self.service),
            catalog: Arc::clone(&self.catalog),
            registry: Arc::clone(&self.registry),
            pipeline,
            live: self.store.clone(),
            live_writer: writer,
            shadow_dir: self.store_dir.join("seam-replay"),
            client: self.client.clone(),
            cancel: self.cancel.clone(),
            status: Arc::clone(&self.replay),
            dry_run: request.dry_run,
            accept_dead_letters: request.accept_dead_letters,
            rebuilding,
            rebuilds: Arc::clone(&self.rebuilds),
        };
        let slot = Arc::clone(&self.replay);
        let name = self.name.clone();
        tokio::spawn(async move {
            let done = match job.run(replicas, sources, snapshots).await {
                Ok(report) => ReplayStatus::Done(Box::new(report)),
                Err(e) => {
                    error!(service = %name, error = %e, "replay failed; the live store is unchanged");
                    ReplayStatus::Failed { error: e.to_string() }
                }
            };
            if let Ok(mut s) = slot.lock() {
                *s = Some(done);
            }
        });
        Ok(status)
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
const SNAPSHOTS_DIR: &str = "seam-snapshots";

/// A file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes the snapshot file `out` from an export's spooled records, with its schema ids.
fn write_snapshot(
    raw: &std::path::Path,
    out: &std::path::Path,
    meta: &crate::snapshot::SnapshotMeta,
    ids: &BTreeMap<String, u32>,
) -> Result<(), RuntimeError> {
    let io = |e: std::io::Error| RuntimeError::Store(format!("writing the snapshot {}: {e}", out.display()));
    let file = std::fs::File::create(out).map_err(io)?;
    let mut writer = crate::snapshot::file::SnapshotWriter::new(std::io::BufWriter::new(file), meta)
        .map_err(|e| RuntimeError::Store(e.to_string()))?;
    for record in crate::snapshot::spool::RawReader::open(raw).map_err(io)? {
        let (subject, record, body) = record.map_err(io)?;
        let schema_id = *ids.get(&record).ok_or_else(|| {
            RuntimeError::Config(format!(
                "the snapshot emitted a {record} record, which is not in the service's catalog"
            ))
        })?;
        writer
            .append(&crate::snapshot::SnapshotRecord {
                subject,
                schema_id,
                body,
            })
            .map_err(|e| RuntimeError::Store(e.to_string()))?;
    }
    let file = writer
        .finish()
        .map_err(|e| RuntimeError::Store(e.to_string()))?
        .into_inner()
        .map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)
}

async fn join(workers: Vec<Worker>, grace: Duration) {
    for worker in workers {
        let name = worker.name;
        let joined = tokio::task::spawn_blocking(move || worker.handle.join());
        if tokio::time::timeout(grace, joined).await.is_err() {
            error!(thread = name, "did not stop within {grace:?}; leaving it");
        }
    }
}
