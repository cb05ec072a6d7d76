//! Figures and their report: every benchmark runs baseline and subject interleaved, round by
//! round, and reports medians with min–max, the ratio, CPU per million events, the target and
//! every setting, as text or as one JSON object.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::cpu::Used;

/// One timed run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Run {
    /// Events it moved.
    pub events: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// CPU it used.
    pub cpu: Used,
}

impl Run {
    /// Events per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// A figure over rounds: median, min and max.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// Median over rounds.
    pub median: f64,
    /// Lowest.
    pub min: f64,
    /// Highest.
    pub max: f64,
    /// e.g. `events/s`, `s`, `µs`.
    pub unit: String,
    /// Each round's value, in order.
    pub rounds: Vec<f64>,
}

impl Figure {
    /// The figure of `values`.
    pub fn of(values: &[f64], unit: &str) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            median: median(&sorted),
            min: sorted.first().copied().unwrap_or(0.0),
            max: sorted.last().copied().unwrap_or(0.0),
            unit: unit.to_string(),
            rounds: values.to_vec(),
        }
    }
}

/// The median of sorted values.
pub fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// One side of a comparison: its figure and the CPU it cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// What was run.
    pub what: String,
    /// The measured figure.
    #[serde(flatten)]
    pub figure: Figure,
    /// CPU-seconds of this process per million events (median over rounds).
    pub cpu_s_per_million: Option<f64>,
    /// CPU-seconds of the brokers per million events (median over rounds; local stack only).
    pub broker_cpu_s_per_million: Option<f64>,
}

impl Side {
    /// A throughput side from runs.
    pub fn throughput(what: &str, runs: &[Run]) -> Self {
        let rates: Vec<f64> = runs.iter().map(Run::rate).collect();
        Self::from_runs(what, Figure::of(&rates, "events/s"), runs)
    }

    /// A side with any figure, CPU from `runs`.
    pub fn from_runs(what: &str, figure: Figure, runs: &[Run]) -> Self {
        let per_million = |f: &dyn Fn(&Run) -> Option<f64>| -> Option<f64> {
            let mut v: Vec<f64> = runs
                .iter()
                .filter(|r| r.events > 0)
                .filter_map(|r| f(r).map(|cpu| cpu * 1e6 / r.events as f64))
                .collect();
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| median(&v))
        };
        Self {
            what: what.to_string(),
            figure,
            cpu_s_per_million: per_million(&|r| Some(r.cpu.own)),
            broker_cpu_s_per_million: per_million(&|r| r.cpu.brokers),
        }
    }
}

/// A benchmark's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// Benchmark name.
    pub name: String,
    /// subject ÷ baseline (as the target reads it).
    pub ratio: f64,
    /// e.g. `>= 0.50`.
    pub target: String,
    /// Whether the ratio meets the target.
    pub met: bool,
    /// The baseline run side by side.
    pub baseline: Side,
    /// seam.
    pub subject: Side,
    /// Every setting that shapes the figures.
    pub settings: BTreeMap<String, Value>,
    /// Sub-cases (e.g. per message size); the top-level figures are the first case's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cases: Vec<Outcome>,
}

impl Outcome {
    /// Text for a terminal and for BENCHMARKS.md.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let all: Vec<&Outcome> = if self.cases.is_empty() {
            vec![self]
        } else {
            self.cases.iter().collect()
        };
        for o in all {
            out.push(format!(
                "{}: ratio {:.3} (target {}: {})",
                o.name,
                o.ratio,
                o.target,
                if o.met { "met" } else { "MISSED" }
            ));
            for (label, side) in [("baseline", &o.baseline), ("seam", &o.subject)] {
                out.push(format!(
                    "  {label:<8} {:<48} median {:>12.1} {}  (min {:.1}, max {:.1}, {} rounds)  cpu {} s/M events, broker {} s/M",
                    side.what,
                    side.figure.median,
                    side.figure.unit,
                    side.figure.min,
                    side.figure.max,
                    side.figure.rounds.len(),
                    side.cpu_s_per_million.map_or("-".into(), |c| format!("{c:.2}")),
                    side.broker_cpu_s_per_million.map_or("-".into(), |c| format!("{c:.2}")),
                ));
            }
            let settings: Vec<String> = o.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push(format!("  settings: {}", settings.join(", ")));
        }
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_take_the_median_and_the_range() {
        let f = Figure::of(&[5.0, 1.0, 3.0, 4.0], "s");
        assert_eq!((f.median, f.min, f.max), (3.5, 1.0, 5.0));
        assert_eq!(Figure::of(&[2.0, 9.0, 4.0], "s").median, 4.0);
    }

    #[test]
    fn cpu_per_million_events_is_the_median_over_rounds() {
        let runs = [
            Run {
                events: 1_000_000,
                seconds: 2.0,
                cpu: Used {
                    own: 3.0,
                    brokers: Some(1.0),
                },
            },
            Run {
                events: 500_000,
                seconds: 1.0,
                cpu: Used {
                    own: 2.0,
                    brokers: Some(1.0),
                },
            },
            Run {
                events: 1_000_000,
                seconds: 4.0,
                cpu: Used {
                    own: 5.0,
                    brokers: None,
                },
            },
        ];
        let side = Side::throughput("x", &runs);
        assert_eq!(side.figure.median, 500_000.0);
        assert_eq!(side.cpu_s_per_million, Some(4.0));
        assert_eq!(side.broker_cpu_s_per_million, Some(1.5));
    }
}
