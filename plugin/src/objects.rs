//! From the command line to what is sent: the [`Action`] a command asks for, the exact
//! `KafkaConsumerProxyOperation` an operation command creates, and the pause/resume patch.
//!
//! Pure: `now` is passed in. Refuses locally, in terms of the flags, what the CRD's schema and
//! rules would refuse (so a typo fails before a round trip, with a message naming the flag);
//! what needs the proxy itself is [`check_against_proxy`].

use std::collections::BTreeMap;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::Timestamp,
};
use kcp_crds::{
    KafkaConsumerProxy,
    v1alpha1::{
        KafkaConsumerProxyOperation, KafkaConsumerProxyOperationSpec, RedriveSpec, SeekSpec,
        SkipSpec,
    },
};
use serde_json::{Value, json};

use crate::{
    cli::{Command, RedriveArgs, SeekArgs, SkipArgs},
    dlq::Coordinates,
    error::UsageError,
    when::parse_time,
};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "kubectl-kcp";
/// The label naming the proxy an operation is for.
pub const PROXY_LABEL: &str = "kafkaproxy.io/proxy";
/// Longest object name Kubernetes takes (a DNS subdomain).
const MAX_NAME: usize = 253;

/// What a command asks for, its arguments checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Status {
        proxy: String,
    },
    SetPaused {
        proxy: String,
        paused: bool,
    },
    Operate {
        proxy: String,
        op: Op,
        dry_run: bool,
        wait: bool,
    },
    Dlq {
        proxy: String,
        limit: u16,
        show: Option<Coordinates>,
        full: bool,
        bootstrap_server: Option<String>,
        kafka_config: Vec<(String, String)>,
    },
}

/// One operation's spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Rewind(SeekSpec),
    FastForward(SeekSpec),
    Skip(SkipSpec),
    Redrive(RedriveSpec),
}

impl Op {
    /// The command's name, as in the operation's name: `rewind`, `fast-forward`, ...
    pub fn verb(&self) -> &'static str {
        match self {
            Op::Rewind(_) => "rewind",
            Op::FastForward(_) => "fast-forward",
            Op::Skip(_) => "skip",
            Op::Redrive(_) => "redrive",
        }
    }

    /// The topic the operation is limited to, if any.
    fn topic(&self) -> Option<&str> {
        match self {
            Op::Rewind(s) | Op::FastForward(s) => s.topic.as_deref(),
            Op::Skip(s) => Some(&s.topic),
            Op::Redrive(_) => None,
        }
    }
}

/// Checks `command`'s arguments together and says what to do; times like `2h` are made
/// absolute from `now`.
pub fn plan(command: &Command, now: Timestamp) -> Result<Action, UsageError> {
    let operate = |name: &str, op, run: crate::cli::RunArgs| Action::Operate {
        proxy: name.to_owned(),
        op,
        dry_run: run.dry_run,
        wait: run.wait,
    };
    Ok(match command {
        Command::Status(p) => Action::Status {
            proxy: p.name.clone(),
        },
        Command::Pause(p) | Command::Resume(p) => Action::SetPaused {
            proxy: p.name.clone(),
            paused: matches!(command, Command::Pause(_)),
        },
        Command::Rewind(a) => operate(&a.name, Op::Rewind(seek(a, Direction::Back, now)?), a.run),
        Command::FastForward(a) => operate(
            &a.name,
            Op::FastForward(seek(a, Direction::Ahead, now)?),
            a.run,
        ),
        Command::Skip(a) => operate(&a.name, Op::Skip(skip(a)?), a.run),
        Command::Redrive(a) => operate(&a.name, Op::Redrive(redrive(a, now)?), a.run),
        Command::Dlq(a) => Action::Dlq {
            proxy: a.name.clone(),
            limit: a.limit,
            show: a.show.clone(),
            full: a.full,
            bootstrap_server: a.bootstrap_server.clone(),
            kafka_config: a.kafka_config.clone(),
        },
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Back,
    Ahead,
}

fn seek(a: &SeekArgs, direction: Direction, now: Timestamp) -> Result<SeekSpec, UsageError> {
    let (verb, end, wrong) = match direction {
        Direction::Back => ("rewind", "--to-earliest", a.to_latest),
        Direction::Ahead => ("fast-forward", "--to-latest", a.to_earliest),
    };
    if wrong {
        return Err(UsageError::new(match direction {
            Direction::Back => {
                "rewind moves back: use --to-time, --to-offset or --to-earliest (fast-forward takes --to-latest)"
            }
            Direction::Ahead => {
                "fast-forward moves ahead: use --to-time, --to-offset or --to-latest (rewind takes --to-earliest)"
            }
        }));
    }
    let to_end = match direction {
        Direction::Back => a.to_earliest,
        Direction::Ahead => a.to_latest,
    };
    let given: Vec<&str> = [
        (a.to_time.is_some(), "--to-time"),
        (a.to_offset.is_some(), "--to-offset"),
        (to_end, end),
    ]
    .into_iter()
    .filter_map(|(set, flag)| set.then_some(flag))
    .collect();
    match given.as_slice() {
        [] => {
            return Err(UsageError(format!(
                "{verb} needs one of --to-time, --to-offset or {end}"
            )));
        }
        [_] => {}
        many => {
            return Err(UsageError(format!(
                "{verb} takes exactly one of --to-time, --to-offset or {end}; got {}",
                many.join(" and ")
            )));
        }
    }
    if a.to_offset.is_some() && (a.topic.is_none() || a.partitions.is_empty()) {
        return Err(UsageError::new(
            "--to-offset is an offset of particular partitions: add --topic and at least one --partition",
        ));
    }
    if !a.partitions.is_empty() && a.topic.is_none() {
        return Err(UsageError::new(
            "--partition is a partition of one topic: add --topic",
        ));
    }
    let topic = a
        .topic
        .as_deref()
        .map(|t| topic_name("--topic", t))
        .transpose()?;
    let to_time = a
        .to_time
        .as_deref()
        .map(|t| time("--to-time", t, now))
        .transpose()?;
    let mut partitions = a.partitions.clone();
    partitions.sort_unstable();
    partitions.dedup();
    if partitions.len() > 1000 {
        return Err(UsageError::new("at most 1000 --partition values"));
    }
    Ok(SeekSpec {
        to_time,
        to_offset: a.to_offset,
        to_earliest: (direction == Direction::Back && to_end).then_some(true),
        to_latest: (direction == Direction::Ahead && to_end).then_some(true),
        topic,
        partitions: (!partitions.is_empty()).then_some(partitions),
    })
}

fn skip(a: &SkipArgs) -> Result<SkipSpec, UsageError> {
    let missing: Vec<&str> = [
        (a.topic.is_none(), "--topic"),
        (a.partition.is_none(), "--partition"),
        (a.offset.is_none(), "--offset"),
    ]
    .into_iter()
    .filter_map(|(absent, flag)| absent.then_some(flag))
    .collect();
    let (Some(topic), Some(partition), Some(offset)) = (&a.topic, a.partition, a.offset) else {
        return Err(UsageError(format!(
            "skip needs the record's coordinates: --topic, --partition and --offset (missing {})",
            missing.join(", ")
        )));
    };
    if a.reason.as_ref().is_some_and(|r| r.chars().count() > 1024) {
        return Err(UsageError::new("--reason is at most 1024 characters"));
    }
    Ok(SkipSpec {
        topic: topic_name("--topic", topic)?,
        partition,
        offset,
        reason: a.reason.clone(),
    })
}

fn redrive(a: &RedriveArgs, now: Timestamp) -> Result<RedriveSpec, UsageError> {
    let since = a
        .since
        .as_deref()
        .map(|t| time("--since", t, now))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|t| time("--until", t, now))
        .transpose()?;
    if let (Some(s), Some(u)) = (&since, &until)
        && s.0 >= u.0
    {
        return Err(UsageError::new("--since must be before --until"));
    }
    if a.reason_contains
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.chars().count() > 256)
    {
        return Err(UsageError::new("--reason-contains is 1 to 256 characters"));
    }
    let defaults = RedriveSpec::default();
    Ok(RedriveSpec {
        since,
        until,
        reason_contains: a.reason_contains.clone(),
        rate_per_second: a.rate.unwrap_or(defaults.rate_per_second),
        max_redrives: a.max_redrives.unwrap_or(defaults.max_redrives),
        max_records: a.max_records,
    })
}

fn time(flag: &str, text: &str, now: Timestamp) -> Result<Time, UsageError> {
    parse_time(text, now).map(Time).ok_or_else(|| {
        UsageError(format!(
            "{flag} {text:?}: write an RFC 3339 time (2026-11-29T10:00:00Z) or a duration ago (10m, 2h, 1d)"
        ))
    })
}

fn topic_name(flag: &str, topic: &str) -> Result<String, UsageError> {
    if topic.is_empty() || topic.len() > 249 {
        return Err(UsageError(format!("{flag} is 1 to 249 characters")));
    }
    Ok(topic.to_owned())
}

/// `<proxy>-<verb>-<yyyymmdd-hhmmss>` in UTC, lowercase; the proxy part is shortened so the
/// whole fits a Kubernetes name.
pub fn operation_name(proxy: &str, verb: &str, now: Timestamp) -> String {
    let suffix = format!("-{verb}-{}", now.strftime("%Y%m%d-%H%M%S"));
    let room = MAX_NAME.saturating_sub(suffix.len());
    let proxy: String = proxy.to_lowercase().chars().take(room).collect();
    // A shortened name must still end a DNS label with a letter or digit.
    format!("{}{suffix}", proxy.trim_end_matches(['-', '.']))
}

/// The operation to create in `namespace` for `proxy`: named by [`operation_name`], labelled
/// with [`PROXY_LABEL`].
pub fn operation(
    namespace: &str,
    proxy: &str,
    op: &Op,
    now: Timestamp,
) -> KafkaConsumerProxyOperation {
    let mut spec = KafkaConsumerProxyOperationSpec {
        proxy: proxy.to_owned(),
        rewind: None,
        fast_forward: None,
        skip: None,
        redrive: None,
    };
    match op.clone() {
        Op::Rewind(s) => spec.rewind = Some(s),
        Op::FastForward(s) => spec.fast_forward = Some(s),
        Op::Skip(s) => spec.skip = Some(s),
        Op::Redrive(r) => spec.redrive = Some(r),
    }
    let mut o = KafkaConsumerProxyOperation::new(&operation_name(proxy, op.verb(), now), spec);
    o.metadata = ObjectMeta {
        namespace: Some(namespace.to_owned()),
        labels: Some(BTreeMap::from([(PROXY_LABEL.to_owned(), proxy.to_owned())])),
        ..o.metadata
    };
    o
}

/// What the operator would refuse once it reads the proxy: a topic that is not the proxy's.
pub fn check_against_proxy(op: &Op, proxy: &KafkaConsumerProxy) -> Result<(), UsageError> {
    let topics = &proxy.spec.kafka.topics;
    match op.topic() {
        Some(t) if !topics.iter().any(|p| p == t) => Err(UsageError(format!(
            "topic {t:?} is not one of {}'s topics ({})",
            proxy.metadata.name.as_deref().unwrap_or_default(),
            topics.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// The JSON merge patch of `kubectl kcp pause` (`true`) and `resume` (`false`).
pub fn paused_patch(paused: bool) -> Value {
    json!({ "spec": { "paused": paused } })
}
