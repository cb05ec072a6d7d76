//! Fetches Kafka and the registry from Maven Central, once, into `$SEAM_HOME/dist`.
//!
//! Maven resolves Kafka's runtime classpath exactly as its POMs declare it (plus the SLF4J
//! binding the POMs leave out) and unpacks Apicurio's runnable archive. Each download is
//! staged in a `.partial` folder and renamed into place only when complete, so an
//! interrupted fetch is redone rather than half-used, and a complete cache needs no
//! network and no Maven at all.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::LocalError;
use super::layout::{Home, APICURIO_VERSION, KAFKA_VERSION, POSTGRES_VERSION};

/// The Maven plugin that fetches PostgreSQL (the same one deploy/local/pom.xml uses).
const DEPENDENCY_PLUGIN: &str = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1";

/// The pom that tells Maven what to fetch (versions are passed as properties).
const POM: &str = include_str!("../../../deploy/local/pom.xml");
/// Broker logging config (Kafka's published artifacts ship none).
pub const BROKER_LOG4J: &str = include_str!("../../../deploy/local/broker-log4j2.properties");
/// Storage-tool logging config: warnings to stderr only.
pub const TOOLS_LOG4J: &str = include_str!("../../../deploy/local/tools-log4j2.properties");

/// The fetched artifacts, ready to run.
#[derive(Debug, Clone)]
pub struct Dist {
    /// Folder of broker jars.
    pub kafka_libs: PathBuf,
    /// Broker log4j2 config.
    pub broker_log4j: PathBuf,
    /// Storage-tool log4j2 config.
    pub tools_log4j: PathBuf,
    /// The registry's `quarkus-run.jar`.
    pub registry_jar: PathBuf,
}

/// Returns the cached artifacts, fetching whatever is missing first. `say` reports progress.
pub fn ensure(home: &Home, say: &mut dyn FnMut(&str)) -> Result<Dist, LocalError> {
    let kafka_libs = home.kafka_libs();
    let apicurio = home.apicurio();
    if !kafka_libs.is_dir() || !apicurio.join("quarkus-run.jar").is_file() {
        say(&format!(
            "fetching Apache Kafka {KAFKA_VERSION} and Apicurio Registry {APICURIO_VERSION} from Maven Central into {} (once)",
            home.dist().display()
        ));
        run_maven(home, &kafka_libs, &apicurio)?;
    }
    let config = home.kafka_config();
    std::fs::create_dir_all(&config).map_err(LocalError::io("cannot create", &config))?;
    let broker_log4j = config.join("broker-log4j2.properties");
    let tools_log4j = config.join("tools-log4j2.properties");
    write_if_changed(&broker_log4j, BROKER_LOG4J)?;
    write_if_changed(&tools_log4j, TOOLS_LOG4J)?;
    Ok(Dist {
        kafka_libs,
        broker_log4j,
        tools_log4j,
        registry_jar: apicurio.join("quarkus-run.jar"),
    })
}

fn run_maven(home: &Home, kafka_libs: &Path, apicurio: &Path) -> Result<(), LocalError> {
    let which = Command::new("mvn").arg("--version").output();
    if !matches!(which, Ok(ref o) if o.status.success()) {
        return Err(LocalError::MavenMissing {
            what: format!("Kafka {KAFKA_VERSION} and Apicurio Registry {APICURIO_VERSION}"),
        });
    }
    let work = home.dist().join(".fetch");
    std::fs::create_dir_all(&work).map_err(LocalError::io("cannot create", &work))?;
    std::fs::write(work.join("pom.xml"), POM).map_err(LocalError::io("cannot write", work.join("pom.xml")))?;
    let staged_libs = partial(kafka_libs);
    let staged_apicurio = partial(apicurio);
    for dir in [&staged_libs, &staged_apicurio] {
        remove_dir_if_exists(dir)?;
    }
    let log = work.join("maven.log");
    let log_file = std::fs::File::create(&log).map_err(LocalError::io("cannot create", &log))?;
    let log_err = log_file.try_clone().map_err(LocalError::io("cannot create", &log))?;
    let status = Command::new("mvn")
        .current_dir(&work)
        .args(["-B", "-q", "package"])
        .arg(format!("-Dkafka.version={KAFKA_VERSION}"))
        .arg(format!("-Dapicurio.version={APICURIO_VERSION}"))
        .arg(format!("-Dkafka.libs.dir={}", staged_libs.display()))
        .arg(format!("-Dapicurio.dir={}", staged_apicurio.display()))
        .stdout(log_file)
        .stderr(log_err)
        .status()
        .map_err(LocalError::io("cannot run", "mvn"))?;
    let complete = staged_libs.join(format!("kafka_2.13-{KAFKA_VERSION}.jar")).is_file()
        && staged_apicurio.join("quarkus-run.jar").is_file();
    if !status.success() || !complete {
        let status = if status.success() {
            "Maven succeeded but the expected jars are missing".to_string()
        } else {
            format!("mvn {status}")
        };
        return Err(LocalError::FetchFailed {
            status,
            tail: super::process::tail(&log, 30),
            log,
        });
    }
    for (staged, target) in [(&staged_libs, kafka_libs), (&staged_apicurio, apicurio)] {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(LocalError::io("cannot create", parent))?;
        }
        remove_dir_if_exists(target)?;
        std::fs::rename(staged, target).map_err(LocalError::io("cannot move fetched files to", target))?;
    }
    let _ = std::fs::remove_dir_all(work.join("target"));
    Ok(())
}

/// Returns the folder of the unpacked PostgreSQL binaries (`bin/`, `lib/`, `share/`), fetching
/// them first when missing: Maven unpacks the binaries jar, whose one entry is a `.txz` that
/// `tar` unpacks. Staged like Kafka, so an interrupted fetch is redone.
pub fn ensure_postgres(home: &Home, say: &mut dyn FnMut(&str)) -> Result<PathBuf, LocalError> {
    let target = home.postgres_dist();
    if target.join("bin").join("postgres").is_file() {
        return Ok(target);
    }
    let what = format!("PostgreSQL {POSTGRES_VERSION}");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64v8",
        other => {
            return Err(LocalError::FetchFailed {
                status: format!("no PostgreSQL binaries are published for {other}"),
                tail: String::new(),
                log: PathBuf::new(),
            })
        }
    };
    say(&format!(
        "fetching {what} from Maven Central into {} (once)",
        target.display()
    ));
    let which = Command::new("mvn").arg("--version").output();
    if !matches!(which, Ok(ref o) if o.status.success()) {
        return Err(LocalError::MavenMissing { what });
    }
    let staged = partial(&target);
    remove_dir_if_exists(&staged)?;
    let jar = staged.join("jar");
    std::fs::create_dir_all(&jar).map_err(LocalError::io("cannot create", &jar))?;
    let log = staged.join("fetch.log");
    let log_file = std::fs::File::create(&log).map_err(LocalError::io("cannot create", &log))?;
    let log_err = log_file.try_clone().map_err(LocalError::io("cannot create", &log))?;
    let status = Command::new("mvn")
        .current_dir(&staged)
        .args(["-B", "-q"])
        .arg(format!("{DEPENDENCY_PLUGIN}:unpack"))
        .arg(format!(
            "-Dartifact=io.zonky.test.postgres:embedded-postgres-binaries-linux-{arch}:{POSTGRES_VERSION}"
        ))
        .arg(format!("-DoutputDirectory={}", jar.display()))
        .stdout(log_file)
        .stderr(log_err)
        .status()
        .map_err(LocalError::io("cannot run", "mvn"))?;
    let failed = |status: String| LocalError::FetchFailed {
        status,
        tail: super::process::tail(&log, 30),
        log: log.clone(),
    };
    if !status.success() {
        return Err(failed(format!("mvn {status}")));
    }
    let txz = std::fs::read_dir(&jar)
        .map_err(LocalError::io("cannot read", &jar))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "txz"))
        .ok_or_else(|| failed("the PostgreSQL binaries jar holds no .txz archive".into()))?;
    let root = staged.join("root");
    std::fs::create_dir_all(&root).map_err(LocalError::io("cannot create", &root))?;
    let out = Command::new("tar")
        .arg("-xJf")
        .arg(&txz)
        .arg("-C")
        .arg(&root)
        .output()
        .map_err(LocalError::io("cannot run", "tar"))?;
    if !out.status.success() || !root.join("bin").join("postgres").is_file() {
        return Err(failed(format!(
            "unpacking {} failed ({}): {}; `tar -J` needs xz (apt-get install xz-utils)",
            txz.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    remove_dir_if_exists(&target)?;
    std::fs::rename(&root, &target).map_err(LocalError::io("cannot move fetched files to", &target))?;
    let _ = std::fs::remove_dir_all(&staged);
    Ok(target)
}

fn partial(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    dir.with_file_name(name)
}

fn remove_dir_if_exists(dir: &Path) -> Result<(), LocalError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LocalError::io("cannot remove", dir)(e)),
        _ => Ok(()),
    }
}

fn write_if_changed(path: &Path, content: &str) -> Result<(), LocalError> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(());
    }
    std::fs::write(path, content).map_err(LocalError::io("cannot write", path))
}
