//! The HTTP limit: a bare hyper client (hyper-util's pooled keep-alive legacy client, the same
//! kind the sidecar uses) driving the sink directly, with no Kafka and no pipeline.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::clock::{now_ns, payload};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled keep-alive client keeping up to `pool` idle connections.
pub fn client(pool: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(pool.max(1))
        .build(connector)
}

/// One POST; fails unless the sink answers 2xx.
pub async fn post(client: &HttpClient, uri: &Uri, body: Bytes) -> anyhow::Result<()> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Full::new(body))?;
    let resp = client.request(req).await.context("bare client request")?;
    let status = resp.status();
    // Read the body so the connection returns to the pool.
    resp.into_body().collect().await?;
    if !status.is_success() {
        bail!("sink answered {status}");
    }
    Ok(())
}

/// Sends `total` POSTs of `body` with `concurrency` requests in flight; returns once all were
/// answered. The rate is read from the sink's counters by the caller, as for the sidecar.
pub async fn drive(url: &str, concurrency: usize, total: u64, body: Bytes) -> anyhow::Result<()> {
    let uri: Uri = url.parse()?;
    let client = client(concurrency);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let (client, uri, next, body) =
            (client.clone(), uri.clone(), Arc::clone(&next), body.clone());
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Relaxed) < total {
                post(&client, &uri, body.clone()).await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(())
}

/// Sends `rate` requests per second for `duration` (open loop: each request on its own task,
/// its send time written into its `size`-byte body), then waits for the stragglers. One
/// untimed request goes first so connecting is not measured.
pub async fn fixed_rate(
    url: &str,
    rate: u32,
    duration: Duration,
    size: usize,
) -> anyhow::Result<u64> {
    let uri: Uri = url.parse()?;
    let client = client(16);
    post(&client, &uri, Bytes::from(payload(size, 0))).await?;
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..total {
        tick.tick().await;
        let (client, uri) = (client.clone(), uri.clone());
        tasks.spawn(async move { post(&client, &uri, Bytes::from(payload(size, now_ns()))).await });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(total)
}
