//! Shared helpers for seam's integration tests, which always run against a real Kafka
//! cluster and schema registry (never a mock).
//!
//! - [`TestCluster::connect`] finds the cluster the same way the `seam` CLI does
//!   (`SEAM_BROKERS`/`SEAM_REGISTRY`, else the running local stack) and fails with the
//!   command to run when there is none.
//! - [`unique_name`] gives each test its own topics and groups, so tests run in parallel
//!   and re-runs never see old data.
//! - [`wait_until`] polls a condition against an explicit deadline; tests never sleep a
//!   fixed time and hope.
//! - [`BrokerFaults`] kills a broker of the local 3-node stack with SIGKILL and restarts it.
//! - [`store_faults::FaultyEngine`] makes a service's store fail or stall on command.
//! - [`powerloss::PowerLoss`] replays a power loss on a process's real files (what was fsynced
//!   survives, nothing else).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use seam_local::cluster::{Endpoints, Origin};
use seam_local::Home;

pub mod powerloss;
pub mod store_faults;

/// The real cluster a test talks to.
#[derive(Debug, Clone)]
pub struct TestCluster {
    /// Brokers and registry.
    pub endpoints: Endpoints,
}

impl TestCluster {
    /// Finds the cluster or panics with what to run to get one.
    pub fn connect() -> Self {
        match Endpoints::discover() {
            Ok(endpoints) => Self { endpoints },
            Err(e) => panic!(
                "integration tests need a real cluster: {e}\n\
                 Run `scripts/test` (it starts the local 3-broker stack), or `seam local up --brokers 3` first."
            ),
        }
    }

    /// The `bootstrap.servers` value.
    pub fn bootstrap(&self) -> String {
        self.endpoints.bootstrap_servers()
    }

    /// The registry's Confluent-compatible base URL; panics when none is configured.
    pub fn registry(&self) -> String {
        match self.endpoints.registry() {
            Ok(url) => url.to_string(),
            Err(e) => panic!("this test needs a schema registry: {e}"),
        }
    }

    /// The versions the registry holds of `subject` (none for a subject it does not know): what
    /// a test of deploy checks was, or was not, registered.
    pub async fn subject_versions(&self, subject: &str) -> Vec<i64> {
        let url = format!("{}/subjects/{subject}/versions", self.registry());
        reqwest::get(&url)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .json()
            .await
            .unwrap_or_default()
    }

    /// Number of brokers listed for bootstrap.
    pub fn broker_count(&self) -> usize {
        self.endpoints.brokers.len()
    }

    /// A client config with the bootstrap servers set.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        config
    }

    /// Creates a topic and waits until it is usable; `configs` are topic-level settings.
    pub async fn create_topic(&self, name: &str, partitions: i32, replication: i32, configs: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .unwrap_or_else(|e| panic!("cannot create an admin client: {e}"));
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(&[topic], &opts)
            .await
            .unwrap_or_else(|e| panic!("create topic {name}: {e}"));
        for r in results {
            if let Err((t, e)) = r {
                panic!("create topic {t}: {e}");
            }
        }
    }

    /// Deletes a topic and waits until it is gone from the cluster's metadata.
    pub async fn delete_topic(&self, name: &str) {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .unwrap_or_else(|e| panic!("cannot create an admin client: {e}"));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for r in admin
            .delete_topics(&[name], &opts)
            .await
            .unwrap_or_else(|e| panic!("delete topic {name}: {e}"))
        {
            if let Err((t, e)) = r {
                panic!("delete topic {t}: {e}");
            }
        }
        let probe: BaseConsumer = self.client_config().create().unwrap_or_else(|e| panic!("{e}"));
        let gone = wait_until(Duration::from_secs(60), &format!("{name} to be deleted"), || {
            let listed = probe
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|m| m.topics().iter().any(|t| t.name() == name))
                .unwrap_or(true);
            async move {
                if listed {
                    Err("still listed".to_string())
                } else {
                    Ok(())
                }
            }
        })
        .await;
        gone.unwrap_or_else(|e| panic!("{e}"));
    }

    /// The replication factor tests should use: 3 on the three-broker stack, else what fits.
    pub fn replication(&self) -> i32 {
        self.broker_count().clamp(1, 3) as i32
    }

    /// Every committed record of `topic`, read from the log start to the current end of each
    /// partition (read_committed, so aborted transactions never show).
    pub fn read_all(&self, topic: &str) -> Vec<ReadRecord> {
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", unique_name("seam-test-reader"))
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create()
            .unwrap_or_else(|e| panic!("cannot create a reader: {e}"));
        let timeout = Duration::from_secs(10);
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            let (low, _) = consumer
                .fetch_watermarks(topic, *p, timeout)
                .unwrap_or_else(|e| panic!("offsets of {topic}/{p}: {e}"));
            tpl.add_partition_offset(topic, *p, Offset::Offset(low))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        consumer.assign(&tpl).unwrap_or_else(|e| panic!("assign {topic}: {e}"));
        let mut open: std::collections::BTreeSet<i32> = partitions.into_iter().collect();
        for p in open.clone() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, timeout)
                .unwrap_or_else(|e| panic!("{e}"));
            if high <= low {
                open.remove(&p);
            }
        }
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !open.is_empty() {
            assert!(
                Instant::now() < deadline,
                "reading {topic} did not reach the end within 60 s"
            );
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => out.push(ReadRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| {
                                    (
                                        h.key.to_string(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                }
                // A broker that a fault test killed or restarts: librdkafka retries; so do we,
                // until the deadline above.
                Some(Err(rdkafka::error::KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure
                    | rdkafka::types::RDKafkaErrorCode::AllBrokersDown
                    | rdkafka::types::RDKafkaErrorCode::NotLeaderForPartition
                    | rdkafka::types::RDKafkaErrorCode::LeaderNotAvailable,
                ))) => {}
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        out
    }

    /// Broker fault injection; panics unless this is a local stack with at least `min` brokers.
    pub fn broker_faults(&self, min: u8) -> BrokerFaults {
        match self.endpoints.origin {
            Origin::LocalStack { brokers } if brokers >= min => BrokerFaults {
                home: Home::from_env().unwrap_or_else(|e| panic!("{e}")),
                brokers,
            },
            ref other => panic!(
                "this fault test kills and restarts brokers, so it needs the local stack with at least {min} brokers \
                 (found: {other}); run `seam local up --brokers 3`, or skip fault tests with `cargo test -- --skip fault_`"
            ),
        }
    }
}

/// One record read back by [`TestCluster::read_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers as text.
    pub headers: std::collections::BTreeMap<String, String>,
}

impl ReadRecord {
    /// The key as text.
    pub fn key_text(&self) -> String {
        String::from_utf8_lossy(self.key.as_deref().unwrap_or_default()).into_owned()
    }
}

/// Kills and restarts brokers of the local stack.
#[derive(Debug, Clone)]
pub struct BrokerFaults {
    home: Home,
    brokers: u8,
}

impl BrokerFaults {
    /// Broker ids of the stack (1-based).
    pub fn node_ids(&self) -> Vec<u8> {
        (1..=self.brokers).collect()
    }

    /// SIGKILLs broker `node_id`: no controlled shutdown, as in a crash.
    pub fn kill(&self, node_id: u8) {
        seam_local::kill_broker(&self.home, node_id).unwrap_or_else(|e| panic!("kill broker {node_id}: {e}"));
    }

    /// Starts broker `node_id` again on its old data and waits until it is registered.
    pub async fn restart(&self, node_id: u8) {
        seam_local::restart_broker(&self.home, node_id)
            .await
            .unwrap_or_else(|e| panic!("restart broker {node_id}: {e}"));
    }
}

/// A SQL connection to `url` (a test's PostgreSQL), its driver running in the background.
pub async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A name no other test or earlier run uses: `<prefix>-<pid>-<time>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{micros}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` until it yields `Some`, or fails with `what` and the last observation
/// once `timeout` has passed.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(20);
    loop {
        let last = match check().await {
            Ok(v) => return Ok(v),
            Err(observed) => observed,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out after {timeout:?} waiting for {what}; last seen: {last}"
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_within_a_process() {
        assert_ne!(unique_name("t"), unique_name("t"));
    }

    #[tokio::test]
    async fn wait_until_returns_the_value_or_reports_what_it_saw() {
        let mut n = 0;
        let v = wait_until(Duration::from_secs(5), "n to reach 3", || {
            n += 1;
            let now = n;
            async move {
                if now >= 3 {
                    Ok(now)
                } else {
                    Err(format!("n={now}"))
                }
            }
        })
        .await;
        assert_eq!(v, Ok(3));
        let err = wait_until(Duration::from_millis(50), "never", || async {
            Err::<(), _>("still no".to_string())
        })
        .await
        .expect_err("must time out");
        assert!(err.contains("never") && err.contains("still no"), "{err}");
    }
}
