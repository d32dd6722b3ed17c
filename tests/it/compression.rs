//! permessage-deflate (`--compression`) against peers c1m did not write: a Python `websockets`
//! server (compression on by default) and a Node `ws` server with perMessageDeflate deliver
//! compressed frames that c1m times; Python and Node clients read c1m's compressed broadcasts.
//! Malformed compressed frames are in bad_input.rs.

use crate::common::{
    Proc, ServerProc, interop_dir, read_json, require_node_ws, require_python_websockets, u64_at,
};
use crate::interop::{NODE_CLIENT, broadcast_with_sigusr1, measure_node_ws, received};
use crate::loss::{client_for, push_server};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

/// Timed, nothing lost, no error; and `conns` upgrades agreed compression, `windows` of them
/// keeping a window of their own.
fn assert_compressed(r: &Value, conns: u64, windows: u64) {
    assert_eq!(u64_at(r, "/errors/total"), 0, "{r:#}");
    assert_eq!(u64_at(r, "/messages/missed"), 0, "{r:#}");
    assert!(u64_at(r, "/latency_us/count") > 0, "{r:#}");
    assert_eq!(u64_at(r, "/connections/compressed"), conns, "{r:#}");
    assert_eq!(
        u64_at(r, "/connections/compression_windows"),
        windows,
        "{r:#}"
    );
    assert!(u64_at(r, "/bytes/inflated") > 0, "{r:#}");
}

#[test]
fn a_python_websockets_server_compresses_and_c1m_times_it() {
    let (_server, port) = push_server("running-seq");
    let url = format!("ws://127.0.0.1:{port}/");
    // shared asks the server to keep no context: one inflater per shard serves all 30.
    let (code, stderr, r) = client_for(&url, 30, "2s", &["--compression", "shared"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_compressed(&r, 30, 0);
    assert_eq!(r["config"]["compression"], "shared");
    // context offers what browsers do: websockets keeps its window, so each connection does.
    let (code, stderr, r) = client_for(&url, 30, "2s", &["--compression", "context"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_compressed(&r, 30, 30);
    // off offers nothing: the same server sends plain frames.
    let (code, stderr, r) = client_for(&url, 30, "2s", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(u64_at(&r, "/connections/compressed"), 0, "{r:#}");
    assert_eq!(u64_at(&r, "/bytes/inflated"), 0, "{r:#}");
}

#[test]
fn a_node_ws_server_compresses_and_c1m_times_it() {
    let r = measure_node_ws(&["--deflate"], "ws", &["--compression", "shared"]);
    assert_compressed(&r, 20, 0);
    let r = measure_node_ws(&["--deflate"], "ws", &["--compression", "context"]);
    assert_compressed(&r, 20, 20);
}

/// c1m's own pair: the server takes both offers and keeps no window either way, and a 1 KiB
/// padded broadcast crosses the wire compressed.
#[test]
fn c1m_server_compresses_each_broadcast_once_for_c1m_clients() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("s.json");
    let server = ServerProc::start(&[
        "--compression",
        "shared",
        "--every",
        "200ms",
        "--pad",
        "1024",
        "--duration",
        "30s",
        "--json",
        report.to_str().unwrap(),
    ]);
    let url = server.url();
    for offer in ["shared", "context"] {
        let (code, stderr, r) = client_for(&url, 25, "2s", &["--compression", offer]);
        assert_eq!(code, Some(0), "{stderr}");
        assert_compressed(&r, 25, 0);
        let (wire, inflated) = (u64_at(&r, "/bytes/in"), u64_at(&r, "/bytes/inflated"));
        assert!(
            wire * 4 < inflated,
            "{offer}: {wire} bytes in for {inflated} inflated"
        );
    }
    server.proc.signal(libc::SIGTERM);
    let out = server.proc.wait(LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    let s = read_json(&report);
    assert_eq!(u64_at(&s, "/connections/compressed"), 50, "{s:#}");
    assert_eq!(s["config"]["compression"], "shared");
    let sent = u64_at(&s, "/messages/sent");
    assert!(u64_at(&s, "/bytes/out") < sent * 1024 / 4, "{s:#}");
    // Each broadcast row says what went on the wire: a 1 KiB message as a frame of < 256 bytes.
    for b in s["broadcasts"].as_array().unwrap() {
        let (bytes, frames) = (b["bytes"].as_u64().unwrap(), b["sent"].as_u64().unwrap());
        assert!(bytes <= frames * 256, "{b}");
    }
}

/// A message of the user's (`--message`, here bench/tick.json: 1 KiB of market-data JSON) is
/// timed and numbered like c1m's own, and compresses as real JSON does: to about half.
#[test]
fn a_users_message_is_timed_and_compresses_like_json() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("s.json");
    let tick = crate::common::manifest_dir().join("bench/tick.json");
    let message = format!("@{}", tick.display());
    let server = ServerProc::start(&[
        "--message",
        &message,
        "--compression",
        "shared",
        "--every",
        "200ms",
        "--duration",
        "30s",
        "--json",
        report.to_str().unwrap(),
    ]);
    let (code, stderr, r) = client_for(&server.url(), 20, "2s", &["--compression", "shared"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_compressed(&r, 20, 0);
    assert_eq!(r["messages"]["loss"]["method"], "seq field", "{r:#}");
    let ratio = u64_at(&r, "/bytes/inflated") as f64 / u64_at(&r, "/bytes/in") as f64;
    assert!((1.3..3.0).contains(&ratio), "inflated/in = {ratio}");
    server.proc.signal(libc::SIGTERM);
    assert_eq!(server.proc.wait(LIMIT).code(), Some(0));
    let s = read_json(&report);
    assert_eq!(s["config"]["payload"], "message", "{s:#}");
    let rows = s["broadcasts"].as_array().unwrap();
    let sent: Vec<&Value> = rows
        .iter()
        .filter(|b| b["sent"].as_u64() > Some(0))
        .collect();
    assert!(sent.len() >= 5, "{s:#}");
    for b in sent {
        let per_frame = b["bytes"].as_u64().unwrap() / b["sent"].as_u64().unwrap();
        assert!((300..800).contains(&per_frame), "{b}");
    }
}

#[test]
fn a_c1m_server_without_compression_declines_and_nothing_breaks() {
    let server = ServerProc::start(&["--every", "200ms", "--duration", "30s"]);
    let (code, stderr, r) = client_for(&server.url(), 10, "2s", &["--compression", "shared"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(u64_at(&r, "/connections/compressed"), 0, "{r:#}");
    assert!(u64_at(&r, "/latency_us/count") > 0, "{r:#}");
    server.proc.signal(libc::SIGTERM);
}

#[test]
fn python_and_node_clients_read_compressed_broadcasts() {
    require_node_ws();
    require_python_websockets();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("s.json");
    let server = ServerProc::start(&[
        "--compression",
        "shared",
        "--every",
        "off",
        "--pad",
        "2000",
        "--duration",
        "30s",
        "--json",
        report.to_str().unwrap(),
    ]);
    let python = Proc::spawn(
        Command::new("python3")
            .arg(interop_dir().join("recv_client.py"))
            .args([&server.url(), "--count", "3"])
            .stdin(Stdio::null()),
        "python client",
    );
    let node = Proc::spawn(
        Command::new("node")
            .args(["-e", NODE_CLIENT])
            .arg(interop_dir().join("node_modules/ws"))
            .args([&server.url(), "3"])
            .stdin(Stdio::null()),
        "node client",
    );
    for peer in [&python, &node] {
        let ext = peer.stdout_line("`extensions`", LIMIT, |l| {
            l.strip_prefix("extensions ").map(str::to_string)
        });
        assert!(ext.contains("permessage-deflate"), "{ext}");
    }
    broadcast_with_sigusr1(&server, 3, 2);
    for peer in [python, node] {
        let out = peer.wait(LIMIT);
        assert_eq!(out.code(), Some(0), "{out}");
        let got = received(&out.stdout);
        assert_eq!(got.len(), 3, "{out}");
        for (i, (text, _)) in got.iter().enumerate() {
            assert!(text.len() >= 2000, "padded: {} bytes", text.len());
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(v["seq"], i as u64 + 1, "{text}");
        }
    }
    server.proc.signal(libc::SIGTERM);
    let out = server.proc.wait(LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    let s = read_json(&report);
    assert_eq!(u64_at(&s, "/connections/compressed"), 2, "{s:#}");
    assert_eq!(u64_at(&s, "/errors/total"), 0, "{s:#}");
    // Six 2 KB messages went out as a few hundred bytes.
    assert!(u64_at(&s, "/bytes/out") < 6 * 2000 / 4, "{s:#}");
}
