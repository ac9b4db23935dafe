//! Schemas and records in the three registry formats, each schema with a referenced schema,
//! produced by the same crates the sidecar decodes with (`apache-avro`, `protox` +
//! `prost-reflect`, `serde_json`) and registered in the registry stand-in.

use std::collections::HashMap;

use apache_avro::{Decimal, Schema, Uuid, types::Value, writer::datum::GenericDatumWriter};
use kcp_sidecar::{decode::wire, demo::RegistryStandIn};
use prost::Message;
use prost_reflect::DynamicMessage;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use serde_json::json;

pub const AVRO_ADDRESS: &str = r#"{"type":"record","name":"Address","namespace":"com.example","fields":[
    {"name":"city","type":"string"},
    {"name":"zip","type":["null","string"],"default":null}]}"#;

pub const AVRO_ORDER: &str = r#"{"type":"record","name":"Order","namespace":"com.example","fields":[
    {"name":"id","type":"string"},
    {"name":"quantity","type":"int"},
    {"name":"cents","type":"long"},
    {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
    {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID"]}},
    {"name":"note","type":["null","string"],"default":null},
    {"name":"coupon","type":["null","string"],"default":null},
    {"name":"tags","type":{"type":"array","items":"string"}},
    {"name":"attributes","type":{"type":"map","values":"long"}},
    {"name":"checksum","type":"bytes"},
    {"name":"placedAt","type":{"type":"long","logicalType":"timestamp-millis"}},
    {"name":"day","type":{"type":"int","logicalType":"date"}},
    {"name":"trace","type":{"type":"string","logicalType":"uuid"}},
    {"name":"ratio","type":"double"},
    {"name":"shipTo","type":"com.example.Address"}]}"#;

/// Registers the Avro order schema (and the address it references); returns its id.
pub fn register_avro(registry: &RegistryStandIn) -> u32 {
    registry.register("com.example.Address", None, AVRO_ADDRESS, &[]);
    registry.register(
        "orders-value",
        None,
        AVRO_ORDER,
        &[("com.example.Address", "com.example.Address", 1)],
    )
}

/// Order `n` in Avro, in the wire format with schema `id`.
pub fn avro_order(id: u32, n: i64) -> Vec<u8> {
    let (order, named) =
        Schema::parse_str_with_list(AVRO_ORDER, [AVRO_ADDRESS]).expect("avro schemas parse");
    let mut all: Vec<&Schema> = named.iter().collect();
    all.push(&order);
    let value = Value::Record(vec![
        ("id".into(), Value::String(format!("o-{n}"))),
        ("quantity".into(), Value::Int(3)),
        ("cents".into(), Value::Long(9_007_199_254_740_993)),
        (
            "price".into(),
            Value::Decimal(Decimal::from(1250i64.to_be_bytes().to_vec())),
        ),
        ("status".into(), Value::Enum(1, "PAID".into())),
        (
            "note".into(),
            Value::Union(1, Box::new(Value::String("leave at the door".into()))),
        ),
        ("coupon".into(), Value::Union(0, Box::new(Value::Null))),
        (
            "tags".into(),
            Value::Array(vec![
                Value::String("gift".into()),
                Value::String("express".into()),
            ]),
        ),
        (
            "attributes".into(),
            Value::Map(HashMap::from([("weight".to_owned(), Value::Long(1200))])),
        ),
        (
            "checksum".into(),
            Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef]),
        ),
        ("placedAt".into(), Value::TimestampMillis(1_700_000_000_123)),
        ("day".into(), Value::Date(19_675)),
        (
            "trace".into(),
            Value::Uuid(Uuid::parse_str("6f1c2a9e-8a4b-4c3d-9e2f-1a2b3c4d5e6f").expect("uuid")),
        ),
        ("ratio".into(), Value::Double(0.25)),
        (
            "shipTo".into(),
            Value::Record(vec![
                ("city".into(), Value::String("Oslo".into())),
                (
                    "zip".into(),
                    Value::Union(1, Box::new(Value::String("0150".into()))),
                ),
            ]),
        ),
    ]);
    let datum = GenericDatumWriter::builder(&order)
        .schemata(all)
        .and_then(|b| b.build())
        .and_then(|w| w.write_value_to_vec(value))
        .expect("avro order encodes");
    framed(id, &[], &datum)
}

pub const PROTO_ADDRESS: &str = r#"syntax = "proto3";
package shop;
message Address { string city = 1; string zip = 2; }
"#;

pub const PROTO_ORDER: &str = r#"syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
import "shop/address.proto";
message Order {
  enum Status { NEW = 0; PAID = 1; }
  message Line { string sku = 1; int32 quantity = 2; }
  string id = 1;
  int32 quantity = 2;
  int64 cents = 3;
  Status status = 4;
  repeated string tags = 5;
  map<string, int64> attributes = 6;
  bytes checksum = 7;
  google.protobuf.Timestamp placed_at = 8;
  Address ship_to = 9;
  optional string note = 10;
  bool gift = 11;
  repeated Line lines = 12;
}
message Refund { string order_id = 1; int64 cents = 2; }
"#;

/// Registers the protobuf order schema (and the address file it imports); returns its id.
pub fn register_protobuf(registry: &RegistryStandIn) -> u32 {
    registry.register("shop/address.proto", Some("PROTOBUF"), PROTO_ADDRESS, &[]);
    registry.register(
        "orders-proto-value",
        Some("PROTOBUF"),
        PROTO_ORDER,
        &[("shop/address.proto", "shop/address.proto", 1)],
    )
}

struct Sources;

impl FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match name {
            "order.proto" => File::from_source(name, PROTO_ORDER),
            "shop/address.proto" => File::from_source(name, PROTO_ADDRESS),
            _ => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Message `full_name` from JSON, in the wire format with schema `id` and `indexes`.
pub fn proto_message(
    id: u32,
    indexes: &[usize],
    full_name: &str,
    json: serde_json::Value,
) -> Vec<u8> {
    let mut resolver = ChainFileResolver::new();
    resolver.add(Sources);
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.open_file("order.proto").expect("proto compiles");
    let desc = compiler
        .descriptor_pool()
        .get_message_by_name(full_name)
        .expect("message exists");
    let message = DynamicMessage::deserialize(desc, json).expect("message from json");
    framed(id, indexes, &message.encode_to_vec())
}

/// The protobuf records of the golden test: an order, a refund (the file's second message) and
/// an order line (a nested message).
pub fn proto_records(id: u32) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "order",
            proto_message(
                id,
                &[0],
                "shop.Order",
                json!({
                    "id": "o-1", "quantity": 3, "cents": "9007199254740993", "status": "PAID",
                    "tags": ["gift", "express"], "attributes": {"weight": "1200"},
                    "checksum": "3q2+7w==", "placedAt": "2023-11-14T22:13:20.123Z",
                    "shipTo": {"city": "Oslo", "zip": "0150"}, "note": "leave at the door",
                    "lines": [{"sku": "A-1", "quantity": 2}]
                }),
            ),
        ),
        (
            "refund",
            proto_message(
                id,
                &[1],
                "shop.Refund",
                json!({"orderId": "o-1", "cents": "1250"}),
            ),
        ),
        (
            "line",
            proto_message(id, &[0, 0], "shop.Order.Line", json!({"sku": "B-2"})),
        ),
    ]
}

pub const JSON_ADDRESS: &str = r#"{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":"string"}},"required":["city"]}"#;
pub const JSON_ORDER: &str = r#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
    "properties":{"id":{"type":"string"},"quantity":{"type":"integer","minimum":1},
    "total":{"type":"number"},"shipTo":{"$ref":"address.json"}},"required":["id","quantity"]}"#;

/// Registers the JSON order schema (and the address schema it references); returns its id.
pub fn register_json(registry: &RegistryStandIn) -> u32 {
    registry.register("address-value", Some("JSON"), JSON_ADDRESS, &[]);
    registry.register(
        "orders-json-value",
        Some("JSON"),
        JSON_ORDER,
        &[("address.json", "address-value", 1)],
    )
}

/// A JSON order in the wire format with schema `id`.
pub fn json_order(id: u32, body: &serde_json::Value) -> Vec<u8> {
    framed(id, &[], &serde_json::to_vec(body).expect("json"))
}

/// Header, protobuf message indexes (when given), payload.
pub fn framed(id: u32, indexes: &[usize], payload: &[u8]) -> Vec<u8> {
    let mut v = wire::header(id).to_vec();
    if !indexes.is_empty() {
        v.extend(wire::encode_message_indexes(indexes));
    }
    v.extend_from_slice(payload);
    v
}
