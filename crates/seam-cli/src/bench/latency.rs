//! `seam bench latency`: how long an event takes from being sent to being applied at a consumer,
//! at fixed rates (1 K and 10 K events/s), open loop: each send is scheduled in advance and its
//! latency counts from the scheduled time, so a stall shows instead of slowing the sender
//! (no coordinated omission). Clocks are microseconds, both ends in this process.
//!
//! Two comparisons, side by side, each like with like:
//! - **relay vs seam**: a bare producer (acks=all, idempotent, linger 0) feeds a bare consumer
//!   that produces one record per input, as a hand-written relay does; the same bare producer
//!   publishes framed items, headed as a seam publisher would, to a seam copy consumer that
//!   applies each and emits one event (read_committed, decode, translate, apply, commit, publish).
//! - **echo vs quiet seam**: the bare consumer only notes receipt; the seam copy applies and
//!   emits nothing.
//!
//! Latency is taken at receipt (bare) and in the apply (seam). Each round of the emitting copy
//! also reports its highest consumer lag and publisher backlog, its flushes and their mean time,
//! and events per store commit, so a rising latency can be traced to where it comes from.
//!
//! Also measured, without a target: service to service, where a seam source service executes
//! each item as a command (store commit, then its transactional outbox publisher) and the copy
//! applies it. That adds a store fsync and a Kafka transaction per publisher batch.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use rdkafka::{ClientConfig, Offset};
use serde_json::json;

use super::report::{Figure, Outcome, Run, Side};
use super::synthetic::{self, now_us, CopyService, Item, ItemToCopy, Source};
use super::translator::{create_topics, scratch};
use seam::codec::{wire, Registry};
use seam::runtime::in_flight::InFlight;
use seam::runtime::{Node, NodeConfig};
use seam::service::Cause;
use seam::translator::{dlq_topic, events_topic};

/// The longest a fetch waits at the broker, for the echo and the seam consumer alike (librdkafka's
/// default of 500 ms added about 2 ms at p50; seam keeps that default for throughput, see README).
const FETCH_WAIT_MS: &str = "10";

/// Runs the benchmark at 1 K and 10 K events/s; the top-level figures are the 10 K case's.
pub async fn run(endpoints: &super::Setup, quick: bool, rounds: usize) -> anyhow::Result<Outcome> {
    let seconds = if quick { 1.5 } else { 10.0 };
    let mut cases = Vec::new();
    for rate in [10_000u64, 1_000] {
        cases.push(case(endpoints, rate, seconds, rounds).await?);
    }
    let mut top = cases[0].clone();
    top.name = "latency".into();
    // The top level meets its target only when every case does.
    top.met = cases.iter().all(|c| c.met);
    top.cases = cases;
    Ok(top)
}

async fn case(endpoints: &super::Setup, rate: u64, seconds: f64, rounds: usize) -> anyhow::Result<Outcome> {
    let tag = super::run_tag("lt");
    let client = endpoints.client();
    let rf = super::replication(&client).await?;
    // The bare feeder writes a topic of its own: a seam topic carries one source's journal,
    // and a consumer sets aside a topic whose events switch journals (a recreated source).
    let (source, bare, copy, echo) = (
        format!("{tag}-src"),
        format!("{tag}-bare"),
        format!("{tag}-copy"),
        events_topic(&format!("{tag}-echo")),
    );
    let (hush, quiet, relay_in, relay_out) = (
        format!("{tag}-hush"),
        format!("{tag}-quiet"),
        events_topic(&format!("{tag}-relay-in")),
        events_topic(&format!("{tag}-relay-out")),
    );
    let topics = vec![
        events_topic(&source),
        events_topic(&bare),
        events_topic(&copy),
        dlq_topic(&copy),
        events_topic(&hush),
        events_topic(&quiet),
        dlq_topic(&quiet),
        echo.clone(),
        relay_in.clone(),
        relay_out.clone(),
    ];
    create_topics(
        &client,
        &topics
            .iter()
            .map(|t| (t.clone(), if t.ends_with(".dlq") { 1 } else { 3 }))
            .collect::<Vec<_>>(),
        rf,
    )
    .await?;
    let node_config = |name: &str| -> anyhow::Result<NodeConfig> {
        let mut c = super::node_config(endpoints, name, scratch(name))?;
        // The echo's fetch setting, so both consumers wait for data alike.
        c.kafka.insert("fetch.wait.max.ms".into(), FETCH_WAIT_MS.into());
        Ok(c)
    };
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let source_node = Arc::new(Node::start(node_config(&source)?, Source, synthetic::source_catalog()?, vec![]).await?);
    let copy_node = Node::start(
        node_config(&copy)?,
        CopyService {
            latencies: Some(Arc::clone(&latencies)),
            replica_of: None,
            silent: false,
        },
        synthetic::copy_catalog()?,
        vec![
            Box::new(ItemToCopy { source: source.clone() }),
            Box::new(ItemToCopy { source: bare.clone() }),
        ],
    )
    .await?;
    let hushed = Arc::new(Mutex::new(Vec::new()));
    let quiet_node = Node::start(
        node_config(&quiet)?,
        CopyService {
            latencies: Some(Arc::clone(&hushed)),
            replica_of: None,
            silent: true,
        },
        synthetic::copy_catalog()?,
        vec![Box::new(ItemToCopy { source: hush.clone() })],
    )
    .await?;
    let n = (rate as f64 * seconds) as u64;
    // Warm up both paths (group joins, transactions, metadata) before anything counts.
    drive(&source_node, rate, rate / 2, 0).await;
    settle(&latencies, rate / 2).await;
    latencies.lock().map(|mut v| v.clear()).ok();
    let bare_side = |input: String, forward: Option<String>| {
        let c = client.clone();
        async move {
            let side = tokio::task::spawn_blocking(move || -> anyhow::Result<Echo> {
                let echo = Echo::new(&c, &input, forward)?;
                echo.round(rate, rate / 2)?;
                Ok(echo)
            })
            .await??;
            anyhow::Ok(Arc::new(side))
        }
    };
    let echo_side = bare_side(echo.clone(), None).await?;
    let relay_side = bare_side(relay_in.clone(), Some(relay_out.clone())).await?;
    let registry = Registry::new(endpoints.registry()?)?;
    let feeder = |name: String| {
        let (c, registry) = (client.clone(), &registry);
        async move {
            let schema = registry
                .register(
                    &events_topic(&name),
                    synthetic::source_catalog()?.record(synthetic::ITEM)?,
                )
                .await?;
            anyhow::Ok(Arc::new(Feeder::new(&c, &events_topic(&name), &name, schema)?))
        }
    };
    let (feeder, hush_feeder) = (feeder(bare.clone()).await?, feeder(hush.clone()).await?);
    // The quiet copy's warm-up, as the echo's.
    let side = Arc::clone(&hush_feeder);
    tokio::task::spawn_blocking(move || side.round(rate, rate / 2, 0)).await??;
    settle(&hushed, rate / 2).await;

    let (mut base, mut relay, mut seam, mut hushed_seam, mut e2e) = (
        Pcts::default(),
        Pcts::default(),
        Pcts::default(),
        Pcts::default(),
        Pcts::default(),
    );
    let mut diagnosis = Vec::new();
    // One seq for both seam paths: the copy keeps only a later seq per subject.
    let mut seq = rate;
    for _ in 0..rounds {
        let side = Arc::clone(&echo_side);
        base.add(tokio::task::spawn_blocking(move || side.round(rate, n)).await??);
        let side = Arc::clone(&relay_side);
        relay.add(tokio::task::spawn_blocking(move || side.round(rate, n)).await??);

        let side = Arc::clone(&feeder);
        let first = seq;
        let probe = Probe::start(copy_node.metrics().clone());
        tokio::task::spawn_blocking(move || side.round(rate, n, first)).await??;
        seq += n;
        let s = settle(&latencies, n).await;
        let (p50, p99) = seam.add(s);
        diagnosis.push(probe.finish(n, p50, p99).await);

        let side = Arc::clone(&hush_feeder);
        tokio::task::spawn_blocking(move || side.round(rate, n, first)).await??;
        hushed_seam.add(settle(&hushed, n).await);

        drive(&source_node, rate, n, seq).await;
        seq += n;
        e2e.add(settle(&latencies, n).await);
    }
    // The bare clients go before their topics do.
    drop(echo_side);
    drop(relay_side);
    drop(feeder);
    drop(hush_feeder);
    copy_node.shutdown().await?;
    quiet_node.shutdown().await?;
    if let Ok(node) = Arc::try_unwrap(source_node) {
        node.shutdown().await?;
    }
    let _ = std::fs::remove_dir_all(scratch(&source));
    let _ = std::fs::remove_dir_all(scratch(&copy));
    let _ = std::fs::remove_dir_all(scratch(&quiet));
    super::delete_topics(&client, &topics).await;

    let none: [Run; 0] = [];
    let relay_met = meets(&seam, &relay);
    let echo_met = meets(&hushed_seam, &base);
    Ok(Outcome {
        name: format!("latency-{}k", rate / 1000),
        ratio: seam.p99() / relay.p99().max(f64::MIN_POSITIVE),
        target: "p99 <= 2.0x baseline p99 and p50 <= baseline p50 + 1000 µs, for relay vs seam and echo vs quiet seam"
            .into(),
        met: relay_met && echo_met,
        baseline: Side::from_runs(
            "bare produce → consume, produce one record per input (a relay), p99 at receipt",
            Figure::of(&relay.p99s, "µs"),
            &none,
        ),
        subject: Side::from_runs(
            "bare produce → applied at a seam consumer that emits one event per input, p99",
            Figure::of(&seam.p99s, "µs"),
            &none,
        ),
        settings: BTreeMap::from([
            ("rate_events_per_s".to_string(), json!(rate)),
            ("events_per_round".to_string(), json!(n)),
            ("rounds".to_string(), json!(rounds)),
            ("partitions".to_string(), json!(3)),
            ("replication".to_string(), json!(rf)),
            ("baseline_p50_us".to_string(), json!(Figure::of(&relay.p50s, "µs"))),
            ("seam_p50_us".to_string(), json!(Figure::of(&seam.p50s, "µs"))),
            (
                "echo_vs_quiet_seam".to_string(),
                json!({
                    "baseline": "bare produce → consume echo (receipt only)",
                    "subject": "bare produce → applied at a seam consumer that emits nothing",
                    "baseline_p50_us": Figure::of(&base.p50s, "µs"),
                    "baseline_p99_us": Figure::of(&base.p99s, "µs"),
                    "seam_p50_us": Figure::of(&hushed_seam.p50s, "µs"),
                    "seam_p99_us": Figure::of(&hushed_seam.p99s, "µs"),
                    "ratio_p99": hushed_seam.p99() / base.p99().max(f64::MIN_POSITIVE),
                    "met": echo_met,
                }),
            ),
            ("relay_vs_seam_met".to_string(), json!(relay_met)),
            ("seam_rounds".to_string(), json!(diagnosis)),
            (
                "service_to_service_p50_us".to_string(),
                json!(Figure::of(&e2e.p50s, "µs")),
            ),
            (
                "service_to_service_p99_us".to_string(),
                json!(Figure::of(&e2e.p99s, "µs")),
            ),
            (
                "service_to_service".to_string(),
                json!("seam command → source store commit → transactional outbox publish → applied at the consumer; no target"),
            ),
            (
                "baseline_producer".to_string(),
                json!("acks=all, idempotent, linger.ms=0 (the relay's output too)"),
            ),
            ("payload_bytes".to_string(), json!(100)),
            ("fetch_wait_max_ms".to_string(), json!(FETCH_WAIT_MS)),
        ]),
        cases: Vec::new(),
    })
}

/// p50s and p99s of rounds, in µs.
#[derive(Debug, Default)]
struct Pcts {
    p50s: Vec<f64>,
    p99s: Vec<f64>,
}

impl Pcts {
    /// Adds a round's latencies; its p50 and p99.
    fn add(&mut self, mut latencies: Vec<i64>) -> (f64, f64) {
        latencies.sort_unstable();
        let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
        self.p50s.push(p50);
        self.p99s.push(p99);
        (p50, p99)
    }

    fn p50(&self) -> f64 {
        Figure::of(&self.p50s, "µs").median
    }

    fn p99(&self) -> f64 {
        Figure::of(&self.p99s, "µs").median
    }
}

/// The latency target: p99 at most twice the baseline's, p50 at most a millisecond above it.
fn meets(seam: &Pcts, baseline: &Pcts) -> bool {
    seam.p99() <= 2.0 * baseline.p99() && seam.p50() <= baseline.p50() + 1000.0
}

/// Watches a node's metrics through one round: the highest lag and publisher backlog seen, and
/// the flushes and commits the round took.
struct Probe {
    metrics: seam::metrics::Metrics,
    before: Counters,
    stop: Arc<std::sync::atomic::AtomicBool>,
    peaks: tokio::task::JoinHandle<(f64, f64)>,
}

/// Cumulative figures read from a node's Prometheus text.
#[derive(Debug, Clone, Copy)]
struct Counters {
    flushes: f64,
    flush_seconds: f64,
    commits: f64,
}

impl Counters {
    fn read(metrics: &seam::metrics::Metrics) -> Self {
        let text = metrics.render();
        Self {
            flushes: metric(&text, "seam_store_flush_seconds_count"),
            flush_seconds: metric(&text, "seam_store_flush_seconds_sum"),
            commits: metric(&text, "seam_store_commits_total"),
        }
    }
}

/// The sum of every series of metric `name` in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Probe {
    fn start(metrics: seam::metrics::Metrics) -> Self {
        let before = Counters::read(&metrics);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m, halt) = (metrics.clone(), Arc::clone(&stop));
        let peaks = tokio::spawn(async move {
            let (mut lag, mut backlog) = (0f64, 0f64);
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                let text = m.render();
                lag = lag.max(metric(&text, "seam_consumer_lag_events"));
                backlog = backlog.max(metric(&text, "seam_publisher_backlog_events"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (lag, backlog)
        });
        Self {
            metrics,
            before,
            stop,
            peaks,
        }
    }

    /// The round's figures, once its `events` were applied with these percentiles.
    async fn finish(self, events: u64, p50: f64, p99: f64) -> serde_json::Value {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (lag, backlog) = self.peaks.await.unwrap_or_default();
        let after = Counters::read(&self.metrics);
        let flushes = after.flushes - self.before.flushes;
        let commits = after.commits - self.before.commits;
        json!({
            "p50_us": p50,
            "p99_us": p99,
            "max_lag_events": lag,
            "max_publisher_backlog_events": backlog,
            "flushes": flushes,
            "mean_flush_ms": if flushes > 0.0 { 1000.0 * (after.flush_seconds - self.before.flush_seconds) / flushes } else { 0.0 },
            "events_per_commit": if commits > 0.0 { events as f64 / commits } else { 0.0 },
        })
    }
}

/// The `p`-quantile of sorted microsecond values.
fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
}

/// Sends `n` items at `rate`, each at its scheduled time, without waiting for earlier ones.
async fn drive(node: &Arc<Node<Source>>, rate: u64, n: u64, first_seq: u64) {
    let start = Instant::now();
    let start_us = now_us();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let due = Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let item = Item {
            subject: format!("s{}", i % 1000),
            seq: (first_seq + i) as i64,
            sent_us: start_us + due.as_micros() as i64,
            payload: "x".repeat(100),
        };
        let node = Arc::clone(node);
        tasks.spawn(async move {
            let _ = node.execute(item, Cause::default()).await;
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// The bare producer feeding the seam consumer: the echo's producer settings, items framed and
/// headed as a seam publisher would, under event ids of a service of its own.
struct Feeder {
    topic: String,
    heads: Mutex<super::translator::Heads>,
    schema: u32,
    producer: ThreadedProducer<InFlight>,
}

/// The producer settings of both the feeder and the echo, so the two sides send alike:
/// acknowledged by all replicas, idempotent, and sent at once (a latency probe must not wait
/// for a batch to fill).
fn unbatched(client: &ClientConfig) -> ClientConfig {
    let mut config = client.clone();
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "0");
    config
}

impl Feeder {
    fn new(client: &ClientConfig, topic: &str, service: &str, schema: u32) -> anyhow::Result<Self> {
        Ok(Self {
            topic: topic.to_string(),
            heads: Mutex::new(super::translator::Heads::new(service)?),
            schema,
            producer: unbatched(client).create_with_context(InFlight::default())?,
        })
    }

    /// `n` items at `rate` from seq `first`, each carrying its scheduled send time.
    fn round(&self, rate: u64, n: u64, first: u64) -> anyhow::Result<()> {
        let catalog = synthetic::source_catalog()?;
        let start = Instant::now();
        let start_us = now_us();
        for i in 0..n {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            let item = Item {
                subject: format!("s{}", i % 1000),
                seq: (first + i) as i64,
                sent_us: start_us + due.as_micros() as i64,
                payload: "x".repeat(100),
            };
            let value = wire::frame(self.schema, &catalog.encode(synthetic::ITEM, &item)?);
            let headers = match self.heads.lock() {
                Ok(mut heads) => heads.next(&item.subject),
                Err(_) => anyhow::bail!("the feeder's headers were poisoned"),
            };
            super::translator::send(
                &self.producer,
                BaseRecord::to(&self.topic)
                    .key(item.subject.as_str())
                    .payload(value.as_slice())
                    .headers(headers),
            )?;
        }
        super::translator::acknowledged(&self.producer)
    }
}

/// Waits until `n` latencies are in, and takes them.
async fn settle(latencies: &Arc<Mutex<Vec<i64>>>, n: u64) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = latencies.lock().map(|v| v.len() as u64).unwrap_or(0);
        if have >= n || Instant::now() > deadline {
            return latencies
                .lock()
                .map(|mut v| std::mem::take(&mut *v))
                .unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Microseconds since the time an echo record carries.
fn since_sent(m: &rdkafka::message::BorrowedMessage<'_>) -> i64 {
    let sent: i64 = m
        .payload()
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|t| t.split('x').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    now_us() - sent
}

/// A baseline: a producer and a consumer noting receipt, kept across rounds (warm); with
/// `forward`, the consumer also produces each record it receives there (a relay).
struct Echo {
    topic: String,
    consumer: BaseConsumer,
    producer: ThreadedProducer<InFlight>,
    forward: Option<String>,
}

impl Echo {
    fn new(client: &ClientConfig, topic: &str, forward: Option<String>) -> anyhow::Result<Self> {
        let mut fetch = client.clone();
        fetch.set("fetch.wait.max.ms", FETCH_WAIT_MS);
        let consumer = super::reader(&fetch, &format!("{topic}-echo"), topic, Offset::End)?;
        Ok(Self {
            topic: topic.to_string(),
            consumer,
            producer: unbatched(client).create_with_context(InFlight::default())?,
            forward,
        })
    }

    /// Notes a received record's latency, and relays it when this side is a relay.
    fn receive(&self, m: &rdkafka::message::BorrowedMessage<'_>, got: &mut Vec<i64>) -> anyhow::Result<()> {
        got.push(since_sent(m));
        if let Some(out) = &self.forward {
            let mut record = BaseRecord::to(out).payload(m.payload().unwrap_or_default());
            if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                record = record.key(key);
            }
            super::translator::send(&self.producer, record)?;
        }
        Ok(())
    }

    /// `n` records at `rate`, each carrying its scheduled time; their send → receipt latencies.
    fn round(&self, rate: u64, n: u64) -> anyhow::Result<Vec<i64>> {
        let start = Instant::now();
        let start_us = now_us();
        let filler = "x".repeat(84);
        let mut got = Vec::with_capacity(n as usize);
        for i in 0..n {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            // Receive whatever arrived while waiting for the next send time.
            while let Some(wait) = due.checked_sub(start.elapsed()) {
                match self.consumer.poll(wait.min(Duration::from_millis(1))) {
                    Some(Ok(m)) => self.receive(&m, &mut got)?,
                    Some(Err(e)) => return Err(e.into()),
                    None => {}
                }
            }
            // The scheduled send time in µs, then filler to 100 bytes.
            let payload = format!("{}{filler}", start_us + due.as_micros() as i64);
            let key = format!("s{}", i % 1000);
            super::translator::send(
                &self.producer,
                BaseRecord::to(&self.topic)
                    .key(key.as_str())
                    .payload(payload.as_bytes()),
            )?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while (got.len() as u64) < n && Instant::now() < deadline {
            if let Some(m) = self.consumer.poll(Duration::from_millis(10)) {
                self.receive(&m?, &mut got)?;
            }
        }
        if self.forward.is_some() {
            super::translator::acknowledged(&self.producer)?;
        }
        Ok(got)
    }
}
