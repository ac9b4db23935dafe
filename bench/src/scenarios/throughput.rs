//! Throughput: records/s through the sidecar for every maxInFlight × ordering × partition
//! count, each as a ratio to the HTTP limit (bare hyper client, same concurrency) and to the
//! Kafka limit (bare consumer, same topic) and to the bare forwarder (consumer + hyper client,
//! same topic and concurrency: [`crate::forwarder`]) measured in the same repeat, with the CPU
//! seconds per 10,000 records of the sidecar and of the bare forwarder.

use std::time::Duration;

use kcp_crds::v1alpha1::Ordering;
use serde::Serialize;

use super::{Ctx, Verdict};
use crate::{
    client,
    clock::untimed_payload,
    kafka::{self, FetchSettings, Preload},
    sidecar::ordering_name,
    sink::Delay,
    stats::Summary,
};

pub const ORDERINGS: [Ordering; 3] = [Ordering::Partition, Ordering::Key, Ordering::Unordered];
/// The target: at maxInFlight 64, key or unordered, 8 partitions, ≥ 90% of bare hyper.
pub const TARGET_RATIO: f64 = 0.9;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limit {
    /// Concurrency (HTTP) or partition count (Kafka).
    pub at: u32,
    pub samples: Vec<f64>,
    pub summary: Option<Summary>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub max_in_flight: u32,
    pub ordering: &'static str,
    pub partitions: i32,
    /// Records/s per repeat (NaN where the run failed).
    pub samples: Vec<f64>,
    pub rate: Option<Summary>,
    /// Sidecar / HTTP limit at the same concurrency, per repeat.
    pub ratio_to_http: Option<Summary>,
    /// Sidecar / Kafka limit on the same topic, per repeat.
    pub ratio_to_kafka: Option<Summary>,
    /// Sidecar / bare forwarder at the same concurrency on the same topic, per repeat.
    pub ratio_to_forwarder: Option<Summary>,
    /// The sidecar's CPU seconds (user + system) per 10,000 records, per repeat.
    pub cpu_per_10k_samples: Vec<f64>,
    pub cpu_per_10k: Option<Summary>,
    /// The bare forwarder's CPU seconds per 10,000 records at this concurrency and partition
    /// count (the same for every ordering).
    pub forwarder_cpu_per_10k: Option<Summary>,
    /// Whether the ≥ 90% target applies to this row, and the verdict.
    pub target: Option<Verdict>,
    /// Runs that the time cap ended before every record was delivered.
    pub capped_runs: u32,
}

/// The bare forwarder at one concurrency on one topic.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwarderLimit {
    pub max_in_flight: u32,
    pub partitions: i32,
    /// Records/s per repeat (NaN where the run failed).
    pub samples: Vec<f64>,
    pub summary: Option<Summary>,
    /// CPU seconds (user + system) per 10,000 records, per repeat.
    pub cpu_per_10k_samples: Vec<f64>,
    pub cpu_per_10k: Option<Summary>,
    pub capped_runs: u32,
}

/// Records in one throughput topic (every run drains all of them, unless capped).
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRecords {
    pub partitions: i32,
    pub records: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Throughput {
    pub http_requests_per_run: u64,
    pub topics: Vec<TopicRecords>,
    pub keys_per_partition: u32,
    pub repeats: u32,
    pub cap_secs: u64,
    pub http_limit: Vec<Limit>,
    /// Bare consumer with the sidecar's fetch settings: the ratio's denominator.
    pub kafka_limit: Vec<Limit>,
    /// Bare consumer with librdkafka's defaults, for comparison.
    pub kafka_limit_librdkafka_defaults: Vec<Limit>,
    /// The bare forwarder per maxInFlight × partition count.
    pub bare_forwarder: Vec<ForwarderLimit>,
    /// Kafka-limit runs the time cap ended early (rate over what was read).
    pub kafka_capped_runs: u32,
    pub rows: Vec<Row>,
    pub errors: Vec<String>,
}

fn limit(at: u32, samples: Vec<f64>) -> Limit {
    Limit {
        at,
        summary: Summary::of(&samples),
        samples,
    }
}

/// Per-repeat ratios `a[r] / b[r]`, summarized (failed runs, NaN, are left out).
pub(crate) fn ratios(a: &[f64], b: &[f64]) -> Option<Summary> {
    let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    Summary::of(&r)
}

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<Throughput> {
    let plan = ctx.plan;
    let n = plan.throughput_records;
    let mifs = &plan.throughput_max_in_flight;
    let parts = &plan.throughput_partitions;
    let mut topics = Vec::new();
    let mut topic_records = Vec::new();
    for &p in parts {
        let topic = ctx.topic(&format!("tput-p{p}"), p).await?;
        // The mock broker keeps 5 MiB per partition: fewer records on fewer partitions.
        let records = ctx
            .broker
            .records_per_partition(plan.value_size)
            .map_or(n, |per| n.min(per * p as u64));
        let spec = Preload {
            topic: topic.clone(),
            partitions: p,
            records,
            keys_per_partition: plan.throughput_keys_per_partition,
            value_size: plan.value_size,
            batch_bytes: plan.preload_batch_bytes,
        };
        let took = kafka::preload(&ctx.bootstrap, &spec)?;
        eprintln!(
            "[throughput] preloaded {records} records into {topic} ({p} partitions) in {took:.1?}"
        );
        topics.push((p, topic, records));
        topic_records.push(TopicRecords {
            partitions: p,
            records,
        });
    }
    let body = untimed_payload(plan.value_size);
    let mut http = vec![Vec::new(); mifs.len()];
    let mut kafka_lim = vec![Vec::new(); parts.len()];
    let mut kafka_def = vec![Vec::new(); parts.len()];
    let mut kafka_capped = 0;
    let mut capped = vec![vec![vec![0u32; parts.len()]; ORDERINGS.len()]; mifs.len()];
    // [mif][ordering][partitions] -> samples
    let mut samples = vec![vec![vec![Vec::new(); parts.len()]; ORDERINGS.len()]; mifs.len()];
    // [mif][partitions] -> bare forwarder records/s, CPU s per 10k, capped runs
    let mut fwd = vec![vec![Vec::new(); parts.len()]; mifs.len()];
    let mut fwd_cpu = vec![vec![Vec::new(); parts.len()]; mifs.len()];
    let mut fwd_capped = vec![vec![0u32; parts.len()]; mifs.len()];
    let mut cpu = vec![vec![vec![Vec::new(); parts.len()]; ORDERINGS.len()]; mifs.len()];
    let mut errors = Vec::new();
    let cap = Duration::from_secs(plan.throughput_cap_secs);
    for r in 0..plan.repeat {
        for (i, &c) in mifs.iter().enumerate() {
            ctx.sink.reset(Delay::None, false);
            client::drive(&ctx.sink.url(), c as usize, n, body.clone()).await?;
            let rate = ctx.sink.counts().rate();
            eprintln!(
                "[throughput {}/{}] HTTP limit at {c} in flight: {rate:.0} req/s",
                r + 1,
                plan.repeat
            );
            http[i].push(rate);
        }
        for (j, (p, topic, n)) in topics.iter().enumerate() {
            let n = *n;
            for (settings, out) in [
                (FetchSettings::Sidecar, &mut kafka_lim[j]),
                (FetchSettings::Librdkafka, &mut kafka_def[j]),
            ] {
                let d = kafka::drain_bare(
                    &ctx.bootstrap,
                    topic,
                    *p,
                    n,
                    settings,
                    &plan.kafka_settings,
                    cap,
                )?;
                eprintln!(
                    "[throughput {}/{}] Kafka limit ({settings:?} fetch settings), {p} partitions: {:.0} rec/s{}",
                    r + 1,
                    plan.repeat,
                    d.rate(),
                    if d.complete { "" } else { " (capped)" }
                );
                kafka_capped += u32::from(!d.complete);
                out.push(d.rate());
            }
        }
        for (i, &mif) in mifs.iter().enumerate() {
            for (j, (p, topic, n)) in topics.iter().enumerate() {
                let (rate, per_10k) = match ctx.drain_with_forwarder(topic, *p, *n, mif, cap).await
                {
                    Ok(d) => {
                        fwd_capped[i][j] += u32::from(d.capped());
                        (d.counts.rate(), d.cpu_per_10k().unwrap_or(f64::NAN))
                    }
                    Err(e) => {
                        errors.push(format!(
                            "bare forwarder {mif} in flight, {p} partitions: {e:#}"
                        ));
                        (f64::NAN, f64::NAN)
                    }
                };
                eprintln!(
                    "[throughput {}/{}] bare forwarder {mif} in flight {p}p: {rate:.0} rec/s, {per_10k:.3} CPU s per 10k",
                    r + 1,
                    plan.repeat,
                );
                fwd[i][j].push(rate);
                fwd_cpu[i][j].push(per_10k);
            }
            for (o, &ordering) in ORDERINGS.iter().enumerate() {
                for (j, (p, topic, n)) in topics.iter().enumerate() {
                    let n = *n;
                    let res = ctx
                        .drain_with_sidecar(topic, *p, n, ordering, mif, Delay::None, cap)
                        .await;
                    let per_10k = res
                        .as_ref()
                        .ok()
                        .and_then(|d| d.cpu_per_10k())
                        .unwrap_or(f64::NAN);
                    cpu[i][o][j].push(per_10k);
                    let rate = match res {
                        Ok(d) => {
                            if d.counts.done > n {
                                errors.push(format!(
                                    "{mif}/{}/{p}: {} duplicate deliveries",
                                    ordering_name(ordering),
                                    d.counts.done - n
                                ));
                            }
                            if d.capped() {
                                capped[i][o][j] += 1;
                                eprintln!(
                                    "  capped after {cap:?}: {} of {n} delivered",
                                    d.counts.done
                                );
                            }
                            d.counts.rate()
                        }
                        Err(e) => {
                            errors.push(format!(
                                "maxInFlight {mif}, {}, {p} partitions: {e:#}",
                                ordering_name(ordering)
                            ));
                            f64::NAN
                        }
                    };
                    eprintln!(
                        "[throughput {}/{}] sidecar maxInFlight {mif} {} {p}p: {rate:.0} rec/s ({:.2} of HTTP limit, {:.2} of bare forwarder), {per_10k:.3} CPU s per 10k",
                        r + 1,
                        plan.repeat,
                        ordering_name(ordering),
                        rate / http[i][r as usize],
                        rate / fwd[i][j][r as usize]
                    );
                    samples[i][o][j].push(rate);
                }
            }
        }
    }
    let mut rows = Vec::new();
    for (i, &mif) in mifs.iter().enumerate() {
        for (o, &ordering) in ORDERINGS.iter().enumerate() {
            for (j, &p) in parts.iter().enumerate() {
                let s = &samples[i][o][j];
                let ratio_to_http = ratios(s, &http[i]);
                let applies = mif == 64 && p == 8 && ordering != Ordering::Partition;
                rows.push(Row {
                    max_in_flight: mif,
                    ordering: ordering_name(ordering),
                    partitions: p,
                    rate: Summary::of(s),
                    ratio_to_http,
                    ratio_to_kafka: ratios(s, &kafka_lim[j]),
                    ratio_to_forwarder: ratios(s, &fwd[i][j]),
                    cpu_per_10k: Summary::of(&cpu[i][o][j]),
                    cpu_per_10k_samples: cpu[i][o][j].clone(),
                    forwarder_cpu_per_10k: Summary::of(&fwd_cpu[i][j]),
                    target: applies
                        .then(|| Verdict::at_least(ratio_to_http.map(|r| r.median), TARGET_RATIO)),
                    samples: s.clone(),
                    capped_runs: capped[i][o][j],
                });
            }
        }
    }
    Ok(Throughput {
        http_requests_per_run: n,
        topics: topic_records,
        keys_per_partition: plan.throughput_keys_per_partition,
        repeats: plan.repeat,
        cap_secs: plan.throughput_cap_secs,
        http_limit: mifs.iter().zip(http).map(|(&c, s)| limit(c, s)).collect(),
        kafka_limit: parts
            .iter()
            .zip(kafka_lim)
            .map(|(&p, s)| limit(p as u32, s))
            .collect(),
        kafka_limit_librdkafka_defaults: parts
            .iter()
            .zip(kafka_def)
            .map(|(&p, s)| limit(p as u32, s))
            .collect(),
        bare_forwarder: mifs
            .iter()
            .enumerate()
            .flat_map(|(i, &mif)| parts.iter().enumerate().map(move |(j, &p)| (i, j, mif, p)))
            .map(|(i, j, max_in_flight, partitions)| ForwarderLimit {
                max_in_flight,
                partitions,
                summary: Summary::of(&fwd[i][j]),
                samples: fwd[i][j].clone(),
                cpu_per_10k: Summary::of(&fwd_cpu[i][j]),
                cpu_per_10k_samples: fwd_cpu[i][j].clone(),
                capped_runs: fwd_capped[i][j],
            })
            .collect(),
        kafka_capped_runs: kafka_capped,
        rows,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_per_repeat_and_skip_failed_runs() {
        let r = ratios(&[100.0, 90.0, f64::NAN], &[200.0, 100.0, 50.0]).expect("two ratios");
        assert_eq!((r.n, r.min, r.max, r.median), (2, 0.5, 0.9, 0.7));
        assert_eq!(ratios(&[f64::NAN], &[1.0]), None);
        assert_eq!(ratios(&[], &[]), None);
    }
}
