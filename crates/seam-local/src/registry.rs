//! Runs Apicurio Registry with its Confluent-compatible API, storing schemas in Kafka.
//!
//! kafkasql storage keeps the registry's data in topics of the local cluster, so schemas
//! survive `seam local down`/`up` exactly as long as the broker data does. The default
//! compatibility rule is set to BACKWARD, Confluent Schema Registry's default (Apicurio's
//! own default is NONE, which would let `seam deploy` accept breaking schema changes).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::error::LocalError;
use super::fetch::Dist;
use super::layout::Home;
use super::process::{self, Proc};
use super::shape::Shape;

/// Starts the registry JVM detached; output goes to `brokers-<n>/registry.log`.
pub fn start(home: &Home, shape: &Shape, java: &Path, dist: &Dist) -> Result<(Proc, PathBuf), LocalError> {
    let log = home.stack_dir(shape).join("registry.log");
    let mut cmd = Command::new(java);
    cmd.args(["-Xms128m", "-Xmx512m"])
        .arg(super::kafka::marker(home))
        .arg("-Dseam.component=registry")
        .arg("-Dquarkus.http.host=127.0.0.1")
        .arg(format!("-Dquarkus.http.port={}", shape.registry_port))
        .arg("-Dquarkus.management.host=127.0.0.1")
        .arg(format!("-Dquarkus.management.port={}", shape.management_port()))
        .arg("-Dapicurio.rules.global.compatibility=BACKWARD");
    if shape.secure {
        // The brokers admit only SCRAM principals; the registry keeps its schemas in an H2 file
        // beside the brokers' data instead, so it holds no Kafka credentials at all.
        let db = home.stack_dir(shape).join("registry-db");
        cmd.arg("-Dapicurio.storage.kind=sql")
            .arg("-Dapicurio.storage.sql.kind=h2")
            .arg(format!(
                "-Dapicurio.datasource.url=jdbc:h2:file:{};DB_CLOSE_ON_EXIT=FALSE",
                db.display()
            ));
    } else {
        cmd.arg("-Dapicurio.storage.kind=kafkasql").arg(format!(
            "-Dapicurio.kafkasql.bootstrap.servers={}",
            shape.bootstrap().join(",")
        ));
    }
    cmd.arg("-jar")
        .arg(&dist.registry_jar)
        .current_dir(home.stack_dir(shape));
    let proc = process::spawn_detached(cmd, &log)?;
    Ok((proc, log))
}

/// Waits until the registry reports UP and its Confluent API answers.
pub async fn wait_ready(shape: &Shape, proc: &Proc, log: &Path, timeout: Duration) -> Result<(), LocalError> {
    let deadline = Instant::now() + timeout;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap_or_default();
    loop {
        if !proc.is_running() {
            return Err(LocalError::DiedWhileStarting {
                component: "the schema registry".into(),
                log: log.to_path_buf(),
                tail: process::tail(log, 40),
            });
        }
        let Err(last) = probe(&client, shape).await else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(LocalError::NotReady {
                component: "the schema registry".into(),
                waited_secs: timeout.as_secs(),
                detail: last,
                log: log.to_path_buf(),
                tail: process::tail(log, 20),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One readiness probe: management health UP, then `GET /subjects` on the Confluent API.
pub async fn probe(client: &reqwest::Client, shape: &Shape) -> Result<(), String> {
    let health = format!("http://127.0.0.1:{}/health/ready", shape.management_port());
    let resp = client.get(&health).send().await.map_err(|e| format!("{health}: {e}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() || body.get("status").and_then(|s| s.as_str()) != Some("UP") {
        return Err(format!("{health} answered {status} {body}"));
    }
    let subjects = format!("{}/subjects", shape.registry_url());
    let resp = client
        .get(&subjects)
        .send()
        .await
        .map_err(|e| format!("{subjects}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{subjects} answered {}", resp.status()));
    }
    Ok(())
}
