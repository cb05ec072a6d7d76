//! The HTTP endpoints every service has, whatever its domain: `GET /events` (getEvents),
//! `PUT /events` (putEvents), `GET /health`, `GET /metrics`, `GET /snapshot`, and the operator
//! endpoints of [`admin`] (`/subscriptions`, `/replay`). A service merges these routes
//! with its own command and query routes.
//!
//! Events travel as they do on Kafka: key, Confluent-framed Avro value (base64) and `seam-*`
//! headers, so what one service's getEvents returns another's putEvents accepts. getEvents also
//! shows each payload decoded as JSON for people.

mod admin;
pub mod auth;
pub mod shared;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::codec::wire;
use crate::envelope;
use crate::runtime::{ExecuteError, Node, PutOutcome, RawEvent, RuntimeError};
use crate::service::{ApplyError, Service};
use crate::store::{JournalEntry, Store, StoreError};
use crate::translator::events_topic;

pub use shared::{digest, Shared, SharedQuery, SharedRow};

/// Most events one getEvents page returns.
pub const MAX_PAGE: usize = 1000;

/// An error answer: status, what is wrong, and what to do. The body is
/// `{"error": "...", "kind": "...", "hint": "..."}`; `kind` says whose fault it is so a client
/// can decide without parsing text: `bad-request`, `unauthenticated`, `forbidden`, `not-found`,
/// `conflict` and `rejected` (the domain said no: do not retry as is) are the caller's; `store`, `kafka`, `registry`,
/// `unavailable` and `internal` are the server's.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Whose fault and what broke (see the type's doc).
    pub kind: &'static str,
    /// What is wrong.
    pub error: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl ApiError {
    /// 400 with a message.
    pub fn bad_request(error: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error).with_hint(hint)
    }

    /// 500: something on the server side failed (the store, a stored value).
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
    }

    /// 500 `store`: the service's store failed (reading it, or a value in it).
    pub fn store(error: impl std::fmt::Display) -> Self {
        let mut e = Self::internal(error);
        e.kind = "store";
        e
    }

    /// 404 with a message.
    pub fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error)
    }

    /// Any status with a message; the kind follows from the status.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        let kind = match status.as_u16() {
            400 => "bad-request",
            401 => "unauthenticated",
            403 => "forbidden",
            404 => "not-found",
            409 => "conflict",
            413 => "too-large",
            422 => "rejected",
            501 => "not-implemented",
            503 => "unavailable",
            s if s >= 500 => "internal",
            _ => "bad-request",
        };
        Self {
            status,
            kind,
            error: error.into(),
            hint: None,
        }
    }

    /// The same answer with a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The answer for a runtime failure, one class per variant: a request the node cannot take
    /// as asked is 422 (`rejected`), one that conflicts with running work 409 (`conflict`), a
    /// malformed one 400 (`bad-request`), one for what the service does not offer 501
    /// (`unsupported`); the store is a 500 (`store`), Kafka and the registry are 503 (`kafka`,
    /// `registry`: retry later), a node that is stopping is 503 (`unavailable`), and a broken
    /// configuration or a panic is a 500 (`internal`).
    pub fn from_runtime(e: &RuntimeError) -> Self {
        let (status, kind) = match e {
            RuntimeError::Refused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "rejected"),
            RuntimeError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            RuntimeError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            RuntimeError::Unsupported(_) => (StatusCode::NOT_IMPLEMENTED, "unsupported"),
            RuntimeError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store"),
            RuntimeError::Kafka { .. } | RuntimeError::TopicMissing { .. } | RuntimeError::Retention(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "kafka")
            }
            RuntimeError::Registry(_) => (StatusCode::SERVICE_UNAVAILABLE, "registry"),
            RuntimeError::WriterGone | RuntimeError::Cancelled => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            RuntimeError::Panicked(_) | RuntimeError::Config(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self {
            status,
            kind,
            error: e.to_string(),
            hint: None,
        }
    }

    /// The answer for a command that was not executed: the domain's refusal is 422
    /// (`rejected`), a failing store 500 (`store`), a panic or an event that does not fit its
    /// schema 500 (`internal`: a bug in the service), a node that is stopping 503.
    pub fn from_execute(e: &ExecuteError) -> Self {
        let (status, kind) = match e {
            ExecuteError::Apply(ApplyError::Rejected(_)) => (StatusCode::UNPROCESSABLE_ENTITY, "rejected"),
            ExecuteError::Apply(ApplyError::Store(_) | ApplyError::Model { .. }) | ExecuteError::Store(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "store")
            }
            ExecuteError::Apply(ApplyError::Encode(_) | ApplyError::Panicked(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            ExecuteError::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        Self {
            status,
            kind,
            error: e.to_string(),
            hint: None,
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self::new(
            e.status(),
            format!("the request body is not what this endpoint takes: {}", e.body_text()),
        )
        .with_hint("send JSON with Content-Type: application/json; see the README for the shape")
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(
            format!("bad query parameters: {}", e.body_text()),
            "check the parameter names and types",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.error, "kind": self.kind });
        if let Some(hint) = self.hint {
            body["hint"] = hint.into();
        }
        (self.status, Json(body)).into_response()
    }
}

/// Model values under a key prefix, decoded, for query endpoints.
pub fn scan_model<T: serde::de::DeserializeOwned>(store: &Store, prefix: &str) -> Result<Vec<(String, T)>, ApiError> {
    store
        .model_scan(prefix)
        .map_err(ApiError::store)?
        .into_iter()
        .map(|(k, v)| Ok((k, serde_json::from_slice(&v).map_err(ApiError::store)?)))
        .collect()
}

/// The model value at `key`, decoded, for query endpoints; `None` if there is none.
pub fn model_value<T: serde::de::DeserializeOwned>(store: &Store, key: &str) -> Result<Option<T>, ApiError> {
    store
        .model_get(key)
        .map_err(ApiError::store)?
        .map(|v| serde_json::from_slice(&v).map_err(ApiError::store))
        .transpose()
}

/// One event as getEvents returns it and putEvents accepts it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WireEvent {
    /// The publishing service (its topic is `<source>.events`).
    pub source: String,
    /// The subject (Kafka key).
    pub key: String,
    /// Confluent-framed Avro, base64.
    pub value: String,
    /// The `seam-*` headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The payload as JSON, for people (getEvents only; ignored by putEvents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// Journal seq (getEvents only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// getEvents query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events after this seq.
    #[serde(default)]
    pub after: u64,
    /// Only this record type (full name, or the simple name).
    #[serde(rename = "type")]
    pub record: Option<String>,
    /// Only this subject.
    pub subject: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// A getEvents page.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventsPage {
    /// The events.
    pub events: Vec<WireEvent>,
    /// Pass as `after` for the next page.
    pub next_after: u64,
    /// Whether the journal goes on past this page.
    pub more: bool,
}

/// putEvents body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutEvents {
    /// The events, in order.
    pub events: Vec<WireEvent>,
}

/// The routes every service has, plus `POST /commands` for its own commands (a JSON command as
/// the service's `Command` type deserializes it).
pub fn platform_routes<S>(node: Arc<Node<S>>) -> Router
where
    S: Service,
    S::Command: serde::de::DeserializeOwned,
{
    Router::new()
        .route("/commands", axum::routing::post(post_command::<S>))
        .with_state(Arc::clone(&node))
        .merge(operator_routes(node))
}

/// The routes that need nothing of the service's command type: getEvents and putEvents
/// (`/events`), `GET /health`, `GET /metrics`, `GET /snapshot`, `/subscriptions`, `/status` and
/// `/replay`, `POST /dead-letters/discard`. Part of [`platform_routes`]; on their own for processes that take no commands over
/// HTTP.
pub fn operator_routes<S: Service>(node: Arc<Node<S>>) -> Router {
    Router::new()
        .route("/events", get(get_events::<S>).put(put_events::<S>))
        .route("/health", get(health::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/snapshot", get(get_snapshot::<S>))
        .route("/subscriptions", get(admin::get_subscriptions::<S>))
        .route("/status", get(admin::get_status::<S>))
        .route(
            "/subscriptions/{source}",
            // The upload is streamed to disk, never buffered; its size is checked as it arrives.
            get(admin::get_subscription::<S>)
                .post(admin::post_subscription::<S>)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/replay", get(admin::get_replay::<S>).post(admin::post_replay::<S>))
        .route("/dead-letters/discard", axum::routing::post(admin::post_discard::<S>))
        .with_state(node)
}

async fn get_snapshot<S: Service>(State(node): State<Arc<Node<S>>>) -> Result<Response, ApiError> {
    let exported = node
        .snapshot(std::time::Duration::from_secs(60))
        .await
        .map_err(|e| ApiError::from_runtime(&e))?;
    // Streamed from the file: opened, then removed (the open file stays readable), so a
    // dropped connection leaves nothing behind.
    let file = tokio::fs::File::open(exported.path()).await.map_err(ApiError::store)?;
    let length = file.metadata().await.map_err(ApiError::store)?.len();
    let seq = exported.meta.seq;
    drop(exported);
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.apache.avro+binary".to_string()),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::HeaderName::from_static("seam-snapshot-seq"), seq.to_string()),
        ],
        axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

async fn post_command<S>(
    State(node): State<Arc<Node<S>>>,
    headers: HeaderMap,
    body: Result<Json<S::Command>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError>
where
    S: Service,
    S::Command: serde::de::DeserializeOwned,
{
    let Json(command) = body?;
    if node.service().is_internal(&command) {
        let debug = format!("{command:?}");
        let name = debug.split([' ', '(', '{']).next().unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{name} is internal to {}: only its translators issue it (and redrive and replay), so the data it writes \
                 changes only through the events it replicates; send the command to the service that owns the data instead",
                node.name()
            ),
        ));
    }
    // A command starts a trace, or continues the caller's: its events carry it to every consumer.
    let span = if crate::trace::exporting() {
        let name = format!("{command:?}");
        let name = name.split([' ', '(', '{']).next().unwrap_or_default();
        tracing::info_span!(target: crate::trace::TARGET, "command", otel.name = %format!("command {name}"), service = %node.name())
    } else {
        tracing::Span::none()
    };
    let parent = headers.get(crate::trace::TRACEPARENT).and_then(|v| v.to_str().ok());
    let cause = crate::service::Cause {
        trace: crate::trace::continue_in(&span, parent, true),
        ..Default::default()
    };
    match node.execute(command, cause).instrument(span).await {
        Ok(seqs) => Ok(Json(serde_json::json!({ "applied": true, "events": seqs }))),
        Err(e) => Err(ApiError::from_execute(&e)),
    }
}

async fn health<S: Service>(State(node): State<Arc<Node<S>>>) -> Response {
    let body =
        serde_json::json!({ "status": "ok", "service": node.name(), "last_seq": node.store().last_seq().unwrap_or(0) });
    (StatusCode::OK, Json(body)).into_response()
}

async fn metrics<S: Service>(State(node): State<Arc<Node<S>>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        node.metrics().render(),
    )
        .into_response()
}

async fn get_events<S: Service>(
    State(node): State<Arc<Node<S>>>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventsPage>, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(
            format!("limit {limit} is out of range"),
            format!("use 1..={MAX_PAGE}"),
        ));
    }
    let record = match q.record {
        Some(r) if r.contains('.') => Some(r),
        Some(r) => Some(
            node.catalog()
                .records()
                .find(|x| x.full_name.rsplit('.').next() == Some(r.as_str()))
                .map(|x| x.full_name.clone())
                .ok_or_else(|| {
                    let known: Vec<&str> = node.catalog().records().map(|x| x.full_name.as_str()).collect();
                    ApiError::bad_request(
                        format!("{} publishes no event type {r}", node.name()),
                        format!("use one of {known:?}"),
                    )
                })?,
        ),
        None => None,
    };
    let durable = node.durable_seq();
    let store = node.store().clone();
    let (entries, last) = tokio::task::spawn_blocking(move || {
        events_page(
            &store,
            durable,
            q.after,
            limit,
            (record.as_deref(), q.subject.as_deref()),
        )
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::store)?;
    let mut events = Vec::with_capacity(entries.len());
    for entry in &entries {
        events.push(to_wire(&node, entry).await?);
    }
    let more = last < durable;
    Ok(Json(EventsPage {
        events,
        next_after: last,
        more,
    }))
}

/// The journal entries getEvents serves after `after` (at most `limit`, of one record type
/// and subject where given), and the seq its scan reached. Only durable ones: an entry a crash
/// could still take back would have its seq reused for another event, and a relay into
/// putEvents would keep the phantom and drop the real one as a repeat. The simulator relays
/// through this too.
pub fn events_page(
    store: &Store,
    durable: u64,
    after: u64,
    limit: usize,
    filter: (Option<&str>, Option<&str>),
) -> Result<(Vec<JournalEntry>, u64), StoreError> {
    store.journal_page(after, durable, limit, filter, 100_000)
}

async fn to_wire<S: Service>(node: &Node<S>, entry: &JournalEntry) -> Result<WireEvent, ApiError> {
    use crate::fault::Classify;
    let schemas = node.journal_schemas();
    let unavailable = |e: crate::runtime::journal_schemas::JournalSchemaError| match e.class() {
        crate::fault::Class::Retryable => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let id = schemas.id(entry).await.map_err(unavailable)?;
    // Old entries read like new ones where the running catalog's schema can resolve them.
    let reader = node.catalog().record(&entry.record).ok().map(|r| r.schema);
    let payload = schemas
        .decode(entry, reader)
        .await
        .ok()
        .and_then(|v| serde_json::Value::try_from(v).ok());
    let mut event = WireEvent::from_entry(node.name(), node.store().journal_id(), entry, id);
    event.payload = payload;
    Ok(event)
}

impl WireEvent {
    /// The event as the consumer takes it in from putEvents, at no Kafka offset; `i` is its
    /// index in the request, for the error.
    pub fn into_raw(self, i: usize) -> Result<RawEvent, ApiError> {
        let value = BASE64.decode(self.value.as_bytes()).map_err(|err| {
            ApiError::bad_request(
                format!("events[{i}].value is not base64: {err}"),
                "send the Confluent-framed Avro bytes, base64-encoded, as getEvents returns them",
            )
        })?;
        if !self.headers.contains_key(envelope::EVENT_ID) {
            return Err(ApiError::bad_request(
                format!("events[{i}] has no {} header", envelope::EVENT_ID),
                "putEvents is idempotent by event id; pass the headers getEvents returned",
            ));
        }
        Ok(RawEvent {
            topic: events_topic(&self.source),
            partition: -1,
            offset: -1,
            key: Some(self.key.into_bytes()),
            value: Some(value),
            headers: self
                .headers
                .into_iter()
                .map(|(k, v)| (k, Some(v.into_bytes())))
                .collect::<Vec<_>>()
                .into(),
        })
    }

    /// A journal entry of `service`'s `journal` as getEvents returns it (and the publisher would
    /// frame it), with its writer schema's registry id; without the JSON payload.
    pub fn from_entry(service: &str, journal: &crate::store::JournalId, entry: &JournalEntry, schema_id: u32) -> Self {
        let headers = crate::headers::headers(service, journal, entry, None);
        let headers = crate::headers::owned_pairs(Some(headers.as_borrowed()))
            .into_iter()
            .filter_map(|(k, v)| Some((k, String::from_utf8(v?).ok()?)))
            .collect();
        Self {
            source: service.to_string(),
            key: entry.subject.clone(),
            value: BASE64.encode(wire::frame(schema_id, &entry.body)),
            headers,
            payload: None,
            seq: Some(entry.seq),
        }
    }
}

async fn put_events<S: Service>(
    State(node): State<Arc<Node<S>>>,
    caller: Option<axum::Extension<auth::Caller>>,
    body: Result<Json<PutEvents>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(body) = body?;
    let sources = node.sources();
    let mut raws = Vec::with_capacity(body.events.len());
    for (i, e) in body.events.into_iter().enumerate() {
        // With authentication on, a source's events come only from that source's principal.
        if let Some(axum::Extension(auth::Caller(grant))) = &caller {
            if !grant.services.contains(&e.source) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "events[{i}]: {} may not put events of {}: only {}'s own principal may",
                        grant.principal, e.source, e.source
                    ),
                )
                .with_hint(format!("send {}'s token", e.source)));
            }
        }
        let topic = events_topic(&e.source);
        if !sources.contains(&topic) {
            return Err(ApiError::bad_request(
                format!("events[{i}]: {} does not consume from {}", node.name(), e.source),
                format!("it reads {sources:?}"),
            ));
        }
        raws.push(e.into_raw(i)?);
    }
    let outcomes = node.put_events(raws).await.map_err(|e| ApiError::from_runtime(&e))?;
    let rejected = outcomes
        .iter()
        .filter(|o| matches!(o, PutOutcome::Rejected { .. }))
        .count();
    Ok(Json(serde_json::json!({ "outcomes": outcomes, "rejected": rejected })))
}

#[cfg(test)]
mod status_tests {
    use super::*;

    /// One explicit class per runtime error: the caller's mistakes are 4xx, the server's 5xx,
    /// never decided by the message's text.
    #[test]
    fn every_runtime_error_maps_to_its_class() {
        let cases = [
            (RuntimeError::Refused("x".into()), 422, "rejected"),
            (RuntimeError::Conflict("already running".into()), 409, "conflict"),
            (RuntimeError::BadRequest("x".into()), 400, "bad-request"),
            (RuntimeError::Unsupported("x".into()), 501, "unsupported"),
            (RuntimeError::Config("already running".into()), 500, "internal"),
            (RuntimeError::Store("x".into()), 500, "store"),
            (RuntimeError::Registry("x".into()), 503, "registry"),
            (RuntimeError::TopicMissing { topic: "t".into() }, 503, "kafka"),
            (RuntimeError::WriterGone, 503, "unavailable"),
            (RuntimeError::Panicked("writer".into()), 500, "internal"),
        ];
        for (error, status, kind) in cases {
            let answer = ApiError::from_runtime(&error);
            assert_eq!((answer.status.as_u16(), answer.kind), (status, kind), "{error:?}");
        }
    }
}
