//! The decoder against the registry stand-in: golden JSON for each format (with referenced
//! schemas), which failures are the record's fault and which are the registry's, caching, and
//! basic auth.

use std::path::PathBuf;

use kcp_crds::SidecarConfig;
use kcp_sidecar::{
    decode::{DecodeError, Decoded, Decoder},
    demo::RegistryStandIn,
};
use serde_json::{Value, json};

use super::fixtures::{self, framed};
use crate::support::config;

fn decoder_config(registry_url: &str, decode: &str) -> SidecarConfig {
    config("127.0.0.1:9", "t", "g", "http://127.0.0.1:9/", |c| {
        c["kafka"]["schemaRegistry"] = json!({
            "url": registry_url, "requestTimeout": "5s", "maxSchemas": 10, "errorTtl": "1h"
        });
        c["endpoint"]["decode"] = json!(decode);
    })
}

fn decoder(registry: &RegistryStandIn, decode: &str) -> Decoder {
    Decoder::from_config(&decoder_config(&registry.url(), decode), &|_| None)
        .expect("decoder builds")
        .expect("decode is on")
}

/// Compares with `tests/pipeline/formats/golden/<name>.json`; `KCP_UPDATE_SNAPSHOTS=1` rewrites it.
fn golden(name: &str, actual: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/pipeline/formats/golden")
        .join(format!("{name}.json"));
    let pretty = serde_json::to_string_pretty(actual).expect("json") + "\n";
    if std::env::var_os("KCP_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &pretty).expect("write golden file");
        return;
    }
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (KCP_UPDATE_SNAPSHOTS=1 writes it)", path.display())
        }))
        .expect("golden file is JSON");
    assert_eq!(
        &expected,
        actual,
        "{name}: decoded JSON differs from {}; got:\n{pretty}",
        path.display()
    );
}

async fn decoded(d: &Decoder, value: &[u8]) -> Decoded {
    d.decode(value)
        .await
        .unwrap_or_else(|e| panic!("decodes: {e}"))
}

#[tokio::test]
async fn avro_records_decode_to_the_golden_json() {
    let registry = RegistryStandIn::start().await.expect("registry");
    let id = fixtures::register_avro(&registry);
    let d = decoder(&registry, "avro");
    let got = decoded(&d, &fixtures::avro_order(id, 1)).await;
    assert_eq!(got.schema_id, id);
    golden("avro", &got.json);
}

#[tokio::test]
async fn protobuf_records_decode_to_the_golden_json() {
    let registry = RegistryStandIn::start().await.expect("registry");
    let id = fixtures::register_protobuf(&registry);
    let d = decoder(&registry, "protobuf");
    let mut all = serde_json::Map::new();
    for (name, value) in fixtures::proto_records(id) {
        all.insert(name.into(), decoded(&d, &value).await.json);
    }
    golden("protobuf", &Value::Object(all));
}

#[tokio::test]
async fn json_schema_records_decode_to_the_golden_json() {
    let registry = RegistryStandIn::start().await.expect("registry");
    let id = fixtures::register_json(&registry);
    let d = decoder(&registry, "jsonschema");
    let order = json!({"id": "o-1", "quantity": 2, "total": 12.5, "shipTo": {"city": "Oslo"}});
    let got = decoded(&d, &fixtures::json_order(id, &order)).await;
    golden("jsonschema", &got.json);
    assert_eq!(got.json, order, "the payload itself, validated");
}

#[tokio::test]
async fn auto_decodes_each_record_by_its_schema_type() {
    let registry = RegistryStandIn::start().await.expect("registry");
    let (avro, proto, json_id) = (
        fixtures::register_avro(&registry),
        fixtures::register_protobuf(&registry),
        fixtures::register_json(&registry),
    );
    let d = decoder(&registry, "auto");
    let a = decoded(&d, &fixtures::avro_order(avro, 1)).await;
    assert_eq!(a.json["shipTo"]["city"], json!("Oslo"));
    let (_, order) = fixtures::proto_records(proto).remove(0);
    let p = decoded(&d, &order).await;
    assert_eq!(p.json["shipTo"]["city"], json!("Oslo"));
    let j = decoded(
        &d,
        &fixtures::json_order(json_id, &json!({"id": "x", "quantity": 1})),
    )
    .await;
    assert_eq!(j.json["id"], json!("x"));
}

async fn bad(d: &Decoder, value: &[u8]) -> String {
    match d.decode(value).await {
        Err(DecodeError::Bad(why)) => why,
        other => panic!("expected a bad record, got {other:?}"),
    }
}

#[tokio::test]
async fn records_that_cannot_be_decoded_are_bad_with_the_reason() {
    let registry = RegistryStandIn::start().await.expect("registry");
    let (avro, proto, json_id) = (
        fixtures::register_avro(&registry),
        fixtures::register_protobuf(&registry),
        fixtures::register_json(&registry),
    );
    let broken = registry.register("broken-value", None, r#"{"type":"record"}"#, &[]);
    let d = decoder(&registry, "auto");

    let why = bad(&d, &framed(4242, &[], b"payload")).await;
    assert!(
        why.contains("no schema id 4242") && why.contains("40403"),
        "{why}"
    );
    let why = bad(&d, br#"{"id":"o-1"}"#).await;
    assert!(
        why.contains("first byte 0x7b, expected the magic byte"),
        "{why}"
    );
    let mut cut = fixtures::avro_order(avro, 1);
    cut.truncate(cut.len() - 6);
    let why = bad(&d, &cut).await;
    assert!(why.contains(&format!("payload of schema {avro}")), "{why}");
    let why = bad(&d, &framed(proto, &[0], &[0x0a, 0xff, 0xff])).await;
    assert!(why.contains("shop.Order"), "{why}");
    let why = bad(&d, &framed(proto, &[7], b"")).await;
    assert!(why.contains("no message at index 7"), "{why}");
    let why = bad(
        &d,
        &fixtures::json_order(json_id, &json!({"id": "x", "quantity": 0})),
    )
    .await;
    assert!(
        why.contains("does not match its schema") && why.contains("/quantity"),
        "{why}"
    );
    let why = bad(&d, &framed(broken, &[], b"")).await;
    assert!(
        why.contains(&format!("schema {broken} (AVRO) cannot be used")),
        "{why}"
    );

    let avro_only = decoder(&registry, "avro");
    let why = bad(&avro_only, &framed(proto, &[0], b"")).await;
    assert!(
        why.contains("is a PROTOBUF schema, and endpoint.decode is avro"),
        "{why}"
    );
}

#[tokio::test]
async fn a_registry_that_cannot_answer_is_an_outage_not_a_bad_record() {
    let registry = RegistryStandIn::start().await.expect("registry");
    let id = fixtures::register_avro(&registry);
    let d = decoder(&registry, "avro");
    registry.set_available(false);
    let outage = d.decode(&fixtures::avro_order(id, 1)).await;
    assert!(
        matches!(&outage, Err(DecodeError::Unavailable(why)) if why.contains("503")),
        "{outage:?}"
    );
    registry.set_available(true);
    decoded(&d, &fixtures::avro_order(id, 1)).await;

    // A URL that is not the registry's: every schema "missing" would flood the dead-letter topic.
    let wrong = Decoder::from_config(
        &decoder_config(&format!("{}/not-here", registry.url()), "avro"),
        &|_| None,
    )
    .expect("builds")
    .expect("on");
    let outage = wrong.decode(&fixtures::avro_order(id, 1)).await;
    assert!(
        matches!(outage, Err(DecodeError::Unavailable(_))),
        "{outage:?}"
    );

    let refused = Decoder::from_config(&decoder_config("http://127.0.0.1:9", "avro"), &|_| None)
        .expect("builds")
        .expect("on");
    let outage = refused.decode(&fixtures::avro_order(id, 1)).await;
    assert!(
        matches!(outage, Err(DecodeError::Unavailable(_))),
        "{outage:?}"
    );
}

#[tokio::test]
async fn schemas_are_cached_by_id_and_so_is_a_missing_one() {
    let registry = RegistryStandIn::start().await.expect("registry");
    let id = fixtures::register_avro(&registry);
    let d = decoder(&registry, "avro");
    decoded(&d, &fixtures::avro_order(id, 1)).await;
    let reads = registry.schema_reads();
    assert_eq!(reads, 2, "the schema and the one it references");
    for n in 2..20 {
        decoded(&d, &fixtures::avro_order(id, n)).await;
    }
    assert_eq!(
        registry.schema_reads(),
        reads,
        "no read for a cached schema"
    );
    bad(&d, &framed(999, &[], b"")).await;
    let asked = registry.requests();
    bad(&d, &framed(999, &[], b"")).await;
    assert_eq!(
        registry.requests(),
        asked,
        "a missing id is remembered for errorTtl"
    );
    assert_eq!(d.cached_schemas(), 2, "the schema and the missing id");
}

#[tokio::test]
async fn basic_auth_credentials_come_from_the_environment() {
    let registry = RegistryStandIn::start().await.expect("registry");
    let id = fixtures::register_avro(&registry);
    registry.require_basic_auth("reader", "s3cret");
    let mut config = decoder_config(&registry.url(), "avro");
    config
        .kafka
        .schema_registry
        .as_mut()
        .expect("registry")
        .basic_auth = true;
    let missing = Decoder::from_config(&config, &|_| None);
    assert!(
        missing.is_err_and(|e| e.to_string().contains("KCP_SCHEMA_REGISTRY_USERNAME")),
        "a missing credential stops the start"
    );
    let env = |k: &str| match k {
        "KCP_SCHEMA_REGISTRY_USERNAME" => Some("reader".to_owned()),
        "KCP_SCHEMA_REGISTRY_PASSWORD" => Some("s3cret".to_owned()),
        _ => None,
    };
    let d = Decoder::from_config(&config, &env)
        .expect("builds")
        .expect("on");
    decoded(&d, &fixtures::avro_order(id, 1)).await;

    let no_auth = decoder(&registry, "avro");
    let refused = no_auth.decode(&fixtures::avro_order(id, 1)).await;
    assert!(
        matches!(&refused, Err(DecodeError::Unavailable(why)) if why.contains("401")),
        "a 401 is the registry's setup, not the record: {refused:?}"
    );
}
