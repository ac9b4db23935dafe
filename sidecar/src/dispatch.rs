//! Ordering and parallelism: which record may start when, and per-partition buffer budgets.
//!
//! Owns the lanes. A lane is a FIFO of records that must be delivered one after another:
//! one lane per partition (`partition`), per partition and key (`key`; a null key shares the
//! partition's null-key lane), or one per record (`unordered`). Each non-empty lane has exactly
//! one task working through it, so order within a lane holds by construction, while different
//! lanes run in parallel (bounded elsewhere by the `maxInFlight` semaphore) — parallelism is not
//! capped by the partition count. With `delivery.batch` a lane hands its records over several
//! at a time (`dispatch/batch.rs`). It never talks to Kafka or HTTP: it runs the [`Work`] it is
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
//!
//! Held lanes (what keeps a record that never finishes from stalling more than its lane): a lane
//! whose current record has not finished for [`HOLD_AFTER`] (`onExhausted: block`, `maxAttempts:
//! 0` on a persistent failure, a dead-letter produce that keeps failing, a request that never
//! ends) is **held**: its records, the current one included, are moved from the working buffer
//! to the parked one (`buffer`), and records that join it later are parked at once, until the
//! lane starts its next record. Working room, which the poll thread keeps for records that move,
//! is thus never taken for good by records that do not. Parked records have their own bound per
//! partition and for all partitions together; a lane is not held past it (its records stay
//! working), and the poll thread stops reading the partitions that would park more
//! ([`Dispatcher::stall`]), which is reported. In `partition` order a held lane is its whole
//! partition: the partition is not read until its record finishes, and only its own records wait.
//! Holding only moves accounting: no record is dropped, reordered or skipped.

mod batch;
mod buffer;
mod hold;

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::FutureExt;
use kcp_crds::v1alpha1::Ordering;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::error;

pub use self::buffer::{Budget, Buffer, PARKED_FACTOR};
use self::hold::HoldWatch;
use crate::{
    offsets::Epoch,
    record::{Record, Tp},
    stats::{Stall, Stats},
    telemetry::Throttle,
    unwind,
};

/// A lane whose current record has not finished for this long is held (see the module docs).
/// Longer than the default retries take to give up (at most 15 s of backoff), so a record that
/// only needed retries is rarely held; short enough that other keys of a partition wait at most
/// this long (plus half a second) behind a key that got blocked.
pub const HOLD_AFTER: Duration = Duration::from_secs(20);
/// How often the poll thread looks for lanes to hold.
const HOLD_CHECK: Duration = Duration::from_millis(500);
/// The hold clock restarts when the poll thread did not look for this long (the app was not
/// ready, a revoke was draining): records that waited for the app are not held for it.
const HOLD_GAP: Duration = Duration::from_secs(1);
/// At most one log line per partition and period about it being stalled.
const STALL_LOG_PERIOD: Duration = Duration::from_secs(10);

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
    /// Lanes of this partition held now (see the module docs); kept by the dispatcher.
    held_lanes: AtomicUsize,
    /// Set by the last hold check: a lane of this partition should be held but the parked
    /// bound is reached.
    hold_refused: AtomicBool,
    /// The poll thread's last verdict on reading it ([`Stall::code`]), its log throttle, and
    /// whether it logged the stall in progress.
    stall: AtomicU8,
    pub(crate) stall_log: Throttle,
    pub(crate) stall_logged: AtomicBool,
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
            held_lanes: AtomicUsize::new(0),
            hold_refused: AtomicBool::new(false),
            stall: AtomicU8::new(0),
            stall_log: Throttle::new(STALL_LOG_PERIOD),
            stall_logged: AtomicBool::new(false),
        }
    }

    /// Records and bytes dispatched and not yet done or discarded (working and parked).
    pub fn pending(&self) -> (usize, usize) {
        self.buffer.pending()
    }

    /// Lanes of this partition held now.
    pub fn held_lanes(&self) -> usize {
        self.held_lanes.load(SeqCst)
    }

    /// The poll thread's last verdict on reading this partition.
    pub fn stalled(&self) -> Option<Stall> {
        Stall::from_code(self.stall.load(SeqCst))
    }

    /// Records the poll thread's verdict; returns the previous one.
    pub fn swap_stall(&self, stall: Option<Stall>) -> Option<Stall> {
        Stall::from_code(self.stall.swap(Stall::code(stall), SeqCst))
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
    /// What earlier owners or assignments recorded of it: failed attempts so far, crashes it
    /// was in flight for (`offsets/carry.rs`).
    pub prior: crate::progress::RecordState,
    size: usize,
    /// Counted as parked rather than working (see the module docs).
    parked: AtomicBool,
}

impl Job {
    pub fn new(record: Record, partition: Arc<PartitionState>) -> Self {
        let size = record.size();
        partition.buffer.take(size);
        partition.total.take(size);
        Self {
            record,
            epoch: partition.epoch,
            prior: Default::default(),
            partition,
            size,
            parked: AtomicBool::new(false),
        }
    }

    /// Whether the record counts as parked.
    pub fn is_parked(&self) -> bool {
        self.parked.load(SeqCst)
    }

    /// Moves the record from the working buffers to the parked ones (once). Callers hold a
    /// handle on the job, so it cannot be dropped (released) meanwhile.
    fn park(&self) {
        if self.parked.swap(true, SeqCst) {
            return;
        }
        self.partition.buffer.park(self.size);
        self.partition.total.park(self.size);
    }

    /// The same job, reported in `epoch` (the one the tracker gave its offset).
    pub fn in_epoch(mut self, epoch: Epoch) -> Self {
        self.epoch = epoch;
        self
    }

    /// The same job, continuing from what was recorded of it before.
    pub fn with_prior(mut self, prior: crate::progress::RecordState) -> Self {
        self.prior = prior;
        self
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let p = &self.partition;
        let parked = *self.parked.get_mut();
        let partition_room = p.buffer.release(self.size, parked);
        let total_room = p.total.release(self.size, parked);
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

/// Drives the records of one batch, one lane's in order, to their ends.
pub type ProcessBatch =
    Arc<dyn Fn(Vec<Arc<Job>>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What the lanes run for each record.
#[derive(Clone)]
pub struct Work {
    pub process: Process,
    /// Called instead of going on when `process` panicked. It must never let the commit pass the
    /// record unless the record is delivered or dead-lettered: leaving it unfinished is safe
    /// (it is consumed again), skipping it is not.
    pub recover: Recover,
    /// With `delivery.batch`: lanes hand their records over in batches (see `dispatch/batch.rs`).
    pub batch: Option<Batching>,
}

/// How lanes gather batches (`delivery.batch`).
#[derive(Clone)]
pub struct Batching {
    pub max_records: usize,
    /// Bytes of records (their buffer size) per batch; a larger record goes alone.
    pub max_bytes: usize,
    /// How long a batch's first record waits for more.
    pub max_wait: Duration,
    /// `maxInFlight`: unordered batches are formed when fewer than this many are out.
    pub max_in_flight: usize,
    pub process: ProcessBatch,
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

/// One lane: the records waiting behind its current one, and whether it is held.
struct Lane {
    queue: VecDeque<Job>,
    partition: Arc<PartitionState>,
    /// The record being processed (set when the lane's task picks it up), and the rest of its
    /// batch (empty without batches: no allocation per record).
    head: Weak<Job>,
    batched: Vec<Weak<Job>>,
    /// Woken when a record joins the queue, for a batch waiting to fill (`maxWait`).
    more: Option<Arc<tokio::sync::Notify>>,
    /// When the lane started its current record.
    started: Instant,
    held: bool,
}

impl Lane {
    fn new(partition: Arc<PartitionState>, lingers: bool) -> Self {
        Self {
            queue: VecDeque::new(),
            partition,
            head: Weak::new(),
            batched: Vec::new(),
            more: lingers.then(|| Arc::new(tokio::sync::Notify::new())),
            started: Instant::now(),
            held: false,
        }
    }

    /// The lane starts `job`: it moves, so it is no longer held (records already parked stay
    /// parked until they finish; later ones are working).
    fn start(&mut self, job: &Arc<Job>) {
        self.head = Arc::downgrade(job);
        self.batched.clear();
        self.started = Instant::now();
        self.release_hold();
    }

    /// `job` joins the batch the lane is processing.
    fn add_head(&mut self, job: &Arc<Job>) {
        self.batched.push(Arc::downgrade(job));
    }

    /// The records being processed that are still alive.
    fn heads(&self) -> impl Iterator<Item = Arc<Job>> + '_ {
        std::iter::once(&self.head)
            .chain(&self.batched)
            .filter_map(Weak::upgrade)
    }

    fn release_hold(&mut self) {
        if self.held {
            self.held = false;
            self.partition.held_lanes.fetch_sub(1, SeqCst);
        }
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.release_hold();
    }
}

/// The lanes; cheap to call from the poll thread (a short mutex, no await).
pub struct Dispatcher {
    ordering: Ordering,
    work: Work,
    runtime: Handle,
    stats: Arc<Stats>,
    /// A lane is present while its task runs; its queue holds the records waiting behind it.
    lanes: Mutex<HashMap<LaneKey, Lane>>,
    hold_after: Duration,
    watch: Mutex<HoldWatch>,
    /// Unordered batches started and not ended (`dispatch/batch.rs`).
    batches: batch::Outstanding,
}

impl Dispatcher {
    pub fn new(ordering: Ordering, work: Work, runtime: Handle, stats: Arc<Stats>) -> Arc<Self> {
        Self::with_hold_after(ordering, work, runtime, stats, HOLD_AFTER)
    }

    /// A dispatcher that holds lanes after `hold_after` instead of [`HOLD_AFTER`] (tests).
    pub fn with_hold_after(
        ordering: Ordering,
        work: Work,
        runtime: Handle,
        stats: Arc<Stats>,
        hold_after: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            ordering,
            work,
            runtime,
            stats,
            lanes: Mutex::new(HashMap::new()),
            hold_after,
            batches: batch::Outstanding::default(),
            watch: Mutex::new(HoldWatch {
                last_call: None,
                last_check: None,
                since: Instant::now(),
                refused: Vec::new(),
            }),
        })
    }

    pub fn ordering(&self) -> Ordering {
        self.ordering
    }

    fn lane_of(&self, record: &Record) -> LaneKey {
        let tp = record.tp.clone();
        match self.ordering {
            Ordering::Partition => LaneKey::Partition(tp),
            Ordering::Key => LaneKey::Key(tp, record.key.clone()),
            // Batches of unordered records are gathered per partition (`dispatch/batch.rs`).
            Ordering::Unordered if self.work.batch.is_some() => LaneKey::Partition(tp),
            Ordering::Unordered => LaneKey::Record(tp, record.offset),
        }
    }

    /// Whether lanes' batches wait to fill.
    fn lingers(&self) -> bool {
        self.work
            .batch
            .as_ref()
            .is_some_and(|b| !b.max_wait.is_zero())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LaneKey, Lane>> {
        // Every change under this lock is one insert, remove, push, pop or flag: the map is
        // whole even if a holder panicked, and the lane guard must be able to clean up during a
        // panic.
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_watch(&self) -> std::sync::MutexGuard<'_, HoldWatch> {
        self.watch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a record behind its lane, starting the lane's task if it is idle. A record joining
    /// a held lane is parked at once.
    pub fn submit(self: &Arc<Self>, job: Job) {
        let key = self.lane_of(&job.record);
        let mut lanes = self.lock();
        if let Some(lane) = lanes.get_mut(&key) {
            if lane.held {
                job.park();
            }
            lane.queue.push_back(job);
            if let Some(more) = &lane.more {
                more.notify_one();
            }
            return;
        }
        let job = Arc::new(job);
        let mut lane = Lane::new(Arc::clone(&job.partition), self.lingers());
        lane.start(&job);
        lanes.insert(key.clone(), lane);
        drop(lanes);
        let collects = self.ordering == Ordering::Unordered && self.work.batch.is_some();
        self.spawn_lane(key, Start::One(job), collects);
    }

    /// Starts the task of the lane `key` (registered already).
    fn spawn_lane(self: &Arc<Self>, key: LaneKey, start: Start, collects: bool) {
        // The guard is made before the task, so it removes the lane even if the task is dropped
        // before it first runs.
        let lane = LaneGuard {
            dispatcher: Arc::clone(self),
            key,
            armed: true,
            collects,
        };
        self.runtime.spawn(lane.run(start));
    }

    /// Runs one record; a panic hands it to [`Work::recover`] (see the module docs).
    async fn run_one(&self, job: Arc<Job>) {
        let processed = AssertUnwindSafe((self.work.process)(Arc::clone(&job)))
            .catch_unwind()
            .await;
        if let Err(panic) = processed {
            self.recover(job, unwind::message(&*panic)).await;
        }
    }

    /// Hands a record whose processing panicked to [`Work::recover`].
    async fn recover(&self, job: Arc<Job>, panic: String) {
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
        for (key, lane) in self.lock().iter_mut() {
            if tps.contains(key.tp()) {
                discarded.extend(lane.queue.drain(..));
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
    /// Unordered batches: the lane gathers batches and starts a lane for each
    /// (`dispatch/batch.rs`) instead of running them.
    collects: bool,
}

/// What a lane's task starts with.
enum Start {
    One(Arc<Job>),
    /// A batch gathered already (an unordered batch's own lane).
    Batch(Vec<Arc<Job>>),
}

impl LaneGuard {
    async fn run(mut self, first: Start) {
        let d = Arc::clone(&self.dispatcher);
        let mut start = first;
        loop {
            match (start, &d.work.batch) {
                (Start::One(job), None) => d.run_one(job).await,
                (Start::One(job), Some(b)) if self.collects => {
                    // Formed when it can be sent, so it takes all that waited meanwhile.
                    d.batches.room(b.max_in_flight, &job.partition.stop).await;
                    let batch = self.gather(job, b).await;
                    d.spawn_batch(batch);
                }
                (Start::One(job), Some(b)) => {
                    let batch = self.gather(job, b).await;
                    d.run_batch(batch).await;
                }
                (Start::Batch(batch), _) => {
                    let _ends = d.batches.ends();
                    d.run_batch(batch).await;
                }
            }
            let mut lanes = d.lock();
            let next = lanes.get_mut(&self.key).and_then(|lane| {
                let next = Arc::new(lane.queue.pop_front()?);
                lane.start(&next);
                Some(next)
            });
            match next {
                Some(next) => start = Start::One(next),
                None => {
                    let lane = lanes.remove(&self.key);
                    // Removed under the lock: a record submitted from now on starts a new task,
                    // whose lane this guard must not touch.
                    self.armed = false;
                    drop(lanes);
                    drop(lane);
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
        let lane = self.dispatcher.lock().remove(&self.key);
        if std::thread::panicking() {
            let tp = self.key.tp();
            let dropped = lane.as_ref().map_or(0, |lane| lane.queue.len());
            error!(%tp, dropped, "A lane task died; its queued records stay uncommitted and liveness now fails so that Kubernetes restarts the pod");
            self.dispatcher
                .stats
                .set_broken(format!("a lane task of {tp} died"));
        }
        // `lane` drops here, outside the lock: each job releases its budget.
    }
}

#[cfg(test)]
mod tests;
