//! What the end-to-end tests share: the services `demo --keep-running` leaves behind, stopped
//! however a test ends.

use std::time::Duration;

/// Processes stopped (SIGTERM) when dropped, so a failing test leaves no service running.
pub struct Running(pub Vec<i32>);

impl Drop for Running {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGTERM);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// `(service, pid)` of each service `demo --keep-running` left running, from what it printed
/// (`<service>  <url>  (pid 123, log ...)`).
pub fn started(stderr: &str) -> std::collections::BTreeMap<String, i32> {
    stderr
        .lines()
        .filter_map(|line| {
            let name = line.split_whitespace().next()?;
            let pid = line
                .split("(pid ")
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?;
            Some((name.to_string(), pid.parse().ok()?))
        })
        .collect()
}

/// The pids of [`started`].
pub fn pids(stderr: &str) -> Vec<i32> {
    started(stderr).into_values().collect()
}
