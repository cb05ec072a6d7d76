//! The system under simulation: the five Student Affairs services and the warehouse fixture,
//! wired by their real translators as `deploy/student-affairs.yaml` (with the scholarship
//! office registered for the students office) and the warehouse's own wiring; the flows whose
//! two sides must agree; and the workload of commands a schedule sends.

use seam::http::ApiError;
use seam::store::Store;
use seam::translator::Translator;
use seam_warehouse_fixture::{fulfilment, orders, tracking, translate};

use crate::node::{Node, Process, Release, Spec};
use crate::rng::Rng;
use seam::service::Service;

/// Lines with more units than this fail the warehouse translator: the schedules' poison events.
pub const MAX_QTY: i32 = 90;
/// A line with this many units makes the translator panic (until the fix).
pub const PANIC_QTY: i32 = 77;
/// A line with this many units makes applying it panic (until the fix).
pub const EXPLODE_QTY: i32 = 66;

/// The orders service in either release, as one node runs one or the other across deploys.
#[derive(Debug, Clone, Copy)]
pub enum OrdersRelease {
    /// `LineAdded` v1.
    First,
    /// `LineAdded` v2, with a defaulted field.
    Upgraded,
}

impl Service for OrdersRelease {
    type Command = orders::Command;

    fn apply(
        &self,
        ctx: &mut seam::service::Apply<'_>,
        command: &orders::Command,
    ) -> Result<(), seam::service::ApplyError> {
        match self {
            Self::First => orders::Orders.apply(ctx, command),
            Self::Upgraded => orders::UpgradedOrders.apply(ctx, command),
        }
    }

    fn snapshot(&self, out: &mut seam::service::SnapshotOut<'_>) -> Result<(), seam::service::ApplyError> {
        match self {
            Self::First => orders::Orders.snapshot(out),
            Self::Upgraded => orders::UpgradedOrders.snapshot(out),
        }
    }
}

fn rows(found: Result<Option<Vec<seam::http::SharedRow>>, ApiError>) -> Option<Vec<String>> {
    found
        .ok()
        .flatten()
        .map(|rows| rows.into_iter().map(|r| r.row).collect())
}

fn parse<C: seam::serde::de::DeserializeOwned>(v: &serde_json::Value) -> Option<C> {
    serde_json::from_value(v.clone()).ok()
}

fn none<C>(_: &serde_json::Value) -> Option<C> {
    None
}

fn catalog<E: std::fmt::Debug>(c: Result<seam::codec::Catalog, E>) -> seam::codec::Catalog {
    c.unwrap_or_else(|e| panic!("a built-in catalog does not load: {e:?}"))
}

fn boxed<C, T: Translator<C> + 'static>(t: T) -> Box<dyn Translator<C>> {
    Box::new(t)
}

/// Every node, in a fixed order.
pub fn nodes() -> Vec<Box<dyn Process>> {
    vec![
        Box::new(Node::new(Spec {
            name: students_office::NAME,
            service: || students_office::model::StudentsOffice,
            catalog: || catalog(students_office::catalog()),
            translators: || {
                vec![
                    boxed(se_group_to_students_office::SeGroupToStudentsOffice),
                    boxed(theory_group_to_students_office::TheoryGroupToStudentsOffice),
                ]
            },
            command: parse,
            shared: |s, f| rows(students_office::api::shared(s, f)),
            registered: &[],
            upgrade: None,
        })),
        Box::new(Node::new(Spec {
            name: se_group::NAME,
            service: || se_group::model::SeGroup,
            catalog: || catalog(se_group::catalog()),
            translators: || {
                vec![
                    boxed(students_office_to_se_group::StudentsOfficeToSeGroup),
                    boxed(ta_pool_to_se_group::TaPoolToSeGroup),
                ]
            },
            command: parse,
            shared: |s, f| rows(se_group::api::shared(s, f)),
            registered: &[],
            upgrade: None,
        })),
        Box::new(Node::new(Spec {
            name: theory_group::NAME,
            service: || theory_group::model::TheoryGroup,
            catalog: || catalog(theory_group::catalog()),
            translators: || {
                vec![
                    boxed(students_office_to_theory_group::StudentsOfficeToTheoryGroup),
                    boxed(ta_pool_to_theory_group::TaPoolToTheoryGroup),
                ]
            },
            command: parse,
            shared: |s, f| rows(theory_group::api::shared(s, f)),
            registered: &[],
            upgrade: None,
        })),
        Box::new(Node::new(Spec {
            name: ta_pool::NAME,
            service: || ta_pool::TaPool,
            catalog: || catalog(ta_pool::catalog()),
            translators: || {
                vec![
                    boxed(se_group_to_ta_pool::SeGroupToTaPool),
                    boxed(theory_group_to_ta_pool::TheoryGroupToTaPool),
                ]
            },
            command: none,
            shared: |s, f| rows(ta_pool::api::shared(s, f)),
            registered: &[],
            upgrade: None,
        })),
        Box::new(Node::new(Spec {
            name: scholarship_office::NAME,
            service: || scholarship_office::ScholarshipOffice,
            catalog: || catalog(scholarship_office::catalog()),
            translators: || {
                vec![
                    boxed(students_office_to_scholarship_office::StudentsOfficeToScholarshipOffice),
                    boxed(se_group_to_scholarship_office::SeGroupToScholarshipOffice),
                    boxed(theory_group_to_scholarship_office::TheoryGroupToScholarshipOffice),
                ]
            },
            command: none,
            shared: |s, f| rows(scholarship_office::api::shared(s, f)),
            // It joins late: `seam register scholarship-office --source students-office`.
            registered: &[students_office::NAME],
            upgrade: None,
        })),
        Box::new(Node::new(Spec {
            name: "orders",
            service: || OrdersRelease::First,
            catalog: || catalog(seam_warehouse_fixture::orders_catalog()),
            translators: Vec::new,
            command: parse,
            shared: orders_rows,
            registered: &[],
            // LineAdded gains a defaulted field; deploys go back and forth.
            upgrade: Some(Release {
                service: || OrdersRelease::Upgraded,
                catalog: || catalog(seam_warehouse_fixture::orders_catalog_v2()),
                translators: Vec::new,
                rollback: 50,
            }),
        })),
        Box::new(Node::new(Spec {
            name: "fulfilment",
            service: || fulfilment::Fulfilment,
            catalog: || catalog(seam_warehouse_fixture::fulfilment_catalog()),
            translators: || {
                vec![boxed(translate::OrdersToFulfilment {
                    source: "orders".into(),
                    max_qty: Some(MAX_QTY),
                    panic_qty: Some(PANIC_QTY),
                    explode_qty: Some(EXPLODE_QTY),
                })]
            },
            command: parse_fulfilment,
            shared: parcel_rows,
            registered: &[],
            // The translator fix: every line is picked; an operator then redrives what was parked.
            upgrade: Some(Release {
                service: || fulfilment::Fulfilment,
                catalog: || catalog(seam_warehouse_fixture::fulfilment_catalog()),
                translators: || {
                    vec![boxed(translate::OrdersToFulfilment {
                        source: "orders".into(),
                        ..Default::default()
                    })]
                },
                // Now and then the fix is rolled back: a rebuild is then stricter than what
                // the live store applied, and a replay must refuse to swap it in silently.
                rollback: 30,
            }),
        })),
        Box::new(Node::new(Spec {
            name: "tracking",
            service: || tracking::Tracking,
            catalog: seam::codec::Catalog::default,
            translators: || {
                vec![boxed(translate::OrdersToTracking {
                    source: "orders".into(),
                })]
            },
            command: none,
            shared: seen_rows,
            registered: &[],
            upgrade: None,
        })),
    ]
}

/// Topics and their partition counts (as deployed).
pub fn topics() -> Vec<(String, i32)> {
    [
        (students_office::NAME, 6),
        (se_group::NAME, 3),
        (theory_group::NAME, 3),
        (ta_pool::NAME, 3),
        (scholarship_office::NAME, 3),
        ("orders", 4),
        ("fulfilment", 2),
        ("tracking", 1),
    ]
    .into_iter()
    .map(|(s, n)| (seam::translator::events_topic(s), n))
    .collect()
}

/// Every flow `<source>-><consumer>` whose two sides are compared.
pub fn flows() -> Vec<(&'static str, &'static str)> {
    vec![
        ("students-office", "se-group"),
        ("students-office", "theory-group"),
        ("students-office", "scholarship-office"),
        ("se-group", "students-office"),
        ("se-group", "ta-pool"),
        ("se-group", "scholarship-office"),
        ("theory-group", "students-office"),
        ("theory-group", "ta-pool"),
        ("theory-group", "scholarship-office"),
        ("ta-pool", "se-group"),
        ("ta-pool", "theory-group"),
        ("orders", "fulfilment"),
        ("orders", "tracking"),
    ]
}

/// An order's lines as the orders service holds them: `(article, units)`.
fn orders_of(store: &Store) -> Vec<(String, orders::Order)> {
    store
        .model_scan("order/")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| {
            Some((
                k.trim_start_matches("order/").to_string(),
                serde_json::from_slice(&v).ok()?,
            ))
        })
        .collect()
}

/// The lines fulfilment takes in: with the first release of its translator, up to the first
/// one it refuses or panics on (dead-lettered, the order parked behind it); with the fix, all.
fn accepted(order: &orders::Order, fixed: bool) -> Vec<(i32, i32)> {
    order
        .lines
        .iter()
        .enumerate()
        .map(|(i, (_, qty))| (i as i32 + 1, *qty))
        .take_while(|(_, qty)| fixed || (*qty <= MAX_QTY && *qty != PANIC_QTY && *qty != EXPLODE_QTY))
        .collect()
}

/// Appended to a flow's name when its consumer runs the next release (the source's rows then
/// include what the first release refused).
pub const FIXED: &str = "+fixed";

fn orders_rows(store: &Store, flow: &str) -> Option<Vec<String>> {
    let orders = orders_of(store);
    let fixed = flow.ends_with(FIXED);
    match flow.trim_end_matches(FIXED) {
        "orders->fulfilment" => Some(
            orders
                .iter()
                .map(|(id, o)| {
                    let lines = accepted(o, fixed);
                    let picked: Vec<String> = lines.iter().map(|(l, _)| l.to_string()).collect();
                    let units: i64 = lines.iter().map(|(_, q)| i64::from(*q)).sum();
                    format!("{id}|{}|{}|{units}", o.customer, picked.join(","))
                })
                .collect(),
        ),
        "orders->tracking" => Some(
            orders
                .iter()
                .filter(|(_, o)| !o.lines.is_empty())
                .map(|(id, o)| {
                    let seen: Vec<String> = (1..=o.lines.len()).map(|l| l.to_string()).collect();
                    format!("{id}|{}", seen.join(","))
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Fulfilment's one command a client sends: expect an order not announced yet (a placeholder
/// parcel, which replay must keep until the order arrives).
fn parse_fulfilment(v: &serde_json::Value) -> Option<fulfilment::Command> {
    (v["command"] == "expect").then(|| fulfilment::Command::Expect {
        order: v["order"].as_str().unwrap_or_default().to_string(),
    })
}

fn parcel_rows(store: &Store, flow: &str) -> Option<Vec<String>> {
    (flow.trim_end_matches(FIXED) == "orders->fulfilment").then(|| {
        fulfilment::parcels(store)
            .unwrap_or_default()
            .into_iter()
            // An expected order that has not arrived is fulfilment's own placeholder, not a
            // row of the flow.
            .filter(|(_, p)| *p != fulfilment::Parcel::default())
            .map(|(id, p)| {
                let picked: Vec<String> = p.picked.iter().map(i32::to_string).collect();
                format!(
                    "{}|{}|{}|{}",
                    id.trim_start_matches("parcel/"),
                    p.customer.unwrap_or_default(),
                    picked.join(","),
                    p.units
                )
            })
            .collect()
    })
}

fn seen_rows(store: &Store, flow: &str) -> Option<Vec<String>> {
    (flow == "orders->tracking").then(|| {
        store
            .model_scan("seen/")
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let lines: Vec<i32> = serde_json::from_slice(&v).unwrap_or_default();
                let seen: Vec<String> = lines.iter().map(i32::to_string).collect();
                format!("{}|{}", k.trim_start_matches("seen/"), seen.join(","))
            })
            .collect()
    })
}

/// The workload: commands a client sends, drawn from a small world of students, exams and
/// orders so commands collide and refer to each other (many are refused; that is fine).
#[derive(Debug, Default)]
pub struct Workload {
    sent: u64,
}

impl Workload {
    /// The next command and the service it goes to.
    pub fn next(&mut self, rng: &mut Rng) -> (&'static str, serde_json::Value) {
        use serde_json::json;
        self.sent += 1;
        let student = format!("s{}", rng.below(5));
        let exam = ["se-1", "th-1"][rng.below(2)];
        let owner = if exam.starts_with("se") {
            "se-group"
        } else {
            "theory-group"
        };
        let order = format!("o{}", rng.below(6));
        match rng.below(14) {
            0 => (
                "students-office",
                json!({"command": "create_student", "student": student, "name": format!("Student {student}"), "program": "cs"}),
            ),
            1 => (
                "students-office",
                json!({"command": "create_examination", "exam": exam, "title": format!("Exam {exam}"), "owner": owner, "semester": "2026W"}),
            ),
            2 => (
                "students-office",
                json!({"command": "enroll", "student": student, "exam": exam}),
            ),
            3 => (
                "se-group",
                json!({"command": "create_assignment", "assignment": "se-1-a", "exam": "se-1", "title": "A", "max_points": 10}),
            ),
            4 => (
                "se-group",
                json!({"command": "award_points", "assignment": "se-1-a", "student": student, "points": rng.below(11)}),
            ),
            5 => (
                "se-group",
                json!({"command": "grade", "exam": "se-1", "student": student}),
            ),
            6 => (
                "theory-group",
                json!({"command": "assess", "exam": "th-1", "student": student, "criterion": "talk", "score": rng.below(6)}),
            ),
            7 => (
                "theory-group",
                json!({"command": "grade", "exam": "th-1", "student": student}),
            ),
            8 => (
                if rng.chance(50) { "se-group" } else { "theory-group" },
                json!({"command": "hire", "student": student}),
            ),
            13 => (
                "fulfilment",
                json!({"command": "expect", "order": format!("o{}", rng.below(8))}),
            ),
            9 => (
                "orders",
                json!({"command": "place", "order": order, "customer": format!("c{}", rng.below(4))}),
            ),
            _ => {
                // Now and then a line the translator cannot handle: a poison event.
                let qty = match rng.below(100) {
                    0..=2 => MAX_QTY + 5,
                    3 => PANIC_QTY,
                    4 => EXPLODE_QTY,
                    _ => 1 + rng.below(20) as i32,
                };
                (
                    "orders",
                    json!({"command": "add_line", "order": order, "sku": format!("k{}", rng.below(5)), "qty": qty}),
                )
            }
        }
    }
}
