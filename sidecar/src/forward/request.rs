//! Builds the HTTP request for one delivery attempt.
//!
//! Pure: a [`Target`] (from the endpoint config) and a [`Record`] give a `Request`. The body is
//! the record value byte for byte. Headers (all lowercase on the wire):
//!
//! | header | value |
//! |---|---|
//! | `kcp-topic`, `kcp-partition`, `kcp-offset` | the record's coordinates |
//! | `kcp-timestamp` | record timestamp, ms since the epoch (absent when the record has none) |
//! | `kcp-key` | the key as is, when it is UTF-8 without control characters or edge whitespace |
//! | `kcp-key-base64` | otherwise the key in standard base64 (neither header for a null key) |
//! | `idempotency-key` | `<topic>/<partition>/<offset>` |
//! | `kcp-group` | the consumer group |
//! | `kcp-attempt` | 1-based attempt number (app-down waits do not count) |
//! | `traceparent`, `tracestate` | passed through from Kafka headers of those names |
//! | `kcp-h-<name>` | a Kafka header whose name is an HTTP token and whose value is plain text |
//! | `kcp-hb-<name>` | same name rule, value in base64 (binary, control chars, edge whitespace) |
//! | `kcp-hx-<hex of name>` | a Kafka header whose name is not an HTTP token; value in base64 |
//! | `kcp-headers-dropped` | how many Kafka headers were not forwarded (over the limits below) |
//!
//! HTTP header names are case-insensitive, so Kafka header names arrive lowercased. Duplicate Kafka
//! headers become repeated HTTP headers, in order; a null value is sent as an empty value. At most [`MAX_FORWARDED_HEADERS`] Kafka
//! headers and [`MAX_FORWARDED_HEADER_BYTES`] of their names and values are forwarded (common
//! servers refuse more than ~100 headers or ~8-64 KiB); the dead-letter record keeps them all.
//! Static `endpoint.headers` are set first; the `kcp-*` headers above win over them.

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::Full;
use kcp_crds::{config::EndpointConfig, v1alpha1::HttpMethod};

use crate::record::Record;

/// At most this many Kafka headers become HTTP headers.
pub const MAX_FORWARDED_HEADERS: usize = 64;
/// At most this many bytes of Kafka header names and values become HTTP headers.
pub const MAX_FORWARDED_HEADER_BYTES: usize = 32 * 1024;

/// Where and how records are sent; built once from the endpoint config.
#[derive(Clone, Debug)]
pub struct Target {
    pub uri: Uri,
    pub method: Method,
    pub static_headers: HeaderMap,
    pub group: HeaderValue,
}

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
        })
    }
}

/// Whether bytes can travel as an HTTP header value unchanged: UTF-8, no control characters,
/// no leading or trailing whitespace (which parsers strip).
pub fn is_plain_value(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| !s.chars().any(char::is_control) && s.trim() == s)
}

fn plain(bytes: &[u8]) -> Option<HeaderValue> {
    if is_plain_value(bytes) {
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

/// The HTTP name and value a Kafka header travels as.
pub fn forwarded_header(name: &str, value: Option<&[u8]>) -> (HeaderName, HeaderValue) {
    let value_bytes = value.unwrap_or_default();
    if let Ok(n) = HeaderName::from_bytes(format!("kcp-h-{name}").as_bytes())
        && let Some(v) = plain(value_bytes)
    {
        return (n, v);
    }
    if let Ok(n) = HeaderName::from_bytes(format!("kcp-hb-{name}").as_bytes()) {
        return (n, base64(value_bytes));
    }
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    let n = HeaderName::from_bytes(format!("kcp-hx-{hex}").as_bytes())
        .expect("invariant: hex digits form a valid header name");
    (n, base64(value_bytes))
}

/// The request for attempt `attempt` (1-based) of `record`.
pub fn build(target: &Target, record: &Record, attempt: u32) -> Request<Full<Bytes>> {
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

    let (mut count, mut bytes, mut dropped) = (0usize, 0usize, 0usize);
    for (name, value) in &record.headers {
        let value = value.as_deref();
        if (name.eq_ignore_ascii_case("traceparent") || name.eq_ignore_ascii_case("tracestate"))
            && let Some(v) = value.and_then(plain)
        {
            let n = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .expect("invariant: traceparent/tracestate are valid names");
            h.entry(n).or_insert(v);
            continue;
        }
        let size = name.len() + value.map_or(0, <[u8]>::len);
        if count >= MAX_FORWARDED_HEADERS || bytes + size > MAX_FORWARDED_HEADER_BYTES {
            dropped += 1;
            continue;
        }
        count += 1;
        bytes += size;
        let (n, v) = forwarded_header(name, value);
        h.append(n, v);
    }
    if dropped > 0 {
        h.insert("kcp-headers-dropped", number(dropped));
    }

    let mut request = Request::new(Full::new(record.value.clone()));
    *request.method_mut() = target.method.clone();
    *request.uri_mut() = target.uri.clone();
    *request.headers_mut() = headers;
    request
}

#[cfg(test)]
mod tests;
