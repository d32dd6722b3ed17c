//! Every output flag in every face, through the real binary: `--json` and `--hdr-log` on
//! `c1m server`, `c1m client` and `c1m tui` each write their file, and the file holds what the
//! run measured (a report that passes the schema, an HDR log whose intervals add up).

use crate::common::{ServerProc, Tmux, c1m, read_hdr_log, read_json, run, schema_errors, u64_at};
use std::path::Path;
use std::time::Duration;

const CONNS: u64 = 100;

/// A report of `mode` that passes the schema and says how the run ended.
fn check_json(path: &Path, mode: &str, ended_by: &str) -> serde_json::Value {
    let r = read_json(path);
    assert_eq!(
        schema_errors(&r),
        Vec::<String>::new(),
        "{}",
        path.display()
    );
    assert_eq!(r["mode"], mode, "{}", path.display());
    assert_eq!(r["ended_by"], ended_by, "{}", path.display());
    assert!(
        !r["series"].as_array().unwrap().is_empty(),
        "no history in {}",
        path.display()
    );
    r
}

/// An HDR log whose intervals hold `count` values, as the report counted.
fn check_hdr(path: &Path, count: u64, what: &str) {
    let (merged, intervals) = read_hdr_log(path);
    assert!(intervals >= 1, "{}", path.display());
    assert_eq!(merged.len(), count, "{}", path.display());
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(what), "{}:\n{text}", path.display());
}

#[test]
fn headless_server_and_client_write_json_and_hdr_logs() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    let server = ServerProc::start(&[
        "--every",
        "300ms",
        "--duration",
        "5s",
        "--json",
        file("s.json").to_str().unwrap(),
        "--hdr-log",
        file("s.hdr").to_str().unwrap(),
    ]);
    let mut client = c1m(&[
        "client",
        "--url",
        &server.url(),
        "--conns",
        &CONNS.to_string(),
        "--duration",
        "2s",
        "--json",
        file("c.json").to_str().unwrap(),
        "--hdr-log",
        file("c.hdr").to_str().unwrap(),
    ]);
    client.stdin(std::process::Stdio::null());
    let out = run(client, Duration::from_secs(20));
    assert_eq!(out.code(), Some(0), "{out}");
    let s_out = server.proc.wait(Duration::from_secs(20));
    assert_eq!(s_out.code(), Some(0), "{s_out}");

    let c = check_json(&file("c.json"), "client", "duration");
    check_hdr(
        &file("c.hdr"),
        u64_at(&c, "/latency_us/count"),
        "Message latency",
    );
    assert!(u64_at(&c, "/latency_us/count") >= CONNS, "{c:#}");
    let s = check_json(&file("s.json"), "server", "duration");
    // The server's log is its send lag: one value per frame written.
    check_hdr(&file("s.hdr"), u64_at(&s, "/messages/sent"), "Send lag");
    assert_eq!(
        u64_at(&s, "/latency_us/count"),
        u64_at(&s, "/messages/sent")
    );
}

#[test]
fn the_console_writes_both_sides_files() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let hdr = dir.path().join("run.hdr");
    let cmd = format!(
        "{} tui --mode local --conns {CONNS} --every 300ms --duration 3s --json {} --hdr-log {}; \
         echo C1M_EXIT=$?; sleep 60",
        crate::common::BIN,
        json.display(),
        hdr.display()
    );
    let tmux = Tmux::start("outputs", &cmd, 110, 34);
    let s = tmux.wait("the console to end", Duration::from_secs(30), |s| {
        s.contains("C1M_EXIT=")
    });
    assert!(s.contains("C1M_EXIT=0"), "{s}");
    let c = check_json(&json, "client", "duration");
    check_hdr(&hdr, u64_at(&c, "/latency_us/count"), "Message latency");
    let server_json = dir.path().join("run.server.json");
    let s = check_json(&server_json, "server", "duration");
    check_hdr(
        &dir.path().join("run.server.hdr"),
        u64_at(&s, "/messages/sent"),
        "Send lag",
    );
    assert_eq!(
        u64_at(&c, "/messages/received"),
        u64_at(&s, "/messages/sent"),
        "every frame the server wrote was received"
    );
}
