//! The owned Kafka record that travels through the pipeline, and partition coordinates.
//!
//! Pure data. A [`Record`] is copied out of librdkafka's memory once, on the poll thread, so the
//! consumer never waits on HTTP; key, value and header bytes are kept exactly as consumed.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use rdkafka::message::{Headers, Message};

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
}

impl Record {
    /// Copies a consumed message out of librdkafka's memory.
    pub fn from_message<M: Message>(m: &M, topic: &Arc<str>) -> Self {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(Bytes::copy_from_slice)))
                    .collect()
            })
            .unwrap_or_default();
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
