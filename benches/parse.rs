//! What it costs the client to find the time in one message, per way of finding it: the
//! default parser on c1m's payload and on a foreign JSON object, RFC 3339 text, `--ts-path`
//! into a graphql-ws `next`, and `--ts-regex` on a Socket.IO event. Prints ns per message
//! (best of five runs) and appends the table to BENCHMARKS.md.
//!
//!     cargo bench --bench parse
use c1m::proto::payload::Unit;
use c1m::proto::reader::{Reader, ReaderSpec};
use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

const MESSAGES: u32 = 1_000_000;

struct Case {
    name: &'static str,
    flags: &'static str,
    spec: ReaderSpec,
    message: &'static [u8],
}

fn spec(ts_path: Option<&str>, seq_path: Option<&str>, ts_regex: Option<&str>) -> ReaderSpec {
    ReaderSpec {
        ts_path: ts_path.map(Into::into),
        seq_path: seq_path.map(Into::into),
        ts_regex: ts_regex.map(Into::into),
        ts_unit: Unit::Auto,
    }
}

fn cases() -> Vec<Case> {
    let graphql =
        br#"{"id":"17","type":"next","payload":{"data":{"tick":{"seq":4211,"ts":1764000000123}}}}"#;
    let socketio = br#"42["tick",{"seq":4211,"ts":1764000000123}]"#;
    vec![
        Case {
            name: "default, c1m's payload",
            flags: "",
            spec: ReaderSpec::default(),
            message: br#"{"seq":4211,"ts":1764000000123456}"#,
        },
        Case {
            name: "default, a foreign object",
            flags: "",
            spec: ReaderSpec::default(),
            message: br#"{"type":"tick","data":{"a":[1,2]},"time":1764000000123,"seq":4211}"#,
        },
        Case {
            name: "default, RFC 3339 text",
            flags: "",
            spec: ReaderSpec::default(),
            message: br#"{"ts":"2026-11-29T15:00:00.123Z"}"#,
        },
        Case {
            name: "--ts-path, graphql-ws next",
            flags: "--ts-path payload.data.tick.ts",
            spec: spec(Some("payload.data.tick.ts"), None, None),
            message: graphql,
        },
        Case {
            name: "--ts-path + --seq-path, graphql-ws next",
            flags: "--ts-path payload.data.tick.ts --seq-path payload.data.tick.seq",
            spec: spec(
                Some("payload.data.tick.ts"),
                Some("payload.data.tick.seq"),
                None,
            ),
            message: graphql,
        },
        Case {
            name: "--ts-regex, Socket.IO event",
            flags: r#"--ts-regex '^42\["[^"]*",\{.*"ts":(\d+)'"#,
            spec: spec(None, None, Some(r#"^42\["[^"]*",\{.*"ts":(\d+)"#)),
            message: socketio,
        },
        Case {
            name: "--ts-regex, unanchored",
            flags: r#"--ts-regex '"ts":(\d+)'"#,
            spec: spec(None, None, Some(r#""ts":(\d+)"#)),
            message: socketio,
        },
        Case {
            name: "--ts-regex, lazy",
            flags: r#"--ts-regex '^42\[.*?"ts":(\d+)'"#,
            spec: spec(None, None, Some(r#"^42\[.*?"ts":(\d+)"#)),
            message: socketio,
        },
        Case {
            name: "--ts-regex, not matching (a ping)",
            flags: r#"--ts-regex '^42\["[^"]*",\{.*"ts":(\d+)'"#,
            spec: spec(None, None, Some(r#"^42\["[^"]*",\{.*"ts":(\d+)"#)),
            message: b"2",
        },
    ]
}

fn ns_per_message(reader: &mut Reader, message: &[u8]) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..MESSAGES {
                let _ = black_box(reader.read(black_box(message)));
            }
            start.elapsed().as_nanos() as f64 / f64::from(MESSAGES)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let mut rows = Vec::new();
    for case in cases() {
        let mut reader = Reader::new(&case.spec).unwrap();
        assert!(reader.read(case.message).is_ok(), "{}", case.name);
        let ns = ns_per_message(&mut reader, case.message);
        println!(
            "{:<42} {:>5} B {:>8.1} ns",
            case.name,
            case.message.len(),
            ns
        );
        rows.push(format!(
            "| {} | `{}` | {} | {:.1} |",
            case.name,
            case.flags,
            case.message.len(),
            ns
        ));
    }
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let when = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let mut md = std::fs::OpenOptions::new()
        .append(true)
        .open(concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md"))
        .expect("BENCHMARKS.md");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    writeln!(
        md,
        "\n### parse: the cost of finding the time, per message — {when}\n\n\
         `cargo bench --bench parse` on {cores} cores, git {commit}; best of 5 runs of \
         {MESSAGES} messages, one thread\n\n\
         | reader | flags | message bytes | ns/message |\n|---|---|---|---|\n{}",
        rows.join("\n")
    )
    .unwrap();
    println!("bench: appended to BENCHMARKS.md");
}
