//! The web console in a real browser: Debian's headless Chromium, driven by playwright-core
//! (`tests/browser/console.mjs`; `scripts/browser` readies both and `scripts/test` passes the
//! driver in `SEAM_TEST_BROWSER`), against the demo left running. The page must show every
//! flow in sync; a poison event produced onto the students office's topic must appear as a dead
//! letter with its flow parked; its Redrive button (after the confirmation) must reach the
//! consumer, whose answer shows as the letter's status. Screenshots are kept in
//! `target/test-artifacts/console/`. With the services up and through all of that, every metric
//! the Grafana dashboard (`deploy/grafana/seam.json`) names must be on their `/metrics` pages.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{pids, Running};
use rdkafka::producer::{FutureProducer, FutureRecord};
use seam_ops::commands::dlq::{self, DlqCommand};
use seam_ops::console::{self, collect::Scope, Config};
use seam_testkit::{unique_name, TestCluster};
use serde_json::Value;

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts/console");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

/// Runs one phase of the browser driver; its JSON line.
fn browser(url: &str, phase: &[&str]) -> Value {
    let driver = std::env::var("SEAM_TEST_BROWSER").unwrap_or_else(|_| {
        panic!("this test drives Chromium: run `scripts/browser` and set SEAM_TEST_BROWSER to the path it prints (scripts/test does both)")
    });
    let out = Command::new("node")
        .arg(&driver)
        .arg(url)
        .arg(artifacts())
        .args(phase)
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser phase {phase:?} failed (screenshots in {}): {}{stdout}",
        artifacts().display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Metrics whose samples appear only after a fault the demo does not make (a record type no
/// translator declares; events deleted before a consumer read them): checked on the runtime's
/// own exporter after the calls that a service makes on such a fault.
const SAMPLED_AFTER_A_FAULT: [&str; 2] = ["seam_events_unhandled_total", "seam_source_needs_rebuild"];

/// Every metric a query of `deploy/grafana/seam.json` names has samples on a service's
/// `/metrics` page, or (for those that need a fault) in the runtime's exporter after that fault.
fn dashboard_metrics_are_exported(pages: &[String]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/seam.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard")).expect("JSON");
    let mut named = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("seam_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                named.insert(name);
            }
        }
    }
    assert!(
        named.len() >= 12,
        "the dashboard names the runtime's metrics: {named:?}"
    );
    let after_faults = seam::metrics::Metrics::new("probe");
    after_faults.unhandled("t.events", "t.Unknown");
    after_faults.set_needs_rebuild("t.events", true);
    let after_faults = after_faults.render();
    for name in &named {
        let sampled = |page: &str| {
            page.lines()
                .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        };
        if SAMPLED_AFTER_A_FAULT.contains(&name.as_str()) {
            assert!(
                sampled(&after_faults),
                "{name} (in the dashboard) is not what seam exports: {after_faults}"
            );
        } else {
            assert!(
                pages.iter().any(|p| sampled(p)),
                "{name} (in the dashboard) has no samples on the demo's services after the test"
            );
        }
    }
}

/// Discards, as `seam dlq discard` does, every outstanding dead letter this test's poison left.
fn settle_console_poison(runtime: &tokio::runtime::Runtime, cluster: &TestCluster) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let client = cluster.endpoints.client();
        let letters = seam_ops::dlq_admin::list(&client, None).expect("list dead letters");
        let left: std::collections::BTreeSet<(String, String)> = letters
            .iter()
            .filter(|l| matches!(l.status.as_str(), "pending" | "redrive-failed"))
            .filter_map(|l| Some((l.consumer.clone(), l.subject.clone()?)))
            .filter(|(_, subject)| subject.starts_with("student/console-poison"))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the console test's poison is still parked: {left:?}"
        );
        for (consumer, subject) in left {
            if let Err(e) = runtime.block_on(dlq::run(DlqCommand::Discard {
                consumer: consumer.clone(),
                subject,
                topic: None,
                offsets: Vec::new(),
                reason: "the console test's poison".into(),
                by: Some("console-test".into()),
                redrive_rest: false,
                wait: 30,
            })) {
                eprintln!("{consumer}: {e:#}; trying again");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

#[test]
fn the_console_shows_the_demo_in_sync_then_a_parked_subject_that_its_redrive_button_redrives() {
    let cluster = TestCluster::connect();
    let out = Command::new(env!("CARGO_BIN_EXE_student-affairs"))
        .args(["demo", "--students", "20", "--json", "--keep-running"])
        .env("SEAM_BROKERS", cluster.bootstrap())
        .env("SEAM_REGISTRY", cluster.registry())
        .output()
        .expect("run the demo");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let _services = Running(pids(&stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("demo report: {e}; {stderr}"));
    assert_eq!(report["synced"], true, "{report}");
    assert_eq!(_services.0.len(), 5, "five services left running: {stderr}");
    let topology = seam_local::Home::from_env()
        .expect("SEAM_HOME")
        .root()
        .join("student-affairs/topology.yaml");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = runtime.block_on(async {
        let (ready, bound) = tokio::sync::oneshot::channel();
        let config = Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            scope: Scope {
                topology: Some(seam::topology::Topology::load(&topology).expect("the demo's topology")),
                urls: Default::default(),
            },
            every: Duration::from_secs(1),
            client: cluster.endpoints.client(),
            cluster: cluster.bootstrap(),
            registry: Some(cluster.registry()),
        };
        tokio::spawn(async move { console::serve(config, Some(ready)).await.expect("console") });
        format!("http://{}/", bound.await.expect("console listening"))
    });

    // A run interrupted before its cleanup leaves its poison parked.
    settle_console_poison(&runtime, &cluster);
    let seen = browser(&url, &["in-sync", "11"]);
    assert_eq!(seen["states"].as_array().map(Vec::len), Some(11), "{seen}");
    assert!(seen["partitions"].as_u64().unwrap_or(0) >= 11, "{seen}");

    // Bytes no translator can decode, about a subject of their own, twice: the first is
    // poison, the second is parked behind it.
    let subject = format!("student/{}", unique_name("console-poison"));
    runtime.block_on(async {
        let producer: FutureProducer = cluster.client_config().create().expect("producer");
        for body in [&b"\x00\xff not an avro body"[..], &b"nor is this"[..]] {
            producer
                .send(
                    FutureRecord::to("students-office.events")
                        .key(subject.as_bytes())
                        .payload(body),
                    Duration::from_secs(30),
                )
                .await
                .expect("produce the poison");
        }
    });
    let seen = browser(&url, &["redrive", "se-group", &subject, "students-office"]);
    assert_eq!(seen["before"]["status"], "pending", "{seen}");
    assert_eq!(
        seen["after"]["status"], "redrive-failed, pending",
        "the poison failed again; the event behind it stays parked: {seen}"
    );

    // The Grafana dashboard names only metrics these services export.
    let pages: Vec<String> = seam_local::Home::from_env()
        .expect("SEAM_HOME")
        .announced()
        .into_iter()
        .filter_map(|(_, url)| {
            let out = Command::new("curl")
                .args(["-sf", &format!("{url}/metrics")])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .collect();
    assert!(pages.len() >= 5, "the demo's services answer /metrics");
    dashboard_metrics_are_exported(&pages);

    // Settle the poison in every consumer it reaches, as an operator would, so the demo's
    // later runs find no letter outstanding.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let letters = seam_ops::dlq_admin::list(&cluster.endpoints.client(), None).expect("list dead letters");
        let reached: std::collections::BTreeSet<&str> = letters
            .iter()
            .filter(|l| l.subject.as_deref() == Some(subject.as_str()))
            .map(|l| l.consumer.as_str())
            .collect();
        if reached.len() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the poison reached only {reached:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    settle_console_poison(&runtime, &cluster);
    for shot in ["01-in-sync", "02-parked", "03-confirm", "04-redrive-failed"] {
        assert!(artifacts().join(format!("{shot}.png")).is_file(), "screenshot {shot}");
    }
}
