//! An app that never becomes ready: two `kcp-sidecar` processes in one group, the first one's
//! app port refusing connections, `endpoint.unreadyTimeout: 8s`. The first replica holds every
//! partition before the second starts; after the timeout it leaves the group and its
//! partitions move.
//!
//! Asserts: the healthy replica delivers every record (of every partition), in key order, and
//! commits to the end; the unready replica stays up, holds no partition, and its `/metrics`
//! shows `kcp_left_group_for_app 1`; both exit cleanly.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Overflows, Row,
    broker::Broker,
    check::{Order, check},
    config, keyed, report, rng, settle,
    sidecar::Sidecar,
    sink::{Action, Sink, behaviour},
    unique,
};

const PARTITIONS: i32 = 4;
/// Nothing listens on port 1 of the loopback: connections are refused, for the whole test.
const REFUSING: &str = "http://127.0.0.1:1/deliver";

/// The number of partitions a replica's `/status` says it holds.
async fn assigned(sidecar: &Sidecar) -> usize {
    let status: Value =
        serde_json::from_str(&sidecar.admin_get("/status").await).expect("/status is JSON");
    status["partitions"]
        .as_object()
        .unwrap_or_else(|| panic!("no partitions in /status: {status}"))
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_of_an_app_that_never_becomes_ready_move_to_the_other_replica() {
    let test = "app never ready (partitions move)";
    let (seed, mut rng) = rng(test);
    let broker = Broker::start(1);
    let (topic, group) = (unique("unready"), unique("g"));
    broker.create_topic(&topic, PARTITIONS).await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let msgs = keyed(&mut rng, 32, 200, &mut Vec::new(), |_| false);
    producer.send(&topic, &msgs).await;

    let patch = |mut c: Value| {
        c["endpoint"]["unreadyTimeout"] = json!("8s");
        c
    };
    let mut unready = Sidecar::start(
        &patch(config(&broker.bootstrap, &topic, &group, REFUSING, "key")),
        Some("unready-0"),
    );
    // Held first: the healthy replica can only get every partition if they move.
    let deadline = Instant::now() + Duration::from_secs(30);
    while assigned(&unready).await != PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "the unready replica never held every partition\n{}",
            unready.tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sink = Sink::start(behaviour(|_| Action::ok())).await;
    let mut healthy = Sidecar::start(
        &patch(config(
            &broker.bootstrap,
            &topic,
            &group,
            &sink.url(),
            "key",
        )),
        Some("healthy-0"),
    );
    settle(&broker, &sink, &ledger, None, Duration::from_secs(60)).await;
    let ends: Vec<Option<i64>> = broker
        .watermarks(&topic, PARTITIONS)
        .await
        .iter()
        .map(|w| Some(w.1))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let committed = broker.committed(&group, &topic, PARTITIONS).await;
        if committed == ends {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed {committed:?}, want {ends:?}\n{}",
            healthy.tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        unready.is_running(),
        "the unready replica exited\n{}",
        unready.tail()
    );
    let left = unready.metric("kcp_left_group_for_app").await;
    let still_held = assigned(&unready).await;
    let healthy_left = healthy.metric("kcp_left_group_for_app").await;
    healthy.stop().await;
    unready.stop().await;

    let produced = ledger.lock().expect("ledger lock").clone();
    let r = check(&produced, &sink.hits(), &[], Order::Key);
    eprintln!("{test}: seed {seed}: {r:?}");
    report(&Row::of(
        test,
        1,
        &r,
        Overflows::NotRead,
        format!("seed {seed}; {PARTITIONS} partitions moved after unreadyTimeout 8s"),
    ));
    r.assert_ok(test);
    assert_eq!(
        r.delivered, r.produced,
        "the healthy replica delivered every record"
    );
    let partitions: std::collections::BTreeSet<i32> =
        sink.hits().iter().map(|h| h.partition).collect();
    assert_eq!(
        partitions,
        (0..PARTITIONS).collect(),
        "records of every partition, including those the unready replica held"
    );
    assert_eq!(
        left, 1.0,
        "the unready replica says it left the group for its app"
    );
    assert_eq!(still_held, 0, "the unready replica holds no partition");
    assert_eq!(healthy_left, 0.0, "the healthy replica stayed");
}
