//! `seam bench latency`: how long an event takes from being sent to being applied at a consumer,
//! at fixed rates (1 K and 10 K events/s), open loop: each send is scheduled in advance and its
//! latency counts from the scheduled time, so a stall shows instead of slowing the sender
//! (no coordinated omission). Clocks are microseconds, both ends in this process.
//!
//! Baseline: a bare producer (acks=all, idempotent, linger 0) and a consumer echoing receipt.
//! seam: the same bare producer publishes framed items, headed as a seam publisher would, to a
//! source topic of its own and a seam copy consumer applies them (read_committed, decode,
//! translate, apply in the writer); the latency is taken in the apply. The difference to the baseline is what the consumer side adds.
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

use super::report::{median, Figure, Outcome, Run, Side};
use super::synthetic::{self, now_us, CopyService, Item, ItemToCopy, Source};
use super::translator::{create_topics, scratch};
use seam::codec::{wire, Registry};
use seam::runtime::in_flight::InFlight;
use seam::runtime::{Node, NodeConfig};
use seam::service::Cause;
use seam::translator::{dlq_topic, events_topic};
use seam_local::cluster::Endpoints;

/// The longest a fetch waits at the broker, for the echo and the seam consumer alike (librdkafka's
/// default of 500 ms added about 2 ms at p50; seam keeps that default for throughput, see README).
const FETCH_WAIT_MS: &str = "10";

/// Runs the benchmark at 1 K and 10 K events/s; the top-level figures are the 10 K case's.
pub async fn run(endpoints: &Endpoints, quick: bool, rounds: usize) -> anyhow::Result<Outcome> {
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

async fn case(endpoints: &Endpoints, rate: u64, seconds: f64, rounds: usize) -> anyhow::Result<Outcome> {
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
    let topics = vec![
        events_topic(&source),
        events_topic(&bare),
        events_topic(&copy),
        dlq_topic(&copy),
        echo.clone(),
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
        },
        synthetic::copy_catalog()?,
        vec![
            Box::new(ItemToCopy { source: source.clone() }),
            Box::new(ItemToCopy { source: bare.clone() }),
        ],
    )
    .await?;
    let n = (rate as f64 * seconds) as u64;
    // Warm up both paths (group joins, transactions, metadata) before anything counts.
    drive(&source_node, rate, rate / 2, 0).await;
    settle(&latencies, rate / 2).await;
    latencies.lock().map(|mut v| v.clear()).ok();
    let (c, e) = (client.clone(), echo.clone());
    let echo_side = tokio::task::spawn_blocking(move || -> anyhow::Result<Echo> {
        let echo = Echo::new(&c, &e)?;
        echo.round(rate, rate / 2)?;
        Ok(echo)
    })
    .await??;
    let echo_side = Arc::new(echo_side);
    let registry = Registry::new(endpoints.registry()?)?;
    let schema = registry
        .register(
            &events_topic(&bare),
            synthetic::source_catalog()?.record(synthetic::ITEM)?,
        )
        .await?;
    let feeder = Arc::new(Feeder::new(&client, &events_topic(&bare), &bare, schema)?);

    let (mut base_p50, mut base_p99, mut seam_p50, mut seam_p99) = (vec![], vec![], vec![], vec![]);
    let (mut e2e_p50, mut e2e_p99) = (vec![], vec![]);
    // One seq for both seam paths: the copy keeps only a later seq per subject.
    let mut seq = rate;
    for _ in 0..rounds {
        let side = Arc::clone(&echo_side);
        let mut b = tokio::task::spawn_blocking(move || side.round(rate, n)).await??;
        b.sort_unstable();
        base_p50.push(percentile(&b, 0.50));
        base_p99.push(percentile(&b, 0.99));

        let side = Arc::clone(&feeder);
        let first = seq;
        tokio::task::spawn_blocking(move || side.round(rate, n, first)).await??;
        seq += n;
        let mut s = settle(&latencies, n).await;
        s.sort_unstable();
        seam_p50.push(percentile(&s, 0.50));
        seam_p99.push(percentile(&s, 0.99));

        drive(&source_node, rate, n, seq).await;
        seq += n;
        let mut s = settle(&latencies, n).await;
        s.sort_unstable();
        e2e_p50.push(percentile(&s, 0.50));
        e2e_p99.push(percentile(&s, 0.99));
    }
    // The bare clients go before their topics do.
    drop(echo_side);
    drop(feeder);
    copy_node.shutdown().await?;
    if let Ok(node) = Arc::try_unwrap(source_node) {
        node.shutdown().await?;
    }
    let _ = std::fs::remove_dir_all(scratch(&source));
    let _ = std::fs::remove_dir_all(scratch(&copy));
    super::delete_topics(&client, &topics).await;

    let med = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        median(&s)
    };
    let (bp50, bp99, sp50, sp99) = (med(&base_p50), med(&base_p99), med(&seam_p50), med(&seam_p99));
    let none: [Run; 0] = [];
    Ok(Outcome {
        name: format!("latency-{}k", rate / 1000),
        ratio: sp99 / bp99.max(f64::MIN_POSITIVE),
        target: "p99 <= 2.0x baseline p99 and p50 <= baseline p50 + 1000 µs".into(),
        met: sp99 <= 2.0 * bp99 && sp50 <= bp50 + 1000.0,
        baseline: Side::from_runs("bare produce → consume echo, p99", Figure::of(&base_p99, "µs"), &none),
        subject: Side::from_runs(
            "bare produce → applied at a seam consumer, p99",
            Figure::of(&seam_p99, "µs"),
            &none,
        ),
        settings: BTreeMap::from([
            ("rate_events_per_s".to_string(), json!(rate)),
            ("events_per_round".to_string(), json!(n)),
            ("rounds".to_string(), json!(rounds)),
            ("partitions".to_string(), json!(3)),
            ("replication".to_string(), json!(rf)),
            ("baseline_p50_us".to_string(), json!(Figure::of(&base_p50, "µs"))),
            ("seam_p50_us".to_string(), json!(Figure::of(&seam_p50, "µs"))),
            (
                "service_to_service_p50_us".to_string(),
                json!(Figure::of(&e2e_p50, "µs")),
            ),
            (
                "service_to_service_p99_us".to_string(),
                json!(Figure::of(&e2e_p99, "µs")),
            ),
            (
                "service_to_service".to_string(),
                json!("seam command → source store commit → transactional outbox publish → applied at the consumer; no target"),
            ),
            (
                "baseline_producer".to_string(),
                json!("acks=all, idempotent, linger.ms=0"),
            ),
            ("payload_bytes".to_string(), json!(100)),
            ("fetch_wait_max_ms".to_string(), json!(FETCH_WAIT_MS)),
        ]),
        cases: Vec::new(),
    })
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

/// The baseline: a producer and a consumer echoing receipt, kept across rounds (warm).
struct Echo {
    topic: String,
    consumer: BaseConsumer,
    producer: ThreadedProducer<InFlight>,
}

impl Echo {
    fn new(client: &ClientConfig, topic: &str) -> anyhow::Result<Self> {
        let mut fetch = client.clone();
        fetch.set("fetch.wait.max.ms", FETCH_WAIT_MS);
        let consumer = super::reader(&fetch, &format!("{topic}-echo"), topic, Offset::End)?;
        Ok(Self {
            topic: topic.to_string(),
            consumer,
            producer: unbatched(client).create_with_context(InFlight::default())?,
        })
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
                    Some(Ok(m)) => got.push(since_sent(&m)),
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
                got.push(since_sent(&m?));
            }
        }
        Ok(got)
    }
}
