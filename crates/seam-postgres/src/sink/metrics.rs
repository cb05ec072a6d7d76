//! The sink's metrics (`seam_sink_*`), rendered on its `/metrics` next to those of the node of
//! the same service, under names of their own so the two never clash.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The metrics of one sink.
#[derive(Clone)]
pub struct SinkMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    service: String,
    registry: Registry,
    events: Family<Labels, Counter>,
    transactions: Family<Labels, Counter>,
    lag: Family<Labels, Gauge>,
    outbox: Family<Labels, Gauge>,
}

impl SinkMetrics {
    /// Metrics for the sink of `service`.
    pub fn new(service: &str) -> Self {
        let mut registry = Registry::default();
        let events = Family::<Labels, Counter>::default();
        registry.register(
            "seam_sink_events",
            "Foreign events a postgres sink handled, by outcome: applied, duplicate (seen before), skipped (no statement), dead-lettered",
            events.clone(),
        );
        let transactions = Family::<Labels, Counter>::default();
        registry.register(
            "seam_sink_transactions",
            "Database transactions a postgres sink committed (statements, positions and dead letters together)",
            transactions.clone(),
        );
        let lag = Family::<Labels, Gauge>::default();
        registry.register(
            "seam_sink_lag_events",
            "Events between a postgres sink's committed position and the partition's last stable offset",
            lag.clone(),
        );
        let outbox = Family::<Labels, Gauge>::default();
        registry.register(
            "seam_sink_dlq_outbox_events",
            "Dead letters committed in the sink's database and not yet produced to its DLQ topic",
            outbox.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                service: service.to_string(),
                registry,
                events,
                transactions,
                lag,
                outbox,
            }),
        }
    }

    fn labels(&self, extra: &[(&'static str, &str)]) -> Labels {
        let mut labels = vec![("service", self.inner.service.clone())];
        labels.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        labels
    }

    /// `n` events of `topic` ended as `outcome`.
    pub fn events(&self, topic: &str, outcome: &str, n: u64) {
        self.inner
            .events
            .get_or_create(&self.labels(&[("topic", topic), ("outcome", outcome)]))
            .inc_by(n);
    }

    /// A committed transaction.
    pub fn transaction(&self) {
        self.inner.transactions.get_or_create(&self.labels(&[])).inc();
    }

    /// The lag of one partition.
    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        let p = partition.to_string();
        self.inner
            .lag
            .get_or_create(&self.labels(&[("topic", topic), ("partition", &p)]))
            .set(lag);
    }

    /// Dead letters waiting for the DLQ topic.
    pub fn set_outbox(&self, n: i64) {
        self.inner.outbox.get_or_create(&self.labels(&[])).set(n);
    }

    /// Prometheus text, without the closing `# EOF` (the node's rendering ends the page).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.inner.registry);
        out.trim_end().trim_end_matches("# EOF").to_string()
    }
}
