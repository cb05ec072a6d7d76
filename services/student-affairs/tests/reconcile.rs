//! `seam reconcile` against the demo left running on the real cluster. On the healthy system it
//! reports every flow in sync and, asked to repair, replays nothing. Then one replica row is
//! altered directly in the stopped scholarship office's store (a grade the SE group never gave);
//! restarted, the office serves it, and reconcile finds exactly that subject in exactly that
//! flow, repairs it by a targeted replay through the normal apply path, and finds nothing after.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{pids, started, Running};
use seam_ops::commands::reconcile::{once, render};
use seam_ops::reconcile::{Kind, Options, State};
use seam_testkit::TestCluster;
use serde_json::Value;

/// The restarted office, stopped (SIGTERM, then waited for) when the test ends.
struct Restarted(std::process::Child);

impl Drop for Restarted {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

fn stop(pid: i32) {
    let pid = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let until = Instant::now() + Duration::from_secs(60);
    while nix::sys::signal::kill(pid, None).is_ok() {
        assert!(
            Instant::now() < until,
            "the scholarship office did not stop within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn get(url: &str) -> Value {
    reqwest::get(url).await.expect("GET").json().await.expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_finds_exactly_an_altered_replica_row_and_repairs_only_it() {
    let cluster = TestCluster::connect();
    let home = seam_local::Home::from_env().expect("SEAM_HOME");
    let out = Command::new(env!("CARGO_BIN_EXE_student-affairs"))
        .args(["demo", "--students", "20", "--json", "--keep-running"])
        .output()
        .expect("run the demo");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let _running = Running(pids(&stderr));
    let pids = started(&stderr);
    assert!(out.status.success(), "the demo failed: {stderr}");
    let data = home.root().join("student-affairs");
    let topology_file = data.join("topology.yaml");
    let topology = seam::topology::Topology::load(&topology_file).expect("the demo's topology");
    let urls: BTreeMap<String, String> = home.announced().into_iter().collect();
    let options = Options {
        buckets: 64,
        settle: Duration::from_secs(60),
        urls: urls.clone(),
        flows: Default::default(),
    };
    let client = cluster.client_config();
    let office = urls["scholarship-office"].clone();
    let digests = || async {
        let mut all = BTreeMap::new();
        for from in ["students-office", "se-group", "theory-group"] {
            let shared = get(&format!("{office}/shared/{from}/scholarship-office")).await;
            all.insert(from, shared["digest"].as_str().unwrap_or_default().to_string());
        }
        all
    };

    // Healthy: nothing to report, and asked to repair, nothing is replayed or changed.
    let before = digests().await;
    let healthy = once(&topology, &client, &options, true).await.expect("audit");
    assert_eq!(healthy.flows.len(), 11, "{healthy:#?}");
    for f in &healthy.flows {
        assert_eq!(f.state, State::InSync, "{f:#?}");
        assert!(f.source_rows > 0 || f.flow.contains("ta-pool"), "{f:#?}");
    }
    assert!(healthy.repairs.is_empty(), "{healthy:#?}");
    assert_eq!(digests().await, before, "a healthy reconcile changed a replica");
    assert_eq!(
        get(&format!("{office}/replay")).await["state"],
        Value::Null,
        "a healthy reconcile started a replay"
    );

    // Stop the office and alter one replica row in its store: a grade from the SE group.
    stop(pids["scholarship-office"]);
    let store_dir = data.join("scholarship-office");
    let (subject, key) = {
        let store = seam::store::open(&store_dir).expect("open the office's store");
        let (key, mut candidate) = store
            .model_scan("candidate/")
            .expect("candidates")
            .into_iter()
            .map(|(k, v)| (k, serde_json::from_slice::<Value>(&v).expect("a candidate")))
            .find(|(_, c)| {
                c["grades"]
                    .as_object()
                    .is_some_and(|g| g.values().any(|v| v[1] == "se-group"))
            })
            .expect("a candidate graded by the SE group");
        let grades = candidate["grades"].as_object_mut().expect("grades");
        let (_, graded) = grades
            .iter_mut()
            .find(|(_, v)| v[1] == "se-group")
            .expect("an SE grade");
        graded[0] = Value::from(if graded[0] == "5.0" { "1.0" } else { "5.0" });
        let mut set = store.write_set().expect("write set");
        set.model_put(&key, Some(serde_json::to_vec(&candidate).expect("encode")));
        set.keep();
        store.commit(&mut set, true).expect("commit");
        let student = key.trim_start_matches("candidate/").to_string();
        (format!("student/{student}"), key)
    };
    let port = office.rsplit(':').next().expect("port").to_string();
    let log = std::fs::File::create(data.join("scholarship-office.restarted.log")).expect("log");
    let _restarted = Restarted(
        Command::new(env!("CARGO_BIN_EXE_student-affairs"))
            .args(["serve", "scholarship-office", "--port", &port, "--store"])
            .arg(&store_dir)
            .arg("--topology")
            .arg(&topology_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("restart the office"),
    );
    let until = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{office}/health")).await.is_err() {
        assert!(Instant::now() < until, "the restarted office does not answer");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Exactly that subject, in exactly that flow.
    let found = once(&topology, &client, &options, false).await.expect("audit");
    println!("{}", render(&topology, &found, options.buckets, false));
    for f in &found.flows {
        if f.flow == "se-group->scholarship-office" {
            assert_eq!(f.state, State::Drifted, "{f:#?}");
            let drift: Vec<(&str, Kind)> = f.drift.iter().map(|d| (d.subject.as_str(), d.kind)).collect();
            assert_eq!(drift, vec![(subject.as_str(), Kind::Differs)], "{f:#?}");
        } else {
            assert_eq!(f.state, State::InSync, "{f:#?}");
        }
    }
    assert_eq!(found.drifted, 1);
    // What `--every` exports after such an audit.
    let metrics = seam_ops::reconcile::metrics::Metrics::default();
    metrics.audited(&found.flows, &found.repairs, 1.5);
    let text = metrics.render();
    for line in [
        "seam_reconcile_drifted_subjects{flow=\"se-group->scholarship-office\"} 1",
        "seam_reconcile_drifted_subjects{flow=\"students-office->scholarship-office\"} 0",
        "seam_reconcile_flows{state=\"drifted\"} 1",
        "seam_reconcile_flows{state=\"in-sync\"} 10",
        "seam_reconcile_runs_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }

    // Repaired by a targeted replay of that subject: one key swapped, then nothing drifts.
    let repaired = once(&topology, &client, &options, true)
        .await
        .expect("audit and repair");
    println!("{}", render(&topology, &repaired, options.buckets, true));
    assert_eq!(repaired.repairs.len(), 1, "{repaired:#?}");
    let r = &repaired.repairs[0];
    assert_eq!(r.consumer, "scholarship-office");
    assert_eq!(r.subjects, vec![subject.clone()]);
    assert!(r.swapped, "{r:#?}");
    assert_eq!(
        r.keys,
        vec![key.clone()],
        "the replay swapped more than the altered key"
    );
    assert!(
        repaired.after.iter().all(|f| f.state == State::InSync),
        "{:#?}",
        repaired.after
    );
    assert_eq!(repaired.drifted, 0);
    metrics.audited(&repaired.flows, &repaired.repairs, 2.0);
    assert!(
        metrics
            .render()
            .lines()
            .any(|l| l == "seam_reconcile_repaired_subjects_total{consumer=\"scholarship-office\"} 1"),
        "{}",
        metrics.render()
    );
    let replay = get(&format!("{office}/replay")).await;
    assert_eq!(replay["subjects"], serde_json::json!([subject]), "{replay:#}");
    assert!(
        replay["events"].as_u64().is_some_and(|n| n > 0 && n < 40),
        "a targeted replay reads only its subject's events: {replay:#}"
    );
    assert_eq!(digests().await, before, "the repair did not restore the replica");
    let again = once(&topology, &client, &options, true).await.expect("audit");
    assert_eq!(again.drifted, 0);
    assert!(again.repairs.is_empty());
}
