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

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use seam::cluster::{Endpoints, Origin};
use seam::local::Home;

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
        seam::local::kill_broker(&self.home, node_id).unwrap_or_else(|e| panic!("kill broker {node_id}: {e}"));
    }

    /// Starts broker `node_id` again on its old data and waits until it is registered.
    pub async fn restart(&self, node_id: u8) {
        seam::local::restart_broker(&self.home, node_id)
            .await
            .unwrap_or_else(|e| panic!("restart broker {node_id}: {e}"));
    }
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
