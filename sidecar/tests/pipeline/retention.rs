//! `kafka.initialOffset` applies to a group with no committed offset only; a committed offset
//! that retention deleted resumes at the earliest retained record, never at the end.
//!
//! On the mock cluster, retention is librdkafka's per-partition log limit (5 MiB): producing
//! past it deletes the oldest records. Against a real broker (`KAFKA_BOOTSTRAP_SERVERS`) the
//! admin API's DeleteRecords moves the log start.

use std::time::Duration;

use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions},
    client::DefaultClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer},
};
use serde_json::json;

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until,
};

/// Commits `next` for partition 0 of `topic` as `group`, as an earlier run would have.
fn commit(bootstrap: &str, group: &str, topic: &str, next: i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("committing consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(next))
        .expect("offset");
    consumer
        .commit(&tpl, CommitMode::Sync)
        .expect("commit accepted");
}

fn low_watermark(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("watermark reader");
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks")
        .0
}

/// Moves the log start of partition 0 past `beyond`, as retention does.
async fn delete_records_below(kafka: &TestKafka, topic: &str, beyond: i64) {
    if kafka.mock().is_some() {
        // 700 records of 10 KiB: past the mock's 5 MiB per-partition log, so it drops the
        // oldest message sets.
        let big = vec![b'r'; 10 * 1024];
        for _ in 0..7 {
            let batch: Vec<Rec> = (0..100).map(|_| Rec::new(0, None, big.clone())).collect();
            kafka.produce(topic, &batch).await;
        }
    } else {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &kafka.bootstrap)
            .create()
            .expect("admin client");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(beyond + 10))
            .expect("offset");
        admin
            .delete_records(&tpl, &AdminOptions::new())
            .await
            .expect("delete records");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_offset_retention_deleted_resumes_at_the_earliest_retained_record() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("retained"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    let first: Vec<Rec> = (0..20)
        .map(|i| Rec::new(0, None, format!("r{i}")))
        .collect();
    kafka.produce(&topic, &first).await;
    // An earlier run delivered 0..5, then stopped (the app was down over a weekend).
    let b = kafka.bootstrap.clone();
    let (g, t) = (group.clone(), topic.clone());
    tokio::task::spawn_blocking(move || commit(&b, &g, &t, 5))
        .await
        .expect("commit thread");
    delete_records_below(&kafka, &topic, 5).await;
    let b = kafka.bootstrap.clone();
    let t = topic.clone();
    let (start, end) = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .create()
            .expect("watermark reader");
        (
            low_watermark(&b, &t),
            consumer
                .fetch_watermarks(&t, 0, Duration::from_secs(10))
                .expect("watermarks")
                .1,
        )
    })
    .await
    .expect("watermark thread");
    assert!(
        start > 5,
        "precondition: retention moved the log start ({start}) past the commit"
    );

    let app = App::start(behaviour(|_| Reply::ok())).await;
    let cfg = config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        // A new group would start at the end; this group has a commit, so `latest` is moot.
        c["kafka"]["initialOffset"] = json!("latest");
        c["delivery"]["maxInFlight"] = json!(16);
    });
    let running = Running::start(cfg);
    let retained = (end - start) as usize;
    wait_until("every retained record is delivered", || {
        app.delivered().len() >= retained
    })
    .await;
    let stats = running.stop().await;
    assert_eq!(
        stats.offset_resets, 1,
        "the out-of-range position is reported (ERROR, kcp_offset_resets_total)"
    );
    let delivered = app.delivered();
    let first_delivered = delivered.iter().map(|(_, o)| *o).min();
    assert_eq!(
        first_delivered,
        Some(start),
        "resumes at the earliest retained record"
    );
    assert_eq!(delivered.len(), retained, "each retained record once");
    let committed = kafka.committed(&group, &topic, 1).await;
    assert_eq!(committed, vec![Some(end)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_still_skips_what_came_before_a_new_group() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("latest"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    let before: Vec<Rec> = (0..10)
        .map(|i| Rec::new(0, None, format!("old{i}")))
        .collect();
    kafka.produce(&topic, &before).await;
    let app = App::start(behaviour(|_| Reply::ok())).await;
    let cfg = config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["kafka"]["initialOffset"] = json!("latest");
    });
    let running = Running::start(cfg);
    // Keep producing until something arrives: when `latest` resolves is up to the consumer.
    let mut produced = 0;
    while app.delivered().is_empty() && produced < 2_000 {
        kafka.produce(&topic, &[Rec::new(0, None, "new")]).await;
        produced += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until("a new record is delivered", || !app.delivered().is_empty()).await;
    let stats = running.stop().await;
    assert_eq!(
        stats.offset_resets, 0,
        "a new group is not an out-of-range reset"
    );
    let lowest = app.delivered().iter().map(|(_, o)| *o).min();
    assert!(
        lowest >= Some(10),
        "a new group with `latest` starts after the records already there, got {lowest:?}"
    );
}
