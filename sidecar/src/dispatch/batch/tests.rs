use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use bytes::Bytes;
use kcp_crds::v1alpha1::Ordering;
use tokio::{runtime::Handle, sync::mpsc};
use tokio_util::sync::CancellationToken;

use super::super::{Batching, Dispatcher, Job, PartitionState, Work};
use crate::{
    offsets::OffsetTracker,
    record::{Record, Tp},
    stats::Stats,
};

type Seen = mpsc::UnboundedReceiver<Vec<(i32, i64)>>;

fn record(partition: i32, offset: i64, key: &str, value_len: usize) -> Record {
    Record {
        tp: Tp::new("t", partition),
        offset,
        timestamp: None,
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Bytes::from(vec![b'v'; value_len]),
        headers: vec![],
        unreadable_headers: 0,
    }
}

/// A dispatcher whose batches are reported on the returned channel; `in_lane` counts batches
/// running at once, its maximum kept in `max`.
struct Setup {
    dispatcher: Arc<Dispatcher>,
    seen: Seen,
    states: Vec<Arc<PartitionState>>,
    max_at_once: Arc<AtomicUsize>,
    recovered: Arc<Mutex<Vec<i64>>>,
}

fn setup(ordering: Ordering, max_records: usize, max_bytes: usize, max_wait: Duration) -> Setup {
    setup_with(ordering, max_records, max_bytes, max_wait, None, 16)
}

fn setup_with(
    ordering: Ordering,
    max_records: usize,
    max_bytes: usize,
    max_wait: Duration,
    hold: Option<Arc<tokio::sync::Barrier>>,
    max_in_flight: usize,
) -> Setup {
    let (tx, seen) = mpsc::unbounded_channel();
    let now = Arc::new(AtomicUsize::new(0));
    let max_at_once = Arc::new(AtomicUsize::new(0));
    let recovered = Arc::new(Mutex::new(Vec::new()));
    let process = {
        let max_at_once = Arc::clone(&max_at_once);
        Arc::new(move |jobs: Vec<Arc<Job>>| {
            let (tx, now, max_at_once, hold) = (
                tx.clone(),
                Arc::clone(&now),
                Arc::clone(&max_at_once),
                hold.clone(),
            );
            Box::pin(async move {
                let n = now.fetch_add(1, SeqCst) + 1;
                max_at_once.fetch_max(n, SeqCst);
                if jobs.iter().any(|j| j.record.offset == 666) {
                    panic!("the batch of 666");
                }
                if let Some(hold) = hold {
                    tokio::time::timeout(Duration::from_secs(60), hold.wait())
                        .await
                        .expect("enough batches run at once");
                }
                tokio::task::yield_now().await;
                now.fetch_sub(1, SeqCst);
                let batch = jobs
                    .iter()
                    .map(|j| (j.record.tp.partition, j.record.offset))
                    .collect();
                tx.send(batch).expect("receiver alive");
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        })
    };
    let recover = {
        let recovered = Arc::clone(&recovered);
        Arc::new(move |job: Arc<Job>, _panic: String| {
            recovered.lock().expect("lock").push(job.record.offset);
            Box::pin(async {}) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        })
    };
    let work = Work {
        process: Arc::new(
            |_job: Arc<Job>| -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
                panic!("with batches every record goes through process_batch")
            },
        ),
        recover,
        batch: Some(Batching {
            max_records,
            max_bytes,
            max_wait,
            max_in_flight,
            process,
        }),
    };
    let dispatcher = Dispatcher::new(
        ordering,
        work,
        Handle::current(),
        Arc::new(Stats::default()),
    );
    let mut tracker = OffsetTracker::new();
    let states = (0..2)
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
    Setup {
        dispatcher,
        seen,
        states,
        max_at_once,
        recovered,
    }
}

impl Setup {
    fn submit(&self, r: Record) {
        let state = Arc::clone(&self.states[r.tp.partition as usize]);
        self.dispatcher.submit(Job::new(r, state));
    }

    /// The offsets of each batch, until `records` records were seen.
    async fn batches(&mut self, records: usize) -> Vec<Vec<i64>> {
        let mut batches = Vec::new();
        let mut n = 0;
        while n < records {
            let batch = tokio::time::timeout(Duration::from_secs(60), self.seen.recv())
                .await
                .expect("batches keep coming")
                .expect("sender alive");
            n += batch.len();
            batches.push(batch.into_iter().map(|(_, o)| o).collect());
        }
        batches
    }
}

#[tokio::test]
async fn a_partition_lane_sends_what_waits_in_order_one_batch_at_a_time() {
    let mut s = setup(Ordering::Partition, 3, 1 << 20, Duration::ZERO);
    for o in 0..10 {
        s.submit(record(0, o, "k", 10));
    }
    assert_eq!(
        s.batches(10).await,
        vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8], vec![9]]
    );
    assert_eq!(
        s.max_at_once.load(SeqCst),
        1,
        "one batch of a lane at a time"
    );
}

#[tokio::test]
async fn max_bytes_ends_a_batch_and_a_larger_record_goes_alone() {
    // A record of 300 value bytes is 396 in the buffer: two fit in 1000.
    let mut s = setup(Ordering::Partition, 100, 1000, Duration::ZERO);
    for o in 0..3 {
        s.submit(record(0, o, "k", 300));
    }
    s.submit(record(0, 3, "k", 5000));
    s.submit(record(0, 4, "k", 300));
    assert_eq!(
        s.batches(5).await,
        vec![vec![0, 1], vec![2], vec![3], vec![4]]
    );
}

#[tokio::test]
async fn a_key_lane_batches_only_its_own_key() {
    let mut s = setup(Ordering::Key, 10, 1 << 20, Duration::ZERO);
    for (o, key) in ["a", "b", "a", "b", "a"].into_iter().enumerate() {
        s.submit(record(0, o as i64, key, 10));
    }
    let mut batches = s.batches(5).await;
    batches.sort();
    assert_eq!(batches, vec![vec![0, 2, 4], vec![1, 3]]);
}

#[tokio::test(start_paused = true)]
async fn max_wait_lets_a_batch_fill_and_a_full_batch_goes_at_once() {
    let mut s = setup(Ordering::Partition, 3, 1 << 20, Duration::from_secs(5));
    let start = tokio::time::Instant::now();
    s.submit(record(0, 0, "k", 10));
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.submit(record(0, 1, "k", 10));
    assert_eq!(s.batches(2).await, vec![vec![0, 1]]);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(5),
        "an unfilled batch goes when its first record waited maxWait (virtual clock)"
    );
    let full = tokio::time::Instant::now();
    for o in 2..5 {
        s.submit(record(0, o, "k", 10));
    }
    assert_eq!(s.batches(3).await, vec![vec![2, 3, 4]]);
    assert_eq!(full.elapsed(), Duration::ZERO, "a full batch does not wait");
}

#[tokio::test]
async fn unordered_batches_of_a_partition_run_in_parallel() {
    let hold = Arc::new(tokio::sync::Barrier::new(3));
    let mut s = setup_with(
        Ordering::Unordered,
        2,
        1 << 20,
        Duration::ZERO,
        Some(hold),
        16,
    );
    for o in 0..6 {
        s.submit(record(0, o, "k", 10));
    }
    let mut batches = s.batches(6).await;
    batches.sort();
    assert_eq!(batches, vec![vec![0, 1], vec![2, 3], vec![4, 5]]);
    assert_eq!(
        s.max_at_once.load(SeqCst),
        3,
        "three batches of one partition at once"
    );
    assert_eq!(s.dispatcher.active_lanes(), 0, "every batch's lane is gone");
}

#[tokio::test]
async fn a_batch_that_panicked_has_each_record_recovered_and_the_lane_goes_on() {
    let mut s = setup(Ordering::Partition, 2, 1 << 20, Duration::ZERO);
    for o in [665, 666, 667] {
        s.submit(record(0, o, "k", 10));
    }
    assert_eq!(s.batches(1).await, vec![vec![667]]);
    assert_eq!(*s.recovered.lock().expect("lock"), vec![665, 666]);
}

/// With every request slot taken, an unordered partition's records wait in its lane and the
/// next batch takes all of them, rather than batches of whatever had arrived at each moment.
#[tokio::test]
async fn unordered_batches_are_formed_when_they_can_be_sent() {
    let hold = Arc::new(tokio::sync::Barrier::new(2));
    let mut s = setup_with(
        Ordering::Unordered,
        10,
        1 << 20,
        Duration::ZERO,
        Some(Arc::clone(&hold)),
        1,
    );
    s.submit(record(0, 0, "k", 10));
    // The first batch is out (waiting at the barrier); these arrive one by one meanwhile.
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    for o in 1..6 {
        s.submit(record(0, o, "k", 10));
        tokio::task::yield_now().await;
    }
    let release = || async {
        tokio::time::timeout(Duration::from_secs(60), hold.wait())
            .await
            .expect("a batch waits at the barrier");
    };
    release().await;
    let first = s.batches(1).await;
    release().await;
    let second = s.batches(5).await;
    assert_eq!(first, vec![vec![0]]);
    assert_eq!(
        second,
        vec![vec![1, 2, 3, 4, 5]],
        "one batch of everything that waited"
    );
}

/// A revoke or a shutdown does not wait for a batch to fill: the stop cuts `maxWait` short
/// (the batch then goes to its processing, which abandons what it has not sent).
#[tokio::test(start_paused = true)]
async fn a_stop_cuts_max_wait_short() {
    let mut s = setup(Ordering::Partition, 10, 1 << 20, Duration::from_secs(5));
    let start = tokio::time::Instant::now();
    s.submit(record(0, 0, "k", 10));
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.states[0].stop.cancel();
    assert_eq!(s.batches(1).await, vec![vec![0]]);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "the stop, not maxWait, ended the wait (virtual clock)"
    );
}
