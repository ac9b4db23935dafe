//! The one error type of a reconcile, with its [`ErrorKind`] (what the user must fix vs. what
//! will pass by itself) and a bounded [`Error::category`] used as a metrics label and Event reason.
//!
//! Pure. The mapping from error to requeue policy lives in `reconcile::error_policy`; the
//! mapping from error to status condition in `reconcile::status`.

use std::time::Duration;

use crate::reconcile::{status::Reason, validate::InvalidSpec};

/// Why one reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object could not be parsed into a `KafkaConsumerProxy` (watch kept going).
    #[error("object cannot be parsed: {0}")]
    MalformedObject(String),

    /// The spec breaks a rule the CRD schema cannot express.
    #[error(transparent)]
    InvalidSpec(#[from] InvalidSpec),

    /// A Secret named in `spec.kafka.auth` does not exist.
    #[error("secret {name:?} not found in namespace {namespace:?}")]
    SecretNotFound { namespace: String, name: String },

    /// A Secret named in `spec.kafka.auth` lacks a key the spec refers to.
    #[error("secret {name:?} has no key {key:?}")]
    SecretKeyNotFound { name: String, key: String },

    /// A child's name is taken by an object this resource does not control.
    #[error(
        "{kind} {name:?} already exists and is not controlled by this KafkaConsumerProxy: rename or delete it"
    )]
    OwnershipConflict { kind: &'static str, name: String },

    /// The API server refused the object built from the spec (HTTP 422): the user's template
    /// holds a value Kubernetes does not accept.
    #[error("the API server rejected {kind} {name:?}: {message}")]
    Rejected {
        kind: &'static str,
        name: String,
        message: String,
    },

    /// Reading a referenced Secret failed.
    #[error("reading secret {name:?}")]
    ReadSecret {
        name: String,
        #[source]
        source: kube::Error,
    },

    /// Reading a child before applying it failed.
    #[error("reading {kind} {name:?}")]
    ReadChild {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },

    /// Server-side apply of a child failed.
    #[error("applying {kind} {name:?}")]
    Apply {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },

    /// Writing the status failed.
    #[error("writing status")]
    WriteStatus(#[source] kube::Error),
}

/// Who has to act for the error to go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user must change the resource (or a Secret, or a conflicting object): reported in
    /// the status and as a Warning Event; retrying sooner does not help.
    InvalidInput,
    /// Likely to pass by itself (API server unavailable, conflict, timeout): retried with backoff.
    Transient,
}

/// How long to wait before checking again for user-fixable problems that do not change the
/// `KafkaConsumerProxy` itself (a Secret being created, a conflicting object being removed).
/// Secrets are not watched: watching them would need `list`/`watch` on every Secret.
pub const RECHECK_EXTERNAL_FIX: Duration = Duration::from_secs(60);

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::MalformedObject(_)
            | Self::InvalidSpec(_)
            | Self::SecretNotFound { .. }
            | Self::SecretKeyNotFound { .. }
            | Self::OwnershipConflict { .. }
            | Self::Rejected { .. } => ErrorKind::InvalidInput,
            Self::ReadSecret { .. }
            | Self::ReadChild { .. }
            | Self::Apply { .. }
            | Self::WriteStatus(_) => ErrorKind::Transient,
        }
    }

    /// A bounded label for metrics and logs (never an object name or a message).
    pub fn category(&self) -> &'static str {
        match self {
            Self::MalformedObject(_) => "malformed_object",
            Self::InvalidSpec(_) => "invalid_spec",
            Self::SecretNotFound { .. } => "secret_not_found",
            Self::SecretKeyNotFound { .. } => "secret_key_not_found",
            Self::OwnershipConflict { .. } => "ownership_conflict",
            Self::Rejected { .. } => "rejected_by_api_server",
            Self::ReadSecret { .. } | Self::ReadChild { .. } => "kube_read",
            Self::Apply { .. } | Self::WriteStatus(_) => "kube_write",
        }
    }

    /// The condition reason for errors the user must fix; `None` for transient ones.
    pub fn reason(&self) -> Option<Reason> {
        Some(match self {
            Self::MalformedObject(_) | Self::InvalidSpec(_) | Self::Rejected { .. } => {
                Reason::InvalidSpec
            }
            Self::SecretNotFound { .. } => Reason::SecretNotFound,
            Self::SecretKeyNotFound { .. } => Reason::SecretKeyNotFound,
            Self::OwnershipConflict { .. } => Reason::OwnershipConflict,
            _ => return None,
        })
    }

    /// When to look again without a watch event, for errors the user must fix: `None` means
    /// wait for the resource to change (`Action::await_change`).
    pub fn recheck_after(&self) -> Option<Duration> {
        match self {
            Self::SecretNotFound { .. }
            | Self::SecretKeyNotFound { .. }
            | Self::OwnershipConflict { .. } => Some(RECHECK_EXTERNAL_FIX),
            _ => None,
        }
    }

    /// Classifies a failed server-side apply: 422 means the built object itself is refused.
    pub fn from_apply(kind: &'static str, name: &str, source: kube::Error) -> Self {
        match &source {
            kube::Error::Api(status) if status.code == 422 => Self::Rejected {
                kind,
                name: name.to_owned(),
                message: status.message.clone(),
            },
            _ => Self::Apply {
                kind,
                name: name.to_owned(),
                source,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("boom", "Invalid").with_code(code).boxed())
    }

    #[test]
    fn a_422_on_apply_is_the_users_to_fix_anything_else_is_transient() {
        let rejected = Error::from_apply("Deployment", "d", api_error(422));
        assert_eq!(rejected.kind(), ErrorKind::InvalidInput);
        assert_eq!(rejected.reason(), Some(Reason::InvalidSpec));
        assert_eq!(rejected.recheck_after(), None);

        let flaky = Error::from_apply("Deployment", "d", api_error(503));
        assert_eq!(flaky.kind(), ErrorKind::Transient);
        assert_eq!(flaky.reason(), None);
        assert_eq!(flaky.category(), "kube_write");
    }

    #[test]
    fn missing_secrets_are_rechecked_without_a_watch_event() {
        let e = Error::SecretNotFound {
            namespace: "ns".into(),
            name: "s".into(),
        };
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.recheck_after(), Some(RECHECK_EXTERNAL_FIX));
        assert_eq!(e.category(), "secret_not_found");
    }
}
