//! `seam reconcile`'s argument mistakes, each refused before anything is read, with what to do.
//! The audit and repair themselves are tested against the running demo in
//! `services/student-affairs/tests/reconcile.rs`.

use std::process::Command;

#[test]
fn reconcile_refuses_bad_arguments_with_what_to_do() {
    let topology = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/student-affairs.yaml");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_seam"))
            .arg("reconcile")
            .args(args)
            .output()
            .expect("run seam reconcile");
        assert!(!out.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["-t", topology, "--flow", "se-group->nobody"]);
    assert!(
        err.contains("no such flow") && err.contains("se-group->students-office"),
        "{err}"
    );
    let err = run(&["-t", topology, "--every", "10ms"]);
    assert!(err.contains("at least 1s"), "{err}");
    let err = run(&["-t", topology, "--metrics", "127.0.0.1:9464"]);
    assert!(err.contains("--every"), "{err}");
    let err = run(&["-t", topology, "--buckets", "0"]);
    assert!(err.contains("--buckets"), "{err}");
    let err = run(&["-t", topology, "--url", "students-office"]);
    assert!(err.contains("SERVICE=http"), "{err}");
    let err = run(&["-t", "nowhere.yaml"]);
    assert!(err.contains("nowhere.yaml") && !err.contains("panicked"), "{err}");
}
