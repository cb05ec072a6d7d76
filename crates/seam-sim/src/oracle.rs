//! What must hold after every schedule, whatever struck it (DESIGN.md's invariants as seen
//! from outside):
//!
//! - every topic holds each journal entry of its service exactly once, in seq order per subject,
//!   with the entry's subject and body;
//! - every command acknowledged as applied is in its service's journal (nothing acknowledged is
//!   lost to a crash);
//! - every flow's two sides hold the same rows;
//! - every consumer's replica equals the fold of its sources' events, read again in another
//!   per-partition-order interleaving through the same path;
//! - every undecodable record is parked at each consumer of its topic, never lost;
//! - no part of the runtime failed in a way no fault explains.

use std::collections::{BTreeMap, BTreeSet};

use seam::translator::events_topic;

use crate::schedule::{Outcome, Sim};

fn sorted(mut rows: Vec<String>) -> Vec<String> {
    rows.sort();
    rows
}

/// Judges the settled system; adds what it finds to `outcome`.
pub fn check(sim: &mut Sim, outcome: &mut Outcome) {
    if !matches!(
        sim.registration,
        crate::schedule::Registration::Done(_) | crate::schedule::Registration::Refused(_)
    ) {
        outcome
            .violations
            .push(format!("the registration did not finish: {:?}", sim.registration));
    }
    for node in &sim.nodes {
        outcome.violations.extend(node.failures().iter().cloned());
    }
    if sim.nodes.iter().any(|n| n.store().is_none()) {
        outcome.violations.push("a node is down after settling".into());
        return;
    }
    topics_hold_each_entry_once(sim, outcome);
    acknowledged_commands_are_kept(sim, outcome);
    placeholders_are_kept(sim, outcome);
    flows_agree(sim, outcome);
    replicas_are_folds(sim, outcome);
    poison_is_parked(sim, outcome);
    fixes_are_redriven(sim, outcome);
    replays_find_nothing(sim, outcome);
}

/// A dry-run replay of every replica after the schedule finds nothing to change: the live
/// replica, its dead letters included, is what reading the sources again gives.
fn replays_find_nothing(sim: &mut Sim, outcome: &mut Outcome) {
    for i in 0..sim.nodes.len() {
        let name = sim.nodes[i].name().to_string();
        if let Some(why) = sim.nodes[i]
            .sources()
            .iter()
            .find_map(|t| excused(sim, t.trim_end_matches(".events"), &name))
        {
            outcome
                .skipped
                .push(format!("{name}: dry-run replay not checked, {why}"));
            continue;
        }
        let asked = sim.on_node(i, |n, env| n.request_replay(env, true));
        if !asked.starts_with("REPLAY") {
            if asked.starts_with("replay refused") {
                outcome.skipped.push(format!("{name}: {asked}"));
            }
            continue;
        }
        let mut steps = 0;
        while sim.on_node(i, |n, env| n.replay_step(env)).is_some() {
            steps += 1;
            if steps > 100_000 {
                outcome
                    .violations
                    .push(format!("{name}: the dry-run replay did not finish"));
                break;
            }
        }
        // Undecodable records before a registered consumer's bootstrap cut were never its to
        // take in; a rebuild from offset 0 reads and dead-letters them. (A replay from the
        // source's snapshot would not; the simulator replays from offset 0 only.)
        let before_cut = |r: &seam::runtime::ReplayReport| -> u64 {
            let crate::schedule::Registration::Done(map) = &sim.registration else {
                return 0;
            };
            if name != crate::schedule::REGISTER.0 {
                return 0;
            }
            r.shadow_dead_letters
                .iter()
                .filter(|l| l.offset < map.position(&l.topic, l.partition))
                .count() as u64
        };
        match sim.nodes[i].last_replay() {
            Some(r)
                if r.differing_count == 0
                    && r.shadow_dead_letter_count == before_cut(r)
                    && r.resolved_dead_letters == 0 => {}
            Some(r) => outcome.violations.push(format!(
                "{name}: a dry-run replay after the schedule differs: {} keys {:?}, {} letters only in the rebuild, {} live letters the rebuild applied",
                r.differing_count, r.differing, r.shadow_dead_letter_count, r.resolved_dead_letters
            )),
            None => outcome.violations.push(format!("{name}: the dry-run replay reported nothing")),
        }
    }
}

/// Once a consumer's fix is deployed and redriven, nothing but undecodable records stays parked.
fn fixes_are_redriven(sim: &Sim, outcome: &mut Outcome) {
    for node in sim
        .nodes
        .iter()
        .filter(|n| n.upgraded() && !n.sources().is_empty() && !n.mixed_history())
    {
        let left: Vec<(String, String)> = node
            .parked()
            .into_iter()
            .filter(|(_, subject)| !subject.starts_with("rogue/"))
            .collect();
        if !left.is_empty() {
            outcome.violations.push(format!(
                "{}: its fix is deployed and redriven, but letters stay parked: {left:?}",
                node.name()
            ));
        }
    }
}

fn topics_hold_each_entry_once(sim: &Sim, outcome: &mut Outcome) {
    for node in &sim.nodes {
        let Some(store) = node.store() else { continue };
        let topic = events_topic(node.name());
        let journal = match store.journal_from(1, usize::MAX) {
            Ok(j) => j,
            Err(e) => {
                outcome
                    .violations
                    .push(format!("{}: reading the journal: {e}", node.name()));
                continue;
            }
        };
        let Ok(partitions) = sim.kafka.partitions(&topic) else {
            continue;
        };
        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        let mut bodies: BTreeMap<u64, (String, Vec<u8>)> = BTreeMap::new();
        for partition in 0..partitions {
            let mut last_of_subject: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
            for r in sim.kafka.history(&topic, partition) {
                let id = r
                    .headers
                    .iter()
                    .find(|(k, _)| k == seam::envelope::EVENT_ID)
                    .and_then(|(_, v)| v.as_deref())
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(seam::envelope::parse_event_id)
                    .map(|(s, n)| (s.to_string(), n));
                let Some((service, seq)) = id else { continue };
                if service != node.name() {
                    continue;
                }
                *seen.entry(seq).or_default() += 1;
                let key = r.key.clone().unwrap_or_default();
                if let Some(before) = last_of_subject.insert(key.clone(), seq) {
                    if before >= seq {
                        outcome.violations.push(format!(
                            "{topic}/{partition}: entry {seq} of subject {} follows entry {before}",
                            String::from_utf8_lossy(&key)
                        ));
                    }
                }
                let body = r.value.as_deref().and_then(|v| v.get(5..)).unwrap_or_default().to_vec();
                bodies.insert(seq, (String::from_utf8_lossy(&key).into_owned(), body));
            }
        }
        for entry in &journal {
            match seen.get(&entry.seq) {
                None => outcome
                    .violations
                    .push(format!("{topic}: journal entry {} was never published", entry.seq)),
                Some(1) => {}
                Some(n) => outcome.violations.push(format!(
                    "{topic}: journal entry {} is on the topic {n} times",
                    entry.seq
                )),
            }
            if let Some((subject, body)) = bodies.get(&entry.seq) {
                if *subject != entry.subject || *body != entry.body {
                    outcome.violations.push(format!(
                        "{topic}: entry {} on the topic is not the journal's (subject {subject} vs {})",
                        entry.seq, entry.subject
                    ));
                }
            }
        }
        let last = journal.last().map_or(0, |e| e.seq);
        for seq in seen.keys().filter(|s| **s > last) {
            outcome.violations.push(format!(
                "{topic}: entry {seq} is on the topic but the journal ends at {last} (a published entry was lost from the store)"
            ));
        }
    }
}

fn acknowledged_commands_are_kept(sim: &Sim, outcome: &mut Outcome) {
    for node in &sim.nodes {
        let Some(store) = node.store() else { continue };
        let last = store.last_seq().unwrap_or(0);
        for (id, seqs) in node.acknowledged() {
            for seq in seqs {
                if *seq > last {
                    outcome.violations.push(format!(
                        "{}: command #{id} was acknowledged with entry {seq}, but the journal ends at {last}",
                        node.name()
                    ));
                }
            }
        }
    }
}

/// A placeholder an acknowledged own command created stays until its foreign data arrives:
/// replays and redrives must not drop it (getOrCreate for own commands).
fn placeholders_are_kept(sim: &Sim, outcome: &mut Outcome) {
    for node in &sim.nodes {
        let Some(store) = node.store() else { continue };
        for id in node.acknowledged().keys() {
            let Some((_, command)) = sim.sent.get(id) else { continue };
            if command["command"] != "expect" {
                continue;
            }
            let key = format!("parcel/{}", command["order"].as_str().unwrap_or_default());
            if store.model_get(&key).ok().flatten().is_none() {
                outcome.violations.push(format!(
                    "{}: command #{id} {command} was acknowledged, but {key} is gone",
                    node.name()
                ));
            }
        }
    }
}

/// Why a flow cannot be compared, if it cannot.
fn excused(sim: &Sim, source: &str, consumer: &str) -> Option<String> {
    let topic = events_topic(source);
    if sim.nodes.iter().any(|n| n.name() == consumer && n.mixed_history()) {
        return Some(format!(
            "{source}->{consumer}: the consumer's translator fix was rolled back, so its replica holds what no single release builds"
        ));
    }
    if (consumer, source) == crate::schedule::REGISTER {
        if let crate::schedule::Registration::Refused(why) = &sim.registration {
            return Some(format!("{source}->{consumer}: the registration was refused ({why})"));
        }
    }
    let node = sim.nodes.iter().find(|n| n.name() == consumer)?;
    if node.accepted().contains(&topic) {
        return Some(format!(
            "{source}->{consumer}: the operator accepted a gap (seam register --accept-gap)"
        ));
    }
    if let Some(why) = node.stopped().get(&topic) {
        return Some(format!("{source}->{consumer}: the consumer stopped reading ({why})"));
    }
    None
}

fn flows_agree(sim: &Sim, outcome: &mut Outcome) {
    for (source, consumer) in crate::world::flows() {
        let flow = format!("{source}->{consumer}");
        if let Some(why) = excused(sim, source, consumer) {
            outcome.skipped.push(why);
            continue;
        }
        let (Some(s), Some(c)) = (
            sim.nodes.iter().find(|n| n.name() == source),
            sim.nodes.iter().find(|n| n.name() == consumer),
        ) else {
            continue;
        };
        let (Some(s_store), Some(c_store)) = (s.store(), c.store()) else {
            continue;
        };
        let parked: BTreeSet<String> = c_store
            .parked(None)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.letter.topic == events_topic(source))
            .filter_map(|p| p.letter.subject)
            .filter(|s| !s.starts_with("rogue/"))
            .collect();
        if !parked.is_empty() && source != "orders" {
            outcome
                .skipped
                .push(format!("{flow}: subjects parked behind dead letters: {parked:?}"));
            continue;
        }
        let rows_of = if c.upgraded() {
            format!("{flow}{}", crate::world::FIXED)
        } else {
            flow.clone()
        };
        let from = s.shared(s_store, &rows_of).map(sorted);
        let to = c.shared(c_store, &rows_of).map(sorted);
        if from != to {
            outcome.violations.push(format!(
                "{flow}: the sides differ\n  {source}: {:?}\n  {consumer}: {:?}",
                from.unwrap_or_default(),
                to.unwrap_or_default()
            ));
        }
    }
}

fn replicas_are_folds(sim: &mut Sim, outcome: &mut Outcome) {
    for i in 0..sim.nodes.len() {
        let sources = sim.nodes[i].sources();
        if sources.is_empty() {
            continue;
        }
        let name = sim.nodes[i].name().to_string();
        if let Some(why) = sources
            .iter()
            .find_map(|t| excused(sim, t.trim_end_matches(".events"), &name))
        {
            outcome.skipped.push(format!("{name}: fold not checked, {why}"));
            continue;
        }
        if let Some(t) = sources.iter().find(|t| sim.kafka.truncated(t)) {
            outcome
                .skipped
                .push(format!("{name}: fold not checked, retention deleted part of {t}"));
            continue;
        }
        let mut records = Vec::new();
        for topic in &sources {
            let Ok(partitions) = sim.kafka.partitions(topic) else {
                continue;
            };
            for partition in 0..partitions {
                records.push((topic.clone(), partition, sim.kafka.history(topic, partition)));
            }
        }
        let folded = sim.on_node(i, |n, env| n.fold(env, &records));
        let folded = match folded {
            Ok(store) => store,
            Err(e) => {
                outcome
                    .violations
                    .push(format!("{name}: folding its sources failed: {e}"));
                continue;
            }
        };
        let node = &sim.nodes[i];
        let Some(live) = node.store() else { continue };
        for (source, consumer) in crate::world::flows() {
            if consumer != name {
                continue;
            }
            let flow = format!("{source}->{consumer}");
            let rows_of = if node.upgraded() {
                format!("{flow}{}", crate::world::FIXED)
            } else {
                flow.clone()
            };
            let a = node.shared(live, &rows_of).map(sorted);
            let b = node.shared(&folded, &rows_of).map(sorted);
            if a != b {
                outcome.violations.push(format!(
                    "{flow}: the replica is not the fold of the source's events\n  live: {:?}\n  fold: {:?}",
                    a.unwrap_or_default(),
                    b.unwrap_or_default()
                ));
            }
        }
    }
}

fn poison_is_parked(sim: &Sim, outcome: &mut Outcome) {
    for (topic, partition, offset) in &sim.rogue {
        for node in &sim.nodes {
            if !node.sources().contains(topic) || node.stopped().contains_key(topic) {
                continue;
            }
            // A registered consumer starts at the snapshot's offsets: what came before is the
            // snapshot's business (the source never took the record in).
            if let crate::schedule::Registration::Done(map) = &sim.registration {
                if node.name() == crate::schedule::REGISTER.0 && *offset < map.position(topic, *partition) {
                    continue;
                }
            }
            if *offset < node.rebuilt_cut(topic, *partition) {
                continue;
            }
            let Some(store) = node.store() else { continue };
            let parked =
                store.parked(None).unwrap_or_default().into_iter().any(|p| {
                    p.letter.topic == *topic && p.letter.partition == *partition && p.letter.offset == *offset
                });
            if !parked {
                outcome.violations.push(format!(
                    "{}: the undecodable record {topic}/{partition}@{offset} is neither applied nor parked",
                    node.name()
                ));
            }
        }
    }
}
