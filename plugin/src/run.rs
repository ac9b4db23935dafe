//! Runs one command: plan it (pure), then read or write through `kube` and `kafka`, and print
//! through `render`.
//!
//! Orchestration only: no formatting of objects and no API or Kafka details here. Results go
//! to `out`, notes and warnings to `err`.

use std::io::Write;

use k8s_openapi::jiff::Timestamp;
use kcp_crds::{KafkaConsumerProxy, v1alpha1::Phase};

use crate::{
    cli::Cli,
    dlq::{Coordinates, dead_letter_topics, group_of, of_group},
    error::Error,
    kafka::{self, KafkaAccess, KafkaError, Limits},
    kube::{Kube, kubeconfig},
    objects::{Action, Op, check_against_proxy, operation, paused_patch, plan},
    render,
};

/// Runs `cli`; the exit code (0, or 1 for an operation that Failed under `--wait`).
pub async fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, Error> {
    let now = Timestamp::now();
    let action = plan(&cli.command, now)?;
    let context = cli.context.as_deref();
    // A dry run sends nothing: only the namespace may come from the kubeconfig.
    if let Action::Operate {
        proxy,
        op,
        dry_run: true,
        ..
    } = &action
    {
        let namespace = match cli.namespace {
            Some(n) => n,
            None => kubeconfig(context).await?.default_namespace,
        };
        return dry_run(&namespace, proxy, op, now, out);
    }
    let kube = Kube::connect(kubeconfig(context).await?, cli.namespace)?;
    execute(&kube, action, now, out, err).await
}

/// Carries out `action` through `kube`; `now` names created operations.
pub async fn execute(
    kube: &Kube,
    action: Action,
    now: Timestamp,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, Error> {
    match action {
        Action::Status { proxy } => {
            let p = kube.proxy(&proxy).await?;
            let operations = kube.list_operations().await;
            out.write_all(render::status_screen(&p, &operations, now).as_bytes())?;
            Ok(0)
        }
        Action::SetPaused { proxy, paused } => set_paused(kube, &proxy, paused, out).await,
        Action::Operate {
            proxy,
            op,
            dry_run: true,
            ..
        } => dry_run(&kube.namespace, &proxy, &op, now, out),
        Action::Operate {
            proxy, op, wait, ..
        } => operate(kube, &proxy, &op, wait, now, out).await,
        Action::Dlq {
            proxy,
            limit,
            show,
            full,
            bootstrap_server,
            kafka_config,
        } => {
            let p = kube.proxy(&proxy).await?;
            let access = KafkaAccess::new(
                bootstrap_server.unwrap_or_else(|| p.spec.kafka.bootstrap_servers.clone()),
                kafka_config,
            );
            if p.spec.kafka.auth.is_some()
                && !access.config.iter().any(|(k, _)| k == "security.protocol")
            {
                writeln!(
                    err,
                    "note: {proxy} uses spec.kafka.auth; pass the same settings with --kafka-config (security.protocol=..., sasl.username=..., ssl.ca.location=...)"
                )?;
            }
            match show {
                Some(at) => show_one(access, at, full, out).await,
                None => list(&p, &proxy, access, limit, out, err).await,
            }
        }
    }
}

/// Prints the operation that would be created, as YAML.
fn dry_run(
    namespace: &str,
    proxy: &str,
    op: &Op,
    now: Timestamp,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    let o = operation(namespace, proxy, op, now);
    let yaml = serde_yaml::to_string(&o).expect("invariant: an operation always serializes");
    out.write_all(yaml.as_bytes())?;
    Ok(0)
}

async fn set_paused(
    kube: &Kube,
    name: &str,
    paused: bool,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    let ns = &kube.namespace;
    let before = kube.proxy(name).await?;
    if before.spec.paused == paused {
        let state = if paused {
            "already paused"
        } else {
            "not paused"
        };
        writeln!(
            out,
            "KafkaConsumerProxy {ns}/{name} is {state} (spec.paused: {paused}); nothing changed."
        )?;
        return Ok(0);
    }
    let after = kube.merge_patch_proxy(name, &paused_patch(paused)).await?;
    if paused {
        writeln!(
            out,
            "Paused KafkaConsumerProxy {ns}/{name} (spec.paused: true)."
        )?;
        writeln!(
            out,
            "The pods apply it within about a minute: they finish the records they took, then take no more, keeping their partitions; lag keeps being reported."
        )?;
        writeln!(out, "Resume with: kubectl kcp resume {name} -n {ns}")?;
    } else {
        writeln!(
            out,
            "Resumed KafkaConsumerProxy {ns}/{name} (spec.paused: false)."
        )?;
        writeln!(
            out,
            "The pods apply it within about a minute and deliver again from where they stopped."
        )?;
    }
    if after.spec.suspend {
        writeln!(
            out,
            "Note: spec.suspend is also set, so no pod runs until it is cleared."
        )?;
    }
    Ok(0)
}

async fn operate(
    kube: &Kube,
    proxy: &str,
    op: &Op,
    wait: bool,
    now: Timestamp,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    let ns = kube.namespace.clone();
    let p = kube.proxy(proxy).await?;
    check_against_proxy(op, &p)?;
    let o = operation(&ns, proxy, op, now);
    kube.create_operation(&o).await?;
    let name = o.metadata.name.clone().unwrap_or_default();
    writeln!(
        out,
        "Created KafkaConsumerProxyOperation {ns}/{name} ({} of {proxy}).",
        op.verb()
    )?;
    if !wait {
        writeln!(
            out,
            "The operator runs it; follow it with: kubectl get kcpop {name} -n {ns} -w"
        )?;
        return Ok(0);
    }
    writeln!(
        out,
        "Waiting for it to finish (Ctrl-C stops waiting; the operation keeps running)."
    )?;
    out.flush()?;
    let mut log = render::FollowLog::default();
    let mut write_error = None;
    let status = kube
        .follow_operation(&name, |s| {
            if let Some(line) = log.line(s, Timestamp::now())
                && let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush())
            {
                write_error.get_or_insert(e);
            }
        })
        .await?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    out.write_all(render::outcome(&status).as_bytes())?;
    Ok(if status.phase == Some(Phase::Succeeded) {
        0
    } else {
        1
    })
}

async fn show_one(
    access: KafkaAccess,
    at: Coordinates,
    full: bool,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    let wanted = at.clone();
    let read =
        tokio::task::spawn_blocking(move || kafka::read_one(&access, &wanted, Limits::default()))
            .await
            .expect("invariant: the Kafka read does not panic")?;
    match read {
        Some(r) => {
            out.write_all(render::dlq::record(&r, full).as_bytes())?;
            Ok(0)
        }
        None => Err(Error::RecordNotFound { at: at.to_string() }),
    }
}

async fn list(
    p: &KafkaConsumerProxy,
    proxy: &str,
    access: KafkaAccess,
    limit: u16,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, Error> {
    let topics = dead_letter_topics(proxy, &p.spec).map_err(Error::DeadLetterOff)?;
    if let Some(note) = &topics.note {
        writeln!(err, "note: {note}")?;
    }
    let names = topics.topics.clone();
    let bootstrap = access.bootstrap_servers.clone();
    let read = tokio::task::spawn_blocking(move || {
        kafka::read_newest(&access, &names, limit, Limits::default())
    })
    .await
    .expect("invariant: the Kafka read does not panic");
    let read = match read {
        Ok(read) => read,
        Err(e @ KafkaError::Unreachable { .. }) => {
            let recent = p
                .status
                .as_ref()
                .and_then(|s| s.dead_letter.as_ref())
                .map(|d| d.recent.clone())
                .unwrap_or_default();
            writeln!(
                err,
                "warning: {e}; showing the recent dead letters the proxy's status keeps instead (original coordinates only). Reach Kafka with --bootstrap-server (e.g. through a port-forward)."
            )?;
            if recent.is_empty() {
                writeln!(out, "The status of {proxy} lists no recent dead letters.")?;
            } else {
                out.write_all(render::dlq::from_status(&recent).as_bytes())?;
            }
            return Ok(0);
        }
        Err(e) => return Err(e.into()),
    };
    for t in &read.missing_topics {
        writeln!(
            err,
            "note: dead-letter topic {t} does not exist at {bootstrap} (nothing was dead-lettered there, or it was never created)"
        )?;
    }
    if !read.incomplete.is_empty() {
        writeln!(
            err,
            "warning: not read to the end in time: {}",
            read.incomplete.join(", ")
        )?;
    }
    let group = group_of(p);
    let (records, others) = of_group(read.records, &group);
    if others > 0 {
        writeln!(
            err,
            "note: {others} of the records read were dead-lettered by other consumer groups (not {group}) and are left out"
        )?;
    }
    if records.is_empty() {
        writeln!(
            out,
            "No dead letters of {group} in {}.",
            topics.topics.join(", ")
        )?;
    } else {
        out.write_all(render::dlq::listing(&records).as_bytes())?;
        writeln!(
            err,
            "(newest first; `kubectl kcp dlq {proxy} --show TOPIC/PARTITION/OFFSET` prints one in full)"
        )?;
    }
    Ok(0)
}
