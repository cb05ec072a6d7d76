//! A CRUD service's adapter: one process per service that publishes its tables' row changes
//! (the CDC source) and applies what it reads from other services to its database (the sink),
//! behind one HTTP address, so operators register, inspect and scrape the service as a whole.

use std::sync::Arc;

use seam::topology::Topology;
use seam::translator::Translator;
use seam_local::cluster::Endpoints;
use tokio_util::sync::CancellationToken;

use crate::cdc::{self, CdcError, CdcOptions, Extra};
use crate::sink::{Sink, SinkCommand, SinkError, SinkOptions};

/// What an adapter needs beyond a CDC source's options.
pub struct AdapterOptions {
    /// The CDC source's options (its `extra` is the sink's).
    pub cdc: CdcOptions,
    /// The topology, for the sources the service reads.
    pub topology: Topology,
    /// Every translator linked for the service's sink.
    pub translators: Vec<Box<dyn Translator<SinkCommand>>>,
}

/// Why an adapter stopped.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The source.
    #[error(transparent)]
    Cdc(#[from] CdcError),
    /// The sink.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Runs the service's CDC source and sink until `stop` is cancelled or the source fails; a
/// `postgres-sink` service runs its sink alone.
pub async fn run(
    mut options: AdapterOptions,
    stop: CancellationToken,
    ready: impl FnOnce(&str) + Send,
) -> Result<(), AdapterError> {
    let spec = options.cdc.spec.clone();
    let sources: Vec<String> = options
        .topology
        .sources_of(&spec.name)
        .iter()
        .map(|s| s.service.clone())
        .collect();
    let database = cdc::database_url(&spec)?;
    let endpoints = Endpoints::discover_for(&spec.name).map_err(SinkError::from)?;
    let auth = seam::http::auth::guard(&endpoints).map_err(|e| AdapterError::Cdc(CdcError::Config(e)))?;
    let sink = Sink::start(
        SinkOptions {
            service: spec.name.clone(),
            database,
            sources,
            translators: std::mem::take(&mut options.translators),
        },
        &endpoints,
    )?;
    let shared = sink.shared();
    if spec.is_postgres_sink() {
        let outcome = serve_sink(&spec.name, auth, options.cdc.bind, shared, stop, ready).await;
        sink.stop().await;
        return outcome;
    }
    let rendered = Arc::clone(&shared);
    options.cdc.extra = Some(Extra {
        routes: crate::sink::routes(shared),
        metrics: Arc::new(move || rendered.metrics().render()),
    });
    let outcome = cdc::run(options.cdc, stop, ready).await;
    sink.stop().await;
    Ok(outcome?)
}

/// A `postgres-sink` service publishes nothing: its sink's routes and metrics are the whole API.
async fn serve_sink(
    service: &str,
    auth: Option<Arc<seam::http::auth::Auth>>,
    bind: std::net::SocketAddr,
    shared: Arc<crate::sink::Shared>,
    stop: CancellationToken,
    ready: impl FnOnce(&str) + Send,
) -> Result<(), AdapterError> {
    let io = |what: String| move |source: std::io::Error| CdcError::Io { what, source };
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(io(format!(
        "binding {bind}; is another process using it? Pass another --port"
    )))?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(io("reading the bound address".into()))?
    );
    let rendered = Arc::clone(&shared);
    let app = crate::sink::routes(shared).route(
        "/metrics",
        axum::routing::get(move || {
            let text = format!("{}\n# EOF\n", rendered.metrics().render().trim_end());
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    );
    let app = seam::http::auth::protect(app, auth);
    if let Ok(home) = seam_local::Home::from_env() {
        if let Err(e) = home.announce(service, &url) {
            tracing::warn!(error = %e, "cannot announce the address; seam register will need --url");
        }
    }
    ready(&url);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .map_err(io(format!("serving {url}")))?;
    if let Ok(home) = seam_local::Home::from_env() {
        home.withdraw(service, &url);
    }
    Ok(())
}
