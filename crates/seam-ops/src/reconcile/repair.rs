//! `seam reconcile --repair`: rebuilds exactly the drifted subjects of each consumer by one
//! targeted replay (`POST /replay` with `subjects`): the consumer reads only the partitions
//! holding them, applies only their events through its normal apply path into a shadow store,
//! and swaps in only the keys that rebuild wrote. Subjects with an unsettled dead letter are
//! left to a redrive, which is what settles them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::FlowReport;

/// What the repair of one consumer did.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    /// The consumer.
    pub consumer: String,
    /// The sources whose replicas were rebuilt.
    pub sources: Vec<String>,
    /// The subjects rebuilt.
    pub subjects: Vec<String>,
    /// Whether the rebuilt keys replaced the live ones.
    pub swapped: bool,
    /// Keys the swap replaced.
    pub keys: Vec<String>,
    /// Why nothing was swapped, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Subjects not replayed, each with why.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, String>,
}

/// One consumer's share of the drift: sources, subjects to replay, subjects left alone (why).
type Share = (BTreeSet<String>, BTreeSet<String>, BTreeMap<String, String>);

/// Repairs the drift in `reports`, one targeted replay per consumer.
pub async fn repair(reports: &[FlowReport], urls: &BTreeMap<String, String>) -> Vec<Repair> {
    let mut per: BTreeMap<&str, Share> = BTreeMap::new();
    for r in reports {
        for d in &r.drift {
            let entry = per.entry(r.consumer.as_str()).or_default();
            match &d.dead_letter {
                Some(letter) => {
                    entry.2.insert(
                        d.subject.clone(),
                        format!(
                            "its dead letter ({letter}) is settled by `seam dlq redrive {}`, not a replay",
                            r.consumer
                        ),
                    );
                }
                None => {
                    entry.0.insert(r.source.clone());
                    entry.1.insert(d.subject.clone());
                }
            }
        }
    }
    let http = crate::commands::reach::http(None);
    let mut out = Vec::new();
    for (consumer, (sources, subjects, skipped)) in per {
        let mut repair = Repair {
            consumer: consumer.to_string(),
            sources: sources.iter().cloned().collect(),
            subjects: subjects.iter().cloned().collect(),
            swapped: false,
            keys: Vec::new(),
            refused: None,
            skipped,
        };
        if subjects.is_empty() {
            out.push(repair);
            continue;
        }
        let Some(url) = urls.get(consumer) else {
            repair.refused = Some(format!("{consumer} is not running here"));
            out.push(repair);
            continue;
        };
        let body = serde_json::json!({ "sources": sources, "subjects": subjects });
        match crate::commands::replay::request(&http, consumer, url, &body, true).await {
            Ok(report) => {
                repair.swapped = report["swapped"] == true;
                repair.keys = serde_json::from_value(report["differing"].clone()).unwrap_or_default();
                repair.refused = report["refused"].as_str().map(str::to_string);
                if !repair.swapped && repair.refused.is_none() && !repair.keys.is_empty() {
                    repair.refused = Some("the replay did not swap".into());
                }
            }
            Err(e) => repair.refused = Some(format!("{e:#}")),
        }
        out.push(repair);
    }
    out
}
