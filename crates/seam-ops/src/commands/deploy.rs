//! `seam deploy -t FILE`: prints the plan for a topology and applies it; `--emit k8s DIR` writes
//! Strimzi and Kubernetes manifests instead of touching a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use super::output;
use crate::deploy::{self, Action, Change, Options, Outcome, Registry};
use seam::topology::Topology;
use seam_local::cluster::Endpoints;

/// Exit code when the plan has problems and nothing was changed.
pub const REFUSED: u8 = 1;

/// The image `--emit` names unless told otherwise (built from `deploy/Dockerfile`).
const DEFAULT_IMAGE: &str = "seam/student-affairs:latest";
/// The registry emitted services use unless told otherwise (Strimzi's Apicurio service).
const DEFAULT_REGISTRY_URL: &str = "http://schema-registry:8080/apis/ccompat/v7";

/// Options of `seam deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The topology file.
    #[arg(short = 't', long = "topology", value_name = "FILE")]
    topology: PathBuf,
    /// Print the plan; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// A resource this topology deployed earlier and no longer declares that may be deleted,
    /// as the plan names it (e.g. topic/old.events); repeat per resource.
    #[arg(long, value_name = "RESOURCE")]
    allow_delete: Vec<String>,
    /// Print `{"changes": [...], "applied": ...}` as JSON.
    #[arg(long)]
    json: bool,
    /// Write manifests for another platform into DIR instead of deploying.
    #[arg(long, value_name = "PLATFORM", requires = "emit_dir")]
    emit: Option<Platform>,
    /// Where --emit writes.
    #[arg(value_name = "DIR", requires = "emit")]
    emit_dir: Option<PathBuf>,
    /// Container image of the services, for --emit (built from deploy/Dockerfile; one image
    /// runs every service).
    #[arg(long, default_value = DEFAULT_IMAGE)]
    image: String,
    /// The schema registry the emitted services use (Confluent-compatible API base URL).
    #[arg(long, default_value = DEFAULT_REGISTRY_URL)]
    registry_url: String,
    /// Where to write the credentials of SCRAM users deploy creates; default: the secure local
    /// stack's, or SEAM_SECRETS. Without one, users are left to your identity system.
    #[arg(long, value_name = "DIR")]
    secrets: Option<PathBuf>,
}

impl DeployArgs {
    /// `seam deploy -t <topology>` with every other option at its default, for the demo and
    /// tests that deploy as an operator would.
    pub fn of(topology: PathBuf) -> Self {
        Self {
            topology,
            dry_run: false,
            allow_delete: Vec::new(),
            json: false,
            emit: None,
            emit_dir: None,
            image: DEFAULT_IMAGE.into(),
            registry_url: DEFAULT_REGISTRY_URL.into(),
            secrets: None,
        }
    }
}

/// Platforms `--emit` writes for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Platform {
    /// Strimzi resources (Kafka with KRaft node pools, KafkaTopic, KafkaUser with ACLs) and a
    /// Deployment and Service per seam service.
    K8s,
}

/// Runs `seam deploy`.
pub async fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let topology = Topology::load(&args.topology)?;
    if let (Some(Platform::K8s), Some(dir)) = (args.emit, &args.emit_dir) {
        let file_name = args
            .topology
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let in_image = format!("/app/deploy/{file_name}");
        let target = deploy::k8s::Target {
            image: &args.image,
            topology_in_image: &in_image,
            registry: &args.registry_url,
        };
        let written = deploy::k8s::emit(&topology, dir, &target)?;
        for f in &written {
            output::line(&format!("wrote {}", f.display()));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let endpoints = Endpoints::discover()?;
    let registry = Registry::new(endpoints.registry()?)?;
    // The running consumers say what their translators read (announced in $SEAM_HOME/run).
    let urls: BTreeMap<String, String> = seam_local::Home::from_env()
        .map(|h| h.announced().into_iter().collect())
        .unwrap_or_default();
    let options = Options {
        dry_run: args.dry_run,
        allow_delete: args.allow_delete.iter().cloned().collect::<BTreeSet<_>>(),
        secrets: args.secrets.clone().or_else(|| endpoints.secrets.clone()),
        running: urls.clone(),
    };
    let mut outcome = deploy::deploy(&topology, &endpoints.client(), &registry, &options)
        .await
        .with_context(|| {
            format!(
                "deploying {} to {}",
                args.topology.display(),
                endpoints.bootstrap_servers()
            )
        })?;
    outcome.notes.extend(deploy::undeclared_types(&topology, &urls).await);
    if args.json {
        output::line(&serde_json::to_string_pretty(&as_json(&outcome))?);
    } else {
        let header = format!(
            "{} → {} ({}){}",
            args.topology.display(),
            endpoints.bootstrap_servers(),
            endpoints.origin,
            if args.dry_run { ", dry run" } else { "" }
        );
        output::line(&render(&header, &outcome));
    }
    Ok(if outcome.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(REFUSED)
    })
}

fn as_json(o: &Outcome) -> Value {
    json!({
        "changes": o.changes,
        "problems": o.problems,
        "notes": o.notes,
        "applied": o.applied,
    })
}

/// The plan as text: one line per change with its fields old → new, then the verdict.
fn render(header: &str, o: &Outcome) -> String {
    let mut out = vec![header.to_string()];
    let changed: Vec<&Change> = o.changes.iter().filter(|c| c.action != Action::NoOp).collect();
    let unchanged = o.changes.len() - changed.len();
    if changed.is_empty() {
        out.push(format!("  no changes ({unchanged} resources as declared)"));
    }
    for c in &changed {
        let sign = match c.action {
            Action::Create => "+",
            Action::Alter => "~",
            Action::Delete => "-",
            Action::NoOp => "=",
        };
        let fields: Vec<String> = c.diff.iter().map(|(k, v)| field(k, v, c.action)).collect();
        let detail = if fields.is_empty() {
            String::new()
        } else {
            format!("  {}", fields.join(", "))
        };
        out.push(format!("  {sign} {}{detail}", c.resource));
        if let Some(w) = &c.warning {
            out.push(format!("      warning: {w}"));
        }
    }
    if !changed.is_empty() && unchanged > 0 {
        out.push(format!("  ({unchanged} more as declared)"));
    }
    for n in &o.notes {
        out.push(format!("note: {n}"));
    }
    if !o.problems.is_empty() {
        out.push(format!(
            "refused, nothing was changed ({} problem(s)):",
            o.problems.len()
        ));
        for p in &o.problems {
            out.push(format!("  - {p}"));
        }
    } else if o.applied {
        out.push(format!("applied {} change(s)", changed.len()));
    } else if !changed.is_empty() {
        out.push("not applied (dry run)".into());
    }
    out.join("\n")
}

fn field(name: &str, v: &Value, action: Action) -> String {
    let show = |x: &Value| match x {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    if action == Action::Create {
        format!("{name}: {}", show(&v["new"]))
    } else {
        format!("{name}: {} → {}", show(&v["old"]), show(&v["new"]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_plan_reads_as_one_line_per_change_with_old_and_new() {
        let o = Outcome {
            changes: vec![
                Change {
                    resource: "topic/a.events".into(),
                    action: Action::Alter,
                    diff: BTreeMap::from([("partitions".to_string(), json!({"old": 3, "new": 6}))]),
                    warning: Some("keys move".into()),
                },
                Change {
                    resource: "topic/b.events".into(),
                    action: Action::NoOp,
                    diff: BTreeMap::new(),
                    warning: None,
                },
            ],
            problems: vec![],
            notes: vec![],
            applied: true,
        };
        let text = render("h", &o);
        assert!(
            text.contains("  ~ topic/a.events  partitions: 3 → 6\n      warning: keys move"),
            "{text}"
        );
        assert!(
            text.contains("(1 more as declared)") && text.ends_with("applied 1 change(s)"),
            "{text}"
        );
    }
}
