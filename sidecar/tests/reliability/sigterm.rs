//! SIGTERM during heavy in-flight load: the sidecar exits 0 after draining and committing.
//!
//! In both partition and key order, after a restart nothing the app had accepted before the
//! SIGTERM is delivered again: shutdown finishes the records already dispatched before it
//! commits (the commit is the lowest unfinished offset, so a record discarded below finished
//! ones would make them come back). The weaker key-order test also checks that nothing under the
//! committed offset comes back, and reports replays (docs/reliability.md). Every extra acceptance
//! of a record answered before a SIGTERM is a finished replay (the sidecar finished what it
//! acknowledged before it exited); there must be none.

use std::{collections::HashSet, time::Duration};

use crate::support::{
    Overflows, Row,
    broker::Broker,
    check::{Order, check},
    config, keyed, pick, report, rng, settle,
    sidecar::Sidecar,
    sink::{Action, Sink, behaviour},
    unique,
};

async fn sigterm_under_load(ordering: &str, order: Order, strict: bool) {
    let test = format!("SIGTERM under load ({ordering} order)");
    let test = test.as_str();
    let (seed, mut rng) = rng(test);
    let broker = Broker::start(1);
    let (topic, group) = (unique("term"), unique("g"));
    broker.create_topic(&topic, 4).await;
    // Slow app: every request is in flight for 200 ms.
    let sink = Sink::start(behaviour(|_| Action::Accept(Duration::from_millis(200)))).await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let mut cfg = config(&broker.bootstrap, &topic, &group, &sink.url(), ordering);
    cfg["delivery"]["maxInFlight"] = serde_json::json!(16);
    let episodes = pick(2, 10);
    let mut seqs = Vec::new();
    let mut replayed_total = 0;
    let mut overflows = Overflows::default();
    for e in 0..episodes {
        // One request per partition at a time in partition order: fewer records keep it short.
        let n = if order == Order::Partition { 160 } else { 600 };
        let msgs = keyed(&mut rng, 64, n, &mut seqs, |_| false);
        producer.send(&topic, &msgs).await;
        sink.set_epoch(e as u32);
        let mut sidecar = Sidecar::start(&cfg, None);
        let start = sink.len();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while sink.len() < start + 40 {
            assert!(std::time::Instant::now() < deadline, "{}", sidecar.tail());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        overflows.read(&sidecar).await;
        sidecar.stop().await;
        let committed = broker.committed(&group, &topic, 4).await;
        let accepted: HashSet<(i32, i64)> = sink
            .hits()
            .iter()
            .filter(|h| h.accepted)
            .map(|h| (h.partition, h.offset))
            .collect();
        let boundary = sink.len();
        sink.set_epoch(e as u32 + 1);
        let mut again = Sidecar::start(&cfg, None);
        // Wait for 40 deliveries, or for as many records as are still outstanding when fewer:
        // a shutdown that finished everything leaves the restart little or nothing to do.
        let produced_so_far = ledger.lock().expect("ledger lock").len();
        let want = boundary + produced_so_far.saturating_sub(accepted.len()).min(40);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while sink.len() < want && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        overflows.read(&again).await;
        again.stop().await;
        let replayed: Vec<_> = sink
            .hits()
            .into_iter()
            .skip(boundary)
            .filter(|h| accepted.contains(&(h.partition, h.offset)))
            .map(|h| (h.partition, h.offset))
            .collect();
        replayed_total += replayed.len();
        eprintln!(
            "{test}: episode {e}: {} accepted before SIGTERM; replayed after restart: {replayed:?}",
            accepted.len()
        );
        for &(p, o) in &replayed {
            assert!(
                committed[p as usize].is_some_and(|c| o >= c),
                "episode {e}: {p}/{o} is under the offset committed at shutdown ({committed:?}) but came back"
            );
        }
        assert!(
            !strict || replayed.is_empty(),
            "episode {e}: records accepted before SIGTERM delivered again: {replayed:?}"
        );
    }
    sink.set_epoch(episodes as u32 + 1);
    let mut last = Sidecar::start(&cfg, None);
    settle(&broker, &sink, &ledger, None, Duration::from_secs(90)).await;
    overflows.read(&last).await;
    last.stop().await;
    let produced = ledger.lock().expect("ledger lock").clone();
    let r = check(&produced, &sink.hits(), &[], order);
    report(&Row {
        class: test,
        episodes,
        records: r.produced,
        lost: r.lost.len(),
        dup_max: r.max_duplicates_per_record,
        dup_mean: replayed_total as f64 / episodes as f64,
        finished_replayed: r.finished_replayed,
        inflight_max: r.inflight_max(),
        overflows,
        notes: format!(
            "seed {seed}; replayed after restart: {replayed_total}; in-flight duplicates: {}",
            r.inflight_duplicates
        ),
    });
    r.assert_ok(test);
    r.assert_no_finished_replays(test);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_partition_order_replays_nothing_finished() {
    sigterm_under_load("partition", Order::Partition, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_key_order_replays_only_above_the_committed_offset() {
    sigterm_under_load("key", Order::Key, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_key_order_replays_nothing_finished() {
    sigterm_under_load("key", Order::Key, true).await;
}
