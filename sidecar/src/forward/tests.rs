//! The forwarder against an in-process hyper server: what each kind of reply becomes.

use std::{collections::BTreeMap, convert::Infallible, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use kcp_crds::{config::BodyAck, v1alpha1::HttpMethod};
use tokio::net::TcpListener;

use super::*;
use crate::record::Tp;

/// Status, headers, body and delay (ms) of a canned reply.
type Canned = (u16, Vec<(&'static str, &'static str)>, &'static str, u64);

/// Serves `reply` for every request on a fresh port; returns the URL.
async fn serve(reply: fn(&Request<Incoming>) -> Canned) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| async move {
                    let (status, headers, body, delay_ms) = reply(&req);
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                    *resp.status_mut() = http::StatusCode::from_u16(status).expect("status");
                    for (k, v) in headers {
                        resp.headers_mut().insert(k, v.parse().expect("value"));
                    }
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}/x")
}

fn endpoint(url: String) -> EndpointConfig {
    EndpointConfig {
        url,
        method: HttpMethod::Post,
        host_header: None,
        headers: BTreeMap::new(),
        connect_timeout: kcp_crds::Duration::from_millis(500),
        request_timeout: kcp_crds::Duration::from_millis(200),
        slow_request_threshold: None,
        readiness_url: None,
        retry_on: vec!["5xx".parse().expect("matcher")],
        action_header: Some("x-action".into()),
        body_ack: None,
        unready_timeout: kcp_crds::Duration::from_secs(120),
        format: Default::default(),
        cloud_events: None,
        decode: None,
    }
}

fn record() -> Record {
    Record {
        tp: Tp::new("t", 0),
        offset: 1,
        timestamp: None,
        key: None,
        value: Bytes::from_static(b"v"),
        headers: vec![],
        unreadable_headers: 0,
    }
}

#[tokio::test]
async fn replies_become_outcomes() {
    let url = serve(|req| {
        match req
            .headers()
            .get("kcp-attempt")
            .and_then(|v| v.to_str().ok())
        {
            Some("1") => (200, vec![], "", 0),
            Some("2") => (503, vec![("retry-after", "7"), ("x-action", "skip")], "", 0),
            _ => (200, vec![], "", 1000),
        }
    })
    .await;
    let f = Forwarder::new(&endpoint(url), "g", 4).expect("forwarder");
    let ok = f.attempt(&record(), 1).await;
    assert!(
        matches!(ok, Outcome::Response { status: 200, .. }),
        "{ok:?}"
    );
    let second = f.attempt(&record(), 2).await;
    assert_eq!(
        second,
        Outcome::Response {
            status: 503,
            retry_after: Some(Duration::from_secs(7)),
            action: Some("skip".into()),
            body: Bytes::new(),
        }
    );
    assert_eq!(classify(&second, f.policy()), Decision::Skip);
    assert_eq!(f.attempt(&record(), 3).await, Outcome::Timeout);
}

#[tokio::test]
async fn a_2xx_whose_body_fails_body_ack_is_retried() {
    let url = serve(|_| (200, vec![], r#"{"errno":1}"#, 0)).await;
    let mut e = endpoint(url);
    e.body_ack = Some(BodyAck {
        pointer: "/errno".into(),
        equals: "0".into(),
    });
    let f = Forwarder::new(&e, "g", 1).expect("forwarder");
    let outcome = f.attempt(&record(), 1).await;
    assert_eq!(
        classify(&outcome, f.policy()),
        Decision::Retry { after: None }
    );
}

#[tokio::test]
async fn refused_connection_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let f =
        Forwarder::new(&endpoint(format!("http://127.0.0.1:{port}/x")), "g", 1).expect("forwarder");
    let outcome = f.attempt(&record(), 1).await;
    assert!(matches!(outcome, Outcome::Unreachable(_)), "{outcome:?}");
    assert_eq!(classify(&outcome, f.policy()), Decision::AppDown);
}

/// A 2xx whose body is slow to arrive was delivered: the status decides, not the body (unless
/// `bodyAck` needs it). Before, the request timeout fired while reading the body and the
/// record was sent again.
#[tokio::test]
async fn a_2xx_with_a_slow_body_is_delivered() {
    use futures::stream::{self, StreamExt};
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<Incoming>| async {
                    // The first bytes of the body, then nothing: the body never ends.
                    let body = stream::once(async {
                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"{\"err")))
                    })
                    .chain(stream::pending());
                    Ok::<_, Infallible>(Response::new(StreamBody::new(body)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let url = format!("http://{addr}/x");
    let f = Forwarder::new(&endpoint(url.clone()), "g", 1).expect("forwarder");
    let outcome = f.attempt(&record(), 1).await;
    assert!(
        matches!(outcome, Outcome::Response { status: 200, .. }),
        "{outcome:?}"
    );
    assert_eq!(classify(&outcome, f.policy()), Decision::Delivered);

    // With bodyAck the body decides, and it never came: not delivered.
    let mut e = endpoint(url);
    e.body_ack = Some(BodyAck {
        pointer: "/errno".into(),
        equals: "0".into(),
    });
    let f = Forwarder::new(&e, "g", 1).expect("forwarder");
    let outcome = f.attempt(&record(), 1).await;
    assert_ne!(
        classify(&outcome, f.policy()),
        Decision::Delivered,
        "{outcome:?}"
    );
}
