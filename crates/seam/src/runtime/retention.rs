//! The retention guard: a consumer never silently skips events it has not taken in.
//!
//! Before consuming (and whenever partitions are assigned) every stored position is compared with
//! its partition's log-start offset. If the events between them were deleted by retention or
//! delete-records, reading on would lose them, so the consumer refuses with a typed error naming
//! the gap and the remedy. seam never relies on `auto.offset.reset` (it is set to `error`).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use thiserror::Error;

use crate::offsets::OffsetMap;

use super::RuntimeError;

const TIMEOUT: Duration = Duration::from_secs(10);

/// How long a position past the end may wait for open transactions to commit.
const BEYOND_END_PATIENCE: Duration = Duration::from_secs(10);

/// A stored position that can no longer be read from. The node keeps running without the
/// source and names the way out (`remedy`: what this consumer can do, filled in by the node).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RetentionError {
    /// Events the consumer still needs were deleted.
    #[error("{topic} partition {partition}: this consumer needs events from offset {needed}, but the log now starts at {earliest}; events {needed}..{earliest} were deleted (retention or delete-records) before it took them in, so it does not read this source until {remedy}")]
    Deleted {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The stored position (next offset needed).
        needed: i64,
        /// The partition's log-start offset.
        earliest: i64,
        /// What to do.
        remedy: String,
    },
    /// The stored position lies beyond the end of the log: the topic was recreated or truncated.
    #[error("{topic} partition {partition}: this consumer's position is {needed}, but the log ends at {end}; the topic was recreated or truncated since, so it does not read this source until {remedy}")]
    BeyondEnd {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The stored position.
        needed: i64,
        /// The partition's high watermark.
        end: i64,
        /// What to do.
        remedy: String,
    },
    /// The topic was recreated and has grown past the stored position: the event there comes
    /// from another journal of the source than the events read before, so reading on would skip
    /// everything before the position in the new topic.
    #[error("{topic} partition {partition}: the event at this consumer's position {position} comes from journal {now} of the source, the ones before it from journal {before}: the topic was recreated (a source store that started over) and has grown past the position, so reading on would skip the new topic's first events; it does not read this source until {remedy}")]
    Recreated {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The stored position.
        position: i64,
        /// The journal read before.
        before: String,
        /// The journal of the event at the position.
        now: String,
        /// What to do.
        remedy: String,
    },
}

impl RetentionError {
    /// The topic that cannot be read on.
    pub fn topic(&self) -> &str {
        match self {
            Self::Deleted { topic, .. } | Self::BeyondEnd { topic, .. } | Self::Recreated { topic, .. } => topic,
        }
    }

    /// The same error with the way out this consumer has.
    pub fn with_remedy(mut self, text: String) -> Self {
        match &mut self {
            Self::Deleted { remedy, .. } | Self::BeyondEnd { remedy, .. } | Self::Recreated { remedy, .. } => {
                *remedy = text
            }
        }
        self
    }

    /// Whether the topic itself was replaced (read it whole again), not trimmed.
    pub fn recreated(&self) -> bool {
        !matches!(self, Self::Deleted { .. })
    }

    pub(crate) fn default_remedy(topic: &str, deleted: bool) -> String {
        let source = topic.trim_end_matches(".events");
        format!(
            "its replica of {source} is rebuilt (`seam replay <consumer> --source {source} --from-{}`)",
            if deleted { "snapshot" } else { "beginning" }
        )
    }
}

/// The partitions of `topics`, failing with a clear error for a topic that does not exist.
pub fn partitions_of<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &[String],
) -> Result<Vec<(String, i32)>, RuntimeError> {
    let mut out = Vec::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| RuntimeError::kafka(format!("reading metadata of {topic}"), e))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                out.extend(t.partitions().iter().map(|p| (topic.clone(), p.id())));
            }
            _ => return Err(RuntimeError::TopicMissing { topic: topic.clone() }),
        }
    }
    Ok(out)
}

/// Checks every partition's stored position against its log-start and end offsets.
pub fn check<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &[(String, i32)],
    positions: &OffsetMap,
) -> Result<(), RuntimeError> {
    for (topic, partition) in partitions {
        let needed = positions.position(topic, *partition);
        // A read_committed client sees the last stable offset as the end, which trails the
        // high watermark (and a snapshot's map) while a transaction is open: past the end
        // only counts once that has stayed so for a while.
        let patience = std::time::Instant::now() + BEYOND_END_PATIENCE;
        loop {
            let (earliest, end) = super::watermarks::watermarks(consumer, topic, *partition)?;
            match verdict(topic, *partition, needed, earliest, end) {
                Err(RetentionError::BeyondEnd { .. }) if std::time::Instant::now() < patience => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => {
                    other?;
                    break;
                }
            }
        }
    }
    Ok(())
}

/// At a start: the sources whose next events are gone, each set aside for a rebuild (the node
/// runs on without them and names the way out) instead of stopping the node, which would leave
/// no node to carry the remedy out; any other failure of `check` (one source topic at a time)
/// stops the start. The simulator's starts ask the same.
pub fn set_aside<'a>(
    sources: impl IntoIterator<Item = &'a String>,
    mut check: impl FnMut(&str) -> Result<(), RuntimeError>,
) -> Result<Vec<RetentionError>, RuntimeError> {
    let mut gone = Vec::new();
    for topic in sources {
        match check(topic) {
            Ok(()) => {}
            Err(RuntimeError::Retention(e)) => gone.push(e),
            Err(e) => return Err(e),
        }
    }
    Ok(gone)
}

/// The decision for one partition, separate from the broker call so it can be tested alone.
pub fn verdict(topic: &str, partition: i32, needed: i64, earliest: i64, end: i64) -> Result<(), RetentionError> {
    if needed < earliest {
        return Err(RetentionError::Deleted {
            topic: topic.to_string(),
            partition,
            needed,
            earliest,
            remedy: RetentionError::default_remedy(topic, true),
        });
    }
    if needed > end {
        return Err(RetentionError::BeyondEnd {
            topic: topic.to_string(),
            partition,
            needed,
            end,
            remedy: RetentionError::default_remedy(topic, false),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_inside_the_log_pass() {
        assert!(verdict("t", 0, 0, 0, 0).is_ok());
        assert!(verdict("t", 0, 5, 5, 9).is_ok());
        assert!(verdict("t", 0, 9, 5, 9).is_ok());
    }

    #[test]
    fn deleted_events_are_refused_with_the_gap_and_remedy() {
        let err = verdict("orders.events", 2, 3, 10, 20).expect_err("gap");
        let text = err.to_string();
        assert!(text.contains("orders.events partition 2"), "{text}");
        assert!(text.contains("offset 3") && text.contains("starts at 10"), "{text}");
        assert!(text.contains("snapshot"), "{text}");
    }

    #[test]
    fn a_position_past_the_end_is_refused() {
        assert!(matches!(
            verdict("t", 1, 30, 0, 20),
            Err(RetentionError::BeyondEnd {
                needed: 30,
                end: 20,
                ..
            })
        ));
        let text = verdict("orders.events", 1, 30, 0, 20).expect_err("gap").to_string();
        assert!(text.contains("--source orders --from-beginning"), "{text}");
    }
}
