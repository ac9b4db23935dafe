use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http_body_util::BodyExt;
use kcp_crds::{Duration, config::EndpointConfig, v1alpha1::HttpMethod};

use super::*;
use crate::record::Tp;

fn endpoint() -> EndpointConfig {
    EndpointConfig {
        url: "http://127.0.0.1:8080/events".into(),
        method: HttpMethod::Put,
        host_header: Some("orders.internal".into()),
        headers: BTreeMap::from([
            ("x-team".to_owned(), "payments".to_owned()),
            ("kcp-attempt".to_owned(), "999".to_owned()),
        ]),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        slow_request_threshold: None,
        readiness_url: None,
        retry_on: vec![],
        action_header: None,
        body_ack: None,
        unready_timeout: kcp_crds::Duration::from_secs(120),
        format: Default::default(),
        cloud_events: None,
        decode: None,
    }
}

fn record() -> Record {
    Record {
        tp: Tp::new("orders", 3),
        offset: 42,
        timestamp: Some(1_700_000_000_123),
        key: Some(Bytes::from_static("clé-1".as_bytes())),
        value: Bytes::from_static(b"\x00\xffbinary"),
        headers: vec![
            ("Content-Kind".into(), Some(Bytes::from_static(b"json"))),
            ("bin".into(), Some(Bytes::from_static(b"\x01\x02"))),
            ("with space".into(), Some(Bytes::from_static(b"v"))),
            ("dup".into(), Some(Bytes::from_static(b"a"))),
            ("dup".into(), Some(Bytes::from_static(b"b"))),
            ("nullv".into(), None),
            (
                "traceparent".into(),
                Some(Bytes::from_static(b"00-abc-def-01")),
            ),
            ("tracestate".into(), Some(Bytes::from_static(b"k=v"))),
        ],
        unreadable_headers: 0,
    }
}

fn get<'a>(r: &'a Request<Full<Bytes>>, name: &str) -> Option<&'a str> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii in these tests"))
}

#[tokio::test]
async fn request_carries_coordinates_headers_and_exact_body() {
    let target = Target::from_config(&endpoint(), "grp").expect("valid target");
    let r = build(&target, &record(), 2, None).expect("request");
    assert_eq!(r.method(), Method::PUT);
    assert_eq!(r.uri(), "http://127.0.0.1:8080/events");
    assert_eq!(get(&r, "host"), Some("orders.internal"));
    assert_eq!(get(&r, "x-team"), Some("payments"));
    assert_eq!(get(&r, "kcp-topic"), Some("orders"));
    assert_eq!(get(&r, "kcp-partition"), Some("3"));
    assert_eq!(get(&r, "kcp-offset"), Some("42"));
    assert_eq!(get(&r, "kcp-timestamp"), Some("1700000000123"));
    assert_eq!(
        get(&r, "kcp-key-base64"),
        Some(STANDARD.encode("clé-1").as_str()),
        "not ASCII: base64"
    );
    assert_eq!(get(&r, "idempotency-key"), Some("orders/3/42"));
    assert_eq!(get(&r, "kcp-group"), Some("grp"));
    assert_eq!(
        get(&r, "kcp-attempt"),
        Some("2"),
        "kcp-* wins over static headers"
    );
    assert_eq!(get(&r, "kcp-h-content-kind"), Some("json"));
    assert_eq!(
        get(&r, "kcp-hb-bin"),
        Some(STANDARD.encode([1u8, 2]).as_str())
    );
    let hex: String = "with space".bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        get(&r, &format!("kcp-hx-{hex}")),
        Some(STANDARD.encode("v").as_str())
    );
    let dups: Vec<_> = r.headers().get_all("kcp-h-dup").iter().collect();
    assert_eq!(dups, ["a", "b"]);
    assert_eq!(get(&r, "kcp-h-nullv"), Some(""));
    assert_eq!(get(&r, "traceparent"), Some("00-abc-def-01"));
    assert_eq!(get(&r, "tracestate"), Some("k=v"));
    assert_eq!(get(&r, "kcp-h-traceparent"), None);
    assert_eq!(get(&r, "kcp-headers-dropped"), None);
    let body = r.into_body().collect().await.expect("full body").to_bytes();
    assert_eq!(&body[..], b"\x00\xffbinary");
}

#[test]
fn binary_empty_and_null_keys() {
    let target = Target::from_config(&endpoint(), "grp").expect("valid target");
    let mut rec = record();
    rec.key = Some(Bytes::from_static(b"\xff\x00"));
    let r = build(&target, &rec, 1, None).expect("request");
    assert_eq!(get(&r, "kcp-key"), None);
    assert_eq!(
        get(&r, "kcp-key-base64"),
        Some(STANDARD.encode([0xffu8, 0]).as_str())
    );
    rec.key = Some(Bytes::new());
    let r = build(&target, &rec, 1, None).expect("request");
    assert_eq!(get(&r, "kcp-key"), Some(""));
    rec.key = None;
    rec.timestamp = None;
    let r = build(&target, &rec, 1, None).expect("request");
    assert_eq!(get(&r, "kcp-key"), None);
    assert_eq!(get(&r, "kcp-key-base64"), None);
    assert_eq!(get(&r, "kcp-timestamp"), None);
    rec.key = Some(Bytes::from_static(b" padded"));
    let r = build(&target, &rec, 1, None).expect("request");
    assert!(
        get(&r, "kcp-key-base64").is_some(),
        "edge whitespace would be stripped"
    );
}

#[test]
fn thousands_of_headers_are_capped_and_counted() {
    let target = Target::from_config(&endpoint(), "grp").expect("valid target");
    let mut rec = record();
    rec.headers = (0..5000)
        .map(|i| (format!("h{i}"), Some(Bytes::from(vec![b'x'; 10]))))
        .collect();
    let r = build(&target, &rec, 1, None).expect("request");
    let forwarded = r
        .headers()
        .keys()
        .filter(|k| k.as_str().starts_with("kcp-h-"))
        .count();
    assert_eq!(forwarded, MAX_FORWARDED_HEADERS);
    assert_eq!(
        get(&r, "kcp-headers-dropped"),
        Some((5000 - MAX_FORWARDED_HEADERS).to_string().as_str())
    );
}

#[test]
fn oversized_header_values_are_dropped_by_bytes() {
    let target = Target::from_config(&endpoint(), "grp").expect("valid target");
    let mut rec = record();
    rec.headers = vec![
        (
            "big".into(),
            Some(Bytes::from(vec![b'a'; MAX_FORWARDED_HEADER_BYTES])),
        ),
        ("small".into(), Some(Bytes::from_static(b"ok"))),
    ];
    let r = build(&target, &rec, 1, None).expect("request");
    assert_eq!(get(&r, "kcp-h-big"), None);
    assert_eq!(get(&r, "kcp-h-small"), Some("ok"));
    assert_eq!(get(&r, "kcp-headers-dropped"), Some("1"));
}

#[test]
fn other_schemes_and_bad_static_headers_are_refused() {
    let mut e = endpoint();
    e.url = "https://example.com/x".into();
    assert!(Target::from_config(&e, "g").is_ok());
    e.url = "ftp://example.com/x".into();
    assert!(matches!(
        Target::from_config(&e, "g"),
        Err(TargetError::Scheme(_))
    ));
    let mut e = endpoint();
    e.headers.insert("x-bad".into(), "line\nbreak".into());
    assert!(matches!(
        Target::from_config(&e, "g"),
        Err(TargetError::Header(_))
    ));
}

#[test]
fn non_ascii_keys_and_values_are_sent_in_base64() {
    let target = Target::from_config(&endpoint(), "grp").expect("valid target");
    let mut rec = record();
    rec.key = Some(Bytes::from_static("clé-1".as_bytes()));
    rec.headers = vec![("city".into(), Some(Bytes::from_static("Zürich".as_bytes())))];
    let r = build(&target, &rec, 1, None).expect("request");
    assert_eq!(get(&r, "kcp-key"), None, "raw UTF-8 bytes in a header");
    assert_eq!(
        get(&r, "kcp-key-base64"),
        Some(STANDARD.encode("clé-1").as_str())
    );
    assert_eq!(get(&r, "kcp-h-city"), None);
    assert_eq!(
        get(&r, "kcp-hb-city"),
        Some(STANDARD.encode("Zürich").as_str())
    );
    for (_, v) in r.headers() {
        assert!(v.as_bytes().is_ascii(), "{v:?}");
    }
}

#[test]
fn a_key_over_the_cap_is_not_sent_and_its_size_is() {
    let target = Target::from_config(&endpoint(), "grp").expect("valid target");
    let mut rec = record();
    rec.key = Some(Bytes::from(vec![b'k'; MAX_KEY_BYTES]));
    let r = build(&target, &rec, 1, None).expect("request");
    assert_eq!(get(&r, "kcp-key").map(str::len), Some(MAX_KEY_BYTES));
    rec.key = Some(Bytes::from(vec![b'k'; 100_000]));
    let r = build(&target, &rec, 1, None).expect("request");
    assert!(get(&r, "kcp-key").is_none(), "a 100 kB kcp-key was sent");
    assert!(get(&r, "kcp-key-base64").is_none());
    assert_eq!(get(&r, "kcp-key-dropped"), Some("100000"));
}

#[test]
fn trace_headers_over_the_cap_are_ordinary_headers() {
    let target = Target::from_config(&endpoint(), "grp").expect("valid target");
    let mut rec = record();
    let long = "k=v,".repeat(25_000);
    rec.headers = vec![
        ("tracestate".into(), Some(Bytes::from(long))),
        (
            "traceparent".into(),
            Some(Bytes::from_static(b"00-abc-def-01")),
        ),
    ];
    let r = build(&target, &rec, 1, None).expect("request");
    assert!(
        get(&r, "tracestate").is_none(),
        "a 100 kB tracestate was sent"
    );
    assert!(get(&r, "kcp-h-tracestate").is_none());
    assert_eq!(get(&r, "kcp-headers-dropped"), Some("1"));
    assert_eq!(get(&r, "traceparent"), Some("00-abc-def-01"));
}

/// Every header a record can produce fits http's limits (no panic) and the forwarded ones stay
/// within the byte cap as sent: names from 1 byte to past 64 KiB, tokens or not.
#[test]
fn header_names_up_to_and_past_every_limit_never_panic() {
    let target = Target::from_config(&endpoint(), "grp").expect("valid target");
    for len in [
        1, 32_762, 32_764, 32_765, 32_766, 32_768, 32_769, 65_535, 65_536, 70_000,
    ] {
        for filler in ["z", " ", "é"] {
            let mut name = "x".to_owned();
            while name.len() < len {
                name.push_str(filler);
            }
            let mut rec = record();
            rec.headers = vec![
                (name.clone(), None),
                ("after".into(), Some(Bytes::from_static(b"1"))),
            ];
            let r = build(&target, &rec, 1, None).expect("request");
            let forwarded: Vec<usize> = r
                .headers()
                .iter()
                .filter(|(n, _)| {
                    ["kcp-h-", "kcp-hb-", "kcp-hx-"]
                        .iter()
                        .any(|p| n.as_str().starts_with(p))
                })
                .map(|(n, v)| n.as_str().len() + v.len())
                .collect();
            let bytes: usize = forwarded.iter().sum();
            assert!(
                bytes <= MAX_FORWARDED_HEADER_BYTES,
                "{len} {filler:?}: {bytes}"
            );
            let dropped: usize =
                get(&r, "kcp-headers-dropped").map_or(0, |d| d.parse().expect("a count"));
            assert_eq!(
                forwarded.len() + dropped,
                2,
                "{len} {filler:?}: each forwarded or counted"
            );
            if len > MAX_FORWARDED_HEADER_BYTES {
                assert_eq!(get(&r, "kcp-h-after"), Some("1"), "{len} {filler:?}");
            }
        }
    }
}
