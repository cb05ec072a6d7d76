//! The customer-order example against the real PostgreSQL, Kafka and registry of the test
//! stack: the demo with its late registration (run twice: each run starts over), poison events dead-lettered by the sink while the rest
//! applies, and SIGKILLs of the adapters (CDC source and sink) and of PostgreSQL that lose and
//! duplicate no row change. Both databases are compared row by row (digests), including how
//! many changes each replica row received.
//!
//! The example's topics and service names are fixed, so these tests run one at a time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use customer_order::demo::processes::Proc;
use customer_order::demo::{load, sync};
use rdkafka::consumer::{BaseConsumer, Consumer};
use seam::topology::Topology;
use seam_testkit::{sql, unique_name, wait_until, TestCluster};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TOPICS: [&str; 4] = [
    "customer-service.events",
    "order-service.events",
    "customer-service.dlq",
    "order-service.dlq",
];

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_customer-order"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// Deletes the example's topics, so a test starts from none.
async fn clean_topics(cluster: &TestCluster) {
    let probe: BaseConsumer = cluster.client_config().create().expect("probe");
    let listed: Vec<String> = probe
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata")
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    for t in TOPICS {
        if listed.iter().any(|l| l == t) {
            cluster.delete_topic(t).await;
        }
    }
}

/// Everything a child process needs to find the cluster and `server`, with a home of its own.
fn child_env(cluster: &TestCluster, home: &Path, server: &str) -> Vec<(String, String)> {
    vec![
        ("SEAM_HOME".into(), home.display().to_string()),
        ("SEAM_BROKERS".into(), cluster.bootstrap()),
        ("SEAM_REGISTRY".into(), cluster.registry()),
        ("SEAM_POSTGRES".into(), server.to_string()),
    ]
}

/// The example's topology with the order service reading the customer service from the start.
fn both_ways(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("deploy/customer-order.yaml")).expect("topology");
    let path = dir.join("topology.yaml");
    std::fs::write(
        &path,
        format!("{text}  - service: order-service\n    sources:\n      - service: customer-service\n        translator: customer-service-to-order-service\n"),
    )
    .expect("write topology");
    Topology::load(&path).expect("valid topology");
    path
}

async fn deploy(cluster: &TestCluster, topology: &Path) {
    let registry = seam_ops::deploy::Registry::new(&cluster.registry()).expect("registry");
    let outcome = seam_ops::deploy::deploy(
        &Topology::load(topology).expect("topology"),
        &cluster.endpoints.client(),
        &registry,
        &Default::default(),
    )
    .await
    .expect("deploy");
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
}

/// Drops the example's databases on `server` (a URL of its `postgres` database).
async fn drop_databases(admin: &str) {
    let db = sql(admin).await;
    for name in ["customers", "orders"] {
        db.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active",
            &[&name],
        )
        .await
        .expect("drop slots");
        db.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .expect("drop database");
    }
}

/// No topics, no databases of the example on the test stack's PostgreSQL (returned), and a
/// fresh directory for the test's topology, stores and logs.
async fn from_nothing(cluster: &TestCluster, label: &str) -> (seam_local::cluster::Postgres, PathBuf) {
    clean_topics(cluster).await;
    let server = seam_local::cluster::Postgres::discover().expect("the test stack's PostgreSQL");
    drop_databases(&server.database("postgres")).await;
    let dir = std::env::temp_dir().join(unique_name(label));
    std::fs::create_dir_all(&dir).expect("dir");
    (server, dir)
}

/// The two CRUD services and their adapters.
struct Example {
    procs: Vec<Proc>,
}

impl Example {
    async fn start(topology: &Path, dir: &Path, envs: &[(String, String)]) -> Self {
        let mut procs = Vec::new();
        for service in ["customer-service", "order-service"] {
            procs.push(
                Proc::start_with(&exe(), &["crud", service], &dir.join("logs"), envs.to_vec())
                    .await
                    .expect("crud service"),
            );
        }
        for service in ["customer-service", "order-service"] {
            let store = dir.join(service).display().to_string();
            let topology = topology.display().to_string();
            procs.push(
                Proc::start_with(
                    &exe(),
                    &["adapter", service, "-t", &topology, "--store", &store],
                    &dir.join("logs"),
                    envs.to_vec(),
                )
                .await
                .expect("adapter"),
            );
        }
        Self { procs }
    }

    fn get(&mut self, name: &str) -> &mut Proc {
        self.procs
            .iter_mut()
            .find(|p| p.name == name)
            .expect("a process of the example")
    }

    fn url(&mut self, name: &str) -> String {
        self.get(name).url.clone()
    }

    async fn stop(self) {
        for p in self.procs {
            p.stop().await;
        }
    }
}

async fn in_sync(customers: &str, orders: &str, timeout: Duration) -> Vec<sync::Flow> {
    let (c, o) = (
        sync::connect(customers).await.expect("customers db"),
        sync::connect(orders).await.expect("orders db"),
    );
    wait_until(timeout, "both databases to agree", || {
        let (c, o) = (&c, &o);
        async move {
            let flows = sync::compare(c, o).await.map_err(|e| e.to_string())?;
            if flows.iter().all(|f| f.in_sync) {
                Ok(flows)
            } else {
                Err(format!("{flows:?}"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn the_demo_syncs_both_databases_with_a_late_registration_and_starts_over_when_run_again() {
    let _serial = SERIAL.lock().await;
    let cluster = TestCluster::connect();
    clean_topics(&cluster).await;
    let server = seam_local::cluster::Postgres::discover().expect("the test stack's PostgreSQL");
    let home = std::env::temp_dir().join(unique_name("customer-order-demo"));
    let envs = child_env(&cluster, &home, server.url());
    let run = || {
        let out = std::process::Command::new(exe())
            .args(["demo", "--requests", "400", "--json", "--timeout", "120"])
            .current_dir(repo())
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run the demo");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "the demo failed: {stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
        report
    };
    let first = run();
    assert_eq!(first["synced"], true, "{first:#}");
    assert_eq!(first["customers_created"], 100);
    assert_eq!(first["orders_created"], 300);
    let registration = first["registration"].as_str().unwrap_or_default();
    assert!(
        registration.contains("bootstrapped from the snapshot"),
        "the order service joins late, from the customer source's snapshot: {registration}"
    );
    for flow in first["flows"].as_array().expect("flows") {
        assert_eq!(flow["in_sync"], true, "{flow}");
        assert!(flow["replica_rows"].as_i64().unwrap_or(0) > 0, "{flow}");
    }
    // Run again, it starts over: the report counts exactly its own requests.
    let second = run();
    assert_eq!(second["synced"], true, "{second:#}");
    let registration = second["registration"].as_str().unwrap_or_default();
    assert!(registration.contains("bootstrapped from the snapshot"), "{second:#}");
    assert_eq!(second["flows"][0]["source_rows"], 100, "{second:#}");
    assert_eq!(second["flows"][1]["source_rows"], 300, "{second:#}");
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test]
async fn a_sink_dead_letters_what_its_database_or_decoder_refuses_and_applies_the_rest() {
    let _serial = SERIAL.lock().await;
    let cluster = TestCluster::connect();
    let (server, dir) = from_nothing(&cluster, "customer-order-poison").await;
    let topology = both_ways(&dir);
    deploy(&cluster, &topology).await;
    let envs = child_env(&cluster, &dir, server.url());
    let mut example = Example::start(&topology, &dir, &envs).await;
    // The order service's database refuses one customer; a foreign producer writes bytes that
    // are no Avro record of a known schema.
    sql(&server.database("orders"))
        .await
        .batch_execute("ALTER TABLE customers ADD CONSTRAINT no_mallory CHECK (name <> 'Mallory')")
        .await
        .expect("constraint");
    let producer: rdkafka::producer::FutureProducer = cluster.client_config().create().expect("producer");
    producer
        .send(
            rdkafka::producer::FutureRecord::to("customer-service.events")
                .key("customers/0")
                .payload(&b"\x00\x00\x00\x7f\xffgarbage"[..]),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce garbage");
    let http = reqwest::Client::new();
    let customers = example.url("crud customer-service");
    for name in ["Alice", "Mallory", "Bob"] {
        let answer = http
            .post(format!("{customers}/customers"))
            .json(&serde_json::json!({"name": name, "email": format!("{name}@example.org")}))
            .send()
            .await
            .expect("createCustomer");
        assert!(answer.status().is_success());
    }
    let orders = sql(&server.database("orders")).await;
    let names = wait_until(Duration::from_secs(60), "Alice and Bob in the order service", || {
        let orders = &orders;
        async move {
            let rows = orders
                .query("SELECT name, changes FROM customers ORDER BY id", &[])
                .await
                .map_err(|e| e.to_string())?;
            let names: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            if names.len() == 2 {
                Ok(names)
            } else {
                Err(format!("{names:?}"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names, vec![("Alice".to_string(), 1), ("Bob".to_string(), 1)]);
    let letters = wait_until(Duration::from_secs(60), "two dead letters", || {
        let cluster = &cluster;
        async move {
            let letters: Vec<(String, String)> = cluster
                .read_all("order-service.dlq")
                .into_iter()
                .map(|r| {
                    let h = |name: &str| r.headers.get(name).cloned().unwrap_or_default();
                    (h(seam::dlq::ERROR), h(seam::dlq::REASON))
                })
                .collect();
            if letters.len() >= 2 {
                Ok(letters)
            } else {
                Err(format!("{letters:?}"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        letters
            .iter()
            .any(|(kind, reason)| kind == "sql" && reason.contains("no_mallory")),
        "the refused statement is dead-lettered with the server's reason: {letters:?}"
    );
    assert!(
        letters.iter().any(|(kind, _)| kind != "sql"),
        "the undecodable record is dead-lettered: {letters:?}"
    );
    let metrics = http
        .get(format!("{}/metrics", example.url("adapter order-service")))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("seam_sink_events_total{service=\"order-service\",topic=\"customer-service.events\",outcome=\"dead-lettered\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("seam_cdc_confirmed_lsn{service=\"order-service\"}"),
        "the CDC node's metrics too: {metrics}"
    );
    assert_eq!(metrics.matches("# EOF").count(), 1, "one page: {metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    example.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn fault_adapters_and_postgres_killed_mid_stream_lose_and_duplicate_no_row_change() {
    let _serial = SERIAL.lock().await;
    let cluster = TestCluster::connect();
    clean_topics(&cluster).await;
    let extended = std::env::var("SEAM_EXTENDED").is_ok_and(|v| v == "1");
    let home = seam_local::Home::from_env().expect("home");
    // A server of its own: killing the test stack's would fail every other test using it.
    let dir = std::env::temp_dir().join(unique_name("customer-order-fault"));
    let mut postgres = seam_local::postgres::Server::start(&home, dir.join("pg"), free_port())
        .await
        .unwrap_or_else(|e| panic!("a PostgreSQL of its own: {e}"));
    let server = postgres.url("seam");
    let topology = both_ways(&dir);
    deploy(&cluster, &topology).await;
    let envs = child_env(&cluster, &dir, &server);
    let mut example = Example::start(&topology, &dir, &envs).await;
    let http = reqwest::Client::new();
    let customers = load::customers(&http, &example.url("crud customer-service"), 0, 200)
        .await
        .expect("customers");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let orders_url = example.url("crud order-service");
    let writer = {
        let (stop, http) = (std::sync::Arc::clone(&stop), http.clone());
        tokio::spawn(async move {
            let mut created = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                load::orders(&http, &orders_url, &customers, 50).await.expect("orders");
                created += 50;
            }
            created
        })
    };
    let rounds = if extended { 6 } else { 2 };
    for round in 0..rounds {
        for name in ["adapter order-service", "adapter customer-service"] {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let p = example.get(name);
            p.kill().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            p.restart(&exe())
                .await
                .unwrap_or_else(|e| panic!("restart {name}: {e}"));
        }
        if round == 0 || extended {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            postgres.kill();
            tokio::time::sleep(Duration::from_millis(500)).await;
            postgres.restart().await.expect("PostgreSQL restarts");
            // The CRUD services do not reconnect (seam's adapters do): start them again.
            for name in ["crud customer-service", "crud order-service"] {
                let p = example.get(name);
                p.kill().await;
                p.restart(&exe())
                    .await
                    .unwrap_or_else(|e| panic!("restart {name}: {e}"));
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let created = writer.await.expect("writer");
    let flows = in_sync(
        &postgres.url("customers"),
        &postgres.url("orders"),
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(flows[0].source_rows, 200, "{flows:?}");
    assert!(
        flows[1].source_rows as u64 >= created,
        "{flows:?} after {created} orders"
    );
    example.stop().await;
    drop(postgres);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn fault_a_sink_killed_during_its_bootstrap_loads_the_same_snapshot_again_once() {
    let _serial = SERIAL.lock().await;
    let cluster = TestCluster::connect();
    let (server, dir) = from_nothing(&cluster, "customer-order-bootstrap").await;
    let topology = dir.join("topology.yaml");
    std::fs::copy(repo().join("deploy/customer-order.yaml"), &topology).expect("topology");
    deploy(&cluster, &topology).await;
    let envs = child_env(&cluster, &dir, server.url());
    let mut example = Example::start(&topology, &dir, &envs).await;
    // Enough customers that loading them takes a while: written straight into the table, as
    // a batch job would, and published by the CDC source.
    let rows = 40_000i64;
    sql(&server.database("customers"))
        .await
        .batch_execute(&format!(
            "INSERT INTO customers (name, email) SELECT 'Customer ' || i, 'c' || i || '@example.org' FROM generate_series(1, {rows}) i"
        ))
        .await
        .expect("customers");
    let source = example.url("adapter customer-service");
    let http = reqwest::Client::new();
    let probe: BaseConsumer = cluster.client_config().create().expect("probe");
    wait_until(
        Duration::from_secs(180),
        "the CDC source to publish every customer",
        || {
            let published: i64 = (0..3)
                .map(|p| {
                    probe
                        .fetch_watermarks("customer-service.events", p, Duration::from_secs(10))
                        .map(|(low, high)| high - low)
                        .unwrap_or(0)
                })
                .sum();
            // Transaction markers take an offset each, so the end offsets pass the row count.
            async move {
                if published >= rows {
                    Ok(())
                } else {
                    Err(format!("{published} records"))
                }
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let sink = example.url("adapter order-service");
    let register = seam_ops::commands::register::RegisterArgs {
        consumer: "order-service".into(),
        source: "customer-service".into(),
        snapshot: Some(format!("{source}/snapshot")),
        from_beginning: false,
        accept_gap: false,
        topology: topology.clone(),
        url: Some(sink.clone()),
        json: true,
    };
    let first = tokio::spawn({
        let register = register.clone();
        async move { seam_ops::commands::register::register(&register).await }
    });
    let subscription = format!("{sink}/subscriptions/customer-service");
    let loaded = wait_until(Duration::from_secs(120), "the bootstrap to be under way", || {
        let (http, subscription) = (&http, &subscription);
        async move {
            let r: serde_json::Value = http
                .get(subscription)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            match (r["state"].as_str(), r["loaded"].as_u64()) {
                (Some("bootstrapping"), Some(n)) if n > 0 => Ok(n),
                _ => Err(r.to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    example.get("adapter order-service").kill().await;
    let interrupted = first.await.expect("register task");
    assert!(
        interrupted.is_err(),
        "the registration was cut short after {loaded} records"
    );
    // Nothing of the interrupted bootstrap is in the database: it was one transaction.
    let orders = sql(&server.database("orders")).await;
    let partial: i64 = orders
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(partial, 0, "an interrupted bootstrap leaves nothing behind");
    example
        .get("adapter order-service")
        .restart(&exe())
        .await
        .expect("restart the adapter");
    // The operator runs the command again: it follows the resumed bootstrap, or finds it done.
    let again = seam_ops::commands::register::register(&register)
        .await
        .expect("register again");
    assert_eq!(again.consumer, "order-service");
    let flows = in_sync(
        &server.database("customers"),
        &server.database("orders"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(flows[0].replica_rows, rows, "{flows:?}");
    example.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_postgres_sink_service_consumes_alone_and_serves_its_own_api() {
    let _serial = SERIAL.lock().await;
    let cluster = TestCluster::connect();
    let (server, dir) = from_nothing(&cluster, "customer-order-sink-only").await;
    // The order service as a CRUD service that only consumes: no CDC of its orders.
    let topology = dir.join("topology.yaml");
    std::fs::write(
        &topology,
        "apiVersion: seam/v1\nname: sink-only\nservices:\n  - name: customer-service\n    partitions: 3\n    kind: postgres-cdc\n    postgres:\n      database: customers\n      tables:\n        - name: customers\n  - name: order-service\n    partitions: 1\n    kind: postgres-sink\n    postgres:\n      database: orders\nconsumers:\n  - service: order-service\n    sources:\n      - service: customer-service\n        translator: customer-service-to-order-service\n",
    )
    .expect("topology");
    deploy(&cluster, &topology).await;
    let probe: BaseConsumer = cluster.client_config().create().expect("probe");
    let listed: Vec<String> = probe
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata")
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    assert!(listed.iter().any(|t| t == "order-service.dlq"), "its DLQ: {listed:?}");
    assert!(
        !listed.iter().any(|t| t == "order-service.events"),
        "a postgres-sink publishes nothing, so it has no topic: {listed:?}"
    );
    let envs = child_env(&cluster, &dir, server.url());
    let mut example = Example::start(&topology, &dir, &envs).await;
    let http = reqwest::Client::new();
    load::customers(&http, &example.url("crud customer-service"), 0, 50)
        .await
        .expect("customers");
    let orders = sql(&server.database("orders")).await;
    wait_until(Duration::from_secs(60), "50 customers in the order service", || {
        let orders = &orders;
        async move {
            let n: i64 = orders
                .query_one("SELECT count(*) FROM customers WHERE changes = 1", &[])
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            if n == 50 {
                Ok(())
            } else {
                Err(format!("{n}"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let sink = example.url("adapter order-service");
    let status: serde_json::Value = http
        .get(format!("{sink}/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status json");
    let read: i64 = status["positions"]["customer-service.events"]
        .as_object()
        .map(|m| m.values().filter_map(serde_json::Value::as_i64).sum())
        .unwrap_or(0);
    assert!(read >= 50, "{status}");
    let metrics = http
        .get(format!("{sink}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("seam_sink_events_total{service=\"order-service\",topic=\"customer-service.events\",outcome=\"applied\"} 50"),
        "{metrics}"
    );
    assert!(!metrics.contains("seam_cdc_"), "no CDC node: {metrics}");
    assert_eq!(metrics.matches("# EOF").count(), 1, "{metrics}");

    // A second instance of the same sink waits: two would each apply every event.
    let store = dir.join("second").display().to_string();
    let topology_arg = topology.display().to_string();
    let second = Proc::start_with(
        &exe(),
        &["adapter", "order-service", "-t", &topology_arg, "--store", &store],
        &dir.join("logs-second"),
        envs.clone(),
    )
    .await
    .expect("a second adapter");
    let waiting = wait_until(Duration::from_secs(30), "the second instance to say it waits", || {
        let (http, url) = (&http, &second.url);
        async move {
            let r = http
                .get(format!("{url}/health"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let (status, text) = (r.status(), r.text().await.unwrap_or_default());
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && text.contains("another instance") {
                Ok(text)
            } else {
                Err(format!("{status}: {text}"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(waiting.contains("pg_advisory_lock"), "{waiting}");
    let count_once = |expected: i64| {
        let orders = &orders;
        wait_until(
            Duration::from_secs(60),
            "every customer once in the order service",
            move || async move {
                let (all, once): (i64, i64) = orders
                    .query_one(
                        "SELECT count(*), count(*) FILTER (WHERE changes = 1) FROM customers",
                        &[],
                    )
                    .await
                    .map(|r| (r.get(0), r.get(1)))
                    .map_err(|e| e.to_string())?;
                if all == expected && once == expected {
                    Ok(())
                } else {
                    Err(format!("{all} customers, {once} with one change"))
                }
            },
        )
    };
    load::customers(&http, &example.url("crud customer-service"), 50, 70)
        .await
        .expect("customers");
    count_once(70).await.unwrap_or_else(|e| panic!("{e}"));
    // The first one crashes: the second takes over from the committed positions.
    example.get("adapter order-service").kill().await;
    load::customers(&http, &example.url("crud customer-service"), 70, 80)
        .await
        .expect("customers");
    count_once(80).await.unwrap_or_else(|e| panic!("{e}"));
    second.stop().await;
    example.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_refused_registration_leaves_its_source_unread() {
    let _serial = SERIAL.lock().await;
    let cluster = TestCluster::connect();
    let (server, dir) = from_nothing(&cluster, "customer-order-refused").await;
    let topology = dir.join("topology.yaml");
    std::fs::copy(repo().join("deploy/customer-order.yaml"), &topology).expect("topology");
    deploy(&cluster, &topology).await;
    let envs = child_env(&cluster, &dir, server.url());
    let mut example = Example::start(&topology, &dir, &envs).await;
    let http = reqwest::Client::new();
    let customers = example.url("crud customer-service");
    load::customers(&http, &customers, 0, 10).await.expect("customers");
    // A snapshot whose offset map lies beyond the topic's end: the sink must refuse it.
    let source = example.url("adapter customer-service");
    let bytes = http
        .get(format!("{source}/snapshot"))
        .send()
        .await
        .expect("snapshot")
        .bytes()
        .await
        .expect("snapshot bytes");
    let (mut meta, records) = seam::snapshot::file::read(
        std::io::Cursor::new(&bytes[..]),
        "the snapshot",
        Some("customer-service"),
    )
    .expect("a snapshot");
    for offsets in meta.offsets.0.values_mut() {
        for next in offsets.values_mut() {
            *next += 1_000_000;
        }
    }
    let ahead = dir.join("ahead.snapshot");
    let file = std::fs::File::create(&ahead).expect("file");
    seam::snapshot::file::write(file, &meta, &records).expect("write the snapshot");
    let sink = example.url("adapter order-service");
    let register = seam_ops::commands::register::RegisterArgs {
        consumer: "order-service".into(),
        source: "customer-service".into(),
        snapshot: Some(ahead.display().to_string()),
        from_beginning: false,
        accept_gap: false,
        topology: topology.clone(),
        url: Some(sink.clone()),
        json: true,
    };
    let refused = seam_ops::commands::register::register(&register)
        .await
        .expect_err("a snapshot beyond the topic's end is refused");
    assert!(refused.to_string().contains("could not register"), "{refused:#}");
    // Nothing of the source is read, however long it runs and whatever is published.
    load::customers(&http, &customers, 10, 20).await.expect("customers");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let orders = sql(&server.database("orders")).await;
    let (replicated, positions): (i64, i64) = orders
        .query_one(
            "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM seam_positions WHERE consumer = 'order-service')",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .expect("count");
    assert_eq!((replicated, positions), (0, 0), "the refused source must not be read");
    let state: serde_json::Value = http
        .get(format!("{sink}/subscriptions/customer-service"))
        .send()
        .await
        .expect("subscription")
        .json()
        .await
        .expect("json");
    assert_eq!(state["state"], "failed", "{state}");
    example.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
