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
