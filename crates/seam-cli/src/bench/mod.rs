//! `seam bench <name>`: benchmarks that run seam side by side with a baseline in the same run,
//! interleaved round by round on the same cluster, and report medians, ranges, the ratio
//! against its target, CPU per million events (seam and broker) and every setting. Machines
//! here are noisy; only the ratio of two figures taken together means something.

pub mod bootstrap;
pub mod cdc;
pub mod cpu;
pub mod footprint;
pub mod kafka_streams;
pub mod latency;
pub mod markdown;
pub mod replay;
pub mod report;
pub mod synthetic;
pub mod translator;

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use seam::runtime::NodeConfig;
use seam::store::StoreEngine;
use seam_local::cluster::Endpoints;

/// What a benchmark runs against: the cluster, and the store engine of every seam node (and of
/// the baselines that write a store), so engines are compared on the same workload.
pub struct Setup {
    /// The cluster.
    pub endpoints: Endpoints,
    /// The store engine.
    pub engine: StoreEngine,
}

impl std::ops::Deref for Setup {
    type Target = Endpoints;

    fn deref(&self) -> &Endpoints {
        &self.endpoints
    }
}

/// A benchmark node's settings: its store in `store`, the cluster's client properties.
pub(crate) fn node_config(endpoints: &Setup, name: &str, store: PathBuf) -> anyhow::Result<NodeConfig> {
    let mut c = NodeConfig::new(name, store, &endpoints.bootstrap_servers(), endpoints.registry()?);
    c.kafka = endpoints.kafka.0.clone();
    c.store_engine = Some(endpoints.engine);
    Ok(c)
}

/// A baseline's consumer: assigned every partition of `topic` at `from`, no group offsets kept.
pub(crate) fn reader(client: &ClientConfig, group: &str, topic: &str, from: Offset) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = md.topics().first().map_or(0, |t| t.partitions().len() as i32);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, from)?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

/// Every benchmark, in the order `seam bench all` runs them.
pub const NAMES: [&str; 7] = [
    "translator",
    "replay",
    "bootstrap",
    "latency",
    "kafka-streams",
    "footprint",
    "cdc",
];

/// Runs the benchmark called `name`; every result (and each case of it) names the cluster's
/// shape, since ratios swing with it (1 vs 3 brokers, replication), and the store engine.
pub async fn run(name: &str, endpoints: &Setup, quick: bool, rounds: usize) -> anyhow::Result<report::Outcome> {
    let mut outcome = run_one(name, endpoints, quick, rounds).await?;
    let brokers = brokers(&endpoints.client()).await?;
    let shape = serde_json::json!(format!(
        "{brokers} broker(s), replication {} ({})",
        brokers.clamp(1, 3),
        endpoints.origin
    ));
    let engine = serde_json::json!(endpoints.engine.name());
    outcome.settings.insert("cluster".into(), shape.clone());
    outcome.settings.insert("store_engine".into(), engine.clone());
    for case in &mut outcome.cases {
        case.settings.insert("cluster".into(), shape.clone());
        case.settings.insert("store_engine".into(), engine.clone());
    }
    Ok(outcome)
}

async fn run_one(name: &str, endpoints: &Setup, quick: bool, rounds: usize) -> anyhow::Result<report::Outcome> {
    match name {
        "translator" => translator::run(endpoints, quick, rounds).await,
        "replay" => replay::run(endpoints, quick, rounds).await,
        "bootstrap" => bootstrap::run(endpoints, quick, rounds).await,
        "latency" => latency::run(endpoints, quick, rounds).await,
        "kafka-streams" => kafka_streams::run(endpoints, quick, rounds).await,
        "footprint" => footprint::run(endpoints, quick, rounds).await,
        "cdc" => cdc::run(endpoints, quick, rounds).await,
        other => anyhow::bail!("no benchmark called {other}; there are {}", NAMES.join(", ")),
    }
}

/// A name prefix no other run uses (service names: lowercase, digits, dashes).
pub fn run_tag(kind: &str) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("bench-{kind}-{}-{ms}", std::process::id())
}

/// Replication factor for bench topics: 3, or the broker count when fewer.
pub async fn replication(client: &ClientConfig) -> anyhow::Result<i32> {
    Ok(brokers(client).await?.clamp(1, 3))
}

/// Fails with what to do when the cluster does not answer, before a benchmark creates anything:
/// otherwise the first error is librdkafka's, deep in a baseline, naming neither the brokers
/// tried nor how to start them.
pub async fn check_reachable(setup: &Setup) -> anyhow::Result<()> {
    brokers(&setup.client()).await.map(|_| ()).map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the Kafka cluster at {} ({}): {e}. Start the local stack with `seam local up`, or point SEAM_BROKERS (and SEAM_REGISTRY) at a running cluster",
            setup.brokers.join(","),
            setup.origin
        )
    })
}

/// How many brokers the cluster has.
async fn brokers(client: &ClientConfig) -> anyhow::Result<i32> {
    let client = client.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<i32> {
        let probe: BaseConsumer = client.create()?;
        let md = probe.fetch_metadata(None, Duration::from_secs(10))?;
        Ok(md.brokers().len() as i32)
    })
    .await?
}

/// Removes a run's topics (best effort: a benchmark leaves no data behind).
pub async fn delete_topics(client: &ClientConfig, topics: &[String]) {
    let Ok(admin) = client.create::<AdminClient<DefaultClientContext>>() else {
        return;
    };
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let _ = admin.delete_topics(&names, &opts).await;
}
