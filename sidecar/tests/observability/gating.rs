//! The app goes away mid-stream: every partition is paused (no rebalance), and when the app is
//! back fetching resumes and nothing is lost.

use std::{sync::atomic::Ordering::Relaxed, time::Duration};

use crate::support::{
    Observed,
    app::{App, Reply, behaviour},
    config, free_addr, init_logging,
    kafka::{Rec, TestKafka, unique},
    metric, wait_until_async,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn app_down_pauses_every_partition_and_resumes_without_loss() {
    init_logging();
    let kafka = TestKafka::start(1);
    let topic = unique("gate");
    kafka.create_topic(&topic, 2).await;
    let group = unique("g");
    let addr = free_addr();
    let url = format!("http://{addr}/deliver");
    let app = App::start_on(addr, behaviour(|_| Reply::ok())).await;
    let o = Observed::start(
        config(&kafka.bootstrap, &topic, &group, &url, |_| {}),
        Duration::from_secs(30),
    )
    .await;
    let first: Vec<Rec> = (0..40)
        .map(|i| Rec::new(i % 2, None, format!("{i}")))
        .collect();
    kafka.produce(&topic, &first).await;
    wait_until_async("the first 40 delivered", || async {
        app.delivered().len() == 40
    })
    .await;
    let rebalances = o.stats.rebalances.load(Relaxed);

    // The app goes away; more records arrive meanwhile.
    app.stop();
    drop(app);
    let second: Vec<Rec> = (40..100)
        .map(|i| Rec::new(i % 2, None, format!("{i}")))
        .collect();
    kafka.produce(&topic, &second).await;
    wait_until_async("every partition paused for the app", || async {
        let s = o.stats.snapshot();
        let text = o.get("/metrics").await.1;
        !s.gate_open
            && s.gate_paused
            && metric(&text, "kcp_app_ready") == Some(0.0)
            && metric(&text, "kcp_paused_partitions") == Some(2.0)
    })
    .await;
    let (status, _) = o.get("/readyz").await;
    assert_eq!(status, 503, "ready while the app is down");

    // The app is back: resumed, everything delivered, committed to the end, nothing dead-lettered.
    let app = App::start_on(addr, behaviour(|_| Reply::ok())).await;
    wait_until_async("ready again", || async { o.get("/readyz").await.0 == 200 }).await;
    // Records fetched before the pause may all be delivered by their own retries before the
    // readiness probe reopens the gate: wait for both.
    wait_until_async(
        "all 100 records delivered and committed, the gate open",
        || async {
            let s = o.stats.snapshot();
            let delivered = app.delivered();
            let by_partition = |p: i32| -> std::collections::BTreeSet<i64> {
                delivered.iter().filter(|d| d.0 == p).map(|d| d.1).collect()
            };
            // Records 0..40 went to the first app; this one gets the rest (40..100: offsets 20..50).
            let later: std::collections::BTreeSet<i64> = (20..50).collect();
            s.gate_open
                && !s.gate_paused
                && by_partition(0).is_superset(&later)
                && by_partition(1).is_superset(&later)
                && s.partitions
                    .values()
                    .all(|p| p.committed.max(p.commit_requested) == Some(50))
        },
    )
    .await;
    let committed = kafka.committed(&group, &topic, 2).await;
    assert_eq!(committed, vec![Some(50), Some(50)]);
    let s = o.stats.snapshot();
    assert_eq!(s.dead_lettered, 0);
    assert_eq!(s.skipped, 0);
    assert!(s.gate_open && !s.gate_paused);
    assert!(s.app_outages >= 1);
    assert!(s.app_not_ready_ms > 0);
    assert_eq!(
        o.stats.rebalances.load(Relaxed),
        rebalances,
        "the consumer stayed in the group"
    );
    let text = o.get("/metrics").await.1;
    assert!(metric(&text, "kcp_app_not_ready_paused_seconds_total").expect("paused seconds") > 0.0);
    assert_eq!(metric(&text, "kcp_paused_partitions"), Some(0.0));
}
