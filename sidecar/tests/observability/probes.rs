//! `/readyz` and `/healthz` flip as the app and the poll loop come and go.

use std::{sync::atomic::Ordering::Relaxed, time::Duration};

use crate::support::{
    Observed,
    app::{App, Reply, behaviour},
    config, free_addr, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until_async,
};

const THRESHOLD: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_waits_for_the_app_and_healthz_follows_the_poll_loop() {
    init_logging();
    let kafka = TestKafka::start(1);
    let topic = unique("probes");
    kafka.create_topic(&topic, 2).await;
    let app_addr = free_addr();
    let url = format!("http://{app_addr}/deliver");
    let mut o = Observed::start(
        config(&kafka.bootstrap, &topic, &unique("g"), &url, |_| {}),
        THRESHOLD,
    )
    .await;

    // Joined the group, but the app is not listening yet: alive, not ready.
    wait_until_async("the consumer joined", || async {
        o.stats.joined.load(Relaxed)
    })
    .await;
    let (status, body) = o.get("/readyz").await;
    assert_eq!(status, 503, "ready before the app answers: {body}");
    assert!(body.contains("app"), "{body}");
    let (status, _) = o.get("/healthz").await;
    assert_eq!(status, 200);

    // The app comes up: ready, and records flow.
    let app = App::start_on(app_addr, behaviour(|_| Reply::ok())).await;
    wait_until_async("/readyz answers 200", || async {
        o.get("/readyz").await.0 == 200
    })
    .await;
    let records: Vec<Rec> = (0..10)
        .map(|i| Rec::new(i % 2, None, format!("{i}")))
        .collect();
    kafka.produce(&topic, &records).await;
    wait_until_async("10 records delivered", || async {
        app.delivered().len() == 10
    })
    .await;
    // Longer than the threshold: only a ticking poll loop keeps liveness green now.
    tokio::time::sleep(THRESHOLD + Duration::from_millis(500)).await;
    let (status, body) = o.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    let (_, status_json) = o.get("/status").await;
    let v: serde_json::Value = serde_json::from_str(&status_json).expect("status is JSON");
    assert_eq!(v["live"], true);
    assert_eq!(v["ready"], true);
    assert_eq!(v["delivered"], 10);

    // The poll loop stops (the pipeline shut down): liveness fails once past the threshold,
    // and the replica is no longer ready (it left the group).
    o.stop_pipeline().await;
    wait_until_async("/healthz answers 503", || async {
        o.get("/healthz").await.0 == 503
    })
    .await;
    let (status, _) = o.get("/readyz").await;
    assert_eq!(status, 503);
}

/// More replicas than partitions: the replica without a partition is still ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_without_partitions_is_ready() {
    init_logging();
    let kafka = TestKafka::start(1);
    let topic = unique("spare");
    kafka.create_topic(&topic, 1).await;
    let app = App::start(behaviour(|_| Reply::ok())).await;
    let group = unique("g");
    let a = Observed::start(
        config(&kafka.bootstrap, &topic, &group, &app.url(), |_| {}),
        THRESHOLD,
    )
    .await;
    let b = Observed::start(
        config(&kafka.bootstrap, &topic, &group, &app.url(), |_| {}),
        THRESHOLD,
    )
    .await;
    wait_until_async(
        "both replicas ready, one partition between them",
        || async {
            let (sa, sb) = (a.stats.snapshot(), b.stats.snapshot());
            a.get("/readyz").await.0 == 200
                && b.get("/readyz").await.0 == 200
                && sa.partitions.len() + sb.partitions.len() == 1
        },
    )
    .await;
}
