//! `seam snapshot export | inspect`: fetch a running service's snapshot into a file, and show
//! what a snapshot file holds (and whether it is intact) before a consumer bootstraps from it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;

use super::output;
use crate::snapshot::file;

/// `seam snapshot` subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a running service's snapshot (its `GET /snapshot`) to a file.
    Export {
        /// The service's base URL, e.g. http://127.0.0.1:7301.
        #[arg(long)]
        url: String,
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
}

/// Runs a `seam snapshot` command.
pub async fn run(command: SnapshotCommand) -> anyhow::Result<ExitCode> {
    match command {
        SnapshotCommand::Export { url, output: out } => {
            let endpoint = format!("{}/snapshot", url.trim_end_matches('/'));
            let response = reqwest::get(&endpoint)
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
