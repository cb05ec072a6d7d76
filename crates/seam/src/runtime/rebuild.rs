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
            (true, RetentionError::Deleted { .. }) => format!(
                "its replica of {source} is rebuilt from {source}'s snapshot: `seam replay {consumer} --source {source} --from-snapshot`"
            ),
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
