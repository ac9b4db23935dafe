//! Decoding record values in the schema registry's wire format to JSON (`endpoint.decode`).
//!
//! [`Decoder::decode`] splits the wire-format header ([`wire`]), finds the schema by id in the
//! bounded [`cache`] or loads it from the registry ([`registry`], the only code that talks to
//! it) with the schemas it references, compiles it once ([`avro`], [`protobuf`],
//! [`json_schema`]: pure, each with its crate), and decodes the payload. Its error says whose
//! fault a failure is, which is what the delivery engine acts on:
//!
//! - [`DecodeError::Bad`]: the record cannot be decoded (not in the wire format, a schema id
//!   the registry does not have, a schema of another type than `endpoint.decode` asks for, a
//!   schema that cannot be compiled, a payload that does not match its schema). Retrying cannot
//!   help: the record goes to `delivery.onExhausted` at once with this reason.
//! - [`DecodeError::Unavailable`]: the registry could not answer. Not the record's fault: it
//!   waits and tries again, never dead-lettered for it.
//!
//! Decoding is done for each attempt, from the cache; nothing here retries or waits.

pub mod avro;
pub mod cache;
pub mod json_schema;
pub mod protobuf;
pub mod registry;
pub mod wire;

use std::{collections::HashSet, sync::Arc};

use kcp_crds::{SidecarConfig, config::Decode};
use serde_json::Value as Json;
use tracing::debug;

use self::{
    cache::SchemaCache,
    registry::{FetchError, Registry, RegistryError, SchemaText, SchemaType},
};

/// References nested deeper than this are refused (the schema cannot be used).
pub const MAX_REFERENCE_DEPTH: usize = 32;
/// A schema with more references than this, all levels together, cannot be used.
pub const MAX_REFERENCES: usize = 256;

/// A value decoded to JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub schema_id: u32,
    pub json: Json,
}

/// Why a value was not decoded; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot decode: {0}")]
    Bad(String),
    #[error("{0}")]
    Unavailable(String),
}

/// A schema compiled for decoding.
#[derive(Debug)]
pub enum Compiled {
    Avro(avro::AvroSchema),
    Protobuf(protobuf::ProtoSchema),
    Json(json_schema::JsonSchema),
}

/// What the cache holds for a schema id.
#[derive(Debug, Clone)]
enum Lookup {
    Found(Arc<Compiled>),
    /// Why records with this schema id cannot be decoded.
    Unusable(String),
}

/// Decodes values against the registry's schemas; shared by all lanes.
#[derive(Debug)]
pub struct Decoder {
    mode: Decode,
    registry: Registry,
    cache: SchemaCache<Lookup>,
}

impl Decoder {
    /// The decoder `endpoint.decode` asks for, if any; `env` gives the registry credentials.
    pub fn from_config(
        config: &SidecarConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, RegistryError> {
        let (Some(mode), Some(r)) = (config.endpoint.decode, &config.kafka.schema_registry) else {
            return Ok(None);
        };
        Ok(Some(Self {
            mode,
            registry: Registry::new(r, env)?,
            cache: SchemaCache::new(r.max_schemas as usize, r.error_ttl.as_std()),
        }))
    }

    /// Schemas (and unusable schema ids) cached now.
    pub fn cached_schemas(&self) -> usize {
        self.cache.len()
    }

    /// `value` as JSON. See the module docs for what each error means.
    pub async fn decode(&self, value: &[u8]) -> Result<Decoded, DecodeError> {
        let (id, payload) = wire::split(value).map_err(|e| DecodeError::Bad(e.to_string()))?;
        let lookup = self
            .cache
            .get(id, || self.load(id))
            .await
            .map_err(DecodeError::Unavailable)?;
        let compiled = match lookup {
            Lookup::Found(c) => c,
            Lookup::Unusable(why) => return Err(DecodeError::Bad(why)),
        };
        let json = match compiled.as_ref() {
            Compiled::Avro(s) => s.decode(payload),
            Compiled::Json(s) => s.decode(payload),
            Compiled::Protobuf(s) => wire::message_indexes(payload)
                .map_err(|e| e.to_string())
                .and_then(|(indexes, message)| s.decode(&indexes, message)),
        }
        .map_err(|why| DecodeError::Bad(format!("payload of schema {id}: {why}")))?;
        Ok(Decoded {
            schema_id: id,
            json,
        })
    }

    /// Fetches and compiles schema `id`: `Ok((answer, lasting))`, `Err` when the registry is
    /// unavailable.
    async fn load(&self, id: u32) -> Result<(Lookup, bool), String> {
        let text = match self.registry.schema_by_id(id).await {
            Ok(t) => t,
            Err(FetchError::NotFound(why)) => return Ok((Lookup::Unusable(why), false)),
            Err(FetchError::Unavailable(why)) => return Err(why),
        };
        if !accepts(self.mode, text.schema_type) {
            let why = format!(
                "schema {id} is a {} schema, and endpoint.decode is {}",
                type_name(text.schema_type),
                self.mode.as_str()
            );
            return Ok((Lookup::Unusable(why), true));
        }
        let references = match self.references(&text).await {
            Ok(r) => r,
            Err(FetchError::NotFound(why)) => {
                let why = format!("schema {id} references a schema that {why}");
                return Ok((Lookup::Unusable(why), false));
            }
            Err(FetchError::Unavailable(why)) => return Err(why),
        };
        let compiled = match text.schema_type {
            SchemaType::Avro => {
                let texts: Vec<String> = references.into_iter().map(|(_, t)| t.schema).collect();
                avro::compile(&text.schema, &texts).map(Compiled::Avro)
            }
            SchemaType::Protobuf => {
                let files: Vec<(String, String)> =
                    references.into_iter().map(|(n, t)| (n, t.schema)).collect();
                protobuf::compile(&text.schema, &files).map(Compiled::Protobuf)
            }
            SchemaType::Json => {
                let files: Vec<(String, String)> =
                    references.into_iter().map(|(n, t)| (n, t.schema)).collect();
                json_schema::compile(&text.schema, &files).map(Compiled::Json)
            }
        };
        debug!(
            schema_id = id,
            kind = type_name(text.schema_type),
            ok = compiled.is_ok(),
            "Loaded schema"
        );
        Ok(match compiled {
            Ok(c) => (Lookup::Found(Arc::new(c)), true),
            Err(why) => (
                Lookup::Unusable(format!(
                    "schema {id} ({}) cannot be used: {why}",
                    type_name(text.schema_type)
                )),
                false,
            ),
        })
    }

    /// Every schema `root` references, all levels, each after the ones it references, as
    /// `(name, schema)`; a schema referenced twice is listed once.
    async fn references(&self, root: &SchemaText) -> Result<Vec<(String, SchemaText)>, FetchError> {
        struct Frame {
            reference: registry::Reference,
            depth: usize,
            text: Option<SchemaText>,
        }
        let frame = |reference: &registry::Reference, depth| Frame {
            reference: reference.clone(),
            depth,
            text: None,
        };
        let mut stack: Vec<Frame> = root.references.iter().rev().map(|r| frame(r, 1)).collect();
        let (mut visiting, mut done) = (HashSet::new(), HashSet::new());
        let mut out = Vec::new();
        while let Some(mut f) = stack.pop() {
            let key = (f.reference.subject.clone(), f.reference.version);
            match f.text.take() {
                Some(text) => {
                    visiting.remove(&key);
                    if done.insert(key) {
                        out.push((f.reference.name, text));
                    }
                }
                None if done.contains(&key) || visiting.contains(&key) => {}
                None => {
                    if f.depth > MAX_REFERENCE_DEPTH
                        || visiting.len() + done.len() >= MAX_REFERENCES
                    {
                        return Err(FetchError::NotFound(format!(
                            "is beyond the limits of {MAX_REFERENCE_DEPTH} levels and {MAX_REFERENCES} references"
                        )));
                    }
                    let text = self
                        .registry
                        .subject_version(&f.reference.subject, f.reference.version)
                        .await?;
                    visiting.insert(key);
                    let children: Vec<Frame> = text
                        .references
                        .iter()
                        .rev()
                        .map(|r| frame(r, f.depth + 1))
                        .collect();
                    f.text = Some(text);
                    stack.push(f);
                    stack.extend(children);
                }
            }
        }
        Ok(out)
    }
}

fn accepts(mode: Decode, kind: SchemaType) -> bool {
    matches!(
        (mode, kind),
        (Decode::Auto, _)
            | (Decode::Avro, SchemaType::Avro)
            | (Decode::Protobuf, SchemaType::Protobuf)
            | (Decode::Jsonschema, SchemaType::Json)
    )
}

fn type_name(kind: SchemaType) -> &'static str {
    match kind {
        SchemaType::Avro => "AVRO",
        SchemaType::Protobuf => "PROTOBUF",
        SchemaType::Json => "JSON",
    }
}
