//! One service instance in the simulation: its store on a [`SimEngine`], the runtime's writer
//! stepped by the scheduler ([`Stepper`]), the runtime's publisher ([`Relay`], on the simulated
//! log) and its consumer. The decisions are the runtime's own: the publisher's whole
//! transaction loop, the retention verdict, the recreated-topic check, decoding and translating
//! (`Pipeline::try_prepare`), getEvents' page, and everything the writer does with what
//! arrives. What is simulated are the edges: the Kafka calls, the registry, the disk, and when
//! each step runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use seam::codec::{Catalog, Registry};
use seam::runtime::consumer::take_in;
use seam::runtime::journal_schemas::JournalSchemas;
use seam::runtime::relay::{Limits, Relay, Step, Turn};
use seam::runtime::{
    compare_and_swap, retention, Answer, ExecuteError, Pipeline, Prepared, RawEvent, Ready, ReplayReport, RuntimeError,
    Stepper, Swap,
};
use seam::service::{Cause, Service};
use seam::store::{JournalId, Store};
use seam::translator::{events_topic, Translator};

use crate::engine::SimEngine;
use crate::kafka::{Kafka, KafkaError};
use crate::producer::Producing;
use crate::registry::SimRegistry;
use crate::rng::Rng;

mod rebuilding;
mod registering;

/// What a step of a node needs from the world around it.
pub struct Env<'a> {
    /// The cluster.
    pub kafka: &'a mut Kafka,
    /// The registry.
    pub registry: &'a Arc<SimRegistry>,
    /// The schedule's randomness.
    pub rng: &'a mut Rng,
    /// A runtime for the registry client's futures (they never wait on real IO here).
    pub runtime: &'a tokio::runtime::Runtime,
    /// The schedule's folder: each node's store directory (its snapshot spool) is in it.
    pub dir: &'a std::path::Path,
}

/// The translators of a service, built afresh for each incarnation.
pub type Translators<C> = fn() -> Vec<Box<dyn Translator<C>>>;

/// A command waiting for its answer, by workload id.
type Waiting = (u64, Answer<Result<Vec<u64>, ExecuteError>>);

/// How a service is built: everything a restart needs.
pub struct Spec<S: Service> {
    /// Service name (topic `<name>.events`).
    pub name: &'static str,
    /// The domain logic.
    pub service: fn() -> S,
    /// The published contract.
    pub catalog: fn() -> Catalog,
    /// The translators into it, one per source.
    pub translators: Translators<S::Command>,
    /// Parses a workload command.
    pub command: fn(&serde_json::Value) -> Option<S::Command>,
    /// The rows of a flow this service takes part in (as its sync report shows them), or
    /// `None` for a flow it is not in.
    pub shared: fn(&Store, &str) -> Option<Vec<String>>,
    /// Sources it reads only once `seam register` bootstrapped them from a snapshot.
    pub registered: &'static [&'static str],
    /// The next release, if the schedules deploy one (and whether it may be rolled back).
    pub upgrade: Option<Release<S>>,
}

/// Another release of a service: what a deploy changes.
pub struct Release<S: Service> {
    /// The domain logic.
    pub service: fn() -> S,
    /// The published contract.
    pub catalog: fn() -> Catalog,
    /// The translators.
    pub translators: Translators<S::Command>,
    /// Percent of deploys after the upgrade that roll back to the first release (0: never).
    pub rollback: u32,
}

/// A snapshot as `GET /snapshot` exports it: the records with their schema ids and the offset
/// map of the source's topic at the same cut.
#[derive(Debug, Clone)]
pub struct Snap {
    /// The source topic.
    pub topic: String,
    /// The journal seq of the cut.
    pub seq: u64,
    /// The topic's offsets at the cut.
    pub offsets: seam::offsets::OffsetMap,
    /// The source's journal.
    pub journal: JournalId,
    /// Schema ids and texts of the records.
    pub schemas: BTreeMap<u32, String>,
    /// `(subject, schema id, body)` per record.
    pub records: Vec<(String, u32, Vec<u8>)>,
}

/// What a step did, for the trace.
pub type Did = String;

/// A node seen by the scheduler, whatever its service type.
pub trait Process {
    /// Service name.
    fn name(&self) -> &str;
    /// Whether it runs.
    fn is_up(&self) -> bool;
    /// Source topics it reads.
    fn sources(&self) -> Vec<String>;
    /// Queues a command from the workload.
    fn command(&mut self, command: &serde_json::Value, id: u64) -> Did;
    /// Writes the open group.
    fn write(&mut self) -> Did;
    /// Flushes written groups and collects the answers.
    fn flush(&mut self) -> Did;
    /// One publisher step.
    fn publish(&mut self, env: &mut Env<'_>) -> Did;
    /// One consumer step.
    fn consume(&mut self, env: &mut Env<'_>) -> Did;
    /// Posts an event of a source topic with putEvents, racing the consumer.
    fn put(&mut self, env: &mut Env<'_>) -> Did;
    /// getEvents near the journal's end (a relay that keeps up): what the page serves, as
    /// putEvents takes it in.
    fn events_page(&mut self, env: &mut Env<'_>) -> Result<Vec<RawEvent>, String>;
    /// putEvents of what a relay fetched.
    fn put_events(&mut self, events: Vec<RawEvent>) -> Did;
    /// A rebalance: the consumer is assigned its partitions again and seeks to the stored
    /// positions; with `rewind`, it also re-fetches a few records (redelivery).
    fn rebalance(&mut self, env: &mut Env<'_>, rewind: bool) -> Did;
    /// Kills the process: unflushed writes beyond a random prefix are lost, unanswered requests
    /// with them. The publisher's open transaction may linger as a zombie.
    fn crash(&mut self, rng: &mut Rng) -> Did;
    /// Starts it again on what its disk kept.
    fn restart(&mut self, env: &mut Env<'_>) -> Did;
    /// Whether work is left that a step would do (used to run a schedule to quiescence).
    fn busy(&self, kafka: &Kafka) -> bool;
    /// The store, while up.
    fn store(&self) -> Option<&Store>;
    /// Commands acknowledged as applied, with the journal seqs they emitted.
    fn acknowledged(&self) -> &BTreeMap<u64, Vec<u64>>;
    /// Failures the runtime reported that no fault explains (a violation each).
    fn failures(&self) -> &[String];
    /// Source topics the consumer stopped reading because its next events are gone, with why.
    fn stopped(&self) -> BTreeMap<String, String>;
    /// Folds `records` (per source partition, in offset order) into a fresh store through the
    /// same path, interleaving partitions at random; returns the store.
    fn fold(&self, env: &mut Env<'_>, records: &[(String, i32, Vec<crate::kafka::Record>)]) -> Result<Store, String>;
    /// Whether a zombie of an earlier incarnation still holds an open transaction.
    fn zombie(&mut self, env: &mut Env<'_>) -> Option<Did>;
    /// The rows of `flow` as `store` holds them for this service.
    fn shared(&self, store: &Store, flow: &str) -> Option<Vec<String>>;
    /// Starts `GET /snapshot`: the writer exports its state into a spool under `dir` and holds
    /// every commit until the offsets are read.
    fn begin_snapshot(&mut self, dir: &std::path::Path) -> Did;
    /// Advances a held snapshot: once the publisher has published through the cut, reads the
    /// topic's offsets, releases the writer and returns the snapshot. `None` while it waits.
    fn snapshot_step(&mut self, env: &mut Env<'_>) -> Option<Result<Snap, String>>;
    /// Gives a held snapshot up (its deadline passed); commits go on.
    fn abandon_snapshot(&mut self) -> Did;
    /// One step of the bootstrap the node loads (a registration's, or a start's); `None` when
    /// none runs.
    fn bootstrap_step(&mut self, env: &mut Env<'_>) -> Option<Did>;
    /// `seam register <this> --source <source>` with `snapshot` (a snapshot file's bytes).
    fn register(&mut self, env: &mut Env<'_>, source: &str, snapshot: &[u8]) -> Did;
    /// Answers the download of a start that waits for its `--bootstrap` URL.
    fn deliver(&mut self, env: &mut Env<'_>, snapshot: &[u8]) -> Did;
    /// Whether a start waits for its `--bootstrap` URL to answer.
    fn starting(&self) -> bool;
    /// Whether an operator path runs on it now (a bootstrap, replay, redrive or held
    /// snapshot): where crashes are aimed at half the time.
    fn mid_operation(&self) -> bool;
    /// The operator restarts the node with `--bootstrap <source>=URL`: killed now, started
    /// again with the flag.
    fn serve_with_bootstrap(&mut self, rng: &mut Rng, source: &str) -> Did;
    /// How the registration of `source` stands; `None` while down.
    fn registration(&self, source: &str) -> Option<seam::runtime::Registration>;
    /// The seq and offset map of the snapshot a registration finished loading.
    fn loaded(&self) -> Option<(u64, seam::offsets::OffsetMap)>;
    /// Deploys the other release: the process is killed and starts again on it later. `None`
    /// when the service has no other release to go to.
    fn deploy(&mut self, rng: &mut Rng) -> Option<Did>;
    /// Whether the upgraded release runs (or will, once restarted).
    fn upgraded(&self) -> bool;
    /// Whether a consumer went back to a stricter release after a more lenient one applied
    /// events: its replicas then hold what no single release would build.
    fn mixed_history(&self) -> bool;
    /// `seam dlq redrive --consumer <this>`: starts a redrive of every parked letter.
    fn request_redrive(&mut self) -> Did;
    /// One step of a redrive in progress; `None` when none is.
    fn redrive_step(&mut self) -> Option<Did>;
    /// Parked letters, as `(topic, subject)`.
    fn parked(&self) -> Vec<(String, String)>;
    /// `seam replay <this>` of every replica it declares, from offset 0.
    fn request_replay(&mut self, env: &mut Env<'_>, dry_run: bool) -> Did;
    /// One step of a replay in progress; `None` when none is.
    fn replay_step(&mut self, env: &mut Env<'_>) -> Option<Did>;
    /// The report of the last replay that finished.
    fn last_replay(&self) -> Option<&ReplayReport>;
    /// The sources a replay from snapshots must have a snapshot of to rebuild what this
    /// consumer lost to retention; `None` when nothing waits for a rebuild it can do.
    fn to_rebuild(&self) -> Option<Vec<String>>;
    /// `seam register <this> --source S --accept-gap` for a source it stopped reading; `None`
    /// when none waits.
    fn accept_gaps(&mut self, env: &mut Env<'_>) -> Option<Did>;
    /// Source topics whose gap was accepted.
    fn accepted(&self) -> Vec<String>;
    /// Where a replay from snapshots, or an accepted gap, cut each source (0 elsewhere).
    fn rebuilt_cut(&self, topic: &str, partition: i32) -> i64;
    /// `seam replay <this> --source <gone> --from-snapshot`, given those snapshots' bytes.
    fn replay_from_snapshots(&mut self, env: &mut Env<'_>, snapshots: &BTreeMap<String, Vec<u8>>) -> Did;
    /// Whether the consumer has read everything committed on `topic` (and handed it over).
    fn caught_up(&self, kafka: &Kafka, topic: &str) -> bool;
}

/// The publisher: the runtime's relay and the epoch its transactional producer got.
struct Publisher {
    relay: Relay,
    epoch: Option<u32>,
}

/// An earlier incarnation's publisher that was not dead when its successor started: it goes
/// on with the transaction it had open until that ends, committed or fenced.
struct Zombie {
    publisher: Publisher,
    durable: u64,
}

#[derive(Default)]
struct Consumer {
    started: bool,
    fetch: BTreeMap<(String, i32), i64>,
    journals: HashMap<(String, i32), Option<String>>,
    stopped: BTreeMap<String, String>,
}

struct Up<S: Service> {
    engine: Arc<SimEngine>,
    store: Store,
    stepper: Stepper<S>,
    pipeline: Pipeline<S::Command>,
    registry: Arc<Registry>,
    /// Each journal entry's writer schema (getEvents frames entries with it).
    schemas: Arc<JournalSchemas>,
    publisher: Publisher,
    consumer: Consumer,
    commands: Vec<Waiting>,
    batches: Vec<Answer<Result<(), RuntimeError>>>,
    /// A snapshot exported and holding the writer.
    held: Option<Held>,
    /// The last bootstrap chunk, until it is durable.
    loading: Option<Answer<Result<(), RuntimeError>>>,
    /// A redrive in progress.
    redrive: Option<Redrive>,
    /// A replay in progress.
    replay: Option<Replaying<S>>,
    /// An accepted gap's write, until it is durable: the topic and the writer's answer.
    accepting: Option<Accepting>,
    /// How each registration since this start stands.
    registrations: BTreeMap<String, seam::runtime::Registration>,
    /// A bootstrap being loaded.
    booting: Option<registering::Booting>,
}

/// An accepted gap's write in flight: the topic, the positions it moves, the writer's answer.
type Accepting = (String, Vec<(i32, i64)>, Answer<Result<(), RuntimeError>>);

/// A replay in progress: the shadow store with its own writer, and how far it has read.
struct Replaying<S: Service> {
    shadow: Store,
    writer: Stepper<S>,
    fetch: BTreeMap<(String, i32), i64>,
    topics: Vec<String>,
    prefixes: Vec<String>,
    dry_run: bool,
    /// Sources rebuilt after their events were lost (from snapshots): read to `ends`.
    rebuilding: std::collections::BTreeSet<String>,
    /// Where the sources being rebuilt end, taken when the replay began.
    ends: BTreeMap<(String, i32), i64>,
    /// The shadow's positions after its snapshots: the live store must reach them first.
    start: seam::offsets::OffsetMap,
}

impl<S: Service> Replaying<S> {
    /// How far the shadow reads `(topic, partition)`: a rebuilt source to its end, any other to
    /// the live store's position.
    fn until(&self, live: &seam::offsets::OffsetMap, topic: &str, partition: i32) -> i64 {
        match self.ends.get(&(topic.to_string(), partition)) {
            Some(end) => *end,
            None => live.position(topic, partition),
        }
    }
}

/// A redrive in progress: where its pages are, what failed again, the chunk in flight.
#[derive(Default)]
struct Redrive {
    cursor: Option<Vec<u8>>,
    blocked: std::collections::HashSet<(String, String)>,
    chunk: Option<(Answer<Result<seam::runtime::redrive::ChunkOutcome, RuntimeError>>, bool)>,
    redriven: usize,
    failed: usize,
}

/// A snapshot holding the writer: the export's answer (then its cut) and its spool.
struct Held {
    answer: Answer<seam::runtime::step::Exported>,
    cut: Option<u64>,
    spool: std::path::PathBuf,
}

/// A simulated instance of service `S`.
pub struct Node<S: Service> {
    spec: Spec<S>,
    up: Option<Up<S>>,
    disk: Arc<SimEngine>,
    incarnation: u32,
    zombie: Option<Zombie>,
    acknowledged: BTreeMap<u64, Vec<u64>>,
    failures: Vec<String>,
    sources: Vec<String>,
    upgraded: bool,
    /// Whether it ever went back to the first release after the next one ran.
    rolled_back: bool,
    last_replay: Option<ReplayReport>,
    /// The operator's `--bootstrap` flag, kept across restarts.
    given: Option<seam::runtime::SnapshotSource>,
    /// A start waiting for its `--bootstrap` URL.
    starting: Option<registering::Starting<S>>,
    /// The last chunk of a bootstrap sent to the writer: its source, seq and offset map.
    finishing: Option<(String, u64, seam::offsets::OffsetMap)>,
    /// The seq and offset map of the snapshot a bootstrap finished loading.
    loaded: Option<(u64, seam::offsets::OffsetMap)>,
    /// The snapshots' maps of the sources a replay rebuilt from snapshots, and the log starts
    /// an accepted gap moved to: what came before is not this consumer's to take in.
    cuts: seam::offsets::OffsetMap,
    /// Source topics whose gap the operator accepted: their events in between are never taken in.
    accepted: std::collections::BTreeSet<String>,
}

/// How a replay ends when retention deleted events it had not read yet (the real reader's
/// offset goes out of range the same way).
const GONE: &str = "replay stopped: retention deleted events it had not read yet; the live store is unchanged";

/// Entries per publish transaction at most (small, so schedules cross many batches).
const MAX_BATCH: usize = 12;
/// Records per consumer fetch at most.
const MAX_FETCH: usize = 8;

fn journal_name(service: &str, start: u64) -> JournalId {
    let hex: String = service.bytes().take(12).map(|b| format!("{b:02x}")).collect();
    JournalId::parse(&format!("{hex}0:{start}")).unwrap_or_else(|| unreachable!("hex journal id"))
}

fn raw(topic: &str, partition: i32, r: &crate::kafka::Record) -> RawEvent {
    RawEvent {
        topic: topic.to_string(),
        partition,
        offset: r.offset,
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r.headers.as_slice().into(),
    }
}

impl<S: Service> Node<S> {
    /// A node that has not started yet, with an empty disk.
    pub fn new(spec: Spec<S>) -> Self {
        let sources = (spec.translators)()
            .iter()
            .filter(|t| !spec.registered.contains(&t.source()))
            .map(|t| events_topic(t.source()))
            .collect();
        Self {
            spec,
            up: None,
            disk: Arc::new(SimEngine::default()),
            incarnation: 0,
            zombie: None,
            acknowledged: BTreeMap::new(),
            failures: Vec::new(),
            sources,
            upgraded: false,
            rolled_back: false,
            last_replay: None,
            given: None,
            starting: None,
            finishing: None,
            loaded: None,
            cuts: Default::default(),
            accepted: Default::default(),
        }
    }

    fn service(&self) -> S {
        match (&self.spec.upgrade, self.upgraded) {
            (Some(r), true) => (r.service)(),
            _ => (self.spec.service)(),
        }
    }

    fn catalog(&self) -> Catalog {
        match (&self.spec.upgrade, self.upgraded) {
            (Some(r), true) => (r.catalog)(),
            _ => (self.spec.catalog)(),
        }
    }

    fn translators(&self) -> Vec<Box<dyn Translator<S::Command>>> {
        match (&self.spec.upgrade, self.upgraded) {
            (Some(r), true) => (r.translators)(),
            _ => (self.spec.translators)(),
        }
    }

    fn topic(&self) -> String {
        events_topic(self.spec.name)
    }

    /// The source services it reads, as replay plans name them.
    fn reading(&self) -> Vec<String> {
        self.sources
            .iter()
            .map(|t| t.trim_end_matches(".events").to_string())
            .collect()
    }

    /// A fresh shadow store for a replay, with its own writer and no journal.
    fn shadow(&self) -> Result<(Store, Stepper<S>), String> {
        let shadow = Store::with_engine_named(Arc::new(SimEngine::default()), |s| journal_name("shadow", s))
            .map_err(|e| format!("opening a shadow store: {e}"))?
            .without_journal();
        let writer = Stepper::new(
            self.spec.name,
            shadow.clone(),
            Arc::new(self.service()),
            Arc::new(self.catalog()),
        )
        .map_err(|e| format!("starting the shadow writer: {e}"))?;
        Ok((shadow, writer))
    }

    /// Stops the node after a failure the runtime would stop on.
    fn fail(&mut self, what: String) -> Did {
        self.failures.push(format!("{}: {what}", self.spec.name));
        self.up = None;
        format!("FAILED {what}")
    }

    fn open(&self, env: &Env<'_>) -> Result<Up<S>, String> {
        let name = self.spec.name;
        let engine = Arc::clone(&self.disk);
        let store =
            Store::with_engine_named(engine.clone(), |start| journal_name(name, start)).map_err(|e| e.to_string())?;
        let catalog = Arc::new(self.catalog());
        let registry = Arc::new(Registry::with_backend(
            "sim-registry",
            Arc::clone(env.registry) as Arc<dyn seam::codec::RegistryBackend>,
        ));
        let schemas = Arc::new(
            JournalSchemas::new(&self.topic(), store.clone(), &catalog, Arc::clone(&registry))
                .map_err(|e| e.to_string())?,
        );
        let mut stepper = Stepper::new(name, store.clone(), Arc::new(self.service()), Arc::clone(&catalog))
            .map_err(|e| e.to_string())?;
        let publisher = Publisher {
            relay: Relay::new(
                name,
                store.clone(),
                catalog,
                Arc::clone(&registry),
                Arc::clone(&schemas),
            )
            .reading(stepper.hand_over()),
            epoch: None,
        };
        let pipeline = Pipeline::new(self.translators(), Arc::clone(&registry), env.runtime.handle().clone())
            .map_err(|e| e.to_string())?;
        Ok(Up {
            engine,
            store,
            stepper,
            pipeline,
            registry,
            schemas,
            publisher,
            consumer: Consumer::default(),
            commands: Vec::new(),
            batches: Vec::new(),
            held: None,
            loading: None,
            redrive: None,
            replay: None,
            registrations: BTreeMap::new(),
            booting: None,
            accepting: None,
        })
    }
}

impl<S: Service> Node<S> {
    /// What a start does about sources whose next events are gone: the runtime's
    /// `retention::set_aside`, each partition judged by the runtime's verdict on the log's
    /// watermarks. The sources set aside are not read until the operator's remedy.
    fn set_aside(&self, env: &mut Env<'_>, mut up: Up<S>) -> Result<Up<S>, RuntimeError> {
        let positions = up.store.positions()?;
        let unavailable = |what: String| RuntimeError::Kafka {
            what,
            detail: "no broker answers".into(),
        };
        let kafka = &*env.kafka;
        let gone = retention::set_aside(&self.sources, |topic| {
            let partitions = kafka
                .partitions(topic)
                .map_err(|_| unavailable(format!("reading metadata of {topic}")))?;
            for partition in 0..partitions {
                let (low, high) = kafka
                    .watermarks(topic, partition)
                    .map_err(|_| unavailable(format!("reading the watermarks of {topic}/{partition}")))?;
                retention::verdict(topic, partition, positions.position(topic, partition), low, high)
                    .map_err(RuntimeError::Retention)?;
            }
            Ok(())
        })?;
        for e in gone {
            up.consumer.stopped.insert(e.topic().to_string(), e.to_string());
        }
        Ok(up)
    }
}

impl<S: Service> Process for Node<S> {
    fn name(&self) -> &str {
        self.spec.name
    }

    fn is_up(&self) -> bool {
        self.up.is_some()
    }

    fn starting(&self) -> bool {
        self.starting.is_some()
    }

    fn mid_operation(&self) -> bool {
        self.starting.is_some()
            || self.up.as_ref().is_some_and(|up| {
                up.booting.is_some()
                    || up.loading.is_some()
                    || up.accepting.is_some()
                    || up.replay.is_some()
                    || up.redrive.is_some()
                    || up.held.is_some()
            })
    }

    fn sources(&self) -> Vec<String> {
        self.sources.clone()
    }

    fn command(&mut self, command: &serde_json::Value, id: u64) -> Did {
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        if up.held.is_some() {
            return "waits: the writer holds for a snapshot".into();
        }
        let Some(parsed) = (self.spec.command)(command) else {
            return format!("not a command of {}: {command}", self.spec.name);
        };
        match up.stepper.command(parsed, Cause::default()) {
            Ok(answer) => {
                up.commands.push((id, answer));
                format!("command #{id} {command}")
            }
            Err(e) => self.fail(format!("the writer failed on a command: {e}")),
        }
    }

    fn write(&mut self) -> Did {
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        match up.stepper.write() {
            Ok(()) => "write".into(),
            Err(e) => self.fail(format!("the writer failed: {e}")),
        }
    }

    fn flush(&mut self) -> Did {
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        if let Err(e) = up.stepper.flush() {
            return self.fail(format!("the flush failed: {e}"));
        }
        let mut acked = 0;
        let mut still = Vec::new();
        for (id, mut answer) in std::mem::take(&mut up.commands) {
            match answer.poll() {
                None => still.push((id, answer)),
                Some(Some(Ok(seqs))) => {
                    acked += 1;
                    self.acknowledged.insert(id, seqs);
                }
                Some(Some(Err(ExecuteError::Apply(_)))) => {}
                Some(Some(Err(e))) => {
                    self.failures
                        .push(format!("{}: command #{id} failed in the store: {e}", self.spec.name));
                }
                Some(None) => {}
            }
        }
        up.commands = still;
        let mut failed = None;
        up.batches.retain_mut(|a| match a.poll() {
            None => true,
            Some(Some(Err(e))) => {
                failed = Some(e.to_string());
                false
            }
            Some(_) => false,
        });
        if let Some(e) = failed {
            return self.fail(format!("a consumed batch failed: {e}"));
        }
        format!("flush ({acked} commands acknowledged)")
    }

    fn publish(&mut self, env: &mut Env<'_>) -> Did {
        let id = format!("seam-publisher-{}", self.spec.name);
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        let durable = up.stepper.durable_seq();
        let limits = Limits {
            batch: 1 + env.rng.below(MAX_BATCH),
            sends: 1 + env.rng.below(4),
        };
        let mut log = Producing {
            kafka: &mut *env.kafka,
            id: &id,
            epoch: &mut up.publisher.epoch,
        };
        let turn = Turn {
            log: &mut log,
            runtime: env.runtime.handle(),
            durable,
            limits,
        };
        match up.publisher.relay.step(turn) {
            Ok(Step::Started { next }) => format!("publisher started; tail recovered, next {next}"),
            Ok(Step::Idle) => "publisher idle".into(),
            Ok(Step::Progress(did)) => format!("publisher: {did}"),
            Ok(Step::Wait(why)) => format!("publisher waits: {why}"),
            Ok(Step::Committed { end, count }) => format!("publisher committed up to {end} ({count} sent)"),
            Err(e) => self.fail(format!("the publisher stopped: {e}")),
        }
    }

    fn consume(&mut self, env: &mut Env<'_>) -> Did {
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        if self.sources.is_empty() {
            return "no sources".into();
        }
        if !up.consumer.started {
            let positions = match up.store.positions() {
                Ok(p) => p,
                Err(e) => return self.fail(format!("reading positions: {e}")),
            };
            let mut fetch = BTreeMap::new();
            for topic in &self.sources {
                if up.consumer.stopped.contains_key(topic) {
                    continue;
                }
                let partitions = match env.kafka.partitions(topic) {
                    Ok(n) => n,
                    Err(_) => return "consumer waits for the cluster".into(),
                };
                for partition in 0..partitions {
                    let (low, high) = match env.kafka.watermarks(topic, partition) {
                        Ok(marks) => marks,
                        Err(_) => return "consumer waits for the cluster".into(),
                    };
                    let next = positions.position(topic, partition);
                    if let Err(e) = retention::verdict(topic, partition, next, low, high) {
                        up.consumer.stopped.insert(topic.clone(), e.to_string());
                        fetch.retain(|(t, _): &(String, i32), _| t != topic);
                        break;
                    }
                    fetch.insert((topic.clone(), partition), next);
                }
            }
            up.consumer.fetch = fetch;
            up.consumer.started = true;
            return format!(
                "consumer assigned {} partitions at the stored positions",
                up.consumer.fetch.len()
            );
        }
        let readable: Vec<(String, i32)> = up
            .consumer
            .fetch
            .iter()
            .filter(|((t, p), from)| env.kafka.last_stable(t, *p).is_ok_and(|s| s > **from))
            .map(|(k, _)| k.clone())
            .collect();
        let Some((topic, partition)) = env.rng.pick(&readable).cloned() else {
            return "consumer idle".into();
        };
        let from = up.consumer.fetch[&(topic.clone(), partition)];
        let fetched = match env.kafka.read(&topic, partition, from, 1 + env.rng.below(MAX_FETCH)) {
            Ok(f) => f,
            Err(KafkaError::OutOfRange { earliest, end }) => {
                let e = retention::verdict(&topic, partition, from, earliest, end)
                    .err()
                    .map_or_else(|| "out of range".to_string(), |e| e.to_string());
                up.consumer.stopped.insert(topic.clone(), e);
                up.consumer.fetch.retain(|(t, _), _| *t != topic);
                return format!("consumer stopped reading {topic}: its next events are gone");
            }
            Err(_) => return "consumer waits for the cluster".into(),
        };
        let events: Vec<RawEvent> = fetched.records.iter().map(|r| raw(&topic, partition, r)).collect();
        let pipeline = &up.pipeline;
        let intake = take_in(&up.store, events, &mut up.consumer.journals, |event| {
            Ok(match pipeline.try_prepare(event)? {
                Ready::Done(prepared) => Some(prepared),
                Ready::Transient(_) => None,
            })
        });
        let intake = match intake {
            Ok(intake) => intake,
            Err(e) => return self.fail(format!("taking in a batch: {e}")),
        };
        let mut next = fetched.next;
        if let Some(e) = intake.recreated.first() {
            up.consumer.stopped.insert(topic.clone(), e.to_string());
        }
        if let Some((_, _, offset)) = intake.held_at {
            next = offset;
        }
        let items = intake.items;
        let count = items.len();
        if up.held.is_some() {
            // The batch waits in the writer's queue; it is read again once released.
            return "consumer waits: the writer holds for a snapshot".into();
        }
        if up.consumer.stopped.contains_key(&topic) {
            up.consumer.fetch.retain(|(t, _), _| *t != topic);
        } else {
            up.consumer.fetch.insert((topic.clone(), partition), next);
        }
        if count > 0 {
            match up.stepper.foreign(items) {
                Ok(answer) => up.batches.push(answer),
                Err(e) => return self.fail(format!("the writer failed on a batch: {e}")),
            }
        }
        format!("consumer took {count} from {topic}/{partition} at {from}")
    }

    fn put(&mut self, env: &mut Env<'_>) -> Did {
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        if up.held.is_some() {
            return "waits: the writer holds for a snapshot".into();
        }
        let Some(topic) = env.rng.pick(&self.sources).cloned() else {
            return "no sources".into();
        };
        let Ok(partitions) = env.kafka.partitions(&topic) else {
            return "cluster unavailable".into();
        };
        let partition = env.rng.below(partitions as usize) as i32;
        let Ok((low, _)) = env.kafka.watermarks(&topic, partition) else {
            return "cluster unavailable".into();
        };
        let Ok(fetched) = env.kafka.read(&topic, partition, low, usize::MAX) else {
            return "cluster unavailable".into();
        };
        let Some(r) = env.rng.pick(&fetched.records) else {
            return "nothing to put".into();
        };
        let event = raw(&topic, partition, r);
        self.put_events(vec![event])
    }

    fn events_page(&mut self, env: &mut Env<'_>) -> Result<Vec<RawEvent>, String> {
        let name = self.spec.name;
        let Some(up) = self.up.as_ref() else {
            return Err("down".into());
        };
        let end = up.store.last_seq().map_err(|e| e.to_string())?;
        let after = end.saturating_sub(env.rng.below(6) as u64);
        let limit = 1 + env.rng.below(4);
        let (entries, _) = seam::http::events_page(&up.store, up.stepper.durable_seq(), after, limit, (None, None))
            .map_err(|e| e.to_string())?;
        let mut events = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let id = env
                .runtime
                .block_on(up.schemas.id(entry))
                .map_err(|e| format!("the writer schema of entry {}: {e}", entry.seq))?;
            let wire = seam::http::WireEvent::from_entry(name, up.store.journal_id(), entry, id);
            events.push(wire.into_raw(i).map_err(|e| e.error)?);
        }
        Ok(events)
    }

    fn put_events(&mut self, events: Vec<RawEvent>) -> Did {
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        if up.held.is_some() {
            return "waits: the writer holds for a snapshot".into();
        }
        let mut items = Vec::with_capacity(events.len());
        let mut ids = Vec::with_capacity(events.len());
        for event in events {
            if !self.sources.contains(&event.topic) {
                return format!("putEvents refused: {} is not a source", event.topic);
            }
            let prepared = match up.pipeline.try_prepare(&event) {
                Ok(Ready::Done(p)) => p,
                Ok(Ready::Transient(_)) => return "putEvents waits for the registry".into(),
                Err(e) => return self.fail(format!("preparing a put: {e}")),
            };
            ids.push(event.event_id().unwrap_or("?").to_string());
            items.push((event, prepared));
        }
        if items.is_empty() {
            return "putEvents of nothing".into();
        }
        match up.stepper.put(items) {
            Ok(_) => format!("putEvents {}", ids.join(" ")),
            Err(e) => self.fail(format!("the writer failed on a put: {e}")),
        }
    }

    fn rebalance(&mut self, env: &mut Env<'_>, rewind: bool) -> Did {
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        if rewind {
            let keys: Vec<(String, i32)> = up.consumer.fetch.keys().cloned().collect();
            if let Some(key) = env.rng.pick(&keys).cloned() {
                let back = 1 + env.rng.below(6) as i64;
                let low = env.kafka.watermarks(&key.0, key.1).map_or(0, |m| m.0);
                if let Some(at) = up.consumer.fetch.get_mut(&key) {
                    *at = (*at - back).max(low).min(*at);
                }
                return format!("redelivery: {}/{} rewound by {back}", key.0, key.1);
            }
            return "nothing to rewind".into();
        }
        up.consumer.started = false;
        "rebalance".into()
    }

    fn crash(&mut self, rng: &mut Rng) -> Did {
        let Some(up) = self.up.take().or_else(|| self.starting.take().map(|s| s.up)) else {
            return "already down".into();
        };
        let unflushed = up.engine.unflushed();
        let kept = rng.below(unflushed + 1);
        self.disk = Arc::new(up.engine.crashed(kept));
        // A publisher mid-transaction may not be dead yet (a paused process, a partition).
        if up.publisher.relay.in_transaction() && rng.chance(50) {
            self.zombie = Some(Zombie {
                durable: up.stepper.durable_seq(),
                publisher: up.publisher,
            });
        }
        format!("CRASH (kept {kept} of {unflushed} unflushed groups)")
    }

    fn restart(&mut self, env: &mut Env<'_>) -> Did {
        if self.up.is_some() {
            return "already up".into();
        }
        if self.starting.is_some() {
            return "starting: waits for its --bootstrap URL".into();
        }
        self.incarnation += 1;
        let up = match self.open(env) {
            Ok(up) => up,
            Err(e) => return self.fail(format!("reopening the store: {e}")),
        };
        let up = match self.set_aside(env, up) {
            Ok(up) => up,
            Err(RuntimeError::Kafka { what, detail }) => {
                return format!("the start failed ({what}: {detail}); it is started again later");
            }
            Err(e) => return self.fail(format!("the start failed: {e}")),
        };
        match self.resume_registrations(env, up) {
            Ok(Ok(up)) => {
                let booting = up.booting.is_some();
                self.up = Some(up);
                format!(
                    "RESTART #{}{}",
                    self.incarnation,
                    if booting { " (resumes a bootstrap)" } else { "" }
                )
            }
            Ok(Err(starting)) => {
                self.starting = Some(starting);
                format!(
                    "RESTART #{}: downloads its --bootstrap snapshot first",
                    self.incarnation
                )
            }
            Err(e) => self.fail(format!("the start failed: {e}")),
        }
    }

    fn busy(&self, kafka: &Kafka) -> bool {
        let Some(up) = &self.up else { return true };
        if !up.stepper.is_idle()
            || !up.commands.is_empty()
            || !up.batches.is_empty()
            || up.loading.is_some()
            || up.booting.is_some()
            || up.accepting.is_some()
            || up.redrive.is_some()
            || up.replay.is_some()
        {
            return true;
        }
        if up.publisher.relay.has_work(up.stepper.durable_seq()) {
            return true;
        }
        if !self.sources.is_empty() && !up.consumer.started {
            return true;
        }
        up.consumer
            .fetch
            .iter()
            .any(|((t, p), from)| kafka.last_stable(t, *p).is_ok_and(|s| s > *from))
    }

    fn store(&self) -> Option<&Store> {
        self.up.as_ref().map(|u| &u.store)
    }

    fn acknowledged(&self) -> &BTreeMap<u64, Vec<u64>> {
        &self.acknowledged
    }

    fn failures(&self) -> &[String] {
        &self.failures
    }

    fn stopped(&self) -> BTreeMap<String, String> {
        self.up.as_ref().map(|u| u.consumer.stopped.clone()).unwrap_or_default()
    }

    fn fold(&self, env: &mut Env<'_>, records: &[(String, i32, Vec<crate::kafka::Record>)]) -> Result<Store, String> {
        let store = Store::with_engine_named(Arc::new(SimEngine::default()), |s| journal_name("fold", s))
            .map_err(|e| e.to_string())?;
        let catalog = Arc::new(self.catalog());
        let registry = Arc::new(Registry::with_backend(
            "sim-registry",
            Arc::clone(env.registry) as Arc<dyn seam::codec::RegistryBackend>,
        ));
        let mut stepper =
            Stepper::new("fold", store.clone(), Arc::new(self.service()), catalog).map_err(|e| e.to_string())?;
        let pipeline =
            Pipeline::new(self.translators(), registry, env.runtime.handle().clone()).map_err(|e| e.to_string())?;
        let mut cursors: Vec<(usize, usize)> = (0..records.len()).map(|i| (i, 0)).collect();
        loop {
            cursors.retain(|(i, at)| *at < records[*i].2.len());
            if cursors.is_empty() {
                break;
            }
            let pick = env.rng.below(cursors.len());
            let (i, at) = cursors[pick];
            let take = 1 + env.rng.below(MAX_FETCH);
            let (topic, partition, list) = &records[i];
            let mut items: Vec<(RawEvent, Prepared<S::Command>)> = Vec::new();
            for r in list.iter().skip(at).take(take) {
                let event = raw(topic, *partition, r);
                match pipeline.try_prepare(&event) {
                    Ok(Ready::Done(p)) => items.push((event, p)),
                    Ok(Ready::Transient(e)) => return Err(format!("folding: {e}")),
                    Err(e) => return Err(format!("folding: {e}")),
                }
            }
            cursors[pick].1 += items.len();
            stepper.foreign(items).map_err(|e| e.to_string())?;
            stepper.write().map_err(|e| e.to_string())?;
        }
        stepper.flush().map_err(|e| e.to_string())?;
        Ok(store)
    }

    fn shared(&self, store: &Store, flow: &str) -> Option<Vec<String>> {
        (self.spec.shared)(store, flow)
    }

    fn request_replay(&mut self, env: &mut Env<'_>, dry_run: bool) -> Did {
        let replicas = self.service().replicas();
        let reading = self.reading();
        let Some(up) = self.up.as_ref() else {
            return "down".into();
        };
        if up.replay.is_some() {
            return "a replay is running".into();
        }
        if replicas.is_empty() {
            return "declares no replicas to replay".into();
        }
        let (prefixes, sources) = match seam::runtime::replay_plan(self.spec.name, &replicas, &[], &reading) {
            Ok(plan) => plan,
            Err(e) => return format!("replay refused: {e}"),
        };
        let topics: Vec<String> = sources.iter().map(|s| events_topic(s)).collect();
        let mut fetch = BTreeMap::new();
        for topic in &topics {
            let Ok(partitions) = env.kafka.partitions(topic) else {
                return "replay waits for the cluster".into();
            };
            for partition in 0..partitions {
                match env.kafka.watermarks(topic, partition) {
                    Ok((0, _)) => {
                        fetch.insert((topic.clone(), partition), 0);
                    }
                    Ok((low, _)) => {
                        return format!(
                            "replay refused: {topic}/{partition} starts at {low}, its first events are gone (replay from a snapshot instead)"
                        )
                    }
                    Err(_) => return "replay waits for the cluster".into(),
                }
            }
        }
        let (shadow, writer) = match self.shadow() {
            Ok(shadow) => shadow,
            Err(e) => return self.fail(e),
        };
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        up.replay = Some(Replaying {
            shadow,
            writer,
            fetch,
            topics,
            prefixes,
            dry_run,
            rebuilding: Default::default(),
            ends: BTreeMap::new(),
            start: Default::default(),
        });
        format!("REPLAY requested{}", if dry_run { " (dry run)" } else { "" })
    }

    fn replay_step(&mut self, env: &mut Env<'_>) -> Option<Did> {
        let up = self.up.as_mut()?;
        let replay = up.replay.as_mut()?;
        if up.held.is_some() {
            return Some("replay waits: the writer holds for a snapshot".into());
        }
        // Most steps read on into the shadow, up to the live positions, while the live store
        // goes on.
        let Ok(live) = up.store.positions() else {
            return Some(self.fail("reading the live positions".into()));
        };
        let readable: Vec<(String, i32)> = replay
            .fetch
            .iter()
            .filter(|((t, p), from)| replay.until(&live, t, *p) > **from)
            .map(|(k, _)| k.clone())
            .collect();
        if !readable.is_empty() && env.rng.chance(75) {
            let key = env.rng.pick(&readable)?.clone();
            let from = replay.fetch[&key];
            let fetched = match env.kafka.read(&key.0, key.1, from, 1 + env.rng.below(MAX_FETCH)) {
                Ok(fetched) => fetched,
                Err(KafkaError::OutOfRange { .. }) => {
                    up.replay = None;
                    return Some(GONE.into());
                }
                Err(_) => return Some("replay waits for the cluster".into()),
            };
            let until = replay.until(&live, &key.0, key.1);
            let mut items = Vec::new();
            let mut next = from;
            for r in fetched.records.iter().filter(|r| r.offset < until) {
                next = r.offset + 1;
                let event = raw(&key.0, key.1, r);
                match up.pipeline.try_prepare(&event) {
                    Ok(Ready::Done(p)) => items.push((event, p)),
                    Ok(Ready::Transient(_)) => return Some("replay waits for the registry".into()),
                    Err(e) => return Some(self.fail(format!("preparing for the shadow: {e}"))),
                }
            }
            let count = items.len();
            let applied = replay
                .writer
                .foreign(items)
                .and_then(|_| replay.writer.write())
                .and_then(|()| replay.writer.flush());
            if let Err(e) = applied {
                return Some(self.fail(format!("the shadow writer failed: {e}")));
            }
            let next = if fetched.next <= until { fetched.next } else { next };
            replay.fetch.insert(key.clone(), next);
            return Some(format!("replay read {count} from {}/{} into the shadow", key.0, key.1));
        }
        // The live store must have reached the snapshots' cut before the two can be compared.
        if replay
            .start
            .iter()
            .any(|(t, p, o)| !replay.rebuilding.contains(t) && live.position(t, p) < o)
        {
            return Some("replay waits: the live store is behind the snapshots".into());
        }
        // The exclusive step: what is left up to the live positions of this moment, then the
        // comparison and the swap, with nothing committing in between.
        let mut rest = Vec::new();
        for ((topic, partition), from) in &replay.fetch {
            let fetched = match env.kafka.read(topic, *partition, *from, usize::MAX) {
                Ok(fetched) => fetched,
                Err(KafkaError::OutOfRange { .. }) => {
                    up.replay = None;
                    return Some(GONE.into());
                }
                Err(_) => return Some("replay waits for the cluster".into()),
            };
            for r in &fetched.records {
                let event = raw(topic, *partition, r);
                match up.pipeline.try_prepare(&event) {
                    Ok(Ready::Done(p)) => rest.push((event, p)),
                    Ok(Ready::Transient(_)) => return Some("replay waits for the registry".into()),
                    Err(e) => return Some(self.fail(format!("preparing for the shadow: {e}"))),
                }
            }
        }
        let Replaying {
            shadow,
            mut writer,
            topics,
            prefixes,
            dry_run,
            rebuilding,
            ends,
            start,
            ..
        } = up.replay.take()?;
        // Letters of a source being rebuilt are the rebuilt truth (the live store never took
        // those events in); only the others' would be a swap that loses what the live store had.
        let truth = rebuilding.clone();
        let report: Arc<std::sync::Mutex<Option<Result<ReplayReport, RuntimeError>>>> = Arc::default();
        let out = Arc::clone(&report);
        let job = Box::new(move |live: &Store, set: &mut seam::store::WriteSet| {
            let result = (|| {
                let positions = live.positions()?;
                let mut target = seam::offsets::OffsetMap::default();
                for (t, p, o) in positions.iter().filter(|(t, _, _)| topics.iter().any(|x| x == t)) {
                    target.set(t, p, o);
                }
                for ((t, p), end) in &ends {
                    target.set(t, *p, *end);
                }
                let catch_up: Vec<_> = rest
                    .into_iter()
                    .filter(|(e, _)| e.offset < target.position(&e.topic, e.partition))
                    .collect();
                writer.foreign(catch_up)?;
                writer.write()?;
                writer.flush()?;
                let plan = Swap {
                    prefixes: &prefixes,
                    topics: &topics,
                    rebuilding: &rebuilding,
                    dry_run,
                    accept_dead_letters: false,
                    subjects: None,
                };
                compare_and_swap(live, &shadow, set, &plan, &target)
            })();
            let failed = result.as_ref().err().cloned();
            if let Ok(mut slot) = out.lock() {
                *slot = Some(result);
            }
            failed.map_or(Ok(()), Err)
        });
        if let Err(e) = up.stepper.exclusive(job) {
            return Some(self.fail(format!("the writer failed on the replay's swap: {e}")));
        }
        let taken = report.lock().ok().and_then(|mut r| r.take());
        Some(match taken {
            Some(Ok(r)) => {
                let lost = r
                    .shadow_dead_letters
                    .iter()
                    .filter(|l| !truth.contains(&l.topic))
                    .count()
                    + (r.shadow_dead_letter_count as usize).saturating_sub(r.shadow_dead_letters.len());
                if r.swapped && lost > 0 {
                    self.failures.push(format!(
                        "{}: a replay swapped in a rebuild that dead-lettered {lost} event(s) the live store took in, without --accept-dead-letters",
                        self.spec.name
                    ));
                }
                let did = format!(
                    "replay {}: {} keys differ, {} letters resolved, {} only in the shadow{}",
                    if r.swapped {
                        "swapped"
                    } else if r.dry_run {
                        "dry run"
                    } else {
                        "swapped nothing"
                    },
                    r.differing_count,
                    r.resolved_dead_letters,
                    r.shadow_dead_letter_count,
                    r.refused
                        .as_deref()
                        .map(|why| format!(" (refused: {why})"))
                        .unwrap_or_default()
                );
                if let Some(up) = self.up.as_mut() {
                    for topic in &r.rebuilt {
                        up.consumer.stopped.remove(topic);
                        up.consumer.started = false;
                        for (t, p, o) in start.iter().filter(|(t, _, _)| t == topic) {
                            self.cuts.set(t, p, o);
                        }
                    }
                }
                self.last_replay = Some(r);
                did
            }
            Some(Err(e)) => self.fail(format!("the replay failed: {e}")),
            None => self.fail("the replay's swap did not run".into()),
        })
    }

    fn last_replay(&self) -> Option<&ReplayReport> {
        self.last_replay.as_ref()
    }

    fn deploy(&mut self, rng: &mut Rng) -> Option<Did> {
        let release = self.spec.upgrade.as_ref()?;
        if self.upgraded && !rng.chance(release.rollback) {
            return None;
        }
        let crashed = self.crash(rng);
        self.upgraded = !self.upgraded;
        if !self.upgraded {
            self.rolled_back = true;
        }
        Some(format!(
            "DEPLOY {} ({crashed})",
            if self.upgraded {
                "the next release"
            } else {
                "a rollback to the first release"
            }
        ))
    }

    fn upgraded(&self) -> bool {
        self.upgraded
    }

    fn caught_up(&self, kafka: &Kafka, topic: &str) -> bool {
        let Some(up) = &self.up else { return false };
        if !self.sources.iter().any(|t| t == topic) {
            return true;
        }
        let Ok(positions) = up.store.positions() else {
            return false;
        };
        let Ok(partitions) = kafka.partitions(topic) else {
            return false;
        };
        up.consumer.started
            && (0..partitions).all(|p| {
                kafka
                    .last_stable(topic, p)
                    .is_ok_and(|end| positions.position(topic, p) >= end || end == 0)
            })
    }

    fn mixed_history(&self) -> bool {
        self.rolled_back && !self.sources.is_empty()
    }

    fn request_redrive(&mut self) -> Did {
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        if up.redrive.is_none() {
            up.redrive = Some(Redrive::default());
            return "REDRIVE requested (seam dlq redrive)".into();
        }
        "a redrive is running".into()
    }

    fn redrive_step(&mut self) -> Option<Did> {
        let up = self.up.as_mut()?;
        let redrive = up.redrive.as_mut()?;
        if up.held.is_some() {
            return Some("redrive waits: the writer holds for a snapshot".into());
        }
        if let Some((answer, last)) = redrive.chunk.as_mut() {
            let last = *last;
            return Some(match answer.poll() {
                None => "redrive chunk waits for its flush".into(),
                Some(Some(Ok(outcome))) => {
                    redrive.redriven += outcome.summary.redriven;
                    redrive.failed += outcome.summary.failed;
                    redrive.blocked.extend(outcome.blocked);
                    redrive.chunk = None;
                    if last {
                        let done = format!(
                            "redrive done: {} redriven, {} failed again",
                            redrive.redriven, redrive.failed
                        );
                        up.redrive = None;
                        done
                    } else {
                        "redrive chunk applied".into()
                    }
                }
                Some(Some(Err(e))) => return Some(self.fail(format!("a redrive chunk failed: {e}"))),
                Some(None) => {
                    up.redrive = None;
                    "redrive lost its chunk".into()
                }
            });
        }
        let request = seam::dlq::RedriveRequest {
            subject: None,
            topic: None,
        };
        let pipeline = &up.pipeline;
        let page = seam::runtime::redrive::page(
            &up.store,
            &request,
            redrive.cursor.as_deref(),
            &redrive.blocked,
            |raw| match pipeline.try_prepare(raw)? {
                Ready::Done(prepared) => Ok(prepared),
                Ready::Transient(_) => Err(RuntimeError::Cancelled),
            },
        );
        let page = match page {
            Ok(page) => page,
            Err(RuntimeError::Cancelled) => return Some("redrive waits for the registry".into()),
            Err(e) => return Some(self.fail(format!("reading parked letters: {e}"))),
        };
        let count = page.items.len();
        redrive.cursor = page.cursor;
        match up.stepper.redrive(page.items) {
            Ok(answer) => {
                redrive.chunk = Some((answer, page.last));
                Some(format!("redrive prepared {count} letters"))
            }
            Err(e) => Some(self.fail(format!("the writer failed on a redrive chunk: {e}"))),
        }
    }

    fn parked(&self) -> Vec<(String, String)> {
        let Some(up) = &self.up else { return Vec::new() };
        up.store
            .parked(None)
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.letter.topic, p.letter.subject.unwrap_or_default()))
            .collect()
    }

    fn begin_snapshot(&mut self, dir: &std::path::Path) -> Did {
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        if up.held.is_some() {
            return "a snapshot is already held".into();
        }
        let spool = dir.join(format!("{}-{}.records", self.spec.name, self.incarnation));
        match up.stepper.snapshot(spool.clone()) {
            Ok(answer) => {
                up.held = Some(Held {
                    answer,
                    cut: None,
                    spool,
                });
                "SNAPSHOT exported; the writer holds".into()
            }
            Err(e) => self.fail(format!("the writer failed exporting a snapshot: {e}")),
        }
    }

    fn snapshot_step(&mut self, env: &mut Env<'_>) -> Option<Result<Snap, String>> {
        let topic = self.topic();
        let catalog = self.catalog();
        let up = self.up.as_mut()?;
        let held = up.held.as_mut()?;
        let seq = match held.cut {
            Some(seq) => seq,
            None => match held.answer.poll()? {
                Some(Ok((seq, _count))) => *held.cut.insert(seq),
                Some(Err(e)) => {
                    up.held = None;
                    return Some(Err(format!("the export failed: {e}")));
                }
                None => {
                    up.held = None;
                    return Some(Err("the writer dropped the export".into()));
                }
            },
        };
        let spool = held.spool.clone();
        // Not started: nothing is known to be out yet.
        let published = up.publisher.relay.next()? - 1;
        if published < seq {
            return None;
        }
        let mut ids = BTreeMap::new();
        let mut schemas = BTreeMap::new();
        for record in catalog.records() {
            match env.runtime.block_on(up.registry.register(&topic, record)) {
                Ok(id) => {
                    ids.insert(record.full_name.clone(), id);
                    schemas.insert(id, record.source.clone());
                }
                Err(_) => return None,
            }
        }
        // The high watermark of every partition, with the writer still held.
        let partitions = env.kafka.partitions(&topic).ok()?;
        let mut offsets = seam::offsets::OffsetMap::default();
        for partition in 0..partitions {
            let (_, high) = env.kafka.watermarks(&topic, partition).ok()?;
            offsets.set(&topic, partition, high);
        }
        up.held = None;
        let records = seam::snapshot::spool::RawReader::open(&spool)
            .and_then(|reader| {
                reader
                    .map(|r| r.map(|(subject, record, body)| (subject, ids.get(&record).copied().unwrap_or(0), body)))
                    .collect::<std::io::Result<Vec<_>>>()
            })
            .map_err(|e| format!("reading the spool: {e}"));
        let _ = std::fs::remove_file(&spool);
        Some(records.map(|records| Snap {
            topic,
            seq,
            offsets,
            journal: up.store.journal_id().clone(),
            schemas,
            records,
        }))
    }

    fn abandon_snapshot(&mut self) -> Did {
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        match up.held.take() {
            Some(held) => {
                let _ = std::fs::remove_file(held.spool);
                "snapshot given up (the publisher did not reach the cut in time); commits go on".into()
            }
            None => "no snapshot held".into(),
        }
    }

    fn bootstrap_step(&mut self, env: &mut Env<'_>) -> Option<Did> {
        self.boot_step(env).or_else(|| self.gap_step())
    }

    fn accept_gaps(&mut self, env: &mut Env<'_>) -> Option<Did> {
        let topic = self.up.as_ref()?.consumer.stopped.keys().next()?.clone();
        Some(self.accept_gap(env, &topic))
    }

    fn accepted(&self) -> Vec<String> {
        self.accepted.iter().cloned().collect()
    }

    fn register(&mut self, env: &mut Env<'_>, source: &str, snapshot: &[u8]) -> Did {
        self.register_snapshot(env, source, snapshot)
    }

    fn deliver(&mut self, env: &mut Env<'_>, snapshot: &[u8]) -> Did {
        self.deliver_snapshot(env, snapshot)
    }

    fn serve_with_bootstrap(&mut self, rng: &mut Rng, source: &str) -> Did {
        self.set_bootstrap(source);
        let crashed = self.crash(rng);
        format!(
            "operator restarts it with --bootstrap {source}={}: {crashed}",
            registering::snapshot_url(source)
        )
    }

    fn registration(&self, source: &str) -> Option<seam::runtime::Registration> {
        self.registration_of(source)
    }

    fn loaded(&self) -> Option<(u64, seam::offsets::OffsetMap)> {
        self.loaded.clone()
    }

    fn rebuilt_cut(&self, topic: &str, partition: i32) -> i64 {
        self.cuts.position(topic, partition)
    }

    fn to_rebuild(&self) -> Option<Vec<String>> {
        Node::to_rebuild(self).map(|(_, _, reads)| reads.into_iter().collect())
    }

    fn replay_from_snapshots(&mut self, env: &mut Env<'_>, snapshots: &BTreeMap<String, Vec<u8>>) -> Did {
        Node::replay_from_snapshots(self, env, snapshots)
    }

    fn zombie(&mut self, env: &mut Env<'_>) -> Option<Did> {
        let id = format!("seam-publisher-{}", self.spec.name);
        let zombie = self.zombie.as_mut()?;
        let mut log = Producing {
            kafka: &mut *env.kafka,
            id: &id,
            epoch: &mut zombie.publisher.epoch,
        };
        let limits = Limits {
            batch: MAX_BATCH,
            sends: 1,
        };
        let step = zombie.publisher.relay.step(Turn {
            log: &mut log,
            runtime: env.runtime.handle(),
            durable: zombie.durable,
            limits,
        });
        if step.is_err() || !zombie.publisher.relay.in_transaction() {
            self.zombie = None;
        }
        Some(match step {
            Ok(step) => format!("zombie publisher: {step:?}"),
            Err(e) => format!("zombie publisher stopped: {e}"),
        })
    }
}
