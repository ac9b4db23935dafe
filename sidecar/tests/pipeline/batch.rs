//! Batch delivery end to end (`delivery.batch`, docs/batch.md): one request carries several
//! records of a lane, the reply gives each its own result, and each then takes the normal path:
//! delivered, retried with its own attempts, dead-lettered. Order holds across batches, and the
//! commit passes only records that ended.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use rdkafka::Message;
use serde_json::{Value, json};

use crate::support::{
    Running,
    app::{App, Received, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, header, unique},
    wait_until_async,
};

/// (partition, key) -> record values, in the order the app saw them.
type Lanes = BTreeMap<(i64, String), Vec<String>>;

/// The entries of a batch request.
fn entries(r: &Received) -> Vec<Value> {
    assert_eq!(r.header("content-type"), Some("application/json"));
    let entries: Vec<Value> = serde_json::from_slice(&r.body).expect("a batch is a JSON array");
    assert_eq!(
        r.header("kcp-batch"),
        Some(entries.len().to_string().as_str()),
        "kcp-batch counts the entries"
    );
    entries
}

fn text(e: &Value, field: &str) -> String {
    e[field].as_str().unwrap_or_default().to_owned()
}

/// Key order with a well-behaved ordered app: it processes a batch's entries in order and
/// stops at the first it cannot take (503 for it; the rest are sent again anyway). Every
/// record is processed once per key in offset order, a refused one (422) is dead-lettered with
/// its own reason, a retried one comes back first in its lane's next batch, and everything is
/// committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_order_holds_across_batches_with_per_entry_results() {
    key_order(true).await;
}

/// The same with an app that goes on past a failed entry: the entries after it are sent
/// again, so the last time the app accepts each record of a lane is in offset order (an app
/// applying records as they come ends in the state of the ordered stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_order_holds_for_an_app_that_goes_on_past_a_failed_entry() {
    key_order(false).await;
}

/// `values` keeping only the last occurrence of each.
fn last_occurrences(values: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for v in values.iter().rev() {
        if !kept.contains(v) {
            kept.push(v.clone());
        }
    }
    kept.reverse();
    kept
}

async fn key_order(stops: bool) {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("batch-key"), unique("g"));
    let dlq = format!("{topic}-dlq");
    kafka.create_topic(&topic, 2).await;
    kafka.create_topic(&dlq, 1).await;
    let keys = ["a", "b", "c"];
    let records: Vec<Rec> = (0..90)
        .map(|i| {
            let value = match i {
                7 | 20 | 41 | 62 => format!("flaky-{i}"),
                13 | 50 => format!("bad-{i}"),
                _ => format!("ok-{i}"),
            };
            Rec::new(i % 2, Some(keys[(i / 2) as usize % 3]), value)
        })
        .collect();
    kafka.produce(&topic, &records).await;

    // (partition, key) -> values processed, in the order the app processed them.
    let processed: Arc<Mutex<Lanes>> = Arc::default();
    let app = {
        let processed = Arc::clone(&processed);
        App::start(behaviour(move |r| {
            let mut results = Vec::new();
            let mut stopped = false;
            for e in entries(r) {
                let (value, id) = (text(&e, "value"), text(&e, "id"));
                let lane = (e["partition"].as_i64().expect("partition"), text(&e, "key"));
                if stopped && stops {
                    results.push(json!({"id": id, "status": 503}));
                } else if value.starts_with("flaky") && e["attempt"] == json!(1) {
                    stopped = true;
                    results.push(json!({"id": id, "status": 503}));
                } else if value.starts_with("bad") {
                    results.push(json!({"id": id, "status": 422}));
                } else {
                    processed
                        .lock()
                        .expect("lock")
                        .entry(lane)
                        .or_default()
                        .push(value);
                }
            }
            Reply::ok().with_body(json!({"results": results}).to_string())
        }))
        .await
    };
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["ordering"] = json!("key");
        c["delivery"]["batch"] = json!({"maxRecords": 6, "maxBytes": 1_048_576, "maxWait": "50ms"});
    }));
    wait_until_async("all 90 ended and committed", || async {
        kafka.committed(&group, &topic, 2).await == vec![Some(45), Some(45)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(stats.dead_lettered, 2);
    assert_eq!(stats.delivered, 88);

    // Per lane: every record but the refused ones, once, in offset order.
    let mut expected = Lanes::new();
    for r in &records {
        let value = String::from_utf8(r.value.clone()).expect("utf-8");
        if value.starts_with("bad") {
            continue;
        }
        let key = String::from_utf8(r.key.clone().expect("keyed")).expect("utf-8");
        let lane = (i64::from(r.partition), key);
        expected.entry(lane).or_default().push(value);
    }
    let processed = processed.lock().expect("lock").clone();
    if stops {
        assert_eq!(processed, expected, "each record once, in order");
    }
    let last: Lanes = processed
        .iter()
        .map(|(lane, values)| (lane.clone(), last_occurrences(values)))
        .collect();
    assert_eq!(
        last, expected,
        "the last acceptance of each record is in order"
    );

    let received = app.received();
    let sizes: Vec<usize> = received.iter().map(|r| entries(r).len()).collect();
    assert!(
        sizes.iter().any(|n| *n > 1),
        "records were batched (batch sizes {sizes:?})"
    );
    assert!(sizes.iter().all(|n| *n <= 6), "maxRecords holds: {sizes:?}");
    for r in &received {
        let batch = entries(r);
        let lanes: BTreeSet<(i64, String)> = batch
            .iter()
            .map(|e| (e["partition"].as_i64().expect("partition"), text(e, "key")))
            .collect();
        assert_eq!(lanes.len(), 1, "a batch holds one lane: {lanes:?}");
        let offsets: Vec<i64> = batch
            .iter()
            .map(|e| e["offset"].as_i64().expect("offset"))
            .collect();
        assert!(
            offsets.is_sorted(),
            "a batch is in offset order: {offsets:?}"
        );
    }
    // A retried entry leads its lane's next request, with its own attempt number.
    for i in [7, 20, 41, 62] {
        let value = format!("flaky-{i}");
        let second = received.iter().find(|r| {
            entries(r)
                .first()
                .is_some_and(|e| text(e, "value") == value && e["attempt"] == json!(2))
        });
        assert!(
            second.is_some(),
            "{value} was sent again first in its lane's next batch"
        );
    }

    let dead = kafka.read(&dlq, 1, 2).await;
    let mut reasons: Vec<(String, Option<String>, Option<String>)> = dead
        .iter()
        .map(|m| {
            (
                String::from_utf8(m.payload().expect("value").to_vec()).expect("utf-8"),
                header(m, "kcp-dlq-reason"),
                header(m, "kcp-dlq-attempts"),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            ("bad-13".into(), Some("status 422".into()), Some("1".into())),
            ("bad-50".into(), Some("status 422".into()), Some("1".into())),
        ]
    );
}

/// Unordered: each entry's result stands on its own. An entry that keeps failing is retried
/// with its own attempts and dead-lettered after maxAttempts; one that fails twice is delivered
/// on its third; the others are delivered once and never sent again; a reply the sidecar cannot
/// read counts an attempt for every entry it answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_entries_are_retried_and_dead_lettered_on_their_own() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("batch-any"), unique("g"));
    let dlq = format!("{topic}-dlq");
    kafka.create_topic(&topic, 1).await;
    kafka.create_topic(&dlq, 1).await;
    let records: Vec<Rec> = (0..40)
        .map(|i| {
            let value = match i {
                5 => "always-503".to_owned(),
                17 => "twice-503".to_owned(),
                _ => format!("ok-{i}"),
            };
            Rec::new(0, Some("k"), value)
        })
        .collect();
    kafka.produce(&topic, &records).await;
    let first = Arc::new(Mutex::new(true));
    let app = {
        let first = Arc::clone(&first);
        App::start(behaviour(move |r| {
            if std::mem::take(&mut *first.lock().expect("lock")) {
                return Reply::ok().with_body("accepted, thanks");
            }
            let results: Vec<Value> = entries(r)
                .iter()
                .filter_map(|e| {
                    let value = text(e, "value");
                    let fails = value == "always-503"
                        || (value == "twice-503" && e["attempt"].as_u64() < Some(3));
                    fails.then(|| json!({"id": text(e, "id"), "status": 503}))
                })
                .collect();
            Reply::ok().with_body(json!({"results": results}).to_string())
        }))
        .await
    };
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["ordering"] = json!("unordered");
        c["delivery"]["retry"]["maxAttempts"] = json!(4);
        c["delivery"]["batch"] = json!({"maxRecords": 8, "maxBytes": 1_048_576});
    }));
    wait_until_async("all 40 ended and committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(40)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(stats.dead_lettered, 1);
    assert_eq!(stats.delivered, 39);

    let received = app.received();
    let unreadable: BTreeSet<String> = entries(&received[0])
        .iter()
        .map(|e| text(e, "value"))
        .collect();
    let mut attempts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in &received {
        for e in entries(r) {
            attempts
                .entry(text(&e, "value"))
                .or_default()
                .push(e["attempt"].as_u64().expect("attempt"));
        }
    }
    for (value, seen) in &attempts {
        let after_unreadable = u64::from(unreadable.contains(value));
        let expected: Vec<u64> = match value.as_str() {
            "always-503" => vec![1, 2, 3, 4],
            "twice-503" => vec![1, 2, 3],
            _ => (1..=1 + after_unreadable).collect(),
        };
        assert_eq!(seen, &expected, "{value}'s attempts, each its own");
    }
    assert_eq!(attempts.len(), 40, "every record was sent");

    let dead = kafka.read(&dlq, 1, 1).await;
    assert_eq!(dead[0].payload(), Some(&b"always-503"[..]));
    let reason = header(&dead[0], "kcp-dlq-reason").expect("a reason");
    assert!(reason.starts_with("retries exhausted"), "{reason}");
    assert_eq!(header(&dead[0], "kcp-dlq-attempts").as_deref(), Some("4"));
}

/// The outage detector hears of a batch once: two batches answered 503 whole are two failed
/// requests, not the twenty records they carried (the detector needs 3), and entries failed
/// inside a 2xx reply are their own failures, never an outage. Everything is then delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_one_failure_for_the_outage_detector() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("batch-outage"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    let records: Vec<Rec> = (0..30)
        .map(|i| Rec::new(0, Some("k"), format!("r-{i}")))
        .collect();
    kafka.produce(&topic, &records).await;
    let requests = Arc::new(Mutex::new(0_u32));
    let app = {
        let requests = Arc::clone(&requests);
        App::start(behaviour(move |r| {
            let n = {
                let mut n = requests.lock().expect("lock");
                *n += 1;
                *n
            };
            if n <= 2 {
                return Reply::status(503);
            }
            let results: Vec<Value> = entries(r)
                .iter()
                .filter(|e| e["attempt"] == json!(1))
                .map(|e| json!({"id": text(e, "id"), "status": 503}))
                .collect();
            Reply::ok().with_body(json!({"results": results}).to_string())
        }))
        .await
    };
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["ordering"] = json!("unordered");
        c["delivery"]["retry"]["maxAttempts"] = json!(5);
        c["delivery"]["outage"] = json!({"records": 3, "window": "30s", "maxProbeInterval": "1s"});
        c["delivery"]["batch"] =
            json!({"maxRecords": 10, "maxBytes": 1_048_576, "maxWait": "50ms"});
    }));
    wait_until_async("all 30 delivered and committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(30)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(stats.delivered, 30);
    assert_eq!(stats.dead_lettered, 0);
    let received = app.received();
    assert!(
        received[..2].iter().all(|r| entries(r).len() > 3),
        "the two refused requests carried more records than the detector's 3: {:?}",
        received[..2]
            .iter()
            .map(|r| entries(r).len())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        stats.endpoint_outages, 0,
        "no outage: two failed requests, then failures inside 2xx replies"
    );
}
