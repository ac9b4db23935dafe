//! Several records as one request, and the reply as one [`Outcome`] per record
//! (`delivery.batch`; the contract is docs/batch.md).
//!
//! Pure: [`build`] turns the entries into a request (a JSON array, one object per record, every
//! byte kept: text when UTF-8, base64 otherwise), [`split`] turns the request's one outcome into
//! an outcome per entry, which the pure [`classify`](super::classify()) then reads as it reads a
//! single record's. Nothing here decides or retries.

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

use super::{Outcome, request::Target};
use crate::{decode::Decoded, record::Record};

/// Request header naming how many entries the body holds.
pub const BATCH_HEADER: &str = "kcp-batch";

/// One record of a batch, as sent.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub record: &'a Record,
    /// The record's own attempt number, 1-based.
    pub attempt: u32,
    /// Its value decoded to JSON, with `endpoint.decode`.
    pub decoded: Option<&'a Decoded>,
}

/// Bytes as JSON: text when they are UTF-8, base64 otherwise.
enum Text<'a> {
    Utf8(&'a str),
    Base64(String),
}

impl<'a> Text<'a> {
    fn of(bytes: &'a [u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(s) => Self::Utf8(s),
            Err(_) => Self::Base64(STANDARD.encode(bytes)),
        }
    }

    fn split(t: Option<Self>) -> (Option<&'a str>, Option<String>) {
        match t {
            None => (None, None),
            Some(Self::Utf8(s)) => (Some(s), None),
            Some(Self::Base64(b)) => (None, Some(b)),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireHeader<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireEntry<'a> {
    id: String,
    topic: &'a str,
    partition: i32,
    offset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<i64>,
    attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    headers: Vec<WireHeader<'a>>,
    #[serde(skip_serializing_if = "is_zero")]
    headers_unreadable: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_json: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_id: Option<u32>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl<'a> WireEntry<'a> {
    fn of(e: &Entry<'a>) -> Self {
        let r = e.record;
        let (key, key_base64) = Text::split(r.key.as_deref().map(Text::of));
        let (value, value_base64) = match e.decoded {
            Some(_) => (None, None),
            None => Text::split(Some(Text::of(&r.value))),
        };
        Self {
            id: r.coordinates(),
            topic: &r.tp.topic,
            partition: r.tp.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            attempt: e.attempt,
            key,
            key_base64,
            headers: r
                .headers
                .iter()
                .map(|(name, v)| {
                    let (value, value_base64) = Text::split(v.as_deref().map(Text::of));
                    WireHeader {
                        name,
                        value,
                        value_base64,
                    }
                })
                .collect(),
            headers_unreadable: r.unreadable_headers,
            value,
            value_base64,
            value_json: e.decoded.map(|d| &d.json),
            schema_id: e.decoded.map(|d| d.schema_id),
        }
    }
}

/// The request carrying `entries` (at least one).
pub fn build(target: &Target, entries: &[Entry<'_>]) -> Request<Full<Bytes>> {
    let wire: Vec<WireEntry<'_>> = entries.iter().map(WireEntry::of).collect();
    let body = serde_json::to_vec(&wire).expect("invariant: a batch always serializes");
    let mut headers = target.static_headers.clone();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(super::request::JSON_CONTENT_TYPE),
    );
    headers.insert("kcp-group", target.group.clone());
    headers.insert(BATCH_HEADER, HeaderValue::from(entries.len()));
    let mut request = Request::new(Full::new(Bytes::from(body)));
    *request.method_mut() = target.method.clone();
    *request.uri_mut() = target.uri.clone();
    *request.headers_mut() = headers;
    request
}

/// A reply's per-entry results: `{"results": [{"id": ..., "status": ..., "action": ...}]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply {
    results: Vec<EntryResult>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryResult {
    id: String,
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    action: Option<String>,
}

fn ok() -> u16 {
    200
}

/// What each entry got from `whole`, the one outcome of the request carrying them; `ids` are the
/// entries' ids in the order sent. A 2xx reply without the action header gives the results its
/// body lists (an entry not listed is delivered, an id not sent is ignored); an empty body
/// delivers every entry; a body that is not a reply is `Failed` for every entry. Any other
/// outcome is every entry's, as if each had been sent alone.
pub fn split(whole: &Outcome, ids: &[String]) -> Vec<Outcome> {
    let Outcome::Response {
        status,
        action: None,
        body,
        ..
    } = whole
    else {
        return vec![whole.clone(); ids.len()];
    };
    if !(200..300).contains(status) || body.iter().all(u8::is_ascii_whitespace) {
        return vec![without_body(whole); ids.len()];
    }
    let reply: Reply = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            let why = format!(
                "batch reply unreadable: {e} (expected {{\"results\": [{{\"id\": ..., \"status\": ...}}]}} or an empty body; docs/batch.md)"
            );
            return vec![Outcome::Failed(why); ids.len()];
        }
    };
    let mut outcomes = vec![without_body(whole); ids.len()];
    for r in reply.results {
        // Ids are few (a batch) and unique; a linear search keeps the order of `ids`.
        if let Some(i) = ids.iter().position(|id| *id == r.id) {
            outcomes[i] = Outcome::Response {
                status: r.status,
                retry_after: None,
                action: r.action,
                body: Bytes::new(),
            };
        }
    }
    outcomes
}

/// The outcome without its body (read for the batch, not a record's own).
fn without_body(whole: &Outcome) -> Outcome {
    match whole {
        Outcome::Response {
            status,
            retry_after,
            action,
            ..
        } => Outcome::Response {
            status: *status,
            retry_after: *retry_after,
            action: action.clone(),
            body: Bytes::new(),
        },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests;
