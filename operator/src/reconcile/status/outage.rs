//! The `EndpointOutage` condition: the sidecars see the app fail every record alike, and have
//! stopped counting attempts and dead-lettering until it answers (`sidecar/src/outage.rs`).
//!
//! Pure, part of [`super::compute`]. It reaches the operator in the sidecars' commit metadata
//! (`kcp_crds::progress`): no pod is scraped.
//!
//! | observation | status | reason |
//! |---|---|---|
//! | read, a partition's last commit reports an outage | True | `EndpointFailsEveryRecord`, the message says how, since when and on which partitions |
//! | read, none does | False | `EndpointAnswers` |
//! | the last read failed | Unknown | `KafkaUnreachable` |
//! | no read ended yet | the previous condition, or none | |
//!
//! It does not affect `Ready`. With no pod running the last commit still speaks: the message
//! says it is what the last commits reported.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};

use super::{ENDPOINT_OUTAGE, Input, Reason, from_read};
use crate::lag::OutageSeen;

/// The `EndpointOutage` condition, or `None` before anything is known.
pub(super) fn condition(input: &Input<'_>) -> Option<Condition> {
    from_read(input, ENDPOINT_OUTAGE, |snapshot| match &snapshot.outage {
        Some(o) => ("True", Reason::EndpointFailsEveryRecord, message(o)),
        None => (
            "False",
            Reason::EndpointAnswers,
            "no sidecar reports an endpoint outage".to_owned(),
        ),
    })
}

fn message(o: &OutageSeen) -> String {
    let since = i64::try_from(o.since_ms / 1000)
        .ok()
        .and_then(|secs| Timestamp::from_second(secs).ok())
        .map_or_else(|| "?".to_owned(), |t| t.to_string());
    let shown = o.partitions.len().min(3);
    let more = match o.partitions.len() - shown {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    format!(
        "the app answers every record alike ({}) since {since}, as the last commits of {}{more} \
         report: the sidecars count no attempt, dead-letter nothing and take no record until a \
         probe gets an answer",
        o.class,
        o.partitions[..shown].join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_says_how_since_when_and_where() {
        let o = OutageSeen {
            class: "5xx",
            since_ms: 1_764_410_530_123,
            partitions: (0..5).map(|p| format!("orders/{p}")).collect(),
        };
        assert_eq!(
            message(&o),
            "the app answers every record alike (5xx) since 2025-11-29T10:02:10Z, as the last \
             commits of orders/0, orders/1, orders/2 and 2 more report: the sidecars count no \
             attempt, dead-letter nothing and take no record until a probe gets an answer"
        );
    }
}
