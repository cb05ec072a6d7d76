//! `seam-sim`: runs seeded schedules of the simulated system and reports what the oracles
//! found; a failing seed is shrunk and printed with the command that replays it.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use seam_sim::{replay_command, run, run_many, shrink, Fault, Options};

/// Deterministic simulation of the Student Affairs services and the warehouse fixture.
#[derive(Debug, Parser)]
#[command(name = "seam-sim")]
struct Args {
    /// Schedules to run (seeds `--from` onwards).
    #[arg(long, default_value_t = 1000)]
    schedules: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Run this one seed (and print its trace with --trace).
    #[arg(long)]
    seed: Option<u64>,
    /// Steps with faults per schedule, before settling.
    #[arg(long, default_value_t = 600)]
    steps: usize,
    /// Faults to inject, comma-separated, or `all` / `none`: crash, redelivery, rebalance,
    /// retention, cluster-down, registry-down, registry-slow, poison, put-race, relay, deploy,
    /// replay, register-again, partition-growth.
    #[arg(long, default_value = "all")]
    faults: String,
    /// Print the schedule step by step.
    #[arg(long)]
    trace: bool,
}

fn faults(text: &str) -> Result<Vec<Fault>, String> {
    match text {
        "all" => Ok(Fault::ALL.to_vec()),
        "none" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(|name| {
                Fault::parse(name.trim()).ok_or_else(|| {
                    let known: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                    format!("unknown fault {name:?}; known: {}, or all / none", known.join(", "))
                })
            })
            .collect(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    seam_sim::quiet_deliberate_panics();
    let faults = match faults(&args.faults) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let options = Options {
        steps: args.steps,
        faults,
        trace: args.trace,
    };
    if let Some(seed) = args.seed {
        let outcome = run(seed, &options);
        for line in &outcome.trace {
            println!("{line}");
        }
        for s in &outcome.skipped {
            println!("skipped: {s}");
        }
        let faults: usize = outcome.faults.values().sum();
        println!(
            "seed {seed}: {} steps, {faults} faults injected, {} violations",
            outcome.steps,
            outcome.violations.len()
        );
        for v in &outcome.violations {
            println!("VIOLATION {v}");
        }
        return if outcome.violations.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let started = Instant::now();
    let summary = run_many(
        args.from,
        args.schedules,
        &Options {
            trace: false,
            ..options.clone()
        },
    );
    println!("{} in {:.1} s", summary.line(), started.elapsed().as_secs_f64());
    for (name, n) in &summary.faults {
        println!("  {name}: {n}");
    }
    if let Some(first) = summary.failed.first() {
        for outcome in &summary.failed {
            println!("seed {} failed:", outcome.seed);
            for v in &outcome.violations {
                println!("  VIOLATION {v}");
            }
        }
        let shrunk = shrink(first.seed, &options);
        println!(
            "seed {} shrinks to {} steps with faults {:?}; replay it with:\n  {}",
            first.seed,
            shrunk.steps,
            shrunk.faults.iter().map(|f| f.name()).collect::<Vec<_>>(),
            replay_command(first.seed, &shrunk)
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
