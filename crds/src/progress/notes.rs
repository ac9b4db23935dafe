//! What a commit says about *why*: how a record's last attempt failed ([`Failure`]), and the
//! records the group dead-lettered ([`DeadLetterNote`], [`DeadLetterKind`]). Each has a small
//! code for the wire and a sentence for people (the operator puts it in the resource's status).
//! Pure.

use std::fmt;

/// How a delivery attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The app answered with this HTTP status (100–599).
    Status(u16),
    /// No answer within `requestTimeout`.
    Timeout,
    /// The endpoint could not be reached (connection refused, DNS).
    Unreachable,
    /// Any other error (a reply cut short, a failed `bodyAck`, a sidecar error).
    Error,
}

impl Failure {
    /// The wire code: 0 for none, 1–3 for the errors, the status itself for a status.
    pub(super) fn code(last: Option<Self>) -> u128 {
        match last {
            None => 0,
            Some(Self::Timeout) => 1,
            Some(Self::Unreachable) => 2,
            Some(Self::Error) => 3,
            Some(Self::Status(s)) => u128::from(s),
        }
    }

    /// The inverse of [`Failure::code`]; `Err` for a code no writer uses (the string is then
    /// not ours, and nothing is read from it).
    pub(super) fn from_code(code: u128) -> Result<Option<Self>, ()> {
        match code {
            0 => Ok(None),
            1 => Ok(Some(Self::Timeout)),
            2 => Ok(Some(Self::Unreachable)),
            3 => Ok(Some(Self::Error)),
            100..=599 => Ok(Some(Self::Status(code as u16))),
            _ => Err(()),
        }
    }

    /// A status outside 100–599 is no HTTP status: it is kept as an error.
    pub fn status(status: u16) -> Self {
        if (100..=599).contains(&status) {
            Self::Status(status)
        } else {
            Self::Error
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => write!(f, "{s}"),
            Self::Timeout => f.write_str("timeout"),
            Self::Unreachable => f.write_str("unreachable"),
            Self::Error => f.write_str("error"),
        }
    }
}

/// Why a record was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// `maxAttempts` attempts failed with retryable outcomes.
    RetriesExhausted,
    /// The app refused it: a status that is not retried, or the app's `dead-letter` answer.
    Refused,
    /// Not retried because the guarantee is `atMostOnce`.
    NotRetried,
    /// In flight during `delivery.maxCrashes` consecutive crashes of the sidecar.
    CrashLoop,
    /// An internal error of the sidecar while processing it.
    SidecarError,
    /// It could not be decoded (`endpoint.decode`: unknown schema, wrong wire format, corrupt).
    Undecodable,
    /// Any other reason (the dead-letter record's `kcp-dlq-reason` header says which).
    Other,
}

impl DeadLetterKind {
    pub(super) fn code(self) -> u128 {
        match self {
            Self::Other => 0,
            Self::RetriesExhausted => 1,
            Self::Refused => 2,
            Self::NotRetried => 3,
            Self::CrashLoop => 4,
            Self::SidecarError => 5,
            Self::Undecodable => 6,
        }
    }

    pub(super) fn from_code(code: u128) -> Option<Self> {
        Some(match code {
            0 => Self::Other,
            1 => Self::RetriesExhausted,
            2 => Self::Refused,
            3 => Self::NotRetried,
            4 => Self::CrashLoop,
            5 => Self::SidecarError,
            6 => Self::Undecodable,
            _ => return None,
        })
    }
}

/// One record the group dead-lettered, as the commit of its partition remembers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadLetterNote {
    /// Its offset in the source partition.
    pub offset: i64,
    /// When it was dead-lettered (milliseconds since the Unix epoch).
    pub at_ms: u64,
    pub kind: DeadLetterKind,
    /// Delivery attempts made.
    pub attempts: u32,
    /// How the last attempt failed, if one did.
    pub last: Option<Failure>,
}

impl DeadLetterNote {
    /// What happened, in a few words: `retries exhausted after 5 attempts (last 503)`.
    pub fn reason(&self) -> String {
        let last = self
            .last
            .map(|l| format!(" (last {l})"))
            .unwrap_or_default();
        let attempts = match self.attempts {
            1 => "1 attempt".to_owned(),
            n => format!("{n} attempts"),
        };
        match self.kind {
            DeadLetterKind::RetriesExhausted => format!("retries exhausted after {attempts}{last}"),
            DeadLetterKind::Refused => format!("refused by the app after {attempts}{last}"),
            DeadLetterKind::NotRetried => format!("failed once, not retried (atMostOnce){last}"),
            DeadLetterKind::CrashLoop => {
                "in flight during delivery.maxCrashes consecutive sidecar crashes".to_owned()
            }
            DeadLetterKind::SidecarError => "internal error of the sidecar".to_owned(),
            DeadLetterKind::Undecodable => "could not be decoded (endpoint.decode)".to_owned(),
            DeadLetterKind::Other => format!("dead-lettered after {attempts}{last}"),
        }
    }
}

/// How an endpoint failed every record alike: what made the sidecar's breaker open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutageClass {
    /// 500–599 (502/503/504 behind proxies).
    ServerError,
    /// 429.
    Throttled,
    /// 404: a wrong path or host.
    NotFound,
    /// 401, 403: credentials or policy.
    Denied,
    /// 300–399: a redirect (an auth proxy, a moved endpoint).
    Redirect,
    /// No answer within `requestTimeout`.
    Timeout,
    /// The connection broke mid-request.
    Broken,
}

impl OutageClass {
    /// The class of an HTTP status, if it is one; other statuses (400, 409, 422, ...) judge a
    /// record, not the endpoint.
    pub fn of_status(status: u16) -> Option<Self> {
        match status {
            300..=399 => Some(Self::Redirect),
            401 | 403 => Some(Self::Denied),
            404 => Some(Self::NotFound),
            429 => Some(Self::Throttled),
            500..=599 => Some(Self::ServerError),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServerError => "5xx",
            Self::Throttled => "429",
            Self::NotFound => "404",
            Self::Denied => "401/403",
            Self::Redirect => "3xx",
            Self::Timeout => "timeout",
            Self::Broken => "connection error",
        }
    }

    pub(super) fn code(self) -> u128 {
        match self {
            Self::ServerError => 1,
            Self::Throttled => 2,
            Self::NotFound => 3,
            Self::Denied => 4,
            Self::Redirect => 5,
            Self::Timeout => 6,
            Self::Broken => 7,
        }
    }

    pub(super) fn from_code(code: u128) -> Option<Self> {
        Some(match code {
            1 => Self::ServerError,
            2 => Self::Throttled,
            3 => Self::NotFound,
            4 => Self::Denied,
            5 => Self::Redirect,
            6 => Self::Timeout,
            7 => Self::Broken,
            _ => return None,
        })
    }
}

/// The endpoint outage the writer of a commit saw going on (its breaker open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutageNote {
    pub class: OutageClass,
    /// When it began, in milliseconds since the Unix epoch.
    pub since_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_unknown_codes_are_refused() {
        for last in [
            None,
            Some(Failure::Timeout),
            Some(Failure::Unreachable),
            Some(Failure::Error),
            Some(Failure::Status(100)),
            Some(Failure::Status(503)),
            Some(Failure::Status(599)),
        ] {
            assert_eq!(Failure::from_code(Failure::code(last)), Ok(last));
        }
        for code in [4, 99, 600, u128::MAX] {
            assert_eq!(Failure::from_code(code), Err(()), "{code}");
        }
        for code in 0..7 {
            let kind = DeadLetterKind::from_code(code).expect("known");
            assert_eq!(kind.code(), code);
        }
        assert_eq!(DeadLetterKind::from_code(7), None);
        assert_eq!(Failure::status(700), Failure::Error);
    }

    #[test]
    fn outage_classes_round_trip_and_statuses_that_judge_a_record_are_none() {
        for code in 1..8 {
            let class = OutageClass::from_code(code).expect("known");
            assert_eq!(class.code(), code);
        }
        assert_eq!(OutageClass::from_code(0), None);
        assert_eq!(OutageClass::from_code(8), None);
        for s in [400, 409, 413, 422] {
            assert_eq!(OutageClass::of_status(s), None, "{s}");
        }
        assert_eq!(OutageClass::of_status(502), Some(OutageClass::ServerError));
        assert_eq!(OutageClass::of_status(308), Some(OutageClass::Redirect));
        assert_eq!(OutageClass::of_status(403), Some(OutageClass::Denied));
    }

    #[test]
    fn reasons_read_as_sentences() {
        let note = DeadLetterNote {
            offset: 7,
            at_ms: 0,
            kind: DeadLetterKind::RetriesExhausted,
            attempts: 5,
            last: Some(Failure::Status(503)),
        };
        assert_eq!(
            note.reason(),
            "retries exhausted after 5 attempts (last 503)"
        );
        let refused = DeadLetterNote {
            kind: DeadLetterKind::Refused,
            attempts: 1,
            last: Some(Failure::Status(422)),
            ..note
        };
        assert_eq!(
            refused.reason(),
            "refused by the app after 1 attempt (last 422)"
        );
    }
}
