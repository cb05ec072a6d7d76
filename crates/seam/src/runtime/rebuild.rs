//! Sources a consumer stopped reading because the events it needs next are gone (the retention
//! guard): deleted by retention or delete-records, or the topic was recreated. The node does not
//! stop for it (its API, its own journal and its other sources go on); it leaves that source alone
//! and names the way out, which depends on the consumer:
//! - it keeps a replica built from the source ([`Service::replicas`]): `seam replay --source S
//!   --from-snapshot` (or `--from-beginning` for a recreated topic) rebuilds the replica in a
//!   shadow store and swaps it in with the source's positions, after which the source is read on;
//! - it does not (its model is written by its own commands too): the replica cannot be rebuilt;
//!   the operator restores the store from a backup older than the gap, or reads on knowingly with
//!   `seam register C --source S --accept-gap`.
//!
//! [`Service::replicas`]: crate::service::Service::replicas

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::error;

use super::retention::RetentionError;
use crate::metrics::Metrics;
use crate::service::Replica;

/// The sources waiting for a rebuild, shared by the node and its consumer loop.
pub(crate) struct Rebuilds {
    consumer: String,
    replicas: Vec<Replica>,
    waiting: Mutex<BTreeMap<String, RetentionError>>,
    topics: Arc<watch::Sender<Vec<String>>>,
    metrics: Metrics,
}

impl Rebuilds {
    pub fn new(
        consumer: &str,
        replicas: Vec<Replica>,
        topics: Arc<watch::Sender<Vec<String>>>,
        metrics: Metrics,
    ) -> Self {
        Self {
            consumer: consumer.to_string(),
            replicas,
            waiting: Mutex::default(),
            topics,
            metrics,
        }
    }

    /// What this consumer can do about `error`.
    pub fn remedy(&self, error: &RetentionError) -> String {
        let source = error.topic().trim_end_matches(".events");
        let consumer = &self.consumer;
        let rebuildable = self
            .replicas
            .iter()
            .any(|r| r.sources.is_empty() || r.sources.contains(&source));
        match (rebuildable, error) {
            (true, RetentionError::Deleted { .. }) => {
                let mut from: Vec<&str> = self
                    .replicas
                    .iter()
                    .filter(|r| r.sources.is_empty() || r.sources.contains(&source))
                    .flat_map(|r| r.sources.iter().copied())
                    .collect();
                from.sort_unstable();
                from.dedup();
                let from = if from.len() > 1 {
                    format!("snapshots of {}", from.join(", "))
                } else {
                    format!("{source}'s snapshot")
                };
                format!(
                    "its replica of {source} is rebuilt from {from}: `seam replay {consumer} --source {source} --from-snapshot`; where a service it needs a snapshot of exports none, an operator restores {consumer}'s store from a backup older than the gap, or reads on knowingly with `seam register {consumer} --source {source} --accept-gap`"
                )
            }
            (true, RetentionError::BeyondEnd { .. } | RetentionError::Recreated { .. }) => format!(
                "its replica of {source} is rebuilt from the recreated topic: `seam replay {consumer} --source {source} --from-beginning`"
            ),
            (false, _) => format!(
                "an operator decides: {consumer} keeps no replica of {source} it could rebuild (its model is written by its own commands too), so restore its store from a backup older than the gap, or read on knowingly with `seam register {consumer} --source {source} --accept-gap` (the events in between are then never taken in)"
            ),
        }
    }

    /// Stops reading `error`'s topic until it is rebuilt; returns the error with its remedy.
    pub fn mark(&self, error: RetentionError) -> RetentionError {
        let error = error.clone().with_remedy(self.remedy(&error));
        let topic = error.topic().to_string();
        error!(consumer = %self.consumer, %topic, error = %error, "not reading a source whose events are gone");
        self.metrics.set_needs_rebuild(&topic, true);
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.insert(topic.clone(), error.clone());
        }
        self.topics.send_if_modified(|t| {
            let before = t.len();
            t.retain(|x| *x != topic);
            t.len() != before
        });
        error
    }

    /// The error of `topic`, while it waits for a rebuild.
    pub fn get(&self, topic: &str) -> Option<RetentionError> {
        self.waiting.lock().ok().and_then(|w| w.get(topic).cloned())
    }

    /// Every topic waiting for a rebuild, with its error.
    pub fn all(&self) -> BTreeMap<String, RetentionError> {
        self.waiting.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// `topic` was rebuilt (or its gap accepted): read it again from the stored positions.
    pub fn done(&self, topic: &str) {
        let was = self.waiting.lock().ok().and_then(|mut w| w.remove(topic));
        if was.is_some() {
            self.metrics.set_needs_rebuild(topic, false);
            self.topics.send_modify(|t| {
                t.push(topic.to_string());
                t.sort();
                t.dedup();
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rebuilds(replicas: Vec<Replica>) -> Rebuilds {
        let (topics, _) = watch::channel(Vec::new());
        Rebuilds::new("ta-pool", replicas, Arc::new(topics), Metrics::new("ta-pool"))
    }

    fn deleted(topic: &str) -> RetentionError {
        super::super::retention::verdict(topic, 0, 3, 10, 20).expect_err("a gap")
    }

    /// The simulator found a replica built from two sources, one of which exports no snapshots:
    /// the remedy named only the lost source's snapshot, and the replay it named could not run.
    #[test]
    fn the_remedy_names_every_snapshot_the_rebuild_needs_and_the_way_out_without_them() {
        let text = rebuilds(vec![Replica {
            prefix: "ta/",
            sources: &["se-group", "theory-group"],
        }])
        .remedy(&deleted("se-group.events"));
        assert!(text.contains("snapshots of se-group, theory-group"), "{text}");
        assert!(
            text.contains("`seam replay ta-pool --source se-group --from-snapshot`"),
            "{text}"
        );
        assert!(text.contains("--accept-gap"), "{text}");
    }

    #[test]
    fn a_consumer_without_a_replica_of_the_source_is_told_to_decide() {
        let text = rebuilds(Vec::new()).remedy(&deleted("orders.events"));
        assert!(text.contains("keeps no replica of orders"), "{text}");
        assert!(text.contains("--accept-gap"), "{text}");
    }
}
