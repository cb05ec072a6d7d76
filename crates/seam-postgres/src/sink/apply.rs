//! Applies prepared foreign events to the consumer's database in one transaction with the
//! positions they advance, the source-journal watermarks that recognise an event coming again,
//! and the dead letters they produce. A statement that fails on an event's own data dead-letters
//! that event only: the batch is done again with a savepoint per event.

use std::collections::{BTreeMap, HashMap};

use futures_util::future::join_all;
use seam::runtime::{Prepared, RawEvent};
use seam::store::EventKey;
use tokio_postgres::{error::SqlState, Statement, Transaction};

use super::command::SinkCommand;
use super::tables::{self, Applied};

/// A foreign event decoded and translated, ready to apply.
pub struct Item {
    /// As read (partition -1: a snapshot record).
    pub raw: RawEvent,
    /// What the translator made of it.
    pub prepared: Prepared<SinkCommand>,
}

/// Why a batch was not applied.
#[derive(Debug)]
pub enum Failure {
    /// The connection or the server failed in a way that passes: reconnect and do it again.
    Transient(tokio_postgres::Error),
    /// A statement failed on an event's own values: roll back and apply the batch again with
    /// `careful`, which dead-letters that event alone.
    Statement,
}

fn classify(e: tokio_postgres::Error) -> Failure {
    if is_statement_error(&e) {
        Failure::Statement
    } else {
        Failure::Transient(e)
    }
}

/// Whether a server error concerns the statement and its values (the event is poison) rather
/// than the server or the connection (try again later).
pub fn is_statement_error(e: &tokio_postgres::Error) -> bool {
    let Some(db) = e.as_db_error() else {
        return false;
    };
    let code = db.code().code();
    // 08 connection, 40 rollback (serialization, deadlock), 53 resources, 57 operator
    // intervention (shutdown), 58 system: none says anything about the event.
    !["08", "40", "53", "57", "58", "XX"]
        .iter()
        .any(|class| code.starts_with(class))
        && db.code() != &SqlState::IN_FAILED_SQL_TRANSACTION
}

/// The server's message with its SQLSTATE, detail and hint.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            text
        }
    }
}

/// Prepared statements by SQL text; cleared with the connection.
#[derive(Default)]
pub struct Statements(HashMap<String, Statement>);

impl Statements {
    async fn get(&mut self, tx: &Transaction<'_>, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = tx.prepare(sql).await?;
        self.0.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

/// What a batch staged, written with it and known once it commits.
#[derive(Default)]
pub struct Outcome {
    /// Next offsets per partition.
    pub positions: BTreeMap<(String, i32), i64>,
    /// Watermarks raised.
    pub applied: Applied,
    /// Dead letters written to the outbox.
    pub letters: u64,
    /// Per item, what became of it.
    pub plans: Vec<Fate>,
}

/// The plan of one event: its statements, or nothing to run and why.
enum Plan<'a> {
    Run(&'a [SinkCommand]),
    Duplicate,
    Skip,
    Poison { kind: String, reason: String },
}

/// Applies `items` in `tx` (which the caller commits): statements, positions, watermarks and
/// dead letters. `known` holds the watermarks committed before; it is not changed here. Without
/// `careful` every statement is sent at once (the connection pipelines them, in order) and a
/// failing one fails the batch with [`Failure::Statement`]; with it each event runs inside a
/// savepoint, and an event whose statement fails is rolled back alone and dead-lettered.
pub async fn apply(
    tx: &Transaction<'_>,
    statements: &mut Statements,
    consumer: &str,
    items: &[Item],
    known: &Applied,
    careful: bool,
) -> Result<Outcome, Failure> {
    let mut outcome = Outcome::default();
    let mut plans = Vec::with_capacity(items.len());
    for item in items {
        let plan = match &item.prepared {
            Prepared::Commands(commands) => match tracked(&item.raw) {
                Some(at) if seen(known, &outcome.applied, &at) => Plan::Duplicate,
                Some((topic, partition, journal, seq)) => {
                    outcome.applied.insert((topic, partition, journal), seq);
                    Plan::Run(commands)
                }
                None => Plan::Run(commands),
            },
            Prepared::Filtered | Prepared::Unhandled { .. } => Plan::Skip,
            Prepared::Poison { kind, reason } => Plan::Poison {
                kind: kind.clone(),
                reason: reason.clone(),
            },
        };
        plans.push(plan);
    }
    for plan in &plans {
        if let Plan::Run(commands) = plan {
            for c in *commands {
                statements.get(tx, &c.statement).await.map_err(classify)?;
            }
        }
    }
    if careful {
        for plan in plans.iter_mut() {
            let Plan::Run(commands) = plan else { continue };
            tx.batch_execute("SAVEPOINT seam_event")
                .await
                .map_err(Failure::Transient)?;
            let mut failure = None;
            for c in *commands {
                let statement = statements.get(tx, &c.statement).await.map_err(classify);
                let result = match statement {
                    Ok(s) => tx.execute(&s, &params(c)).await,
                    Err(Failure::Statement) => {
                        failure = Some(format!("preparing `{}` failed", c.statement));
                        break;
                    }
                    Err(other) => return Err(other),
                };
                if let Err(e) = result {
                    if !is_statement_error(&e) {
                        return Err(Failure::Transient(e));
                    }
                    failure = Some(format!("`{}`: {}", c.statement, describe(&e)));
                    break;
                }
            }
            match failure {
                None => tx
                    .batch_execute("RELEASE SAVEPOINT seam_event")
                    .await
                    .map_err(Failure::Transient)?,
                Some(reason) => {
                    tx.batch_execute("ROLLBACK TO SAVEPOINT seam_event")
                        .await
                        .map_err(Failure::Transient)?;
                    *plan = Plan::Poison {
                        kind: "sql".into(),
                        reason: format!("the consumer's database refused the translated statement {reason}"),
                    };
                }
            }
        }
    } else {
        let mut calls = Vec::new();
        for plan in &plans {
            if let Plan::Run(commands) = plan {
                for c in *commands {
                    if let Some(statement) = statements.0.get(&c.statement).cloned() {
                        calls.push(async move { tx.execute(&statement, &params(c)).await });
                    }
                }
            }
        }
        if let Some(e) = join_all(calls).await.into_iter().find_map(Result::err) {
            return Err(classify(e));
        }
    }
    // Watermarks of events that ended as dead letters are not raised: a redelivery of one
    // is dead-lettered again rather than silently skipped.
    for (item, plan) in items.iter().zip(&plans) {
        if let (Plan::Poison { .. }, Some((topic, partition, journal, seq))) = (plan, tracked(&item.raw)) {
            let key = (topic, partition, journal);
            if outcome.applied.get(&key) == Some(&seq) {
                outcome.applied.remove(&key);
            }
        }
    }
    let mut letters = Vec::new();
    for (item, plan) in items.iter().zip(&plans) {
        let raw = &item.raw;
        if raw.partition >= 0 {
            outcome
                .positions
                .insert((raw.topic.clone(), raw.partition), raw.offset + 1);
        }
        if let Plan::Poison { kind, reason } = plan {
            letters.push(raw.dead_letter(consumer, kind, reason.clone()));
        }
    }
    tables::store_positions(tx, consumer, &outcome.positions)
        .await
        .map_err(classify_bookkeeping)?;
    tables::store_applied(tx, consumer, &outcome.applied)
        .await
        .map_err(classify_bookkeeping)?;
    for l in &letters {
        let json = serde_json::to_vec(l).unwrap_or_default();
        tx.execute(
            "INSERT INTO seam_dead_letters (consumer, letter) VALUES ($1, $2)",
            &[&consumer, &json],
        )
        .await
        .map_err(classify_bookkeeping)?;
    }
    outcome.letters = letters.len() as u64;
    outcome.plans = plans.iter().map(Plan::outcome).collect();
    Ok(outcome)
}

/// Bookkeeping statements are the sink's own: any failure of theirs is the server's.
fn classify_bookkeeping(e: tokio_postgres::Error) -> Failure {
    Failure::Transient(e)
}

fn params(c: &SinkCommand) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    c.params.iter().map(|p| p as _).collect()
}

/// `(topic, partition, journal, seq)` of an event a seam producer published: how it is known
/// when it comes again. A snapshot record (partition -1) is covered by the snapshot's cut.
fn tracked(raw: &RawEvent) -> Option<(String, i32, String, i64)> {
    if raw.partition < 0 {
        return None;
    }
    match raw.key()? {
        EventKey::Tracked { topic, journal, seq } => Some((topic, raw.partition, journal.id, seq as i64)),
        _ => None,
    }
}

fn seen(known: &Applied, staged: &Applied, at: &(String, i32, String, i64)) -> bool {
    let key = (at.0.clone(), at.1, at.2.clone());
    known.get(&key).is_some_and(|s| *s >= at.3) || staged.get(&key).is_some_and(|s| *s >= at.3)
}

/// What became of one event of a batch (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Its statements ran.
    Applied,
    /// Its source journal watermark says it was taken in before.
    Duplicate,
    /// Nothing to run (ignored or unhandled record type, or no command).
    Skipped,
    /// Dead-lettered.
    DeadLettered,
}

impl Plan<'_> {
    fn outcome(&self) -> Fate {
        match self {
            Plan::Run(_) => Fate::Applied,
            Plan::Duplicate => Fate::Duplicate,
            Plan::Skip => Fate::Skipped,
            Plan::Poison { .. } => Fate::DeadLettered,
        }
    }
}
