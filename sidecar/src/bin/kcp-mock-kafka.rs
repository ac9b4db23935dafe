//! `kcp-mock-kafka`: a local Kafka-protocol broker for development and reliability tests.
//!
//! Hosts librdkafka's mock cluster (`rdkafka::mocking::MockCluster`: produce, fetch, consumer
//! groups, offset commits, idempotent producer; data lives in memory) in its own process, so a
//! client can be killed and restarted while the broker keeps its data. No network beyond the
//! loopback listeners librdkafka opens on 127.0.0.1.
//!
//! ```text
//! kcp-mock-kafka [--brokers N] [TOPIC:PARTITIONS]...
//! ```
//!
//! Prints the bootstrap servers as one line on stdout, then reads control commands from stdin,
//! one per line, answering each with one line, `ok` or `err <why>`:
//!
//! | command | effect |
//! |---|---|
//! | `topic <name> <partitions>` | create a topic (replication factor 1) |
//! | `down <broker>` / `up <broker>` | disconnect a broker and refuse connections / accept again (`-1`: all) |
//! | `rtt <broker> <ms>` | add round-trip latency to a broker's responses (`-1`: all) |
//! | `leader <topic> <partition> <broker>` | move a partition's leadership |
//! | `errors <api> <count> <error>` | the next `count` requests of `api` fail with `error` |
//! | `clear <api>` | drop the errors still queued for `api` |
//!
//! `api` is one of `Produce Fetch ListOffsets Metadata OffsetCommit OffsetFetch FindCoordinator
//! JoinGroup Heartbeat LeaveGroup SyncGroup InitProducerId`; `error` a Kafka error name such as
//! `NOT_LEADER_FOR_PARTITION`, `REQUEST_TIMED_OUT`, `REBALANCE_IN_PROGRESS`, `NOT_COORDINATOR`,
//! `COORDINATOR_NOT_AVAILABLE`, `LEADER_NOT_AVAILABLE`, `NOT_ENOUGH_REPLICAS`, or `_TRANSPORT`
//! (the broker drops the connection). Brokers are numbered from 1. Exits when stdin closes (or
//! on SIGTERM); the data goes with it.

use std::{
    io::{BufRead, Write},
    process::ExitCode,
    time::Duration,
};

use rdkafka::{
    mocking::MockCluster,
    producer::DefaultProducerContext,
    types::{RDKafkaApiKey, RDKafkaRespErr},
};

type Cluster = MockCluster<'static, DefaultProducerContext>;

fn api(name: &str) -> Option<RDKafkaApiKey> {
    use RDKafkaApiKey::*;
    Some(match name {
        "Produce" => Produce,
        "Fetch" => Fetch,
        "ListOffsets" => ListOffsets,
        "Metadata" => Metadata,
        "OffsetCommit" => OffsetCommit,
        "OffsetFetch" => OffsetFetch,
        "FindCoordinator" => FindCoordinator,
        "JoinGroup" => JoinGroup,
        "Heartbeat" => Heartbeat,
        "LeaveGroup" => LeaveGroup,
        "SyncGroup" => SyncGroup,
        "InitProducerId" => InitProducerId,
        _ => return None,
    })
}

fn error(name: &str) -> Option<RDKafkaRespErr> {
    use RDKafkaRespErr::*;
    Some(match name {
        "NOT_LEADER_FOR_PARTITION" => RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        "REQUEST_TIMED_OUT" => RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        "REBALANCE_IN_PROGRESS" => RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
        "NOT_COORDINATOR" => RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        "COORDINATOR_NOT_AVAILABLE" => RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        "LEADER_NOT_AVAILABLE" => RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        "NOT_ENOUGH_REPLICAS" => RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        "UNKNOWN_TOPIC_OR_PART" => RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        "_TRANSPORT" => RD_KAFKA_RESP_ERR__TRANSPORT,
        _ => return None,
    })
}

fn int<T: std::str::FromStr>(word: Option<&str>, what: &str) -> Result<T, String> {
    word.ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("invalid {what}"))
}

/// Runs one control command.
fn command(cluster: &Cluster, line: &str) -> Result<(), String> {
    let mut w = line.split_whitespace();
    let mock = |r: rdkafka::error::KafkaResult<()>| r.map_err(|e| e.to_string());
    match w.next() {
        Some("topic") => {
            let name = w.next().ok_or("missing topic")?;
            mock(cluster.create_topic(name, int(w.next(), "partitions")?, 1))
        }
        Some("down") => mock(cluster.broker_down(int(w.next(), "broker")?)),
        Some("up") => mock(cluster.broker_up(int(w.next(), "broker")?)),
        Some("rtt") => {
            let broker = int(w.next(), "broker")?;
            let ms: u64 = int(w.next(), "ms")?;
            mock(cluster.broker_round_trip_time(broker, Duration::from_millis(ms)))
        }
        Some("leader") => {
            let topic = w.next().ok_or("missing topic")?;
            let partition = int(w.next(), "partition")?;
            mock(cluster.partition_leader(topic, partition, Some(int(w.next(), "broker")?)))
        }
        Some("errors") => {
            let key = w.next().and_then(api).ok_or("unknown api")?;
            let count: usize = int(w.next(), "count")?;
            let err = w.next().and_then(error).ok_or("unknown error")?;
            if count > 100_000 {
                return Err("count over 100000".into());
            }
            cluster.request_errors(key, &vec![err; count]);
            Ok(())
        }
        Some("clear") => {
            let key = w.next().and_then(api).ok_or("unknown api")?;
            cluster.clear_request_errors(key);
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}")),
        None => Err("empty command".into()),
    }
}

fn main() -> ExitCode {
    let mut brokers = 1;
    let mut topics = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--brokers" {
            match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if (1..=16).contains(&n) => brokers = n,
                _ => {
                    eprintln!("--brokers needs a number from 1 to 16");
                    return ExitCode::from(64);
                }
            }
        } else if let Some((name, n)) = arg.rsplit_once(':')
            && let Ok(n) = n.parse::<i32>()
        {
            topics.push((name.to_owned(), n));
        } else {
            eprintln!("usage: kcp-mock-kafka [--brokers N] [TOPIC:PARTITIONS]...");
            return ExitCode::from(64);
        }
    }
    let cluster = match MockCluster::new(brokers) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mock cluster did not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (name, n) in &topics {
        if let Err(e) = cluster.create_topic(name, *n, 1) {
            eprintln!("topic {name}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", cluster.bootstrap_servers())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let reply = match command(&cluster, &line) {
            Ok(()) => "ok".to_owned(),
            Err(why) => format!("err {why}"),
        };
        if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}
