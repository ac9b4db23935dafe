//! A lost assignment (the session expired: another member may own the partitions already) stops
//! work on its partitions at once instead of draining for `drainTimeout` in parallel with the
//! new owner; the records stay uncommitted and are delivered again.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::json;

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_assignment_abandons_in_flight_work_instead_of_draining() {
    init_logging();
    let kafka = TestKafka::start(1);
    let Some(mock) = kafka.mock() else {
        eprintln!("SKIPPED: needs the mock cluster's fault injection");
        return;
    };
    let (topic, group) = (unique("lost"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    kafka.produce(&topic, &[Rec::new(0, None, "r0")]).await;
    // The app holds the first request for an hour; any later one is answered at once.
    let seen = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&seen);
    let app = App::start(behaviour(move |_| {
        if s.fetch_add(1, SeqCst) == 0 {
            Reply::ok().delayed(Duration::from_secs(3600))
        } else {
            Reply::ok()
        }
    }))
    .await;
    let cfg = config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        // A revoke that drained would wait this long for the held request, which itself does
        // not time out first.
        c["delivery"]["drainTimeout"] = json!("250s");
        c["endpoint"]["requestTimeout"] = json!("1h");
    });
    let running = Running::start(cfg);
    wait_until("the first request is held by the app", || {
        seen.load(SeqCst) == 1
    })
    .await;
    // The coordinator forgets the member: the next heartbeat tells it its assignment is lost.
    mock.request_errors(
        RDKafkaApiKey::Heartbeat,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID],
    );
    wait_until(
        "the record is delivered again while the first request is still held",
        || seen.load(SeqCst) >= 2,
    )
    .await;
    let stats = running.kill().await;
    assert!(
        stats.rebalances >= 2,
        "the partition was lost and assigned again"
    );
    let seen: Vec<(i64, u32)> = app
        .received()
        .iter()
        .map(|r| (r.offset(), r.attempt()))
        .collect();
    assert_eq!(
        seen,
        vec![(0, 1), (0, 1)],
        "the same record delivered afresh after the rejoin, not retried"
    );
}

/// With no group coordinator (it moved, and none can be found), librdkafka's synchronous commit
/// waits for one indefinitely, so a graceful shutdown never ended (it did not within 120 s before
/// the commit was bounded; a revoke would stop the poll loop the same way). The commit is
/// bounded: the shutdown ends, and what it could not commit is delivered again later, never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_when_kafka_cannot_take_the_commit() {
    init_logging();
    let kafka = TestKafka::start(1);
    let Some(mock) = kafka.mock() else {
        eprintln!("SKIPPED: needs the mock cluster's fault injection");
        return;
    };
    let (topic, group) = (unique("nocoord"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    kafka
        .produce(
            &topic,
            &(0..5)
                .map(|i| Rec::new(0, None, i.to_string()))
                .collect::<Vec<_>>(),
        )
        .await;
    let app = App::start(behaviour(|_| Reply::ok())).await;
    let cfg = config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        // Nothing is committed before the shutdown.
        c["delivery"]["commitInterval"] = json!("1h");
    });
    let running = Running::start(cfg);
    wait_until("every record is delivered", || app.delivered().len() == 5).await;
    // The coordinator moves away and no new one can be found.
    mock.request_errors(
        RDKafkaApiKey::FindCoordinator,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE; 2000],
    );
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR; 50],
    );
    // A bound against a hang, not a timing assertion: the shutdown takes the commit bound
    // (10 s) and the consumer's close bound (5 s).
    let stats = tokio::time::timeout(Duration::from_secs(120), running.stop())
        .await
        .expect("the shutdown ends although Kafka cannot take the commit");
    assert!(stats.commit_failures >= 1, "the failed commit is counted");
}

/// A revoked partition's prefetched records are released: librdkafka does not purge a revoked
/// partition's queue, and until read its records pin their fetch buffers for as long as the
/// partition stays away. The sidecar drains it; librdkafka's statistics then show nothing
/// queued for partitions the replica no longer has (`consumer::tests` checks the figure itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_partitions_prefetched_records_are_released() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("purge"), unique("g"));
    kafka.create_topic(&topic, 2).await;
    let big = vec![b'x'; 1024];
    let records: Vec<Rec> = (0..1000)
        .map(|i| Rec::new(i % 2, None, big.clone()))
        .collect();
    kafka.produce(&topic, &records).await;
    // Replica A's app holds every request, so its buffers and librdkafka's queues fill up.
    let held = App::start(behaviour(|_| {
        Reply::ok().delayed(Duration::from_secs(3600))
    }))
    .await;
    let patch = |c: &mut serde_json::Value| {
        c["delivery"]["drainTimeout"] = json!("1s");
        c["delivery"]["maxInFlight"] = json!(1);
        c["endpoint"]["requestTimeout"] = json!("1h");
        c["kafka"]["clientConfig"]["statistics.interval.ms"] = json!("100");
    };
    let a = Running::start(config(&kafka.bootstrap, &topic, &group, &held.url(), patch));
    wait_until(
        "replica A holds both partitions and has records buffered",
        || {
            let s = a.snapshot();
            s.partitions.len() == 2 && s.buffered_records > 0
        },
    )
    .await;
    let healthy = App::start(behaviour(|_| Reply::ok())).await;
    let b = Running::start(config(
        &kafka.bootstrap,
        &topic,
        &group,
        &healthy.url(),
        patch,
    ));
    wait_until("one partition moved to replica B", || {
        a.snapshot().partitions.len() == 1 && b.snapshot().partitions.len() == 1
    })
    .await;
    // Two fresh librdkafka statistics reports after the move (every 100 ms here): without the
    // drain they show the moved partition's prefetched records (439 of them when measured).
    let seen = a.snapshot().librdkafka_reports;
    wait_until("librdkafka reported its statistics twice since", || {
        a.snapshot().librdkafka_reports >= seen + 2
    })
    .await;
    assert_eq!(
        a.snapshot().unassigned_fetch_queued,
        0,
        "librdkafka still holds records for a partition replica A no longer has"
    );
    a.kill().await;
    b.kill().await;
}
