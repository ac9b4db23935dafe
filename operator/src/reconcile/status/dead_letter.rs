//! The `DeadLetterTopicsReady` condition: whether the dead-letter topics are there to be written.
//!
//! Pure, part of [`super::compute`]. It comes from the lag read's [`DeadLetterCheck`], taken
//! from the topic metadata the dead-letter counts are read with (no request of its own):
//!
//! | observation | status | reason |
//! |---|---|---|
//! | read, nothing found | True | `DeadLetterTopicsExist` |
//! | read, a topic the user may not describe | False | `DeadLetterTopicNotAuthorized` (also names missing ones) |
//! | read, a topic missing | False | `DeadLetterTopicMissing` |
//! | the last read failed | Unknown | `KafkaUnreachable` |
//! | no read ended yet, or none asked for (a user error stopped the reconcile) | the previous condition, or none | |
//!
//! Unknown on a failed read, rather than the last answer: a topic may have been deleted since,
//! and the lag figures are marked stale for the same reason. It costs no extra status write,
//! as `KafkaReachable` changes at the same time.
//!
//! Write access is not checked: rdkafka 0.39 does not expose a topic's authorized operations,
//! so a topic the user may describe but not write shows as True here. The sidecar reports that
//! case (`kcp_dead_letter_produce_failures_total`, its stalled partitions). The condition does
//! not affect `Ready`: nothing fails until a record must be dead-lettered, and brokers that
//! create topics on first use create a missing one then.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::{DEAD_LETTER_TOPICS_READY, Input, Reason, from_read};
use crate::lag::DeadLetterCheck;

/// The `DeadLetterTopicsReady` condition, or `None` before anything is known.
pub(super) fn condition(input: &Input<'_>) -> Option<Condition> {
    from_read(input, DEAD_LETTER_TOPICS_READY, |snapshot| {
        let check = &snapshot.dead_letter_check;
        if check.is_clear() {
            (
                "True",
                Reason::DeadLetterTopicsExist,
                exist_message(&snapshot.dead_letter.topics),
            )
        } else if check.unauthorized.is_empty() {
            (
                "False",
                Reason::DeadLetterTopicMissing,
                problem_message(check),
            )
        } else {
            (
                "False",
                Reason::DeadLetterTopicNotAuthorized,
                problem_message(check),
            )
        }
    })
}

fn exist_message(topics: &[String]) -> String {
    let checked = if topics.is_empty() {
        "no dead-letter topic to check".to_owned()
    } else {
        format!("dead-letter topics exist: {}", topics.join(", "))
    };
    format!(
        "{checked} (write access is not checked: the sidecar counts failed dead-letter produces in kcp_dead_letter_produce_failures_total)"
    )
}

/// What is wrong, what to do, and what happens meanwhile.
fn problem_message(check: &DeadLetterCheck) -> String {
    let mut parts = Vec::new();
    if !check.unauthorized.is_empty() {
        parts.push(format!(
            "the resource's Kafka user may not describe dead-letter {}, so it may not write {} either: grant that user Write on {}",
            topics(&check.unauthorized),
            them(&check.unauthorized),
            them(&check.unauthorized),
        ));
    }
    if !check.missing.is_empty() {
        parts.push(format!(
            "dead-letter {} not exist: create {} (README, \"Dead-letter topics\") or let the brokers create topics on first use (auto.create.topics.enable=true)",
            topics_do(&check.missing),
            them(&check.missing),
        ));
    }
    format!(
        "{}. Until then each record to be dead-lettered there is retried and stays uncommitted, holding its partition (in key order, its key) until the partition stalls",
        parts.join("; ")
    )
}

fn topics(names: &[String]) -> String {
    match names {
        [one] => format!("topic {one}"),
        many => format!("topics {}", many.join(", ")),
    }
}

fn topics_do(names: &[String]) -> String {
    match names {
        [one] => format!("topic {one} does"),
        many => format!("topics {} do", many.join(", ")),
    }
}

fn them(names: &[String]) -> &'static str {
    if names.len() == 1 { "it" } else { "them" }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
    use kcp_crds::v1alpha1::{DeadLetterStatus, KafkaConsumerProxyStatus};

    use super::super::{Outcome, READY, compute};
    use super::*;
    use crate::lag::{LagObservation, LagSnapshot};

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("valid timestamp")
    }

    /// A read of `orders` and `payments` whose dead-letter topics have the problems of `check`.
    fn read(check: DeadLetterCheck, at: i64) -> LagObservation {
        LagObservation::Fresh {
            snapshot: LagSnapshot::new(
                vec![],
                DeadLetterStatus {
                    topics: vec!["orders-dlq".into(), "payments-dlq".into()],
                    count: 0,
                    ..DeadLetterStatus::default()
                },
                vec![],
                check,
            ),
            read_at: t(at),
        }
    }

    fn missing(names: &[&str]) -> DeadLetterCheck {
        DeadLetterCheck {
            missing: names.iter().map(|n| (*n).to_owned()).collect(),
            unauthorized: vec![],
        }
    }

    fn status(
        lag: &LagObservation,
        previous: Option<&KafkaConsumerProxyStatus>,
        now: i64,
    ) -> KafkaConsumerProxyStatus {
        compute(&Input {
            generation: Some(3),
            selector: "kafkaproxy.io/instance=orders".into(),
            outcome: Outcome::Applied { suspended: false },
            deployment: None,
            lag,
            previous,
            now: t(now),
        })
    }

    fn dlq(s: &KafkaConsumerProxyStatus) -> Option<&Condition> {
        s.conditions
            .iter()
            .find(|c| c.type_ == DEAD_LETTER_TOPICS_READY)
    }

    fn summary(s: &KafkaConsumerProxyStatus) -> (&str, &str) {
        let c = dlq(s).expect("the condition is there");
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn a_missing_dead_letter_topic_is_named_with_what_to_do() {
        let s = status(&read(missing(&["payments-dlq"]), 0), None, 0);
        assert_eq!(summary(&s), ("False", "DeadLetterTopicMissing"));
        let message = &dlq(&s).expect("present").message;
        for part in [
            "dead-letter topic payments-dlq does not exist",
            "create it",
            "auto.create.topics.enable=true",
            "stays uncommitted",
            "stalls",
        ] {
            assert!(message.contains(part), "{part:?} not in {message:?}");
        }
        assert!(!message.contains("orders-dlq"), "only the missing one");
        let ready = s.conditions.iter().find(|c| c.type_ == READY);
        assert_eq!(
            ready.map(|c| c.reason.as_str()),
            Some("DeploymentProgressing"),
            "Ready is about the pods"
        );
    }

    #[test]
    fn existing_dead_letter_topics_are_true_and_say_writes_are_not_checked() {
        let s = status(&read(DeadLetterCheck::default(), 0), None, 0);
        assert_eq!(summary(&s), ("True", "DeadLetterTopicsExist"));
        let message = &dlq(&s).expect("present").message;
        assert!(message.contains("orders-dlq, payments-dlq"), "{message}");
        assert!(
            message.contains("kcp_dead_letter_produce_failures_total"),
            "{message}"
        );
    }

    #[test]
    fn a_topic_the_user_may_not_describe_is_not_authorized_and_missing_ones_are_named_too() {
        let check = DeadLetterCheck {
            missing: vec!["orders-dlq".into()],
            unauthorized: vec!["payments-dlq".into()],
        };
        let s = status(&read(check, 0), None, 0);
        assert_eq!(summary(&s), ("False", "DeadLetterTopicNotAuthorized"));
        let message = &dlq(&s).expect("present").message;
        assert!(
            message.contains("may not describe dead-letter topic payments-dlq"),
            "{message}"
        );
        assert!(message.contains("grant that user Write on it"), "{message}");
        assert!(
            message.contains("dead-letter topic orders-dlq does not exist"),
            "{message}"
        );

        let both = status(&read(missing(&["orders-dlq", "payments-dlq"]), 0), None, 0);
        let message = &dlq(&both).expect("present").message;
        assert!(
            message.contains("topics orders-dlq, payments-dlq do not exist: create them"),
            "{message}"
        );
    }

    #[test]
    fn creating_the_topic_turns_it_true_and_moves_the_transition_time() {
        let before = status(&read(missing(&["payments-dlq"]), 0), None, 0);
        let again = status(&read(missing(&["payments-dlq"]), 30), Some(&before), 30);
        assert_eq!(again, before, "nothing new: no status write");
        let after = status(&read(DeadLetterCheck::default(), 60), Some(&again), 60);
        assert_eq!(summary(&after), ("True", "DeadLetterTopicsExist"));
        assert_eq!(
            dlq(&after).map(|c| c.last_transition_time.clone()),
            Some(Time(t(60)))
        );
    }

    #[test]
    fn no_read_yet_keeps_the_previous_condition_and_a_failed_read_is_unknown() {
        let new = status(&LagObservation::Pending, None, 0);
        assert_eq!(dlq(&new), None, "nothing known before the first read");

        let read_once = status(&read(missing(&["payments-dlq"]), 0), None, 0);
        for not_read in [LagObservation::Pending, LagObservation::NotProbed] {
            let s = status(&not_read, Some(&read_once), 30);
            assert_eq!(dlq(&s), dlq(&read_once), "{not_read:?}");
        }

        let failed = LagObservation::Failed {
            message: "fetching metadata: broker transport failure".into(),
            at: t(60),
        };
        let s = status(&failed, Some(&read_once), 60);
        assert_eq!(summary(&s), ("Unknown", "KafkaUnreachable"));
        assert!(
            dlq(&s)
                .expect("present")
                .message
                .contains("see KafkaReachable")
        );
        assert_eq!(
            dlq(&s).map(|c| c.last_transition_time.clone()),
            Some(Time(t(60)))
        );
    }
}
