//! What a skipped record was: read once, without the group, for the operation's status and
//! Event. Best effort: a record gone to retention is described by its coordinates only.

use std::time::{Duration, Instant};

use kcp_crds::v1alpha1::SkippedRecord;
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};

use super::PartitionNow;

/// What the skipped record was, read without the group; best effort (a record gone to
/// retention is described by its coordinates only).
pub(super) fn describe(
    base: &ClientConfig,
    group: &str,
    p: &PartitionNow,
    offset: i64,
    reason: Option<String>,
    timeout: Duration,
) -> SkippedRecord {
    let mut record = SkippedRecord {
        topic: p.topic.clone(),
        partition: p.partition,
        offset,
        timestamp: None,
        key: None,
        value_bytes: None,
        reason,
    };
    // librdkafka assigns only with a group id; this one never joins and never commits.
    let mut config = base.clone();
    config
        .set("group.id", format!("{group}.kcp-operation"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    let Ok(reader) = config.create::<BaseConsumer>() else {
        return record;
    };
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(&p.topic, p.partition, Offset::Offset(offset))
        .is_err()
        || reader.assign(&tpl).is_err()
    {
        return record;
    }
    let start = Instant::now();
    while start.elapsed() < timeout {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.offset() == offset => {
                record.timestamp = m.timestamp().to_millis();
                record.key = m.key().map(key_text);
                record.value_bytes = m.payload().map(|v| v.len() as i64);
                break;
            }
            Some(Ok(m)) if m.offset() > offset => break,
            _ => {}
        }
    }
    record
}

/// A key as text: UTF-8 as is, otherwise base64; at most 256 characters.
fn key_text(key: &[u8]) -> String {
    use base64::Engine;
    let text = match std::str::from_utf8(key) {
        Ok(s) => s.to_owned(),
        Err(_) => format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        ),
    };
    text.chars().take(256).collect()
}
