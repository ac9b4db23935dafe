use std::{collections::BTreeMap, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use http_body_util::BodyExt;
use kcp_crds::config::EndpointConfig;
use serde_json::{Value, json};

use super::*;
use crate::record::Tp;

fn target() -> Target {
    let endpoint = EndpointConfig {
        url: "http://127.0.0.1:8080/batch".into(),
        method: Default::default(),
        host_header: None,
        headers: BTreeMap::from([("x-team".to_owned(), "payments".to_owned())]),
        connect_timeout: kcp_crds::Duration::from_secs(1),
        request_timeout: kcp_crds::Duration::from_secs(1),
        slow_request_threshold: None,
        readiness_url: None,
        retry_on: vec![],
        action_header: None,
        body_ack: None,
        unready_timeout: kcp_crds::Duration::from_secs(120),
        format: Default::default(),
        cloud_events: None,
        decode: None,
    };
    Target::from_config(&endpoint, "grp").expect("valid target")
}

fn record(offset: i64, key: Option<&'static [u8]>, value: &'static [u8]) -> Record {
    Record {
        tp: Tp::new("orders", 3),
        offset,
        timestamp: Some(1_700_000_000_000 + offset),
        key: key.map(Bytes::from_static),
        value: Bytes::from_static(value),
        headers: vec![
            ("tenant".into(), Some(Bytes::from_static(b"acme"))),
            ("sig".into(), Some(Bytes::from_static(b"\xff\x01"))),
            ("nullv".into(), None),
        ],
        unreadable_headers: 0,
    }
}

async fn body_of(r: Request<Full<Bytes>>) -> Value {
    let bytes = r.into_body().collect().await.expect("full body").to_bytes();
    serde_json::from_slice(&bytes).expect("the body is JSON")
}

#[tokio::test]
async fn a_batch_is_one_json_array_keeping_every_byte() {
    let text = record(7, Some(b"user-7"), b"{\"amount\":12}");
    let mut binary = record(8, Some(b"\xff\x00"), b"\x00\xffbin");
    binary.unreadable_headers = 2;
    let null_key = record(9, None, b"");
    let decoded = Decoded {
        schema_id: 42,
        json: json!({"amount": 12}),
    };
    let entries = [
        Entry {
            record: &text,
            attempt: 1,
            decoded: None,
        },
        Entry {
            record: &binary,
            attempt: 3,
            decoded: None,
        },
        Entry {
            record: &null_key,
            attempt: 1,
            decoded: None,
        },
        Entry {
            record: &text,
            attempt: 2,
            decoded: Some(&decoded),
        },
    ];
    let req = build(&target(), &entries);
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(req.uri(), "http://127.0.0.1:8080/batch");
    let h = req.headers();
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["kcp-batch"], "4");
    assert_eq!(h["kcp-group"], "grp");
    assert_eq!(h["x-team"], "payments", "static headers are sent");
    let body = body_of(req).await;
    let headers = json!([
        {"name": "tenant", "value": "acme"},
        {"name": "sig", "valueBase64": STANDARD.encode(b"\xff\x01")},
        {"name": "nullv"},
    ]);
    assert_eq!(
        body,
        json!([
            {"id": "orders/3/7", "topic": "orders", "partition": 3, "offset": 7,
             "timestamp": 1_700_000_000_007_i64, "attempt": 1, "key": "user-7",
             "headers": headers, "value": "{\"amount\":12}"},
            {"id": "orders/3/8", "topic": "orders", "partition": 3, "offset": 8,
             "timestamp": 1_700_000_000_008_i64, "attempt": 3,
             "keyBase64": STANDARD.encode(b"\xff\x00"), "headers": headers,
             "headersUnreadable": 2, "valueBase64": STANDARD.encode(b"\x00\xffbin")},
            {"id": "orders/3/9", "topic": "orders", "partition": 3, "offset": 9,
             "timestamp": 1_700_000_000_009_i64, "attempt": 1, "headers": headers, "value": ""},
            {"id": "orders/3/7", "topic": "orders", "partition": 3, "offset": 7,
             "timestamp": 1_700_000_000_007_i64, "attempt": 2, "key": "user-7",
             "headers": headers, "valueJson": {"amount": 12}, "schemaId": 42},
        ])
    );
}

fn ids() -> Vec<String> {
    ["t/0/1", "t/0/2", "t/0/3"].map(String::from).to_vec()
}

fn response(status: u16, body: &str) -> Outcome {
    Outcome::Response {
        status,
        retry_after: Some(Duration::from_secs(2)),
        action: None,
        body: Bytes::copy_from_slice(body.as_bytes()),
    }
}

fn plain(status: u16, retry_after: Option<u64>, action: Option<&str>) -> Outcome {
    Outcome::Response {
        status,
        retry_after: retry_after.map(Duration::from_secs),
        action: action.map(String::from),
        body: Bytes::new(),
    }
}

#[test]
fn an_empty_2xx_delivers_every_entry() {
    for body in ["", " \n"] {
        assert_eq!(
            split(&response(204, body), &ids()),
            vec![plain(204, Some(2), None); 3]
        );
    }
}

#[test]
fn listed_results_are_the_entries_own_and_the_others_are_delivered() {
    let body = r#"{"results": [
        {"id": "t/0/3", "status": 422},
        {"id": "t/0/1", "status": 503, "action": "skip"},
        {"id": "t/9/9", "status": 500}
    ]}"#;
    assert_eq!(
        split(&response(200, body), &ids()),
        vec![
            plain(503, None, Some("skip")),
            plain(200, Some(2), None),
            plain(422, None, None),
        ]
    );
}

#[test]
fn a_result_without_a_status_is_a_200() {
    let body = r#"{"results": [{"id": "t/0/2", "action": "dead-letter"}]}"#;
    assert_eq!(
        split(&response(200, body), &ids())[1],
        plain(200, None, Some("dead-letter"))
    );
}

#[test]
fn an_unreadable_2xx_body_fails_every_entry() {
    for body in [
        "ok",
        "[]",
        r#"{"results": [{"status": 500}]}"#,
        r#"{"failures": []}"#,
    ] {
        let outcomes = split(&response(200, body), &ids());
        assert_eq!(outcomes.len(), 3);
        for o in outcomes {
            let Outcome::Failed(why) = o else {
                panic!("{body:?} gave {o:?}")
            };
            assert!(why.starts_with("batch reply unreadable: "), "{why}");
            assert!(why.contains("docs/batch.md"), "{why}");
        }
    }
}

#[test]
fn any_other_outcome_is_every_entrys() {
    let refused = plain(503, Some(5), None);
    assert_eq!(split(&refused, &ids()), vec![refused.clone(); 3]);
    // The action header speaks for the whole batch; the body is not read then.
    let with_action = Outcome::Response {
        status: 200,
        retry_after: None,
        action: Some("retry".into()),
        body: Bytes::from_static(b"{\"results\": []}"),
    };
    assert_eq!(split(&with_action, &ids()), vec![with_action.clone(); 3]);
    for other in [
        Outcome::Timeout,
        Outcome::Failed("reset".into()),
        Outcome::Unreachable("refused".into()),
    ] {
        assert_eq!(split(&other, &ids()), vec![other.clone(); 3]);
    }
    // A non-2xx body is not a batch reply.
    assert_eq!(
        split(&response(500, "{\"results\": []}"), &ids()),
        vec![plain(500, Some(2), None); 3]
    );
}
