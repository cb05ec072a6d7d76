//! Where the local stack keeps its downloads, data, logs and state on disk.
//!
//! Everything lives under one root, `SEAM_HOME` (default `~/.seam`), so a user can see
//! and delete it in one place and tests can run a stack of their own in a temp folder:
//!
//! ```text
//! $SEAM_HOME/dist/kafka-<version>/libs/*.jar     the broker classpath (fetched once)
//! $SEAM_HOME/dist/kafka-<version>/config/        log4j2 configs written by seam
//! $SEAM_HOME/dist/apicurio-<version>/             the registry's Quarkus app (fetched once)
//! $SEAM_HOME/local/state.json                     the running stack: endpoints, pids
//! $SEAM_HOME/local/brokers-<n>/cluster.id         one KRaft cluster id per stack shape
//! $SEAM_HOME/local/brokers-<n>/node-<id>/         server.properties, kafka.log, data/
//! $SEAM_HOME/local/brokers-<n>/registry.log       the registry's log
//! $SEAM_HOME/dist/postgres-<version>/             PostgreSQL's bin/, lib/, share/ (fetched once)
//! $SEAM_HOME/local/brokers-<n>/postgres/          its data/ and postgres.log (`up --postgres`)
//! $SEAM_HOME/run/<service>.url                    the HTTP address of a running service
//! ```
//!
//! The registry stores its schemas in Kafka (kafkasql), so they live and die with the
//! broker data of the same stack shape.

use super::shape::Shape;
use std::path::{Path, PathBuf};

use super::error::LocalError;

/// Apache Kafka release fetched from Maven Central (`org.apache.kafka:kafka_2.13`).
pub const KAFKA_VERSION: &str = "4.4.0";
/// Apicurio Registry release fetched from Maven Central (`io.apicurio:apicurio-registry-app`).
pub const APICURIO_VERSION: &str = "3.3.3";

/// PostgreSQL release fetched from Maven Central (`io.zonky.test.postgres:embedded-postgres-binaries-linux-<arch>`,
/// relocatable binaries with their own libraries, `pgoutput` included).
pub const POSTGRES_VERSION: &str = "17.7.0";

/// The on-disk layout rooted at `SEAM_HOME`; every path the local stack touches comes from here.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home named by `SEAM_HOME`, else `$HOME/.seam`.
    pub fn from_env() -> Result<Self, LocalError> {
        if let Some(dir) = std::env::var_os("SEAM_HOME").filter(|v| !v.is_empty()) {
            return Ok(Self::at(PathBuf::from(dir)));
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => Ok(Self::at(PathBuf::from(home).join(".seam"))),
            None => Err(LocalError::NoHome),
        }
    }

    /// A home at an explicit folder (tests use a temp folder).
    pub fn at(root: PathBuf) -> Self {
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir().map(|cwd| cwd.join(&root)).unwrap_or(root)
        };
        Self { root }
    }

    /// The root folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Downloads shared by every stack shape.
    pub fn dist(&self) -> PathBuf {
        self.root.join("dist")
    }

    /// The broker classpath folder (`-cp "<this>/*"`).
    pub fn kafka_libs(&self) -> PathBuf {
        self.dist().join(format!("kafka-{KAFKA_VERSION}")).join("libs")
    }

    /// Log4j2 configs for the broker and for the storage tool.
    pub fn kafka_config(&self) -> PathBuf {
        self.dist().join(format!("kafka-{KAFKA_VERSION}")).join("config")
    }

    /// The unpacked registry application (holds `quarkus-run.jar`).
    pub fn apicurio(&self) -> PathBuf {
        self.dist().join(format!("apicurio-{APICURIO_VERSION}"))
    }

    /// The unpacked PostgreSQL binaries (holds `bin/postgres`, `bin/initdb`).
    pub fn postgres_dist(&self) -> PathBuf {
        self.dist().join(format!("postgres-{POSTGRES_VERSION}"))
    }

    /// Running-stack bookkeeping and data.
    pub fn local(&self) -> PathBuf {
        self.root.join("local")
    }

    /// The state file other commands and the test kit read.
    pub fn state_file(&self) -> PathBuf {
        self.local().join("state.json")
    }

    /// Data of a stack of this shape; a single node, a 3-node cluster and a secure one keep
    /// apart (a secure stack's storage is formatted with its admin's SCRAM credential).
    pub fn stack_dir(&self, shape: &Shape) -> PathBuf {
        let secure = if shape.secure { "-secure" } else { "" };
        self.local().join(format!("brokers-{}{secure}", shape.brokers))
    }

    /// One broker's folder inside a stack.
    pub fn node_dir(&self, shape: &Shape, node_id: u8) -> PathBuf {
        self.stack_dir(shape).join(format!("node-{node_id}"))
    }

    /// The stack's PostgreSQL: `data/` (the cluster `initdb` made) and `postgres.log`.
    pub fn postgres_dir(&self, shape: &Shape) -> PathBuf {
        self.stack_dir(shape).join("postgres")
    }

    /// The secure stack's CA, broker keystore, admin credentials and service users.
    pub fn secure_dir(&self, shape: &Shape) -> PathBuf {
        self.stack_dir(shape).join("secure")
    }

    /// Where a running service announces its HTTP address, so `seam register`, `seam replay`
    /// and `seam snapshot export --service` find it without a URL flag.
    pub fn service_file(&self, service: &str) -> PathBuf {
        self.root.join("run").join(format!("{service}.url"))
    }

    /// Announces `url` as the address of `service` (replacing an older announcement).
    pub fn announce(&self, service: &str, url: &str) -> std::io::Result<()> {
        let file = self.service_file(service);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension("url.tmp");
        std::fs::write(&tmp, format!("{url}\n"))?;
        std::fs::rename(tmp, file)
    }

    /// Withdraws the announcement of `service` if it is still `url` (a newer instance keeps its own).
    pub fn withdraw(&self, service: &str, url: &str) {
        if self.service_url(service).as_deref() == Some(url) {
            let _ = std::fs::remove_file(self.service_file(service));
        }
    }

    /// Every service that announced an address, by name.
    pub fn announced(&self) -> Vec<(String, String)> {
        let Ok(dir) = std::fs::read_dir(self.root.join("run")) else {
            return Vec::new();
        };
        let mut out: Vec<(String, String)> = dir
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().strip_suffix(".url")?.to_string();
                let url = self.service_url(&name)?;
                Some((name, url))
            })
            .collect();
        out.sort();
        out
    }

    /// The announced address of `service`, if it announced one.
    pub fn service_url(&self, service: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.service_file(service)).ok()?;
        let url = text.trim();
        (!url.is_empty()).then(|| url.to_string())
    }
}
