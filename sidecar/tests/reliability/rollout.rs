//! A rolling update as a Deployment does it: a new pod (its own random name) starts, the old one
//! gets SIGTERM. The old pod's partitions must move as soon as it has drained and left the group
//! (LeaveGroup), not once the group gives up on it after `session.timeout.ms`, as it would for a
//! static member named after the pod (the round-1 sidecar).
//!
//! librdkafka's mock cluster completes every rebalance `session.timeout.ms` − 1 s after it
//! starts (a real broker completes it once the remaining members rejoined), so here a leave costs
//! about that rebalance, and a member that does not leave costs `session.timeout.ms` more: the
//! bound below, 1.5 × the session timeout after the old pod exited, separates the two by seconds
//! on each side. Reports, per partition, the longest time without a delivery after the SIGTERM,
//! next to how long the old pod's drain took (SIGTERM to exit): figures, not assertions. And
//! no finished record is delivered again after the move.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::json;

use crate::support::{
    Overflows, Row,
    broker::Broker,
    check::{Order, check},
    config, keyed, largest_gap, report, rng, settle,
    sidecar::{Sidecar, strip_ansi},
    sink::{Action, Sink, behaviour},
    unique,
};

const PARTITIONS: i32 = 4;
/// What a member that does not leave holds its partitions for.
const SESSION_TIMEOUT_MS: u64 = 10_000;
/// Partitions are consumed again within this after the old pod exited: a leave costs one mock
/// rebalance (9 s), a member that does not leave 19 s.
const MOVE_BOUND: Duration = Duration::from_millis(SESSION_TIMEOUT_MS * 3 / 2);
/// Bound of the other waits (the new pod's join is a mock rebalance too).
const JOIN_BOUND: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_moves_partitions_when_the_old_pod_leaves() {
    let test = "rolling update (pod names)";
    let (seed, mut rng) = rng(test);
    let broker = Broker::start(1);
    let (topic, group) = (unique("roll"), unique("g"));
    broker.create_topic(&topic, PARTITIONS).await;
    let sink = Sink::start(behaviour(|_| Action::Accept(Duration::from_millis(5)))).await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let mut cfg = config(&broker.bootstrap, &topic, &group, &sink.url(), "key");
    cfg["kafka"]["clientConfig"] = json!({
        "session.timeout.ms": SESSION_TIMEOUT_MS.to_string(),
        "heartbeat.interval.ms": "1000"
    });
    // A steady stream for the whole test: 16 records every 100 ms.
    let msgs = keyed(&mut rng, 64, 16 * 600, &mut Vec::new(), |_| false);
    let stop_producing = tokio_util::sync::CancellationToken::new();
    let (p, t, stop) = (producer.clone(), topic.clone(), stop_producing.clone());
    let produce = tokio::spawn(async move {
        for chunk in msgs.chunks(16) {
            if stop.is_cancelled() {
                break;
            }
            p.send(&t, chunk).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // The names a Deployment gives: random, different for every pod.
    let mut old = Sidecar::start(&cfg, Some("orders-7d9f8b6c5-x2k4q"));
    wait_for("the old pod delivers", JOIN_BOUND, || sink.len() > 0, &old).await;
    let mut new = Sidecar::start(&cfg, Some("orders-5c4b7a9d8-m7p2w"));
    // The new pod is in the group once the cooperative rebalance gave it partitions.
    wait_for(
        "the new pod takes partitions",
        JOIN_BOUND,
        || strip_ansi(&new.stderr()).contains("Partitions assigned partitions=[\""),
        &new,
    )
    .await;
    let mut overflows = Overflows::default();
    overflows.read(&old).await;
    let term = Instant::now();
    old.term();
    old.wait(Duration::from_secs(60)).await;
    let drain = term.elapsed();
    old.assert_no_panic();
    let after_exit = Instant::now();
    wait_for(
        "every partition is consumed again after the old pod left",
        MOVE_BOUND,
        || {
            let hits = sink.hits();
            (0..PARTITIONS).all(|p| hits.iter().any(|h| h.partition == p && h.at > after_exit))
        },
        &new,
    )
    .await;
    let idle = idle_per_partition(&sink.hits(), term, Instant::now());
    stop_producing.cancel();
    produce.await.expect("producer task");
    settle(&broker, &sink, &ledger, None, Duration::from_secs(90)).await;
    overflows.read(&new).await;
    new.stop().await;
    let produced = ledger.lock().expect("ledger lock").clone();
    let r = check(&produced, &sink.hits(), &[], Order::Key);
    let longest = idle.values().max().copied().unwrap_or_default();
    let notes = format!(
        "seed {seed}; old pod's drain {} ms; longest partition idle after its SIGTERM {} ms (session timeout {SESSION_TIMEOUT_MS} ms); per partition {:?}",
        drain.as_millis(),
        longest.as_millis(),
        idle.iter()
            .map(|(p, d)| format!("{p}: {} ms", d.as_millis()))
            .collect::<Vec<_>>()
    );
    eprintln!("{test}: {notes}; {r:?}");
    report(&Row::of(test, 1, &r, overflows, notes));
    r.assert_ok(test);
    r.assert_no_finished_replays(test);
}

/// For each partition, the longest stretch within `[from, to)` without a delivery to the sink.
fn idle_per_partition(
    hits: &[crate::support::sink::Hit],
    from: Instant,
    to: Instant,
) -> BTreeMap<i32, Duration> {
    (0..PARTITIONS)
        .map(|p| {
            let own: Vec<_> = hits.iter().filter(|h| h.partition == p).cloned().collect();
            (p, largest_gap(&own, from, to))
        })
        .collect()
}

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool, s: &Sidecar) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "not within {limit:?}: {what}\n{}",
            s.tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
