//! What an assignment and a revocation do, and the drain shared with shutdown.
//!
//! Runs on the poll thread inside librdkafka's rebalance callback, which acknowledges the
//! revocation only when [`RebalanceHandler::revoking`] returns. Revoke sequence: stop dispatching
//! the revoked partitions (records not started are discarded, uncommitted) → wait for in-flight
//! records up to `drainTimeout` (then abort them: they stay uncommitted) → commit synchronously
//! → forget the partitions → return. A *lost* assignment (the session expired, so another
//! member may own the partitions already) skips the wait and the commit: in-flight requests are
//! aborted at once, so the same key never runs here and at the new owner for longer than it
//! takes to notice. Never spawns, never panics.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use rdkafka::{TopicPartitionList, consumer::BaseConsumer, error::KafkaResult};
use tracing::{debug, info, warn};

use super::{Shared, poll::PartitionFetch};
use crate::{
    commit,
    consumer::{ConsumerCtx, RebalanceHandler},
    dispatch::{PartitionState, Waker},
    record::Tp,
};

/// How often the drain checks whether in-flight records finished.
const DRAIN_CHECK: Duration = Duration::from_millis(2);
/// How long shutdown waits for the next dispatched record to finish before it stops waiting.
const FINISH_STALL: Duration = Duration::from_secs(2);

impl RebalanceHandler for Shared {
    fn assigned(
        &self,
        _consumer: &BaseConsumer<ConsumerCtx>,
        tps: &[Tp],
        mut inherited: std::collections::HashMap<Tp, crate::progress::Progress>,
    ) {
        let (consumer, waker) = match self.consumer.get() {
            Some((consumer, waker)) => (consumer.upgrade(), waker.clone()),
            None => (None, Waker::default()),
        };
        // A partition assigned again: its old queue handle must not take the new records.
        self.revoked_queues
            .lock()
            .expect("invariant: revoked queues lock never poisoned")
            .retain(|f| !tps.contains(&f.state.tp));
        let mut parts = self.lock_partitions();
        let mut queues = self.lock_queues();
        let mut tracker = self
            .tracker
            .lock()
            .expect("invariant: tracker lock never poisoned");
        for tp in tps {
            let epoch = tracker.assign_with(tp.clone(), inherited.remove(tp));
            let state = Arc::new(PartitionState::with_budget(
                tp.clone(),
                epoch,
                self.stop.child_token(),
                self.abort.child_token(),
                self.budget,
                Arc::clone(&self.total),
                waker.clone(),
            ));
            if let Some(old) = parts.insert(tp.clone(), Arc::clone(&state)) {
                // Assigned twice without a revoke in between: the old work is stale.
                old.abort.cancel();
            }
            // Split before librdkafka starts fetching (it does once this callback returns), so
            // every record of the partition arrives on its own queue, in order.
            match consumer
                .as_ref()
                .and_then(|c| c.split_partition_queue(&tp.topic, tp.partition))
            {
                Some(mut queue) => {
                    let waker = waker.clone();
                    queue.set_nonempty_callback(move || waker.wake());
                    queues.insert(tp.clone(), PartitionFetch { state, queue });
                }
                None if consumer.is_none() => {
                    // The consumer is closing (its last handle is being dropped): an assignment
                    // now is revoked again before anything is read.
                    queues.remove(tp);
                    debug!(%tp, "Assigned while closing; not reading it");
                }
                None => {
                    // librdkafka refuses only a topic name it cannot take (or a producer
                    // handle), which Kafka would not have assigned. Its records would come
                    // through the consumer's queue, read without the partition's budget.
                    queues.remove(tp);
                    warn!(%tp, "Could not give the partition its own queue; reading it from the consumer's queue");
                }
            }
            self.stats.partition_assigned(tp);
        }
    }

    fn revoking(&self, consumer: &BaseConsumer<ConsumerCtx>, tps: &[Tp], lost: bool) {
        let states: Vec<Arc<PartitionState>> = {
            let mut parts = self.lock_partitions();
            tps.iter().filter_map(|tp| parts.remove(tp)).collect()
        };
        {
            // Records still in these queues were not taken: they stay uncommitted. librdkafka
            // does not purge a revoked partition's queue, so the poll loop drains it (and
            // frees the fetch buffers its records hold) once fetching has stopped.
            let mut queues = self.lock_queues();
            let mut revoked = self
                .revoked_queues
                .lock()
                .expect("invariant: revoked queues lock never poisoned");
            for tp in tps {
                if let Some(fetch) = queues.remove(tp) {
                    revoked.push(fetch);
                }
            }
        }
        // At most once: records held because their commit failed were never sent; the next
        // owner consumes them.
        self.lock_ahead()
            .retain(|job| !tps.contains(&job.record.tp));
        if lost {
            // The session expired: another member may own these partitions already and be
            // delivering the same records. Stop at once instead of draining in parallel with
            // it; what was in flight stays uncommitted and is delivered again by the owner.
            let in_flight: usize = states.iter().map(|s| s.pending().0).sum();
            if in_flight > 0 {
                warn!(
                    partitions = tps.len(),
                    in_flight,
                    "Assignment lost (session expired): abandoning in-flight records; their new owner delivers them again"
                );
            }
            for s in &states {
                s.stop.cancel();
                s.abort.cancel();
            }
            self.dispatcher.discard_waiting(tps);
        } else {
            self.drain(&states);
        }
        // A lost assignment belongs to someone else already: a commit would be refused.
        if !lost && !self.abort.is_cancelled() {
            let result = match self.consumer.get().and_then(|(c, _)| c.upgrade()) {
                Some(c) => commit::commit_sync_within(
                    &c,
                    &self.tracker,
                    Some(tps),
                    &self.stats,
                    commit::SYNC_COMMIT_TIMEOUT,
                    true,
                    &self.window,
                ),
                // The consumer is being closed: commit on this thread.
                None => commit::commit_sync(
                    consumer,
                    &self.tracker,
                    Some(tps),
                    &self.stats,
                    true,
                    &self.window,
                ),
            };
            match result {
                Ok(committed) => info!(
                    partitions = tps.len(),
                    committed, "Committed revoked partitions"
                ),
                Err(e) => warn!(error = %e, source = %e.source_message(),
                    "Commit of revoked partitions failed; their next owner redelivers what was not committed"),
            }
        }
        let mut tracker = self
            .tracker
            .lock()
            .expect("invariant: tracker lock never poisoned");
        for tp in tps {
            tracker.revoke(tp);
            self.stats.partition_revoked(tp);
        }
    }

    fn closing(&self) -> bool {
        self.consumer.get().and_then(|(c, _)| c.upgrade()).is_none()
    }

    fn commit_done(&self, result: &KafkaResult<()>, offsets: &TopicPartitionList) {
        commit::commit_done(result, offsets);
    }
}

impl Shared {
    /// Stops `states`, waits for their in-flight records up to `drainTimeout` and aborts what is
    /// left. Blocks the calling (poll) thread. The committer (`commit/committer.rs`) goes on
    /// committing what finishes meanwhile; the caller commits the rest afterwards.
    pub fn drain(&self, states: &[Arc<PartitionState>]) {
        self.drain_until(states, Instant::now() + self.drain_timeout);
    }

    /// Lets the records already dispatched to `states` keep finishing, without stopping them,
    /// while they make progress: used at shutdown, before [`Shared::drain_until`]. Discarding a
    /// queued record while later ones of its partition have finished (key and unordered modes)
    /// would make the restart deliver those finished records again, since the commit stops at the
    /// lowest unfinished offset. Gives up at `deadline`, or when nothing finished for
    /// [`FINISH_STALL`] (a failing app backing off, a blocked key): shutdown then proceeds as a
    /// revoke does, and what is left is redelivered, never lost. Commits as it goes.
    pub fn finish_dispatched(&self, states: &[Arc<PartitionState>], deadline: Instant) {
        let pending = || states.iter().map(|s| s.pending().0).sum::<usize>();
        let mut last = pending();
        let mut last_progress = Instant::now();
        while last > 0 && !self.abort.is_cancelled() && Instant::now() < deadline {
            std::thread::sleep(DRAIN_CHECK);
            let now = pending();
            if now < last {
                last_progress = Instant::now();
            } else if last_progress.elapsed() >= FINISH_STALL {
                break;
            }
            last = now;
        }
        info!(left = last, "Finished dispatched records");
    }

    /// [`Shared::drain`] with an explicit deadline.
    pub fn drain_until(&self, states: &[Arc<PartitionState>], deadline: Instant) {
        if states.is_empty() {
            return;
        }
        for s in states {
            s.stop.cancel();
        }
        let tps: Vec<Tp> = states.iter().map(|s| s.tp.clone()).collect();
        let discarded = self.dispatcher.discard_waiting(&tps);
        let waiting = states.iter().map(|s| s.pending().0).sum::<usize>();
        self.stats.drain_waited.fetch_add(waiting as u64, Relaxed);
        let in_flight = |states: &[Arc<PartitionState>]| -> usize {
            states.iter().map(|s| s.pending().0).sum()
        };
        while !self.abort.is_cancelled() && in_flight(states) > 0 && Instant::now() < deadline {
            std::thread::sleep(DRAIN_CHECK);
        }
        let left = in_flight(states);
        if left > 0 {
            for s in states {
                s.abort.cancel();
            }
            if !self.abort.is_cancelled() {
                warn!(
                    records = left,
                    drain_timeout_ms = self.drain_timeout.as_millis() as u64,
                    "Drain timed out; in-flight records were abandoned and stay uncommitted"
                );
            }
        }
        info!(
            partitions = tps.len(),
            discarded,
            abandoned = left,
            "Drained"
        );
    }
}
