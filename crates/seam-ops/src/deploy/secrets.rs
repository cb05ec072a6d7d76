//! Credentials of the SCRAM users deploy creates: a random password, written once to
//! `<dir>/<user>.properties` (mode 0600) next to the CA, in librdkafka property form, so a
//! service started with `SEAM_KAFKA_CONFIG=<that file>` connects as its own principal. The
//! password is never printed or logged.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rdkafka::ClientConfig;

/// Security properties copied from the deployer's own client config into a user's file.
const INHERITED: [&str; 4] = [
    "security.protocol",
    "ssl.ca.location",
    "ssl.endpoint.identification.algorithm",
    "sasl.mechanism",
];

/// A 32-character password from the OS's random source.
pub fn generate() -> anyhow::Result<String> {
    seam_local::secure::generate_password().context("reading /dev/urandom")
}

/// Where `user`'s properties live.
pub fn user_file(dir: &Path, user: &str) -> PathBuf {
    dir.join(format!("{user}.properties"))
}

/// Writes `user`'s client properties, readable by the owner only.
pub fn write_user(dir: &Path, user: &str, password: &str, deployer: &ClientConfig) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut text = format!("# Written by `seam deploy`: the credentials of the Kafka user {user}.\n");
    for key in INHERITED {
        if let Some(v) = deployer.get(key) {
            text.push_str(&format!("{key}={v}\n"));
        }
    }
    if deployer.get("sasl.mechanism").is_none() {
        text.push_str("sasl.mechanism=SCRAM-SHA-512\n");
    }
    text.push_str(&format!("sasl.username={user}\nsasl.password={password}\n"));
    let path = user_file(dir, user);
    let tmp = path.with_extension("properties.tmp");
    {
        let mut f = open_private(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn open_private(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}
