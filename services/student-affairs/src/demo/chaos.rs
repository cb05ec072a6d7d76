//! `demo --chaos`: while the scenario runs, kill services with SIGKILL at random (seeded) moments
//! and restart them on their ports, and kill one broker of the three and restart it. Every flow
//! must still end in sync: no event lost or applied twice, whatever was killed when.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use super::processes::Services;

/// How much chaos.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Seed of the schedule (printed, so a run can be repeated).
    pub seed: u64,
    /// Services to kill (one at a time).
    pub kills: u32,
}

/// What the chaos did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChaosReport {
    /// The seed of the schedule.
    pub seed: u64,
    /// Services killed with SIGKILL and restarted, in order.
    pub killed: Vec<String>,
    /// The broker killed with SIGKILL and restarted, if the run got that far.
    pub broker_killed: Option<u8>,
}

/// A small seeded generator (the schedule must be repeatable from its seed, nothing more).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Runs the schedule until it is done or `stop` is set: a kill every one to four seconds, the
/// broker half way.
pub async fn run(services: Services, plan: Plan, brokers: u8, stop: Arc<AtomicBool>) -> anyhow::Result<ChaosReport> {
    let home = seam_local::Home::from_env()?;
    let mut rng = Rng(plan.seed);
    let mut report = ChaosReport {
        seed: plan.seed,
        ..Default::default()
    };
    for k in 0..plan.kills {
        tokio::time::sleep(Duration::from_millis(1000 + rng.below(3000))).await;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if k == plan.kills / 2 && report.broker_killed.is_none() {
            let id = 1 + rng.below(u64::from(brokers)) as u8;
            seam_local::kill_broker(&home, id).with_context(|| format!("killing broker {id}"))?;
            tokio::time::sleep(Duration::from_millis(2000 + rng.below(3000))).await;
            seam_local::restart_broker(&home, id)
                .await
                .with_context(|| format!("restarting broker {id}"))?;
            report.broker_killed = Some(id);
        }
        let started = services.started();
        let Some((which, _)) = started.get(rng.below(started.len() as u64) as usize) else {
            continue;
        };
        if services.kill(*which).await {
            tokio::time::sleep(Duration::from_millis(200 + rng.below(1500))).await;
            // As an orchestrator would: a start that fails (the cluster was moving) is retried.
            let mut attempt = 1;
            while let Err(e) = services.restart(*which).await {
                if attempt == 5 {
                    return Err(e.context(format!("restarting {} ({attempt} attempts)", which.name())));
                }
                tracing::warn!(service = which.name(), error = %e, "restart failed; starting it again");
                tokio::time::sleep(Duration::from_secs(2)).await;
                attempt += 1;
            }
            report.killed.push(which.name().to_string());
        }
    }
    Ok(report)
}
