//! A record that takes the sidecar down whenever it is in flight (here: the app hangs on it
//! and the sidecar is `kill -9`ed each time, as an OOM kill or a failed liveness probe would)
//! does not crash-loop every replica for ever: after `delivery.maxCrashes` crashes with it in
//! flight, the next replica dead-letters it without sending it.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    broker::{Broker, header},
    config,
    sidecar::Sidecar,
    sink::{Action, Sink, behaviour},
    unique,
};

const MAX_CRASHES: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_in_flight_during_every_crash_is_dead_lettered_after_max_crashes() {
    let broker = Broker::start(1);
    let (topic, group) = (unique("crashloop"), unique("g"));
    let dlq = format!("{topic}-dlq");
    broker.create_topic(&topic, 1).await;
    broker.create_topic(&dlq, 1).await;
    // The app never answers the poison record.
    let sink = Sink::start(behaviour(|h| {
        if h.offset == 0 {
            Action::Hang(Duration::from_secs(600))
        } else {
            Action::Accept(Duration::ZERO)
        }
    }))
    .await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let msgs = crate::support::keyed(
        &mut crate::support::rng("crash loop").1,
        1,
        10,
        &mut Vec::new(),
        |_| false,
    );
    producer.send(&topic, &msgs).await;
    let mut cfg = config(&broker.bootstrap, &topic, &group, &sink.url(), "partition");
    cfg["delivery"]["maxCrashes"] = json!(MAX_CRASHES);
    cfg["endpoint"]["requestTimeout"] = json!("600s");
    for crash in 0..MAX_CRASHES {
        sink.set_epoch(crash);
        let mut sidecar = Sidecar::start(&cfg, Some("orders-0"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !sink
            .hits()
            .iter()
            .any(|h| h.epoch == crash && h.offset == 0)
        {
            assert!(Instant::now() < deadline, "{}", sidecar.tail());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // In flight long enough for a periodic commit (every 100 ms here) to list it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        sidecar.kill9();
    }
    sink.set_epoch(MAX_CRASHES);
    let mut last = Sidecar::start(&cfg, Some("orders-0"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let dead = loop {
        let dead = broker.read_all(&dlq, 1).await;
        if !dead.is_empty() {
            break dead;
        }
        assert!(Instant::now() < deadline, "{}", last.tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = header(&dead[0], "kcp-dlq-reason").unwrap_or_default();
    assert!(reason.starts_with("crash loop"), "{reason}");
    assert_eq!(
        header(&dead[0], "kcp-dlq-original-offset").as_deref(),
        Some("0")
    );
    assert!(
        !sink
            .hits()
            .iter()
            .any(|h| h.epoch == MAX_CRASHES && h.offset == 0),
        "the replica after the last crash did not send it"
    );
    // The records behind it go on.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(1..10).all(|o| sink.hits().iter().any(|h| h.offset == o && h.accepted)) {
        assert!(Instant::now() < deadline, "{}", last.tail());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last.metric("kcp_crash_loop_dead_letters_total").await, 1.0);
    last.stop().await;
    eprintln!("crash loop: dead-lettered after {MAX_CRASHES} crashes: {reason}");
}
