//! The demo's sample app: an HTTP server in the same process that records what it accepted.
//!
//! Each request carries a record index (read back by [`request_index`] from a plain, decoded or
//! CloudEvents request; requests that are not CloudEvents are counted). The app rejects every `reject_every`th record with
//! 422 (the record is bad: the sidecar dead-letters it), fails a pseudo-random `fail_rate` share
//! of first attempts with 500 (transient: the retry succeeds), and accepts everything else.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::formats::request_index;

/// What the app saw, in the order it answered.
#[derive(Clone, Debug, Default)]
pub struct AppLog {
    /// Record indexes answered 2xx, in answer order.
    pub accepted: Vec<usize>,
    /// Record indexes answered 422.
    pub rejected: Vec<usize>,
    /// First attempts answered 500.
    pub failed: usize,
    /// Requests that were not CloudEvents (relevant with a `cloudevents-*` format only).
    pub not_cloudevents: usize,
}

/// The running sample app; stops when dropped.
pub struct SampleApp {
    addr: SocketAddr,
    log: Arc<Mutex<AppLog>>,
    stop: CancellationToken,
}

/// Whether the app fails this record's first attempt: deterministic per index.
fn fails_first(i: usize, fail_rate: f64) -> bool {
    let h = (i as u64 ^ 0x5bd1_e995).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11;
    (h as f64 / (1u64 << 53) as f64) < fail_rate
}

impl SampleApp {
    pub async fn start(fail_rate: f64, reject_every: usize) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(AppLog::default()));
        let stop = CancellationToken::new();
        let (l, st) = (Arc::clone(&log), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = st.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok((s, _)) => s, Err(_) => continue },
                };
                let (l, st) = (Arc::clone(&l), st.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |req| handle(Arc::clone(&l), fail_rate, reject_every, req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! { _ = st.cancelled() => {}, _ = conn => {} }
                });
            }
        });
        Ok(Self { addr, log, stop })
    }

    pub fn url(&self) -> String {
        format!("http://{}/orders", self.addr)
    }

    pub fn log(&self) -> AppLog {
        self.log
            .lock()
            .expect("invariant: app log lock never poisoned")
            .clone()
    }
}

impl Drop for SampleApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(
    log: Arc<Mutex<AppLog>>,
    fail_rate: f64,
    reject_every: usize,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let attempt: u32 = req
        .headers()
        .get("kcp-attempt")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if headers.contains_key("kcp-batch") {
        return Ok(batch_reply(&log, fail_rate, reject_every, &body));
    }
    let (index, cloudevent) = request_index(&headers, &body);
    let status = {
        let mut log = log.lock().expect("invariant: app log lock never poisoned");
        if !cloudevent {
            log.not_cloudevents += 1;
        }
        match index {
            None => StatusCode::BAD_REQUEST,
            Some(i) if reject_every > 0 && (i + 1) % reject_every == 0 => {
                log.rejected.push(i);
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Some(i) if attempt == 1 && fails_first(i, fail_rate) => {
                log.failed += 1;
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Some(i) => {
                log.accepted.push(i);
                StatusCode::OK
            }
        }
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    Ok(resp)
}

/// The reply to a batch (`--batch`, docs/batch.md): each entry judged as a single request
/// would be, with a result per entry that is not accepted. Like an app that keeps order, it
/// stops at the first entry it fails (500): that entry and every one after it are answered 500
/// and not processed (the sidecar sends them again). A 422 does not stop it: that record ends.
fn batch_reply(
    log: &Mutex<AppLog>,
    fail_rate: f64,
    reject_every: usize,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let Ok(serde_json::Value::Array(entries)) = serde_json::from_slice(body) else {
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    };
    let mut log = log.lock().expect("invariant: app log lock never poisoned");
    let mut results = Vec::new();
    let mut stopped = false;
    for e in &entries {
        let id = e["id"].clone();
        let attempt = e["attempt"].as_u64().unwrap_or(1);
        let index = entry_index(e);
        let status = match index {
            _ if stopped => 500,
            None => 400,
            Some(i) if reject_every > 0 && (i + 1) % reject_every == 0 => {
                log.rejected.push(i);
                422
            }
            Some(i) if attempt == 1 && fails_first(i, fail_rate) => {
                log.failed += 1;
                stopped = true;
                500
            }
            Some(i) => {
                log.accepted.push(i);
                continue;
            }
        };
        results.push(serde_json::json!({"id": id, "status": status}));
    }
    let body = serde_json::json!({ "results": results }).to_string();
    Response::new(Full::new(Bytes::from(body)))
}

/// The record index in a batch entry: its value is the JSON a single request's body would be
/// (`value` as text, or `valueJson` decoded by the sidecar).
fn entry_index(e: &serde_json::Value) -> Option<usize> {
    let json = match e.get("valueJson") {
        Some(v) => v.clone(),
        None => serde_json::from_str(e["value"].as_str()?).ok()?,
    };
    let index = match &json {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::Object(o) => o.get("index").and_then(serde_json::Value::as_u64),
        _ => None,
    };
    index.map(|i| i as usize)
}
