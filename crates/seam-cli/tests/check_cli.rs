//! The schema coverage gate against the real registry: `seam check` and `seam deploy` resolve a
//! translator's reader schema (its file under the topology's `translators:`) against every
//! registered version of the record it reads and against the version about to be registered.
//! A producer adding an optional field passes; a producer dropping a field the translator needs
//! is refused before anything is registered; a translator release needing a field that an old,
//! still registered version lacks is refused naming that version.

use std::path::PathBuf;
use std::process::{Command, Output};

use seam_testkit::{unique_name, TestCluster};
use serde_json::Value;

const V1: &str = r#"{"type":"record","name":"Thing","namespace":"checktest","fields":[{"name":"id","type":"string"},{"name":"size","type":"int"}]}"#;
const V2_OPTIONAL: &str = r#"{"type":"record","name":"Thing","namespace":"checktest","fields":[{"name":"id","type":"string"},{"name":"size","type":"int"},{"name":"colour","type":"string","default":""}]}"#;
const V3_DROPS_SIZE: &str = r#"{"type":"record","name":"Thing","namespace":"checktest","fields":[{"name":"id","type":"string"},{"name":"colour","type":"string","default":""}]}"#;
const READER: &str =
    r#"{"type":"record","name":"Thing","namespace":"checktest","fields":[{"name":"size","type":"int"}]}"#;
const READER_NEEDS_COLOUR: &str = r#"{"type":"record","name":"Thing","namespace":"checktest","fields":[{"name":"size","type":"int"},{"name":"colour","type":"string"}]}"#;

/// A producer `a`, a consumer `b` reading it through `a-to-b`, and that translator's reader.
struct Workspace {
    dir: PathBuf,
    name: String,
}

impl Workspace {
    fn new() -> Self {
        let name = unique_name("chk");
        let dir = std::env::temp_dir().join(&name);
        let ws = Self { dir, name };
        std::fs::create_dir_all(ws.dir.join("a")).expect("dir");
        std::fs::create_dir_all(ws.dir.join("b")).expect("dir");
        std::fs::create_dir_all(ws.reader_dir()).expect("dir");
        std::fs::write(ws.dir.join("b/Other.avsc"), V1.replace("Thing", "Other")).expect("schema");
        ws.producer(V1);
        ws.reader(READER);
        let text = format!(
            "apiVersion: seam/v1\nname: {n}\ntranslators: translators\nservices:\n  - name: {n}-a\n    partitions: 1\n    schemas: a\n  - name: {n}-b\n    partitions: 1\n    schemas: b\nconsumers:\n  - service: {n}-b\n    sources:\n      - service: {n}-a\n        translator: {n}-a-to-{n}-b\n",
            n = ws.name
        );
        std::fs::write(ws.topology(), text).expect("topology");
        ws
    }

    fn topology(&self) -> PathBuf {
        self.dir.join("topology.yaml")
    }

    fn reader_dir(&self) -> PathBuf {
        self.dir
            .join("translators")
            .join(format!("{n}-a-to-{n}-b", n = self.name))
            .join("reader")
    }

    fn translator(&self) -> String {
        format!("{n}-a-to-{n}-b", n = self.name)
    }

    fn subject(&self) -> String {
        format!("{}-a.events-checktest.Thing", self.name)
    }

    fn producer(&self, text: &str) {
        std::fs::write(self.dir.join("a/Thing.avsc"), text).expect("schema");
    }

    fn reader(&self, text: &str) {
        std::fs::write(self.reader_dir().join("Thing.avsc"), text).expect("reader");
    }

    fn seam(&self, args: &[&str]) -> (Output, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_seam"))
            .args(args)
            .arg("-t")
            .arg(self.topology())
            .arg("--json")
            .output()
            .expect("run seam");
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

fn checked_versions(report: &Value, translator: &str) -> Vec<String> {
    report["checked"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["translator"] == translator))
        .map(|c| serde_json::from_value(c["versions"].clone()).expect("versions"))
        .unwrap_or_else(|| panic!("{translator} not checked: {report:#}"))
}

#[tokio::test]
async fn the_gate_passes_an_optional_field_and_refuses_a_dropped_one_before_registering() {
    let cluster = TestCluster::connect();
    let ws = Workspace::new();
    let subject = ws.subject();

    let (out, report) = ws.seam(&["check"]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(checked_versions(&report, &ws.translator()), vec!["new"]);
    let (out, plan) = ws.seam(&["deploy"]);
    assert!(out.status.success() && plan["applied"] == true, "{plan:#}");
    assert_eq!(cluster.subject_versions(&subject).await, vec![1]);

    // The producer adds an optional field: the old reader reads both versions.
    ws.producer(V2_OPTIONAL);
    let (out, report) = ws.seam(&["check"]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(checked_versions(&report, &ws.translator()), vec!["1", "new"]);
    let (out, plan) = ws.seam(&["deploy"]);
    assert!(out.status.success() && plan["applied"] == true, "{plan:#}");
    assert_eq!(cluster.subject_versions(&subject).await, vec![1, 2]);

    // The producer drops `size`, which the translator reads without a default. The registry's
    // own rule (BACKWARD_TRANSITIVE) allows dropping a field; the gate does not.
    ws.producer(V3_DROPS_SIZE);
    let (out, report) = ws.seam(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let refused = report["refused"].as_array().expect("refused");
    assert_eq!(refused.len(), 1, "{report:#}");
    assert_eq!(refused[0]["translator"], ws.translator().as_str());
    assert_eq!(refused[0]["subject"], subject.as_str());
    assert_eq!(refused[0]["version"], "new");
    assert!(
        refused[0]["reason"].as_str().is_some_and(|r| r.contains("size")),
        "{report:#}"
    );
    let (out, plan) = ws.seam(&["deploy"]);
    assert_eq!(out.status.code(), Some(1), "{plan:#}");
    assert_eq!(plan["applied"], false);
    let problems = plan["problems"].to_string();
    for part in [ws.translator().as_str(), subject.as_str(), "size", "would register"] {
        assert!(problems.contains(part), "{part} not named: {plan:#}");
    }
    assert_eq!(
        cluster.subject_versions(&subject).await,
        vec![1, 2],
        "a refused deploy registered a version"
    );

    // A translator release that needs `colour` (no default) cannot read version 1, which is
    // still registered and so possibly still on the topic.
    ws.producer(V2_OPTIONAL);
    ws.reader(READER_NEEDS_COLOUR);
    let (out, report) = ws.seam(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let refused = report["refused"].as_array().expect("refused");
    let named: Vec<&str> = refused.iter().filter_map(|r| r["version"].as_str()).collect();
    assert_eq!(named, vec!["1"], "{report:#}");
    assert!(
        refused[0]["reason"].as_str().is_some_and(|r| r.contains("colour")),
        "{report:#}"
    );

    // Human output: a table, then the verdict naming the field.
    let out = Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(["check", "-t"])
        .arg(ws.topology())
        .output()
        .expect("run seam check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("TRANSLATOR") && text.contains("refused (1 problem(s))") && text.contains("registered version 1"),
        "{text}"
    );
}

#[test]
fn check_without_a_registry_or_with_a_bad_one_says_what_to_do() {
    let ws = Workspace::new();
    let out = Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(["check", "--registry", "localhost:1", "-t"])
        .arg(ws.topology())
        .output()
        .expect("run seam check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--registry localhost:1") && err.contains("http"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(["check", "--registry", "http://127.0.0.1:9", "-t"])
        .arg(ws.topology())
        .output()
        .expect("run seam check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("does not answer"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
