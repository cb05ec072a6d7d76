//! `seam bench replay`: `seam replay`'s rebuild of a replica from offset 0 (a shadow store fed
//! through the translator and the writer, then compared key by key with the live one) against
//! the least a rebuild must do: drain the topic with a raw consumer and batch-insert the same
//! records into a fresh database of the same engine (sled or fjall). Both are timed from request to a durable result.

use std::time::{Duration, Instant};

use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset};
use serde_json::json;

use super::cpu::Meter;
use super::report::{Outcome, Run, Side};
use super::synthetic::{self, CopyService, ItemToCopy};
use super::translator::{create_topics, fill, scratch, Settings};
use seam::codec::Registry;
use seam::runtime::{Node, ReplayRequest, ReplayStatus};
use seam::store::{Engine, FjallEngine, SledEngine, StoreEngine};
use seam::translator::{dlq_topic, events_topic};

/// The target: seam's rebuild at least 0.8× the raw drain-and-insert rate.
const TARGET: f64 = 0.80;

/// Runs the benchmark.
pub async fn run(endpoints: &super::Setup, quick: bool, rounds: usize) -> anyhow::Result<Outcome> {
    let tag = super::run_tag("rp");
    let client = endpoints.client();
    let rf = super::replication(&client).await?;
    let events = if quick { 30_000 } else { 500_000 };
    let s = Settings {
        events,
        size: 200,
        partitions: 3,
        rounds,
        subjects: events / 10,
    };
    let source = format!("{tag}-src");
    let consumer = format!("{tag}-copy");
    let topics = vec![events_topic(&source), events_topic(&consumer), dlq_topic(&consumer)];
    create_topics(
        &client,
        &[
            (events_topic(&source), s.partitions),
            (events_topic(&consumer), s.partitions),
            (dlq_topic(&consumer), 1),
        ],
        rf,
    )
    .await?;
    fill(&client, &Registry::new(endpoints.registry()?)?, &source, &s).await?;

    // The live consumer, caught up once; every round rebuilds its replica beside it.
    let store_dir = scratch(&consumer);
    let config = super::node_config(endpoints, &consumer, store_dir.clone())?;
    let node = Node::start(
        config,
        CopyService::replicating(&source),
        synthetic::copy_catalog()?,
        vec![Box::new(ItemToCopy { source: source.clone() })],
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(900);
    while node.store().published_seq()? < events {
        anyhow::ensure!(Instant::now() < deadline, "the live copy did not catch up within 900 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (mut baseline, mut subject) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (c, t, dir, engine) = (
            client.clone(),
            events_topic(&source),
            scratch(&format!("{tag}-raw{round}")),
            endpoints.engine,
        );
        baseline.push(tokio::task::spawn_blocking(move || drain_and_insert(&c, &t, &dir, engine, events)).await??);
        subject.push(replay(&node).await?);
    }
    node.shutdown().await?;
    let _ = std::fs::remove_dir_all(&store_dir);
    super::delete_topics(&client, &topics).await;

    let baseline = Side::throughput(
        &format!("raw consume drain + {} batch insert", endpoints.engine),
        &baseline,
    );
    let subject = Side::throughput("seam replay: shadow rebuild + compare", &subject);
    let ratio = subject.figure.median / baseline.figure.median.max(f64::MIN_POSITIVE);
    Ok(Outcome {
        name: "replay".into(),
        ratio,
        target: format!(">= {TARGET:.2}"),
        met: ratio >= TARGET,
        baseline,
        subject,
        settings: s
            .described(rf)
            .into_iter()
            .chain([
                (
                    "seam".to_string(),
                    json!("dry run: the rebuilt replica is compared, not swapped"),
                ),
                (
                    "baseline".to_string(),
                    json!(format!(
                        "BaseConsumer assign from 0, one {} batch per 2000 records, one flush",
                        endpoints.engine
                    )),
                ),
            ])
            .collect(),
        cases: Vec::new(),
    })
}

/// One `seam replay --dry-run` of the live node; its own report gives events and wall time.
async fn replay(node: &Node<CopyService>) -> anyhow::Result<Run> {
    let meter = Meter::start();
    node.replay(ReplayRequest {
        dry_run: true,
        ..Default::default()
    })?;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        match node.replay_status() {
            Some(ReplayStatus::Done(report)) => {
                anyhow::ensure!(report.differing_count == 0, "the rebuilt replica differs: {report:?}");
                return Ok(Run {
                    events: report.events,
                    seconds: report.seconds,
                    cpu: meter.stop(),
                });
            }
            Some(ReplayStatus::Failed { error }) => anyhow::bail!("the replay failed: {error}"),
            _ => {}
        }
        anyhow::ensure!(Instant::now() < deadline, "the replay did not finish within 900 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The baseline: every record of `topic` into a fresh database of the engine seam uses, in
/// batches, then flushed.
fn drain_and_insert(
    client: &ClientConfig,
    topic: &str,
    dir: &std::path::Path,
    engine: StoreEngine,
    events: u64,
) -> anyhow::Result<Run> {
    let meter = Meter::start();
    let began = Instant::now();
    let db: Box<dyn Engine> = match engine {
        StoreEngine::Sled => Box::new(SledEngine::open(dir)?),
        StoreEngine::Fjall => Box::new(FjallEngine::open(dir)?),
    };
    let consumer = super::reader(client, &format!("{topic}-drain"), topic, Offset::Beginning)?;
    let mut seen = 0u64;
    let mut batch = Vec::with_capacity(2000);
    let deadline = Instant::now() + Duration::from_secs(900);
    while seen < events {
        anyhow::ensure!(Instant::now() < deadline, "the drain read {seen} of {events} in 900 s");
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = msg?;
        batch.push((
            msg.key().unwrap_or_default().to_vec(),
            Some(msg.payload().unwrap_or_default().to_vec()),
        ));
        seen += 1;
        if batch.len() == 2000 {
            db.write(std::mem::replace(&mut batch, Vec::with_capacity(2000)))?;
        }
    }
    db.write(batch)?;
    db.flush()?;
    let seconds = began.elapsed().as_secs_f64();
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
    Ok(Run {
        events,
        seconds,
        cpu: meter.stop(),
    })
}
