//! The reply contract: what an HTTP outcome means for the record.
//!
//! Pure: [`classify`] maps an [`Outcome`] and the endpoint's [`Policy`] to a [`Decision`].
//! Precedence: an unreachable endpoint is the app being down, never the record's fault; then the
//! app's action header (`retry`, `skip`, `dead-letter`) overrides the status; then 2xx (with
//! `bodyAck` when configured) is delivered, `retryOn` statuses are retried, and any other status
//! means the record itself is bad ([`Decision::Reject`]) and goes to `onExhausted` at once.
//! Before any of that, a record that could not even become a request is bad the same way
//! ([`Outcome::Undecodable`]), and a schema registry that could not be read is an outage like an
//! unreachable app ([`Decision::RegistryDown`]): the record waits, nothing is counted against it.

use std::time::Duration;

use bytes::Bytes;
use kcp_crds::config::{BodyAck, EndpointConfig, StatusMatcher};

/// What one attempt to deliver a record produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The endpoint answered.
    Response {
        status: u16,
        /// `Retry-After`, already turned into a wait.
        retry_after: Option<Duration>,
        /// The value of the configured action header, if the reply had it.
        action: Option<String>,
        /// The reply body (read only for a 2xx when `bodyAck` is configured; else empty).
        body: Bytes,
    },
    /// No status line and headers within `requestTimeout` (with `bodyAck`, no complete body of
    /// a 2xx either: its verdict is in the body).
    Timeout,
    /// The request never reached the app: connection refused, or closed before it was sent.
    Unreachable(String),
    /// The request may have reached the app but no usable reply came back (reset mid-reply).
    Failed(String),
    /// No request was sent: the record cannot be decoded or shaped into one (`cannot decode:
    /// ...`). Its own fault: retrying cannot help.
    Undecodable(String),
    /// No request was sent: the schema registry could not be read. Not the record's fault.
    RegistryUnavailable(String),
}

/// What to do with the record after an attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Delivered,
    /// Try again (counts as an attempt), after `after` when the app said so.
    Retry {
        after: Option<Duration>,
    },
    /// The record is bad: apply `onExhausted` now, without further retries.
    Reject {
        reason: String,
    },
    /// The app asked to skip the record.
    Skip,
    /// The app asked to dead-letter the record.
    DeadLetter {
        reason: String,
    },
    /// The app is not reachable: wait and try again without counting an attempt.
    AppDown,
    /// The schema registry cannot be read: wait and try again without counting an attempt
    /// (fetching goes on: the app is fine).
    RegistryDown,
}

/// The parts of the endpoint config that [`classify`] needs.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Policy {
    pub retry_on: Vec<StatusMatcher>,
    pub body_ack: Option<BodyAck>,
}

impl Policy {
    pub fn from_config(endpoint: &EndpointConfig) -> Self {
        Self {
            retry_on: endpoint.retry_on.clone(),
            body_ack: endpoint.body_ack.clone(),
        }
    }
}

/// Applies the reply contract.
pub fn classify(outcome: &Outcome, policy: &Policy) -> Decision {
    match outcome {
        Outcome::Unreachable(_) => Decision::AppDown,
        Outcome::RegistryUnavailable(_) => Decision::RegistryDown,
        Outcome::Undecodable(reason) => Decision::Reject {
            reason: reason.clone(),
        },
        Outcome::Timeout | Outcome::Failed(_) => Decision::Retry { after: None },
        Outcome::Response {
            status,
            retry_after,
            action,
            body,
        } => {
            match action
                .as_deref()
                .map(|a| a.trim().to_ascii_lowercase())
                .as_deref()
            {
                Some("retry") => {
                    return Decision::Retry {
                        after: *retry_after,
                    };
                }
                Some("skip") => return Decision::Skip,
                Some("dead-letter") => {
                    return Decision::DeadLetter {
                        reason: format!("app asked to dead-letter (status {status})"),
                    };
                }
                _ => {}
            }
            if (200..300).contains(status) {
                return match &policy.body_ack {
                    Some(ack) if !body_ack_matches(ack, body) => Decision::Retry {
                        after: *retry_after,
                    },
                    _ => Decision::Delivered,
                };
            }
            if policy.retry_on.iter().any(|m| m.matches(*status)) {
                return Decision::Retry {
                    after: *retry_after,
                };
            }
            Decision::Reject {
                reason: format!("status {status}"),
            }
        }
    }
}

/// Whether a reply body acknowledges the record: the JSON value at `ack.pointer`, as text (a
/// string without quotes, anything else as JSON), equals `ack.equals`.
pub fn body_ack_matches(ack: &BodyAck, body: &[u8]) -> bool {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    match json.pointer(&ack.pointer) {
        Some(serde_json::Value::String(s)) => *s == ack.equals,
        // Numbers, booleans, null, objects: compare their JSON text.
        Some(v) => serde_json::to_string(v).is_ok_and(|text| text == ack.equals),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16) -> Outcome {
        Outcome::Response {
            status,
            retry_after: None,
            action: None,
            body: Bytes::new(),
        }
    }

    fn with(
        outcome: Outcome,
        action: Option<&str>,
        retry_after: Option<u64>,
        body: &str,
    ) -> Outcome {
        let Outcome::Response { status, .. } = outcome else {
            unreachable!("tests only decorate responses")
        };
        Outcome::Response {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            action: action.map(str::to_owned),
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    fn policy() -> Policy {
        Policy {
            retry_on: ["5xx", "408", "429"]
                .iter()
                .map(|s| s.parse().expect("valid matcher"))
                .collect(),
            body_ack: None,
        }
    }

    fn ack_policy() -> Policy {
        Policy {
            body_ack: Some(BodyAck {
                pointer: "/errno".into(),
                equals: "0".into(),
            }),
            ..policy()
        }
    }

    #[test]
    fn status_table() {
        let p = policy();
        let retry = Decision::Retry { after: None };
        let reject = |s: u16| Decision::Reject {
            reason: format!("status {s}"),
        };
        let table = [
            (200, Decision::Delivered),
            (201, Decision::Delivered),
            (204, Decision::Delivered),
            (299, Decision::Delivered),
            (500, retry.clone()),
            (503, retry.clone()),
            (599, retry.clone()),
            (408, retry.clone()),
            (429, retry.clone()),
            (400, reject(400)),
            (404, reject(404)),
            (409, reject(409)),
            (422, reject(422)),
            (301, reject(301)),
            (100, reject(100)),
        ];
        for (status, want) in table {
            assert_eq!(classify(&resp(status), &p), want, "status {status}");
        }
    }

    #[test]
    fn transport_outcomes() {
        let p = policy();
        assert_eq!(
            classify(&Outcome::Timeout, &p),
            Decision::Retry { after: None }
        );
        assert_eq!(
            classify(&Outcome::Failed("reset".into()), &p),
            Decision::Retry { after: None }
        );
        assert_eq!(
            classify(&Outcome::Unreachable("refused".into()), &p),
            Decision::AppDown
        );
    }

    #[test]
    fn a_record_that_cannot_be_decoded_is_bad_and_a_registry_outage_is_not() {
        let p = policy();
        assert_eq!(
            classify(
                &Outcome::Undecodable("cannot decode: schema 9 not found".into()),
                &p
            ),
            Decision::Reject {
                reason: "cannot decode: schema 9 not found".into()
            }
        );
        assert_eq!(
            classify(&Outcome::RegistryUnavailable("status 503".into()), &p),
            Decision::RegistryDown
        );
    }

    #[test]
    fn retry_after_is_passed_on() {
        let d = classify(&with(resp(429), None, Some(7), ""), &policy());
        assert_eq!(
            d,
            Decision::Retry {
                after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn action_header_overrides_status() {
        let p = policy();
        assert_eq!(
            classify(&with(resp(200), Some("retry"), None, ""), &p),
            Decision::Retry { after: None }
        );
        assert_eq!(
            classify(&with(resp(500), Some(" Skip "), None, ""), &p),
            Decision::Skip
        );
        assert_eq!(
            classify(&with(resp(200), Some("dead-letter"), None, ""), &p),
            Decision::DeadLetter {
                reason: "app asked to dead-letter (status 200)".into()
            }
        );
        assert_eq!(
            classify(&with(resp(404), Some("nonsense"), None, ""), &p),
            Decision::Reject {
                reason: "status 404".into()
            },
            "an unknown action falls back to the status"
        );
    }

    #[test]
    fn body_ack_decides_2xx() {
        let p = ack_policy();
        assert_eq!(
            classify(&with(resp(200), None, None, r#"{"errno":0}"#), &p),
            Decision::Delivered
        );
        for body in [r#"{"errno":1}"#, r#"{"other":0}"#, "not json", ""] {
            assert_eq!(
                classify(&with(resp(200), None, None, body), &p),
                Decision::Retry { after: None },
                "body {body:?}"
            );
        }
        // A non-2xx status is not rescued by a matching body.
        assert_eq!(
            classify(&with(resp(400), None, None, r#"{"errno":0}"#), &p),
            Decision::Reject {
                reason: "status 400".into()
            }
        );
    }

    #[test]
    fn body_ack_compares_text() {
        let ack = |equals: &str| BodyAck {
            pointer: "/a/status".into(),
            equals: equals.into(),
        };
        assert!(body_ack_matches(&ack("OK"), br#"{"a":{"status":"OK"}}"#));
        assert!(!body_ack_matches(
            &ack("\"OK\""),
            br#"{"a":{"status":"OK"}}"#
        ));
        assert!(body_ack_matches(&ack("true"), br#"{"a":{"status":true}}"#));
        assert!(body_ack_matches(&ack("0"), br#"{"a":{"status":0}}"#));
    }
}
