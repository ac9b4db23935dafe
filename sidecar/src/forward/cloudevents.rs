//! A record as a CloudEvent, the way the CloudEvents Kafka protocol binding reads one.
//!
//! Pure: builds a `cloudevents::Event` (the SDK's model; its JSON format is the structured
//! body) from a record; [`http`] writes it as an HTTP request in binary or structured mode.
//!
//! - A record whose `content-type` header is `application/cloudevents+json` is a structured-mode
//!   event already: it is parsed and sent as that event (a value that is not one makes the record
//!   bad). Other event formats (`application/cloudevents+avro`, ...) are sent as opaque data, as
//!   the binding allows.
//! - Any other record becomes an event with `specversion` 1.0, `id` = `<topic>/<partition>/<offset>`
//!   (the idempotency key), `source` = `endpoint.cloudEvents.source` or
//!   `kafka://<first bootstrap server>/<topic>`, `type` = `endpoint.cloudEvents.type` (default
//!   `io.kafkaproxy.record`), `time` = the record timestamp, `partitionkey` = the record key (when
//!   it is text of at most 4 KiB), `datacontenttype` = the record's `content-type` header (else
//!   the endpoint's static `content-type`, by default `application/octet-stream`), or
//!   `application/json` for a decoded value. Then the binding's binary mode applies: each `ce_<name>`
//!   Kafka header whose name is an attribute name (`a-z`, `0-9`) and whose value is UTF-8 (and, for
//!   `time` and `dataschema`, parses) sets that attribute, winning over the defaults; `content-type`
//!   sets `datacontenttype` unless the value was decoded. Headers used so are not forwarded again
//!   as `kcp-h-*`. An empty value is an event without data.

pub mod http;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use cloudevents::{AttributesWriter, Data, Event, EventBuilder, EventBuilderV10};
use kcp_crds::config::is_plain_header_value;
use serde_json::Value as Json;

use crate::{forward::request::MAX_KEY_BYTES, record::Record};

/// The JSON event format's media type.
pub const JSON_FORMAT: &str = "application/cloudevents+json";
/// Kafka header prefix of CloudEvents attributes (binary mode).
pub const KAFKA_PREFIX: &str = "ce_";
/// Attribute names longer than this are not taken from headers.
pub const MAX_ATTRIBUTE_NAME: usize = 64;

/// How events are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Binary,
    Structured,
}

/// The resource's CloudEvents settings, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    pub type_: String,
    /// `None`: `kafka://<cluster>/<topic>`.
    pub source: Option<String>,
    /// The first bootstrap server.
    pub cluster: String,
}

/// What the record's value is, for the event's data.
#[derive(Clone, Copy, Debug)]
pub enum Payload<'a> {
    /// The value as consumed; `content_type` is what the request would say it is.
    Raw {
        value: &'a Bytes,
        content_type: &'a str,
    },
    /// The value decoded to JSON.
    Decoded(&'a Json),
}

/// An attribute read from a Kafka header: `ce_<name>` (or `content-type`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderAttribute {
    pub name: String,
    pub value: String,
}

/// The attribute a Kafka header sets, if it sets one (see the module docs).
pub fn header_attribute(name: &str, value: Option<&[u8]>) -> Option<HeaderAttribute> {
    let attr = if name.eq_ignore_ascii_case("content-type") {
        "datacontenttype".to_owned()
    } else {
        let attr = name.strip_prefix(KAFKA_PREFIX)?;
        let valid = !attr.is_empty()
            && attr.len() <= MAX_ATTRIBUTE_NAME
            && attr != "data"
            && attr
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid {
            return None;
        }
        attr.to_owned()
    };
    let value = std::str::from_utf8(value?).ok()?;
    if value.chars().any(char::is_control)
        || (attr == "datacontenttype" && !is_plain_header_value(value.as_bytes()))
    {
        return None;
    }
    let usable = match attr.as_str() {
        "specversion" => value == "1.0",
        "time" => DateTime::parse_from_rfc3339(value).is_ok(),
        "dataschema" => url::Url::parse(value).is_ok(),
        "id" | "source" | "type" => !value.is_empty(),
        _ => true,
    };
    usable.then(|| HeaderAttribute {
        name: attr,
        value: value.to_owned(),
    })
}

/// Whether the record says it is a structured-mode event in the JSON format (its `content-type`
/// header). Other event formats (`+avro`, batches) are sent as opaque data.
pub fn is_structured(record: &Record) -> bool {
    record.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type")
            && value.as_deref().is_some_and(|v| {
                v.len() >= JSON_FORMAT.len()
                    && v[..JSON_FORMAT.len()].eq_ignore_ascii_case(JSON_FORMAT.as_bytes())
            })
    })
}

/// A structured-mode record's event; `Err` says why the value is not one.
pub fn parse_structured(value: &[u8]) -> Result<Event, String> {
    serde_json::from_slice::<Event>(value).map_err(|e| {
        format!("the record's content-type says it is a structured CloudEvent ({JSON_FORMAT}), but its value is not one: {e}")
    })
}

/// The event for a record that is not a structured-mode event. `attributes` are those its
/// headers set ([`header_attribute`]), in header order (a later one wins).
pub fn event(
    settings: &Settings,
    record: &Record,
    payload: Payload<'_>,
    attributes: Vec<HeaderAttribute>,
) -> Event {
    let source = settings
        .source
        .clone()
        .unwrap_or_else(|| format!("kafka://{}/{}", settings.cluster, record.tp.topic));
    let builder = EventBuilderV10::new()
        .id(record.coordinates())
        .source(source)
        .ty(settings.type_.clone());
    let mut event = builder
        .build()
        .expect("invariant: id, source and type are set and not empty");
    if let Some(time) = record
        .timestamp
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
    {
        event.set_time(Some(time));
    }
    if let Some(key) = record.key.as_deref().and_then(text_key) {
        event.set_extension("partitionkey", key);
    }
    let decoded = matches!(payload, Payload::Decoded(_));
    let mut content_type = match payload {
        Payload::Decoded(_) => "application/json".to_owned(),
        Payload::Raw { content_type, .. } => content_type.to_owned(),
    };
    for a in attributes {
        match a.name.as_str() {
            "specversion" => {}
            "datacontenttype" if !decoded => content_type = a.value,
            "datacontenttype" => {}
            "id" => {
                event.set_id(a.value);
            }
            "source" => {
                event.set_source(a.value);
            }
            "type" => {
                event.set_type(a.value);
            }
            "subject" => {
                event.set_subject(Some(a.value));
            }
            "time" => {
                event.set_time(
                    DateTime::parse_from_rfc3339(&a.value)
                        .ok()
                        .map(|t| t.to_utc()),
                );
            }
            "dataschema" => {
                event.set_dataschema(url::Url::parse(&a.value).ok());
            }
            name => event.set_extension(name, a.value),
        }
    }
    match payload {
        Payload::Decoded(json) => {
            event.set_data(content_type, Data::Json(json.clone()));
        }
        Payload::Raw { value, .. } if value.is_empty() => {}
        Payload::Raw { value, .. } => {
            // Binary mode sends the value byte for byte; structured mode writes it as JSON.
            let data = match settings.mode {
                Mode::Binary => Data::Binary(value.to_vec()),
                Mode::Structured => data_for(&content_type, value),
            };
            event.set_data(content_type, data);
        }
    }
    event
}

/// Raw data in the form the JSON format writes best: JSON as JSON, text as a string, anything
/// else as `data_base64`.
fn data_for(content_type: &str, value: &Bytes) -> Data {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if (media == "application/json" || media.ends_with("+json"))
        && let Ok(json) = serde_json::from_slice::<Json>(value)
    {
        return Data::Json(json);
    }
    if media.starts_with("text/")
        && let Ok(text) = std::str::from_utf8(value)
    {
        return Data::String(text.to_owned());
    }
    Data::Binary(value.to_vec())
}

/// The key as a `partitionkey`: UTF-8 text without control characters, at most 4 KiB.
fn text_key(key: &[u8]) -> Option<String> {
    if key.len() > MAX_KEY_BYTES {
        return None;
    }
    let text = std::str::from_utf8(key).ok()?;
    (!text.is_empty() && !text.chars().any(char::is_control)).then(|| text.to_owned())
}

#[cfg(test)]
mod tests;
