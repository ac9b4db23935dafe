//! Held lanes (see the parent module's docs): finding the lanes whose current record has not
//! finished for the hold time and parking their records ([`Dispatcher::hold_stuck`]), and the
//! poll thread's verdict on reading a partition that has them ([`Dispatcher::stall`]).

use std::{
    sync::{Arc, atomic::Ordering::SeqCst},
    time::Instant,
};

use kcp_crds::v1alpha1::Ordering;

use super::{Dispatcher, HOLD_CHECK, HOLD_GAP, PartitionState};
use crate::stats::Stall;

/// The poll thread's hold clock (see [`Dispatcher::hold_stuck`]).
pub(super) struct HoldWatch {
    /// Last call, last check, and since when the poll thread has been calling without a gap.
    pub(super) last_call: Option<Instant>,
    pub(super) last_check: Option<Instant>,
    pub(super) since: Instant,
    /// Partitions marked `hold_refused` by the last check.
    pub(super) refused: Vec<Arc<PartitionState>>,
}

impl Dispatcher {
    /// Holds every lane whose current record has not finished for the hold time (see the module
    /// docs), unless its partition's parked records or those of all partitions are at their
    /// bound: such a partition is marked `hold_refused` instead. Called by the poll thread on
    /// every round while it takes records; looks at the lanes at most every [`HOLD_CHECK`].
    /// A gap of more than [`HOLD_GAP`] between calls restarts the clock: the poll thread does not
    /// take records while the app is not ready, and records waiting for the app are not stuck.
    /// Returns whether it looked.
    pub fn hold_stuck(&self, now: Instant) -> bool {
        let mut watch = self.lock_watch();
        if watch
            .last_call
            .is_none_or(|t| now.saturating_duration_since(t) > HOLD_GAP)
        {
            watch.since = now;
        }
        watch.last_call = Some(now);
        if watch
            .last_check
            .is_some_and(|t| now.saturating_duration_since(t) < HOLD_CHECK)
        {
            return false;
        }
        watch.last_check = Some(now);
        for p in watch.refused.drain(..) {
            p.hold_refused.store(false, SeqCst);
        }
        let Some(cutoff) = now.checked_sub(self.hold_after) else {
            return true;
        };
        if watch.since > cutoff {
            return true;
        }
        // Handles on held records, dropped after the lock: one may be the last.
        let mut heads = Vec::new();
        let mut refused = Vec::new();
        for lane in self.lock().values_mut() {
            if lane.held || lane.started > cutoff {
                continue;
            }
            let p = &lane.partition;
            if p.buffer.parked_full() || p.total.parked_full() {
                if !p.hold_refused.swap(true, SeqCst) {
                    refused.push(Arc::clone(p));
                }
                continue;
            }
            lane.held = true;
            p.held_lanes.fetch_add(1, SeqCst);
            for head in lane.heads() {
                head.park();
                heads.push(head);
            }
            for job in &lane.queue {
                job.park();
            }
        }
        watch.refused = refused;
        drop(watch);
        drop(heads);
        true
    }

    /// Why `state` must not be read now, if it must not: records it takes could be parked (a
    /// lane of it is held, or should be) and a bound stops that, or, in `partition` order, its
    /// lane is held and nothing behind it may start. Called by the poll thread only (it moves
    /// the parked bounds' hysteresis).
    pub fn stall(&self, state: &PartitionState) -> Option<Stall> {
        let held = state.held_lanes() > 0;
        if !held && !state.hold_refused.load(SeqCst) {
            return None;
        }
        if held && self.ordering == Ordering::Partition {
            return Some(Stall::RecordNotFinishing);
        }
        if state.buffer.parked_at_bound() {
            return Some(Stall::PartitionParkedBound);
        }
        if state.total.parked_at_bound() {
            return Some(Stall::ReplicaParkedBound);
        }
        None
    }
}
