//! Operator endpoints every consuming service has: `POST/GET /subscriptions/{source}` (what
//! `seam register` drives) and `POST/GET /replay` (what `seam replay` drives). Both start work
//! that outlives the request and report progress on the GET, so a CLI can draw a progress bar
//! and a dropped connection does not stop a bootstrap half way.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::ApiError;
use crate::runtime::{Node, RegisterFrom, Registered, Registration, ReplayRequest, ReplayStatus, RuntimeError};
use crate::service::Service;

fn refused(e: RuntimeError) -> ApiError {
    ApiError::from_runtime(&e)
}

/// `POST /subscriptions/{source}`: the body is the source's snapshot (an Avro object container
/// file), streamed to disk and checked whole before anything uses it; an empty body with
/// `?from=beginning` reads the topic from offset 0 instead. 202 when a bootstrap starts, 200 when
/// the source is already read, 409 with the progress while a bootstrap of it runs.
pub(super) async fn post_subscription<S: Service>(
    State(node): State<Arc<Node<S>>>,
    Path(source): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let beginning = query.get("from").map(String::as_str) == Some("beginning");
    // Nothing to receive when the answer does not depend on the snapshot.
    match node.registration(&source).map_err(refused)? {
        Some(r @ Registration::Bootstrapping { .. }) => return Ok(running(&source, r)),
        Some(r @ Registration::Reading { .. }) => return Ok((StatusCode::OK, Json(r)).into_response()),
        Some(Registration::NeedsRebuild { error }) => {
            if query.get("accept").map(String::as_str) == Some("gap") {
                let r = node.accept_gap(&source).await.map_err(refused)?;
                return Ok((StatusCode::OK, Json(r)).into_response());
            }
            return Err(ApiError::new(StatusCode::CONFLICT, error).with_hint(format!(
                "see GET /subscriptions/{source}; a snapshot registration would load over what this service holds"
            )));
        }
        _ => {}
    }
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let from = if declared == Some(0) {
        if !beginning {
            return Err(ApiError::bad_request(
                "no snapshot in the request body",
                "send the source's snapshot file as the body, or an empty body with ?from=beginning to read the whole topic",
            ));
        }
        RegisterFrom::Beginning
    } else {
        let limit = crate::runtime::SPOOL_MAX_BYTES;
        if declared.is_some_and(|n| n > limit) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the snapshot is larger than {limit} bytes, the most this service spools"),
            ));
        }
        let arrival = node
            .receive_snapshot(&source, body.into_data_stream(), limit)
            .await
            .map_err(|e| match e {
                RuntimeError::BadRequest(_) => ApiError::from_runtime(&e)
                    .with_hint(format!("export a fresh snapshot of {source} and send it whole")),
                other => ApiError::from_runtime(&other),
            })?;
        RegisterFrom::Snapshot(arrival)
    };
    match node.register(&source, from).map_err(refused)? {
        Registered::Started(r) => Ok((StatusCode::ACCEPTED, Json(r)).into_response()),
        Registered::Already(r) => Ok((StatusCode::OK, Json(r)).into_response()),
        Registered::Running(r) => Ok(running(&source, r)),
    }
}

/// 409: a bootstrap of `source` is running; nothing was changed.
fn running(source: &str, progress: Registration) -> Response {
    (
        StatusCode::CONFLICT,
        Json(serde_json::json!({
            "error": format!("a bootstrap of {source} is already running; this request changed nothing"),
            "kind": "conflict",
            "hint": format!("follow it with GET /subscriptions/{source} (`seam register` attaches to it)"),
            "registration": progress,
        })),
    )
        .into_response()
}

/// `GET /subscriptions/{source}`: how its registration stands.
pub(super) async fn get_subscription<S: Service>(
    State(node): State<Arc<Node<S>>>,
    Path(source): Path<String>,
) -> Result<Json<Registration>, ApiError> {
    match node.registration(&source).map_err(refused)? {
        Some(r) => Ok(Json(r)),
        None => Err(ApiError::not_found(format!(
            "this build of {} has no translator for {source}; add the translator crate `{source}-to-{}` to the service and redeploy it",
            node.name(),
            node.name()
        ))),
    }
}

/// `GET /subscriptions`: the source topics read, those waiting for a rebuild, and per source
/// the record types its translator reads and ignores (what `seam deploy` checks).
pub(super) async fn get_subscriptions<S: Service>(State(node): State<Arc<Node<S>>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "service": node.name(),
        "sources": node.sources(),
        "needs_rebuild": node.needs_rebuild(),
        "declared": node.declared(),
    }))
}

/// `GET /status`: what this consumer has applied, from its store: the position per topic and
/// partition (next offset to read), and per source topic the dead letters not redriven yet,
/// the events parked behind them, and the events of record types its translator neither reads
/// nor ignores (by record). `seam status` puts these next to the topics' end offsets.
pub(super) async fn get_status<S: Service>(
    State(node): State<Arc<Node<S>>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store = node.store();
    let positions = store.positions().map_err(ApiError::store)?;
    // Counted as letters are parked and removed: a status never reads the letters themselves.
    let (mut dead, mut parked) = (BTreeMap::<String, u64>::new(), BTreeMap::<String, u64>::new());
    for ((topic, class), n) in store.dead_letter_counts().map_err(ApiError::store)? {
        let tally = if class == "parked" { &mut parked } else { &mut dead };
        *tally.entry(topic).or_default() += n;
    }
    let mut unhandled = BTreeMap::<String, BTreeMap<String, u64>>::new();
    for ((topic, record), n) in store.unhandled_counts().map_err(ApiError::store)? {
        unhandled.entry(topic).or_default().insert(record, n);
    }
    Ok(Json(serde_json::json!({
        "service": node.name(),
        "sources": node.sources(),
        "positions": positions,
        "dead_letters": dead,
        "parked": parked,
        "unhandled": unhandled,
        "needs_rebuild": node.needs_rebuild(),
    })))
}

/// `POST /replay`: starts a rebuild (see [`ReplayRequest`]).
pub(super) async fn post_replay<S: Service>(
    State(node): State<Arc<Node<S>>>,
    body: Result<Json<ReplayRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let status = node.replay(request).map_err(refused)?;
    Ok((StatusCode::ACCEPTED, Json(status)).into_response())
}

/// `GET /replay`: the running or last replay.
pub(super) async fn get_replay<S: Service>(State(node): State<Arc<Node<S>>>) -> Result<Json<ReplayStatus>, ApiError> {
    node.replay_status()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no replay of {} has run since it started", node.name())))
}

/// `POST /dead-letters/discard`: settles dead letters that can never be redriven without
/// applying their events, recorded with who and why (body: [`crate::dlq::DiscardRequest`]).
/// 200 with what was discarded; 422 when nothing parked matches or the reason is missing.
pub(super) async fn post_discard<S: Service>(
    State(node): State<Arc<Node<S>>>,
    body: Result<Json<crate::dlq::DiscardRequest>, JsonRejection>,
) -> Result<Json<crate::runtime::DiscardSummary>, ApiError> {
    let Json(mut request) = body?;
    if request.by.trim().is_empty() {
        request.by = "http".into();
    }
    node.discard(request).await.map(Json).map_err(refused)
}
