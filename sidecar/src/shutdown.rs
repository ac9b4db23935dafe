//! One shutdown, one deadline: when the sidecar was told to stop, until when it may wait for
//! records, and whether it is done.
//!
//! The deadline is fixed when the stop is *signalled* (SIGTERM, or the app's `preStop` hook calling
//! `/drain` while the pod is deleted), not when the poll loop gets round to it: the poll thread may
//! be blocked for up to `drainTimeout` in a revoke when the signal comes, and a deadline counted
//! from the end of that revoke would give the shutdown a second `drainTimeout`, past the pod's
//! termination grace period (SIGKILL). [`Shutdown::begin`] is called by a task that waits on the
//! shutdown token, so it runs at the signal whatever the poll thread is doing; the poll loop calls
//! it too, and the first call wins.
//!
//! [`Shutdown::finish`] marks the end of the sequence (dispatched records finished or handed back,
//! offsets committed, the group left); the admin server's `/drain` waits for it. `/status` shows
//! the three instants (ms since the epoch) while shutting down.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use tokio::sync::watch;

/// The shutdown's instants, as `/status` shows them (ms since the epoch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShutdownTimes {
    pub signalled_at_ms: u64,
    /// `signalledAtMs` + `drainTimeout`: no record is waited for after this.
    pub deadline_ms: u64,
    /// When the records were finished or given up (the final commit follows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drained_at_ms: Option<u64>,
    /// When the sidecar had committed and left the group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
}

#[derive(Debug)]
struct Started {
    deadline: Instant,
    times: ShutdownTimes,
}

/// The shutdown's state; one per pipeline, in [`Stats`](crate::Stats).
#[derive(Debug)]
pub struct Shutdown {
    started: Mutex<Option<Started>>,
    finished: watch::Sender<bool>,
    /// `/drain` answered a caller after the shutdown finished (the app's `preStop` hook).
    hook_answered: AtomicBool,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            started: Mutex::new(None),
            finished: watch::Sender::new(false),
            hook_answered: AtomicBool::new(false),
        }
    }
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

impl Shutdown {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Started>> {
        self.started
            .lock()
            .expect("invariant: shutdown lock never poisoned")
    }

    /// The shutdown starts now (unless it already did): returns its deadline, `drain_timeout`
    /// after the first call.
    pub fn begin(&self, drain_timeout: Duration) -> Instant {
        let mut started = self.lock();
        let s = started.get_or_insert_with(|| {
            let now = SystemTime::now();
            Started {
                deadline: Instant::now() + drain_timeout,
                times: ShutdownTimes {
                    signalled_at_ms: epoch_ms(now),
                    deadline_ms: epoch_ms(now + drain_timeout),
                    drained_at_ms: None,
                    finished_at_ms: None,
                },
            }
        });
        s.deadline
    }

    /// The deadline, once the shutdown started.
    pub fn deadline(&self) -> Option<Instant> {
        self.lock().as_ref().map(|s| s.deadline)
    }

    /// Whether the shutdown started.
    pub fn is_started(&self) -> bool {
        self.lock().is_some()
    }

    /// Every record was finished or given up.
    pub fn drained(&self) {
        if let Some(s) = self.lock().as_mut() {
            s.times
                .drained_at_ms
                .get_or_insert(epoch_ms(SystemTime::now()));
        }
    }

    /// The pipeline stopped: committed and left the group (or aborted).
    pub fn finish(&self) {
        if let Some(s) = self.lock().as_mut() {
            s.times
                .finished_at_ms
                .get_or_insert(epoch_ms(SystemTime::now()));
        }
        self.finished.send_replace(true);
    }

    pub fn is_finished(&self) -> bool {
        *self.finished.borrow()
    }

    /// Resolves once [`Shutdown::finish`] was called.
    pub async fn finished(&self) {
        let mut rx = self.finished.subscribe();
        // The sender lives as long as `self`.
        let _ = rx.wait_for(|done| *done).await;
    }

    /// `/drain` told a caller the shutdown finished.
    pub fn set_hook_answered(&self) {
        self.hook_answered.store(true, Relaxed);
    }

    pub fn hook_answered(&self) -> bool {
        self.hook_answered.load(Relaxed)
    }

    /// The instants so far, once the shutdown started.
    pub fn times(&self) -> Option<ShutdownTimes> {
        self.lock().as_ref().map(|s| s.times)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_fixes_the_deadline() {
        let s = Shutdown::default();
        assert!(!s.is_started());
        let first = s.begin(Duration::from_secs(30));
        // A later call (the poll loop noticing after a long revoke) does not move it.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.begin(Duration::from_secs(30)), first);
        assert_eq!(s.deadline(), Some(first));
        let t = s.times().expect("started");
        assert_eq!(t.deadline_ms - t.signalled_at_ms, 30_000);
        assert_eq!(t.finished_at_ms, None);
    }

    #[tokio::test]
    async fn finish_wakes_the_waiters_and_is_recorded() {
        let s = std::sync::Arc::new(Shutdown::default());
        s.begin(Duration::from_secs(1));
        let waiter = {
            let s = std::sync::Arc::clone(&s);
            tokio::spawn(async move { s.finished().await })
        };
        s.drained();
        s.finish();
        waiter.await.expect("waiter");
        assert!(s.is_finished());
        let t = s.times().expect("started");
        assert!(t.drained_at_ms.is_some() && t.finished_at_ms.is_some());
        // A waiter arriving afterwards returns at once.
        s.finished().await;
    }
}
