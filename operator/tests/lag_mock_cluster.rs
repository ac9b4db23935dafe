//! Lag and dead-letter counts read from librdkafka's mock cluster (in-process brokers on
//! 127.0.0.1): figures per partition and in total, a missing dead-letter topic (counted 0, then
//! reported in `DeadLetterTopicsReady` until it is created), one the user may not describe, a
//! cluster that goes down, a bootstrap address nobody listens on, a topic of 2,000 partitions.

#![allow(clippy::unwrap_used)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use kcp_crds::{config::SecurityProtocol, v1alpha1::LagStatus};
use kcp_operator::{
    lag::{
        Credentials, KafkaLagSource, KafkaLimits, LagError, LagObservation, LagReader, LagSnapshot,
        LagSource, LagTarget, ReadLimits, ResourceKey, error_chain,
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

fn produce(bootstrap: &str, topic: &str, per_partition: &[usize]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for (partition, n) in per_partition.iter().enumerate() {
        for i in 0..*n {
            let payload = format!("record-{i}");
            producer
                .send(
                    BaseRecord::<str, str>::to(topic)
                        .partition(i32::try_from(partition).unwrap())
                        .payload(&payload),
                )
                .unwrap();
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Commits `offsets` for `group` the way a consumer of the group would.
fn commit(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

fn target(bootstrap: String, topics: &[&str], dlq: &[&str]) -> LagTarget {
    LagTarget {
        bootstrap_servers: bootstrap,
        group_id: "shop.orders".into(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        dead_letter_topics: dlq.iter().map(|t| t.to_string()).collect(),
        protocol: SecurityProtocol::Plaintext,
        sasl_mechanism: None,
    }
}

fn fast_limits() -> KafkaLimits {
    KafkaLimits {
        call_timeout: Duration::from_secs(2),
        ..KafkaLimits::default()
    }
}

/// One read of `target` by `source`, within `deadline` from now.
async fn read(
    source: &KafkaLagSource,
    target: LagTarget,
    deadline: Duration,
) -> Result<LagSnapshot, LagError> {
    source
        .read(target, Credentials::default(), Instant::now() + deadline)
        .await
}

const DEADLINE: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_per_partition_total_and_dead_letter_count() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 3, 1).unwrap();
    mock.create_topic("orders-dlq", 2, 1).unwrap();
    produce(&bootstrap, "orders", &[10, 7, 4]);
    produce(&bootstrap, "orders-dlq", &[2, 1]);
    // Partition 2: the group never committed there.
    commit(&bootstrap, "shop.orders", "orders", &[(0, 6), (1, 7)]);
    // Another group's commits must not count.
    commit(&bootstrap, "someone-else", "orders", &[(2, 4)]);

    let source = KafkaLagSource::new(fast_limits());
    let orders = || target(bootstrap.clone(), &["orders"], &["orders-dlq"]);
    let snap = read(&source, orders(), DEADLINE).await.unwrap();

    let rows: Vec<_> = snap
        .partitions
        .iter()
        .map(|p| (p.partition, p.committed_offset, p.high_watermark, p.lag))
        .collect();
    assert_eq!(
        rows,
        vec![(0, Some(6), 10, 4), (1, Some(7), 7, 0), (2, None, 4, 4)]
    );
    assert_eq!(snap.total, 8);
    assert_eq!(snap.partition_count, 3);
    assert_eq!(
        snap.dead_letter.count, 0,
        "no sidecar's commit counted a dead letter: the topic's records are someone else's"
    );
    assert_eq!(snap.dead_letter.in_topics, Some(3));
    assert_eq!(snap.dead_letter.topics, vec!["orders-dlq".to_string()]);
    assert!(snap.missing_topics.is_empty());

    // The group commits more; the cached clients read the new figures.
    commit(&bootstrap, "shop.orders", "orders", &[(0, 10), (2, 1)]);
    let snap = read(&source, orders(), DEADLINE).await.unwrap();
    assert_eq!(snap.total, 3);
    assert_eq!(
        source.cached_clients(),
        2,
        "the cluster client and the group's offsets client, reused"
    );

    // Another group on the same cluster shares the cluster client.
    let other = LagTarget {
        group_id: "someone-else".into(),
        ..orders()
    };
    let snap = read(&source, other, DEADLINE).await.unwrap();
    assert_eq!(
        snap.total,
        10 + 7,
        "no commit on 0 and 1 (high - low); its commit at 4 on partition 2 (no lag)"
    );
    assert_eq!(
        source.cached_clients(),
        3,
        "one more offsets client, no cluster client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topics_count_zero_and_are_named() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 1, 1).unwrap();
    produce(&bootstrap, "orders", &[5]);
    let snap = read(
        &KafkaLagSource::new(fast_limits()),
        target(
            bootstrap,
            &["orders", "payments"],
            &["orders-dlq", "payments-dlq"],
        ),
        DEADLINE,
    )
    .await
    .unwrap();
    assert_eq!(snap.total, 5, "no committed offset: high - low");
    assert_eq!(snap.dead_letter.count, 0);
    assert_eq!(snap.missing_topics, vec!["payments".to_string()]);
}

/// The status a reconcile writes from `lag`, after `previous`.
fn status_from(
    lag: &LagObservation,
    previous: Option<&kcp_crds::KafkaConsumerProxyStatus>,
) -> kcp_crds::KafkaConsumerProxyStatus {
    status::compute(&status::Input {
        generation: Some(1),
        selector: "kafkaproxy.io/instance=orders".into(),
        outcome: status::Outcome::Applied { suspended: false },
        deployment: None,
        lag,
        previous,
        now: kcp_operator::now_seconds(),
    })
}

/// `DeadLetterTopicsReady` of `s`: status, reason, message.
fn dead_letter_condition(s: &kcp_crds::KafkaConsumerProxyStatus) -> (String, String, String) {
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == status::DEAD_LETTER_TOPICS_READY)
        .unwrap();
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// A dead-letter topic that does not exist is reported by the read that counts the dead-letter
/// records (the lag still read) and in the status; once the topic is created, the next read of
/// the same cached clients clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dead_letter_topic_is_reported_until_it_is_created() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 1, 1).unwrap();
    produce(&bootstrap, "orders", &[3]);
    let source = KafkaLagSource::new(fast_limits());
    let orders = || target(bootstrap.clone(), &["orders"], &["orders-dlq"]);

    let snap = read(&source, orders(), DEADLINE).await.unwrap();
    assert_eq!(
        snap.dead_letter_check.missing,
        vec!["orders-dlq".to_string()]
    );
    assert!(snap.dead_letter_check.unauthorized.is_empty());
    assert!(snap.missing_topics.is_empty(), "the source topic exists");
    assert_eq!(snap.total, 3, "the lag is still read");
    let lag = LagObservation::Fresh {
        snapshot: snap,
        read_at: kcp_operator::now_seconds(),
    };
    let before = status_from(&lag, None);
    let (state, reason, message) = dead_letter_condition(&before);
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "DeadLetterTopicMissing")
    );
    assert!(message.contains("orders-dlq does not exist"), "{message}");

    mock.create_topic("orders-dlq", 2, 1).unwrap();
    produce(&bootstrap, "orders-dlq", &[2, 1]);
    let snap = read(&source, orders(), DEADLINE).await.unwrap();
    assert!(
        snap.dead_letter_check.is_clear(),
        "{:?}",
        snap.dead_letter_check
    );
    assert_eq!(snap.dead_letter.in_topics, Some(3));
    let lag = LagObservation::Fresh {
        snapshot: snap,
        read_at: kcp_operator::now_seconds(),
    };
    let after = status_from(&lag, Some(&before));
    let (state, reason, _) = dead_letter_condition(&after);
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("True", "DeadLetterTopicsExist")
    );
}

/// A dead-letter topic the user may not describe (the broker answers its metadata with
/// TOPIC_AUTHORIZATION_FAILED) cannot be written either: it is named apart, and the read of
/// the lag still succeeds. The same answer for a source topic fails the read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_topic_the_user_may_not_describe_is_reported_not_a_failed_read() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 1, 1).unwrap();
    mock.create_topic("orders-dlq", 1, 1).unwrap();
    produce(&bootstrap, "orders", &[4]);
    mock.topic_error(
        "orders-dlq",
        rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
    )
    .unwrap();
    let source = KafkaLagSource::new(fast_limits());

    let snap = read(
        &source,
        target(
            bootstrap.clone(),
            &["orders"],
            &["orders-dlq", "payments-dlq"],
        ),
        DEADLINE,
    )
    .await
    .unwrap();
    assert_eq!(snap.total, 4);
    assert_eq!(
        snap.dead_letter_check.unauthorized,
        vec!["orders-dlq".to_string()]
    );
    assert_eq!(
        snap.dead_letter_check.missing,
        vec!["payments-dlq".to_string()]
    );
    let lag = LagObservation::Fresh {
        snapshot: snap,
        read_at: kcp_operator::now_seconds(),
    };
    let (state, reason, message) = dead_letter_condition(&status_from(&lag, None));
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "DeadLetterTopicNotAuthorized")
    );
    assert!(message.contains("grant that user Write"), "{message}");

    let err = read(&source, target(bootstrap, &["orders-dlq"], &[]), DEADLINE)
        .await
        .unwrap_err();
    assert!(matches!(err, LagError::Topic { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_goes_down_gives_an_error_not_a_hang_or_panic() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 1, 1).unwrap();
    let source = KafkaLagSource::new(fast_limits());
    let orders = || target(bootstrap.clone(), &["orders"], &[]);
    read(&source, orders(), DEADLINE).await.unwrap();
    assert_eq!(source.cached_clients(), 2);

    mock.broker_down(-1).unwrap();
    let err = read(&source, orders(), DEADLINE).await.unwrap_err();
    assert!(
        matches!(
            err,
            LagError::Metadata { .. }
                | LagError::Committed { .. }
                | LagError::Watermarks { .. }
                | LagError::DeadlinePassed
        ),
        "{err:?}"
    );
    assert!(!error_chain(&err).is_empty());
    assert_eq!(
        source.cached_clients(),
        0,
        "a failed read's clients are dropped"
    );
}

/// A real read failure, through `LagReader` and `status::compute`: the last figures are
/// kept, marked stale, and `KafkaReachable` turns False with reason `KafkaUnreachable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_marks_lag_stale_in_the_status() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 1, 1).unwrap();
    produce(&bootstrap, "orders", &[4]);
    let metrics = Arc::new(Metrics::default());
    let (reader, mut updates) = LagReader::new(
        Arc::new(KafkaLagSource::new(fast_limits())),
        Duration::ZERO,
        ReadLimits {
            deadline: DEADLINE,
            ..ReadLimits::default()
        },
        metrics.clone(),
    );
    let compute = |lag: &LagObservation, previous| {
        status::compute(&status::Input {
            generation: Some(1),
            selector: "kafkaproxy.io/instance=orders".into(),
            outcome: status::Outcome::Applied { suspended: true },
            deployment: None,
            lag,
            previous,
            now: kcp_operator::now_seconds(),
        })
    };
    let key = ResourceKey {
        namespace: "shop".into(),
        name: "orders".into(),
        uid: "uid".into(),
    };
    let observe = || {
        reader.observe(
            &key,
            target(bootstrap.clone(), &["orders"], &[]),
            Credentials::default(),
        )
    };
    assert_eq!(observe(), LagObservation::Pending);
    assert_eq!(updates.next().await.as_ref(), Some(&key));
    let before = compute(&observe(), None);
    assert_eq!(
        before.lag.as_ref().map(|l| (l.total, l.stale)),
        Some((4, false))
    );

    mock.broker_down(-1).unwrap();
    reader.idle().await;
    observe();
    assert_eq!(updates.next().await.as_ref(), Some(&key), "figures changed");
    let down = observe();
    assert!(matches!(down, LagObservation::Failed { .. }), "{down:?}");
    let after = compute(&down, Some(&before));
    assert_eq!(
        after.lag.as_ref().map(|l| (l.total, l.stale)),
        Some((4, true))
    );
    let kafka = after
        .conditions
        .iter()
        .find(|c| c.type_ == "KafkaReachable")
        .unwrap();
    assert_eq!(
        (kafka.status.as_str(), kafka.reason.as_str()),
        ("False", "KafkaUnreachable")
    );
    assert_eq!(metrics.lag_probe_failures.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_gives_an_error() {
    // Bind then drop a listener: nothing listens on that port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = read(
        &KafkaLagSource::new(fast_limits()),
        target(format!("127.0.0.1:{port}"), &["orders"], &[]),
        DEADLINE,
    )
    .await
    .unwrap_err();
    let message = error_chain(&err);
    assert!(message.contains("orders"), "names what it tried: {message}");
}

/// Records in partition `p` of the 2,000-partition topic: 0–3, and 30–54 in 25 of them.
fn records_in(p: i32) -> usize {
    if p % 80 == 7 {
        30 + usize::try_from(p / 80).unwrap()
    } else {
        usize::try_from(p % 4).unwrap()
    }
}

/// The group's committed offset in partition `p`, on every third partition.
fn committed_in(p: i32) -> Option<i64> {
    (p % 3 == 0).then(|| i64::try_from(records_in(p) / 2).unwrap())
}

/// Watermarks are read in a few batched requests: a topic of 2,000 partitions on a broker
/// 10 ms away is read within the production deadline (15 s), where one request per partition
/// ran out of time. The list is bounded; the totals cover every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_partitions_are_read_whole_and_listed_bounded() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("clicks", 2000, 1).unwrap();
    let records: Vec<usize> = (0..2000).map(records_in).collect();
    produce(&bootstrap, "clicks", &records);
    let commits: Vec<(i32, i64)> = (0..2000)
        .filter_map(|p| committed_in(p).map(|c| (p, c)))
        .collect();
    commit(&bootstrap, "shop.orders", "clicks", &commits);
    let lag_of = |p: i32| i64::try_from(records_in(p)).unwrap() - committed_in(p).unwrap_or(0);
    let expected_total: i64 = (0..2000).map(lag_of).sum();
    // The 20 most lagging: the 25 heavy partitions have distinct lags of 15 and more.
    let mut by_lag: Vec<i32> = (0..2000).collect();
    by_lag.sort_by_key(|p| (-lag_of(*p), *p));
    let mut expected_listed: Vec<(i32, i64)> =
        by_lag[..20].iter().map(|p| (*p, lag_of(*p))).collect();
    expected_listed.sort_unstable();
    // A broker 10 ms away (another region): one request per partition cannot finish in time.
    mock.broker_round_trip_time(-1, Duration::from_millis(10))
        .unwrap();

    let snap = read(
        &KafkaLagSource::new(KafkaLimits::default()),
        target(bootstrap, &["clicks"], &[]),
        ReadLimits::default().deadline,
    )
    .await
    .unwrap();
    assert_eq!(snap.total, expected_total);
    assert_eq!(snap.partition_count, 2000);
    assert_eq!(snap.partitions.len(), LagStatus::MAX_PARTITIONS);
    let listed: Vec<(i32, i64)> = snap
        .partitions
        .iter()
        .map(|p| (p.partition, p.lag))
        .collect();
    assert_eq!(listed, expected_listed, "the most lagging, by partition");
    let heavy = snap
        .partitions
        .iter()
        .find(|p| p.partition == 1927)
        .unwrap();
    assert_eq!(
        (heavy.committed_offset, heavy.high_watermark),
        (None, 54),
        "1927 = 24 × 80 + 7: 54 records, no commit"
    );
    // Their oldest records were fetched too, within the same deadline (the most lagging 1,000
    // partitions are peeked: every listed one is among them).
    assert!(
        snap.partitions.iter().all(|p| p.lag_seconds.is_some()),
        "{:?}",
        snap.partitions
    );
    assert!(snap.seconds.is_some());
}
