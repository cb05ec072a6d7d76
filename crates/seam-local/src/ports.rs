//! Checks that the stack's ports are free and, when one is not, says who holds it.
//!
//! A broker that cannot bind its port dies after printing a Java stack trace; telling
//! the user "port 9092 is used by pid 4711 (java …)" before starting anything is kinder.

use std::net::{Ipv4Addr, TcpListener};

use super::error::{Owner, PortInUse};

/// Returns every port of `wanted` that cannot be bound on 127.0.0.1.
pub fn taken(wanted: &[(u16, String)]) -> Vec<PortInUse> {
    wanted
        .iter()
        .filter(|(port, _)| TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_err())
        .map(|(port, role)| PortInUse {
            port: *port,
            role: role.clone(),
            owner: owner_of(*port),
        })
        .collect()
}

/// Finds the listening socket's inode in /proc/net/tcp{,6}, then the process holding it.
fn owner_of(port: u16) -> Option<Owner> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| listening_inodes(&text, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .map(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
                .unwrap_or(false)
        });
        if holds {
            return Some(Owner {
                pid,
                command: super::process::command_line(pid).unwrap_or_else(|| "unknown command".into()),
            });
        }
    }
    None
}

/// Inodes of sockets in LISTEN state (0A) on `port` in one /proc/net/tcp table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local = cols.get(1)?;
            let state = cols.get(3)?;
            let inode = cols.get(9)?;
            let hex_port = local.rsplit(':').next()?;
            let p = u16::from_str_radix(hex_port, 16).ok()?;
            (p == port && *state == "0A").then(|| inode.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_sockets_from_proc_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:2384 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 99999 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 0x2384), vec!["12345".to_string()]);
        assert!(listening_inodes(table, 9093).is_empty());
        assert!(listening_inodes("garbage\nmore garbage", 1).is_empty());
    }

    #[test]
    fn names_the_process_holding_a_port() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        let taken = taken(&[(port, "test".into())]);
        assert_eq!(taken.len(), 1);
        let owner = taken[0].owner.as_ref().expect("our own process is visible in /proc");
        assert_eq!(owner.pid, std::process::id());
        drop(listener);
        assert!(super::taken(&[(port, "test".into())]).is_empty());
    }
}
