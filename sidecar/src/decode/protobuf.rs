//! Protobuf: a registered `.proto` schema (and the files it imports, registered as its
//! references) compiled once with `protox`, each record's message decoded by `prost-reflect` and
//! written in protobuf's canonical JSON mapping.
//!
//! Pure. The registry serves `.proto` text; each reference's `name` is the import path it
//! answers. Google's well-known types (`google/protobuf/*.proto`) and the registry's own
//! built-ins (`confluent/meta.proto`, `confluent/type/decimal.proto`) need no reference. The JSON
//! is the canonical mapping (field names in lowerCamelCase, 64-bit integers as strings, enums by
//! name, `bytes` in base64, well-known types as their JSON forms) with fields at their default
//! value included, so an app reading `quantity` finds `0` rather than nothing.

use std::collections::HashMap;

use prost_reflect::{DynamicMessage, MessageDescriptor, SerializeOptions};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use serde_json::Value as Json;

/// The name the registered schema itself is compiled under (no import can use it).
const MAIN_FILE: &str = "__kcp__/registered.proto";

/// The registry's built-in files, as its serializers ship them.
const CONFLUENT_META: &str = r#"syntax = "proto3";
package confluent;
import "google/protobuf/descriptor.proto";
option go_package = "../confluent";
message Meta {
  string doc = 1;
  map<string, string> params = 2;
  repeated string tags = 3;
}
extend google.protobuf.FileOptions { Meta file_meta = 1088; }
extend google.protobuf.MessageOptions { Meta message_meta = 1088; }
extend google.protobuf.FieldOptions { Meta field_meta = 1088; }
extend google.protobuf.EnumOptions { Meta enum_meta = 1088; }
extend google.protobuf.EnumValueOptions { Meta enum_value_meta = 1088; }
"#;
const CONFLUENT_DECIMAL: &str = r#"syntax = "proto3";
package confluent.type;
option go_package = "../types";
message Decimal {
  bytes value = 1;
  uint32 precision = 2;
  int32 scale = 3;
}
"#;

/// A compiled `.proto` schema: its top-level messages, by position.
#[derive(Debug)]
pub struct ProtoSchema {
    messages: Vec<MessageDescriptor>,
}

/// Serves the schema and its references to the compiler by name.
struct Sources(HashMap<String, String>);

impl FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.get(name) {
            Some(source) => File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Compiles `schema`; `references` are `(import path, .proto text)`.
pub fn compile(schema: &str, references: &[(String, String)]) -> Result<ProtoSchema, String> {
    let mut sources: HashMap<String, String> = references.iter().cloned().collect();
    sources.insert(MAIN_FILE.to_owned(), schema.to_owned());
    for (name, text) in [
        ("confluent/meta.proto", CONFLUENT_META),
        ("confluent/type/decimal.proto", CONFLUENT_DECIMAL),
    ] {
        sources
            .entry(name.to_owned())
            .or_insert_with(|| text.to_owned());
    }
    let mut resolver = ChainFileResolver::new();
    resolver.add(Sources(sources));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler.open_file(MAIN_FILE).map_err(|e| e.to_string())?;
    let pool = compiler.descriptor_pool();
    let file = pool
        .get_file_by_name(MAIN_FILE)
        .ok_or_else(|| "the compiled schema has no file".to_owned())?;
    let messages: Vec<MessageDescriptor> = file.messages().collect();
    if messages.is_empty() {
        return Err("the schema defines no message".into());
    }
    Ok(ProtoSchema { messages })
}

impl ProtoSchema {
    /// The message at `indexes` (top-level position, then nested positions).
    fn message(&self, indexes: &[usize]) -> Result<MessageDescriptor, String> {
        let (first, nested) = indexes
            .split_first()
            .ok_or_else(|| "no message index".to_owned())?;
        let mut desc = self
            .messages
            .get(*first)
            .cloned()
            .ok_or_else(|| format!("the schema has no message at index {first}"))?;
        for &i in nested {
            let child = desc.child_messages().nth(i).ok_or_else(|| {
                format!(
                    "message {} has no nested message at index {i}",
                    desc.full_name()
                )
            })?;
            desc = child;
        }
        Ok(desc)
    }

    /// The message at `indexes`, decoded from `bytes`, as JSON.
    pub fn decode(&self, indexes: &[usize], bytes: &[u8]) -> Result<Json, String> {
        let desc = self.message(indexes)?;
        let message = DynamicMessage::decode(desc.clone(), bytes)
            .map_err(|e| format!("not a valid {} message: {e}", desc.full_name()))?;
        let options = SerializeOptions::new().skip_default_fields(false);
        message
            .serialize_with_options(serde_json::value::Serializer, &options)
            .map_err(|e| format!("{} message to JSON: {e}", desc.full_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/protobuf/timestamp.proto";
        import "confluent/meta.proto";
        message Order {
          string id = 1 [(confluent.field_meta).doc = "order id"];
          int64 cents = 2;
          google.protobuf.Timestamp at = 3;
          message Line { string sku = 1; int32 quantity = 2; }
          repeated Line lines = 4;
        }
        message Other { bool flag = 1; }
    "#;

    #[test]
    fn messages_are_found_by_their_indexes() {
        let schema = compile(ORDER, &[]).expect("compiles");
        assert_eq!(
            schema.message(&[0]).expect("order").full_name(),
            "shop.Order"
        );
        assert_eq!(
            schema.message(&[1]).expect("other").full_name(),
            "shop.Other"
        );
        assert_eq!(
            schema.message(&[0, 0]).expect("line").full_name(),
            "shop.Order.Line"
        );
        assert!(schema.message(&[2]).is_err());
        assert!(schema.message(&[1, 0]).is_err());
    }

    #[test]
    fn default_fields_are_written_and_garbage_is_refused() {
        let schema = compile(ORDER, &[]).expect("compiles");
        let json = schema.decode(&[1], &[]).expect("empty message");
        assert_eq!(json, serde_json::json!({"flag": false}));
        assert!(schema.decode(&[0], &[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn a_missing_import_does_not_compile() {
        let err = compile(
            r#"syntax = "proto3"; import "other.proto"; message A { Other o = 1; }"#,
            &[],
        )
        .expect_err("missing import");
        assert!(err.contains("other.proto"), "{err}");
        let with_reference = compile(
            r#"syntax = "proto3"; import "other.proto"; message A { Other o = 1; }"#,
            &[(
                "other.proto".into(),
                r#"syntax = "proto3"; message Other { string s = 1; }"#.into(),
            )],
        );
        assert!(with_reference.is_ok(), "{:?}", with_reference.err());
    }
}
