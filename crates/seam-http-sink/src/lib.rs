//! The HTTP sink: the consuming side of a CRUD service that only has an API. Its translators
//! turn foreign events into calls ([`HttpCommand`]); each call carries an idempotency key made
//! from the event (`<seam-event-id>/<n>`, or `<topic>/<partition>/<offset>/<n>` for an event
//! without one), so an API that honours `Idempotency-Key` takes each event once although the
//! sink delivers at least once: positions are the consumer group's offsets, committed after
//! a batch's calls were taken or dead-lettered, and a crash in between sends them again with
//! the same keys. An API that is away or busy is waited for (backoff, `Retry-After`); one that
//! refuses a call (a 4xx) has the event dead-lettered to `<service>.dlq` with its answer, and
//! the events after it go on.
#![forbid(unsafe_code)]

pub mod command;
pub mod deliver;
mod metrics;
mod worker;

use std::sync::{Arc, Mutex};

use seam::translator::Translator;
use seam_local::cluster::Endpoints;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

pub use command::HttpCommand;
pub use metrics::HttpSinkMetrics;

/// Why a sink could not start.
#[derive(Debug, Error)]
pub enum HttpSinkError {
    /// The options and the linked translators do not fit.
    #[error("{0}")]
    Config(String),
    /// No cluster or registry.
    #[error(transparent)]
    Cluster(#[from] seam_local::cluster::ClusterError),
}

/// What an HTTP sink needs.
pub struct HttpSinkOptions {
    /// The consuming service (its group is `seam-http-sink-<service>`, its DLQ `<service>.dlq`).
    pub service: String,
    /// The API's base URL; each call's path is appended.
    pub base_url: String,
    /// The translators, one per source read.
    pub translators: Vec<Box<dyn Translator<HttpCommand>>>,
}

/// What the worker reports.
#[derive(Debug, Default, Clone)]
struct State {
    /// Why it is not delivering now, if it is not.
    trouble: Option<String>,
}

/// A running HTTP sink.
pub struct HttpSink {
    metrics: HttpSinkMetrics,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpSink {
    /// Starts the worker thread; it connects (and reconnects) on its own.
    pub fn start(options: HttpSinkOptions, endpoints: &Endpoints) -> Result<Self, HttpSinkError> {
        if !(options.base_url.starts_with("http://") || options.base_url.starts_with("https://")) {
            return Err(HttpSinkError::Config(format!(
                "the API's base URL `{}` is not an http(s) URL",
                options.base_url
            )));
        }
        let mut sources: Vec<&str> = options.translators.iter().map(|t| t.source()).collect();
        sources.sort_unstable();
        if let Some(w) = sources.windows(2).find(|w| w[0] == w[1]) {
            return Err(HttpSinkError::Config(format!(
                "two translators of {} read {}; a consumer has exactly one translator per source",
                options.service, w[0]
            )));
        }
        let registry = Arc::new(
            seam::codec::Registry::new(endpoints.registry()?)
                .map_err(|e| HttpSinkError::Config(format!("the schema registry: {e}")))?,
        );
        let metrics = HttpSinkMetrics::new(&options.service);
        let state = Arc::new(Mutex::new(State {
            trouble: Some("starting".into()),
        }));
        let stop = CancellationToken::new();
        let worker = worker::Worker::new(
            options,
            endpoints.client(),
            registry,
            metrics.clone(),
            Arc::clone(&state),
            tokio::runtime::Handle::current(),
            stop.clone(),
        )?;
        let thread = std::thread::Builder::new()
            .name("seam-http-sink".into())
            .spawn(move || worker.run())
            .map_err(|e| HttpSinkError::Config(format!("starting the sink's thread: {e}")))?;
        Ok(Self {
            metrics,
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// The sink's metrics.
    pub fn metrics(&self) -> &HttpSinkMetrics {
        &self.metrics
    }

    /// Why it is not delivering right now; `None` while it is.
    pub fn trouble(&self) -> Option<String> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).trouble.clone()
    }

    /// Stops after the call in flight (its batch's offsets are not committed: the calls come
    /// again, with the same keys, at the next start) and waits for the worker.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
