//! The one error type of a reconcile, with its [`ErrorKind`] (what the user must fix vs. what
//! will pass by itself) and a bounded [`Error::category`] used as a metrics label and Event reason.
//!
//! Pure. The mapping from error to requeue policy lives in `reconcile::error_policy`; the
//! mapping from error to status condition in `reconcile::status`.

use std::time::Duration;

use serde_json::Value;

use crate::reconcile::{status::Reason, template, validate::InvalidSpec};

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

    /// A Secret named in `spec.kafka.auth` does not name this resource as a user: its values are
    /// neither used by the operator nor given to pods (ARCHITECTURE.md "Security").
    #[error(
        "secret {name:?} does not allow this resource to use it: someone who may edit that Secret must annotate it {annotation}={resource} (a comma-separated list of KafkaConsumerProxy names in this namespace, or *)",
        annotation = crate::reconcile::secrets::ALLOWED_CONSUMERS_ANNOTATION
    )]
    SecretNotAllowed { name: String, resource: String },

    /// A child's name is taken by an object this resource does not control.
    #[error(
        "{kind} {name:?} already exists and is not controlled by this KafkaConsumerProxy: rename or delete it"
    )]
    OwnershipConflict { kind: &'static str, name: String },

    /// The API server refused the object built from the spec: the user's template holds a
    /// value Kubernetes does not accept (HTTP 422), or a field the cluster's API does not have
    /// (a typo, or a field of a newer Kubernetes), which it names in `unknown_fields`.
    #[error("the API server rejected {kind} {name:?}: {}", rejected_detail(.unknown_fields, .message))]
    Rejected {
        kind: &'static str,
        name: String,
        message: String,
        /// Paths of the fields the API server's schema lacks: the resource's own
        /// (`spec.template.spec.containers[0].imagePullPolcy`) once
        /// [`Error::naming_template_fields`] has resolved them, else the API server's.
        unknown_fields: Vec<String>,
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
            | Self::SecretNotAllowed { .. }
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
            Self::SecretNotAllowed { .. } => "secret_not_allowed",
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
            Self::SecretNotAllowed { .. } => Reason::SecretNotAllowed,
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
            | Self::SecretNotAllowed { .. }
            | Self::OwnershipConflict { .. } => Some(RECHECK_EXTERNAL_FIX),
            _ => None,
        }
    }

    /// Classifies a failed server-side apply. The built object itself is refused, and the
    /// same apply will be refused until the spec changes, when the API server answers:
    /// - 422 Invalid: a value it does not accept;
    /// - a field "not declared in schema": a field its schema lacks. Server-side apply refuses
    ///   it whatever `fieldValidation` says, today as a 500 with no reason
    ///   (kubernetes/kubernetes#122480), so the message decides, and a 400 is expected once
    ///   that is fixed;
    /// - 400 with a strict decoding error (`fieldValidation=Strict`).
    ///
    /// Anything else is transient.
    pub fn from_apply(kind: &'static str, name: &str, source: kube::Error) -> Self {
        match &source {
            kube::Error::Api(status)
                if status.code == 422
                    || (matches!(status.code, 400 | 500)
                        && status.message.contains(template::UNDECLARED_FIELD))
                    || (status.code == 400 && status.message.contains("strict decoding")) =>
            {
                Self::Rejected {
                    kind,
                    name: name.to_owned(),
                    message: status.message.clone(),
                    unknown_fields: template::undeclared_paths(&status.message),
                }
            }
            _ => Self::Apply {
                kind,
                name: name.to_owned(),
                source,
            },
        }
    }

    /// Names the fields a rejection lists by their path in the resource (`raw_template` is
    /// its `spec.template`) where the API server's path leads into the template.
    #[must_use]
    pub fn naming_template_fields(self, raw_template: Option<&Value>) -> Self {
        match (self, raw_template) {
            (
                Self::Rejected {
                    kind,
                    name,
                    message,
                    unknown_fields,
                },
                Some(raw),
            ) => Self::Rejected {
                kind,
                name,
                message,
                unknown_fields: unknown_fields
                    .into_iter()
                    .map(|p| template::template_path(&p, raw).unwrap_or(p))
                    .collect(),
            },
            (other, _) => other,
        }
    }
}

fn rejected_detail(unknown_fields: &[String], message: &str) -> String {
    match unknown_fields {
        [] => message.to_owned(),
        fields => format!(
            "{} {}: the cluster's API has no such field (check the spelling, and whether the field needs a newer Kubernetes); {message}",
            if fields.len() == 1 {
                "unknown field"
            } else {
                "unknown fields"
            },
            fields.join(", ")
        ),
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

    /// The body a real API server (v1.33) sends when a server-side apply holds a field its
    /// schema does not declare (kubernetes/kubernetes#122480): a 500 with no reason.
    const UNDECLARED_FIELD_BODY: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"failed to create typed patch object (shop/orders; apps/v1, Kind=Deployment): .spec.template.spec.containers[name=\"app\"].imagePullPolcy: field not declared in schema","code":500}"#;

    #[test]
    fn a_field_the_api_server_does_not_declare_is_the_users_to_fix() {
        let status: Status = serde_json::from_str(UNDECLARED_FIELD_BODY).expect("a Status");
        let e = Error::from_apply("Deployment", "orders", kube::Error::Api(status.boxed()));
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
        assert_eq!(e.reason(), Some(Reason::InvalidSpec));
        assert_eq!(e.recheck_after(), None, "waits for a spec change");
        assert_eq!(e.category(), "rejected_by_api_server");
        let raw = serde_json::json!({"spec": {"containers": [{"name": "app", "imagePullPolcy": "Always"}]}});
        let named = e.naming_template_fields(Some(&raw)).to_string();
        assert!(
            named.contains("unknown field spec.template.spec.containers[0].imagePullPolcy: "),
            "{named}"
        );

        // Any other 500 is the API server's trouble, retried.
        let flaky = Error::from_apply("Deployment", "d", api_error(500));
        assert_eq!(flaky.kind(), ErrorKind::Transient);
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
