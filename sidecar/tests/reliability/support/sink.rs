//! A recording HTTP app: logs every request it receives (coordinates, key, attempt, body digest,
//! arrival order and time, which sidecar incarnation sent it, when its response was written) and
//! answers as its behaviour says: accept, a status (5xx bursts, 429 with `Retry-After`, 4xx),
//! hang past `requestTimeout`, close the connection without a reply, or be down altogether
//! (nothing listening). The test tells it which incarnation runs ([`Sink::set_epoch`]) and when
//! one is about to be killed ([`Sink::note_kill`]), for the checker's finished/in-flight split.
//! A batch request (`delivery.batch`) is logged as one hit per record (`sink/batch.rs`).

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering::SeqCst},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

use super::{check::Kill, digest};

mod batch;

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
    /// When the whole response (status line, headers, empty body) had been written to the
    /// socket; `None` when it never was: the connection closed first (the sidecar was killed or
    /// gave up on the request), or the app closed it without a reply.
    pub answered_at: Option<Instant>,
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
    kills: Mutex<Vec<Kill>>,
}

impl Shared {
    fn behaviour(&self) -> Behaviour {
        Arc::clone(&self.behaviour.lock().expect("behaviour lock"))
    }

    /// Logs `hit` under its arrival index; returns it.
    fn log_hit(&self, mut hit: Hit) -> usize {
        let mut log = self.log.lock().expect("log lock");
        hit.index = log.len();
        log.push(hit);
        log.len() - 1
    }
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
            kills: Mutex::new(Vec::new()),
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

    /// Requests from now on are from sidecar incarnation (or episode) `epoch`.
    pub fn set_epoch(&self, epoch: u32) {
        self.shared.epoch.store(epoch, SeqCst);
    }

    /// The current epoch's sidecar is about to get `kill -9`: call it right before the signal.
    /// A response it was sent shortly before may not have been read (see [`Kill`]).
    pub fn note_kill(&self) {
        let kill = Kill {
            epoch: self.shared.epoch.load(SeqCst),
            at: Instant::now(),
        };
        self.shared.kills.lock().expect("kills lock").push(kill);
    }

    /// Every [`Sink::note_kill`] so far.
    pub fn kills(&self) -> Vec<Kill> {
        self.shared.kills.lock().expect("kills lock").clone()
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
                let pending = Arc::new(Mutex::new(Pending::default()));
                let io = Recorded {
                    stream,
                    pending: Arc::clone(&pending),
                    shared: Arc::clone(&shared),
                };
                let service =
                    service_fn(move |req| handle(Arc::clone(&shared), Arc::clone(&pending), req));
                let conn = hyper::server::conn::http1::Builder::new()
                    .max_headers(300)
                    .serve_connection(TokioIo::new(io), service);
                tokio::select! { _ = stop.cancelled() => {}, _ = conn => {} }
            });
        }
    });
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The response a connection is writing: the log index of its request, and whether bytes were
/// written since the response was handed to hyper. HTTP/1 answers one request at a time per
/// connection, and the sidecar's client sends the next only after reading this answer.
#[derive(Default)]
struct Pending {
    /// The log indexes of its request's records (a batch has several).
    indexes: Vec<usize>,
    wrote: bool,
}

/// The connection's socket, noting when a response was fully written: hyper flushes the socket
/// only once its write buffer is empty, so the first flush after a write that follows the
/// handler's return is the moment the whole response was in the kernel's hands.
struct Recorded {
    stream: TcpStream,
    pending: Arc<Mutex<Pending>>,
    shared: Arc<Shared>,
}

impl Recorded {
    fn wrote(&self, n: &Poll<io::Result<usize>>) {
        if matches!(n, Poll::Ready(Ok(n)) if *n > 0) {
            let mut p = self.pending.lock().expect("pending lock");
            if !p.indexes.is_empty() {
                p.wrote = true;
            }
        }
    }
}

impl AsyncRead for Recorded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.wrote(&n);
        n
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(&n);
        n
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.stream).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            let mut p = this.pending.lock().expect("pending lock");
            if p.wrote && !p.indexes.is_empty() {
                p.wrote = false;
                let now = Instant::now();
                let mut log = this.shared.log.lock().expect("log lock");
                for i in p.indexes.drain(..) {
                    log[i].answered_at = Some(now);
                }
            }
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

async fn handle(
    shared: Arc<Shared>,
    pending: Arc<Mutex<Pending>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if parts.headers.contains_key("kcp-batch") {
        return batch::handle(&shared, &pending, &parts.headers, &body).await;
    }
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
        answered_at: None,
    };
    let action = shared.behaviour()(&hit);
    hit.accepted = action.accepted();
    let index = shared.log_hit(hit);
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
    // From here the connection writes this answer: `Recorded` notes when it is out.
    *pending.lock().expect("pending lock") = Pending {
        indexes: vec![index],
        wrote: false,
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
