//! One schedule: a seed decides, step by step, which node does what and which fault strikes;
//! then faults stop, every node restarts and runs until nothing is left to do, and the oracles
//! judge the end state. Nothing here sleeps or spawns: the same seed replays the same schedule.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::kafka::Kafka;
use crate::node::{Env, Process};
use crate::oracle;
use crate::registry::SimRegistry;
use crate::rng::Rng;
use crate::world::{self, Workload};

/// The faults a schedule may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Kill a node: unflushed writes beyond a random prefix are lost; its publisher may linger
    /// as a zombie.
    Crash,
    /// The consumer re-fetches records it already handed to the writer.
    Redelivery,
    /// The group rebalances: the consumer seeks to its stored positions again.
    Rebalance,
    /// Retention deletes a prefix of a partition's log.
    Retention,
    /// No broker answers for a while.
    ClusterDown,
    /// The registry is unavailable for a while.
    RegistryDown,
    /// The registry answers every other call after the client's timeout, registrations
    /// included (taken, but reported as failed).
    RegistrySlow,
    /// A rogue producer writes undecodable records.
    Poison,
    /// An event of a source topic is posted with putEvents while the consumer reads it too.
    PutRace,
    /// A relay pulls the newest entries of a source with getEvents and posts them to a
    /// consumer with putEvents, while the consumer reads the topic too.
    Relay,
    /// A service is deployed in its other release (a killed process restarts on it): the
    /// orders service upgrades its schema and rolls back, fulfilment gets its translator fix
    /// and the operator redrives what was parked.
    Deploy,
    /// The operator replays a consumer's replicas while traffic goes on (a dry run now and
    /// then): a shadow store rebuilt from offset 0, compared and swapped in one exclusive step.
    Replay,
    /// The operator runs `seam register` again while the registration's bootstrap runs.
    RegisterAgain,
    /// A topic grows by a partition, as `seam deploy` allows while every consumer of it is
    /// caught up (its warning); the publisher hashes with the new count once it restarts, and
    /// consumers are assigned the new partition at their next rebalance.
    PartitionGrowth,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 14] = [
        Fault::Crash,
        Fault::Redelivery,
        Fault::Rebalance,
        Fault::Retention,
        Fault::ClusterDown,
        Fault::RegistryDown,
        Fault::RegistrySlow,
        Fault::Poison,
        Fault::PutRace,
        Fault::Relay,
        Fault::Deploy,
        Fault::Replay,
        Fault::RegisterAgain,
        Fault::PartitionGrowth,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::Redelivery => "redelivery",
            Fault::Rebalance => "rebalance",
            Fault::Retention => "retention",
            Fault::ClusterDown => "cluster-down",
            Fault::RegistryDown => "registry-down",
            Fault::RegistrySlow => "registry-slow",
            Fault::Poison => "poison",
            Fault::PutRace => "put-race",
            Fault::Relay => "relay",
            Fault::Deploy => "deploy",
            Fault::Replay => "replay",
            Fault::RegisterAgain => "register-again",
            Fault::PartitionGrowth => "partition-growth",
        }
    }

    /// The fault called `name`.
    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Per mille of steps it strikes on, when enabled.
    fn rate(self) -> usize {
        match self {
            Fault::Crash => 12,
            Fault::Redelivery => 15,
            Fault::Rebalance => 10,
            Fault::Retention => 3,
            Fault::ClusterDown => 5,
            Fault::RegistryDown => 5,
            Fault::RegistrySlow => 4,
            Fault::Poison => 6,
            Fault::PutRace => 15,
            Fault::Relay => 10,
            Fault::Deploy => 4,
            Fault::Replay => 3,
            Fault::RegisterAgain => 3,
            Fault::PartitionGrowth => 2,
        }
    }
}

/// How a schedule runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Steps with faults before the schedule settles.
    pub steps: usize,
    /// The faults it may inject.
    pub faults: Vec<Fault>,
    /// Keep a line per step.
    pub trace: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            steps: 600,
            faults: Fault::ALL.to_vec(),
            trace: false,
        }
    }
}

/// What a schedule did and what the oracles found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Steps run, settling included.
    pub steps: usize,
    /// Faults injected, by name.
    pub faults: BTreeMap<&'static str, usize>,
    /// Commands sent.
    pub commands: u64,
    /// Commands acknowledged as applied.
    pub acknowledged: u64,
    /// What the oracles found wrong; empty when the schedule passed.
    pub violations: Vec<String>,
    /// Checks the oracles could not make and why (a flow behind a retention gap).
    pub skipped: Vec<String>,
    /// One line per step, when asked for.
    pub trace: Vec<String>,
}

/// `seam register scholarship-office --source students-office`, run once per schedule while
/// traffic and faults go on, one of two ways: the source exports a snapshot (its writer held
/// until the offsets are read) and the operator posts it to the consumer, or the operator
/// restarts the consumer with `--bootstrap students-office=URL` and its start downloads one.
/// The consumer then loads it in chunks and reads on from its offset map.
#[derive(Debug)]
pub(crate) enum Registration {
    /// Not started; the operator registers at this step.
    Waiting(usize),
    /// The source exports a snapshot (`GET /snapshot`); steps spent holding. What it gives
    /// answers the consumer's waiting start, or else is posted to the consumer.
    Exporting(usize),
    /// The consumer has the snapshot (or its start will ask for one) and bootstraps.
    Loading,
    /// The consumer reads the source, from this offset map on.
    Done(seam::offsets::OffsetMap),
    /// Refused, for this reason.
    Refused(String),
}

/// Steps a snapshot may hold its writer before it is given up (`GET /snapshot`'s deadline).
pub(crate) const SNAPSHOT_DEADLINE: usize = 400;
/// The registering consumer and its source.
pub(crate) const REGISTER: (&str, &str) = ("scholarship-office", "students-office");

/// The simulated system and its schedule.
pub struct Sim {
    pub(crate) nodes: Vec<Box<dyn Process>>,
    pub(crate) kafka: Kafka,
    pub(crate) registry: Arc<SimRegistry>,
    pub(crate) rng: Rng,
    pub(crate) runtime: tokio::runtime::Runtime,
    /// Undecodable records the rogue producer wrote: `(topic, partition, offset)`.
    pub(crate) rogue: Vec<(String, i32, i64)>,
    workload: Workload,
    /// Every command sent, by id: what the oracles check acknowledged commands against.
    pub(crate) sent: BTreeMap<u64, (&'static str, serde_json::Value)>,
    pub(crate) registration: Registration,
    /// The operator's remedy for a consumer that lost events to retention, while it runs.
    pub(crate) remedy: Option<crate::remedy::Remedy>,
    pub(crate) snapshots: std::path::PathBuf,
    command_ids: u64,
    pub(crate) outcome: Outcome,
    trace: bool,
    step: usize,
}

/// Steps a record is kept at least before retention may delete it: retention deletes old
/// segments, not what was just written.
const RETENTION_AGE: u64 = 300;
/// Times the operator re-runs a redrive while settling, at most.
const MAX_REDRIVES: usize = 20;
/// Virtual milliseconds per step.
const TICK_MS: i64 = 7;
/// Steps the settling phase may take before the schedule counts as stuck.
const SETTLE_LIMIT: usize = 50_000;

impl Sim {
    fn new(seed: u64, trace: bool) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| format!("building the registry client's runtime: {e}"))?;
        // One directory per schedule run, even when the same seed runs twice at once in one
        // process (the test runs regression seeds next to the 1,000): a shared directory let
        // one run delete the other's snapshot spool.
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshots = std::env::temp_dir().join(format!("seam-sim-{}-{seed}-{run}", std::process::id()));
        std::fs::create_dir_all(&snapshots).map_err(|e| format!("creating {}: {e}", snapshots.display()))?;
        let mut kafka = Kafka::default();
        for (topic, partitions) in world::topics() {
            kafka.create_topic(&topic, partitions);
        }
        let mut rng = Rng::new(seed);
        let registration = Registration::Waiting(rng.below(400));
        Ok(Self {
            registration,
            remedy: None,
            snapshots,
            nodes: world::nodes(),
            kafka,
            registry: Arc::new(SimRegistry::default()),
            rng,
            runtime,
            rogue: Vec::new(),
            workload: Workload::default(),
            sent: BTreeMap::new(),
            command_ids: 0,
            outcome: Outcome {
                seed,
                ..Outcome::default()
            },
            trace,
            step: 0,
        })
    }

    pub(crate) fn log(&mut self, who: &str, did: String) {
        if self.trace {
            self.outcome.trace.push(format!("{:>6} {who:<18} {did}", self.step));
        }
    }

    fn tick(&mut self) {
        self.step += 1;
        self.kafka.now = self.step as u64;
        seam::envelope::set_virtual_clock(Some(1_800_000_000_000 + self.step as i64 * TICK_MS));
    }

    /// Runs `what` on node `i` with the world around it.
    pub(crate) fn on_node<T>(&mut self, i: usize, what: impl FnOnce(&mut dyn Process, &mut Env<'_>) -> T) -> T {
        let mut env = Env {
            kafka: &mut self.kafka,
            registry: &self.registry,
            rng: &mut self.rng,
            runtime: &self.runtime,
            dir: &self.snapshots,
        };
        what(self.nodes[i].as_mut(), &mut env)
    }

    fn env_step(&mut self, i: usize, what: impl FnOnce(&mut dyn Process, &mut Env<'_>) -> String) {
        let did = self.on_node(i, what);
        let who = self.nodes[i].name().to_string();
        self.log(&who, did);
    }

    /// Whether node `i` runs its fixed release and still has letters a redrive can apply
    /// (undecodable records never can).
    fn redrivable(&self, i: usize) -> bool {
        self.nodes[i].upgraded()
            && self.nodes[i].sources().iter().any(|_| true)
            && self.nodes[i]
                .parked()
                .iter()
                .any(|(_, subject)| !subject.starts_with("rogue/"))
    }

    /// The operator settles a consumer whose fix is deployed: `seam dlq redrive`, or first a
    /// `seam replay` that rebuilds the replica with the fix (and resolves the letters it applied).
    fn operator(&mut self) {
        self.begin_remedy();
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_up() && self.redrivable(i) {
                if self.rng.chance(40) {
                    self.env_step(i, |n, env| n.request_replay(env, false));
                } else {
                    let did = self.nodes[i].request_redrive();
                    let who = self.nodes[i].name().to_string();
                    self.log(&who, did);
                }
            }
        }
    }

    /// One ordinary step of node `i`: the work a running process does on its own.
    fn work(&mut self, i: usize) {
        if self.rng.chance(40) {
            let did = self.on_node(i, |n, env| n.bootstrap_step(env));
            if let Some(did) = did {
                let who = self.nodes[i].name().to_string();
                self.log(&who, did);
                return;
            }
        }
        if self.rng.chance(30) {
            let did = self.on_node(i, |n, env| n.replay_step(env));
            if let Some(did) = did {
                let who = self.nodes[i].name().to_string();
                self.log(&who, did);
                return;
            }
        }
        if self.rng.chance(30) {
            if let Some(did) = self.nodes[i].redrive_step() {
                let who = self.nodes[i].name().to_string();
                self.log(&who, did);
                return;
            }
        }
        match self.rng.below(5) {
            0 => self.env_step(i, |n, _| n.write()),
            1 => self.env_step(i, |n, _| n.flush()),
            2 => self.env_step(i, |n, env| n.publish(env)),
            _ => self.env_step(i, |n, env| n.consume(env)),
        }
    }

    fn fault(&mut self, fault: Fault) {
        *self.outcome.faults.entry(fault.name()).or_default() += 1;
        let i = self.rng.below(self.nodes.len());
        match fault {
            Fault::PartitionGrowth => {
                let topic = seam::translator::events_topic(self.nodes[i].name());
                let caught_up = self.nodes.iter().all(|n| n.caught_up(&self.kafka, &topic));
                if caught_up && !self.kafka.down {
                    self.kafka.grow(&topic, 1);
                    for j in 0..self.nodes.len() {
                        if self.nodes[j].sources().contains(&topic) {
                            self.env_step(j, |n, env| n.rebalance(env, false));
                        }
                    }
                    self.log(
                        "kafka",
                        format!("PARTITIONS {topic} grows by one; its consumers rebalance"),
                    );
                } else {
                    self.log(
                        "operator",
                        format!("{topic} not grown: a consumer is behind (the deploy warning)"),
                    );
                }
            }
            Fault::RegisterAgain => self.register_again(),
            Fault::Replay => {
                let dry_run = self.rng.chance(30);
                self.env_step(i, |n, env| n.request_replay(env, dry_run));
            }
            Fault::Deploy => {
                let did = self.nodes[i]
                    .deploy(&mut self.rng)
                    .unwrap_or_else(|| "no other release to deploy".into());
                let who = self.nodes[i].name().to_string();
                self.log(&who, did);
            }
            Fault::Crash => {
                // Half the crashes strike a process in the middle of an operator path.
                let busy: Vec<usize> = (0..self.nodes.len())
                    .filter(|&j| self.nodes[j].mid_operation())
                    .collect();
                let i = match self.rng.pick(&busy) {
                    Some(&j) if self.rng.chance(50) => j,
                    _ => i,
                };
                let did = self.nodes[i].crash(&mut self.rng);
                let who = self.nodes[i].name().to_string();
                self.log(&who, did);
            }
            Fault::Redelivery => self.env_step(i, |n, env| n.rebalance(env, true)),
            Fault::Rebalance => self.env_step(i, |n, env| n.rebalance(env, false)),
            Fault::PutRace => self.env_step(i, |n, env| n.put(env)),
            Fault::Relay => {
                let flows = world::flows();
                let Some(&(source, consumer)) = self.rng.pick(&flows) else {
                    return;
                };
                let (Some(s), Some(c)) = (self.index(source), self.index(consumer)) else {
                    return;
                };
                match self.on_node(s, |n, env| n.events_page(env)) {
                    Ok(events) => {
                        let did = self.nodes[c].put_events(events);
                        self.log(consumer, did);
                    }
                    Err(e) => self.log(source, format!("getEvents failed: {e}")),
                }
            }
            Fault::Retention => {
                // Half the time a consumer has been down longer than a source topic's retention:
                // what it needs next is deleted, however young (a rebuild is the way out).
                let down: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|n| !n.is_up())
                    .flat_map(|n| n.sources())
                    .collect();
                if let Some(topic) = self.rng.pick(&down).cloned().filter(|_| self.rng.chance(50)) {
                    let partitions = self.kafka.partitions(&topic).unwrap_or(0);
                    let partition = self.rng.below(partitions.max(1) as usize) as i32;
                    if let Ok((low, high)) = self.kafka.watermarks(&topic, partition) {
                        // The active segment stays: retention never empties a partition.
                        let to = (high - 1).max(low);
                        self.kafka.truncate(&topic, partition, to, self.step as u64);
                        self.log(
                            "kafka",
                            format!("RETENTION {topic}/{partition} deleted below {to} while a consumer was down"),
                        );
                    }
                    return;
                }
                let topics = self.kafka.topics();
                if let Some((topic, partitions)) = self.rng.pick(&topics).cloned() {
                    let partition = self.rng.below(partitions as usize) as i32;
                    if let Ok((low, high)) = self.kafka.watermarks(&topic, partition) {
                        // The active segment stays: retention never empties a partition.
                        let to = low + self.rng.below(usize::try_from(high - low).unwrap_or(0)) as i64;
                        let older_than = (self.step as u64).saturating_sub(RETENTION_AGE);
                        self.kafka.truncate(&topic, partition, to, older_than);
                        self.log("kafka", format!("RETENTION {topic}/{partition} deleted below {to}"));
                    }
                }
            }
            Fault::ClusterDown => {
                self.kafka.down = true;
                self.log("kafka", "CLUSTER DOWN".into());
            }
            Fault::RegistryDown => {
                self.registry.set_down(true);
                self.log("registry", "REGISTRY DOWN".into());
            }
            Fault::RegistrySlow => {
                self.registry.set_slow(true);
                self.log("registry", "REGISTRY SLOW".into());
            }
            Fault::Poison => {
                let sources: Vec<String> = world::flows()
                    .iter()
                    .map(|(s, _)| seam::translator::events_topic(s))
                    .collect();
                let Some(topic) = self.rng.pick(&sources).cloned() else {
                    return;
                };
                let Ok(partitions) = self.kafka.partitions(&topic) else {
                    return;
                };
                let partition = self.rng.below(partitions as usize) as i32;
                let n = self.rogue.len();
                // A line every consumer of orders reads, if registered yet.
                let line = seam::codec::RegistryBackend::versions(
                    self.registry.as_ref(),
                    "orders.events-warehouse.orders.LineAdded",
                )
                .ok()
                .and_then(|v| v.first().map(|(id, _)| *id))
                .filter(|_| topic == "orders.events");
                let value = match (self.rng.below(3), line) {
                    // A schema every consumer reads, with a body cut short.
                    (2, Some(id)) => seam::codec::wire::frame(id, b"\x02"),
                    // Framed with a schema id no registry knows.
                    (1, _) => seam::codec::wire::frame(9_000 + n as u32, b"\x02x"),
                    // Not Confluent framing at all.
                    _ => b"{\"not\": \"avro\"}".to_vec(),
                };
                let key = Some(format!("rogue/{n}").into_bytes());
                let message = crate::kafka::Message {
                    key,
                    value: Some(value),
                    headers: Vec::new(),
                };
                if let Ok(offset) = self.kafka.append(&topic, partition, message) {
                    self.rogue.push((topic.clone(), partition, offset));
                    self.log("rogue", format!("POISON {topic}/{partition}@{offset}"));
                }
            }
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name() == name)
    }

    /// Starts the source's `GET /snapshot`.
    fn export(&mut self, source: usize) {
        let did = self.nodes[source].begin_snapshot(&self.snapshots);
        self.registration = Registration::Exporting(0);
        self.log(REGISTER.1, did);
    }

    /// Advances the registration by one step.
    fn register_step(&mut self) {
        let (Some(consumer), Some(source)) = (self.index(REGISTER.0), self.index(REGISTER.1)) else {
            return;
        };
        if self.remedy.as_ref().is_some_and(|r| r.exports_from(source)) {
            return;
        }
        // A start of the consumer that waits for its --bootstrap URL asks the source.
        if self.nodes[consumer].starting()
            && self.nodes[source].is_up()
            && !matches!(self.registration, Registration::Exporting(_))
        {
            self.export(source);
            return;
        }
        match &mut self.registration {
            Registration::Waiting(at) => {
                if self.step >= *at && self.nodes[source].is_up() && self.nodes[consumer].is_up() {
                    if self.rng.chance(50) {
                        self.export(source);
                    } else {
                        let did = self.nodes[consumer].serve_with_bootstrap(&mut self.rng, REGISTER.1);
                        self.registration = Registration::Loading;
                        self.log(REGISTER.0, did);
                    }
                }
            }
            Registration::Exporting(held) => {
                *held += 1;
                if !self.nodes[source].is_up() {
                    // The export died with its process; the operator runs register again.
                    self.registration = Registration::Waiting(self.step + 20);
                    self.log(
                        "register",
                        "the snapshot died with the source; registering again".into(),
                    );
                    return;
                }
                if *held > SNAPSHOT_DEADLINE {
                    let did = self.nodes[source].abandon_snapshot();
                    self.registration = Registration::Waiting(self.step + 20);
                    self.log(REGISTER.1, did);
                    return;
                }
                let got = self.on_node(source, |n, env| n.snapshot_step(env));
                match got {
                    None => {}
                    Some(Ok(snap)) => {
                        self.log(
                            REGISTER.1,
                            format!(
                                "snapshot at seq {} with {} records, offsets read; writer released",
                                snap.seq,
                                snap.records.len()
                            ),
                        );
                        let bytes = match snapshot_file(&snap) {
                            Ok(bytes) => bytes,
                            Err(e) => {
                                self.outcome.violations.push(e);
                                self.registration = Registration::Refused("no snapshot file".into());
                                return;
                            }
                        };
                        let did = if self.nodes[consumer].starting() {
                            self.on_node(consumer, |n, env| n.deliver(env, &bytes))
                        } else if self.nodes[consumer].is_up() {
                            self.on_node(consumer, |n, env| n.register(env, REGISTER.1, &bytes))
                        } else {
                            self.registration = Registration::Waiting(self.step + 20);
                            self.log("register", "the consumer is down; registering again".into());
                            return;
                        };
                        self.registration = Registration::Loading;
                        self.log(REGISTER.0, did);
                    }
                    Some(Err(e)) => {
                        self.log(REGISTER.1, format!("snapshot failed: {e}"));
                        self.registration = Registration::Waiting(self.step + 20);
                    }
                }
            }
            Registration::Loading => match self.nodes[consumer].registration(REGISTER.1) {
                None | Some(seam::runtime::Registration::Bootstrapping { .. }) => {}
                Some(seam::runtime::Registration::Reading { .. }) => {
                    let map = self.nodes[consumer].loaded().map(|(_, m)| m).unwrap_or_default();
                    self.log(
                        REGISTER.0,
                        "registered: reads the source from the snapshot's offsets".into(),
                    );
                    self.registration = Registration::Done(map);
                }
                Some(seam::runtime::Registration::Failed { error }) => {
                    self.log(REGISTER.0, format!("registration refused: {error}"));
                    self.registration = Registration::Refused(error);
                }
                Some(other) => {
                    self.log(
                        "register",
                        format!("the registration stands {other:?} (lost with a process); registering again"),
                    );
                    self.registration = Registration::Waiting(self.step + 20);
                }
            },
            Registration::Done(_) | Registration::Refused(_) => {}
        }
    }

    /// The operator runs `seam register` again while the consumer bootstraps (a retry after a
    /// timeout, a second operator): the source exports a newer snapshot and posts it too.
    fn register_again(&mut self) {
        let (Some(consumer), Some(source)) = (self.index(REGISTER.0), self.index(REGISTER.1)) else {
            return;
        };
        let booting = matches!(
            self.nodes[consumer].registration(REGISTER.1),
            Some(seam::runtime::Registration::Bootstrapping { .. })
        );
        if matches!(self.registration, Registration::Loading) && booting && self.nodes[source].is_up() {
            self.log("operator", "runs seam register again during the bootstrap".into());
            self.export(source);
        } else {
            self.log("operator", "nothing to register again".into());
        }
    }

    fn registering(&self) -> bool {
        matches!(
            self.registration,
            Registration::Waiting(_) | Registration::Exporting(_) | Registration::Loading
        )
    }

    /// A step with faults enabled.
    fn step_with_faults(&mut self, faults: &[Fault]) {
        self.tick();
        // Outages pass.
        if self.kafka.down && self.rng.chance(15) {
            self.kafka.down = false;
            self.log("kafka", "cluster back".into());
        }
        if self.registry.is_down() && self.rng.chance(15) {
            self.registry.set_down(false);
            self.log("registry", "registry back".into());
        }
        if self.registry.is_slow() && self.rng.chance(10) {
            self.registry.set_slow(false);
            self.log("registry", "registry answers in time again".into());
        }
        if self.rng.chance(20) {
            self.register_step();
            return;
        }
        if self.remedy.is_some() && self.rng.chance(20) {
            self.remedy_step();
            return;
        }
        if self.rng.chance(1) {
            self.operator();
            return;
        }
        let roll = self.rng.below(1000);
        let mut acc = 0;
        for fault in faults {
            acc += fault.rate();
            if roll < acc {
                self.fault(*fault);
                return;
            }
        }
        let i = self.rng.below(self.nodes.len());
        if !self.nodes[i].is_up() {
            if self.rng.chance(30) {
                self.env_step(i, |n, env| n.restart(env));
            }
            return;
        }
        if let Some(did) = self.on_node(i, |n, env| if env.rng.chance(5) { n.zombie(env) } else { None }) {
            let who = self.nodes[i].name().to_string();
            self.log(&who, did);
            return;
        }
        if self.rng.chance(35) {
            let (service, command) = self.workload.next(&mut self.rng);
            if let Some(j) = self.nodes.iter().position(|n| n.name() == service) {
                self.command_ids += 1;
                self.outcome.commands += 1;
                let id = self.command_ids;
                let did = self.nodes[j].command(&command, id);
                self.sent.insert(id, (service, command));
                self.log(service, did);
            }
            return;
        }
        self.work(i);
    }

    /// Ends every fault and runs the nodes until none has work left.
    fn settle(&mut self) -> Result<(), String> {
        self.kafka.down = false;
        self.registry.set_down(false);
        self.registry.set_slow(false);
        for i in 0..self.nodes.len() {
            if !self.nodes[i].is_up() {
                self.tick();
                self.env_step(i, |n, env| n.restart(env));
            }
        }
        let mut idle_rounds = 0;
        let mut redrives = 0;
        let mut remedies = 0;
        for _ in 0..SETTLE_LIMIT {
            for i in 0..self.nodes.len() {
                if self.nodes[i].is_up() || self.nodes[i].starting() {
                    continue;
                }
                if !self.nodes[i].failures().is_empty() {
                    return Err("a node stopped while settling".into());
                }
                // Stopped by the operator (a start refused its --bootstrap): started again.
                self.tick();
                self.env_step(i, |n, env| n.restart(env));
            }
            if self.registering() {
                self.tick();
                if let Registration::Waiting(at) = &mut self.registration {
                    *at = 0;
                }
                self.register_step();
            }
            if self.remedy.is_some() {
                self.tick();
                self.remedy_step();
            }
            let quiet = !self.registering() && self.remedy.is_none() && self.nodes.iter().all(|n| !n.busy(&self.kafka));
            if quiet && remedies < MAX_REDRIVES && self.begin_remedy() {
                remedies += 1;
                idle_rounds = 0;
                continue;
            }
            if quiet {
                if (0..self.nodes.len()).any(|i| self.redrivable(i)) && redrives < MAX_REDRIVES {
                    redrives += 1;
                    self.operator();
                    idle_rounds = 0;
                    continue;
                }
                idle_rounds += 1;
                if idle_rounds > 2 {
                    return Ok(());
                }
            } else {
                idle_rounds = 0;
            }
            for i in 0..self.nodes.len() {
                self.tick();
                // Lingering zombies finish (and are fenced) too.
                let did = self.on_node(i, |n, env| n.zombie(env));
                if let Some(did) = did {
                    let who = self.nodes[i].name().to_string();
                    self.log(&who, did);
                }
                self.work(i);
            }
        }
        Err(format!("the system did not settle within {SETTLE_LIMIT} rounds"))
    }
}

/// Runs the schedule of `seed` and checks it. A panic that escapes the runtime (nothing
/// caught it) is a violation of its own, with the schedule's seed.
pub fn run(seed: u64, options: &Options) -> Outcome {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_checked(seed, options))) {
        Ok(outcome) => outcome,
        Err(panic) => {
            seam::envelope::set_virtual_clock(None);
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Outcome {
                seed,
                violations: vec![format!("the runtime panicked and nothing caught it: {message}")],
                ..Outcome::default()
            }
        }
    }
}

fn run_checked(seed: u64, options: &Options) -> Outcome {
    let mut sim = match Sim::new(seed, options.trace) {
        Ok(sim) => sim,
        Err(e) => {
            return Outcome {
                seed,
                violations: vec![e],
                ..Outcome::default()
            }
        }
    };
    for i in 0..sim.nodes.len() {
        sim.tick();
        sim.env_step(i, |n, env| n.restart(env));
    }
    for _ in 0..options.steps {
        sim.step_with_faults(&options.faults);
    }
    let settled = sim.settle();
    let mut outcome = std::mem::take(&mut sim.outcome);
    outcome.steps = sim.step;
    if let Err(e) = settled {
        outcome.violations.push(e);
    }
    outcome.acknowledged = sim.nodes.iter().map(|n| n.acknowledged().len() as u64).sum();
    oracle::check(&mut sim, &mut outcome);
    let _ = std::fs::remove_dir_all(&sim.snapshots);
    seam::envelope::set_virtual_clock(None);
    outcome
}

/// The snapshot file `GET /snapshot` serves for `snap`.
pub(crate) fn snapshot_file(snap: &crate::node::Snap) -> Result<Vec<u8>, String> {
    use seam::snapshot::file::SnapshotRecord;
    let meta = seam::snapshot::SnapshotMeta {
        service: snap.topic.trim_end_matches(".events").to_string(),
        seq: snap.seq,
        offsets: snap.offsets.clone(),
        created: "simulated".into(),
        schemas: snap.schemas.clone(),
        records: snap.records.len() as u64,
        journal: Some(snap.journal.clone()),
    };
    let records: Vec<SnapshotRecord> = snap
        .records
        .iter()
        .map(|(subject, schema_id, body)| SnapshotRecord {
            subject: subject.clone(),
            schema_id: *schema_id,
            body: body.clone(),
        })
        .collect();
    seam::snapshot::file::write(Vec::new(), &meta, &records).map_err(|e| format!("writing the snapshot file: {e}"))
}
