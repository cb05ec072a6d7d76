//! Sends one call until the API takes it or refuses it: connection failures, timeouts, 5xx,
//! 408 and 429 are the API being away or busy and are retried with backoff (honouring
//! `Retry-After`); any other 4xx is the API saying no to this event, which is dead-lettered.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::command::HttpCommand;

/// The header carrying the idempotency key.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// A 2xx, with its status.
    Taken(u16),
    /// Refused: the status and the start of the answer.
    Refused {
        /// HTTP status.
        status: u16,
        /// What the API said (at most 500 bytes).
        answer: String,
    },
    /// The sink is stopping.
    Stopped,
}

/// Sends `call` to `base` with `key` as its idempotency key until it is taken or refused.
/// `retried` is told of each retry and why.
pub async fn deliver(
    http: &reqwest::Client,
    base: &str,
    call: &HttpCommand,
    key: &str,
    stop: &CancellationToken,
    retried: &(dyn Fn(&str) + Send + Sync),
) -> Delivered {
    let url = format!("{}{}", base.trim_end_matches('/'), call.path);
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut request = http
            .request(call.method.clone(), &url)
            .header(IDEMPOTENCY_KEY, key)
            .timeout(Duration::from_secs(30));
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let why = match request.send().await {
            Ok(r) if r.status().is_success() => return Delivered::Taken(r.status().as_u16()),
            Ok(r) => {
                let status = r.status().as_u16();
                let wait = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs);
                if status >= 500 || status == 408 || status == 429 {
                    if let Some(w) = wait {
                        backoff = w.min(Duration::from_secs(60));
                    }
                    format!("{} {url} answered {status}", call.method)
                } else {
                    let mut answer = r.text().await.unwrap_or_default();
                    answer.truncate(500);
                    return Delivered::Refused { status, answer };
                }
            }
            Err(e) => format!("{} {url}: {e}", call.method),
        };
        retried(&why);
        tokio::select! {
            _ = stop.cancelled() => return Delivered::Stopped,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
