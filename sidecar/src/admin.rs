//! The admin server: probes, metrics and status on their own port (`admin.listen`).
//!
//! Read-only over [`Stats`], except `/drain`, which holds the readiness gate; it never touches
//! Kafka or the app. Routes (GET):
//!
//! - `/healthz` — liveness: 200 while the poll loop ticked within the health threshold
//!   ([`DEFAULT_HEALTH_THRESHOLD`]), 503 when it is stuck (Kubernetes then restarts the pod), and
//!   503 for good once a record was left without an outcome after an internal error
//!   ([`Stats::set_broken`]: its partition cannot commit past it until it is consumed again).
//! - `/readyz` — readiness: 200 when the consumer joined its group (an assignment was received,
//!   possibly empty: a replica beyond the partition count is ready) and the app answers (the
//!   readiness gate is open); 503 with the reason otherwise.
//! - `/metrics` — Prometheus text (OpenMetrics), see `metrics`.
//! - `/status` — JSON for a person: probe results, gate, counters, per-partition state.
//! - `/drain` — the app containers' `preStop` hook: answers once the sidecar sends the app
//!   nothing more ([`drain`]).

pub mod drain;

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use kcp_crds::config::DRAIN_PATH;

use crate::{metrics, stats::Stats, stats::StatsSnapshot};

/// Liveness fails when the poll loop has not ticked for this long. The loop ticks at least every
/// 100 ms, except while a rebalance callback drains revoked partitions (up to `drainTimeout`).
pub const DEFAULT_HEALTH_THRESHOLD: Duration = Duration::from_secs(30);

/// How long the admin server lets requests being answered finish once it stops.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The admin endpoints for one pipeline's [`Stats`].
pub struct Admin {
    stats: Arc<Stats>,
    registry: Registry,
    health_threshold: Duration,
    drain_timeout: Duration,
}

/// What `/status` answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub live: bool,
    pub ready: bool,
    /// Why not ready, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ready_reason: Option<&'static str>,
    #[serde(flatten)]
    pub stats: StatsSnapshot,
}

impl Admin {
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            registry: metrics::registry(&stats),
            stats,
            health_threshold: DEFAULT_HEALTH_THRESHOLD,
            drain_timeout: Duration::from_secs(30),
        }
    }

    /// How long the poll loop may go without a tick before `/healthz` fails.
    pub fn health_threshold(mut self, threshold: Duration) -> Self {
        self.health_threshold = threshold;
        self
    }

    /// `delivery.drainTimeout`: how long `/drain` waits for requests in flight when only the
    /// app stops.
    pub fn drain_timeout(mut self, drain_timeout: Duration) -> Self {
        self.drain_timeout = drain_timeout;
        self
    }

    /// Liveness: the poll loop ticked recently, and no record was left without an outcome.
    pub fn live(&self) -> bool {
        self.liveness().is_ok()
    }

    /// Liveness, and why not.
    fn liveness(&self) -> Result<(), String> {
        if let Some(why) = self.stats.broken() {
            return Err(format!("restart needed: {why}\n"));
        }
        let age = self.stats.poll_age();
        if age > self.health_threshold {
            return Err(format!(
                "poll loop has not ticked for {:.1}s (threshold {:.1}s)\n",
                age.as_secs_f64(),
                self.health_threshold.as_secs_f64()
            ));
        }
        Ok(())
    }

    /// Readiness, and why not.
    pub fn ready(&self) -> Result<(), &'static str> {
        if !self.stats.joined.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("not joined to the consumer group yet");
        }
        if !self.stats.gate.is_open() {
            return Err("the app does not answer (consumption paused)");
        }
        if self.stats.gate.outage() {
            return Err(
                "endpoint outage: the app answers every record with an error (consumption paused, probing)",
            );
        }
        Ok(())
    }

    pub fn status(&self) -> Status {
        let ready = self.ready();
        Status {
            live: self.live(),
            ready: ready.is_ok(),
            not_ready_reason: ready.err(),
            stats: self.stats.snapshot(),
        }
    }

    /// The metrics text, as `/metrics` serves it.
    pub fn metrics_text(&self) -> String {
        metrics::encode(&self.registry)
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
        }
        match req.uri().path() {
            "/healthz" => match self.liveness() {
                Ok(()) => text(StatusCode::OK, "ok\n".into()),
                Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, why),
            },
            "/readyz" => match self.ready() {
                Ok(()) => text(StatusCode::OK, "ready\n".into()),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
            },
            "/metrics" => {
                let mut resp = Response::new(Full::new(Bytes::from(self.metrics_text())));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    http::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                resp
            }
            "/status" => {
                let body = serde_json::to_vec_pretty(&self.status())
                    .expect("invariant: the status always serializes");
                let mut resp = Response::new(Full::new(Bytes::from(body)));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                resp
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /healthz, /readyz, /metrics, /status, /drain\n".into(),
            ),
        }
    }

    /// Binds the listener (port 0 picks a free one; see [`BoundAdmin::local_addr`]).
    pub async fn bind(self, addr: SocketAddr) -> std::io::Result<BoundAdmin> {
        let listener = TcpListener::bind(addr).await?;
        Ok(BoundAdmin {
            listener,
            admin: Arc::new(self),
        })
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A bound admin server, ready to [`serve`](BoundAdmin::serve).
pub struct BoundAdmin {
    listener: TcpListener,
    admin: Arc<Admin>,
}

impl BoundAdmin {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("invariant: a bound listener has an address")
    }

    /// Serves until `shutdown` fires; then lets the requests being answered finish (at most
    /// [`CLOSE_GRACE`]), so a `/drain` answer is written before the process exits.
    pub async fn serve(self, shutdown: CancellationToken) {
        info!(addr = %self.local_addr(), "Admin server listening");
        let mut connections = tokio::task::JoinSet::new();
        loop {
            // Finished connections are reaped as new ones come.
            while connections.try_join_next().is_some() {}
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        debug!(error = %e, "Admin accept failed");
                        continue;
                    }
                },
            };
            let admin = Arc::clone(&self.admin);
            let stop = shutdown.clone();
            connections.spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let admin = Arc::clone(&admin);
                    async move {
                        if req.uri().path() == DRAIN_PATH && req.method() == Method::GET {
                            let a = drain::drain(&admin.stats, admin.drain_timeout).await;
                            return Ok::<_, Infallible>(text(a.status, a.body));
                        }
                        Ok::<_, Infallible>(admin.respond(&req))
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                let mut conn = std::pin::pin!(conn);
                let res = tokio::select! {
                    res = conn.as_mut() => res,
                    _ = stop.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = res {
                    debug!(error = %e, "Admin connection ended");
                }
            });
        }
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
    }
}
