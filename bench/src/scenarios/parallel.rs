//! The parallel-consumer table: records on one partition, a sink that sleeps 0–5 ms at random
//! per record (seeded; the sleep is chosen by the record's offset), seconds to drain in each
//! ordering mode. Next to each figure: its floor (what perfect scheduling would take with the
//! same sleeps) and, for the parallel modes, the bare hyper client at the same concurrency over
//! the same sleeps. Published for Confluent's Parallel Consumer (16 threads): ~22 s partition,
//! ~2.1 s key.

use std::{sync::Arc, time::Duration};

use kcp_crds::v1alpha1::Ordering;
use serde::Serialize;

use super::{Ctx, Verdict};
use crate::{
    client,
    clock::untimed_payload,
    kafka::{self, Preload},
    sidecar::ordering_name,
    sink::{Delay, random_schedule},
    stats::Summary,
};

pub const TARGET_KEY_SECS: f64 = 0.4;
pub const TARGET_PARTITION_OVER_FLOOR: f64 = 1.10;
pub const PUBLISHED_PARTITION_SECS: f64 = 22.0;
pub const PUBLISHED_KEY_SECS: f64 = 2.1;
const SEED: u64 = 7;
/// Values are small here: the figure is about scheduling, and 10,000 records of 1 KiB on one
/// partition would not fit the mock broker (it keeps 5 MiB per partition).
pub const VALUE_SIZE: usize = 256;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub mode: String,
    pub ordering: &'static str,
    pub keys: Option<u32>,
    pub samples: Vec<f64>,
    pub seconds: Option<Summary>,
    /// Perfect scheduling with these sleeps: partition = sum; key = max(busiest key, sum /
    /// maxInFlight); unordered = max(longest sleep, sum / maxInFlight).
    pub floor_seconds: f64,
    pub ratio_to_floor: Option<Summary>,
    pub published_seconds: Option<f64>,
    pub target: Option<String>,
    pub verdict: Verdict,
    /// Runs the time cap ended, as "delivered of records".
    pub capped: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Parallel {
    pub records: u64,
    pub value_size: usize,
    pub max_in_flight: u32,
    pub max_sleep_us: u32,
    pub seed: u64,
    pub repeats: u32,
    pub sum_of_sleeps_seconds: f64,
    /// A run stops after this long even if records remain (1.2 × the sum of the sleeps + 5 s:
    /// past every target).
    pub cap_seconds: f64,
    /// Bare hyper client, `max_in_flight` requests in flight, same sleeps by arrival order.
    pub bare_client: Option<Summary>,
    /// The bare hyper client one request at a time over the same sleeps: what partition mode
    /// would take with no Kafka and no sidecar (the sleeps plus the sink's and HTTP's own cost).
    pub bare_client_sequential: Option<Summary>,
    pub rows: Vec<Row>,
    pub errors: Vec<String>,
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<Parallel> {
    let plan = ctx.plan;
    let n = plan.parallel_records;
    let mif = plan.parallel_max_in_flight;
    let sched = Arc::new(random_schedule(
        n as usize,
        plan.parallel_max_sleep_us,
        SEED,
    ));
    let sum_us: u64 = sched.iter().map(|&s| u64::from(s)).sum();
    let max_us = sched.iter().copied().max().unwrap_or(0);
    let parallel_floor = |busiest_us: u64| secs(busiest_us).max(secs(sum_us) / f64::from(mif));

    // One topic per key count; partition and unordered use the first.
    let mut modes: Vec<(Ordering, Option<u32>, String, f64)> = Vec::new();
    for (i, &k) in plan.parallel_keys.iter().enumerate() {
        let topic = ctx.topic(&format!("pc-k{k}"), 1).await?;
        let spec = Preload {
            topic: topic.clone(),
            partitions: 1,
            records: n,
            keys_per_partition: k,
            value_size: VALUE_SIZE,
            batch_bytes: ctx.plan.preload_batch_bytes,
        };
        kafka::preload(&ctx.bootstrap, &spec)?;
        let lane_count = k.max(1) as usize;
        let mut lanes = vec![0u64; lane_count];
        for (offset, &s) in sched.iter().enumerate() {
            lanes[offset % lane_count] += u64::from(s);
        }
        let busiest = lanes.into_iter().max().unwrap_or(0);
        if i == 0 {
            modes.push((Ordering::Partition, None, topic.clone(), secs(sum_us)));
        }
        modes.push((
            Ordering::Key,
            Some(k),
            topic.clone(),
            parallel_floor(busiest),
        ));
        if i + 1 == plan.parallel_keys.len() {
            modes.push((
                Ordering::Unordered,
                None,
                topic,
                parallel_floor(u64::from(max_us)),
            ));
        }
    }
    let cap = Duration::from_secs_f64(1.2 * secs(sum_us) + 5.0);
    let mut samples = vec![Vec::new(); modes.len()];
    let mut capped = vec![Vec::new(); modes.len()];
    let mut bare = Vec::new();
    let mut bare_sequential = Vec::new();
    let mut errors = Vec::new();
    for r in 0..plan.parallel_repeat {
        ctx.sink.reset(Delay::Schedule(Arc::clone(&sched)), false);
        client::drive(
            &ctx.sink.url(),
            mif as usize,
            n,
            untimed_payload(VALUE_SIZE),
        )
        .await?;
        bare.push(ctx.sink.counts().window_secs());
        ctx.sink.reset(Delay::Schedule(Arc::clone(&sched)), false);
        client::drive(&ctx.sink.url(), 1, n, untimed_payload(VALUE_SIZE)).await?;
        bare_sequential.push(ctx.sink.counts().window_secs());
        for (m, (ordering, keys, topic, _)) in modes.iter().enumerate() {
            let res = ctx
                .drain_with_sidecar(
                    topic,
                    1,
                    n,
                    *ordering,
                    mif,
                    Delay::Schedule(Arc::clone(&sched)),
                    cap,
                )
                .await;
            let s = match res {
                Ok(d) if d.capped() => {
                    capped[m].push(format!(
                        "{} of {n} in {:.0} s",
                        d.counts.done,
                        cap.as_secs_f64()
                    ));
                    f64::NAN
                }
                Ok(d) => d.counts.window_secs(),
                Err(e) => {
                    errors.push(format!("{}: {e:#}", ordering_name(*ordering)));
                    f64::NAN
                }
            };
            eprintln!(
                "[parallel {}/{}] {}{}: {s:.2} s",
                r + 1,
                plan.parallel_repeat,
                ordering_name(*ordering),
                keys.map(|k| format!(" ({k} keys)")).unwrap_or_default()
            );
            samples[m].push(s);
        }
    }
    let rows = modes
        .iter()
        .zip(samples)
        .zip(capped)
        .map(|(((ordering, keys, _, floor), s), capped)| {
            let seconds = Summary::of(&s);
            let ratio: Vec<f64> = s.iter().map(|x| x / floor).collect();
            let ratio_to_floor = Summary::of(&ratio);
            let (published_seconds, target, verdict) = match ordering {
                Ordering::Partition => (
                    Some(PUBLISHED_PARTITION_SECS),
                    Some("≤ 1.10 × sum of sleeps".to_owned()),
                    Verdict::at_most(
                        ratio_to_floor.map(|r| r.median),
                        TARGET_PARTITION_OVER_FLOOR,
                    ),
                ),
                Ordering::Key => (
                    Some(PUBLISHED_KEY_SECS),
                    Some(format!("≤ {TARGET_KEY_SECS} s")),
                    Verdict::at_most(seconds.map(|r| r.median), TARGET_KEY_SECS),
                ),
                Ordering::Unordered => (None, None, Verdict::NoTarget),
            };
            // A capped run took longer than the cap, which is past both targets.
            let verdict = if !capped.is_empty() && ordering != &Ordering::Unordered {
                Verdict::Missed
            } else {
                verdict
            };
            Row {
                mode: match keys {
                    Some(k) => format!("key ({k} keys)"),
                    None => ordering_name(*ordering).to_owned(),
                },
                ordering: ordering_name(*ordering),
                keys: *keys,
                samples: s,
                seconds,
                floor_seconds: *floor,
                ratio_to_floor,
                published_seconds,
                target,
                verdict,
                capped,
            }
        })
        .collect();
    Ok(Parallel {
        records: n,
        value_size: VALUE_SIZE,
        max_in_flight: mif,
        max_sleep_us: plan.parallel_max_sleep_us,
        seed: SEED,
        repeats: plan.parallel_repeat,
        sum_of_sleeps_seconds: secs(sum_us),
        cap_seconds: cap.as_secs_f64(),
        bare_client: Summary::of(&bare),
        bare_client_sequential: Summary::of(&bare_sequential),
        rows,
        errors,
    })
}
