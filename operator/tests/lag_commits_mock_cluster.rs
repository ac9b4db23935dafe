//! What a lag read learns beyond record counts, from librdkafka's mock cluster: how far behind
//! in time (the oldest uncommitted record's timestamp), what this group dead-lettered and why a
//! partition does not move (the metadata the sidecar commits with its offsets), and the stuck
//! partitions the reader reports from it.

#![allow(clippy::unwrap_used)]

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use kcp_crds::{
    config::SecurityProtocol,
    progress::{DeadLetterKind, DeadLetterNote, Failure, Progress, RecordState},
};
use kcp_operator::{
    lag::{
        Credentials, KafkaLagSource, KafkaLimits, LagObservation, LagReader, LagSource, LagTarget,
        ReadLimits, ResourceKey,
    },
    metrics::Metrics,
    reconcile::status,
};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
    mocking::MockCluster,
    producer::{BaseProducer, BaseRecord, Producer},
};

const GROUP: &str = "shop.orders";

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Produces one record per timestamp to `partition`.
fn produce_at(bootstrap: &str, topic: &str, partition: i32, timestamps: &[i64]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for ts in timestamps {
        producer
            .send(
                BaseRecord::<str, str>::to(topic)
                    .partition(partition)
                    .timestamp(*ts)
                    .payload("x"),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Commits for the group as a sidecar does: each offset with its metadata string.
fn commit_with(bootstrap: &str, topic: &str, offsets: &[(i32, i64, String)]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, o, metadata) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .unwrap();
        if !metadata.is_empty() {
            tpl.find_partition(topic, *p)
                .unwrap()
                .set_metadata(metadata);
        }
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

fn target(bootstrap: String) -> LagTarget {
    LagTarget {
        bootstrap_servers: bootstrap,
        group_id: GROUP.into(),
        topics: vec!["orders".into()],
        dead_letter_topics: vec!["orders-dlq".into()],
        protocol: SecurityProtocol::Plaintext,
        sasl_mechanism: None,
    }
}

fn limits() -> KafkaLimits {
    KafkaLimits {
        call_timeout: Duration::from_secs(5),
        ..KafkaLimits::default()
    }
}

/// What a sidecar commits at `committed` when the record there was tried 17 times, the last
/// answered 503, and the group dead-lettered `dead` records of the partition.
fn blocked_progress(committed: i64, dead: u64) -> String {
    let mut p = Progress {
        committed,
        highest: committed + 3,
        unfinished: [(
            committed,
            RecordState {
                attempts: 17,
                first_failure_ms: Some(1),
                last: Some(Failure::Status(503)),
                ..RecordState::default()
            },
        )]
        .into(),
        ..Progress::default()
    };
    for i in 0..dead {
        p.note_dead_letter(DeadLetterNote {
            offset: i64::try_from(i).unwrap(),
            at_ms: 1_764_000_000_000 + i * 1_000,
            kind: DeadLetterKind::RetriesExhausted,
            attempts: 5,
            last: Some(Failure::Status(500)),
        });
    }
    p.encode(3_800).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seconds_behind_dead_letters_and_the_why_come_from_kafka() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 3, 1).unwrap();
    mock.create_topic("orders-dlq", 1, 1).unwrap();
    let t0 = now_ms() - 600_000;
    // Partition 0: ten records a second apart, ten minutes ago; the group is at offset 2.
    produce_at(
        &bootstrap,
        "orders",
        0,
        &(0..10).map(|i| t0 + i * 1_000).collect::<Vec<_>>(),
    );
    // Partition 1: a producer clock an hour ahead; the group never committed.
    produce_at(&bootstrap, "orders", 1, &[now_ms() + 3_600_000]);
    // Partition 2: caught up.
    produce_at(&bootstrap, "orders", 2, &[t0]);
    // Another resource's dead letters share the topic: they are not this group's.
    produce_at(&bootstrap, "orders-dlq", 0, &[t0, t0, t0, t0, t0, t0, t0]);
    commit_with(
        &bootstrap,
        "orders",
        &[(0, 2, blocked_progress(2, 4)), (2, 1, String::new())],
    );

    let source = KafkaLagSource::new(limits());
    let before = now_ms();
    let snap = source
        .read(
            target(bootstrap.clone()),
            Credentials::default(),
            Instant::now() + Duration::from_secs(10),
        )
        .await
        .unwrap();
    let after = now_ms();
    let seconds: Vec<_> = snap
        .partitions
        .iter()
        .map(|p| (p.partition, p.lag, p.lag_seconds))
        .collect();
    // The record at offset 2 was written at t0 + 2 s; the read happened between before and after.
    let lowest = (before - (t0 + 2_000)) / 1_000;
    let highest = (after - (t0 + 2_000)) / 1_000;
    let p0 = seconds[0].2.unwrap();
    assert!(
        (lowest..=highest).contains(&p0),
        "{p0} not in {lowest}..={highest}"
    );
    assert_eq!(
        seconds[1],
        (1, 1, Some(0)),
        "a timestamp in the future counts 0"
    );
    assert_eq!(seconds[2], (2, 0, Some(0)), "caught up");
    assert_eq!(snap.seconds, Some(p0), "the oldest over every partition");
    // What `kubectl get kcp` shows: the status the reconcile writes from this read.
    let status = status::compute(&status::Input {
        generation: Some(1),
        selector: "kafkaproxy.io/instance=orders".into(),
        outcome: status::Outcome::Applied { suspended: false },
        deployment: None,
        lag: &LagObservation::Fresh {
            snapshot: snap.clone(),
            read_at: kcp_operator::now_seconds(),
        },
        previous: None,
        now: kcp_operator::now_seconds(),
    });
    let lag = status.lag.as_ref().unwrap();
    assert_eq!(lag.seconds, Some(p0));
    assert_eq!(lag.behind, Some(kcp_operator::lag::stuck::human(p0)));
    assert_eq!(status.dead_letter.as_ref().unwrap().count, 4);

    assert_eq!(
        snap.dead_letter.count, 4,
        "what this group's commits counted"
    );
    assert_eq!(snap.dead_letter.in_topics, Some(7), "whoever wrote them");
    let recent: Vec<_> = snap
        .dead_letter
        .recent
        .iter()
        .map(|r| (r.idempotency_key.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        recent,
        [
            (
                "orders/0/3",
                "retries exhausted after 5 attempts (last 500)"
            ),
            (
                "orders/0/2",
                "retries exhausted after 5 attempts (last 500)"
            ),
            (
                "orders/0/1",
                "retries exhausted after 5 attempts (last 500)"
            ),
        ],
        "the newest a commit keeps, newest first"
    );
    let why: Vec<_> = snap
        .positions
        .iter()
        .map(|p| (p.partition, p.committed, p.record.as_deref()))
        .collect();
    assert_eq!(
        why,
        [
            (0, Some(2), Some("record tried 17 times, last 503")),
            (1, None, None),
            (2, Some(1), None),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_that_is_not_ours_reads_as_nothing() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 2, 1).unwrap();
    produce_at(&bootstrap, "orders", 0, &[now_ms(), now_ms()]);
    produce_at(&bootstrap, "orders", 1, &[now_ms()]);
    commit_with(
        &bootstrap,
        "orders",
        &[
            (0, 1, "{\"committed-by\":\"another client\"}".into()),
            (1, 0, "kcp2:@@@".into()),
        ],
    );
    let snap = KafkaLagSource::new(limits())
        .read(
            target(bootstrap),
            Credentials::default(),
            Instant::now() + Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(snap.total, 2);
    assert_eq!(snap.dead_letter.count, 0);
    assert!(snap.positions.iter().all(|p| p.record.is_none()));
    assert!(snap.partitions.iter().all(|p| p.lag_seconds.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_names_a_stuck_partition_and_lets_go_when_it_moves() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 1, 1).unwrap();
    mock.create_topic("orders-dlq", 1, 1).unwrap();
    produce_at(&bootstrap, "orders", 0, &[now_ms(); 6]);
    commit_with(&bootstrap, "orders", &[(0, 2, blocked_progress(2, 0))]);

    let (reader, _updates) = LagReader::new(
        Arc::new(KafkaLagSource::new(limits())),
        Duration::ZERO,
        ReadLimits {
            // Stuck from the first read: the window itself is unit-tested (`lag/stuck.rs`).
            stuck_after: Duration::ZERO,
            ..ReadLimits::default()
        },
        Arc::new(Metrics::default()),
    );
    let key = ResourceKey::of(&kube::api::ObjectMeta {
        namespace: Some("shop".into()),
        name: Some("orders".into()),
        ..Default::default()
    });
    // A read started by the last call may predate the test's last commit: let it end, then
    // start one (the refresh interval is zero: one is due whenever none runs).
    let read = || async {
        reader.idle().await;
        reader.observe(&key, target(bootstrap.clone()), Credentials::default());
        reader.idle().await;
        match reader.observe(&key, target(bootstrap.clone()), Credentials::default()) {
            LagObservation::Fresh { snapshot, .. } => snapshot,
            other => panic!("no figures: {other:?}"),
        }
    };
    let first = read().await;
    assert_eq!(first.stuck_count, 1);
    let s = &first.stuck[0];
    assert_eq!(
        (s.topic.as_str(), s.partition, s.offset, s.record.as_deref()),
        (
            "orders",
            0,
            Some(2),
            Some("record tried 17 times, last 503")
        )
    );
    assert!(
        first.positions.is_empty(),
        "positions are not kept in the observation"
    );

    // The record finishes: the offset moves; a new window starts at the new offset.
    commit_with(&bootstrap, "orders", &[(0, 6, String::new())]);
    let second = read().await;
    assert_eq!(
        second.stuck_count, 0,
        "caught up: nothing to consume, never stuck"
    );
}
