//! Makes a cluster hold what a topology needs: every service's `<name>.events` topic, every
//! consumer's `<name>.dlq`, and every service's schemas registered under topic-record subjects
//! (the registry's compatibility rule decides). Idempotent: what exists is left as it is.
//! `seam deploy` grows this into a reviewed plan with configs and ACLs.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::Topology;
use crate::codec::{Catalog, Registry};
use crate::translator::{dlq_topic, events_topic};

/// What [`ensure`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ensured {
    /// Topics created now.
    pub created: Vec<String>,
    /// Topics that were there already.
    pub existing: Vec<String>,
    /// Subjects registered (or found identical).
    pub subjects: usize,
}

/// Creates missing topics and registers every schema.
pub async fn ensure(topology: &Topology, client: &ClientConfig, registry: &Registry) -> anyhow::Result<Ensured> {
    let probe: BaseConsumer = client.create()?;
    let brokers = probe.fetch_metadata(None, Duration::from_secs(10))?.brokers().len() as i32;
    let mut wanted: Vec<(String, i32, i32)> = Vec::new();
    for s in &topology.services {
        let rf = s.replication.unwrap_or(3).min(brokers.max(1));
        wanted.push((events_topic(&s.name), s.partitions, rf));
    }
    for c in &topology.consumers {
        wanted.push((dlq_topic(&c.service), 1, 3.min(brokers.max(1))));
    }
    let admin: AdminClient<DefaultClientContext> = client.create()?;
    let new: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(|(t, p, rf)| NewTopic::new(t, *p, TopicReplication::Fixed(*rf)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut ensured = Ensured::default();
    for result in admin.create_topics(new.iter(), &opts).await? {
        match result {
            Ok(t) => ensured.created.push(t),
            Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => ensured.existing.push(t),
            Err((t, e)) => anyhow::bail!("creating topic {t}: {e}"),
        }
    }
    for s in &topology.services {
        let catalog = Catalog::load_dir(&s.schemas)?;
        for record in catalog.records() {
            registry.register(&events_topic(&s.name), record).await?;
            ensured.subjects += 1;
        }
    }
    Ok(ensured)
}
