//! `seam deploy` against the real cluster and registry, as an operator uses it: first deploy,
//! a redeploy that changes nothing, more partitions and another retention, a compatible schema
//! version, an incompatible one that aborts everything, and deletions that need their flag.
//! Every claim is checked on the cluster and the registry, not in seam's output alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use seam_testkit::{unique_name, wait_until, TestCluster};
use serde_json::Value;

const SCHEMA_V1: &str =
    r#"{"type":"record","name":"Thing","namespace":"deploytest","fields":[{"name":"id","type":"string"}]}"#;
const SCHEMA_V2: &str = r#"{"type":"record","name":"Thing","namespace":"deploytest","fields":[{"name":"id","type":"string"},{"name":"size","type":"int","default":0}]}"#;
const SCHEMA_BAD: &str = r#"{"type":"record","name":"Thing","namespace":"deploytest","fields":[{"name":"id","type":"string"},{"name":"size","type":"int","default":0},{"name":"colour","type":"string"}]}"#;

struct Workspace {
    dir: PathBuf,
    name: String,
}

impl Workspace {
    fn new() -> Self {
        let name = unique_name("dep");
        let dir = std::env::temp_dir().join(&name);
        for svc in ["a", "b"] {
            std::fs::create_dir_all(dir.join(svc)).expect("dir");
            std::fs::write(dir.join(svc).join("Thing.avsc"), SCHEMA_V1).expect("schema");
        }
        Self { dir, name }
    }

    fn a(&self) -> String {
        format!("{}-a", self.name)
    }

    fn b(&self) -> String {
        format!("{}-b", self.name)
    }

    /// Writes the topology: `a` with these partitions and retention, and `b` unless dropped.
    fn topology(&self, partitions: i32, retention: &str, with_b: bool) -> PathBuf {
        let mut text = format!(
            "apiVersion: seam/v1\nname: {n}\nservices:\n  - name: {a}\n    partitions: {partitions}\n    retention: {retention}\n    schemas: a\n",
            n = self.name,
            a = self.a()
        );
        if with_b {
            text.push_str(&format!("  - name: {}\n    partitions: 1\n    schemas: b\n", self.b()));
            // A consumer deployed before its first `seam register`.
            text.push_str(&format!("consumers:\n  - service: {}\n    sources: []\n", self.b()));
        }
        let path = self.dir.join("topology.yaml");
        std::fs::write(&path, text).expect("topology");
        path
    }

    fn schema(&self, text: &str) {
        std::fs::write(self.dir.join("a").join("Thing.avsc"), text).expect("schema");
    }

    fn deploy(&self, topology: &Path, extra: &[&str]) -> (Output, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_seam"))
            .arg("deploy")
            .arg("-t")
            .arg(topology)
            .arg("--json")
            .args(extra)
            .output()
            .expect("run seam deploy");
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, json)
    }
}

fn change<'a>(plan: &'a Value, resource: &str) -> &'a Value {
    plan["changes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["resource"] == resource))
        .unwrap_or_else(|| panic!("{resource} not in {plan:#}"))
}

fn actions(plan: &Value) -> Vec<(String, String)> {
    plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["action"] != "no-op")
        .map(|c| {
            (
                c["resource"].as_str().unwrap_or("").to_string(),
                c["action"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn partitions(cluster: &TestCluster, topic: &str) -> Option<usize> {
    let c: BaseConsumer = cluster.client_config().create().expect("consumer");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
}

async fn config(cluster: &TestCluster, topic: &str, key: &str) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> = cluster.client_config().create().expect("admin");
    let r = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("describe");
    r.into_iter().next()?.ok()?.get(key)?.value.clone()
}

#[tokio::test]
async fn deploy_is_exact_idempotent_and_refuses_what_it_must() {
    let cluster = TestCluster::connect();
    let ws = Workspace::new();
    let (topic_a, topic_b) = (format!("{}.events", ws.a()), format!("{}.events", ws.b()));
    let subject = format!("{topic_a}-deploytest.Thing");

    let t = ws.topology(2, "unbounded", true);
    let (out, plan) = ws.deploy(&t, &["--dry-run"]);
    assert!(out.status.success());
    assert_eq!(plan["applied"], false);
    assert_eq!(change(&plan, &format!("topic/{topic_a}"))["action"], "create");
    assert_eq!(partitions(&cluster, &topic_a), None, "a dry run created the topic");

    let (out, plan) = ws.deploy(&t, &[]);
    assert!(out.status.success(), "{plan:#}");
    assert_eq!(plan["applied"], true);
    assert_eq!(partitions(&cluster, &topic_a), Some(2));
    assert_eq!(
        partitions(&cluster, &format!("{}.dlq", ws.b())),
        Some(1),
        "a consumer without sources yet gets its dead-letter topic"
    );
    assert_eq!(config(&cluster, &topic_a, "retention.ms").await.as_deref(), Some("-1"));
    assert_eq!(
        config(&cluster, &topic_a, "min.insync.replicas").await.as_deref(),
        Some(if cluster.replication() >= 3 { "2" } else { "1" })
    );
    assert_eq!(cluster.subject_versions(&subject).await, vec![1]);

    let (out, plan) = ws.deploy(&t, &[]);
    assert!(out.status.success());
    assert_eq!(actions(&plan), vec![], "a redeploy must change nothing: {plan:#}");
    assert_eq!(plan["applied"], false);

    // More partitions and a finite retention: one alter with old → new and a warning.
    let t = ws.topology(4, "7d", true);
    let (out, plan) = ws.deploy(&t, &[]);
    assert!(out.status.success(), "{plan:#}");
    let c = change(&plan, &format!("topic/{topic_a}"));
    assert_eq!(c["action"], "alter");
    assert_eq!(c["diff"]["partitions"], serde_json::json!({"old": 2, "new": 4}));
    assert_eq!(
        c["diff"]["retention.ms"],
        serde_json::json!({"old": "-1", "new": "604800000"})
    );
    assert!(c["warning"].as_str().is_some_and(|w| w.contains("partitions")), "{c:#}");
    assert_eq!(partitions(&cluster, &topic_a), Some(4));
    assert_eq!(
        config(&cluster, &topic_a, "retention.ms").await.as_deref(),
        Some("604800000")
    );

    // A compatible new version (a field with a default) is registered as version 2.
    ws.schema(SCHEMA_V2);
    let (out, plan) = ws.deploy(&t, &[]);
    assert!(out.status.success(), "{plan:#}");
    assert_eq!(actions(&plan), vec![(format!("schema/{subject}"), "alter".to_string())]);
    assert_eq!(cluster.subject_versions(&subject).await, vec![1, 2]);

    // An incompatible one (a field without a default) aborts the whole deploy, including the
    // partition change in the same file.
    ws.schema(SCHEMA_BAD);
    let t = ws.topology(6, "7d", true);
    let (out, plan) = ws.deploy(&t, &[]);
    assert_eq!(out.status.code(), Some(1), "{plan:#}");
    assert_eq!(plan["applied"], false);
    let problems = plan["problems"].to_string();
    assert!(
        problems.contains(&subject) && problems.contains("compatible"),
        "{problems}"
    );
    assert!(
        problems.contains("colour") && problems.contains("default") && problems.contains("BACKWARD"),
        "the refusal names the field and the rule: {problems}"
    );
    assert_eq!(
        partitions(&cluster, &topic_a),
        Some(4),
        "an aborted deploy added partitions"
    );
    assert_eq!(cluster.subject_versions(&subject).await, vec![1, 2]);
    ws.schema(SCHEMA_V2);

    // Dropping b from the topology proposes deleting its topic, and refuses without the flag.
    let t = ws.topology(4, "7d", false);
    let (out, plan) = ws.deploy(&t, &[]);
    assert_eq!(out.status.code(), Some(1), "{plan:#}");
    let problems = plan["problems"].to_string();
    assert!(
        problems.contains(&format!("--allow-delete topic/{topic_b}")),
        "{problems}"
    );
    assert_eq!(partitions(&cluster, &topic_b), Some(1), "deleted without its flag");
    let (out, plan) = ws.deploy(&t, &["--allow-delete", "topic/nonsense.events"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        plan["problems"].to_string().contains("nothing by that name"),
        "{plan:#}"
    );

    let flag = format!("topic/{topic_b}");
    let dlq_flag = format!("topic/{}.dlq", ws.b());
    let (out, plan) = ws.deploy(&t, &["--allow-delete", &flag, "--allow-delete", &dlq_flag]);
    assert!(out.status.success(), "{plan:#}");
    assert_eq!(change(&plan, &flag)["action"], "delete");
    wait_until(Duration::from_secs(30), "the topic is deleted", || async {
        match partitions(&cluster, &topic_b) {
            None => Ok(()),
            Some(n) => Err(format!("{topic_b} still has {n} partitions")),
        }
    })
    .await
    .expect("deleted");
    let (_, plan) = ws.deploy(&t, &[]);
    assert_eq!(actions(&plan), vec![], "{plan:#}");
}

#[test]
fn deploy_names_a_bad_topology_and_a_missing_file() {
    let dir = std::env::temp_dir().join(unique_name("dep-bad"));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("t.yaml");
    std::fs::write(
        &bad,
        "apiVersion: seam/v1\nname: x\nservices:\n  - name: A\n    partitions: 1\n    schemas: s\n",
    )
    .expect("write");
    for (file, expect) in [
        (bad.as_path(), "services[0].name"),
        (Path::new("/nonexistent.yaml"), "/nonexistent.yaml"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_seam"))
            .args(["deploy", "-t"])
            .arg(file)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(expect), "{err}");
    }
}
