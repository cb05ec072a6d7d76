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
    write_private(&path, text.as_bytes())?;
    Ok(path)
}

/// Writes `bytes` to `path` readable by the owner only, through a synced temporary file and a
/// rename, so a crash leaves the old file or the new one, never half of either.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    let tmp = PathBuf::from(name);
    {
        let mut f = open_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
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

/// Gives every principal of `topology` and the operator a bearer token for the services' HTTP
/// APIs (`<dir>/<user>.token`, mode 0600, kept once written) and writes the table of their
/// hashes, with what each principal speaks for, that services check callers against. Other
/// topologies' principals in the table are kept.
pub fn write_http_tokens(dir: &Path, topology: &seam::topology::Topology) -> anyhow::Result<PathBuf> {
    use seam::http::auth::{hash, Grant, Table, OPERATOR, TABLE_FILE};
    use std::collections::BTreeMap;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut grants: BTreeMap<String, Grant> = BTreeMap::new();
    for s in topology.services.iter().filter(|s| !s.is_external()) {
        let principal = s.principal();
        let Some(user) = principal.strip_prefix("User:") else {
            continue;
        };
        grants
            .entry(user.to_string())
            .or_insert_with(|| Grant {
                principal: principal.clone(),
                services: Vec::new(),
                operator: false,
            })
            .services
            .push(s.name.clone());
    }
    grants
        .entry(OPERATOR.to_string())
        .or_insert_with(|| Grant {
            principal: format!("User:{OPERATOR}"),
            services: Vec::new(),
            operator: false,
        })
        .operator = true;
    let path = dir.join(TABLE_FILE);
    let mut table: Table = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{}: not a token table", path.display()))?,
        Err(_) => Table::default(),
    };
    table
        .tokens
        .retain(|_, g| !grants.values().any(|mine| mine.principal == g.principal));
    for (user, grant) in grants {
        let token = token_of(dir, &user)?;
        table.tokens.insert(hash(&token), grant);
    }
    write_private(&path, serde_json::to_string_pretty(&table)?.as_bytes())?;
    Ok(path)
}

/// `user`'s token, created (random, 32 characters) when it has none.
fn token_of(dir: &Path, user: &str) -> anyhow::Result<String> {
    let path = dir.join(format!("{user}.token"));
    if let Ok(text) = std::fs::read_to_string(&path) {
        if !text.trim().is_empty() {
            return Ok(text.trim().to_string());
        }
    }
    let token = generate()?;
    write_private(&path, token.as_bytes())?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_kept_per_principal_and_other_topologies_stay_in_the_table() {
        let dir = std::env::temp_dir().join(format!("seam-tokens-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let topology = |name: &str, services: &[&str]| {
            let mut text = format!("apiVersion: seam/v1\nname: {name}\nservices:\n");
            for s in services {
                text.push_str(&format!(
                    "  - {{name: {s}, partitions: 1, kind: external, topic: {s}-topic}}\n"
                ));
            }
            seam::topology::Topology::parse("t.yaml", &text).expect("topology")
        };
        // External sources get no token: nothing of theirs calls a service.
        let path = write_http_tokens(&dir, &topology("one", &["x"])).expect("write");
        let table: seam::http::auth::Table =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("table");
        assert_eq!(table.tokens.len(), 1, "only the operator: {table:?}");
        let admin = std::fs::read_to_string(dir.join("admin.token")).expect("admin token");
        assert_eq!(admin.len(), 32);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("admin.token"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        write_http_tokens(&dir, &topology("one", &["x"])).expect("again");
        assert_eq!(
            std::fs::read_to_string(dir.join("admin.token")).expect("admin token"),
            admin,
            "a token is kept"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
