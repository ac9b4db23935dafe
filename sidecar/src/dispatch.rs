//! Ordering and parallelism: which record may start when, and per-partition buffer budgets.
//!
//! Owns the lanes. A lane is a FIFO of records that must be delivered one after another:
//! one lane per partition (`partition`), per partition and key (`key`; a null key shares the
//! partition's null-key lane), or one per record (`unordered`). Each non-empty lane has exactly
//! one task working through it, so order within a lane holds by construction, while different
//! lanes run in parallel (bounded elsewhere by the `maxInFlight` semaphore) — parallelism is not
//! capped by the partition count. It never talks to Kafka or HTTP: it runs the [`Work`] it is
//! given. Every [`Job`] holds its partition's buffer budget until it is dropped, so "pending"
//! counts exactly the records dispatched and not yet done or discarded.
//!
//! Lane supervision: a lane task is the only thing that takes records off its lane, so a task
//! that died would leave its lane registered with records queued behind a dead task, its
//! partition's commit pinned and nothing visibly wrong. So a panic while processing a record
//! is caught in the lane (logged at ERROR, counted in `kcp_lane_panics_total`), the record is
//! handed to [`Work::recover`] (which dead-letters it: see `deliver`), and the lane goes on with
//! the next record. If recovering panics too, the record stays unfinished (never committed) and
//! the replica is marked for restart ([`Stats::set_broken`]: `/healthz` fails, Kubernetes
//! restarts the pod, the record is consumed again). Should a lane task end any other way, a
//! drop guard removes its lane, so later records start a new task.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
    },
};

use bytes::Bytes;
use futures::FutureExt;
use kcp_crds::v1alpha1::Ordering;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::{
    offsets::Epoch,
    record::{Record, Tp},
    stats::Stats,
    unwind,
};

/// How many records (and bytes) may be taken from Kafka and not yet finished: per partition
/// ([`Budget::for_max_in_flight`]) and for the whole sidecar ([`Budget::total_for_max_in_flight`]).
/// The poll thread stops taking records when a buffer is full and starts again once it is half
/// empty. Meanwhile librdkafka keeps at most its own small prefetch queue per partition (see
/// `consumer::CONSUMER_DEFAULTS`) and stops fetching; nothing is paused or thrown away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub max_records: usize,
    pub max_bytes: usize,
}

impl Budget {
    /// One partition: enough buffered records for `max_in_flight` parallel requests on it,
    /// twice over.
    pub fn for_max_in_flight(max_in_flight: u32) -> Self {
        Self {
            max_records: (max_in_flight as usize).saturating_mul(2).max(64),
            max_bytes: 4 * 1024 * 1024,
        }
    }

    /// All partitions together: what bounds memory whatever the number of assigned partitions.
    pub fn total_for_max_in_flight(max_in_flight: u32) -> Self {
        Self {
            max_records: (max_in_flight as usize).saturating_mul(4).max(256),
            max_bytes: 16 * 1024 * 1024,
        }
    }

    /// Stop taking records at this point.
    pub fn is_full(&self, records: usize, bytes: usize) -> bool {
        records >= self.max_records || bytes >= self.max_bytes
    }

    /// Take records again at this point (half empty: avoids stopping and starting on every
    /// record).
    pub fn has_room(&self, records: usize, bytes: usize) -> bool {
        records <= self.max_records / 2 && bytes <= self.max_bytes / 2
    }
}

/// Wakes the poll thread when it may have work: a record arrived, a full buffer has room again.
/// Without a thread (unit tests) it does nothing.
#[derive(Clone, Debug, Default)]
pub struct Waker(Option<std::thread::Thread>);

impl Waker {
    /// Wakes the calling thread when [`Waker::wake`] is called (from any thread).
    pub fn current() -> Self {
        Self(Some(std::thread::current()))
    }

    pub fn wake(&self) {
        if let Some(thread) = &self.0 {
            thread.unpark();
        }
    }
}

/// Records and bytes taken and not yet finished, against a [`Budget`].
#[derive(Debug)]
pub struct Buffer {
    budget: Budget,
    records: AtomicUsize,
    bytes: AtomicUsize,
    /// Set by the poll thread when it stopped taking records because this buffer is full; the
    /// [`Job`] drop that leaves it half empty wakes the poll thread.
    pub stopped: AtomicBool,
}

impl Buffer {
    pub fn new(budget: Budget) -> Self {
        Self {
            budget,
            records: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Records and bytes taken and not yet finished.
    pub fn pending(&self) -> (usize, usize) {
        (self.records.load(SeqCst), self.bytes.load(SeqCst))
    }

    /// Whether the buffer is full: stop taking records.
    pub fn is_full(&self) -> bool {
        let (records, bytes) = self.pending();
        self.budget.is_full(records, bytes)
    }

    /// Whether a full buffer has drained enough to take records again.
    pub fn has_room(&self) -> bool {
        let (records, bytes) = self.pending();
        self.budget.has_room(records, bytes)
    }

    /// Marks the buffer stopped if it is full; false if it has room after all (a record
    /// finished in between: SeqCst pairs with [`Buffer::release`], so one of the two sees the
    /// other and a buffer never stays stopped with room to spare).
    pub fn stop_if_full(&self) -> bool {
        if !self.is_full() {
            return false;
        }
        self.stopped.store(true, SeqCst);
        if self.has_room() {
            self.stopped.store(false, SeqCst);
            return false;
        }
        true
    }

    /// Clears the stop once the buffer is half empty; whether records may be taken.
    pub fn restart_if_room(&self) -> bool {
        if !self.stopped.load(SeqCst) {
            return true;
        }
        if !self.has_room() {
            return false;
        }
        self.stopped.store(false, SeqCst);
        true
    }

    fn take(&self, size: usize) {
        self.records.fetch_add(1, SeqCst);
        self.bytes.fetch_add(size, SeqCst);
    }

    /// Whether the poll thread should be woken: it stopped on this buffer, which now has room.
    fn release(&self, size: usize) -> bool {
        self.records.fetch_sub(1, SeqCst);
        self.bytes.fetch_sub(size, SeqCst);
        self.stopped.load(SeqCst) && self.has_room()
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
    /// This partition's records taken and not finished.
    pub buffer: Buffer,
    /// Every partition's, together.
    pub total: Arc<Buffer>,
    waker: Waker,
}

impl PartitionState {
    /// A partition with a default budget of its own and no poll thread to wake (tests).
    pub fn new(tp: Tp, epoch: Epoch, stop: CancellationToken, abort: CancellationToken) -> Self {
        let total = Arc::new(Buffer::new(Budget::total_for_max_in_flight(1)));
        Self::with_budget(
            tp,
            epoch,
            stop,
            abort,
            Budget::for_max_in_flight(1),
            total,
            Waker::default(),
        )
    }

    /// A partition whose buffer holds up to `budget`, sharing `total` with the others; `waker`
    /// is woken when a full buffer has room again.
    pub fn with_budget(
        tp: Tp,
        epoch: Epoch,
        stop: CancellationToken,
        abort: CancellationToken,
        budget: Budget,
        total: Arc<Buffer>,
        waker: Waker,
    ) -> Self {
        Self {
            tp,
            epoch,
            stop,
            abort,
            buffer: Buffer::new(budget),
            total,
            waker,
        }
    }

    /// Records and bytes dispatched and not yet done or discarded.
    pub fn pending(&self) -> (usize, usize) {
        self.buffer.pending()
    }
}

/// A record on its way, holding its partition's budget until dropped.
#[derive(Debug)]
pub struct Job {
    pub record: Record,
    pub partition: Arc<PartitionState>,
    /// The epoch its completion is reported in: the partition's, unless the partition's log
    /// moved backwards since it was assigned (`OffsetTracker::dispatched`).
    pub epoch: Epoch,
    size: usize,
}

impl Job {
    pub fn new(record: Record, partition: Arc<PartitionState>) -> Self {
        let size = record.size();
        partition.buffer.take(size);
        partition.total.take(size);
        Self {
            record,
            epoch: partition.epoch,
            partition,
            size,
        }
    }

    /// The same job, reported in `epoch` (the one the tracker gave its offset).
    pub fn in_epoch(mut self, epoch: Epoch) -> Self {
        self.epoch = epoch;
        self
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let p = &self.partition;
        let partition_room = p.buffer.release(self.size);
        let total_room = p.total.release(self.size);
        if partition_room || total_room {
            p.waker.wake();
        }
    }
}

/// Drives one record to its end (delivered, skipped, dead-lettered or abandoned).
pub type Process = Arc<dyn Fn(Arc<Job>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Gives a record an outcome after [`Process`] panicked on it; gets the panic's message.
pub type Recover =
    Arc<dyn Fn(Arc<Job>, String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What the lanes run for each record.
#[derive(Clone)]
pub struct Work {
    pub process: Process,
    /// Called instead of going on when `process` panicked. It must never let the commit pass the
    /// record unless the record is delivered or dead-lettered: leaving it unfinished is safe
    /// (it is consumed again), skipping it is not.
    pub recover: Recover,
}

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
    work: Work,
    runtime: Handle,
    stats: Arc<Stats>,
    /// A lane is present while its task runs; the deque holds the records waiting behind it.
    lanes: Mutex<HashMap<LaneKey, VecDeque<Job>>>,
}

impl Dispatcher {
    pub fn new(ordering: Ordering, work: Work, runtime: Handle, stats: Arc<Stats>) -> Arc<Self> {
        Arc::new(Self {
            ordering,
            work,
            runtime,
            stats,
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
        // Every change under this lock is one insert, remove, push or pop: the map is whole even
        // if a holder panicked, and the lane guard must be able to clean up during a panic.
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
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
        // The guard is made before the task, so it removes the lane even if the task is dropped
        // before it first runs.
        let lane = LaneGuard {
            dispatcher: Arc::clone(self),
            key,
            armed: true,
        };
        self.runtime.spawn(lane.run(job));
    }

    /// Runs one record; a panic hands it to [`Work::recover`] (see the module docs).
    async fn run_one(&self, job: Job) {
        let job = Arc::new(job);
        let processed = AssertUnwindSafe((self.work.process)(Arc::clone(&job)))
            .catch_unwind()
            .await;
        let Err(panic) = processed else {
            return;
        };
        let panic = unwind::message(&*panic);
        Stats::incr(&self.stats.lane_panics);
        let r = &job.record;
        error!(topic = %r.tp.topic, partition = r.tp.partition, offset = r.offset, %panic,
            "Internal error processing a record (a bug: please report it); dead-lettering the record and going on with its lane");
        let recovered = AssertUnwindSafe((self.work.recover)(Arc::clone(&job), panic))
            .catch_unwind()
            .await;
        if let Err(panic) = recovered {
            let panic = unwind::message(&*panic);
            Stats::incr(&self.stats.lane_panics);
            error!(topic = %r.tp.topic, partition = r.tp.partition, offset = r.offset, %panic,
                "Internal error again while dead-lettering the record; it stays uncommitted, and liveness now fails so that Kubernetes restarts the pod and the record is consumed again");
            self.stats.set_broken(format!(
                "record {} could not be processed nor dead-lettered: {panic}",
                r.coordinates()
            ));
        }
        // Dropping the last handle on the job releases its buffer budget.
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

/// A lane's task: works through the lane, and removes it if the task ends without having done
/// so (a panic in the lane's own code, or the task dropped). The records queued behind then stay
/// unfinished, so nothing commits past them; after a panic the replica is marked for restart so
/// that they are consumed again.
struct LaneGuard {
    dispatcher: Arc<Dispatcher>,
    key: LaneKey,
    armed: bool,
}

impl LaneGuard {
    async fn run(mut self, first: Job) {
        let d = Arc::clone(&self.dispatcher);
        let mut job = first;
        loop {
            d.run_one(job).await;
            let mut lanes = d.lock();
            match lanes.get_mut(&self.key).and_then(VecDeque::pop_front) {
                Some(next) => job = next,
                None => {
                    lanes.remove(&self.key);
                    // Removed under the lock: a record submitted from now on starts a new task,
                    // whose lane this guard must not touch.
                    self.armed = false;
                    return;
                }
            }
        }
    }
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let queued = self.dispatcher.lock().remove(&self.key);
        if std::thread::panicking() {
            let tp = self.key.tp();
            let dropped = queued.as_ref().map_or(0, VecDeque::len);
            error!(%tp, dropped, "A lane task died; its queued records stay uncommitted and liveness now fails so that Kubernetes restarts the pod");
            self.dispatcher
                .stats
                .set_broken(format!("a lane task of {tp} died"));
        }
        // `queued` drops here, outside the lock: each job releases its budget.
    }
}

#[cfg(test)]
mod tests;
