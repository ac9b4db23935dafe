//! The poll loop: the consumer's own OS thread.
//!
//! Polls librdkafka (which also runs the rebalance and commit callbacks on this thread), copies
//! each record out, tracks it as dispatched and hands it to the lanes, pauses a partition whose
//! buffer is full and resumes it once half drained (so polling never stops and
//! `max.poll.interval.ms` is never exceeded), and triggers the periodic commit. At shutdown it
//! stops polling, drains, commits and closes the consumer.

use std::{
    slice,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use kcp_crds::v1alpha1::Guarantee;
use rdkafka::{
    ClientConfig, Message, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::BorrowedMessage,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{PipelineError, Shared};
use crate::{
    commit,
    consumer::{ConsumerCtx, ConsumerError},
    dispatch::{Job, PartitionState},
    offsets::Dispatched,
    record::{Record, Tp},
    stats::Stats,
};

/// How long one poll waits for a record; bounds how fast shutdown is noticed.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

pub(super) fn run(
    config: ClientConfig,
    topics: Vec<String>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    abort: CancellationToken,
) -> Result<(), PipelineError> {
    let ctx = ConsumerCtx {
        handler: Arc::clone(&shared) as _,
        stats: Arc::clone(&shared.stats),
    };
    let consumer: BaseConsumer<ConsumerCtx> = config
        .create_with_context(ctx)
        .map_err(|e| PipelineError::Consumer(ConsumerError::Create(e)))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(|source| {
        PipelineError::Consumer(ConsumerError::Subscribe {
            topics: topics.clone(),
            source,
        })
    })?;
    info!(?topics, "Consuming");
    let mut paused: Vec<Arc<PartitionState>> = Vec::new();
    let mut next_commit = Instant::now() + shared.commit_interval;
    let mut gate = GateSync::default();
    while !shutdown.is_cancelled() && !abort.is_cancelled() {
        shared.stats.beat();
        gate.apply(&consumer, &shared);
        match consumer.poll(POLL_TIMEOUT) {
            None => {}
            Some(Ok(message)) => accept(&consumer, &shared, &message, &mut paused),
            Some(Err(e)) => {
                warn!(error = %e, "Consume error; continuing");
                shared.stats.set_last_error(format!("consume: {e}"));
            }
        }
        resume_drained(&consumer, &shared, &mut paused);
        if Instant::now() >= next_commit {
            for state in shared.lock_partitions().values() {
                shared.stats.set_pending(&state.tp, state.pending().0);
            }
            commit::commit_async(&consumer, &shared.tracker, &shared.stats);
            next_commit = Instant::now() + shared.commit_interval;
        }
    }
    if abort.is_cancelled() {
        info!("Aborting: no drain, no further commit");
        shared.stop.cancel();
    } else {
        info!("Shutting down: finishing dispatched records");
        let deadline = Instant::now() + shared.drain_timeout;
        let states: Vec<Arc<PartitionState>> =
            shared.lock_partitions().drain().map(|(_, s)| s).collect();
        // One drainTimeout for the whole sequence: finish what was dispatched while it makes
        // progress, then stop, wait for what is in flight, and commit.
        shared.finish_dispatched(&states, deadline);
        shared.stop.cancel();
        shared.drain_until(&consumer, &states, deadline);
        final_commit(&consumer, &shared, deadline);
    }
    shared.stats.joined.store(false, Relaxed);
    // Closing leaves the group (unless static membership) and runs the revoke callback, which
    // finds nothing left to drain.
    drop(consumer);
    info!("Consumer closed");
    Ok(())
}

/// Commits everything finished, retrying until `deadline` (at least once more after it) when
/// the group refuses (a rebalance in progress): polling in between lets the consumer rejoin.
/// Records polled here are dropped, uncommitted.
fn final_commit(consumer: &BaseConsumer<ConsumerCtx>, shared: &Shared, deadline: Instant) {
    loop {
        match commit::commit_sync(consumer, &shared.tracker, None, &shared.stats) {
            Ok(committed) => {
                info!(committed, "Committed at shutdown");
                return;
            }
            Err(e) if Instant::now() < deadline => {
                debug!(error = %e, source = %e.source_message(), "Shutdown commit refused; polling and retrying");
                let _ = consumer.poll(POLL_TIMEOUT);
            }
            Err(e) => {
                warn!(error = %e, source = %e.source_message(),
                    "Shutdown commit failed; records finished since the last commit will be delivered again");
                return;
            }
        }
    }
}

fn one(tp: &Tp) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.topic, tp.partition);
    tpl
}

fn accept(
    consumer: &BaseConsumer<ConsumerCtx>,
    shared: &Shared,
    message: &BorrowedMessage<'_>,
    paused: &mut Vec<Arc<PartitionState>>,
) {
    let tp = Tp::new(message.topic(), message.partition());
    let Some(state) = shared.partition(&tp) else {
        debug!(%tp, offset = message.offset(), "Record for a partition not assigned; dropped");
        return;
    };
    let record = Record::from_message(message, &state.tp.topic);
    Stats::incr(&shared.stats.received);
    {
        let mut tracker = shared
            .tracker
            .lock()
            .expect("invariant: tracker lock never poisoned");
        match tracker.dispatched(&tp, record.offset) {
            Dispatched::Tracked => {}
            Dispatched::AlreadyUnfinished | Dispatched::NotAssigned => return,
        }
        if shared.guarantee == Guarantee::AtMostOnce {
            tracker.finished(&tp, state.epoch, record.offset);
        }
    }
    if shared.guarantee == Guarantee::AtMostOnce {
        // At most once: the commit past this record is acknowledged before it is forwarded.
        if let Err(e) = commit::commit_sync(
            consumer,
            &shared.tracker,
            Some(slice::from_ref(&tp)),
            &shared.stats,
        ) {
            warn!(%tp, offset = record.offset, error = %e, "At-most-once commit failed; record not forwarded");
            Stats::incr(&shared.stats.skipped);
            return;
        }
    }
    shared
        .dispatcher
        .submit(Job::new(record, Arc::clone(&state)));
    let (records, bytes) = state.pending();
    if shared.budget.is_full(records, bytes) && !state.paused.load(Relaxed) {
        match consumer.pause(&one(&tp)) {
            Ok(()) => {
                debug!(%tp, records, bytes, "Buffer full; paused fetching");
                state.paused.store(true, Relaxed);
                shared.stats.set_paused(&tp, true);
                Stats::incr(&shared.stats.pauses);
                paused.push(state);
            }
            Err(e) => warn!(%tp, error = %e, "Pausing a full partition failed"),
        }
    }
}

fn resume_drained(
    consumer: &BaseConsumer<ConsumerCtx>,
    shared: &Shared,
    paused: &mut Vec<Arc<PartitionState>>,
) {
    if !shared.stats.gate.is_open() {
        // Everything stays paused until the app answers; `GateSync` resumes the rest then.
        return;
    }
    paused.retain(|state| {
        if state.stop.is_cancelled() || !state.paused.load(Relaxed) {
            // Revoked: the drain resumed it.
            return false;
        }
        let (records, bytes) = state.pending();
        if !shared.budget.has_room(records, bytes) {
            return true;
        }
        match consumer.resume(&one(&state.tp)) {
            Ok(()) => {
                debug!(tp = %state.tp, "Buffer drained; resumed fetching");
                state.paused.store(false, Relaxed);
                shared.stats.set_paused(&state.tp, false);
                false
            }
            Err(e) => {
                warn!(tp = %state.tp, error = %e, "Resuming a partition failed; will try again");
                true
            }
        }
    });
}

/// Applies the readiness gate (`gate.rs`) to the consumer: while the app does not answer, every
/// assigned partition is paused (the consumer keeps polling, so it stays in the group); when it
/// answers again, every assigned partition is resumed except those paused because their buffer
/// is full (`resume_drained` resumes those once drained). Re-applied after each rebalance, so a
/// partition assigned while the gate is closed starts paused and one assigned while it is open
/// never stays paused from an earlier assignment.
#[derive(Default)]
struct GateSync {
    /// Whether the partitions are paused for the gate.
    paused: bool,
    /// `Stats::rebalances` when the gate was last applied.
    applied_at: Option<u64>,
}

impl GateSync {
    fn apply(&mut self, consumer: &BaseConsumer<ConsumerCtx>, shared: &Shared) {
        let gate = &shared.stats.gate;
        let open = gate.is_open();
        let generation = shared.stats.rebalances.load(Relaxed);
        if open != self.paused && self.applied_at == Some(generation) {
            return;
        }
        if open {
            let mut tpl = TopicPartitionList::new();
            for s in shared.lock_partitions().values() {
                if !s.paused.load(Relaxed) {
                    tpl.add_partition(&s.tp.topic, s.tp.partition);
                }
            }
            match consumer.resume(&tpl) {
                Ok(()) => {
                    if self.paused {
                        info!(partitions = tpl.count(), "App answers; resumed fetching");
                    }
                    self.paused = false;
                    self.applied_at = Some(generation);
                    gate.set_paused_applied(false);
                }
                Err(e) => {
                    warn!(error = %e, "Resuming partitions for the app failed; will try again")
                }
            }
        } else {
            let tpl = match consumer.assignment() {
                Ok(tpl) => tpl,
                Err(e) => {
                    warn!(error = %e, "Reading the assignment failed; will try again");
                    return;
                }
            };
            match consumer.pause(&tpl) {
                Ok(()) => {
                    if !self.paused {
                        info!(
                            partitions = tpl.count(),
                            "App not ready; paused fetching of every assigned partition"
                        );
                    }
                    self.paused = true;
                    self.applied_at = Some(generation);
                    gate.set_paused_applied(true);
                }
                Err(e) => {
                    warn!(error = %e, "Pausing partitions for the app failed; will try again")
                }
            }
        }
    }
}
