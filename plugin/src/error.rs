//! What can go wrong, each with what failed and what to do about it.
//!
//! Pure. [`UsageError`] is a refusal of the command line made before anything is sent (exit
//! code 2, like clap's own); [`Error`] is everything else (exit code 1).

use kcp_crds::{KafkaConsumerProxy, v1alpha1::KafkaConsumerProxyOperation};
use kube::CustomResourceExt;

use crate::kafka::KafkaError;

/// A command line refused before anything is sent, in terms of its flags.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A command that failed after its arguments were accepted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Usage(#[from] UsageError),

    #[error("cannot load the kubeconfig{}: {source}; check KUBECONFIG and `kubectl config get-contexts`", context_note(.context))]
    LoadKubeconfig {
        context: Option<String>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error(
        "the CustomResourceDefinition {crd} is not installed in this cluster; install the CRDs with `kubectl apply -f manifests/crds/`"
    )]
    CrdMissing { crd: String },

    #[error(
        "KafkaConsumerProxy {name:?} not found in namespace {namespace:?}; list them with `kubectl get kcp -n {namespace}`, or pass -n NAMESPACE"
    )]
    ProxyNotFound { name: String, namespace: String },

    #[error(
        "an operation named {name:?} already exists in namespace {namespace:?} (one per proxy and kind per second); run the command again"
    )]
    OperationExists { name: String, namespace: String },

    #[error("{action}: {}", kube_hint(.source))]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },

    #[error(
        "following operation {name:?}: {reason}; check it with `kubectl get kcpop {name} -n {namespace}`"
    )]
    FollowOperation {
        name: String,
        namespace: String,
        reason: String,
    },

    #[error(
        "no record at {at} (past the end of the partition, deleted by retention, or compacted away)"
    )]
    RecordNotFound { at: String },

    #[error("operation {name:?} was deleted before it finished")]
    OperationDeleted { name: String },

    #[error("{0}")]
    DeadLetterOff(String),

    #[error("cannot read the dead letters: {0}")]
    Kafka(#[from] KafkaError),

    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    /// The exit code: 2 for a refused command line, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            _ => 1,
        }
    }

    pub fn proxy_crd_missing() -> Self {
        Self::CrdMissing {
            crd: KafkaConsumerProxy::crd_name().to_owned(),
        }
    }

    pub fn operation_crd_missing() -> Self {
        Self::CrdMissing {
            crd: KafkaConsumerProxyOperation::crd_name().to_owned(),
        }
    }

    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }
}

fn context_note(context: &Option<String>) -> String {
    context
        .as_ref()
        .map(|c| format!(" (context {c:?})"))
        .unwrap_or_default()
}

/// The API server's answer, with what to do for the answers a user can act on.
fn kube_hint(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 401 => format!(
            "{}; your credentials were refused: log in again (check `kubectl auth whoami`)",
            s.message
        ),
        kube::Error::Api(s) if s.code == 403 => format!(
            "{}; ask for RBAC permission (check with `kubectl auth can-i`)",
            s.message
        ),
        kube::Error::Api(s) if s.code == 422 => {
            format!("{}; the API server refused the object", s.message)
        }
        kube::Error::Api(s) => s.message.clone(),
        other => format!("{other}; check that the cluster is reachable (`kubectl cluster-info`)"),
    }
}
