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
    while !shutdown.is_cancelled() && !abort.is_cancelled() {
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
            commit::commit_async(&consumer, &shared.tracker, &shared.stats);
            next_commit = Instant::now() + shared.commit_interval;
        }
    }
    if abort.is_cancelled() {
        info!("Aborting: no drain, no further commit");
        shared.stop.cancel();
    } else {
        info!("Shutting down: draining in-flight records");
        let deadline = Instant::now() + shared.drain_timeout;
        let states: Vec<Arc<PartitionState>> =
            shared.lock_partitions().drain().map(|(_, s)| s).collect();
        shared.stop.cancel();
        shared.drain(&consumer, &states);
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
