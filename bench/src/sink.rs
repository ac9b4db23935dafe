//! The HTTP sink: a minimal hyper 1 server on loopback that answers 200 with an empty body.
//!
//! It counts requests, remembers when the first arrived and the last finished, optionally
//! records each request's latency (arrival minus the send time in the body, see
//! [`crate::clock`]) and optionally sleeps before answering: a fixed delay or a seeded random
//! schedule. The schedule is indexed by the `kcp-offset` header when present (so a record's sleep
//! does not depend on arrival order, and per-key floors can be computed up front) and by arrival
//! order otherwise. Sleeps run as `std::thread::sleep` on the blocking pool: tokio's timer has
//! millisecond resolution, which would round every sleep up.
//!
//! The flow scenarios put an app model behind it instead ([`app`]: a worker pool whose capacity
//! changes while it runs, or an app that goes down), which answers 503 when shed or down.
//!
//! It counts records, not requests: a batch (`kcp-batch: <n>`, see [`batch`]) counts its `n`
//! records, any other request one. Its delay is per request, whatever the request carries: a
//! batch sleeps once (the batch scenario's fixed cost per request), and a schedule indexes a
//! batch, which has no `kcp-offset`, by arrival order.

pub mod app;
pub mod batch;
pub mod pool;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{
    Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::clock::{now_ns, sent_ns};
use app::App;

/// How long the sink waits before answering.
#[derive(Clone, Debug, Default)]
pub enum Delay {
    #[default]
    None,
    Fixed(Duration),
    /// Microseconds per index (offset, or arrival order); beyond the end, no delay.
    Schedule(Arc<Vec<u32>>),
}

/// `n` sleeps drawn uniformly from 0–`max_us` µs with a fixed seed.
pub fn random_schedule(n: usize, max_us: u32, seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..=max_us)).collect()
}

/// What the sink saw since the last [`Sink::reset`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// Records answered: a batch request counts its records, any other request one.
    pub done: u64,
    /// Requests answered.
    pub requests: u64,
    /// Arrival of the first request, ns on [`crate::clock`].
    pub first_arrival_ns: u64,
    /// Completion of the last answered request, ns on [`crate::clock`].
    pub last_done_ns: u64,
}

impl Counts {
    /// Seconds from the first arrival to the last answer.
    pub fn window_secs(&self) -> f64 {
        self.last_done_ns.saturating_sub(self.first_arrival_ns) as f64 / 1e9
    }

    /// Records per second over [`Self::window_secs`].
    pub fn rate(&self) -> f64 {
        let w = self.window_secs();
        if w > 0.0 { self.done as f64 / w } else { 0.0 }
    }

    /// Records per request answered; `None` before the first answer.
    pub fn records_per_request(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.done as f64 / self.requests as f64)
    }
}

#[derive(Default)]
struct State {
    delay: Mutex<Delay>,
    /// When set, it answers instead of `delay` ([`Sink::reset_app`]).
    app: Mutex<Option<Arc<App>>>,
    record_latency: AtomicBool,
    arrived: AtomicU64,
    done: AtomicU64,
    requests: AtomicU64,
    first_arrival_ns: AtomicU64,
    last_done_ns: AtomicU64,
    connections: AtomicU64,
    latencies_ns: Mutex<Vec<u64>>,
}

/// A running sink; stops when dropped.
pub struct Sink {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Sink {
    /// Listens on an ephemeral loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        state.first_arrival_ns.store(u64::MAX, Relaxed);
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                st.connections.fetch_add(1, Relaxed);
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(Arc::clone(&st), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}/records", self.addr)
    }

    /// Zeroes the counters and sets the behaviour for the next measurement.
    pub fn reset(&self, delay: Delay, record_latency: bool) {
        self.reset_with(delay, None, record_latency);
    }

    /// Zeroes the counters and puts `app` behind the sink for the next measurement.
    pub fn reset_app(&self, app: Arc<App>) {
        self.reset_with(Delay::None, Some(app), false);
    }

    fn reset_with(&self, delay: Delay, app: Option<Arc<App>>, record_latency: bool) {
        let s = &self.state;
        *s.delay.lock().expect("invariant: sink lock never poisoned") = delay;
        *s.app.lock().expect("invariant: sink lock never poisoned") = app;
        s.record_latency.store(record_latency, Relaxed);
        s.latencies_ns
            .lock()
            .expect("invariant: sink lock never poisoned")
            .clear();
        s.arrived.store(0, Relaxed);
        s.done.store(0, Relaxed);
        s.requests.store(0, Relaxed);
        s.first_arrival_ns.store(u64::MAX, Relaxed);
        s.last_done_ns.store(0, Relaxed);
    }

    pub fn counts(&self) -> Counts {
        let s = &self.state;
        Counts {
            done: s.done.load(Relaxed),
            requests: s.requests.load(Relaxed),
            first_arrival_ns: s.first_arrival_ns.load(Relaxed),
            last_done_ns: s.last_done_ns.load(Relaxed),
        }
    }

    /// Connections accepted since start.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Relaxed)
    }

    /// The recorded latencies (ns), sorted.
    pub fn take_latencies(&self) -> Vec<u64> {
        let mut v = std::mem::take(
            &mut *self
                .state
                .latencies_ns
                .lock()
                .expect("invariant: sink lock never poisoned"),
        );
        v.sort_unstable();
        v
    }

    /// Waits until `n` records were answered, or `timeout`; returns the counts either way.
    pub async fn wait_done(&self, n: u64, timeout: Duration) -> Counts {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let c = self.counts();
            if c.done >= n || tokio::time::Instant::now() >= deadline {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until no record was answered for `quiet`, or `timeout`.
    pub async fn wait_quiet(&self, quiet: Duration, timeout: Duration) -> Counts {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = self.counts().done;
        loop {
            tokio::time::sleep(quiet).await;
            let c = self.counts();
            if c.done == last || tokio::time::Instant::now() >= deadline {
                return c;
            }
            last = c.done;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    st: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let offset: Option<usize> = req
        .headers()
        .get("kcp-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let batch_header = req.headers().get(batch::BATCH_HEADER).cloned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let records = batch::records_in(batch_header.as_ref().map(|v| v.as_bytes()), &body);
    let arrived_ns = now_ns();
    let index = st.arrived.fetch_add(1, Relaxed) as usize;
    st.first_arrival_ns.fetch_min(arrived_ns, Relaxed);
    if st.record_latency.load(Relaxed)
        && batch_header.is_none()
        && let Some(sent) = sent_ns(&body)
    {
        st.latencies_ns
            .lock()
            .expect("invariant: sink lock never poisoned")
            .push(arrived_ns.saturating_sub(sent));
    }
    let app = st
        .app
        .lock()
        .expect("invariant: sink lock never poisoned")
        .clone();
    if let Some(app) = app {
        let status = app.serve(arrived_ns).await;
        st.last_done_ns.fetch_max(now_ns(), Relaxed);
        st.requests.fetch_add(1, Relaxed);
        st.done.fetch_add(records, Relaxed);
        let mut response = Response::new(Empty::new());
        *response.status_mut() =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(response);
    }
    let delay = match &*st
        .delay
        .lock()
        .expect("invariant: sink lock never poisoned")
    {
        Delay::None => None,
        Delay::Fixed(d) => Some(*d),
        Delay::Schedule(s) => s
            .get(offset.unwrap_or(index))
            .map(|&us| Duration::from_micros(u64::from(us))),
    };
    if let Some(d) = delay.filter(|d| !d.is_zero()) {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(d)).await;
    }
    st.last_done_ns.fetch_max(now_ns(), Relaxed);
    st.requests.fetch_add(1, Relaxed);
    st.done.fetch_add(records, Relaxed);
    Ok(Response::new(Empty::new()))
}
