//! With replication factor 3 and min ISR 2, a broker crash (SIGKILL) does not stop
//! `acks=all` writes, and no acknowledged record is lost: after the broker returns,
//! every acknowledged record is readable at the offset it was acknowledged with.
//!
//! Needs the local 3-broker stack (it kills a real broker process).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use seam_testkit::{unique_name, wait_until, TestCluster};

const PARTITIONS: i32 = 3;
const PER_PHASE: usize = 300;

#[tokio::test]
async fn fault_acks_all_writes_continue_through_a_broker_kill_and_none_is_lost() {
    let cluster = TestCluster::connect();
    let faults = cluster.broker_faults(3);
    let topic = unique_name("failover");
    cluster
        .create_topic(&topic, PARTITIONS, 3, &[("min.insync.replicas", "2")])
        .await;
    let producer: FutureProducer = cluster
        .client_config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "120000")
        .set("linger.ms", "5")
        .create()
        .expect("producer");

    // (partition, offset) -> payload of every acknowledged record.
    let mut acked: BTreeMap<(i32, i64), String> = BTreeMap::new();
    produce_phase(&producer, &topic, "before", &mut acked).await;
    let victim = 2;
    faults.kill(victim);
    produce_phase(&producer, &topic, "during", &mut acked).await;
    faults.restart(victim).await;
    produce_phase(&producer, &topic, "after", &mut acked).await;
    assert_eq!(acked.len(), 3 * PER_PHASE, "every write was acknowledged, none twice");

    // Wait until the restarted broker is back in every ISR, then read everything back.
    let consumer: BaseConsumer = cluster
        .client_config()
        .set("group.id", unique_name("failover-reader"))
        .create()
        .expect("consumer");
    wait_until(Duration::from_secs(120), "broker 2 to rejoin every ISR", || {
        let consumer = &consumer;
        let topic = &topic;
        async move {
            let md = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            let isrs: Vec<Vec<i32>> = md.topics()[0].partitions().iter().map(|p| p.isr().to_vec()).collect();
            if isrs.len() == PARTITIONS as usize && isrs.iter().all(|isr| isr.len() == 3) {
                Ok(())
            } else {
                Err(format!("ISRs {isrs:?}"))
            }
        }
    })
    .await
    .expect("ISR recovers");

    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&topic, p, Offset::Beginning).expect("assign");
    }
    consumer.assign(&tpl).expect("assign");
    let mut read: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while read.len() < acked.len() && std::time::Instant::now() < deadline {
        if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
            let msg = msg.expect("fetch");
            let payload = String::from_utf8(msg.payload().expect("payload").to_vec()).expect("utf8");
            read.insert((msg.partition(), msg.offset()), payload);
        }
    }
    let missing: Vec<_> = acked.iter().filter(|(k, v)| read.get(k) != Some(v)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged records missing or changed: {:?}",
        &missing[..missing.len().min(10)]
    );
    assert_eq!(
        read.len(),
        acked.len(),
        "no record beyond the acknowledged ones (no duplicates)"
    );
}

async fn produce_phase(producer: &FutureProducer, topic: &str, phase: &str, acked: &mut BTreeMap<(i32, i64), String>) {
    let deliveries: Vec<_> = (0..PER_PHASE)
        .map(|i| {
            let payload = format!("{phase}-{i}");
            let key = format!("subject/{}", i % 50);
            let delivery = producer
                .send_result(FutureRecord::to(topic).key(&key).payload(&payload))
                .map_err(|(e, _)| e)
                .expect("enqueue");
            (payload, delivery)
        })
        .collect();
    for (payload, delivery) in deliveries {
        let delivered = delivery
            .await
            .expect("producer alive")
            .map_err(|(e, _)| e)
            .unwrap_or_else(|e| panic!("acks=all write {payload} ({phase} the broker kill) failed: {e}"));
        let at = (delivered.partition, delivered.offset);
        assert!(acked.insert(at, payload).is_none(), "offset acknowledged twice");
    }
}
