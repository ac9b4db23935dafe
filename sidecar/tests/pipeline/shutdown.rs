//! A long revoke drain and a SIGTERM during it: what finishes meanwhile is committed, and the
//! shutdown's deadline counts from the signal, not from the end of the revoke.

use std::time::Duration;

use serde_json::json;

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until, wait_until_async,
};

/// The record of each partition that never finishes (the app holds it), so the revoke waits for
/// the whole `drainTimeout`.
const HELD: i64 = 10;
/// Longer than `wait_until`'s bound: a revoke holding the loop without committing could not pass.
const DRAIN_TIMEOUT_S: u64 = 120;

/// The first replica holds both partitions when a second one joins; the revoke of one of them
/// waits for its held record. Meanwhile the records before it, on both partitions, finish: they
/// are committed during the drain (before, the poll loop's periodic commit could not run until
/// the revoke returned, up to `drainTimeout` later). A SIGTERM then, while the revoke still
/// holds the poll thread, fixes the shutdown's deadline at once: `drainTimeout` after the signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_revoke_commits_as_records_finish_and_a_sigterm_during_it_keeps_one_deadline() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("revdrain"), unique("g"));
    kafka.create_topic(&topic, 2).await;
    let app = App::start(behaviour(|r| {
        if r.offset() == HELD {
            Reply::ok().delayed(Duration::from_secs(3600))
        } else {
            // Slow enough that the records before the held one are still being delivered,
            // one at a time per partition, when the second replica joins.
            Reply::ok().delayed(Duration::from_millis(300))
        }
    }))
    .await;
    let records: Vec<Rec> = (0..2)
        .flat_map(|p| (0..=HELD).map(move |i| Rec::new(p, None, i.to_string())))
        .collect();
    kafka.produce(&topic, &records).await;
    let cfg = config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["endpoint"]["requestTimeout"] = json!("300s");
        c["delivery"]["drainTimeout"] = json!(format!("{DRAIN_TIMEOUT_S}s"));
    });
    let first = Running::start(cfg.clone());
    wait_until("the first replica delivers on both partitions", || {
        let got = app.received();
        got.iter().any(|r| r.partition() == 0) && got.iter().any(|r| r.partition() == 1)
    })
    .await;
    let second = Running::start(cfg);
    wait_until(
        "the first replica is revoking (its held record keeps it there)",
        || first.snapshot().rebalances >= 2,
    )
    .await;
    wait_until_async(
        "the records finished during the revoke are committed on both partitions",
        || async { kafka.committed(&group, &topic, 2).await == vec![Some(HELD), Some(HELD)] },
    )
    .await;
    assert_eq!(
        first.snapshot().partitions.len(),
        2,
        "the revoke is still waiting: both partitions are still the first replica's"
    );

    first.shutdown.cancel();
    wait_until("the shutdown's deadline is fixed at the signal", || {
        first.stats.shutdown.times().is_some()
    })
    .await;
    let times = first.stats.shutdown.times().expect("started");
    assert_eq!(
        times.deadline_ms - times.signalled_at_ms,
        DRAIN_TIMEOUT_S * 1000,
        "one drainTimeout from the signal: {times:?}"
    );
    assert_eq!(
        first.snapshot().partitions.len(),
        2,
        "fixed while the revoke still held the poll thread"
    );
    // Nothing here waits for the held records: stop both at once.
    first.kill().await;
    second.kill().await;
}
