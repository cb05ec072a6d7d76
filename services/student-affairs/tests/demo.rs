//! The demo end to end against the real broker and registry: four service processes, the whole
//! scenario, every flow in sync; twice in a row. And the mistakes a user makes on the command line.

mod common;

use std::process::{Command, Output};

use common::{pids, Running};
use seam_testkit::{unique_name, TestCluster};
use serde_json::Value;

/// The demo's runs share its stores (`$SEAM_HOME/student-affairs`): one at a time.
static DEMO: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn student_affairs(cluster: Option<&TestCluster>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_student-affairs"));
    cmd.args(args);
    if let Some(c) = cluster {
        cmd.env("SEAM_BROKERS", c.bootstrap())
            .env("SEAM_REGISTRY", c.registry());
    }
    cmd.output().expect("run student-affairs")
}

#[test]
fn the_demo_syncs_every_flow_runs_twice_in_a_row_and_refuses_foreign_stores() {
    let _one_at_a_time = DEMO.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = TestCluster::connect();
    // The stores live under SEAM_HOME, next to the stack whose topics they publish to.
    let late_store = seam_local::Home::from_env()
        .expect("home")
        .root()
        .join("student-affairs/scholarship-office");
    let joins_now = !late_store.exists();
    for run in 1..=2 {
        let out = student_affairs(Some(&cluster), &["demo", "--students", "60", "--json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "run {run} failed: {stderr}");
        let report: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("run {run}: JSON report: {e}; {stderr}"));
        assert_eq!(report["synced"], true, "run {run}: {report}");
        let flows = report["flows"].as_array().expect("flows");
        assert_eq!(flows.len(), 11, "every flow of the topology is reported");
        for f in flows {
            assert_eq!(f["source_digest"], f["replica_digest"], "run {run}: {f}");
            assert!(
                f["source_rows"].as_u64().unwrap_or(0) > 0,
                "run {run}: an empty flow proves nothing: {f}"
            );
        }
        assert_eq!(report["scenario"]["double_hires_prevented"], 1, "run {run}");
        let services = report["services"].as_array().expect("services");
        assert_eq!(services.len(), 5, "the four founders and the scholarship office");
        // The first run on a fresh stack registers the scholarship office from a snapshot; later
        // runs find its store reading and resume from its positions.
        if run == 1 && joins_now {
            let late = services
                .iter()
                .find(|s| s["name"] == "scholarship-office")
                .expect("scholarship office");
            let from = &late["counts"]["bootstrapped_from"]["students-office"];
            assert!(
                from["seq"].as_u64().unwrap_or(0) > 0,
                "bootstrapped from a snapshot: {late}"
            );
            assert!(
                from["offsets"]["students-office.events"].is_object(),
                "with its offset map: {late}"
            );
        } else if run == 2 {
            let late = services
                .iter()
                .find(|s| s["name"] == "scholarship-office")
                .expect("scholarship office");
            assert_eq!(
                late["counts"]["bootstrapped_from"],
                serde_json::json!({}),
                "no second bootstrap: {late}"
            );
        }
    }

    // A store directory that is not the one these topics belong to is refused, with the remedy.
    let data = std::env::temp_dir().join(unique_name("sa-other-data"));
    let out = student_affairs(
        Some(&cluster),
        &["demo", "--students", "5", "--data", &data.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds events") && err.contains("--data"), "{err}");
}

#[test]
fn command_line_mistakes_get_clear_errors() {
    let out = student_affairs(None, &["demo", "--students", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--students"));
    let out = student_affairs(None, &["serve", "registrar"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("students-office"),
        "lists the services"
    );
    let out = student_affairs(None, &["serve", "se-group", "--topology", "/nonexistent/topology.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/topology.yaml") && !err.contains("panicked"),
        "{err}"
    );
}

/// `demo --chaos`: services killed with SIGKILL at seeded moments while the scenario runs (and
/// one broker of the three), restarted; every flow still ends in sync. Four kills here,
/// twenty with SEAM_EXTENDED=1.
#[test]
fn fault_the_demo_under_chaos_ends_with_every_flow_in_sync() {
    let _one_at_a_time = DEMO.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = TestCluster::connect();
    // It kills a broker of the local stack: it needs that stack, which it finds as the demo does.
    cluster.broker_faults(3);
    let out = student_affairs(None, &["demo", "--chaos", "--students", "60", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the chaos run failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON report: {e}; {stderr}"));
    assert_eq!(report["synced"], true, "{report}");
    for f in report["flows"].as_array().expect("flows") {
        assert_eq!(f["source_digest"], f["replica_digest"], "{f}");
    }
    let chaos = &report["chaos"];
    let kills = if std::env::var("SEAM_EXTENDED").is_ok_and(|v| v == "1") {
        20
    } else {
        4
    };
    assert_eq!(chaos["killed"].as_array().map(Vec::len), Some(kills), "{chaos}");
    assert!(
        chaos["broker_killed"].as_u64().is_some(),
        "a broker was killed: {chaos}"
    );
    assert!(
        stderr.contains(&format!("--chaos-seed {}", chaos["seed"])),
        "the seed is printed so a run can be repeated: {stderr}"
    );
}

/// The local stack `seam local up --secure` made, in a SEAM_HOME of its own; stopped and purged
/// when dropped.
struct SecureStack(seam_local::Home);

impl Drop for SecureStack {
    fn drop(&mut self) {
        let _ = seam_local::down(&self.0, true);
    }
}

/// The demo, unchanged, on the secure stack (SASL_SSL, SCRAM, the stack's own CA, ACLs): it
/// deploys the users its services need, and each service connects as its own principal.
#[test]
fn the_demo_runs_unchanged_on_the_secure_stack() {
    let _one_at_a_time = DEMO.lock().unwrap_or_else(|p| p.into_inner());
    let root = std::env::temp_dir().join(unique_name("seam-secure-demo"));
    std::fs::create_dir_all(&root).expect("home");
    // Reuse the test stack's downloads instead of fetching Kafka again.
    if let Ok(home) = seam_local::Home::from_env() {
        if home.dist().is_dir() {
            std::os::unix::fs::symlink(home.dist(), root.join("dist")).expect("link dist");
        }
    }
    let home = seam_local::Home::at(root.clone());
    // Below the ephemeral port range (32768+), where a client socket may hold a port.
    let mut shape = seam_local::Shape::new(1, 25092, 25081).expect("shape");
    shape.secure = true;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(seam_local::up(&home, shape, &mut |m| eprintln!("{m}")))
        .unwrap_or_else(|e| panic!("seam local up --secure: {e}"));
    let secure = home.secure_dir(&shape);
    let _stack = SecureStack(home);
    // Deploy the topology as the demo will, so the scholarship office's user exists before it
    // registers for the students office's events: it must not read them yet.
    let access = Access::new(&shape, &secure, &runtime);
    let office = "scholarship-office";
    assert_eq!(
        access.read(office, "students-office.events"),
        Denied,
        "before seam register"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_student-affairs"))
        .args(["demo", "--students", "30", "--json", "--keep-running"])
        // Every line the services can log, so the check below that no token is in a log means
        // something.
        .env("SEAM_LOG", "debug")
        .env("SEAM_HOME", &root)
        .env_remove("SEAM_BROKERS")
        .env_remove("SEAM_REGISTRY")
        .output()
        .expect("run the demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _services = Running(pids(&stderr));
    assert!(out.status.success(), "the demo failed on the secure stack: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON report: {e}; {stderr}"));
    assert_eq!(report["synced"], true, "{report}");
    let users = root.join("local");
    let credentials = walk(&users)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "properties"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect::<Vec<_>>();
    for service in [
        "students-office",
        "se-group",
        "theory-group",
        "ta-pool",
        "scholarship-office",
    ] {
        assert!(
            credentials.iter().any(|c| c == service),
            "deploy made no user for {service}: {credentials:?}"
        );
    }
    // The demo's `seam register scholarship-office --source students-office` granted exactly
    // that read: not a source it never registered, not another service's topic to write.
    assert_eq!(
        access.read(office, "students-office.events"),
        Allowed,
        "after seam register"
    );
    assert_eq!(access.read(office, "se-group.events"), Allowed, "a deployed source");
    assert_eq!(
        access.read(office, "ta-pool.events"),
        Denied,
        "never a source of {office}"
    );
    assert_eq!(access.write(office, "se-group.events"), Denied, "another's topic");
    assert_eq!(
        access.write(office, "scholarship-office.events"),
        Allowed,
        "its own topic"
    );

    // The services' HTTP APIs take changes only with the tokens deploy made, each from the
    // principal allowed to make it; and no token is in any log.
    let tokens = secure.join("users");
    let token = |user: &str| std::fs::read_to_string(tokens.join(format!("{user}.token"))).expect("token");
    let urls: std::collections::BTreeMap<String, String> =
        seam_local::Home::at(root.clone()).announced().into_iter().collect();
    runtime.block_on(http_is_authenticated(&urls, &token));
    let mut logs: Vec<(String, String)> = walk(&root.join("student-affairs"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap_or_default()))
        .collect();
    logs.push((
        "the demo's output".into(),
        format!("{stderr}{}", String::from_utf8_lossy(&out.stdout)),
    ));
    assert!(
        logs.len() > 5,
        "no service logs found: {:?}",
        logs.iter().map(|l| &l.0).collect::<Vec<_>>()
    );
    for user in [
        "admin",
        "students-office",
        "se-group",
        "theory-group",
        "ta-pool",
        "scholarship-office",
    ] {
        let secret = token(user);
        for (name, text) in &logs {
            assert!(!text.contains(secret.trim()), "{user}'s token is in {name}");
        }
    }
}

/// Probes the services' mutating endpoints with no token, a wrong one, the wrong principal's
/// and the right one's.
async fn http_is_authenticated(urls: &std::collections::BTreeMap<String, String>, token: &dyn Fn(&str) -> String) {
    let http = reqwest::Client::new();
    let send = |request: reqwest::RequestBuilder, who: Option<&str>| {
        let request = match who {
            Some(user) => request.bearer_auth(token(user).trim()),
            None => request,
        };
        async move {
            let r = request.send().await.expect("the service answers");
            let status = r.status().as_u16();
            let challenge = r.headers().get("www-authenticate").is_some();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, challenge, body)
        }
    };
    let (so, se, office) = (&urls["students-office"], &urls["se-group"], &urls["scholarship-office"]);
    let command =
        serde_json::json!({"command": "create_student", "student": "auth-probe", "name": "Ada", "program": "CS"});
    let (status, challenge, body) = send(http.post(format!("{so}/commands")).json(&command), None).await;
    println!("POST /commands without a token: {status} {body}");
    assert_eq!((status, challenge), (401, true), "{body}");
    assert_eq!(body["kind"], "unauthenticated", "{body}");
    let wrong = http
        .post(format!("{so}/commands"))
        .bearer_auth("not-a-token")
        .json(&command);
    assert_eq!(send(wrong, None).await.0, 401);
    let (status, _, body) = send(http.post(format!("{so}/commands")).json(&command), Some("admin")).await;
    assert_eq!(status, 200, "the operator may command: {body}");
    assert_eq!(
        send(http.get(format!("{so}/status")), None).await.0,
        200,
        "reads stay open"
    );

    // A grade the SE group published, put to the scholarship office again (it has applied it,
    // so nothing changes): only the SE group's principal may.
    let page: Value = http
        .get(format!("{se}/events?type=StudentGraded&limit=1"))
        .send()
        .await
        .expect("getEvents")
        .json()
        .await
        .expect("page");
    let put = serde_json::json!({ "events": [page["events"][0]] });
    assert_eq!(put["events"][0]["source"], "se-group", "{page}");
    assert_eq!(send(http.put(format!("{office}/events")).json(&put), None).await.0, 401);
    let (status, _, body) = send(http.put(format!("{office}/events")).json(&put), Some("ta-pool")).await;
    println!("PUT /events of se-group as ta-pool: {status} {body}");
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("User:ta-pool") && e.contains("se-group")),
        "{body}"
    );
    let (status, _, body) = send(http.put(format!("{office}/events")).json(&put), Some("admin")).await;
    assert_eq!(status, 403, "not even the operator speaks for a source: {body}");
    let (status, _, body) = send(http.put(format!("{office}/events")).json(&put), Some("se-group")).await;
    assert_eq!((status, body["rejected"].as_u64()), (200, Some(0)), "{body}");

    // The operator's requests.
    let replay = serde_json::json!({"dry_run": true});
    let (status, _, body) = send(http.post(format!("{office}/replay")).json(&replay), Some("se-group")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["kind"], "forbidden", "{body}");
    let (status, _, _) = send(
        http.post(format!("{office}/subscriptions/ta-pool")),
        Some("scholarship-office"),
    )
    .await;
    assert_eq!(status, 403, "a service may not register itself");
    let (status, _, body) = send(http.post(format!("{office}/replay")).json(&replay), Some("admin")).await;
    assert_eq!(status, 202, "the operator's replay starts: {body}");
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Allowed,
    Denied,
}
use Outcome::{Allowed, Denied};

/// Reads and writes on the secure stack as one service's principal, with the credentials
/// `seam deploy` wrote for it.
struct Access {
    runtime: tokio::runtime::Handle,
    bootstrap: String,
    users: std::path::PathBuf,
}

impl Access {
    /// Deploys the demo's topology as the operator, then acts as its users.
    fn new(shape: &seam_local::Shape, secure: &std::path::Path, runtime: &tokio::runtime::Runtime) -> Self {
        let admin = seam_local::KafkaProps::load(&secure.join("admin.properties")).expect("admin properties");
        let mut client = rdkafka::ClientConfig::new();
        client.set("bootstrap.servers", shape.bootstrap().join(","));
        for (k, v) in &admin.0 {
            client.set(k, v);
        }
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/student-affairs.yaml");
        let topology = seam::topology::Topology::load(&file).expect("topology");
        let registry = seam_ops::deploy::Registry::new(&shape.registry_url()).expect("registry");
        let options = seam_ops::deploy::Options {
            secrets: Some(secure.join("users")),
            ..Default::default()
        };
        let outcome = runtime
            .block_on(seam_ops::deploy::deploy(&topology, &client, &registry, &options))
            .expect("deploy");
        assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
        Self {
            runtime: runtime.handle().clone(),
            bootstrap: shape.bootstrap().join(","),
            users: secure.join("users"),
        }
    }

    fn config(&self, user: &str) -> rdkafka::ClientConfig {
        let props =
            seam_local::KafkaProps::load(&self.users.join(format!("{user}.properties"))).expect("user properties");
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &props.0 {
            c.set(k, v);
        }
        c
    }

    /// Whether `user` may fetch from partition 0 of `topic` (in its own group, committing
    /// nothing): the broker answers a fetch, or refuses the topic's metadata or the fetch.
    fn read(&self, user: &str, topic: &str) -> Outcome {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = self
            .config(user)
            .set("group.id", user)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create()
            .expect("consumer");
        // Without Describe the broker hides the topic's metadata (a fetch would wait for a
        // leader it is never told); with Describe but no Read the fetch itself is refused.
        let metadata = consumer
            .fetch_metadata(Some(topic), std::time::Duration::from_secs(15))
            .expect("metadata");
        let hidden = metadata.topics().iter().any(|t| {
            t.error().map(rdkafka::types::RDKafkaErrorCode::from)
                == Some(rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed)
        });
        if hidden {
            return Denied;
        }
        let mut assignment = rdkafka::TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
            .expect("partition");
        consumer.assign(&assignment).expect("assign");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            match consumer.poll(std::time::Duration::from_millis(500)) {
                Some(Ok(_)) => return Allowed,
                Some(Err(e)) if is_denied(&e) => return Denied,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Allowed,
                _ => {}
            }
        }
        panic!("{user} reading {topic}: neither a record nor a refusal in 30 s");
    }

    /// Whether `user` may produce one record to `topic` (the broker's answer to the send).
    fn write(&self, user: &str, topic: &str) -> Outcome {
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let producer: FutureProducer = self
            .config(user)
            .set("enable.idempotence", "false")
            .set("message.timeout.ms", "20000")
            .create()
            .expect("producer");
        let record: FutureRecord<'_, str, str> = FutureRecord::to(topic).key("seam-access-probe").payload("");
        let sent = producer.send_result(record).map_err(|(e, _)| e).expect("queue");
        match self.runtime.block_on(sent).expect("delivery report") {
            Ok(_) => Allowed,
            Err((e, _)) if is_denied(&e) => Denied,
            Err((e, _)) => panic!("{user} writing {topic}: {e}"),
        }
    }
}

fn is_denied(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        e.rdkafka_error_code(),
        Some(Code::TopicAuthorizationFailed | Code::GroupAuthorizationFailed)
    )
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Stores made against a stack that was purged since, with the topics deployed again by
/// something else: they have read further than the topics now reach, so the demo must start
/// them over instead of waiting out its timeout for a source that never catches up. (Found
/// when `scripts/test` ran twice: the second run's stack was new, the test home's stores old.)
#[test]
fn a_store_that_read_past_its_topics_is_found() {
    let cluster = TestCluster::connect();
    let topology = seam::topology::Topology::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/student-affairs.yaml"
    )))
    .expect("topology");
    let data = std::env::temp_dir().join(unique_name("sa-stale-data"));
    // se-group's store, having read students-office.events partition 0 up to `next`.
    let read_up_to = |next: i64| {
        let store = seam::store::open(&data.join("se-group")).expect("store");
        let mut set = store.write_set().expect("write set");
        set.set_position("students-office.events", 0, next);
        set.keep();
        store.commit(&mut set, true).expect("commit");
        // The check opens the store itself.
        drop(store);
        student_affairs::demo::store_past_its_topics(&topology, &cluster.client_config(), &data).expect("check")
    };
    assert_eq!(read_up_to(0), None, "a store at offset 0 is behind every end");
    let found = read_up_to(1_000_000_000).expect("found");
    assert!(
        found.contains("se-group") && found.contains("students-office.events") && found.contains("1000000000"),
        "{found}"
    );
    let _ = std::fs::remove_dir_all(&data);
}
