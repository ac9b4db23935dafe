//! Buffer budgets: how many records (and bytes) may be taken from Kafka and not yet finished.
//!
//! Two accounts per buffer. **Working** records are the ones that are moving: in flight,
//! waiting for a permit or a retry, or queued behind a record that finishes. They are flow
//! control: the poll thread stops taking records when a working buffer is full and starts again
//! once it is half empty. **Parked** records wait behind a record that has not finished for
//! [`HOLD_AFTER`](super::HOLD_AFTER) (a blocked key, a partition blocked in `partition` order, a
//! record retried without end); the dispatcher moves them there (`Dispatcher::hold_stuck`), so
//! that they no longer hold the working room the other keys and partitions need. Parked records
//! have their own, larger bound; reaching it stops reading the partitions that would park more,
//! and is reported (`Stall`). Pure accounting on atomics: no I/O, no locks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

/// Parked records allowed per working record, per partition and for all partitions together.
pub const PARKED_FACTOR: usize = 8;

/// How many records (and bytes) may be taken from Kafka and not yet finished: per partition
/// ([`Budget::for_max_in_flight`]) and for the whole sidecar ([`Budget::total_for_max_in_flight`]).
/// The poll thread stops taking records when a working buffer is full and starts again once it
/// is half empty. Meanwhile librdkafka keeps at most its own small prefetch queue per partition
/// (see `consumer::CONSUMER_DEFAULTS`) and stops fetching; nothing is paused or thrown away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Working records and bytes.
    pub max_records: usize,
    pub max_bytes: usize,
    /// Parked records and bytes, on top of the working ones.
    pub max_parked_records: usize,
    pub max_parked_bytes: usize,
}

impl Budget {
    /// One partition: enough buffered records for `max_in_flight` parallel requests on it,
    /// twice over (at least 64, 4 MiB); parked: [`PARKED_FACTOR`] times as many records, 8 MiB.
    pub fn for_max_in_flight(max_in_flight: u32) -> Self {
        let max_records = (max_in_flight as usize).saturating_mul(2).max(64);
        Self {
            max_records,
            max_bytes: 4 * 1024 * 1024,
            max_parked_records: max_records.saturating_mul(PARKED_FACTOR),
            max_parked_bytes: 8 * 1024 * 1024,
        }
    }

    /// All partitions together: what bounds memory whatever the number of assigned partitions
    /// (at least 256 records, 16 MiB); parked: [`PARKED_FACTOR`] times as many records, 16 MiB.
    /// A partition's parked share ([`Budget::for_max_in_flight`]) is half of it (a quarter of its
    /// records up to `maxInFlight` 32), so one partition never parks all of it.
    pub fn total_for_max_in_flight(max_in_flight: u32) -> Self {
        let max_records = (max_in_flight as usize).saturating_mul(4).max(256);
        Self {
            max_records,
            max_bytes: 16 * 1024 * 1024,
            max_parked_records: max_records.saturating_mul(PARKED_FACTOR),
            max_parked_bytes: 16 * 1024 * 1024,
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

    /// Parked records at their bound: park no more.
    pub fn parked_full(&self, records: usize, bytes: usize) -> bool {
        records >= self.max_parked_records || bytes >= self.max_parked_bytes
    }

    /// Parked records low enough to park again (seven eighths: records parked behind a record
    /// that never finishes do not drain, so waiting for half would stop for good what a few
    /// finished records could let go on).
    pub fn parked_has_room(&self, records: usize, bytes: usize) -> bool {
        records <= self.max_parked_records - self.max_parked_records / 8
            && bytes <= self.max_parked_bytes - self.max_parked_bytes / 8
    }
}

/// Records and bytes taken and not yet finished, against a [`Budget`].
#[derive(Debug)]
pub struct Buffer {
    budget: Budget,
    records: AtomicUsize,
    bytes: AtomicUsize,
    parked_records: AtomicUsize,
    parked_bytes: AtomicUsize,
    /// Set by the poll thread when it stopped taking records because the working buffer is
    /// full; the `Job` drop that leaves it half empty wakes the poll thread.
    pub stopped: AtomicBool,
    /// Set by the poll thread while parked records are at their bound, until seven eighths.
    parked_stopped: AtomicBool,
}

impl Buffer {
    pub fn new(budget: Budget) -> Self {
        Self {
            budget,
            records: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            parked_records: AtomicUsize::new(0),
            parked_bytes: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            parked_stopped: AtomicBool::new(false),
        }
    }

    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Records and bytes taken and not yet finished (working and parked).
    pub fn pending(&self) -> (usize, usize) {
        let (records, bytes) = self.working();
        let (parked_records, parked_bytes) = self.parked();
        (records + parked_records, bytes + parked_bytes)
    }

    /// Working records and bytes.
    pub fn working(&self) -> (usize, usize) {
        (self.records.load(SeqCst), self.bytes.load(SeqCst))
    }

    /// Parked records and bytes.
    pub fn parked(&self) -> (usize, usize) {
        (
            self.parked_records.load(SeqCst),
            self.parked_bytes.load(SeqCst),
        )
    }

    /// Whether the working buffer is full: stop taking records.
    pub fn is_full(&self) -> bool {
        let (records, bytes) = self.working();
        self.budget.is_full(records, bytes)
    }

    /// Whether a full working buffer has drained enough to take records again.
    pub fn has_room(&self) -> bool {
        let (records, bytes) = self.working();
        self.budget.has_room(records, bytes)
    }

    /// Whether parked records are at their bound right now (no hysteresis: what a hold checks
    /// before moving more records here).
    pub fn parked_full(&self) -> bool {
        let (records, bytes) = self.parked();
        self.budget.parked_full(records, bytes)
    }

    /// Whether parking is stopped: set when parked records reach their bound, cleared once they
    /// are down to seven eighths of it. Called by the poll thread only.
    pub fn parked_at_bound(&self) -> bool {
        let (records, bytes) = self.parked();
        if self.parked_stopped.load(SeqCst) {
            if !self.budget.parked_has_room(records, bytes) {
                return true;
            }
            self.parked_stopped.store(false, SeqCst);
            return false;
        }
        if self.budget.parked_full(records, bytes) {
            self.parked_stopped.store(true, SeqCst);
            return true;
        }
        false
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

    /// A record taken: it starts working.
    pub(super) fn take(&self, size: usize) {
        self.records.fetch_add(1, SeqCst);
        self.bytes.fetch_add(size, SeqCst);
    }

    /// A working record parked. Added before it is removed, so the sum never reads low.
    pub(super) fn park(&self, size: usize) {
        self.parked_records.fetch_add(1, SeqCst);
        self.parked_bytes.fetch_add(size, SeqCst);
        self.records.fetch_sub(1, SeqCst);
        self.bytes.fetch_sub(size, SeqCst);
    }

    /// A record finished or discarded. Whether the poll thread should be woken: it stopped on
    /// this buffer, which now has room.
    pub(super) fn release(&self, size: usize, parked: bool) -> bool {
        if parked {
            self.parked_records.fetch_sub(1, SeqCst);
            self.parked_bytes.fetch_sub(size, SeqCst);
            let (records, bytes) = self.parked();
            return self.parked_stopped.load(SeqCst) && self.budget.parked_has_room(records, bytes);
        }
        self.records.fetch_sub(1, SeqCst);
        self.bytes.fetch_sub(size, SeqCst);
        self.stopped.load(SeqCst) && self.has_room()
    }
}
