//! `seam cdc run` against the real PostgreSQL, Kafka and registry of the test stack: the copy
//! and the stream published once each, in order per row; table changes; and crashes of the
//! source and of PostgreSQL that lose and duplicate nothing. Checked by rebuilding each table
//! from its topic and comparing it with the table.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apache_avro::types::Value as Avro;
use seam::codec::{wire, Registry};
use seam_local::cluster::Postgres;
use seam_testkit::{sql, unique_name, wait_until, ReadRecord, TestCluster};

/// One CDC source under test: its database, topology, store and process.
struct Source {
    name: String,
    url: String,
    /// `SEAM_POSTGRES` for the source's process, when it reads a server of its own.
    server: Option<String>,
    dir: PathBuf,
    topology: PathBuf,
    child: Option<Child>,
}

impl Source {
    /// A fresh database with `ddl` run in it, and a topology publishing `tables`.
    async fn new(prefix: &str, ddl: &str, tables: &[&str]) -> Self {
        Self::on(None, prefix, ddl, tables).await
    }

    /// Like [`Source::new`], on the server at `server` (a URL without database) instead of the
    /// test stack's.
    async fn on(server: Option<String>, prefix: &str, ddl: &str, tables: &[&str]) -> Self {
        let name = unique_name(prefix);
        let admin = match &server {
            Some(url) => format!("{url}/postgres"),
            None => Postgres::discover()
                .unwrap_or_else(|e| panic!("{e}"))
                .database("postgres"),
        };
        let database = name.replace('-', "_");
        seam_local::postgres::ensure_database(&admin, &database)
            .await
            .unwrap_or_else(|e| panic!("create database {database}: {e}"));
        let url = format!("{}/{database}", admin.trim_end_matches("/postgres"));
        sql(&url).await.batch_execute(ddl).await.expect("ddl");
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).expect("dir");
        let topology = dir.join("topology.yaml");
        let listed: String = tables.iter().map(|t| format!("        - name: {t}\n")).collect();
        std::fs::write(
            &topology,
            format!(
                "apiVersion: seam/v1\nname: {name}\nservices:\n  - name: {name}\n    partitions: 3\n    kind: postgres-cdc\n    postgres:\n      database: {database}\n      tables:\n{listed}"
            ),
        )
        .expect("topology");
        let out = seam(&["deploy", "-t", topology.to_str().expect("utf-8")]);
        assert!(out.status.success(), "deploy: {}", String::from_utf8_lossy(&out.stderr));
        Self {
            name,
            url,
            server,
            dir,
            topology,
            child: None,
        }
    }

    fn topic(&self) -> String {
        format!("{}.events", self.name)
    }

    /// Starts `seam cdc run` and waits for its `ready` line; returns the API's URL.
    fn start(&mut self, extra: &[&str]) -> String {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("cdc.log"))
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_seam"))
            .args(["cdc", "run", &self.name, "-t"])
            .arg(&self.topology)
            .arg("--store")
            .arg(self.dir.join("store"))
            .args(extra)
            .envs(self.server.iter().map(|url| ("SEAM_POSTGRES", url.as_str())))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start seam cdc run");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read ready line");
        let url = line.trim().strip_prefix("ready ").map(str::to_string);
        self.child = Some(child);
        url.unwrap_or_else(|| {
            panic!(
                "seam cdc run did not get ready: {line:?}; stderr: {}",
                self.stop_with_stderr()
            )
        })
    }

    /// SIGKILL: no shutdown of any kind.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit by itself; its status and stderr.
    fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, String) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return (status.code(), self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("seam cdc run did not exit within {limit:?}");
    }

    fn stop_with_stderr(&mut self) -> String {
        self.kill();
        self.log()
    }

    /// What the source's runs wrote to stderr.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("cdc.log")).unwrap_or_default()
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn seam(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(args)
        .output()
        .expect("run seam")
}

/// A table as text values by key column text: what the topic must rebuild.
async fn table(url: &str, query: &str) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    let client = sql(url).await;
    let mut out = BTreeMap::new();
    for message in client.simple_query(query).await.expect("query") {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            let columns: BTreeMap<String, Option<String>> = row
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name().to_string(), row.get(i).map(str::to_string)))
                .collect();
            out.insert(row.get(0).unwrap_or_default().to_string(), columns);
        }
    }
    out
}

/// One published event, decoded.
#[derive(Debug, Clone)]
struct Event {
    subject: String,
    kind: String,
    fields: BTreeMap<String, Option<String>>,
    headers: BTreeMap<String, String>,
}

async fn events(cluster: &TestCluster, topic: &str) -> Vec<Event> {
    let registry = Registry::new(&cluster.registry()).expect("registry");
    let mut records: Vec<ReadRecord> = cluster.read_all(topic);
    // Per subject the order is the partition's; across partitions it does not matter here.
    records.sort_by_key(|r| (r.partition, r.offset));
    let mut out = Vec::new();
    for r in records {
        let value = r.value.clone().expect("a value");
        let framed = wire::parse(&value).expect("Confluent framing");
        let writer = registry.writer(framed.schema_id).await.expect("writer schema");
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(writer.schema)
            .build()
            .expect("reader");
        let decoded = reader.read_value(&mut &framed.body[..]).expect("decodes");
        let Avro::Record(fields) = decoded else {
            panic!("a record");
        };
        let text = |v: &Avro| match v {
            Avro::Null => None,
            Avro::Union(_, inner) => match inner.as_ref() {
                Avro::Null => None,
                other => Some(plain(other)),
            },
            other => Some(plain(other)),
        };
        out.push(Event {
            subject: r.key_text(),
            kind: writer.full_name.rsplit('.').next().unwrap_or_default().to_string(),
            fields: fields.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
            headers: r.headers.clone(),
        });
    }
    out
}

fn plain(v: &Avro) -> String {
    match v {
        Avro::String(s) => s.clone(),
        Avro::Int(i) => i.to_string(),
        Avro::Long(i) => i.to_string(),
        Avro::Boolean(b) => if *b { "t" } else { "f" }.to_string(),
        Avro::Float(f) => f.to_string(),
        Avro::Double(f) => f.to_string(),
        other => format!("{other:?}"),
    }
}

/// The table a topic describes: Inserted and Updated set a row, Deleted removes it.
fn rebuild(events: &[Event], key: &str) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    let mut rows = BTreeMap::new();
    for e in events {
        let id = e.fields[key].clone().expect("a key");
        if e.kind.ends_with("Deleted") {
            rows.remove(&id);
        } else {
            rows.insert(id, e.fields.clone());
        }
    }
    rows
}

async fn wait_for_events(cluster: &TestCluster, topic: &str, count: usize) -> Vec<Event> {
    let result = wait_until(Duration::from_secs(90), "the events to be published", || async {
        let found = events(cluster, topic).await;
        if found.len() >= count {
            Ok(found)
        } else {
            Err(format!("{} of {count} events", found.len()))
        }
    })
    .await;
    result.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn cdc_copies_the_tables_then_publishes_every_committed_change_once_in_order() {
    let cluster = TestCluster::connect();
    let mut source = Source::new(
        "cdc-basic",
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance bigint, vip boolean, note text);
         INSERT INTO accounts SELECT i, 'owner ' || i, i * 10, i % 2 = 0, NULL FROM generate_series(1, 50) i;",
        &["accounts"],
    )
    .await;
    let url = source.start(&[]);
    // The copy first, so the changes below are streamed rather than copied.
    wait_for_events(&cluster, &source.topic(), 50).await;
    let db = sql(&source.url).await;
    // One transaction of several rows, a changed key, and a TOASTed value left unchanged.
    db.batch_execute(
        "BEGIN;
         UPDATE accounts SET balance = balance + 1 WHERE id <= 10;
         DELETE FROM accounts WHERE id BETWEEN 41 AND 45;
         INSERT INTO accounts SELECT i, 'new ' || i, 0, NULL, NULL FROM generate_series(51, 55) i;
         COMMIT;
         UPDATE accounts SET id = 100 WHERE id = 50;
         INSERT INTO accounts VALUES (200, 'toast', 1, true, repeat('x', 100000));
         UPDATE accounts SET balance = 2 WHERE id = 200;",
    )
    .await
    .expect("changes");
    // 50 copied; 10 updated, 5 deleted, 5 inserted; a delete and an insert; an insert, an update.
    let found = wait_for_events(&cluster, &source.topic(), 50 + 20 + 2 + 2).await;
    assert_eq!(
        found.len(),
        74,
        "each change once: {:?}",
        found.iter().map(|e| (&e.kind, &e.subject)).collect::<Vec<_>>()
    );
    let kinds = |subject: &str| -> Vec<String> {
        found
            .iter()
            .filter(|e| e.subject == subject)
            .map(|e| e.kind.clone())
            .collect()
    };
    assert_eq!(kinds("accounts/1"), ["AccountsInserted", "AccountsUpdated"]);
    assert_eq!(kinds("accounts/41"), ["AccountsInserted", "AccountsDeleted"]);
    assert_eq!(kinds("accounts/50"), ["AccountsInserted", "AccountsDeleted"]);
    assert_eq!(kinds("accounts/100"), ["AccountsInserted"]);
    assert_eq!(kinds("accounts/200"), ["AccountsInserted", "AccountsUpdated"]);
    let toast = found.iter().rfind(|e| e.subject == "accounts/200").expect("toast row");
    assert_eq!(
        toast.fields["note"].as_ref().map(String::len),
        Some(100_000),
        "the unchanged TOAST value is published"
    );
    let tx: Vec<&Event> = found
        .iter()
        .filter(|e| e.subject == "accounts/3" && e.kind == "AccountsUpdated")
        .chain(found.iter().filter(|e| e.subject == "accounts/51"))
        .collect();
    assert_eq!(
        tx[0].headers["seam-correlation-id"], tx[1].headers["seam-correlation-id"],
        "the events of one transaction share its correlation id"
    );
    for e in &found {
        for h in ["seam-event-id", "seam-event-type", "seam-source", "seam-time"] {
            assert!(e.headers.contains_key(h), "{h} missing on {e:?}");
        }
        assert_eq!(e.headers["seam-source"], source.name);
    }
    assert_eq!(
        rebuild(&found, "id"),
        table(&source.url, "SELECT id, owner, balance, vip, note FROM accounts").await,
        "the topic rebuilds the table"
    );
    // Its metrics count what it copied and streamed, and where its slot stands.
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(metric("seam_cdc_copied_rows_total"), 50.0, "{metrics}");
    // The explicit block, then the three statements after it in the simple query's implicit one.
    assert_eq!(metric("seam_cdc_transactions_total"), 2.0, "{metrics}");
    assert_eq!(metric("seam_cdc_row_changes_total"), 23.0, "{metrics}");
    assert!(metric("seam_cdc_confirmed_lsn") > 0.0, "{metrics}");
    // Late consumers bootstrap from a snapshot of the source, as from any service.
    let snapshot = reqwest::get(format!("{url}/snapshot")).await.expect("GET /snapshot");
    assert!(snapshot.status().is_success(), "{:?}", snapshot.text().await);

    // `seam status` shows the slot and the WAL it holds; a stopped source leaves it inactive.
    let slot = |out: std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v["cdc_slots"][0].clone()
    };
    let t = source.topology.to_str().expect("utf-8").to_string();
    let running = slot(seam(&["status", "-t", &t, "--json"]));
    assert_eq!(running["active"], true, "{running}");
    assert!(running["lag_bytes"].as_i64().is_some_and(|b| b >= 0), "{running}");
    source.kill();
    db.batch_execute("UPDATE accounts SET balance = 0")
        .await
        .expect("more WAL");
    let stopped = slot(seam(&["status", "-t", &t, "--json"]));
    assert_eq!(stopped["active"], false, "{stopped}");
    assert!(
        stopped["lag_bytes"].as_i64().is_some_and(|b| b > 0),
        "the slot holds WAL: {stopped}"
    );
    let text = seam(&["status", "-t", &t]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("WAL HELD (BYTES)") && text.contains("inactive"), "{text}");
}

#[tokio::test]
async fn cdc_run_refuses_bad_inputs_naming_the_fix() {
    let _cluster = TestCluster::connect();
    let source = Source::new(
        "cdc-bad",
        "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE nokey (a int);",
        &["t"],
    )
    .await;
    let t = source.topology.to_str().expect("utf-8").to_string();
    let run = |args: &[&str]| {
        let out = seam(args);
        assert!(!out.status.success(), "{args:?} must fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["cdc", "run", "nosuch", "-t", &t]);
    assert!(err.contains("declares no service nosuch"), "{err}");
    let write = |body: &str| {
        let path = source.dir.join("bad.yaml");
        std::fs::write(&path, format!("apiVersion: seam/v1\nname: bad\nservices:\n{body}")).expect("write");
        path.to_str().expect("utf-8").to_string()
    };
    let database = source.url.rsplit('/').next().expect("database").to_string();
    let missing = write(&format!(
        "  - name: bad\n    partitions: 1\n    kind: postgres-cdc\n    postgres:\n      database: {database}\n      tables:\n        - name: nosuch\n"
    ));
    let err = run(&["cdc", "run", "bad", "-t", &missing]);
    assert!(err.contains("table nosuch does not exist"), "{err}");
    let keyless = write(&format!(
        "  - name: bad\n    partitions: 1\n    kind: postgres-cdc\n    postgres:\n      database: {database}\n      tables:\n        - name: nokey\n"
    ));
    let err = run(&["cdc", "run", "bad", "-t", &keyless]);
    assert!(err.contains("table nokey has no key"), "{err}");
    let no_section = write("  - name: bad\n    partitions: 1\n    kind: postgres-cdc\n");
    let err = run(&["cdc", "run", "bad", "-t", &no_section]);
    assert!(err.contains("services[0].postgres: missing"), "{err}");
    let wrong_kind = write("  - name: bad\n    partitions: 1\n    kind: mysql-cdc\n");
    let err = run(&["cdc", "run", "bad", "-t", &wrong_kind]);
    assert!(err.contains("`mysql-cdc` is not a service kind"), "{err}");
    let no_db = write("  - name: bad\n    partitions: 1\n    kind: postgres-cdc\n    postgres:\n      database: nosuchdb\n      tables:\n        - name: t\n");
    let err = run(&["cdc", "run", "bad", "-t", &no_db]);
    assert!(err.contains("database \"nosuchdb\" does not exist"), "{err}");
}

#[tokio::test]
async fn cdc_publishes_an_added_column_as_a_new_schema_and_stops_at_an_incompatible_change() {
    let cluster = TestCluster::connect();
    let mut source = Source::new(
        "cdc-ddl",
        "CREATE TABLE items (id bigint PRIMARY KEY, title text); INSERT INTO items VALUES (1, 'one');",
        &["items"],
    )
    .await;
    source.start(&[]);
    wait_for_events(&cluster, &source.topic(), 1).await;
    let db = sql(&source.url).await;
    db.batch_execute("ALTER TABLE items ADD COLUMN price double precision; INSERT INTO items VALUES (2, 'two', 2.5);")
        .await
        .expect("add a column");
    let found = wait_for_events(&cluster, &source.topic(), 2).await;
    assert_eq!(found[1].fields["price"].as_deref(), Some("2.5"), "{:?}", found[1]);
    let subject = format!(
        "{}-seam.cdc.{}.ItemsInserted",
        source.topic(),
        source.name.replace('-', "_")
    );
    let versions: Vec<u32> = reqwest::get(format!("{}/subjects/{subject}/versions", cluster.registry()))
        .await
        .expect("versions")
        .json()
        .await
        .expect("json");
    assert_eq!(versions.len(), 2, "an added column is a new, compatible version");

    db.batch_execute(
        "ALTER TABLE items ALTER COLUMN title TYPE int USING length(title); UPDATE items SET title = 7 WHERE id = 1;",
    )
    .await
    .expect("retype a column");
    let (code, stderr) = source.wait_exit(Duration::from_secs(60));
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("table items changed incompatibly: column title changed from string"),
        "{stderr}"
    );
    assert!(stderr.contains("--resync"), "says what to do: {stderr}");
    assert_eq!(
        events(&cluster, &source.topic()).await.len(),
        2,
        "nothing of the new shape was published"
    );

    // Reverted, and resynchronised: the difference is published, nothing more.
    db.batch_execute("ALTER TABLE items ALTER COLUMN title TYPE text USING title::text;")
        .await
        .expect("revert");
    source.start(&["--resync"]);
    // Both titles went through int and back: 'one' is now '7', 'two' is '3'.
    wait_for_events(&cluster, &source.topic(), 4).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let found = events(&cluster, &source.topic()).await;
    assert_eq!(
        found.len(),
        4,
        "{:?}",
        found.iter().map(|e| (&e.kind, &e.subject)).collect::<Vec<_>>()
    );
    assert!(found[2..].iter().all(|e| e.kind == "ItemsUpdated"), "{found:?}");
    assert_eq!(
        rebuild(&found, "id"),
        table(&source.url, "SELECT id, title, price FROM items").await
    );
}

/// Rounds of crashes: several SIGKILLs of the source and one of PostgreSQL.
fn kill_rounds() -> usize {
    if std::env::var("SEAM_EXTENDED").as_deref() == Ok("1") {
        12
    } else {
        3
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn fault_cdc_source_and_postgres_killed_mid_stream_lose_and_duplicate_nothing() {
    let cluster = TestCluster::connect();
    // A server of its own: killing the test stack's would fail every other test using it.
    let home = seam_local::Home::from_env().expect("home");
    let mut postgres =
        seam_local::postgres::Server::start(&home, std::env::temp_dir().join(unique_name("cdc-pg")), free_port())
            .await
            .unwrap_or_else(|e| panic!("a PostgreSQL of its own: {e}"));
    let server = postgres.url("");
    let mut source = Source::on(
        Some(server.trim_end_matches('/').to_string()),
        "cdc-fault",
        "CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
         INSERT INTO counters SELECT i, 0 FROM generate_series(1, 20) i;",
        &["counters"],
    )
    .await;
    source.start(&[]);
    let url = source.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = std::sync::Arc::clone(&stop);
    // Increments three counters per transaction; survives PostgreSQL going away.
    let writer = tokio::spawn(async move {
        let mut committed = 0u64;
        let mut i = 0u64;
        while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok((client, connection)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            tokio::spawn(connection);
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let ids = [i % 20 + 1, (i * 7) % 20 + 1, (i * 13) % 20 + 1];
                let sql = format!(
                    "UPDATE counters SET n = n + 1 WHERE id IN ({}, {}, {})",
                    ids[0], ids[1], ids[2]
                );
                if client.batch_execute(&sql).await.is_err() {
                    break;
                }
                committed += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        committed
    });
    for round in 0..kill_rounds() {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if round % 3 == 1 {
            // PostgreSQL crashes under the running source, which reconnects by itself.
            postgres.kill();
            tokio::time::sleep(Duration::from_millis(500)).await;
            postgres.restart().await.expect("restart PostgreSQL");
            continue;
        }
        source.kill();
        source.start(&[]);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let committed = writer.await.expect("writer");
    assert!(committed > 50, "the writer made progress: {committed}");
    let expected = table(&source.url, "SELECT id, n FROM counters").await;
    let n = |fields: &BTreeMap<String, Option<String>>| -> u64 {
        fields["n"].as_deref().unwrap_or("0").parse().unwrap_or(0)
    };
    let total: u64 = expected.values().map(n).sum();
    // The copy (taken while the writer ran) and then one Updated event per increment.
    let settled = wait_until(Duration::from_secs(90), "every increment to be published", || async {
        let found = events(&cluster, &source.topic()).await;
        let copied: u64 = found
            .iter()
            .filter(|e| e.kind == "CountersInserted")
            .map(|e| n(&e.fields))
            .sum();
        let want = 20 + (total - copied.min(total)) as usize;
        if found.len() >= want {
            Ok(found)
        } else {
            Err(format!("{} of {want} events", found.len()))
        }
    })
    .await;
    let found = settled.unwrap_or_else(|e| panic!("{e}"));
    for id in 1..=20 {
        let values: Vec<u64> = found
            .iter()
            .filter(|e| e.subject == format!("counters/{id}"))
            .map(|e| n(&e.fields))
            .collect();
        let first = values[0];
        let steps: Vec<u64> = (first..first + values.len() as u64).collect();
        assert_eq!(values, steps, "counter {id}: every increment exactly once, in order");
        assert_eq!(
            Some(values.last().copied().unwrap_or(0)),
            expected.get(&id.to_string()).map(n)
        );
    }
    assert_eq!(rebuild(&found, "id"), expected, "the topic rebuilds the table");
    assert!(
        found.iter().any(|e| e.kind == "CountersUpdated"),
        "updates were streamed"
    );
}
