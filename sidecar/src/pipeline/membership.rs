//! Whether this replica stays in the consumer group while its app does not answer.
//!
//! While the app is not ready (the readiness gate is closed, `gate.rs`), the poll loop pauses
//! fetching and keeps its partitions: right for a restart of a few seconds, wrong for an app
//! that never comes up, whose partitions would never move to healthy replicas. So once the app
//! has been unready for `endpoint.unreadyTimeout`, the replica leaves the group (unsubscribe:
//! its partitions are revoked, drained and committed, and the group gives them to the other
//! members), and it joins again as soon as the app answers.
//!
//! [`should_be_member`] is the pure decision; [`Membership::apply`], on the poll thread, the
//! only code that unsubscribes and subscribes again. With static membership
//! (`group.instance.id`), librdkafka does not send LeaveGroup, so the partitions move only
//! when `session.timeout.ms` expires.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::{info, warn};

use crate::{consumer::ConsumerCtx, stats::Stats};

/// Whether the replica should be in the group: while the app answers, or has been unready for
/// less than `unready_timeout` (`closed_for` is how long the readiness gate has been closed).
pub fn should_be_member(closed_for: Option<Duration>, unready_timeout: Duration) -> bool {
    closed_for.is_none_or(|d| d < unready_timeout)
}

/// The replica's membership, as the poll loop last set it.
#[derive(Debug)]
pub struct Membership {
    subscribed: bool,
    topics: Vec<String>,
    unready_timeout: Duration,
}

impl Membership {
    /// The loop starts subscribed to `topics`.
    pub fn subscribed(topics: &[String], unready_timeout: Duration) -> Self {
        Self {
            subscribed: true,
            topics: topics.to_vec(),
            unready_timeout,
        }
    }

    /// Leaves or joins the group as [`should_be_member`] says. A failure is retried on the
    /// next round.
    pub fn apply(&mut self, consumer: &BaseConsumer<ConsumerCtx>, stats: &Stats) {
        let want = should_be_member(stats.gate.closed_for(), self.unready_timeout);
        if want == self.subscribed {
            return;
        }
        if want {
            let names: Vec<&str> = self.topics.iter().map(String::as_str).collect();
            match consumer.subscribe(&names) {
                Ok(()) => {
                    info!(topics = ?self.topics, "App answers again; rejoining the consumer group");
                    self.subscribed = true;
                    stats.set_left_for_app(false);
                }
                Err(e) => warn!(error = %e, "Rejoining the consumer group failed; will try again"),
            }
        } else {
            consumer.unsubscribe();
            warn!(
                unready_timeout_ms = self.unready_timeout.as_millis() as u64,
                "App not ready for endpoint.unreadyTimeout; leaving the consumer group so that other replicas take its partitions (rejoins when the app answers)"
            );
            self.subscribed = false;
            stats.set_left_for_app(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_outage_keeps_the_partitions_a_long_one_gives_them_up() {
        let timeout = Duration::from_secs(120);
        assert!(should_be_member(None, timeout), "the app answers");
        assert!(
            should_be_member(Some(Duration::from_secs(5)), timeout),
            "a restart"
        );
        assert!(!should_be_member(Some(Duration::from_secs(120)), timeout));
        assert!(!should_be_member(Some(Duration::from_secs(3600)), timeout));
    }
}
