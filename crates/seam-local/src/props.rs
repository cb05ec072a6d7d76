//! librdkafka client properties from a Java-style properties file, the one form every Kafka
//! tool reads; `Debug` never shows a secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A properties file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("Kafka client properties {}: {problem}; give a file of key=value lines (security.protocol, sasl.mechanism, sasl.username, sasl.password, ssl.ca.location)", path.display())]
pub struct BadProps {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: String,
}

/// librdkafka properties applied to every client; `Debug` hides passwords and secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProps(pub BTreeMap<String, String>);

impl std::fmt::Debug for KafkaProps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { "[redacted]" } else { v.as_str() }))
            .collect();
        shown.fmt(f)
    }
}

/// Whether a property holds a secret that must never reach a log.
pub fn is_secret(key: &str) -> bool {
    key.contains("password") || key.contains("secret") || key.contains("jaas") || key.ends_with(".pem")
}

impl KafkaProps {
    /// Reads a Java/librdkafka properties file (`key=value`, `#` comments).
    pub fn load(path: &Path) -> Result<Self, BadProps> {
        let text = std::fs::read_to_string(path).map_err(|e| BadProps {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        let mut props = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(BadProps {
                    path: path.to_path_buf(),
                    problem: format!("line {} is not key=value", i + 1),
                });
            };
            props.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(Self(props))
    }
}
