//! What a topology asks of a cluster: topics with their configs, schema subjects with their
//! compatibility level, the ACLs that confine each service principal, and SCRAM users.
//! Computed from the file alone (plus the broker count), so the plan is reproducible.

use std::collections::{BTreeMap, BTreeSet};

use super::admin_ffi::{Acl, Operation, ResourceKind};
use seam::codec::{subject_name, Catalog};
use seam::topology::Topology;
use seam::translator::{dlq_topic, events_topic};

/// Topic configs seam manages; any other config on a topic is left as it is.
pub const MANAGED_CONFIGS: [&str; 3] = ["cleanup.policy", "min.insync.replicas", "retention.ms"];

/// A topic as the topology wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// Name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replication: i32,
    /// The [`MANAGED_CONFIGS`] values.
    pub configs: BTreeMap<String, String>,
}

/// One schema subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// `<topic>-<record full name>`.
    pub subject: String,
    /// The `.avsc` text, registered verbatim.
    pub text: String,
    /// The compatibility level.
    pub compatibility: String,
}

/// Everything a topology wants.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Topics by name.
    pub topics: BTreeMap<String, Topic>,
    /// Schemas by subject.
    pub schemas: BTreeMap<String, Schema>,
    /// Allow rules.
    pub acls: BTreeSet<Acl>,
    /// SCRAM user names of the `User:` principals.
    pub users: BTreeSet<String>,
    /// External sources' topics (another producer writes them) with the partition count the
    /// topology expects: checked, never created or changed.
    pub external: BTreeMap<String, i32>,
}

impl Desired {
    /// What `topology` wants on a cluster of `brokers` brokers.
    pub fn of(topology: &Topology, brokers: i32) -> anyhow::Result<Self> {
        let mut d = Self::default();
        for s in &topology.services {
            let rf = s.replication_on(brokers);
            let topic = events_topic(&s.name);
            if s.is_external() {
                d.external.insert(s.topic.clone().unwrap_or(topic), s.partitions);
                continue;
            }
            // It only consumes: its DLQ and reads come with its consumer entry below.
            if s.is_postgres_sink() {
                if let Some(user) = s.principal().strip_prefix("User:") {
                    d.users.insert(user.to_string());
                }
                continue;
            }
            d.topics.insert(
                topic.clone(),
                Topic {
                    name: topic.clone(),
                    partitions: s.partitions,
                    replication: rf,
                    configs: configs(s.cleanup_policy(), s.min_insync_on(rf), s.retention_ms()),
                },
            );
            // A postgres-cdc source registers the schemas it derives from its tables when it starts.
            let catalog = if s.is_postgres_cdc() {
                Catalog::default()
            } else {
                Catalog::load_dir(&s.schemas)?
            };
            for record in catalog.records() {
                let subject = subject_name(&topic, &record.full_name);
                d.schemas.insert(
                    subject.clone(),
                    Schema {
                        subject,
                        text: record.source.clone(),
                        compatibility: s.compatibility().to_string(),
                    },
                );
            }
            let principal = s.principal();
            if let Some(user) = principal.strip_prefix("User:") {
                d.users.insert(user.to_string());
            }
            let allow = |kind, name: &str, operation| Acl {
                principal: principal.clone(),
                kind,
                name: name.to_string(),
                operation,
            };
            // The publisher: its own topic, its transactional id, and the group it reads its
            // own topic's tail with (to resume after the last published seq).
            for op in [Operation::Write, Operation::Read, Operation::Describe] {
                d.acls.insert(allow(ResourceKind::Topic, &topic, op));
            }
            for op in [Operation::Write, Operation::Describe] {
                d.acls.insert(allow(
                    ResourceKind::TransactionalId,
                    &format!("seam-publisher-{}", s.name),
                    op,
                ));
            }
            d.acls.insert(allow(
                ResourceKind::Group,
                &format!("seam-tail-{}", s.name),
                Operation::Read,
            ));
        }
        for c in &topology.consumers {
            let Some(s) = topology.service(&c.service) else {
                continue;
            };
            let rf = s.replication_on(brokers);
            let dlq = dlq_topic(&c.service);
            d.topics.insert(
                dlq.clone(),
                Topic {
                    name: dlq.clone(),
                    partitions: 1,
                    replication: rf,
                    configs: configs("delete", s.min_insync_on(rf), -1),
                },
            );
            let principal = s.principal();
            let allow = |kind, name: &str, operation| Acl {
                principal: principal.clone(),
                kind,
                name: name.to_string(),
                operation,
            };
            for source in &c.sources {
                let topic = events_topic(&source.service);
                d.acls.insert(allow(ResourceKind::Topic, &topic, Operation::Read));
                d.acls.insert(allow(ResourceKind::Topic, &topic, Operation::Describe));
            }
            for op in [Operation::Write, Operation::Read, Operation::Describe] {
                d.acls.insert(allow(ResourceKind::Topic, &dlq, op));
            }
            d.acls.insert(allow(ResourceKind::Group, &c.service, Operation::Read));
            d.acls.insert(allow(
                ResourceKind::Group,
                &format!("seam-dlq-control-{}", c.service),
                Operation::Read,
            ));
        }
        Ok(d)
    }
}

fn configs(cleanup: &str, min_isr: i32, retention_ms: i64) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_string(), cleanup.to_string()),
        ("min.insync.replicas".to_string(), min_isr.to_string()),
        ("retention.ms".to_string(), retention_ms.to_string()),
    ])
}
