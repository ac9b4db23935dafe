//! Which dead letters a redrive sends back, and the record it sends: [`decide`].
//!
//! Pure. No client, no clock: `redrive::step` reads a dead letter, asks [`decide`], and
//! produces what it answers.
//!
//! A dead letter is the original record (key, value, headers in order) with the sidecar's
//! `kcp-dlq-*` headers appended (`sidecar/src/deadletter.rs`). When a header appears more than
//! once, the last one counts: the sidecar appends, so a record that already carried `kcp-dlq-*`
//! headers (a dead letter produced back by hand) is described by its newest ones.

use std::fmt;

use kcp_crds::v1alpha1::RedriveSpec;

/// How many times a record was redriven: set on every redriven record, kept by the sidecar when
/// the record is dead-lettered again (it copies the original headers), read by the loop guard.
pub const REDRIVE_COUNT_HEADER: &str = "kcp-redrive-count";
/// Where a redriven record was read: `<dead-letter topic>/<partition>/<offset>`.
pub const REDRIVEN_FROM_HEADER: &str = "kcp-redriven-from";
/// The prefix of the headers the sidecar adds to a dead letter; none is redriven.
pub const DEAD_LETTER_HEADER_PREFIX: &str = "kcp-dlq-";

const ORIGINAL_TOPIC: &str = "kcp-dlq-original-topic";
const ORIGINAL_PARTITION: &str = "kcp-dlq-original-partition";
const LAST_FAILURE: &str = "kcp-dlq-last-failure";
const GROUP: &str = "kcp-dlq-group";
const REASON: &str = "kcp-dlq-reason";

/// A Kafka header: its name and its value (`None`: a null value).
pub type Header = (String, Option<Vec<u8>>);

/// Whose dead letters a redrive takes: the proxy's consumer group and source topics. A dead
/// letter of another group (a dead-letter topic shared by several proxies) or of another topic
/// is left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub group: String,
    pub source_topics: Vec<String>,
}

/// One dead-letter record, as read from its topic.
#[derive(Clone, Copy, Debug)]
pub struct DeadLetter<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The record's own timestamp (when it was dead-lettered), ms since the epoch.
    pub timestamp_ms: Option<i64>,
    /// Its headers in order, those whose name could be read.
    pub headers: &'a [Header],
    /// Headers left out of `headers` because their name is not UTF-8.
    pub unreadable_headers: usize,
}

/// What to do with one dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Produce it to `topic`/`partition` with these headers (its key and value unchanged).
    Redrive {
        topic: String,
        partition: i32,
        headers: Vec<Header>,
    },
    /// Not selected (counted in `filtered`).
    Filtered(Filtered),
    /// Selected, but redriven too often already (counted in `loopGuarded`).
    LoopGuarded(LoopGuard),
}

/// Why a dead letter is not selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filtered {
    /// It lacks a readable `kcp-dlq-original-topic` or `-partition` header.
    NoOrigin { header: &'static str },
    /// Its original topic is not one of the proxy's.
    ForeignTopic { topic: String },
    /// Another consumer group dead-lettered it (`None`: no `kcp-dlq-group` header).
    ForeignGroup { group: Option<String> },
    /// `since` or `until` is set and the dead letter says nothing of when it failed.
    NoTime,
    /// It failed before `since`.
    BeforeSince { at_ms: i64 },
    /// It failed at or after `until`.
    NotBeforeUntil { at_ms: i64 },
    /// Its reason does not contain `reasonContains` (`None`: no readable reason).
    ReasonMismatch { reason: Option<String> },
    /// Some header names are not UTF-8: the redriven record would lack them.
    UnreadableHeaders { count: usize },
    /// Its original partition does not exist (any more). Decided by the Kafka shell, which
    /// knows the source topics' partitions.
    NoSuchPartition { topic: String, partition: i32 },
}

/// Why the loop guard stopped a dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoopGuard {
    /// `kcp-redrive-count` reached `maxRedrives`.
    Reached { count: i64, max: i32 },
    /// `kcp-redrive-count` is not a count: taken as `maxRedrives` reached.
    Unreadable { value: String },
}

impl fmt::Display for Filtered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoOrigin { header } => write!(
                f,
                "no readable {header} header: not a dead letter of a kafka-consumer-proxy sidecar"
            ),
            Self::ForeignTopic { topic } => {
                write!(
                    f,
                    "dead-lettered from {topic}, not one of the proxy's topics"
                )
            }
            Self::ForeignGroup { group: Some(g) } => {
                write!(f, "dead-lettered by group {g}, not the proxy's")
            }
            Self::ForeignGroup { group: None } => {
                write!(f, "no readable {GROUP} header: not known to be the proxy's")
            }
            Self::NoTime => write!(
                f,
                "since/until is set and the dead letter has no {LAST_FAILURE} header and no timestamp"
            ),
            Self::BeforeSince { at_ms } => write!(f, "failed at {at_ms} ms, before since"),
            Self::NotBeforeUntil { at_ms } => write!(f, "failed at {at_ms} ms, not before until"),
            Self::ReasonMismatch { reason: Some(r) } => {
                write!(f, "reason {r:?} does not contain reasonContains")
            }
            Self::ReasonMismatch { reason: None } => {
                write!(f, "no readable {REASON} header to match reasonContains")
            }
            Self::UnreadableHeaders { count } => write!(
                f,
                "{count} header name(s) are not UTF-8: the redriven record would lack them"
            ),
            Self::NoSuchPartition { topic, partition } => {
                write!(f, "{topic} has no partition {partition}")
            }
        }
    }
}

impl fmt::Display for LoopGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reached { count, max } => {
                write!(f, "already redriven {count} times (maxRedrives {max})")
            }
            Self::Unreadable { value } => write!(
                f,
                "{REDRIVE_COUNT_HEADER} {value:?} is not a count: taken as maxRedrives reached"
            ),
        }
    }
}

/// Whether `dead_letter` is redriven under `spec` for `owner`, and the record's headers if so.
///
/// In this order: its origin (`kcp-dlq-original-topic`/`-partition`), one of the owner's
/// topics, dead-lettered by the owner's group, `since` (inclusive) and `until` (exclusive) on
/// `kcp-dlq-last-failure` (else the dead letter's own timestamp), `reasonContains` (a
/// case-sensitive substring of `kcp-dlq-reason`), readable header names; then the loop guard,
/// so `loopGuarded` counts only records the spec selected.
pub fn decide(dead_letter: &DeadLetter<'_>, spec: &RedriveSpec, owner: &Owner) -> Decision {
    match select(dead_letter, spec, owner) {
        Err(why) => Decision::Filtered(why),
        Ok((topic, partition)) => match redrive_count(dead_letter.headers, spec.max_redrives) {
            Err(guard) => Decision::LoopGuarded(guard),
            Ok(count) => Decision::Redrive {
                topic,
                partition,
                headers: redriven_headers(dead_letter, count),
            },
        },
    }
}

/// The original topic and partition of a dead letter the spec selects.
fn select(
    dead_letter: &DeadLetter<'_>,
    spec: &RedriveSpec,
    owner: &Owner,
) -> Result<(String, i32), Filtered> {
    let headers = dead_letter.headers;
    let topic = text(headers, ORIGINAL_TOPIC)
        .filter(|t| !t.is_empty())
        .ok_or(Filtered::NoOrigin {
            header: ORIGINAL_TOPIC,
        })?;
    let partition = text(headers, ORIGINAL_PARTITION)
        .and_then(|p| p.parse::<i32>().ok())
        .filter(|p| *p >= 0)
        .ok_or(Filtered::NoOrigin {
            header: ORIGINAL_PARTITION,
        })?;
    if !owner.source_topics.iter().any(|t| t == topic) {
        return Err(Filtered::ForeignTopic {
            topic: topic.to_owned(),
        });
    }
    let group = text(headers, GROUP);
    if group != Some(owner.group.as_str()) {
        return Err(Filtered::ForeignGroup {
            group: group.map(str::to_owned),
        });
    }
    if spec.since.is_some() || spec.until.is_some() {
        let at_ms = text(headers, LAST_FAILURE)
            .and_then(|t| t.parse::<i64>().ok())
            .or(dead_letter.timestamp_ms)
            .ok_or(Filtered::NoTime)?;
        if spec
            .since
            .as_ref()
            .is_some_and(|s| at_ms < s.0.as_millisecond())
        {
            return Err(Filtered::BeforeSince { at_ms });
        }
        if spec
            .until
            .as_ref()
            .is_some_and(|u| at_ms >= u.0.as_millisecond())
        {
            return Err(Filtered::NotBeforeUntil { at_ms });
        }
    }
    if let Some(wanted) = &spec.reason_contains {
        let reason = text(headers, REASON);
        if !reason.is_some_and(|r| r.contains(wanted.as_str())) {
            return Err(Filtered::ReasonMismatch {
                reason: reason.map(str::to_owned),
            });
        }
    }
    if dead_letter.unreadable_headers > 0 {
        return Err(Filtered::UnreadableHeaders {
            count: dead_letter.unreadable_headers,
        });
    }
    Ok((topic.to_owned(), partition))
}

/// How many times the record was redriven already (0 without the header; the highest of
/// several), or why the loop guard stops it.
fn redrive_count(headers: &[Header], max_redrives: i32) -> Result<i64, LoopGuard> {
    let mut count = 0;
    for (_, value) in headers.iter().filter(|(n, _)| n == REDRIVE_COUNT_HEADER) {
        let raw = value.as_deref().unwrap_or_default();
        let n = std::str::from_utf8(raw)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| LoopGuard::Unreadable {
                value: String::from_utf8_lossy(raw).into_owned(),
            })?;
        count = count.max(n);
    }
    if count >= i64::from(max_redrives) {
        return Err(LoopGuard::Reached {
            count,
            max: max_redrives,
        });
    }
    Ok(count)
}

/// The original headers in order, without the sidecar's and earlier redrives' ones, then the
/// new count and where the record was read.
fn redriven_headers(dead_letter: &DeadLetter<'_>, count: i64) -> Vec<Header> {
    let mut out: Vec<Header> = dead_letter
        .headers
        .iter()
        .filter(|(n, _)| {
            !n.starts_with(DEAD_LETTER_HEADER_PREFIX)
                && n != REDRIVE_COUNT_HEADER
                && n != REDRIVEN_FROM_HEADER
        })
        .cloned()
        .collect();
    out.push((
        REDRIVE_COUNT_HEADER.to_owned(),
        Some(count.saturating_add(1).to_string().into_bytes()),
    ));
    let from = format!(
        "{}/{}/{}",
        dead_letter.topic, dead_letter.partition, dead_letter.offset
    );
    out.push((REDRIVEN_FROM_HEADER.to_owned(), Some(from.into_bytes())));
    out
}

/// The value of the last header named `name`, when it is UTF-8 text.
fn text<'h>(headers: &'h [Header], name: &str) -> Option<&'h str> {
    let (_, value) = headers.iter().rev().find(|(n, _)| n == name)?;
    std::str::from_utf8(value.as_deref()?).ok()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

    use super::*;

    fn h(name: &str, value: &str) -> Header {
        (name.to_owned(), Some(value.as_bytes().to_vec()))
    }

    /// What the sidecar dead-letters for `orders/2/17`: the original headers, then its own.
    fn dead_letter_headers(original: &[Header], reason: &str) -> Vec<Header> {
        let mut headers = original.to_vec();
        headers.extend([
            h("kcp-dlq-original-topic", "orders"),
            h("kcp-dlq-original-partition", "2"),
            h("kcp-dlq-original-offset", "17"),
            h("kcp-dlq-original-timestamp", "1000"),
            h("kcp-dlq-attempts", "5"),
            h("kcp-dlq-last-status", "503"),
            h("kcp-dlq-first-failure", "4000"),
            h("kcp-dlq-last-failure", "5000"),
            h("kcp-dlq-group", "shop.orders"),
            h("kcp-dlq-reason", reason),
        ]);
        headers
    }

    fn owner() -> Owner {
        Owner {
            group: "shop.orders".into(),
            source_topics: vec!["orders".into(), "payments".into()],
        }
    }

    fn letter(headers: &[Header]) -> DeadLetter<'_> {
        DeadLetter {
            topic: "orders-dlq",
            partition: 1,
            offset: 42,
            timestamp_ms: Some(9000),
            headers,
            unreadable_headers: 0,
        }
    }

    fn decide_with(headers: &[Header], spec: &RedriveSpec) -> Decision {
        decide(&letter(headers), spec, &owner())
    }

    fn at(ms: i64) -> Option<Time> {
        Some(Time(
            Timestamp::from_millisecond(ms).expect("invariant: test times are in range"),
        ))
    }

    /// The value of the last header named `name`, as text.
    fn value(headers: &[Header], name: &str) -> Option<String> {
        headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
            .map(|v| String::from_utf8(v).expect("invariant: test headers are text"))
    }

    #[test]
    fn redrives_to_the_original_partition_with_the_original_headers_in_order_then_its_own() {
        let original = vec![h("trace", "t-1"), ("empty".to_owned(), None), h("a", "2")];
        let headers = dead_letter_headers(&original, "status 503");
        let Decision::Redrive {
            topic,
            partition,
            headers: out,
        } = decide_with(&headers, &RedriveSpec::default())
        else {
            panic!("redriven")
        };
        assert_eq!((topic.as_str(), partition), ("orders", 2));
        assert_eq!(
            out,
            vec![
                h("trace", "t-1"),
                ("empty".to_owned(), None),
                h("a", "2"),
                h(REDRIVE_COUNT_HEADER, "1"),
                h(REDRIVEN_FROM_HEADER, "orders-dlq/1/42"),
            ],
            "no kcp-dlq-* header, a null value stays null"
        );
    }

    #[test]
    fn a_dead_letter_without_its_origin_is_filtered() {
        let headers = dead_letter_headers(&[], "status 503");
        let without = |name: &str| -> Vec<Header> {
            headers.iter().filter(|(n, _)| n != name).cloned().collect()
        };
        assert_eq!(
            decide_with(&without(ORIGINAL_TOPIC), &RedriveSpec::default()),
            Decision::Filtered(Filtered::NoOrigin {
                header: ORIGINAL_TOPIC
            })
        );
        assert_eq!(
            decide_with(&without(ORIGINAL_PARTITION), &RedriveSpec::default()),
            Decision::Filtered(Filtered::NoOrigin {
                header: ORIGINAL_PARTITION
            })
        );
        for bad in ["two", "-1", ""] {
            let mut unreadable = without(ORIGINAL_PARTITION);
            unreadable.push(h(ORIGINAL_PARTITION, bad));
            assert_eq!(
                decide_with(&unreadable, &RedriveSpec::default()),
                Decision::Filtered(Filtered::NoOrigin {
                    header: ORIGINAL_PARTITION
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_dead_letter_of_another_topic_or_group_is_filtered() {
        let mut foreign_topic = dead_letter_headers(&[], "status 503");
        foreign_topic.push(h(ORIGINAL_TOPIC, "invoices"));
        assert_eq!(
            decide_with(&foreign_topic, &RedriveSpec::default()),
            Decision::Filtered(Filtered::ForeignTopic {
                topic: "invoices".into()
            }),
            "the last kcp-dlq-original-topic counts"
        );

        let mut foreign_group = dead_letter_headers(&[], "status 503");
        foreign_group.push(h(GROUP, "billing"));
        assert_eq!(
            decide_with(&foreign_group, &RedriveSpec::default()),
            Decision::Filtered(Filtered::ForeignGroup {
                group: Some("billing".into())
            })
        );

        let no_group: Vec<Header> = dead_letter_headers(&[], "status 503")
            .into_iter()
            .filter(|(n, _)| n != GROUP)
            .collect();
        assert_eq!(
            decide_with(&no_group, &RedriveSpec::default()),
            Decision::Filtered(Filtered::ForeignGroup { group: None })
        );
    }

    #[test]
    fn since_is_inclusive_and_until_exclusive_on_the_last_failure() {
        // kcp-dlq-last-failure is 5000; the dead letter's own timestamp (9000) is not used.
        let headers = dead_letter_headers(&[], "status 503");
        let window = |since: Option<i64>, until: Option<i64>| RedriveSpec {
            since: since.and_then(at),
            until: until.and_then(at),
            ..RedriveSpec::default()
        };
        let redriven = |d: Decision| matches!(d, Decision::Redrive { .. });
        assert!(redriven(decide_with(&headers, &window(Some(5000), None))));
        assert_eq!(
            decide_with(&headers, &window(Some(5001), None)),
            Decision::Filtered(Filtered::BeforeSince { at_ms: 5000 })
        );
        assert!(redriven(decide_with(&headers, &window(None, Some(5001)))));
        assert_eq!(
            decide_with(&headers, &window(None, Some(5000))),
            Decision::Filtered(Filtered::NotBeforeUntil { at_ms: 5000 })
        );
        assert!(redriven(decide_with(
            &headers,
            &window(Some(5000), Some(5001))
        )));
        assert!(
            !redriven(decide_with(&headers, &window(Some(8000), Some(9001)))),
            "not the record's own timestamp while the header is there"
        );
    }

    #[test]
    fn without_a_last_failure_the_dead_letter_timestamp_counts_and_without_either_time_filters() {
        let headers: Vec<Header> = dead_letter_headers(&[], "status 503")
            .into_iter()
            .filter(|(n, _)| n != LAST_FAILURE)
            .collect();
        let since = |ms| RedriveSpec {
            since: at(ms),
            ..RedriveSpec::default()
        };
        assert!(matches!(
            decide_with(&headers, &since(9000)),
            Decision::Redrive { .. }
        ));
        assert_eq!(
            decide_with(&headers, &since(9001)),
            Decision::Filtered(Filtered::BeforeSince { at_ms: 9000 })
        );
        let mut unparsable = headers.clone();
        unparsable.push(h(LAST_FAILURE, "yesterday"));
        assert_eq!(
            decide_with(&unparsable, &since(9001)),
            Decision::Filtered(Filtered::BeforeSince { at_ms: 9000 }),
            "an unreadable last failure falls back too"
        );

        let timeless = DeadLetter {
            timestamp_ms: None,
            ..letter(&headers)
        };
        assert_eq!(
            decide(&timeless, &since(0), &owner()),
            Decision::Filtered(Filtered::NoTime)
        );
        assert!(
            matches!(
                decide(&timeless, &RedriveSpec::default(), &owner()),
                Decision::Redrive { .. }
            ),
            "no time is needed without since/until"
        );
    }

    #[test]
    fn reason_contains_is_a_case_sensitive_substring_and_needs_a_reason() {
        let spec = RedriveSpec {
            reason_contains: Some("status 503".into()),
            ..RedriveSpec::default()
        };
        let with_reason = |r: &str| dead_letter_headers(&[], r);
        assert!(matches!(
            decide_with(&with_reason("retries exhausted: status 503"), &spec),
            Decision::Redrive { .. }
        ));
        assert_eq!(
            decide_with(&with_reason("status 422"), &spec),
            Decision::Filtered(Filtered::ReasonMismatch {
                reason: Some("status 422".into())
            })
        );
        assert_eq!(
            decide_with(&with_reason("STATUS 503"), &spec),
            Decision::Filtered(Filtered::ReasonMismatch {
                reason: Some("STATUS 503".into())
            }),
            "case-sensitive"
        );
        let no_reason: Vec<Header> = with_reason("x")
            .into_iter()
            .filter(|(n, _)| n != REASON)
            .collect();
        assert_eq!(
            decide_with(&no_reason, &spec),
            Decision::Filtered(Filtered::ReasonMismatch { reason: None })
        );
    }

    #[test]
    fn the_loop_guard_stops_a_record_redriven_max_redrives_times() {
        let spec = RedriveSpec {
            max_redrives: 3,
            ..RedriveSpec::default()
        };
        let redriven = |n: &str| dead_letter_headers(&[h(REDRIVE_COUNT_HEADER, n)], "status 503");
        assert_eq!(
            decide_with(&redriven("3"), &spec),
            Decision::LoopGuarded(LoopGuard::Reached { count: 3, max: 3 })
        );
        assert_eq!(
            decide_with(&redriven("7"), &spec),
            Decision::LoopGuarded(LoopGuard::Reached { count: 7, max: 3 })
        );
        let Decision::Redrive { headers, .. } = decide_with(&redriven("2"), &spec) else {
            panic!("2 < 3: redriven");
        };
        assert_eq!(value(&headers, REDRIVE_COUNT_HEADER).as_deref(), Some("3"));
        assert_eq!(
            headers
                .iter()
                .filter(|(n, _)| n == REDRIVE_COUNT_HEADER)
                .count(),
            1,
            "the old count is replaced, not repeated"
        );
    }

    #[test]
    fn an_unreadable_redrive_count_is_guarded_and_says_so() {
        for bad in ["three", "-1", ""] {
            let headers = dead_letter_headers(&[h(REDRIVE_COUNT_HEADER, bad)], "status 503");
            let d = decide_with(&headers, &RedriveSpec::default());
            assert_eq!(
                d,
                Decision::LoopGuarded(LoopGuard::Unreadable {
                    value: bad.to_owned()
                })
            );
            let Decision::LoopGuarded(g) = d else {
                unreachable!()
            };
            assert!(g.to_string().contains("is not a count"), "{g}");
        }
        let null = dead_letter_headers(&[(REDRIVE_COUNT_HEADER.to_owned(), None)], "status 503");
        assert!(matches!(
            decide_with(&null, &RedriveSpec::default()),
            Decision::LoopGuarded(LoopGuard::Unreadable { .. })
        ));
        // Two counts (someone else's tooling): the highest counts.
        let two = dead_letter_headers(
            &[h(REDRIVE_COUNT_HEADER, "5"), h(REDRIVE_COUNT_HEADER, "1")],
            "status 503",
        );
        assert_eq!(
            decide_with(&two, &RedriveSpec::default()),
            Decision::LoopGuarded(LoopGuard::Reached { count: 5, max: 3 })
        );
    }

    #[test]
    fn filters_come_before_the_loop_guard() {
        let spec = RedriveSpec {
            reason_contains: Some("503".into()),
            ..RedriveSpec::default()
        };
        let headers = dead_letter_headers(&[h(REDRIVE_COUNT_HEADER, "9")], "status 422");
        assert!(
            matches!(decide_with(&headers, &spec), Decision::Filtered(_)),
            "loopGuarded counts only records that were selected"
        );
    }

    #[test]
    fn a_second_redrive_replaces_the_redrive_headers_and_the_newest_dead_letter_headers_count() {
        // Redriven once, failed again: the sidecar copied the redriven record's headers (with
        // the old redrive headers), then appended new kcp-dlq-* ones, here from partition 0.
        let mut headers = vec![
            h("trace", "t-1"),
            h(REDRIVE_COUNT_HEADER, "1"),
            h(REDRIVEN_FROM_HEADER, "orders-dlq/0/3"),
        ];
        headers.extend(dead_letter_headers(&[], "status 503"));
        headers.push(h(ORIGINAL_PARTITION, "0"));
        let Decision::Redrive {
            partition,
            headers: out,
            ..
        } = decide_with(&headers, &RedriveSpec::default())
        else {
            panic!("redriven");
        };
        assert_eq!(partition, 0, "the last kcp-dlq-original-partition");
        assert_eq!(
            out,
            vec![
                h("trace", "t-1"),
                h(REDRIVE_COUNT_HEADER, "2"),
                h(REDRIVEN_FROM_HEADER, "orders-dlq/1/42"),
            ]
        );
    }

    #[test]
    fn a_dead_letter_with_unreadable_header_names_is_filtered() {
        let headers = dead_letter_headers(&[], "status 503");
        let unreadable = DeadLetter {
            unreadable_headers: 2,
            ..letter(&headers)
        };
        let d = decide(&unreadable, &RedriveSpec::default(), &owner());
        assert_eq!(
            d,
            Decision::Filtered(Filtered::UnreadableHeaders { count: 2 })
        );
    }

    #[test]
    fn reasons_read_as_sentences() {
        assert_eq!(
            Filtered::ForeignTopic {
                topic: "invoices".into()
            }
            .to_string(),
            "dead-lettered from invoices, not one of the proxy's topics"
        );
        assert_eq!(
            LoopGuard::Reached { count: 3, max: 3 }.to_string(),
            "already redriven 3 times (maxRedrives 3)"
        );
    }
}
