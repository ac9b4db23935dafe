//! kcp-bench: the benchmark program of kafka-consumer-proxy.
//!
//! One process tree, one run, no network: a Kafka broker on loopback ([`kafka`]; librdkafka's
//! mock cluster unless `KAFKA_BOOTSTRAP_SERVERS` is set), an HTTP [`sink`], the HTTP limit (a
//! bare hyper [`client`]), the Kafka limit (a bare consumer in [`kafka`]), the bare forwarder
//! (both together, as a child process: [`forwarder`]) and the sidecar itself as a child process
//! ([`sidecar`]). Every sidecar figure is reported next to, and as a ratio
//! to, the limit measured in the same run, because the machine is shared and noisy. The
//! [`scenarios`] produce a [`report::Report`], printed as markdown and written as JSON.
//! The one exception is the operator scenario: it needs a cluster (`KUBECONFIG`) and runs the
//! operator as another child ([`operator`]) against it.

pub mod answers;
pub mod cli;
pub mod client;
pub mod clock;
pub mod forwarder;
pub mod kafka;
pub mod machine;
pub mod operator;
pub mod proc;
pub mod prom;
pub mod report;
pub mod scenarios;
pub mod sidecar;
pub mod sink;
pub mod stats;

use std::{
    io::Write as _,
    path::PathBuf,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;

use crate::{
    cli::{Cli, Scenario},
    kafka::Broker,
    machine::Machine,
    report::Report,
    scenarios::{Ctx, Plan, capacity::Phase, operator::OperatorResult},
    sink::Sink,
};

/// The counts and repeats `cli` asks for.
pub fn plan(cli: &Cli) -> Plan {
    let q = cli.quick;
    Plan {
        quick: q,
        repeat: cli.repeat.unwrap_or(if q { 1 } else { 2 }),
        value_size: 1024,
        throughput_records: cli.records.unwrap_or(if q { 2_000 } else { 20_000 }),
        throughput_max_in_flight: if cli.max_in_flight.is_empty() {
            vec![1, 16, 64]
        } else {
            cli.max_in_flight.clone()
        },
        throughput_partitions: if cli.partitions.is_empty() {
            vec![1, 8]
        } else {
            cli.partitions.clone()
        },
        throughput_keys_per_partition: 256,
        latency_rate: cli.latency_rate,
        latency_secs: if q { 1.0 } else { 5.0 },
        backlog: cli.backlog.unwrap_or(if q { 20_000 } else { 1_000_000 }),
        parallel_records: if q { 1_000 } else { 10_000 },
        parallel_keys: vec![20, 1000],
        parallel_max_in_flight: 64,
        parallel_max_sleep_us: 5_000,
        parallel_repeat: cli.parallel_repeat.unwrap_or(1),
        throughput_cap_secs: cli.run_cap_secs.unwrap_or(if q { 3 } else { 4 }),
        backlog_cap_secs: cli.backlog_cap_secs.unwrap_or(if q { 15 } else { 60 }),
        kafka_settings: cli.kafka_settings.clone(),
        preload_batch_bytes: cli.preload_batch_bytes,
        operator_resources: cli.operator_resources.map_or(
            if q {
                100
            } else {
                scenarios::operator::RESOURCES
            },
            |n| n as usize,
        ),
        app_service_ms: 5,
        capacity_phases: [8, 32, 4]
            .map(|capacity| Phase {
                capacity,
                seconds: cli.capacity_phase_secs.unwrap_or(if q { 1.5 } else { 4.0 }),
            })
            .to_vec(),
        capacity_sweep: if !cli.capacity_sweep.is_empty() {
            cli.capacity_sweep.clone()
        } else if q {
            vec![1, 8, 32]
        } else {
            vec![1, 2, 4, 8, 16, 32, 64]
        },
        capacity_adaptive_max_in_flight: 64,
        outage_before_secs: if q { 2.0 } else { 5.0 },
        outage_secs: cli.outage_secs.unwrap_or(if q { 5.0 } else { 30.0 }),
        outage_after_secs: if q { 4.0 } else { 8.0 },
        batch_records: cli.records.unwrap_or(if q { 2_000 } else { 20_000 }),
        batch_partitions: 8,
        batch_max_in_flight: 16,
        batch_max_records: vec![1, 10, 100],
        batch_sink_cost_us: 2_000,
        batch_cap_secs: cli.run_cap_secs.unwrap_or(if q { 3 } else { 15 }),
    }
}

fn wants(cli: &Cli, s: Scenario) -> bool {
    cli.scenarios.is_empty() || cli.scenarios.contains(&s)
}

/// Runs the selected scenarios, prints the markdown table and writes the JSON.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let machine = Machine::detect();
    let started = Instant::now();
    let plan = plan(cli);
    let broker = Broker::start()?;
    let workdir = std::env::temp_dir().join(format!("kcp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&workdir)?;
    let child_exe = sidecar::pin_executable(&workdir)?;
    // Kept (logs for diagnosis) unless the run ends cleanly; the pinned program always goes.
    let mut scratch = Scratch {
        dir: workdir.clone(),
        pinned: child_exe.clone(),
        keep: true,
    };
    eprintln!(
        "kcp-bench: {}; broker: {}; scratch {}",
        machine.line(),
        broker.describe(),
        workdir.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut report = rt.block_on(async {
        let sink = Sink::start().await?;
        let ctx = Ctx::new(&broker, &sink, workdir.clone(), &plan, child_exe.clone());
        let mut report = Report {
            tool: format!("kcp-bench {}", env!("CARGO_PKG_VERSION")),
            started_unix_secs: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            wall_seconds: 0.0,
            machine: machine.clone(),
            broker: broker.describe(),
            sidecar_runner: format!(
                "child process: {} {} (a copy of this program taken at start; kcp_sidecar::serve: the pipeline and admin server on the sidecar's own runtime, as kcp-sidecar runs them), one per run; memory and CPU from /proc/<pid>",
                child_exe.display(),
                sidecar::CHILD_SUBCOMMAND
            ),
            plan: plan.clone(),
            throughput: None,
            batch: None,
            latency: None,
            resources: None,
            parallel: None,
            capacity: None,
            outage: None,
            operator: OperatorResult::NotSelected,
            not_measured: Vec::new(),
        };
        if wants(cli, Scenario::Throughput) {
            match scenarios::throughput::run(&ctx).await {
                Ok(t) => report.throughput = Some(t),
                Err(e) => report.not_measured.push(format!("throughput: {e:#}")),
            }
        }
        if wants(cli, Scenario::Batch) {
            match scenarios::batch::run(&ctx).await {
                Ok(b) => report.batch = Some(b),
                Err(e) => report.not_measured.push(format!("batch: {e:#}")),
            }
        }
        if wants(cli, Scenario::Latency) {
            match scenarios::latency::run(&ctx).await {
                Ok(l) => report.latency = Some(l),
                Err(e) => report.not_measured.push(format!("latency: {e:#}")),
            }
        }
        if wants(cli, Scenario::Resources) {
            match scenarios::resources::run(&ctx).await {
                Ok(r) => report.resources = Some(r),
                Err(e) => report.not_measured.push(format!("resources: {e:#}")),
            }
        }
        if wants(cli, Scenario::Parallel) {
            match scenarios::parallel::run(&ctx).await {
                Ok(p) => report.parallel = Some(p),
                Err(e) => report.not_measured.push(format!("parallel-consumer table: {e:#}")),
            }
        }
        if wants(cli, Scenario::Capacity) {
            match scenarios::capacity::run(&ctx).await {
                Ok(c) => report.capacity = Some(c),
                Err(e) => report.not_measured.push(format!("capacity: {e:#}")),
            }
        }
        if wants(cli, Scenario::Outage) {
            match scenarios::outage::run(&ctx).await {
                Ok(o) => report.outage = Some(o),
                Err(e) => report.not_measured.push(format!("outage: {e:#}")),
            }
        }
        if wants(cli, Scenario::Operator) {
            report.operator = scenarios::operator::run(
                std::env::var_os("KUBECONFIG"),
                plan.operator_resources,
                &child_exe,
                &workdir,
            )
            .await;
        }
        anyhow::Ok(report)
    })?;
    report.wall_seconds = started.elapsed().as_secs_f64();
    if let Some(dir) = cli.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&cli.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", cli.out.display()))?;
    let mut out = std::io::stdout().lock();
    out.write_all(report.markdown().as_bytes())?;
    writeln!(out, "JSON: {}", cli.out.display())?;
    scratch.keep = cli.keep_scratch || report.has_errors();
    if scratch.keep {
        writeln!(
            out,
            "Scratch files (sidecar configs and logs, operator log) kept in {}",
            workdir.display()
        )?;
    }
    drop(broker);
    Ok(())
}

/// The scratch directory (sidecar configs and logs, the operator's log, the pinned program),
/// cleaned up on drop.
struct Scratch {
    dir: PathBuf,
    pinned: PathBuf,
    keep: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pinned);
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn the_operator_scenario_counts_1000_unless_told() {
        let count = |args: &[&str]| {
            let cli = Cli::try_parse_from(std::iter::once("kcp-bench").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(plan(&cli).operator_resources)
        };
        assert_eq!(count(&[]), Ok(1000));
        assert_eq!(count(&["--quick"]), Ok(100));
        assert_eq!(count(&["--operator-resources", "50"]), Ok(50));
        assert_eq!(count(&["--quick", "--operator-resources=2000"]), Ok(2000));
        assert!(count(&["--operator-resources", "0"]).is_err());
    }
}
