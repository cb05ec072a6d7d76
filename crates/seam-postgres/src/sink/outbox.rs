//! Produces the dead letters a sink committed in its database to `<service>.dlq`, then deletes
//! them: at least once (a crash between the two produces a letter again, which DLQ readers key
//! by its source coordinates), never lost.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use seam::store::DeadLetter;
use seam::translator::dlq_topic;

use super::end::End;

/// Produces and deletes every waiting letter of `service`.
pub(super) async fn flush(db: &tokio_postgres::Client, producer: &FutureProducer, service: &str) -> Result<(), End> {
    let topic = dlq_topic(service);
    loop {
        let rows = db
            .query(
                "SELECT id, letter FROM seam_dead_letters WHERE consumer = $1 ORDER BY id LIMIT 500",
                &[&service],
            )
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        // A missing topic would hold each send for its whole timeout.
        let known = producer
            .client()
            .fetch_metadata(Some(&topic), Duration::from_secs(5))
            .map(|md| md.topics().iter().any(|t| t.name() == topic && t.error().is_none()))
            .unwrap_or(false);
        if !known {
            return Err(End::Retry(format!(
                "the DLQ topic {topic} does not exist (or the cluster is away): `seam deploy` of the topology that lists {service} as a consumer creates it"
            )));
        }
        let mut done = Vec::with_capacity(rows.len());
        for row in rows {
            let (id, json): (i64, Vec<u8>) = (row.get(0), row.get(1));
            let letter: DeadLetter = serde_json::from_slice(&json)
                .map_err(|e| End::Retry(format!("dead letter {id} in seam_dead_letters does not read: {e}")))?;
            let record = seam::dlq::dead_letter_record(&letter);
            let mut out = FutureRecord::<[u8], [u8]>::to(&topic).headers(seam::headers::to_headers(&record.headers));
            if let Some(k) = record.key.as_deref() {
                out = out.key(k);
            }
            if let Some(v) = record.value.as_deref() {
                out = out.payload(v);
            }
            producer
                .send(out, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| End::Retry(format!("producing a dead letter to {topic}: {e}")))?;
            done.push(id);
        }
        db.execute("DELETE FROM seam_dead_letters WHERE id = ANY($1)", &[&done])
            .await?;
    }
}
