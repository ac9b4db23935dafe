//! The Lease elector against the mocked API server: create, wait while another holds a live
//! claim, renew with optimistic concurrency, lose a race (409), release, take over.

#![allow(clippy::unwrap_used)]

mod support;

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::coordination::v1::Lease;
use kcp_operator::{
    api_calls,
    leader::{Elector, Held, LeaseSettings},
    metrics::Metrics,
};
use kube::Api;
use support::FakeApi;

const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/kcp-system/leases/kcp";

fn elector(fake: &Arc<FakeApi>, identity: &str) -> (Elector, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let mut settings = LeaseSettings::new("kcp", identity);
    settings.retry_period = Duration::from_millis(20);
    let api: Api<Lease> = Api::namespaced(fake.client(), "kcp-system");
    (Elector::new(api, settings, metrics.clone()), metrics)
}

fn holder(fake: &FakeApi) -> serde_json::Value {
    fake.get(LEASE_PATH).unwrap()["spec"]["holderIdentity"].clone()
}

#[tokio::test]
async fn one_leader_at_a_time_with_handover_on_release() {
    let fake = FakeApi::new();
    let (mut a, a_metrics) = elector(&fake, "pod-a");
    let (mut b, _) = elector(&fake, "pod-b");

    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "a creates the Lease"
    );
    assert_eq!(holder(&fake), "pod-a");
    assert_eq!(
        fake.get(LEASE_PATH).unwrap()["spec"]["leaseDurationSeconds"],
        15
    );

    fake.take_calls();
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "b waits: a's claim is live"
    );
    let calls = fake.take_calls();
    assert!(
        calls.iter().all(|c| !c.is_write()),
        "waiting writes nothing"
    );

    let renewed_before = fake.get(LEASE_PATH).unwrap()["spec"]["renewTime"].clone();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(a.try_acquire_or_renew().await.unwrap(), "a renews");
    let calls = fake.take_calls();
    assert_eq!(calls.last().unwrap().method, "PUT");
    assert_ne!(
        fake.get(LEASE_PATH).unwrap()["spec"]["renewTime"],
        renewed_before
    );

    // A concurrent writer got there first: a does not hold it after a 409.
    fake.fail("PUT", LEASE_PATH, 409, "Conflict");
    assert!(!a.try_acquire_or_renew().await.unwrap());
    fake.clear_failures();

    // Graceful shutdown releases, and b takes over without waiting for expiry.
    assert_eq!(a.hold(async {}).await, Held::Released);
    assert_eq!(holder(&fake), serde_json::Value::Null);
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "b takes the released Lease"
    );
    assert_eq!(holder(&fake), "pod-b");
    assert_eq!(fake.get(LEASE_PATH).unwrap()["spec"]["leaseTransitions"], 1);
    assert!(a_metrics.lease_writes.get() >= 3);
    assert_eq!(
        a_metrics.api_writes_to("leases"),
        0,
        "lease writes are counted apart"
    );

    for c in fake.take_calls() {
        let (group, resource, verb) = c.rbac();
        assert!(
            api_calls::allows(&group, &resource, &verb),
            "{verb} {group}/{resource}"
        );
    }
}

#[tokio::test]
async fn a_leader_that_finds_another_holder_reports_the_loss() {
    let fake = FakeApi::new();
    let (mut a, metrics) = elector(&fake, "pod-a");
    assert!(a.try_acquire_or_renew().await.unwrap());
    metrics.leader.set(1);
    fake.edit(LEASE_PATH, |l| l["spec"]["holderIdentity"] = "pod-b".into());
    let held = tokio::time::timeout(Duration::from_secs(5), a.hold(std::future::pending()))
        .await
        .unwrap();
    assert_eq!(held, Held::Lost);
    assert_eq!(metrics.leader.get(), 0);
}
