//! Added latency at a fixed request rate.
//!
//! Every path gets the same rate of 1 KiB values carrying their send time ([`crate::clock`]),
//! after one untimed warm-up record or request (so connecting is not measured):
//!
//! - HTTP limit: the bare hyper client to the sink;
//! - Kafka transit: a fixed-rate producer to a bare consumer (informative);
//! - bare forwarder: producer → bare consumer → bare hyper client → sink, in this process, the
//!   leanest possible Kafka-to-HTTP hop;
//! - end to end: producer → sidecar → sink.
//!
//! The figure is end to end minus the HTTP limit, per percentile; it still contains the
//! Kafka transit, so end to end minus the bare forwarder (the sidecar's own share) is reported
//! beside it. Differences of percentiles of different records are estimates, not percentiles
//! of a per-record difference.

use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;
use http::Uri;
use kcp_crds::v1alpha1::Ordering;
use rdkafka::{Message, Offset};
use serde::Serialize;

use super::{Ctx, Verdict};
use crate::{
    client, kafka,
    sidecar::Flow,
    sink::Delay,
    stats::{Summary, percentile},
};

pub const TARGET_P50_US: f64 = 100.0;
pub const TARGET_P99_US: f64 = 1000.0;
/// The sidecar's defaults (what the operator renders when the resource does not say).
pub const ORDERING: Ordering = Ordering::Partition;
pub const MAX_IN_FLIGHT: u32 = 16;

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Percentiles {
    /// Per repeat, µs.
    pub p50_us: Vec<f64>,
    pub p99_us: Vec<f64>,
    pub p50: Option<Summary>,
    pub p99: Option<Summary>,
}

impl Percentiles {
    fn push(&mut self, sorted_ns: &[u64]) -> (f64, f64) {
        let us = |p| percentile(sorted_ns, p).map_or(f64::NAN, |ns| ns as f64 / 1000.0);
        self.p50_us.push(us(50.0));
        self.p99_us.push(us(99.0));
        (us(50.0), us(99.0))
    }

    fn push_diff(&mut self, a: (f64, f64), b: (f64, f64)) {
        self.p50_us.push(a.0 - b.0);
        self.p99_us.push(a.1 - b.1);
    }

    fn summarize(&mut self) {
        self.p50 = Summary::of(&self.p50_us);
        self.p99 = Summary::of(&self.p99_us);
    }

    fn verdict(&self) -> [Verdict; 2] {
        [
            Verdict::at_most(self.p50.map(|s| s.median), TARGET_P50_US),
            Verdict::at_most(self.p99.map(|s| s.median), TARGET_P99_US),
        ]
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub rate_per_sec: u32,
    pub seconds_per_repeat: f64,
    pub repeats: u32,
    pub ordering: &'static str,
    pub max_in_flight: u32,
    pub partitions: i32,
    pub client_config: Vec<(String, String)>,
    pub http: Percentiles,
    pub kafka_transit: Percentiles,
    pub bare_forwarder: Percentiles,
    pub end_to_end: Percentiles,
    /// End to end minus HTTP: the definition.
    pub added: Percentiles,
    /// End to end minus the bare forwarder: the sidecar's own share.
    pub added_over_bare_forwarder: Percentiles,
    pub verdict_added: [Verdict; 2],
    pub verdict_over_bare_forwarder: [Verdict; 2],
    pub errors: Vec<String>,
}

/// producer → bare consumer → bare hyper client → sink; returns the sink's latencies.
async fn bare_forwarder(
    ctx: &Ctx<'_>,
    dur: Duration,
    overrides: &[(String, String)],
) -> anyhow::Result<Vec<u64>> {
    let plan = ctx.plan;
    let rate = plan.latency_rate;
    let topic = ctx.topic("lat-forwarder", 1).await?;
    ctx.sink.reset(Delay::None, true);
    let (bootstrap, size, overrides) = (ctx.bootstrap.clone(), plan.value_size, overrides.to_vec());
    let uri: Uri = ctx.sink.url().parse()?;
    let http = client::client(16);
    let runtime = tokio::runtime::Handle::current();
    let expected = kafka::timed_records(rate, dur) + 1;
    let forwarder = std::thread::spawn(move || -> anyhow::Result<u64> {
        let c = kafka::assigned_consumer(&bootstrap, &topic, 1, Offset::End, &overrides)?;
        kafka::settle(&c, Duration::from_secs(1))?;
        let producer = kafka::produce_at_rate(bootstrap, topic, 1, rate, dur, size);
        let deadline = std::time::Instant::now() + dur + Duration::from_secs(30);
        let mut n = 0;
        while n < expected && std::time::Instant::now() < deadline {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let body = Bytes::copy_from_slice(m.payload().unwrap_or_default());
                    let (http, uri) = (http.clone(), uri.clone());
                    runtime.spawn(async move { client::post(&http, &uri, body).await });
                    n += 1;
                }
                Some(Err(e)) => bail!("bare forwarder consumer: {e}"),
                None => {}
            }
        }
        producer
            .join()
            .map_err(|_| anyhow::anyhow!("fixed-rate producer panicked"))??;
        Ok(n)
    });
    let forwarded = tokio::task::spawn_blocking(move || forwarder.join())
        .await?
        .map_err(|_| anyhow::anyhow!("bare forwarder panicked"))??;
    let counts = ctx.sink.wait_done(expected, Duration::from_secs(30)).await;
    if forwarded < expected || counts.done < expected {
        bail!(
            "bare forwarder: {forwarded} consumed, {} answered, of {expected}",
            counts.done
        );
    }
    Ok(ctx.sink.take_latencies())
}

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<Latency> {
    let plan = ctx.plan;
    let (rate, secs) = (plan.latency_rate, plan.latency_secs);
    let dur = Duration::from_secs_f64(secs);
    let overrides = ctx.latency_overrides();
    let mut out = Latency {
        rate_per_sec: rate,
        seconds_per_repeat: secs,
        repeats: plan.repeat,
        ordering: crate::sidecar::ordering_name(ORDERING),
        max_in_flight: MAX_IN_FLIGHT,
        partitions: 1,
        client_config: overrides.clone(),
        http: Percentiles::default(),
        kafka_transit: Percentiles::default(),
        bare_forwarder: Percentiles::default(),
        end_to_end: Percentiles::default(),
        added: Percentiles::default(),
        added_over_bare_forwarder: Percentiles::default(),
        verdict_added: [Verdict::NotMeasured; 2],
        verdict_over_bare_forwarder: [Verdict::NotMeasured; 2],
        errors: Vec::new(),
    };
    for r in 0..plan.repeat {
        ctx.sink.reset(Delay::None, true);
        client::fixed_rate(&ctx.sink.url(), rate, dur, plan.value_size).await?;
        let http = out.http.push(&ctx.sink.take_latencies());

        let topic = ctx.topic("lat-kafka", 1).await?;
        let transit = kafka::transit_latency(
            &ctx.bootstrap,
            &topic,
            1,
            rate,
            dur,
            plan.value_size,
            &overrides,
        )?;
        let kafka = out.kafka_transit.push(&transit);

        let fwd = out
            .bare_forwarder
            .push(&bare_forwarder(ctx, dur, &overrides).await?);

        let topic = ctx.topic("lat-sidecar", 1).await?;
        ctx.sink.reset(Delay::None, true);
        let child = ctx
            .start_sidecar(
                &topic,
                1,
                ORDERING,
                MAX_IN_FLIGHT,
                overrides.clone(),
                Flow::default(),
            )
            .await?;
        // Let the consumer reach its steady fetch loop on the empty topic.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let producer =
            kafka::produce_at_rate(ctx.bootstrap.clone(), topic, 1, rate, dur, plan.value_size);
        let sent = tokio::task::spawn_blocking(move || producer.join())
            .await?
            .map_err(|_| anyhow::anyhow!("fixed-rate producer panicked"))??;
        let counts = ctx.sink.wait_done(sent, Duration::from_secs(60)).await;
        child.stop(Duration::from_secs(30)).await?;
        if counts.done < sent {
            out.errors.push(format!(
                "repeat {}: sidecar delivered {} of {sent}",
                r + 1,
                counts.done
            ));
        }
        let e2e = out.end_to_end.push(&ctx.sink.take_latencies());
        out.added.push_diff(e2e, http);
        out.added_over_bare_forwarder.push_diff(e2e, fwd);
        eprintln!(
            "[latency {}/{}] p50/p99 µs: http {:.0}/{:.0}, kafka {:.0}/{:.0}, bare forwarder {:.0}/{:.0}, sidecar {:.0}/{:.0}",
            r + 1,
            plan.repeat,
            http.0,
            http.1,
            kafka.0,
            kafka.1,
            fwd.0,
            fwd.1,
            e2e.0,
            e2e.1,
        );
    }
    for p in [
        &mut out.http,
        &mut out.kafka_transit,
        &mut out.bare_forwarder,
        &mut out.end_to_end,
        &mut out.added,
        &mut out.added_over_bare_forwarder,
    ] {
        p.summarize();
    }
    out.verdict_added = out.added.verdict();
    out.verdict_over_bare_forwarder = out.added_over_bare_forwarder.verdict();
    Ok(out)
}
