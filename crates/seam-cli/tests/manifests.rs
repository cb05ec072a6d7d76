//! The manifests for other platforms, validated: `seam deploy --emit k8s` (Kubernetes resources
//! against Kubernetes' own schemas with kubernetes-validate; Strimzi resources by their required
//! fields, and against what `seam deploy` itself creates) and `deploy/compose.yaml` (against
//! the Compose Specification schema Docker Compose embeds). The validators come from
//! `scripts/validators` (PyPI and the Go module proxy), which `scripts/test` runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use seam::topology::Topology;
use seam_ops::deploy::Desired;
use seam_rdkafka_admin::{Operation, ResourceKind};
use seam_testkit::unique_name;
use serde::Deserialize;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn validator(name: &str) -> PathBuf {
    let path = root().join("target/validators").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/validators (scripts/test does) to install the manifest validators",
        path.display()
    );
    path
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{path} missing or not a string in {v:#}"))
}

fn emit(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(["deploy", "-t", "deploy/student-affairs.yaml", "--emit", "k8s"])
        .arg(dir)
        .current_dir(root())
        .output()
        .expect("run seam deploy --emit");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_committed_k8s_manifests_are_what_seam_emits() {
    let dir = std::env::temp_dir().join(unique_name("emit"));
    emit(&dir);
    for file in ["kafka.yaml", "topics.yaml", "users.yaml", "services.yaml"] {
        let fresh = std::fs::read_to_string(dir.join(file)).expect("emitted");
        let committed =
            std::fs::read_to_string(root().join("deploy/k8s/student-affairs").join(file)).unwrap_or_default();
        assert!(
            fresh == committed,
            "deploy/k8s/student-affairs/{file} is stale: run `seam deploy -t deploy/student-affairs.yaml --emit k8s deploy/k8s/student-affairs`"
        );
    }
}

#[test]
fn kubernetes_resources_pass_kubernetes_validate_in_strict_mode() {
    let dir = root().join("deploy/k8s/student-affairs");
    let out = Command::new(validator("bin/kubernetes-validate"))
        .arg("--strict")
        .arg(dir.join("services.yaml"))
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let topology = Topology::load(&root().join("deploy/student-affairs.yaml")).expect("topology");
    for s in &topology.services {
        for kind in ["deployment", "service", "persistentvolumeclaim"] {
            let name = if kind == "persistentvolumeclaim" {
                format!("{}-store", s.name)
            } else {
                s.name.clone()
            };
            assert!(
                text.contains(&format!("passed for resource {kind}/{name} ")),
                "{kind}/{name}: {text}"
            );
        }
    }
}

#[test]
fn strimzi_resources_have_their_required_fields_and_match_what_deploy_creates() {
    let dir = root().join("deploy/k8s/student-affairs");
    let topology = Topology::load(&root().join("deploy/student-affairs.yaml")).expect("topology");
    let desired = Desired::of(&topology, 3).expect("desired");
    let cluster = documents(&dir.join("kafka.yaml"));
    let kafka = cluster.iter().find(|d| d["kind"] == "Kafka").expect("a Kafka resource");
    let name = str_at(kafka, "/metadata/name");
    assert!(dns_name(name));
    assert_eq!(kafka["metadata"]["annotations"]["strimzi.io/kraft"], "enabled");
    assert_eq!(kafka["metadata"]["annotations"]["strimzi.io/node-pools"], "enabled");
    let listener = &kafka["spec"]["kafka"]["listeners"][0];
    for field in ["/name", "/type"] {
        str_at(listener, field);
    }
    assert!(listener["port"].as_i64().is_some_and(|p| p >= 9092), "{listener}");
    assert_eq!(listener["tls"], true);
    assert_eq!(listener["authentication"]["type"], "scram-sha-512");
    assert_eq!(kafka["spec"]["kafka"]["authorization"]["type"], "simple");
    assert!(kafka["spec"]["entityOperator"]["topicOperator"].is_object());
    assert!(kafka["spec"]["entityOperator"]["userOperator"].is_object());
    let pool = cluster
        .iter()
        .find(|d| d["kind"] == "KafkaNodePool")
        .expect("a node pool");
    assert_eq!(pool["metadata"]["labels"]["strimzi.io/cluster"], name);
    assert!(pool["spec"]["replicas"].as_i64().is_some_and(|r| r >= 3));
    let roles: BTreeSet<&str> = pool["spec"]["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(roles, BTreeSet::from(["broker", "controller"]));
    str_at(pool, "/spec/storage/type");

    let mut topics = BTreeMap::new();
    for t in documents(&dir.join("topics.yaml")) {
        assert_eq!(t["apiVersion"], "kafka.strimzi.io/v1beta2");
        assert_eq!(t["kind"], "KafkaTopic");
        assert!(dns_name(str_at(&t, "/metadata/name")), "{t}");
        assert_eq!(t["metadata"]["labels"]["strimzi.io/cluster"], name);
        let config: BTreeMap<String, String> = t["spec"]["config"]
            .as_object()
            .expect("config")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect();
        topics.insert(
            str_at(&t, "/spec/topicName").to_string(),
            (t["spec"]["partitions"].as_i64(), t["spec"]["replicas"].as_i64(), config),
        );
    }
    let want: BTreeMap<String, _> = desired
        .topics
        .values()
        .map(|t| {
            (
                t.name.clone(),
                (
                    Some(i64::from(t.partitions)),
                    Some(i64::from(t.replication)),
                    t.configs.clone(),
                ),
            )
        })
        .collect();
    assert_eq!(topics, want, "KafkaTopics differ from what seam deploy creates");

    let mut acls = BTreeSet::new();
    let mut users = BTreeSet::new();
    for u in documents(&dir.join("users.yaml")) {
        assert_eq!(u["kind"], "KafkaUser");
        assert_eq!(u["metadata"]["labels"]["strimzi.io/cluster"], name);
        assert_eq!(u["spec"]["authentication"]["type"], "scram-sha-512");
        assert_eq!(u["spec"]["authorization"]["type"], "simple");
        let user = str_at(&u, "/metadata/name").to_string();
        assert!(dns_name(&user));
        for rule in u["spec"]["authorization"]["acls"].as_array().expect("acls") {
            assert_eq!(rule["resource"]["patternType"], "literal");
            assert_eq!(rule["host"], "*");
            let kind = match str_at(rule, "/resource/type") {
                "topic" => ResourceKind::Topic,
                "group" => ResourceKind::Group,
                "transactionalId" => ResourceKind::TransactionalId,
                other => panic!("resource type {other}"),
            };
            for op in rule["operations"].as_array().expect("operations") {
                let operation = match op.as_str() {
                    Some("Read") => Operation::Read,
                    Some("Write") => Operation::Write,
                    Some("Describe") => Operation::Describe,
                    other => panic!("operation {other:?}"),
                };
                acls.insert(seam_rdkafka_admin::Acl {
                    principal: format!("User:{user}"),
                    kind,
                    name: str_at(rule, "/resource/name").to_string(),
                    operation,
                });
            }
        }
        users.insert(user);
    }
    assert_eq!(
        acls, desired.acls,
        "KafkaUser ACLs differ from what seam deploy creates"
    );
    assert_eq!(users, desired.users);

    for d in documents(&dir.join("services.yaml"))
        .iter()
        .filter(|d| d["kind"] == "Deployment")
    {
        let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env");
        let secret = env
            .iter()
            .find(|e| e["name"] == "SEAM_KAFKA_SASL_PASSWORD")
            .and_then(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str())
            .expect("the password comes from the KafkaUser's secret");
        assert!(users.contains(secret), "{secret} is not a KafkaUser");
    }
}

#[test]
fn compose_file_passes_the_compose_specification_and_runs_every_service() {
    let compose = root().join("deploy/compose.yaml");
    let out = Command::new(validator("bin/check-jsonschema"))
        .arg("--schemafile")
        .arg(validator("compose-spec.json"))
        .arg(&compose)
        .output()
        .expect("run check-jsonschema");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = documents(&compose).remove(0);
    let services = doc["services"].as_object().expect("services");
    let field = |svc: &Value, name: &str| -> Value {
        svc.get(name)
            .or_else(|| svc.get("<<").and_then(|m| m.get(name)))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let topology = Topology::load(&root().join("deploy/student-affairs.yaml")).expect("topology");
    for s in &topology.services {
        let svc = services
            .get(&s.name)
            .unwrap_or_else(|| panic!("compose runs no {}", s.name));
        assert_eq!(
            field(svc, "command"),
            serde_json::json!(["student-affairs", "serve", s.name])
        );
        let env = field(svc, "environment");
        for var in [
            "SEAM_BROKERS",
            "SEAM_REGISTRY",
            "SEAM_HOST",
            "SEAM_STORE",
            "SEAM_TOPOLOGY",
        ] {
            assert!(env.get(var).is_some(), "{} lacks {var}", s.name);
        }
    }
    for (name, svc) in services {
        if let Some(deps) = field(svc, "depends_on").as_object() {
            for dep in deps.keys() {
                assert!(services.contains_key(dep), "{name} depends on unknown {dep}");
            }
        }
    }
    assert!(
        str_at(&services["deploy"], "/command/1") == "deploy",
        "the one-shot deploy runs `seam deploy`"
    );
}
