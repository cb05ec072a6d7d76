//! The shape of a local stack: how many brokers and which ports; everything needed to lay one
//! out, and what its state file records first.

use serde::{Deserialize, Serialize};

use super::error::LocalError;

/// How many brokers, and which ports: everything needed to lay out a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Number of combined broker+controller nodes.
    pub brokers: u8,
    /// Single node: its client port (controller on +1). Cluster: node n listens on
    /// `kafka_port + 100 n` (controller on +1), e.g. 9192, 9292, 9392.
    pub kafka_port: u16,
    /// The registry's HTTP port; its management (health) port is the next one.
    pub registry_port: u16,
    /// SASL_SSL (SCRAM-SHA-512 over TLS) listeners and the standard authorizer.
    #[serde(default)]
    pub secure: bool,
    /// PostgreSQL's port, when the stack runs one (`seam local up --postgres`) for CRUD
    /// services, CDC sources and database sinks.
    #[serde(default)]
    pub postgres_port: Option<u16>,
}

/// One broker's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePorts {
    /// KRaft node id, from 1.
    pub node_id: u8,
    /// PLAINTEXT client listener.
    pub client_port: u16,
    /// CONTROLLER listener.
    pub controller_port: u16,
}

impl Shape {
    /// Default ports: Kafka 9092 (cluster 9192/9292/9392), registry 8081 (health 8082).
    pub const DEFAULT_KAFKA_PORT: u16 = 9092;
    /// Confluent Schema Registry's customary port.
    pub const DEFAULT_REGISTRY_PORT: u16 = 8081;
    /// PostgreSQL's customary port.
    pub const DEFAULT_POSTGRES_PORT: u16 = 5432;

    /// Validates the broker count and that every derived port fits in 16 bits.
    pub fn new(brokers: u8, kafka_port: u16, registry_port: u16) -> Result<Self, LocalError> {
        if !(1..=5).contains(&brokers) {
            return Err(LocalError::BadBrokerCount(brokers));
        }
        let shape = Self {
            brokers,
            kafka_port,
            registry_port,
            secure: false,
            postgres_port: None,
        };
        let top = u32::from(kafka_port) + if brokers == 1 { 1 } else { 100 * u32::from(brokers) + 1 };
        if top > u32::from(u16::MAX) || registry_port == u16::MAX || kafka_port == 0 || registry_port == 0 {
            return Err(LocalError::PortsOutOfRange {
                kafka_port,
                registry_port,
            });
        }
        Ok(shape)
    }

    /// The same stack with PostgreSQL on `port`, which must not be one the stack already uses.
    pub fn with_postgres(mut self, port: u16) -> Result<Self, LocalError> {
        if let Some((_, used_by)) = self.ports().into_iter().find(|(p, _)| *p == port) {
            return Err(LocalError::PostgresPortClash { port, used_by });
        }
        if port == 0 {
            return Err(LocalError::PostgresPortClash {
                port,
                used_by: "no component: 0 is not a port a server can listen on".into(),
            });
        }
        self.postgres_port = Some(port);
        Ok(self)
    }

    /// `3 broker(s)`, `1 broker(s), secure, PostgreSQL on 5432`: for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} broker(s){}{}",
            self.brokers,
            if self.secure { ", secure" } else { "" },
            self.postgres_port
                .map(|p| format!(", PostgreSQL on {p}"))
                .unwrap_or_default()
        )
    }

    /// The `seam local up` flags of this shape.
    pub fn flags(&self) -> String {
        format!(
            "--brokers {}{}{}",
            self.brokers,
            if self.secure { " --secure" } else { "" },
            self.postgres_port
                .map(|p| format!(" --postgres --postgres-port {p}"))
                .unwrap_or_default()
        )
    }

    /// The local PostgreSQL's connection URL for `database` (user `seam`, no password: the
    /// server listens on 127.0.0.1 only and trusts local connections, as the brokers do).
    pub fn postgres_url(&self, database: &str) -> Option<String> {
        self.postgres_port
            .map(|p| format!("postgres://seam@127.0.0.1:{p}/{database}"))
    }

    /// Every node's ports.
    pub fn nodes(&self) -> Vec<NodePorts> {
        (1..=self.brokers)
            .map(|node_id| {
                let client_port = if self.brokers == 1 {
                    self.kafka_port
                } else {
                    self.kafka_port + 100 * u16::from(node_id)
                };
                NodePorts {
                    node_id,
                    client_port,
                    controller_port: client_port + 1,
                }
            })
            .collect()
    }

    /// `host:port` of every broker, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> Vec<String> {
        self.nodes()
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.client_port))
            .collect()
    }

    /// The Confluent-compatible API base URL (no trailing slash).
    pub fn registry_url(&self) -> String {
        format!("http://127.0.0.1:{}/apis/ccompat/v7", self.registry_port)
    }

    /// The registry's management port (health checks).
    pub fn management_port(&self) -> u16 {
        self.registry_port + 1
    }

    /// Replication factor for internal and default topics: min(3, brokers).
    pub fn replication_factor(&self) -> u8 {
        self.brokers.min(3)
    }

    /// min.insync.replicas: 2 once there are at least 3 replicas, else 1.
    pub fn min_insync_replicas(&self) -> u8 {
        if self.replication_factor() >= 3 {
            2
        } else {
            1
        }
    }

    /// Every port the stack binds, with what it is for.
    pub fn ports(&self) -> Vec<(u16, String)> {
        let mut out = Vec::new();
        for n in self.nodes() {
            out.push((n.client_port, format!("Kafka broker {} client listener", n.node_id)));
            out.push((
                n.controller_port,
                format!("Kafka broker {} controller listener", n.node_id),
            ));
        }
        out.push((self.registry_port, "schema registry API".into()));
        out.push((self.management_port(), "schema registry health".into()));
        if let Some(p) = self.postgres_port {
            out.push((p, "PostgreSQL".into()));
        }
        out
    }
}
