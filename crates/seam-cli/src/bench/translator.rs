//! `seam bench translator`: a seam consumer (consume → decode → translate → atomic apply with
//! positions → publish what it emits, transactionally) against a raw rdkafka passthrough on the
//! same input (BaseConsumer → ThreadedProducer, batched, acks=all, idempotent, no per-message
//! await), interleaved round by round, at 1 KB and at 200 B.
//!
//! Each side's clocks, wall and CPU, start at its first consumed event and stop when the last
//! output is durable on the cluster (the passthrough's flush; seam's published seq reaching the
//! input count); group joins and process start are outside them. The events counted are those after
//! the first observation, so the first batch does not flatter either side.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset};
use serde_json::json;

use super::cpu::Meter;
use super::report::{Outcome, Run, Side};
use super::synthetic::{self, CopyService, ItemToCopy, ITEM};
use seam::codec::{wire, Registry};
use seam::runtime::in_flight::InFlight;
use seam::runtime::Node;
use seam::store::{JournalEntry, JournalId};
use seam::translator::{dlq_topic, events_topic};

/// How a translator-shaped run (translator, replay, kafka-streams) is shaped.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Input events per round.
    pub events: u64,
    /// Payload bytes per event.
    pub size: usize,
    /// Partitions of every topic.
    pub partitions: i32,
    /// Rounds of baseline + subject.
    pub rounds: usize,
    /// Distinct subjects (keys).
    pub subjects: u64,
}

/// Runs the benchmark at 1 KB and 200 B; the top-level figures are the 1 KB case's.
pub async fn run(endpoints: &super::Setup, quick: bool, rounds: usize) -> anyhow::Result<Outcome> {
    let mut cases = Vec::new();
    for (size, events, target) in [
        (1024, if quick { 15_000 } else { 200_000 }, 0.50),
        (200, if quick { 30_000 } else { 500_000 }, 0.35),
    ] {
        let settings = Settings {
            events,
            size,
            partitions: 3,
            rounds,
            subjects: events / 10,
        };
        cases.push(case(endpoints, &settings, target).await?);
    }
    let mut top = cases[0].clone();
    top.name = "translator".into();
    // The top level meets its target only when every case does.
    top.met = cases.iter().all(|c| c.met);
    top.cases = cases;
    Ok(top)
}

async fn case(endpoints: &super::Setup, s: &Settings, target: f64) -> anyhow::Result<Outcome> {
    let tag = super::run_tag("tr");
    let client = endpoints.client();
    let rf = super::replication(&client).await?;
    let source = format!("{tag}-src");
    let mut topics = vec![events_topic(&source)];
    create_topics(&client, &[(events_topic(&source), s.partitions)], rf).await?;
    let registry = Registry::new(endpoints.registry()?)?;
    fill(&client, &registry, &source, s).await?;

    let mut baseline = Vec::new();
    let mut subject = Vec::new();
    for round in 0..s.rounds {
        let out = events_topic(&format!("{tag}-raw{round}"));
        create_topics(&client, &[(out.clone(), s.partitions)], rf).await?;
        topics.push(out.clone());
        let (c, input, n) = (client.clone(), events_topic(&source), s.events);
        baseline.push(tokio::task::spawn_blocking(move || passthrough(&c, &input, &out, n)).await??);

        let consumer = format!("{tag}-cp{round}");
        copy_topics(&client, &consumer, s, rf, &mut topics).await?;
        subject.push(seam_copy(endpoints, &source, &consumer, s.events, 0).await?);
    }
    super::delete_topics(&client, &topics).await;

    let baseline = Side::throughput("rdkafka consume → produce passthrough", &baseline);
    let subject = Side::throughput("seam translator: decode, apply, publish", &subject);
    let ratio = subject.figure.median / baseline.figure.median.max(f64::MIN_POSITIVE);
    Ok(Outcome {
        name: format!("translator-{}b", s.size),
        ratio,
        target: format!(">= {target:.2}"),
        met: ratio >= target,
        baseline,
        subject,
        settings: s
            .described(rf)
            .into_iter()
            .chain([
                (
                    "producer".to_string(),
                    json!("acks=all, idempotent, linger.ms=5, batch.num.messages=10000, no compression"),
                ),
                (
                    "seam".to_string(),
                    json!("max_batch=2000, one store commit per batch, transactional publisher"),
                ),
            ])
            .collect(),
        cases: Vec::new(),
    })
}

impl Settings {
    /// The settings every report of such a run prints, under the same names.
    pub(super) fn described(&self, rf: i32) -> BTreeMap<String, serde_json::Value> {
        BTreeMap::from([
            ("events".to_string(), json!(self.events)),
            ("message_bytes".to_string(), json!(self.size)),
            ("partitions".to_string(), json!(self.partitions)),
            ("replication".to_string(), json!(rf)),
            ("subjects".to_string(), json!(self.subjects)),
            ("rounds".to_string(), json!(self.rounds)),
        ])
    }
}

/// A copy consumer's topics (`<consumer>.events`, `<consumer>.dlq`), created and added to
/// `topics` (what the benchmark deletes at the end).
pub(super) async fn copy_topics(
    client: &ClientConfig,
    consumer: &str,
    s: &Settings,
    rf: i32,
    topics: &mut Vec<String>,
) -> anyhow::Result<()> {
    create_topics(
        client,
        &[(events_topic(consumer), s.partitions), (dlq_topic(consumer), 1)],
        rf,
    )
    .await?;
    topics.extend([events_topic(consumer), dlq_topic(consumer)]);
    Ok(())
}

/// Creates topics (RF `rf`), tolerating ones that exist.
pub(super) async fn create_topics(client: &ClientConfig, topics: &[(String, i32)], rf: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client.create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(rf)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.create_topics(new.iter(), &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => anyhow::bail!("creating {t}: {e}"),
        }
    }
    Ok(())
}

/// Writes the input: `events` items, framed and headed exactly as a seam publisher would (the
/// source's journal id and each subject's previous seq included), so the consumer takes them in
/// as it takes in any seam source's events.
pub(super) async fn fill(client: &ClientConfig, registry: &Registry, source: &str, s: &Settings) -> anyhow::Result<()> {
    let catalog = synthetic::source_catalog()?;
    let topic = events_topic(source);
    let id = registry.register(&topic, catalog.record(ITEM)?).await?;
    let (client, source, s) = (client.clone(), source.to_string(), s.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let producer: ThreadedProducer<InFlight> = fast_producer(&client).create_with_context(InFlight::default())?;
        let mut heads = Heads::new(&source)?;
        for i in 0..s.events {
            let subject = format!("s{}", i % s.subjects.max(1));
            let item = synthetic::item(subject.clone(), i as i64 + 1, s.size);
            let value = wire::frame(id, &catalog.encode(ITEM, &item)?);
            send(
                &producer,
                BaseRecord::to(&topic)
                    .key(subject.as_str())
                    .payload(value.as_slice())
                    .headers(heads.next(&subject)),
            )?;
        }
        acknowledged(&producer)?;
        Ok(())
    })
    .await??;
    Ok(())
}

/// The headers a seam publisher puts on a source's events: one journal (distinct per run, as a
/// new source store's is), consecutive seqs and each subject's previous seq, so a consumer takes
/// the benchmark's input in as it takes in any seam source's events.
pub(super) struct Heads {
    service: String,
    journal: JournalId,
    last_seq: u64,
    last_of_subject: HashMap<String, u64>,
}

impl Heads {
    pub(super) fn new(service: &str) -> anyhow::Result<Self> {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i64(synthetic::now_us());
        let journal = JournalId::parse(&format!("{:016x}:1", h.finish())).context("the benchmark's journal id")?;
        Ok(Self {
            service: service.to_string(),
            journal,
            last_seq: 0,
            last_of_subject: HashMap::new(),
        })
    }

    /// The headers of the next entry, about `subject` (seqs from 1, without gaps).
    pub(super) fn next(&mut self, subject: &str) -> OwnedHeaders {
        self.last_seq += 1;
        let seq = self.last_seq;
        let prev = self.last_of_subject.insert(subject.to_string(), seq).unwrap_or(0);
        let entry = JournalEntry {
            seq,
            subject: subject.to_string(),
            record: ITEM.to_string(),
            time_ms: seam::envelope::now_ms(),
            correlation_id: None,
            causation_id: None,
            body: Vec::new(),
            schema: None,
            prev: Some(prev),
            trace: None,
        };
        seam::headers::headers(&self.service, &self.journal, &entry, None)
    }
}

/// A producer tuned for throughput: batched, acks=all, idempotent.
pub(super) fn fast_producer(client: &ClientConfig) -> ClientConfig {
    let mut c = client.clone();
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000");
    c
}

/// Sends, waiting for room when librdkafka's queue is full (never per message otherwise).
pub(super) fn send(producer: &ThreadedProducer<InFlight>, mut record: BaseRecord<'_, str, [u8]>) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => {
                producer.context().sent();
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Waits until every send is acknowledged (not `flush`, whose poll rounds up to 100 ms).
pub(super) fn acknowledged(producer: &ThreadedProducer<InFlight>) -> anyhow::Result<()> {
    match producer.context().wait(Duration::from_secs(120)) {
        Some(0) => Ok(()),
        Some(failed) => anyhow::bail!("{failed} sends failed"),
        None => anyhow::bail!("sends were not acknowledged within 120 s"),
    }
}

/// The baseline: read every input event and produce it unchanged to `out`.
fn passthrough(client: &ClientConfig, input: &str, out: &str, events: u64) -> anyhow::Result<Run> {
    let consumer = super::reader(client, &format!("{out}-reader"), input, Offset::Beginning)?;
    let producer: ThreadedProducer<InFlight> = fast_producer(client).create_with_context(InFlight::default())?;
    let mut seen = 0u64;
    let mut first: Option<(Instant, Meter)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen < events {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the passthrough read {seen} of {events} events in 600 s"
        );
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = msg.context("passthrough read")?;
        first.get_or_insert_with(|| (Instant::now(), Meter::start()));
        let mut record = BaseRecord::to(out).payload(msg.payload().unwrap_or_default());
        if let Some(k) = msg.key() {
            record = record.key(std::str::from_utf8(k).unwrap_or_default());
        }
        if let Some(h) = msg.headers() {
            record = record.headers(h.detach());
        }
        send(&producer, record)?;
        seen += 1;
    }
    acknowledged(&producer)?;
    let (start, meter) = first.context("the passthrough read nothing")?;
    Ok(Run {
        events: events.saturating_sub(1),
        seconds: start.elapsed().as_secs_f64(),
        cpu: meter.stop(),
    })
}

/// The subject: a seam consumer node copying every input event, until all it emitted is published;
/// timed from the first event applied after the first `warmup` ones.
pub(super) async fn seam_copy(
    endpoints: &super::Setup,
    source: &str,
    consumer: &str,
    events: u64,
    warmup: u64,
) -> anyhow::Result<Run> {
    let store_dir = scratch(consumer);
    let config = super::node_config(endpoints, consumer, store_dir.clone())?;
    let node = Node::start(
        config,
        CopyService::default(),
        synthetic::copy_catalog()?,
        vec![Box::new(ItemToCopy {
            source: source.to_string(),
        })],
    )
    .await?;
    let topic = events_topic(source);
    let applied = |node: &Node<CopyService>| -> u64 {
        node.store()
            .positions()
            .map(|p| {
                p.iter()
                    .filter(|(t, _, _)| *t == topic)
                    .map(|(_, _, o)| o.max(0) as u64)
                    .sum()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    // Both clocks (wall and CPU) start at the first event applied, as the baseline's and the
    // Kafka Streams peer's do at their first record: the node's start is not per-event work.
    let (start, meter, counted_from) = loop {
        let n = applied(&node);
        if n > warmup {
            break (Instant::now(), Meter::start(), n);
        }
        anyhow::ensure!(Instant::now() < deadline, "seam applied nothing within 600 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    while node.store().published_seq()? < events {
        anyhow::ensure!(
            Instant::now() < deadline,
            "seam published {} of {events} events in 600 s",
            node.store().published_seq()?
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = meter.stop();
    node.shutdown().await?;
    let _ = std::fs::remove_dir_all(&store_dir);
    Ok(Run {
        events: events.saturating_sub(counted_from),
        seconds,
        cpu,
    })
}

/// A fresh folder for a store.
pub(super) fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join("seam-bench").join(name)
}
