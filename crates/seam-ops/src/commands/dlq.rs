//! `seam dlq list | redrive | discard`: inspect dead letters, re-drive parked subjects once the
//! cause (a translator bug, a missing schema) is fixed, and settle the letters that can never be
//! redriven.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Subcommand;
use rdkafka::ClientConfig;

use super::output;
use crate::dlq_admin;
use seam::dlq::{DiscardRequest, Listed, RedriveRequest};
use seam_local::cluster::Endpoints;

/// `seam dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show dead letters with their class (poison, or parked behind an earlier letter), reason
    /// and status (pending, redriven, redrive-failed, resolved, discarded).
    List {
        /// Only this consumer (default: every consumer with a `<consumer>.dlq` topic).
        #[arg(long)]
        consumer: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running consumer to re-apply its parked events, in order, after the cause is fixed.
    Redrive {
        /// The consumer whose parked events to redrive.
        #[arg(long)]
        consumer: String,
        /// Only this subject (e.g. `order/42`); default: every parked subject.
        #[arg(long)]
        subject: Option<String>,
        /// Only subjects of this source topic.
        #[arg(long)]
        topic: Option<String>,
        /// Seconds to wait for the consumer's answer; 0 sends the request and returns.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Settle dead letters that can never be redriven, without applying their events: recorded
    /// on the DLQ topic with who, why and when; the subject is unparked once none is left.
    Discard {
        /// The consumer holding the letters.
        #[arg(long)]
        consumer: String,
        /// The subject whose letters to discard (e.g. `order/42`).
        #[arg(long)]
        subject: String,
        /// Only letters from this source topic.
        #[arg(long)]
        topic: Option<String>,
        /// Only the letter at this source offset (repeat for several); default: every letter of
        /// the subject.
        #[arg(long = "offset", value_name = "OFFSET")]
        offsets: Vec<i64>,
        /// Why; kept with each letter for audit.
        #[arg(long)]
        reason: String,
        /// Who decides (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// Then redrive the subject's remaining letters: skip the discarded one, let later ones
        /// through.
        #[arg(long)]
        redrive_rest: bool,
        /// Seconds to wait for the consumer's answer; 0 sends the request and returns.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
}

fn client() -> anyhow::Result<ClientConfig> {
    Ok(Endpoints::discover()?.client())
}

/// Runs a `seam dlq` command.
pub async fn run(command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List { consumer, json } => {
            let client = client()?;
            let letters = tokio::task::spawn_blocking(move || dlq_admin::list(&client, consumer.as_deref())).await??;
            if json {
                output::line(&serde_json::to_string_pretty(&letters)?);
            } else {
                print_table(&letters);
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Redrive {
            consumer,
            subject,
            topic,
            wait,
        } => redrive(consumer, RedriveRequest { subject, topic }, wait).await,
        DlqCommand::Discard {
            consumer,
            subject,
            topic,
            offsets,
            reason,
            by,
            redrive_rest,
            wait,
        } => {
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".into());
            let request = DiscardRequest {
                subject,
                topic,
                offsets,
                reason,
                by,
                redrive_rest,
            };
            discard(consumer, request, wait).await
        }
    }
}

async fn discard(consumer: String, request: DiscardRequest, wait: u64) -> anyhow::Result<ExitCode> {
    if let Err(e) = request.check() {
        bail!("{e}");
    }
    let client = client()?;
    let (c, name) = (client.clone(), consumer.clone());
    let before = tokio::task::spawn_blocking(move || dlq_admin::list(&c, Some(&name))).await??;
    let parked = |l: &Listed| matches!(l.status.as_str(), "pending" | "redrive-failed");
    let chosen: Vec<Listed> = before
        .iter()
        .filter(|l| {
            parked(l)
                && l.subject.as_deref() == Some(request.subject.as_str())
                && request.topic.as_ref().is_none_or(|t| &l.topic == t)
                && (request.offsets.is_empty() || request.offsets.contains(&l.offset))
        })
        .cloned()
        .collect();
    let settled = before.iter().any(|l| {
        l.status == "discarded"
            && l.subject.as_deref() == Some(request.subject.as_str())
            && (request.offsets.is_empty() || request.offsets.contains(&l.offset))
    });
    if chosen.is_empty() && settled {
        // Run again: what it asked for is done.
        output::line(&format!(
            "the dead letters of {} asked for are already discarded; nothing to do",
            request.subject
        ));
        return Ok(ExitCode::SUCCESS);
    }
    if chosen.is_empty() {
        bail!(
            "no parked dead letter of {consumer} matches subject {}{}; `seam dlq list --consumer {consumer}` shows what is parked",
            request.subject,
            if request.offsets.is_empty() {
                String::new()
            } else {
                format!(" at offsets {:?}", request.offsets)
            }
        );
    }
    let asked_at = dlq_admin::request_discard(&client, &consumer, &request).await?;
    output::line(&format!(
        "asked {consumer} to discard {} dead letter(s) of {} (reason: {}; by {})",
        chosen.len(),
        request.subject,
        request.reason,
        request.by
    ));
    if wait == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        let (c, name) = (client.clone(), consumer.clone());
        let now = tokio::task::spawn_blocking(move || dlq_admin::list(&c, Some(&name))).await??;
        let done: Vec<&Listed> = now
            .iter()
            .filter(|l| {
                chosen.iter().any(|p| p.same_letter(l))
                    && l.status == "discarded"
                    && l.redrive_time.as_ref().is_some_and(|t| *t >= asked_at)
            })
            .collect();
        if done.len() >= chosen.len() {
            for l in &done {
                output::line(&format!("discarded  {}  {}", l.source_label(), request.subject));
            }
            let left = now
                .iter()
                .filter(|l| parked(l) && l.subject.as_deref() == Some(request.subject.as_str()))
                .count();
            if left > 0 && !request.redrive_rest {
                output::line(&format!(
                    "{left} later letter(s) of {} stay parked; `seam dlq redrive --consumer {consumer} --subject {}` lets them through",
                    request.subject, request.subject
                ));
            }
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() > deadline {
            bail!(
                "{consumer} did not answer the discard request within {wait} s; is it running? The request stays on {consumer}.dlq and is applied when it starts"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn matches(letter: &Listed, request: &RedriveRequest) -> bool {
    !matches!(letter.status.as_str(), "redriven" | "resolved" | "discarded")
        && request
            .subject
            .as_ref()
            .is_none_or(|s| letter.subject.as_ref() == Some(s))
        && request.topic.as_ref().is_none_or(|t| &letter.topic == t)
}

async fn redrive(consumer: String, request: RedriveRequest, wait: u64) -> anyhow::Result<ExitCode> {
    let client = client()?;
    let (c, name) = (client.clone(), consumer.clone());
    let before = tokio::task::spawn_blocking(move || dlq_admin::list(&c, Some(&name))).await??;
    let pending: Vec<Listed> = before.into_iter().filter(|l| matches(l, &request)).collect();
    if pending.is_empty() {
        output::line(&format!(
            "nothing parked for {consumer} matching the request; nothing to redrive"
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let asked_at = dlq_admin::request_redrive(&client, &consumer, &request).await?;
    output::line(&format!(
        "asked {consumer} to redrive {} parked event(s); it applies them in order while running",
        pending.len()
    ));
    if wait == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        let (c, name) = (client.clone(), consumer.clone());
        let now = tokio::task::spawn_blocking(move || dlq_admin::list(&c, Some(&name))).await??;
        let answered: Vec<&Listed> = now
            .iter()
            .filter(|l| {
                pending.iter().any(|p| p.same_letter(l)) && l.redrive_time.as_ref().is_some_and(|t| *t >= asked_at)
            })
            .collect();
        let failed: Vec<&&Listed> = answered.iter().filter(|l| l.status == "redrive-failed").collect();
        if !failed.is_empty() || answered.len() >= pending.len() {
            for l in &answered {
                output::line(&format!(
                    "{}  {}  {}{}",
                    l.status,
                    l.source_label(),
                    l.subject.as_deref().unwrap_or("-"),
                    l.redrive_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
                ));
            }
            if failed.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            output::line(
                "the subject stays parked behind the first event that failed again; fix the cause and redrive again",
            );
            return Ok(ExitCode::FAILURE);
        }
        if Instant::now() > deadline {
            bail!(
                "{consumer} did not answer the redrive request within {wait} s; is it running? The request stays on {consumer}.dlq and is applied when it starts"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_table(letters: &[Listed]) {
    if letters.is_empty() {
        output::line("no dead letters");
        return;
    }
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|l| {
            vec![
                l.consumer.clone(),
                l.source_label(),
                l.subject.clone().unwrap_or_else(|| "-".into()),
                l.class.clone(),
                l.error.clone(),
                l.status.clone(),
                match &l.discarded {
                    Some(d) => format!("discarded by {}: {}", d.by, d.reason),
                    None => l.redrive_error.clone().unwrap_or_else(|| l.reason.clone()),
                },
            ]
        })
        .collect();
    output::line(&output::table(
        &["CONSUMER", "SOURCE", "SUBJECT", "CLASS", "ERROR", "STATUS", "REASON"],
        &rows,
    ));
}
