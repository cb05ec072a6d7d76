//! Where the Kafka brokers and the schema registry are, and how to authenticate, for every
//! command, service and test.
//!
//! An existing cluster is chosen with `SEAM_BROKERS` (comma-separated `host:port`) and
//! `SEAM_REGISTRY` (the Confluent-compatible API base URL). Without them, the running
//! local stack of `SEAM_HOME` is used. One rule everywhere, so a command and a test
//! never disagree about which cluster they talk to.
//!
//! PostgreSQL (for CRUD services, CDC sources and database sinks) is found the same way:
//! `SEAM_POSTGRES` (a `postgres://` URL), else the local stack's (`seam local up --postgres`).
//!
//! Security settings are librdkafka properties: `SEAM_KAFKA_CONFIG` names a properties file
//! (`security.protocol`, `sasl.*`, `ssl.ca.location`, ...). On a `seam local up --secure` stack
//! the CLI uses the stack's admin credentials and a service its own principal's, written by
//! `seam deploy`. Values are never printed: `Debug` redacts secrets.

use std::path::{Path, PathBuf};

use rdkafka::ClientConfig;

use crate::props::BadProps;
pub use crate::props::{is_secret, KafkaProps};
use crate::{Home, LocalError, StackState};

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
    /// Security (and tuning) properties for every Kafka client.
    pub kafka: KafkaProps,
    /// Where `seam deploy` writes the credentials of users it creates (the secure local stack).
    pub secrets: Option<PathBuf>,
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
    /// The properties file of SEAM_KAFKA_CONFIG (or a principal's) cannot be used.
    #[error(transparent)]
    BadProps(#[from] BadProps),
    /// Neither SEAM_POSTGRES nor a local stack with PostgreSQL.
    #[error("no PostgreSQL to talk to: start the local stack with `seam local up --postgres` (it adds PostgreSQL to a running stack), or set SEAM_POSTGRES=postgres://user:password@host:5432/database")]
    NoPostgres,
    /// SEAM_POSTGRES is malformed.
    #[error("SEAM_POSTGRES={0:?} is not a PostgreSQL URL; give postgres://user[:password]@host[:port][/database]")]
    BadPostgres(String),
    /// A service on the secure local stack has no credentials yet.
    #[error("no credentials for the Kafka principal {principal} on the secure local stack (looked for {}); run `seam deploy -t <topology>` first: it creates the service users and writes their credentials", path.display())]
    NoCredentials {
        /// The principal's user name.
        principal: String,
        /// Where they were expected.
        path: PathBuf,
    },
}

/// The file, in the credentials directory, of the table of bearer tokens services accept.
pub const HTTP_TOKENS: &str = "http-tokens.json";
/// The operator's user name: its bearer token is `<secrets>/admin.token`.
pub const OPERATOR: &str = "admin";

impl Endpoints {
    /// The bearer token `user` (the operator when `None`) presents to services' HTTP APIs:
    /// `SEAM_HTTP_TOKEN`, else the one `seam deploy` wrote to `<secrets>/<user>.token`.
    pub fn http_token(&self, user: Option<&str>) -> Option<String> {
        if let Some(token) = env("SEAM_HTTP_TOKEN") {
            return Some(token);
        }
        let file = self
            .secrets
            .as_ref()?
            .join(format!("{}.token", user.unwrap_or(OPERATOR)));
        let token = std::fs::read_to_string(file).ok()?;
        Some(token.trim().to_string()).filter(|t| !t.is_empty())
    }

    /// The token table a service checks its callers against: `SEAM_HTTP_TOKENS`, else the one
    /// `seam deploy` wrote next to the credentials, when it exists.
    pub fn http_token_table(&self) -> Option<PathBuf> {
        if let Some(path) = env("SEAM_HTTP_TOKENS") {
            return Some(PathBuf::from(path));
        }
        Some(self.secrets.as_ref()?.join(HTTP_TOKENS)).filter(|p| p.is_file())
    }

    /// `SEAM_BROKERS`/`SEAM_REGISTRY` if set, else the local stack of `SEAM_HOME`; as the
    /// operator (the secure stack's admin).
    pub fn discover() -> Result<Self, ClusterError> {
        Self::discover_as(None)
    }

    /// Like [`Endpoints::discover`], for a service: on the secure local stack it connects as
    /// its own principal (`User:<service>` unless `SEAM_PRINCIPAL` names another user).
    pub fn discover_for(service: &str) -> Result<Self, ClusterError> {
        let principal = env("SEAM_PRINCIPAL").unwrap_or_else(|| service.to_string());
        Self::discover_as(Some(&principal))
    }

    fn discover_as(user: Option<&str>) -> Result<Self, ClusterError> {
        let mut endpoints = Self::discover_files(user)?;
        // `SEAM_KAFKA_SASL_PASSWORD=…` sets `sasl.password`: how a container gets a secret.
        for (key, value) in std::env::vars() {
            if let Some(prop) = key.strip_prefix("SEAM_KAFKA_").filter(|p| *p != "CONFIG") {
                endpoints
                    .kafka
                    .0
                    .insert(prop.to_ascii_lowercase().replace('_', "."), value);
            }
        }
        Ok(endpoints)
    }

    fn discover_files(user: Option<&str>) -> Result<Self, ClusterError> {
        let explicit = env("SEAM_KAFKA_CONFIG")
            .map(|p| KafkaProps::load(Path::new(&p)))
            .transpose()?;
        if let Some(brokers) = env("SEAM_BROKERS") {
            return Ok(Self {
                brokers: parse_brokers(&brokers)?,
                registry: env("SEAM_REGISTRY").map(|r| parse_registry(&r)).transpose()?,
                origin: Origin::Environment,
                kafka: explicit.unwrap_or_default(),
                secrets: env("SEAM_SECRETS").map(PathBuf::from),
            });
        }
        let home = Home::from_env()?;
        let Some(st) = StackState::load(&home)? else {
            return Err(ClusterError::NoCluster);
        };
        let mut endpoints = Self {
            brokers: st.shape.bootstrap(),
            registry: Some(st.shape.registry_url()),
            origin: Origin::LocalStack {
                brokers: st.shape.brokers,
            },
            kafka: KafkaProps::default(),
            secrets: None,
        };
        if st.shape.secure {
            let dir = home.secure_dir(&st.shape);
            endpoints.secrets = Some(dir.join("users"));
            endpoints.kafka = match (explicit, user) {
                (Some(props), _) => props,
                (None, None) => KafkaProps::load(&dir.join("admin.properties"))?,
                (None, Some(user)) => {
                    let path = dir.join("users").join(format!("{user}.properties"));
                    if !path.is_file() {
                        return Err(ClusterError::NoCredentials {
                            principal: user.to_string(),
                            path,
                        });
                    }
                    KafkaProps::load(&path)?
                }
            };
        } else if let Some(props) = explicit {
            endpoints.kafka = props;
        }
        Ok(endpoints)
    }

    /// A client config for this cluster: bootstrap servers plus the security properties.
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap_servers());
        for (k, v) in &self.kafka.0 {
            c.set(k, v);
        }
        c
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

/// A PostgreSQL server to connect to. `Debug` and [`Postgres::redacted`] hide the password.
#[derive(Clone)]
pub struct Postgres {
    url: String,
    /// Where it came from.
    pub origin: Origin,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("url", &self.redacted())
            .field("origin", &self.origin)
            .finish()
    }
}

impl Postgres {
    /// `SEAM_POSTGRES` if set, else the PostgreSQL of the local stack of `SEAM_HOME`.
    pub fn discover() -> Result<Self, ClusterError> {
        if let Some(url) = env("SEAM_POSTGRES") {
            return Ok(Self {
                url: parse_postgres(&url)?,
                origin: Origin::Environment,
            });
        }
        let home = Home::from_env()?;
        let st = StackState::load(&home)?.ok_or(ClusterError::NoPostgres)?;
        let url = st
            .shape
            .postgres_url(crate::postgres::DEFAULT_DATABASE)
            .ok_or(ClusterError::NoPostgres)?;
        Ok(Self {
            url,
            origin: Origin::LocalStack {
                brokers: st.shape.brokers,
            },
        })
    }

    /// The connection URL as given (it may hold a password: never log it; use `redacted`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of another database on the same server, e.g. each CRUD service's own.
    pub fn database(&self, name: &str) -> String {
        let (head, query) = match self.url.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (self.url.as_str(), None),
        };
        let scheme_end = head.find("://").map_or(0, |i| i + 3);
        let server = match head[scheme_end..].find('/') {
            Some(slash) => &head[..scheme_end + slash],
            None => head,
        };
        match query {
            Some(q) => format!("{server}/{name}?{q}"),
            None => format!("{server}/{name}"),
        }
    }

    /// The URL with its password replaced by `***`, for messages.
    pub fn redacted(&self) -> String {
        redact_url(&self.url)
    }
}

/// `postgres://user:***@host/db` for `postgres://user:secret@host/db`.
pub fn redact_url(url: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}{}:***{}", &url[..scheme_end], &rest[..colon], &rest[at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

fn parse_postgres(value: &str) -> Result<String, ClusterError> {
    let rest = value
        .strip_prefix("postgres://")
        .or_else(|| value.strip_prefix("postgresql://"))
        .ok_or_else(|| ClusterError::BadPostgres(redact_url(value)))?;
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() {
        return Err(ClusterError::BadPostgres(redact_url(value)));
    }
    Ok(value.to_string())
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
    fn postgres_urls_name_a_host_and_hide_their_password() {
        assert!(parse_postgres("postgres://u:p@db:5432/app").is_ok());
        assert!(parse_postgres("postgresql://db").is_ok());
        for bad in ["db:5432", "postgres://", "postgres:///app", "mysql://u:p@db/x"] {
            let err = parse_postgres(bad).expect_err(bad).to_string();
            assert!(err.contains("SEAM_POSTGRES"), "{err}");
        }
        let err = parse_postgres("mysql://u:s3cret@db/x").expect_err("mysql").to_string();
        assert!(!err.contains("s3cret"), "{err}");
        let pg = Postgres {
            url: "postgres://u:s3cret@db:5432/app?sslmode=require".into(),
            origin: Origin::Environment,
        };
        assert_eq!(
            pg.database("orders"),
            "postgres://u:s3cret@db:5432/orders?sslmode=require"
        );
        assert_eq!(pg.redacted(), "postgres://u:***@db:5432/app?sslmode=require");
        assert!(!format!("{pg:?}").contains("s3cret"));
        let bare = Postgres {
            url: "postgres://seam@127.0.0.1:5432".into(),
            origin: Origin::Environment,
        };
        assert_eq!(bare.database("seam"), "postgres://seam@127.0.0.1:5432/seam");
    }

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
    fn properties_files_load_and_debug_output_hides_secrets() {
        let path = std::env::temp_dir().join(format!("seam-props-{}.properties", std::process::id()));
        std::fs::write(
            &path,
            "# comment\nsecurity.protocol=SASL_SSL\nsasl.username = svc\nsasl.password=s3cret=x\n\n",
        )
        .expect("write");
        let props = KafkaProps::load(&path).expect("load");
        assert_eq!(props.0["sasl.password"], "s3cret=x");
        assert_eq!(props.0["sasl.username"], "svc");
        let shown = format!("{props:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("[redacted]") && shown.contains("SASL_SSL"),
            "{shown}"
        );
        std::fs::write(&path, "no equals sign\n").expect("write");
        let err = KafkaProps::load(&path).expect_err("bad line").to_string();
        assert!(err.contains("line 1") && err.contains("key=value"), "{err}");
        let _ = std::fs::remove_file(&path);
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
