//! Runs a `postgres-cdc` source: the initial copy, then the logical replication stream, into a
//! seam node that journals and publishes the row changes.
//!
//! Order of durability, which is what makes a crash of this process or of PostgreSQL lose and
//! duplicate nothing:
//! 1. a committed transaction's changes are applied to the node as one command, and the node's
//!    store write (events, mirrored rows, the transaction's end LSN) is durable before the
//!    command's future resolves;
//! 2. only then is the end LSN reported to PostgreSQL as flushed, so the slot keeps every
//!    transaction that is not durable here;
//! 3. after a restart the stream resumes at the store's LSN; a transaction sent again is
//!    recognised by its end LSN and changes nothing.
//!
//! The initial copy reads the tables in a snapshot exported by the slot's creation, so it is
//! exactly the state at the slot's starting point. A copy cut short by a crash is done again
//! from a new slot and diffed against what the first one published (see [`crate::source`]).
//! A slot that disappeared (dropped by an operator, or invalidated by `max_slot_wal_keep_size`)
//! is recovered the same way.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pgwire_replication::{Lsn, PgWireError, ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};
use seam::codec::Catalog;
use seam::runtime::{ExecuteError, Node, NodeConfig, RuntimeError};
use seam::service::Cause;
use seam::topology::{PostgresSpec, ServiceSpec};
use seam_local::cluster::{ClusterError, Endpoints, Postgres};
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_postgres::SimpleQueryMessage;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::pgoutput::{self, Message, Relation, Value};
use crate::schema::{ShapeError, TableShape};
use crate::source::{CdcCommand, CdcSource, CdcState, Change, STATE_KEY};

/// Rows per `Load` command of the initial copy.
const COPY_BATCH: usize = 2_000;
/// Transactions in flight to the node at once (they share store flushes).
const IN_FLIGHT: usize = 64;
/// Session settings that make PostgreSQL print values the same way in the copy and the stream.
const SESSION: &str =
    "-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex";

/// Why a CDC source stopped.
#[derive(Debug, Error)]
pub enum CdcError {
    /// The service is not a `postgres-cdc` service of the topology.
    #[error("{0}")]
    Config(String),
    /// No cluster or no PostgreSQL.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The database refused or failed.
    #[error("PostgreSQL ({server}): {detail}")]
    Postgres {
        /// The server, password hidden.
        server: String,
        /// What happened, with what to do where known.
        detail: String,
    },
    /// A table cannot be published as it is, or changed incompatibly.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// The node failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The node refused a change (a bug) or its store failed.
    #[error("applying row changes: {0}")]
    Execute(#[from] ExecuteError),
    /// The replication stream sent something this source cannot read.
    #[error("the replication stream: {0}")]
    Stream(String),
    /// The HTTP API could not be served.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// What `seam cdc run` needs.
#[derive(Debug, Clone)]
pub struct CdcOptions {
    /// The service as the topology declares it.
    pub spec: ServiceSpec,
    /// Its store directory.
    pub store_dir: PathBuf,
    /// Its store engine, when chosen.
    pub store_engine: Option<seam::store::StoreEngine>,
    /// Where its HTTP API listens (port 0: any).
    pub bind: SocketAddr,
    /// Drop the slot and copy the tables again before following the stream, publishing only
    /// the difference to what was published: the way past a change the source stopped at.
    pub resync: bool,
    /// More of the same service served on the same address: its database sink.
    pub extra: Option<Extra>,
}

/// Routes and metrics served in front of the CDC node's: the service's sink, so one address
/// (the one `seam register` and `seam status` find) answers for the whole CRUD service.
#[derive(Clone)]
pub struct Extra {
    /// Routes that take precedence over the node's.
    pub routes: axum::Router,
    /// Prometheus text appended to the node's `/metrics`.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
}

impl std::fmt::Debug for Extra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Extra { .. }")
    }
}

/// The resolved database of a source.
struct Database {
    url: String,
    redacted: String,
    config: tokio_postgres::Config,
    spec: PostgresSpec,
    slot: String,
    publication: String,
}

impl Database {
    fn resolve(spec: &ServiceSpec) -> Result<Self, CdcError> {
        let pg = spec
            .postgres
            .clone()
            .ok_or_else(|| CdcError::Config(format!("{} has no `postgres:` section in the topology", spec.name)))?;
        let url = if pg.database.starts_with("postgres://") || pg.database.starts_with("postgresql://") {
            pg.database.clone()
        } else {
            Postgres::discover()?.database(&pg.database)
        };
        let redacted = seam_local::cluster::redact_url(&url);
        let config: tokio_postgres::Config = url.parse().map_err(|e| CdcError::Postgres {
            server: redacted.clone(),
            detail: format!("not a usable connection URL: {e}"),
        })?;
        let ident = spec.name.replace('-', "_");
        Ok(Self {
            url,
            redacted,
            config,
            spec: pg,
            slot: format!("seam_{ident}"),
            publication: format!("seam_{ident}"),
        })
    }

    fn error(&self, detail: impl std::fmt::Display) -> CdcError {
        CdcError::Postgres {
            server: self.redacted.clone(),
            detail: detail.to_string(),
        }
    }

    /// An error with its causes: tokio-postgres says only "db error" and keeps the server's
    /// message in its source.
    fn fail(&self, e: impl std::error::Error) -> CdcError {
        let mut detail = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            detail.push_str(&format!(": {c}"));
            cause = c.source();
        }
        self.error(detail)
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, CdcError> {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .map_err(|e| self.fail(e))
            .map_err(|e| match e {
                CdcError::Postgres { server, detail } => CdcError::Postgres {
                    server,
                    detail: format!("cannot connect: {detail}"),
                },
                other => other,
            })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                warn!(error = %e, "PostgreSQL connection ended");
            }
        });
        client
            .batch_execute(
                "SET DateStyle = ISO; SET TimeZone = 'UTC'; SET IntervalStyle = postgres; \
                 SET extra_float_digits = 3; SET bytea_output = hex",
            )
            .await
            .map_err(|e| self.fail(e))?;
        Ok(client)
    }

    fn replication(&self, start: u64) -> Result<ReplicationConfig, CdcError> {
        let host = self
            .config
            .get_hosts()
            .first()
            .and_then(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => Some(h.clone()),
                _ => None,
            })
            .ok_or_else(|| self.error("the URL names no TCP host"))?;
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().unwrap_or("postgres").to_string();
        let password = self
            .config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let database = self.config.get_dbname().unwrap_or(&user).to_string();
        Ok(ReplicationConfig::new(
            host,
            user,
            password,
            database,
            self.slot.clone(),
            self.publication.clone(),
        )
        .with_port(port)
        .with_tls(TlsConfig::disabled())
        .with_start_lsn(Lsn::from_u64(start))
        .with_ack_lsn(Lsn::from_u64(start))
        .with_status_interval(Duration::from_secs(1))
        .with_options(SESSION)
        .with_application_name("seam-cdc"))
    }

    fn qualified(&self, table: &str) -> String {
        format!("{}.{}", quote(self.spec.schema()), quote(table))
    }

    /// The tables' shapes now, checked against what the source needs.
    async fn shapes(&self, client: &tokio_postgres::Client) -> Result<Vec<TableShape>, CdcError> {
        let level: String = client
            .query_one("SHOW wal_level", &[])
            .await
            .map_err(|e| self.fail(e))?
            .get(0);
        if level != "logical" {
            return Err(self.error(format!(
                "wal_level is {level}; a CDC source needs logical decoding: set `wal_level = logical` in postgresql.conf and restart the server (`seam local up --postgres` does)"
            )));
        }
        let mut shapes = Vec::new();
        for t in &self.spec.tables {
            let rows = client
                .query(
                    "SELECT a.attname::text, a.atttypid::int8, COALESCE(a.attnum = ANY(i.indkey), false), c.relreplident::text \
                     FROM pg_attribute a \
                     JOIN pg_class c ON c.oid = a.attrelid \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
                     WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped \
                     ORDER BY a.attnum",
                    &[&self.spec.schema(), &t.name],
                )
                .await
                .map_err(|e| self.fail(e))?;
            if rows.is_empty() {
                return Err(self.error(format!(
                    "table {} does not exist (schema {}); create it, or fix `postgres.tables` in the topology",
                    t.name,
                    self.spec.schema()
                )));
            }
            let identity: String = rows[0].get(3);
            let columns: Vec<(String, u32, bool)> = rows
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u32, r.get::<_, bool>(2)))
                .collect();
            if let Some(key) = &t.key {
                let primary: Vec<&String> = columns.iter().filter(|c| c.2).map(|c| &c.0).collect();
                let same = primary.len() == key.len() && key.iter().all(|k| primary.contains(&k));
                if !same && identity != "f" {
                    return Err(self.error(format!(
                        "table {} is keyed by {key:?} in the topology, which is not its primary key {primary:?}: deletes would not say which row went; run `ALTER TABLE {} REPLICA IDENTITY FULL` or key it by its primary key",
                        t.name,
                        self.qualified(&t.name)
                    )));
                }
            }
            shapes.push(TableShape::new(&t.name, columns, t.key.as_deref())?);
        }
        Ok(shapes)
    }

    /// Creates the publication, or sets its tables to the topology's.
    async fn publish(&self, client: &tokio_postgres::Client) -> Result<(), CdcError> {
        let tables: Vec<String> = self.spec.tables.iter().map(|t| self.qualified(&t.name)).collect();
        let exists = client
            .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&self.publication])
            .await
            .map_err(|e| self.fail(e))?
            .is_some();
        let sql = if exists {
            format!(
                "ALTER PUBLICATION {} SET TABLE {}",
                quote(&self.publication),
                tables.join(", ")
            )
        } else {
            format!(
                "CREATE PUBLICATION {} FOR TABLE {}",
                quote(&self.publication),
                tables.join(", ")
            )
        };
        client.batch_execute(&sql).await.map_err(|e| {
            self.error(format!(
                "{sql}: {e}; the source's user must own the tables (or be a superuser) and have the REPLICATION attribute"
            ))
        })
    }

    async fn slot_exists(&self, client: &tokio_postgres::Client) -> Result<bool, CdcError> {
        Ok(client
            .query_opt("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", &[&self.slot])
            .await
            .map_err(|e| self.fail(e))?
            .is_some())
    }

    async fn drop_slot(&self, client: &tokio_postgres::Client) -> Result<(), CdcError> {
        let active: Option<Option<i32>> = client
            .query_opt(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await
            .map_err(|e| self.fail(e))?
            .map(|r| r.get(0));
        match active {
            None => Ok(()),
            Some(Some(pid)) => Err(self.error(format!(
                "the replication slot {} is in use by backend pid {pid}: is another `seam cdc run` of this service running? Stop it first",
                self.slot
            ))),
            Some(None) => client
                .execute("SELECT pg_drop_replication_slot($1)", &[&self.slot])
                .await
                .map(|_| ())
                .map_err(|e| self.fail(e)),
        }
    }
}

/// Where a CDC source's replication slot stands on its database server: what `seam status`
/// shows. A slot holds every WAL segment from its confirmed position on, so a source that is
/// stopped or behind makes the server keep WAL (disk) until it catches up, or until
/// `max_slot_wal_keep_size` invalidates the slot (`wal_status` `lost`; the source then copies
/// the tables again and publishes the difference).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SlotStatus {
    /// The source service.
    pub service: String,
    /// The slot's name.
    pub slot: String,
    /// The database, password hidden.
    pub database: String,
    /// Whether the slot exists (not before the source's first start).
    pub exists: bool,
    /// Whether a source is connected to it.
    pub active: bool,
    /// WAL bytes between the server's current position and the slot's confirmed one.
    pub lag_bytes: Option<i64>,
    /// PostgreSQL's `wal_status`: `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
}

/// The replication slot of the `postgres-cdc` service `spec`.
pub async fn slot_status(spec: &ServiceSpec) -> Result<SlotStatus, CdcError> {
    let db = Database::resolve(spec)?;
    let client = db.connect().await?;
    let row = client
        .query_opt(
            "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8, wal_status::text              FROM pg_replication_slots WHERE slot_name = $1",
            &[&db.slot],
        )
        .await
        .map_err(|e| db.fail(e))?;
    Ok(SlotStatus {
        service: spec.name.clone(),
        slot: db.slot.clone(),
        database: db.redacted.clone(),
        exists: row.is_some(),
        active: row.as_ref().is_some_and(|r| r.get(0)),
        lag_bytes: row.as_ref().and_then(|r| r.get(1)),
        wal_status: row.as_ref().and_then(|r| r.get(2)),
    })
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The record namespace of a service's tables.
pub fn namespace(service: &str) -> String {
    format!("seam.cdc.{}", service.replace('-', "_"))
}

/// Runs the source until `stop` is cancelled or it fails; serves its HTTP API meanwhile.
/// `ready` receives the API's URL once it serves.
pub async fn run(
    options: CdcOptions,
    stop: CancellationToken,
    ready: impl FnOnce(&str) + Send,
) -> Result<(), CdcError> {
    let spec = &options.spec;
    if !spec.is_postgres_cdc() {
        return Err(CdcError::Config(format!(
            "{} is not a postgres-cdc service (its kind is {}); run seam services with their own binary",
            spec.name,
            spec.kind.as_deref().unwrap_or("seam")
        )));
    }
    let db = Database::resolve(spec)?;
    let endpoints = Endpoints::discover_for(&spec.name)?;
    let auth = seam::http::auth::guard(&endpoints).map_err(CdcError::Config)?;
    let control = db.connect().await?;
    let mut shapes = db.shapes(&control).await?;
    db.publish(&control).await?;
    let listener = tokio::net::TcpListener::bind(options.bind)
        .await
        .map_err(|source| CdcError::Io {
            what: format!(
                "binding {}; is another process using it? Pass another --port",
                options.bind
            ),
            source,
        })?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|source| CdcError::Io {
            what: "reading the bound address".into(),
            source,
        })?
    );
    let mut listener = Some(listener);
    let mut ready = Some(ready);
    let mut resync = options.resync;
    loop {
        let source = CdcSource::new(&namespace(&spec.name), shapes.clone());
        let schemas = source.schemas();
        let catalog = Catalog::from_sources(schemas.iter().map(|(_, t)| ("", t.as_str())))
            .map_err(|e| CdcError::Config(format!("the schemas derived from the tables: {e}")))?;
        let mut config = NodeConfig::new(
            &spec.name,
            options.store_dir.clone(),
            &endpoints.bootstrap_servers(),
            endpoints.registry()?,
        );
        config.kafka = endpoints.kafka.0.clone();
        config.sources = Some(Default::default());
        config.store_engine = options.store_engine;
        let node = Arc::new(Node::start(config, source, catalog, Vec::new()).await?);
        let topic = seam::translator::events_topic(&spec.name);
        for (record, text) in &schemas {
            if let Err(e) = node.registry().register_text(&topic, record, text).await {
                let _ = Node::shutdown_shared(node).await;
                // Only a refusal means the table changed incompatibly; an outage is just that.
                return Err(CdcError::Config(match e {
                    seam::codec::RegistryError::Refused { .. } => format!(
                        "the registry refused the schema of {record}, derived from its table: {e}; the table changed in a way the subject's compatibility rule forbids: revert the change and run with --resync, or publish the table under a new name"
                    ),
                    other => format!(
                        "registering the schema of {record}: {other}; check that the registry runs (`seam local status`, or SEAM_REGISTRY) and start the source again"
                    ),
                }));
            }
        }
        let bound = match listener.take() {
            Some(l) => l,
            None => tokio::net::TcpListener::bind(url.trim_start_matches("http://"))
                .await
                .map_err(|source| CdcError::Io {
                    what: format!("binding {url} again after a schema change"),
                    source,
                })?,
        };
        let app = match &options.extra {
            None => seam::http::operator_routes(Arc::clone(&node)),
            Some(extra) => {
                let (node_metrics, more) = (Arc::clone(&node), Arc::clone(&extra.metrics));
                let metrics = axum::routing::get(move || {
                    let (node_metrics, more) = (Arc::clone(&node_metrics), Arc::clone(&more));
                    async move {
                        let node_text = node_metrics.metrics().render();
                        let (head, tail) = match node_text.trim_end().strip_suffix("# EOF") {
                            Some(head) => (head.to_string(), "# EOF\n"),
                            None => (node_text, ""),
                        };
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8",
                            )],
                            format!("{head}{}\n{tail}", more().trim_end()),
                        )
                    }
                });
                extra
                    .routes
                    .clone()
                    .route("/metrics", metrics)
                    .fallback_service(seam::http::operator_routes(Arc::clone(&node)))
            }
        };
        let app = seam::http::auth::protect(app, auth.clone());
        let serving = CancellationToken::new();
        let until = serving.clone().cancelled_owned();
        let server = tokio::spawn(async move { axum::serve(bound, app).with_graceful_shutdown(until).await });
        if let Some(ready) = ready.take() {
            if let Ok(home) = seam_local::Home::from_env() {
                if let Err(e) = home.announce(&spec.name, &url) {
                    warn!(error = %e, "cannot announce the address; seam register will need --url");
                }
            }
            ready(&url);
        }
        let outcome = follow(&db, &control, &node, &stop, std::mem::take(&mut resync)).await;
        serving.cancel();
        let _ = server.await;
        let drained = Node::shutdown_shared(node).await;
        match outcome {
            Ok(Next::Stop) => return drained.map_err(CdcError::from),
            Ok(Next::Reshape(table)) => {
                drained?;
                info!(service = %spec.name, table = %table.table, "the table changed compatibly; publishing it with its new schema");
                shapes.retain(|s| s.table != table.table);
                shapes.push(table);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The connection URL of a `postgres-cdc` service's database (a name on the discovered server,
/// or the URL the topology gives).
pub fn database_url(spec: &ServiceSpec) -> Result<String, CdcError> {
    Database::resolve(spec).map(|db| db.url)
}

/// Why following the stream ended.
enum Next {
    /// Asked to stop.
    Stop,
    /// A table changed compatibly: start a node with its new shape.
    Reshape(TableShape),
}

/// Copies if needed, then follows the stream, reconnecting after connection losses.
async fn follow(
    db: &Database,
    control: &tokio_postgres::Client,
    node: &Arc<Node<CdcSource>>,
    stop: &CancellationToken,
    mut resync: bool,
) -> Result<Next, CdcError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        let state: CdcState = match node
            .store()
            .model_get(STATE_KEY)
            .map_err(|e| CdcError::Runtime(RuntimeError::Store(e.to_string())))?
        {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| CdcError::Stream(format!("the source's state in its store does not parse: {e}")))?,
            None => CdcState {
                load: 0,
                streaming: false,
                lsn: 0,
            },
        };
        let slot = db.slot_exists(control).await? && !std::mem::take(&mut resync);
        let attempt = if state.streaming && slot {
            let repl = ReplicationClient::connect(db.replication(state.lsn)?)
                .await
                .map_err(|e| db.fail(e))?;
            stream(db, node, repl, state.lsn, stop).await
        } else {
            if state.streaming {
                warn!(slot = %db.slot, "copying the tables again from a new slot and publishing the difference");
            }
            match copy(db, control, node, state.load + 1).await {
                Ok((repl, lsn)) => stream(db, node, repl, lsn, stop).await,
                Err(e) => Err(e),
            }
        };
        match attempt {
            Err(CdcError::Postgres { server, detail }) if !stop.is_cancelled() && transient(&detail) => {
                warn!(%server, %detail, retry_in = ?backoff, "lost the replication connection; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return Ok(Next::Stop),
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Errors of a server that is restarting or unreachable: worth reconnecting for.
fn transient(detail: &str) -> bool {
    [
        "io error",
        "connection",
        "shutting down",
        "starting up",
        "terminating",
        "Connection refused",
        "closed",
        "task error",
        "recovery",
    ]
    .iter()
    .any(|k| detail.contains(k))
}

/// The initial copy `load` in a snapshot exported by a new slot; returns the started stream and
/// the slot's consistent point.
async fn copy(
    db: &Database,
    control: &tokio_postgres::Client,
    node: &Arc<Node<CdcSource>>,
    load: u64,
) -> Result<(ReplicationClient, u64), CdcError> {
    db.drop_slot(control).await?;
    let mut repl = ReplicationClient::connect_gated(db.replication(0)?)
        .await
        .map_err(|e| db.fail(e))?;
    let rows = repl
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')",
            quote(&db.slot)
        ))
        .await
        .map_err(|e| db.error(format!("creating the replication slot {}: {e}", db.slot)))?;
    let text = |i: usize| {
        rows.first()
            .and_then(|r| r.get(i).cloned().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .ok_or_else(|| db.error("CREATE_REPLICATION_SLOT returned no consistent point"))
    };
    let consistent = Lsn::parse(&text(1)?).map_err(|e| db.fail(e))?.as_u64();
    let snapshot = text(2)?;
    info!(slot = %db.slot, load, consistent = %Lsn::from_u64(consistent), "copying the tables");
    node.execute(CdcCommand::BeginLoad { load }, cause(&format!("copy-{load}")))
        .await?;
    control
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            snapshot.replace('\'', "''")
        ))
        .await
        .map_err(|e| db.error(format!("importing the slot's snapshot: {e}")))?;
    let copied = copy_tables(db, control, node, load).await;
    let _ = control.batch_execute("COMMIT").await;
    copied?;
    node.execute(
        CdcCommand::LoadDone { load, lsn: consistent },
        cause(&format!("copy-{load}")),
    )
    .await?;
    repl.start().await.map_err(|e| db.fail(e))?;
    repl.wait_started().await.map_err(|e| db.fail(e))?;
    Ok((repl, consistent))
}

async fn copy_tables(
    db: &Database,
    control: &tokio_postgres::Client,
    node: &Arc<Node<CdcSource>>,
    load: u64,
) -> Result<(), CdcError> {
    let mut pending: VecDeque<JoinHandle<Result<Vec<u64>, ExecuteError>>> = VecDeque::new();
    let tables: Vec<TableShape> = node.service().tables().cloned().collect();
    for shape in tables {
        let columns: Vec<String> = shape.columns.iter().map(|c| quote(&c.name)).collect();
        control
            .batch_execute(&format!(
                "DECLARE seam_copy NO SCROLL CURSOR FOR SELECT {} FROM {}",
                columns.join(", "),
                db.qualified(&shape.table)
            ))
            .await
            .map_err(|e| db.fail(e))?;
        loop {
            let messages = control
                .simple_query(&format!("FETCH {COPY_BATCH} FROM seam_copy"))
                .await
                .map_err(|e| db.fail(e))?;
            let rows: Vec<(String, Vec<Value>)> = messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) => Some(
                        (0..r.len())
                            .map(|i| r.get(i).map_or(Value::Null, |t| Value::Text(t.to_string())))
                            .collect(),
                    ),
                    _ => None,
                })
                .map(|values| (shape.table.clone(), values))
                .collect();
            if rows.is_empty() {
                break;
            }
            node.metrics().cdc_copied(rows.len() as u64);
            let done = node
                .submit(CdcCommand::Load { load, rows }, cause(&format!("copy-{load}")))
                .await?;
            pending.push_back(tokio::spawn(done));
            while pending.len() >= IN_FLIGHT {
                settle(pending.pop_front()).await?;
            }
        }
        control.batch_execute("CLOSE seam_copy").await.map_err(|e| db.fail(e))?;
    }
    while let Some(p) = pending.pop_front() {
        settle(Some(p)).await?;
    }
    Ok(())
}

async fn settle(task: Option<JoinHandle<Result<Vec<u64>, ExecuteError>>>) -> Result<(), CdcError> {
    match task {
        Some(t) => t
            .await
            .map_err(|_| CdcError::Execute(ExecuteError::Stopped))?
            .map(|_| ())
            .map_err(CdcError::from),
        None => Ok(()),
    }
}

fn cause(what: &str) -> Cause {
    Cause {
        correlation_id: Some(format!("pg/{what}")),
        causation_id: None,
        trace: None,
    }
}

/// A transaction submitted to the node and the end LSN to confirm once it is durable.
struct InFlight {
    end_lsn: u64,
    done: JoinHandle<Result<Vec<u64>, ExecuteError>>,
}

/// Follows the stream from `durable` until stopped, a table changes shape, or it fails.
async fn stream(
    db: &Database,
    node: &Arc<Node<CdcSource>>,
    mut repl: ReplicationClient,
    durable: u64,
    stop: &CancellationToken,
) -> Result<Next, CdcError> {
    let spec = &db.spec;
    let declared: BTreeMap<&str, Option<&[String]>> = spec
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t.key.as_deref()))
        .collect();
    let mut relations: HashMap<u32, Relation> = HashMap::new();
    let mut changes: Vec<Change> = Vec::new();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut confirmed = durable;
    node.metrics().cdc_confirmed(confirmed);
    let result = loop {
        // Confirm every transaction that became durable, in order.
        while in_flight.front().is_some_and(|f| f.done.is_finished()) {
            if let Some(f) = in_flight.pop_front() {
                settle(Some(f.done)).await?;
                confirmed = confirmed.max(f.end_lsn);
                repl.update_applied_lsn(Lsn::from_u64(confirmed));
                node.metrics().cdc_confirmed(confirmed);
            }
        }
        let event = tokio::select! {
            e = repl.recv() => e,
            _ = stop.cancelled() => break Ok(Next::Stop),
            // Wake up to confirm transactions that became durable while the stream is quiet.
            _ = tokio::time::sleep(Duration::from_millis(50)), if !in_flight.is_empty() => continue,
        };
        let event = match event {
            Ok(Some(e)) => e,
            Ok(None) => break Ok(Next::Stop),
            Err(e) => break Err(db.error(connection_error(&e))),
        };
        match event {
            ReplicationEvent::Begin { .. } => changes.clear(),
            ReplicationEvent::XLogData { data, .. } => {
                let message = pgoutput::decode(&data).map_err(|e| CdcError::Stream(e.to_string()))?;
                match message {
                    Message::Relation(rel) => {
                        if rel.namespace == spec.schema() {
                            if let Some(key) = declared.get(rel.name.as_str()) {
                                let shape = TableShape::of_relation(&rel, *key)?;
                                let current = node.service().table(&rel.name);
                                if current != Some(&shape) {
                                    if let Some(current) = current {
                                        current.evolves_to(&shape)?;
                                    }
                                    break Ok(Next::Reshape(shape));
                                }
                            }
                        }
                        relations.insert(rel.id, rel);
                    }
                    Message::Insert { relation, new } => {
                        if let Some(table) = published(&relations, relation, spec) {
                            changes.push(Change::Insert { table, new });
                        }
                    }
                    Message::Update { relation, old, new } => {
                        if let Some(table) = published(&relations, relation, spec) {
                            changes.push(Change::Update { table, old, new });
                        }
                    }
                    Message::Delete { relation, old } => {
                        if let Some(table) = published(&relations, relation, spec) {
                            changes.push(Change::Delete { table, old });
                        }
                    }
                    Message::Truncate { relations: ids } => {
                        for id in ids {
                            if let Some(table) = published(&relations, id, spec) {
                                changes.push(Change::Truncate { table });
                            }
                        }
                    }
                    Message::Other(_) => {}
                }
            }
            ReplicationEvent::Commit { end_lsn, .. } => {
                let end_lsn = end_lsn.as_u64();
                if changes.is_empty() {
                    // Nothing of ours: confirm it once everything before it is durable.
                    if in_flight.is_empty() {
                        confirmed = confirmed.max(end_lsn);
                        repl.update_applied_lsn(Lsn::from_u64(confirmed));
                        node.metrics().cdc_confirmed(confirmed);
                    }
                    continue;
                }
                node.metrics().cdc_transaction(changes.len() as u64);
                let command = CdcCommand::Transaction {
                    end_lsn,
                    changes: std::mem::take(&mut changes),
                };
                let done = node
                    .submit(command, cause(&format!("lsn/{}", Lsn::from_u64(end_lsn))))
                    .await?;
                in_flight.push_back(InFlight {
                    end_lsn,
                    done: tokio::spawn(done),
                });
                while in_flight.len() >= IN_FLIGHT {
                    if let Some(f) = in_flight.pop_front() {
                        settle(Some(f.done)).await?;
                        confirmed = confirmed.max(f.end_lsn);
                        repl.update_applied_lsn(Lsn::from_u64(confirmed));
                        node.metrics().cdc_confirmed(confirmed);
                    }
                }
            }
            ReplicationEvent::KeepAlive { .. }
            | ReplicationEvent::Message { .. }
            | ReplicationEvent::StoppedAt { .. } => {}
        }
    };
    // Whatever ends the stream, what was submitted is applied or fails: confirm what is durable.
    while let Some(f) = in_flight.pop_front() {
        settle(Some(f.done)).await?;
        confirmed = confirmed.max(f.end_lsn);
        repl.update_applied_lsn(Lsn::from_u64(confirmed));
        node.metrics().cdc_confirmed(confirmed);
    }
    close_confirmed(&mut repl, confirmed).await;
    result
}

/// Closes a replication session once the server has been told `lsn` is flushed (the client
/// sends its status updates on its own schedule and not when stopped), or after 3 s.
pub async fn close_confirmed(repl: &mut ReplicationClient, lsn: u64) {
    repl.update_applied_lsn(Lsn::from_u64(lsn));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while repl.metrics().last_applied_lsn().as_u64() < lsn
        && repl.is_running()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = repl.shutdown().await;
}

fn published(relations: &HashMap<u32, Relation>, id: u32, spec: &PostgresSpec) -> Option<String> {
    let rel = relations.get(&id)?;
    (rel.namespace == spec.schema() && spec.tables.iter().any(|t| t.name == rel.name)).then(|| rel.name.clone())
}

fn connection_error(e: &PgWireError) -> String {
    e.to_string()
}
