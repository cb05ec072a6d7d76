//! `seam register`, `seam replay` and `seam snapshot import` as an operator meets them when
//! something is wrong: a missing topology, an undeclared service, a consumer that is not
//! running, a snapshot that is truncated or from another service. Each gets a message naming
//! the problem and the fix, a non-zero exit code, and the topology file stays untouched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use seam::offsets::OffsetMap;
use seam::snapshot::{file, SnapshotMeta, SnapshotRecord};
use seam_testkit::unique_name;

fn seam(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(args)
        .current_dir(dir)
        .env("SEAM_HOME", dir.join("home"))
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

fn snapshot(service: &str) -> Vec<u8> {
    let mut offsets = OffsetMap::default();
    offsets.set(&format!("{service}.events"), 0, 3);
    let meta = SnapshotMeta {
        service: service.into(),
        seq: 3,
        offsets,
        created: "2026-11-25T00:00:00.000Z".into(),
        schemas: [(1, r#"{"type":"record","name":"X","fields":[]}"#.to_string())].into(),
        records: 0,
        journal: None,
    };
    let records: Vec<SnapshotRecord> = (0..40)
        .map(|i| SnapshotRecord {
            subject: format!("s/{i}"),
            schema_id: 1,
            body: vec![0; 64],
        })
        .collect();
    file::write(Vec::new(), &meta, &records).expect("write")
}

/// A folder with `deploy/student-affairs.yaml` declaring `a` and `b`.
fn workspace() -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name("register-cli"));
    std::fs::create_dir_all(dir.join("deploy/schemas")).expect("dir");
    std::fs::write(dir.join("deploy/schemas/X.avsc"), "{}").expect("schema");
    std::fs::write(
        dir.join("deploy/student-affairs.yaml"),
        "apiVersion: seam/v1\nname: t\nservices:\n  - name: a\n    partitions: 1\n    schemas: schemas\n  - name: b\n    partitions: 1\n    schemas: schemas\n",
    )
    .expect("topology");
    dir
}

fn topology(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("deploy/student-affairs.yaml")).expect("read")
}

#[test]
fn register_refuses_bad_input_without_touching_the_topology() {
    let dir = workspace();
    let before = topology(&dir);

    let elsewhere = std::env::temp_dir().join(unique_name("register-cli-empty"));
    std::fs::create_dir_all(&elsewhere).expect("dir");
    let out = seam(&elsewhere, &["register", "b", "--source", "a"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no topology file at deploy/student-affairs.yaml") && text(&out).contains("-t FILE"),
        "{}",
        text(&out)
    );

    let out = seam(&dir, &["register", "b", "--source", "nope"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("declares no service nope"), "{}", text(&out));

    let out = seam(&dir, &["register", "b", "--source", "a", "--from-beginning"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot find a running b") && text(&out).contains("--url"),
        "{}",
        text(&out)
    );

    let good = snapshot("a");
    let truncated = dir.join("truncated.avro");
    std::fs::write(&truncated, &good[..good.len() - 40]).expect("write");
    let out = seam(
        &dir,
        &["register", "b", "--source", "a", "--snapshot", "truncated.avro"],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("truncated"), "{}", text(&out));

    let foreign = dir.join("foreign.avro");
    std::fs::write(&foreign, snapshot("b")).expect("write");
    let out = seam(&dir, &["register", "b", "--source", "a", "--snapshot", "foreign.avro"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("is a snapshot of b, not of a"), "{}", text(&out));

    let out = seam(
        &dir,
        &[
            "register",
            "b",
            "--source",
            "a",
            "--snapshot",
            "x.avro",
            "--from-beginning",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "conflicting flags are a usage error: {}",
        text(&out)
    );

    let out = seam(&dir, &["snapshot", "import", "b", "truncated.avro"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("truncated"), "{}", text(&out));

    assert_eq!(topology(&dir), before, "nothing was changed");
}

#[test]
fn replay_names_what_is_missing() {
    let dir = workspace();
    let out = seam(&dir, &["replay", "b"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("cannot find a running b"), "{}", text(&out));

    let out = seam(&dir, &["replay", "b", "--url", "http://127.0.0.1:9"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("is it running?"), "{}", text(&out));

    let out = seam(&dir, &["replay", "b", "--snapshot", "a=http://x/snapshot"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--snapshot needs --from-snapshot: {}",
        text(&out)
    );
    let out = seam(&dir, &["replay", "b", "--from-beginning", "--from-snapshot"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
