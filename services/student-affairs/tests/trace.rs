//! Traces across services, read back from a real OTLP receiver: Jaeger v2 (built from the Go
//! module proxy by `scripts/jaeger`; `scripts/test` passes its path in `SEAM_TEST_JAEGER`). The
//! demo's services export with the standard `OTEL_EXPORTER_OTLP_ENDPOINT`, and one command's
//! trace must reach, through publish and apply, the services its events flow to.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use seam_testkit::TestCluster;
use serde_json::Value;

/// Jaeger's default ports: OTLP over HTTP, and the query API.
const OTLP: &str = "http://127.0.0.1:4318";
const QUERY: &str = "http://127.0.0.1:16686";

struct Receiver(Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_jaeger() -> Receiver {
    let path = std::env::var("SEAM_TEST_JAEGER").unwrap_or_else(|_| {
        panic!("this test needs Jaeger as its OTLP receiver: run `scripts/jaeger` and set SEAM_TEST_JAEGER to the path it prints (scripts/test does both)")
    });
    let dir = std::env::temp_dir().join(format!("seam-jaeger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("jaeger dir");
    let child = Command::new(&path)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("jaeger.log")).expect("jaeger log"))
        .spawn()
        .unwrap_or_else(|e| panic!("starting Jaeger at {path}: {e}"));
    let receiver = Receiver(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&format!("{QUERY}/api/services")).is_none() {
        assert!(
            Instant::now() < deadline,
            "Jaeger did not answer on {QUERY} within 60 s (is port 4318 or 16686 taken?); its log: {}",
            dir.join("jaeger.log").display()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    receiver
}

fn get(url: &str) -> Option<Value> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// One span as Jaeger returns it: its service, operation, and parent (within the trace).
#[derive(Debug)]
struct Span {
    id: String,
    service: String,
    operation: String,
    parent: Option<String>,
}

fn spans(trace: &Value) -> Vec<Span> {
    let services: BTreeMap<&str, &str> = trace["processes"]
        .as_object()
        .map(|p| {
            p.iter()
                .map(|(id, proc)| (id.as_str(), proc["serviceName"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    trace["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| Span {
            id: s["spanID"].as_str().unwrap_or("").to_string(),
            service: services
                .get(s["processID"].as_str().unwrap_or(""))
                .unwrap_or(&"")
                .to_string(),
            operation: s["operationName"].as_str().unwrap_or("").to_string(),
            parent: s["references"]
                .as_array()
                .and_then(|r| r.iter().find(|r| r["refType"] == "CHILD_OF"))
                .and_then(|r| r["spanID"].as_str())
                .map(str::to_string),
        })
        .collect()
}

#[test]
fn one_command_is_one_trace_through_publish_and_apply_in_the_services_its_events_reach() {
    let cluster = TestCluster::connect();
    let _jaeger = start_jaeger();
    let out = Command::new(env!("CARGO_BIN_EXE_student-affairs"))
        .args(["demo", "--students", "20", "--json"])
        .env("SEAM_BROKERS", cluster.bootstrap())
        .env("SEAM_REGISTRY", cluster.registry())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", OTLP)
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .output()
        .expect("run the demo");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("demo report: {e}; {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["synced"], true, "{report}");

    // A grade given in se-group is published, applied by the students office (the transcript)
    // and by the scholarship office: one trace across three processes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (trace, found) = loop {
        let listed = get(&format!(
            "{QUERY}/api/traces?service=se-group&operation=command%20Grade&limit=50"
        ));
        let hit = listed.as_ref().and_then(|l| l["data"].as_array()).and_then(|traces| {
            traces.iter().find_map(|t| {
                let spans = spans(t);
                let applied: BTreeSet<&str> = spans
                    .iter()
                    .filter(|s| s.operation.starts_with("apply "))
                    .map(|s| s.service.as_str())
                    .collect();
                (applied.contains("students-office") && applied.contains("scholarship-office"))
                    .then(|| (t.clone(), spans))
            })
        });
        if let Some(hit) = hit {
            break hit;
        }
        assert!(
            Instant::now() < deadline,
            "no trace of a Grade command reached both the students office and the scholarship office within 60 s; se-group's traces: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let by_id: BTreeMap<&str, &Span> = found.iter().map(|s| (s.id.as_str(), s)).collect();
    let roots: Vec<&Span> = found.iter().filter(|s| s.parent.is_none()).collect();
    assert_eq!(roots.len(), 1, "one root span: {found:#?}");
    assert_eq!(
        (roots[0].service.as_str(), roots[0].operation.as_str()),
        ("se-group", "command Grade"),
        "the trace starts at the command: {found:#?}"
    );
    for span in &found {
        if let Some(parent) = &span.parent {
            let parent = by_id
                .get(parent.as_str())
                .unwrap_or_else(|| panic!("{span:?} names a parent outside its trace {}", trace["traceID"]));
            if span.operation.starts_with("apply ") {
                assert!(
                    parent.operation.starts_with("publish ") && parent.service == "se-group",
                    "an apply continues its producer's publish: {span:?} under {parent:?}"
                );
                assert_ne!(span.service, "se-group", "applied in another service");
            }
        }
    }
}
