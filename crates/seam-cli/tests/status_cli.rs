//! `seam status` as an operator runs it: a consumer that is not running is reported from its
//! group's committed offsets, `--max-lag` turns lag into exit code 3, and bad input is named.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use seam_testkit::{unique_name, TestCluster};
use serde_json::Value;

const SCHEMA: &str =
    r#"{"type":"record","name":"Ping","namespace":"statustest","fields":[{"name":"id","type":"string"}]}"#;

fn seam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(args)
        .output()
        .expect("run seam")
}

fn topology(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(dir.join("s")).expect("dir");
    std::fs::write(dir.join("s/Ping.avsc"), SCHEMA).expect("schema");
    let path = dir.join("topology.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: seam/v1\nname: {name}\nservices:\n  - name: {name}-a\n    partitions: 2\n    schemas: s\n  - name: {name}-b\n    partitions: 1\n    schemas: s\nconsumers:\n  - service: {name}-b\n    sources:\n      - service: {name}-a\n        translator: {name}-a-to-{name}-b\n"
        ),
    )
    .expect("topology");
    path
}

#[tokio::test]
async fn a_stopped_consumers_lag_comes_from_the_topic_and_max_lag_sets_the_exit_code() {
    let cluster = TestCluster::connect();
    let name = unique_name("st");
    let t = topology(&name);
    let t = t.to_str().expect("utf-8");
    let out = seam(&["deploy", "-t", t]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let producer: FutureProducer = cluster.client_config().create().expect("producer");
    for i in 0..5 {
        producer
            .send(
                FutureRecord::to(&format!("{name}-a.events"))
                    .key(&format!("k{i}"))
                    .payload("x"),
                Duration::from_secs(10),
            )
            .await
            .expect("produce");
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let out = seam(&["status", "-t", t, "--json", "--max-lag", "0"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let c = &v["consumers"][0];
    assert_eq!(c["consumer"], format!("{name}-b"));
    assert_eq!(c["positions_from"], "group-offsets");
    let parts = c["sources"][0]["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 2);
    let lag: i64 = parts.iter().map(|p| p["lag_events"].as_i64().unwrap_or(0)).sum();
    assert_eq!(lag, 5);
    let seconds = parts
        .iter()
        .filter_map(|p| p["lag_seconds"].as_f64())
        .fold(0.0, f64::max);
    assert!((1.0..60.0).contains(&seconds), "{seconds}");
    assert_eq!(v["exceeded"][0], format!("{name}-b"));

    let out = seam(&["status", "-t", t, "--max-lag", "10"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("CONSUMER") && text.contains("committed offsets"),
        "{text}"
    );
    let out = seam(&["status", "-t", t, "--max-lag", "1h"]);
    assert!(out.status.success());
    let out = seam(&["status", "-t", t, "--max-lag", "0s"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn bad_input_is_named() {
    let out = seam(&["status", "--max-lag", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("30s"));
    let out = seam(&["status", "--url", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    let out = seam(&["status", "-t", "/nonexistent.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.yaml"));
}
