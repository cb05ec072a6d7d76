//! `student-affairs serve <service>`: runs one of the four services as its own process: its
//! node (store, publisher, consumer with the translators the topology names) and its HTTP API.
//!
//! Configuration, lowest to highest precedence: a YAML file (`--config`), environment variables
//! (`SA_PORT`, `SA_STORE`, `SEAM_BROKERS`, `SEAM_REGISTRY`), flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::Router;
use clap::{Args, ValueEnum};
use seam::http::platform_routes;
use seam::runtime::{Node, NodeConfig};
use seam::service::Service;
use seam::topology::Topology;
use seam::translator::Translator;
use seam_local::cluster::Endpoints;
use serde::Deserialize;

/// The four services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// Course programs, examinations, enrollments; receives grades.
    StudentsOffice,
    /// The modelling course: assignments, points, grades; hires TAs.
    SeGroup,
    /// Seminar presentations graded by a scheme; hires TAs.
    TheoryGroup,
    /// Collects the groups' hires.
    TaPool,
    /// Joins late: awards scholarships from enrollments and grades.
    ScholarshipOffice,
}

impl Which {
    /// The four founding services, in start order (the scholarship office joins later).
    pub const ALL: [Which; 4] = [Which::StudentsOffice, Which::SeGroup, Which::TheoryGroup, Which::TaPool];

    /// The service name.
    pub fn name(self) -> &'static str {
        match self {
            Which::StudentsOffice => students_office::NAME,
            Which::SeGroup => se_group::NAME,
            Which::TheoryGroup => theory_group::NAME,
            Which::TaPool => ta_pool::NAME,
            Which::ScholarshipOffice => scholarship_office::NAME,
        }
    }
}

/// Options of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The service to run.
    #[arg(value_enum)]
    pub service: Which,
    /// A YAML file with `port`, `store`, `topology` (flags and environment override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// HTTP port.
    #[arg(long, env = "SA_PORT")]
    pub port: Option<u16>,
    /// Address the HTTP API binds; 0.0.0.0 in a container.
    #[arg(long, env = "SA_HOST", default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Store directory (default: `$SEAM_HOME/student-affairs/<service>`).
    #[arg(long, env = "SA_STORE")]
    pub store: Option<PathBuf>,
    /// The topology file naming the service's sources and translators.
    #[arg(long, short = 't', env = "SA_TOPOLOGY")]
    pub topology: Option<PathBuf>,
    /// Bootstrap a source from its snapshot (`SOURCE=FILE` or `SOURCE=http://.../snapshot`) if
    /// this service's store does not read it yet; repeatable.
    #[arg(long, value_parser = parse_bootstrap)]
    pub bootstrap: Vec<(String, seam::runtime::SnapshotSource)>,
}

fn parse_bootstrap(value: &str) -> Result<(String, seam::runtime::SnapshotSource), String> {
    let (source, from) = value
        .split_once('=')
        .ok_or_else(|| format!("`{value}`: expected SOURCE=FILE or SOURCE=URL"))?;
    Ok((source.to_string(), seam::runtime::SnapshotSource::parse(from)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    port: Option<u16>,
    store: Option<PathBuf>,
    topology: Option<PathBuf>,
}

/// The default topology file: `deploy/student-affairs.yaml` of this repository.
pub fn default_topology() -> PathBuf {
    let here = PathBuf::from("deploy/student-affairs.yaml");
    if here.is_file() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/student-affairs.yaml")
}

/// Runs the service until SIGTERM/SIGINT; prints `ready http://...` once it serves.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file: FileConfig = match &args.config {
        Some(path) => serde_norway::from_str(
            &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{}: expected `port`, `store` and `topology` only", path.display()))?,
        None => FileConfig::default(),
    };
    let port = args.port.or(file.port).unwrap_or(0);
    let topology_path = args.topology.or(file.topology).unwrap_or_else(default_topology);
    let topology = Topology::load(&topology_path)?;
    let name = args.service.name();
    if topology.service(name).is_none() {
        bail!("{} declares no service {name}", topology_path.display());
    }
    let store = match args.store.or(file.store) {
        Some(s) => s,
        None => seam_local::Home::from_env()?.root().join("student-affairs").join(name),
    };
    let endpoints = Endpoints::discover_for(name)?;
    let mut config = NodeConfig::new(name, store, &endpoints.bootstrap_servers(), endpoints.registry()?);
    config.kafka = endpoints.kafka.0.clone();
    config.bootstrap = args.bootstrap.into_iter().collect();
    config.sources = Some(topology.sources_of(name).iter().map(|s| s.service.clone()).collect());
    // Every translator into this service the topology could name: the ones it does not name yet
    // wait for `seam register`.
    let sources: Vec<String> = topology
        .services
        .iter()
        .filter(|s| s.name != name)
        .map(|s| format!("{}-to-{name}", s.name))
        .collect();
    match args.service {
        Which::StudentsOffice => {
            let node = start(
                config,
                students_office::model::StudentsOffice,
                students_office::catalog()?,
                &sources,
            )
            .await?;
            let routes = students_office::api::routes(Arc::clone(&node));
            serve(node, routes, SocketAddr::new(args.host, port)).await
        }
        Which::SeGroup => {
            let node = start(config, se_group::model::SeGroup, se_group::catalog()?, &sources).await?;
            let routes = se_group::api::routes(Arc::clone(&node));
            serve(node, routes, SocketAddr::new(args.host, port)).await
        }
        Which::TheoryGroup => {
            let node = start(
                config,
                theory_group::model::TheoryGroup,
                theory_group::catalog()?,
                &sources,
            )
            .await?;
            let routes = theory_group::api::routes(Arc::clone(&node));
            serve(node, routes, SocketAddr::new(args.host, port)).await
        }
        Which::TaPool => {
            let node = start(config, ta_pool::TaPool, ta_pool::catalog()?, &sources).await?;
            let routes = ta_pool::api::routes(Arc::clone(&node));
            serve(node, routes, SocketAddr::new(args.host, port)).await
        }
        Which::ScholarshipOffice => {
            let node = start(
                config,
                scholarship_office::ScholarshipOffice,
                scholarship_office::catalog()?,
                &sources,
            )
            .await?;
            let routes = scholarship_office::api::routes(Arc::clone(&node));
            serve(node, routes, SocketAddr::new(args.host, port)).await
        }
    }
}

/// The translators this binary has, by topology name.
pub trait Translators: Service + Sized {
    /// The translator called `name` into this service, if it exists.
    fn translator(name: &str) -> Option<Box<dyn Translator<Self::Command>>>;
}

impl Translators for students_office::model::StudentsOffice {
    fn translator(name: &str) -> Option<Box<dyn Translator<Self::Command>>> {
        match name {
            "se-group-to-students-office" => Some(Box::new(se_group_to_students_office::SeGroupToStudentsOffice)),
            "theory-group-to-students-office" => {
                Some(Box::new(theory_group_to_students_office::TheoryGroupToStudentsOffice))
            }
            _ => None,
        }
    }
}

impl Translators for se_group::model::SeGroup {
    fn translator(name: &str) -> Option<Box<dyn Translator<Self::Command>>> {
        match name {
            "students-office-to-se-group" => Some(Box::new(students_office_to_se_group::StudentsOfficeToSeGroup)),
            "ta-pool-to-se-group" => Some(Box::new(ta_pool_to_se_group::TaPoolToSeGroup)),
            _ => None,
        }
    }
}

impl Translators for theory_group::model::TheoryGroup {
    fn translator(name: &str) -> Option<Box<dyn Translator<Self::Command>>> {
        match name {
            "students-office-to-theory-group" => {
                Some(Box::new(students_office_to_theory_group::StudentsOfficeToTheoryGroup))
            }
            "ta-pool-to-theory-group" => Some(Box::new(ta_pool_to_theory_group::TaPoolToTheoryGroup)),
            _ => None,
        }
    }
}

impl Translators for scholarship_office::ScholarshipOffice {
    fn translator(name: &str) -> Option<Box<dyn Translator<Self::Command>>> {
        match name {
            "students-office-to-scholarship-office" => Some(Box::new(
                students_office_to_scholarship_office::StudentsOfficeToScholarshipOffice,
            )),
            "se-group-to-scholarship-office" => {
                Some(Box::new(se_group_to_scholarship_office::SeGroupToScholarshipOffice))
            }
            "theory-group-to-scholarship-office" => Some(Box::new(
                theory_group_to_scholarship_office::TheoryGroupToScholarshipOffice,
            )),
            _ => None,
        }
    }
}

impl Translators for ta_pool::TaPool {
    fn translator(name: &str) -> Option<Box<dyn Translator<Self::Command>>> {
        match name {
            "se-group-to-ta-pool" => Some(Box::new(se_group_to_ta_pool::SeGroupToTaPool)),
            "theory-group-to-ta-pool" => Some(Box::new(theory_group_to_ta_pool::TheoryGroupToTaPool)),
            _ => None,
        }
    }
}

async fn start<S: Translators>(
    config: NodeConfig,
    service: S,
    catalog: seam::codec::Catalog,
    sources: &[String],
) -> anyhow::Result<Arc<Node<S>>> {
    let mut translators = Vec::new();
    for name in sources {
        let read = config.sources.as_ref().is_some_and(|s| {
            s.iter()
                .any(|source| name == &format!("{source}-to-{}", config.service))
        });
        match S::translator(name) {
            Some(t) => translators.push(t),
            None if read => bail!(
                "the topology names translator {name}, which this build of {} does not have",
                config.service
            ),
            None => {}
        }
    }
    Ok(Arc::new(Node::start(config, service, catalog, translators).await?))
}

async fn serve<S>(node: Arc<Node<S>>, routes: Router, bind: SocketAddr) -> anyhow::Result<()>
where
    S: Service,
    S::Command: serde::de::DeserializeOwned,
{
    let app = platform_routes(Arc::clone(&node)).merge(routes);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding {bind}; is another service using it?"))?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    let home = seam_local::Home::from_env().ok();
    if let Some(home) = &home {
        if let Err(e) = home.announce(node.name(), &url) {
            tracing::warn!(error = %e, "cannot announce the address; seam register/replay will need --url");
        }
    }
    // Before `ready`: a SIGTERM sent as soon as it is printed must find the handler.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    println!("ready {url}");
    let failure = Arc::new(std::sync::Mutex::new(None));
    let shutdown = {
        let (node, failure) = (Arc::clone(&node), Arc::clone(&failure));
        async move {
            let failed = tokio::select! {
                _ = tokio::signal::ctrl_c() => None,
                _ = term.recv() => None,
                e = node.failed() => Some(e),
            };
            if let Ok(mut slot) = failure.lock() {
                *slot = failed;
            }
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("the HTTP server failed")?;
    if let Some(home) = &home {
        home.withdraw(node.name(), &url);
    }
    let failure = failure.lock().ok().and_then(|mut f| f.take());
    let stopped = Node::shutdown_shared(node).await;
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok(stopped?)
}
