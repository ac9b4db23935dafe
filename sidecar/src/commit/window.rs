//! The bound on what a crash can deliver again: records sent to the app whose end is not yet
//! committed (`delivery.maxUncommitted`).
//!
//! Guarantee: at every moment at most `max` records are *open*, each counted from the start of
//! an attempt to the acknowledgement of a commit that carries its end. A `kill -9`, an OOM kill
//! or a lost node therefore delivers at most `max` records again (its next owner skips what the
//! acknowledged commits say finished, `progress.rs`), whatever `commitInterval` is. A record is
//! open during an attempt ([`Window::enter`]), stops being open when the attempt fails and the
//! record waits to be tried again ([`Slot`] dropped), and stays open once it ended (delivered,
//! skipped, dead-lettered: [`Slot::finished`]) until a commit taken after its end is
//! acknowledged ([`Window::durable`] with a [`Window::mark`] read before the commit's snapshot).
//!
//! Commits are serialised by [`Window::turn`]: a commit's snapshot and Kafka's answer to it are
//! one turn, so an older snapshot never lands after a newer one (which would move a committed
//! offset back).
//!
//! Unbounded (`None`) for `atMostOnce`, which commits before sending.

use std::{
    sync::{
        Condvar, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    /// Records in an attempt, or ended and not yet durable.
    open: u32,
    /// Records ended so far (a sequence: a mark is a value of it).
    ended: u64,
    /// Of `ended`, how many are known committed.
    durable: u64,
    /// The committer is asked to stop waiting (shutdown).
    woken: bool,
}

impl State {
    fn undurable(&self) -> u64 {
        self.ended - self.durable
    }
}

/// Shared by the record tasks (who enter and end) and the committer (who makes ends durable).
#[derive(Debug)]
pub struct Window {
    max: Option<u32>,
    state: Mutex<State>,
    /// Tasks waiting for room.
    room: Notify,
    /// The committer waiting for enough ended records to be worth a commit.
    due: Condvar,
    turn: Mutex<()>,
    /// Tasks waiting in [`Window::enter_many`].
    many_waiting: AtomicUsize,
}

/// One record's place in the window, from the start of an attempt. Dropped (the attempt failed
/// and the record waits, or it was abandoned), the place is free at once; ended with
/// [`Slot::finished`], it is freed by the commit that carries the end.
#[derive(Debug)]
pub struct Slot<'a> {
    window: &'a Window,
    counted: bool,
}

impl Window {
    /// At most `max` records open; `None`: no bound (and nothing counted).
    pub fn new(max: Option<u32>) -> Self {
        Self {
            max: max.map(|m| m.max(1)),
            state: Mutex::default(),
            room: Notify::new(),
            due: Condvar::new(),
            turn: Mutex::new(()),
            many_waiting: AtomicUsize::new(0),
        }
    }

    /// The bound, if any.
    pub fn max(&self) -> Option<u32> {
        self.max
    }

    /// Records open now.
    pub fn open(&self) -> u32 {
        self.lock().open
    }

    /// How many ended records make a commit due before `commitInterval`: half the window, so
    /// the commit is usually acknowledged before the window fills.
    pub fn commit_threshold(&self) -> u64 {
        self.max.map_or(u64::MAX, |m| u64::from(m).div_ceil(2))
    }

    /// Waits for room, then counts one more open record. Cancel-safe: dropped while waiting,
    /// it holds nothing.
    pub async fn enter(&self) -> Slot<'_> {
        let Some(max) = self.max else {
            return self.uncounted();
        };
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut s = self.lock();
                if s.open < max {
                    s.open += 1;
                    return Slot {
                        window: self,
                        counted: true,
                    };
                }
            }
            room.await;
        }
    }

    /// Waits for room for `n` records at once, then counts them open: a batch is sent whole,
    /// and batches taking places one by one could each hold part of the window and wait for
    /// the rest for ever. Places beyond the bound (a batch larger than the window: the config
    /// refuses it) are not counted. Cancel-safe like [`Window::enter`].
    pub async fn enter_many(&self, n: usize) -> Vec<Slot<'_>> {
        let Some(max) = self.max else {
            return (0..n).map(|_| self.uncounted()).collect();
        };
        let counted = u32::try_from(n).unwrap_or(u32::MAX).min(max);
        let _waiting = ManyWaiting::start(self);
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut s = self.lock();
                if s.open + counted <= max {
                    s.open += counted;
                    let mut slots: Vec<_> = (0..counted)
                        .map(|_| Slot {
                            window: self,
                            counted: true,
                        })
                        .collect();
                    slots.extend((counted as usize..n).map(|_| self.uncounted()));
                    return slots;
                }
            }
            room.await;
        }
    }

    fn uncounted(&self) -> Slot<'_> {
        Slot {
            window: self,
            counted: false,
        }
    }

    /// Wakes every waiter when one may be waiting for several places: `notify_one` would hand
    /// a freed place to a batch that needs more and goes back to sleep, the place then
    /// unclaimed while a single record waits.
    fn wake_batches(&self) {
        if self.many_waiting.load(SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }

    /// The number of ended records so far. Read it *before* taking a commit's snapshot: every
    /// record ended by then is in the snapshot, so the acknowledged commit makes them durable.
    pub fn mark(&self) -> u64 {
        self.lock().ended
    }

    /// A commit taken after `mark` was acknowledged: the records ended up to it are durable
    /// and their places free.
    pub fn durable(&self, mark: u64) {
        if self.max.is_none() {
            return;
        }
        let freed = {
            let mut s = self.lock();
            if mark <= s.durable {
                return;
            }
            let freed = mark - s.durable;
            s.durable = mark;
            s.open = s.open.saturating_sub(freed as u32);
            freed
        };
        // One waiter per place freed (`notify_one` is passed on when the waiter it woke is gone).
        for _ in 0..freed.min(u64::from(self.max.unwrap_or(0))) {
            self.room.notify_one();
        }
        self.wake_batches();
    }

    /// Blocks the committer until a commit is due: at least [`Window::commit_threshold`]
    /// ended records not yet durable, `timeout` passed, or [`Window::wake_committer`] was
    /// called. Returns whether enough ended.
    pub fn wait_due(&self, timeout: Duration) -> bool {
        let threshold = self.commit_threshold();
        let guard = self.lock();
        let (s, _) = self
            .due
            .wait_timeout_while(guard, timeout, |s| s.undurable() < threshold && !s.woken)
            .expect("invariant: the window lock is never poisoned");
        s.undurable() >= threshold
    }

    /// Ends the committer's wait now, and every later one (shutdown). Set under the lock, so a
    /// committer about to wait sees it: no wake-up is lost.
    pub fn wake_committer(&self) {
        self.lock().woken = true;
        self.due.notify_all();
    }

    /// The turn of commits: hold it from a commit's snapshot to Kafka's answer.
    pub fn turn(&self) -> MutexGuard<'_, ()> {
        self.turn
            .lock()
            .expect("invariant: the commit turn is never poisoned")
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("invariant: the window lock is never poisoned")
    }

    fn leave(&self) {
        self.lock().open -= 1;
        self.room.notify_one();
        self.wake_batches();
    }
}

/// Counts a task in [`Window::enter_many`] while it waits (dropped when it enters or is
/// cancelled).
struct ManyWaiting<'a>(&'a Window);

impl<'a> ManyWaiting<'a> {
    fn start(window: &'a Window) -> Self {
        window.many_waiting.fetch_add(1, SeqCst);
        Self(window)
    }
}

impl Drop for ManyWaiting<'_> {
    fn drop(&mut self) {
        self.0.many_waiting.fetch_sub(1, SeqCst);
    }
}

impl Slot<'_> {
    /// The record ended (delivered, skipped, dead-lettered) and its end is in the tracker: it
    /// stays open until a commit carrying it is acknowledged.
    pub fn finished(mut self) {
        if !std::mem::take(&mut self.counted) {
            return;
        }
        let w = self.window;
        let due = {
            let mut s = w.lock();
            s.ended += 1;
            s.undurable() == w.commit_threshold()
        };
        if due {
            w.due.notify_all();
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.window.leave();
        }
    }
}

#[cfg(test)]
mod tests;
