//! `seam bench bootstrap`: a new consumer of a long history (1 M events over 100 K subjects)
//! bootstrapping from the source's snapshot and its offset map, then catching up on what came
//! after the cut, against the same consumer replaying the whole topic from offset 0. Both end
//! with the same replica (checked by digest); each is timed from its start to caught up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::cpu::Meter;
use super::report::{Figure, Outcome, Run, Side};
use super::synthetic::{self, CopyService, Item, ItemToCopy, Source};
use super::translator::{create_topics, scratch};
use seam::runtime::{Node, SnapshotSource};
use seam::service::Cause;
use seam::translator::{dlq_topic, events_topic};

/// Bootstrap must take at most this share of a full replay's time.
const TARGET: f64 = 0.20;

/// Runs the benchmark.
pub async fn run(endpoints: &super::Setup, quick: bool, rounds: usize) -> anyhow::Result<Outcome> {
    let (events, subjects) = if quick {
        (100_000u64, 10_000u64)
    } else {
        (1_000_000, 100_000)
    };
    let after_cut = events / 100;
    let tag = super::run_tag("bs");
    let client = endpoints.client();
    let rf = super::replication(&client).await?;
    let source = format!("{tag}-src");
    let mut topics = vec![events_topic(&source)];
    create_topics(&client, &[(events_topic(&source), 6)], rf).await?;
    let config = |name: &str| super::node_config(endpoints, name, scratch(name));
    let node = Arc::new(Node::start(config(&source)?, Source, synthetic::source_catalog()?, vec![]).await?);
    history(&node, 0, events - after_cut, subjects).await?;
    let file = scratch(&format!("{tag}-snapshot.avro"));
    std::fs::create_dir_all(file.parent().unwrap_or(&file))?;
    let exported = node.snapshot(Duration::from_secs(120)).await?;
    let snapshot_records = exported.meta.records;
    exported.persist(&file)?;
    history(&node, events - after_cut, events, subjects).await?;
    let deadline = Instant::now() + Duration::from_secs(900);
    while node.store().published_seq()? < events {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the source did not publish its history within 900 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (mut replayed, mut bootstrapped) = (Vec::new(), Vec::new());
    let mut digests = Vec::new();
    for round in 0..rounds {
        for (bootstrap, runs) in [(false, &mut replayed), (true, &mut bootstrapped)] {
            let name = format!("{tag}-{}{round}", if bootstrap { "boot" } else { "full" });
            create_topics(&client, &[(events_topic(&name), 3), (dlq_topic(&name), 1)], rf).await?;
            topics.extend([events_topic(&name), dlq_topic(&name)]);
            let mut c = config(&name)?;
            if bootstrap {
                c.bootstrap.insert(source.clone(), SnapshotSource::File(file.clone()));
            }
            let expected = if bootstrap {
                snapshot_records + after_cut
            } else {
                events
            };
            let meter = Meter::start();
            let began = Instant::now();
            let copy = Node::start(
                c,
                CopyService::default(),
                synthetic::copy_catalog()?,
                vec![Box::new(ItemToCopy { source: source.clone() })],
            )
            .await?;
            while copy.store().published_seq()? < expected {
                anyhow::ensure!(
                    Instant::now() < deadline + Duration::from_secs(900),
                    "{name} did not catch up"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let seconds = began.elapsed().as_secs_f64();
            runs.push(Run {
                events,
                seconds,
                cpu: meter.stop(),
            });
            digests.push(copy.store().digest()?);
            copy.shutdown().await?;
            let _ = std::fs::remove_dir_all(scratch(&name));
        }
    }
    if let Ok(node) = Arc::try_unwrap(node) {
        node.shutdown().await?;
    }
    let _ = std::fs::remove_dir_all(scratch(&source));
    let _ = std::fs::remove_file(&file);
    super::delete_topics(&client, &topics).await;
    digests.dedup();
    anyhow::ensure!(
        digests.len() == 1,
        "bootstrap and replay ended with different replicas: {digests:?}"
    );

    let seconds = |runs: &[Run]| runs.iter().map(|r| r.seconds).collect::<Vec<_>>();
    let baseline = Side::from_runs(
        "full replay from offset 0",
        Figure::of(&seconds(&replayed), "s"),
        &replayed,
    );
    let subject = Side::from_runs(
        "bootstrap from snapshot + catch-up",
        Figure::of(&seconds(&bootstrapped), "s"),
        &bootstrapped,
    );
    let ratio = subject.figure.median / baseline.figure.median.max(f64::MIN_POSITIVE);
    Ok(Outcome {
        name: "bootstrap".into(),
        ratio,
        target: format!("<= {TARGET:.2} of the replay's time"),
        met: ratio <= TARGET,
        baseline,
        subject,
        settings: BTreeMap::from([
            ("events".to_string(), json!(events)),
            ("subjects".to_string(), json!(subjects)),
            ("events_after_the_cut".to_string(), json!(after_cut)),
            ("snapshot_records".to_string(), json!(snapshot_records)),
            ("message_bytes".to_string(), json!(200)),
            ("partitions".to_string(), json!(6)),
            ("replication".to_string(), json!(rf)),
            ("rounds".to_string(), json!(rounds)),
            (
                "timed".to_string(),
                json!("from Node::start (snapshot load included) until every input is applied and published"),
            ),
        ]),
        cases: Vec::new(),
    })
}

/// Items `from..to` through the source's own command path, many in flight (group commit).
async fn history(node: &Arc<Node<Source>>, from: u64, to: u64, subjects: u64) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in from..to {
        let node = Arc::clone(node);
        tasks.spawn(async move {
            let item = Item {
                subject: format!("s{}", i % subjects),
                seq: i as i64 + 1,
                sent_us: 0,
                payload: "x".repeat(200),
            };
            node.execute(item, Cause::default()).await.map(drop)
        });
        if tasks.len() >= 2000 {
            if let Some(r) = tasks.join_next().await {
                r??;
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}
