//! Who may change a service over HTTP. Without it anyone who reaches a service could send
//! commands, inject "foreign" events (which a consumer cannot veto), start a replay, upload a
//! snapshot or discard letters. `seam deploy` gives every principal of the topology a bearer
//! token (next to its Kafka credentials) and writes a table of the tokens' SHA-256 hashes with
//! what each principal speaks for; a service that finds the table requires a token on every
//! mutating request:
//!
//! - `PUT /events`: only the principal of each event's source (seed 004: the consumer checks it
//!   is talking to the right producer);
//! - `POST /replay`, `POST /subscriptions/<source>`, `POST /dead-letters/discard`: the operator;
//! - anything else that changes state (`POST /commands`, the service's own routes): any principal.
//!
//! Reads stay open unless the service is told to protect them too (`SEAM_HTTP_AUTH_READS`);
//! `/health` and `/metrics` are always open, for probes and Prometheus. A token is compared by
//! its hash and never logged.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ApiError;

pub use seam_local::cluster::{HTTP_TOKENS as TABLE_FILE, OPERATOR};

/// What one token's holder is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The principal, e.g. `User:se-group`.
    pub principal: String,
    /// The services whose events it may put (those the topology runs as this principal).
    #[serde(default)]
    pub services: Vec<String>,
    /// Whether it may run the operator's requests (replay, register, discard).
    #[serde(default)]
    pub operator: bool,
}

/// The tokens a service accepts, by SHA-256 (hex) of the token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Grants by token hash.
    pub tokens: BTreeMap<String, Grant>,
}

/// The hash a table keys a token by.
pub fn hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// A service's check of its callers.
#[derive(Debug, Clone)]
pub struct Auth {
    table: Table,
    reads: bool,
}

/// The caller of a request that passed the check (a request extension).
#[derive(Debug, Clone)]
pub struct Caller(pub Grant);

impl Auth {
    /// Checks callers against `table`; with `reads`, GET requests need a token too.
    pub fn new(table: Table, reads: bool) -> Self {
        Self { table, reads }
    }

    /// Reads the table deploy wrote.
    pub fn load(path: &Path, reads: bool) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let table: Table =
            serde_json::from_str(&text).map_err(|e| format!("{}: not a token table: {e}", path.display()))?;
        Ok(Self::new(table, reads))
    }

    /// How many principals it knows.
    pub fn principals(&self) -> usize {
        self.table.tokens.len()
    }

    fn grant(&self, token: &str) -> Option<&Grant> {
        self.table.tokens.get(&hash(token))
    }
}

/// The middleware: answers 401 without a known token, 403 for an operator's request from
/// another principal, and passes the caller on to the handler (`PUT /events` checks sources).
pub async fn require(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let reading = matches!(*request.method(), Method::GET | Method::HEAD);
    if path == "/health" || path == "/metrics" || (reading && !auth.reads) {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return unauthenticated("no bearer token");
    };
    let Some(grant) = auth.grant(token).cloned() else {
        return unauthenticated("the bearer token is not one this service accepts");
    };
    let operator_only = request.method() == Method::POST
        && (path == "/replay" || path.starts_with("/subscriptions/") || path == "/dead-letters/discard");
    if operator_only && !grant.operator {
        tracing::warn!(principal = %grant.principal, %path, "refused: an operator's request from another principal");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} may not {} {path}: only the operator may",
                grant.principal,
                request.method()
            ),
        )
        .with_hint(format!(
            "send the operator's token (`seam deploy` writes it to <secrets>/{OPERATOR}.token)"
        ))
        .into_response();
    }
    request.extensions_mut().insert(Caller(grant));
    next.run(request).await
}

/// The check a service's server applies, when `seam deploy` wrote a token table for this
/// cluster (or `SEAM_HTTP_TOKENS` names one); `SEAM_HTTP_AUTH_READS=true` protects reads too.
/// `None` without a table (on a cluster whose users deploy manages, with a warning that the API
/// is open). Loaded before a service starts, so a broken table stops it before it does anything.
/// Every server of a service (`seam::serve`, the CDC source, the database sink) goes through here.
pub fn guard(endpoints: &seam_local::cluster::Endpoints) -> Result<Option<Arc<Auth>>, String> {
    let Some(path) = endpoints.http_token_table() else {
        if let Some(dir) = &endpoints.secrets {
            tracing::warn!(
                expected = %dir.join(TABLE_FILE).display(),
                "the HTTP API is open to anyone who reaches it: no token table; run `seam deploy` to create the principals' tokens"
            );
        }
        return Ok(None);
    };
    let reads = std::env::var("SEAM_HTTP_AUTH_READS").is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
    let auth = Auth::load(&path, reads)?;
    tracing::info!(table = %path.display(), principals = auth.principals(), reads, "the HTTP API requires bearer tokens");
    Ok(Some(Arc::new(auth)))
}

/// `app` behind [`require`] with `auth`, or as it is without.
pub fn protect(app: axum::Router, auth: Option<Arc<Auth>>) -> axum::Router {
    match auth {
        Some(auth) => app.layer(axum::middleware::from_fn_with_state(auth, require)),
        None => app,
    }
}

fn unauthenticated(why: &str) -> Response {
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        format!("{why}: this service requires one to change anything"),
    )
    .with_hint(
        "send `Authorization: Bearer <token>`; `seam deploy` writes each principal's token to <secrets>/<user>.token",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::{get, post, put};
    use tower::ServiceExt;

    fn app(reads: bool) -> axum::Router {
        let mut table = Table::default();
        let grant = |principal: &str, services: &[&str], operator| Grant {
            principal: principal.into(),
            services: services.iter().map(|s| s.to_string()).collect(),
            operator,
        };
        table
            .tokens
            .insert(hash("se-token"), grant("User:se-group", &["se-group"], false));
        table.tokens.insert(hash("op-token"), grant("User:admin", &[], true));
        let auth = Arc::new(Auth::new(table, reads));
        axum::Router::new()
            .route("/commands", post(|| async { "ok" }))
            .route("/replay", post(|| async { "ok" }).get(|| async { "ok" }))
            .route("/health", get(|| async { "ok" }))
            .route(
                "/events",
                put(|caller: Option<axum::Extension<Caller>>| async move {
                    caller.map(|c| c.0 .0.principal).unwrap_or_default()
                }),
            )
            .layer(axum::middleware::from_fn_with_state(auth, require))
    }

    async fn call(app: axum::Router, method: &str, uri: &str, token: Option<&str>) -> (u16, String) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        let response = app
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("call");
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn changes_need_a_known_token_and_operators_requests_the_operator() {
        let (status, body) = call(app(false), "POST", "/commands", None).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("Bearer") && body.contains("token"), "{body}");
        assert_eq!(call(app(false), "POST", "/commands", Some("guess")).await.0, 401);
        assert_eq!(call(app(false), "POST", "/commands", Some("se-token")).await.0, 200);
        let (status, body) = call(app(false), "POST", "/replay", Some("se-token")).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("User:se-group") && body.contains("operator"), "{body}");
        assert_eq!(call(app(false), "POST", "/replay", Some("op-token")).await.0, 200);
        assert_eq!(
            call(app(false), "PUT", "/events", Some("se-token")).await,
            (200, "User:se-group".to_string()),
            "the handler learns who called"
        );
        // Reads are open unless protected; health always.
        assert_eq!(call(app(false), "GET", "/replay", None).await.0, 200);
        assert_eq!(call(app(true), "GET", "/replay", None).await.0, 401);
        assert_eq!(call(app(true), "GET", "/replay", Some("se-token")).await.0, 200);
        assert_eq!(call(app(true), "GET", "/health", None).await.0, 200);
    }

    #[test]
    fn a_table_keeps_hashes_not_tokens() {
        let mut table = Table::default();
        table.tokens.insert(
            hash("secret-token"),
            Grant {
                principal: "User:a".into(),
                services: vec!["a".into()],
                operator: false,
            },
        );
        let text = serde_json::to_string(&table).expect("json");
        assert!(!text.contains("secret-token"), "{text}");
        let dir = std::env::temp_dir().join(format!("seam-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(TABLE_FILE), &text).expect("write");
        let auth = Auth::load(&dir.join(TABLE_FILE), false).expect("load");
        assert_eq!(auth.grant("secret-token").map(|g| g.principal.as_str()), Some("User:a"));
        assert!(Auth::load(&dir.join("missing.json"), false).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
