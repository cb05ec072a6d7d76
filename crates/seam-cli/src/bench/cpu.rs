//! CPU time of this process and of the local stack's brokers, from `/proc`: a benchmark reports
//! CPU-seconds per million events for seam and for the broker, so a figure bought with more CPU
//! (or with broker work) shows as such.

use seam_local::{Home, StackState};

/// `/proc` counts in USER_HZ, which Linux fixes at 100 for user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) of `pid`, or of this process.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    // The command name may contain spaces; fields start after its closing parenthesis.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Resident set size of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The local stack's broker processes (none when the cluster is not the local stack).
pub fn broker_pids() -> Vec<u32> {
    let Ok(home) = Home::from_env() else { return Vec::new() };
    let Ok(Some(state)) = StackState::load(&home) else {
        return Vec::new();
    };
    state
        .nodes
        .iter()
        .filter_map(|n| n.process.filter(|p| p.is_running()).map(|p| p.pid))
        .collect()
}

/// CPU used by this process and by the brokers between `start` and `stop`.
#[derive(Debug, Clone)]
pub struct Meter {
    own: f64,
    brokers: Vec<(u32, f64)>,
}

/// What a [`Meter`] measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Used {
    /// This process.
    pub own: f64,
    /// All brokers together; `None` when they are not local.
    pub brokers: Option<f64>,
}

impl Meter {
    /// Starts counting.
    pub fn start() -> Self {
        Self {
            own: cpu_seconds(None).unwrap_or(0.0),
            brokers: broker_pids()
                .into_iter()
                .map(|p| (p, cpu_seconds(Some(p)).unwrap_or(0.0)))
                .collect(),
        }
    }

    /// The CPU used since `start`.
    pub fn stop(&self) -> Used {
        let own = cpu_seconds(None).unwrap_or(0.0) - self.own;
        let brokers = (!self.brokers.is_empty()).then(|| {
            self.brokers
                .iter()
                .map(|(p, at)| cpu_seconds(Some(*p)).map_or(0.0, |now| now - at))
                .sum()
        });
        Used { own, brokers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let before = cpu_seconds(None).expect("own stat");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(cpu_seconds(None).expect("own stat") >= before);
        assert!(rss_bytes(std::process::id()).expect("own status") > 1024 * 1024);
    }
}
