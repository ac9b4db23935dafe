//! Every Kubernetes API call the operator makes, as (API group, resource, verbs): the one table
//! the RBAC ClusterRole is derived from.
//!
//! Data only. When code starts making a new kind of call, add it here in the same change; the
//! mocked-API-server tests check that every request the reconciler sends is covered by a row.

/// One RBAC rule's worth of access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiCall {
    /// API group (`""` is the core group).
    pub group: &'static str,
    /// Resource, plural, with `/subresource` when it is one.
    pub resource: &'static str,
    /// Verbs, in RBAC spelling.
    pub verbs: &'static [&'static str],
    /// Which code makes the call, and why.
    pub why: &'static str,
}

/// The table. Order: the watched resource, its children, what is read, what is written on the side.
pub const API_CALLS: &[ApiCall] = &[
    ApiCall {
        group: "kafkaproxy.io",
        resource: "kafkaconsumerproxies",
        verbs: &["get", "list", "watch", "patch"],
        why: "run: watch the resources (list+watch); the startup CRD check lists with limit=1; operations::quiesce: merge patch of the hold annotation (metadata only)",
    },
    ApiCall {
        group: "kafkaproxy.io",
        resource: "kafkaconsumerproxyoperations",
        verbs: &["get", "list", "watch"],
        why: "operations: watch the operations; a proxy's reconcile reads the one holding it",
    },
    ApiCall {
        group: "kafkaproxy.io",
        resource: "kafkaconsumerproxyoperations/status",
        verbs: &["patch"],
        why: "operations::controller: each step's progress and result",
    },
    ApiCall {
        group: "kafkaproxy.io",
        resource: "kafkaconsumerproxies/status",
        verbs: &["patch"],
        why: "reconcile::apply: server-side apply of the status, only when it changed",
    },
    ApiCall {
        group: "apps",
        resource: "deployments",
        verbs: &["get", "list", "watch", "create", "patch"],
        why: "owned child: watched (owns), read before apply, server-side applied (create on first apply)",
    },
    ApiCall {
        group: "",
        resource: "configmaps",
        verbs: &["get", "list", "watch", "create", "patch"],
        why: "owned child (rendered sidecar config): watched, read before apply, server-side applied",
    },
    ApiCall {
        group: "",
        resource: "secrets",
        verbs: &["get"],
        why: "reconcile::secrets: check referenced Secrets exist; lag probe credentials, in memory only",
    },
    ApiCall {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        why: "Warning events on the resource (kube Recorder creates, then patches a series)",
    },
    ApiCall {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
        why: "leader: Lease-based leader election (optimistic concurrency on resourceVersion)",
    },
];

/// Whether the table grants `verb` on `resource` in `group`.
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    API_CALLS
        .iter()
        .any(|c| c.group == group && c.resource == resource && c.verbs.contains(&verb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_group_resource_appears_once_with_unique_verbs() {
        for (i, a) in API_CALLS.iter().enumerate() {
            for b in &API_CALLS[i + 1..] {
                assert!(
                    !(a.group == b.group && a.resource == b.resource),
                    "duplicate row for {}/{}",
                    a.group,
                    a.resource
                );
            }
            let mut verbs = a.verbs.to_vec();
            verbs.sort_unstable();
            verbs.dedup();
            assert_eq!(
                verbs.len(),
                a.verbs.len(),
                "duplicate verb in {}",
                a.resource
            );
        }
    }

    #[test]
    fn secrets_are_read_only_and_never_listed() {
        // Listing or watching Secrets would hand the operator every Secret in the cluster.
        assert!(allows("", "secrets", "get"));
        for verb in ["list", "watch", "create", "update", "patch", "delete"] {
            assert!(
                !allows("", "secrets", verb),
                "secrets {verb} must not be granted"
            );
        }
    }

    #[test]
    fn nothing_is_ever_deleted() {
        // Children are removed by Kubernetes garbage collection through owner references.
        assert!(API_CALLS.iter().all(|c| !c.verbs.contains(&"delete")));
    }
}
