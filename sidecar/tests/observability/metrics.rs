//! `/metrics` reflects a known run exactly, and a revoked partition's series disappear.

use std::time::Duration;

use crate::support::{
    Observed,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    metric, wait_until_async,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_a_known_run_exactly() {
    init_logging();
    let kafka = TestKafka::start(1);
    let topic = unique("metrics");
    kafka.create_topic(&topic, 2).await;
    kafka.create_topic(&format!("{topic}-dlq"), 1).await;
    // Record i: i % 5 == 0 is rejected (422: dead-lettered, 8 of 40); otherwise i % 7 == 3 fails
    // its first attempt with 500 (retried once: 3, 17, 24, 31, 38); the rest are accepted.
    let app = App::start(behaviour(|r| {
        let i: u32 = std::str::from_utf8(&r.body)
            .expect("utf-8 body")
            .parse()
            .expect("numeric body");
        if i.is_multiple_of(5) {
            Reply::status(422)
        } else if i % 7 == 3 && r.attempt() == 1 {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    }))
    .await;
    let mut o = Observed::start(
        config(&kafka.bootstrap, &topic, &unique("g"), &app.url(), |_| {}),
        Duration::from_secs(30),
    )
    .await;
    let records: Vec<Rec> = (0..40)
        .map(|i| Rec::new(i % 2, None, format!("{i}")))
        .collect();
    kafka.produce(&topic, &records).await;

    // Everything finished, committed to the end of both partitions, and lag reported as 0.
    let p0 = format!("{{topic=\"{topic}\",partition=\"0\"}}");
    let p1 = format!("{{topic=\"{topic}\",partition=\"1\"}}");
    wait_until_async("all finished, committed and lag 0", || async {
        let text = o.get("/metrics").await.1;
        let v = |s: &str| metric(&text, s);
        v("kcp_deliveries_total{outcome=\"delivered\"}").unwrap_or(0.0)
            + v("kcp_deliveries_total{outcome=\"dead_lettered\"}").unwrap_or(0.0)
            == 40.0
            && v(&format!("kcp_partition_committed_offset{p0}")) == Some(20.0)
            && v(&format!("kcp_partition_committed_offset{p1}")) == Some(20.0)
            && v(&format!("kcp_partition_lag_records{p0}")) == Some(0.0)
            && v(&format!("kcp_partition_lag_records{p1}")) == Some(0.0)
    })
    .await;
    let (status, text) = o.get("/metrics").await;
    assert_eq!(status, 200);
    let v = |s: &str| metric(&text, s).unwrap_or_else(|| panic!("{s} missing in:\n{text}"));
    assert_eq!(v("kcp_records_received_total"), 40.0);
    assert_eq!(v("kcp_deliveries_total{outcome=\"delivered\"}"), 32.0);
    assert_eq!(v("kcp_deliveries_total{outcome=\"dead_lettered\"}"), 8.0);
    assert_eq!(v("kcp_deliveries_total{outcome=\"retried\"}"), 5.0);
    assert_eq!(v("kcp_deliveries_total{outcome=\"skipped\"}"), 0.0);
    assert_eq!(v("kcp_delivery_failed_attempts_total{class=\"4xx\"}"), 8.0);
    assert_eq!(v("kcp_delivery_failed_attempts_total{class=\"5xx\"}"), 5.0);
    // 40 first attempts + 5 retries, each timed; 32 deliveries, each with an end-to-end latency.
    assert_eq!(v("kcp_delivery_attempt_duration_seconds_count"), 45.0);
    assert_eq!(v("kcp_end_to_end_latency_seconds_count"), 32.0);
    assert_eq!(v("kcp_requests_in_flight"), 0.0);
    assert_eq!(v("kcp_assigned_partitions"), 2.0);
    assert_eq!(v("kcp_paused_partitions"), 0.0);
    assert_eq!(v("kcp_app_ready"), 1.0);
    assert_eq!(v("kcp_group_joined"), 1.0);
    assert!(v("kcp_rebalances_total") >= 1.0);
    assert_eq!(v("kcp_commit_failures_total"), 0.0);
    assert!(text.contains("# TYPE kcp_delivery_attempt_duration_seconds histogram"));

    // The app's view agrees with the counters.
    assert_eq!(app.delivered().len(), 32);

    // Shutdown revokes the partitions: their series go away.
    o.stop_pipeline().await;
    let (_, text) = o.get("/metrics").await;
    assert!(
        !text.contains("kcp_partition_lag_records{")
            && !text.contains("kcp_partition_committed_offset{"),
        "per-partition series left after revoke:\n{text}"
    );
    assert_eq!(metric(&text, "kcp_assigned_partitions"), Some(0.0));
    // The shutdown commit is synchronous, so acknowledged and counted.
    assert!(metric(&text, "kcp_commits_total").expect("commits") >= 1.0);
}
