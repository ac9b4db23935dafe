//! Ordering and parallelism: which record may start when, and per-partition buffer budgets.
//!
//! Owns the lanes. A lane is a FIFO of records that must be delivered one after another:
//! one lane per partition (`partition`), per partition and key (`key`; a null key shares the
//! partition's null-key lane), or one per record (`unordered`). Each non-empty lane has exactly
//! one task working through it, so order within a lane holds by construction, while different
//! lanes run in parallel (bounded elsewhere by the `maxInFlight` semaphore) — parallelism is not
//! capped by the partition count. It never talks to Kafka or HTTP: it runs the `Process` it is
//! given. Every [`Job`] holds its partition's buffer budget until it is dropped, so "pending"
//! counts exactly the records dispatched and not yet done or discarded.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
    },
};

use bytes::Bytes;
use kcp_crds::v1alpha1::Ordering;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::{
    offsets::Epoch,
    record::{Record, Tp},
};

/// How many records (and bytes) a partition may hold before it is paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub max_records: usize,
    pub max_bytes: usize,
}

impl Budget {
    /// Enough buffered records for `max_in_flight` parallel requests on one partition, twice over.
    pub fn for_max_in_flight(max_in_flight: u32) -> Self {
        Self {
            max_records: (max_in_flight as usize).saturating_mul(2).max(64),
            max_bytes: 4 * 1024 * 1024,
        }
    }

    /// Pause fetching at this point.
    pub fn is_full(&self, records: usize, bytes: usize) -> bool {
        records >= self.max_records || bytes >= self.max_bytes
    }

    /// Resume fetching at this point (half empty: avoids pausing and resuming on every record).
    pub fn has_room(&self, records: usize, bytes: usize) -> bool {
        records <= self.max_records / 2 && bytes <= self.max_bytes / 2
    }
}

/// One assigned partition: its epoch, stop signals and buffer use.
#[derive(Debug)]
pub struct PartitionState {
    pub tp: Tp,
    pub epoch: Epoch,
    /// Soft stop (revoke, shutdown): start no new attempt, cut waits short.
    pub stop: CancellationToken,
    /// Hard stop (drain timeout, kill): drop in-flight requests too.
    pub abort: CancellationToken,
    /// Whether fetching is paused (only the poll thread changes it).
    pub paused: AtomicBool,
    pending: AtomicUsize,
    pending_bytes: AtomicUsize,
}

impl PartitionState {
    pub fn new(tp: Tp, epoch: Epoch, stop: CancellationToken, abort: CancellationToken) -> Self {
        Self {
            tp,
            epoch,
            stop,
            abort,
            paused: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            pending_bytes: AtomicUsize::new(0),
        }
    }

    /// Records and bytes dispatched and not yet done or discarded.
    pub fn pending(&self) -> (usize, usize) {
        (self.pending.load(Relaxed), self.pending_bytes.load(Relaxed))
    }
}

/// A record on its way, holding its partition's budget until dropped.
#[derive(Debug)]
pub struct Job {
    pub record: Record,
    pub partition: Arc<PartitionState>,
    size: usize,
}

impl Job {
    pub fn new(record: Record, partition: Arc<PartitionState>) -> Self {
        let size = record.size();
        partition.pending.fetch_add(1, Relaxed);
        partition.pending_bytes.fetch_add(size, Relaxed);
        Self {
            record,
            partition,
            size,
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.partition.pending.fetch_sub(1, Relaxed);
        self.partition.pending_bytes.fetch_sub(self.size, Relaxed);
    }
}

/// Drives one record to its end (delivered, skipped, dead-lettered or abandoned).
pub type Process = Arc<dyn Fn(Job) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum LaneKey {
    Partition(Tp),
    Key(Tp, Option<Bytes>),
    Record(Tp, i64),
}

impl LaneKey {
    fn tp(&self) -> &Tp {
        match self {
            Self::Partition(tp) | Self::Key(tp, _) | Self::Record(tp, _) => tp,
        }
    }
}

/// The lanes; cheap to call from the poll thread (a short mutex, no await).
pub struct Dispatcher {
    ordering: Ordering,
    process: Process,
    runtime: Handle,
    /// A lane is present while its task runs; the deque holds the records waiting behind it.
    lanes: Mutex<HashMap<LaneKey, VecDeque<Job>>>,
}

impl Dispatcher {
    pub fn new(ordering: Ordering, process: Process, runtime: Handle) -> Arc<Self> {
        Arc::new(Self {
            ordering,
            process,
            runtime,
            lanes: Mutex::new(HashMap::new()),
        })
    }

    fn lane_of(&self, record: &Record) -> LaneKey {
        let tp = record.tp.clone();
        match self.ordering {
            Ordering::Partition => LaneKey::Partition(tp),
            Ordering::Key => LaneKey::Key(tp, record.key.clone()),
            Ordering::Unordered => LaneKey::Record(tp, record.offset),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LaneKey, VecDeque<Job>>> {
        self.lanes
            .lock()
            .expect("invariant: lanes lock never poisoned")
    }

    /// Queues a record behind its lane, starting the lane's task if it is idle.
    pub fn submit(self: &Arc<Self>, job: Job) {
        let key = self.lane_of(&job.record);
        let mut lanes = self.lock();
        if let Some(queue) = lanes.get_mut(&key) {
            queue.push_back(job);
            return;
        }
        lanes.insert(key.clone(), VecDeque::new());
        drop(lanes);
        let this = Arc::clone(self);
        self.runtime
            .spawn(async move { this.run_lane(key, job).await });
    }

    async fn run_lane(self: Arc<Self>, key: LaneKey, first: Job) {
        let mut job = first;
        loop {
            (self.process)(job).await;
            let mut lanes = self.lock();
            match lanes.get_mut(&key).and_then(VecDeque::pop_front) {
                Some(next) => job = next,
                None => {
                    lanes.remove(&key);
                    return;
                }
            }
        }
    }

    /// Discards the records of `tps` that have not started (they stay uncommitted and are
    /// consumed again by whoever owns the partition next). Returns how many were discarded.
    pub fn discard_waiting(&self, tps: &[Tp]) -> usize {
        let mut discarded = Vec::new();
        for (key, queue) in self.lock().iter_mut() {
            if tps.contains(key.tp()) {
                discarded.extend(queue.drain(..));
            }
        }
        // Dropped outside the lock: each drop releases its partition budget.
        discarded.len()
    }

    /// Lanes with a running task.
    pub fn active_lanes(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests;
