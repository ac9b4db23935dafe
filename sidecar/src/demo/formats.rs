//! How the demo writes its records in the format asked for, and how its app reads them back.
//!
//! Record `i` carries `i` (and its key) in its value: as JSON (`123`, with a `content-type:
//! application/json` header) by default, or, with `--avro`, as an Avro `Order {index, key}` in the
//! schema registry's wire format, its schema registered in the [`RegistryStandIn`]; every
//! `--undecodable-every`th Avro record names a schema id the registry does not have (the sidecar
//! dead-letters it without sending it). Every record also has a `demo-index` header, so the
//! dead-letter check finds its index whatever the value is. The app reads `i` back from a plain,
//! decoded or CloudEvents request ([`request_index`]).

use anyhow::Context as _;
use apache_avro::{Schema, types::Value, writer::datum::GenericDatumWriter};
use base64::{Engine, engine::general_purpose::STANDARD};
use http::HeaderMap;
use serde_json::Value as Json;

use super::RegistryStandIn;
use crate::decode::wire;

/// The demo's Avro schema.
pub const AVRO_SCHEMA: &str = r#"{"type":"record","name":"Order","namespace":"io.kafkaproxy.demo","fields":[{"name":"index","type":"long"},{"name":"key","type":"string"}]}"#;
/// The subject it is registered under (the default `<topic>-value` naming).
pub const SUBJECT: &str = "orders-value";
/// The header with each record's index.
pub const INDEX_HEADER: &str = "demo-index";

/// A record's value and its headers.
pub type DemoRecord = (Vec<u8>, Vec<(String, String)>);

/// How records are encoded.
pub struct Encoding {
    avro: Option<(Schema, u32)>,
    undecodable_every: usize,
}

impl Encoding {
    /// Plain JSON values.
    pub fn json() -> Self {
        Self {
            avro: None,
            undecodable_every: 0,
        }
    }

    /// Avro values, their schema registered in `registry`.
    pub fn avro(registry: &RegistryStandIn, undecodable_every: usize) -> anyhow::Result<Self> {
        let schema = Schema::parse_str(AVRO_SCHEMA).context("parsing the demo's Avro schema")?;
        let id = registry.register(SUBJECT, None, AVRO_SCHEMA, &[]);
        Ok(Self {
            avro: Some((schema, id)),
            undecodable_every,
        })
    }

    /// Whether record `i` is written so that it cannot be decoded.
    pub fn is_undecodable(&self, i: usize) -> bool {
        self.avro.is_some()
            && self.undecodable_every > 0
            && (i + 1).is_multiple_of(self.undecodable_every)
    }

    /// Record `i`'s value and headers.
    pub fn record(&self, i: usize, key: &str) -> anyhow::Result<DemoRecord> {
        let mut headers = vec![(INDEX_HEADER.to_owned(), i.to_string())];
        let Some((schema, id)) = &self.avro else {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
            return Ok((i.to_string().into_bytes(), headers));
        };
        let id = if self.is_undecodable(i) {
            id + 1000
        } else {
            *id
        };
        let datum = GenericDatumWriter::builder(schema)
            .build()
            .and_then(|w| {
                w.write_value_to_vec(Value::Record(vec![
                    ("index".into(), Value::Long(i as i64)),
                    ("key".into(), Value::String(key.to_owned())),
                ]))
            })
            .context("encoding a demo record in Avro")?;
        let mut value = wire::header(id).to_vec();
        value.extend_from_slice(&datum);
        Ok((value, headers))
    }
}

/// The record index a request carries, and whether the request was a CloudEvent (binary mode:
/// the four required `ce-*` headers; structured mode: an envelope with the required attributes).
pub fn request_index(headers: &HeaderMap, body: &[u8]) -> (Option<usize>, bool) {
    let binary = ["ce-specversion", "ce-id", "ce-source", "ce-type"]
        .iter()
        .all(|h| headers.contains_key(*h));
    let Ok(json) = serde_json::from_slice::<Json>(body) else {
        return (None, binary);
    };
    let structured = ["specversion", "id", "source", "type"]
        .iter()
        .all(|a| json.get(a).is_some_and(Json::is_string));
    let data = if structured {
        match (
            json.get("data"),
            json.get("data_base64").and_then(Json::as_str),
        ) {
            (Some(d), _) => d.clone(),
            (None, Some(b64)) => STANDARD
                .decode(b64)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Json::Null),
            (None, None) => Json::Null,
        }
    } else {
        json
    };
    let index = match &data {
        Json::Number(n) => n.as_u64(),
        Json::Object(o) => o.get("index").and_then(Json::as_u64),
        _ => None,
    };
    (index.map(|i| i as usize), binary || structured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_read_back_from_every_shape() {
        let none = HeaderMap::new();
        assert_eq!(request_index(&none, b"42"), (Some(42), false));
        assert_eq!(
            request_index(&none, br#"{"index":7,"key":"key-7"}"#),
            (Some(7), false)
        );
        let envelope = br#"{"specversion":"1.0","id":"a","source":"s","type":"t","data":{"index":3,"key":"k"}}"#;
        assert_eq!(request_index(&none, envelope), (Some(3), true));
        let mut ce = HeaderMap::new();
        for h in ["ce-specversion", "ce-id", "ce-source", "ce-type"] {
            ce.insert(h, http::HeaderValue::from_static("x"));
        }
        assert_eq!(request_index(&ce, b"9"), (Some(9), true));
        assert_eq!(request_index(&none, b"not json"), (None, false));
    }

    #[test]
    fn every_nth_avro_record_names_an_unknown_schema() {
        let encoding = Encoding {
            avro: Some((Schema::parse_str(AVRO_SCHEMA).expect("schema"), 1)),
            undecodable_every: 3,
        };
        let (good, _) = encoding.record(0, "k").expect("encodes");
        let (bad, _) = encoding.record(2, "k").expect("encodes");
        assert_eq!(wire::split(&good).expect("wire").0, 1);
        assert_eq!(wire::split(&bad).expect("wire").0, 1001);
        assert!(!Encoding::json().is_undecodable(2));
    }
}
