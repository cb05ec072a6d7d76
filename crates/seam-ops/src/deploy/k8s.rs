//! `seam deploy --emit k8s DIR`: the same topology as Kubernetes manifests for the Strimzi
//! operator. The topics, users and ACLs are the ones `seam deploy` creates on a cluster it
//! reaches itself (both come from [`Desired`]), so the two paths cannot drift.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};

use super::admin_ffi::{Operation, ResourceKind};
use super::desired::Desired;
use seam::topology::Topology;

/// Broker (and controller) nodes of the emitted cluster.
pub const NODES: i32 = 3;
/// Kafka version of the emitted cluster.
pub const KAFKA_VERSION: &str = "4.1.0";
/// The TLS + SCRAM listener services use.
pub const LISTENER_PORT: i32 = 9093;
/// HTTP port of every service container.
pub const HTTP_PORT: i32 = 8080;

/// Where the emitted services find their code's context.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The services' image; it holds the repository's `deploy/` and `schemas/` under `/app`.
    pub image: &'a str,
    /// The topology's path inside the image, e.g. `/app/deploy/student-affairs.yaml`.
    pub topology_in_image: &'a str,
    /// The Confluent-compatible registry the services use.
    pub registry: &'a str,
}

/// Writes `kafka.yaml` (node pool + cluster), `topics.yaml`, `users.yaml` and
/// `services.yaml` into `dir`; returns the files.
pub fn emit(topology: &Topology, dir: &Path, target: &Target<'_>) -> anyhow::Result<Vec<PathBuf>> {
    let desired = Desired::of(topology, NODES)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        ("kafka.yaml", cluster(topology)),
        ("topics.yaml", topics(topology, &desired)),
        ("users.yaml", users(topology, &desired)),
        ("services.yaml", services(topology, target)),
    ];
    let mut written = Vec::new();
    for (name, docs) in files {
        let path = dir.join(name);
        let mut text = format!(
            "# Written by `seam deploy --emit k8s` from topology {}; regenerate instead of editing.\n",
            topology.name
        );
        for doc in docs {
            text.push_str("---\n");
            text.push_str(&serde_norway::to_string(&doc)?);
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn labels(topology: &Topology) -> Value {
    json!({ "strimzi.io/cluster": topology.name })
}

fn cluster(topology: &Topology) -> Vec<Value> {
    let pool = json!({
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaNodePool",
        "metadata": { "name": "dual-role", "labels": labels(topology) },
        "spec": {
            "replicas": NODES,
            "roles": ["controller", "broker"],
            "storage": {
                "type": "jbod",
                "volumes": [{
                    "id": 0,
                    "type": "persistent-claim",
                    "size": "100Gi",
                    "deleteClaim": false,
                    "kraftMetadata": "shared"
                }]
            }
        }
    });
    let kafka = json!({
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "Kafka",
        "metadata": {
            "name": topology.name,
            "annotations": { "strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled" }
        },
        "spec": {
            "kafka": {
                "version": KAFKA_VERSION,
                "listeners": [{
                    "name": "tls",
                    "port": LISTENER_PORT,
                    "type": "internal",
                    "tls": true,
                    "authentication": { "type": "scram-sha-512" }
                }],
                "authorization": { "type": "simple" },
                "config": {
                    "auto.create.topics.enable": false,
                    "default.replication.factor": 3,
                    "min.insync.replicas": 2,
                    "offsets.topic.replication.factor": 3,
                    "transaction.state.log.replication.factor": 3,
                    "transaction.state.log.min.isr": 2,
                    "unclean.leader.election.enable": false
                }
            },
            "entityOperator": { "topicOperator": {}, "userOperator": {} }
        }
    });
    vec![pool, kafka]
}

fn topics(topology: &Topology, desired: &Desired) -> Vec<Value> {
    desired
        .topics
        .values()
        .map(|t| {
            let config: BTreeMap<&str, Value> = t
                .configs
                .iter()
                .map(|(k, v)| (k.as_str(), v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n))))
                .collect();
            json!({
                "apiVersion": "kafka.strimzi.io/v1beta2",
                "kind": "KafkaTopic",
                "metadata": { "name": t.name.replace('.', "-"), "labels": labels(topology) },
                "spec": {
                    "topicName": t.name,
                    "partitions": t.partitions,
                    "replicas": t.replication,
                    "config": config
                }
            })
        })
        .collect()
}

fn users(topology: &Topology, desired: &Desired) -> Vec<Value> {
    let mut by_user: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut grouped: BTreeMap<(String, ResourceKind, String), Vec<&'static str>> = BTreeMap::new();
    for acl in &desired.acls {
        let Some(user) = acl.principal.strip_prefix("User:") else {
            continue;
        };
        let op = match acl.operation {
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Describe => "Describe",
        };
        grouped
            .entry((user.to_string(), acl.kind, acl.name.clone()))
            .or_default()
            .push(op);
    }
    for ((user, kind, name), operations) in grouped {
        let kind = match kind {
            ResourceKind::Topic => "topic",
            ResourceKind::Group => "group",
            ResourceKind::TransactionalId => "transactionalId",
        };
        by_user.entry(user).or_default().push(json!({
            "resource": { "type": kind, "name": name, "patternType": "literal" },
            "operations": operations,
            "host": "*"
        }));
    }
    by_user
        .into_iter()
        .map(|(user, acls)| {
            json!({
                "apiVersion": "kafka.strimzi.io/v1beta2",
                "kind": "KafkaUser",
                "metadata": { "name": user, "labels": labels(topology) },
                "spec": {
                    "authentication": { "type": "scram-sha-512" },
                    "authorization": { "type": "simple", "acls": acls }
                }
            })
        })
        .collect()
}

fn services(topology: &Topology, target: &Target<'_>) -> Vec<Value> {
    let mut docs = Vec::new();
    // An external source runs nowhere: another producer writes its topic.
    for s in topology.services.iter().filter(|s| !s.is_external()) {
        let user = s.principal().strip_prefix("User:").unwrap_or(&s.name).to_string();
        let app = json!({ "app.kubernetes.io/name": s.name, "app.kubernetes.io/part-of": topology.name });
        let env = json!([
            { "name": "SEAM_BROKERS", "value": format!("{}-kafka-bootstrap:{LISTENER_PORT}", topology.name) },
            { "name": "SEAM_REGISTRY", "value": target.registry },
            { "name": "SEAM_KAFKA_SECURITY_PROTOCOL", "value": "SASL_SSL" },
            { "name": "SEAM_KAFKA_SASL_MECHANISM", "value": "SCRAM-SHA-512" },
            { "name": "SEAM_KAFKA_SASL_USERNAME", "value": user },
            { "name": "SEAM_KAFKA_SASL_PASSWORD",
              "valueFrom": { "secretKeyRef": { "name": user, "key": "password" } } },
            { "name": "SEAM_KAFKA_SSL_CA_LOCATION", "value": "/etc/seam/ca/ca.crt" },
            { "name": "SEAM_HOST", "value": "0.0.0.0" },
            { "name": "SEAM_PORT", "value": HTTP_PORT.to_string() },
            { "name": "SEAM_STORE", "value": "/var/lib/seam/store" },
            { "name": "SEAM_TOPOLOGY", "value": target.topology_in_image }
        ]);
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": { "name": format!("{}-store", s.name), "labels": app },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": { "requests": { "storage": "10Gi" } }
            }
        }));
        docs.push(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": s.name, "labels": app },
            "spec": {
                // One instance owns the store; Recreate never runs two against one volume.
                "replicas": 1,
                "strategy": { "type": "Recreate" },
                "selector": { "matchLabels": { "app.kubernetes.io/name": s.name } },
                "template": {
                    "metadata": { "labels": app },
                    "spec": {
                        "terminationGracePeriodSeconds": 30,
                        "containers": [{
                            "name": s.name,
                            "image": target.image,
                            "args": ["serve", s.name],
                            "env": env,
                            "ports": [{ "name": "http", "containerPort": HTTP_PORT }],
                            "readinessProbe": { "httpGet": { "path": "/health", "port": "http" } },
                            "livenessProbe": {
                                "httpGet": { "path": "/health", "port": "http" },
                                "initialDelaySeconds": 30
                            },
                            "volumeMounts": [
                                { "name": "store", "mountPath": "/var/lib/seam" },
                                { "name": "cluster-ca", "mountPath": "/etc/seam/ca", "readOnly": true }
                            ]
                        }],
                        "volumes": [
                            { "name": "store", "persistentVolumeClaim": { "claimName": format!("{}-store", s.name) } },
                            { "name": "cluster-ca", "secret": { "secretName": format!("{}-cluster-ca-cert", topology.name) } }
                        ]
                    }
                }
            }
        }));
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": s.name, "labels": app },
            "spec": {
                "selector": { "app.kubernetes.io/name": s.name },
                "ports": [{ "name": "http", "port": 80, "targetPort": "http" }]
            }
        }));
    }
    docs
}
