//! A schema registry stand-in for the demo and the tests: an HTTP server on loopback serving the
//! part of the Confluent REST API the sidecar reads, from memory.
//!
//! `GET /schemas/ids/<id>` and `GET /subjects/<subject>/versions/<version|latest>`, with the
//! registry's answers: `schemaType` left out for Avro, `references` as registered, and its error
//! bodies (`404` with `40403` schema not found, `40401` subject not found, `40402` version not
//! found; `404` with `404` for an unknown path). It can play an outage ([`RegistryStandIn::set_available`]:
//! `503` with `50003`) and require basic auth (`401`). It counts the requests it answered, and
//! the schema reads among them.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::SeqCst},
    },
};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A registered schema.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    schema_type: Option<String>,
    schema: String,
    references: Vec<Value>,
}

#[derive(Debug, Default)]
struct State {
    /// Schema id `n` is `schemas[n - 1]`.
    schemas: Vec<Stored>,
    /// Each subject's versions, as schema ids.
    subjects: BTreeMap<String, Vec<u32>>,
    credentials: Option<String>,
}

/// The running stand-in; stops when dropped.
#[derive(Debug)]
pub struct RegistryStandIn {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    available: Arc<AtomicBool>,
    schema_reads: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl RegistryStandIn {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let registry = Self {
            addr,
            state: Arc::default(),
            available: Arc::new(AtomicBool::new(true)),
            schema_reads: Arc::default(),
            requests: Arc::default(),
            stop: CancellationToken::new(),
        };
        let (state, available, reads, requests, stop) = (
            Arc::clone(&registry.state),
            Arc::clone(&registry.available),
            Arc::clone(&registry.schema_reads),
            Arc::clone(&registry.requests),
            registry.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok((s, _)) => s, Err(_) => continue },
                };
                let (state, available, reads, requests, stop) = (
                    Arc::clone(&state),
                    Arc::clone(&available),
                    Arc::clone(&reads),
                    Arc::clone(&requests),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        requests.fetch_add(1, SeqCst);
                        let answer = answer(&state, &available, &reads, &req);
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! { _ = stop.cancelled() => {}, _ = conn => {} }
                });
            }
        });
        Ok(registry)
    }

    /// The base URL (`kafka.schemaRegistry.url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registers `schema` under `subject` as its next version; returns its id (the same id
    /// for a schema registered before). `schema_type`: `None` for Avro, `PROTOBUF`, `JSON`.
    /// `references`: `(name, subject, version)`.
    pub fn register(
        &self,
        subject: &str,
        schema_type: Option<&str>,
        schema: &str,
        references: &[(&str, &str, i32)],
    ) -> u32 {
        let stored = Stored {
            schema_type: schema_type.map(str::to_owned),
            schema: schema.to_owned(),
            references: references
                .iter()
                .map(|(name, subject, version)| {
                    json!({"name": name, "subject": subject, "version": version})
                })
                .collect(),
        };
        let mut state = self.lock();
        let id = match state.schemas.iter().position(|s| *s == stored) {
            Some(i) => i as u32 + 1,
            None => {
                state.schemas.push(stored);
                state.schemas.len() as u32
            }
        };
        let versions = state.subjects.entry(subject.to_owned()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        id
    }

    /// `false`: every request is answered `503` until it is `true` again.
    pub fn set_available(&self, available: bool) {
        self.available.store(available, SeqCst);
    }

    /// Requires HTTP basic auth with these credentials from now on.
    pub fn require_basic_auth(&self, username: &str, password: &str) {
        let token = STANDARD.encode(format!("{username}:{password}"));
        self.lock().credentials = Some(format!("Basic {token}"));
    }

    /// Schema reads (by id or by subject version) answered with a schema.
    pub fn schema_reads(&self) -> u64 {
        self.schema_reads.load(SeqCst)
    }

    /// Requests answered, whatever the answer.
    pub fn requests(&self) -> u64 {
        self.requests.load(SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("invariant: the registry state lock is never poisoned")
    }
}

impl Drop for RegistryStandIn {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/vnd.schemaregistry.v1+json"),
    );
    resp
}

fn error(status: StatusCode, code: u32, message: String) -> Response<Full<Bytes>> {
    reply(status, json!({"error_code": code, "message": message}))
}

fn answer(
    state: &Mutex<State>,
    available: &AtomicBool,
    reads: &AtomicU64,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    if !available.load(SeqCst) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            50003,
            "Error while forwarding the request to the leader".into(),
        );
    }
    let state = state
        .lock()
        .expect("invariant: the registry state lock is never poisoned");
    if let Some(expected) = &state.credentials {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return error(StatusCode::UNAUTHORIZED, 401, "Unauthorized".into());
        }
    }
    let path: Vec<String> = req
        .uri()
        .path()
        .split('/')
        .skip(1)
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let schema_json = |id: u32, s: &Stored| {
        let mut v = json!({"schema": s.schema, "references": s.references, "id": id});
        if let Some(t) = &s.schema_type {
            v["schemaType"] = json!(t);
        }
        v
    };
    match (req.method() == http::Method::GET, path.as_slice()) {
        (true, ["schemas", "ids", id]) => {
            let found = id
                .parse::<u32>()
                .ok()
                .and_then(|n| Some((n, state.schemas.get((n as usize).checked_sub(1)?)?)));
            match found {
                Some((n, s)) => {
                    reads.fetch_add(1, SeqCst);
                    reply(StatusCode::OK, schema_json(n, s))
                }
                None => error(
                    StatusCode::NOT_FOUND,
                    40403,
                    format!("Schema {id} not found"),
                ),
            }
        }
        (true, ["subjects", subject, "versions", version]) => {
            let Some(versions) = state.subjects.get(*subject) else {
                return error(
                    StatusCode::NOT_FOUND,
                    40401,
                    format!("Subject '{subject}' not found."),
                );
            };
            let index = match *version {
                "latest" | "-1" => versions.len().checked_sub(1),
                v => v.parse::<usize>().ok().and_then(|v| v.checked_sub(1)),
            };
            match index.and_then(|i| versions.get(i).map(|id| (i, *id))) {
                Some((i, id)) => {
                    reads.fetch_add(1, SeqCst);
                    let mut v = schema_json(id, &state.schemas[id as usize - 1]);
                    v["subject"] = json!(subject);
                    v["version"] = json!(i + 1);
                    reply(StatusCode::OK, v)
                }
                None => error(
                    StatusCode::NOT_FOUND,
                    40402,
                    format!("Version {version} not found."),
                ),
            }
        }
        _ => error(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found".into()),
    }
}
