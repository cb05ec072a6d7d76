//! `student-affairs demo`: the README's first command. It brings up the whole example and
//! proves seed 000's promise on real parts:
//! 1. uses the configured cluster, or starts the local stack when there is none;
//! 2. creates the topics and registers the schemas the topology names;
//! 3. starts the four services as separate processes;
//! 4. drives the scenario over their HTTP APIs (students, examinations, enrollments,
//!    assignments, grades from both groups, hires, and a double hire the TA pool prevents);
//! 5. waits until every consumer has caught up and prints the sync report: per service its
//!    counts and lag, per flow the digest of the shared data on both sides.

mod chaos;
mod processes;
mod report;
mod scenario;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use seam::topology::Topology;
use seam_local::cluster::{ClusterError, Endpoints};
use seam_ops::deploy::Registry;

pub use report::{FlowReport, Report, ServiceReport};
pub use scenario::Stats;

/// Options of `demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Students to register (at least 1; the scenario needs some to grade and hire).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub students: u32,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Leave the services running and print their URLs.
    #[arg(long)]
    pub keep_running: bool,
    /// The topology file (default: deploy/student-affairs.yaml).
    #[arg(long, short = 't')]
    pub topology: Option<PathBuf>,
    /// Seconds to wait for every flow to be in sync.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Where the services keep their stores (default: `$SEAM_HOME/student-affairs`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Kill services with SIGKILL at random moments while the scenario runs (and one broker of
    /// the three), restart them, and still end with every flow in sync. Needs the local
    /// 3-broker stack (started if no cluster is configured).
    #[arg(long)]
    pub chaos: bool,
    /// The seed of the chaos schedule (default: from the clock; printed either way).
    #[arg(long, requires = "chaos")]
    pub chaos_seed: Option<u64>,
    /// How many service kills (default 4; 20 with SEAM_EXTENDED=1).
    #[arg(long, requires = "chaos", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub chaos_kills: Option<u32>,
}

/// Runs the demo; exit code 0 only when every flow is in sync.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));

    bar.set_message("phase 1/5: finding the cluster");
    let endpoints = cluster(&bar, if args.chaos { 3 } else { 1 }).await?;
    let brokers = match (&endpoints.origin, args.chaos) {
        (seam_local::cluster::Origin::LocalStack { brokers }, true) if *brokers >= 3 => *brokers,
        (other, true) => bail!(
            "--chaos kills a broker of three, so it needs the local 3-broker stack, but the cluster in use is the {other}; \
             run `seam local down` and the demo again (it starts one), or `seam local up --brokers 3`"
        ),
        _ => 0,
    };
    let topology_path = args.topology.clone().unwrap_or_else(crate::serve::default_topology);
    let topology = Topology::load(&topology_path)?;

    bar.set_message("phase 2/5: seam deploy (topics, configs, schemas)");
    let client = endpoints.client();
    let registry = Registry::new(endpoints.registry()?)?;
    // On the secure stack deploy also creates each service's user (and its credentials file),
    // as `seam deploy` does there.
    let options = seam_ops::deploy::Options {
        secrets: endpoints.secrets.clone(),
        ..Default::default()
    };
    let deployed = seam_ops::deploy::deploy(&topology, &client, &registry, &options).await?;
    if !deployed.problems.is_empty() {
        bail!(
            "{} cannot be deployed to this cluster:\n  {}",
            topology_path.display(),
            deployed.problems.join("\n  ")
        );
    }
    let created = |topic: &str| {
        deployed
            .changes
            .iter()
            .any(|c| c.resource == format!("topic/{topic}") && c.action == seam_ops::deploy::Action::Create)
    };
    let data = match &args.data {
        Some(d) => d.clone(),
        None => seam_local::Home::from_env()?.root().join("student-affairs"),
    };
    // A topic this deploy created is new (a purged or fresh stack): a store that published to
    // the earlier one, or read it, belongs to a cluster that is gone, so every store starts over.
    // So does every store when one has read a topic further than it now reaches (the stack
    // was purged and something else deployed the topics since): its source would never
    // catch up, and the run would wait out its timeout.
    let mut fresh = topology
        .services
        .iter()
        .any(|s| created(&seam::translator::events_topic(&s.name)));
    if !fresh {
        if let Some(stale) = store_past_its_topics(&topology, &client, &data)? {
            bar.suspend(|| {
                eprintln!(
                    "{stale}: the stores under {} belong to topics that are gone; starting them over",
                    data.display()
                )
            });
            fresh = true;
        }
    }
    for service in &topology.services {
        let store = data.join(&service.name);
        if fresh && store.exists() {
            std::fs::remove_dir_all(&store).with_context(|| format!("clearing the old store {}", store.display()))?;
        }
    }

    check_stores_match_topics(&topology, &client, &data)?;
    let working = working_topology(&topology_path, &data)?;

    bar.set_message("phase 3/5: starting the four services");
    let services = processes::start_all(&endpoints, &working, &data).await?;

    let outcome = async {
        let stop_chaos = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let chaos = args.chaos.then(|| {
            let plan = chaos::Plan {
                seed: args.chaos_seed.unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(1)
                }),
                kills: args
                    .chaos_kills
                    .unwrap_or(if std::env::var("SEAM_EXTENDED").is_ok_and(|v| v == "1") {
                        20
                    } else {
                        4
                    }),
            };
            bar.suspend(|| {
                eprintln!(
                    "chaos: {} service kills and one broker kill, seed {} (repeat with --chaos-seed {})",
                    plan.kills, plan.seed, plan.seed
                )
            });
            tokio::spawn(chaos::run(
                services.clone(),
                plan,
                brokers,
                std::sync::Arc::clone(&stop_chaos),
            ))
        });
        bar.set_message("phase 4/5: driving the scenario");
        let stats = scenario::drive(&services, args.students, &bar).await?;
        bar.set_message("phase 4/5: the scholarship office joins: seam register, from the students office's snapshot");
        let office = services.url(crate::serve::Which::StudentsOffice);
        let scholarship = match services.url_of(crate::serve::Which::ScholarshipOffice.name()) {
            Some(url) => url,
            None => services.add(crate::serve::Which::ScholarshipOffice).await?,
        };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let more = tokio::spawn(scenario::more_students(
            office.clone(),
            stats.exams.clone(),
            args.students.min(100),
            std::sync::Arc::clone(&stop),
        ));
        // `seam register` draws its own progress bar meanwhile.
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        let register = seam_ops::commands::register::RegisterArgs {
            consumer: crate::serve::Which::ScholarshipOffice.name().to_string(),
            source: crate::serve::Which::StudentsOffice.name().to_string(),
            snapshot: Some(format!("{office}/snapshot")),
            from_beginning: false,
            accept_gap: false,
            topology: working.clone(),
            url: Some(scholarship),
            json: args.json,
        };
        let mut registered = seam_ops::commands::register::register(&register).await;
        // Under chaos either side may be killed mid-registration: running it again resumes
        // (the consumer resumes its bootstrap from the spooled snapshot; a second run follows it).
        let mut attempts = 1;
        while args.chaos && registered.is_err() && attempts < 10 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            registered = seam_ops::commands::register::register(&register).await;
            attempts += 1;
        }
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        let registered = registered;
        // The whole chaos schedule runs, while the late students keep coming.
        let chaos = match chaos {
            Some(task) if registered.is_ok() => Some(task.await??),
            Some(task) => {
                stop_chaos.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = task.await;
                None
            }
            None => None,
        };
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let late = more.await??;
        let registered = registered?;
        let summary = format!(
            "{}; {late} more students registered and enrolled meanwhile",
            registered.summary()
        );
        bar.suspend(|| eprintln!("{summary}"));
        bar.set_message("phase 5/5: waiting until every consumer has caught up");
        let topology = Topology::load(&working)?;
        let mut report = report::wait_in_sync(
            &services,
            &topology,
            Duration::from_secs(args.timeout),
            &bar,
            stats,
            started,
        )
        .await?;
        report.chaos = chaos;
        anyhow::Ok(report)
    }
    .await;
    bar.finish_and_clear();
    let report = match outcome {
        Ok(r) => r,
        Err(e) => {
            services.stop().await;
            return Err(e);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    if args.keep_running {
        services.detach();
        eprintln!("the services keep running; stop them with `kill <pid>` (SIGTERM)");
    } else {
        services.stop().await;
    }
    Ok(if report.synced {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The demo's working copy of the topology (`<data>/topology.yaml`), which `seam register`
/// edits when the scholarship office joins; it starts over from `source` whenever the
/// scholarship office has no store yet, so every fresh run shows the registration. The copy
/// keeps the file's text and comments; only schema and translator directories become absolute.
fn working_topology(source: &std::path::Path, data: &std::path::Path) -> anyhow::Result<PathBuf> {
    let working = data.join("topology.yaml");
    let joined = data.join(crate::serve::Which::ScholarshipOffice.name()).exists();
    if joined && working.is_file() {
        return Ok(working);
    }
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let text = std::fs::read_to_string(source).with_context(|| format!("reading {}", source.display()))?;
    let base = source.parent().unwrap_or(std::path::Path::new("."));
    let mut copy = String::new();
    for line in text.lines() {
        let path = ["schemas:", "translators:"]
            .into_iter()
            .find_map(|key| line.split_once(key).map(|(pad, dir)| (key, pad, dir)))
            .filter(|(_, pad, _)| pad.trim().is_empty() || pad.trim() == "-");
        match path {
            Some((key, pad, dir)) => {
                let dir = base.join(dir.trim());
                let dir = std::fs::canonicalize(&dir).with_context(|| format!("finding {}", dir.display()))?;
                copy.push_str(&format!("{pad}{key} {}\n", dir.display()));
            }
            None => {
                copy.push_str(line);
                copy.push('\n');
            }
        }
    }
    std::fs::write(&working, copy).with_context(|| format!("writing {}", working.display()))?;
    Topology::load(&working)?;
    Ok(working)
}

/// The first store under `data` that has read a partition of the topology's topics past the
/// partition's end, described; `None` when every store is behind or at the ends.
pub fn store_past_its_topics(
    topology: &Topology,
    client: &rdkafka::ClientConfig,
    data: &std::path::Path,
) -> anyhow::Result<Option<String>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::RDKafkaErrorCode;
    let probe: BaseConsumer = client.create()?;
    for s in &topology.services {
        let dir = data.join(&s.name);
        if seam::store::StoreEngine::found_in(&dir).is_none() {
            continue;
        }
        let positions = seam::store::open(&dir)
            .with_context(|| format!("opening the store {}", dir.display()))?
            .positions()?;
        for (topic, partition, next) in positions.iter() {
            let end = match probe.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
                Ok((_, high)) => high,
                // Only a partition that does not exist ends at 0: any other failure (a broker
                // away) must not make the stores look stale, or they would be started over.
                Err(rdkafka::error::KafkaError::MetadataFetch(
                    RDKafkaErrorCode::UnknownPartition | RDKafkaErrorCode::UnknownTopicOrPartition,
                )) => 0,
                Err(e) => return Err(e).with_context(|| format!("reading the end of {topic}/{partition}")),
            };
            if next > end {
                return Ok(Some(format!(
                    "{} has read {topic} partition {partition} up to offset {next}, but the topic ends at {end}",
                    s.name
                )));
            }
        }
    }
    Ok(None)
}

/// A service's store and its topic belong together: a missing store next to a topic that
/// already holds events cannot continue that topic.
fn check_stores_match_topics(
    topology: &Topology,
    client: &rdkafka::ClientConfig,
    data: &std::path::Path,
) -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let probe: BaseConsumer = client.create()?;
    for s in &topology.services {
        if data.join(&s.name).exists() {
            continue;
        }
        let topic = seam::translator::events_topic(&s.name);
        let mut events = 0;
        for p in 0..s.partitions {
            let (low, high) = probe.fetch_watermarks(&topic, p, Duration::from_secs(10))?;
            events += high - low;
        }
        if events > 0 {
            bail!(
                "{topic} already holds events, but {} has no store for {}: the services' stores of the earlier run are elsewhere. \
                 Pass that run's --data directory, or start over with `seam local down --purge` (local stack)",
                data.display(),
                s.name
            );
        }
    }
    Ok(())
}

async fn cluster(bar: &ProgressBar, brokers: u8) -> anyhow::Result<Endpoints> {
    match Endpoints::discover() {
        Ok(e) => Ok(e),
        Err(ClusterError::NoCluster) => {
            bar.set_message("phase 1/5: no cluster configured; starting the local stack (first time: Maven fetch)");
            let home = seam_local::Home::from_env()?;
            let shape = seam_local::Shape::new(
                brokers,
                seam_local::Shape::DEFAULT_KAFKA_PORT,
                seam_local::Shape::DEFAULT_REGISTRY_PORT,
            )?;
            let say_bar = bar.clone();
            seam_local::up(&home, shape, &mut |msg| say_bar.println(msg)).await?;
            Ok(Endpoints::discover()?)
        }
        Err(e) => Err(e.into()),
    }
}
