use std::{
    sync::atomic::{
        AtomicUsize,
        Ordering::{Relaxed, SeqCst},
    },
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::*;
use crate::offsets::OffsetTracker;

fn record(partition: i32, offset: i64, key: Option<&str>) -> Record {
    Record {
        tp: Tp::new("t", partition),
        offset,
        timestamp: None,
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: Bytes::new(),
        headers: vec![],
        unreadable_headers: 0,
    }
}

/// Work whose recovery must never be needed.
fn work(process: Process) -> Work {
    Work {
        process,
        recover: Arc::new(|job: Arc<Job>, panic: String| {
            Box::pin(async move { panic!("unexpected recovery of {}: {panic}", job.record.offset) })
        }),
        batch: None,
    }
}

struct Probe {
    now: AtomicUsize,
    max: AtomicUsize,
    done: mpsc::UnboundedSender<(i32, i64, Option<Bytes>)>,
}

fn probe_process(probe: Arc<Probe>) -> Process {
    Arc::new(move |job: Arc<Job>| {
        let probe = Arc::clone(&probe);
        Box::pin(async move {
            let n = probe.now.fetch_add(1, Relaxed) + 1;
            probe.max.fetch_max(n, Relaxed);
            // Uneven work, so anything not serialised by its lane would finish out of order.
            let ms = 1 + (job.record.offset as u64 * 7) % 5;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            probe.now.fetch_sub(1, Relaxed);
            let r = &job.record;
            probe
                .done
                .send((r.tp.partition, r.offset, r.key.clone()))
                .expect("receiver alive");
        })
    })
}

async fn run(
    ordering: Ordering,
    records: Vec<Record>,
) -> (
    Vec<(i32, i64, Option<Bytes>)>,
    usize,
    Vec<Arc<PartitionState>>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let probe = Arc::new(Probe {
        now: AtomicUsize::new(0),
        max: AtomicUsize::new(0),
        done: tx,
    });
    let d = Dispatcher::new(
        ordering,
        work(probe_process(Arc::clone(&probe))),
        Handle::current(),
        Arc::default(),
    );
    let mut tracker = OffsetTracker::new();
    let states: Vec<Arc<PartitionState>> = (0..2)
        .map(|p| {
            let tp = Tp::new("t", p);
            let epoch = tracker.assign(tp.clone());
            Arc::new(PartitionState::new(
                tp,
                epoch,
                CancellationToken::new(),
                CancellationToken::new(),
            ))
        })
        .collect();
    let n = records.len();
    for r in records {
        let state = Arc::clone(&states[r.tp.partition as usize]);
        d.submit(Job::new(r, state));
    }
    let mut done = Vec::new();
    while done.len() < n {
        done.push(rx.recv().await.expect("all records processed"));
    }
    (done, probe.max.load(Relaxed), states)
}

fn keyed(n: i64) -> Vec<Record> {
    (0..n)
        .map(|o| {
            record(
                (o % 2) as i32,
                o,
                Some(["a", "b", "c", "d"][(o % 4) as usize]),
            )
        })
        .collect()
}

#[tokio::test]
async fn partition_mode_is_one_at_a_time_in_offset_order_per_partition() {
    let (done, max, states) = run(Ordering::Partition, keyed(40)).await;
    for p in 0..2 {
        let offsets: Vec<i64> = done.iter().filter(|d| d.0 == p).map(|d| d.1).collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "partition {p}: {offsets:?}"
        );
    }
    assert!(max <= 2, "at most one per partition, saw {max}");
    for s in states {
        assert_eq!(s.pending(), (0, 0), "every job released its budget");
    }
}

#[tokio::test]
async fn key_mode_orders_per_key_and_runs_keys_in_parallel() {
    let mut records = keyed(40);
    records.push(record(0, 100, None));
    records.push(record(0, 101, None));
    let (done, max, _) = run(Ordering::Key, records).await;
    for key in ["a", "b", "c", "d"] {
        let offsets: Vec<i64> = done
            .iter()
            .filter(|d| d.2.as_deref() == Some(key.as_bytes()))
            .map(|d| d.1)
            .collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "key {key}: {offsets:?}"
        );
    }
    let nulls: Vec<i64> = done.iter().filter(|d| d.2.is_none()).map(|d| d.1).collect();
    assert_eq!(nulls, [100, 101]);
    assert!(
        max > 2,
        "keys must run in parallel beyond the partition count, saw {max}"
    );
}

#[tokio::test]
async fn unordered_mode_runs_one_partition_in_parallel() {
    let records: Vec<Record> = (0..20).map(|o| record(0, o, Some("same"))).collect();
    let (_, max, _) = run(Ordering::Unordered, records).await;
    assert!(max > 1, "saw {max}");
}

#[tokio::test]
async fn discard_waiting_drops_queued_records_and_releases_budget() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = Arc::clone(&gate);
    let process: Process = Arc::new(move |job: Arc<Job>| {
        let g = Arc::clone(&g);
        let tx = tx.clone();
        Box::pin(async move {
            g.notified().await;
            tx.send(job.record.offset).expect("receiver alive");
        })
    });
    let d = Dispatcher::new(
        Ordering::Partition,
        work(process),
        Handle::current(),
        Arc::default(),
    );
    let tp = Tp::new("t", 0);
    let mut tracker = OffsetTracker::new();
    let state = Arc::new(PartitionState::new(
        tp.clone(),
        tracker.assign(tp.clone()),
        CancellationToken::new(),
        CancellationToken::new(),
    ));
    for o in 0..5 {
        d.submit(Job::new(record(0, o, None), Arc::clone(&state)));
    }
    assert_eq!(state.pending().0, 5);
    assert_eq!(d.discard_waiting(std::slice::from_ref(&tp)), 4);
    assert_eq!(
        state.pending().0,
        1,
        "only the started record is still pending"
    );
    gate.notify_one();
    assert_eq!(rx.recv().await, Some(0));
    while d.active_lanes() > 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(state.pending(), (0, 0));
}

#[test]
fn budget_pauses_when_full_and_resumes_at_half() {
    let b = Budget::for_max_in_flight(100);
    assert_eq!(b.max_records, 200);
    assert!(b.is_full(200, 0));
    assert!(b.is_full(1, b.max_bytes));
    assert!(!b.is_full(199, 0));
    assert!(!b.has_room(101, 0));
    assert!(b.has_room(100, 0));
    assert_eq!(Budget::for_max_in_flight(1).max_records, 64);
}

#[test]
fn buffer_stops_when_full_and_asks_for_a_wake_only_once_half_empty() {
    let b = Buffer::new(Budget {
        max_records: 4,
        max_bytes: 1000,
        max_parked_records: 8,
        max_parked_bytes: 2000,
    });
    for _ in 0..3 {
        b.take(10);
    }
    assert!(!b.stop_if_full(), "3 of 4 records: room left");
    assert!(!b.stopped.load(SeqCst));
    b.take(10);
    assert!(b.stop_if_full(), "4 of 4 records: full");
    assert!(!b.restart_if_room(), "still full: stays stopped");
    assert!(!b.release(10, false), "3 left: not yet half empty, no wake");
    assert!(
        b.release(10, false),
        "2 left: half empty, wake the poll thread"
    );
    assert!(b.restart_if_room());
    assert!(!b.stopped.load(SeqCst));
    assert!(!b.release(10, false), "not stopped: no wake");

    let bytes = Buffer::new(Budget {
        max_records: 100,
        max_bytes: 1000,
        max_parked_records: 800,
        max_parked_bytes: 2000,
    });
    bytes.take(1000);
    assert!(bytes.stop_if_full(), "full by bytes");
    assert!(bytes.release(1000, false));
}

#[test]
fn jobs_hold_their_partition_and_the_total_buffer_until_dropped() {
    let total = Arc::new(Buffer::new(Budget::total_for_max_in_flight(1)));
    let mut tracker = OffsetTracker::new();
    let mut state = |p| {
        let tp = Tp::new("t", p);
        let epoch = tracker.assign(tp.clone());
        Arc::new(PartitionState::with_budget(
            tp,
            epoch,
            CancellationToken::new(),
            CancellationToken::new(),
            Budget::for_max_in_flight(1),
            Arc::clone(&total),
            Waker::default(),
        ))
    };
    let (a, b) = (state(0), state(1));
    let record = |p, offset| Record {
        value: Bytes::from_static(b"12345"),
        ..record(p, offset, None)
    };
    let jobs = vec![
        Job::new(record(0, 0), Arc::clone(&a)),
        Job::new(record(0, 1), Arc::clone(&a)),
        Job::new(record(1, 0), Arc::clone(&b)),
    ];
    let size = record(0, 0).size();
    assert_eq!(a.pending(), (2, 2 * size));
    assert_eq!(b.pending(), (1, size));
    assert_eq!(total.pending(), (3, 3 * size));
    drop(jobs);
    assert_eq!(total.pending(), (0, 0));
    assert_eq!(a.pending(), (0, 0));
}

#[test]
fn the_total_budget_does_not_grow_with_partitions() {
    assert_eq!(Budget::total_for_max_in_flight(1).max_records, 256);
    assert_eq!(Budget::total_for_max_in_flight(100).max_records, 400);
    assert_eq!(Budget::total_for_max_in_flight(100).max_bytes, 16 << 20);
}

/// A lane of partition 0 whose process panics on offset 1 and whose recovery does `recover`;
/// returns what was processed (in order), what was recovered, the stats and the partition.
async fn panicking_lane(
    recover: impl Fn(i64) + Send + Sync + 'static,
) -> (
    Vec<i64>,
    Vec<(i64, String)>,
    Arc<Stats>,
    Arc<Dispatcher>,
    Arc<PartitionState>,
) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (recovered_tx, mut recovered_rx) = mpsc::unbounded_channel();
    let process: Process = Arc::new(move |job: Arc<Job>| {
        let tx = done_tx.clone();
        Box::pin(async move {
            assert_ne!(job.record.offset, 1, "injected panic");
            tx.send(job.record.offset).expect("receiver alive");
        })
    });
    let recover = Arc::new(recover);
    let recover: Recover = Arc::new(move |job: Arc<Job>, panic: String| {
        let (tx, recover) = (recovered_tx.clone(), Arc::clone(&recover));
        Box::pin(async move {
            tx.send((job.record.offset, panic)).expect("receiver alive");
            recover(job.record.offset);
        })
    });
    let stats = Arc::new(Stats::default());
    let d = Dispatcher::new(
        Ordering::Partition,
        Work {
            process,
            recover,
            batch: None,
        },
        Handle::current(),
        Arc::clone(&stats),
    );
    let tp = Tp::new("t", 0);
    let mut tracker = OffsetTracker::new();
    let state = Arc::new(PartitionState::new(
        tp.clone(),
        tracker.assign(tp.clone()),
        CancellationToken::new(),
        CancellationToken::new(),
    ));
    for o in 0..4 {
        d.submit(Job::new(record(0, o, None), Arc::clone(&state)));
    }
    let mut done = Vec::new();
    while done.len() < 3 {
        // A bound against a hang, not a timing assertion.
        let next = tokio::time::timeout(Duration::from_secs(30), done_rx.recv()).await;
        done.push(
            next.expect("records behind the panic are processed")
                .expect("sender alive"),
        );
    }
    let recovered = vec![recovered_rx.recv().await.expect("recovery called")];
    assert!(recovered_rx.try_recv().is_err(), "one recovery");
    (done, recovered, stats, d, state)
}

/// A panic while processing one record must not kill its lane: the record is handed to the
/// recovery, the records queued behind it are still processed in order, the panic is counted
/// and the lane is removed once empty.
#[tokio::test]
async fn a_panic_in_a_lane_recovers_the_record_and_the_lane_goes_on() {
    let (done, recovered, stats, d, state) = panicking_lane(|_| {}).await;
    assert_eq!(done, [0, 2, 3]);
    assert_eq!(recovered.len(), 1);
    let (offset, panic) = &recovered[0];
    assert_eq!(*offset, 1);
    assert!(panic.contains("injected panic"), "{panic}");
    assert_eq!(stats.lane_panics.load(SeqCst), 1);
    assert_eq!(stats.broken(), None, "recovered: no restart needed");
    while d.active_lanes() > 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(state.pending(), (0, 0), "every job released its budget");
}

/// When recovering panics too, the record has no outcome: liveness fails so that Kubernetes
/// restarts the pod (the record is uncommitted and consumed again), and the lane still goes on.
#[tokio::test]
async fn a_panic_while_recovering_fails_liveness_and_the_lane_goes_on() {
    let (done, _, stats, _, _) =
        panicking_lane(|offset| panic!("recovery of {offset} failed")).await;
    assert_eq!(done, [0, 2, 3]);
    assert_eq!(stats.lane_panics.load(SeqCst), 2);
    let broken = stats.broken().expect("marked for restart");
    assert!(
        broken.contains("t/0/1") && broken.contains("recovery of 1 failed"),
        "{broken}"
    );
    let admin = crate::admin::Admin::new(Arc::clone(&stats));
    assert!(!admin.live(), "/healthz fails");
}

/// However a lane task ends — here it is dropped with its runtime, before it ran or in the
/// middle of a record — its lane goes with it and every job releases its budget; before, the
/// lane stayed registered for good, and later records queued behind nothing.
#[test]
fn a_lane_task_that_ends_early_takes_its_lane_with_it() {
    for started in [false, true] {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let process: Process = Arc::new(move |_job: Arc<Job>| {
            let tx = tx.clone();
            Box::pin(async move {
                let _ = tx.send(());
                std::future::pending::<()>().await;
            })
        });
        let stats = Arc::new(Stats::default());
        let d = Dispatcher::new(
            Ordering::Partition,
            work(process),
            rt.handle().clone(),
            Arc::clone(&stats),
        );
        let tp = Tp::new("t", 0);
        let mut tracker = OffsetTracker::new();
        let state = Arc::new(PartitionState::new(
            tp.clone(),
            tracker.assign(tp.clone()),
            CancellationToken::new(),
            CancellationToken::new(),
        ));
        for o in 0..3 {
            d.submit(Job::new(record(0, o, None), Arc::clone(&state)));
        }
        if started {
            rt.block_on(rx.recv()).expect("the first record started");
        }
        assert_eq!(d.active_lanes(), 1);
        drop(rt);
        assert_eq!(
            d.active_lanes(),
            0,
            "started {started}: the lane went with its task"
        );
        assert_eq!(
            state.pending(),
            (0, 0),
            "started {started}: every job released its budget"
        );
        assert_eq!(
            stats.broken(),
            None,
            "a task dropped at shutdown is not a failure"
        );
    }
}

#[test]
fn parked_bounds_are_larger_and_one_partition_never_parks_all_of_them() {
    let (p, t) = (
        Budget::for_max_in_flight(4),
        Budget::total_for_max_in_flight(4),
    );
    assert_eq!((p.max_records, p.max_parked_records), (64, 512));
    assert_eq!((t.max_records, t.max_parked_records), (256, 2048));
    assert_eq!(
        (p.max_parked_bytes, t.max_parked_bytes),
        (8 << 20, 16 << 20)
    );
    for max_in_flight in [1, 16, 32, 64, 100, 1000] {
        let (p, t) = (
            Budget::for_max_in_flight(max_in_flight),
            Budget::total_for_max_in_flight(max_in_flight),
        );
        assert!(
            2 * p.max_parked_records <= t.max_parked_records
                && 2 * p.max_parked_bytes <= t.max_parked_bytes,
            "maxInFlight {max_in_flight}: a partition parks at most half of the total"
        );
        assert!(p.max_parked_records > p.max_records && t.max_parked_records > t.max_records);
    }
    assert!(
        Stall::RecordNotFinishing
            .message()
            .contains(&format!("{}s", HOLD_AFTER.as_secs()))
    );
}

#[test]
fn parking_moves_records_out_of_the_working_buffer_and_stops_at_the_bound_until_seven_eighths() {
    let b = Buffer::new(Budget {
        max_records: 4,
        max_bytes: 1000,
        max_parked_records: 16,
        max_parked_bytes: 10_000,
    });
    for _ in 0..4 {
        b.take(10);
    }
    assert!(b.stop_if_full(), "4 working of 4: full");
    for _ in 0..3 {
        b.park(10);
    }
    assert_eq!(
        (b.working(), b.parked(), b.pending()),
        ((1, 10), (3, 30), (4, 40))
    );
    assert!(b.restart_if_room(), "parked records leave the working room");
    for _ in 0..13 {
        b.take(10);
        b.park(10);
    }
    assert_eq!(b.parked().0, 16);
    assert!(b.parked_full() && b.parked_at_bound(), "16 of 16 parked");
    assert!(
        !b.release(10, true),
        "15 left: not yet seven eighths, no wake"
    );
    assert!(b.parked_at_bound(), "stays stopped at 15");
    assert!(
        b.release(10, true),
        "14 = seven eighths: wake the poll thread"
    );
    assert!(!b.parked_at_bound(), "parks again");
    assert!(!b.parked_full());
    assert_eq!(
        b.working(),
        (1, 10),
        "parked releases leave the working count alone"
    );
}

/// Runs records whose key is `stuck` until `release` is notified once per record; the others
/// finish at once and are reported on the channel.
fn gated(
    ordering: Ordering,
    hold_after: Duration,
) -> (
    Arc<Dispatcher>,
    Arc<tokio::sync::Semaphore>,
    mpsc::UnboundedReceiver<i64>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let r = Arc::clone(&release);
    let process: Process = Arc::new(move |job: Arc<Job>| {
        let (r, tx) = (Arc::clone(&r), tx.clone());
        Box::pin(async move {
            if job.record.key.as_deref() == Some(&b"stuck"[..]) {
                r.acquire().await.expect("open").forget();
            }
            tx.send(job.record.offset).expect("receiver alive");
        })
    });
    let d = Dispatcher::with_hold_after(
        ordering,
        work(process),
        Handle::current(),
        Arc::default(),
        hold_after,
    );
    (d, release, rx)
}

fn partition(p: i32, budget: Budget, total: &Arc<Buffer>) -> Arc<PartitionState> {
    let tp = Tp::new("t", p);
    let mut tracker = OffsetTracker::new();
    Arc::new(PartitionState::with_budget(
        tp.clone(),
        tracker.assign(tp),
        CancellationToken::new(),
        CancellationToken::new(),
        budget,
        Arc::clone(total),
        Waker::default(),
    ))
}

/// A key whose record does not finish is held: its records, the running one included, leave
/// the working buffer (which the other keys need) for the parked one; records joining it later
/// are parked at once; other keys stay working; nothing stalls below the bound. Once the record
/// finishes, the lane moves and is no longer held.
#[tokio::test]
async fn a_held_key_parks_its_records_and_only_its_records() {
    let (d, release, mut done) = gated(Ordering::Key, Duration::ZERO);
    let total = Arc::new(Buffer::new(Budget::total_for_max_in_flight(1)));
    let p = partition(0, Budget::for_max_in_flight(1), &total);
    for o in 0..10 {
        d.submit(Job::new(record(0, o, Some("stuck")), Arc::clone(&p)));
    }
    assert_eq!(p.buffer.working().0, 10);
    assert!(d.hold_stuck(Instant::now()));
    assert_eq!(p.held_lanes(), 1);
    assert_eq!((p.buffer.working().0, p.buffer.parked().0), (0, 10));
    assert_eq!(total.parked().0, 10);
    d.submit(Job::new(record(0, 10, Some("stuck")), Arc::clone(&p)));
    d.submit(Job::new(record(0, 11, Some("other")), Arc::clone(&p)));
    assert_eq!((p.buffer.working().0, p.buffer.parked().0), (1, 11));
    assert_eq!(done.recv().await, Some(11), "another key goes on");
    assert_eq!(
        d.stall(&p),
        None,
        "below the parked bound: the partition is read"
    );
    release.add_permits(1);
    assert_eq!(done.recv().await, Some(0));
    while p.held_lanes() > 0 {
        tokio::task::yield_now().await;
    }
    release.add_permits(10);
    for o in 1..=10 {
        assert_eq!(done.recv().await, Some(o), "in order, none skipped");
    }
    while d.active_lanes() > 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!((p.pending(), total.pending()), ((0, 0), (0, 0)));
}

/// In partition order a held lane is its whole partition: it is not read until the record
/// finishes (stall `RecordNotFinishing`), but its records leave the shared working buffer.
#[tokio::test]
async fn a_held_partition_is_not_read_in_partition_order_until_its_record_finishes() {
    let (d, release, mut done) = gated(Ordering::Partition, Duration::ZERO);
    let total = Arc::new(Buffer::new(Budget::total_for_max_in_flight(1)));
    let (p, q) = (
        partition(0, Budget::for_max_in_flight(1), &total),
        partition(1, Budget::for_max_in_flight(1), &total),
    );
    d.submit(Job::new(record(0, 0, Some("stuck")), Arc::clone(&p)));
    for o in 1..64 {
        d.submit(Job::new(record(0, o, None), Arc::clone(&p)));
    }
    assert!(p.buffer.is_full());
    d.hold_stuck(Instant::now());
    assert_eq!(d.stall(&p), Some(Stall::RecordNotFinishing));
    assert_eq!(d.stall(&q), None, "the other partition is read");
    assert_eq!(
        total.working().0,
        0,
        "nothing of it holds the shared working room"
    );
    release.add_permits(1);
    for o in 0..64 {
        assert_eq!(done.recv().await, Some(o));
    }
    assert_eq!(p.held_lanes(), 0);
    assert_eq!(d.stall(&p), None, "read again once its record finished");
}

/// Parking stops at the bounds: a partition that would park more than its share, or more than
/// all partitions together may, is not read, whereas a partition without stuck records is; a
/// lane past the bound is not held (refused) and its partition is not read either.
#[tokio::test]
async fn the_parked_bounds_stop_only_partitions_that_would_park_more() {
    let (d, _release, mut done) = gated(Ordering::Key, Duration::ZERO);
    let small = Budget {
        max_records: 4,
        max_bytes: 1 << 20,
        max_parked_records: 6,
        max_parked_bytes: 1 << 20,
    };
    let total = Arc::new(Buffer::new(Budget {
        max_parked_records: 10,
        ..small
    }));
    let (a, b, c) = (
        partition(0, small, &total),
        partition(1, small, &total),
        partition(2, small, &total),
    );
    for o in 0..4 {
        d.submit(Job::new(record(0, o, Some("stuck")), Arc::clone(&a)));
        d.submit(Job::new(record(1, o, Some("stuck")), Arc::clone(&b)));
    }
    d.submit(Job::new(record(2, 0, Some("free")), Arc::clone(&c)));
    assert_eq!(done.recv().await, Some(0), "the free record finished");
    while d.active_lanes() > 2 {
        tokio::task::yield_now().await;
    }
    d.hold_stuck(Instant::now());
    assert_eq!((a.buffer.parked().0, b.buffer.parked().0), (4, 4));
    for o in 4..6 {
        d.submit(Job::new(record(0, o, Some("stuck")), Arc::clone(&a)));
    }
    assert_eq!(total.parked().0, 10);
    assert_eq!(d.stall(&a), Some(Stall::PartitionParkedBound), "6 of 6");
    assert_eq!(
        d.stall(&b),
        Some(Stall::ReplicaParkedBound),
        "4 of 6, but 10 of 10 in all: a held lane could park more"
    );
    assert_eq!(d.stall(&c), None, "nothing of it can be parked: read on");
    // A lane of `c` gets stuck past the bound: it is not held, and `c` stops too.
    d.submit(Job::new(record(2, 1, Some("stuck")), Arc::clone(&c)));
    // Past the check interval (a synthetic clock: no sleep).
    assert!(d.hold_stuck(Instant::now() + HOLD_CHECK));
    assert_eq!(c.held_lanes(), 0, "refused");
    assert_eq!(c.buffer.parked().0, 0);
    assert_eq!(d.stall(&c), Some(Stall::ReplicaParkedBound));
}

/// The hold clock counts only while the poll thread keeps calling: a gap (the app not ready, a
/// revoke draining) restarts it, so records that waited for the app are not held for it.
#[tokio::test]
async fn a_gap_in_the_poll_thread_restarts_the_hold_clock() {
    let (d, _release, _done) = gated(Ordering::Key, Duration::from_secs(10));
    let total = Arc::new(Buffer::new(Budget::total_for_max_in_flight(1)));
    let p = partition(0, Budget::for_max_in_flight(1), &total);
    d.submit(Job::new(record(0, 0, Some("stuck")), Arc::clone(&p)));
    let t0 = Instant::now();
    let calls_until = |from: Duration, to: Duration| {
        let mut t = from;
        while t <= to {
            d.hold_stuck(t0 + t);
            t += HOLD_CHECK;
        }
    };
    calls_until(Duration::ZERO, Duration::from_secs(5));
    // 6 s without a call, then calls again: 11 s after the record started, 5 s of clock.
    calls_until(Duration::from_secs(11), Duration::from_secs(16));
    assert_eq!(p.held_lanes(), 0, "the gap restarted the clock");
    calls_until(Duration::from_secs(16), Duration::from_secs(22));
    assert_eq!(p.held_lanes(), 1, "held after 10 s of clock");
}
