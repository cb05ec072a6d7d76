//! The publisher places each event on `murmur2(subject) % partitions` itself, so it can recover
//! what is already published from each partition's tail. That must agree with the partition a
//! Java-compatible client picks for the same key, or consumers joining by key would disagree.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use seam::partitioner::partition_for;
use seam_testkit::{unique_name, TestCluster};

#[tokio::test]
async fn seam_partitions_keys_like_librdkafkas_murmur2_partitioner() {
    let cluster = TestCluster::connect();
    let topic = unique_name("partitioner");
    cluster.create_topic(&topic, 7, cluster.replication(), &[]).await;
    let producer: FutureProducer = cluster
        .client_config()
        .set("partitioner", "murmur2")
        .create()
        .expect("producer");
    for i in 0..200 {
        let key = format!("student/{i}-{}", i * 7919);
        let delivery = producer
            .send(
                FutureRecord::<str, str>::to(&topic).key(&key).payload("x"),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        assert_eq!(delivery.partition, partition_for(key.as_bytes(), 7), "key {key}");
    }
}
