//! The metrics of `seam reconcile --every`, served at `--metrics ADDR` for Prometheus: how many
//! subjects each flow has drifted by at the last audit, what the repairs rebuilt, and when the
//! job last ran, so an alert fires on drift that stays or on a job that stopped.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::repair::Repair;
use super::{FlowReport, State};

type Labels = Vec<(&'static str, String)>;

/// The job's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    runs: Counter,
    failures: Counter,
    drifted: Family<Labels, Gauge>,
    flows: Family<Labels, Gauge>,
    repaired: Family<Labels, Counter>,
    last_run: Gauge,
    run_seconds: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let runs = Counter::default();
        let failures = Counter::default();
        let drifted = Family::<Labels, Gauge>::default();
        let flows = Family::<Labels, Gauge>::default();
        let repaired = Family::<Labels, Counter>::default();
        let last_run = Gauge::default();
        let run_seconds = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register("seam_reconcile_runs", "Audits run", runs.clone());
        registry.register(
            "seam_reconcile_failures",
            "Audits that failed before comparing",
            failures.clone(),
        );
        registry.register(
            "seam_reconcile_drifted_subjects",
            "Subjects whose rows differ between source and replica at the last audit, per flow",
            drifted.clone(),
        );
        registry.register(
            "seam_reconcile_flows",
            "Flows by state at the last audit (in-sync, drifted, not-compared)",
            flows.clone(),
        );
        registry.register(
            "seam_reconcile_repaired_subjects",
            "Subjects rebuilt by a targeted replay, per consumer",
            repaired.clone(),
        );
        registry.register(
            "seam_reconcile_last_run_timestamp_seconds",
            "When the last audit finished (Unix time)",
            last_run.clone(),
        );
        registry.register(
            "seam_reconcile_run_seconds",
            "How long the last audit took",
            run_seconds.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            runs,
            failures,
            drifted,
            flows,
            repaired,
            last_run,
            run_seconds,
        }
    }
}

impl Metrics {
    /// Records one audit (and its repairs).
    pub fn audited(&self, reports: &[FlowReport], repairs: &[Repair], seconds: f64) {
        self.runs.inc();
        let mut states = [("in-sync", 0), ("drifted", 0), ("not-compared", 0)];
        for r in reports {
            let i = match r.state {
                State::InSync => 0,
                State::Drifted => 1,
                State::NotCompared(_) => 2,
            };
            states[i].1 += 1;
            self.drifted
                .get_or_create(&vec![("flow", r.flow.clone())])
                .set(r.drift.len() as i64);
        }
        for (state, n) in states {
            self.flows.get_or_create(&vec![("state", state.to_string())]).set(n);
        }
        for r in repairs.iter().filter(|r| r.swapped) {
            self.repaired
                .get_or_create(&vec![("consumer", r.consumer.clone())])
                .inc_by(r.subjects.len() as u64);
        }
        self.finished(seconds);
    }

    /// Records an audit that failed.
    pub fn failed(&self, seconds: f64) {
        self.runs.inc();
        self.failures.inc();
        self.finished(seconds);
    }

    fn finished(&self, seconds: f64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.last_run.set(now);
        self.run_seconds.get_or_create(&Vec::new()).set(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = encode(&mut out, &registry);
        }
        out
    }
}
