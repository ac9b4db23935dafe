//! Dead letters as the plugin sees them: which topics hold a proxy's dead letters, what one
//! dead-letter record says (the sidecar's `kcp-dlq-*` headers), and which are the newest.
//!
//! Pure. `kafka` reads the records; `render::dlq` prints them.

use std::{fmt, str::FromStr};

use kcp_crds::{KafkaConsumerProxySpec, config::default_dead_letter_topic, v1alpha1::OnExhausted};

/// A record's place: `TOPIC/PARTITION/OFFSET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinates {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl FromStr for Coordinates {
    type Err = String;

    /// Topic names cannot contain `/`, so the last two parts are the numbers.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?}: write TOPIC/PARTITION/OFFSET, e.g. orders-dlq/0/42");
        let mut parts = s.rsplitn(3, '/');
        let offset = parts.next().and_then(|o| o.parse().ok()).ok_or_else(bad)?;
        let partition = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let topic = parts.next().filter(|t| !t.is_empty()).ok_or_else(bad)?;
        if partition < 0 || offset < 0 {
            return Err(bad());
        }
        Ok(Self {
            topic: topic.to_owned(),
            partition,
            offset,
        })
    }
}

impl fmt::Display for Coordinates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// The dead-letter topics of a proxy, and what to tell the user about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterTopics {
    /// `delivery.deadLetter.topic`, or `<topic>-dlq` for each source topic; no repeats.
    pub topics: Vec<String>,
    /// Set when only crash loops are dead-lettered (`onExhausted` is not `deadLetter`).
    pub note: Option<String>,
}

/// Where `spec`'s dead letters go; `Err` with the explanation when it dead-letters nothing.
///
/// A record is dead-lettered when `delivery.onExhausted` is `deadLetter`, and also, whatever
/// `onExhausted` says, when it was in flight during `delivery.maxCrashes` crashes (unless
/// `maxCrashes` is 0). So dead-lettering is off only when both are off.
pub fn dead_letter_topics(
    name: &str,
    spec: &KafkaConsumerProxySpec,
) -> Result<DeadLetterTopics, String> {
    let d = &spec.delivery;
    let on_exhausted = match d.on_exhausted {
        OnExhausted::DeadLetter => None,
        OnExhausted::Skip => Some("skip"),
        OnExhausted::Block => Some("block"),
    };
    if let Some(mode) = on_exhausted
        && d.max_crashes == 0
    {
        return Err(format!(
            "{name} dead-letters nothing: delivery.onExhausted is {mode} and delivery.maxCrashes is 0"
        ));
    }
    let fixed = d.dead_letter.as_ref().and_then(|dl| dl.topic.clone());
    let mut topics: Vec<String> = Vec::new();
    for t in &spec.kafka.topics {
        let dlq = fixed
            .clone()
            .unwrap_or_else(|| default_dead_letter_topic(t));
        if !topics.contains(&dlq) {
            topics.push(dlq);
        }
    }
    Ok(DeadLetterTopics {
        topics,
        note: on_exhausted.map(|mode| {
            format!(
                "delivery.onExhausted is {mode}: only records in flight during {} crashes of the sidecar are dead-lettered",
                d.max_crashes
            )
        }),
    })
}

/// One record read from a dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its own coordinates, in the dead-letter topic.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp, ms since the epoch.
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Every header in order: the original record's, then the sidecar's `kcp-dlq-*`.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DeadLetter {
    /// The last header named `name`, as text (invalid UTF-8 replaced).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn coordinates(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }

    /// Where it came from: `topic/partition/offset` of the original record.
    pub fn original(&self) -> Option<String> {
        let topic = self.header("kcp-dlq-original-topic")?;
        let partition = self.header("kcp-dlq-original-partition")?;
        let offset = self.header("kcp-dlq-original-offset")?;
        Some(format!("{topic}/{partition}/{offset}"))
    }

    pub fn attempts(&self) -> Option<String> {
        self.header("kcp-dlq-attempts")
    }

    pub fn reason(&self) -> Option<String> {
        self.header("kcp-dlq-reason")
    }

    /// When it was dead-lettered, ms since the epoch: its last failure (`kcp-dlq-last-failure`),
    /// else the record's timestamp.
    pub fn time_ms(&self) -> Option<i64> {
        self.header("kcp-dlq-last-failure")
            .and_then(|ms| ms.trim().parse().ok())
            .or(self.timestamp)
    }
}

/// The consumer group whose dead letters a proxy shows: `spec.kafka.groupId`, else
/// `<namespace>.<name>` (the operator's default).
pub fn group_of(p: &kcp_crds::KafkaConsumerProxy) -> String {
    p.spec.kafka.group_id.clone().unwrap_or_else(|| {
        format!(
            "{}.{}",
            p.metadata.namespace.as_deref().unwrap_or_default(),
            p.metadata.name.as_deref().unwrap_or_default()
        )
    })
}

/// The records `group` dead-lettered (by their `kcp-dlq-group`; a record without one is
/// kept), and how many other groups' were left out: a dead-letter topic can be shared by every
/// proxy of a topic (`<topic>-dlq`).
pub fn of_group(records: Vec<DeadLetter>, group: &str) -> (Vec<DeadLetter>, usize) {
    let before = records.len();
    let kept: Vec<DeadLetter> = records
        .into_iter()
        .filter(|r| r.header("kcp-dlq-group").is_none_or(|g| g == group))
        .collect();
    let others = before - kept.len();
    (kept, others)
}

/// The offset to start reading a partition at to get its last `limit` records.
pub fn start_offset(low: i64, high: i64, limit: u16) -> i64 {
    high.saturating_sub(i64::from(limit)).max(low)
}

/// The `limit` newest of `records`, newest first (by [`DeadLetter::time_ms`], records without a
/// time last; on a tie the higher offset first).
pub fn newest(mut records: Vec<DeadLetter>, limit: usize) -> Vec<DeadLetter> {
    records.sort_by(|a, b| {
        b.time_ms()
            .cmp(&a.time_ms())
            .then_with(|| (&b.topic, b.partition, b.offset).cmp(&(&a.topic, a.partition, a.offset)))
    });
    records.truncate(limit);
    records
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_the_proxys_group_is_listed() {
        let dead = |offset, group: Option<&str>| DeadLetter {
            topic: "orders-dlq".into(),
            partition: 0,
            offset,
            timestamp: None,
            key: None,
            value: None,
            headers: group
                .map(|g| vec![("kcp-dlq-group".to_owned(), Some(g.as_bytes().to_vec()))])
                .unwrap_or_default(),
        };
        let (kept, others) = of_group(
            vec![
                dead(1, Some("shop.orders")),
                dead(2, Some("shop.audit")),
                dead(3, None),
            ],
            "shop.orders",
        );
        assert_eq!(
            kept.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(others, 1);
    }

    #[test]
    fn coordinates() {
        assert_eq!(
            "orders-dlq/2/17".parse::<Coordinates>(),
            Ok(Coordinates {
                topic: "orders-dlq".into(),
                partition: 2,
                offset: 17
            })
        );
        for bad in [
            "orders-dlq/2",
            "/2/17",
            "orders/x/1",
            "orders/1/-1",
            "orders",
        ] {
            assert!(bad.parse::<Coordinates>().is_err(), "{bad}");
        }
    }

    fn spec(delivery: serde_json::Value) -> KafkaConsumerProxySpec {
        serde_json::from_value(serde_json::json!({
            "kafka": { "bootstrapServers": "k:9092", "topics": ["orders", "payments"] },
            "endpoint": { "url": "http://app/" },
            "delivery": delivery,
        }))
        .unwrap()
    }

    #[test]
    fn dead_letter_topics_follow_the_spec() {
        let t = dead_letter_topics("p", &spec(serde_json::json!({}))).unwrap();
        assert_eq!(t.topics, ["orders-dlq", "payments-dlq"]);
        assert_eq!(t.note, None);

        let fixed = serde_json::json!({ "deadLetter": { "topic": "failed" } });
        assert_eq!(
            dead_letter_topics("p", &spec(fixed)).unwrap().topics,
            ["failed"]
        );

        let skip = serde_json::json!({ "onExhausted": "skip" });
        let t = dead_letter_topics("p", &spec(skip)).unwrap();
        assert_eq!(
            t.topics,
            ["orders-dlq", "payments-dlq"],
            "crash loops still go there"
        );
        assert!(t.note.unwrap_or_default().contains("3 crashes"));

        let off = serde_json::json!({ "onExhausted": "block", "maxCrashes": 0 });
        assert_eq!(
            dead_letter_topics("p", &spec(off)),
            Err("p dead-letters nothing: delivery.onExhausted is block and delivery.maxCrashes is 0".into())
        );
    }

    #[test]
    fn start_offsets() {
        assert_eq!(start_offset(0, 100, 20), 80);
        assert_eq!(start_offset(90, 100, 20), 90, "retention deleted the rest");
        assert_eq!(start_offset(0, 5, 20), 0);
    }
}
