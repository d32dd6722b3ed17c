//! c1m against WebSocket software it did not write: Python's `websockets` (tests/interop/*.py)
//! and Node's `ws`. These peers are required, not optional: when they are missing the tests fail
//! and say how to install them (`.ci/run` does).

use crate::common::{
    Proc, ServerProc, broadcast_line, c1m, interop_dir, now_us, read_json, require_node_ws,
    require_python_websockets, schema_errors, u64_at,
};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(15);
/// How far a payload's timestamp may be from the test's clock (same machine, same clock).
const NOW_SLACK_US: i64 = 5_000_000;

fn python(script: &str) -> Command {
    require_python_websockets();
    let mut cmd = Command::new("python3");
    cmd.arg("-u")
        .arg(interop_dir().join(script))
        .stdin(Stdio::null());
    cmd
}

/// Broadcasts `n` times with SIGUSR1, each after the previous one was logged as sent to
/// `conns` connections.
pub fn broadcast_with_sigusr1(server: &ServerProc, n: u64, conns: u64) {
    for seq in 1..=n {
        server.proc.signal(libc::SIGUSR1);
        let (logged, sent, _) =
            server
                .proc
                .stderr_line(&format!("broadcast seq={seq}"), LIMIT, broadcast_line);
        assert_eq!((logged, sent), (seq, conns));
    }
}

/// The `{"text": …, "recv_us": …}` lines a peer printed after `connected`.
pub fn received(stdout: &str) -> Vec<(String, i64)> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (
                v["text"].as_str().expect("a text message").to_string(),
                v["recv_us"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn assert_near_now(ts_us: i64, recv_us: i64, what: &str) {
    let now = now_us();
    assert!(
        (now - ts_us).abs() < NOW_SLACK_US,
        "{what}: timestamp {ts_us} µs is not within 5 s of now ({now})"
    );
    assert!(
        recv_us >= ts_us - 1_000 && recv_us - ts_us < NOW_SLACK_US,
        "{what}: received at {recv_us}, stamped {ts_us}"
    );
}

/// A Python `websockets` client gets c1m's broadcasts and `payload_check` accepts each text.
fn python_client_receives(payload: &str, check: impl Fn(u64, &str, i64)) {
    let server = ServerProc::start(&["--every", "off", "--payload", payload, "--duration", "30s"]);
    let client = Proc::spawn(
        python("recv_client.py").args([&server.url(), "--count", "2", "--timeout", "10"]),
        "recv_client.py",
    );
    client.stdout_line("`connected`", LIMIT, |l| (l == "connected").then_some(()));
    broadcast_with_sigusr1(&server, 2, 1);
    let out = client.wait(LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    let got = received(&out.stdout);
    assert_eq!(got.len(), 2, "{out}");
    for (i, (text, recv_us)) in got.iter().enumerate() {
        check(i as u64 + 1, text, *recv_us);
    }
    server.proc.signal(libc::SIGTERM);
    let out = server.proc.wait(LIMIT);
    // The Python client closed cleanly (close frame 1000): no error on the server's side.
    assert_eq!(out.code(), Some(0), "{out}");
}

#[test]
fn python_client_reads_json_payloads() {
    python_client_receives("json", |seq, text, recv_us| {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(v["seq"].as_u64(), Some(seq), "{text}");
        let ts = v["ts"]
            .as_i64()
            .unwrap_or_else(|| panic!("no integer ts: {text}"));
        assert_near_now(ts, recv_us, text);
    });
}

#[test]
fn python_client_reads_seed_payloads() {
    python_client_receives("seed", |_, text, recv_us| {
        assert!(
            !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()),
            "not a bare integer: {text:?}"
        );
        let ms: i64 = text.parse().unwrap();
        assert_near_now(ms * 1000, recv_us, text);
    });
}

/// `c1m client` at 127.0.0.1:`port` with `conns` connections for at most 20 s, writing its JSON
/// report to `report`.
fn spawn_client(port: u16, conns: u64, report: &std::path::Path) -> Proc {
    spawn_client_at(&format!("ws://127.0.0.1:{port}/"), conns, report, &[])
}

fn spawn_client_at(url: &str, conns: u64, report: &std::path::Path, flags: &[&str]) -> Proc {
    let mut cmd = c1m(&[
        "client",
        "--url",
        url,
        "--conns",
        &conns.to_string(),
        "--duration",
        "20s",
        "--json",
        report.to_str().unwrap(),
    ]);
    cmd.args(flags);
    Proc::spawn(&mut cmd, "c1m client")
}

/// The c1m client against ts_server.py: every connection gets every broadcast, and each one is
/// measured. Broadcasts without a sequence number are numbered by their distinct timestamps, so
/// nothing counts as missed.
fn c1m_client_against_ts_server(json_payload: bool) {
    const CONNS: u64 = 20;
    const COUNT: u64 = 5;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("c.json");
    let mut cmd = python("ts_server.py");
    cmd.args(["--port", "0", "--every-ms", "200", "--timeout", "15"])
        .args([
            "--count",
            &COUNT.to_string(),
            "--wait-conns",
            &CONNS.to_string(),
        ]);
    if json_payload {
        cmd.arg("--json");
    }
    let server = Proc::spawn(&mut cmd, "ts_server.py");
    let port: u16 = server.stdout_line("`listening PORT`", LIMIT, |l| {
        l.strip_prefix("listening ")?.parse().ok()
    });
    let client = spawn_client(port, CONNS, &report);
    // ts_server.py keeps the connections 0.5 s after its last broadcast: stop the client then.
    server.stdout_line("`sent N`", LIMIT, |l| l.starts_with("sent ").then_some(()));
    client.signal(libc::SIGTERM);
    let c_out = client.wait(LIMIT);
    let s_out = server.wait(LIMIT);
    assert_eq!(s_out.code(), Some(0), "{s_out}");
    assert_eq!(c_out.code(), Some(0), "{c_out}");

    let r = read_json(&report);
    assert_eq!(schema_errors(&r), Vec::<String>::new(), "{r:#}");
    assert_eq!(u64_at(&r, "/connections/established"), CONNS, "{r:#}");
    assert_eq!(u64_at(&r, "/errors/total"), 0, "{r:#}");
    let received = u64_at(&r, "/messages/received");
    assert_eq!(received, CONNS * COUNT, "{r:#}");
    assert_eq!(u64_at(&r, "/messages/unparsable"), 0, "{r:#}");
    assert_eq!(u64_at(&r, "/messages/skewed"), 0, "{r:#}");
    assert_eq!(u64_at(&r, "/messages/missed"), 0, "{r:#}");
    assert_eq!(u64_at(&r, "/latency_us/count"), received, "{r:#}");
    assert!(u64_at(&r, "/latency_us/max") < 2_000_000, "{r:#}");
    let rows: Vec<(u64, u64)> = r["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (u64_at(b, "/seq"), u64_at(b, "/received")))
        .collect();
    let expected: Vec<(u64, u64)> = (1..=COUNT).map(|seq| (seq, CONNS)).collect();
    assert_eq!(rows, expected, "one row per broadcast, numbered 1…{COUNT}");
    for b in r["broadcasts"].as_array().unwrap() {
        // ts_server.py stamps milliseconds: the row keeps them, in µs.
        let ts = b["sent_ts_us"].as_i64().expect("a send timestamp");
        assert_eq!(ts % 1000, 0, "{b}");
        assert!((now_us() - ts).abs() < 30_000_000, "{b}");
    }
}

#[test]
fn c1m_client_measures_bare_millisecond_timestamps() {
    c1m_client_against_ts_server(false);
}

#[test]
fn c1m_client_measures_seq_and_time_json() {
    c1m_client_against_ts_server(true);
}

pub const NODE_CLIENT: &str = r#"
const [wsPath, url, count] = process.argv.slice(1);
const WebSocket = require(wsPath);
const ws = new WebSocket(url);
let n = 0;
const timer = setTimeout(() => { console.error('timed out'); process.exit(3); }, 10000);
ws.on('open', () => { console.log('connected'); console.log(`extensions ${ws.extensions}`); });
ws.on('message', (data, isBinary) => {
  const recv_us = Math.round((performance.timeOrigin + performance.now()) * 1000);
  console.log(JSON.stringify({ text: data.toString(), binary: isBinary, recv_us }));
  if (++n >= Number(count)) ws.close(1000);
});
ws.on('close', (code) => { console.log(`closed ${code}`); clearTimeout(timer); process.exit(0); });
ws.on('error', (e) => { console.error(String(e)); process.exit(2); });
"#;

/// A Node `ws` client gets c1m's JSON broadcasts as text and completes the close handshake.
#[test]
fn node_client_reads_json_payloads_and_closes_cleanly() {
    require_node_ws();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("s.json");
    let server = ServerProc::start(&[
        "--every",
        "off",
        "--duration",
        "30s",
        "--json",
        report.to_str().unwrap(),
    ]);
    let ws = interop_dir().join("node_modules/ws");
    let client = Proc::spawn(
        Command::new("node")
            .args(["-e", NODE_CLIENT])
            .arg(&ws)
            .args([&server.url(), "3"])
            .stdin(Stdio::null()),
        "node ws client",
    );
    client.stdout_line("`connected`", LIMIT, |l| (l == "connected").then_some(()));
    broadcast_with_sigusr1(&server, 3, 1);
    let out = client.wait(LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("closed 1000"), "{out}");
    for (i, line) in out
        .stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .enumerate()
    {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["binary"], false, "{line}");
        let text: Value = serde_json::from_str(v["text"].as_str().unwrap()).unwrap();
        assert_eq!(text["seq"].as_u64(), Some(i as u64 + 1), "{line}");
        assert_near_now(
            text["ts"].as_i64().unwrap(),
            v["recv_us"].as_i64().unwrap(),
            line,
        );
    }
    assert_eq!(
        out.stdout.lines().filter(|l| l.starts_with('{')).count(),
        3,
        "{out}"
    );

    server.proc.signal(libc::SIGTERM);
    let s_out = server.proc.wait(LIMIT);
    assert_eq!(s_out.code(), Some(0), "{s_out}");
    let s = read_json(&report);
    assert_eq!(u64_at(&s, "/connections/established"), 1, "{s:#}");
    assert_eq!(u64_at(&s, "/connections/closed"), 1, "{s:#}");
    assert_eq!(u64_at(&s, "/errors/total"), 0, "{s:#}");
    assert_eq!(u64_at(&s, "/messages/sent"), 3, "{s:#}");
}

/// The c1m client against tests/interop/ws_server.js (Node `ws`, `{"seq","ts"}` on SIGUSR1).
#[test]
fn c1m_client_measures_a_node_ws_server() {
    let r = measure_node_ws(&[], "ws", &[]);
    assert_eq!(u64_at(&r, "/connections/tls_handshakes"), 0, "{r:#}");
}

/// Three broadcasts of ws_server.js (given `server_args` after its port) to 20 connections of
/// the c1m client (`scheme`://, with `flags`): every one timed, none lost. Returns the report.
pub fn measure_node_ws(server_args: &[&str], scheme: &str, flags: &[&str]) -> Value {
    require_node_ws();
    const CONNS: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("c.json");
    let server = Proc::spawn(
        Command::new("node")
            .arg(interop_dir().join("ws_server.js"))
            .arg("0")
            .args(server_args)
            .stdin(Stdio::null()),
        "ws_server.js",
    );
    let port: u16 = server.stdout_line("`listening PORT`", LIMIT, |l| {
        l.strip_prefix("listening ")?.parse().ok()
    });
    let url = format!("{scheme}://127.0.0.1:{port}/");
    let client = spawn_client_at(&url, CONNS, &report, flags);
    client.stderr_line("all connected", LIMIT, |l| {
        l.contains(&format!("] conns {CONNS}/{CONNS} "))
            .then_some(())
    });
    for seq in 1..=3u64 {
        server.signal(libc::SIGUSR1);
        let (logged, sent, _) =
            server.stdout_line(&format!("broadcast seq={seq}"), LIMIT, broadcast_line);
        assert_eq!((logged, sent), (seq, CONNS));
    }
    // Wait until the client has counted them all (its status line), then stop it.
    client.stderr_line("3 broadcasts received", LIMIT, |l| {
        l.contains(&format!(" msgs {} ", 3 * CONNS)).then_some(())
    });
    client.signal(libc::SIGTERM);
    let out = client.wait(LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    server.signal(libc::SIGTERM);
    server.wait(LIMIT);

    let r = read_json(&report);
    assert_eq!(u64_at(&r, "/connections/established"), CONNS, "{r:#}");
    assert_eq!(u64_at(&r, "/messages/received"), 3 * CONNS, "{r:#}");
    assert_eq!(u64_at(&r, "/messages/missed"), 0, "{r:#}");
    assert_eq!(u64_at(&r, "/latency_us/count"), 3 * CONNS, "{r:#}");
    assert_eq!(u64_at(&r, "/errors/total"), 0, "{r:#}");
    r
}
