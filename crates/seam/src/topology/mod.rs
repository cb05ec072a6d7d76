//! Topology files (`deploy/*.yaml`): the services, their topics and schemas, and which consumer
//! reads which source through which translator. `seam deploy`, the demo and `seam register` all
//! start from here, so a mistake is reported once, precisely: the file, the field, the fix.

mod edit;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use edit::{add_source, Edit};

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
    /// Where the translators' sources are: `<translators>/<translator>/reader/*.avsc` are the
    /// reader schemas each translator compiles in, which `seam check` and `seam deploy` resolve
    /// against every registered version of what it reads. Relative to the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translators: Option<PathBuf>,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Lowercase name: letters, digits, dashes.
    pub name: String,
    /// Partitions of `<name>.events` (fixed once created: per-subject order depends on it).
    pub partitions: i32,
    /// Replication factor; default: 3, or the number of brokers when fewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<i32>,
    /// `min.insync.replicas`; default: 2, or 1 when the replication factor is 1 (acks=all then
    /// survives one broker loss without refusing writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_insync_replicas: Option<i32>,
    /// How long events stay on the topic: `unbounded` (the default: consumers replay and
    /// bootstrap from it) or a duration such as `30d`, `12h`, `90m`, `600s`, `500ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// `delete` (the default) or `compact`, or `compact,delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_policy: Option<String>,
    /// Directory of the service's `.avsc` files, relative to the topology file. A
    /// `postgres-cdc` service has none: its schemas come from its tables' columns.
    #[serde(default, skip_serializing_if = "is_empty_path")]
    pub schemas: PathBuf,
    /// How the service's events arise: `seam` (a service on the runtime, the default),
    /// `postgres-cdc` (the row changes of a CRUD service's PostgreSQL tables) or `external` (a
    /// topic another producer writes: Debezium's, a legacy service's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// For `kind: postgres-cdc`: the database and the tables to publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSpec>,
    /// For `kind: external`: the topic, written by something other than seam, that holds the
    /// service's events (any name; `partitions` must be its partition count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The registry's compatibility level for the service's subjects; default
    /// `BACKWARD_TRANSITIVE`, so a translator reading any old event still resolves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility: Option<String>,
    /// The Kafka principal the service runs as; default `User:<name>`. ACLs let it write only
    /// its own topic and read only the sources it is registered for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// The kind of a service whose events are its PostgreSQL tables' row changes.
pub const POSTGRES_CDC: &str = "postgres-cdc";

/// The kind of a source whose events are on a topic no seam service writes.
pub const EXTERNAL: &str = "external";

/// The kind of a CRUD service that only consumes: its translated commands are SQL on its
/// PostgreSQL database (a `postgres-cdc` service consumes the same way besides publishing).
pub const POSTGRES_SINK: &str = "postgres-sink";

/// Where a `postgres-cdc` service reads from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSpec {
    /// The database: a name on the server of `SEAM_POSTGRES` (or the local stack's), or a whole
    /// `postgres://` URL.
    pub database: String,
    /// The tables' schema; default `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The tables to publish, each becoming `<Table>Inserted`, `<Table>Updated` and
    /// `<Table>Deleted` events about the subject `<table>/<key>` (none for a `postgres-sink`).
    #[serde(default)]
    pub tables: Vec<TableSpec>,
}

impl PostgresSpec {
    /// The tables' schema.
    pub fn schema(&self) -> &str {
        self.schema.as_deref().unwrap_or("public")
    }
}

/// One published table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Its name.
    pub name: String,
    /// The columns whose values make the subject; default its primary key. A key other than
    /// the primary key needs `REPLICA IDENTITY FULL`, so deletes carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<String>>,
}

fn is_empty_path(p: &Path) -> bool {
    p.as_os_str().is_empty()
}

/// Compatibility levels a Confluent-compatible registry accepts.
pub const COMPATIBILITY_LEVELS: [&str; 7] = [
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
];

impl ServiceSpec {
    /// The replication factor on a cluster with `brokers` brokers.
    pub fn replication_on(&self, brokers: i32) -> i32 {
        self.replication.unwrap_or(3).min(brokers.max(1))
    }

    /// `min.insync.replicas` for a replication factor of `rf`.
    pub fn min_insync_on(&self, rf: i32) -> i32 {
        self.min_insync_replicas.unwrap_or(if rf >= 3 { 2 } else { 1 })
    }

    /// `retention.ms` (-1: unbounded). Validated at load, so a bad value never gets here.
    pub fn retention_ms(&self) -> i64 {
        self.retention.as_deref().map_or(Ok(-1), parse_retention).unwrap_or(-1)
    }

    /// `cleanup.policy`.
    pub fn cleanup_policy(&self) -> &str {
        self.cleanup_policy.as_deref().unwrap_or("delete")
    }

    /// The registry compatibility level.
    pub fn compatibility(&self) -> &str {
        self.compatibility.as_deref().unwrap_or("BACKWARD_TRANSITIVE")
    }

    /// The Kafka principal, `User:<name>` unless declared.
    pub fn principal(&self) -> String {
        self.principal.clone().unwrap_or_else(|| format!("User:{}", self.name))
    }

    /// Whether its events are a PostgreSQL database's row changes (its schemas come from there).
    pub fn is_postgres_cdc(&self) -> bool {
        self.kind.as_deref() == Some(POSTGRES_CDC)
    }

    /// Whether it only consumes, into its PostgreSQL database (it has no events topic).
    pub fn is_postgres_sink(&self) -> bool {
        self.kind.as_deref() == Some(POSTGRES_SINK)
    }

    /// Whether its events are on a topic another producer writes (seam publishes nothing for
    /// it, registers none of its schemas and creates none of its topics).
    pub fn is_external(&self) -> bool {
        self.kind.as_deref() == Some(EXTERNAL)
    }
}

/// `unbounded` → -1; `30d`, `12h`, `90m`, `600s`, `500ms` → milliseconds.
pub fn parse_retention(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text == "unbounded" {
        return Ok(-1);
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("`{text}` does not start with a number"))?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{text}` has no unit ms, s, m, h or d")),
    };
    if n == 0 {
        return Err(format!("`{text}` would delete every event at once"));
    }
    n.checked_mul(scale).ok_or_else(|| format!("`{text}` is too long"))
}

/// One consumer and its sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSpec {
    /// The consuming service (declared under `services`).
    pub service: String,
    /// What it reads; empty (or left out) for a consumer deployed before its first
    /// `seam register`, so its dead-letter topic and group exist when it starts.
    #[serde(default)]
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

/// `a/b/../c` as `a/c`, without asking the file system: paths in messages read as written.
fn lexically_clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
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
            if service.schemas.is_relative() && !is_empty_path(&service.schemas) {
                service.schemas = base.join(&service.schemas);
            }
        }
        if let Some(dir) = topology.translators.as_mut().filter(|d| d.is_relative()) {
            *dir = lexically_clean(&base.join(&*dir));
        }
        topology.check_schema_dirs(&file)?;
        Ok(topology)
    }

    /// Parses and validates topology text (`file` names it in errors).
    pub fn parse(file: &str, text: &str) -> Result<Self, TopologyError> {
        let topology: Self = serde_norway::from_str(text).map_err(|e| {
            let mut detail = e.to_string();
            if detail.contains("expected struct Topology") {
                // serde quotes the whole document here; say what a topology looks like instead.
                detail = "not a topology: a topology file is a YAML mapping with `apiVersion: seam/v1`, `name` and `services` (see deploy/student-affairs.yaml)".into();
            }
            TopologyError::Syntax {
                file: file.to_string(),
                detail,
            }
        })?;
        topology.validate(file)?;
        for s in &topology.services {
            if let (true, Some(topic)) = (s.is_external(), &s.topic) {
                crate::translator::route_external(&s.name, topic);
            }
        }
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
            if let Some(isr) = s.min_insync_replicas {
                let rf = s.replication.unwrap_or(3);
                if !(1..=rf).contains(&isr) {
                    return Err(invalid(
                        format!("services[{i}].minInsyncReplicas"),
                        format!("{isr} in-sync replicas with a replication factor of {rf}"),
                        format!("use 1 to {rf} (2 with 3 replicas keeps acks=all writing through one broker loss)"),
                    ));
                }
            }
            if let Some(r) = &s.retention {
                if let Err(problem) = parse_retention(r) {
                    return Err(invalid(
                        format!("services[{i}].retention"),
                        problem,
                        "use `unbounded` (replay and bootstrap need the history) or a duration such as 30d, 12h, 90m, 600s".into(),
                    ));
                }
            }
            if let Some(p) = &s.cleanup_policy {
                if !["delete", "compact", "compact,delete", "delete,compact"].contains(&p.as_str()) {
                    return Err(invalid(
                        format!("services[{i}].cleanupPolicy"),
                        format!("`{p}` is not a cleanup policy"),
                        "use `delete`, `compact` or `compact,delete`".into(),
                    ));
                }
            }
            if let Some(c) = &s.compatibility {
                if !COMPATIBILITY_LEVELS.contains(&c.as_str()) {
                    return Err(invalid(
                        format!("services[{i}].compatibility"),
                        format!("`{c}` is not a compatibility level"),
                        format!("use one of {}", COMPATIBILITY_LEVELS.join(", ")),
                    ));
                }
            }
            match (s.kind.as_deref(), &s.postgres) {
                (None | Some("seam"), None) => {
                    if is_empty_path(&s.schemas) {
                        return Err(invalid(
                            format!("services[{i}].schemas"),
                            "missing".into(),
                            "name the directory of the service's .avsc files, relative to the topology file".into(),
                        ));
                    }
                }
                (None | Some("seam"), Some(_)) => {
                    return Err(invalid(
                        format!("services[{i}].postgres"),
                        format!("{} is a seam service, so it reads no database", s.name),
                        format!(
                            "add `kind: {POSTGRES_CDC}` to publish the database's row changes, or remove `postgres:`"
                        ),
                    ));
                }
                (Some(POSTGRES_CDC), None) => {
                    return Err(invalid(
                        format!("services[{i}].postgres"),
                        "missing".into(),
                        "a postgres-cdc service needs `postgres:` with `database:` and `tables:` (each `- name: <table>`)".into(),
                    ));
                }
                (Some(POSTGRES_CDC), Some(pg)) => {
                    if !is_empty_path(&s.schemas) {
                        return Err(invalid(
                            format!("services[{i}].schemas"),
                            format!("{} takes its schemas from its tables' columns", s.name),
                            "remove `schemas:` from a postgres-cdc service".into(),
                        ));
                    }
                    if pg.database.trim().is_empty() {
                        return Err(invalid(
                            format!("services[{i}].postgres.database"),
                            "empty".into(),
                            "name the database (e.g. `customers`) or give a postgres:// URL".into(),
                        ));
                    }
                    if pg.tables.is_empty() {
                        return Err(invalid(
                            format!("services[{i}].postgres.tables"),
                            "no tables".into(),
                            "list the tables to publish, e.g. `- name: customers`".into(),
                        ));
                    }
                    let mut tables = BTreeSet::new();
                    for (j, t) in pg.tables.iter().enumerate() {
                        if t.name.is_empty() || t.name.contains(['"', '.', '\0']) {
                            return Err(invalid(
                                format!("services[{i}].postgres.tables[{j}].name"),
                                format!("`{}` is not a table name", t.name),
                                "give the table's name without schema or quotes (the schema goes in `postgres.schema`)"
                                    .into(),
                            ));
                        }
                        if !tables.insert(t.name.as_str()) {
                            return Err(invalid(
                                format!("services[{i}].postgres.tables[{j}].name"),
                                format!("`{}` is listed twice", t.name),
                                "keep one entry per table".into(),
                            ));
                        }
                        if t.key.as_ref().is_some_and(Vec::is_empty) {
                            return Err(invalid(
                                format!("services[{i}].postgres.tables[{j}].key"),
                                "empty".into(),
                                "name the key columns, or leave `key:` out to use the primary key".into(),
                            ));
                        }
                    }
                }
                (Some(POSTGRES_SINK), None) => {
                    return Err(invalid(
                        format!("services[{i}].postgres"),
                        "missing".into(),
                        "a postgres-sink service needs `postgres:` with the `database:` its translated statements run on".into(),
                    ));
                }
                (Some(POSTGRES_SINK), Some(pg)) => {
                    if pg.database.trim().is_empty() {
                        return Err(invalid(
                            format!("services[{i}].postgres.database"),
                            "empty".into(),
                            "name the database (e.g. `orders`) or give a postgres:// URL".into(),
                        ));
                    }
                    if !pg.tables.is_empty() {
                        return Err(invalid(
                            format!("services[{i}].postgres.tables"),
                            format!("{} only consumes, so it publishes no tables", s.name),
                            format!("remove `tables:`, or make it `kind: {POSTGRES_CDC}` to publish them too"),
                        ));
                    }
                    if !is_empty_path(&s.schemas) {
                        return Err(invalid(
                            format!("services[{i}].schemas"),
                            format!("{} publishes no events", s.name),
                            "remove `schemas:` from a postgres-sink service".into(),
                        ));
                    }
                }
                (Some(EXTERNAL), Some(_)) => {
                    return Err(invalid(
                        format!("services[{i}].postgres"),
                        format!("{} is an external topic, so it reads no database", s.name),
                        "remove `postgres:`".into(),
                    ));
                }
                (Some(EXTERNAL), None) => {
                    let Some(topic) = &s.topic else {
                        return Err(invalid(
                            format!("services[{i}].topic"),
                            "missing".into(),
                            "an external source names its topic: `topic: <the topic another producer writes>`".into(),
                        ));
                    };
                    let legal = !topic.is_empty()
                        && topic.len() <= 249
                        && topic != "."
                        && topic != ".."
                        && topic
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                    if !legal {
                        return Err(invalid(
                            format!("services[{i}].topic"),
                            format!("`{topic}` is not a Kafka topic name"),
                            "use letters, digits, `.`, `_` and `-` (at most 249)".into(),
                        ));
                    }
                    if !is_empty_path(&s.schemas) {
                        return Err(invalid(
                            format!("services[{i}].schemas"),
                            format!("{}'s producer registers its own schemas", s.name),
                            "remove `schemas:` from an external source; its records are decoded by the schema id they carry".into(),
                        ));
                    }
                }
                (Some(other), _) => {
                    return Err(invalid(
                        format!("services[{i}].kind"),
                        format!("`{other}` is not a service kind"),
                        format!("use `seam` (the default), `{POSTGRES_CDC}`, `{POSTGRES_SINK}` or `{EXTERNAL}`"),
                    ));
                }
            }
            if s.topic.is_some() && !s.is_external() {
                return Err(invalid(
                    format!("services[{i}].topic"),
                    format!("{}'s topic is {}.events", s.name, s.name),
                    format!("remove `topic:`, or add `kind: {EXTERNAL}` for a topic another producer writes"),
                ));
            }
            if let Some(p) = &s.principal {
                let valid = p.split_once(':').is_some_and(|(kind, name)| {
                    !kind.is_empty() && !name.is_empty() && !name.contains(['*', ' ', ','])
                });
                if !valid {
                    return Err(invalid(
                        format!("services[{i}].principal"),
                        format!("`{p}` is not a Kafka principal"),
                        format!("write it as `User:<name>`, e.g. `User:{}`", s.name),
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
            for (j, src) in c.sources.iter().enumerate() {
                let field = format!("consumers[{i}].sources[{j}]");
                if !names.contains(src.service.as_str()) {
                    return Err(invalid(
                        format!("{field}.service"),
                        format!("`{}` is not a declared service", src.service),
                        format!("declare it under services, or use one of {names:?}"),
                    ));
                }
                if self.service(&src.service).is_some_and(ServiceSpec::is_postgres_sink) {
                    return Err(invalid(
                        format!("{field}.service"),
                        format!(
                            "{} is a postgres-sink: it only consumes, so it has no events to read",
                            src.service
                        ),
                        format!(
                            "read another source, or make {} `kind: {POSTGRES_CDC}` to publish its tables",
                            src.service
                        ),
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
            if s.is_postgres_cdc() || s.is_external() || s.is_postgres_sink() {
                continue;
            }
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
