//! The HTTP sink's metrics (`seam_http_sink_*`).

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The metrics of one HTTP sink.
#[derive(Clone)]
pub struct HttpSinkMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    service: String,
    registry: Registry,
    events: Family<Labels, Counter>,
    calls: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
}

impl HttpSinkMetrics {
    /// Metrics for the sink of `service`.
    pub fn new(service: &str) -> Self {
        let mut registry = Registry::default();
        let mut family = |name: &str, help: &str| {
            let f = Family::<Labels, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let events = family(
            "seam_http_sink_events",
            "Foreign events an HTTP sink handled, by outcome: delivered, skipped (no call), dead-lettered",
        );
        let calls = family("seam_http_sink_calls", "Calls the API took, by HTTP status");
        let retries = family(
            "seam_http_sink_retries",
            "Calls sent again because the API was away, failing (5xx) or busy (408, 429)",
        );
        Self {
            inner: Arc::new(Inner {
                service: service.to_string(),
                registry,
                events,
                calls,
                retries,
            }),
        }
    }

    fn labels(&self, extra: &[(&'static str, &str)]) -> Labels {
        let mut labels = vec![("service", self.inner.service.clone())];
        labels.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        labels
    }

    pub(crate) fn event(&self, topic: &str, outcome: &str) {
        self.inner
            .events
            .get_or_create(&self.labels(&[("topic", topic), ("outcome", outcome)]))
            .inc();
    }

    pub(crate) fn call(&self, status: u16) {
        let s = status.to_string();
        self.inner.calls.get_or_create(&self.labels(&[("status", &s)])).inc();
    }

    pub(crate) fn retry(&self) {
        self.inner.retries.get_or_create(&self.labels(&[])).inc();
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.inner.registry);
        out
    }
}
