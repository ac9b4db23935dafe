//! Between rdkafka's records and [`Header`] lists: reading a dead letter's headers
//! ([`read_headers`]) and building the redriven record's ([`kafka_headers`]).

use std::panic::{AssertUnwindSafe, catch_unwind};

use rdkafka::{
    Message,
    message::{BorrowedMessage, Header as KafkaHeader, Headers, OwnedHeaders},
};

use super::decide::Header;

/// The headers of `m` whose name can be read, in order, and how many could not. rdkafka 0.39
/// panics reading a header name that is not UTF-8 (`CStr::to_str().unwrap()` in
/// `Headers::try_get`) and offers no other safe accessor, so each read is caught; such a dead
/// letter is then filtered (`decide`), not redriven without the header. The panic hook still
/// prints the panic: it is rare (the sidecar never writes such a name) and worth seeing.
pub fn read_headers(m: &BorrowedMessage<'_>) -> (Vec<Header>, usize) {
    let Some(hs) = m.headers() else {
        return (Vec::new(), 0);
    };
    let mut headers = Vec::with_capacity(hs.count());
    let mut unreadable = 0;
    for i in 0..hs.count() {
        // Unwind safety: the closure only reads `hs` and builds a new value.
        match catch_unwind(AssertUnwindSafe(|| {
            hs.try_get(i)
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
        })) {
            Ok(Some(h)) => headers.push(h),
            Ok(None) => {}
            Err(_) => unreadable += 1,
        }
    }
    (headers, unreadable)
}

/// `headers` as rdkafka's, in order; a `None` value stays a null value.
pub fn kafka_headers(headers: &[Header]) -> OwnedHeaders {
    let mut owned = OwnedHeaders::new_with_capacity(headers.len());
    for (key, value) in headers {
        owned = owned.insert(KafkaHeader {
            key,
            value: value.as_deref(),
        });
    }
    owned
}
