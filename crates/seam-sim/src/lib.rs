//! Deterministic simulation of a seam system, in the style of FoundationDB's and TigerBeetle's
//! simulators: the runtime's real code, driven by a seeded scheduler, on simulated IO.
//!
//! What runs is the runtime's own: the writer (`seam::runtime::Stepper` steps the same
//! `Writer::handle` and the flusher's `settle`), the store and its apply path, decoding and
//! translating (`Pipeline::try_prepare`), the publisher (`seam::runtime::relay::Relay`, on the
//! simulated log through [`producer`]), getEvents' page, the retention verdict and the
//! recreated-topic check, the registry client, and the registration's decisions and bootstrap
//! (`seam::runtime::register::admit`, `spool::resume`, `bootstrap::Load`) on a real spool
//! folder. What is simulated are
//! the edges: a store engine that loses unflushed writes on a crash ([`engine`]), a Kafka log
//! with transactions, fencing, read_committed and retention ([`kafka`]), a registry
//! ([`registry`]), and time (a virtual clock). The services are the five Student Affairs
//! services and the warehouse fixture with their real translators ([`world`]).
//!
//! A schedule ([`schedule::run`]) sends commands, steps every part in a seeded order, injects
//! faults, then settles and checks the oracles ([`oracle`]). The same seed replays the same
//! schedule with the same build of the simulator and the runtime (whatever ran before it in
//! the process); `seam-sim --seed N --trace` prints it step by step.
//!
//! Why not madsim or turmoil: madsim's simulated rdkafka has no transactions, fencing,
//! read_committed, retention or explicit partitions, and madsim (like turmoil, which simulates
//! TCP for tokio) only controls tokio tasks, while the writer, flusher, publisher and consumer
//! are threads. The runtime's parts are stepped here instead, each from its own state machine.

pub mod engine;
pub mod kafka;
pub mod node;
pub mod oracle;
pub mod producer;
pub mod registry;
pub mod remedy;
pub mod rng;
pub mod schedule;
pub mod world;

pub use schedule::{run, Fault, Options, Outcome};

/// Keeps the warehouse fixture's deliberate panics (a translator or `apply` bug the runtime
/// catches and dead-letters; their messages end "(a test bug)") out of the output; every other
/// panic is reported as before.
pub fn quiet_deliberate_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if !message.ends_with("(a test bug)") {
            report(info);
        }
    }));
}

/// What a run of many schedules found.
#[derive(Debug, Default)]
pub struct Summary {
    /// Schedules run.
    pub schedules: u64,
    /// Steps run.
    pub steps: u64,
    /// Faults injected, by name.
    pub faults: std::collections::BTreeMap<&'static str, usize>,
    /// Commands sent.
    pub commands: u64,
    /// Commands acknowledged as applied.
    pub acknowledged: u64,
    /// The schedules that failed.
    pub failed: Vec<Outcome>,
    /// Checks skipped (and why), counted.
    pub skipped: u64,
}

impl Summary {
    /// Adds one schedule's outcome.
    pub fn add(&mut self, outcome: Outcome) {
        self.schedules += 1;
        self.steps += outcome.steps as u64;
        self.commands += outcome.commands;
        self.acknowledged += outcome.acknowledged;
        self.skipped += outcome.skipped.len() as u64;
        for (name, n) in &outcome.faults {
            *self.faults.entry(name).or_default() += n;
        }
        if !outcome.violations.is_empty() {
            self.failed.push(outcome);
        }
    }

    /// Faults injected in all.
    pub fn fault_count(&self) -> usize {
        self.faults.values().sum()
    }

    /// The closing line: "N schedules, M faults injected, K violations".
    pub fn line(&self) -> String {
        let violations: usize = self.failed.iter().map(|o| o.violations.len()).sum();
        format!(
            "{} schedules, {} faults injected, {} violations ({} steps, {} commands of which {} applied, {} checks skipped behind retention gaps or dead letters)",
            self.schedules,
            self.fault_count(),
            violations,
            self.steps,
            self.commands,
            self.acknowledged,
            self.skipped
        )
    }
}

/// Runs the schedules of seeds `from..from + count`, spread over the machine's cores (each
/// schedule is single-threaded and independent; which thread runs it changes nothing).
pub fn run_many(from: u64, count: u64, options: &Options) -> Summary {
    let threads = std::thread::available_parallelism().map_or(1, usize::from).max(1) as u64;
    let mut outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (from..from + count)
                        .filter(|seed| seed % threads == t)
                        .map(|seed| run(seed, options))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    outcomes.sort_by_key(|o| o.seed);
    let mut summary = Summary::default();
    for outcome in outcomes {
        summary.add(outcome);
    }
    summary
}

/// The shortest schedule of `seed` that still fails: fewer steps (bisected), then fewer kinds
/// of fault. Returns the options that reproduce it.
pub fn shrink(seed: u64, options: &Options) -> Options {
    let fails = |o: &Options| !run(seed, o).violations.is_empty();
    let mut best = options.clone();
    let (mut low, mut high) = (0usize, best.steps);
    while low < high {
        let mid = (low + high) / 2;
        let candidate = Options {
            steps: mid,
            ..best.clone()
        };
        if fails(&candidate) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    best.steps = high;
    for fault in options.faults.clone() {
        let candidate = Options {
            faults: best.faults.iter().copied().filter(|f| *f != fault).collect(),
            ..best.clone()
        };
        if fails(&candidate) {
            best = candidate;
        }
    }
    best
}

/// The command that replays a schedule.
pub fn replay_command(seed: u64, options: &Options) -> String {
    let faults: Vec<&str> = options.faults.iter().map(|f| f.name()).collect();
    format!(
        "cargo run -p seam-sim --release -- --seed {seed} --steps {} --faults {} --trace",
        options.steps,
        if faults.is_empty() {
            "none".to_string()
        } else {
            faults.join(",")
        }
    )
}
