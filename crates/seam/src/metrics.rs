//! Every metric seam exports, defined in one place, named `seam_<noun>_<unit>[_total]`, ready for
//! a service's `/metrics` endpoint (Prometheus text format).
//!
//! Each running node owns one [`Metrics`]; labels carry the service and, where it matters, the
//! topic and partition. Per-partition gauges are removed when the partition is revoked, so a
//! dashboard never shows the lag of a partition this instance no longer reads.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The metrics of one node.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    service: String,
    registry: Registry,
    applied: Family<Labels, Counter>,
    skipped: Family<Labels, Counter>,
    dead_lettered: Family<Labels, Counter>,
    parked: Family<Labels, Counter>,
    unhandled: Family<Labels, Counter>,
    commands: Family<Labels, Counter>,
    published: Family<Labels, Counter>,
    lag: Family<Labels, Gauge>,
    backlog: Family<Labels, Gauge>,
    outbox: Family<Labels, Gauge>,
    needs_rebuild: Family<Labels, Gauge>,
    commits: Family<Labels, Counter>,
    flushes: Family<Labels, Histogram>,
    commit_seconds: Family<Labels, Histogram>,
    publish_seconds: Family<Labels, Histogram>,
    cdc_transactions: Family<Labels, Counter>,
    cdc_row_changes: Family<Labels, Counter>,
    cdc_copied_rows: Family<Labels, Counter>,
    cdc_confirmed_lsn: Family<Labels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("service", &self.inner.service).finish()
    }
}

impl Metrics {
    /// Metrics for `service`.
    pub fn new(service: &str) -> Self {
        let mut registry = Registry::default();
        let mut family = |name: &str, help: &str| {
            let f = Family::<Labels, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let applied = family("seam_events_applied", "Foreign events taken into the model");
        let skipped = family(
            "seam_events_skipped",
            "Foreign events not applied: redelivered, already applied, or filtered by the translator",
        );
        let dead_lettered = family("seam_events_dead_lettered", "Foreign events sent to the DLQ as poison");
        let parked = family(
            "seam_events_parked",
            "Foreign events parked (to the DLQ) behind an earlier poison event of the same subject",
        );
        let unhandled = family(
            "seam_events_unhandled",
            "Foreign events of a record type the translator neither reads nor ignores (skipped; declare the type)",
        );
        let commands = family(
            "seam_commands",
            "Commands applied or rejected (API, translated, redriven)",
        );
        let published = family(
            "seam_events_published",
            "Journal entries published to the service's topic",
        );
        let commits = family(
            "seam_store_commits",
            "Atomic store writes (one per group commit; the flusher makes them durable)",
        );
        let cdc_transactions = family(
            "seam_cdc_transactions",
            "Committed PostgreSQL transactions a postgres-cdc source applied (with changes to its tables)",
        );
        let cdc_row_changes = family(
            "seam_cdc_row_changes",
            "Row changes (insert, update, delete, truncate) in the transactions a postgres-cdc source applied",
        );
        let cdc_copied_rows = family(
            "seam_cdc_copied_rows",
            "Rows read by a postgres-cdc source's initial copies",
        );
        let mut gauge = |name: &str, help: &str| {
            let f = Family::<Labels, Gauge>::default();
            registry.register(name, help, f.clone());
            f
        };
        let lag = gauge(
            "seam_consumer_lag_events",
            "Events between the stored position and the partition's last stable offset",
        );
        let backlog = gauge(
            "seam_publisher_backlog_events",
            "Durable journal entries not yet published",
        );
        let outbox = gauge(
            "seam_dlq_outbox_events",
            "Dead-letter records waiting to be produced to the DLQ topic",
        );
        let needs_rebuild = gauge(
            "seam_source_needs_rebuild",
            "1 while a source is not read because events this consumer needs were deleted (see GET /subscriptions)",
        );
        let cdc_confirmed_lsn = gauge(
            "seam_cdc_confirmed_lsn",
            "The WAL position (LSN as a number) a postgres-cdc source made durable and confirmed to its slot",
        );
        let flushes = Family::<Labels, Histogram>::new_with_constructor(flush_buckets as fn() -> Histogram);
        registry.register(
            "seam_store_flush_seconds",
            "Time to make written store groups durable (one fsync covers every group queued meanwhile)",
            flushes.clone(),
        );
        let commit_seconds = Family::<Labels, Histogram>::new_with_constructor(flush_buckets as fn() -> Histogram);
        registry.register(
            "seam_store_commit_seconds",
            "Time to write one group commit to the store (applied and visible; its flush is seam_store_flush_seconds)",
            commit_seconds.clone(),
        );
        let publish_seconds = Family::<Labels, Histogram>::new_with_constructor(flush_buckets as fn() -> Histogram);
        registry.register(
            "seam_publish_transaction_seconds",
            "Time from a publisher transaction's first send to its commit on the cluster (acks=all)",
            publish_seconds.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                service: service.to_string(),
                registry,
                applied,
                skipped,
                dead_lettered,
                parked,
                unhandled,
                commands,
                published,
                lag,
                backlog,
                outbox,
                needs_rebuild,
                commits,
                flushes,
                commit_seconds,
                publish_seconds,
                cdc_transactions,
                cdc_row_changes,
                cdc_copied_rows,
                cdc_confirmed_lsn,
            }),
        }
    }

    fn labels(&self, extra: &[(&'static str, &str)]) -> Labels {
        let mut labels = vec![("service", self.inner.service.clone())];
        labels.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        labels
    }

    /// `n` foreign events of `topic` applied.
    pub fn applied(&self, topic: &str, n: u64) {
        self.inner
            .applied
            .get_or_create(&self.labels(&[("topic", topic)]))
            .inc_by(n);
    }

    /// `n` foreign events skipped for `reason` (`redelivered`, `duplicate`, `filtered`).
    pub fn skipped(&self, topic: &str, reason: &str, n: u64) {
        self.inner
            .skipped
            .get_or_create(&self.labels(&[("topic", topic), ("reason", reason)]))
            .inc_by(n);
    }

    /// An event of a record type the translator neither reads nor ignores.
    pub fn unhandled(&self, topic: &str, record: &str) {
        self.inner
            .unhandled
            .get_or_create(&self.labels(&[("topic", topic), ("record", record)]))
            .inc();
    }

    /// A poison event dead-lettered.
    pub fn dead_lettered(&self, topic: &str, kind: &str) {
        self.inner
            .dead_lettered
            .get_or_create(&self.labels(&[("topic", topic), ("kind", kind)]))
            .inc();
    }

    /// An event parked behind an earlier dead letter of its subject.
    pub fn parked(&self, topic: &str) {
        self.inner.parked.get_or_create(&self.labels(&[("topic", topic)])).inc();
    }

    /// A command applied or rejected.
    pub fn command(&self, outcome: &str) {
        self.inner
            .commands
            .get_or_create(&self.labels(&[("outcome", outcome)]))
            .inc();
    }

    /// `n` journal entries published.
    pub fn published(&self, n: u64) {
        self.inner.published.get_or_create(&self.labels(&[])).inc_by(n);
    }

    /// One group commit to the store, written in `seconds`.
    pub fn committed(&self, seconds: f64) {
        let labels = self.labels(&[]);
        self.inner.commits.get_or_create(&labels).inc();
        self.inner.commit_seconds.get_or_create(&labels).observe(seconds);
    }

    /// One publisher transaction took `seconds` from its first send to its commit.
    pub fn published_transaction(&self, seconds: f64) {
        self.inner
            .publish_seconds
            .get_or_create(&self.labels(&[]))
            .observe(seconds);
    }

    /// One flush of the store took `seconds`.
    pub fn flushed(&self, seconds: f64) {
        self.inner.flushes.get_or_create(&self.labels(&[])).observe(seconds);
    }

    /// The lag of one partition.
    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        let p = partition.to_string();
        self.inner
            .lag
            .get_or_create(&self.labels(&[("topic", topic), ("partition", &p)]))
            .set(lag);
    }

    /// Forgets a revoked partition's lag.
    pub fn remove_lag(&self, topic: &str, partition: i32) {
        let p = partition.to_string();
        self.inner
            .lag
            .remove(&self.labels(&[("topic", topic), ("partition", &p)]));
    }

    /// Durable entries not yet published.
    pub fn set_backlog(&self, n: u64) {
        self.inner.backlog.get_or_create(&self.labels(&[])).set(n as i64);
    }

    /// DLQ records not yet produced.
    pub fn set_outbox(&self, n: u64) {
        self.inner.outbox.get_or_create(&self.labels(&[])).set(n as i64);
    }

    /// Whether the consumer stopped reading `topic` until its replica is rebuilt.
    pub fn set_needs_rebuild(&self, topic: &str, needs: bool) {
        let labels = self.labels(&[("topic", topic)]);
        if needs {
            self.inner.needs_rebuild.get_or_create(&labels).set(1);
        } else {
            self.inner.needs_rebuild.remove(&labels);
        }
    }

    /// A postgres-cdc source applied a transaction of `changes` row changes.
    pub fn cdc_transaction(&self, changes: u64) {
        let labels = self.labels(&[]);
        self.inner.cdc_transactions.get_or_create(&labels).inc();
        self.inner.cdc_row_changes.get_or_create(&labels).inc_by(changes);
    }

    /// A postgres-cdc source's initial copy read `rows` rows.
    pub fn cdc_copied(&self, rows: u64) {
        self.inner.cdc_copied_rows.get_or_create(&self.labels(&[])).inc_by(rows);
    }

    /// A postgres-cdc source confirmed `lsn` to its slot.
    pub fn cdc_confirmed(&self, lsn: u64) {
        self.inner
            .cdc_confirmed_lsn
            .get_or_create(&self.labels(&[]))
            .set(i64::try_from(lsn).unwrap_or(i64::MAX));
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.inner.registry);
        out
    }
}

/// Flush time buckets: 100 µs to about 3 s, doubling.
fn flush_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_revoked_partitions_disappear() {
        let m = Metrics::new("svc");
        m.applied("a.events", 3);
        m.set_lag("a.events", 2, 7);
        let text = m.render();
        assert!(
            text.contains("seam_events_applied_total{service=\"svc\",topic=\"a.events\"} 3"),
            "{text}"
        );
        assert!(text.contains("seam_consumer_lag_events{service=\"svc\",topic=\"a.events\",partition=\"2\"} 7"));
        m.remove_lag("a.events", 2);
        assert!(!m.render().contains("partition=\"2\""));
        m.flushed(0.003);
        let text = m.render();
        assert!(
            text.contains("seam_store_flush_seconds_count{service=\"svc\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("seam_store_flush_seconds_sum{service=\"svc\"} 0.003"),
            "{text}"
        );
        for line in m.render().lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            assert!(line.starts_with("seam_"), "{line}");
        }
    }
}
