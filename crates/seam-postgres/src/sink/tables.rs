//! The sink's bookkeeping, kept in the consumer's own database so it commits with the rows it
//! describes: where each source partition is read up to, how far each source journal was taken
//! in, dead letters waiting to be produced, and snapshots received for a registration.

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

/// Creates the tables if missing (every start; concurrent starts are harmless).
pub const CREATE: &str = "\
CREATE TABLE IF NOT EXISTS seam_positions (
    consumer text NOT NULL, topic text NOT NULL, partition int NOT NULL, next_offset bigint NOT NULL,
    PRIMARY KEY (consumer, topic, partition));
CREATE TABLE IF NOT EXISTS seam_applied (
    consumer text NOT NULL, topic text NOT NULL, partition int NOT NULL, journal text NOT NULL,
    through_seq bigint NOT NULL,
    PRIMARY KEY (consumer, topic, partition, journal));
CREATE TABLE IF NOT EXISTS seam_dead_letters (
    id bigserial PRIMARY KEY, consumer text NOT NULL, letter bytea NOT NULL);
CREATE TABLE IF NOT EXISTS seam_bootstraps (
    consumer text NOT NULL, source text NOT NULL, snapshot bytea NOT NULL,
    PRIMARY KEY (consumer, source));";

/// Partition → next offset, per topic.
pub type Positions = BTreeMap<String, BTreeMap<i32, i64>>;

/// The consumer's positions.
pub async fn positions(db: &impl GenericClient, consumer: &str) -> Result<Positions, tokio_postgres::Error> {
    let mut out = Positions::new();
    for row in db
        .query(
            "SELECT topic, partition, next_offset FROM seam_positions WHERE consumer = $1",
            &[&consumer],
        )
        .await?
    {
        out.entry(row.get::<_, String>(0))
            .or_default()
            .insert(row.get(1), row.get(2));
    }
    Ok(out)
}

/// `(topic, partition, journal)` → the highest seq of that source journal taken in from there.
pub type Applied = BTreeMap<(String, i32, String), i64>;

/// How far each source journal was taken in.
pub async fn applied(db: &impl GenericClient, consumer: &str) -> Result<Applied, tokio_postgres::Error> {
    Ok(db
        .query(
            "SELECT topic, partition, journal, through_seq FROM seam_applied WHERE consumer = $1",
            &[&consumer],
        )
        .await?
        .into_iter()
        .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
        .collect())
}

/// Stages positions in the caller's transaction.
pub async fn store_positions(
    db: &impl GenericClient,
    consumer: &str,
    positions: &BTreeMap<(String, i32), i64>,
) -> Result<(), tokio_postgres::Error> {
    for ((topic, partition), next) in positions {
        db.execute(
            "INSERT INTO seam_positions (consumer, topic, partition, next_offset) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
            &[&consumer, topic, partition, next],
        )
        .await?;
    }
    Ok(())
}

/// Stages journal watermarks in the caller's transaction.
pub async fn store_applied(
    db: &impl GenericClient,
    consumer: &str,
    applied: &Applied,
) -> Result<(), tokio_postgres::Error> {
    for ((topic, partition, journal), seq) in applied {
        db.execute(
            "INSERT INTO seam_applied (consumer, topic, partition, journal, through_seq) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (consumer, topic, partition, journal) DO UPDATE SET through_seq = GREATEST(seam_applied.through_seq, EXCLUDED.through_seq)",
            &[&consumer, topic, partition, journal, seq],
        )
        .await?;
    }
    Ok(())
}

/// The advisory lock key of `consumer`'s sink: a stable 64-bit FNV-1a hash of its name, so
/// every instance of every version computes the same one.
pub fn lock_key(consumer: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "seam-sink/".bytes().chain(consumer.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lock_key_is_stable_and_per_consumer() {
        assert_eq!(super::lock_key("order-service"), super::lock_key("order-service"));
        assert_ne!(super::lock_key("order-service"), super::lock_key("customer-service"));
        // FNV-1a of "seam-sink/", computed independently: the hash must never change.
        assert_eq!(super::lock_key(""), -2_237_687_299_700_893_966);
    }
}
