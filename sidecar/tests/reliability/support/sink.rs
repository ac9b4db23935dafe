//! A recording HTTP app: logs every request it receives (coordinates, key, attempt, body digest,
//! arrival order and time, which sidecar incarnation sent it) and answers as its behaviour
//! says: accept, a status (5xx bursts, 429 with `Retry-After`, 4xx), hang past `requestTimeout`,
//! close the connection without a reply, or be down altogether (nothing listening).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::digest;

/// One request received.
#[derive(Clone, Debug)]
pub struct Hit {
    /// Arrival order (0-based).
    pub index: usize,
    pub at: Instant,
    /// The sidecar incarnation the test said was running (see [`Sink::set_epoch`]).
    pub epoch: u32,
    pub partition: i32,
    pub offset: i64,
    pub attempt: u32,
    pub key: Option<Vec<u8>>,
    pub digest: u64,
    pub len: usize,
    pub headers: http::HeaderMap,
    /// The body carries the `#poison#` marker (a record the app refuses).
    pub poison: bool,
    /// The app answered 2xx (decided on arrival).
    pub accepted: bool,
}

/// What the app does with a request.
#[derive(Clone, Debug)]
pub enum Action {
    Accept(Duration),
    Status {
        status: u16,
        retry_after: Option<u32>,
    },
    /// Answer only after `Duration` (past `requestTimeout`), with 200 then: too late.
    Hang(Duration),
    /// Read the request, then close the connection without a reply.
    Close,
}

impl Action {
    pub fn ok() -> Self {
        Self::Accept(Duration::ZERO)
    }
    fn accepted(&self) -> bool {
        match self {
            Self::Accept(_) => true,
            Self::Status { status, .. } => (200..300).contains(status),
            Self::Hang(_) | Self::Close => false,
        }
    }
}

pub type Behaviour = Arc<dyn Fn(&Hit) -> Action + Send + Sync>;

pub fn behaviour(f: impl Fn(&Hit) -> Action + Send + Sync + 'static) -> Behaviour {
    Arc::new(f)
}

struct Shared {
    log: Mutex<Vec<Hit>>,
    behaviour: Mutex<Behaviour>,
    epoch: AtomicU32,
}

pub struct Sink {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Mutex<CancellationToken>,
}

impl Sink {
    pub async fn start(b: Behaviour) -> Self {
        let shared = Arc::new(Shared {
            log: Mutex::new(Vec::new()),
            behaviour: Mutex::new(b),
            epoch: AtomicU32::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("sink addr");
        let stop = CancellationToken::new();
        serve(listener, Arc::clone(&shared), stop.clone());
        Self {
            addr,
            shared,
            stop: Mutex::new(stop),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/deliver", self.addr)
    }

    pub fn set_epoch(&self, epoch: u32) {
        self.shared.epoch.store(epoch, SeqCst);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.shared.log.lock().expect("log lock").clone()
    }

    pub fn len(&self) -> usize {
        self.shared.log.lock().expect("log lock").len()
    }

    /// The app goes away: stop listening, drop every connection.
    pub fn down(&self) {
        self.stop.lock().expect("stop lock").cancel();
    }

    /// The app comes back on the same address.
    pub async fn up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "rebind {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let stop = CancellationToken::new();
        serve(listener, Arc::clone(&self.shared), stop.clone());
        *self.stop.lock().expect("stop lock") = stop;
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Ok(s) = self.stop.lock() {
            s.cancel();
        }
    }
}

fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted { Ok((s, _)) => s, Err(_) => continue },
            };
            let (shared, stop) = (Arc::clone(&shared), stop.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(Arc::clone(&shared), req));
                let conn = hyper::server::conn::http1::Builder::new()
                    .max_headers(300)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! { _ = stop.cancelled() => {}, _ = conn => {} }
            });
        }
    });
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let h = &parts.headers;
    let key = match (header(h, "kcp-key"), header(h, "kcp-key-base64")) {
        (Some(k), _) => Some(k.as_bytes().to_vec()),
        (None, Some(b)) => Some(STANDARD.decode(b).expect("kcp-key-base64 is base64")),
        (None, None) => None,
    };
    let mut hit = Hit {
        index: 0,
        at: Instant::now(),
        epoch: shared.epoch.load(SeqCst),
        partition: header(h, "kcp-partition")
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1),
        offset: header(h, "kcp-offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1),
        attempt: header(h, "kcp-attempt")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        key,
        digest: digest(&body),
        len: body.len(),
        headers: parts.headers.clone(),
        poison: body.windows(8).any(|w| w == b"#poison#"),
        accepted: false,
    };
    let behaviour = Arc::clone(&shared.behaviour.lock().expect("behaviour lock"));
    let action = behaviour(&hit);
    hit.accepted = action.accepted();
    {
        let mut log = shared.log.lock().expect("log lock");
        hit.index = log.len();
        log.push(hit);
    }
    let (status, retry_after) = match action {
        Action::Accept(d) => {
            tokio::time::sleep(d).await;
            (200, None)
        }
        Action::Status {
            status,
            retry_after,
        } => (status, retry_after),
        Action::Hang(d) => {
            tokio::time::sleep(d).await;
            (200, None)
        }
        Action::Close => {
            // An error from the service makes hyper close the connection without a reply.
            return Err(std::io::Error::other("closing without a reply"));
        }
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = http::StatusCode::from_u16(status).expect("valid status");
    if let Some(s) = retry_after {
        resp.headers_mut().insert(
            http::header::RETRY_AFTER,
            s.to_string().parse().expect("number"),
        );
    }
    Ok(resp)
}
