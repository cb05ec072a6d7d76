//! `seam local` as a user meets it: the happy path in a private SEAM_HOME, and every
//! bad situation answered with a message that names the cause and the fix.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use seam_testkit::{sql, unique_name, TestCluster};

/// A private SEAM_HOME that reuses the downloads of the user's home when there are any.
struct TempHome(PathBuf);

impl TempHome {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_name("seam-home"));
        std::fs::create_dir_all(&dir).expect("temp home");
        if let Ok(home) = seam_local::Home::from_env() {
            let dist = home.dist();
            if dist.join(format!("kafka-{}", seam_local::KAFKA_VERSION)).is_dir() {
                std::os::unix::fs::symlink(&dist, dir.join("dist")).expect("link downloads");
            }
        }
        Self(dir)
    }

    fn seam(&self, args: &[&str]) -> Output {
        seam_in(&self.0, args, &[])
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        // Whatever happened, leave no JVM of this home behind.
        let _ = seam_in(&self.0, &["local", "down", "--purge"], &[]);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn seam_in(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seam"));
    cmd.args(args)
        .env("SEAM_HOME", home)
        .env_remove("SEAM_BROKERS")
        .env_remove("SEAM_REGISTRY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run seam")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A port p with p+1 also free (each component binds a pair).
fn free_port_pair() -> u16 {
    loop {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let p = l.local_addr().expect("addr").port();
        if p < 65000 && TcpListener::bind((Ipv4Addr::LOCALHOST, p + 1)).is_ok() {
            return p;
        }
    }
}

/// Every process of the stack of `home`: its JVMs and its PostgreSQL.
fn processes_of(home: &Path) -> Vec<u32> {
    seam_local::running_processes(&seam_local::Home::at(home.to_path_buf()))
}

#[test]
fn up_refuses_a_taken_port_naming_the_port_and_its_process() {
    let home = TempHome::new();
    let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = holder.local_addr().expect("addr").port();
    let registry_port = free_port_pair().to_string();
    let out = home.seam(&[
        "local",
        "up",
        "--kafka-port",
        &port.to_string(),
        "--registry-port",
        &registry_port,
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "must fail: {stderr}");
    let expected = format!(
        "port {port} on 127.0.0.1 (Kafka broker 1 client listener) is already in use by pid {}",
        std::process::id()
    );
    assert!(
        stderr.contains(&expected),
        "stderr should contain {expected:?}, was: {stderr}"
    );
    assert!(
        stderr.contains("--kafka-port"),
        "says how to pick other ports: {stderr}"
    );
    assert!(processes_of(&home.0).is_empty(), "nothing was started");
    assert!(!home.seam(&["local", "status"]).status.success(), "no stack recorded");
}

#[test]
fn up_without_a_suitable_java_says_which_java_is_needed() {
    let home = TempHome::new();
    let ports = (free_port_pair().to_string(), free_port_pair().to_string());
    let args = [
        "local",
        "up",
        "--kafka-port",
        ports.0.as_str(),
        "--registry-port",
        ports.1.as_str(),
    ];
    let out = seam_in(&home.0, &args, &[("SEAM_KAFKA_JAVA_HOME", "/nonexistent/jdk")]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("no Java 17+ found for Kafka"), "{stderr}");
    assert!(
        stderr.contains("SEAM_KAFKA_JAVA_HOME has no runnable bin/java"),
        "{stderr}"
    );

    // A Java that exists but is too old for the registry.
    let java17 = jdk_home_of_major(17);
    let out = seam_in(
        &home.0,
        &args,
        &[("SEAM_REGISTRY_JAVA_HOME", java17.to_str().expect("utf8"))],
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("no Java 21+ found for the schema registry"), "{stderr}");
    assert!(stderr.contains("points at Java 17"), "{stderr}");
    assert!(processes_of(&home.0).is_empty(), "nothing was started");
}

/// A JDK home with the given feature release, from /usr/lib/jvm.
fn jdk_home_of_major(major: u32) -> PathBuf {
    std::fs::read_dir("/usr/lib/jvm")
        .expect("/usr/lib/jvm")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            std::fs::read_to_string(p.join("release"))
                .map(|r| r.contains(&format!("JAVA_VERSION=\"{major}")))
                .unwrap_or(false)
                && p.join("bin/java").is_file()
        })
        .unwrap_or_else(|| panic!("this test needs a Java {major} JDK under /usr/lib/jvm"))
}

#[test]
fn a_first_up_without_maven_says_to_install_it() {
    let dir = std::env::temp_dir().join(unique_name("seam-nomaven"));
    let java17 = jdk_home_of_major(17);
    let ports = (free_port_pair().to_string(), free_port_pair().to_string());
    let out = seam_in(
        &dir,
        &["local", "up", "--kafka-port", &ports.0, "--registry-port", &ports.1],
        &[
            ("PATH", "/nonexistent"),
            ("SEAM_KAFKA_JAVA_HOME", java17.to_str().expect("utf8")),
            (
                "SEAM_REGISTRY_JAVA_HOME",
                jdk_home_of_major_at_least(21).to_str().expect("utf8"),
            ),
        ],
    );
    let (_, stderr) = text(&out);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    assert!(stderr.contains("Maven (`mvn`) is needed once"), "{stderr}");
    assert!(stderr.contains("apt-get install maven"), "{stderr}");
}

fn jdk_home_of_major_at_least(min: u32) -> PathBuf {
    (min..40)
        .find_map(|m| std::panic::catch_unwind(|| jdk_home_of_major(m)).ok())
        .unwrap_or_else(|| panic!("this test needs a Java {min}+ JDK under /usr/lib/jvm"))
}

#[test]
fn bad_arguments_are_refused_with_the_fix() {
    let home = TempHome::new();
    let out = home.seam(&["local", "up", "--brokers", "0"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("--brokers 0 is not supported: use 1"),
        "{}",
        text(&out).1
    );

    let out = home.seam(&["local", "up", "--brokers", "3", "--kafka-port", "65400"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("ports out of range"), "{}", text(&out).1);

    let out = home.seam(&["local", "up", "--kafka-port", "nine"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("invalid value 'nine' for '--kafka-port"),
        "{}",
        text(&out).1
    );

    let out = seam_in(&home.0, &["local", "status"], &[("SEAM_BROKERS", "kafka:port")]);
    assert!(!out.status.success());
    assert!(
        text(&out)
            .1
            .contains("SEAM_BROKERS=\"kafka:port\" is not a comma-separated list"),
        "{}",
        text(&out).1
    );

    let out = home.seam(&["local", "up", "--postgres-port", "5433"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("--postgres"), "{}", text(&out).1);

    let out = home.seam(&["local", "up", "--postgres", "--postgres-port", "9092"]);
    assert!(!out.status.success());
    assert!(
        text(&out)
            .1
            .contains("--postgres-port 9092 is taken by Kafka broker 1 client listener"),
        "{}",
        text(&out).1
    );

    let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let held = holder.local_addr().expect("addr").port().to_string();
    let (kp, rp) = (free_port_pair().to_string(), free_port_pair().to_string());
    let out = home.seam(&[
        "local",
        "up",
        "--kafka-port",
        &kp,
        "--registry-port",
        &rp,
        "--postgres",
        "--postgres-port",
        &held,
    ]);
    assert!(!out.status.success());
    let stderr = text(&out).1;
    assert!(
        stderr.contains(&format!("port {held} on 127.0.0.1 (PostgreSQL) is already in use")),
        "{stderr}"
    );
    assert!(stderr.contains("--postgres-port N"), "{stderr}");
    assert!(processes_of(&home.0).is_empty(), "nothing was started");

    let out = seam_in(
        &home.0,
        &["local", "status"],
        &[("SEAM_BROKERS", "k:9092"), ("SEAM_POSTGRES", "db:5432")],
    );
    assert!(!out.status.success());
    assert!(
        text(&out)
            .1
            .contains("SEAM_POSTGRES=\"db:5432\" is not a PostgreSQL URL"),
        "{}",
        text(&out).1
    );

    let out = home.seam(&["local", "down"]);
    assert!(out.status.success(), "down with nothing running is fine");
    assert!(text(&out).0.contains("no local stack was running"));
}

#[tokio::test]
async fn up_down_up_keeps_registry_schemas_and_purge_removes_everything() {
    let home = TempHome::new();
    let (kafka_port, registry_port) = (free_port_pair(), free_port_pair());
    let (kp, rp) = (kafka_port.to_string(), registry_port.to_string());
    let up = [
        "local",
        "up",
        "--kafka-port",
        kp.as_str(),
        "--registry-port",
        rp.as_str(),
    ];

    let out = home.seam(&up);
    assert!(out.status.success(), "first up: {:?}", text(&out));
    let status = status_json(&home);
    assert_eq!(status["running"], true);
    assert_eq!(
        status["brokers"],
        serde_json::json!([format!("127.0.0.1:{kafka_port}")])
    );
    let registry = format!("http://127.0.0.1:{registry_port}/apis/ccompat/v7");
    assert_eq!(status["registry"], registry.as_str());
    assert_eq!(status["components"].as_array().map(Vec::len), Some(2));

    let again = home.seam(&up);
    assert!(again.status.success());
    assert!(text(&again).0.contains("already running"), "{:?}", text(&again));

    // PostgreSQL joins the running stack, and nothing else is started.
    let postgres_port = free_port_pair().to_string();
    let with_postgres: Vec<&str> = up
        .iter()
        .copied()
        .chain(["--postgres", "--postgres-port", postgres_port.as_str()])
        .collect();
    let out = home.seam(&with_postgres);
    assert!(out.status.success(), "up --postgres: {:?}", text(&out));
    assert!(text(&out).1.contains("starting PostgreSQL"), "{:?}", text(&out));
    assert!(!text(&out).1.contains("Kafka broker"), "{:?}", text(&out));
    let status = status_json(&home);
    assert_eq!(status["running"], true);
    assert_eq!(status["components"].as_array().map(Vec::len), Some(3));
    assert_eq!(status["components"][2]["name"], "postgres");
    let postgres = status["postgres"].as_str().expect("postgres url").to_string();
    assert_eq!(postgres, format!("postgres://seam@127.0.0.1:{postgres_port}/seam"));
    let db = sql(&postgres).await;
    let wal_level: String = db.query_one("SHOW wal_level", &[]).await.expect("show").get(0);
    assert_eq!(wal_level, "logical", "CDC sources need logical decoding");
    db.batch_execute("CREATE TABLE kept (n bigint); INSERT INTO kept VALUES (1)")
        .await
        .expect("create a table");
    drop(db);

    // A crashed broker and a crashed PostgreSQL: status says so, and `up` (without --postgres:
    // the stack remembers it) starts only what is down.
    let registry_pid = status["components"][1]["pid"].clone();
    let local_home = seam_local::Home::at(home.0.clone());
    seam_local::kill_broker(&local_home, 1).expect("kill broker 1");
    seam_local::kill_postgres(&local_home).expect("kill PostgreSQL");
    let crashed = home.seam(&["local", "status"]);
    assert!(!crashed.status.success(), "status fails while a component is down");
    assert!(text(&crashed).0.contains("stopped"), "{:?}", text(&crashed));
    let restarted = home.seam(&up);
    assert!(restarted.status.success(), "{:?}", text(&restarted));
    assert!(
        text(&restarted).1.contains("starting 1 Kafka broker(s)"),
        "{:?}",
        text(&restarted)
    );
    assert!(
        text(&restarted).1.contains("starting PostgreSQL"),
        "{:?}",
        text(&restarted)
    );
    let status = status_json(&home);
    assert_eq!(status["running"], true);
    assert_eq!(
        status["components"][1]["pid"], registry_pid,
        "the registry was left alone"
    );
    let n: i64 = sql(&postgres)
        .await
        .query_one("SELECT n FROM kept", &[])
        .await
        .expect("a committed row survives a crash")
        .get(0);
    assert_eq!(n, 1);

    let subject = unique_name("lifecycle-value");
    let schema =
        r#"{"schema":"{\"type\":\"record\",\"name\":\"Kept\",\"fields\":[{\"name\":\"n\",\"type\":\"long\"}]}"}"#;
    let http = reqwest::Client::new();
    http.post(format!("{registry}/subjects/{subject}/versions"))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .body(schema)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("register a schema");

    let out = home.seam(&["local", "down"]);
    assert!(out.status.success(), "down: {:?}", text(&out));
    assert!(
        processes_of(&home.0).is_empty(),
        "down leaves no JVM of this home running"
    );

    let out = home.seam(&with_postgres);
    assert!(out.status.success(), "second up: {:?}", text(&out));
    let count: i64 = sql(&postgres)
        .await
        .query_one("SELECT count(*) FROM kept", &[])
        .await
        .expect("tables survive down/up")
        .get(0);
    assert_eq!(count, 1);
    // A new client: the pooled connection went down with the old registry process.
    let subjects = reqwest::Client::new()
        .get(format!("{registry}/subjects"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("list subjects")
        .text()
        .await
        .expect("body");
    assert!(subjects.contains(&subject), "schemas survive down/up: {subjects}");

    let out = home.seam(&["local", "down", "--purge"]);
    assert!(out.status.success());
    assert!(processes_of(&home.0).is_empty());
    assert!(
        !home.0.join("local").join("brokers-1").exists(),
        "purge removes the data, PostgreSQL's too"
    );
}

fn status_json(home: &TempHome) -> serde_json::Value {
    let out = home.seam(&["local", "status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status --json is JSON ({e}): {:?}", text(&out)))
}

#[test]
fn status_json_lists_every_broker_and_the_registry_of_the_test_cluster() {
    let cluster = TestCluster::connect();
    let out = Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(["local", "status", "--json"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{:?}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let brokers: Vec<String> = serde_json::from_value(json["brokers"].clone()).expect("brokers");
    assert_eq!(brokers, cluster.endpoints.brokers);
    assert_eq!(json["registry"].as_str(), Some(cluster.registry().as_str()));
    if json["source"] == "local" {
        let components = json["components"].as_array().expect("components");
        let postgres = usize::from(json["postgres"].is_string());
        assert_eq!(
            components.len(),
            brokers.len() + 1 + postgres,
            "every broker, the registry and PostgreSQL if it runs"
        );
        for c in components {
            assert_eq!(c["state"], "running", "{c}");
            assert!(c["pid"].as_u64().is_some(), "{c}");
        }
    }
}
