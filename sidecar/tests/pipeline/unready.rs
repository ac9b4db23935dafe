//! An app that never becomes ready does not hold its partitions hostage: after
//! `endpoint.unreadyTimeout` its replica leaves the group, the other replica consumes every
//! partition, and the replica joins again once its app answers.

use std::net::SocketAddr;

use serde_json::json;

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until,
};

/// A loopback address nothing listens on (connection refused), usable later by an app.
fn closed_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_of_an_app_that_never_answers_move_to_a_healthy_replica() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("unready"), unique("g"));
    let partitions = 4;
    kafka.create_topic(&topic, partitions).await;
    let records: Vec<Rec> = (0..40)
        .map(|i| Rec::new(i % partitions, None, "v"))
        .collect();
    kafka.produce(&topic, &records).await;

    // Replica A's app is down for good; replica B's answers.
    let down = closed_addr();
    // Long enough for A to join and hold every partition first.
    let patch = |c: &mut serde_json::Value| {
        c["endpoint"]["unreadyTimeout"] = json!("8s");
    };
    let a = Running::start(config(
        &kafka.bootstrap,
        &topic,
        &group,
        &format!("http://{down}/"),
        patch,
    ));
    wait_until("replica A got every partition", || {
        a.snapshot().partitions.len() == partitions as usize
    })
    .await;
    let healthy = App::start(behaviour(|_| Reply::ok())).await;
    let b = Running::start(config(
        &kafka.bootstrap,
        &topic,
        &group,
        &healthy.url(),
        patch,
    ));
    wait_until(
        "replica B delivers every record, including those of A's partitions",
        || healthy.delivered().len() == records.len(),
    )
    .await;
    assert!(a.snapshot().left_for_app, "A says why it left");
    assert!(!b.snapshot().left_for_app);

    // A's app comes up: A joins again and takes partitions back.
    let revived = App::start_on(down, behaviour(|_| Reply::ok())).await;
    wait_until("replica A is back in the group with partitions", || {
        let s = a.snapshot();
        !s.left_for_app && s.joined && !s.partitions.is_empty()
    })
    .await;
    let more: Vec<Rec> = (0..40)
        .map(|i| Rec::new(i % partitions, None, "w"))
        .collect();
    kafka.produce(&topic, &more).await;
    wait_until("the new records are delivered by both replicas", || {
        healthy.delivered().len() + revived.delivered().len() == records.len() + more.len()
    })
    .await;
    assert!(!revived.delivered().is_empty(), "A consumes again");
    a.stop().await;
    b.stop().await;
}
