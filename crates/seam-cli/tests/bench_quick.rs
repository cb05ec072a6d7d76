//! `seam bench` as CI runs it: every benchmark in quick mode from the one documented command,
//! each printing one JSON object a tool can read. No timing is asserted (machines are noisy and
//! ratios are the figures); what must hold is that every benchmark ran both sides to the end and
//! reported real numbers with its settings.
//!
//! The full run needs the test stack to itself (it measures broker CPU, and fault tests kill
//! brokers), so it is ignored here and run alone by `scripts/test` after the other tests.

use std::process::{Command, Output};

use serde_json::Value;

/// The benchmarks, in `seam bench all` order (the test stack runs PostgreSQL, so `cdc` runs).
const NAMES: [&str; 7] = [
    "translator",
    "replay",
    "bootstrap",
    "latency",
    "kafka-streams",
    "footprint",
    "cdc",
];

fn seam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(args)
        .output()
        .expect("run seam")
}

/// Checks one side (`baseline` or `subject`): a description and a positive median with a unit.
fn check_side(name: &str, which: &str, side: &Value) {
    let what = side["what"].as_str().unwrap_or_default();
    assert!(!what.is_empty(), "{name}: {which} says what it ran: {side}");
    let unit = side["unit"].as_str().unwrap_or_default();
    assert!(!unit.is_empty(), "{name}: {which} has a unit: {side}");
    let rounds = side["rounds"].as_array().map(Vec::len).unwrap_or(0);
    assert!(rounds >= 5, "{name}: {which} ran at least 5 rounds: {side}");
    let median = side["median"].as_f64().unwrap_or(f64::NAN);
    assert!(
        median.is_finite() && median > 0.0,
        "{name}: {which} median is a real figure: {side}"
    );
    let (min, max) = (
        side["min"].as_f64().unwrap_or(f64::NAN),
        side["max"].as_f64().unwrap_or(f64::NAN),
    );
    assert!(
        min <= median && median <= max,
        "{name}: {which} min <= median <= max: {side}"
    );
}

/// Checks one outcome (a benchmark or one of its cases).
fn check_outcome(outcome: &Value) {
    let name = outcome["name"].as_str().expect("a name");
    let ratio = outcome["ratio"].as_f64().unwrap_or(f64::NAN);
    assert!(
        ratio.is_finite() && ratio >= 0.0,
        "{name}: ratio is a number: {outcome}"
    );
    assert!(
        !outcome["target"].as_str().unwrap_or_default().is_empty(),
        "{name}: states its target"
    );
    assert!(outcome["met"].is_boolean(), "{name}: says whether the target is met");
    check_side(name, "baseline", &outcome["baseline"]);
    check_side(name, "subject", &outcome["subject"]);
    let settings = outcome["settings"].as_object().expect("settings");
    assert!(!settings.is_empty(), "{name}: prints its settings");
    let cluster = settings.get("cluster").and_then(Value::as_str).unwrap_or_default();
    assert!(
        cluster.contains("broker(s)"),
        "{name}: names the cluster's shape: {settings:?}"
    );
    let engine = settings.get("store_engine").and_then(Value::as_str).unwrap_or_default();
    assert!(
        ["sled", "fjall"].contains(&engine),
        "{name}: names the store engine: {settings:?}"
    );
    for case in outcome["cases"].as_array().into_iter().flatten() {
        check_outcome(case);
    }
}

#[test]
#[ignore = "needs the test stack to itself; scripts/test runs it alone after the other tests"]
fn every_benchmark_runs_in_quick_mode_and_prints_one_json_object() {
    let out = seam(&["bench", "all", "--quick", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "seam bench all --quick --json failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let outcomes: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}")))
        .collect();
    let names: Vec<&str> = outcomes.iter().filter_map(|o| o["name"].as_str()).collect();
    assert_eq!(names, NAMES, "one object per benchmark, in order");
    for outcome in &outcomes {
        check_outcome(outcome);
    }
    for (name, cases) in [("translator", 2), ("latency", 2)] {
        let o = outcomes.iter().find(|o| o["name"] == name).expect("present");
        let n = o["cases"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(n, cases, "{name} reports each of its cases");
        let all_met = o["cases"].as_array().into_iter().flatten().all(|c| c["met"] == true);
        assert_eq!(o["met"], all_met, "{name} is met only when every case is");
    }
    let latency = outcomes.iter().find(|o| o["name"] == "latency").expect("present");
    for case in latency["cases"].as_array().into_iter().flatten() {
        let s = &case["settings"];
        let quiet = &s["echo_vs_quiet_seam"];
        for figure in ["baseline_p50_us", "baseline_p99_us", "seam_p50_us", "seam_p99_us"] {
            assert!(
                quiet[figure]["median"].as_f64().is_some_and(|v| v > 0.0),
                "the echo vs quiet seam comparison has {figure}: {quiet}"
            );
        }
        let rounds = s["seam_rounds"].as_array().cloned().unwrap_or_default();
        assert!(rounds.len() >= 5, "each round is diagnosed: {s}");
        for round in rounds {
            assert!(
                round["flushes"].as_f64().is_some_and(|f| f > 0.0)
                    && round["events_per_commit"].as_f64().is_some_and(|e| e > 0.0)
                    && round["max_lag_events"].is_number()
                    && round["max_publisher_backlog_events"].is_number(),
                "a round reports its flushes, commits, lag and backlog: {round}"
            );
        }
    }
    let cdc = outcomes.iter().find(|o| o["name"] == "cdc").expect("present");
    for side in ["baseline", "subject"] {
        assert!(
            cdc[side]["cpu_s_per_million"].as_f64().is_some_and(|c| c > 0.0),
            "cdc reports the CPU per row change of its {side}: {cdc}"
        );
    }
    let streams = outcomes.iter().find(|o| o["name"] == "kafka-streams").expect("present");
    let with_brokers = &streams["settings"]["including_broker_cpu"];
    assert!(
        with_brokers["ratio"].as_f64().is_some_and(|r| r > 0.0),
        "kafka-streams states the ratio with the brokers' CPU counted: {with_brokers}"
    );
}

/// The engine that is not the default runs a benchmark end to end too, and says so.
#[test]
#[ignore = "needs the test stack to itself; scripts/test runs it alone after the other tests"]
fn the_other_store_engine_runs_the_translator_benchmark() {
    let out = seam(&["bench", "translator", "--quick", "--json", "--store-engine", "sled"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "seam bench translator --store-engine sled failed:\n{stderr}"
    );
    let outcome: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    check_outcome(&outcome);
    assert_eq!(outcome["settings"]["store_engine"], "sled", "{outcome}");
}

#[test]
fn bad_bench_arguments_are_named() {
    let out = seam(&["bench", "translatr", "--quick"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("translatr"));
    let out = seam(&["bench", "replay", "--rounds", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("5..=100"));
    let out = seam(&["bench", "translator", "--store-engine", "rocks"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rocks"));
    let out = seam(&["bench", "all", "--json", "--markdown"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--markdown"));
}

/// Brokers that do not answer are named, with what to do, before any benchmark starts: both for
/// one benchmark and for `all`, whose `--markdown` output is usually redirected into a file.
#[test]
fn unreachable_brokers_are_named_with_what_to_do() {
    for args in [
        &["bench", "footprint", "--quick"][..],
        &["bench", "all", "--quick", "--markdown"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_seam"))
            .args(args)
            .env("SEAM_BROKERS", "127.0.0.1:1")
            .env_remove("SEAM_KAFKA_CONFIG")
            .output()
            .expect("run seam");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed nothing to stdout");
        for needle in [
            "cannot reach the Kafka cluster at 127.0.0.1:1",
            "SEAM_BROKERS",
            "seam local up",
        ] {
            assert!(stderr.contains(needle), "{args:?}: `{needle}` in:\n{stderr}");
        }
    }
}

/// `seam bench cdc` without a PostgreSQL says how to get one, before it creates anything.
#[test]
fn the_cdc_benchmark_without_postgres_says_how_to_get_one() {
    let cluster = seam_testkit::TestCluster::connect();
    let empty_home = std::env::temp_dir().join(seam_testkit::unique_name("no-stack-home"));
    let out = Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(["bench", "cdc", "--quick"])
        .env("SEAM_HOME", &empty_home)
        .env("SEAM_BROKERS", cluster.bootstrap())
        .env("SEAM_REGISTRY", cluster.registry())
        .env_remove("SEAM_POSTGRES")
        .output()
        .expect("run seam");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in [
        "seam bench cdc needs PostgreSQL",
        "seam local up --postgres",
        "SEAM_POSTGRES",
    ] {
        assert!(stderr.contains(needle), "`{needle}` in:\n{stderr}");
    }
}
