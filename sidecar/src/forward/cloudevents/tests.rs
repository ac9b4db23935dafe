//! Requests checked attribute by attribute against the examples of the CloudEvents specs: the
//! Kafka binding's records (§3.2.5 binary, §3.3.4 structured) sent as the HTTP binding's requests
//! (§3.1.4 binary, §3.2.4 structured), the percent-encoding example of §3.1.3.2, and events the
//! sidecar builds from plain records.

use bytes::Bytes;
use http::{Request, header::CONTENT_TYPE};
use http_body_util::{BodyExt, Full};
use kcp_crds::config::{CloudEventsConfig, EndpointConfig, Format};
use serde_json::{Value, json};

use super::http::percent_encode;
use crate::{
    decode::Decoded,
    forward::request::{Target, build},
    record::{Record, Tp},
};

fn target(format: Format, cloud_events: Option<CloudEventsConfig>) -> Target {
    let endpoint = EndpointConfig {
        url: "http://webhook.example.com/someresource".into(),
        method: Default::default(),
        host_header: None,
        headers: Default::default(),
        connect_timeout: kcp_crds::Duration::from_secs(1),
        request_timeout: kcp_crds::Duration::from_secs(1),
        slow_request_threshold: None,
        readiness_url: None,
        retry_on: vec![],
        action_header: None,
        body_ack: None,
        unready_timeout: kcp_crds::Duration::from_secs(120),
        format,
        cloud_events,
        decode: None,
    };
    Target::from_config(&endpoint, "grp")
        .expect("valid target")
        .for_cluster("kafka-0.kafka:9092,kafka-1.kafka:9092")
}

fn binary() -> Target {
    target(
        Format::CloudeventsBinary,
        Some(CloudEventsConfig::default()),
    )
}

fn structured() -> Target {
    target(
        Format::CloudeventsStructured,
        Some(CloudEventsConfig::default()),
    )
}

/// The Kafka binding's binary-mode example (§3.2.5), on `mytopic`.
fn kafka_binary_example() -> Record {
    let h = |n: &str, v: &str| (n.to_owned(), Some(Bytes::from(v.to_owned())));
    Record {
        tp: Tp::new("mytopic", 0),
        offset: 42,
        timestamp: Some(1_522_900_584_000),
        key: Some(Bytes::from_static(b"mykey")),
        value: Bytes::from_static(b"\x00\x02\x04avro-bytes"),
        headers: vec![
            h("ce_specversion", "1.0"),
            h("ce_type", "com.example.someevent"),
            h("ce_source", "/mycontext/subcontext"),
            h("ce_id", "1234-1234-1234"),
            h("ce_time", "2018-04-05T03:56:24Z"),
            h("content-type", "application/avro"),
        ],
        unreadable_headers: 0,
    }
}

fn header<'a>(r: &'a Request<Full<Bytes>>, name: &str) -> Option<&'a str> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii header"))
}

fn ce_headers(r: &Request<Full<Bytes>>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .headers()
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("ce-"))
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().expect("ascii").to_owned()))
        .collect();
    v.sort();
    v
}

fn body(r: Request<Full<Bytes>>) -> Bytes {
    futures::executor::block_on(r.into_body().collect())
        .expect("full body")
        .to_bytes()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    v.sort();
    v
}

/// The `ce-*` headers of the HTTP binding's binary-mode example (§3.1.4), and one more.
fn spec_example_and(extra: (&str, &str)) -> Vec<(String, String)> {
    pairs(&[
        ("ce-specversion", "1.0"),
        ("ce-type", "com.example.someevent"),
        ("ce-time", "2018-04-05T03:56:24Z"),
        ("ce-id", "1234-1234-1234"),
        ("ce-source", "/mycontext/subcontext"),
        extra,
    ])
}

#[test]
fn a_binary_kafka_event_is_sent_as_the_http_binding_binary_example() {
    let r = build(&binary(), &kafka_binary_example(), 1, None).expect("request");
    assert_eq!(
        ce_headers(&r),
        spec_example_and(("ce-partitionkey", "mykey")),
        "attributes from the ce_ headers win over the defaults; the key is the partitionkey"
    );
    assert_eq!(header(&r, "content-type"), Some("application/avro"));
    assert!(
        r.headers().get("ce-datacontenttype").is_none(),
        "§3.1.1: datacontenttype is Content-Type only"
    );
    assert!(
        r.headers()
            .keys()
            .all(|n| !n.as_str().starts_with("kcp-h-")),
        "headers used as attributes are not forwarded again"
    );
    assert_eq!(header(&r, "idempotency-key"), Some("mytopic/0/42"));
    assert_eq!(
        &body(r)[..],
        b"\x00\x02\x04avro-bytes",
        "data byte for byte"
    );
}

#[test]
fn a_binary_kafka_event_is_sent_in_structured_mode_as_the_json_format() {
    let r = build(&structured(), &kafka_binary_example(), 1, None).expect("request");
    assert_eq!(
        header(&r, "content-type"),
        Some("application/cloudevents+json; charset=utf-8")
    );
    assert!(ce_headers(&r).is_empty(), "attributes are in the body");
    let event: Value = serde_json::from_slice(&body(r)).expect("json body");
    assert_eq!(
        event,
        json!({
            "specversion": "1.0",
            "type": "com.example.someevent",
            "source": "/mycontext/subcontext",
            "id": "1234-1234-1234",
            "time": "2018-04-05T03:56:24Z",
            "datacontenttype": "application/avro",
            "partitionkey": "mykey",
            "data_base64": "AAIEYXZyby1ieXRlcw==",
        })
    );
}

/// The Kafka binding's structured example (§3.3.4) with JSON data.
fn kafka_structured_example() -> Record {
    let envelope = json!({
        "specversion": "1.0",
        "type": "com.example.someevent",
        "source": "/mycontext/subcontext",
        "id": "1234-1234-1234",
        "time": "2018-04-05T03:56:24Z",
        "datacontenttype": "application/json",
        "comexampleextension1": "value",
        "data": {"appinfoA": "abc", "appinfoB": 123}
    });
    Record {
        tp: Tp::new("mytopic", 1),
        offset: 7,
        timestamp: Some(1),
        key: Some(Bytes::from_static(b"mykey")),
        value: Bytes::from(serde_json::to_vec(&envelope).expect("json")),
        headers: vec![(
            "content-type".into(),
            Some(Bytes::from_static(
                b"application/cloudevents+json; charset=UTF-8",
            )),
        )],
        unreadable_headers: 0,
    }
}

#[test]
fn a_structured_kafka_event_is_passed_on_as_it_is() {
    let record = kafka_structured_example();
    let r = build(&structured(), &record, 1, None).expect("request");
    assert_eq!(
        header(&r, "content-type"),
        Some("application/cloudevents+json; charset=utf-8")
    );
    assert_eq!(
        body(r),
        record.value,
        "the event, not one the sidecar made up"
    );
}

#[test]
fn a_structured_kafka_event_is_sent_in_binary_mode_with_its_own_attributes() {
    let r = build(&binary(), &kafka_structured_example(), 1, None).expect("request");
    assert_eq!(
        ce_headers(&r),
        spec_example_and(("ce-comexampleextension1", "value")),
        "no partitionkey added: the event is the record's own"
    );
    assert_eq!(header(&r, "content-type"), Some("application/json"));
    let data: Value = serde_json::from_slice(&body(r)).expect("json data");
    assert_eq!(data, json!({"appinfoA": "abc", "appinfoB": 123}));
}

#[test]
fn a_record_claiming_to_be_a_structured_event_that_is_not_one_is_bad() {
    let mut record = kafka_structured_example();
    record.value = Bytes::from_static(b"{\"specversion\":\"1.0\"}");
    let why = build(&binary(), &record, 1, None).expect_err("not an event");
    assert!(why.contains("structured CloudEvent"), "{why}");
}

#[test]
fn a_plain_record_gets_the_default_attributes() {
    let record = Record {
        tp: Tp::new("orders", 3),
        offset: 1017,
        timestamp: Some(1_700_000_000_123),
        key: Some(Bytes::from_static("clé".as_bytes())),
        value: Bytes::from_static(b"{\"total\": 12}"),
        headers: vec![
            ("origin".into(), Some(Bytes::from_static(b"web"))),
            ("ce_comment".into(), Some(Bytes::from("Euro € 😀"))),
            (
                "ce_Bad".into(),
                Some(Bytes::from_static(b"not an attribute name")),
            ),
            ("ce_time".into(), Some(Bytes::from_static(b"yesterday"))),
        ],
        unreadable_headers: 0,
    };
    let r = build(&binary(), &record, 1, None).expect("request");
    assert_eq!(
        ce_headers(&r),
        pairs(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "orders/3/1017"),
            ("ce-source", "kafka://kafka-0.kafka:9092/orders"),
            ("ce-type", "io.kafkaproxy.record"),
            ("ce-time", "2023-11-14T22:13:20.123Z"),
            ("ce-partitionkey", "cl%C3%A9"),
            ("ce-comment", "Euro%20%E2%82%AC%20%F0%9F%98%80"),
        ]),
        "§3.1.3.2 percent-encoding; an invalid ce_time keeps the record's time"
    );
    assert_eq!(
        header(&r, "content-type"),
        Some("application/octet-stream"),
        "no content-type header: the endpoint's"
    );
    assert_eq!(
        header(&r, "kcp-h-origin"),
        Some("web"),
        "other headers as usual"
    );
    assert_eq!(header(&r, "kcp-h-ce_time"), Some("yesterday"));
    assert!(header(&r, "kcp-h-ce_bad").is_some());
    assert_eq!(header(&r, "kcp-key-base64"), Some("Y2zDqQ=="));

    let r = build(&structured(), &record, 1, None).expect("request");
    let event: Value = serde_json::from_slice(&body(r)).expect("json body");
    assert_eq!(
        event["comment"],
        json!("Euro € 😀"),
        "no encoding in the body"
    );
    assert_eq!(event["data_base64"], json!("eyJ0b3RhbCI6IDEyfQ=="));
    assert_eq!(event["partitionkey"], json!("clé"));
}

#[test]
fn overrides_set_type_and_source_and_decoded_data_is_json() {
    let t = target(
        Format::CloudeventsStructured,
        Some(CloudEventsConfig {
            type_: "com.example.order".into(),
            source: Some("/shop/orders".into()),
        }),
    );
    let record = Record {
        tp: Tp::new("orders", 0),
        offset: 5,
        timestamp: None,
        key: None,
        value: Bytes::from_static(b"\x00\x00\x00\x00\x07avro"),
        headers: vec![(
            "content-type".into(),
            Some(Bytes::from_static(b"application/avro")),
        )],
        unreadable_headers: 0,
    };
    let decoded = Decoded {
        schema_id: 7,
        json: json!({"id": "o-5", "total": "12.50"}),
    };
    let r = build(&t, &record, 1, Some(&decoded)).expect("request");
    assert_eq!(header(&r, "kcp-schema-id"), Some("7"));
    assert_eq!(
        header(&r, "kcp-h-content-type"),
        Some("application/avro"),
        "the wire format's content type does not describe the JSON"
    );
    let event: Value = serde_json::from_slice(&body(r)).expect("json body");
    assert_eq!(
        event,
        json!({
            "specversion": "1.0",
            "id": "orders/0/5",
            "source": "/shop/orders",
            "type": "com.example.order",
            "datacontenttype": "application/json",
            "data": {"id": "o-5", "total": "12.50"},
        })
    );
}

#[test]
fn an_empty_value_is_an_event_without_data() {
    let record = Record {
        tp: Tp::new("orders", 0),
        offset: 9,
        timestamp: None,
        key: Some(Bytes::from_static(b"k")),
        value: Bytes::new(),
        headers: vec![],
        unreadable_headers: 0,
    };
    let r = build(&binary(), &record, 1, None).expect("request");
    assert!(
        r.headers().get(CONTENT_TYPE).is_none(),
        "no data, no content type"
    );
    assert!(body(r).is_empty());
    let r = build(&structured(), &record, 1, None).expect("request");
    let event: Value = serde_json::from_slice(&body(r)).expect("json body");
    assert!(event.get("data").is_none() && event.get("data_base64").is_none());
    assert!(event.get("datacontenttype").is_none());
}

#[test]
fn percent_encoding_follows_the_http_binding() {
    assert_eq!(
        percent_encode("Euro € 😀"),
        "Euro%20%E2%82%AC%20%F0%9F%98%80"
    );
    assert_eq!(percent_encode("a\"b%c"), "a%22b%25c");
    assert_eq!(percent_encode("/path?x=1&y=~"), "/path?x=1&y=~");
    assert_eq!(percent_encode("tab\there"), "tab%09here");
}

#[test]
fn an_extension_too_large_for_a_header_is_left_out_and_counted() {
    let mut record = kafka_binary_example();
    // A header value within the forwarding limit that percent-encodes past 8 KiB.
    record
        .headers
        .push(("ce_big".into(), Some(Bytes::from("é".repeat(1500)))));
    let r = build(&binary(), &record, 1, None).expect("request");
    assert!(r.headers().get("ce-big").is_none());
    assert_eq!(header(&r, "kcp-headers-dropped"), Some("1"));
}

#[test]
fn text_data_is_a_string_and_a_long_key_is_no_partitionkey() {
    let record = Record {
        tp: Tp::new("orders", 0),
        offset: 1,
        timestamp: None,
        key: Some(Bytes::from("k".repeat(5000))),
        value: Bytes::from("héllo"),
        headers: vec![(
            "content-type".into(),
            Some(Bytes::from_static(b"text/plain; charset=utf-8")),
        )],
        unreadable_headers: 0,
    };
    let r = build(&structured(), &record, 1, None).expect("request");
    let event: Value = serde_json::from_slice(&body(r)).expect("json body");
    assert_eq!(event["data"], json!("héllo"));
    assert_eq!(event["datacontenttype"], json!("text/plain; charset=utf-8"));
    assert!(event.get("partitionkey").is_none(), "a key over 4 KiB");
}
