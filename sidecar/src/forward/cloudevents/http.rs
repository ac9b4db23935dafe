//! A CloudEvent as an HTTP request, following the CloudEvents HTTP protocol binding.
//!
//! Pure. **Binary mode** (§3.1): `datacontenttype` is the `Content-Type` header (never a
//! `ce-datacontenttype` header), every other attribute and extension is a `ce-<name>` header, the
//! data is the body. Header values are the attributes' canonical strings (`time` in RFC 3339,
//! UTC, `Z`), percent-encoded as §3.1.3.2 requires: space, `"`, `%` and every byte outside
//! `!`..`~` become `%XX` (UTF-8, upper-case hex), so `Euro € 😀` is
//! `Euro%20%E2%82%AC%20%F0%9F%98%80`. The SDK's own HTTP serializer writes values unencoded (a
//! non-ASCII value fails), so this module implements the SDK's `BinarySerializer` itself.
//! **Structured mode** (§3.2): the event in the JSON format (the SDK's serialization) as the body,
//! `Content-Type: application/cloudevents+json; charset=utf-8`.
//!
//! A header value longer than [`MAX_ATTRIBUTE_HEADER_BYTES`] once encoded (a server would refuse
//! the request) leaves an extension out, counted; a required or standard attribute that long
//! makes the record bad in binary mode (structured mode has no such limit).

use bytes::Bytes;
use chrono::SecondsFormat;
use cloudevents::{
    Event,
    event::SpecVersion,
    message::{BinaryDeserializer, BinarySerializer, MessageAttributeValue, Result as CeResult},
};
use http::{HeaderName, HeaderValue};

/// The structured-mode content type.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";
/// A `ce-*` header value longer than this, encoded, is not sent.
pub const MAX_ATTRIBUTE_HEADER_BYTES: usize = 8 * 1024;

/// An event in binary mode.
#[derive(Debug, Default)]
pub struct Binary {
    /// `ce-*` headers, in the order the SDK gives the attributes.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// From `datacontenttype`.
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
    /// Extensions left out for their size.
    pub dropped: usize,
    /// Why the event cannot be sent in binary mode, if it cannot.
    refused: Option<String>,
}

/// Percent-encodes an attribute value for a header (§3.1.3.2).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_graphic() && b != b'"' && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical string of an attribute value.
fn canonical(value: &MessageAttributeValue) -> String {
    match value {
        MessageAttributeValue::DateTime(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        other => other.to_string(),
    }
}

/// The event in binary mode; `Err` says why it cannot be sent so.
pub fn binary(event: Event) -> Result<Binary, String> {
    let out = event
        .deserialize_binary(Binary::default())
        .map_err(|e| e.to_string())?;
    match out.refused {
        Some(why) => Err(why),
        None => Ok(out),
    }
}

/// The event in structured mode: its JSON format.
pub fn structured(event: &Event) -> Bytes {
    Bytes::from(serde_json::to_vec(event).expect("invariant: an event always serializes to JSON"))
}

impl Binary {
    fn header(mut self, name: &str, value: &MessageAttributeValue, extension: bool) -> Self {
        let encoded = percent_encode(&canonical(value));
        if encoded.len() > MAX_ATTRIBUTE_HEADER_BYTES {
            if extension {
                self.dropped += 1;
            } else if self.refused.is_none() {
                self.refused = Some(format!(
                    "the CloudEvents attribute {name} is {} bytes as a header, over {MAX_ATTRIBUTE_HEADER_BYTES}: binary mode cannot send it (cloudevents-structured can)",
                    encoded.len()
                ));
            }
            return self;
        }
        let header = HeaderName::from_bytes(format!("ce-{name}").as_bytes());
        let value = HeaderValue::from_str(&encoded);
        match (header, value) {
            (Ok(h), Ok(v)) => self.headers.push((h, v)),
            _ if extension => self.dropped += 1,
            _ => {
                self.refused.get_or_insert_with(|| {
                    format!("the CloudEvents attribute {name} cannot be a header")
                });
            }
        }
        self
    }
}

impl BinarySerializer<Binary> for Binary {
    fn set_spec_version(self, spec_version: SpecVersion) -> CeResult<Self> {
        let version = MessageAttributeValue::String(spec_version.to_string());
        Ok(self.header("specversion", &version, false))
    }

    fn set_attribute(mut self, name: &str, value: MessageAttributeValue) -> CeResult<Self> {
        if name == "datacontenttype" {
            match HeaderValue::from_str(&canonical(&value)) {
                Ok(v) => self.content_type = Some(v),
                Err(_) => {
                    self.refused.get_or_insert_with(|| {
                        "datacontenttype cannot be a Content-Type header".into()
                    });
                }
            }
            return Ok(self);
        }
        Ok(self.header(name, &value, false))
    }

    fn set_extension(self, name: &str, value: MessageAttributeValue) -> CeResult<Self> {
        Ok(self.header(name, &value, true))
    }

    fn end_with_data(mut self, bytes: Vec<u8>) -> CeResult<Binary> {
        self.body = Bytes::from(bytes);
        Ok(self)
    }

    fn end(self) -> CeResult<Binary> {
        Ok(self)
    }
}
