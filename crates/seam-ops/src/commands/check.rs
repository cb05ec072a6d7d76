//! `seam check`: the schema coverage gate of `seam deploy` on its own, changing nothing, for a
//! CI job to run before a producer's schema change merges. Every translator's reader schema
//! must read every version of its record still registered and the version the topology would
//! register; a refusal names the translator, the subject, the version and the field.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::deploy::REFUSED;
use super::output;
use crate::deploy::coverage::{self, Coverage};
use crate::deploy::{Desired, Registry};
use seam::topology::Topology;
use seam_local::cluster::Endpoints;

/// Options of `seam check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The topology file; `translators:` in it names where each translator's reader schemas are.
    #[arg(short = 't', long = "topology", value_name = "FILE")]
    topology: PathBuf,
    /// The schema registry (Confluent-compatible API base URL); default: SEAM_REGISTRY or the
    /// local stack's.
    #[arg(long, value_name = "URL")]
    registry: Option<String>,
    /// Print `{"checked": [...], "refused": [...], "notes": [...]}` as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `seam check`; exits 1 when a reader cannot read a version.
pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let topology = Topology::load(&args.topology)?;
    let registry_url = match &args.registry {
        Some(url) => url.clone(),
        None => Endpoints::discover()
            .and_then(|e| e.registry().map(str::to_string))
            .context("finding the schema registry to check against (or name it with --registry URL)")?,
    };
    if !registry_url.starts_with("http://") && !registry_url.starts_with("https://") {
        anyhow::bail!(
            "--registry {registry_url}: not an http(s) URL; give the registry's API base, e.g. http://localhost:8081"
        );
    }
    let registry = Registry::new(&registry_url)?;
    let desired = Desired::of(&topology, 1)?;
    let running: BTreeMap<String, String> = seam_local::Home::from_env()
        .map(|h| h.announced().into_iter().collect())
        .unwrap_or_default();
    let (readers, unread) = coverage::readers(&topology, &running).await;
    let mut found = coverage::check(&readers, &desired, &registry)
        .await
        .with_context(|| format!("checking {} against {registry_url}", args.topology.display()))?;
    found.notes.splice(0..0, unread);
    if args.json {
        output::line(&serde_json::to_string_pretty(&found)?);
    } else {
        output::line(&render(
            &format!("{} against {registry_url}", args.topology.display()),
            &found,
        ));
    }
    Ok(if found.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(REFUSED)
    })
}

fn render(header: &str, c: &Coverage) -> String {
    let mut out = vec![header.to_string()];
    let rows: Vec<Vec<String>> = c
        .checked
        .iter()
        .map(|k| {
            let versions = if k.versions.is_empty() {
                "none".to_string()
            } else {
                k.versions.join(", ")
            };
            vec![k.translator.clone(), k.subject.clone(), versions, k.origin.clone()]
        })
        .collect();
    if rows.is_empty() {
        out.push("  no reader schemas found to check".into());
    } else {
        out.push(output::table(
            &["TRANSLATOR", "SUBJECT", "READS VERSIONS", "READER"],
            &rows,
        ));
    }
    for n in &c.notes {
        out.push(format!("note: {n}"));
    }
    if c.refused.is_empty() {
        out.push(format!(
            "ok: {} reader schema(s) read every registered version and what this topology would register",
            c.checked.len()
        ));
    } else {
        out.push(format!("refused ({} problem(s)):", c.refused.len()));
        for r in &c.refused {
            out.push(format!("  - {r}"));
        }
    }
    out.join("\n")
}
