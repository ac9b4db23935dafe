//! How many requests to the app may be in flight at once, across every lane: a fixed number
//! (`maxInFlight`) or an adaptive limit under it (`delivery.concurrency: adaptive`, [`aimd`]),
//! and a pause of the whole endpoint when an answer says `Retry-After`.
//!
//! The one owner of that bound: `deliver` takes a [`Permit`] for each attempt and ends it with
//! what the answer said ([`Permit::finish`]). Ordering is the lanes' business (`dispatch`); this
//! only bounds how many of their requests run at once, so no ordering rule changes.
//!
//! A `Retry-After` (on a 429 or a 503) pauses every new request until then, not only the
//! record that got it: the app asked the endpoint to slow down. Requests already sent go on.

pub mod aimd;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering::Relaxed},
    },
    time::Duration,
};

use kcp_crds::config::Concurrency;
// Tokio's clock, so a test with paused time sees the pause end.
use tokio::{sync::Notify, time::Instant};
use tracing::debug;

pub use aimd::{Aimd, Signal};

use crate::stats::Stats;

/// Fixed or adaptive.
#[derive(Debug)]
enum Bound {
    Fixed(u32),
    Adaptive(Aimd),
}

impl Bound {
    fn limit(&self) -> u32 {
        match self {
            Self::Fixed(n) => *n,
            Self::Adaptive(a) => a.limit(),
        }
    }
}

#[derive(Debug)]
struct State {
    bound: Bound,
    in_flight: u32,
    paused_until: Option<Instant>,
}

/// The bound on requests in flight. Shared by every lane.
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
    room: Notify,
    epoch: Instant,
    /// The current limit, readable without the lock.
    limit: AtomicU32,
    /// Where the limit is shown (`/metrics`, `/status`).
    stats: Option<Arc<Stats>>,
}

impl Limiter {
    /// At most `max` requests at once, always.
    pub fn fixed(max: u32) -> Self {
        Self::with(Bound::Fixed(max.max(1)))
    }

    /// An adaptive limit between 1 and `max`.
    pub fn adaptive(max: u32) -> Self {
        Self::with(Bound::Adaptive(Aimd::new(max)))
    }

    /// The limit `concurrency` asks for under `max`, shown in `stats`.
    pub fn from_config(concurrency: Concurrency, max: u32, stats: Arc<Stats>) -> Self {
        let mut l = match concurrency {
            Concurrency::Fixed => Self::fixed(max),
            Concurrency::Adaptive => Self::adaptive(max),
        };
        stats.concurrency_limit.store(u64::from(l.limit()), Relaxed);
        l.stats = Some(stats);
        l
    }

    fn with(bound: Bound) -> Self {
        let limit = AtomicU32::new(bound.limit());
        Self {
            stats: None,
            state: Mutex::new(State {
                bound,
                in_flight: 0,
                paused_until: None,
            }),
            room: Notify::new(),
            epoch: Instant::now(),
            limit,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> u32 {
        self.limit.load(Relaxed)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.lock().in_flight
    }

    /// Waits for room under the limit and for the end of any pause. Cancel-safe: dropped
    /// while waiting, it holds nothing.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let wait = {
                let mut s = self.lock();
                match s.paused_until {
                    Some(until) if until > Instant::now() => Some(until),
                    _ if s.in_flight < s.bound.limit() => {
                        s.in_flight += 1;
                        let in_flight = s.in_flight;
                        if let Bound::Adaptive(a) = &mut s.bound {
                            a.started(in_flight);
                        }
                        return Permit {
                            limiter: self,
                            started: Instant::now(),
                            open: true,
                        };
                    }
                    _ => None,
                }
            };
            match wait {
                Some(until) => tokio::time::sleep_until(until).await,
                None => room.await,
            }
        }
    }

    /// No new request before `until` (an answer's `Retry-After`); a later pause wins.
    pub fn pause_until(&self, until: Instant) {
        let mut s = self.lock();
        if s.paused_until.is_none_or(|p| p < until) {
            s.paused_until = Some(until);
        }
    }

    /// Whether new requests wait for a `Retry-After` now.
    pub fn paused(&self) -> bool {
        self.lock().paused_until.is_some_and(|p| p > Instant::now())
    }

    fn release(&self, feedback: Option<(Duration, Signal)>) {
        let room = {
            let mut s = self.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
            if let (Some((rtt, signal)), Bound::Adaptive(a)) = (feedback, &mut s.bound) {
                let now = self.epoch.elapsed().as_secs_f64() * 1000.0;
                if let Some(change) = a.finished(now, rtt.as_secs_f64() * 1000.0, signal) {
                    debug!(?change, baseline_ms = ?a.baseline_ms(), "Concurrency limit");
                }
            }
            self.limit.store(s.bound.limit(), Relaxed);
            if let Some(stats) = &self.stats {
                stats
                    .concurrency_limit
                    .store(u64::from(s.bound.limit()), Relaxed);
            }
            s.bound.limit().saturating_sub(s.in_flight)
        };
        // One waiter per free place, not every waiter: in `unordered` order every buffered
        // record waits here, and waking them all on each answer is a herd of wake-ups for one
        // place. A release frees one place, two when the adaptive limit grew by one with it. A
        // waiter woken for a place someone else took waits again; that one's release wakes the
        // next.
        for _ in 0..room.min(2) {
            self.room.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("invariant: the limiter lock is never poisoned")
    }
}

/// One request's room under the limit. Dropped without [`Permit::finish`] (the request was
/// abandoned), it frees the room and teaches the limit nothing.
#[derive(Debug)]
pub struct Permit<'a> {
    limiter: &'a Limiter,
    started: Instant,
    open: bool,
}

impl Permit<'_> {
    /// The request ended; `signal` says whether the answer asked to slow down.
    pub fn finish(mut self, signal: Signal) {
        self.open = false;
        self.limiter.release(Some((self.started.elapsed(), signal)));
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.open {
            self.limiter.release(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_fixed_limit_holds_the_rest_until_a_permit_ends() {
        let l = Arc::new(Limiter::fixed(2));
        let a = l.acquire().await;
        let _b = l.acquire().await;
        assert_eq!(l.in_flight(), 2);
        let waiter = {
            let l = Arc::clone(&l);
            tokio::spawn(async move {
                let p = l.acquire().await;
                p.finish(Signal::Normal);
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "no room");
        drop(a);
        waiter.await.expect("took the freed room");
        assert_eq!(l.in_flight(), 1);
        assert_eq!(l.limit(), 2, "a fixed limit never moves");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiter_gets_a_place_though_each_release_wakes_only_one() {
        let l = Arc::new(Limiter::fixed(3));
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let l = Arc::clone(&l);
            tasks.push(tokio::spawn(async move {
                if i % 3 == 0 {
                    // Some waiters give up: a wake-up meant for one of them goes on to another.
                    if let Ok(p) =
                        tokio::time::timeout(Duration::from_micros(50), l.acquire()).await
                    {
                        p.finish(Signal::Normal);
                    }
                    return;
                }
                let p = l.acquire().await;
                tokio::task::yield_now().await;
                p.finish(Signal::Normal);
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("no waiter is left waiting")
                .expect("task");
        }
        assert_eq!(l.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_holds_nothing() {
        let l = Limiter::fixed(1);
        let held = l.acquire().await;
        let waited = tokio::time::timeout(Duration::from_millis(5), l.acquire()).await;
        assert!(waited.is_err());
        drop(held);
        assert_eq!(l.in_flight(), 0);
        let _again = l.acquire().await;
    }

    #[tokio::test]
    async fn retry_after_pauses_every_new_request_until_the_latest_pause() {
        let l = Arc::new(Limiter::fixed(8));
        let later = Instant::now() + Duration::from_millis(50);
        l.pause_until(later);
        l.pause_until(Instant::now() + Duration::from_millis(5));
        assert_eq!(
            l.lock().paused_until,
            Some(later),
            "an earlier pause does not shorten it"
        );
        assert!(l.paused());
        let p = l.acquire().await;
        assert!(Instant::now() >= later, "no request before the pause ended");
        p.finish(Signal::Normal);
        assert!(!l.paused());
    }

    #[tokio::test]
    async fn an_adaptive_limit_shrinks_on_back_pressure_and_exports_it() {
        let l = Limiter::adaptive(64);
        assert_eq!(l.limit(), 16);
        let p = l.acquire().await;
        p.finish(Signal::Backpressure);
        assert_eq!(l.limit(), 14, "16 × 0.9, rounded down");
        let dropped = l.acquire().await;
        drop(dropped);
        assert_eq!(l.limit(), 14, "an abandoned request teaches nothing");
    }
}
