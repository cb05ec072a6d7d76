//! `seam bench kafka-streams`: the translator workload as a Kafka Streams app (Java, in
//! `benches/peers/kafka-streams`, built with Maven from Central): decode each Avro item, update
//! the subject's entry in a persistent (RocksDB) state store, emit an Avro record, exactly once.
//! Compared with seam's translator on the same input by events per CPU-second of each process.
//! The Streams process's CPU is counted from its first record (JVM start and warm-up excluded);
//! seam's over the whole round, node start included: the comparison leans toward Streams.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use super::cpu::{Meter, Used};
use super::report::{Figure, Outcome, Run, Side};
use super::translator::{copy_topics, create_topics, fill, scratch, seam_copy, Settings};
use seam::codec::Registry;
use seam::translator::events_topic;

/// seam must do at least this many times the Streams app's events per CPU-second.
const TARGET: f64 = 2.0;

/// The peer's Maven project.
fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/kafka-streams")
}

/// Builds the peer (Maven, dependencies from Central into `target/lib`) once, and again when its
/// source or pom changed since.
fn build() -> anyhow::Result<PathBuf> {
    let dir = project();
    let jar = dir.join("target/kafka-streams-peer-1.jar");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let sources = [dir.join("pom.xml"), dir.join("src/main/java/seam/peer/Copy.java")];
    let fresh = modified(&jar).is_some_and(|built| sources.iter().all(|s| modified(s).is_some_and(|m| m <= built)));
    if fresh && dir.join("target/lib").is_dir() {
        return Ok(dir);
    }
    let out = std::process::Command::new("mvn")
        .args(["-q", "-B", "package", "-DskipTests"])
        .current_dir(&dir)
        .output()
        .context("running Maven (`mvn`) to build the Kafka Streams peer; install it with `apt-get install maven`")?;
    anyhow::ensure!(
        out.status.success(),
        "building {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(dir)
}

/// Runs the benchmark.
pub async fn run(endpoints: &super::Setup, quick: bool, rounds: usize) -> anyhow::Result<Outcome> {
    let dir = tokio::task::spawn_blocking(build).await??;
    let java = seam_local::java_for_kafka()?;
    let events = if quick { 30_000 } else { 300_000 };
    let s = Settings {
        events,
        size: 200,
        partitions: 3,
        rounds,
        subjects: events / 10,
    };
    let tag = super::run_tag("ks");
    let client = endpoints.client();
    let rf = super::replication(&client).await?;
    let source = format!("{tag}-src");
    let mut topics = vec![events_topic(&source)];
    create_topics(&client, &[(events_topic(&source), s.partitions)], rf).await?;
    fill(&client, &Registry::new(endpoints.registry()?)?, &source, &s).await?;
    let properties = scratch(&format!("{tag}-client.properties"));
    std::fs::create_dir_all(properties.parent().unwrap_or(&properties))?;
    let props: String = endpoints.kafka.0.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&properties, props)?;

    let (mut streams, mut seam) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let app = format!("{tag}-app{round}");
        let output = format!("{tag}-out{round}");
        create_topics(&client, &[(output.clone(), s.partitions)], rf).await?;
        topics.extend([output.clone(), format!("{app}-copies-changelog")]);
        streams.push(run_peer(&dir, &java.path, endpoints, &source, &output, &app, events, &properties).await?);
        // The same window on both sides: each side's clocks start after the first tenth.

        let consumer = format!("{tag}-cp{round}");
        copy_topics(&client, &consumer, &s, rf, &mut topics).await?;
        seam.push(seam_copy(endpoints, &source, &consumer, events, warmup(events)).await?);
    }
    super::delete_topics(&client, &topics).await;
    let _ = std::fs::remove_file(&properties);

    let per_cpu = |runs: &[Run]| -> Vec<f64> {
        runs.iter()
            .map(|r| {
                if r.cpu.own > 0.0 {
                    r.events as f64 / r.cpu.own
                } else {
                    0.0
                }
            })
            .collect()
    };
    let baseline = Side::from_runs(
        "Kafka Streams 4.4 (exactly_once_v2, RocksDB store)",
        Figure::of(&per_cpu(&streams), "events/CPU-s"),
        &streams,
    );
    let subject = Side::from_runs("seam translator", Figure::of(&per_cpu(&seam), "events/CPU-s"), &seam);
    let ratio = subject.figure.median / baseline.figure.median.max(f64::MIN_POSITIVE);
    // Streams also writes a changelog topic: with the brokers' CPU counted on each side, the
    // comparison includes what each asks of the cluster.
    let with_brokers = |runs: &[Run]| -> Vec<f64> {
        runs.iter()
            .map(|r| {
                let cpu = r.cpu.own + r.cpu.brokers.unwrap_or(0.0);
                if cpu > 0.0 {
                    r.events as f64 / cpu
                } else {
                    0.0
                }
            })
            .collect()
    };
    let (streams_all, seam_all) = (
        Figure::of(&with_brokers(&streams), "events/CPU-s"),
        Figure::of(&with_brokers(&seam), "events/CPU-s"),
    );
    let ratio_with_brokers = seam_all.median / streams_all.median.max(f64::MIN_POSITIVE);
    Ok(Outcome {
        name: "kafka-streams".into(),
        ratio,
        target: format!(">= {TARGET:.1}x events per CPU-second"),
        met: ratio >= TARGET,
        baseline,
        subject,
        settings: s
            .described(rf)
            .into_iter()
            .chain([
                ("java".to_string(), json!(java.to_string())),
                (
                    "streams".to_string(),
                    json!("1 stream thread, exactly_once_v2, commit.interval.ms=100 (default under EOS)"),
                ),
                (
                    "timed".to_string(),
                    json!(format!(
                        "each side from the event after its first {} (the JVM's warm-up) to the last",
                        warmup(events)
                    )),
                ),
                (
                    "including_broker_cpu".to_string(),
                    json!({
                        "ratio": ratio_with_brokers,
                        "kafka_streams": streams_all,
                        "seam": seam_all,
                        "note": "events per CPU-second of the client and all brokers together (the Streams side's broker CPU is counted from its process start)",
                    }),
                ),
                (
                    "throughput_events_per_s".to_string(),
                    json!({
                        "kafka_streams": Figure::of(&streams.iter().map(Run::rate).collect::<Vec<_>>(), "events/s"),
                        "seam": Figure::of(&seam.iter().map(Run::rate).collect::<Vec<_>>(), "events/s"),
                    }),
                ),
            ])
            .collect(),
        cases: Vec::new(),
    })
}

/// Events each side takes in before its clocks start: the JVM's JIT warms up on them (seam has
/// nothing to warm, and skips as many so both sides are timed over the same records).
fn warmup(events: u64) -> u64 {
    events / 10
}

/// One run of the peer; its own report gives CPU and wall time from the record after its
/// warm-up.
#[allow(clippy::too_many_arguments)]
async fn run_peer(
    dir: &Path,
    java: &Path,
    endpoints: &super::Setup,
    input: &str,
    output: &str,
    app: &str,
    events: u64,
    properties: &Path,
) -> anyhow::Result<Run> {
    let meter = Meter::start();
    let state = scratch(app);
    std::fs::create_dir_all(&state)?;
    let log = state.with_extension("log");
    let classpath = format!(
        "{}:{}/*",
        dir.join("target/kafka-streams-peer-1.jar").display(),
        dir.join("target/lib").display()
    );
    let mut child = tokio::process::Command::new(java)
        .args(["-Xmx512m", "-cp", &classpath, "seam.peer.Copy"])
        .arg(endpoints.bootstrap_servers())
        .args([&events_topic(input), output, app])
        .arg(&state)
        .arg(events.to_string())
        .arg(properties)
        .arg(warmup(events).to_string())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).context("creating the peer's log")?)
        .kill_on_drop(true)
        .spawn()
        .context("starting the Kafka Streams peer")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut report = None;
    let read = async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("processed=") {
                report = Some(line);
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(900), read)
        .await
        .context("the Kafka Streams peer did not finish within 900 s")??;
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&state);
    let Some(report) = report else {
        anyhow::bail!(
            "the Kafka Streams peer ended without its report; its log {}:\n{}",
            log.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    let _ = std::fs::remove_file(&log);
    let field = |name: &str| -> f64 {
        report
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")).and_then(|v| v.parse().ok()))
            .unwrap_or(0.0)
    };
    let brokers = meter.stop().brokers;
    Ok(Run {
        events: field("processed") as u64,
        seconds: field("wall_ns") / 1e9,
        cpu: Used {
            own: field("cpu_ns") / 1e9,
            brokers,
        },
    })
}
