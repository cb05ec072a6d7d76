//! Power loss on real files, for durability tests: a process runs with an `LD_PRELOAD` library
//! (`testkit/powerloss/powerloss.c`) that copies a file aside whenever it is fsynced or
//! fdatasynced; after the process is killed, [`PowerLoss::lose_power`] puts back exactly what
//! was synced (and empties what never was), as a disk that loses its volatile cache would.
//! `sync_file_range` makes nothing durable in this model, which is the point: it neither flushes
//! the drive's cache nor persists a growing file's size.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The shim, and the folders it watches.
#[derive(Debug, Clone)]
pub struct PowerLoss {
    lib: PathBuf,
    dir: PathBuf,
    shadow: PathBuf,
}

/// What a power loss left.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lost {
    /// Files put back to their last synced contents.
    pub restored: usize,
    /// Files never synced, now empty.
    pub emptied: usize,
}

impl PowerLoss {
    /// Builds the shim (with the machine's C compiler) to watch the files under `dir`.
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let work = std::env::temp_dir().join(format!("seam-powerloss-{}", std::process::id()));
        std::fs::create_dir_all(&work).unwrap_or_else(|e| panic!("create {}: {e}", work.display()));
        let lib = work.join("libpowerloss.so");
        if !lib.is_file() {
            // Built under a name of its own and renamed into place: tests running at once in
            // one process must never load a half-written library (the loader would skip it,
            // and the process would run unwatched).
            let own = crate::unique_name("pl");
            let source = work.join(format!("powerloss-{own}.c"));
            let building = work.join(format!("libpowerloss-{own}.so"));
            std::fs::write(&source, include_str!("../powerloss/powerloss.c"))
                .unwrap_or_else(|e| panic!("write {}: {e}", source.display()));
            let out = Command::new("cc")
                .args(["-shared", "-fPIC", "-O2", "-o"])
                .arg(&building)
                .arg(&source)
                .args(["-ldl", "-lpthread"])
                .output()
                .unwrap_or_else(|e| panic!("run cc (install a C toolchain, e.g. build-essential): {e}"));
            assert!(
                out.status.success(),
                "building the power-loss shim failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::rename(&building, &lib).unwrap_or_else(|e| panic!("rename {}: {e}", building.display()));
            let _ = std::fs::remove_file(&source);
        }
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let shadow = work.join(format!("shadow-{}", crate::unique_name("pl")));
        Self { lib, dir, shadow }
    }

    /// The environment of a process whose files are watched.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), self.lib.display().to_string()),
            ("SEAM_POWERLOSS_DIR".into(), self.dir.display().to_string()),
            ("SEAM_POWERLOSS_SHADOW".into(), self.shadow.display().to_string()),
        ]
    }

    /// Leaves every watched file as a power loss would have: its last synced contents, or empty.
    /// Call it after the process was killed.
    pub fn lose_power(&self) -> Lost {
        let mut lost = Lost::default();
        let mut folders = vec![self.dir.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    folders.push(path);
                    continue;
                }
                let relative = path.strip_prefix(&self.dir).unwrap_or(&path);
                let synced = self.shadow.join(relative);
                if synced.is_file() {
                    std::fs::copy(&synced, &path).unwrap_or_else(|e| panic!("restore {}: {e}", path.display()));
                    lost.restored += 1;
                } else {
                    std::fs::write(&path, b"").unwrap_or_else(|e| panic!("empty {}: {e}", path.display()));
                    lost.emptied += 1;
                }
            }
        }
        lost
    }
}
