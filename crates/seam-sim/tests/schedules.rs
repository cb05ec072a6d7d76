//! The simulator's share of the test suite: many seeded schedules of the whole system with
//! every fault, each judged by the oracles; the seeds that once found a defect, kept as
//! regression cases; and determinism itself (a seed replays step for step).
//!
//! CI runs 1,000 schedules; `SEAM_SIM_SCHEDULES=N` runs N. (`SEAM_EXTENDED=1 scripts/test`
//! adds 10,000 more with the optimised binary: a debug build would take minutes for them.)

use seam_sim::{replay_command, run, run_many, shrink, Options};

fn schedules() -> u64 {
    std::env::var("SEAM_SIM_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

#[test]
fn every_schedule_keeps_every_invariant() {
    seam_sim::quiet_deliberate_panics();
    let options = Options::default();
    let summary = run_many(0, schedules(), &options);
    println!("{}", summary.line());
    for (fault, n) in &summary.faults {
        println!("  {fault}: {n}");
    }
    if let Some(first) = summary.failed.first() {
        let mut report = String::new();
        for outcome in &summary.failed {
            report.push_str(&format!("seed {}:\n", outcome.seed));
            for v in &outcome.violations {
                report.push_str(&format!("  {v}\n"));
            }
        }
        let shrunk = shrink(first.seed, &options);
        panic!(
            "{}\n{report}replay the first, shrunk to {} steps: {}",
            summary.line(),
            shrunk.steps,
            replay_command(first.seed, &shrunk)
        );
    }
    assert!(summary.fault_count() > 0, "schedules injected no faults");
    assert!(
        summary.acknowledged > 0,
        "no command was applied: the workload does nothing"
    );
}

/// Seeds that find a defect in the runtime when it is reintroduced, with what it was; each
/// failed before its fix. A seed names a schedule of this version of the simulator: changing
/// its workload or faults moves the schedules, so every defect also has a focused test where
/// one can be written (`tests/durability.rs`, the publisher's unit tests), and a seed that no
/// longer reproduces its defect is replaced by one that does (or dropped, if none of 10,000
/// does; the durable-seq defect was found by seed 5469 of the first version, seed 11 of a
/// later one, and is now covered by its focused test; the placeholder a putEvents relay filled
/// and a replay kept was found by seed 6488 of the version before registrations ran through
/// the runtime, none of seeds 0–19,999 of this one finds it, and seam-core's
/// `a_placeholder_a_foreign_event_writes_stops_being_one` covers it).
const REGRESSIONS: &[(u64, &str)] = &[
    (
        113,
        "after the topic grew, subjects hashed to new partitions: a reader of the history applied a subject's events out of order",
    ),
    (
        593,
        "a registration whose snapshot was refused (the topic grew after the cut) kept its spooled copy; every later start loaded it again and stopped",
    ),
];

#[test]
fn seeds_that_found_defects_pass() {
    seam_sim::quiet_deliberate_panics();
    for (seed, what) in REGRESSIONS {
        let outcome = run(*seed, &Options::default());
        assert!(
            outcome.violations.is_empty(),
            "seed {seed} ({what}) fails again: {:?}",
            outcome.violations
        );
    }
}

#[test]
fn a_seed_replays_step_for_step() {
    let options = Options {
        trace: true,
        ..Options::default()
    };
    let first = run(7, &options);
    let again = run(7, &options);
    assert!(first.trace.len() > 100, "a schedule has steps");
    assert_eq!(first.trace, again.trace);
    assert_eq!(first.faults, again.faults);
    let other = run(8, &options);
    assert_ne!(first.trace, other.trace, "another seed, another schedule");
}
