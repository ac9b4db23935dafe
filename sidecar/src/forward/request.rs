//! Builds the HTTP request for one delivery attempt.
//!
//! Pure: a [`Target`] (from the endpoint config) and a [`Record`] give a `Request`. The body is
//! the record value byte for byte. Headers (all lowercase on the wire, all values ASCII):
//!
//! | header | value |
//! |---|---|
//! | `kcp-topic`, `kcp-partition`, `kcp-offset` | the record's coordinates |
//! | `kcp-timestamp` | record timestamp, ms since the epoch (absent when the record has none) |
//! | `kcp-key` | the key as is, when it is printable ASCII without edge spaces |
//! | `kcp-key-base64` | otherwise the key in standard base64 (neither header for a null key) |
//! | `kcp-key-dropped` | instead of both, for a key over [`MAX_KEY_BYTES`]: its length in bytes |
//! | `idempotency-key` | `<topic>/<partition>/<offset>` |
//! | `kcp-group` | the consumer group |
//! | `kcp-attempt` | 1-based attempt number (app-down waits do not count) |
//! | `traceparent`, `tracestate` | the first Kafka header of each name, when printable ASCII of at most [`MAX_TRACE_HEADER_BYTES`]; otherwise forwarded as `kcp-h-*` like any other |
//! | `kcp-h-<name>` | a Kafka header whose name is an HTTP token and whose value is printable ASCII |
//! | `kcp-hb-<name>` | same name rule, value in base64 (binary, non-ASCII, control chars, edge spaces) |
//! | `kcp-hx-<hex of name>` | a Kafka header whose name is not an HTTP token; value in base64 |
//! | `kcp-headers-dropped` | how many Kafka headers were not forwarded (over the limits below) |
//! | `kcp-headers-unreadable` | how many Kafka headers were left out because their name is not UTF-8 (`record`) |
//!
//! Values are ASCII because HTTP gives other bytes no defined meaning (RFC 9110 §5.5: servers
//! treat them as opaque, often as Latin-1), so a UTF-8 key would reach the app garbled: anything
//! but printable ASCII travels in base64, under a name that says so. HTTP header names are
//! case-insensitive, so Kafka header names arrive lowercased. Duplicate Kafka headers become
//! repeated HTTP headers, in order; a null value is sent as an empty value. At most
//! [`MAX_FORWARDED_HEADERS`] Kafka headers and [`MAX_FORWARDED_HEADER_BYTES`] of HTTP header names
//! and values *as sent* (after the prefix, hex and base64) are forwarded (common servers refuse
//! more than ~100 headers or ~8-64 KiB); the dead-letter record keeps them all. Everything else a
//! record puts in the request is bounded too (the key by [`MAX_KEY_BYTES`], trace headers by
//! [`MAX_TRACE_HEADER_BYTES`]), so no record can make a request that http refuses to build
//! (its names stop at 64 KiB) or that the app's server refuses for its size. Static
//! `endpoint.headers` are set first; the `kcp-*` headers above win over them.
//!
//! **Formats.** With `endpoint.decode`, the body is the value decoded to JSON
//! (`content-type: application/json`, `kcp-schema-id: <id>`). With a `cloudevents-*` format the
//! record becomes a CloudEvent ([`cloudevents`](super::cloudevents)): its `ce_*` and
//! `content-type` Kafka headers become attributes instead of `kcp-h-*` headers (within the same
//! limits, counted as sent), and the event is written in binary mode (`ce-*` headers, data as
//! the body, `Content-Type` from `datacontenttype`) or structured mode (one
//! `application/cloudevents+json` body). The `kcp-*` headers above are sent in every format.

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::Full;
use kcp_crds::{
    config::{EndpointConfig, Format, is_plain_header_value},
    v1alpha1::{DEFAULT_CLOUDEVENTS_TYPE, HttpMethod},
};

use super::cloudevents::{self, Payload, Settings, http as ce_http};
use crate::{decode::Decoded, record::Record};

/// At most this many Kafka headers become HTTP headers.
pub const MAX_FORWARDED_HEADERS: usize = 64;
/// At most this many bytes of Kafka header names and values become HTTP headers.
pub const MAX_FORWARDED_HEADER_BYTES: usize = 32 * 1024;
/// Keys longer than this are not sent (`kcp-key-dropped` says how long they were): base64
/// makes it at most ~5.5 KiB on the wire.
pub const MAX_KEY_BYTES: usize = 4096;
/// `traceparent` and `tracestate` values longer than this are not passed through as such (the
/// W3C Trace Context limit that tracers must propagate is 512 characters).
pub const MAX_TRACE_HEADER_BYTES: usize = 512;

/// Where and how records are sent; built once from the endpoint config.
#[derive(Clone, Debug)]
pub struct Target {
    pub uri: Uri,
    pub method: Method,
    pub static_headers: HeaderMap,
    pub group: HeaderValue,
    /// How the record is shaped: raw, or a CloudEvent.
    pub shape: Shape,
}

/// The request shape (`endpoint.format`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    Raw,
    CloudEvents(Settings),
}

/// The content type of a body that is JSON the sidecar wrote (a decoded value).
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Why the endpoint config cannot be turned into requests.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("endpoint.url {0:?} is not a valid URI")]
    Url(String),
    #[error("endpoint.url {0:?} must start with http:// or https://")]
    Scheme(String),
    #[error("loading TLS root certificates for an https endpoint: {0}")]
    Tls(String),
    #[error("header {0:?} has an invalid name or value")]
    Header(String),
    #[error("group id {0:?} is not a valid header value")]
    Group(String),
}

impl Target {
    pub fn from_config(endpoint: &EndpointConfig, group: &str) -> Result<Self, TargetError> {
        let uri: Uri = endpoint
            .url
            .parse()
            .map_err(|_| TargetError::Url(endpoint.url.clone()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(TargetError::Scheme(endpoint.url.clone()));
        }
        let mut static_headers = HeaderMap::new();
        static_headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        for (name, value) in &endpoint.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| TargetError::Header(name.clone()))?;
            let v = HeaderValue::from_str(value).map_err(|_| TargetError::Header(name.clone()))?;
            static_headers.insert(n, v);
        }
        if let Some(host) = &endpoint.host_header {
            let v = HeaderValue::from_str(host).map_err(|_| TargetError::Header("host".into()))?;
            static_headers.insert(header::HOST, v);
        }
        Ok(Self {
            uri,
            method: match endpoint.method {
                HttpMethod::Post => Method::POST,
                HttpMethod::Put => Method::PUT,
            },
            static_headers,
            group: HeaderValue::from_str(group).map_err(|_| TargetError::Group(group.into()))?,
            shape: match endpoint.format {
                Format::Raw => Shape::Raw,
                format => {
                    let ce = endpoint.cloud_events.clone().unwrap_or_default();
                    Shape::CloudEvents(Settings {
                        mode: if format == Format::CloudeventsBinary {
                            cloudevents::Mode::Binary
                        } else {
                            cloudevents::Mode::Structured
                        },
                        type_: if ce.type_.is_empty() {
                            DEFAULT_CLOUDEVENTS_TYPE.to_owned()
                        } else {
                            ce.type_
                        },
                        source: ce.source,
                        cluster: String::new(),
                    })
                }
            },
        })
    }

    /// Names the Kafka cluster in the default CloudEvents `source`: the first of the
    /// comma-separated `bootstrap_servers`.
    pub fn for_cluster(mut self, bootstrap_servers: &str) -> Self {
        if let Shape::CloudEvents(s) = &mut self.shape {
            s.cluster = bootstrap_servers
                .split(',')
                .map(str::trim)
                .find(|s| !s.is_empty())
                .unwrap_or("kafka")
                .to_owned();
        }
        self
    }
}

fn plain(bytes: &[u8]) -> Option<HeaderValue> {
    if is_plain_header_value(bytes) {
        HeaderValue::from_bytes(bytes).ok()
    } else {
        None
    }
}

fn base64(bytes: &[u8]) -> HeaderValue {
    HeaderValue::from_str(&STANDARD.encode(bytes))
        .expect("invariant: base64 is a valid header value")
}

fn number(n: impl std::fmt::Display) -> HeaderValue {
    HeaderValue::from_str(&n.to_string()).expect("invariant: a number is a valid header value")
}

/// The HTTP name and value a Kafka header travels as; `None` when there is none (a name too
/// long for an HTTP header name even once encoded: http caps names at 64 KiB).
pub fn forwarded_header(name: &str, value: Option<&[u8]>) -> Option<(HeaderName, HeaderValue)> {
    let value_bytes = value.unwrap_or_default();
    if let Ok(n) = HeaderName::from_bytes(format!("kcp-h-{name}").as_bytes())
        && let Some(v) = plain(value_bytes)
    {
        return Some((n, v));
    }
    if let Ok(n) = HeaderName::from_bytes(format!("kcp-hb-{name}").as_bytes()) {
        return Some((n, base64(value_bytes)));
    }
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    let n = HeaderName::from_bytes(format!("kcp-hx-{hex}").as_bytes()).ok()?;
    Some((n, base64(value_bytes)))
}

/// The header a Kafka header of this name passes through as, when it is a trace header.
fn trace_header(name: &str) -> Option<HeaderName> {
    ["traceparent", "tracestate"]
        .into_iter()
        .find(|t| name.eq_ignore_ascii_case(t))
        .map(HeaderName::from_static)
}

/// The request for attempt `attempt` (1-based) of `record`, its value `decoded` when
/// `endpoint.decode` is on. `Err` says why the record cannot be sent in this format (it is bad).
pub fn build(
    target: &Target,
    record: &Record,
    attempt: u32,
    decoded: Option<&Decoded>,
) -> Result<Request<Full<Bytes>>, String> {
    let mut headers = target.static_headers.clone();
    let h = &mut headers;
    h.insert(
        "kcp-topic",
        HeaderValue::from_str(&record.tp.topic)
            .unwrap_or_else(|_| base64(record.tp.topic.as_bytes())),
    );
    h.insert("kcp-partition", number(record.tp.partition));
    h.insert("kcp-offset", number(record.offset));
    if let Some(ts) = record.timestamp {
        h.insert("kcp-timestamp", number(ts));
    }
    match record.key.as_deref() {
        None => {}
        Some(key) if key.len() > MAX_KEY_BYTES => {
            h.insert("kcp-key-dropped", number(key.len()));
        }
        Some(key) => match plain(key) {
            Some(v) => {
                h.insert("kcp-key", v);
            }
            None => {
                h.insert("kcp-key-base64", base64(key));
            }
        },
    }
    h.insert(
        "idempotency-key",
        HeaderValue::from_str(&record.coordinates())
            .unwrap_or_else(|_| base64(record.coordinates().as_bytes())),
    );
    h.insert("kcp-group", target.group.clone());
    h.insert("kcp-attempt", number(attempt));

    let settings = match &target.shape {
        Shape::CloudEvents(s) => Some(s),
        Shape::Raw => None,
    };
    // A structured-mode event keeps its own attributes: its headers are forwarded as they are.
    let structured_record =
        settings.is_some() && decoded.is_none() && cloudevents::is_structured(record);
    let mut attributes = Vec::new();
    let (mut count, mut bytes, mut dropped) = (0usize, 0usize, 0usize);
    for (name, value) in &record.headers {
        let value = value.as_deref();
        if settings.is_some()
            && !structured_record
            && let Some(a) = cloudevents::header_attribute(name, value)
            && !(decoded.is_some() && a.name == "datacontenttype")
        {
            // Counted as sent in binary mode; the same rule in structured mode keeps one event.
            let sent = if a.name == "datacontenttype" {
                "content-type".len() + a.value.len()
            } else {
                "ce-".len() + a.name.len() + ce_http::percent_encode(&a.value).len()
            };
            if count < MAX_FORWARDED_HEADERS && bytes + sent <= MAX_FORWARDED_HEADER_BYTES {
                count += 1;
                bytes += sent;
                attributes.push(a);
            } else {
                dropped += 1;
            }
            continue;
        }
        if let Some(trace) = trace_header(name)
            && !h.contains_key(&trace)
            && let Some(v) = value
                .filter(|v| v.len() <= MAX_TRACE_HEADER_BYTES)
                .and_then(plain)
        {
            h.insert(trace, v);
            continue;
        }
        // Encoding never shrinks a header: one too large as is needs no encoding to be dropped.
        let raw = name.len() + value.map_or(0, <[u8]>::len);
        let forwarded = (count < MAX_FORWARDED_HEADERS
            && bytes + raw <= MAX_FORWARDED_HEADER_BYTES)
            .then(|| forwarded_header(name, value))
            .flatten()
            .filter(|(n, v)| bytes + n.as_str().len() + v.len() <= MAX_FORWARDED_HEADER_BYTES);
        let Some((n, v)) = forwarded else {
            dropped += 1;
            continue;
        };
        count += 1;
        bytes += n.as_str().len() + v.len();
        h.append(n, v);
    }
    if record.unreadable_headers > 0 {
        h.insert("kcp-headers-unreadable", number(record.unreadable_headers));
    }
    if let Some(d) = decoded {
        h.insert("kcp-schema-id", number(d.schema_id));
    }

    let body = match settings {
        None => match decoded {
            None => record.value.clone(),
            Some(d) => {
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(JSON_CONTENT_TYPE),
                );
                json_bytes(&d.json)
            }
        },
        Some(s) => {
            let event = if structured_record {
                cloudevents::parse_structured(&record.value)?
            } else {
                let content_type = target
                    .static_headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream");
                let payload = match decoded {
                    Some(d) => Payload::Decoded(&d.json),
                    None => Payload::Raw {
                        value: &record.value,
                        content_type,
                    },
                };
                cloudevents::event(s, record, payload, attributes)
            };
            match s.mode {
                cloudevents::Mode::Structured => {
                    h.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(ce_http::STRUCTURED_CONTENT_TYPE),
                    );
                    if structured_record {
                        record.value.clone()
                    } else {
                        ce_http::structured(&event)
                    }
                }
                cloudevents::Mode::Binary => {
                    let b = ce_http::binary(event)?;
                    for (n, v) in b.headers {
                        h.insert(n, v);
                    }
                    match b.content_type {
                        Some(ct) => h.insert(header::CONTENT_TYPE, ct),
                        // No data, so no datacontenttype: nothing to type.
                        None => h.remove(header::CONTENT_TYPE),
                    };
                    dropped += b.dropped;
                    b.body
                }
            }
        }
    };
    if dropped > 0 {
        h.insert("kcp-headers-dropped", number(dropped));
    }

    let mut request = Request::new(Full::new(body));
    *request.method_mut() = target.method.clone();
    *request.uri_mut() = target.uri.clone();
    *request.headers_mut() = headers;
    Ok(request)
}

/// A JSON value as the body's bytes.
fn json_bytes(json: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(json).expect("invariant: a JSON value always serializes"))
}

#[cfg(test)]
mod tests;
