//! Durability of the writer's steps on the simulated engine, one scenario at a time: what the
//! writer reports durable (what the publisher may publish) survives any crash.

use std::sync::Arc;

use seam::runtime::Stepper;
use seam::service::Cause;
use seam::store::Store;
use seam_sim::engine::SimEngine;
use seam_warehouse_fixture::orders;

fn place(order: &str) -> orders::Command {
    orders::Command::Place {
        order: order.into(),
        customer: "Ada".into(),
    }
}

/// A group written but not flushed, then a snapshot: the snapshot's commit had nothing of
/// its own to write and raised the durable seq without flushing, so the publisher could
/// publish an entry a crash then took back (found by the simulator, seed 5469).
#[test]
fn a_snapshot_after_an_unflushed_group_flushes_before_raising_the_durable_seq() {
    let engine = Arc::new(SimEngine::default());
    let store = Store::with_engine(engine.clone()).expect("store");
    let catalog = Arc::new(seam_warehouse_fixture::orders_catalog().expect("catalog"));
    let mut writer = Stepper::new("orders", store.clone(), Arc::new(orders::Orders), catalog).expect("writer");
    let _answer = writer.command(place("1"), Cause::default()).expect("command");
    writer.write().expect("write");
    assert_eq!(writer.durable_seq(), 0, "written, not flushed");
    let spool = std::env::temp_dir().join(format!("seam-sim-durability-{}.records", std::process::id()));
    let mut exported = writer.snapshot(spool.clone()).expect("snapshot");
    let cut = exported.poll().flatten().expect("answered").expect("exported");
    let _ = std::fs::remove_file(&spool);
    assert_eq!(cut.0, 1, "the snapshot's cut includes the written entry");
    let durable = writer.durable_seq();
    let survived = Store::with_engine(Arc::new(engine.crashed(0))).expect("reopen");
    assert!(
        survived.last_seq().expect("last seq") >= durable,
        "the writer reported seq {durable} durable, but a crash kept the journal only up to {}",
        survived.last_seq().expect("last seq")
    );
}

/// The publisher's progress survives a crash: once retention took a partition's last records,
/// it is all that tells which entries are out (found by the simulator, seeds 1320, 2061, 2528).
#[test]
fn the_published_seq_survives_a_crash() {
    let engine = Arc::new(SimEngine::default());
    let store = Store::with_engine(engine.clone()).expect("store");
    store.set_published_seq(7).expect("set");
    let survived = Store::with_engine(Arc::new(engine.crashed(0))).expect("reopen");
    assert_eq!(survived.published_seq().expect("published"), 7);
}
