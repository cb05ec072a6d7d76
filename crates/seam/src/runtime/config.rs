//! How to run a node: its name, store, cluster, sources and tuning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;

use super::SnapshotSource;

/// How to run a node. Defaults follow the README; every field can come from the service's own
/// config file, environment or flags.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The service name: topic `<service>.events`, DLQ `<service>.dlq`, group `<service>`.
    pub service: String,
    /// The store directory (one per service instance).
    pub store_dir: PathBuf,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Schema registry URL (Confluent API).
    pub registry: String,
    /// Extra librdkafka properties for every client (security settings, tuning).
    pub kafka: BTreeMap<String, String>,
    /// Consumer group id; defaults to the service name.
    pub group_id: Option<String>,
    /// Static group membership id of this instance (`group.instance.id`); defaults to the service
    /// name. A restarted instance takes its partitions back at once instead of waiting out the
    /// session timeout of its crashed predecessor; a second process with the same id is fenced.
    /// A digest of the topics read is appended, because the broker does not rebalance a static
    /// member whose subscription changed (KAFKA-12759): after `seam register` the consumer joins
    /// as a new member, and the old one's partitions move after the session timeout (30 s unless
    /// `session.timeout.ms` is set in `kafka`).
    pub instance_id: Option<String>,
    /// Most records per consumer batch (one store commit covers at least one batch).
    pub max_batch: usize,
    /// How long shutdown keeps publishing durable entries and dead letters.
    pub drain: Duration,
    /// Snapshots to bootstrap from, by source service: used only for a source this store does
    /// not read yet (or whose bootstrap was interrupted).
    pub bootstrap: BTreeMap<String, SnapshotSource>,
    /// The sources (service names) to read from the start; translators given for other sources
    /// wait for `seam register`. `None`: every translator given is read.
    pub sources: Option<BTreeSet<String>>,
    /// The storage engine to use instead of opening sled in `store_dir` (another engine, or one
    /// that injects faults in tests). `store_dir` still holds spooled snapshots and replays.
    pub engine: Option<SharedEngine>,
    /// The engine of the store in `store_dir`: `None` opens an existing store with the engine
    /// that created it and creates a new one with the default; a named engine must match an
    /// existing store's.
    pub store_engine: Option<crate::store::StoreEngine>,
}

/// An engine handed to a node in its configuration.
#[derive(Clone)]
pub struct SharedEngine(pub Arc<dyn crate::store::Engine>);

impl std::fmt::Debug for SharedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedEngine")
    }
}

impl NodeConfig {
    /// A configuration with defaults: batches of 2000, 10 s drain.
    pub fn new(service: &str, store_dir: PathBuf, brokers: &str, registry: &str) -> Self {
        Self {
            service: service.to_string(),
            store_dir,
            brokers: brokers.to_string(),
            registry: registry.to_string(),
            kafka: BTreeMap::new(),
            group_id: None,
            instance_id: None,
            max_batch: 2000,
            drain: Duration::from_secs(10),
            bootstrap: BTreeMap::new(),
            sources: None,
            engine: None,
            store_engine: None,
        }
    }

    pub(super) fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("client.id", format!("seam-{}", self.service));
        for (k, v) in &self.kafka {
            c.set(k, v);
        }
        c
    }
}
