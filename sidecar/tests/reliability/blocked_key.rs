//! A blocked key under load ten times the buffer: key order, `onExhausted: block`, the app
//! answers 503 to one key until it recovers and 200 to the rest. Ten times the partition
//! buffer (`max(2 × maxInFlight, 64)` records) is produced across many keys and partitions, a
//! quarter of it the blocked key's (more than a partition buffer holds).
//!
//! Asserts: while the key is blocked, every record of the other keys is delivered, only the
//! blocked key's first record is tried (its later ones wait), nothing is dead-lettered or
//! skipped, and the commit stops exactly at the blocked record; once the app accepts the key,
//! everything is delivered in key order and committed to the end; the process stays up and
//! exits cleanly.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

use rand::Rng;
use serde_json::json;

use crate::support::{
    Overflows, Row,
    broker::{Broker, Msg},
    check::{Order, check},
    config, report, rng, settle,
    sidecar::{Sidecar, metric},
    sink::{Action, Sink, behaviour},
    unique,
};

const PARTITIONS: i32 = 4;
const MAX_IN_FLIGHT: usize = 8;
const BLOCKED: &[u8] = b"blocked";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_key_holds_only_itself_at_ten_times_the_buffer() {
    let test = "blocked key at 10x the buffer";
    let (seed, mut rng) = rng(test);
    let broker = Broker::start(1);
    let (topic, group) = (unique("blocked"), unique("g"));
    broker.create_topic(&topic, PARTITIONS).await;
    let healed = Arc::new(AtomicBool::new(false));
    let h = Arc::clone(&healed);
    let sink = Sink::start(behaviour(move |hit| {
        if hit.key.as_deref() == Some(BLOCKED) && !h.load(SeqCst) {
            Action::Status {
                status: 503,
                retry_after: None,
            }
        } else {
            Action::ok()
        }
    }))
    .await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let mut cfg = config(&broker.bootstrap, &topic, &group, &sink.url(), "key");
    cfg["delivery"]["maxInFlight"] = json!(MAX_IN_FLIGHT);
    cfg["delivery"]["onExhausted"] = json!("block");
    cfg["delivery"]["retry"]["maxAttempts"] = json!(2);
    cfg["delivery"]["retry"]["maxBackoff"] = json!("200ms");
    let buffer = (2 * MAX_IN_FLIGHT).max(64);
    let n = 10 * buffer;
    let keys = 48;
    let mut seqs = vec![0u64; keys + 1];
    let msgs: Vec<Msg> = (0..n)
        .map(|i| {
            let k = if i % 4 == 1 {
                keys
            } else {
                rng.random_range(0..keys)
            };
            let key = if k == keys {
                BLOCKED.to_vec()
            } else {
                format!("k{k}").into_bytes()
            };
            let seq = seqs[k];
            seqs[k] += 1;
            Msg {
                value: Some(format!("{}#{seq}", String::from_utf8_lossy(&key)).into_bytes()),
                key: Some(key),
                headers: vec![],
                seq,
                poison: false,
            }
        })
        .collect();
    let mut sidecar = Sidecar::start(&cfg, None);
    let started = Instant::now();
    // Half before the sidecar starts (a backlog), half while it runs.
    let (before, after) = msgs.split_at(n / 2);
    producer.send(&topic, before).await;
    producer.send(&topic, after).await;
    let produced = ledger.lock().expect("ledger lock").clone();
    let blocked: Vec<(i32, i64)> = produced
        .iter()
        .filter(|(_, p)| p.key.as_deref() == Some(BLOCKED))
        .map(|(c, _)| *c)
        .collect();
    let (blocked_partition, first_blocked) = blocked[0];
    assert!(
        blocked.len() > buffer,
        "precondition: the blocked key has more records ({}) than a partition buffer ({buffer})",
        blocked.len()
    );
    let others: BTreeSet<(i32, i64)> = produced
        .iter()
        .filter(|(_, p)| p.key.as_deref() != Some(BLOCKED))
        .map(|(c, _)| *c)
        .collect();
    let ends: Vec<i64> = broker
        .watermarks(&topic, PARTITIONS)
        .await
        .iter()
        .map(|w| w.1)
        .collect();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let accepted: BTreeSet<(i32, i64)> = sink
            .hits()
            .iter()
            .filter(|h| h.accepted)
            .map(|h| (h.partition, h.offset))
            .collect();
        if accepted.is_superset(&others) {
            break;
        }
        assert!(sidecar.is_running(), "{}", sidecar.tail());
        if Instant::now() > deadline {
            let missing: Vec<_> = others.difference(&accepted).collect();
            let status = sidecar.admin_get("/status").await;
            panic!(
                "{} of {} records of other keys not delivered while {BLOCKED:?} is blocked \
                 (first missing {:?}); /status:\n{status}\n{}",
                missing.len(),
                others.len(),
                &missing[..missing.len().min(10)],
                sidecar.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{test}: other keys delivered {} ms after the start",
        started.elapsed().as_millis()
    );
    let tried: BTreeSet<(i32, i64)> = sink
        .hits()
        .iter()
        .filter(|h| h.key.as_deref() == Some(BLOCKED))
        .map(|h| (h.partition, h.offset))
        .collect();
    assert_eq!(
        tried,
        BTreeSet::from([(blocked_partition, first_blocked)]),
        "the blocked key's later records wait behind its first"
    );
    // The commit reaches the blocked record in its partition and the end elsewhere.
    let want: Vec<Option<i64>> = (0..PARTITIONS)
        .map(|p| {
            Some(if p == blocked_partition {
                first_blocked
            } else {
                ends[p as usize]
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let committed = broker.committed(&group, &topic, PARTITIONS).await;
        if committed == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed {committed:?}, want {want:?} while blocked"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{test}: committed up to the blocked record {} ms after the start",
        started.elapsed().as_millis()
    );
    let attempts_while_blocked = sink
        .hits()
        .iter()
        .filter(|h| h.key.as_deref() == Some(BLOCKED))
        .count();
    let metrics = sidecar.admin_get("/metrics").await;
    for outcome in ["dead_lettered", "skipped"] {
        let name = format!("kcp_deliveries_total{{outcome=\"{outcome}\"}}");
        assert_eq!(
            metric(&metrics, &name),
            Some(0.0),
            "nothing {outcome} while blocked:\n{metrics}"
        );
    }
    // Reported, not asserted: how often a buffer filled.
    let pauses = metric(&metrics, "kcp_buffer_pauses_total");
    assert!(sidecar.is_running(), "{}", sidecar.tail());

    healed.store(true, SeqCst);
    eprintln!("{test}: the app accepts the blocked key again");
    settle(&broker, &sink, &ledger, None, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let end: Vec<Option<i64>> = ends.iter().map(|e| Some(*e)).collect();
    loop {
        let committed = broker.committed(&group, &topic, PARTITIONS).await;
        if committed == end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed {committed:?}, want {end:?} once unblocked\n{}",
            sidecar.tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for outcome in ["dead_lettered", "skipped"] {
        assert_eq!(
            sidecar
                .metric(&format!("kcp_deliveries_total{{outcome=\"{outcome}\"}}"))
                .await,
            0.0,
            "nothing {outcome}"
        );
    }
    sidecar.stop().await;
    let hits = sink.hits();
    let r = check(&produced, &hits, &[], Order::Key);
    eprintln!("{test}: seed {seed}: {r:?}");
    report(&Row::of(
        test,
        1,
        &r,
        Overflows::NotRead,
        format!(
            "seed {seed}; {} blocked-key records in partition {blocked_partition} behind \
             offset {first_blocked}; {attempts_while_blocked} attempts at it while blocked; \
             buffer pauses {pauses:?}",
            blocked.len()
        ),
    ));
    r.assert_ok(test);
    assert_eq!(r.delivered, r.produced, "every record delivered");
}
