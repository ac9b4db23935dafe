//! A minimal raw Kafka producer: one Produce request (v3, a RecordBatch v2 with its CRC32C) on a
//! plain TCP connection. It exists because rdkafka's producer API takes header names as `&str`,
//! while a Kafka header name is bytes: records whose header names are not UTF-8 (or hold NUL,
//! CR, LF) can only be written this way. It writes to the broker it is given, which must lead
//! the partition: the mock cluster with one broker, or a single-broker Kafka.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

/// A record with every field as raw bytes; `None` is a null key, value or header value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawRec {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Produces `records` to `topic`/`partition` as one batch (acks=1); panics unless the broker
/// accepted it. `bootstrap` is `host:port` (the first of a list is used).
pub async fn produce(bootstrap: &str, topic: &str, partition: i32, records: Vec<RawRec>) {
    let (addr, topic) = (
        bootstrap
            .split(',')
            .next()
            .expect("a bootstrap address")
            .to_owned(),
        topic.to_owned(),
    );
    tokio::task::spawn_blocking(move || produce_blocking(&addr, &topic, partition, &records))
        .await
        .expect("raw producer thread");
}

fn produce_blocking(addr: &str, topic: &str, partition: i32, records: &[RawRec]) {
    let batch = record_batch(records);
    let mut body = Vec::new();
    put_i16(&mut body, 0); // api_key: Produce
    put_i16(&mut body, 3); // api_version: the first with RecordBatch v2
    put_i32(&mut body, 7); // correlation_id
    put_str(&mut body, b"kcp-test-raw"); // client_id
    put_i16(&mut body, -1); // transactional_id: null
    put_i16(&mut body, 1); // acks
    put_i32(&mut body, 10_000); // timeout_ms
    put_i32(&mut body, 1); // topics
    put_str(&mut body, topic.as_bytes());
    put_i32(&mut body, 1); // partitions
    put_i32(&mut body, partition);
    put_i32(
        &mut body,
        i32::try_from(batch.len()).expect("batch under 2 GiB"),
    );
    body.extend_from_slice(&batch);

    let mut stream = TcpStream::connect(addr).expect("connect to the broker");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut framed = Vec::with_capacity(body.len() + 4);
    put_i32(
        &mut framed,
        i32::try_from(body.len()).expect("request under 2 GiB"),
    );
    framed.extend_from_slice(&body);
    stream.write_all(&framed).expect("send Produce");

    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("Produce response size");
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut resp).expect("Produce response");
    let mut r = Reader(&resp);
    assert_eq!(r.i32(), 7, "correlation id");
    assert_eq!(r.i32(), 1, "one topic in the response");
    let name_len = r.i16() as usize;
    r.skip(name_len);
    assert_eq!(r.i32(), 1, "one partition in the response");
    assert_eq!(r.i32(), partition);
    let error = r.i16();
    assert_eq!(
        error, 0,
        "the broker refused the raw batch (Kafka error code {error})"
    );
}

/// A RecordBatch v2, uncompressed, no producer id, offsets from 0.
fn record_batch(records: &[RawRec]) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    // Everything the CRC covers: attributes to the end.
    let mut tail = Vec::new();
    put_i16(&mut tail, 0); // attributes
    put_i32(&mut tail, records.len() as i32 - 1); // last offset delta
    put_i64(&mut tail, now); // base timestamp
    put_i64(&mut tail, now); // max timestamp
    put_i64(&mut tail, -1); // producer id
    put_i16(&mut tail, -1); // producer epoch
    put_i32(&mut tail, -1); // base sequence
    put_i32(&mut tail, records.len() as i32);
    for (i, r) in records.iter().enumerate() {
        let mut rec = Vec::new();
        rec.push(0); // attributes
        put_varint(&mut rec, 0); // timestamp delta
        put_varint(&mut rec, i as i64); // offset delta
        put_nullable_bytes(&mut rec, r.key.as_deref());
        put_nullable_bytes(&mut rec, r.value.as_deref());
        put_varint(&mut rec, r.headers.len() as i64);
        for (name, value) in &r.headers {
            put_varint(&mut rec, name.len() as i64);
            rec.extend_from_slice(name);
            put_nullable_bytes(&mut rec, value.as_deref());
        }
        put_varint(&mut tail, rec.len() as i64);
        tail.extend_from_slice(&rec);
    }
    let mut batch = Vec::with_capacity(tail.len() + 21);
    put_i64(&mut batch, 0); // base offset
    // Batch length: everything after this field.
    put_i32(&mut batch, (4 + 1 + 4 + tail.len()) as i32);
    put_i32(&mut batch, -1); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&crc32c(&tail).to_be_bytes());
    batch.extend_from_slice(&tail);
    batch
}

fn put_i16(b: &mut Vec<u8>, v: i16) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn put_i32(b: &mut Vec<u8>, v: i32) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn put_i64(b: &mut Vec<u8>, v: i64) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn put_str(b: &mut Vec<u8>, s: &[u8]) {
    put_i16(b, i16::try_from(s.len()).expect("string under 32 KiB"));
    b.extend_from_slice(s);
}

/// Zigzag varint, as Kafka's record fields use.
fn put_varint(b: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            b.push(z as u8);
            return;
        }
        b.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

fn put_nullable_bytes(b: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => put_varint(b, -1),
        Some(v) => {
            put_varint(b, v.len() as i64);
            b.extend_from_slice(v);
        }
    }
}

/// CRC-32C (Castagnoli), bitwise: test records are small.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("split at N")
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take())
    }
    fn skip(&mut self, n: usize) {
        self.0 = &self.0[n..];
    }
}

#[test]
fn crc32c_check_value() {
    // The standard check value of CRC-32C.
    assert_eq!(crc32c(b"123456789"), 0xe306_9283);
}
