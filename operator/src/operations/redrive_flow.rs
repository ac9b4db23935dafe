//! Redrive, step by step: fix where it ends in each dead-letter partition, then produce the
//! chosen dead letters back to their source partitions a few seconds' worth at a time, writing
//! the progress to the status after each step.
//!
//! Phases: `Running` (from the first step) → `Succeeded` or `Failed`. The proxy keeps running:
//! a redrive only reads the dead-letter topics and produces to the source topics, whose
//! records the sidecars then deliver as any other. A step's records are all acknowledged by
//! Kafka before the status moves past them, so an operator restart repeats at most one
//! step's records (at least once, like every delivery) and never skips one.

use std::time::Instant;

use kcp_crds::v1alpha1::{Phase, RedriveProgress};
use kube::runtime::controller::Action;

use super::{
    controller::Run,
    redrive::{self, StepState},
};
use crate::Error;

/// One step (see the module docs).
pub(super) async fn step(run: &mut Run<'_>) -> Result<Action, Error> {
    let Some(spec) = run.op.spec.redrive.clone() else {
        return Ok(Action::await_change());
    };
    let (base, v) = match run.kafka().await {
        Ok(k) => k,
        Err(why) => return Ok(run.failed_try(why)),
    };
    let limits = run.ctx.limits;
    let Some(mut progress) = run.status.redrive.clone() else {
        let topics = v.dead_letter_topics.clone();
        let planned =
            tokio::task::spawn_blocking(move || redrive::plan(&base, &topics, limits.call_timeout))
                .await;
        return Ok(match planned {
            Ok(Ok(partitions)) => {
                let total: i64 = partitions.iter().map(|p| p.end - p.next).sum();
                run.status.redrive = Some(RedriveProgress {
                    partitions,
                    ..RedriveProgress::default()
                });
                run.set(
                    Phase::Running,
                    format!(
                        "redriving up to {total} dead letter(s) of {}",
                        v.dead_letter_topics.join(", ")
                    ),
                );
                Action::requeue(std::time::Duration::from_millis(10))
            }
            Ok(Err(e)) => run.failed_try(e.to_string()),
            Err(e) => run.failed_try(format!("planning the redrive panicked: {e}")),
        });
    };
    let owner = redrive::Owner {
        group: v.config.kafka.group_id.clone(),
        source_topics: v.config.kafka.topics.clone(),
    };
    let step_records = (i64::from(spec.rate_per_second)
        * limits.redrive_step.as_secs().max(1) as i64)
        .max(1) as usize;
    let deadline = Instant::now() + limits.redrive_step;
    let stepped = tokio::task::spawn_blocking(move || {
        let outcome = redrive::step(&base, &spec, &owner, &mut progress, step_records, deadline);
        (outcome, progress)
    })
    .await;
    let (outcome, progress) = match stepped {
        Ok(r) => r,
        Err(e) => return Ok(run.failed_try(format!("a redrive step panicked: {e}"))),
    };
    // Only acknowledged records moved it.
    run.status.redrive = Some(progress.clone());
    let counts = format!(
        "{} read, {} redriven, {} filtered, {} held back by the loop guard",
        progress.read, progress.redriven, progress.filtered, progress.loop_guarded
    );
    Ok(match outcome {
        Ok(o) if o.finished() => {
            let expired = if o.expired > 0 {
                format!(
                    "; {} dead letter(s) expired (retention) before they were read",
                    o.expired
                )
            } else {
                String::new()
            };
            let why = if o.state == StepState::LimitReached {
                "maxRecords reached"
            } else {
                "finished"
            };
            let message = format!("redrive {why}: {counts}{expired}");
            run.event("Redriven", &message).await;
            run.set(Phase::Succeeded, message);
            Action::await_change()
        }
        Ok(_) => {
            run.set(Phase::Running, format!("redriving: {counts}"));
            Action::requeue(std::time::Duration::from_millis(10))
        }
        Err(e) => run.failed_try(e.to_string()),
    })
}
