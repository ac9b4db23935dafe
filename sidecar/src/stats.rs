//! The pipeline's observability handle: counters, gauges and per-partition state.
//!
//! Plain atomics and small mutex-guarded maps, cheap to update from any stage and to read with
//! [`Stats::snapshot`], plus the readiness [`Gate`], the poll loop's heartbeat and the delivery
//! stage's histograms ([`DeliveryMetrics`]). No HTTP server here: `/metrics`, `/status`,
//! `/healthz` and `/readyz` are built on top of it in `admin` and `metrics`.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    gate::Gate,
    metrics::DeliveryMetrics,
    record::Tp,
    shutdown::{Shutdown, ShutdownTimes},
};

/// Live counters, shared by every stage through an `Arc`.
#[derive(Debug)]
pub struct Stats {
    /// Records handed over by the consumer.
    pub received: AtomicU64,
    /// Records the endpoint accepted.
    pub delivered: AtomicU64,
    /// Attempts that ended in a retry (including app-down waits).
    pub retried: AtomicU64,
    /// Attempts that found the endpoint unreachable (these do not count against maxAttempts).
    pub app_down: AtomicU64,
    /// Records produced to a dead-letter topic and acknowledged by the broker.
    pub dead_lettered: AtomicU64,
    /// Records skipped (`onExhausted: skip`, or the app's `skip` action).
    pub skipped: AtomicU64,
    /// Dead-letter produce attempts that failed (retried).
    pub dead_letter_failures: AtomicU64,
    /// HTTP requests in flight right now.
    pub in_flight: AtomicU64,
    /// Synchronous commits acknowledged by Kafka / commits refused.
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Partitions whose position was out of range and resumed at the earliest retained record.
    pub offset_resets: AtomicU64,
    /// Records not delivered because a previous owner of their partition had finished them
    /// (its commit's metadata said so; `offsets/carry.rs`).
    pub finished_skipped: AtomicU64,
    /// Commits whose metadata could not list every unfinished record (`progress.rs`); records
    /// finished above those left out may be delivered again after a handover.
    pub metadata_overflows: AtomicU64,
    /// Most bytes of commit metadata the broker takes (lowered when it refuses more).
    metadata_max_len: std::sync::atomic::AtomicUsize,
    /// Records dead-lettered because they were in flight during `delivery.maxCrashes` crashes.
    pub crash_looped: AtomicU64,
    /// Rebalance events (assign or revoke) seen.
    pub rebalances: AtomicU64,
    /// Times the poll loop stopped taking records because a buffer (one partition's, or all
    /// partitions' together) was full.
    pub pauses: AtomicU64,
    /// Records (and their bytes) taken from Kafka and not yet finished, all partitions together,
    /// as of the poll loop's last round; and the most there ever were.
    pub buffered_records: AtomicU64,
    pub buffered_bytes: AtomicU64,
    pub buffered_records_peak: AtomicU64,
    /// Of those, the records (and bytes) parked behind a record that has not finished for
    /// `dispatch::HOLD_AFTER`, as of the poll loop's last round.
    pub parked_records: AtomicU64,
    pub parked_bytes: AtomicU64,
    /// Times a partition stopped being read because of a [`Stall`].
    pub stalls: AtomicU64,
    /// Records in flight when a revoke or shutdown started draining (waited for, not dropped).
    pub drain_waited: AtomicU64,
    /// Kafka headers left out of a record because their name could not be read (not UTF-8).
    pub headers_unreadable: AtomicU64,
    /// Panics caught while processing a record (a sidecar bug; `dispatch` supervises lanes).
    pub lane_panics: AtomicU64,
    /// Whether the consumer currently holds an assignment from the group.
    pub joined: AtomicBool,
    /// The replica left the group because its app was not ready for `unreadyTimeout`.
    pub left_for_app: AtomicBool,
    /// Records librdkafka still queues for partitions this replica no longer holds (from its
    /// statistics; revoked queues are drained, so this returns to 0).
    pub unassigned_fetch_queued: AtomicU64,
    /// librdkafka statistics reports received.
    pub librdkafka_reports: AtomicU64,
    /// App readiness: fetching is paused while it is closed.
    pub gate: Gate,
    /// The limit on requests in flight now (`concurrency.rs`; `maxInFlight` when fixed).
    pub concurrency_limit: AtomicU64,
    /// Records sent and not yet committed (`commit/window.rs`), refreshed every `commitInterval`.
    pub uncommitted: AtomicU64,
    /// Endpoint outages the breaker saw begin (`outage.rs`).
    pub endpoint_outages: AtomicU64,
    /// The outage going on, if one is.
    endpoint_outage: Mutex<Option<EndpointOutage>>,
    /// The shutdown's deadline and progress (`shutdown`).
    pub shutdown: Shutdown,
    /// Attempt duration, end-to-end latency, failed attempts by class.
    pub metrics: DeliveryMetrics,
    /// When these stats were created; the heartbeat counts from here.
    started: Instant,
    /// Milliseconds after `started` of the poll loop's last tick.
    heartbeat_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Set when a record could not be given an outcome (see [`Stats::set_broken`]).
    broken: Mutex<Option<String>>,
    partitions: Mutex<BTreeMap<Tp, PartitionStats>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            received: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            app_down: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            dead_letter_failures: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            offset_resets: AtomicU64::new(0),
            finished_skipped: AtomicU64::new(0),
            metadata_overflows: AtomicU64::new(0),
            metadata_max_len: std::sync::atomic::AtomicUsize::new(crate::progress::DEFAULT_MAX_LEN),
            crash_looped: AtomicU64::new(0),
            rebalances: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
            buffered_records: AtomicU64::new(0),
            buffered_bytes: AtomicU64::new(0),
            buffered_records_peak: AtomicU64::new(0),
            parked_records: AtomicU64::new(0),
            parked_bytes: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            drain_waited: AtomicU64::new(0),
            headers_unreadable: AtomicU64::new(0),
            lane_panics: AtomicU64::new(0),
            joined: AtomicBool::new(false),
            left_for_app: AtomicBool::new(false),
            unassigned_fetch_queued: AtomicU64::new(0),
            librdkafka_reports: AtomicU64::new(0),
            gate: Gate::default(),
            concurrency_limit: AtomicU64::new(0),
            uncommitted: AtomicU64::new(0),
            endpoint_outages: AtomicU64::new(0),
            endpoint_outage: Mutex::new(None),
            shutdown: Shutdown::default(),
            metrics: DeliveryMetrics::default(),
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            last_error: Mutex::new(None),
            broken: Mutex::new(None),
            partitions: Mutex::new(BTreeMap::new()),
        }
    }
}

/// What is known about one assigned partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionStats {
    /// Last offset Kafka acknowledged as committed by this replica (the next to consume):
    /// synchronous commits (revoke, shutdown, at-most-once).
    pub committed: Option<i64>,
    /// Last offset sent by the periodic asynchronous commit (librdkafka does not report its
    /// outcome; a lost one is re-sent synchronously at revoke and shutdown).
    pub commit_requested: Option<i64>,
    /// Whether the sidecar stopped taking this partition's records because its buffer is full
    /// (until half empty; librdkafka then stops fetching it once its own queue is full).
    pub paused: bool,
    /// Records between the committed offset and the partition's end, from librdkafka's
    /// statistics (`consumer_lag`; `None` until known).
    pub lag: Option<i64>,
    /// Records dispatched and not finished: in flight, queued in a lane or waiting to retry
    /// (refreshed every `commitInterval`).
    pub pending: u64,
    /// Of those, records parked behind a record that has not finished for
    /// `dispatch::HOLD_AFTER` (refreshed about every second).
    pub parked: u64,
    /// Timestamp (ms since the epoch) of the lowest unfinished record, where the next commit
    /// stands, when it has one (refreshed every `commitInterval`).
    pub oldest_unfinished_ms: Option<i64>,
    /// Records of this partition the group dead-lettered, over every owner, as the commits
    /// carry it (refreshed every `commitInterval`).
    pub dead_lettered: Option<u64>,
    /// Why the sidecar stopped reading this partition although its buffer has room, if it did.
    pub stalled: Option<Stall>,
}

/// Why the sidecar stopped reading a partition because of records that do not finish. No
/// record is ever dropped or skipped for it: the partition is read again once they move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Stall {
    /// `partition` order: the partition's current record has not finished for
    /// `dispatch::HOLD_AFTER`; nothing behind it can start, as the order requires.
    RecordNotFinishing,
    /// Records parked behind records that do not finish reached the partition's bound.
    PartitionParkedBound,
    /// Records parked behind records that do not finish reached the bound of all partitions
    /// together; only partitions that would park more stop.
    ReplicaParkedBound,
}

impl Stall {
    pub const ALL: [Stall; 3] = [
        Stall::RecordNotFinishing,
        Stall::PartitionParkedBound,
        Stall::ReplicaParkedBound,
    ];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::RecordNotFinishing => "record_not_finishing",
            Self::PartitionParkedBound => "partition_parked_bound",
            Self::ReplicaParkedBound => "replica_parked_bound",
        }
    }

    /// What it means, for a person.
    pub fn message(self) -> &'static str {
        match self {
            Self::RecordNotFinishing => {
                "partition order: a record has not finished for 20s (blocked, retried without end, or its dead-letter produce failing), so nothing behind it may start; other partitions go on"
            }
            Self::PartitionParkedBound => {
                "records waiting behind records that do not finish (a blocked key or record) reached the partition's parked bound; the partition is read again once they move, nothing is skipped"
            }
            Self::ReplicaParkedBound => {
                "records waiting behind records that do not finish reached the parked bound of all partitions together; partitions with such records are read again once they move, nothing is skipped"
            }
        }
    }

    /// Encodes `stall` for an atomic cell (0 = none).
    pub fn code(stall: Option<Stall>) -> u8 {
        match stall {
            None => 0,
            Some(Self::RecordNotFinishing) => 1,
            Some(Self::PartitionParkedBound) => 2,
            Some(Self::ReplicaParkedBound) => 3,
        }
    }

    /// Decodes [`Stall::code`].
    pub fn from_code(code: u8) -> Option<Stall> {
        match code {
            1 => Some(Self::RecordNotFinishing),
            2 => Some(Self::PartitionParkedBound),
            3 => Some(Self::ReplicaParkedBound),
            _ => None,
        }
    }
}

/// An endpoint outage going on, for `/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOutage {
    /// `open` (waiting to probe) or `probing` (one request out).
    pub state: &'static str,
    /// How the records failed: `5xx`, `429`, `404`, `401/403`, `3xx`, `timeout`,
    /// `connection error`.
    pub class: &'static str,
    /// When it began, in milliseconds since the Unix epoch.
    pub since_ms: u64,
}

/// The partitions not being read because of a [`Stall`], for `/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stalled {
    /// The most severe reason among them (replica bound, then partition bound, then a record).
    pub reason: Stall,
    pub message: &'static str,
    /// `<topic>/<partition>` of every stalled partition, whatever its reason.
    pub partitions: Vec<String>,
}

/// A point-in-time copy of [`Stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    pub received: u64,
    pub delivered: u64,
    pub retried: u64,
    pub app_down: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    pub dead_letter_failures: u64,
    pub in_flight: u64,
    pub commits: u64,
    pub commit_failures: u64,
    pub offset_resets: u64,
    pub finished_skipped: u64,
    pub metadata_overflows: u64,
    pub crash_looped: u64,
    pub rebalances: u64,
    pub pauses: u64,
    pub buffered_records: u64,
    pub buffered_bytes: u64,
    pub buffered_records_peak: u64,
    pub parked_records: u64,
    pub parked_bytes: u64,
    pub stalls: u64,
    pub drain_waited: u64,
    pub headers_unreadable: u64,
    pub lane_panics: u64,
    pub joined: bool,
    pub left_for_app: bool,
    pub unassigned_fetch_queued: u64,
    pub librdkafka_reports: u64,
    /// Whether the app answers (readiness gate open).
    pub gate_open: bool,
    /// Whether every assigned partition is paused because the app does not answer, an endpoint
    /// outage is on or a pause was requested.
    pub gate_paused: bool,
    /// Whether a pause was requested (the control file, `control.rs`): no record is taken while
    /// it lasts; the partitions stay assigned.
    pub paused: bool,
    /// Time fetching was paused for the app, startup included, in milliseconds.
    pub app_not_ready_ms: u64,
    /// Times the app stopped answering after it had answered.
    pub app_outages: u64,
    /// The limit on requests in flight now (`maxInFlight` unless `concurrency: adaptive`).
    pub concurrency_limit: u64,
    /// Records sent to the app whose end is not yet committed (at most `maxUncommitted`).
    pub uncommitted: u64,
    /// Endpoint outages seen (every record failing alike), and the one going on, if any.
    pub endpoint_outages: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_outage: Option<EndpointOutage>,
    /// Time since the poll loop last ticked, in milliseconds.
    pub poll_age_ms: u64,
    pub last_error: Option<String>,
    /// Why this replica must be restarted, when it must (liveness then fails).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
    /// Partitions the sidecar stopped reading because of records that do not finish (absent
    /// when none): the bound reached and which partitions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalled: Option<Stalled>,
    /// While and after shutting down: when it was signalled, its deadline, when it drained
    /// and finished (absent before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<ShutdownTimes>,
    /// Keyed by `<topic>/<partition>`.
    pub partitions: BTreeMap<String, PartitionStats>,
}

impl Stats {
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// The poll loop is alive: called on every tick.
    pub fn beat(&self) {
        self.heartbeat_ms
            .store(self.started.elapsed().as_millis() as u64, Relaxed);
    }

    /// Time since the poll loop last ticked (since these stats were created, before the first).
    pub fn poll_age(&self) -> Duration {
        let last = Duration::from_millis(self.heartbeat_ms.load(Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Records a partition's lag from librdkafka's statistics (negative = unknown).
    pub fn set_lag(&self, tp: &Tp, lag: i64) {
        if let Some(p) = self.lock_partitions().get_mut(tp) {
            p.lag = (lag >= 0).then_some(lag);
        }
    }

    /// Records a partition's unfinished record count.
    pub fn set_pending(&self, tp: &Tp, pending: usize) {
        if let Some(p) = self.lock_partitions().get_mut(tp) {
            p.pending = pending as u64;
        }
    }

    /// Records what the offset tracker knows of a partition's next commit.
    pub fn set_progress(&self, tp: &Tp, oldest_unfinished_ms: Option<i64>, dead: Option<u64>) {
        if let Some(p) = self.lock_partitions().get_mut(tp) {
            p.oldest_unfinished_ms = oldest_unfinished_ms;
            p.dead_lettered = dead;
        }
    }

    /// Records the endpoint outage going on (`None`: over); counts one when it begins.
    pub fn set_endpoint_outage(&self, outage: Option<EndpointOutage>) {
        let mut now = self
            .endpoint_outage
            .lock()
            .expect("invariant: stats lock never poisoned");
        if now.is_none() && outage.is_some() {
            Self::incr(&self.endpoint_outages);
        }
        *now = outage;
    }

    /// The endpoint outage going on, if any.
    pub fn endpoint_outage(&self) -> Option<EndpointOutage> {
        self.endpoint_outage
            .lock()
            .expect("invariant: stats lock never poisoned")
            .clone()
    }

    /// Every assigned partition and what is known about it.
    pub fn partitions(&self) -> Vec<(Tp, PartitionStats)> {
        self.lock_partitions()
            .iter()
            .map(|(tp, p)| (tp.clone(), p.clone()))
            .collect()
    }

    /// Records the most recent error worth showing an operator.
    /// Records whether the replica is out of the group for its app (see `pipeline/membership.rs`).
    pub fn set_left_for_app(&self, left: bool) {
        self.left_for_app.store(left, Relaxed);
        if left {
            self.joined.store(false, Relaxed);
        }
    }

    pub fn set_last_error(&self, error: impl Into<String>) {
        *self
            .last_error
            .lock()
            .expect("invariant: stats lock never poisoned") = Some(error.into());
    }

    /// Marks this replica as needing a restart: a record was left without an outcome (a panic
    /// that could not be recovered), so its partition's commit cannot move past it until the
    /// record is consumed again. Liveness (`/healthz`) fails from now on and Kubernetes restarts
    /// the pod; nothing committed passes the record, so the restart loses nothing. The first
    /// reason is kept.
    pub fn set_broken(&self, reason: impl Into<String>) {
        let mut broken = self
            .broken
            .lock()
            .expect("invariant: stats lock never poisoned");
        if broken.is_none() {
            *broken = Some(reason.into());
        }
    }

    /// Why this replica must be restarted, if it must.
    pub fn broken(&self) -> Option<String> {
        self.broken
            .lock()
            .expect("invariant: stats lock never poisoned")
            .clone()
    }

    /// Whether `tp` is assigned to this replica.
    pub fn is_assigned(&self, tp: &Tp) -> bool {
        self.lock_partitions().contains_key(tp)
    }

    pub fn partition_assigned(&self, tp: &Tp) {
        self.lock_partitions()
            .insert(tp.clone(), PartitionStats::default());
    }

    pub fn partition_revoked(&self, tp: &Tp) {
        self.lock_partitions().remove(tp);
    }

    /// Records why a partition is not read (or that it is read again).
    pub fn set_stalled(&self, tp: &Tp, stall: Option<Stall>) {
        if let Some(p) = self.lock_partitions().get_mut(tp) {
            p.stalled = stall;
        }
    }

    /// Records a partition's parked record count.
    pub fn set_parked(&self, tp: &Tp, parked: usize) {
        if let Some(p) = self.lock_partitions().get_mut(tp) {
            p.parked = parked as u64;
        }
    }

    pub fn set_paused(&self, tp: &Tp, paused: bool) {
        if let Some(p) = self.lock_partitions().get_mut(tp) {
            p.paused = paused;
        }
    }

    /// Most bytes of commit metadata to send.
    pub fn metadata_max_len(&self) -> usize {
        self.metadata_max_len.load(Relaxed)
    }

    /// The broker refused the metadata as too large: halve what is sent (down to none, which
    /// every broker takes). Returns the new limit.
    pub fn shrink_metadata_max_len(&self) -> usize {
        let now = self.metadata_max_len() / 2;
        let now = if now < 64 { 0 } else { now };
        self.metadata_max_len.store(now, Relaxed);
        now
    }

    /// A commit's metadata could not list every unfinished record.
    pub fn metadata_overflow(&self) {
        Self::incr(&self.metadata_overflows);
    }

    pub fn set_committed(&self, tp: &Tp, offset: i64) {
        if let Some(p) = self.lock_partitions().get_mut(tp) {
            p.committed = Some(p.committed.map_or(offset, |c| c.max(offset)));
        }
    }

    pub fn set_commit_requested(&self, tp: &Tp, offset: i64) {
        if let Some(p) = self.lock_partitions().get_mut(tp) {
            p.commit_requested = Some(p.commit_requested.map_or(offset, |c| c.max(offset)));
        }
    }

    fn lock_partitions(&self) -> std::sync::MutexGuard<'_, BTreeMap<Tp, PartitionStats>> {
        self.partitions
            .lock()
            .expect("invariant: stats lock never poisoned")
    }

    /// Copies every value.
    pub fn snapshot(&self) -> StatsSnapshot {
        let partitions: BTreeMap<String, PartitionStats> = self
            .lock_partitions()
            .iter()
            .map(|(tp, p)| (tp.to_string(), p.clone()))
            .collect();
        let stalled = partitions
            .values()
            .filter_map(|p| p.stalled)
            .max()
            .map(|reason| Stalled {
                reason,
                message: reason.message(),
                partitions: partitions
                    .iter()
                    .filter(|(_, p)| p.stalled.is_some())
                    .map(|(tp, _)| tp.clone())
                    .collect(),
            });
        StatsSnapshot {
            received: self.received.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            retried: self.retried.load(Relaxed),
            app_down: self.app_down.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            dead_letter_failures: self.dead_letter_failures.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            commits: self.commits.load(Relaxed),
            commit_failures: self.commit_failures.load(Relaxed),
            offset_resets: self.offset_resets.load(Relaxed),
            finished_skipped: self.finished_skipped.load(Relaxed),
            metadata_overflows: self.metadata_overflows.load(Relaxed),
            crash_looped: self.crash_looped.load(Relaxed),
            rebalances: self.rebalances.load(Relaxed),
            pauses: self.pauses.load(Relaxed),
            buffered_records: self.buffered_records.load(Relaxed),
            buffered_bytes: self.buffered_bytes.load(Relaxed),
            buffered_records_peak: self.buffered_records_peak.load(Relaxed),
            parked_records: self.parked_records.load(Relaxed),
            parked_bytes: self.parked_bytes.load(Relaxed),
            stalls: self.stalls.load(Relaxed),
            drain_waited: self.drain_waited.load(Relaxed),
            headers_unreadable: self.headers_unreadable.load(Relaxed),
            lane_panics: self.lane_panics.load(Relaxed),
            joined: self.joined.load(Relaxed),
            left_for_app: self.left_for_app.load(Relaxed),
            unassigned_fetch_queued: self.unassigned_fetch_queued.load(Relaxed),
            librdkafka_reports: self.librdkafka_reports.load(Relaxed),
            gate_open: self.gate.is_open(),
            gate_paused: self.gate.paused_applied(),
            paused: self.gate.paused(),
            app_not_ready_ms: self.gate.closed_time().as_millis() as u64,
            app_outages: self.gate.closures(),
            concurrency_limit: self.concurrency_limit.load(Relaxed),
            uncommitted: self.uncommitted.load(Relaxed),
            endpoint_outages: self.endpoint_outages.load(Relaxed),
            endpoint_outage: self.endpoint_outage(),
            poll_age_ms: self.poll_age().as_millis() as u64,
            last_error: self
                .last_error
                .lock()
                .expect("invariant: stats lock never poisoned")
                .clone(),
            broken: self.broken(),
            stalled,
            shutdown: self.shutdown.times(),
            partitions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_metadata_halves_what_is_sent_down_to_none() {
        let stats = Stats::default();
        assert_eq!(stats.metadata_max_len(), crate::progress::DEFAULT_MAX_LEN);
        assert_eq!(stats.shrink_metadata_max_len(), 1900);
        let mut last = 1900;
        while last > 0 {
            let now = stats.shrink_metadata_max_len();
            assert!(now < last);
            last = now;
        }
        assert_eq!(
            stats.metadata_max_len(),
            0,
            "none at all: every broker takes that"
        );
        assert_eq!(stats.shrink_metadata_max_len(), 0);
    }
}
