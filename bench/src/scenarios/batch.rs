//! Batch delivery (issue 19, item 4; docs/batch.md): records/s of the sidecar over a preloaded
//! backlog against a sink that pays a **fixed cost per request**, whatever the request carries,
//! without `delivery.batch` and with `maxRecords` 1, 10 and 100, in `partition` and `unordered`
//! order at a fixed maxInFlight. Beside them the **unbatched limit**: what one record per
//! request reaches against the same sink at the same concurrency (a bare hyper client, as the
//! throughput scenario's HTTP limit), and the nominal maxInFlight ÷ cost. Per row: records/s,
//! records per request as the sink saw them, the ratio to the unbatched limit of the same
//! repeat, and the sidecar's CPU seconds per 10,000 records.

use std::time::Duration;

use kcp_crds::{config::BatchConfig, v1alpha1::Ordering};
use serde::Serialize;

use super::{
    Ctx,
    throughput::{Limit, ratios},
};
use crate::{
    client,
    clock::untimed_payload,
    kafka::{self, Preload},
    sidecar::ordering_name,
    sink::Delay,
    stats::Summary,
};

/// The orderings measured: one lane per partition, and no lanes at all.
pub const ORDERINGS: [Ordering; 2] = [Ordering::Partition, Ordering::Unordered];
/// `delivery.batch.maxBytes`: 1 MiB (the default), far above 100 records of 1 KiB, so
/// `maxRecords` alone bounds a batch.
pub const MAX_BYTES: u32 = 1 << 20;
/// `delivery.batch.maxWait`: 0 s (the default). The backlog is preloaded, so a lane's records
/// are already waiting when a batch is taken; a wait would only delay the partial batches at
/// the end of a partition (or when the fetch falls behind), and would add its own time to the
/// rate instead of showing how full batches get by themselves.
pub const MAX_WAIT: kcp_crds::Duration = kcp_crds::Duration::from_millis(0);

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub ordering: &'static str,
    /// `delivery.batch.maxRecords`; `None`: no `delivery.batch` (one record per request).
    pub max_records: Option<u32>,
    /// Records/s per repeat (NaN where the run failed).
    pub samples: Vec<f64>,
    pub rate: Option<Summary>,
    /// Records per request as the sink counted them, per repeat.
    pub records_per_request_samples: Vec<f64>,
    pub records_per_request: Option<Summary>,
    /// Sidecar ÷ the unbatched limit measured in the same repeat.
    pub ratio_to_unbatched_limit: Option<Summary>,
    /// The sidecar's CPU seconds (user + system) per 10,000 records, per repeat.
    pub cpu_per_10k_samples: Vec<f64>,
    pub cpu_per_10k: Option<Summary>,
    /// Runs that the time cap ended before every record was delivered.
    pub capped_runs: u32,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    /// Records in the topic; every run drains all of them, unless capped.
    pub records: u64,
    pub partitions: i32,
    pub value_size: usize,
    pub keys_per_partition: u32,
    pub max_in_flight: u32,
    /// The sink's fixed cost per request, in milliseconds.
    pub sink_cost_ms: f64,
    /// `delivery.batch.maxBytes` and `maxWait` of the batched rows.
    pub max_bytes: u32,
    pub max_wait: String,
    pub repeats: u32,
    pub cap_secs: u64,
    /// maxInFlight ÷ the sink's cost, in requests/s: the unbatched limit if the cost were all.
    pub nominal_unbatched_limit: f64,
    /// A bare hyper client, one record per request at maxInFlight, against the same sink:
    /// requests/s (= records/s) per repeat.
    pub unbatched_limit: Limit,
    pub rows: Vec<Row>,
    pub errors: Vec<String>,
}

/// The settings measured: unbatched first, then each `maxRecords`.
pub fn settings(max_records: &[u32]) -> Vec<Option<u32>> {
    std::iter::once(None)
        .chain(max_records.iter().copied().map(Some))
        .collect()
}

/// `delivery.batch` for a setting; `None` stays unbatched.
pub fn batch_config(max_records: Option<u32>) -> Option<BatchConfig> {
    max_records.map(|max_records| BatchConfig {
        max_records,
        max_bytes: MAX_BYTES,
        max_wait: MAX_WAIT,
    })
}

/// A setting as the report names it.
pub fn label(max_records: Option<u32>) -> String {
    max_records.map_or("unbatched".into(), |n| format!("maxRecords {n}"))
}

/// maxInFlight ÷ `cost`, in requests/s; NaN for a zero cost.
pub fn nominal_limit(max_in_flight: u32, cost: Duration) -> f64 {
    if cost.is_zero() {
        return f64::NAN;
    }
    f64::from(max_in_flight) / cost.as_secs_f64()
}

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<Batch> {
    let plan = ctx.plan;
    let p = plan.batch_partitions;
    let mif = plan.batch_max_in_flight;
    let cost = Duration::from_micros(plan.batch_sink_cost_us);
    let topic = ctx.topic("batch", p).await?;
    // The mock broker keeps 5 MiB per partition.
    let records = ctx
        .broker
        .records_per_partition(plan.value_size)
        .map_or(plan.batch_records, |per| {
            plan.batch_records.min(per * p as u64)
        });
    let spec = Preload {
        topic: topic.clone(),
        partitions: p,
        records,
        keys_per_partition: plan.throughput_keys_per_partition,
        value_size: plan.value_size,
        batch_bytes: plan.preload_batch_bytes,
    };
    let took = kafka::preload(&ctx.bootstrap, &spec)?;
    eprintln!("[batch] preloaded {records} records into {topic} ({p} partitions) in {took:.1?}");
    let settings = settings(&plan.batch_max_records);
    let cap = Duration::from_secs(plan.batch_cap_secs);
    let body = untimed_payload(plan.value_size);
    let runs = ORDERINGS.len() * settings.len();
    let mut limit = Vec::new();
    let mut rate = vec![Vec::new(); runs];
    let mut per_request = vec![Vec::new(); runs];
    let mut cpu = vec![Vec::new(); runs];
    let mut capped = vec![0u32; runs];
    let mut errors = Vec::new();
    for r in 0..plan.repeat {
        let tag = format!("[batch {}/{}]", r + 1, plan.repeat);
        ctx.sink.reset(Delay::Fixed(cost), false);
        client::drive(&ctx.sink.url(), mif as usize, records, body.clone()).await?;
        let lim = ctx.sink.counts().rate();
        eprintln!("{tag} unbatched limit at {mif} in flight, {cost:?} per request: {lim:.0} req/s");
        limit.push(lim);
        for (o, &ordering) in ORDERINGS.iter().enumerate() {
            for (b, &max_records) in settings.iter().enumerate() {
                let k = o * settings.len() + b;
                let name = format!("{} {}", ordering_name(ordering), label(max_records));
                let setup = ctx.setup(&topic, ordering, mif, batch_config(max_records));
                let (x, rpr, per_10k) = match ctx
                    .drain_setup(&setup, p, records, Delay::Fixed(cost), cap)
                    .await
                {
                    Ok(d) => {
                        if d.counts.done > records {
                            errors.push(format!(
                                "{name}: {} duplicate deliveries",
                                d.counts.done - records
                            ));
                        }
                        if d.capped() {
                            capped[k] += 1;
                            eprintln!(
                                "  capped after {cap:?}: {} of {records} delivered",
                                d.counts.done
                            );
                        }
                        (
                            d.counts.rate(),
                            d.counts.records_per_request().unwrap_or(f64::NAN),
                            d.cpu_per_10k().unwrap_or(f64::NAN),
                        )
                    }
                    Err(e) => {
                        errors.push(format!("{name}: {e:#}"));
                        (f64::NAN, f64::NAN, f64::NAN)
                    }
                };
                eprintln!(
                    "{tag} sidecar {name}: {x:.0} rec/s, {rpr:.1} records per request ({:.2} of the unbatched limit), {per_10k:.3} CPU s per 10k",
                    x / lim
                );
                rate[k].push(x);
                per_request[k].push(rpr);
                cpu[k].push(per_10k);
            }
        }
    }
    let mut rows = Vec::new();
    for (o, &ordering) in ORDERINGS.iter().enumerate() {
        for (b, &max_records) in settings.iter().enumerate() {
            let k = o * settings.len() + b;
            rows.push(Row {
                ordering: ordering_name(ordering),
                max_records,
                rate: Summary::of(&rate[k]),
                ratio_to_unbatched_limit: ratios(&rate[k], &limit),
                samples: rate[k].clone(),
                records_per_request: Summary::of(&per_request[k]),
                records_per_request_samples: per_request[k].clone(),
                cpu_per_10k: Summary::of(&cpu[k]),
                cpu_per_10k_samples: cpu[k].clone(),
                capped_runs: capped[k],
            });
        }
    }
    Ok(Batch {
        records,
        partitions: p,
        value_size: plan.value_size,
        keys_per_partition: plan.throughput_keys_per_partition,
        max_in_flight: mif,
        sink_cost_ms: cost.as_secs_f64() * 1e3,
        max_bytes: MAX_BYTES,
        max_wait: MAX_WAIT.to_string(),
        repeats: plan.repeat,
        cap_secs: plan.batch_cap_secs,
        nominal_unbatched_limit: nominal_limit(mif, cost),
        unbatched_limit: Limit {
            at: mif,
            summary: Summary::of(&limit),
            samples: limit,
        },
        rows,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbatched_comes_first_then_each_max_records() {
        assert_eq!(
            settings(&[1, 10, 100]),
            vec![None, Some(1), Some(10), Some(100)]
        );
        assert_eq!(settings(&[]), vec![None]);
        assert_eq!(label(None), "unbatched");
        assert_eq!(label(Some(10)), "maxRecords 10");
    }

    #[test]
    fn a_batch_setting_is_bounded_by_max_records_alone_with_no_wait() {
        assert_eq!(batch_config(None), None);
        let b = batch_config(Some(100)).expect("batched");
        assert_eq!((b.max_records, b.max_wait.as_std()), (100, Duration::ZERO));
        // 100 records of 1 KiB (and their keys) fit well under maxBytes.
        assert!(100 * 1100 < b.max_bytes);
    }

    #[test]
    fn the_nominal_limit_is_requests_in_flight_over_the_cost() {
        assert_eq!(nominal_limit(16, Duration::from_millis(2)), 8000.0);
        assert_eq!(nominal_limit(1, Duration::from_micros(500)), 2000.0);
        assert!(nominal_limit(16, Duration::ZERO).is_nan());
    }
}
