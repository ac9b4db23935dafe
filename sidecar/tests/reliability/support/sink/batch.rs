//! A batch request (`delivery.batch`, docs/batch.md) as the app sees it: one [`Hit`] per entry,
//! each judged by the behaviour as a single request would be, and a reply with a result for
//! every entry not accepted. Like an app that keeps order, it stops at the first entry to be
//! retried (a `retryOn` status): that entry and every later one are answered 503 and not
//! accepted, so the sidecar sends them again. A refusal (4xx) does not stop it: that record
//! ends. `Hang` or `Close` for any entry applies to the whole request, and then no entry of it
//! is accepted. All entries share the request's answer time.

use std::{
    io,
    sync::{Arc, Mutex, atomic::Ordering::SeqCst},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::Full;
use serde_json::{Value, json};

use super::{Action, Hit, Pending, Shared};
use crate::support::digest;

/// The bytes of an entry's `text` field (UTF-8), or of its `base64` field; `None` for neither.
fn bytes_of(e: &Value, text: &str, base64: &str) -> Option<Vec<u8>> {
    if let Some(t) = e[text].as_str() {
        return Some(t.as_bytes().to_vec());
    }
    e[base64]
        .as_str()
        .map(|b| STANDARD.decode(b).expect("base64 in a batch entry"))
}

fn retried(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

pub(super) async fn handle(
    shared: &Arc<Shared>,
    pending: &Arc<Mutex<Pending>>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, io::Error> {
    let entries: Vec<Value> = serde_json::from_slice(body).expect("a batch is a JSON array");
    let behaviour = shared.behaviour();
    let epoch = shared.epoch.load(SeqCst);
    let mut judged = Vec::with_capacity(entries.len());
    let mut stopped = false;
    let mut whole = None;
    let mut delay = Duration::ZERO;
    for e in &entries {
        let value = bytes_of(e, "value", "valueBase64").unwrap_or_default();
        let mut hit = Hit {
            index: 0,
            at: Instant::now(),
            epoch,
            partition: e["partition"].as_i64().map_or(-1, |p| p as i32),
            offset: e["offset"].as_i64().unwrap_or(-1),
            attempt: e["attempt"].as_u64().map_or(0, |a| a as u32),
            key: bytes_of(e, "key", "keyBase64"),
            digest: digest(&value),
            len: value.len(),
            headers: headers.clone(),
            poison: value.windows(8).any(|w| w == b"#poison#"),
            accepted: false,
            answered_at: None,
        };
        let status = if stopped {
            Some(503)
        } else {
            match behaviour(&hit) {
                Action::Accept(d) => {
                    delay = delay.max(d);
                    None
                }
                Action::Status { status, .. } if (200..300).contains(&status) => None,
                Action::Status { status, .. } => {
                    stopped = retried(status);
                    Some(status)
                }
                other @ (Action::Hang(_) | Action::Close) => {
                    whole.get_or_insert(other);
                    Some(503)
                }
            }
        };
        hit.accepted = status.is_none();
        let id = e["id"].as_str().unwrap_or_default().to_owned();
        judged.push((hit, id, status));
    }
    if whole.is_some() {
        for (hit, ..) in &mut judged {
            hit.accepted = false;
        }
    }
    let mut indexes = Vec::with_capacity(judged.len());
    let mut results = Vec::new();
    for (hit, id, status) in judged {
        indexes.push(shared.log_hit(hit));
        if let Some(status) = status {
            results.push(json!({"id": id, "status": status}));
        }
    }
    match whole {
        Some(Action::Close) => {
            // An error from the service makes hyper close the connection without a reply.
            return Err(io::Error::other("closing without a reply"));
        }
        Some(Action::Hang(d)) => tokio::time::sleep(d).await,
        _ => tokio::time::sleep(delay).await,
    }
    // From here the connection writes this answer: `Recorded` notes when it is out.
    *pending.lock().expect("pending lock") = Pending {
        indexes,
        wrote: false,
    };
    let body = json!({ "results": results }).to_string();
    Ok(Response::new(Full::new(Bytes::from(body))))
}
