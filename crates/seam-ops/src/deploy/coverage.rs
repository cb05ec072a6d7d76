//! The schema coverage gate: every translator's reader schema must resolve against every
//! version of the producer's schema that is registered (so possibly still on the topic) and
//! against the version a deploy is about to register. The registry's own check compares a
//! producer's versions with each other; only this one knows what the consumers read, so a
//! producer dropping a field a translator needs is refused before anything is registered.
//!
//! Reader schemas come from two places: the files each translator compiles in
//! (`<translators>/<translator>/reader/*.avsc`, when the topology names `translators:`), and
//! the running consumers, which report the readers compiled into them (`GET /subscriptions`) —
//! an older binary still running is what a new producer version must not break.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use seam::codec::{subject_name, Catalog};
use seam::topology::Topology;
use seam::translator::{check_reader, events_topic};
use serde::Serialize;

use super::{Desired, Registry};

/// One translator's reader of one record, and where it was found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reader {
    /// The translator (`<source>-to-<consumer>`).
    pub translator: String,
    /// The source service it reads.
    pub source: String,
    /// The record's full name.
    pub record: String,
    /// The reader schema's text.
    pub text: String,
    /// Where it came from: a file's path, or `running <consumer>`.
    pub origin: String,
}

/// A reader checked against every writer version of its subject.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// The translator.
    pub translator: String,
    /// The subject (topic-record name strategy).
    pub subject: String,
    /// The writer versions it reads: registered version numbers, and `new` for the schema
    /// the topology would register.
    pub versions: Vec<String>,
    /// Where the reader schema came from.
    pub origin: String,
}

/// A reader that cannot read one writer version.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// The translator.
    pub translator: String,
    /// The subject.
    pub subject: String,
    /// The writer version: a registered number, or `new`.
    pub version: String,
    /// Where the reader schema came from.
    pub origin: String,
    /// Avro's reason, naming the field.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let version = if self.version == "new" {
            "the version this topology would register".to_string()
        } else {
            format!("registered version {}", self.version)
        };
        write!(
            f,
            "translator {} ({}) cannot read {} {version}: {}; keep the field in the producer's schema, or give it a default in the reader schema and release that translator first",
            self.translator, self.origin, self.subject, self.reason
        )
    }
}

/// What the gate found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Coverage {
    /// Every pair that resolves.
    pub checked: Vec<Checked>,
    /// Every pair that does not: the deploy must not go ahead.
    pub refused: Vec<Refusal>,
    /// What could not be checked, and why.
    pub notes: Vec<String>,
}

/// The reader schemas of every translator the topology runs: its files (when the topology names
/// `translators:`) and those of the consumers running at `running` (name → base URL).
pub async fn readers(topology: &Topology, running: &BTreeMap<String, String>) -> (Vec<Reader>, Vec<String>) {
    let mut out = BTreeSet::new();
    let mut notes = Vec::new();
    let http = Some(crate::commands::reach::http(Some(Duration::from_secs(3))));
    for consumer in &topology.consumers {
        let sink = topology
            .service(&consumer.service)
            .is_some_and(|s| s.is_postgres_sink());
        if sink {
            continue;
        }
        let declared = match (running.get(&consumer.service), &http) {
            (Some(url), Some(http)) => running_readers(http, url).await,
            _ => None,
        };
        let mut unchecked = Vec::new();
        for source in &consumer.sources {
            let mut found = false;
            if let Some(dir) = &topology.translators {
                let dir = dir.join(&source.translator).join("reader");
                match Catalog::load_dir(&dir) {
                    Ok(catalog) => {
                        found = true;
                        for record in catalog.records() {
                            out.insert(Reader {
                                translator: source.translator.clone(),
                                source: source.service.clone(),
                                record: record.full_name.clone(),
                                text: record.source.clone(),
                                origin: dir.display().to_string(),
                            });
                        }
                    }
                    Err(e) => notes.push(format!(
                        "the reader schemas of {} in {}: {e}",
                        source.translator,
                        dir.display()
                    )),
                }
            }
            let topic = events_topic(&source.service);
            if let Some(readers) = declared.as_ref().and_then(|d| d.get(&topic)) {
                found = true;
                for (record, text) in readers {
                    out.insert(Reader {
                        translator: source.translator.clone(),
                        source: source.service.clone(),
                        record: record.clone(),
                        text: text.clone(),
                        origin: format!("running {}", consumer.service),
                    });
                }
            }
            if !found {
                unchecked.push(source.translator.as_str());
            }
        }
        if !unchecked.is_empty() {
            notes.push(format!(
                "the reader schemas of {} were not checked against the registry: the topology names no `translators:` directory holding them and {} is not running here",
                unchecked.join(", "),
                consumer.service
            ));
        }
    }
    (out.into_iter().collect(), notes)
}

/// A running consumer's compiled readers per topic, from its `GET /subscriptions`.
async fn running_readers(http: &reqwest::Client, url: &str) -> Option<BTreeMap<String, BTreeMap<String, String>>> {
    let answer = http.get(format!("{url}/subscriptions")).send().await.ok()?;
    let body: serde_json::Value = answer.error_for_status().ok()?.json().await.ok()?;
    let declared: BTreeMap<String, seam::runtime::Declared> = serde_json::from_value(body["declared"].clone()).ok()?;
    Some(declared.into_iter().map(|(topic, d)| (topic, d.readers)).collect())
}

/// Resolves each reader against every registered version of its subject and against the
/// version `desired` would register.
pub async fn check(readers: &[Reader], desired: &Desired, registry: &Registry) -> anyhow::Result<Coverage> {
    let mut coverage = Coverage::default();
    let mut writers: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for reader in readers {
        let subject = subject_name(&events_topic(&reader.source), &reader.record);
        if !writers.contains_key(&subject) {
            let mut versions: Vec<(String, String)> = registry
                .schemas(&subject)
                .await?
                .into_iter()
                .map(|(v, text)| (v.to_string(), text))
                .collect();
            if let Some(new) = desired.schemas.get(&subject) {
                if !versions.iter().any(|(_, text)| same_schema(text, &new.text)) {
                    versions.push(("new".into(), new.text.clone()));
                }
            }
            writers.insert(subject.clone(), versions);
        }
        let versions = &writers[&subject];
        if versions.is_empty() {
            coverage.notes.push(format!(
                "{} reads {}, which {} has never registered and does not declare",
                reader.translator, reader.record, reader.source
            ));
            continue;
        }
        let mut resolved = Vec::new();
        for (version, writer) in versions {
            match check_reader(writer, &reader.text) {
                Ok(()) => resolved.push(version.clone()),
                Err(reason) => coverage.refused.push(Refusal {
                    translator: reader.translator.clone(),
                    subject: subject.clone(),
                    version: version.clone(),
                    origin: reader.origin.clone(),
                    reason,
                }),
            }
        }
        coverage.checked.push(Checked {
            translator: reader.translator.clone(),
            subject,
            versions: resolved,
            origin: reader.origin.clone(),
        });
    }
    Ok(coverage)
}

/// Whether two schema texts are the same schema (Avro's canonical form), so a version already
/// registered is not checked twice as new.
fn same_schema(a: &str, b: &str) -> bool {
    match (apache_avro::Schema::parse_str(a), apache_avro::Schema::parse_str(b)) {
        (Ok(a), Ok(b)) => a.canonical_form() == b.canonical_form(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITER: &str = r#"{"type":"record","name":"Thing","namespace":"t","fields":[{"name":"id","type":"string"},{"name":"size","type":"int"}]}"#;
    const DROPPED: &str =
        r#"{"type":"record","name":"Thing","namespace":"t","fields":[{"name":"id","type":"string"}]}"#;
    const READER: &str = r#"{"type":"record","name":"Thing","namespace":"t","fields":[{"name":"size","type":"int"}]}"#;

    #[test]
    fn a_refusal_names_the_translator_subject_version_and_field() {
        let reason = check_reader(DROPPED, READER).expect_err("size is gone");
        let r = Refusal {
            translator: "a-to-b".into(),
            subject: "a.events-t.Thing".into(),
            version: "new".into(),
            origin: "running b".into(),
            reason,
        };
        let text = r.to_string();
        for part in ["a-to-b", "a.events-t.Thing", "would register", "size", "running b"] {
            assert!(text.contains(part), "{part} missing from: {text}");
        }
        assert!(check_reader(WRITER, READER).is_ok());
    }

    #[test]
    fn the_same_schema_written_differently_is_one_version() {
        let spaced = WRITER.replace(',', ", ");
        assert!(same_schema(WRITER, &spaced));
        assert!(!same_schema(WRITER, DROPPED));
    }
}
