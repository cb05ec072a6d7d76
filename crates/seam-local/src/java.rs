//! Finds a Java runtime new enough for each component.
//!
//! Kafka 4.x brokers need Java 17+; Apicurio Registry 3.2+ is compiled for Java 21.
//! Machines often have several JDKs (a distribution's default plus a newer one under
//! `/usr/lib/jvm`), so each component takes the first suitable one in a documented order
//! instead of failing on whatever `java` happens to be first on PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::LocalError;

/// A Java runtime and its feature release (17, 21, 25, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Java {
    /// The `java` executable.
    pub path: PathBuf,
    /// Feature release, e.g. 21.
    pub major: u32,
}

impl std::fmt::Display for Java {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Java {} at {}", self.major, self.path.display())
    }
}

/// Java for the brokers: `SEAM_KAFKA_JAVA_HOME`, `JAVA_HOME`, `java` on PATH, then `/usr/lib/jvm/*`.
pub fn for_kafka() -> Result<Java, LocalError> {
    find(
        17,
        "Kafka",
        "SEAM_KAFKA_JAVA_HOME",
        "install one (e.g. `apt-get install openjdk-17-jdk-headless`) or point JAVA_HOME at it",
    )
}

/// Java for the registry: `SEAM_REGISTRY_JAVA_HOME`, then the newest Java 21+ among
/// `JAVA_HOME`, `java` on PATH and `/usr/lib/jvm/*`.
pub fn for_registry() -> Result<Java, LocalError> {
    find(
        21,
        "the schema registry (Apicurio Registry 3.3)",
        "SEAM_REGISTRY_JAVA_HOME",
        "install a Java 21 or newer JDK under /usr/lib/jvm, or set SEAM_REGISTRY_JAVA_HOME to one",
    )
}

fn find(needed: u32, purpose: &'static str, override_var: &str, fix: &'static str) -> Result<Java, LocalError> {
    let mut seen = Vec::new();
    if let Some(home) = std::env::var_os(override_var).filter(|v| !v.is_empty()) {
        // An explicit choice is honoured or refused, never silently replaced.
        let java = probe(&PathBuf::from(home).join("bin/java"));
        return match java {
            Some(j) if j.major >= needed => Ok(j),
            Some(j) => Err(LocalError::JavaMissing {
                needed,
                purpose,
                found: format!("{override_var} points at {j}"),
                fix,
            }),
            None => Err(LocalError::JavaMissing {
                needed,
                purpose,
                found: format!("{override_var} has no runnable bin/java"),
                fix,
            }),
        };
    }
    for candidate in candidates() {
        if let Some(java) = probe(&candidate) {
            if java.major >= needed {
                return Ok(java);
            }
            seen.push(java.to_string());
        }
    }
    let found = if seen.is_empty() {
        "no java on PATH, in JAVA_HOME or under /usr/lib/jvm".to_string()
    } else {
        format!("found only {}", seen.join(", "))
    };
    Err(LocalError::JavaMissing {
        needed,
        purpose,
        found,
        fix,
    })
}

/// JAVA_HOME, PATH, then every JDK under /usr/lib/jvm, newest first.
fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(home) = std::env::var_os("JAVA_HOME").filter(|v| !v.is_empty()) {
        out.push(PathBuf::from(home).join("bin/java"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(java) = std::env::split_paths(&path)
            .map(|d| d.join("java"))
            .find(|p| p.is_file())
        {
            out.push(java);
        }
    }
    let mut jvms: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/jvm")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/java"))
        .filter(|p| p.is_file())
        .map(|p| (probe(&p).map(|j| j.major).unwrap_or(0), p))
        .collect();
    jvms.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    out.extend(jvms.into_iter().map(|(_, p)| p));
    out
}

/// Reads the version from the JDK's `release` file, or asks `java -version`.
fn probe(java: &Path) -> Option<Java> {
    if !java.is_file() {
        return None;
    }
    let real = std::fs::canonicalize(java).unwrap_or_else(|_| java.to_path_buf());
    let from_release = real
        .parent()
        .and_then(Path::parent)
        .and_then(|home| std::fs::read_to_string(home.join("release")).ok())
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("JAVA_VERSION="))
                .and_then(|v| parse_major(v.trim_matches('"')))
        });
    let major = match from_release {
        Some(m) => m,
        None => {
            let out = Command::new(java).arg("-version").output().ok()?;
            let text = String::from_utf8_lossy(&out.stderr);
            let quoted = text.split('"').nth(1)?;
            parse_major(quoted)?
        }
    };
    Some(Java {
        path: java.to_path_buf(),
        major,
    })
}

/// "17.0.15" -> 17, "21" -> 21, "1.8.0_392" -> 8.
fn parse_major(version: &str) -> Option<u32> {
    let mut parts = version.split(['.', '_', '-', '+']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_major;

    #[test]
    fn parses_modern_legacy_and_bare_versions() {
        assert_eq!(parse_major("17.0.15"), Some(17));
        assert_eq!(parse_major("25.0.3"), Some(25));
        assert_eq!(parse_major("21"), Some(21));
        assert_eq!(parse_major("1.8.0_392"), Some(8));
        assert_eq!(parse_major("22-ea"), Some(22));
        assert_eq!(parse_major(""), None);
        assert_eq!(parse_major("abc"), None);
    }
}
