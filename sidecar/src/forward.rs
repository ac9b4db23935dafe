//! Sends one delivery attempt to the endpoint and reports what happened.
//!
//! Owns the pooled keep-alive HTTP client (hyper 1 via hyper-util's legacy `Client`; https via
//! rustls with the system's root certificates, `SSL_CERT_FILE`/`SSL_CERT_DIR` honoured). One call to
//! [`Forwarder::attempt`] is one HTTP request, bounded by `requestTimeout` (connecting by
//! `connectTimeout`); it never retries and never decides: it turns the reply into an [`Outcome`],
//! and the pure [`classify`] (the reply contract) decides. Request building is in [`request`],
//! the CloudEvents shapes in [`cloudevents`]. With `endpoint.decode`, each attempt first decodes
//! the value ([`Decoder`], schemas cached): a record that cannot be decoded or shaped is
//! [`Outcome::Undecodable`], a registry that cannot answer [`Outcome::RegistryUnavailable`],
//! and neither sends a request.

pub mod batch;
pub mod classify;
pub mod cloudevents;
pub mod request;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use http::HeaderName;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use kcp_crds::{SidecarConfig, config::EndpointConfig};
use tracing::warn;

pub use classify::{Decision, Outcome, Policy, classify};
pub use request::{Target, TargetError};

use crate::{
    decode::{DecodeError, Decoded, Decoder},
    record::Record,
    retry::parse_retry_after,
    telemetry::Throttle,
};

/// Reply bodies larger than this are not read for `bodyAck` (the attempt fails).
pub const MAX_REPLY_BODY: usize = 1024 * 1024;

/// The HTTP side of the pipeline; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Forwarder {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    target: Target,
    policy: Policy,
    request_timeout: Duration,
    slow_request: Option<Duration>,
    /// At most one slow-request warning per [`SLOW_LOG_PERIOD`].
    slow_log: Throttle,
    action_header: Option<HeaderName>,
    /// `endpoint.decode`: values decoded to JSON before they are sent.
    decoder: Option<Arc<Decoder>>,
}

/// Slow requests are logged at most once per this period (with a count of the others).
pub const SLOW_LOG_PERIOD: Duration = Duration::from_secs(10);

impl Forwarder {
    /// Builds the client. `pool_size` is the number of idle keep-alive connections kept.
    pub fn new(
        endpoint: &EndpointConfig,
        group: &str,
        pool_size: usize,
    ) -> Result<Self, TargetError> {
        let target = Target::from_config(endpoint, group)?;
        let action_header = endpoint
            .action_header
            .as_ref()
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes()).map_err(|_| TargetError::Header(h.clone()))
            })
            .transpose()?;
        let https = target.uri.scheme_str() == Some("https");
        let connector = connector(endpoint.connect_timeout.as_std(), https)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(pool_size.max(1))
            .build(connector);
        Ok(Self {
            client,
            target,
            policy: Policy::from_config(endpoint),
            request_timeout: endpoint.request_timeout.as_std(),
            slow_request: endpoint.slow_request_threshold.map(|d| d.as_std()),
            slow_log: Throttle::new(SLOW_LOG_PERIOD),
            action_header,
            decoder: None,
        })
    }

    /// The pipeline's forwarder: `endpoint`'s format, the cluster named in CloudEvents sources,
    /// a keep-alive connection per possible request in flight, and `decoder` when
    /// `endpoint.decode` is on.
    pub fn from_config(
        config: &SidecarConfig,
        decoder: Option<Arc<Decoder>>,
    ) -> Result<Self, TargetError> {
        let mut f = Self::new(
            &config.endpoint,
            &config.kafka.group_id,
            config.delivery.max_in_flight as usize,
        )?;
        f.target = f.target.for_cluster(&config.kafka.bootstrap_servers);
        f.decoder = decoder;
        Ok(f)
    }

    /// The decoded value, when there is a decoder and a value; the outcome when it fails.
    async fn decode(&self, record: &Record) -> Result<Option<Decoded>, Outcome> {
        let Some(decoder) = &self.decoder else {
            return Ok(None);
        };
        if record.value.is_empty() {
            // A tombstone (or empty value) has nothing to decode: it is sent empty.
            return Ok(None);
        }
        match decoder.decode(&record.value).await {
            Ok(d) => Ok(Some(d)),
            Err(e @ DecodeError::Bad(_)) => Err(Outcome::Undecodable(e.to_string())),
            Err(DecodeError::Unavailable(why)) => Err(Outcome::RegistryUnavailable(why)),
        }
    }

    /// The reply contract in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// One HTTP request for `record`; `attempt` is 1-based.
    pub async fn attempt(&self, record: &Record, attempt: u32) -> Outcome {
        let decoded = match self.decode(record).await {
            Ok(d) => d,
            Err(outcome) => return outcome,
        };
        let req = match request::build(&self.target, record, attempt, decoded.as_ref()) {
            Ok(req) => req,
            Err(why) => return Outcome::Undecodable(why),
        };
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started) + self.request_timeout;
        let outcome = self
            .send(req, deadline, self.policy.body_ack.is_some())
            .await;
        self.note_slow(record, attempt, started.elapsed());
        outcome
    }

    /// One request for the records of a batch, each with its own attempt number; an outcome
    /// per record, in order (docs/batch.md). Records whose value cannot be decoded are not
    /// sent: their outcome says why. `whole` is the request's own outcome (`None` when nothing
    /// was sent), for what concerns the endpoint rather than a record (`Retry-After`, load).
    pub async fn attempt_batch(&self, records: &[(&Record, u32)]) -> BatchOutcome {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        let mut decoded = Vec::with_capacity(records.len());
        for (i, (record, _)) in records.iter().enumerate() {
            match self.decode(record).await {
                Ok(d) => decoded.push(d),
                Err(outcome) => {
                    outcomes[i] = Some(outcome);
                    decoded.push(None);
                }
            }
        }
        let sent: Vec<usize> = (0..records.len())
            .filter(|i| outcomes[*i].is_none())
            .collect();
        let whole = if sent.is_empty() {
            None
        } else {
            let entries: Vec<batch::Entry<'_>> = sent
                .iter()
                .map(|&i| batch::Entry {
                    record: records[i].0,
                    attempt: records[i].1,
                    decoded: decoded[i].as_ref(),
                })
                .collect();
            let req = batch::build(&self.target, &entries);
            let started = Instant::now();
            let deadline = tokio::time::Instant::from_std(started) + self.request_timeout;
            let whole = self.send(req, deadline, true).await;
            self.note_slow(records[sent[0]].0, records[sent[0]].1, started.elapsed());
            let ids: Vec<String> = sent.iter().map(|&i| records[i].0.coordinates()).collect();
            for (i, outcome) in sent.iter().zip(batch::split(&whole, &ids)) {
                outcomes[*i] = Some(outcome);
            }
            Some(whole)
        };
        BatchOutcome {
            sent: if whole.is_some() { sent.len() } else { 0 },
            entries: outcomes
                .into_iter()
                .map(|o| o.expect("invariant: every entry has an outcome"))
                .collect(),
            whole,
        }
    }

    /// Logs a request slower than `slowRequestThreshold` (throttled); `record` is its first.
    fn note_slow(&self, record: &Record, attempt: u32, elapsed: Duration) {
        if let Some(slow) = self.slow_request
            && elapsed > slow
            && let Some(suppressed) = self.slow_log.allow()
        {
            warn!(
                topic = %record.tp.topic,
                partition = record.tp.partition,
                offset = record.offset,
                attempt,
                duration_ms = elapsed.as_millis() as u64,
                threshold_ms = slow.as_millis() as u64,
                suppressed,
                "Slow request (at most one such line per 10s; `suppressed` slow requests since the last)"
            );
        }
    }

    /// The request, bounded by `deadline` (`requestTimeout` after the start). The status line
    /// and headers decide the outcome: once they are in, a reply whose body is still arriving
    /// at the deadline is not a timeout (a 2xx is delivered, a 503 is a 503), the body is just
    /// abandoned (hyper then closes the connection). Only when the 2xx verdict is in the body
    /// (`read_body`: `bodyAck`, a batch's results) does a body that did not arrive in time make
    /// the attempt a timeout.
    async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
        deadline: tokio::time::Instant,
        read_body: bool,
    ) -> Outcome {
        let resp = match tokio::time::timeout_at(deadline, self.client.request(req)).await {
            Err(_) => return Outcome::Timeout,
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) if never_sent(&e) => return Outcome::Unreachable(error_chain(&e)),
            Ok(Err(e)) => return Outcome::Failed(error_chain(&e)),
        };
        let status = resp.status().as_u16();
        let headers = resp.headers();
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let action = self
            .action_header
            .as_ref()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let needs_body = read_body && (200..300).contains(&status);
        // Read the body even when unused, so the connection goes back to the pool.
        let body = Limited::new(resp.into_body(), MAX_REPLY_BODY).collect();
        let body = match tokio::time::timeout_at(deadline, body).await {
            Ok(Ok(b)) if needs_body => b.to_bytes(),
            Ok(Err(e)) if needs_body => {
                return Outcome::Failed(format!("reading reply body: {e}"));
            }
            Err(_) if needs_body => return Outcome::Timeout,
            _ => Bytes::new(),
        };
        Outcome::Response {
            status,
            retry_after,
            action,
            body,
        }
    }
}

/// What one batch request gave: an outcome per record, in order, and the request's own.
#[derive(Debug)]
pub struct BatchOutcome {
    pub entries: Vec<Outcome>,
    /// How many records the request carried.
    pub sent: usize,
    /// `None` when no request was sent (no record of the batch could be decoded).
    pub whole: Option<Outcome>,
}

/// The TCP (+ TLS for https) connector. Root certificates are loaded only for https endpoints.
pub(crate) fn connector(
    connect_timeout: Duration,
    https: bool,
) -> Result<HttpsConnector<HttpConnector>, TargetError> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = if https {
        HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| TargetError::Tls(e.to_string()))?
    } else {
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TargetError::Tls(e.to_string()))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        HttpsConnectorBuilder::new().with_tls_config(tls)
    };
    Ok(builder.https_or_http().enable_http1().wrap_connector(http))
}

/// Whether the request certainly never reached the app: connecting failed, or the connection
/// was dropped before the request was dispatched on it (hyper's "canceled").
fn never_sent(e: &hyper_util::client::legacy::Error) -> bool {
    if e.is_connect() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(h) = cause.downcast_ref::<hyper::Error>() {
            return h.is_canceled();
        }
        source = cause.source();
    }
    false
}

/// An error and its sources, `: `-separated.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests;
