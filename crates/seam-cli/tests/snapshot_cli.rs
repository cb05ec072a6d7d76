//! `seam snapshot inspect | export` as an operator meets them: an intact file is described, and
//! files that are not snapshots, truncated or unreachable get a clear error, never a panic.

use std::process::{Command, Output};

use seam::offsets::OffsetMap;
use seam::snapshot::{file, SnapshotMeta, SnapshotRecord};
use seam_testkit::unique_name;

fn seam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seam"))
        .args(args)
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

fn sample() -> Vec<u8> {
    let mut offsets = OffsetMap::default();
    offsets.set("orders.events", 0, 7);
    let meta = SnapshotMeta {
        service: "orders".into(),
        seq: 7,
        offsets,
        created: "2026-11-25T00:00:00.000Z".into(),
        schemas: [(1, r#"{"type":"record","name":"X","fields":[]}"#.to_string())].into(),
        records: 0,
        journal: None,
    };
    let records: Vec<SnapshotRecord> = (0..50)
        .map(|i| SnapshotRecord {
            subject: format!("order/{i}"),
            schema_id: 1,
            body: vec![0; 64],
        })
        .collect();
    file::write(Vec::new(), &meta, &records).expect("write")
}

#[test]
fn inspect_describes_an_intact_snapshot_and_refuses_broken_ones() {
    let dir = std::env::temp_dir().join(unique_name("snapshot-cli"));
    std::fs::create_dir_all(&dir).expect("dir");
    let good = dir.join("good.avro");
    std::fs::write(&good, sample()).expect("write");
    let out = seam(&["snapshot", "inspect", &good.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("intact snapshot of orders at seq 7, 50 records"),
        "{}",
        text(&out)
    );

    let bytes = sample();
    let truncated = dir.join("truncated.avro");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let junk = dir.join("junk.avro");
    std::fs::write(&junk, b"{\"not\": \"avro\"}").expect("write");
    for (file, says) in [
        (&truncated, "truncated"),
        (&junk, "not a readable snapshot"),
        (&dir.join("missing.avro"), "opening"),
    ] {
        let out = seam(&["snapshot", "inspect", &file.display().to_string()]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains(says) && !text(&out).contains("panicked"),
            "{}: {}",
            file.display(),
            text(&out)
        );
    }
    let out = seam(&[
        "snapshot",
        "export",
        "--url",
        "http://127.0.0.1:9",
        "-o",
        &dir.join("x.avro").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("GET http://127.0.0.1:9/snapshot"), "{}", text(&out));
    let _ = std::fs::remove_dir_all(dir);
}
