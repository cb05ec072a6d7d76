//! Topology files (`deploy/*.yaml`): the services, their topics and schemas, and which consumer
//! reads which source through which translator. `seam deploy`, the demo and `seam register` all
//! start from here, so a mistake is reported once, precisely: the file, the field, the fix.

mod edit;
mod ensure;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use edit::{add_source, Edit};
pub use ensure::{ensure, Ensured};

/// The only version this build reads.
pub const API_VERSION: &str = "seam/v1";

/// A topology file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Topology {
    /// `seam/v1`.
    pub api_version: String,
    /// A name for the whole system.
    pub name: String,
    /// The services (bounded contexts); each publishes to `<name>.events`.
    pub services: Vec<ServiceSpec>,
    /// Subscriptions: which service consumes which sources, through which translator.
    #[serde(default)]
    pub consumers: Vec<ConsumerSpec>,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Lowercase name: letters, digits, dashes.
    pub name: String,
    /// Partitions of `<name>.events` (fixed once created: per-subject order depends on it).
    pub partitions: i32,
    /// Replication factor; default: 3, or the number of brokers when fewer.
    #[serde(default)]
    pub replication: Option<i32>,
    /// Directory of the service's `.avsc` files, relative to the topology file.
    pub schemas: PathBuf,
}

/// One consumer and its sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSpec {
    /// The consuming service (declared under `services`).
    pub service: String,
    /// What it reads.
    pub sources: Vec<SourceSpec>,
}

/// One source of a consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// The source service.
    pub service: String,
    /// The translator, named `<source>-to-<consumer>`.
    pub translator: String,
}

/// A topology file that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("cannot read {file}: {detail}")]
    Read {
        /// File.
        file: String,
        /// Cause.
        detail: String,
    },
    /// Not valid YAML for a topology (unknown or missing fields, wrong types).
    #[error("{file}: {detail}")]
    Syntax {
        /// File.
        file: String,
        /// What the parser said, with line and column.
        detail: String,
    },
    /// A field has a value that cannot work.
    #[error("{file}: {field}: {problem}; {fix}")]
    Invalid {
        /// File.
        file: String,
        /// Path of the field, e.g. `consumers[0].sources[1].translator`.
        field: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
}

impl Topology {
    /// Reads and validates a topology file.
    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError::Read {
            file: file.clone(),
            detail: e.to_string(),
        })?;
        let mut topology = Self::parse(&file, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for service in &mut topology.services {
            if service.schemas.is_relative() {
                service.schemas = base.join(&service.schemas);
            }
        }
        topology.check_schema_dirs(&file)?;
        Ok(topology)
    }

    /// Parses and validates topology text (`file` names it in errors).
    pub fn parse(file: &str, text: &str) -> Result<Self, TopologyError> {
        let topology: Self = serde_norway::from_str(text).map_err(|e| TopologyError::Syntax {
            file: file.to_string(),
            detail: e.to_string(),
        })?;
        topology.validate(file)?;
        Ok(topology)
    }

    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The sources `consumer` reads.
    pub fn sources_of(&self, consumer: &str) -> Vec<&SourceSpec> {
        self.consumers
            .iter()
            .filter(|c| c.service == consumer)
            .flat_map(|c| c.sources.iter())
            .collect()
    }

    fn validate(&self, file: &str) -> Result<(), TopologyError> {
        let invalid = |field: String, problem: String, fix: String| TopologyError::Invalid {
            file: file.to_string(),
            field,
            problem,
            fix,
        };
        if self.api_version != API_VERSION {
            return Err(invalid(
                "apiVersion".into(),
                format!("`{}` is not a version this seam reads", self.api_version),
                format!("use `{API_VERSION}`"),
            ));
        }
        if self.services.is_empty() {
            return Err(invalid(
                "services".into(),
                "no services".into(),
                "declare at least one service".into(),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.services.iter().enumerate() {
            if !valid_name(&s.name) {
                return Err(invalid(
                    format!("services[{i}].name"),
                    format!("`{}` is not a valid service name", s.name),
                    "use lowercase letters, digits and dashes, starting with a letter (it becomes the topic `<name>.events`)".into(),
                ));
            }
            if !names.insert(s.name.as_str()) {
                return Err(invalid(
                    format!("services[{i}].name"),
                    format!("`{}` is declared twice", s.name),
                    "keep one entry per service".into(),
                ));
            }
            if !(1..=1000).contains(&s.partitions) {
                return Err(invalid(
                    format!("services[{i}].partitions"),
                    format!("{} partitions", s.partitions),
                    "use 1 to 1000; it cannot shrink later, and growing it moves subjects between partitions".into(),
                ));
            }
            if let Some(rf) = s.replication {
                if !(1..=5).contains(&rf) {
                    return Err(invalid(
                        format!("services[{i}].replication"),
                        format!("replication factor {rf}"),
                        "use 1 to 5 (3 in production), or leave it out".into(),
                    ));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for (i, c) in self.consumers.iter().enumerate() {
            if !names.contains(c.service.as_str()) {
                return Err(invalid(
                    format!("consumers[{i}].service"),
                    format!("`{}` is not a declared service", c.service),
                    format!("declare it under services, or use one of {names:?}"),
                ));
            }
            if c.sources.is_empty() {
                return Err(invalid(
                    format!("consumers[{i}].sources"),
                    "no sources".into(),
                    "list the services it reads, or remove the entry".into(),
                ));
            }
            for (j, src) in c.sources.iter().enumerate() {
                let field = format!("consumers[{i}].sources[{j}]");
                if !names.contains(src.service.as_str()) {
                    return Err(invalid(
                        format!("{field}.service"),
                        format!("`{}` is not a declared service", src.service),
                        format!("declare it under services, or use one of {names:?}"),
                    ));
                }
                if src.service == c.service {
                    return Err(invalid(
                        format!("{field}.service"),
                        format!("{} would consume its own events", c.service),
                        "a service applies its own events when it emits them; remove this source".into(),
                    ));
                }
                let expected = format!("{}-to-{}", src.service, c.service);
                if src.translator != expected {
                    return Err(invalid(
                        format!("{field}.translator"),
                        format!("`{}` does not name this flow", src.translator),
                        format!("translators are named <source>-to-<consumer>: use `{expected}`"),
                    ));
                }
                if !seen.insert((c.service.as_str(), src.service.as_str())) {
                    return Err(invalid(
                        format!("{field}.service"),
                        format!("{} reads {} twice", c.service, src.service),
                        "keep one subscription per source".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_schema_dirs(&self, file: &str) -> Result<(), TopologyError> {
        for (i, s) in self.services.iter().enumerate() {
            let has_schemas = std::fs::read_dir(&s.schemas)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .any(|e| e.path().extension().is_some_and(|x| x == "avsc"))
                })
                .unwrap_or(false);
            if !has_schemas {
                return Err(TopologyError::Invalid {
                    file: file.to_string(),
                    field: format!("services[{i}].schemas"),
                    problem: format!("{} holds no .avsc files", s.schemas.display()),
                    fix: "point it at the service's schema directory, relative to the topology file".into(),
                });
            }
        }
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && name.len() <= 100
}

#[cfg(test)]
mod tests;
