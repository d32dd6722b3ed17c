//! The client over `wss://` against a TLS server c1m did not write (Python's `websockets` with
//! an `ssl` context, tests/interop/push_server.py --cert/--key), with certificates made here by
//! rcgen: verified with `--ca`, unverified with `--insecure`, and each broken certificate
//! counted under its class with what to do about it.

use crate::common::{Proc, interop_dir, require_python_websockets};
use crate::loss::client_for;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, date_time_ymd};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A CA, and leaf certificates it signed, as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    ca_params: CertificateParams,
}

impl Pki {
    fn new() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir,
            ca,
            ca_key,
            ca_params,
        }
    }

    fn ca_file(&self) -> PathBuf {
        let _ = &self.ca;
        self.dir.path().join("ca.pem")
    }

    /// A leaf for `names`, valid until `until` (year, month, day); returns (cert, key) files.
    fn leaf(&self, tag: &str, names: &[&str], until: (i32, u8, u8)) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(until.0, until.1, until.2);
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (c, k) = (
            self.dir.path().join(format!("{tag}.pem")),
            self.dir.path().join(format!("{tag}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

/// push_server.py in `mode` over TLS with this certificate; its port.
fn tls_server(mode: &str, (cert, key): &(PathBuf, PathBuf)) -> (Proc, u16) {
    require_python_websockets();
    let mut cmd = Command::new("python3");
    cmd.arg("-u")
        .arg(interop_dir().join("push_server.py"))
        .args(["--mode", mode, "--duration", "15"])
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .stdin(Stdio::null());
    let proc = Proc::spawn(&mut cmd, "push_server.py");
    let port = proc.stdout_line("listening line", Duration::from_secs(30), |l| {
        l.strip_prefix("listening ")?.trim().parse().ok()
    });
    (proc, port)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn first_error(r: &Value, class: &str) -> String {
    r["errors"]["samples"][class]
        .as_str()
        .unwrap_or_else(|| panic!("no {class} sample: {r:#}"))
        .to_string()
}

/// A c1m server with `flags` (`--tls-self-signed` or its short `--tls` among them), and the
/// certificate it made, where its banner says: `$TMPDIR/c1m-PID/cert.pem`.
fn c1m_tls_server(flags: &[&str]) -> (crate::common::ServerProc, PathBuf) {
    let mut args = vec!["--every", "off"];
    args.extend_from_slice(flags);
    let server = crate::common::ServerProc::start(&args);
    let cert = std::env::temp_dir()
        .join(format!("c1m-{}", server.proc.pid()))
        .join("cert.pem");
    assert!(cert.exists(), "{}", cert.display());
    (server, cert)
}

/// The c1m client over wss:// to `server`, trusting `cert`, for `duration`, its report at
/// `json`; returned once all `conns` are connected.
fn c1m_tls_client(
    server: &crate::common::ServerProc,
    cert: &Path,
    conns: u64,
    duration: &str,
    json: &Path,
) -> Proc {
    let url = format!("wss://{}/", server.addr);
    let n = conns.to_string();
    let mut cmd = crate::common::c1m(&["client", "--url", &url, "--conns", &n]);
    cmd.args([
        "--duration",
        duration,
        "--json",
        path(json),
        "--ca",
        path(cert),
    ]);
    let client = Proc::spawn(&mut cmd, "c1m client");
    client.stderr_line("all connected", Duration::from_secs(30), |l| {
        l.contains(&format!("] conns {n}/{n} ")).then_some(())
    });
    client
}

#[test]
fn a_verified_server_is_measured_over_tls() {
    let pki = Pki::new();
    let leaf = pki.leaf("ok", &["127.0.0.1", "localhost"], (2099, 1, 1));
    let (_server, port) = tls_server("running-seq", &leaf);
    let url = format!("wss://127.0.0.1:{port}/");
    let (code, stderr, r) = client_for(&url, 100, "2s", &["--ca", path(&pki.ca_file())]);
    assert_eq!(code, Some(0), "{stderr}");
    let received = r["messages"]["received"].as_u64().unwrap();
    assert!(received >= 100 * 10, "{r:#}");
    assert_eq!(r["latency_us"]["count"].as_u64(), Some(received));
    assert_eq!(r["messages"]["missed"], 0, "{r:#}");
    assert_eq!(r["connections"]["tls_handshakes"], 100, "{r:#}");
    assert_eq!(r["config"]["insecure"], false);

    // Unverified, the same server works, and the report says verification was off.
    let (code, stderr, r) = client_for(&url, 20, "1s", &["--insecure"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(r["config"]["insecure"], true);
    assert!(stderr.contains("--insecure"), "{stderr}");
}

#[test]
fn a_node_https_ws_server_is_measured_over_tls() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("node", &["127.0.0.1"], (2099, 1, 1));
    let (cert, key, ca) = (path(&cert), path(&key), pki.ca_file());
    for flags in [["--ca", path(&ca)].as_slice(), &["--insecure"]] {
        let r = crate::interop::measure_node_ws(&[cert, key], "wss", flags);
        assert_eq!(r["connections"]["tls_handshakes"], 20, "{flags:?}: {r:#}");
    }
}

#[test]
fn each_broken_certificate_is_counted_under_its_class_with_a_hint() {
    let pki = Pki::new();
    let ca = pki.ca_file();
    let cases = [
        // No --ca: nothing this machine trusts signed it.
        (
            pki.leaf("unknown", &["127.0.0.1"], (2099, 1, 1)),
            false,
            "tls_unknown_issuer",
            "--ca FILE",
        ),
        (
            pki.leaf("name", &["other.test"], (2099, 1, 1)),
            true,
            "tls_name_mismatch",
            "--url",
        ),
        (
            pki.leaf("expired", &["127.0.0.1"], (2021, 1, 1)),
            true,
            "tls_expired",
            "renew it",
        ),
    ];
    for (leaf, with_ca, class, hint) in cases {
        let (_server, port) = tls_server("running-seq", &leaf);
        let url = format!("wss://127.0.0.1:{port}/");
        let flags: Vec<&str> = match with_ca {
            true => vec!["--ca", path(&ca)],
            false => vec![],
        };
        let (code, _, r) = client_for(&url, 10, "1s", &flags);
        assert_eq!(code, Some(1), "{class}");
        assert_eq!(r["errors"]["by_class"][class], 10, "{class}: {r:#}");
        assert_eq!(r["connections"]["established"], 0);
        let first = first_error(&r, class);
        assert!(first.contains(hint), "{class}: {first}");
    }
}

#[test]
fn plain_ws_at_a_tls_port_is_told_to_use_wss() {
    let pki = Pki::new();
    let leaf = pki.leaf("ok", &["127.0.0.1"], (2099, 1, 1));
    let (_server, port) = tls_server("running-seq", &leaf);
    let (code, _, r) = client_for(&format!("ws://127.0.0.1:{port}/"), 5, "1s", &[]);
    assert_eq!(code, Some(1));
    let first = first_error(&r, "handshake_failed");
    assert!(first.contains("use wss://"), "{first}");
}

#[test]
fn reconnects_resume_their_tls_sessions() {
    let pki = Pki::new();
    let leaf = pki.leaf("ok", &["127.0.0.1"], (2099, 1, 1));
    // The server closes every connection that stays silent for 2 s; --reconnect opens it
    // again, and the new handshake resumes the session the first one left.
    let (_server, port) = tls_server("silence", &leaf);
    let url = format!("wss://127.0.0.1:{port}/");
    let ca = pki.ca_file();
    let flags = [
        "--ca",
        path(&ca),
        "--reconnect",
        "500ms",
        "--max-errors",
        "1000",
    ];
    let (_, stderr, r) = client_for(&url, 50, "4s", &flags);
    let c = &r["connections"];
    let (handshakes, resumed) = (
        c["tls_handshakes"].as_u64().unwrap(),
        c["tls_resumed"].as_u64().unwrap(),
    );
    assert!(handshakes >= 100, "{stderr}\n{r:#}");
    // The first ramp pays full handshakes (but for the tickets its early ones hand the late
    // ones); nearly every reconnect after the server closed them all resumes: the client
    // keeps a ticket for each, not rustls' default eight.
    let reconnected = handshakes - 50;
    assert!(
        resumed * 10 >= reconnected * 9,
        "{resumed} of {handshakes} resumed: {r:#}"
    );
    assert!(resumed < handshakes, "{r:#}");
    // --tls-no-resume: the same storm pays a full handshake every time.
    let flags = [&flags[..], &["--tls-no-resume"]].concat();
    let (_, stderr, r) = client_for(&url, 50, "4s", &flags);
    let c = &r["connections"];
    assert!(
        c["tls_handshakes"].as_u64().unwrap() >= 100,
        "{stderr}\n{r:#}"
    );
    assert_eq!(c["tls_resumed"], 0, "{r:#}");
    assert_eq!(r["config"]["tls_resume"], false, "{r:#}");
}

/// c1m's server over TLS (`--tls-self-signed`), read by a Python `websockets` client, a Node
/// `ws` client and the c1m client, each trusting the certificate the banner names.
#[test]
fn c1m_server_speaks_tls_to_python_node_and_c1m_clients() {
    use crate::common::read_json;
    use crate::interop::{NODE_CLIENT, broadcast_with_sigusr1, received};
    crate::common::require_node_ws();
    require_python_websockets();
    let (server, cert) = c1m_tls_server(&["--tls-self-signed", "--duration", "30s"]);
    let url = format!("wss://{}/", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("c.json");
    let client = c1m_tls_client(&server, &cert, 20, "20s", &report);
    let limit = Duration::from_secs(20);
    let python = Proc::spawn(
        Command::new("python3")
            .arg(interop_dir().join("recv_client.py"))
            .args([&url, "--count", "3", "--ca", path(&cert)])
            .stdin(Stdio::null()),
        "python client",
    );
    python.stdout_line("connected", limit, |l| (l == "connected").then_some(()));
    let node = Proc::spawn(
        Command::new("node")
            .args(["-e", NODE_CLIENT])
            .arg(interop_dir().join("node_modules/ws"))
            .args([&url, "3"])
            .env("NODE_EXTRA_CA_CERTS", &cert)
            .stdin(Stdio::null()),
        "node client",
    );
    node.stdout_line("connected", limit, |l| (l == "connected").then_some(()));
    broadcast_with_sigusr1(&server, 3, 22);
    for peer in [python, node] {
        let out = peer.wait(limit);
        assert_eq!(out.code(), Some(0), "{out}");
        let got = received(&out.stdout);
        assert_eq!(got.len(), 3, "{out}");
        for (i, (text, _)) in got.iter().enumerate() {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(v["seq"], i as u64 + 1, "{text}");
        }
    }
    client.stderr_line("3 broadcasts", limit, |l| {
        l.contains(" msgs 60 ").then_some(())
    });
    client.signal(libc::SIGTERM);
    let out = client.wait(limit);
    assert_eq!(out.code(), Some(0), "{out}");
    let r = read_json(&report);
    assert_eq!(r["messages"]["received"], 60, "{r:#}");
    assert_eq!(r["latency_us"]["count"], 60, "{r:#}");
    assert_eq!(r["messages"]["missed"], 0, "{r:#}");
    assert_eq!(r["connections"]["tls_handshakes"], 20, "{r:#}");
    // Stopped, the server removes the certificate it made.
    server.proc.signal(libc::SIGINT);
    server.proc.wait(limit);
    assert!(!cert.exists(), "{} is still there", cert.display());
}

/// Python: a TLS session, then an upgrade request dripped one byte every 200 ms; prints how
/// long the server let it live.
const DRIP: &str = r#"
import socket, ssl, sys, threading, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
host, port = sys.argv[1].rsplit(":", 1)
s = ctx.wrap_socket(socket.create_connection((host, int(port))), server_hostname=host)
t0 = time.monotonic()
def drip():
    try:
        for b in b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" * 4:
            s.sendall(bytes([b]))
            time.sleep(0.2)
    except OSError:
        pass
threading.Thread(target=drip, daemon=True).start()
try:
    while s.recv(4096):
        pass
except OSError:
    pass
print(f"closed after {time.monotonic() - t0:.2f}", flush=True)
"#;

/// The fault suite over TLS: garbage where a ClientHello belongs is counted and closed, a peer
/// that stalls mid-handshake is closed at `--handshake-timeout`, and so is a slowloris that
/// drips its upgrade over an established TLS session; a TLS client already connected keeps
/// every broadcast through all three.
#[test]
fn tls_garbage_and_stalled_handshakes_are_counted_and_harm_no_one() {
    use crate::common::read_json;
    use crate::interop::broadcast_with_sigusr1;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let s_json = dir.path().join("s.json");
    let (server, cert) = c1m_tls_server(&[
        "--tls",
        "--handshake-timeout",
        "2s",
        "--json",
        path(&s_json),
    ]);
    let c_json = dir.path().join("c.json");
    let client = c1m_tls_client(&server, &cert, 10, "20s", &c_json);
    let limit = Duration::from_secs(20);

    // Plain HTTP where TLS is spoken: not a ClientHello.
    let mut garbage = TcpStream::connect(server.addr).unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Half a ClientHello (a record header announcing 512 bytes, then 5), then silence.
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 1, 0, 1, 252, 3])
        .unwrap();
    let t0 = std::time::Instant::now();
    for s in [&mut garbage, &mut stalled] {
        s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        let mut buf = [0u8; 256];
        // Until the server closes: an alert or nothing, then the end.
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    }
    let after = t0.elapsed();
    assert!(
        after >= Duration::from_millis(1900),
        "the stall was closed after {after:?}"
    );
    assert!(after < Duration::from_secs(6), "the stall was never closed");
    // A slowloris over TLS: the TLS handshake done, the upgrade dripped a byte every 200 ms,
    // each well within any read timeout. The handshake timeout runs from the accept, so
    // the drip does not extend it.
    let drip = Proc::spawn(
        Command::new("python3")
            .args(["-c", DRIP, &server.addr.to_string(), path(&cert)])
            .stdin(Stdio::null()),
        "slowloris",
    );
    let closed_after: f64 = drip.stdout_line("closed after", limit, |l| {
        l.strip_prefix("closed after ")?.parse().ok()
    });
    assert!((1.5..6.0).contains(&closed_after), "{closed_after} s");

    broadcast_with_sigusr1(&server, 2, 10);
    client.stderr_line("2 broadcasts", limit, |l| {
        l.contains(" msgs 20 ").then_some(())
    });
    client.signal(libc::SIGTERM);
    let out = client.wait(limit);
    assert_eq!(out.code(), Some(0), "{out}");
    server.proc.signal(libc::SIGINT);
    server.proc.wait(limit);
    let s = read_json(&s_json);
    assert_eq!(s["errors"]["by_class"]["tls_handshake"], 1, "{s:#}");
    // The half ClientHello, and the slowloris's upgrade.
    assert_eq!(s["errors"]["by_class"]["timeout"], 2, "{s:#}");
    assert_eq!(s["connections"]["established"], 10, "{s:#}");
    let c = read_json(&c_json);
    assert_eq!(c["messages"]["received"], 20, "{c:#}");
    assert_eq!(c["messages"]["missed"], 0, "{c:#}");
    assert_eq!(c["errors"]["total"], 0, "{c:#}");
}

/// A TLS reader that stops reading pins at most one encrypted frame: the next broadcasts are
/// dropped for it and counted, and a reading client gets every one.
#[test]
fn a_tls_reader_that_stops_reading_loses_broadcasts_and_no_one_else_does() {
    use crate::common::{broadcast_line, read_json};
    require_python_websockets();
    let dir = tempfile::tempdir().unwrap();
    let s_json = dir.path().join("s.json");
    // 256 KiB frames: 60 of them (15 MiB) overflow what loopback buffers hold for one
    // connection (the send and receive buffers grow to 4 and 6 MiB by default).
    let (server, cert) = c1m_tls_server(&["--tls", "--pad", "262144", "--json", path(&s_json)]);
    // Python: upgrade over TLS, then never read again.
    const STALL: &str = r#"
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
host, port = sys.argv[1].rsplit(":", 1)
s = ctx.wrap_socket(socket.create_connection((host, int(port))), server_hostname=host)
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
assert b" 101 " in s.recv(4096)
print("upgraded", flush=True)
time.sleep(30)
"#;
    let stall = Proc::spawn(
        Command::new("python3")
            .args(["-c", STALL, &server.addr.to_string(), path(&cert)])
            .stdin(Stdio::null()),
        "stalled reader",
    );
    let limit = Duration::from_secs(20);
    stall.stdout_line("upgraded", limit, |l| (l == "upgraded").then_some(()));
    let c_json = dir.path().join("c.json");
    let client = c1m_tls_client(&server, &cert, 5, "30s", &c_json);
    const BROADCASTS: u64 = 60;
    for seq in 1..=BROADCASTS {
        server.proc.signal(libc::SIGUSR1);
        let (logged, ..) =
            server
                .proc
                .stderr_line(&format!("broadcast seq={seq}"), limit, broadcast_line);
        assert_eq!(logged, seq);
        // Paced so that a reading client keeps up: only the stalled one falls behind.
        std::thread::sleep(Duration::from_millis(80));
    }
    client.stderr_line("every broadcast", limit, |l| {
        l.contains(&format!(" msgs {} ", 5 * BROADCASTS))
            .then_some(())
    });
    client.signal(libc::SIGTERM);
    assert_eq!(client.wait(limit).code(), Some(0));
    server.proc.signal(libc::SIGINT);
    server.proc.wait(limit);
    let s = read_json(&s_json);
    let dropped = s["messages"]["dropped"].as_u64().unwrap();
    let sent = s["messages"]["sent"].as_u64().unwrap();
    // Each broadcast went to 6 connections, as sent or as dropped; only the stalled one drops.
    assert_eq!(sent + dropped, 6 * BROADCASTS, "{s:#}");
    // Once the kernel's buffers (a few MiB on loopback, growing as it tunes the window) and
    // the one frame in flight are full, broadcasts are dropped for the stalled reader, one
    // connection, and for no one else.
    let drops: Vec<u64> = s["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["dropped"].as_u64().unwrap())
        .collect();
    assert!(drops.iter().all(|&d| d <= 1), "{drops:?}");
    assert!(dropped >= 5, "{drops:?}");
    let c = read_json(&c_json);
    assert_eq!(c["messages"]["received"], 5 * BROADCASTS, "{c:#}");
    assert_eq!(c["messages"]["missed"], 0, "{c:#}");
}

/// A TLS handshake flood: 800 connections each sending a real ClientHello (the server does
/// its half of the key exchange and signs) and never finishing, against a server holding 20
/// established TLS connections with a 2 s handshake timeout. The half-done handshakes are
/// timed out and counted; the established connections miss nothing.
#[test]
fn a_tls_handshake_flood_leaves_established_connections_alone() {
    use crate::common::{broadcast_line, read_json};
    require_python_websockets();
    let dir = tempfile::tempdir().unwrap();
    let (s_json, c_json) = (dir.path().join("s.json"), dir.path().join("c.json"));
    let (server, cert) = c1m_tls_server(&[
        "--tls",
        "--handshake-timeout",
        "2s",
        "--json",
        path(&s_json),
    ]);
    let client = c1m_tls_client(&server, &cert, 20, "10s", &c_json);
    let limit = Duration::from_secs(30);
    // Python writes each ClientHello from a memory BIO to a plain socket, reads nothing back.
    const FLOOD: &str = r#"
import socket, ssl, sys, time
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
held = []
for _ in range(800):
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    s = socket.create_connection((host, int(port)))
    s.sendall(out.read())
    held.append(s)
print("flooded", flush=True)
time.sleep(8)
"#;
    let flood = Proc::spawn(
        Command::new("python3")
            .args(["-c", FLOOD, &server.addr.to_string()])
            .stdin(Stdio::null()),
        "flood",
    );
    flood.stdout_line("flooded", limit, |l| (l == "flooded").then_some(()));
    let broadcast = |seq: u64| {
        server.proc.signal(libc::SIGUSR1);
        let (_, sent, _) =
            server
                .proc
                .stderr_line(&format!("broadcast seq={seq}"), limit, broadcast_line);
        sent
    };
    assert_eq!(broadcast(1), 20, "mid-flood, to the established only");
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(broadcast(2), 20, "after the flood timed out");
    client.stderr_line("both broadcasts", limit, |l| {
        l.contains(" msgs 40 ").then_some(())
    });
    client.signal(libc::SIGTERM);
    assert_eq!(client.wait(limit).code(), Some(0));
    server.proc.signal(libc::SIGINT);
    server.proc.wait(limit);
    let s = read_json(&s_json);
    assert_eq!(s["connections"]["established"], 20, "{s:#}");
    let timed_out = s["errors"]["by_class"]["timeout"].as_u64().unwrap();
    assert!(
        (700..=800).contains(&timed_out),
        "{timed_out} timed out: {s:#}"
    );
    let c = read_json(&c_json);
    assert_eq!(c["messages"]["received"], 40, "{c:#}");
    assert_eq!(c["messages"]["missed"], 0, "{c:#}");
    assert_eq!(c["errors"]["total"], 0, "{c:#}");
}
