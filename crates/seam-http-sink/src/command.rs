//! What an HTTP sink's translators produce: calls to the consumer's API.

/// One call. Its path is relative to the sink's base URL.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCommand {
    /// `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: reqwest::Method,
    /// Path and query, starting with `/`.
    pub path: String,
    /// A JSON body, if any.
    pub body: Option<serde_json::Value>,
}

impl HttpCommand {
    /// `POST path` with a JSON body: create something.
    pub fn post(path: impl Into<String>, body: serde_json::Value) -> Self {
        Self {
            method: reqwest::Method::POST,
            path: path.into(),
            body: Some(body),
        }
    }

    /// `PUT path` with a JSON body: set something to a whole new state (an upsert).
    pub fn put(path: impl Into<String>, body: serde_json::Value) -> Self {
        Self {
            method: reqwest::Method::PUT,
            path: path.into(),
            body: Some(body),
        }
    }

    /// `DELETE path`.
    pub fn delete(path: impl Into<String>) -> Self {
        Self {
            method: reqwest::Method::DELETE,
            path: path.into(),
            body: None,
        }
    }
}
