//! The client against servers c1m did not write (Python's `websockets`): a loss is never
//! invented, the report says how loss was measured, a run that timed nothing fails and shows
//! what arrived, and a refusal shows the server's words.

use crate::common::{
    Proc, ServerProc, c1m, interop_dir, read_json, require_python_websockets, run, schema_errors,
};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// A push server of `mode` (see tests/interop/push_server.py) and its port.
pub fn push_server(mode: &str) -> (Proc, u16) {
    require_python_websockets();
    let mut cmd = Command::new("python3");
    cmd.arg("-u")
        .arg(interop_dir().join("push_server.py"))
        .args(["--mode", mode, "--duration", "15"])
        .stdin(Stdio::null());
    let proc = Proc::spawn(&mut cmd, "push_server.py");
    let port = proc.stdout_line("listening line", LIMIT, |l| {
        l.strip_prefix("listening ")?.trim().parse().ok()
    });
    (proc, port)
}

/// `c1m client` with `conns` connections for 2 s; its exit status, stderr and JSON report.
fn client(url: &str, conns: u64) -> (Option<i32>, String, Value) {
    client_with(url, conns, &[])
}

pub fn client_with(url: &str, conns: u64, flags: &[&str]) -> (Option<i32>, String, Value) {
    client_for(url, conns, "2s", flags)
}

/// `c1m client` for `duration` with `flags`: its exit status, stderr and (schema-checked)
/// JSON report.
pub fn client_for(
    url: &str,
    conns: u64,
    duration: &str,
    flags: &[&str],
) -> (Option<i32>, String, Value) {
    let (out, report) = client_run(url, conns, duration, flags);
    (out.code(), out.stderr, report)
}

/// `c1m client` for `duration` with `flags`: what it printed, and its (schema-checked) JSON
/// report.
pub fn client_run(
    url: &str,
    conns: u64,
    duration: &str,
    flags: &[&str],
) -> (crate::common::Finished, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let mut cmd = c1m(&[
        "client",
        "--url",
        url,
        "--conns",
        &conns.to_string(),
        "--duration",
        duration,
        "--json",
        json.to_str().unwrap(),
    ]);
    cmd.args(flags);
    let out = run(cmd, LIMIT);
    let report = read_json(&json);
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    (out, report)
}

#[test]
fn joining_a_server_mid_stream_misses_nothing() {
    let (_server, port) = push_server("running-seq");
    // The server has broadcast a dozen times before the client comes.
    std::thread::sleep(Duration::from_millis(1200));
    let (code, stderr, r) = client(&format!("ws://127.0.0.1:{port}/"), 200);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        r["messages"]["received"].as_u64().unwrap() >= 200 * 10,
        "{r:#}"
    );
    assert_eq!(r["messages"]["missed"], 0, "{r:#}");
    assert_eq!(r["messages"]["loss"]["method"], "seq field");
}

/// `--io-uring`'s receives, against a server c1m did not write and against c1m's own with
/// messages eight times a ring buffer (each arrives in pieces): every message is counted once,
/// whole and timed, and nothing is missed.
#[test]
fn io_uring_receives_count_every_message_whole_and_once() {
    let (_server, port) = push_server("running-seq");
    let url = format!("ws://127.0.0.1:{port}/");
    let (code, stderr, r) = client_with(&url, 200, &["--io-uring"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(r["config"]["io_uring"], true);
    assert!(
        r["messages"]["received"].as_u64().unwrap() >= 200 * 10,
        "{r:#}"
    );
    assert_eq!(r["messages"]["missed"], 0, "{r:#}");

    let server = ServerProc::start(&["--every", "100ms", "--pad", "4000", "-q"]);
    let (code, stderr, r) = client_with(&server.url(), 300, &["--io-uring"]);
    assert_eq!(code, Some(0), "{stderr}");
    let m = &r["messages"];
    let received = m["received"].as_u64().unwrap();
    assert!(received >= 300 * 15, "{r:#}");
    assert_eq!(m["missed"], 0, "{r:#}");
    assert_eq!(m["unparsable"], 0, "{r:#}");
    assert_eq!(r["errors"]["total"], 0, "{:#}", r["errors"]);
    assert_eq!(r["latency_us"]["count"], received, "{r:#}");
    assert!(
        r["bytes"]["in"].as_u64().unwrap() > received * 4000,
        "{r:#}"
    );
}

#[test]
fn a_server_pushing_to_each_connection_apart_gets_no_invented_loss_nor_phantom_broadcasts() {
    let (_server, port) = push_server("per-connection");
    let (code, stderr, r) = client(&format!("ws://127.0.0.1:{port}/"), 100);
    assert_eq!(code, Some(0), "{stderr}");
    let m = &r["messages"];
    assert!(m["received"].as_u64().unwrap() >= 100 * 10, "{r:#}");
    assert!(
        r["latency_us"]["count"].as_u64().unwrap() >= 100 * 10,
        "{r:#}"
    );
    assert_eq!(m["missed"], Value::Null, "{r:#}");
    assert_eq!(m["loss"]["method"], "not measured");
    assert!(
        m["loss"]["why"]
            .as_str()
            .unwrap()
            .contains("pushes to each connection")
    );
    assert_eq!(
        r["broadcasts"],
        serde_json::json!([]),
        "no phantom broadcasts"
    );
}

#[test]
fn a_true_broadcast_of_bare_timestamps_is_counted_exactly() {
    let server = ServerProc::start(&["--every", "200ms", "--payload", "seed", "-q"]);
    let (code, stderr, r) = client(&server.url(), 200);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        r["messages"]["loss"]["method"], "timestamps of a broadcast",
        "{r:#}"
    );
    assert_eq!(r["messages"]["missed"], 0, "{r:#}");
    assert!(!r["broadcasts"].as_array().unwrap().is_empty());
}

#[test]
fn a_payload_c1m_cannot_read_fails_the_run_and_shows_itself() {
    let (_server, port) = push_server("nested");
    let (code, stderr, r) = client(&format!("ws://127.0.0.1:{port}/"), 50);
    assert_eq!(code, Some(1), "{stderr}");
    let flat = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("nothing was timed:"), "{stderr}");
    assert!(
        flat.contains(r#"the first unreadable payload: "{\"event\": \"tick\""#),
        "{stderr}"
    );
    // Said early, not only at the end.
    assert!(flat.contains("so far nothing was timed"), "{stderr}");
    let m = &r["messages"];
    assert!(
        m["sample"]
            .as_str()
            .unwrap()
            .starts_with(r#"{\"event\": \"tick\", \"data\""#),
        "{r:#}"
    );
    assert_eq!(m["unparsable"], m["received"]);
    assert_eq!(
        r["broadcasts"],
        serde_json::json!([]),
        "unreadable messages make no rows"
    );
}

/// The first error's text, as the client printed it.
fn first_error(stderr: &str, class: &str) -> String {
    let flat = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    let start = flat
        .find(&format!("first {class} error: "))
        .unwrap_or_else(|| panic!("no first {class} error in {stderr}"));
    flat[start..].to_string()
}

#[test]
fn a_refusal_shows_the_servers_status_line_and_reason() {
    let (_server, port) = push_server("reject");
    let (_, stderr, _) = client(&format!("ws://127.0.0.1:{port}/"), 20);
    let text = first_error(&stderr, "handshake_rejected");
    assert!(
        text.contains(r#"answered "HTTP/1.1 401 Unauthorized""#),
        "{text}"
    );
    assert!(text.contains(r#""missing bearer token""#), "{text}");
}

#[test]
fn headers_origin_and_subprotocol_open_a_guarded_server() {
    let (_server, port) = push_server("guarded");
    let url = format!("ws://127.0.0.1:{port}/");
    let (_, stderr, _) = client(&url, 5);
    assert!(
        first_error(&stderr, "handshake_rejected").contains("401"),
        "{stderr}"
    );
    let token = ["-H", "Authorization: Bearer t0k"];
    let (_, stderr, _) = client_with(&url, 5, &token);
    assert!(
        first_error(&stderr, "handshake_rejected").contains("403"),
        "{stderr}"
    );
    let all = [
        &token[..],
        &["--origin", "https://app.example", "--subprotocol", "c1m.v1"],
    ]
    .concat();
    let (code, stderr, r) = client_with(&url, 50, &all);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(r["connections"]["established"], 50, "{r:#}");
    assert!(
        r["messages"]["received"].as_u64().unwrap() >= 50 * 5,
        "{r:#}"
    );
    assert_eq!(r["messages"]["missed"], 0, "{r:#}");
    // The report says what was sent, without the credential.
    assert_eq!(
        r["config"]["headers"],
        serde_json::json!(["Authorization: (redacted)", "Origin: https://app.example"])
    );
    assert_eq!(r["config"]["subprotocols"], serde_json::json!(["c1m.v1"]));
}

#[test]
fn a_server_that_ignores_the_offered_subprotocol_fails_the_handshake() {
    let (_server, port) = push_server("running-seq");
    let url = format!("ws://127.0.0.1:{port}/");
    let (code, stderr, r) = client_with(&url, 5, &["--subprotocol", "graphql-transport-ws"]);
    assert_eq!(code, Some(1), "{stderr}");
    let text = first_error(&stderr, "handshake_failed");
    assert!(
        text.contains("chose no subprotocol (offered: graphql-transport-ws)"),
        "{text}"
    );
    assert_eq!(r["connections"]["established"], 0, "{r:#}");
}

#[test]
fn a_close_shows_its_code_and_reason() {
    let (_server, port) = push_server("close-reason");
    let (_, stderr, _) = client(&format!("ws://127.0.0.1:{port}/"), 20);
    let text = first_error(&stderr, "closed_by_server");
    assert!(
        text.contains(r#"close frame (4406: "Subprotocol not acceptable")"#),
        "{text}"
    );
}

#[test]
fn a_tls_server_is_named_as_one() {
    let (_server, port) = push_server("tls");
    let (code, stderr, _) = client(&format!("ws://127.0.0.1:{port}/"), 5);
    assert_eq!(code, Some(1), "{stderr}");
    let text = first_error(&stderr, "handshake_failed");
    assert!(
        text.contains("answered with TLS") && text.contains("wss://"),
        "{text}"
    );
}
