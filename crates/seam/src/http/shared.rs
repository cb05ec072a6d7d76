//! The shared data of a flow: the rows a source and its consumer must both hold, as each side
//! computes them from its own model (only the application knows how its model maps onto the
//! other's). `GET /shared/<from>/<to>` answers one digest over all rows, which the demo and the
//! console compare; `seam reconcile` asks for digests per bucket of subjects, then for the
//! subjects of the buckets that differ, so two large stores are compared without shipping either.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::runtime::Node;
use crate::service::Service;
use crate::store::Store;

/// A service's shared rows of one flow (`<source>-><consumer>`), or `None` for a flow it takes
/// no part in.
pub type RowsOf = fn(&Store, &str) -> Result<Option<Vec<SharedRow>>, ApiError>;

/// `GET /shared/{from}/{to}` over a service's [`RowsOf`]: one digest, digests per bucket, or
/// per subject of one bucket, as the query asks. The rows are read off the async runtime.
pub fn route<S: Service>(rows: RowsOf) -> MethodRouter<Arc<Node<S>>> {
    get(
        move |State(node): State<Arc<Node<S>>>,
              Path((from, to)): Path<(String, String)>,
              query: Result<Query<SharedQuery>, QueryRejection>| async move {
            let Query(query) = query?;
            let flow = format!("{from}->{to}");
            let store = node.store().clone();
            let read = {
                let flow = flow.clone();
                tokio::task::spawn_blocking(move || rows(&store, &flow))
            };
            match read.await.map_err(ApiError::internal)?? {
                Some(rows) => answer(&flow, rows, query),
                None => Err(ApiError::not_found(format!(
                    "{} takes no part in flow {flow}",
                    node.name()
                ))),
            }
        },
    )
}

/// At most this many buckets per request: more only makes the answer larger.
pub const MAX_BUCKETS: u32 = 65_536;

/// A SHA-256 over rows in sorted order: two sides of a flow hold the same shared data exactly
/// when their digests are equal.
pub fn digest(mut rows: Vec<String>) -> String {
    rows.sort();
    let mut hasher = Sha256::new();
    for row in rows {
        hasher.update(row.as_bytes());
        hasher.update(b"\n");
    }
    format!("{:x}", hasher.finalize())
}

/// The shared data of one flow as one side holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Shared {
    /// `<source>-><consumer>`.
    pub flow: String,
    /// Rows held.
    pub rows: usize,
    /// [`digest`] of the rows.
    pub digest: String,
}

impl Shared {
    /// Digests `rows` for `flow`.
    pub fn of(flow: &str, rows: Vec<String>) -> Self {
        Self {
            flow: flow.to_string(),
            rows: rows.len(),
            digest: digest(rows),
        }
    }
}

/// One row of a flow's shared data, with the subject (the Kafka key of the source's events)
/// it comes from: what a targeted replay of that subject rebuilds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SharedRow {
    /// The source's event subject, e.g. `student/s7`.
    pub subject: String,
    /// The row as both sides print it.
    pub row: String,
}

impl SharedRow {
    /// A row about `subject`.
    pub fn new(subject: impl Into<String>, row: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            row: row.into(),
        }
    }
}

/// The query of `GET /shared/<from>/<to>`: nothing (one digest), `buckets=N` (a digest per
/// bucket) or `buckets=N&bucket=K` (a digest per subject of bucket K).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedQuery {
    /// How many buckets subjects are hashed into.
    pub buckets: Option<u32>,
    /// The one bucket whose subjects to list.
    pub bucket: Option<u32>,
}

/// One side's digests per bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Buckets {
    /// `<source>-><consumer>`.
    pub flow: String,
    /// Rows held.
    pub rows: usize,
    /// One digest per bucket, `""` for a bucket without rows.
    pub digests: Vec<String>,
}

/// One side's digests per subject of one bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Subjects {
    /// `<source>-><consumer>`.
    pub flow: String,
    /// The bucket.
    pub bucket: u32,
    /// Digest of each subject's rows.
    pub subjects: BTreeMap<String, String>,
}

/// The bucket of `subject` among `buckets`: the same on every side and in every version (the
/// first eight bytes of its SHA-256), so digests from two services line up.
pub fn bucket_of(subject: &str, buckets: u32) -> u32 {
    let hash = Sha256::digest(subject.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    (u64::from_be_bytes(first) % u64::from(buckets.max(1))) as u32
}

/// The answer to `GET /shared/<from>/<to>` for `rows`, as `query` asks.
pub fn answer(flow: &str, rows: Vec<SharedRow>, query: SharedQuery) -> Result<Response, ApiError> {
    let Some(buckets) = query.buckets else {
        if query.bucket.is_some() {
            return Err(ApiError::bad_request(
                "bucket=K needs buckets=N",
                "ask for ?buckets=N first, then ?buckets=N&bucket=K for a bucket whose digest differs",
            ));
        }
        let rows = rows.into_iter().map(|r| r.row).collect();
        return Ok(Json(Shared::of(flow, rows)).into_response());
    };
    if buckets == 0 || buckets > MAX_BUCKETS {
        return Err(ApiError::bad_request(
            format!("buckets={buckets} is out of range"),
            format!("use 1..={MAX_BUCKETS}"),
        ));
    }
    if let Some(bucket) = query.bucket {
        if bucket >= buckets {
            return Err(ApiError::bad_request(
                format!("bucket={bucket} is not one of the {buckets} buckets"),
                format!("use 0..{buckets}"),
            ));
        }
        let mut of: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in rows.into_iter().filter(|r| bucket_of(&r.subject, buckets) == bucket) {
            of.entry(r.subject).or_default().push(r.row);
        }
        let subjects = of.into_iter().map(|(s, rows)| (s, digest(rows))).collect();
        return Ok(Json(Subjects {
            flow: flow.to_string(),
            bucket,
            subjects,
        })
        .into_response());
    }
    let count = rows.len();
    let mut per: Vec<Vec<String>> = vec![Vec::new(); buckets as usize];
    for r in rows {
        per[bucket_of(&r.subject, buckets) as usize].push(format!("{}\t{}", r.subject, r.row));
    }
    let digests = per
        .into_iter()
        .map(|lines| if lines.is_empty() { String::new() } else { digest(lines) })
        .collect();
    Ok(Json(Buckets {
        flow: flow.to_string(),
        rows: count,
        digests,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        // Pinned (computed with Python's hashlib): two services of different versions must put a
        // subject in the same bucket.
        let pinned: Vec<u32> = ["student/s1", "student/s2", "exam/e1"]
            .iter()
            .map(|s| bucket_of(s, 1024))
            .collect();
        assert_eq!(pinned, vec![131, 299, 926]);
        let used: std::collections::BTreeSet<u32> =
            (0..1000).map(|i| bucket_of(&format!("student/s{i}"), 16)).collect();
        assert_eq!(used.len(), 16, "a thousand subjects leave a bucket of sixteen empty");
        assert_eq!(bucket_of("anything", 1), 0);
    }

    async fn body(r: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX).await.expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn one_changed_row_changes_one_bucket_and_one_subject() {
        let rows = |grade: &str| {
            (0..50)
                .map(|i| {
                    SharedRow::new(
                        format!("student/s{i}"),
                        format!("e1/s{i}|{}", if i == 7 { grade } else { "2.0" }),
                    )
                })
                .collect::<Vec<_>>()
        };
        let q = SharedQuery {
            buckets: Some(8),
            bucket: None,
        };
        let a: Buckets = serde_json::from_value(body(answer("a->b", rows("1.0"), q).expect("a")).await).expect("a");
        let b: Buckets = serde_json::from_value(body(answer("a->b", rows("5.0"), q).expect("b")).await).expect("b");
        let differ: Vec<usize> = (0..8).filter(|i| a.digests[*i] != b.digests[*i]).collect();
        assert_eq!(differ, vec![bucket_of("student/s7", 8) as usize]);
        let q = SharedQuery {
            buckets: Some(8),
            bucket: Some(differ[0] as u32),
        };
        let a: Subjects = serde_json::from_value(body(answer("a->b", rows("1.0"), q).expect("a")).await).expect("a");
        let b: Subjects = serde_json::from_value(body(answer("a->b", rows("5.0"), q).expect("b")).await).expect("b");
        let changed: Vec<&String> = a
            .subjects
            .keys()
            .filter(|s| a.subjects.get(*s) != b.subjects.get(*s))
            .collect();
        assert_eq!(changed, vec!["student/s7"]);
        // Without a query the answer is the flow's one digest, over the rows alone, as before.
        let plain = body(answer("a->b", rows("1.0"), SharedQuery::default()).expect("plain")).await;
        assert_eq!(
            plain["digest"],
            digest(rows("1.0").into_iter().map(|r| r.row).collect())
        );
    }

    #[test]
    fn bad_queries_say_what_to_ask() {
        for (buckets, bucket) in [
            (None, Some(1)),
            (Some(0), None),
            (Some(MAX_BUCKETS + 1), None),
            (Some(4), Some(4)),
        ] {
            let e = answer("a->b", Vec::new(), SharedQuery { buckets, bucket }).expect_err("refused");
            assert_eq!(e.status.as_u16(), 400);
            assert!(e.hint.is_some(), "{e:?}");
        }
    }
}
