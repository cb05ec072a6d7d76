//! A partition's low and high watermarks, asked again while the cluster moves the partition's
//! leadership: after a broker restart the controller's preferred-leader rebalance can answer
//! NotLeaderForPartition minutes later, and a service starting (or cutting a snapshot) then
//! must wait for the new leader instead of stopping.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::RuntimeError;

/// How long leadership may take to settle.
const PATIENCE: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(10);

/// `(low, high)` of `topic`/`partition`.
pub fn watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), RuntimeError> {
    let give_up = Instant::now() + PATIENCE;
    let mut pause = Duration::from_millis(100);
    loop {
        match consumer.fetch_watermarks(topic, partition, TIMEOUT) {
            Ok(w) => return Ok(w),
            Err(e) if transient(&e) && Instant::now() < give_up => {
                tracing::debug!(%topic, partition, error = %e, "leadership is moving; asking again");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                return Err(RuntimeError::kafka(
                    format!("reading offsets of {topic}/{partition}"),
                    e,
                ))
            }
        }
    }
}

/// Errors a moment later may not repeat.
fn transient(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::BrokerNotAvailable
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::DestroyBroker
                | RDKafkaErrorCode::FencedLeaderEpoch
                | RDKafkaErrorCode::UnknownLeaderEpoch
                | RDKafkaErrorCode::NotController
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_moves_are_transient_and_a_missing_topic_is_not() {
        assert!(transient(&KafkaError::MetadataFetch(
            RDKafkaErrorCode::NotLeaderForPartition
        )));
        assert!(transient(&KafkaError::MetadataFetch(
            RDKafkaErrorCode::LeaderNotAvailable
        )));
        assert!(!transient(&KafkaError::MetadataFetch(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
        assert!(!transient(&KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownPartition
        )));
    }
}
