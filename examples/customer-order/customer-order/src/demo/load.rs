//! The requests of seed 002's client: `createCustomer` to the customer service and
//! `createOrder` to the order service, many at a time, as REST calls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::stream::{self, StreamExt, TryStreamExt};

/// Requests in flight at once.
pub const CONCURRENCY: usize = 32;

/// Creates customers numbered `from..to` (names and emails follow the number); returns their ids.
pub async fn customers(http: &reqwest::Client, url: &str, from: u64, to: u64) -> anyhow::Result<Vec<i64>> {
    stream::iter(from..to)
        .map(|i| {
            let body =
                serde_json::json!({"name": format!("Customer {i}"), "email": format!("customer{i}@example.org")});
            post(http, format!("{url}/customers"), body, None)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

/// Creates `n` orders spread over `customers`; an order for a customer the order service has
/// not received yet is retried until it has. Returns how many requests were retried so.
pub async fn orders(http: &reqwest::Client, url: &str, customers: &[i64], n: u64) -> anyhow::Result<u64> {
    if customers.is_empty() {
        bail!("no customers to order for");
    }
    let waits = Arc::new(AtomicU64::new(0));
    stream::iter(0..n)
        .map(|i| {
            let customer = customers[(i as usize * 7919) % customers.len()];
            let body = serde_json::json!({"customer_id": customer, "amount_cents": 100 + (i * 37) % 10_000});
            post(http, format!("{url}/orders"), body, Some(Arc::clone(&waits)))
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<i64>>()
        .await?;
    Ok(waits.load(Ordering::Relaxed))
}

/// POSTs `body`; retries a refused or dropped connection or a 503 (a service restarting), and with
/// `waits` a 409 (a customer not replicated yet), for up to two minutes. Returns the new id.
async fn post(
    http: &reqwest::Client,
    url: String,
    body: serde_json::Value,
    waits: Option<Arc<AtomicU64>>,
) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut waited = false;
    loop {
        let answer = http.post(&url).json(&body).send().await;
        let retry = match answer {
            Ok(r) if r.status().is_success() => {
                let v: serde_json::Value = r.json().await.with_context(|| format!("the answer of POST {url}"))?;
                return v["id"]
                    .as_i64()
                    .with_context(|| format!("POST {url} answered {v} without an id"));
            }
            Ok(r) if r.status() == reqwest::StatusCode::CONFLICT && waits.is_some() => {
                if !waited {
                    waited = true;
                    if let Some(w) = &waits {
                        w.fetch_add(1, Ordering::Relaxed);
                    }
                }
                format!("{}", r.status())
            }
            Ok(r) if r.status().is_server_error() => format!("{}", r.status()),
            Ok(r) => {
                let status = r.status();
                bail!(
                    "POST {url} {body} answered {status}: {}",
                    r.text().await.unwrap_or_default()
                )
            }
            // A service killed mid-request closes the connection: the request may or may not have
            // been taken (a retried create then makes a second row, on both sides alike).
            Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => e.to_string(),
            Err(e) => return Err(e).with_context(|| format!("POST {url}")),
        };
        if Instant::now() > deadline {
            bail!("POST {url} {body} kept failing for two minutes: {retry}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
