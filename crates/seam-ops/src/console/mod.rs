//! `seam console`: a web page over a running system. It shows the topology as a graph with each
//! flow coloured by state, per consumer and partition the position, end and lag with a
//! sparkline, the dead letters with a redrive button per subject, running bootstraps and
//! replays, and the deploy plan of the topology file; it updates live over server-sent events.
//!
//! It holds no state of its own: every round it reads what `seam status` and `seam dlq list`
//! read, and a redrive is the request `seam dlq redrive` sends. The front end is three static
//! files compiled into the binary (no build step).

pub mod collect;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rdkafka::ClientConfig;
use serde::Deserialize;
use tokio::sync::watch;

use crate::deploy::{self, Options, Registry};
use crate::dlq_admin;
use collect::{Collector, Scope};
use seam::dlq::RedriveRequest;

/// What the console serves and watches.
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Which services and flows.
    pub scope: Scope,
    /// How often to gather.
    pub every: Duration,
    /// The cluster.
    pub client: ClientConfig,
    /// The brokers, as shown.
    pub cluster: String,
    /// The registry's URL, for the deploy plan.
    pub registry: Option<String>,
}

struct Shared {
    latest: watch::Receiver<Arc<String>>,
    client: ClientConfig,
    scope: Scope,
    registry: Option<String>,
}

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

/// Serves until the process is stopped; `ready` gets the bound address once listening.
pub async fn serve(config: Config, ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>) -> anyhow::Result<()> {
    let mut collector = Collector::new(config.scope.clone(), config.client.clone(), config.cluster.clone())?;
    // The page answers at once; its first snapshot follows the first round.
    let (tx, rx) = watch::channel(Arc::new(String::from("{}")));
    let every = config.every;
    tokio::spawn(async move {
        let mut first = true;
        loop {
            if !first {
                tokio::time::sleep(every).await;
            }
            first = false;
            let snapshot = collector.collect().await;
            match serde_json::to_string(&snapshot) {
                Ok(json) => {
                    if tx.send(Arc::new(json)).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialize the console's snapshot"),
            }
        }
    });
    let shared = Arc::new(Shared {
        latest: rx,
        client: config.client,
        scope: config.scope,
        registry: config.registry,
    });
    let app = Router::new()
        .route("/", get(|| async { page("text/html; charset=utf-8", INDEX) }))
        .route(
            "/console.js",
            get(|| async { page("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route("/console.css", get(|| async { page("text/css; charset=utf-8", STYLE) }))
        .route("/api/state", get(state))
        .route("/api/events", get(events))
        .route("/api/plan", get(plan))
        .route("/api/redrive", post(redrive))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}; choose another with --port", config.listen))?;
    let bound = listener.local_addr()?;
    if let Some(ready) = ready {
        let _ = ready.send(bound);
    }
    axum::serve(listener, app).await?;
    Ok(())
}

fn page(kind: &'static str, body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>, hint: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({"error": message.into(), "hint": hint.into()})),
    )
        .into_response()
}

/// `GET /api/state`: the latest snapshot.
async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let json = shared.latest.borrow().clone();
    ([(header::CONTENT_TYPE, "application/json")], json.to_string()).into_response()
}

/// `GET /api/events`: the snapshot now, then each new one, as server-sent events.
async fn events(State(shared): State<Arc<Shared>>) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = shared.latest.clone();
    let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let mut json = rx.borrow_and_update().clone();
        // Before the first round there is nothing to show yet: wait for it.
        while json.as_str() == "{}" {
            if rx.changed().await.is_err() {
                return None;
            }
            json = rx.borrow_and_update().clone();
        }
        Some((Ok(Event::default().event("snapshot").data(json.as_str())), (rx, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `GET /api/plan`: what `seam deploy --dry-run` of the topology file would do. Read-only.
async fn plan(State(shared): State<Arc<Shared>>) -> Response {
    let Some(topology) = &shared.scope.topology else {
        return error(
            StatusCode::NOT_FOUND,
            "no topology file was given",
            "start the console with -t <topology.yaml> to see its deploy plan",
        );
    };
    let Some(registry) = &shared.registry else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no schema registry is configured",
            "set SEAM_REGISTRY",
        );
    };
    let outcome = async {
        let registry = Registry::new(registry)?;
        let options = Options {
            dry_run: true,
            ..Default::default()
        };
        deploy::deploy(topology, &shared.client, &registry, &options).await
    }
    .await;
    match outcome {
        Ok(o) => Json(serde_json::json!({
            "topology": topology.name,
            "changes": o.changes,
            "problems": o.problems,
            "notes": o.notes,
        }))
        .into_response(),
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!("planning failed: {e:#}"),
            "check that the cluster and registry answer (`seam doctor`)",
        ),
    }
}

/// The body of `POST /api/redrive`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveBody {
    consumer: String,
    subject: Option<String>,
    topic: Option<String>,
}

/// `POST /api/redrive`: asks a consumer to redrive its parked events of a subject, exactly as
/// `seam dlq redrive --consumer C --subject S` does. 202 with the request's time.
async fn redrive(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<RedriveBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                e.body_text(),
                r#"send {"consumer": "...", "subject": "..."} (subject and topic optional)"#,
            )
        }
    };
    if body.consumer.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "consumer is empty",
            "name the consumer whose letters to redrive",
        );
    }
    let request = RedriveRequest {
        subject: body.subject.filter(|s| !s.is_empty()),
        topic: body.topic.filter(|t| !t.is_empty()),
    };
    match dlq_admin::request_redrive(&shared.client, &body.consumer, &request).await {
        Ok(asked_at) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "consumer": body.consumer,
                "subject": request.subject,
                "topic": request.topic,
                "asked_at": asked_at,
            })),
        )
            .into_response(),
        Err(e @ dlq_admin::DlqError::NoTopic { .. }) => error(
            StatusCode::NOT_FOUND,
            e.to_string(),
            "the consumer has no dead-letter topic: check its name",
        ),
        Err(e) => error(StatusCode::BAD_GATEWAY, e.to_string(), "check that the cluster answers"),
    }
}
