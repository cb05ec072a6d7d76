//! The plan: desired state minus observed state, per resource, with field-level old → new.
//! Pure, so every rule (never shrink, never delete without its flag, refuse an incompatible
//! schema) is unit-tested without a cluster, and a dry run shows exactly what apply does.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{json, Value};

use super::admin_ffi::Acl;
use super::desired::{Desired, MANAGED_CONFIGS};

/// A topic as found on the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedTopic {
    /// Partition count.
    pub partitions: i32,
    /// Replicas of partition 0.
    pub replication: i32,
    /// Values of the managed configs.
    pub configs: BTreeMap<String, String>,
    /// Every config set on the topic itself; apply keeps them (AlterConfigs replaces the
    /// topic's whole set, so what it does not repeat would fall back to the broker default).
    pub dynamic: BTreeMap<String, String>,
}

/// A schema subject as found in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedSchema {
    /// The version holding exactly the desired text, if any.
    pub registered: Option<i32>,
    /// Every version of the subject.
    pub versions: Vec<i32>,
    /// The subject's own compatibility level (None: the registry's global default applies).
    pub compatibility: Option<String>,
    /// For a new version: whether the registry says it is compatible with every version.
    pub incompatible: Option<String>,
}

/// What the cluster holds.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Topics by name (only those the plan asks about, plus managed ones).
    pub topics: BTreeMap<String, ObservedTopic>,
    /// Subjects by name.
    pub schemas: BTreeMap<String, ObservedSchema>,
    /// ACLs; None when the cluster runs no authorizer.
    pub acls: Option<BTreeSet<Acl>>,
    /// Users with a SCRAM-SHA-512 credential; None when users are not managed.
    pub users: Option<BTreeSet<String>>,
    /// Resource ids the last deploy of this topology created or kept.
    pub managed: BTreeSet<String>,
}

/// What happens to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// It is made.
    Create,
    /// Some fields change.
    Alter,
    /// It is removed (only with its `--allow-delete`).
    Delete,
    /// It is as wanted.
    NoOp,
}

/// One resource's line of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// `topic/<name>`, `schema/<subject>`, `acl/...`, `user/<name>`.
    pub resource: String,
    /// What happens.
    pub action: Action,
    /// Field → `{"old": …, "new": …}`.
    pub diff: BTreeMap<String, Value>,
    /// Something the operator must know (e.g. key placement moves when partitions grow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The whole plan. With problems it must not be applied.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// Every resource, changed or not.
    pub changes: Vec<Change>,
    /// Why the plan cannot be applied; each says what to do.
    pub problems: Vec<String>,
    /// Things skipped on purpose (e.g. ACLs on a cluster without an authorizer).
    pub notes: Vec<String>,
}

impl Plan {
    /// The lines that change something.
    pub fn effective(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.action != Action::NoOp)
    }

    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.effective().next().is_none()
    }

    /// The resource ids this topology manages after the plan is applied.
    pub fn managed_after(&self) -> BTreeSet<String> {
        self.changes
            .iter()
            .filter(|c| c.action != Action::Delete && !c.resource.starts_with("schema/"))
            .map(|c| c.resource.clone())
            .collect()
    }
}

fn field(old: impl Into<Value>, new: impl Into<Value>) -> Value {
    json!({"old": old.into(), "new": new.into()})
}

/// Compares `desired` with `observed`; `allow_delete` lists the resource ids that may go.
pub fn plan(desired: &Desired, observed: &Observed, allow_delete: &BTreeSet<String>) -> Plan {
    let mut p = Plan::default();
    let mut candidates = BTreeSet::new();
    for t in desired.topics.values() {
        let resource = format!("topic/{}", t.name);
        let mut diff = BTreeMap::new();
        let mut warning = None;
        let action = match observed.topics.get(&t.name) {
            None => {
                diff.insert("partitions".into(), field(Value::Null, t.partitions));
                diff.insert("replication".into(), field(Value::Null, t.replication));
                for (k, v) in &t.configs {
                    diff.insert(k.clone(), field(Value::Null, v.as_str()));
                }
                Action::Create
            }
            Some(o) => {
                if o.partitions < t.partitions {
                    diff.insert("partitions".into(), field(o.partitions, t.partitions));
                    warning = Some(format!(
                        "{} grows from {} to {} partitions: a seam service keeps publishing each subject to the partition it always used (so every reader keeps its events in order), and the {} added partitions stay empty for it; to spread a service over more partitions, give it a new topic",
                        t.name,
                        o.partitions,
                        t.partitions,
                        t.partitions - o.partitions
                    ));
                } else if o.partitions > t.partitions {
                    p.problems.push(format!(
                        "{resource}: has {} partitions, the topology says {}; Kafka cannot remove partitions. Set partitions: {} in the topology",
                        o.partitions, t.partitions, o.partitions
                    ));
                }
                if o.replication != t.replication {
                    p.problems.push(format!(
                        "{resource}: has replication factor {}, the topology says {}; changing it needs a partition reassignment (kafka-reassign-partitions.sh), which seam does not do. Reassign first, or set replication: {} in the topology",
                        o.replication, t.replication, o.replication
                    ));
                }
                for k in MANAGED_CONFIGS {
                    let want = t.configs.get(k);
                    let have = o.configs.get(k);
                    if want.is_some() && want != have {
                        diff.insert(k.to_string(), field(have.map(String::as_str), want.map(String::as_str)));
                    }
                }
                if diff.is_empty() {
                    Action::NoOp
                } else {
                    Action::Alter
                }
            }
        };
        p.changes.push(Change {
            resource,
            action,
            diff,
            warning,
        });
    }
    for (topic, partitions) in &desired.external {
        match observed.topics.get(topic) {
            None => p.problems.push(format!(
                "topic/{topic}: the topology reads it as an external source, but it does not exist; seam does not create a topic another producer writes: create it (or start its producer), or fix `topic:`"
            )),
            Some(o) if o.partitions != *partitions => p.problems.push(format!(
                "topic/{topic}: has {} partitions, the topology says {partitions}; set partitions: {} for the external source",
                o.partitions, o.partitions
            )),
            Some(_) => {}
        }
    }
    for s in desired.schemas.values() {
        let resource = format!("schema/{}", s.subject);
        let o = observed.schemas.get(&s.subject).cloned().unwrap_or_default();
        let mut diff = BTreeMap::new();
        if o.compatibility.as_deref() != Some(s.compatibility.as_str()) {
            diff.insert(
                "compatibility".into(),
                field(o.compatibility.as_deref(), s.compatibility.as_str()),
            );
        }
        if o.registered.is_none() {
            diff.insert("version".into(), field(o.versions.last().copied(), "new"));
            if let Some(why) = &o.incompatible {
                p.problems.push(format!(
                    "{resource}: the registry refuses the new schema under {}: {why}. Change the schema so it is compatible (e.g. give new fields defaults), or publish it under a new record name",
                    o.compatibility.as_deref().unwrap_or("its global rule")
                ));
            }
        }
        let action = match (o.versions.is_empty(), diff.is_empty()) {
            (_, true) => Action::NoOp,
            (true, false) => Action::Create,
            (false, false) => Action::Alter,
        };
        p.changes.push(Change {
            resource,
            action,
            diff,
            warning: None,
        });
    }
    match &observed.acls {
        None => p.notes.push(
            "the cluster runs no authorizer: ACLs are not created (start it with an authorizer, e.g. `seam local up --secure`)".into(),
        ),
        Some(have) => {
            for acl in &desired.acls {
                let action = if have.contains(acl) { Action::NoOp } else { Action::Create };
                p.changes.push(Change {
                    resource: acl.id(),
                    action,
                    diff: BTreeMap::new(),
                    warning: None,
                });
            }
            for acl in have {
                if !desired.acls.contains(acl) && observed.managed.contains(&acl.id()) {
                    candidates.insert(acl.id());
                }
            }
        }
    }
    if let Some(have) = &observed.users {
        for user in &desired.users {
            let action = if have.contains(user) {
                Action::NoOp
            } else {
                Action::Create
            };
            let mut diff = BTreeMap::new();
            if action == Action::Create {
                diff.insert("scram-sha-512".into(), field(Value::Null, "generated"));
            }
            p.changes.push(Change {
                resource: format!("user/{user}"),
                action,
                diff,
                warning: None,
            });
        }
        for user in have {
            let id = format!("user/{user}");
            if !desired.users.contains(user) && observed.managed.contains(&id) {
                candidates.insert(id);
            }
        }
    }
    for (name, _) in observed.topics.iter().filter(|(n, _)| !desired.topics.contains_key(*n)) {
        let id = format!("topic/{name}");
        if observed.managed.contains(&id) {
            candidates.insert(id);
        }
    }
    for id in &candidates {
        deletion(&mut p, id.clone(), allow_delete);
    }
    for flag in allow_delete.difference(&candidates) {
        p.problems.push(format!(
            "--allow-delete {flag}: nothing by that name is to be deleted (resources this topology deployed and no longer declares: {})",
            list_or_none(candidates.iter().map(String::as_str))
        ));
    }
    p
}

fn deletion(p: &mut Plan, id: String, allow_delete: &BTreeSet<String>) {
    if allow_delete.contains(&id) {
        p.changes.push(Change {
            resource: id,
            action: Action::Delete,
            diff: BTreeMap::new(),
            warning: None,
        });
    } else {
        p.problems.push(format!(
            "{id}: an earlier deploy of this topology made it and the topology no longer declares it; seam deletes nothing without being told. Pass --allow-delete {id} to delete it, or declare it again"
        ));
    }
}

fn list_or_none<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = items.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests;
