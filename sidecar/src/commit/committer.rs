//! The committer: the thread that commits while the consumer runs.
//!
//! It commits every `commitInterval`, and at once when half of `delivery.maxUncommitted` ended
//! records wait for a commit ([`Window::wait_due`]): the window then frees their places before
//! it fills, so a bounded window costs a commit per half window, not a stall. Synchronous
//! commits on a thread of its own: the answer is known (the window needs it), the poll thread
//! never waits for Kafka, and commits go on while a revoke holds the poll thread. Revoke and
//! shutdown commit on their own (`commit_sync_within`), in the same turn ([`Window::turn`]).

use std::{
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering::SeqCst},
        mpsc,
    },
    time::Duration,
};

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use tracing::{debug, error, warn};

use super::{Window, commit_sync};
use crate::{offsets::OffsetTracker, record::Tp, stats::Stats};

/// The pause after a failed commit, so a refusing broker is not asked in a tight loop while
/// the window stays due.
const AFTER_FAILURE: Duration = Duration::from_millis(200);

/// What the committer commits with.
pub struct Parts<C: ConsumerContext + 'static> {
    /// Weak: the poll thread's handle is the one whose drop leaves the group.
    pub consumer: Weak<BaseConsumer<C>>,
    pub tracker: Arc<Mutex<OffsetTracker<Tp>>>,
    pub stats: Arc<Stats>,
    pub window: Arc<Window>,
    pub interval: Duration,
}

/// The running committer; [`Committer::stop`] ends it.
pub struct Committer {
    stopping: Arc<AtomicBool>,
    window: Arc<Window>,
    done: mpsc::Receiver<()>,
}

impl Committer {
    /// Starts the thread.
    pub fn start<C: ConsumerContext + 'static>(parts: Parts<C>) -> std::io::Result<Self> {
        let stopping = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = mpsc::channel();
        let window = Arc::clone(&parts.window);
        let flag = Arc::clone(&stopping);
        std::thread::Builder::new()
            .name("kcp-committer".into())
            .spawn(move || {
                // A committer that died would leave the window full for good while every probe
                // stays green: a panic marks the replica for restart instead (`/healthz`).
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(&parts, &flag);
                }));
                if let Err(payload) = ran {
                    let why = crate::unwind::message(&*payload);
                    error!(panic = %why, "The committer thread panicked; nothing is committed any more: restart needed");
                    parts
                        .stats
                        .set_broken(format!("the committer thread panicked: {why}"));
                }
                let _ = done_tx.send(());
            })?;
        Ok(Self {
            stopping,
            window,
            done,
        })
    }

    /// Stops the thread and waits for its commit in progress up to `wait` (a commit without a
    /// group coordinator does not end on its own). What it did not commit, the caller's final
    /// commit does.
    pub fn stop(self, wait: Duration) {
        self.stopping.store(true, SeqCst);
        self.window.wake_committer();
        if self.done.recv_timeout(wait).is_err() {
            warn!(
                wait_s = wait.as_secs(),
                "The committer's commit did not end in time (no group coordinator?); going on without it"
            );
        }
    }
}

fn run<C: ConsumerContext + 'static>(p: &Parts<C>, stopping: &AtomicBool) {
    let mut failing = false;
    while !stopping.load(SeqCst) {
        let due = p.window.wait_due(p.interval);
        if stopping.load(SeqCst) {
            break;
        }
        let Some(consumer) = p.consumer.upgrade() else {
            break;
        };
        let result = commit_sync(
            consumer.as_ref(),
            &p.tracker,
            None,
            &p.stats,
            false,
            &p.window,
        );
        drop(consumer);
        match result {
            Ok(n) => {
                if failing {
                    debug!("Commits accepted again");
                }
                failing = false;
                if n > 0 {
                    debug!(partitions = n, window_due = due, "Committed");
                }
            }
            Err(e) => {
                // Refused during a rebalance, or no coordinator: the next commit carries it.
                if !failing {
                    warn!(error = %e, source = %e.source_message(),
                        "Commit failed; retrying (records ended since the last commit stay uncommitted and may be delivered again after a crash)");
                }
                failing = true;
                std::thread::sleep(AFTER_FAILURE);
            }
        }
    }
}
