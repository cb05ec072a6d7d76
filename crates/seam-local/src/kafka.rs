//! Runs Apache Kafka brokers in KRaft mode: config, storage format, start, readiness.
//!
//! Every node is a combined broker+controller with a static controller quorum, bound to
//! 127.0.0.1 only. Internal topics get the stack's replication factor (a single node
//! cannot host the default RF 3, and consumer groups would then hang).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use super::error::LocalError;
use super::fetch::Dist;
use super::java::Java;
use super::layout::Home;
use super::process::{self, Proc};
use super::secure::Material;
use super::shape::{NodePorts, Shape};

/// JVM flags as in Kafka's start scripts, with heaps sized for a small machine.
const JVM_PERF: [&str; 5] = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
];

/// `server.properties` for one node of the stack; `secure` replaces the plaintext listeners.
pub fn server_properties(shape: &Shape, node: &NodePorts, data_dir: &Path, secure: Option<&Material>) -> String {
    let voters: Vec<String> = shape
        .nodes()
        .iter()
        .map(|n| format!("{}@127.0.0.1:{}", n.node_id, n.controller_port))
        .collect();
    let rf = shape.replication_factor();
    let min_isr = shape.min_insync_replicas();
    let threads = if shape.brokers == 1 { 4 } else { 2 };
    let listeners = match secure {
        Some(m) => super::secure::server_properties(m, node),
        None => format!(
            "listeners=PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}\n\
advertised.listeners=PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}\n\
inter.broker.listener.name=PLAINTEXT\n\
controller.listener.names=CONTROLLER\n\
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n",
            client = node.client_port,
            controller = node.controller_port,
        ),
    };
    format!(
        "# Written by `seam local up`; rewritten on every start.\n\
process.roles=broker,controller\n\
node.id={id}\n\
controller.quorum.voters={voters}\n\
{listeners}\
log.dirs={data}\n\
num.partitions={rf}\n\
default.replication.factor={rf}\n\
min.insync.replicas={min_isr}\n\
unclean.leader.election.enable=false\n\
# seam deploys topics explicitly; a typo must not create one\n\
auto.create.topics.enable=false\n\
offsets.topic.replication.factor={rf}\n\
offsets.topic.num.partitions=8\n\
transaction.state.log.replication.factor={rf}\n\
transaction.state.log.min.isr={min_isr}\n\
transaction.state.log.num.partitions=8\n\
share.coordinator.state.topic.replication.factor={rf}\n\
share.coordinator.state.topic.min.isr={min_isr}\n\
group.initial.rebalance.delay.ms=0\n\
num.network.threads=2\n\
num.io.threads={threads}\n\
background.threads={threads}\n\
num.recovery.threads.per.data.dir=1\n\
num.replica.fetchers=1\n",
        id = node.node_id,
        voters = voters.join(","),
        data = data_dir.display(),
    )
}

/// Writes every node's config and formats storage that is not formatted yet. The
/// cluster id is made once per stack shape and kept, so restarts reuse the data.
pub fn prepare(home: &Home, shape: &Shape, java: &Java, dist: &Dist) -> Result<(), LocalError> {
    let stack_dir = home.stack_dir(shape);
    let secure = shape.secure.then(|| super::secure::prepare(home, shape)).transpose()?;
    std::fs::create_dir_all(&stack_dir).map_err(LocalError::io("cannot create", &stack_dir))?;
    let id_file = stack_dir.join("cluster.id");
    let cluster_id = match std::fs::read_to_string(&id_file) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
        _ => {
            let id = storage_tool(java, dist, &stack_dir, &["random-uuid"])?;
            std::fs::write(&id_file, &id).map_err(LocalError::io("cannot write", &id_file))?;
            id
        }
    };
    let mut formats = Vec::new();
    for node in shape.nodes() {
        let dir = home.node_dir(shape, node.node_id);
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).map_err(LocalError::io("cannot create", &dir))?;
        let config = dir.join("server.properties");
        // It holds the secure stack's passwords: owner only.
        super::secure::write_private(
            &config,
            server_properties(shape, &node, &data, secure.as_ref()).as_bytes(),
        )?;
        if !data.join("meta.properties").is_file() {
            formats.push((data, config));
        }
    }
    // Formatting starts a JVM per node: run them side by side.
    std::thread::scope(|scope| {
        let handles: Vec<_> = formats
            .iter()
            .map(|(data, config)| {
                let cluster_id = cluster_id.clone();
                let scram = secure.as_ref().map(super::secure::format_scram);
                scope.spawn(move || {
                    let config = config.display().to_string();
                    let mut args = vec!["format", "--ignore-formatted", "-t", &cluster_id, "-c", &config];
                    if let Some(scram) = &scram {
                        args.extend(["--add-scram", scram]);
                    }
                    storage_tool(java, dist, data, &args)
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(&formats)
            .map(|(h, (data, _))| {
                h.join().unwrap_or_else(|_| {
                    Err(LocalError::FormatFailed {
                        dir: data.clone(),
                        detail: "the formatting thread panicked".into(),
                    })
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    Ok(())
}

fn storage_tool(java: &Java, dist: &Dist, dir: &Path, args: &[&str]) -> Result<String, LocalError> {
    let out = Command::new(&java.path)
        .arg("-Xmx256m")
        .arg(format!("-Dlog4j2.configurationFile={}", dist.tools_log4j.display()))
        .arg("-cp")
        .arg(classpath(dist))
        .arg("kafka.tools.StorageTool")
        .args(args)
        .output()
        .map_err(LocalError::io("cannot run", &java.path))?;
    if !out.status.success() {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        return Err(LocalError::FormatFailed {
            dir: dir.to_path_buf(),
            detail,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn classpath(dist: &Dist) -> String {
    // The JVM expands `dir/*` itself; the shell is not involved.
    format!("{}/*", dist.kafka_libs.display())
}

/// Starts one broker JVM detached; its output goes to `node-<id>/kafka.log`.
pub fn start_node(
    home: &Home,
    shape: &Shape,
    node: &NodePorts,
    java: &Path,
    dist: &Dist,
) -> Result<(Proc, PathBuf), LocalError> {
    let dir = home.node_dir(shape, node.node_id);
    let log = dir.join("kafka.log");
    let heap = if shape.brokers == 1 { "-Xmx1g" } else { "-Xmx768m" };
    let mut cmd = Command::new(java);
    cmd.arg("-Xms256m")
        .arg(heap)
        .args(JVM_PERF)
        .arg(format!("-Dlog4j2.configurationFile={}", dist.broker_log4j.display()))
        .arg(marker(home))
        .arg(format!("-Dseam.component=kafka-{}", node.node_id))
        .arg("-cp")
        .arg(classpath(dist))
        .arg("kafka.Kafka")
        .arg(dir.join("server.properties"));
    let proc = process::spawn_detached(cmd, &log)?;
    Ok((proc, log))
}

/// The JVM flag that marks a process as belonging to this SEAM_HOME, so `down` finds
/// our JVMs even when the state file is gone.
pub fn marker(home: &Home) -> String {
    format!("-Dseam.home={}", home.root().display())
}

/// Waits until every node in `expect` is registered in the cluster metadata, failing
/// early with the node's log when its JVM exits.
pub async fn wait_ready(
    bootstrap: &[String],
    security: &BTreeMap<String, String>,
    expect: &[(u8, Proc, PathBuf)],
    timeout: Duration,
) -> Result<(), LocalError> {
    let deadline = Instant::now() + timeout;
    loop {
        for (id, proc, log) in expect {
            if !proc.is_running() {
                return Err(LocalError::DiedWhileStarting {
                    component: format!("Kafka broker {id}"),
                    log: log.clone(),
                    tail: process::tail(log, 40),
                });
            }
        }
        let last = match registered_brokers(bootstrap, security).await {
            Ok(ids) if expect.iter().all(|(id, _, _)| ids.contains(&i32::from(*id))) => return Ok(()),
            Ok(ids) => format!("metadata lists brokers {ids:?}"),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            let (id, _, log) = &expect[0];
            return Err(LocalError::NotReady {
                component: format!("Kafka (broker {id} and its peers)"),
                waited_secs: timeout.as_secs(),
                detail: last,
                log: log.clone(),
                tail: process::tail(log, 20),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Node ids the cluster's metadata lists, asking any reachable bootstrap server.
pub async fn registered_brokers(bootstrap: &[String], security: &BTreeMap<String, String>) -> Result<Vec<i32>, String> {
    let reachable: Vec<String> = bootstrap.iter().filter(|a| accepts_connections(a)).cloned().collect();
    if reachable.is_empty() {
        return Err(format!("no broker accepts connections on {}", bootstrap.join(",")));
    }
    let servers = reachable.join(",");
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &servers)
        .set_log_level(RDKafkaLogLevel::Emerg);
    for (k, v) in security {
        config.set(k, v);
    }
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(3))
            .map_err(|e| format!("metadata request failed: {e}"))?;
        Ok(md.brokers().iter().map(|b| b.id()).collect())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A cheap TCP probe before asking librdkafka, which would log every refused connection.
fn accepts_connections(addr: &str) -> bool {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok(),
        // A host name: let the client resolve it.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_of_a_cluster_node_names_all_voters_and_rf3() {
        let shape = Shape::new(3, 9092, 8081).expect("valid");
        let node = shape.nodes()[1];
        let props = server_properties(&shape, &node, Path::new("/d"), None);
        assert!(props.contains("node.id=2\n"));
        assert!(props.contains("controller.quorum.voters=1@127.0.0.1:9193,2@127.0.0.1:9293,3@127.0.0.1:9393\n"));
        assert!(props.contains("listeners=PLAINTEXT://127.0.0.1:9292,CONTROLLER://127.0.0.1:9293\n"));
        assert!(props.contains("offsets.topic.replication.factor=3\n"));
        assert!(props.contains("transaction.state.log.min.isr=2\n"));
        assert!(props.contains("min.insync.replicas=2\n"));
        assert!(props.contains("log.dirs=/d\n"));
    }

    #[test]
    fn config_of_a_secure_node_has_sasl_ssl_listeners_and_the_authorizer() {
        let mut shape = Shape::new(3, 9092, 8081).expect("valid");
        shape.secure = true;
        let m = Material {
            dir: "/s".into(),
            ca: "/s/ca.pem".into(),
            broker: "/s/broker.p12".into(),
            admin_properties: "/s/admin.properties".into(),
            secrets: super::super::secure::Secrets {
                admin: "A".into(),
                controller: "C".into(),
                key: "K".into(),
            },
        };
        let props = server_properties(&shape, &shape.nodes()[0], Path::new("/d"), Some(&m));
        assert!(props.contains("listeners=SASL_SSL://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193\n"));
        assert!(props.contains("listener.security.protocol.map=CONTROLLER:SASL_SSL,SASL_SSL:SASL_SSL\n"));
        assert!(props.contains("sasl.enabled.mechanisms=SCRAM-SHA-512\n"));
        assert!(props.contains("authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n"));
        assert!(props.contains("super.users=User:admin\n"));
        assert!(props.contains("allow.everyone.if.no.acl.found=false\n"));
        assert!(props.contains("ssl.truststore.location=/s/ca.pem\n"));
        assert!(!props.contains("PLAINTEXT"), "{props}");
        assert!(format!("{:?}", m.secrets) == "Secrets([redacted])");
    }

    #[test]
    fn config_of_a_single_node_lowers_internal_topic_replication() {
        let shape = Shape::new(1, 9092, 8081).expect("valid");
        let props = server_properties(&shape, &shape.nodes()[0], Path::new("/d"), None);
        assert!(props.contains("offsets.topic.replication.factor=1\n"));
        assert!(props.contains("share.coordinator.state.topic.min.isr=1\n"));
        assert!(props.contains("controller.quorum.voters=1@127.0.0.1:9093\n"));
    }
}
