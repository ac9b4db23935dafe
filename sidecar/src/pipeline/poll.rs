//! The poll loop: the consumer's own OS thread.
//!
//! Each assigned partition has its own librdkafka queue (split off in the assign callback,
//! `rebalance.rs`). The loop serves the consumer's queue (rebalance and commit callbacks run
//! here), takes records from every partition queue whose buffer has room, copies each record
//! out, tracks it as dispatched and hands it to the lanes; the committer thread it starts
//! commits (`commit/committer.rs`).
//! A partition whose buffer is full is simply not read until it is half empty: librdkafka stops
//! fetching it once its own small prefetch queue is full, and nothing already fetched is
//! thrown away (a `pause` would purge it and cost a fetch round on resume). The consumer is
//! polled on every round, so `max.poll.interval.ms` is never exceeded. When there is nothing to
//! take the thread parks until a queue becomes non-empty, a full partition has room again, or
//! [`IDLE_WAIT`] passes. At shutdown it stops taking records, drains, stops the committer,
//! commits and closes the consumer.

use std::{
    sync::{
        Arc,
        atomic::Ordering::{Relaxed, SeqCst},
    },
    time::{Duration, Instant},
};

use kcp_crds::v1alpha1::Guarantee;
use rdkafka::{
    ClientConfig, Message, TopicPartitionList,
    consumer::{BaseConsumer, Consumer, base_consumer::PartitionQueue},
    message::BorrowedMessage,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{PipelineError, Shared, membership::Membership};
use crate::{
    commit,
    consumer::{ConsumerCtx, ConsumerError},
    dispatch::{Job, PartitionState, Waker},
    offsets::Dispatched,
    record::{Record, Tp},
    stats::Stats,
};

/// How long the loop sleeps when there is nothing to take and nobody wakes it; bounds how fast
/// shutdown, a gate change or a missed group event is noticed.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// How long closing the consumer may take once everything is committed; well inside the
/// operator's termination grace margin (`DRAIN_MARGIN_SECONDS`, 10 s).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the shutdown commit polls between attempts.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// Most records taken from one queue in one round.
const TAKE_BATCH: usize = 64;
/// Fewest records taken from one queue in one round, however many partitions share the total.
const MIN_TAKE: usize = 8;

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
        initial_offset: shared.initial_offset,
        resets: Arc::clone(&shared.resets),
        inherited: Default::default(),
    };
    let mut consumer: BaseConsumer<ConsumerCtx> = config
        .create_with_context(ctx)
        .map_err(|e| PipelineError::Consumer(ConsumerError::Create(e)))?;
    let waker = Waker::current();
    {
        // Group events (rebalances, commit results) wake the loop too.
        let waker = waker.clone();
        consumer.set_nonempty_callback(move || waker.wake());
    }
    let consumer = Arc::new(consumer);
    shared.attach(&consumer, waker);
    let result = consume(&consumer, &topics, &shared, &shutdown, &abort);
    // The partition queues hold the consumer: drop them first, so that dropping the last handle
    // below closes the consumer (leaves the group).
    shared.lock_queues().clear();
    if Arc::strong_count(&consumer) != 1 {
        warn!("The consumer is still referenced; it may not leave the group cleanly");
    }
    shared.stats.joined.store(false, Relaxed);
    close(consumer);
    result
}

/// Closes the consumer: leaves the group (unless static membership) and runs the revoke
/// callback, which finds nothing left to drain. Waits at most [`CLOSE_TIMEOUT`]: everything
/// that matters (drain, final commit) is done by now, and librdkafka's close can wait for a
/// rebalance in progress to finish (seen in the reliability suite: a sidecar stopped while
/// another joined never exited). Past the limit the process goes on to exit; the group drops
/// this member after `session.timeout.ms`, and the next owner resumes from the commit.
fn close(consumer: Arc<BaseConsumer<ConsumerCtx>>) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("kcp-close".into())
        .spawn(move || {
            drop(consumer);
            let _ = done_tx.send(());
        });
    if let Err(e) = spawned {
        warn!(error = %e, "Could not start the thread that closes the consumer; not waiting for it");
        return;
    }
    match done_rx.recv_timeout(CLOSE_TIMEOUT) {
        Ok(()) => info!("Consumer closed"),
        Err(_) => warn!(
            timeout_s = CLOSE_TIMEOUT.as_secs(),
            "Leaving the group did not finish in time (a rebalance in progress?); exiting anyway: offsets are committed, and the group drops this member after session.timeout.ms"
        ),
    }
}

fn consume(
    consumer: &Arc<BaseConsumer<ConsumerCtx>>,
    topics: &[String],
    shared: &Shared,
    shutdown: &CancellationToken,
    abort: &CancellationToken,
) -> Result<(), PipelineError> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(|source| {
        PipelineError::Consumer(ConsumerError::Subscribe {
            topics: topics.to_vec(),
            source,
        })
    })?;
    info!(?topics, "Consuming");
    let mut committer = Some(
        commit::committer::Committer::start(commit::committer::Parts {
            consumer: Arc::downgrade(consumer),
            tracker: Arc::clone(&shared.tracker),
            stats: Arc::clone(&shared.stats),
            window: Arc::clone(&shared.window),
            interval: shared.commit_interval,
        })
        .map_err(PipelineError::Thread)?,
    );
    let mut next_report = Instant::now() + shared.commit_interval;
    let mut gate = GateSync::default();
    let mut membership = Membership::subscribed(topics, shared.unready_timeout);
    let mut next_partition = 0;
    while !shutdown.is_cancelled() && !abort.is_cancelled() {
        shared.stats.beat();
        membership.apply(consumer, &shared.stats);
        drain_revoked(shared);
        gate.apply(consumer, shared);
        let mut taken = serve_events(consumer, shared);
        if shared.stats.gate.takes_records() && commit_ahead(consumer, shared) {
            taken += take_records(shared, &mut next_partition);
            commit_ahead(consumer, shared);
        }
        let (records, bytes) = shared.total.pending();
        shared.stats.buffered_records.store(records as u64, Relaxed);
        shared.stats.buffered_bytes.store(bytes as u64, Relaxed);
        if Instant::now() >= next_report {
            let mut tps = Vec::new();
            for state in shared.lock_partitions().values() {
                shared.stats.set_pending(&state.tp, state.pending().0);
                tps.push(state.tp.clone());
            }
            {
                let tracker = shared
                    .tracker
                    .lock()
                    .expect("invariant: tracker lock never poisoned");
                for tp in &tps {
                    shared.stats.set_progress(
                        tp,
                        tracker.oldest_unfinished_timestamp(tp),
                        tracker.dead_letter_count(tp),
                    );
                }
            }
            shared
                .stats
                .uncommitted
                .store(u64::from(shared.window.open()), Relaxed);
            next_report = Instant::now() + shared.commit_interval;
        }
        if taken == 0 {
            // Woken early by a record arriving on an empty partition queue, a group event, or a
            // full partition that has room again (`dispatch::Waker`).
            std::thread::park_timeout(IDLE_WAIT);
        }
    }
    if abort.is_cancelled() {
        info!("Aborting: no drain, no further commit");
        if let Some(c) = committer.take() {
            c.stop(Duration::ZERO);
        }
        shared.stop.cancel();
    } else {
        info!("Shutting down: finishing dispatched records");
        // One drainTimeout for the whole sequence, counted from the signal (`shutdown.rs`), even
        // when the signal came while a revoke held this thread: finish what was dispatched
        // while it makes progress, then stop, wait for what is in flight, and commit.
        let deadline = shared.stats.shutdown.begin(shared.drain_timeout);
        let states: Vec<Arc<PartitionState>> =
            shared.lock_partitions().drain().map(|(_, s)| s).collect();
        shared.finish_dispatched(&states, deadline);
        shared.stop.cancel();
        shared.drain_until(&states, deadline);
        // The committer stops before the last commit, which then carries everything.
        if let Some(c) = committer.take() {
            c.stop(
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(commit::SYNC_COMMIT_TIMEOUT),
            );
        }
        shared.stats.shutdown.drained();
        final_commit(consumer, shared, deadline);
    }
    Ok(())
}

/// Most records dropped from one revoked queue per round (the loop stays responsive).
const REVOKED_DRAIN_PER_ROUND: usize = 10_000;

/// Empties the queues of revoked partitions: their records were not taken (uncommitted, the
/// next owner consumes them), and until read they pin librdkafka's fetch buffers. A queue is
/// let go once a round finds it empty.
fn drain_revoked(shared: &Shared) {
    let mut revoked = shared
        .revoked_queues
        .lock()
        .expect("invariant: revoked queues lock never poisoned");
    revoked.retain(|fetch| {
        let mut dropped = 0;
        while dropped < REVOKED_DRAIN_PER_ROUND {
            match fetch.queue.poll(Duration::ZERO) {
                Some(_) => dropped += 1,
                None => {
                    // librdkafka drops outdated records itself while the queue is read, so
                    // `dropped` undercounts what was released (kcp_unassigned_fetch_queued_records).
                    debug!(tp = %fetch.state.tp, dropped, "Drained a revoked partition's queue");
                    return false;
                }
            }
        }
        true
    });
}

/// Serves the consumer's own queue: rebalance and commit callbacks, errors, and records of a
/// partition whose queue could not be split (or that were fetched before it was). Returns the
/// records taken.
fn serve_events(consumer: &BaseConsumer<ConsumerCtx>, shared: &Shared) -> usize {
    let mut taken = 0;
    // A served event also reads as "nothing"; a few more polls catch events queued together.
    // An event still left is served on the next round, at most IDLE_WAIT later.
    let mut idle = 0;
    while idle < 3 && taken < TAKE_BATCH {
        match consumer.poll(Duration::ZERO) {
            None => idle += 1,
            Some(Ok(message)) => {
                let tp = Tp::new(message.topic(), message.partition());
                match shared.partition(&tp) {
                    Some(state) => accept(shared, &state, &message),
                    None => {
                        debug!(%tp, offset = message.offset(), "Record for a partition not assigned; dropped")
                    }
                }
                taken += 1;
            }
            Some(Err(e)) => {
                warn!(error = %e, "Consume error; continuing");
                shared.stats.set_last_error(format!("consume: {e}"));
            }
        }
    }
    taken
}

/// Takes records from each partition's own queue while its buffer has room, at most
/// a fair share of the total buffer per partition per round (between [`MIN_TAKE`] and
/// [`TAKE_BATCH`]). A full partition is left alone (librdkafka stops
/// fetching it once its small prefetch queue is full; nothing is purged, unlike a pause) until
/// it is half empty again. Each round starts at `next`, the partition after the one where the
/// total buffer filled last round, so with many partitions behind every one gets its turn
/// instead of the first few in map order taking all the room. Returns the records taken.
///
/// Records that do not finish (see `dispatch`, "Held lanes") are parked by the dispatcher,
/// asked here on every round ([`Dispatcher::hold_stuck`](crate::dispatch::Dispatcher::hold_stuck)),
/// so they never hold the working buffers the other keys and partitions need. A partition that
/// could park more records past their bound, or, in `partition` order, whose record does not
/// finish, is not read ([`Dispatcher::stall`](crate::dispatch::Dispatcher::stall)): stopping to
/// read is the only answer that never drops or skips a record. Each change is reported
/// ([`note_stall`]).
fn take_records(shared: &Shared, next: &mut usize) -> usize {
    if shared.dispatcher.hold_stuck(Instant::now()) {
        for state in shared.lock_partitions().values() {
            shared.stats.set_parked(&state.tp, state.buffer.parked().0);
        }
    }
    let (parked, parked_bytes) = shared.total.parked();
    shared.stats.parked_records.store(parked as u64, Relaxed);
    shared
        .stats
        .parked_bytes
        .store(parked_bytes as u64, Relaxed);
    let queues = shared.lock_queues();
    for fetch in queues.values() {
        note_stall(shared, &fetch.state, shared.dispatcher.stall(&fetch.state));
    }
    if !shared.total.restart_if_room() {
        return 0;
    }
    let count = queues.len();
    if count == 0 {
        return 0;
    }
    let first = *next % count;
    let share = (shared.total.budget().max_records / count).clamp(MIN_TAKE, TAKE_BATCH);
    // The map's order is stable while it is not changed; a rebalance only shifts the turn.
    let rotated = queues
        .values()
        .skip(first)
        .chain(queues.values().take(first));
    let mut taken = 0;
    'partitions: for (i, fetch) in rotated.enumerate() {
        let state = &fetch.state;
        if state.stalled().is_some() {
            continue;
        }
        let was_stopped = state.buffer.stopped.load(SeqCst);
        if !state.buffer.restart_if_room() {
            continue;
        }
        if was_stopped {
            shared.stats.set_paused(&state.tp, false);
        }
        for _ in 0..share {
            if shared.total.stop_if_full() {
                debug!(
                    "Buffer of every partition together full; taking no more records until half empty"
                );
                Stats::incr(&shared.stats.pauses);
                *next = first + i + 1;
                break 'partitions;
            }
            if state.buffer.stop_if_full() {
                debug!(tp = %state.tp, "Buffer full; taking no more records until half empty");
                shared.stats.set_paused(&state.tp, true);
                Stats::incr(&shared.stats.pauses);
                break;
            }
            if let Some(stall) = shared.dispatcher.stall(state) {
                note_stall(shared, state, Some(stall));
                break;
            }
            match fetch.queue.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) => {
                    accept(shared, state, &message);
                    // Exact: between takes the buffer only shrinks.
                    let (records, _) = shared.total.pending();
                    shared
                        .stats
                        .buffered_records_peak
                        .fetch_max(records as u64, Relaxed);
                    taken += 1;
                }
                Some(Err(e)) => {
                    warn!(tp = %state.tp, error = %e, "Consume error; continuing");
                    shared.stats.set_last_error(format!("consume: {e}"));
                }
            }
        }
    }
    taken
}

/// Records the poll thread's verdict on reading `state` and reports a change: the partition's
/// `stalled` in `/status` and `kcp_stalled_partitions`, `kcp_partition_stalls_total`, and a log
/// line when it starts (WARN for a record holding its partition in `partition` order, ERROR for a
/// parked bound reached: someone must unblock the records) and one when it ends, at most one
/// pair per partition every 10 s however often it comes and goes.
fn note_stall(shared: &Shared, state: &PartitionState, stall: Option<crate::stats::Stall>) {
    use crate::stats::Stall;
    let was = state.swap_stall(stall);
    if was == stall {
        return;
    }
    let tp = &state.tp;
    shared.stats.set_stalled(tp, stall);
    let Some(stall) = stall else {
        if state.stall_logged.swap(false, SeqCst) {
            info!(%tp, "Partition read again: the records that held it moved");
        }
        return;
    };
    if was.is_some() {
        // Another reason within the same stall: `/status` shows it.
        return;
    }
    Stats::incr(&shared.stats.stalls);
    let Some(suppressed) = state.stall_log.allow() else {
        return;
    };
    state.stall_logged.store(true, SeqCst);
    let (parked, parked_bytes) = state.buffer.parked();
    let (all_parked, all_parked_bytes) = shared.total.parked();
    let (bound, all_bound) = (state.buffer.budget(), shared.total.budget());
    let held_after_s = crate::dispatch::HOLD_AFTER.as_secs();
    match stall {
        Stall::RecordNotFinishing => warn!(%tp, held_after_s, suppressed,
            "Partition stalled: its current record has been unfinished for over held_after_s seconds (blocked, retried without end, or its dead-letter produce failing); partition order lets nothing behind it start, other partitions go on"),
        Stall::PartitionParkedBound => error!(%tp, parked, parked_bytes,
            bound_records = bound.max_parked_records, bound_bytes = bound.max_parked_bytes, suppressed,
            "Partition stalled: records waiting behind records that do not finish (a blocked key or record) reached the partition's parked bound; it is not read until they move (nothing is skipped): unblock the records"),
        Stall::ReplicaParkedBound => error!(%tp, all_parked, all_parked_bytes,
            bound_records = all_bound.max_parked_records, bound_bytes = all_bound.max_parked_bytes, suppressed,
            "Partition stalled: records waiting behind records that do not finish reached the parked bound of all partitions together; partitions with such records are not read until they move (nothing is skipped): unblock the records"),
    }
}

/// Commits everything finished, retrying until `deadline` (at least once more after it) when
/// the group refuses (a rebalance in progress): polling in between lets the consumer rejoin.
/// Records polled here are dropped, uncommitted.
fn final_commit(consumer: &Arc<BaseConsumer<ConsumerCtx>>, shared: &Shared, deadline: Instant) {
    loop {
        // Bounded: with no group coordinator librdkafka would wait for one indefinitely.
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_secs(1), commit::SYNC_COMMIT_TIMEOUT);
        match commit::commit_sync_within(
            consumer,
            &shared.tracker,
            None,
            &shared.stats,
            wait,
            true,
            &shared.window,
        ) {
            Ok(committed) => {
                info!(committed, "Committed at shutdown");
                return;
            }
            Err(e @ commit::CommitError::Timeout { .. }) => {
                warn!(error = %e, "Shutdown commit not answered; records finished since the last commit will be delivered again");
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

fn accept(shared: &Shared, state: &Arc<PartitionState>, message: &BorrowedMessage<'_>) {
    let tp = &state.tp;
    let record = Record::from_message(message, &tp.topic);
    Stats::incr(&shared.stats.received);
    if let Some(r) = shared.resets.resumed(tp, record.offset) {
        Stats::incr(&shared.stats.offset_resets);
        error!(%tp, was = r.was, resumed_at = r.at, removed = r.removed,
            "Position out of range: resumed at the earliest retained record; `removed` records were deleted (retention, a truncated or recreated topic) before they were delivered");
        shared.stats.set_last_error(format!(
            "{tp}: position {} out of range, resumed at {} ({} records removed before delivery)",
            r.was, r.at, r.removed
        ));
    }
    if record.unreadable_headers > 0 {
        // Delivered without those headers (see `record`); said once per period, not per record.
        shared
            .stats
            .headers_unreadable
            .fetch_add(record.unreadable_headers as u64, Relaxed);
        if let Some(suppressed) = shared.unreadable_log.allow() {
            warn!(%tp, offset = record.offset, headers = record.unreadable_headers, suppressed,
                "Record has Kafka headers whose name is not UTF-8; delivering it without them (kcp-headers-unreadable tells the app; at most one such line per 10s, `suppressed` records since the last)");
        }
    }
    let (epoch, prior) = {
        let mut tracker = shared
            .tracker
            .lock()
            .expect("invariant: tracker lock never poisoned");
        let epoch = match tracker.dispatched_at(tp, record.offset, record.timestamp) {
            Dispatched::Tracked(epoch) => epoch,
            Dispatched::AlreadyFinished => {
                // The previous owner finished it (its commit said so): not sent again.
                Stats::incr(&shared.stats.finished_skipped);
                return;
            }
            Dispatched::AlreadyUnfinished | Dispatched::NotAssigned => return,
        };
        if shared.guarantee == Guarantee::AtMostOnce {
            tracker.finished(tp, epoch, record.offset);
        }
        (epoch, tracker.state(tp, record.offset).unwrap_or_default())
    };
    let job = Job::new(record, Arc::clone(state))
        .in_epoch(epoch)
        .with_prior(prior);
    if shared.guarantee == Guarantee::AtMostOnce {
        // Sent only once the commit past it is acknowledged (`commit_ahead`).
        shared.lock_ahead().push(job);
    } else {
        shared.dispatcher.submit(job);
    }
}

/// At most once: commits what this round took (already finished in the tracker), then sends
/// it. One bounded synchronous commit per round, not per record. When the commit fails, the
/// records are held, not sent and not dropped, and the commit is tried again next round; the
/// loop takes no more records meanwhile. Returns whether nothing is held any more.
fn commit_ahead(consumer: &Arc<BaseConsumer<ConsumerCtx>>, shared: &Shared) -> bool {
    if shared.lock_ahead().is_empty() {
        return true;
    }
    match commit::commit_sync_within(
        consumer,
        &shared.tracker,
        None,
        &shared.stats,
        commit::SYNC_COMMIT_TIMEOUT,
        false,
        &shared.window,
    ) {
        Ok(_) => {
            let jobs = std::mem::take(&mut *shared.lock_ahead());
            for job in jobs {
                shared.dispatcher.submit(job);
            }
            true
        }
        Err(e) => {
            warn!(error = %e, held = shared.lock_ahead().len(),
                "At-most-once commit failed; holding the records (not sent) and trying again");
            false
        }
    }
}

/// Applies the readiness gate (`gate.rs`) to the consumer: while the app does not answer, an
/// endpoint outage is on or a pause was requested (`control.rs`), every assigned partition is
/// paused (the consumer keeps polling, so it stays in the group) and no record is taken; when
/// that ends, every assigned partition is resumed (a full buffer is handled by not reading its
/// queue, never by pausing). Re-applied after each rebalance, so a partition assigned while the
/// gate is closed starts paused and one assigned while it is open never stays paused from an
/// earlier assignment.
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
        let open = gate.takes_records();
        let generation = shared.stats.rebalances.load(Relaxed);
        if open != self.paused && self.applied_at == Some(generation) {
            return;
        }
        if open {
            let mut tpl = TopicPartitionList::new();
            for s in shared.lock_partitions().values() {
                tpl.add_partition(&s.tp.topic, s.tp.partition);
            }
            match consumer.resume(&tpl) {
                Ok(()) => {
                    if self.paused {
                        info!(
                            partitions = tpl.count(),
                            "Taking records again; resumed fetching"
                        );
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
                            paused_by_request = gate.paused(),
                            "App not ready, endpoint outage or paused by request; paused fetching of every assigned partition"
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

/// An assigned partition's own queue, and its state.
pub(crate) struct PartitionFetch {
    pub state: Arc<PartitionState>,
    pub queue: PartitionQueue<ConsumerCtx>,
}
