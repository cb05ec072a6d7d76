//! Starts the stack's JVMs as detached processes and stops them again.
//!
//! The stack outlives the `seam local up` command that started it, so each JVM runs in
//! its own process group with its output in a log file. A pid alone is not an identity
//! (pids are reused), so a process is recorded with its kernel start time and only
//! signalled while both still match.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::error::LocalError;

/// A process started by seam: its pid plus the start time that makes the pid unambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks after boot (field 22 of /proc/<pid>/stat).
    pub start_ticks: u64,
}

impl Proc {
    /// True while this exact process exists and has not fully exited. A killed JVM's
    /// main thread turns zombie before its other threads finish exiting, and those still
    /// hold its sockets, so a process counts as exited only when no thread is left.
    pub fn is_running(&self) -> bool {
        match stat(self.pid) {
            Some((state, ticks)) if ticks == self.start_ticks => !exited(state) || threads_alive(self.pid),
            _ => false,
        }
    }

    /// True while the process is dying: its main thread has exited, other threads not yet.
    pub fn is_exiting(&self) -> bool {
        matches!(stat(self.pid), Some((state, ticks)) if ticks == self.start_ticks && exited(state))
            && threads_alive(self.pid)
    }

    /// Waits up to `limit` for a dying process to be gone, so its ports are free again.
    pub fn wait_if_exiting(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.is_exiting() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` if the process is still the one we started.
    pub fn signal(&self, signal: Signal) {
        if self.is_running() {
            // The process may exit between the check and the signal: ESRCH is fine.
            let _ = kill(Pid::from_raw(self.pid as i32), signal);
        }
    }
}

/// Starts `cmd` detached from this process (own process group, stdin closed), with
/// stdout and stderr appended to `log`.
pub fn spawn_detached(mut cmd: Command, log: &Path) -> Result<Proc, LocalError> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(LocalError::io("cannot open log file", log))?;
    let err = out.try_clone().map_err(LocalError::io("cannot open log file", log))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
    let program = cmd.get_program().to_owned();
    let child = cmd
        .spawn()
        .map_err(LocalError::io("cannot start", std::path::PathBuf::from(program)))?;
    let pid = child.id();
    // The child is deliberately not waited for: it must outlive this command.
    drop(child);
    let start_ticks = stat(pid).map(|(_, t)| t).unwrap_or(0);
    Ok(Proc { pid, start_ticks })
}

/// SIGTERM to all, wait up to `grace`, then SIGKILL whatever is left. Returns the
/// processes that had to be killed.
pub fn stop_all(procs: &[Proc], grace: Duration) -> Vec<Proc> {
    stop_all_with(procs, Signal::SIGTERM, grace)
}

/// Like [`stop_all`] with another polite signal first (PostgreSQL's fast shutdown is SIGINT;
/// its SIGTERM waits for every client to disconnect).
pub fn stop_all_with(procs: &[Proc], polite: Signal, grace: Duration) -> Vec<Proc> {
    for p in procs {
        p.signal(polite);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && procs.iter().any(Proc::is_running) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stubborn: Vec<Proc> = procs.iter().copied().filter(Proc::is_running).collect();
    for p in &stubborn {
        p.signal(Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && stubborn.iter().any(Proc::is_running) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stubborn
}

/// Every running process with `arg` as one of its arguments, exactly (used to find our
/// JVMs when the state file is gone).
pub fn find_by_argument(arg: &str) -> Vec<Proc> {
    find_by(|a| a == arg.as_bytes())
}

/// Every running process with an argument for which `matches` holds.
pub fn find_by(matches: impl Fn(&[u8]) -> bool) -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| raw.split(|b| *b == 0).any(&matches))
        })
        .filter_map(|pid| {
            let (_, start_ticks) = stat(pid)?;
            let p = Proc { pid, start_ticks };
            p.is_running().then_some(p)
        })
        .collect()
}

/// True when the process has `arg` as one of its arguments.
pub fn has_argument(pid: u32, arg: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| raw.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        .unwrap_or(false)
}

/// A process's command line, arguments joined by spaces and cut to 160 characters.
pub fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text: String = String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        return std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|s| s.trim().to_string());
    }
    Some(match text.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    })
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

fn exited(state: char) -> bool {
    state == 'Z' || state == 'X'
}

/// True when any thread of the process has not exited yet.
fn threads_alive(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|task| {
            std::fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|text| text.rfind(')').and_then(|i| text[i + 1..].trim_start().chars().next()))
                .is_some_and(|state| !exited(state))
        })
}

/// (state letter, start time in ticks) from /proc/<pid>/stat.
fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or ')'.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 overall is the 20th after the command name (state is field 3).
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_process_is_running_until_stopped() {
        let dir = std::env::temp_dir().join(format!("seam-proc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let p = spawn_detached(cmd, &dir.join("sleep.log")).expect("spawn sleep");
        assert!(p.is_running());
        let killed = stop_all(&[p], Duration::from_secs(5));
        assert!(killed.is_empty(), "sleep obeys SIGTERM");
        assert!(!p.is_running());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_reused_pid_is_not_mistaken_for_ours() {
        let me = Proc {
            pid: std::process::id(),
            start_ticks: 1,
        };
        assert!(!me.is_running(), "a different start time means another process");
    }

    #[test]
    fn tail_returns_the_last_lines() {
        let path = std::env::temp_dir().join(format!("seam-tail-{}.log", std::process::id()));
        std::fs::write(&path, "a\nb\nc\nd\n").expect("write");
        assert_eq!(tail(&path, 2), "c\nd");
        assert_eq!(tail(&path, 10), "a\nb\nc\nd");
        let _ = std::fs::remove_file(path);
    }
}
