//! `kill -9` at random moments during a stream of keyed records, restart, repeat.
//!
//! Asserts: every record accepted by the app or dead-lettered (poison records only); after each
//! restart nothing below the offset committed at the kill is delivered again (so duplicates are
//! only records in flight or finished-but-uncommitted at the kill); per-key (key mode) or
//! per-partition (partition mode) order of first deliveries; at most `maxInFlight` records
//! open at a kill (no response written) accepted again; with `maxUncommitted` = `maxInFlight`,
//! at most that many records the app had accepted delivered again per kill (a record accepted
//! again is charged to the kill of the incarnation that accepted it last). Also with batch
//! delivery (`*_batched`). With `KCP_RELIABILITY_STRICT_REPLAYS=1`, no finished record answered
//! before the sidecar's last possible commit is delivered again (see [`unsaved_window`]).
//! Reports duplicates per episode, split into finished replays and in-flight duplicates.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use rand::Rng;

use crate::support::{
    Overflows, Row,
    broker::Broker,
    check::{KILL_SLACK, Order, Replay, check_after_kills},
    config, keyed, pick, report, rng, settle,
    sidecar::Sidecar,
    sink::{Action, Sink, behaviour},
    strict_replays, unique,
};

const PARTITIONS: i32 = 3;

/// `batch`: `delivery.batch.maxRecords` (batches of up to that many records, `maxWait` 5ms).
async fn kill_episodes(ordering: &str, order: Order, batch: Option<u32>) {
    let test = match batch {
        None => format!("kill -9 ({ordering} order)"),
        Some(n) => format!("kill -9 ({ordering} order, batches of up to {n})"),
    };
    let (seed, mut rng) = rng(&test);
    let broker = Broker::start(1);
    let (topic, group) = (unique("kill"), unique("g"));
    let dlq = format!("{topic}-dlq");
    broker.create_topic(&topic, PARTITIONS).await;
    broker.create_topic(&dlq, 1).await;
    // Accepts after 0-19 ms; a few first attempts get 503; poison records get 422.
    let sink = Sink::start(behaviour(|h| {
        if h.poison {
            Action::Status {
                status: 422,
                retry_after: None,
            }
        } else if h.attempt == 1 && h.digest % 16 == 0 {
            Action::Status {
                status: 503,
                retry_after: None,
            }
        } else {
            Action::Accept(Duration::from_millis(h.digest % 20))
        }
    }))
    .await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let episodes = pick(2, 20);
    let per_episode = pick(200, 400);
    let mut cfg = config(&broker.bootstrap, &topic, &group, &sink.url(), ordering);
    // "Only what was in flight repeats": the window of uncommitted records is `maxInFlight`
    // (`commit/window.rs`). `KCP_KILL_MAX_UNCOMMITTED` sets another, to see the bound fail.
    let max_uncommitted = std::env::var("KCP_KILL_MAX_UNCOMMITTED")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| {
            cfg["delivery"]["maxInFlight"]
                .as_u64()
                .expect("maxInFlight")
        });
    cfg["delivery"]["maxUncommitted"] = max_uncommitted.into();
    if let Some(n) = batch {
        cfg["delivery"]["batch"] =
            serde_json::json!({"maxRecords": n, "maxWait": "5ms", "maxBytes": 1_048_576});
    }
    let bound = cfg["delivery"]["maxInFlight"]
        .as_u64()
        .expect("maxInFlight") as usize;
    let mut seqs = Vec::new();
    let mut sidecar = Sidecar::start(&cfg, Some("kill-pod-0"));
    let mut kills = Vec::new();
    let mut restarted = std::time::Instant::now();
    let mut restart_to_delivery = Vec::new();
    let mut overflows = Overflows::default();
    for e in 0..episodes {
        sink.set_epoch(e as u32);
        let msgs = keyed(&mut rng, 24, per_episode, &mut seqs, |s| s % 41 == 7);
        let (p, t) = (producer.clone(), topic.clone());
        let produce = tokio::spawn(async move {
            for chunk in msgs.chunks(10) {
                p.send(&t, chunk).await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !sink.hits().iter().any(|h| h.epoch == e as u32) {
            assert!(
                std::time::Instant::now() < deadline,
                "episode {e}: nothing delivered\n{}",
                sidecar.tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        restart_to_delivery.push(restarted.elapsed().as_millis());
        let after = Duration::from_millis(rng.random_range(0..2000));
        tokio::time::sleep(after).await;
        assert!(
            sidecar.is_running(),
            "episode {e}: sidecar died\n{}",
            sidecar.tail()
        );
        sidecar.assert_no_panic();
        overflows.read(&sidecar).await;
        sink.note_kill();
        sidecar.kill9();
        produce.await.expect("producer task");
        let committed = broker.committed(&group, &topic, PARTITIONS).await;
        let before: HashSet<(i32, i64)> = sink
            .hits()
            .iter()
            .filter(|h| h.accepted)
            .map(|h| (h.partition, h.offset))
            .collect();
        eprintln!(
            "{test}: episode {e}: killed {after:?} after the first delivery; {} accepted so far; committed {committed:?}",
            before.len()
        );
        kills.push(committed);
        sink.set_epoch(e as u32 + 1);
        restarted = std::time::Instant::now();
        sidecar = Sidecar::start(&cfg, Some("kill-pod-0"));
    }
    let dead = settle(
        &broker,
        &sink,
        &ledger,
        Some((&dlq, 1)),
        Duration::from_secs(90),
    )
    .await;
    overflows.read(&sidecar).await;
    sidecar.stop().await;
    let hits = sink.hits();
    if batch.is_some() {
        let batched = hits
            .iter()
            .filter(|h| {
                h.headers
                    .get("kcp-batch")
                    .and_then(|v| v.to_str().ok()?.parse::<u32>().ok())
                    .is_some_and(|n| n > 1)
            })
            .count();
        assert!(
            batched > 0,
            "{test}: no request carried more than one record"
        );
        eprintln!(
            "{test}: {batched} of {} records arrived in batches of more than one",
            hits.len()
        );
    }
    // After each restart nothing under the offsets committed at the kill comes back, so the
    // duplicates are records in flight or finished-but-uncommitted at the kill.
    for (e, committed) in kills.iter().enumerate() {
        for h in hits.iter().filter(|h| h.epoch == e as u32 + 1) {
            if let Some(c) = committed[h.partition as usize] {
                assert!(
                    h.offset >= c,
                    "episode {e}: {}/{} was committed ({c}) before the kill but delivered again",
                    h.partition,
                    h.offset
                );
            }
        }
    }
    // A record the app accepts again is charged to the kill of the incarnation that accepted it
    // last before: that sidecar died without a commit carrying it. (Charging everything
    // incarnation e+1 accepts again to kill e would also charge it with records left from kill
    // e-1 that incarnation e was killed before reaching: two kills' worth.)
    let mut last_accepted: HashMap<(i32, i64), u32> = HashMap::new();
    let mut charged: Vec<HashSet<(i32, i64)>> = vec![HashSet::new(); episodes];
    for h in hits.iter().filter(|h| h.accepted) {
        let id = (h.partition, h.offset);
        if let Some(&prev) = last_accepted.get(&id)
            && prev < h.epoch
            && let Some(kill) = charged.get_mut(prev as usize)
        {
            kill.insert(id);
        }
        last_accepted.insert(id, h.epoch);
    }
    let dup_per_episode: Vec<usize> = charged.iter().map(HashSet::len).collect();
    let produced = ledger.lock().expect("ledger lock").clone();
    let r = check_after_kills(&produced, &hits, &dead, order, &sink.kills());
    eprintln!("{test}: seed {seed}: {r:?}");
    let max = dup_per_episode.iter().copied().max().unwrap_or(0);
    let mean = dup_per_episode.iter().sum::<usize>() as f64 / episodes as f64;
    let per_kill = |m: &std::collections::BTreeMap<u32, usize>| -> Vec<usize> {
        (0..episodes as u32)
            .map(|e| m.get(&e).copied().unwrap_or(0))
            .collect()
    };
    let inflight = per_kill(&r.inflight_by_epoch);
    let unanswered = per_kill(&r.unanswered_by_epoch);
    let finished = per_kill(&r.finished_by_epoch());
    let window = unsaved_window(&cfg);
    let (unsaved, saved): (Vec<&Replay>, Vec<&Replay>) = r
        .finished_replays
        .iter()
        .partition(|p| p.before_kill.is_some_and(|d| d < window));
    let oldest = r
        .finished_replays
        .iter()
        .filter_map(|p| p.before_kill)
        .max()
        .unwrap_or_default();
    let max_in_flight = cfg["delivery"]["maxInFlight"]
        .as_u64()
        .expect("maxInFlight in the config") as usize;
    report(&Row {
        class: &test,
        episodes,
        records: r.produced,
        lost: r.lost.len(),
        dup_max: max,
        dup_mean: mean,
        finished_replayed: r.finished_replayed,
        inflight_max: inflight.iter().copied().max().unwrap_or(0),
        overflows,
        notes: format!(
            "seed {seed}; dead-lettered {} (all poison); redelivered per episode {dup_per_episode:?}; \
             finished replays per episode {finished:?} ({} answered in the last {} ms before the \
             kill, the oldest {} ms before it); in-flight duplicates per episode {inflight:?}, of \
             which unanswered at the kill {unanswered:?} (maxInFlight {max_in_flight}); \
             start-to-first-delivery ms {restart_to_delivery:?}",
            r.dead_lettered,
            unsaved.len(),
            window.as_millis(),
            oldest.as_millis()
        ),
    });
    r.assert_ok(&test);
    assert!(
        r.dead_lettered > 0,
        "poison records reach the dead-letter topic"
    );
    // Requests the sidecar had open at a kill: each holds a `maxInFlight` permit. The in-flight
    // duplicates as a whole are not bounded by it: they also count responses written in the
    // `KILL_SLACK` before the kill, while the freed permits were already sending more.
    for (e, n) in unanswered.iter().enumerate() {
        assert!(
            *n <= max_in_flight,
            "episode {e}: {n} records accepted again that were open at the kill, more than maxInFlight {max_in_flight}"
        );
    }
    // The promise of `delivery.maxUncommitted`: a crash delivers at most that many records
    // again, here `maxInFlight`: only what was in flight (sent, or answered and not yet
    // committed) repeats.
    for (e, n) in dup_per_episode.iter().enumerate() {
        assert!(
            *n <= bound,
            "episode {e}: {n} records the app had accepted were delivered again after the kill, more than maxUncommitted {bound} (per episode: {dup_per_episode:?})"
        );
    }
    if strict_replays() {
        assert!(
            saved.is_empty(),
            "{test}: {} finished records answered {window:?} or more before the kill delivered again: {saved:?}",
            saved.len()
        );
    }
}

/// A record finished this shortly before a `kill -9` may be replayed even when the sidecar
/// carries finished offsets in its commits: it commits every `commitInterval`, so the last commit
/// before the kill may have been made (or still been on its way to the broker) before the record
/// finished. Two intervals (one to the next commit, one for that commit to land) and the slack.
fn unsaved_window(cfg: &serde_json::Value) -> Duration {
    let interval = cfg["delivery"]["commitInterval"]
        .as_str()
        .and_then(|s| s.strip_suffix("ms"))
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .expect("commitInterval in milliseconds in the config");
    2 * interval + KILL_SLACK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_key_order() {
    kill_episodes("key", Order::Key, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_partition_order() {
    kill_episodes("partition", Order::Partition, None).await;
}

/// The same with batch delivery: a batch's records are open together, so the window of
/// uncommitted records (here `maxInFlight`, 8) still bounds what a kill repeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_partition_order_batched() {
    kill_episodes("partition", Order::Partition, Some(4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_key_order_batched() {
    kill_episodes("key", Order::Key, Some(4)).await;
}
