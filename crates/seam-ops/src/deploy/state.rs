//! What each topology's last deploy manages, kept on the cluster itself in the compacted topic
//! `_seam.deployments` (key: topology name). Deletes are proposed only for resources listed
//! there, so a cluster shared with other teams never sees its topics or ACLs in a seam plan
//! (the phantom-diff and destructive-default traps of JulieOps and kafka-gitops).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// The state topic.
pub const STATE_TOPIC: &str = "_seam.deployments";

/// One deploy's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The topology's name.
    pub topology: String,
    /// Resource ids it manages.
    pub managed: BTreeSet<String>,
    /// When it was applied (RFC 3339).
    pub applied_at: String,
}

/// The last record of `topology`, or an empty set when it was never deployed here.
pub fn load(client: &ClientConfig, topology: &str) -> anyhow::Result<BTreeSet<String>> {
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", "seam-deploy")
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(STATE_TOPIC), Duration::from_secs(10))?;
    let exists = md
        .topics()
        .iter()
        .any(|t| t.name() == STATE_TOPIC && t.error().is_none() && !t.partitions().is_empty());
    if !exists {
        return Ok(BTreeSet::new());
    }
    let (low, high) = consumer.fetch_watermarks(STATE_TOPIC, 0, Duration::from_secs(10))?;
    if high <= low {
        return Ok(BTreeSet::new());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(STATE_TOPIC, 0, Offset::Offset(low))?;
    consumer.assign(&tpl)?;
    let mut latest: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut next = low;
    while next < high {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "reading {STATE_TOPIC} stopped at offset {next} of {high}"
        );
        let msg = match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Ok(msg)) => msg,
            // A broker restarting (or its partition's leadership moving): librdkafka retries,
            // and so does this loop, until the deadline above.
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::DestroyBroker,
            ))) => continue,
            Some(Err(e)) => return Err(e).with_context(|| format!("reading {STATE_TOPIC}")),
        };
        next = msg.offset() + 1;
        if let Some(payload) = msg.payload() {
            let record: Record = serde_json::from_slice(payload)
                .with_context(|| format!("{STATE_TOPIC} offset {} is not a deploy record", msg.offset()))?;
            latest.insert(record.topology.clone(), record.managed);
        }
    }
    Ok(latest.remove(topology).unwrap_or_default())
}

/// Writes `topology`'s managed set, creating the state topic on first use.
pub async fn save(
    client: &ClientConfig,
    topology: &str,
    managed: BTreeSet<String>,
    brokers: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client.create()?;
    let rf = 3.min(brokers.max(1));
    let topic = NewTopic::new(STATE_TOPIC, 1, TopicReplication::Fixed(rf))
        .set("cleanup.policy", "compact")
        .set("min.insync.replicas", if rf >= 3 { "2" } else { "1" });
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics([&topic], &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => anyhow::bail!("creating {t}: {e}"),
        }
    }
    let record = Record {
        topology: topology.to_string(),
        managed,
        applied_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    let payload = serde_json::to_vec(&record)?;
    let producer: BaseProducer = client
        .clone()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()?;
    producer
        .send(BaseRecord::to(STATE_TOPIC).key(topology).payload(&payload))
        .map_err(|(e, _)| e)
        .with_context(|| format!("writing the deploy record to {STATE_TOPIC}"))?;
    producer
        .flush(Duration::from_secs(30))
        .with_context(|| format!("writing the deploy record to {STATE_TOPIC}"))?;
    Ok(())
}
