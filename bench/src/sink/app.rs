//! The app model behind the sink for the flow scenarios (capacity, outage): a worker pool whose
//! capacity the scenario changes while it runs ([`super::pool`] decides), a fixed service time
//! per request, and a switch that makes it down (a proxy in front of it answers every new
//! request 503 at once; requests the app had already taken are still served).
//!
//! It remembers every answer ([`Answer`]: arrival, answer, status) for the scenario to cut into
//! phases. Shed and down answers are 503 without `Retry-After`, as Envoy's overflow and an
//! ingress with no ready backend answer. Service is a `std::thread::sleep` on the blocking pool,
//! as the sink's other sleeps (tokio's timer would round 5 ms up to 6).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::oneshot;

use super::pool::{Arrival, Pool};
use crate::{answers::Answer, clock::now_ns};

/// Status of a shed request, and of every request while down.
pub const UNAVAILABLE: u16 = 503;

struct Inner {
    pool: Pool,
    down: bool,
    next_id: u64,
    /// Queued requests, woken when they start.
    waiters: HashMap<u64, oneshot::Sender<()>>,
    answers: Vec<Answer>,
}

/// The app model; shared by every connection of the sink.
pub struct App {
    service: Duration,
    inner: Mutex<Inner>,
}

impl App {
    /// `capacity` workers, each request served in `service`.
    pub fn new(capacity: usize, service: Duration) -> Arc<Self> {
        Arc::new(Self {
            service,
            inner: Mutex::new(Inner {
                pool: Pool::new(capacity),
                down: false,
                next_id: 0,
                waiters: HashMap::new(),
                answers: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .expect("invariant: app model lock never poisoned")
    }

    /// Gains or loses workers now; waiting requests start if there is room.
    pub fn set_capacity(&self, capacity: usize) {
        let mut inner = self.lock();
        let started = inner.pool.set_capacity(capacity);
        wake(&mut inner, started);
    }

    /// Down (every request answered 503 at once) or up.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Every answer so far, in the order given.
    pub fn answers(&self) -> Vec<Answer> {
        self.lock().answers.clone()
    }

    /// Serves one request that arrived at `arrived_ns`; returns its status.
    pub async fn serve(self: &Arc<Self>, arrived_ns: u64) -> u16 {
        let (slot, queued) = {
            let mut inner = self.lock();
            if inner.down {
                return self.answered(&mut inner, arrived_ns, UNAVAILABLE);
            }
            let id = inner.next_id;
            inner.next_id += 1;
            match inner.pool.arrive(id) {
                Arrival::Shed => return self.answered(&mut inner, arrived_ns, UNAVAILABLE),
                Arrival::Serve => (Slot { app: self, id }, None),
                Arrival::Queued => {
                    let (tx, rx) = oneshot::channel();
                    inner.waiters.insert(id, tx);
                    (Slot { app: self, id }, Some(rx))
                }
            }
        };
        if let Some(rx) = queued {
            // The sender lives until the pool starts this request.
            let _ = rx.await;
        }
        let service = self.service;
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(service)).await;
        drop(slot);
        self.answered(&mut self.lock(), arrived_ns, 200)
    }

    fn answered(&self, inner: &mut Inner, arrived_ns: u64, status: u16) -> u16 {
        inner.answers.push(Answer {
            arrived_ns,
            done_ns: now_ns(),
            status,
        });
        status
    }
}

fn wake(inner: &mut Inner, started: Vec<u64>) {
    for id in started {
        if let Some(tx) = inner.waiters.remove(&id) {
            let _ = tx.send(());
        }
    }
}

/// A request's place in the pool, waiting or served; given back when dropped, also when the
/// connection closes mid-request (hyper drops the handler).
struct Slot<'a> {
    app: &'a App,
    id: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut inner = self.app.lock();
        inner.waiters.remove(&self.id);
        if !inner.pool.leave(self.id) {
            let started = inner.pool.finish();
            wake(&mut inner, started);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_capacity_requests_wait_then_are_shed() {
        let app = App::new(1, Duration::from_millis(20));
        let serving = tokio::spawn({
            let app = Arc::clone(&app);
            async move { app.serve(now_ns()).await }
        });
        let waiting = tokio::spawn({
            let app = Arc::clone(&app);
            async move { app.serve(now_ns()).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            app.serve(now_ns()).await,
            UNAVAILABLE,
            "one served, one waiting"
        );
        assert_eq!(serving.await.ok(), Some(200));
        assert_eq!(waiting.await.ok(), Some(200));
        let a = app.answers();
        assert_eq!(
            a.iter().map(|a| a.status).collect::<Vec<_>>(),
            [503, 200, 200]
        );
        assert!(
            a[2].latency_ns() >= 2 * 20_000_000,
            "the waiting one waited a service time, then was served: {} ns",
            a[2].latency_ns()
        );
    }

    #[tokio::test]
    async fn down_answers_at_once_and_up_serves_again() {
        let app = App::new(4, Duration::from_millis(1));
        app.set_down(true);
        assert_eq!(app.serve(now_ns()).await, UNAVAILABLE);
        app.set_down(false);
        assert_eq!(app.serve(now_ns()).await, 200);
    }

    #[tokio::test]
    async fn a_request_dropped_while_waiting_gives_its_place_back() {
        let app = App::new(1, Duration::from_millis(20));
        let serving = tokio::spawn({
            let app = Arc::clone(&app);
            async move { app.serve(now_ns()).await }
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
        let dropped = tokio::time::timeout(Duration::from_millis(1), app.serve(now_ns())).await;
        assert!(dropped.is_err(), "it was waiting");
        assert_eq!(serving.await.ok(), Some(200));
        assert_eq!(app.lock().pool.in_service(), 0);
        assert_eq!(app.lock().pool.waiting(), 0);
        assert_eq!(app.serve(now_ns()).await, 200);
    }
}
