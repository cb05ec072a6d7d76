//! The sink's HTTP API: what `seam register` and `seam status` talk to, in the same shapes as a
//! seam node's (`GET/POST /subscriptions/{source}`, `GET /status`, `GET /health`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use seam::http::ApiError;
use seam::runtime::Registration;
use seam::snapshot::file;

use super::{lock, Request, Shared};

/// The sink's routes; a CRUD service's adapter serves them in front of its CDC node's.
pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/subscriptions", get(subscriptions))
        .route("/subscriptions/{source}", get(subscription).post(register))
        .route("/status", get(status))
        .route("/health", get(health))
        .with_state(shared)
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    match lock(&shared.trouble).clone() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the sink is not applying: {why}\n"),
        )
            .into_response(),
    }
}

async fn subscriptions(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let registrations = lock(&shared.registrations).clone();
    let sources: Vec<String> = registrations
        .iter()
        .filter(|(_, r)| matches!(r, Registration::Reading { .. }))
        .map(|(s, _)| seam::translator::events_topic(s))
        .collect();
    Json(serde_json::json!({
        "service": shared.service,
        "kind": "postgres-sink",
        "sources": sources,
        "registrations": registrations,
    }))
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let positions = lock(&shared.positions).clone();
    Json(serde_json::json!({
        "service": shared.service,
        "kind": "postgres-sink",
        "positions": positions,
        "trouble": lock(&shared.trouble).clone(),
    }))
}

fn unknown(shared: &Shared, source: &str) -> ApiError {
    ApiError::not_found(format!(
        "this build of {} links no translator for {source}; add one to the sink's translators and rebuild it",
        shared.service
    ))
}

async fn subscription(
    State(shared): State<Arc<Shared>>,
    Path(source): Path<String>,
) -> Result<Json<Registration>, ApiError> {
    shared
        .registration(&source)
        .map(|r| Json(now(&shared, &source, r)))
        .ok_or_else(|| unknown(&shared, &source))
}

/// A source being read from its first offset (the topology lists it, so no registration
/// stored positions), with the positions committed by now instead of none.
fn now(shared: &Shared, source: &str, r: Registration) -> Registration {
    match r {
        Registration::Reading {
            positions,
            snapshot_seq,
            already,
        } if positions.is_empty() => Registration::Reading {
            positions: lock(&shared.positions)
                .get(&seam::translator::events_topic(source))
                .cloned()
                .unwrap_or_default(),
            snapshot_seq,
            already,
        },
        other => other,
    }
}

async fn register(
    State(shared): State<Arc<Shared>>,
    Path(source): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Response, ApiError> {
    let running = |r: Registration| {
        (
            StatusCode::CONFLICT,
            Json(serde_json::json!({
                "error": format!("{source} is already being bootstrapped"),
                "registration": r,
            })),
        )
            .into_response()
    };
    match shared.registration(&source) {
        None => return Err(unknown(&shared, &source)),
        Some(r @ Registration::Bootstrapping { .. }) => return Ok(running(r)),
        Some(r @ Registration::Reading { .. }) => {
            let r = match now(&shared, &source, r) {
                Registration::Reading {
                    positions,
                    snapshot_seq,
                    ..
                } => Registration::Reading {
                    positions,
                    snapshot_seq,
                    already: true,
                },
                other => other,
            };
            return Ok((StatusCode::OK, Json(r)).into_response());
        }
        Some(_) => {}
    }
    let bytes = axum::body::to_bytes(body, seam::runtime::SPOOL_MAX_BYTES as usize)
        .await
        .map_err(|e| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("reading the snapshot: {e}")))?;
    let (snapshot, state) = if bytes.is_empty() {
        if query.get("from").map(String::as_str) != Some("beginning") {
            return Err(ApiError::bad_request(
                "no snapshot in the request body",
                "send the source's snapshot file as the body, or an empty body with ?from=beginning to read the whole topic",
            ));
        }
        (
            None,
            Registration::Bootstrapping {
                loaded: 0,
                total: 0,
                seq: 0,
            },
        )
    } else {
        let meta = file::check(std::io::Cursor::new(&bytes[..]), "the request body", Some(&source)).map_err(|e| {
            ApiError::bad_request(
                e.to_string(),
                format!("send a snapshot of {source} (`seam snapshot export`, or its GET /snapshot)"),
            )
        })?;
        (
            Some(bytes.to_vec()),
            Registration::Bootstrapping {
                loaded: 0,
                total: meta.records,
                seq: meta.seq,
            },
        )
    };
    shared.set_registration(&source, state.clone());
    let sent = lock(&shared.requests).send(Request::Register {
        source: source.clone(),
        snapshot,
    });
    if sent.is_err() {
        return Err(ApiError::internal("the sink's worker stopped; restart the sink"));
    }
    Ok((StatusCode::ACCEPTED, Json(state)).into_response())
}
