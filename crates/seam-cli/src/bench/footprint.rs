//! `seam bench footprint`: a seam service as its own process (the copy consumer of the
//! translator benchmark, run by `seam bench serve-copy`): time from spawn to ready, resident
//! memory when idle, and its peak while it takes in a burst of events. Targets: ready within
//! 1 s (the broker is up already), idle RSS below 50 MB.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use super::cpu;
use super::report::{Figure, Outcome, Run, Side};
use super::translator::{create_topics, fill, scratch, Settings};
use seam::codec::Registry;
use seam::translator::{dlq_topic, events_topic};
use seam_local::cluster::Endpoints;

/// Idle RSS limit.
const IDLE_RSS_MB: f64 = 50.0;
/// Start-to-ready limit.
const READY_S: f64 = 1.0;

/// Runs the benchmark.
pub async fn run(endpoints: &super::Setup, quick: bool, rounds: usize) -> anyhow::Result<Outcome> {
    let tag = super::run_tag("fp");
    let client = endpoints.client();
    let rf = super::replication(&client).await?;
    let burst = if quick { 20_000 } else { 200_000 };
    let s = Settings {
        events: burst,
        size: 1024,
        partitions: 3,
        rounds,
        subjects: burst / 10,
    };
    let mut topics = Vec::new();
    let registry = Registry::new(endpoints.registry()?)?;
    let (mut ready, mut idle, mut loaded) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Each round has an empty source of its own, so idle means idle.
        let source = format!("{tag}-src{round}");
        let name = format!("{tag}-svc{round}");
        let new = [
            (events_topic(&source), s.partitions),
            (events_topic(&name), s.partitions),
            (dlq_topic(&name), 1),
        ];
        create_topics(&client, &new, rf).await?;
        topics.extend(new.into_iter().map(|(t, _)| t));
        let store = scratch(&name);
        let exe = std::env::current_exe().context("finding the seam binary")?;
        let began = Instant::now();
        let mut child = tokio::process::Command::new(exe)
            .args(["bench", "serve-copy", "--name", &name, "--source", &source, "--store"])
            .arg(&store)
            .args(["--store-engine", endpoints.engine.name()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the service")?;
        let pid = child.id().context("no pid")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let line = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::io::BufReader::new(stdout).lines().next_line(),
        )
        .await
        .context("the service did not become ready within 60 s")??;
        anyhow::ensure!(
            line.as_deref() == Some("ready"),
            "the service printed {line:?} instead of ready"
        );
        ready.push(began.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_secs(2)).await;
        idle.push(cpu::rss_bytes(pid).unwrap_or(0) as f64 / 1e6);
        // A burst on its source: the peak while it takes it in.
        fill(&client, &registry, &source, &s).await?;
        let mut peak = 0.0f64;
        let deadline = Instant::now() + Duration::from_secs(if quick { 20 } else { 120 });
        while Instant::now() < deadline {
            peak = peak.max(cpu::rss_bytes(pid).unwrap_or(0) as f64 / 1e6);
            if caught_up(&store) >= burst {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        loaded.push(peak);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        let _ = std::fs::remove_dir_all(&store);
    }
    super::delete_topics(&client, &topics).await;
    let idle_fig = Figure::of(&idle, "MB");
    let ready_fig = Figure::of(&ready, "s");
    let none: [Run; 0] = [];
    let ratio = idle_fig.median / IDLE_RSS_MB;
    Ok(Outcome {
        name: "footprint".into(),
        ratio,
        target: format!("idle RSS < {IDLE_RSS_MB} MB (ratio < 1) and start to ready < {READY_S} s"),
        met: idle_fig.median < IDLE_RSS_MB && ready_fig.median < READY_S,
        baseline: Side::from_runs("start to ready (spawn → `ready`)", ready_fig, &none),
        subject: Side::from_runs("idle resident memory", idle_fig, &none),
        settings: BTreeMap::from([
            ("burst_events".to_string(), json!(burst)),
            ("message_bytes".to_string(), json!(s.size)),
            ("partitions".to_string(), json!(s.partitions)),
            ("rounds".to_string(), json!(rounds)),
            ("peak_rss_under_load_mb".to_string(), json!(Figure::of(&loaded, "MB"))),
            (
                "service".to_string(),
                json!("copy consumer: store, publisher, consumer, DLQ shipper; no HTTP"),
            ),
        ]),
        cases: Vec::new(),
    })
}

/// Events the service has taken in: it holds its store's lock, so it writes the count to
/// `<store>/applied` for us.
fn caught_up(store: &std::path::Path) -> u64 {
    std::fs::read_to_string(store.join("applied"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// `seam bench serve-copy`: runs the copy consumer until SIGTERM, printing `ready` once started
/// and keeping `<store>/applied` at the number of events it has taken in.
pub async fn serve_copy(
    name: &str,
    source: &str,
    store: std::path::PathBuf,
    engine: seam::store::StoreEngine,
) -> anyhow::Result<()> {
    let endpoints = super::Setup {
        endpoints: Endpoints::discover_for(name)?,
        engine,
    };
    let config = super::node_config(&endpoints, name, store.join("db"))?;
    let node = seam::runtime::Node::start(
        config,
        super::synthetic::CopyService::default(),
        super::synthetic::copy_catalog()?,
        vec![Box::new(super::synthetic::ItemToCopy {
            source: source.to_string(),
        })],
    )
    .await?;
    // Before `ready`: a SIGTERM sent as soon as it is printed must find the handler.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    println!("ready");
    let topic = events_topic(source);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                let applied: u64 = node
                    .store()
                    .positions()
                    .map(|p| p.iter().filter(|(t, _, _)| *t == topic).map(|(_, _, o)| o.max(0) as u64).sum())
                    .unwrap_or(0);
                let _ = std::fs::write(store.join("applied"), applied.to_string());
            }
        }
    }
    node.shutdown().await?;
    Ok(())
}
