//! Batches (`delivery.batch`): how a lane hands its records over several at a time.
//!
//! A lane's task takes the record that starts it and, behind it, the records its lane has
//! waiting, in order, up to `maxRecords` records and `maxBytes` bytes (buffer size; a record
//! larger than that goes alone); with `maxWait` it waits up to that long for the batch to fill,
//! woken by each record that joins the lane. In `partition` and `key` order the lane then runs
//! the batch and gathers its next one only once it ended: one batch in flight per lane, so
//! order holds across batches. In `unordered` order a lane per partition only gathers: each
//! batch gets a lane of its own (keyed by its first offset, never submitted to) whose task
//! runs it, so batches of a partition run in parallel and a stuck batch is held like any lane
//! (see the parent module). A panic while processing a batch hands each of its records to
//! [`Work::recover`](super::Work), as for a single record.

use std::{
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
};

use futures::FutureExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Batching, Dispatcher, Job, Lane, LaneGuard, LaneKey, Start};
use crate::unwind;

/// Counts the unordered batches started and not ended, so that the lanes gathering them form
/// a batch only when it can be sent: batches formed earlier would wait for a request slot
/// holding few records, while the records arriving meanwhile could have filled them.
#[derive(Debug, Default)]
pub(super) struct Outstanding {
    count: AtomicUsize,
    ended: Notify,
}

impl Outstanding {
    /// Waits until fewer than `max` batches are out (or `stop`).
    pub(super) async fn room(&self, max: usize, stop: &CancellationToken) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.count.load(SeqCst) < max.max(1) {
                return;
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = ended => {}
            }
        }
    }

    /// Counts one more batch out (when its task is spawned).
    fn start(&self) {
        self.count.fetch_add(1, SeqCst);
    }

    /// The guard of a batch counted out by `start`: it ends when dropped (however its task
    /// ends).
    pub(super) fn ends(&self) -> Ends<'_> {
        Ends(self)
    }
}

/// One batch out; ends when dropped.
pub(super) struct Ends<'a>(&'a Outstanding);

impl Drop for Ends<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, SeqCst);
        self.0.ended.notify_waiters();
    }
}

impl LaneGuard {
    /// The batch that `first` starts: what the lane has waiting behind it, within the bounds,
    /// after waiting up to `maxWait` for it to fill (cut short by a stop).
    pub(super) async fn gather(&self, first: Arc<Job>, b: &Batching) -> Vec<Arc<Job>> {
        let deadline = tokio::time::Instant::now() + b.max_wait;
        let stop = first.partition.stop.clone();
        let mut bytes = first.size;
        let mut batch = vec![first];
        loop {
            let more = {
                let mut lanes = self.dispatcher.lock();
                let Some(lane) = lanes.get_mut(&self.key) else {
                    return batch;
                };
                let full = take_waiting(lane, &mut batch, &mut bytes, b);
                if full || b.max_wait.is_zero() || tokio::time::Instant::now() >= deadline {
                    return batch;
                }
                match &lane.more {
                    Some(more) => Arc::clone(more),
                    None => return batch,
                }
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => return batch,
                _ = more.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// Moves records from `lane`'s queue to `batch` while they fit; returns whether it is full.
fn take_waiting(
    lane: &mut Lane,
    batch: &mut Vec<Arc<Job>>,
    bytes: &mut usize,
    b: &Batching,
) -> bool {
    while batch.len() < b.max_records {
        let Some(next) = lane.queue.front() else {
            return false;
        };
        if *bytes + next.size > b.max_bytes {
            return true;
        }
        let next = Arc::new(lane.queue.pop_front().expect("invariant: front was Some"));
        *bytes += next.size;
        lane.add_head(&next);
        batch.push(next);
    }
    true
}

impl Dispatcher {
    /// Runs a batch; a panic hands each of its records to [`Work::recover`](super::Work).
    pub(super) async fn run_batch(&self, batch: Vec<Arc<Job>>) {
        let process = &self
            .work
            .batch
            .as_ref()
            .expect("invariant: batches only exist with delivery.batch")
            .process;
        let processed = AssertUnwindSafe(process(batch.clone()))
            .catch_unwind()
            .await;
        if let Err(panic) = processed {
            let panic = unwind::message(&*panic);
            for job in batch {
                self.recover(job, panic.clone()).await;
            }
        }
    }

    /// Gives an unordered batch a lane of its own and starts it.
    pub(super) fn spawn_batch(self: &Arc<Self>, batch: Vec<Arc<Job>>) {
        let first = &batch[0];
        let key = LaneKey::Record(first.record.tp.clone(), first.record.offset);
        let mut lane = Lane::new(Arc::clone(&first.partition), false);
        lane.start(first);
        for job in &batch[1..] {
            lane.add_head(job);
        }
        self.lock().insert(key.clone(), lane);
        self.batches.start();
        self.spawn_lane(key, Start::Batch(batch), false);
    }
}

#[cfg(test)]
mod tests;
