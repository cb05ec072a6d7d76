//! Running a service as its own process, the same way for every service: configuration from a
//! file, the environment and flags; the node with the translators the topology asks for; the
//! platform routes plus the service's own; the address announced under `SEAM_HOME` so `seam
//! register`, `replay` and `status` find it; `ready <url>` once it serves; and on SIGTERM,
//! SIGINT or a node failure, the HTTP server stopped and the node drained.
//!
//! A service binary describes each service once ([`ServiceDef`]), lists them in a [`Services`]
//! table and calls [`Services::main`]; a binary with commands of its own flattens [`ServeArgs`]
//! and calls [`Services::serve`]; one that builds its node itself (a test fixture) calls
//! [`run_until_signal`].

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use clap::{Args, FromArgMatches};
use seam_local::cluster::{ClusterError, Endpoints};
use seam_local::{Home, LocalError};
use serde::Deserialize;
use thiserror::Error;

use crate::codec::Catalog;
use crate::http::platform_routes;
use crate::runtime::{Node, NodeConfig, RuntimeError, SnapshotSource};
use crate::service::Service;
use crate::topology::{Topology, TopologyError};
use crate::translator::Translator;

/// The options every service process takes, lowest to highest precedence: a YAML file
/// (`--config`), the environment (`SEAM_PORT`, `SEAM_HOST`, `SEAM_STORE`, `SEAM_STORE_ENGINE`, `SEAM_TOPOLOGY`;
/// `SEAM_BROKERS`, `SEAM_REGISTRY` for the cluster), flags. Flatten it into a binary's own
/// arguments with `#[command(flatten)]`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// A YAML file with `port`, `store`, `store_engine`, `topology` (flags and environment override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// HTTP port (default: any free port, printed in the `ready` line).
    #[arg(long, env = "SEAM_PORT")]
    pub port: Option<u16>,
    /// Address the HTTP API binds; 0.0.0.0 in a container.
    #[arg(long, env = "SEAM_HOST", default_value = "127.0.0.1")]
    pub host: Option<std::net::IpAddr>,
    /// Store directory (default: `$SEAM_HOME/services/<service>`).
    #[arg(long, env = "SEAM_STORE")]
    pub store: Option<PathBuf>,
    /// The store's engine: fjall or sled. Unset, an existing store keeps the engine that created
    /// it and a new one gets fjall; naming the other engine than an existing store's is refused.
    #[arg(long, env = "SEAM_STORE_ENGINE", value_enum)]
    pub store_engine: Option<crate::store::StoreEngine>,
    /// The topology file naming the service's sources and translators.
    #[arg(long, short = 't', env = "SEAM_TOPOLOGY")]
    pub topology: Option<PathBuf>,
    /// Bootstrap a source from its snapshot (`SOURCE=FILE` or `SOURCE=http://.../snapshot`) if
    /// this service's store does not read it yet; repeatable.
    #[arg(long, value_parser = parse_bootstrap)]
    pub bootstrap: Vec<(String, SnapshotSource)>,
}

fn parse_bootstrap(value: &str) -> Result<(String, SnapshotSource), String> {
    let (source, from) = value
        .split_once('=')
        .filter(|(source, from)| !source.is_empty() && !from.is_empty())
        .ok_or_else(|| format!("`{value}`: expected SOURCE=FILE or SOURCE=URL"))?;
    Ok((source.to_string(), SnapshotSource::parse(from)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    port: Option<u16>,
    store: Option<PathBuf>,
    store_engine: Option<crate::store::StoreEngine>,
    topology: Option<PathBuf>,
}

/// Why a service process could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The token table of the HTTP API cannot be used.
    #[error("the HTTP API's token table: {detail}; run `seam deploy` again to rewrite it, or unset SEAM_HTTP_TOKENS")]
    Auth {
        /// What is wrong.
        detail: String,
    },
    /// The `--config` file cannot be read.
    #[error("reading the service config {}: {source}", path.display())]
    ConfigUnreadable {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The `--config` file is not what a service config holds.
    #[error("the service config {}: {detail}; it may hold `port`, `store`, `store_engine` and `topology` only", path.display())]
    ConfigInvalid {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// No topology was given.
    #[error("no topology file for {service}: pass --topology (or SEAM_TOPOLOGY, or `topology:` in --config)")]
    NoTopology {
        /// The service.
        service: String,
    },
    /// The topology file is wrong.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The topology does not declare this service.
    #[error("{} declares no service {service}; add it under `services:` (and run `seam deploy`)", path.display())]
    NotDeclared {
        /// The topology file.
        path: PathBuf,
        /// The service.
        service: String,
    },
    /// The topology has the service read a source this binary has no translator for.
    #[error(
        "the topology has {service} read {source_service}, but this build of {service} has no translator from it; \
         add one (`ServiceDef::translator`) or remove the source from the topology"
    )]
    MissingTranslator {
        /// The consumer.
        service: String,
        /// The source.
        source_service: String,
    },
    /// The service's catalog (its `.avsc` files) is wrong.
    #[error("the catalog of {service}: {detail}")]
    Catalog {
        /// The service.
        service: String,
        /// What is wrong.
        detail: String,
    },
    /// No cluster to talk to, or its settings are wrong.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// `SEAM_HOME` is unusable (for the default store folder).
    #[error(transparent)]
    Home(#[from] LocalError),
    /// The HTTP address cannot be bound.
    #[error("binding {addr}: {source}; is another service using it? Pass another --port")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The process cannot set up its signal handler or its HTTP server failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// The binary carries no service of that name.
    #[error("{program} has no service {service}; it runs: {known}")]
    UnknownService {
        /// The binary.
        program: String,
        /// The name asked for.
        service: String,
        /// The names it has.
        known: String,
    },
    /// The node failed to start, failed while running, or failed to drain.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Picks the translators into one service, by the source each reads.
type TranslatorTable<C> = Vec<Box<dyn Translator<C>>>;

/// One service as a binary carries it: its name, domain, contract, own routes and the
/// translators into it. Declared once per service; [`serve`] does the rest.
pub struct ServiceDef<S: Service> {
    name: &'static str,
    service: S,
    catalog: Result<Catalog, String>,
    routes: Box<dyn FnOnce(Arc<Node<S>>) -> Router + Send>,
    translators: TranslatorTable<S::Command>,
}

impl<S: Service> ServiceDef<S>
where
    S::Command: serde::de::DeserializeOwned,
{
    /// A service called `name` (its topic is `<name>.events`) with its catalog. A catalog that
    /// failed to load is reported by [`serve`], with the service's name.
    pub fn new<E: std::fmt::Display>(name: &'static str, service: S, catalog: Result<Catalog, E>) -> Self {
        Self {
            name,
            service,
            catalog: catalog.map_err(|e| e.to_string()),
            routes: Box::new(|_| Router::new()),
            translators: Vec::new(),
        }
    }

    /// The service's own HTTP routes, merged with the platform's.
    pub fn routes(mut self, routes: impl FnOnce(Arc<Node<S>>) -> Router + Send + 'static) -> Self {
        self.routes = Box::new(routes);
        self
    }

    /// A translator into this service. It runs when the topology has the service read its source,
    /// or once `seam register` adds that source.
    pub fn translator(mut self, translator: impl Translator<S::Command> + 'static) -> Self {
        self.translators.push(Box::new(translator));
        self
    }

    /// The service's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Defaults a binary gives every service it runs, below the configuration layers.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// Where stores go when no layer names one: `<root>/<service>` (else
    /// `$SEAM_HOME/services/<service>`).
    pub store_root: Option<PathBuf>,
    /// The topology when no layer names one.
    pub topology: Option<PathBuf>,
}

/// Runs `def` as this process until SIGTERM/SIGINT (or until its node fails); prints
/// `ready <url>` once it serves.
pub async fn serve<S>(args: ServeArgs, def: ServiceDef<S>, defaults: &Defaults) -> Result<(), ServeError>
where
    S: Service,
    S::Command: serde::de::DeserializeOwned,
{
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ServeError::ConfigUnreadable {
                path: path.clone(),
                source,
            })?;
            serde_norway::from_str(&text).map_err(|e| ServeError::ConfigInvalid {
                path: path.clone(),
                detail: e.to_string(),
            })?
        }
        None => FileConfig::default(),
    };
    let name = def.name.to_string();
    let topology_path = args
        .topology
        .or(file.topology)
        .or_else(|| defaults.topology.clone())
        .ok_or_else(|| ServeError::NoTopology { service: name.clone() })?;
    let topology = Topology::load(&topology_path)?;
    if topology.service(&name).is_none() {
        return Err(ServeError::NotDeclared {
            path: topology_path,
            service: name,
        });
    }
    let store = match (args.store.or(file.store), &defaults.store_root) {
        (Some(dir), _) => dir,
        (None, Some(root)) => root.join(&name),
        (None, None) => Home::from_env()?.root().join("services").join(&name),
    };
    let (translators, reads) = pick_translators(&name, &topology, def.translators)?;
    let catalog = def.catalog.map_err(|detail| ServeError::Catalog {
        service: name.clone(),
        detail,
    })?;
    let endpoints = Endpoints::discover_for(&name)?;
    let auth = crate::http::auth::guard(&endpoints).map_err(|detail| ServeError::Auth { detail })?;
    let mut config = NodeConfig::new(&name, store, &endpoints.bootstrap_servers(), endpoints.registry()?);
    config.kafka = endpoints.kafka.0.clone();
    config.bootstrap = args.bootstrap.into_iter().collect();
    config.sources = Some(reads);
    config.store_engine = args.store_engine.or(file.store_engine);
    let node = Arc::new(Node::start(config, def.service, catalog, translators).await?);
    let app = platform_routes(Arc::clone(&node)).merge((def.routes)(Arc::clone(&node)));
    let app = crate::http::auth::protect(app, auth);
    let bind = SocketAddr::new(
        args.host.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        args.port.or(file.port).unwrap_or(0),
    );
    run_until_signal(node, Some(app), bind, Announce::Yes).await
}

type Launch = Box<dyn FnOnce(ServeArgs, Defaults) -> Pin<Box<dyn Future<Output = Result<(), ServeError>>>>>;

/// The services one binary carries, one line each, and the `serve` command that runs one of
/// them: `<program> serve <service> [--port ..] [--store ..] [--topology ..] [--bootstrap ..]`.
pub struct Services {
    program: &'static str,
    defaults: Defaults,
    table: Vec<(&'static str, Launch)>,
}

impl Services {
    /// An empty table for the binary called `program`.
    pub fn new(program: &'static str) -> Self {
        Self {
            program,
            defaults: Defaults::default(),
            table: Vec::new(),
        }
    }

    /// Adds a service.
    pub fn service<S>(mut self, def: ServiceDef<S>) -> Self
    where
        S: Service,
        S::Command: serde::de::DeserializeOwned,
    {
        self.table.push((
            def.name,
            Box::new(move |args, defaults| Box::pin(async move { serve(args, def, &defaults).await })),
        ));
        self
    }

    /// Defaults for every service of this binary.
    pub fn defaults(mut self, defaults: Defaults) -> Self {
        self.defaults = defaults;
        self
    }

    /// The services' names, in the order added.
    pub fn names(&self) -> Vec<&'static str> {
        self.table.iter().map(|(name, _)| *name).collect()
    }

    /// Runs the service called `name` until a signal (see [`serve`]).
    pub async fn serve(self, name: &str, args: ServeArgs) -> Result<(), ServeError> {
        let names = self.names().join(", ");
        let Some((_, launch)) = self.table.into_iter().find(|(n, _)| *n == name) else {
            return Err(ServeError::UnknownService {
                program: self.program.to_string(),
                service: name.to_string(),
                known: names,
            });
        };
        launch(args, self.defaults).await
    }

    /// The command line of [`Services::main`].
    pub fn command(&self) -> clap::Command {
        let serve = ServeArgs::augment_args(
            clap::Command::new("serve")
                .about("Run one service: its store, publisher, consumer and HTTP API")
                .arg(
                    clap::Arg::new("service")
                        .required(true)
                        .value_parser(clap::builder::PossibleValuesParser::new(self.names()))
                        .help("The service to run"),
                ),
        );
        clap::Command::new(self.program)
            .subcommand_required(true)
            .subcommand(serve)
    }

    /// The whole `main` of a service binary: parses `serve <service> [options]`, logs to stderr
    /// (filter `SEAM_LOG`, default `warn`), runs the service, and turns an error into a message
    /// and exit code 1.
    pub fn main(self) -> ExitCode {
        let matches = self.command().get_matches();
        let Some(("serve", matches)) = matches.subcommand() else {
            unreachable!("clap requires the serve subcommand")
        };
        let service = matches.get_one::<String>("service").cloned().unwrap_or_default();
        let args = match ServeArgs::from_arg_matches(matches) {
            Ok(args) => args,
            Err(e) => e.exit(),
        };
        init_logging();
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(self.serve(&service, args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Logs to stderr, filtered by `SEAM_LOG` (default `warn`), once per process; exports spans
/// over OTLP when `OTEL_EXPORTER_OTLP_*` asks for it ([`crate::trace`]).
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEAM_LOG").unwrap_or_else(|_| "warn".into());
    let export = match crate::trace::export_layer() {
        Ok(layer) => layer,
        Err(e) => {
            eprintln!("warning: traces are not exported: {e}");
            None
        }
    };
    let _ = tracing_subscriber::registry()
        .with(export)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .try_init();
}

/// The translators a service starts with, and the sources it reads: every carried translator
/// from a service the topology declares (those whose source it does not read yet wait for
/// `seam register`); a source it reads without a translator is an error.
fn pick_translators<C: 'static>(
    name: &str,
    topology: &Topology,
    carried: TranslatorTable<C>,
) -> Result<(TranslatorTable<C>, BTreeSet<String>), ServeError> {
    let reads: BTreeSet<String> = topology.sources_of(name).iter().map(|s| s.service.clone()).collect();
    let declared: BTreeSet<&str> = topology.services.iter().map(|s| s.name.as_str()).collect();
    let translators: TranslatorTable<C> = carried.into_iter().filter(|t| declared.contains(t.source())).collect();
    if let Some(source) = reads
        .iter()
        .find(|source| !translators.iter().any(|t| t.source() == source.as_str()))
    {
        return Err(ServeError::MissingTranslator {
            service: name.to_string(),
            source_service: source.clone(),
        });
    }
    Ok((translators, reads))
}

/// Whether a served node writes its URL under `SEAM_HOME` for `seam register`, `replay` and
/// `status` to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// Announce it (a service).
    Yes,
    /// Do not (a test fixture that passes its URL around itself).
    No,
}

/// Serves `app` (if any) on `bind` for a started node, prints `ready <url>` (or `ready`), and
/// on SIGTERM, SIGINT or the node's failure stops the server and drains the node. The error is
/// the node's failure if it failed, else whatever draining reported.
pub async fn run_until_signal<S: Service>(
    node: Arc<Node<S>>,
    app: Option<Router>,
    bind: SocketAddr,
    announce: Announce,
) -> Result<(), ServeError> {
    // Before `ready`: a SIGTERM sent as soon as it is printed must find the handler.
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|source| ServeError::Io {
            what: "installing the SIGTERM handler",
            source,
        })?;
    let stopping = tokio_util::sync::CancellationToken::new();
    let (server, announced) = match app {
        Some(app) => {
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .map_err(|source| ServeError::Bind { addr: bind, source })?;
            let addr = listener.local_addr().map_err(|source| ServeError::Io {
                what: "reading the bound address",
                source,
            })?;
            let url = format!("http://{addr}");
            let home = (announce == Announce::Yes).then(Home::from_env).and_then(Result::ok);
            if let Some(home) = &home {
                if let Err(e) = home.announce(node.name(), &url) {
                    tracing::warn!(error = %e, "cannot announce the address; seam register/replay will need --url");
                }
            }
            println!("ready {url}");
            // Graceful: open connections end with the server, so nothing holds the node after it.
            let until = stopping.clone().cancelled_owned();
            let server = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(until).await });
            (Some(server), home.map(|h| (h, url)))
        }
        None => {
            println!("ready");
            (None, None)
        }
    };
    let failure = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        _ = term.recv() => None,
        e = node.failed() => Some(e),
    };
    stopping.cancel();
    let served = match server {
        Some(server) => server.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
        None => Ok(()),
    };
    if let Some((home, url)) = &announced {
        home.withdraw(node.name(), url);
    }
    let stopped = Node::shutdown_shared(node).await;
    crate::trace::flush();
    if let Some(e) = failure {
        return Err(e.into());
    }
    served.map_err(|source| ServeError::Io {
        what: "the HTTP server failed",
        source,
    })?;
    Ok(stopped?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translator::{ForeignEvent, TranslateError};

    struct FromSource(&'static str);

    impl Translator<()> for FromSource {
        fn source(&self) -> &str {
            self.0
        }
        fn reader_schemas(&self) -> Vec<(&'static str, &'static str)> {
            Vec::new()
        }
        fn translate(&self, _: &ForeignEvent) -> Result<Vec<()>, TranslateError> {
            Ok(Vec::new())
        }
    }

    const SHOP: &str = "apiVersion: seam/v1\nname: shop\nservices:\n  - name: customers\n    partitions: 1\n    schemas: c\n  - name: orders\n    partitions: 1\n    schemas: o\n  - name: billing\n    partitions: 1\n    schemas: b\nconsumers:\n  - service: orders\n    sources:\n      - service: customers\n        translator: customers-to-orders\n";

    #[test]
    fn a_service_starts_with_the_translators_the_topology_allows_and_refuses_without_one_it_reads() {
        let topology = Topology::parse("shop.yaml", SHOP).expect("topology");
        let carried: TranslatorTable<()> = vec![
            Box::new(FromSource("customers")),
            Box::new(FromSource("billing")),
            Box::new(FromSource("gone")),
        ];
        let (picked, reads) = pick_translators("orders", &topology, carried).expect("picked");
        let sources: Vec<&str> = picked.iter().map(|t| t.source()).collect();
        assert_eq!(
            sources,
            ["customers", "billing"],
            "billing waits for seam register; gone is not declared"
        );
        assert_eq!(reads.into_iter().collect::<Vec<_>>(), ["customers"]);

        let err = pick_translators::<()>("orders", &topology, vec![Box::new(FromSource("billing"))])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("has orders read customers") && err.contains("no translator"),
            "{err}"
        );
    }

    #[test]
    fn the_serve_command_line_is_consistent() {
        Services::new("shop").command().debug_assert();
    }

    #[test]
    fn bootstrap_flags_name_a_source_and_where_its_snapshot_is() {
        let (source, _) = parse_bootstrap("students-office=http://127.0.0.1:1/snapshot").expect("parses");
        assert_eq!(source, "students-office");
        for bad in ["students-office", "=file.avro", "students-office="] {
            let err = parse_bootstrap(bad).expect_err(bad);
            assert!(err.contains("SOURCE=FILE"), "{err}");
        }
    }
}
