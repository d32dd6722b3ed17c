//! The server's policies for peers it cannot or will not serve: a reader that stops taking
//! broadcasts (`--slow-policy drop|close`), and connections past `--max-conns`. The real binary
//! on loopback, a few connections, every wait bounded.

use crate::common::*;
use c1m::proto::handshake;
use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Generous: a broadcast to four connections takes milliseconds; this only catches a server
/// that waits for its slowest reader.
const PROMPT: Duration = Duration::from_secs(5);

/// Big enough that a few frames fill a loopback socket's buffers (the kernel sizes a loopback
/// send buffer at about 2.5 MiB).
const PAD: &str = "262144";

const NORMAL: usize = 3;

/// A connection that completes the upgrade and then never reads, with the smallest receive
/// buffer the kernel allows, so that it stalls after a few frames.
fn slow_peer(addr: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    // Before connect, so the window it advertises is small from the start.
    s.set_recv_buffer_size(1024).unwrap();
    s.connect(&addr.into()).unwrap();
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let key = handshake::generate_key(&mut rand::rng());
    let mut req = Vec::new();
    handshake::write_request(&addr.to_string(), "/", &key, &mut req);
    s.write_all(&req).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so nothing after the head is consumed.
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed during the upgrade");
        head.push(byte[0]);
    }
    handshake::parse_response(&head, &key).unwrap().unwrap();
    s
}

/// Well-behaved readers (tungstenite), each on a thread that reports (reader, seq) per message.
fn normal_peers(addr: SocketAddr) -> Receiver<(usize, u64)> {
    let (tx, rx) = mpsc::channel();
    for i in 0..NORMAL {
        let (mut ws, _) = tungstenite::connect(format!("ws://{addr}/")).unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            while let Ok(msg) = ws.read() {
                // The server's close frame at the end is no broadcast.
                let tungstenite::Message::Text(text) = msg else {
                    continue;
                };
                let v: Value = serde_json::from_str(text.as_str()).unwrap();
                if tx.send((i, v["seq"].as_u64().unwrap())).is_err() {
                    return;
                }
            }
        });
    }
    rx
}

/// One broadcast line: `broadcast seq=N sent to M connections in X ms[ (D not queued: …)]`.
#[derive(Debug)]
struct Line {
    sent: u64,
    dropped: u64,
}

fn parse_line(line: &str, want: u64) -> Option<Line> {
    let (seq, sent, _) = broadcast_line(line)?;
    if seq != want {
        return None;
    }
    let dropped = line
        .split_once(" (")
        .and_then(|(_, rest)| rest.split(' ').next())
        .map_or(0, |n| n.parse().unwrap());
    Some(Line { sent, dropped })
}

/// A server with `policy`, its JSON report's path, three normal readers and one slow one.
struct Rig {
    server: ServerProc,
    json: tempfile::TempPath,
    normal: Receiver<(usize, u64)>,
    slow: TcpStream,
    seq: u64,
}

impl Rig {
    fn start(policy: &[&str]) -> Rig {
        let json = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        let mut args = vec!["--every", "off", "--pad", PAD, "-q", "--json"];
        args.push(json.to_str().unwrap());
        args.extend_from_slice(policy);
        let server = ServerProc::start_with(&args, Stdio::piped());
        let normal = normal_peers(server.addr);
        let slow = slow_peer(server.addr);
        Rig {
            server,
            json,
            normal,
            slow,
            seq: 0,
        }
    }

    /// Broadcasts once (a line `b` on stdin) and returns the server's line for it, after every
    /// normal reader has the message.
    fn broadcast(&mut self) -> Line {
        self.seq += 1;
        let seq = self.seq;
        let asked = Instant::now();
        let stdin = self.server.proc.stdin.as_mut().unwrap();
        stdin.write_all(b"b\n").unwrap();
        stdin.flush().unwrap();
        let line = self
            .server
            .proc
            .stderr_line("broadcast line", PROMPT, |l| parse_line(l, seq));
        assert!(
            asked.elapsed() < PROMPT,
            "broadcast {seq} took {:?}",
            asked.elapsed()
        );
        let mut got = [false; NORMAL];
        while got.iter().any(|g| !g) {
            let (i, s) = self
                .normal
                .recv_timeout(PROMPT)
                .unwrap_or_else(|e| panic!("a normal reader lacks seq {seq}: {e} ({got:?})"));
            assert_eq!(
                s, seq,
                "reader {i} got {s} when {seq} was next: it missed one"
            );
            got[i] = true;
        }
        line
    }

    /// Broadcasts until the slow reader misses one; returns that line.
    fn until_the_first_drop(&mut self) -> Line {
        for _ in 0..100 {
            let line = self.broadcast();
            assert_eq!(line.sent + line.dropped, 1 + NORMAL as u64, "{line:?}");
            if line.dropped > 0 {
                return line;
            }
        }
        panic!("the slow reader took 100 frames of {PAD} bytes without stalling");
    }

    /// Stops the server and returns its JSON report.
    fn stop(self) -> (Value, TcpStream, Finished) {
        self.server.proc.signal(libc::SIGTERM);
        let out = self.server.proc.wait(Duration::from_secs(15));
        assert_eq!(out.code(), Some(0), "{out}");
        let report = read_json(&self.json);
        assert_eq!(schema_errors(&report), Vec::<String>::new());
        (report, self.slow, out)
    }
}

#[test]
fn drop_keeps_a_slow_reader_and_counts_what_it_misses() {
    drop_policy(&[]);
}

/// The same through io_uring's batched sends: a full socket refuses at once there too, a
/// partial send keeps its rest in flight, and the counts come out the same.
#[test]
fn io_uring_drops_and_counts_as_write_does() {
    let report = drop_policy(&["--io-uring"]);
    assert_eq!(report["config"]["io_uring"], true);
}

fn drop_policy(extra: &[&str]) -> Value {
    let mut args = vec!["--slow-policy", "drop", "--slow-close-after", "2"];
    args.extend_from_slice(extra);
    let mut rig = Rig::start(&args);
    let first = rig.until_the_first_drop();
    assert_eq!(first.dropped, 1, "{first:?}");
    // Well past --slow-close-after, which only `close` heeds.
    for _ in 0..5 {
        let line = rig.broadcast();
        // The slow reader is still there, and missed this one too.
        assert_eq!((line.sent, line.dropped), (NORMAL as u64, 1), "{line:?}");
    }
    let broadcasts = rig.seq;
    let (report, _slow, out) = rig.stop();
    assert_eq!(u64_at(&report, "/messages/dropped"), 6, "{out}");
    // Every frame either went out or was dropped: one per open connection per broadcast.
    let sent = u64_at(&report, "/messages/sent");
    assert_eq!(sent + 6, broadcasts * (1 + NORMAL as u64));
    assert_eq!(u64_at(&report, "/errors/total"), 0, "{out}");
    assert_eq!(u64_at(&report, "/errors/by_class/slow_consumer"), 0);
    report
}

#[test]
fn close_ends_a_slow_reader_after_n_misses_in_a_row() {
    // A slow consumer closed is an error like any other: --max-errors lets the run pass.
    let mut rig = Rig::start(&[
        "--slow-policy",
        "close",
        "--slow-close-after",
        "3",
        "--max-errors",
        "1",
    ]);
    let first = rig.until_the_first_drop();
    assert_eq!(first.dropped, 1);
    for n in 2..=3 {
        let line = rig.broadcast();
        assert_eq!(
            (line.sent, line.dropped),
            (NORMAL as u64, 1),
            "miss {n}: {line:?}"
        );
    }
    // The third miss closed it: the others go on, and nothing is dropped any more.
    for _ in 0..3 {
        let line = rig.broadcast();
        assert_eq!((line.sent, line.dropped), (NORMAL as u64, 0), "{line:?}");
    }
    let broadcasts = rig.seq;
    // The server has closed the slow one: what was in flight drains, then the stream ends.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rig.slow.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the slow reader was not closed: {e}"),
        }
    }
    let (report, _slow, out) = rig.stop();
    assert_eq!(
        u64_at(&report, "/errors/by_class/slow_consumer"),
        1,
        "{out}"
    );
    assert_eq!(u64_at(&report, "/errors/total"), 1, "{out}");
    assert_eq!(u64_at(&report, "/messages/dropped"), 3);
    // One frame sent or dropped per open connection per broadcast: 1 + NORMAL of them until
    // the slow one was closed, NORMAL for the last three broadcasts.
    let sent = u64_at(&report, "/messages/sent");
    let open_then = (broadcasts - 3) * (1 + NORMAL as u64) + 3 * NORMAL as u64;
    assert_eq!(sent + 3, open_then);
    assert!(
        report["errors"]["samples"]["slow_consumer"]
            .as_str()
            .unwrap()
            .contains("--slow-close-after"),
        "{report:#}"
    );
    assert!(out.stdout.contains("slow_consumer = 1"), "{out}");
}

#[test]
fn past_max_conns_an_upgrade_gets_503_and_is_counted() {
    let json = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let server = ServerProc::start(&[
        "--every",
        "off",
        "--max-conns",
        "5",
        "--json",
        json.to_str().unwrap(),
    ]);
    let url = server.url();
    let mut open: Vec<_> = (0..5)
        .map(|_| tungstenite::connect(&url).unwrap().0)
        .collect();
    match tungstenite::connect(&url) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("the 6th connection was not refused with 503: {other:?}"),
    }
    server.proc.stderr_line("refusal hint", PROMPT, |l| {
        l.contains("turned a connection away with 503 at --max-conns 5;")
            .then_some(())
    });
    // The cap is on connections open, not on connections ever made.
    open.pop().unwrap().close(None).unwrap();
    server.proc.stderr_line("four open", PROMPT, |l| {
        l.contains(" conns 4 peak 5 ").then_some(())
    });
    open.push(tungstenite::connect(&url).unwrap().0);

    server.proc.signal(libc::SIGTERM);
    let out = server.proc.wait(Duration::from_secs(15));
    assert_eq!(out.code(), Some(0), "{out}");
    let report = read_json(&json);
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    assert_eq!(u64_at(&report, "/connections/refused"), 1, "{out}");
    assert_eq!(u64_at(&report, "/connections/established"), 6);
    assert_eq!(u64_at(&report, "/connections/failed"), 0);
    assert_eq!(u64_at(&report, "/errors/total"), 0, "{out}");
    assert!(out.stdout.contains("refused (503) = 1"), "{out}");
}
