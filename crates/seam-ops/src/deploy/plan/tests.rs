//! The planning rules, without a cluster.

use super::*;
use crate::deploy::desired::{Schema, Topic};
use seam_rdkafka_admin::{Operation, ResourceKind};

fn desired() -> Desired {
    let mut d = Desired::default();
    d.topics.insert(
        "a.events".into(),
        Topic {
            name: "a.events".into(),
            partitions: 3,
            replication: 3,
            configs: BTreeMap::from([
                ("cleanup.policy".into(), "delete".into()),
                ("min.insync.replicas".into(), "2".into()),
                ("retention.ms".into(), "-1".into()),
            ]),
        },
    );
    d.schemas.insert(
        "a.events-x.A".into(),
        Schema {
            subject: "a.events-x.A".into(),
            text: "{}".into(),
            compatibility: "BACKWARD_TRANSITIVE".into(),
        },
    );
    d.acls.insert(acl("a.events"));
    d
}

fn acl(topic: &str) -> Acl {
    Acl {
        principal: "User:a".into(),
        kind: ResourceKind::Topic,
        name: topic.into(),
        operation: Operation::Write,
    }
}

/// What the cluster holds after `desired()` was applied.
fn deployed() -> Observed {
    let d = desired();
    let t = &d.topics["a.events"];
    Observed {
        topics: BTreeMap::from([(
            t.name.clone(),
            ObservedTopic {
                partitions: 3,
                replication: 3,
                configs: t.configs.clone(),
                dynamic: t.configs.clone(),
            },
        )]),
        schemas: BTreeMap::from([(
            "a.events-x.A".into(),
            ObservedSchema {
                registered: Some(1),
                versions: vec![1],
                compatibility: Some("BACKWARD_TRANSITIVE".into()),
                incompatible: None,
            },
        )]),
        acls: Some(d.acls.clone()),
        users: None,
        managed: BTreeSet::from(["topic/a.events".to_string(), acl("a.events").id()]),
    }
}

fn action(p: &Plan, resource: &str) -> Action {
    p.changes
        .iter()
        .find(|c| c.resource == resource)
        .unwrap_or_else(|| panic!("{resource} not in {p:?}"))
        .action
}

#[test]
fn an_empty_cluster_gets_everything_created() {
    let p = plan(
        &desired(),
        &Observed {
            acls: Some(BTreeSet::new()),
            ..Observed::default()
        },
        &BTreeSet::new(),
    );
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(action(&p, "topic/a.events"), Action::Create);
    assert_eq!(action(&p, "schema/a.events-x.A"), Action::Create);
    assert_eq!(action(&p, &acl("a.events").id()), Action::Create);
    let t = p
        .changes
        .iter()
        .find(|c| c.resource == "topic/a.events")
        .expect("topic");
    assert_eq!(t.diff["partitions"], json!({"old": null, "new": 3}));
}

#[test]
fn a_deployed_cluster_gets_an_empty_plan() {
    let p = plan(&desired(), &deployed(), &BTreeSet::new());
    assert!(p.is_empty() && p.problems.is_empty(), "{p:?}");
    assert_eq!(p.managed_after(), deployed().managed);
}

#[test]
fn more_partitions_and_a_new_config_value_are_alters_with_old_and_new() {
    let mut d = desired();
    let t = d.topics.get_mut("a.events").expect("topic");
    t.partitions = 6;
    t.configs.insert("retention.ms".into(), "86400000".into());
    let p = plan(&d, &deployed(), &BTreeSet::new());
    let c = p
        .changes
        .iter()
        .find(|c| c.resource == "topic/a.events")
        .expect("topic");
    assert_eq!(c.action, Action::Alter);
    assert_eq!(c.diff["partitions"], json!({"old": 3, "new": 6}));
    assert_eq!(c.diff["retention.ms"], json!({"old": "-1", "new": "86400000"}));
    assert!(c
        .warning
        .as_deref()
        .is_some_and(|w| w.contains("the 3 added partitions stay empty")));
}

#[test]
fn fewer_partitions_or_another_replication_factor_are_refused() {
    let mut d = desired();
    let t = d.topics.get_mut("a.events").expect("topic");
    t.partitions = 2;
    t.replication = 1;
    let p = plan(&d, &deployed(), &BTreeSet::new());
    assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    assert!(p.problems[0].contains("cannot remove partitions"));
    assert!(p.problems[1].contains("reassignment"));
}

#[test]
fn a_new_schema_version_is_an_alter_and_an_incompatible_one_a_problem() {
    let mut o = deployed();
    let s = o.schemas.get_mut("a.events-x.A").expect("subject");
    s.registered = None;
    let p = plan(&desired(), &o, &BTreeSet::new());
    assert_eq!(action(&p, "schema/a.events-x.A"), Action::Alter);
    assert!(p.problems.is_empty());
    o.schemas.get_mut("a.events-x.A").expect("subject").incompatible = Some("field b has no default".into());
    let p = plan(&desired(), &o, &BTreeSet::new());
    assert!(p.problems[0].contains("field b has no default"), "{:?}", p.problems);
}

#[test]
fn a_managed_resource_no_longer_declared_needs_its_own_flag() {
    let mut o = deployed();
    o.topics.insert("gone.events".into(), ObservedTopic::default());
    o.managed.insert("topic/gone.events".into());
    o.acls.as_mut().expect("acls").insert(acl("gone.events"));
    o.managed.insert(acl("gone.events").id());
    let p = plan(&desired(), &o, &BTreeSet::new());
    assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    assert!(p.problems.iter().all(|m| m.contains("--allow-delete")));
    let flags = BTreeSet::from(["topic/gone.events".to_string(), acl("gone.events").id()]);
    let p = plan(&desired(), &o, &flags);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(action(&p, "topic/gone.events"), Action::Delete);
    assert!(!p.managed_after().contains("topic/gone.events"));
}

#[test]
fn unmanaged_resources_are_never_touched_and_a_stray_flag_is_refused() {
    let mut o = deployed();
    o.topics.insert("someone-elses.events".into(), ObservedTopic::default());
    o.acls.as_mut().expect("acls").insert(acl("someone-elses.events"));
    let p = plan(&desired(), &o, &BTreeSet::new());
    assert!(p.is_empty() && p.problems.is_empty(), "{p:?}");
    let p = plan(
        &desired(),
        &o,
        &BTreeSet::from(["topic/someone-elses.events".to_string()]),
    );
    assert!(p.problems[0].contains("nothing by that name"), "{:?}", p.problems);
}

#[test]
fn without_an_authorizer_acls_are_a_note_not_a_change() {
    let mut o = deployed();
    o.acls = None;
    let p = plan(&desired(), &o, &BTreeSet::new());
    assert!(p.is_empty());
    assert!(p.notes[0].contains("no authorizer"));
}
