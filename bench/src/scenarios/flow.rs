//! What the flow scenarios (capacity, outage) share: the topic they read, a sidecar run against
//! the app model from its first request, sampling its limit, and its counters at the end.
//!
//! Both run the sidecar in `key` order on 8 partitions (256 keys each: parallel enough for 64
//! in flight) with the resource's default retries and `onExhausted: deadLetter` (`Flow::
//! resource_retry`), so a record given up is counted as a user would see it: dead-lettered.

use std::{sync::Arc, time::Duration};

use anyhow::bail;
use kcp_crds::v1alpha1::Ordering;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::Ctx;
use crate::{
    kafka::{self, Preload},
    sidecar::{Flow, SidecarProc},
    sink::app::App,
};

pub const PARTITIONS: i32 = 8;
pub const ORDERING: Ordering = Ordering::Key;
/// Small values: the figures are about flow, and the mock broker keeps 5 MiB per partition.
pub const VALUE_SIZE: usize = 100;
/// How often the sidecar child reports its stats.
const SAMPLE: Duration = Duration::from_millis(250);

/// A fresh topic with `records` (at most what the broker keeps) and its dead-letter topic.
/// Returns its name and how many records it holds.
pub async fn topic(ctx: &Ctx<'_>, what: &str, records: u64) -> anyhow::Result<(String, u64)> {
    let topic = ctx.topic(what, PARTITIONS).await?;
    ctx.broker.create_topic(&format!("{topic}-dlq"), 1).await?;
    let records = ctx
        .broker
        .records_per_partition(VALUE_SIZE)
        .map_or(records, |per| records.min(per * PARTITIONS as u64));
    let spec = Preload {
        topic: topic.clone(),
        partitions: PARTITIONS,
        records,
        keys_per_partition: ctx.plan.throughput_keys_per_partition,
        value_size: VALUE_SIZE,
        batch_bytes: ctx.plan.preload_batch_bytes,
    };
    let took = kafka::preload(&ctx.bootstrap, &spec)?;
    eprintln!("[{what}] preloaded {records} records into {topic} in {took:.1?}");
    Ok((topic, records))
}

/// Puts `app` behind the sink, starts a sidecar on `topic` and waits for its first request.
/// Returns the child and when that request arrived (ns on [`crate::clock`]).
pub async fn start(
    ctx: &Ctx<'_>,
    topic: &str,
    app: &Arc<App>,
    max_in_flight: u32,
    flow: Flow,
) -> anyhow::Result<(SidecarProc, u64)> {
    ctx.sink.reset_app(Arc::clone(app));
    let child = ctx
        .start_sidecar(topic, PARTITIONS, ORDERING, max_in_flight, Vec::new(), flow)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let first = ctx.sink.counts().first_arrival_ns;
        if first != u64::MAX {
            return Ok((child, first));
        }
        if Instant::now() > deadline {
            child.stop(Duration::from_secs(10)).await?;
            bail!("the sidecar sent nothing within 30 s of joining");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until `until`, noting the sidecar's `concurrencyLimit` every 250 ms into `limits`.
pub async fn sample_until(child: &SidecarProc, until: Instant, limits: &mut Vec<f64>) {
    loop {
        let now = Instant::now();
        if now >= until {
            return;
        }
        tokio::time::sleep((until - now).min(SAMPLE)).await;
        if let Some(limit) = child
            .stats()
            .and_then(|v| v.get("concurrencyLimit").and_then(Value::as_u64))
        {
            limits.push(limit as f64);
        }
    }
}

/// The sidecar's counters at the end of a run.
#[derive(Clone, Copy, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub received: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    pub endpoint_outages: u64,
}

impl Counters {
    /// Records given up: dead-lettered or skipped.
    pub fn given_up(&self) -> u64 {
        self.dead_lettered + self.skipped
    }
}

/// Reads the counters once the child has reported after the run's end, then stops it.
pub async fn finish(child: SidecarProc) -> anyhow::Result<Counters> {
    tokio::time::sleep(SAMPLE + Duration::from_millis(50)).await;
    let c = Counters {
        received: child.stat_u64("received"),
        delivered: child.stat_u64("delivered"),
        retried: child.stat_u64("retried"),
        dead_lettered: child.stat_u64("deadLettered"),
        skipped: child.stat_u64("skipped"),
        endpoint_outages: child.stat_u64("endpointOutages"),
    };
    child.stop(Duration::from_secs(30)).await?;
    Ok(c)
}
