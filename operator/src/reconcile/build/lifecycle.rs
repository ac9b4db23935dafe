//! Lifecycle: how a pod stops, so that the sidecar stops sending before the app stops
//! (ARCHITECTURE.md, "Pod lifecycle").
//!
//! Pure. Gives every app container without a `preStop` of its own a hook that calls the
//! sidecar's [`DRAIN_PATH`], which answers once the sidecar sends the app nothing more, so
//! kubelet sends the app SIGTERM only then; and sizes the pod's termination grace period to
//! cover the sidecar's drain first and the app's own shutdown after it. The sidecar stays an
//! ordinary container: Kubernetes' native sidecars (init containers with `restartPolicy:
//! Always`) stop *after* the app containers, the opposite of the order needed here. Must not
//! change a container's own `preStop`, and must not touch the sidecar container (`sidecar`
//! says there whether the hooks exist, [`kcp_crds::config::DRAIN_HOOK_ENV`]).

use std::time::Duration;

use k8s_openapi::{
    api::core::v1::{Container, HTTPGetAction, Lifecycle, LifecycleHandler},
    apimachinery::pkg::util::intstr::IntOrString,
};
use kcp_crds::config::DRAIN_PATH;

/// Seconds added to the drain for the sidecar's final commit, leaving the group and answering
/// the hooks (its close waits at most 5 s).
pub const DRAIN_MARGIN_SECONDS: i64 = 10;
/// Kubernetes' termination grace period when a pod sets none: the app's own shutdown time when
/// its template does not say.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// The `preStop` hook of an app container: `GET http://<pod IP>:<admin port>/drain`. The port
/// is a number, not the sidecar's port name: kubelet resolves a named port against the hooked
/// container's own ports, where the sidecar's is not. The host is left unset (the pod IP), so
/// the sidecar's admin server listens on every interface.
pub fn drain_hook(admin_port: i32) -> LifecycleHandler {
    LifecycleHandler {
        http_get: Some(HTTPGetAction {
            path: Some(DRAIN_PATH.to_owned()),
            port: IntOrString::Int(admin_port),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        ..LifecycleHandler::default()
    }
}

/// Gives each container without a `preStop` the [`drain_hook`], keeping the rest of its
/// `lifecycle` (a `postStart`). A container that has its own `preStop` keeps it and gets
/// SIGTERM when its hook ends, possibly while the sidecar still drains. Returns whether any
/// container got the hook.
pub fn add_drain_hooks(containers: &mut [Container], admin_port: i32) -> bool {
    let mut added = false;
    for c in containers {
        let lifecycle = c.lifecycle.get_or_insert_with(Lifecycle::default);
        if lifecycle.pre_stop.is_none() {
            lifecycle.pre_stop = Some(drain_hook(admin_port));
            added = true;
        }
    }
    added
}

/// The pod's `terminationGracePeriodSeconds`: the drain (`delivery.drainTimeout` rounded up to
/// whole seconds) and [`DRAIN_MARGIN_SECONDS`], then, for a pod with app containers, the app's
/// own shutdown time (`app_grace`: the template's grace period, or [`DEFAULT_GRACE_SECONDS`]),
/// since the app gets SIGTERM only when the sidecar is done. `None` for the sidecar alone.
pub fn grace_period_seconds(drain_timeout: Duration, app_grace: Option<i64>) -> i64 {
    let drain = i64::try_from(drain_timeout.as_secs())
        .unwrap_or(i64::MAX / 4)
        .saturating_add(i64::from(drain_timeout.subsec_nanos() > 0));
    drain
        .saturating_add(DRAIN_MARGIN_SECONDS)
        .saturating_add(app_grace.unwrap_or(0).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_period_adds_the_apps_shutdown_after_the_drain() {
        let secs = Duration::from_secs;
        assert_eq!(grace_period_seconds(secs(30), None), 40);
        assert_eq!(grace_period_seconds(secs(30), Some(30)), 70);
        assert_eq!(
            grace_period_seconds(Duration::from_millis(1500), Some(0)),
            12
        );
        assert_eq!(grace_period_seconds(Duration::from_millis(1), None), 11);
        // A negative grace period (refused by the API server) never shortens the drain.
        assert_eq!(grace_period_seconds(secs(30), Some(-5)), 40);
        assert!(grace_period_seconds(Duration::MAX, Some(i64::MAX)) > 0);
    }

    #[test]
    fn only_containers_without_a_pre_stop_get_the_hook() {
        let own = LifecycleHandler {
            sleep: Some(k8s_openapi::api::core::v1::SleepAction { seconds: 3 }),
            ..LifecycleHandler::default()
        };
        let mut containers = vec![Container {
            name: "app".into(),
            lifecycle: Some(Lifecycle {
                pre_stop: Some(own.clone()),
                ..Lifecycle::default()
            }),
            ..Container::default()
        }];
        assert!(!add_drain_hooks(&mut containers, 9090), "nothing added");
        assert_eq!(
            containers[0]
                .lifecycle
                .as_ref()
                .and_then(|l| l.pre_stop.clone()),
            Some(own)
        );

        containers.push(Container {
            name: "worker".into(),
            ..Container::default()
        });
        assert!(add_drain_hooks(&mut containers, 9090));
        assert_eq!(
            containers[1]
                .lifecycle
                .as_ref()
                .and_then(|l| l.pre_stop.clone()),
            Some(drain_hook(9090))
        );
    }
}
