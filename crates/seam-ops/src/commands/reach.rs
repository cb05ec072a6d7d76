//! Finding and talking to running services: their announced address (`$SEAM_HOME/run`), snapshot
//! fetches, and the progress bar of long operator operations.

use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use seam::runtime::is_url;
use seam::snapshot::{file, SnapshotMeta};
use seam_local::Home;

/// The base URL of `service`: `explicit` if given, else what it announced when it started.
pub fn service_url(service: &str, explicit: Option<&str>) -> anyhow::Result<String> {
    if let Some(url) = explicit {
        if !is_url(url) {
            bail!("`{url}` is not an http(s) URL; pass the service's base URL, e.g. http://127.0.0.1:7301");
        }
        return Ok(url.trim_end_matches('/').to_string());
    }
    let home = Home::from_env()?;
    match home.service_url(service) {
        Some(url) => Ok(url),
        None => bail!(
            "cannot find a running {service}: services announce their address in {} when they start; start it, or pass its base URL with --url",
            home.service_file(service).display()
        ),
    }
}

/// A snapshot of `source` from a file or URL (or the running source's `GET /snapshot`), checked
/// whole and from `source` before anything uses it.
pub async fn snapshot_bytes(source: &str, from: Option<&str>) -> anyhow::Result<(Vec<u8>, SnapshotMeta, String)> {
    let from = match from {
        Some(f) => f.to_string(),
        None => format!(
            "{}/snapshot",
            service_url(source, None).context("no --snapshot given, so the source's own GET /snapshot is used")?
        ),
    };
    let bytes = if is_url(&from) {
        let response = http(None)
            .get(&from)
            .send()
            .await
            .with_context(|| format!("GET {from}"))?;
        let status = response.status();
        let bytes = response.bytes().await.with_context(|| format!("reading {from}"))?;
        if !status.is_success() {
            bail!("{from} answered {status}: {}", String::from_utf8_lossy(&bytes));
        }
        bytes.to_vec()
    } else {
        std::fs::read(&from).with_context(|| format!("reading the snapshot {from}"))?
    };
    let (meta, _) = file::read(bytes.as_slice(), &from, Some(source))?;
    Ok((bytes, meta, from))
}

/// A JSON answer of a service, or its error message.
pub async fn json(response: reqwest::Response, what: &str) -> anyhow::Result<serde_json::Value> {
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("reading the answer to {what}"))?;
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    if !status.is_success() {
        let error = body
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or_default()
            .to_string();
        let hint = body
            .get("hint")
            .and_then(|e| e.as_str())
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        if error.is_empty() {
            bail!("{what}: {status}: {body}");
        }
        bail!("{what}: {error}{hint}");
    }
    Ok(body)
}

/// A progress bar on stderr with count, rate and ETA (hidden when stderr is not a terminal or
/// output is JSON).
pub fn bar(hidden: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(0),
        if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{msg:18} [{bar:30}] {human_pos}/{human_len} records, {per_sec}, ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// An HTTP client for services' APIs that presents the operator's bearer token when the
/// cluster has one (`SEAM_HTTP_TOKEN`, or the one `seam deploy` wrote next to the credentials):
/// services behind a token table refuse changes without it. `timeout` bounds each request.
pub fn http(timeout: Option<Duration>) -> reqwest::Client {
    let token = seam_local::cluster::Endpoints::discover()
        .ok()
        .and_then(|e| e.http_token(None));
    let mut builder = reqwest::Client::builder();
    if let Some(token) = token {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Ok(mut value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) {
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        builder = builder.default_headers(headers);
    }
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    builder.build().unwrap_or_default()
}
