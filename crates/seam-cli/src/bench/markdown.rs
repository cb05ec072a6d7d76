//! BENCHMARKS.md from a run of every benchmark: when, which commit, which machine and cluster,
//! each ratio against its target, and each benchmark's full figures and settings.

use super::report::Outcome;

/// The whole document.
pub fn document(outcomes: &[Outcome], endpoints: &super::Setup, quick: bool) -> String {
    let mut out = vec![
        "# Benchmarks".to_string(),
        String::new(),
        "Written by `seam bench all --markdown` (see the README). Every figure is a median over".to_string(),
        "interleaved rounds of seam and its baseline in the same run, on the same cluster; only the".to_string(),
        "ratios carry across machines.".to_string(),
        String::new(),
        format!(
            "- date: {}",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        ),
        format!("- commit: {}", commit()),
        format!("- machine: {}", machine()),
        format!("- cluster: {} ({})", endpoints.bootstrap_servers(), endpoints.origin),
        format!("- store engine of seam's nodes: {}", endpoints.engine),
        format!("- mode: {}", if quick { "quick (`--quick`)" } else { "full" }),
        String::new(),
        "| benchmark | ratio | target | met |".to_string(),
        "| --- | --- | --- | --- |".to_string(),
    ];
    for o in outcomes {
        let cases: Vec<&Outcome> = if o.cases.is_empty() {
            vec![o]
        } else {
            o.cases.iter().collect()
        };
        for c in cases {
            out.push(format!(
                "| {} | {:.3} | {} | {} |",
                c.name,
                c.ratio,
                c.target,
                if c.met { "yes" } else { "**no**" }
            ));
        }
    }
    for o in outcomes {
        out.push(String::new());
        out.push(format!("## {}", o.name));
        out.push(String::new());
        out.push("```".into());
        out.push(o.render());
        out.push("```".into());
    }
    out.join("\n")
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cpus} cores ({model}), {mem_gb:.0} GiB RAM, brokers and benchmark on the same cores")
}
