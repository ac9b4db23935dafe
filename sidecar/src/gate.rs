//! App-readiness gating: consume only while the app answers.
//!
//! Owns the [`Gate`] (open = the app answers; closed = fetching of every assigned partition is
//! paused, without leaving the group) and the [`Prober`] task that opens and closes it. The gate
//! starts closed: nothing is fetched before the app first answers. It closes when a probe fails
//! or when a delivery finds the endpoint unreachable ([`Gate::app_unreachable`], from `deliver`),
//! and reopens when a probe succeeds. The probe is a `GET endpoint.readinessUrl` (2xx = ready)
//! when one is configured, otherwise a TCP connect to the endpoint (refused or timed out = not
//! ready). It probes every [`CLOSED_INTERVAL`] while closed and every [`OPEN_INTERVAL`] while
//! open. This module never talks to Kafka: the poll loop reads [`Gate::is_open`] and pauses or
//! resumes the partitions itself (`pipeline/poll.rs`). Records already dispatched when the gate
//! closes keep waiting for the app in `deliver` (unreachable waits do not count as attempts), so
//! closing the gate never loses or dead-letters a record.
//!
//! An endpoint *outage* ([`Gate::set_outage`], from the breaker in `outage.rs`) keeps it closed
//! too, whatever the probe says: the app accepts connections but answers every record with an
//! error, so taking more records would only make them wait.
//!
//! A *pause by request* ([`Gate::set_paused`], from the control file in `control.rs`) stops the
//! taking of records the same way, but it says nothing about the app: it is not a closure
//! ([`Gate::closures`]), not time the app was unready ([`Gate::closed_for`], so the replica never
//! leaves its group for it), and the sidecar's own readiness stays as the app's.
//!
//! A *hold* ([`Gate::hold`]) is the app's own notice that it is about to stop: its container's
//! `preStop` hook calls the admin server's `/drain`. The gate closes, no new request is sent
//! (`deliver` waits while held), and a successful probe does not reopen it until the probe has
//! seen the app down (its old process stopped) or the hold's bound passed. A shutdown lifts it:
//! the app waits in its hook for the sidecar to finish, so the dispatched records are finished
//! against it then.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::Uri;
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use kcp_crds::config::EndpointConfig;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::forward::TargetError;

/// Probe period while the gate is closed.
pub const CLOSED_INTERVAL: Duration = Duration::from_secs(1);
/// Probe period while the gate is open (deliveries also close it at once on connection refused).
pub const OPEN_INTERVAL: Duration = Duration::from_secs(5);
/// Upper bound of one probe (the endpoint's `connectTimeout` when shorter).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the app answers; shared by the prober, the poll loop, `deliver` and the admin server.
#[derive(Debug)]
pub struct Gate {
    open: AtomicBool,
    /// The breaker sees an endpoint outage (`outage.rs`).
    outage: AtomicBool,
    /// Paused by request (the control file, `control.rs`).
    paused: AtomicBool,
    /// Set by the poll loop once every assigned partition is actually paused for the gate.
    paused_applied: AtomicBool,
    /// When the gate last closed (`None` while open).
    closed_since: Mutex<Option<Instant>>,
    /// Milliseconds the gate was closed, not counting the current closed period.
    closed_ms: AtomicU64,
    /// Gate closures after it was first open (the app went away).
    closures: AtomicU64,
    /// The app announced its stop (`/drain`); see the module doc.
    hold: Mutex<Option<Hold>>,
    wake: Notify,
}

/// An announced app stop.
#[derive(Clone, Copy, Debug)]
struct Hold {
    /// Reopened at the latest then, even if the probe never saw the app down.
    until: Instant,
    /// The probe saw the app not answering since the hold started.
    saw_down: bool,
}

/// How often a held request checks whether the hold was lifted.
const HOLD_CHECK: Duration = Duration::from_millis(20);

impl Default for Gate {
    fn default() -> Self {
        Self {
            open: AtomicBool::new(false),
            outage: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            paused_applied: AtomicBool::new(false),
            closed_since: Mutex::new(Some(Instant::now())),
            closed_ms: AtomicU64::new(0),
            closures: AtomicU64::new(0),
            hold: Mutex::new(None),
            wake: Notify::new(),
        }
    }
}

impl Gate {
    /// Whether the app answers (the probe's verdict).
    pub fn is_open(&self) -> bool {
        self.open.load(Relaxed)
    }

    /// Whether records may be taken from Kafka: the app answers, no endpoint outage is on and
    /// no pause was requested.
    pub fn takes_records(&self) -> bool {
        self.is_open() && !self.outage.load(Relaxed) && !self.paused.load(Relaxed)
    }

    /// Pauses (`true`) or resumes the taking of records by request; true when that changed.
    /// The poll loop applies it within its idle wait (`pipeline/poll.rs`, 100 ms).
    pub fn set_paused(&self, paused: bool) -> bool {
        self.paused.swap(paused, Relaxed) != paused
    }

    /// Whether a pause by request is on.
    pub fn paused(&self) -> bool {
        self.paused.load(Relaxed)
    }

    /// The breaker saw an endpoint outage begin (`true`) or end: no record is taken meanwhile.
    pub fn set_outage(&self, out: bool) {
        self.outage.store(out, Relaxed);
    }

    /// Whether an endpoint outage keeps the gate closed.
    pub fn outage(&self) -> bool {
        self.outage.load(Relaxed)
    }

    fn since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.closed_since
            .lock()
            .expect("invariant: gate lock never poisoned")
    }

    /// Opens the gate; true when it was closed.
    pub fn open(&self) -> bool {
        let mut since = self.since();
        if self.open.swap(true, Relaxed) {
            return false;
        }
        if let Some(t) = since.take() {
            self.closed_ms
                .fetch_add(t.elapsed().as_millis() as u64, Relaxed);
        }
        true
    }

    /// Closes the gate; true when it was open.
    pub fn close(&self) -> bool {
        let mut since = self.since();
        if !self.open.swap(false, Relaxed) {
            return false;
        }
        *since = Some(Instant::now());
        self.closures.fetch_add(1, Relaxed);
        true
    }

    /// A delivery found the endpoint unreachable: close now and probe at once.
    pub fn app_unreachable(&self) {
        if self.close() {
            warn!("Endpoint unreachable; pausing every assigned partition until it answers");
            self.wake.notify_one();
        }
    }

    /// Total time the gate has been closed (fetching paused for the app), current period included.
    pub fn closed_time(&self) -> Duration {
        let since = self.since();
        let current = since.map_or(0, |t| t.elapsed().as_millis() as u64);
        Duration::from_millis(self.closed_ms.load(Relaxed) + current)
    }

    /// How long the gate has been closed, or `None` while it is open.
    pub fn closed_for(&self) -> Option<Duration> {
        self.since().map(|t| t.elapsed())
    }

    /// Times the gate closed after being open.
    pub fn closures(&self) -> u64 {
        self.closures.load(Relaxed)
    }

    fn lock_hold(&self) -> std::sync::MutexGuard<'_, Option<Hold>> {
        self.hold
            .lock()
            .expect("invariant: gate hold lock never poisoned")
    }

    /// The app is about to stop (its `preStop` hook): close the gate and send nothing until it
    /// was seen down and ready again, or for at most `max`.
    pub fn hold(&self, max: Duration) {
        *self.lock_hold() = Some(Hold {
            until: Instant::now() + max,
            saw_down: false,
        });
        if self.close() {
            info!("The app announced its stop; sending it nothing until it is ready again");
        }
        self.wake.notify_one();
    }

    /// Lifts a hold (shutdown: the app waits for the sidecar to finish).
    pub fn release_hold(&self) {
        self.lock_hold().take();
    }

    /// Whether requests must wait (a hold is on and within its bound).
    pub fn is_held(&self) -> bool {
        let mut hold = self.lock_hold();
        match *hold {
            Some(h) if Instant::now() >= h.until => {
                *hold = None;
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Resolves once no hold is on.
    pub async fn unheld(&self) {
        while self.is_held() {
            tokio::time::sleep(HOLD_CHECK).await;
        }
    }

    /// A probe answered: whether the gate may open. Under a hold, only once the probe saw the
    /// app down since (a new process answers), or past the hold's bound.
    fn may_open(&self) -> bool {
        let mut hold = self.lock_hold();
        match *hold {
            Some(h) if !h.saw_down && Instant::now() < h.until => false,
            Some(_) => {
                *hold = None;
                true
            }
            None => true,
        }
    }

    /// A probe failed: under a hold, the app's old process is gone.
    fn saw_down(&self) {
        if let Some(h) = self.lock_hold().as_mut() {
            h.saw_down = true;
        }
    }

    /// Whether the poll loop has paused every assigned partition for the gate.
    pub fn paused_applied(&self) -> bool {
        self.paused_applied.load(Relaxed)
    }

    pub fn set_paused_applied(&self, paused: bool) {
        self.paused_applied.store(paused, Relaxed);
    }
}

#[cfg(test)]
mod hold_tests {
    use super::*;

    #[test]
    fn a_hold_keeps_the_gate_shut_until_the_app_was_seen_down_and_up() {
        let gate = Gate::default();
        assert!(gate.open());
        gate.hold(Duration::from_secs(60));
        assert!(!gate.is_open() && gate.is_held());
        // The old process still answers: it stays shut.
        assert!(!gate.may_open());
        assert!(gate.is_held());
        // Its container stopped, then the new one answers.
        gate.saw_down();
        assert!(gate.may_open());
        assert!(!gate.is_held());
    }

    #[test]
    fn a_hold_ends_at_its_bound_or_when_released() {
        let gate = Gate::default();
        gate.hold(Duration::ZERO);
        assert!(!gate.is_held(), "past its bound");
        assert!(gate.may_open());
        gate.hold(Duration::from_secs(60));
        gate.release_hold();
        assert!(!gate.is_held());
        assert!(gate.may_open());
    }
}

#[cfg(test)]
mod pause_tests {
    use super::*;

    #[test]
    fn a_pause_by_request_stops_taking_records_without_closing_the_gate() {
        let gate = Gate::default();
        assert!(gate.open());
        assert!(gate.takes_records() && !gate.paused());
        assert!(gate.set_paused(true), "a change");
        assert!(!gate.set_paused(true), "no change");
        assert!(gate.paused());
        assert!(!gate.takes_records(), "paused: no record is taken");
        assert!(gate.is_open(), "the app still answers");
        assert_eq!(gate.closures(), 0, "a pause is not an app closure");
        assert_eq!(gate.closed_for(), None, "nor counted as the app not ready");
        assert!(gate.set_paused(false));
        assert!(gate.takes_records());
        assert_eq!(gate.closures(), 0);
    }

    #[test]
    fn resuming_does_not_open_a_gate_the_app_keeps_closed() {
        let gate = Gate::default();
        gate.set_paused(true);
        gate.set_paused(false);
        assert!(!gate.takes_records(), "the app never answered");
        gate.open();
        gate.set_outage(true);
        assert!(!gate.takes_records(), "an outage still holds it");
    }
}

/// How readiness is checked.
#[derive(Debug)]
enum Probe {
    /// `GET readinessUrl`, 2xx = ready.
    Http {
        uri: Uri,
        client: Box<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>>,
    },
    /// A TCP connect to the endpoint.
    Tcp { host: String, port: u16 },
}

/// Probes the app and drives a [`Gate`].
#[derive(Debug)]
pub struct Prober {
    probe: Probe,
    timeout: Duration,
}

impl Prober {
    pub fn from_config(endpoint: &EndpointConfig) -> Result<Self, TargetError> {
        let timeout = endpoint.connect_timeout.as_std().min(PROBE_TIMEOUT);
        let probe = match &endpoint.readiness_url {
            Some(url) => {
                let uri: Uri = url.parse().map_err(|_| TargetError::Url(url.clone()))?;
                let https = uri.scheme_str() == Some("https");
                let connector = crate::forward::connector(timeout, https)?;
                let client = Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(1)
                    .build(connector);
                Probe::Http {
                    uri,
                    client: Box::new(client),
                }
            }
            None => {
                let uri: Uri = endpoint
                    .url
                    .parse()
                    .map_err(|_| TargetError::Url(endpoint.url.clone()))?;
                let host = uri
                    .host()
                    .ok_or_else(|| TargetError::Url(endpoint.url.clone()))?
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned();
                let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                    Some("https") => 443,
                    _ => 80,
                });
                Probe::Tcp { host, port }
            }
        };
        Ok(Self { probe, timeout })
    }

    /// One probe: whether the app is ready, and why not.
    pub async fn check(&self) -> Result<(), String> {
        match &self.probe {
            Probe::Http { uri, client } => {
                let req = http::Request::get(uri.clone())
                    .header(http::header::USER_AGENT, "kcp-sidecar-readiness")
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                match tokio::time::timeout(self.timeout, client.request(req)).await {
                    Err(_) => Err("readiness probe timed out".into()),
                    Ok(Err(e)) => Err(format!("readiness probe failed: {e}")),
                    Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
                    Ok(Ok(resp)) => Err(format!("readiness probe answered {}", resp.status())),
                }
            }
            Probe::Tcp { host, port } => {
                let connect = tokio::net::TcpStream::connect((host.as_str(), *port));
                match tokio::time::timeout(self.timeout, connect).await {
                    Err(_) => Err("connecting to the endpoint timed out".into()),
                    Ok(Err(e)) => Err(format!("connecting to the endpoint: {e}")),
                    Ok(Ok(_)) => Ok(()),
                }
            }
        }
    }

    /// Probes until `stop` fires, opening and closing `gate`.
    pub async fn run(self, gate: &Gate, stop: CancellationToken) {
        let mut first = true;
        loop {
            let result = self.check().await;
            if first && let Err(reason) = &result {
                warn!(%reason, "App not answering yet; consuming starts when it does");
            }
            first = false;
            match result {
                Ok(()) => {
                    if gate.may_open() && gate.open() {
                        info!("App ready; consuming");
                    }
                }
                Err(reason) => {
                    gate.saw_down();
                    if gate.close() {
                        warn!(%reason, "App not ready; pausing every assigned partition");
                    } else {
                        debug!(%reason, "App still not ready");
                    }
                }
            }
            let every = if gate.is_open() {
                OPEN_INTERVAL
            } else {
                CLOSED_INTERVAL
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
                _ = gate.wake.notified() => {}
            }
        }
    }
}
