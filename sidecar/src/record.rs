//! The owned Kafka record that travels through the pipeline, and partition coordinates.
//!
//! Pure data. A [`Record`] is copied out of librdkafka's memory once, on the poll thread, so the
//! consumer never waits on HTTP; key, value and header bytes are kept exactly as consumed.
//!
//! Header names are the exception, because rdkafka 0.39 reads them as `&str`: a name that is not
//! UTF-8 makes its `Headers::try_get` panic (`CStr::to_str().unwrap()`), and there is no other
//! accessor without `unsafe` (forbidden here). Each header is therefore read on its own inside
//! [`unwind::catch_quietly`]: a header whose name cannot be read is left out and counted in
//! [`Record::unreadable_headers`] (name and value are both lost: rdkafka returns neither), and
//! the record itself is delivered as usual, with `kcp-headers-unreadable: <n>` so the app can
//! tell. Before, the panic stopped the poll thread, and the restarted sidecar stopped at the same
//! record again, on every replica. rdkafka also reads a name as a C string, so a name holding a
//! NUL byte arrives cut at the first NUL.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use rdkafka::message::{Headers, Message};

use crate::unwind;

/// A topic-partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tp {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl Tp {
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for Tp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Copies every header whose name can be read; counts the others (see the module docs).
fn read_headers<H: Headers>(hs: &H) -> (Vec<(String, Option<Bytes>)>, usize) {
    let count = hs.count();
    let mut headers = Vec::with_capacity(count);
    let mut unreadable = 0;
    for i in 0..count {
        let read = unwind::catch_quietly(|| {
            hs.try_get(i)
                .map(|h| (h.key.to_owned(), h.value.map(Bytes::copy_from_slice)))
        });
        match read {
            Ok(Some(header)) => headers.push(header),
            // Out of range cannot happen below `count`; nothing to copy either way.
            Ok(None) => {}
            Err(_) => unreadable += 1,
        }
    }
    (headers, unreadable)
}

/// One consumed record, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub tp: Tp,
    pub offset: i64,
    /// Milliseconds since the epoch (create or log-append time), when the record has one.
    pub timestamp: Option<i64>,
    pub key: Option<Bytes>,
    /// The value; a null value is empty.
    pub value: Bytes,
    /// Kafka headers in order; duplicates allowed; `None` is a null header value.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Kafka headers left out of `headers` because their name could not be read (not UTF-8).
    pub unreadable_headers: usize,
}

impl Record {
    /// Copies a consumed message out of librdkafka's memory.
    pub fn from_message<M: Message>(m: &M, topic: &Arc<str>) -> Self {
        let (headers, unreadable_headers) = m.headers().map(read_headers).unwrap_or_default();
        Self {
            tp: Tp {
                topic: Arc::clone(topic),
                partition: m.partition(),
            },
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            key: m.key().map(Bytes::copy_from_slice),
            value: m.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
            headers,
            unreadable_headers,
        }
    }

    /// Approximate memory held by this record, for buffer budgets.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 16)
            .sum();
        self.value.len() + self.key.as_ref().map_or(0, Bytes::len) + headers + 96
    }

    /// `<topic>/<partition>/<offset>`: the record's coordinates and its idempotency key.
    pub fn coordinates(&self) -> String {
        format!("{}/{}/{}", self.tp.topic, self.tp.partition, self.offset)
    }
}
