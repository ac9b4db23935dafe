//! Argument parsing of every command, and every refusal made before anything is sent: what the
//! CRD would refuse, said in terms of the flags.

#![allow(clippy::unwrap_used)]

use clap::Parser;
use k8s_openapi::jiff::Timestamp;
use kubectl_kcp::{
    cli::Cli,
    dlq::Coordinates,
    objects::{Action, Op, plan},
};

fn now() -> Timestamp {
    "2026-03-01T10:15:30Z".parse().unwrap()
}

/// What the user gets: the planned action, or the message of a clap error or of a refusal.
fn run(args: &[&str]) -> Result<(Cli, Action), String> {
    let argv = std::iter::once("kubectl-kcp").chain(args.iter().copied());
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let action = plan(&cli.command, now()).map_err(|e| e.to_string())?;
    Ok((cli, action))
}

fn action(args: &[&str]) -> Action {
    run(args).unwrap().1
}

fn refusal(args: &[&str]) -> String {
    match run(args) {
        Ok((_, a)) => panic!("{args:?} was accepted: {a:?}"),
        Err(e) => e,
    }
}

#[test]
fn global_flags_before_or_after_the_command() {
    let (cli, _) = run(&["-n", "shop", "--context", "prod", "status", "orders"]).unwrap();
    assert_eq!(cli.namespace.as_deref(), Some("shop"));
    assert_eq!(cli.context.as_deref(), Some("prod"));
    let (cli, _) = run(&["status", "orders", "--namespace", "shop"]).unwrap();
    assert_eq!(cli.namespace.as_deref(), Some("shop"));
    assert_eq!(cli.context, None);
}

#[test]
fn status_pause_resume() {
    assert_eq!(
        action(&["status", "orders"]),
        Action::Status {
            proxy: "orders".into()
        }
    );
    assert_eq!(
        action(&["pause", "orders"]),
        Action::SetPaused {
            proxy: "orders".into(),
            paused: true
        }
    );
    assert_eq!(
        action(&["resume", "orders"]),
        Action::SetPaused {
            proxy: "orders".into(),
            paused: false
        }
    );
    assert!(refusal(&["status"]).contains("<NAME>"));
}

#[test]
fn rewind_forms() {
    let Action::Operate {
        proxy,
        op: Op::Rewind(s),
        dry_run,
        wait,
    } = action(&["rewind", "orders", "--to-earliest", "--wait"])
    else {
        panic!("not a rewind")
    };
    assert_eq!(proxy, "orders");
    assert_eq!(s.to_earliest, Some(true));
    assert!(wait && !dry_run);

    let Action::Operate {
        op: Op::Rewind(s),
        dry_run,
        ..
    } = action(&[
        "rewind",
        "orders",
        "--to-offset",
        "42",
        "--topic",
        "orders",
        "--partition",
        "3",
        "--partition",
        "1,3",
        "--dry-run",
    ])
    else {
        panic!("not a rewind")
    };
    assert!(dry_run);
    assert_eq!(s.to_offset, Some(42));
    assert_eq!(s.topic.as_deref(), Some("orders"));
    assert_eq!(s.partitions, Some(vec![1, 3]), "sorted, without repeats");

    let Action::Operate {
        op: Op::Rewind(s), ..
    } = action(&["rewind", "orders", "--to-time", "2026-02-28T23:00:00+01:00"])
    else {
        panic!("not a rewind")
    };
    assert_eq!(s.to_time.unwrap().0.to_string(), "2026-02-28T22:00:00Z");
}

#[test]
fn to_time_as_a_duration_ago_is_fixed_at_parse_time() {
    for (ago, expected) in [
        ("2h", "2026-03-01T08:15:30Z"),
        ("10m", "2026-03-01T10:05:30Z"),
        ("1d", "2026-02-28T10:15:30Z"),
        ("1h30m", "2026-03-01T08:45:30Z"),
        ("45s", "2026-03-01T10:14:45Z"),
    ] {
        let Action::Operate {
            op: Op::Rewind(s), ..
        } = action(&["rewind", "orders", "--to-time", ago])
        else {
            panic!("not a rewind")
        };
        assert_eq!(s.to_time.unwrap().0.to_string(), expected, "{ago}");
    }
}

#[test]
fn fast_forward_forms() {
    let Action::Operate {
        op: Op::FastForward(s),
        ..
    } = action(&["fast-forward", "orders", "--to-latest", "--topic", "orders"])
    else {
        panic!("not a fast-forward")
    };
    assert_eq!(s.to_latest, Some(true));
    assert_eq!(s.topic.as_deref(), Some("orders"));
    assert_eq!(s.partitions, None);
}

#[test]
fn seek_refusals() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["rewind", "orders"],
            "rewind needs one of --to-time, --to-offset or --to-earliest",
        ),
        (
            &["fast-forward", "orders"],
            "fast-forward needs one of --to-time, --to-offset or --to-latest",
        ),
        (
            &["rewind", "orders", "--to-time", "2h", "--to-earliest"],
            "rewind takes exactly one of --to-time, --to-offset or --to-earliest; got --to-time and --to-earliest",
        ),
        (
            &["rewind", "orders", "--to-latest"],
            "rewind moves back: use --to-time, --to-offset or --to-earliest (fast-forward takes --to-latest)",
        ),
        (
            &["fast-forward", "orders", "--to-earliest"],
            "fast-forward moves ahead: use --to-time, --to-offset or --to-latest (rewind takes --to-earliest)",
        ),
        (
            &["rewind", "orders", "--to-offset", "5"],
            "--to-offset is an offset of particular partitions: add --topic and at least one --partition",
        ),
        (
            &["rewind", "orders", "--to-offset", "5", "--topic", "orders"],
            "--to-offset is an offset of particular partitions: add --topic and at least one --partition",
        ),
        (
            &["fast-forward", "orders", "--to-latest", "--partition", "2"],
            "--partition is a partition of one topic: add --topic",
        ),
        (
            &["rewind", "orders", "--to-time", "yesterday"],
            "--to-time \"yesterday\": write an RFC 3339 time (2026-11-29T10:00:00Z) or a duration ago (10m, 2h, 1d)",
        ),
    ];
    for (args, message) in cases {
        assert_eq!(refusal(args), *message, "{args:?}");
    }
}

#[test]
fn negative_coordinates_are_refused_by_the_parser() {
    assert!(
        refusal(&[
            "rewind",
            "orders",
            "--to-offset=-1",
            "--topic",
            "t",
            "--partition",
            "0"
        ])
        .contains("-1")
    );
    assert!(
        refusal(&[
            "rewind",
            "orders",
            "--to-earliest",
            "--topic",
            "t",
            "--partition=-2"
        ])
        .contains("-2")
    );
}

#[test]
fn skip_forms_and_refusals() {
    let Action::Operate {
        op: Op::Skip(s), ..
    } = action(&[
        "skip",
        "orders",
        "--topic",
        "orders",
        "--partition",
        "2",
        "--offset",
        "17",
        "--reason",
        "poison pill",
    ])
    else {
        panic!("not a skip")
    };
    assert_eq!(
        (s.topic.as_str(), s.partition, s.offset, s.reason.as_deref()),
        ("orders", 2, 17, Some("poison pill"))
    );
    assert_eq!(
        refusal(&["skip", "orders", "--topic", "orders"]),
        "skip needs the record's coordinates: --topic, --partition and --offset (missing --partition, --offset)"
    );
    assert_eq!(
        refusal(&["skip", "orders", "--partition", "1", "--offset", "3"]),
        "skip needs the record's coordinates: --topic, --partition and --offset (missing --topic)"
    );
    let long = "x".repeat(1025);
    assert_eq!(
        refusal(&[
            "skip",
            "orders",
            "--topic",
            "t",
            "--partition",
            "1",
            "--offset",
            "3",
            "--reason",
            &long
        ]),
        "--reason is at most 1024 characters"
    );
}

#[test]
fn redrive_forms_and_refusals() {
    let Action::Operate {
        op: Op::Redrive(r), ..
    } = action(&["redrive", "orders"])
    else {
        panic!("not a redrive")
    };
    assert_eq!(
        (r.rate_per_second, r.max_redrives),
        (100, 3),
        "the CRD's defaults"
    );
    assert_eq!((r.since, r.until, r.max_records), (None, None, None));

    let Action::Operate {
        op: Op::Redrive(r), ..
    } = action(&[
        "redrive",
        "orders",
        "--since",
        "1d",
        "--until",
        "2026-03-01T10:00:00Z",
        "--reason-contains",
        "status 503",
        "--rate",
        "20",
        "--max-redrives",
        "5",
        "--max-records",
        "1000",
    ])
    else {
        panic!("not a redrive")
    };
    assert_eq!(r.since.unwrap().0.to_string(), "2026-02-28T10:15:30Z");
    assert_eq!(r.until.unwrap().0.to_string(), "2026-03-01T10:00:00Z");
    assert_eq!(r.reason_contains.as_deref(), Some("status 503"));
    assert_eq!(
        (r.rate_per_second, r.max_redrives, r.max_records),
        (20, 5, Some(1000))
    );

    assert_eq!(
        refusal(&["redrive", "orders", "--since", "1h", "--until", "2h"]),
        "--since must be before --until"
    );
    assert_eq!(
        refusal(&["redrive", "orders", "--reason-contains", ""]),
        "--reason-contains is 1 to 256 characters"
    );
    assert!(refusal(&["redrive", "orders", "--rate", "0"]).contains("--rate"));
    assert!(refusal(&["redrive", "orders", "--rate", "10001"]).contains("--rate"));
    assert!(refusal(&["redrive", "orders", "--max-redrives", "101"]).contains("--max-redrives"));
    assert!(refusal(&["redrive", "orders", "--max-records", "0"]).contains("--max-records"));
}

#[test]
fn dry_run_and_wait_do_not_mix() {
    assert!(
        refusal(&["rewind", "orders", "--to-earliest", "--dry-run", "--wait"]).contains("--wait")
    );
}

#[test]
fn dlq_forms() {
    assert_eq!(
        action(&["dlq", "orders"]),
        Action::Dlq {
            proxy: "orders".into(),
            limit: 20,
            show: None,
            full: false,
            bootstrap_server: None,
            kafka_config: vec![],
        }
    );
    assert_eq!(
        action(&[
            "dlq",
            "orders",
            "--limit",
            "5",
            "--show",
            "orders-dlq/2/17",
            "--full",
            "--bootstrap-server",
            "localhost:9092",
            "--kafka-config",
            "security.protocol=SASL_SSL",
            "--kafka-config",
            "sasl.password=a=b",
        ]),
        Action::Dlq {
            proxy: "orders".into(),
            limit: 5,
            show: Some(Coordinates {
                topic: "orders-dlq".into(),
                partition: 2,
                offset: 17
            }),
            full: true,
            bootstrap_server: Some("localhost:9092".into()),
            kafka_config: vec![
                ("security.protocol".into(), "SASL_SSL".into()),
                ("sasl.password".into(), "a=b".into())
            ],
        }
    );
}

#[test]
fn dlq_refusals() {
    assert!(
        refusal(&["dlq", "orders", "--show", "orders-dlq/2"]).contains("TOPIC/PARTITION/OFFSET")
    );
    assert!(refusal(&["dlq", "orders", "--kafka-config", "novalue"]).contains("key=value"));
    assert!(refusal(&["dlq", "orders", "--limit", "0"]).contains("--limit"));
    for owned in [
        "group.id=x",
        "enable.auto.commit=true",
        "auto.commit.enable=true",
    ] {
        let e = refusal(&["dlq", "orders", "--kafka-config", owned]);
        assert!(e.contains("kubectl-kcp never commits"), "{owned}: {e}");
    }
}
