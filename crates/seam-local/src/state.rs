//! The running stack's record: its shape, endpoints and processes, in `state.json`.
//!
//! Written by `seam local up` (and by the test kit when it restarts a broker), read by
//! every command and test that needs to find the cluster. Writes go to a temp file that
//! is renamed into place, so a reader never sees half a file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::LocalError;
use super::layout::Home;
use super::process::Proc;

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

    /// `3 broker(s)`, `1 broker(s), secure`: for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} broker(s){}",
            self.brokers,
            if self.secure { ", secure" } else { "" }
        )
    }

    /// The `seam local up` flags of this shape.
    pub fn flags(&self) -> String {
        format!(
            "--brokers {}{}",
            self.brokers,
            if self.secure { " --secure" } else { "" }
        )
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
        out
    }
}

/// A started broker as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    /// Its ports.
    #[serde(flatten)]
    pub ports: NodePorts,
    /// The JVM, if started.
    pub process: Option<Proc>,
    /// Its log file.
    pub log: PathBuf,
}

/// The registry as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistryState {
    /// The JVM, if started.
    pub process: Option<Proc>,
    /// Its log file.
    pub log: PathBuf,
    /// The Java it runs on.
    pub java: PathBuf,
}

/// Everything `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackState {
    /// Ports and broker count.
    pub shape: Shape,
    /// Kafka release running.
    pub kafka_version: String,
    /// Registry release running.
    pub apicurio_version: String,
    /// The Java the brokers run on.
    pub kafka_java: PathBuf,
    /// The brokers.
    pub nodes: Vec<NodeState>,
    /// The registry.
    pub registry: Option<RegistryState>,
}

impl StackState {
    /// Reads the state file; `None` when there is none.
    pub fn load(home: &Home) -> Result<Option<Self>, LocalError> {
        let path = home.state_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LocalError::io("cannot read", &path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| LocalError::BadState { path, source })
    }

    /// Writes the state file atomically.
    pub fn save(&self, home: &Home) -> Result<(), LocalError> {
        let path = home.state_file();
        write_atomically(&path, &serde_json::to_vec_pretty(self).unwrap_or_default())
    }

    /// Every recorded process, registry first (it depends on the brokers).
    pub fn processes(&self) -> Vec<Proc> {
        self.registry
            .iter()
            .filter_map(|r| r.process)
            .chain(self.nodes.iter().filter_map(|n| n.process))
            .collect()
    }
}

/// Removes the state file if present.
pub fn remove(home: &Home) -> Result<(), LocalError> {
    let path = home.state_file();
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LocalError::io("cannot remove", &path)(e)),
        _ => Ok(()),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), LocalError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LocalError::io("cannot create", dir))?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(LocalError::io("cannot write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(LocalError::io("cannot replace", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_node_uses_the_given_port_and_the_next() {
        let s = Shape::new(1, 9092, 8081).expect("valid");
        assert_eq!(s.bootstrap(), vec!["127.0.0.1:9092"]);
        assert_eq!(s.nodes()[0].controller_port, 9093);
        assert_eq!((s.replication_factor(), s.min_insync_replicas()), (1, 1));
    }

    #[test]
    fn three_nodes_get_rf3_min_isr2_and_spread_ports() {
        let s = Shape::new(3, 9092, 8081).expect("valid");
        assert_eq!(
            s.bootstrap(),
            vec!["127.0.0.1:9192", "127.0.0.1:9292", "127.0.0.1:9392"]
        );
        assert_eq!((s.replication_factor(), s.min_insync_replicas()), (3, 2));
        assert_eq!(s.ports().len(), 8);
    }

    #[test]
    fn refuses_bad_counts_and_ports_that_overflow() {
        assert!(matches!(Shape::new(0, 9092, 8081), Err(LocalError::BadBrokerCount(0))));
        assert!(matches!(Shape::new(9, 9092, 8081), Err(LocalError::BadBrokerCount(9))));
        assert!(matches!(
            Shape::new(3, 65400, 8081),
            Err(LocalError::PortsOutOfRange { .. })
        ));
        assert!(matches!(
            Shape::new(1, 9092, 65535),
            Err(LocalError::PortsOutOfRange { .. })
        ));
    }
}
