//! `seam dlq` as an operator meets it: listing when nothing failed, and clear errors for a
//! consumer that does not exist or bad arguments.

use std::process::{Command, Output};

use seam_testkit::{unique_name, TestCluster};

fn seam(cluster: &TestCluster, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(args)
        .env("SEAM_BROKERS", cluster.bootstrap())
        .env("SEAM_REGISTRY", cluster.registry())
        .output()
        .expect("run seam")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn an_empty_dlq_lists_nothing_and_json_is_an_empty_array() {
    let cluster = TestCluster::connect();
    let consumer = unique_name("quiet");
    cluster
        .create_topic(&format!("{consumer}.dlq"), 1, cluster.replication(), &[])
        .await;
    let out = seam(&cluster, &["dlq", "list", "--consumer", &consumer]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no dead letters"));
    let out = seam(&cluster, &["dlq", "list", "--consumer", &consumer, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(parsed, serde_json::json!([]));
    let out = seam(&cluster, &["dlq", "redrive", "--consumer", &consumer]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("nothing parked"), "{}", text(&out));
}

#[tokio::test]
async fn an_unknown_consumer_is_named_with_what_to_do() {
    let cluster = TestCluster::connect();
    let consumer = unique_name("nobody");
    for args in [
        vec!["dlq", "list", "--consumer", consumer.as_str()],
        vec!["dlq", "redrive", "--consumer", consumer.as_str()],
        vec![
            "dlq",
            "discard",
            "--consumer",
            consumer.as_str(),
            "--subject",
            "order/1",
            "--reason",
            "typo",
        ],
    ] {
        let out = seam(&cluster, &args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let msg = text(&out);
        assert!(
            msg.contains(&format!("{consumer}.dlq")) && msg.contains("seam dlq list"),
            "{msg}"
        );
        assert!(!msg.contains("panicked"), "{msg}");
    }
}

#[test]
fn redrive_without_a_consumer_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(["dlq", "redrive"])
        .output()
        .expect("run seam");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--consumer"));
}

#[test]
fn a_discard_needs_a_subject_and_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(["dlq", "discard", "--consumer", "c", "--subject", "order/1"])
        .output()
        .expect("run seam");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reason"));
    let out = Command::new(env!("CARGO_BIN_EXE_seam"))
        .args([
            "dlq",
            "discard",
            "--consumer",
            "c",
            "--subject",
            "order/1",
            "--reason",
            " ",
        ])
        .output()
        .expect("run seam");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("give a reason"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
