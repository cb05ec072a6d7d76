//! Where the Kafka brokers and the schema registry are, for every command and test.
//!
//! An existing cluster is chosen with `SEAM_BROKERS` (comma-separated `host:port`) and
//! `SEAM_REGISTRY` (the Confluent-compatible API base URL). Without them, the running
//! local stack of `SEAM_HOME` is used. One rule everywhere, so a command and a test
//! never disagree about which cluster they talk to.

use crate::local::{Home, LocalError, StackState};

/// Where the endpoints came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `SEAM_BROKERS` / `SEAM_REGISTRY`.
    Environment,
    /// The local stack recorded under this SEAM_HOME, with this many brokers.
    LocalStack {
        /// Broker count.
        brokers: u8,
    },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Environment => write!(f, "from SEAM_BROKERS"),
            Self::LocalStack { brokers } => write!(f, "local stack, {brokers} broker(s)"),
        }
    }
}

/// The cluster to talk to.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Bootstrap servers.
    pub brokers: Vec<String>,
    /// Confluent-compatible registry base URL, without trailing slash.
    pub registry: Option<String>,
    /// Where this came from.
    pub origin: Origin,
}

/// Why no cluster could be found.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Nothing configured and nothing running.
    #[error("no Kafka cluster to talk to: start the local stack with `seam local up`, or set SEAM_BROKERS (and SEAM_REGISTRY) to an existing cluster")]
    NoCluster,
    /// SEAM_BROKERS is malformed.
    #[error("SEAM_BROKERS={value:?} is not a comma-separated list of host:port ({problem}); e.g. SEAM_BROKERS=kafka-1:9092,kafka-2:9092")]
    BadBrokers {
        /// The variable's value.
        value: String,
        /// What is wrong.
        problem: String,
    },
    /// SEAM_REGISTRY is malformed.
    #[error("SEAM_REGISTRY={0:?} is not an http(s) URL; give the Confluent-compatible API base, e.g. http://registry:8081 or http://apicurio:8080/apis/ccompat/v7")]
    BadRegistry(String),
    /// A registry is needed but not configured.
    #[error("no schema registry configured: SEAM_BROKERS is set but SEAM_REGISTRY is not; set SEAM_REGISTRY to the registry's Confluent-compatible API base URL")]
    NoRegistry,
    /// The local stack's state could not be read.
    #[error(transparent)]
    Local(#[from] LocalError),
}

impl Endpoints {
    /// `SEAM_BROKERS`/`SEAM_REGISTRY` if set, else the local stack of `SEAM_HOME`.
    pub fn discover() -> Result<Self, ClusterError> {
        if let Some(brokers) = env("SEAM_BROKERS") {
            return Ok(Self {
                brokers: parse_brokers(&brokers)?,
                registry: env("SEAM_REGISTRY").map(|r| parse_registry(&r)).transpose()?,
                origin: Origin::Environment,
            });
        }
        let home = Home::from_env()?;
        match StackState::load(&home)? {
            Some(st) => Ok(Self {
                brokers: st.shape.bootstrap(),
                registry: Some(st.shape.registry_url()),
                origin: Origin::LocalStack {
                    brokers: st.shape.brokers,
                },
            }),
            None => Err(ClusterError::NoCluster),
        }
    }

    /// The `bootstrap.servers` value.
    pub fn bootstrap_servers(&self) -> String {
        self.brokers.join(",")
    }

    /// The registry URL, or a clear error when none is configured.
    pub fn registry(&self) -> Result<&str, ClusterError> {
        self.registry.as_deref().ok_or(ClusterError::NoRegistry)
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn parse_brokers(value: &str) -> Result<Vec<String>, ClusterError> {
    let bad = |problem: String| ClusterError::BadBrokers {
        value: value.to_string(),
        problem,
    };
    value
        .split(',')
        .map(str::trim)
        .map(|entry| {
            let (host, port) = entry
                .rsplit_once(':')
                .ok_or_else(|| bad(format!("{entry:?} has no port")))?;
            if host.is_empty() {
                return Err(bad(format!("{entry:?} has no host")));
            }
            port.parse::<u16>()
                .map_err(|_| bad(format!("{entry:?} has port {port:?}, not a number from 1 to 65535")))?;
            Ok(entry.to_string())
        })
        .collect()
}

fn parse_registry(value: &str) -> Result<String, ClusterError> {
    let trimmed = value.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .ok_or_else(|| ClusterError::BadRegistry(value.to_string()))?;
    if rest.is_empty() {
        return Err(ClusterError::BadRegistry(value.to_string()));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_lists_need_host_and_numeric_port() {
        assert_eq!(
            parse_brokers("a:9092, b:9093").expect("valid"),
            vec!["a:9092".to_string(), "b:9093".to_string()]
        );
        for bad in ["a", "a:", ":9092", "a:99999", "a:9092,", "a:x"] {
            let err = parse_brokers(bad).expect_err(bad).to_string();
            assert!(err.contains("SEAM_BROKERS"), "{err}");
        }
    }

    #[test]
    fn registry_urls_need_a_scheme_and_lose_the_trailing_slash() {
        assert_eq!(parse_registry("http://r:8081/").expect("valid"), "http://r:8081");
        assert_eq!(
            parse_registry("https://r/apis/ccompat/v7").expect("valid"),
            "https://r/apis/ccompat/v7"
        );
        assert!(parse_registry("r:8081").is_err());
        assert!(parse_registry("http://").is_err());
    }
}
