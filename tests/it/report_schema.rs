//! The JSON report against `schema/report.schema.json`: reports of both modes, built from
//! synthetic shard deltas, must validate; reports with a field missing, misspelt or mistyped must
//! not (so the schema really constrains what scripts rely on).

use c1m::stats::aggregate::Aggregator;
use c1m::stats::report;
use c1m::stats::{
    BroadcastPart, Counters, ErrorClass, Mode, ShardDelta, SourceDelta, WorkerRow, WorkerState,
    new_histogram,
};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SHARDS: usize = 3;
const BROADCASTS: u64 = 4;

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/report.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema())
        .expect("the schema compiles")
}

/// Every error the validator finds, one per line, for assertion messages.
fn errors(instance: &Value) -> Vec<String> {
    validator()
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// The latency of one broadcast as a shard has it after round `round`.
fn latency_of(round: u64) -> Histogram<u64> {
    let mut h = new_histogram();
    for v in 0..=round {
        h.record(1_000 + v * 10).unwrap();
    }
    h
}

/// One shard's flush in round `round`: a few connections, a few latencies, a part of each
/// broadcast so far (re-sent with growing counts, as shards do), and some errors.
fn delta(mode: Mode, shard: usize, round: u64) -> ShardDelta {
    let mut counters = Counters {
        opened: 100,
        closed: 2,
        failed: 3,
        messages: 250,
        bytes_in: 10_000,
        bytes_out: 500,
        ..Counters::default()
    };
    counters.error(ErrorClass::Refused);
    counters.error(ErrorClass::AddrNotAvail);
    counters.error(ErrorClass::Reset);
    let mut latency = new_histogram();
    match mode {
        Mode::Client => {
            counters.missed = 1;
            counters.skewed = 1;
            for v in 0..250 {
                latency.record(500 + v * (shard as u64 + 1)).unwrap();
            }
        }
        Mode::Server => counters.send_dropped = 4,
    }
    let per_source = match mode {
        Mode::Client => vec![SourceDelta {
            source: shard % 2,
            opened: 100,
            closed: 2,
            errors: 3,
        }],
        Mode::Server => vec![],
    };
    let base = 1_700_000_000_000_000 + round as i64 * 60_000_000;
    let broadcasts = (0..=round.min(BROADCASTS - 1))
        .map(|seq| BroadcastPart {
            seq,
            // Parts are deltas: each round, 10 more; the open count with a seq's first part.
            count: 10,
            dropped: u64::from(mode == Mode::Server),
            open: if seq == round { 60 } else { 0 },
            first_us: base + shard as i64 * 100,
            last_us: base + 5_000 + shard as i64 * 1000,
            // the first broadcast's payload could not be read: no timestamp
            sent_ts_us: (mode == Mode::Client && seq > 0).then_some(base - 2_000),
            done: mode == Mode::Server,
            by_ts: false,
            bytes: if mode == Mode::Server { 600 } else { 0 },
        })
        .collect();
    let mut pong_rtt = c1m::stats::new_histogram();
    pong_rtt.record(250 + round).unwrap();
    let mut echo_rtt = c1m::stats::new_histogram();
    echo_rtt.record(310 + round).unwrap();
    ShardDelta {
        shard,
        counters,
        latency,
        pong_rtt,
        echo_rtt,
        active: 98 * (round + 1),
        opens_us: None,
        per_source,
        error_samples: Vec::new(),
        connecting: 0,
        peers: None,
        latencies: match mode {
            Mode::Client => vec![(round.min(BROADCASTS - 1), latency_of(round))],
            Mode::Server => Vec::new(),
        },
        broadcasts,
        settled: None,
        sample: None,
        gone: false,
        full: false,
    }
}

/// What a run's outputs add as `run` (a real one is checked by every test that validates a
/// report a run wrote).
fn run_info() -> Value {
    json!({
        "argv": ["c1m", "client", "-H", "Authorization: (redacted)"],
        "machine": {"cores": 2, "memory_bytes": 25_000_000_000u64, "kernel": "6.18.44"},
        "limits_at_start": [
            {"name": "fs.file-max", "value": "2466174", "target": "2000200", "status": "ok"}
        ]
    })
}

fn report(mode: Mode) -> Value {
    let t0 = Instant::now();
    let sources = match mode {
        Mode::Client => vec!["10.0.0.1".into(), "10.0.0.2".into()],
        Mode::Server => vec![],
    };
    let mut agg = Aggregator::new(mode, 1_000, sources, t0);
    for round in 0..6 {
        for shard in 0..SHARDS {
            let now = t0 + Duration::from_millis(round * 1000 + shard as u64 * 10);
            agg.apply(delta(mode, shard, round), now);
        }
        agg.tick(t0 + Duration::from_millis((round + 1) * 1000));
    }
    let mut snapshot = agg.snapshot(t0 + Duration::from_secs(6));
    snapshot.workers = vec![
        WorkerRow {
            index: 0,
            pid: 4242,
            state: WorkerState::Running,
            active: 98,
            errors: 0,
            deltas: 0,
            rss_bytes: Some(3 << 20),
            cpu_s: Some(4.25),
            cpu_percent: Some(37.5),
            exit: None,
            agent: None,
        },
        WorkerRow {
            index: 1,
            pid: 4243,
            state: WorkerState::Died,
            active: 0,
            errors: 98,
            deltas: 57,
            rss_bytes: None,
            cpu_s: Some(1.5),
            cpu_percent: None,
            exit: Some("killed by signal 9".into()),
            agent: None,
        },
    ];
    let config = json!({ "url": "ws://127.0.0.1:8080/", "conns": 1000 });
    let mut r = report::json(&snapshot, config, "0.1.0", "duration");
    r["run"] = run_info();
    r
}

#[test]
fn the_schema_is_valid_2020_12() {
    let schema = schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::meta::validate(&schema).expect("valid against the 2020-12 meta-schema");
}

#[test]
fn client_report_validates() {
    let r = report(Mode::Client);
    assert_eq!(errors(&r), Vec::<String>::new());
    // and it carries what was fed in
    assert_eq!(r["mode"], "client");
    assert_eq!(
        r["broadcasts"].as_array().unwrap().len(),
        BROADCASTS as usize
    );
    assert_eq!(r["broadcasts"][0]["delivery_us"], Value::Null);
    assert!(r["broadcasts"][1]["delivery_us"].as_i64().unwrap() > 0);
    assert_eq!(r["sources"].as_array().unwrap().len(), 2);
    assert_eq!(r["latency_us"]["count"], 250 * 6 * SHARDS as u64);
    assert_eq!(r["errors"]["by_class"]["refused"], 6 * SHARDS as u64);
    assert_eq!(r["errors"]["by_class"]["protocol"], 0);
    assert_eq!(r["ended_by"], "duration");
    // One point a second, each with that second's latency.
    let series = r["series"].as_array().unwrap();
    assert_eq!(series.len(), 6);
    assert!(series[0]["latency_us"]["p99"].as_u64().unwrap() > 0);
    // Each broadcast's own latency.
    assert!(r["broadcasts"][0]["latency_us"]["count"].as_u64().unwrap() > 0);
}

#[test]
fn server_report_validates() {
    let r = report(Mode::Server);
    assert_eq!(errors(&r), Vec::<String>::new());
    assert_eq!(r["mode"], "server");
    assert_eq!(r["messages"]["dropped"], 4 * 6 * SHARDS as u64);
    // Nothing timed: the count says so, and no latency of 0 is claimed.
    assert_eq!(r["latency_us"]["count"], 0);
    assert_eq!(r["latency_us"]["mean"], Value::Null);
    assert_eq!(r["latency_us"]["p99"], Value::Null);
    assert_eq!(r["broadcasts"][0]["complete"], true);
    assert!(r["broadcasts"][0]["open"].as_u64().unwrap() > 0);
    // seq 0 gets 10 more from each shard every round: 3 shards × 6 rounds × 10
    assert_eq!(r["broadcasts"][0]["sent"], 180);
}

#[test]
fn an_empty_run_validates() {
    for mode in [Mode::Client, Mode::Server] {
        let t0 = Instant::now();
        let snapshot = Aggregator::new(mode, 0, vec![], t0).snapshot(t0);
        let mut r = report::json(&snapshot, json!({}), "0.1.0", "SIGINT");
        r["run"] = run_info();
        assert_eq!(errors(&r), Vec::<String>::new(), "{mode:?}");
    }
}

/// Apply `edit` to a valid client report and expect validation to fail.
fn assert_rejected(what: &str, edit: impl FnOnce(&mut Value)) {
    let mut r = report(Mode::Client);
    edit(&mut r);
    assert!(
        !validator().is_valid(&r),
        "the schema accepted a report with {what}"
    );
}

fn remove(v: &mut Value, key: &str) {
    v.as_object_mut().unwrap().remove(key).expect("key present");
}

#[test]
fn missing_required_fields_fail() {
    assert_rejected("no version", |r| remove(r, "version"));
    assert_rejected("no connections.peak", |r| {
        remove(&mut r["connections"], "peak")
    });
    assert_rejected("no latency_us.p99", |r| remove(&mut r["latency_us"], "p99"));
    assert_rejected("an error class missing", |r| {
        remove(&mut r["errors"]["by_class"], "fd_limit")
    });
    assert_rejected("no rates.messages.m15", |r| {
        remove(&mut r["rates"]["messages"], "m15")
    });
    assert_rejected("no delivery_us in a broadcast row", |r| {
        remove(&mut r["broadcasts"][1], "delivery_us")
    });
}

#[test]
fn unknown_or_mistyped_fields_fail() {
    assert_rejected("an unknown top-level key", |r| r["latency"] = json!({}));
    assert_rejected("an unknown error class", |r| {
        r["errors"]["by_class"]["eaddrinuse"] = json!(1)
    });
    assert_rejected("a negative count", |r| r["messages"]["missed"] = json!(-1));
    assert_rejected("a fractional percentile", |r| {
        r["latency_us"]["p50"] = json!(1.5)
    });
    assert_rejected("a bad mode", |r| r["mode"] = json!("both"));
    assert_rejected("a timestamp that is not RFC 3339", |r| {
        r["generated_at"] = json!("yesterday")
    });
    assert_rejected("server rows in a client report", |r| {
        r["broadcasts"] = report(Mode::Server)["broadcasts"].clone()
    });
}
