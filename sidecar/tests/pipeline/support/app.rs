//! A recording HTTP app: answers per a behaviour function and records every request it got.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One request the app received.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status the app answered (0 while the reply is pending).
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn partition(&self) -> i32 {
        self.header("kcp-partition")
            .and_then(|v| v.parse().ok())
            .expect("kcp-partition header")
    }
    pub fn offset(&self) -> i64 {
        self.header("kcp-offset")
            .and_then(|v| v.parse().ok())
            .expect("kcp-offset header")
    }
    pub fn attempt(&self) -> u32 {
        self.header("kcp-attempt")
            .and_then(|v| v.parse().ok())
            .expect("kcp-attempt header")
    }
    pub fn key(&self) -> Option<&str> {
        self.header("kcp-key")
    }
}

/// What to answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
    pub body: Bytes,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
            delay: Duration::ZERO,
            body: Bytes::new(),
        }
    }
    pub fn ok() -> Self {
        Self::status(200)
    }
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

pub type Behaviour = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

pub fn behaviour(f: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Behaviour {
    Arc::new(f)
}

#[derive(Default)]
struct Shared {
    log: Mutex<Vec<Received>>,
    now: AtomicUsize,
    max: AtomicUsize,
    /// In-flight requests per partition, and the max seen for any one partition.
    per_partition: Mutex<std::collections::HashMap<i32, usize>>,
    max_per_partition: AtomicUsize,
}

pub struct App {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl App {
    pub async fn start(behaviour: Behaviour) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("valid addr"), behaviour).await
    }

    pub async fn start_on(addr: SocketAddr, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind app");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let (s, st) = (Arc::clone(&shared), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = st.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok((s, _)) => s, Err(_) => continue },
                };
                let (s, st, b) = (Arc::clone(&s), st.clone(), Arc::clone(&behaviour));
                tokio::spawn(async move {
                    let service =
                        service_fn(move |req| handle(Arc::clone(&s), Arc::clone(&b), req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .max_headers(200)
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! { _ = st.cancelled() => {}, _ = conn => {} }
                });
            }
        });
        Self { addr, shared, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}/deliver", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.log.lock().expect("log lock").clone()
    }

    /// (partition, offset) of every request answered 2xx.
    pub fn delivered(&self) -> std::collections::BTreeSet<(i32, i64)> {
        self.received()
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| (r.partition(), r.offset()))
            .collect()
    }

    pub fn max_concurrency(&self) -> usize {
        self.shared.max.load(SeqCst)
    }

    pub fn max_concurrency_per_partition(&self) -> usize {
        self.shared.max_per_partition.load(SeqCst)
    }

    /// Stops listening and drops every connection (the app "crashes").
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(
    shared: Arc<Shared>,
    behaviour: Behaviour,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut received = Received {
        headers: parts.headers,
        body,
        status: 0,
    };
    let reply = behaviour(&received);
    let partition = received
        .header("kcp-partition")
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(-1);
    let index = {
        let mut log = shared.log.lock().expect("log lock");
        received.status = 0;
        log.push(received.clone());
        log.len() - 1
    };
    let n = shared.now.fetch_add(1, SeqCst) + 1;
    shared.max.fetch_max(n, SeqCst);
    {
        let mut pp = shared.per_partition.lock().expect("partition lock");
        let c = pp.entry(partition).or_default();
        *c += 1;
        shared.max_per_partition.fetch_max(*c, SeqCst);
    }
    tokio::time::sleep(reply.delay).await;
    shared.now.fetch_sub(1, SeqCst);
    *shared
        .per_partition
        .lock()
        .expect("partition lock")
        .entry(partition)
        .or_default() -= 1;
    shared.log.lock().expect("log lock")[index].status = reply.status;
    let mut resp = Response::new(Full::new(reply.body));
    *resp.status_mut() = http::StatusCode::from_u16(reply.status).expect("valid status");
    for (k, v) in reply.headers {
        resp.headers_mut()
            .insert(k, v.parse().expect("valid header value"));
    }
    Ok(resp)
}
