//! `seam snapshot export | inspect | import`: fetch a running service's snapshot into a file,
//! show what a snapshot file holds (and whether it is intact), and bootstrap a consumer from one
//! (`import` is `seam register` with the file's service as the source).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;

use super::output;
use seam::snapshot::file;

/// `seam snapshot` subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a running service's snapshot (its `GET /snapshot`) to a file.
    Export {
        /// The service, found by the address it announced in $SEAM_HOME/run.
        #[arg(long, required_unless_present = "url")]
        service: Option<String>,
        /// The service's base URL instead, e.g. http://127.0.0.1:7301.
        #[arg(long, conflicts_with = "service")]
        url: Option<String>,
        /// The file to write.
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Check a snapshot file and print its cut: service, seq, offset map, record count.
    Inspect {
        /// The snapshot file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bootstrap a consumer from a snapshot file: registers the file's service as its source.
    Import {
        /// The consuming service.
        consumer: String,
        /// The snapshot file.
        file: PathBuf,
        /// The topology file to add the subscription to.
        #[arg(long, short = 't', default_value = super::register::DEFAULT_TOPOLOGY)]
        topology: PathBuf,
        /// The consumer's base URL; default: the address it announced in $SEAM_HOME/run.
        #[arg(long)]
        url: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `seam snapshot` command.
pub async fn run(command: SnapshotCommand) -> anyhow::Result<ExitCode> {
    match command {
        SnapshotCommand::Import {
            consumer,
            file: path,
            topology,
            url,
            json,
        } => {
            let what = path.display().to_string();
            let f = std::fs::File::open(&path).with_context(|| format!("opening {what}"))?;
            let (meta, _) = file::read(std::io::BufReader::new(f), &what, None)?;
            super::register::run(super::register::RegisterArgs {
                consumer,
                source: meta.service,
                snapshot: Some(what),
                from_beginning: false,
                accept_gap: false,
                topology,
                url,
                json,
            })
            .await
        }
        SnapshotCommand::Export {
            service,
            url,
            output: out,
        } => {
            let url = super::reach::service_url(service.as_deref().unwrap_or_default(), url.as_deref())?;
            let endpoint = format!("{url}/snapshot");
            let response = super::reach::http(None)
                .get(&endpoint)
                .send()
                .await
                .with_context(|| format!("GET {endpoint}"))?;
            let status = response.status();
            let bytes = response.bytes().await?;
            if !status.is_success() {
                bail!("{endpoint} answered {status}: {}", String::from_utf8_lossy(&bytes));
            }
            let (meta, _) = file::read(bytes.as_ref(), &endpoint, None)?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            output::line(&format!(
                "{}: snapshot of {} at seq {} with {} records, offsets {}",
                out.display(),
                meta.service,
                meta.seq,
                meta.records,
                serde_json::to_string(&meta.offsets)?
            ));
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCommand::Inspect { file: path, json } => {
            let what = path.display().to_string();
            let f = std::fs::File::open(&path).with_context(|| format!("opening {what}"))?;
            let (meta, _) = file::read(std::io::BufReader::new(f), &what, None)?;
            if json {
                output::line(&serde_json::to_string_pretty(&serde_json::json!({
                    "service": meta.service,
                    "seq": meta.seq,
                    "offsets": meta.offsets,
                    "records": meta.records,
                    "created": meta.created,
                    "schema_ids": meta.schemas.keys().collect::<Vec<_>>(),
                }))?);
            } else {
                output::line(&format!(
                    "{what}: intact snapshot of {} at seq {}, {} records, created {}\noffsets: {}",
                    meta.service,
                    meta.seq,
                    meta.records,
                    meta.created,
                    serde_json::to_string(&meta.offsets)?
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
