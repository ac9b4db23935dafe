//! The scenario's waits on the cluster and on the operator child: every status observed, the
//! operator quiet, one spec change noticed.
//!
//! Reads only, with one exception: [`notice`] makes the spec change it times. Each wait is
//! bounded by the caller's [`super::limits::Budget`]; those that watch the child check that it
//! is alive.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use kcp_crds::KafkaConsumerProxy;
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams},
};

use super::{
    Counters, SpecChange,
    limits::{LIST_POLL, NOTICE_POLL},
    objects::{
        SPEC_CHANGE_FIELD, SPEC_CHANGE_IMAGE, has_observed_generation, observed_count,
        sidecar_image, spec_change_patch,
    },
};
use crate::operator::OperatorProc;

const QUIET_FOR: Duration = Duration::from_secs(3);
/// How often the waits print how far they got.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Waits until every one of the `n` resources has a status for its generation, at most
/// `timeout` after `started` (the first create).
pub(super) async fn observed(
    api: &Api<KafkaConsumerProxy>,
    op: &mut OperatorProc,
    n: usize,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut reported = Instant::now();
    loop {
        op.check_alive()?;
        let list = api
            .list(&ListParams::default())
            .await
            .context("listing the resources")?;
        let done = observed_count(&list.items);
        if done >= n {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!(
                "after {timeout:?} only {done} of {n} resources had a status for their generation; operator log {}: {}",
                op.log().display(),
                op.log_tail()
            );
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            eprintln!(
                "  operator: {done} of {n} have a status ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
            reported = Instant::now();
        }
        tokio::time::sleep(LIST_POLL).await;
    }
}

/// Changes [`SPEC_CHANGE_FIELD`] of `name` and times how long until its status observed the new
/// generation and its Deployment runs [`SPEC_CHANGE_IMAGE`], reading both every
/// [`NOTICE_POLL`] for at most `timeout`. Fails only when the change cannot be made or read.
pub(super) async fn notice(
    client: &Client,
    api: &Api<KafkaConsumerProxy>,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<SpecChange> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment_name = kcp_operator::reconcile::build::deployment_name(name);
    let sent = Instant::now();
    let patched = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(spec_change_patch()),
        )
        .await
        .with_context(|| format!("changing {SPEC_CHANGE_FIELD} of {namespace}/{name}"))?;
    let generation = patched
        .metadata
        .generation
        .with_context(|| format!("{namespace}/{name} has no generation after the change"))?;
    let (mut observed, mut deployed) = (None, None);
    while sent.elapsed() <= timeout && (observed.is_none() || deployed.is_none()) {
        if observed.is_none() {
            let kcp = api
                .get(name)
                .await
                .with_context(|| format!("reading {namespace}/{name}"))?;
            if has_observed_generation(&kcp, generation) {
                observed = Some(sent.elapsed());
            }
        }
        if deployed.is_none() {
            let d = deployments
                .get_opt(&deployment_name)
                .await
                .with_context(|| format!("reading Deployment {namespace}/{deployment_name}"))?;
            if d.as_ref().and_then(sidecar_image) == Some(SPEC_CHANGE_IMAGE) {
                deployed = Some(sent.elapsed());
            }
        }
        tokio::time::sleep(NOTICE_POLL).await;
    }
    Ok(SpecChange::new(
        name.to_owned(),
        Some(generation),
        observed,
        deployed,
        timeout,
    ))
}

/// Waits until the operator has finished at least `min_finished` reconciles (when given), none
/// is in flight, and its counters did not move for [`QUIET_FOR`]. After `timeout` it returns
/// the counters anyway with a note (an operator that never goes quiet is itself a finding),
/// unless `min_finished` was not reached, which is an error.
pub(super) async fn quiet(
    op: &mut OperatorProc,
    min_finished: Option<u64>,
    timeout: Duration,
) -> anyhow::Result<(Counters, Option<String>)> {
    let started = Instant::now();
    let mut last: Option<(Counters, Instant)> = None;
    loop {
        op.check_alive()?;
        let text = op.scrape().await?;
        let now = Counters::parse(&text).context("reading the operator's /metrics")?;
        let enough = min_finished.is_none_or(|m| now.finished >= m);
        let since = match &last {
            Some((c, at)) if *c == now => *at,
            _ => Instant::now(),
        };
        if enough && now.idle() && since.elapsed() >= QUIET_FOR {
            return Ok((now, None));
        }
        if started.elapsed() > timeout {
            if !enough {
                bail!(
                    "the operator finished {} reconciles, not {} within {timeout:?} (log: {})",
                    now.finished,
                    min_finished.unwrap_or_default(),
                    op.log().display()
                );
            }
            let note = format!(
                "the operator was still busy after {timeout:?} ({} reconciles started, {} finished, {} API writes so far)",
                now.started,
                now.finished,
                now.total_writes()
            );
            return Ok((now, Some(note)));
        }
        last = Some((now, since));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
