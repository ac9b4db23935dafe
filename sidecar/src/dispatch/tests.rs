use std::{
    sync::atomic::{
        AtomicUsize,
        Ordering::{Relaxed, SeqCst},
    },
    time::Duration,
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
    });
    for _ in 0..3 {
        b.take(10);
    }
    assert!(!b.stop_if_full(), "3 of 4 records: room left");
    assert!(!b.stopped.load(SeqCst));
    b.take(10);
    assert!(b.stop_if_full(), "4 of 4 records: full");
    assert!(!b.restart_if_room(), "still full: stays stopped");
    assert!(!b.release(10), "3 left: not yet half empty, no wake");
    assert!(b.release(10), "2 left: half empty, wake the poll thread");
    assert!(b.restart_if_room());
    assert!(!b.stopped.load(SeqCst));
    assert!(!b.release(10), "not stopped: no wake");

    let bytes = Buffer::new(Budget {
        max_records: 100,
        max_bytes: 1000,
    });
    bytes.take(1000);
    assert!(bytes.stop_if_full(), "full by bytes");
    assert!(bytes.release(1000));
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
        Work { process, recover },
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
