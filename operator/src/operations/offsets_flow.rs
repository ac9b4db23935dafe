//! Rewind, fast-forward and skip, step by step: hold the proxy (its pods stop), wait until
//! they are gone, change the offsets as the group's only member (`seek`), release the proxy.
//!
//! Phases: `Pending` (another operation holds the proxy) → `Quiescing` (this one holds it; the
//! pods are stopping) → `Running` (changing offsets) → `Succeeded` or `Failed`. The proxy is
//! released whenever the operation ends, so its pods start again at the offsets the group
//! has then: the new ones, or the old ones if nothing was committed. Pods that do not leave
//! the group within [`OpLimits::stop_timeout`](super::controller::OpLimits) fail the
//! operation, with the offsets untouched.

use k8s_openapi::{api::apps::v1::Deployment, jiff::Timestamp};
use kcp_crds::v1alpha1::{KafkaConsumerProxyOperation, OperationStatus, Phase, SeekSpec};
use kube::{Api, ResourceExt, runtime::controller::Action};
use tracing::warn;

use super::{
    controller::{Run, write_status},
    quiesce::{self, HOLD_ANNOTATION},
    seek::{self, Direction, Done, Request, SeekError, Target},
};
use crate::{Error, reconcile::build::deployment_name};

/// One step (see the module docs).
pub(super) async fn step(
    run: &mut Run<'_>,
    ops: &Api<KafkaConsumerProxyOperation>,
) -> Result<Action, Error> {
    let poll = Action::requeue(run.ctx.limits.poll);
    let name = run.name();
    let proxy = run.op.spec.proxy.clone();
    let held_by = run.kcp.annotations().get(HOLD_ANNOTATION).cloned();
    if held_by.as_deref() != Some(name.as_str()) {
        if let Some(other) = quiesce::holder(&run.ctx.client, &run.kcp).await? {
            run.set(
                Phase::Pending,
                format!("waiting for operation {other} on {proxy} to finish"),
            );
            return Ok(poll);
        }
        let rv = run.kcp.resource_version().unwrap_or_default();
        match quiesce::hold(&run.proxies, &proxy, &rv, &name).await {
            Ok(()) => {}
            // The proxy changed since it was read: read it again next time.
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(poll),
            Err(source) => {
                return Err(Error::Apply {
                    kind: "KafkaConsumerProxy",
                    name: proxy,
                    source,
                });
            }
        }
        run.set(
            Phase::Quiescing,
            format!("stopping the pods of {proxy} so the group's offsets can change"),
        );
        return Ok(poll);
    }
    if stopping_too_long(&run.status, run.ctx.limits.stop_timeout) {
        let message = format!(
            "the pods of {proxy} did not leave the consumer group within {}s; no offset was \
             changed; check what keeps them (a HorizontalPodAutoscaler or KEDA scaling the \
             Deployment up, pods stuck terminating), then create a new operation",
            run.ctx.limits.stop_timeout.as_secs()
        );
        return finish(run, Err(message)).await;
    }
    if let Some(running) = pods_left(run).await? {
        run.set(
            Phase::Quiescing,
            format!("waiting for {running} pod(s) of {proxy} to stop"),
        );
        return Ok(poll);
    }
    let request = match request_of(run.op) {
        Ok(r) => r,
        Err(why) => return finish(run, Err(why)).await,
    };
    let (base, v) = match run.kafka().await {
        Ok(k) => k,
        Err(why) => return Ok(run.failed_try(why)),
    };
    if run.status.phase != Some(Phase::Running) {
        run.set(Phase::Running, "changing the group's offsets");
        write_status(ops, &name, &run.status).await?;
    }
    let limits = run.ctx.limits;
    let group = v.config.kafka.group_id.clone();
    let topics = v.config.kafka.topics.clone();
    let result = tokio::task::spawn_blocking(move || {
        seek::run(
            &base,
            &group,
            &topics,
            &request,
            limits.join_timeout,
            limits.call_timeout,
        )
    })
    .await
    .unwrap_or_else(|e| Err(SeekError::Kafka(format!("the offset change panicked: {e}"))));
    match result {
        Ok(done) => {
            record(&mut run.status, &done);
            let message = summary(&done);
            run.event("OffsetsChanged", &message).await;
            finish(run, Ok(message)).await
        }
        Err(SeekError::Refused(why)) => finish(run, Err(why)).await,
        // Not a failure: the pods are still leaving.
        Err(busy @ SeekError::Busy { .. }) => {
            run.set(Phase::Quiescing, busy.to_string());
            Ok(poll)
        }
        Err(e) => {
            let action = run.failed_try(e.to_string());
            if run.status.phase == Some(Phase::Failed) {
                release(run).await;
            }
            Ok(action)
        }
    }
}

/// Ends the operation and releases the proxy.
async fn finish(run: &mut Run<'_>, outcome: Result<String, String>) -> Result<Action, Error> {
    match outcome {
        Ok(message) => run.set(Phase::Succeeded, message),
        Err(message) => run.set(Phase::Failed, message),
    }
    release(run).await;
    Ok(Action::await_change())
}

/// Best effort: a hold left behind by a finished operation is ignored anyway.
async fn release(run: &Run<'_>) {
    if let Err(e) = quiesce::release(&run.proxies, &run.op.spec.proxy, &run.name()).await {
        warn!(operation = %run.name(), error = %e, "Could not remove the hold annotation; it is ignored now that the operation ended");
    }
}

fn stopping_too_long(status: &OperationStatus, limit: std::time::Duration) -> bool {
    status.started_at.as_ref().is_some_and(|t| {
        let waited = Timestamp::now().as_second() - t.0.as_second();
        waited > limit.as_secs() as i64
    })
}

/// How many pods of the proxy still run (`None` when none does).
async fn pods_left(run: &Run<'_>) -> Result<Option<i32>, Error> {
    let deployments: Api<Deployment> = Api::namespaced(
        run.ctx.client.clone(),
        &run.kcp.namespace().unwrap_or_default(),
    );
    let dep_name = deployment_name(&run.op.spec.proxy);
    let d = deployments
        .get_opt(&dep_name)
        .await
        .map_err(|source| Error::ReadChild {
            kind: "Deployment",
            name: dep_name,
            source,
        })?;
    let Some(d) = d else { return Ok(None) };
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let running = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    Ok((wanted > 0 || running > 0).then_some(running.max(wanted)))
}

/// The seek or skip the spec asks for.
fn request_of(op: &KafkaConsumerProxyOperation) -> Result<Request, String> {
    let s = &op.spec;
    if let Some(skip) = &s.skip {
        return Ok(Request::Skip {
            topic: skip.topic.clone(),
            partition: skip.partition,
            offset: skip.offset,
            reason: skip.reason.clone(),
        });
    }
    let (direction, spec) = match (&s.rewind, &s.fast_forward) {
        (Some(r), _) => (Direction::Back, r),
        (None, Some(f)) => (Direction::Ahead, f),
        (None, None) => return Err("the operation names nothing to do".to_owned()),
    };
    Ok(Request::Seek {
        direction,
        target: target_of(spec)?,
        topic: spec.topic.clone(),
        partitions: spec.partitions.clone(),
    })
}

fn target_of(spec: &SeekSpec) -> Result<Target, String> {
    match spec {
        SeekSpec {
            to_time: Some(t), ..
        } => Ok(Target::Time(t.0.as_millisecond())),
        SeekSpec {
            to_offset: Some(o), ..
        } => Ok(Target::Offset(*o)),
        SeekSpec {
            to_earliest: Some(true),
            ..
        } => Ok(Target::Earliest),
        SeekSpec {
            to_latest: Some(true),
            ..
        } => Ok(Target::Latest),
        _ => Err("set one of toTime, toOffset, toEarliest: true, toLatest: true".to_owned()),
    }
}

/// Keeps the first `from` of a partition moved by an earlier try.
fn record(status: &mut OperationStatus, done: &Done) {
    for m in &done.moves {
        match status
            .moves
            .iter_mut()
            .find(|x| x.topic == m.topic && x.partition == m.partition)
        {
            Some(x) => x.to = m.to,
            None => status.moves.push(m.clone()),
        }
    }
    if done.skipped.is_some() {
        status.skipped = done.skipped.clone();
    }
}

fn summary(done: &Done) -> String {
    if let Some(s) = &done.skipped {
        return format!(
            "skipped {}/{} offset {}{}",
            s.topic,
            s.partition,
            s.offset,
            s.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }
    if let Some(why) = &done.unchanged {
        return format!("nothing changed: {why}");
    }
    let moves: Vec<String> = done
        .moves
        .iter()
        .take(10)
        .map(|m| {
            let from = m.from.map_or("none".to_owned(), |f| f.to_string());
            format!("{}/{} {from}→{}", m.topic, m.partition, m.to)
        })
        .collect();
    let more = done.moves.len().saturating_sub(10);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "moved {} partition(s): {}{more}",
        done.moves.len(),
        moves.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn started(seconds_ago: i64) -> OperationStatus {
        OperationStatus {
            started_at: Some(Time(
                Timestamp::from_second(Timestamp::now().as_second() - seconds_ago)
                    .expect("a valid time"),
            )),
            ..OperationStatus::default()
        }
    }

    #[test]
    fn pods_that_do_not_leave_within_the_stop_timeout_end_the_wait() {
        let limit = std::time::Duration::from_secs(600);
        assert!(stopping_too_long(&started(601 + 5), limit));
        assert!(!stopping_too_long(&started(60), limit));
        assert!(
            !stopping_too_long(&OperationStatus::default(), limit),
            "not started (waiting for another operation) does not count"
        );
    }
}
