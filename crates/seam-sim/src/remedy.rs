//! The operator's remedy for a consumer whose next events of a source are gone: the consumer
//! names it (`seam replay C --source S --from-snapshot` when it keeps a replica of S), and the
//! operator carries it out while traffic and faults go on. Every source the rebuild reads
//! exports a snapshot (`GET /snapshot`, its writer held until the offsets are read), one at a
//! time, and the consumer then replays from them ([`crate::node::Process::replay_from_snapshots`]).

use std::collections::BTreeMap;

use crate::schedule::{snapshot_file, Registration, Sim, REGISTER, SNAPSHOT_DEADLINE};

/// A remedy in progress.
#[derive(Debug)]
pub(crate) struct Remedy {
    /// The consumer being rebuilt.
    consumer: usize,
    /// The sources it needs a snapshot of.
    sources: Vec<String>,
    /// Snapshot files received so far, by source.
    got: BTreeMap<String, Vec<u8>>,
    /// The source exporting now, and the steps it has held.
    exporting: Option<(usize, usize)>,
}

impl Remedy {
    /// Whether it holds a snapshot export of node `i` open.
    pub(crate) fn exports_from(&self, i: usize) -> bool {
        self.exporting.is_some_and(|(s, _)| s == i)
    }
}

impl Sim {
    /// The operator starts the remedy for a consumer that needs one, if none runs: a rebuild
    /// from snapshots where the consumer keeps a replica of the source, else `--accept-gap`.
    pub(crate) fn begin_remedy(&mut self) -> bool {
        if self.remedy.is_some() {
            return false;
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_up() && !self.nodes[i].mid_operation() && self.nodes[i].to_rebuild().is_none() {
                if let Some(did) = self.on_node(i, |n, env| n.accept_gaps(env)) {
                    let who = self.nodes[i].name().to_string();
                    self.log(&who, did);
                    return true;
                }
            }
        }
        let Some((consumer, sources)) = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_up())
            .find_map(|i| self.nodes[i].to_rebuild().map(|s| (i, s)))
        else {
            return false;
        };
        let who = self.nodes[consumer].name().to_string();
        self.log(
            "operator",
            format!("seam replay {who} --from-snapshot: snapshots of {sources:?}"),
        );
        self.remedy = Some(Remedy {
            consumer,
            sources,
            got: BTreeMap::new(),
            exporting: None,
        });
        true
    }

    /// Advances the remedy by one step.
    pub(crate) fn remedy_step(&mut self) {
        let Some(mut remedy) = self.remedy.take() else {
            return;
        };
        if let Some((source, held)) = remedy.exporting.as_mut() {
            let source = *source;
            *held += 1;
            let name = self.nodes[source].name().to_string();
            if !self.nodes[source].is_up() {
                remedy.exporting = None;
                self.log("operator", format!("the snapshot died with {name}; asking again"));
            } else if *held > SNAPSHOT_DEADLINE {
                let did = self.nodes[source].abandon_snapshot();
                remedy.exporting = None;
                self.log(&name, did);
            } else {
                match self.on_node(source, |n, env| n.snapshot_step(env)) {
                    None => {}
                    Some(Ok(snap)) => {
                        remedy.exporting = None;
                        match snapshot_file(&snap) {
                            Ok(bytes) => {
                                self.log(&name, format!("snapshot at seq {} for the rebuild", snap.seq));
                                remedy.got.insert(name, bytes);
                            }
                            Err(e) => self.outcome.violations.push(e),
                        }
                    }
                    Some(Err(e)) => {
                        // A source that exports no snapshots has none to give: the operator
                        // takes the other way out the consumer names, and reads on knowingly.
                        self.log(&name, format!("snapshot failed: {e}; the rebuild is given up"));
                        let consumer = remedy.consumer;
                        if let Some(did) = self.on_node(consumer, |n, env| n.accept_gaps(env)) {
                            let who = self.nodes[consumer].name().to_string();
                            self.log(&who, did);
                        }
                        return;
                    }
                }
            }
            self.remedy = Some(remedy);
            return;
        }
        if let Some(next) = remedy.sources.iter().find(|s| !remedy.got.contains_key(*s)).cloned() {
            let Some(source) = self.nodes.iter().position(|n| n.name() == next) else {
                return;
            };
            let registering = next == REGISTER.1 && matches!(self.registration, Registration::Exporting(_));
            if self.nodes[source].is_up() && !registering {
                let did = self.nodes[source].begin_snapshot(&self.snapshots);
                remedy.exporting = Some((source, 0));
                self.log(&next, did);
            }
            self.remedy = Some(remedy);
            return;
        }
        let consumer = remedy.consumer;
        if !self.nodes[consumer].is_up() {
            self.remedy = Some(remedy);
            return;
        }
        let did = self.on_node(consumer, |n, env| n.replay_from_snapshots(env, &remedy.got));
        let who = self.nodes[consumer].name().to_string();
        self.log(&who, did);
    }
}
