//! Records that never finish (`onExhausted: block` on a persistent 5xx) hold only their key (key
//! order) or their partition (partition order), at ten times the buffer sizes: the other keys and
//! partitions keep being delivered, the held records are never skipped, and once they pass
//! everything is delivered and committed.
//!
//! Buffer sizes with the test config (`maxInFlight` 4, `dispatch::Budget`): 64 records per
//! partition, 256 for all partitions together; records parked behind records that do not
//! finish: 512 per partition, 2,048 for all partitions together. A lane is held (its records
//! parked) once its record has not finished for `dispatch::HOLD_AFTER` (20 s).

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::SeqCst},
    },
};

use kcp_sidecar::{admin::Admin, metrics};
use serde_json::{Value, json};

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until, wait_until_async,
};

/// Records per partition buffer and for all partitions together with `maxInFlight: 4`, and
/// their parked bounds (the unit tests of `dispatch` assert the same figures).
const PARTITION_BUFFER: usize = 64;
const TOTAL_BUFFER: usize = 256;
const PARTITION_PARKED: usize = 8 * PARTITION_BUFFER;
const TOTAL_PARKED: usize = 8 * TOTAL_BUFFER;

/// What `/status` answers.
fn status(run: &Running) -> Value {
    serde_json::to_value(Admin::new(Arc::clone(&run.stats)).status()).expect("status as JSON")
}

/// The value of one sample of `/metrics` (`name` with its labels, as printed).
fn metric(run: &Running, sample: &str) -> f64 {
    let text = metrics::encode(&metrics::registry(&run.stats));
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {sample} in:\n{text}"))
        .parse()
        .expect("a number")
}

/// An app that answers 500 to every record whose body is `stuck` until healed, and keeps the
/// set of records it accepted (cheap to poll, unlike the full request log).
struct Blocking {
    app: App,
    healed: Arc<AtomicBool>,
    accepted: Arc<Mutex<BTreeSet<(i32, i64)>>>,
    /// Records with body `stuck` the app was asked about, by (partition, offset).
    asked_stuck: Arc<Mutex<BTreeSet<(i32, i64)>>>,
}

impl Blocking {
    async fn start() -> Self {
        let healed = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(Mutex::new(BTreeSet::new()));
        let asked_stuck = Arc::new(Mutex::new(BTreeSet::new()));
        let (h, a, s) = (
            Arc::clone(&healed),
            Arc::clone(&accepted),
            Arc::clone(&asked_stuck),
        );
        let app = App::start(behaviour(move |r| {
            let coordinates = (r.partition(), r.offset());
            if &r.body[..] == b"stuck" {
                s.lock().expect("lock").insert(coordinates);
                if !h.load(SeqCst) {
                    return Reply::status(500);
                }
            }
            a.lock().expect("lock").insert(coordinates);
            Reply::ok()
        }))
        .await;
        Self {
            app,
            healed,
            accepted,
            asked_stuck,
        }
    }

    fn accepted(&self) -> BTreeSet<(i32, i64)> {
        self.accepted.lock().expect("lock").clone()
    }

    fn asked_stuck(&self) -> BTreeSet<(i32, i64)> {
        self.asked_stuck.lock().expect("lock").clone()
    }
}

/// Blocks forever on a refused record; retries slowly enough to keep the app's log small.
fn blocking(c: &mut serde_json::Value, ordering: &str) {
    c["delivery"]["ordering"] = json!(ordering);
    c["delivery"]["onExhausted"] = json!("block");
    c["delivery"]["retry"]["maxAttempts"] = json!(2);
    c["delivery"]["retry"]["maxBackoff"] = json!("200ms");
}

/// Key order: one key of partition 0 is blocked; half of that partition's 640 records (ten
/// times its buffer) are that key's, interleaved with 16 other keys, and partition 1 holds the
/// rest of 2,560 records (ten times the buffer of all partitions). Before, once 33 of the
/// blocked key's records were in the partition's buffer it never became half empty again, so
/// partition 0 stopped for good within its first hundred records or so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_key_holds_only_its_key_at_ten_times_the_buffer() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("stuck-key"), unique("g"));
    kafka.create_topic(&topic, 2).await;
    let app = Blocking::start().await;
    let p0 = 10 * PARTITION_BUFFER;
    let p1 = 10 * TOTAL_BUFFER - p0;
    let mut records: Vec<Rec> = (0..p0)
        .map(|i| {
            if i % 2 == 0 {
                Rec::new(0, Some("stuck"), "stuck")
            } else {
                Rec::new(0, Some(&format!("k{}", i % 16)), i.to_string())
            }
        })
        .collect();
    records.extend((0..p1).map(|i| Rec::new(1, Some(&format!("k{}", i % 16)), i.to_string())));
    kafka.produce(&topic, &records).await;
    let run = Running::start(config(
        &kafka.bootstrap,
        &topic,
        &group,
        &app.app.url(),
        |c| blocking(c, "key"),
    ));
    let others: BTreeSet<(i32, i64)> = (0..p0 as i64)
        .filter(|o| o % 2 == 1)
        .map(|o| (0, o))
        .chain((0..p1 as i64).map(|o| (1, o)))
        .collect();
    wait_until(
        "every record of the other keys is delivered while one key is blocked",
        || app.accepted().is_superset(&others),
    )
    .await;
    assert_eq!(
        app.asked_stuck(),
        BTreeSet::from([(0, 0)]),
        "the blocked key's later records wait behind its first"
    );
    wait_until_async("the commit reaches the blocked record", || async {
        kafka.committed(&group, &topic, 2).await == vec![Some(0), Some(p1 as i64)]
    })
    .await;
    let s = run.snapshot();
    assert_eq!((s.dead_lettered, s.skipped), (0, 0));
    // The blocked key's records read so far are parked: below their bound, nothing stalls.
    wait_until("the blocked key's records are parked", || {
        run.snapshot().parked_records > PARTITION_BUFFER as u64
    })
    .await;
    let s = status(&run);
    assert_eq!(s.get("stalled"), None, "{s:#}");
    assert_eq!(
        s["partitions"][format!("{topic}/0")]["stalled"],
        Value::Null
    );
    assert_eq!(
        metric(
            &run,
            r#"kcp_stalled_partitions{reason="partition_parked_bound"}"#
        ),
        0.0
    );

    app.healed.store(true, SeqCst);
    wait_until_async("everything is delivered and committed", || async {
        kafka.committed(&group, &topic, 2).await == vec![Some(p0 as i64), Some(p1 as i64)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(app.accepted().len(), p0 + p1, "every record delivered");
    assert_eq!((stats.dead_lettered, stats.skipped), (0, 0));
    assert_eq!((stats.parked_records, stats.stalls), (0, 0));
}

/// Partition order: three partitions are blocked on their first record (each with more records
/// behind it than its buffer holds), and a fourth holds ten times the buffer of all partitions.
/// Before, the three blocked partitions kept 192 of the 256 records of the shared buffer, which
/// reopens only when half empty, so the fourth partition stopped too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_partitions_never_stop_the_others_at_ten_times_the_buffer() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("stuck-partition"), unique("g"));
    kafka.create_topic(&topic, 4).await;
    let app = Blocking::start().await;
    let behind = 2 * PARTITION_BUFFER;
    let free = 10 * TOTAL_BUFFER;
    let mut records = Vec::new();
    for p in 0..3 {
        records.push(Rec::new(p, None, "stuck"));
        records.extend((0..behind).map(|i| Rec::new(p, None, i.to_string())));
    }
    records.extend((0..free).map(|i| Rec::new(3, None, i.to_string())));
    kafka.produce(&topic, &records).await;
    let run = Running::start(config(
        &kafka.bootstrap,
        &topic,
        &group,
        &app.app.url(),
        |c| blocking(c, "partition"),
    ));
    let free_partition: BTreeSet<(i32, i64)> = (0..free as i64).map(|o| (3, o)).collect();
    wait_until(
        "every record of the free partition is delivered while three are blocked",
        || app.accepted().is_superset(&free_partition),
    )
    .await;
    assert!(
        app.accepted().iter().all(|(p, _)| *p == 3),
        "nothing behind a blocked record is delivered in partition order"
    );
    // Each blocked partition is reported, and only those.
    let blocked: Vec<String> = (0..3).map(|p| format!("{topic}/{p}")).collect();
    wait_until("the blocked partitions are reported stalled", || {
        status(&run)["stalled"]["partitions"] == json!(blocked)
    })
    .await;
    let s = status(&run);
    assert_eq!(s["stalled"]["reason"], "RecordNotFinishing", "{s:#}");
    assert_eq!(
        s["partitions"][format!("{topic}/3")]["stalled"],
        Value::Null
    );
    assert_eq!(
        metric(
            &run,
            r#"kcp_stalled_partitions{reason="record_not_finishing"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(
            &run,
            &format!(r#"kcp_partition_paused{{topic="{topic}",partition="0"}}"#)
        ),
        1.0
    );
    app.healed.store(true, SeqCst);
    let end = Some(behind as i64 + 1);
    wait_until_async("everything is delivered and committed", || async {
        kafka.committed(&group, &topic, 4).await == vec![end, end, end, Some(free as i64)]
    })
    .await;
    wait_until("no partition is reported stalled", || {
        status(&run).get("stalled").is_none()
    })
    .await;
    assert_eq!(
        metric(
            &run,
            r#"kcp_stalled_partitions{reason="record_not_finishing"}"#
        ),
        0.0
    );
    let stats = run.stop().await;
    assert_eq!(app.accepted().len(), 3 * (behind + 1) + free);
    assert_eq!((stats.dead_lettered, stats.skipped), (0, 0));
}

/// A blocked key with more records than the partition's parked bound: the partition stops being
/// read at the bound (its other keys behind it wait, none is skipped), which `/status`, the
/// metrics and the log say; another partition goes on; once the key passes, every record is
/// delivered and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_reaches_its_parked_bound_is_reported_and_loses_nothing() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("stuck-bound"), unique("g"));
    kafka.create_topic(&topic, 2).await;
    let app = Blocking::start().await;
    let stuck = PARTITION_PARKED + 100;
    let p0 = stuck + 100;
    let p1 = 10 * PARTITION_BUFFER;
    let mut records: Vec<Rec> = (0..stuck)
        .map(|_| Rec::new(0, Some("stuck"), "stuck"))
        .collect();
    records.extend((stuck..p0).map(|i| Rec::new(0, Some(&format!("k{}", i % 16)), i.to_string())));
    records.extend((0..p1).map(|i| Rec::new(1, Some(&format!("k{}", i % 16)), i.to_string())));
    kafka.produce(&topic, &records).await;
    let run = Running::start(config(
        &kafka.bootstrap,
        &topic,
        &group,
        &app.app.url(),
        |c| blocking(c, "key"),
    ));
    wait_until(
        "partition 0 is reported stalled at its parked bound",
        || status(&run)["stalled"]["reason"] == "PartitionParkedBound",
    )
    .await;
    let other: BTreeSet<(i32, i64)> = (0..p1 as i64).map(|o| (1, o)).collect();
    wait_until("the other partition is delivered meanwhile", || {
        app.accepted().is_superset(&other)
    })
    .await;
    let s = status(&run);
    assert_eq!(
        s["stalled"]["partitions"],
        json!([format!("{topic}/0")]),
        "{s:#}"
    );
    assert_eq!(
        s["partitions"][format!("{topic}/0")]["stalled"],
        "PartitionParkedBound"
    );
    assert!(
        s["parkedRecords"].as_u64() >= Some(PARTITION_PARKED as u64),
        "{s:#}"
    );
    assert_eq!(
        metric(
            &run,
            r#"kcp_stalled_partitions{reason="partition_parked_bound"}"#
        ),
        1.0
    );
    assert!(metric(&run, "kcp_partition_stalls_total") >= 1.0);
    assert!(
        app.accepted().iter().all(|(p, _)| *p == 1),
        "partition 0 is not read past the bound: nothing behind the blocked key is delivered"
    );
    assert_eq!(app.asked_stuck(), BTreeSet::from([(0, 0)]));

    app.healed.store(true, SeqCst);
    wait_until_async("everything is delivered and committed", || async {
        kafka.committed(&group, &topic, 2).await == vec![Some(p0 as i64), Some(p1 as i64)]
    })
    .await;
    wait_until("the stall is over", || {
        status(&run).get("stalled").is_none()
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(app.accepted().len(), p0 + p1, "every record delivered");
    assert_eq!((stats.dead_lettered, stats.skipped), (0, 0));
}

/// Five partitions each blocked on a key with more records than a partition may park: together
/// they reach the parked bound of all partitions (2,048), and a sixth partition with no such
/// records is still read and delivered. Nothing is lost once they pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_parked_bound_stops_only_partitions_with_stuck_records() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("stuck-replica"), unique("g"));
    kafka.create_topic(&topic, 6).await;
    let app = Blocking::start().await;
    let stuck = PARTITION_PARKED + 50;
    let free = 10 * PARTITION_BUFFER;
    let mut records = Vec::new();
    for p in 0..5 {
        records.extend((0..stuck).map(|_| Rec::new(p, Some("stuck"), "stuck")));
    }
    records.extend((0..free).map(|i| Rec::new(5, Some(&format!("k{}", i % 16)), i.to_string())));
    kafka.produce(&topic, &records).await;
    let run = Running::start(config(
        &kafka.bootstrap,
        &topic,
        &group,
        &app.app.url(),
        |c| blocking(c, "key"),
    ));
    let blocked: Vec<String> = (0..5).map(|p| format!("{topic}/{p}")).collect();
    wait_until("the five blocked partitions are reported stalled", || {
        let s = status(&run);
        s["stalled"]["reason"] == "ReplicaParkedBound"
            && s["stalled"]["partitions"] == json!(blocked)
    })
    .await;
    assert!(run.snapshot().parked_records >= TOTAL_PARKED as u64);
    assert!(
        metric(
            &run,
            r#"kcp_stalled_partitions{reason="replica_parked_bound"}"#
        ) >= 1.0
    );
    let five = metric(
        &run,
        r#"kcp_stalled_partitions{reason="replica_parked_bound"}"#,
    ) + metric(
        &run,
        r#"kcp_stalled_partitions{reason="partition_parked_bound"}"#,
    );
    assert_eq!(five, 5.0);
    let other: BTreeSet<(i32, i64)> = (0..free as i64).map(|o| (5, o)).collect();
    wait_until("the partition without stuck records is delivered", || {
        app.accepted().is_superset(&other)
    })
    .await;
    assert_eq!(app.asked_stuck(), (0..5).map(|p| (p, 0)).collect());

    app.healed.store(true, SeqCst);
    let end = Some(stuck as i64);
    wait_until_async("everything is delivered and committed", || async {
        kafka.committed(&group, &topic, 6).await == vec![end, end, end, end, end, Some(free as i64)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(
        app.accepted().len(),
        5 * stuck + free,
        "every record delivered"
    );
    assert_eq!((stats.dead_lettered, stats.skipped), (0, 0));
}
