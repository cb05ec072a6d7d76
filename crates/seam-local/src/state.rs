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
use super::shape::{NodePorts, Shape};

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

/// The stack's PostgreSQL as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostgresState {
    /// The server (postmaster), if started.
    pub process: Option<Proc>,
    /// Its log file.
    pub log: PathBuf,
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
    /// PostgreSQL, when the stack runs one.
    #[serde(default)]
    pub postgres: Option<PostgresState>,
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
            .chain(self.postgres.iter().filter_map(|p| p.process))
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

    #[test]
    fn postgres_gets_its_own_port_and_url() {
        let s = Shape::new(3, 9092, 8081).expect("valid");
        assert_eq!(s.postgres_url("seam"), None);
        let s = s.with_postgres(5432).expect("free port");
        assert_eq!(
            s.postgres_url("orders").as_deref(),
            Some("postgres://seam@127.0.0.1:5432/orders")
        );
        assert!(s.ports().contains(&(5432, "PostgreSQL".into())));
        assert!(s.flags().ends_with("--postgres --postgres-port 5432"), "{}", s.flags());
        match Shape::new(3, 9092, 8081).expect("valid").with_postgres(9292) {
            Err(LocalError::PostgresPortClash { port: 9292, used_by }) => {
                assert_eq!(used_by, "Kafka broker 2 client listener");
            }
            other => panic!("a port of broker 2 must be refused: {other:?}"),
        }
    }

    #[test]
    fn a_state_file_from_before_postgres_still_loads() {
        let old = r#"{"shape":{"brokers":1,"kafka_port":9092,"registry_port":8081},"kafka_version":"4.4.0",
            "apicurio_version":"3.3.3","kafka_java":"/j","nodes":[],"registry":null}"#;
        let st: StackState = serde_json::from_str(old).expect("old state parses");
        assert_eq!(st.shape.postgres_port, None);
        assert!(st.postgres.is_none());
    }
}
