//! Peers that misbehave: each failure is counted under its error class, the connection is ended
//! the way the RFC says, other connections carry on, and nothing panics. The engine runs
//! in-process (as in tests/loopback.rs) except where the CLI is the subject.

use crate::common::{
    assert_no_shard_panic, c1m, free_port, read_json, read_upgrade, run, u64_at, watch_shard_panics,
};
use c1m::engine::client::{Client, ClientConfig};
use c1m::engine::server::{Server, ServerConfig};
use c1m::engine::{now_us, source};
use c1m::proto::frame::{self, Decoder, Event, OP_BINARY, OP_TEXT, Role};
use c1m::proto::handshake;
use c1m::proto::payload::{self, Format};
use c1m::stats::Snapshot;
use c1m::stats::aggregate::Aggregator;
use c1m::stats::{ErrorClass, Mode, ShardDelta};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

const LIMIT: Duration = Duration::from_secs(10);

/// One side's deltas merged into snapshots, as the headless runs do.
struct Side {
    rx: UnboundedReceiver<ShardDelta>,
    agg: Aggregator,
}

impl Side {
    fn new(mode: Mode, target: u64) -> (Side, UnboundedSender<ShardDelta>) {
        let (tx, rx) = unbounded_channel();
        let agg = Aggregator::new(mode, target, vec![], Instant::now());
        (Side { rx, agg }, tx)
    }

    fn snapshot(&mut self) -> Snapshot {
        while let Ok(d) = self.rx.try_recv() {
            self.agg.apply(d, Instant::now());
        }
        self.agg.snapshot(Instant::now())
    }

    /// Polls until `done` holds; panics with the last snapshot after `LIMIT`.
    fn wait_for(&mut self, what: &str, done: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let start = Instant::now();
        loop {
            let s = self.snapshot();
            if done(&s) {
                return s;
            }
            assert!(
                start.elapsed() < LIMIT,
                "timed out waiting for {what}: {s:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn class(s: &Snapshot, class: ErrorClass) -> u64 {
    s.errors.by_class.get(class)
}

fn start_server(handshake_timeout: Duration) -> (Server, Side) {
    watch_shard_panics();
    let (side, tx) = Side::new(Mode::Server, 0);
    let server = Server::start(
        &ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            shards: 2,
            handshake_timeout,
            joins_group: false,
            ..ServerConfig::default()
        },
        tx,
    )
    .unwrap();
    (server, side)
}

fn start_client(addr: SocketAddr, conns: u64) -> (Client, Side) {
    start_client_with(addr, conns, Duration::from_secs(5))
}

fn start_client_with(addr: SocketAddr, conns: u64, connect_timeout: Duration) -> (Client, Side) {
    start_client_cfg(client_config(addr, conns, connect_timeout))
}

fn start_client_cfg(cfg: ClientConfig) -> (Client, Side) {
    watch_shard_panics();
    let (side, tx) = Side::new(Mode::Client, cfg.conns);
    let client = Client::start(&cfg, tx).unwrap();
    (client, side)
}

fn client_config(addr: SocketAddr, conns: u64, connect_timeout: Duration) -> ClientConfig {
    ClientConfig {
        addr,
        host: addr.to_string(),
        path: "/".into(),
        conns,
        rate: 0.0,
        sources: source::plan(addr, 1, None).unwrap(),
        max_inflight: 64,
        connect_timeout,
        shards: 2,
        batch_window: Duration::from_micros(500),
        reconnect: None,
        headers: vec![],
        subprotocols: vec![],
        tls: None,
        talk: Default::default(),
        reader: Default::default(),
        compression: Default::default(),
        max_message: None,
        echo: false,
        churn: 0.0,
        io_uring: false,
    }
}

/// Broadcast number 1 (each test broadcasts once).
fn broadcast(server: &mut Server) -> u64 {
    let seq = 1;
    let mut buf = Vec::new();
    let ts = now_us();
    payload::encode(Format::Json, seq, ts, 0, &mut buf);
    server.broadcast(seq, &buf, ts);
    seq
}

fn raw_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s
}

/// Everything the peer sends until it closes the connection.
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A reset after the last bytes still means "closed".
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the peer neither answered nor closed within {LIMIT:?}: {e}"),
        }
    }
}

/// A well-behaved WebSocket client (tungstenite), to show the bad ones do not disturb it.
fn good_peer(addr: SocketAddr) -> tungstenite::WebSocket<TcpStream> {
    let (ws, _) = tungstenite::client(format!("ws://{addr}/"), raw_connect(addr)).unwrap();
    ws
}

fn assert_gets_seq(ws: &mut tungstenite::WebSocket<TcpStream>, seq: u64) {
    let msg = ws.read().expect("the good peer gets the broadcast");
    let text = msg.into_text().expect("a text message");
    let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
    assert_eq!(v["seq"], seq, "{text}");
}

/// Completes a real upgrade on a raw socket, with c1m's own handshake helpers.
fn raw_upgrade(addr: SocketAddr) -> TcpStream {
    let mut s = raw_connect(addr);
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
    let accepted = handshake::parse_response(&head, &key).unwrap().unwrap();
    assert_eq!(accepted.consumed, head.len());
    s
}

/// The close code of the close frame in `bytes` (frames from a server).
fn close_code(bytes: &[u8]) -> Option<u16> {
    let mut bytes = bytes.to_vec();
    let mut code = None;
    Decoder::new()
        .feed(
            &mut bytes,
            Role::Client,
            &frame::Limits {
                max_frame: 1 << 20,
                max_message: 1 << 20,
            },
            |ev| {
                if let Event::Close(c, _) = ev {
                    code = c;
                }
            },
        )
        .unwrap();
    code
}

#[test]
fn garbage_instead_of_a_handshake_gets_400() {
    let (mut server, mut srv) = start_server(Duration::from_secs(10));
    let mut good = good_peer(server.local_addr());

    let mut bad = raw_connect(server.local_addr());
    bad.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n")
        .unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut bad)).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(answer.contains("not an HTTP request"), "{answer}");

    let s = srv.wait_for("the failed handshake", |s| s.connections.failed == 1);
    assert_eq!(class(&s, ErrorClass::HandshakeFailed), 1, "{:?}", s.errors);
    assert_eq!(s.errors.total, 1);
    assert_eq!((s.connections.established, s.connections.active), (1, 1));

    let seq = broadcast(&mut server);
    assert_gets_seq(&mut good, seq);
    server.stop();
    assert_no_shard_panic();
}

/// Frames a push server must refuse after a good upgrade: each gets a close frame with the
/// RFC 6455 code, is dropped, and is counted as `protocol`.
#[test]
fn bad_frames_are_closed_with_the_rfc_code() {
    let (mut server, mut srv) = start_server(Duration::from_secs(10));
    let addr = server.local_addr();
    let mut good = good_peer(addr);

    let mut unmasked = Vec::new();
    frame::encode_frame(OP_TEXT, b"hello", None, &mut unmasked);
    let mut huge = Vec::new();
    frame::encode_frame(
        OP_BINARY,
        &vec![7u8; 64 * 1024],
        Some([1, 2, 3, 4]),
        &mut huge,
    );
    let mut bad_opcode = Vec::new();
    frame::encode_frame(0x3, b"x", Some([1, 2, 3, 4]), &mut bad_opcode);
    let mut bad_utf8 = Vec::new();
    frame::encode_frame(
        OP_TEXT,
        &[0xff, 0xfe, 0x80],
        Some([1, 2, 3, 4]),
        &mut bad_utf8,
    );
    // Fragment abuse: a ping split into fragments (FIN clear), a continuation with no message
    // begun, and a new text frame in the middle of a fragmented one.
    let split_ping: &[u8] = &[0x09, 0x80, 1, 2, 3, 4];
    let stray_continuation: &[u8] = &[0x80, 0x81, 1, 2, 3, 4, b'x' ^ 1];
    let interleaved: &[u8] = &[
        0x01,
        0x81,
        1,
        2,
        3,
        4,
        b'a' ^ 1,
        0x81,
        0x81,
        1,
        2,
        3,
        4,
        b'b' ^ 1,
    ];
    let cases: [(&str, &[u8], u16); 7] = [
        ("an unmasked frame", &unmasked, 1002),
        ("a 64 KiB frame", &huge, 1009),
        ("a reserved opcode", &bad_opcode, 1002),
        ("a text frame that is not UTF-8", &bad_utf8, 1007),
        ("a fragmented ping", split_ping, 1002),
        (
            "a continuation with no message begun",
            stray_continuation,
            1002,
        ),
        (
            "a new text frame inside a fragmented one",
            interleaved,
            1002,
        ),
    ];
    for (i, (what, bytes, code)) in cases.iter().enumerate() {
        let mut s = raw_upgrade(addr);
        // The server may close before taking all of a large frame; that is its right.
        let _ = s.write_all(bytes);
        let reply = read_until_closed(&mut s);
        assert_eq!(close_code(&reply), Some(*code), "{what}: got {reply:?}");
        let s = srv.wait_for(what, |s| class(s, ErrorClass::Protocol) == i as u64 + 1);
        assert_eq!(s.errors.total, i as u64 + 1, "{what}: {:?}", s.errors);
    }
    let s = srv.snapshot();
    assert_eq!(s.connections.established, 8);
    assert_eq!(s.connections.active, 1, "only the good peer is left");

    let seq = broadcast(&mut server);
    assert_gets_seq(&mut good, seq);
    server.stop();
    assert_no_shard_panic();
}

/// A client that connects and never finishes its request is closed after
/// `handshake_timeout` and counted as a timeout.
#[test]
fn a_silent_peer_is_timed_out() {
    let (server, mut srv) = start_server(Duration::from_millis(300));
    let mut slow = raw_connect(server.local_addr());
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = Instant::now();
    let answer = read_until_closed(&mut slow);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        t.elapsed()
    );
    let s = srv.wait_for("the timeout", |s| s.connections.failed == 1);
    assert_eq!(class(&s, ErrorClass::Timeout), 1, "{:?}", s.errors);
    server.stop();
    assert_no_shard_panic();
}

fn tiny_server(conns: usize, answer: fn(&[u8; 28]) -> Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for _ in 0..conns {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            std::thread::spawn(move || {
                let Some((upgrade, _)) = read_upgrade(&mut s) else {
                    return;
                };
                let _ = s.write_all(&answer(&upgrade.accept));
                // Hold the connection until the client closes it.
                let mut chunk = [0u8; 1024];
                while s.read(&mut chunk).is_ok_and(|n| n > 0) {}
            });
        }
    });
    addr
}

#[test]
fn unparsable_payloads_are_counted_not_measured() {
    const CONNS: u64 = 4;
    let addr = tiny_server(CONNS as usize, |accept| {
        let mut out = Vec::new();
        handshake::write_response(accept, None, false, &mut out);
        frame::encode_frame(OP_TEXT, b"hello", None, &mut out);
        frame::encode_frame(OP_TEXT, br#"{"seq":1,"type":"tick"}"#, None, &mut out);
        out
    });
    let (client, mut cli) = start_client(addr, CONNS);
    let s = cli.wait_for("both messages on every connection", |s| {
        s.messages.received == 2 * CONNS
    });
    assert_eq!(s.connections.established, CONNS);
    assert_eq!(s.messages.unparsable, 2 * CONNS, "{:?}", s.messages);
    assert_eq!(s.latency_us.count, 0, "nothing to measure");
    assert_eq!((s.messages.missed, s.messages.skewed), (None, 0));
    assert_eq!(s.errors.total, 0, "{:?}", s.errors);
    client.stop();
    let s = cli.snapshot();
    assert_eq!(s.errors.total, 0, "{:?}", s.errors);
    assert_eq!(s.latency_us.count, 0);
    assert_no_shard_panic();
}

/// What third-party servers may send instead of a timestamp: binary, a huge text, a negative
/// number, a time an hour ahead, a time decades ago. None is a latency and none is a panic;
/// the one good message is.
#[test]
fn foreign_payloads_of_every_kind() {
    const CONNS: u64 = 3;
    let addr = tiny_server(CONNS as usize, |accept| {
        let mut out = Vec::new();
        handshake::write_response(accept, None, false, &mut out);
        let now_ms = c1m::engine::now_us() / 1000;
        frame::encode_frame(OP_BINARY, &[0xff, 0x00, 0x80], None, &mut out);
        frame::encode_frame(OP_TEXT, &vec![b'a'; 512 * 1024], None, &mut out);
        frame::encode_frame(OP_TEXT, b"-5", None, &mut out);
        let future = format!("{}", now_ms + 3_600_000);
        frame::encode_frame(OP_TEXT, future.as_bytes(), None, &mut out);
        frame::encode_frame(OP_TEXT, b"{\"time\":1000000000000}", None, &mut out);
        frame::encode_frame(OP_TEXT, now_ms.to_string().as_bytes(), None, &mut out);
        out
    });
    let (client, mut cli) = start_client(addr, CONNS);
    let s = cli.wait_for("six messages on every connection", |s| {
        s.messages.received == 6 * CONNS
    });
    assert_eq!(s.messages.unparsable, 3 * CONNS, "{:?}", s.messages);
    assert_eq!(s.messages.skewed, 2 * CONNS, "{:?}", s.messages);
    assert_eq!(s.latency_us.count, CONNS, "only the good one is measured");
    assert!(s.latency_us.max < 10_000_000, "{:?}", s.latency_us);
    assert_eq!(s.errors.total, 0, "{:?}", s.errors);
    client.stop();
    assert_no_shard_panic();
}

#[test]
fn a_rejected_upgrade_is_counted_as_rejected() {
    const CONNS: u64 = 3;
    let addr = tiny_server(CONNS as usize, |_| {
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
    });
    let (client, mut cli) = start_client(addr, CONNS);
    let s = cli.wait_for("every attempt to fail", |s| s.connections.failed == CONNS);
    assert_eq!(
        class(&s, ErrorClass::HandshakeRejected),
        CONNS,
        "{:?}",
        s.errors
    );
    assert_eq!(s.errors.total, CONNS);
    assert_eq!(s.connections.established, 0);
    client.stop();
    assert_no_shard_panic();
}

/// A server that accepts TCP but never answers the upgrade: each attempt is given up after
/// `connect_timeout` and counted as a timeout.
#[test]
fn a_server_that_never_answers_is_timed_out() {
    const CONNS: u64 = 3;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        // Accept and hold every connection, silent, until the client has given up on them.
        let held: Vec<TcpStream> = (0..CONNS)
            .filter_map(|_| listener.accept().ok())
            .map(|(s, _)| s)
            .collect();
        for mut s in held {
            s.set_read_timeout(Some(LIMIT)).unwrap();
            let mut buf = [0u8; 1024];
            while s.read(&mut buf).is_ok_and(|n| n > 0) {}
        }
    });
    let t = Instant::now();
    let (client, mut cli) = start_client_with(addr, CONNS, Duration::from_millis(300));
    let s = cli.wait_for("every attempt to time out", |s| {
        s.connections.failed == CONNS
    });
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "gave up after {:?}",
        t.elapsed()
    );
    assert_eq!(class(&s, ErrorClass::Timeout), CONNS, "{:?}", s.errors);
    assert_eq!(s.errors.total, CONNS);
    assert_eq!(s.connections.established, 0);
    client.stop();
    holder.join().unwrap();
    assert_no_shard_panic();
}

/// The server goes away under 50 open connections: each is counted once as ended by the server,
/// the active count falls to 0, and the client's shards keep running until stopped.
#[test]
fn a_server_that_stops_mid_test() {
    const CONNS: u64 = 50;
    let (mut server, _srv) = start_server(Duration::from_secs(10));
    let (client, mut cli) = start_client(server.local_addr(), CONNS);
    cli.wait_for("50 open connections", |s| s.connections.active == CONNS);
    let seq = broadcast(&mut server);
    cli.wait_for("the broadcast", |s| s.messages.received == CONNS);
    server.stop();
    let s = cli.wait_for("every connection to end", |s| {
        s.connections.active == 0 && s.connections.closed == CONNS
    });
    let ended = class(&s, ErrorClass::ClosedByServer) + class(&s, ErrorClass::Reset);
    assert_eq!(ended, CONNS, "{:?}", s.errors);
    assert_eq!(s.errors.total, CONNS, "{:?}", s.errors);
    assert_eq!(s.messages.missed, Some(0));
    assert_eq!(seq, 1);
    client.stop();
    let s = cli.snapshot();
    assert_eq!(s.errors.total, CONNS, "stop() must not count them again");
    assert_no_shard_panic();
}

#[test]
fn refused_connects_are_counted_as_refused() {
    const CONNS: u64 = 10;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (client, mut cli) = start_client(addr, CONNS);
    let s = cli.wait_for("every connect to fail", |s| s.connections.failed == CONNS);
    assert_eq!(class(&s, ErrorClass::Refused), CONNS, "{:?}", s.errors);
    assert_eq!(s.errors.total, CONNS);
    assert_eq!(s.connections.established, 0);
    assert_eq!(s.sources.len(), 1);
    assert_eq!(s.sources[0].errors, CONNS);
    client.stop();
    assert_no_shard_panic();
}

/// `--source-ips` naming an address this machine does not have: bind() fails with
/// EADDRNOTAVAIL before any connect, so no packet leaves; each attempt is counted under `bind`.
#[test]
fn an_unconfigured_source_address_is_a_bind_error() {
    const TEST_NET: &str = "192.0.2.1"; // RFC 5737 TEST-NET-1
    // The premise: the address is not local, so bind() fails and nothing is sent.
    let err = TcpListener::bind((TEST_NET, 0)).expect_err("192.0.2.1 is configured here");
    assert_eq!(err.kind(), ErrorKind::AddrNotAvailable, "{err}");

    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let out = run(
        c1m(&[
            "client",
            "--url",
            &format!("ws://127.0.0.1:{}/", free_port()),
            "--source-ips",
            TEST_NET,
            "--conns",
            "5",
            "--duration",
            "1s",
            "--json",
            json.to_str().unwrap(),
        ]),
        LIMIT,
    );
    assert_eq!(out.code(), Some(1), "{out}");
    let r = read_json(&json);
    assert_eq!(u64_at(&r, "/errors/by_class/bind"), 5, "{r:#}");
    assert_eq!(u64_at(&r, "/errors/total"), 5, "{r:#}");
    assert_eq!(u64_at(&r, "/connections/failed"), 5, "{r:#}");
    assert_eq!(u64_at(&r, "/connections/established"), 0, "{r:#}");
    assert_eq!(r["sources"][0]["addr"], TEST_NET, "{r:#}");
    assert_eq!(u64_at(&r, "/sources/0/errors"), 5, "{r:#}");
    assert!(out.stdout.contains("bind = 5"), "{out}");
}

/// What a user sees when every bind fails: the cause, not only a count.
#[test]
fn an_unconfigured_source_address_is_explained() {
    let out = run(
        c1m(&[
            "client",
            "--url",
            &format!("ws://127.0.0.1:{}/", free_port()),
            "--source-ips",
            "192.0.2.1",
            "--conns",
            "5",
            "--duration",
            "1s",
        ]),
        LIMIT,
    );
    assert!(
        out.stderr.contains("Cannot assign requested address")
            || out.stderr.contains("not configured"),
        "no explanation of the bind errors:\n{out}"
    );
}

/// A server that agrees permessage-deflate (no context takeover), sends `frames`, and returns
/// the close code of the client's close frame.
fn deflate_server(frames: Vec<u8>) -> (SocketAddr, std::thread::JoinHandle<Option<u16>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().ok()?;
        let (upgrade, buf) = read_upgrade(&mut s)?;
        assert!(upgrade.deflate, "{}", String::from_utf8_lossy(&buf));
        let mut out = Vec::new();
        handshake::write_response(&upgrade.accept, None, true, &mut out);
        out.extend_from_slice(&frames);
        s.write_all(&out).unwrap();
        let mut decoder = Decoder::new();
        let limits = frame::Limits {
            max_frame: 1 << 16,
            max_message: 1 << 16,
        };
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).ok().filter(|&n| n > 0)?;
            let mut code = None;
            decoder
                .feed(&mut chunk[..n], Role::Server, &limits, |ev| {
                    if let Event::Close(c, _) = ev {
                        code = c;
                    }
                })
                .unwrap();
            if code.is_some() {
                return code;
            }
        }
    });
    (addr, thread)
}

/// A compressed text frame carrying `payload`.
fn rsv1_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode_deflated(OP_TEXT, payload, None, &mut out);
    out
}

/// permessage-deflate from a server that gets it wrong: a good compressed message is timed;
/// bytes that are not DEFLATE close the connection with 1007 and a decompression bomb with
/// 1009, each counted as a protocol error; nothing panics and the bomb never inflates past the
/// 1 MiB message limit (the unit tests check the buffer).
#[test]
fn bad_compressed_messages_close_with_1007_and_a_bomb_with_1009() {
    let mut good = Vec::new();
    payload::encode(Format::Json, 1, now_us(), 0, &mut good);
    let mut garbage = Vec::new();
    frame::encode_frame(OP_TEXT, &[0xff, 0xfe, 0xfd, 0xfc], None, &mut garbage);
    garbage[0] |= 0x40;
    let bomb = rsv1_frame(&vec![b'0'; 8 << 20]);
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    for (frames, code, what) in [
        ([rsv1_frame(&good), garbage].concat(), 1007, "not DEFLATE"),
        (bomb, 1009, "an 8 MiB bomb"),
    ] {
        let (addr, server) = deflate_server(frames);
        let mut cfg = client_config(addr, 1, LIMIT);
        cfg.compression = c1m::proto::deflate::Offer::Shared;
        let (client, mut cli) = start_client_cfg(cfg);
        let s = cli.wait_for(what, |s| s.errors.total == 1);
        assert_eq!(class(&s, ErrorClass::Protocol), 1, "{what}: {:?}", s.errors);
        assert_eq!(s.connections.compressed, 1, "{what}");
        assert_eq!(server.join().unwrap(), Some(code), "{what}");
        if code == 1007 {
            assert_eq!(s.latency_us.count, 1, "the good message is timed");
            assert!(s.bytes.inflated > 0, "{:?}", s.bytes);
            let sample = &s.errors.samples["protocol"];
            assert!(sample.contains("DEFLATE"), "{sample}");
        }
        client.stop();
    }
    assert_no_shard_panic();
}

/// `--echo` with `--max-message 128KiB`: a 64 KiB message (bigger than the socket takes at
/// once on a slow reader's side) comes back whole, text and binary alike; one past the limit is
/// closed with 1009 and counted.
#[test]
fn an_echo_server_returns_messages_up_to_its_limit() {
    watch_shard_panics();
    let (mut srv, tx) = Side::new(Mode::Server, 0);
    let server = Server::start(
        &ServerConfig {
            echo: true,
            max_message: Some(128 << 10),
            shards: 1,
            ..ServerConfig::default()
        },
        tx,
    )
    .unwrap();
    let mut ws = good_peer(server.local_addr());
    let big: Vec<u8> = (0..64 << 10).map(|i| (i % 251) as u8).collect();
    ws.send(tungstenite::Message::binary(big.clone())).unwrap();
    ws.send(tungstenite::Message::text("héllo")).unwrap();
    assert_eq!(ws.read().unwrap().into_data().as_ref(), &big[..]);
    assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), "héllo");
    ws.send(tungstenite::Message::binary(vec![1u8; 200 << 10]))
        .unwrap();
    let closed = match ws.read() {
        Ok(tungstenite::Message::Close(frame)) => frame.map(|f| u16::from(f.code)),
        other => panic!("expected the close frame, got {other:?}"),
    };
    assert_eq!(closed, Some(1009));
    let s = srv.wait_for("the protocol error", |s| {
        class(s, ErrorClass::Protocol) == 1
    });
    assert_eq!(s.errors.total, 1);
    server.stop();
    assert_no_shard_panic();
}

/// A client that sends 12 MiB and closes at once, before reading: its echo (more than the
/// sockets between them hold) comes back whole, and the close is answered behind it, not in
/// the middle.
#[test]
fn an_echo_server_answers_a_close_after_the_echoes_before_it() {
    watch_shard_panics();
    let (_srv, tx) = Side::new(Mode::Server, 0);
    let config = ServerConfig {
        echo: true,
        shards: 1,
        ..ServerConfig::default()
    };
    let server = Server::start(&config, tx).unwrap();
    let mut ws = good_peer(server.local_addr());
    let large = vec![9u8; 4 << 20];
    for _ in 0..3 {
        ws.send(tungstenite::Message::binary(large.clone()))
            .unwrap();
    }
    ws.close(None).unwrap();
    for i in 0..3 {
        match ws.read() {
            Ok(tungstenite::Message::Binary(b)) => assert_eq!(b.len(), large.len(), "echo {i}"),
            other => panic!("echo {i}: expected the message back, got {other:?}"),
        }
    }
    match ws.read() {
        Ok(tungstenite::Message::Close(Some(f))) => assert_eq!(u16::from(f.code), 1000),
        other => panic!("expected the close answered, got {other:?}"),
    }
    server.stop();
    assert_no_shard_panic();
}

/// A request that arrives in three reads, with a ping right behind its head: the server counts
/// every byte it read once (it had added the whole buffer again on each read, and the bytes
/// after the head twice).
#[test]
fn a_request_read_in_pieces_is_counted_once() {
    let (server, mut srv) = start_server(Duration::from_secs(10));
    let addr = server.local_addr();
    let mut s = raw_connect(addr);
    let key = handshake::generate_key(&mut rand::rng());
    let mut req = Vec::new();
    handshake::write_request(&addr.to_string(), "/", &key, &mut req);
    let mut ping = Vec::new();
    frame::encode_frame(frame::OP_PING, b"hi", Some([1, 2, 3, 4]), &mut ping);
    let third = req.len() / 3;
    s.set_nodelay(true).unwrap();
    s.write_all(&req[..third]).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    s.write_all(&req[third..2 * third]).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let mut last = req[2 * third..].to_vec();
    last.extend_from_slice(&ping);
    s.write_all(&last).unwrap();

    let sent = (req.len() + ping.len()) as u64;
    let first = srv.wait_for("the bytes read", |s| s.bytes.inbound >= sent);
    // Answered pong: everything sent has been read and handled.
    let mut head = vec![0u8; 4096];
    let n = s.read(&mut head).unwrap();
    assert!(n > 0);
    std::thread::sleep(Duration::from_millis(100));
    let later = srv.snapshot();
    assert_eq!(
        (first.bytes.inbound, later.bytes.inbound),
        (sent, sent),
        "request {} + ping {} bytes",
        req.len(),
        ping.len()
    );
    server.stop();
    assert_no_shard_panic();
}

/// Four connections get broadcast 1; three get 2 and 3; the first is then reset. What the
/// kernel held for it is gone unseen, and no later message shows a gap: the report counts the
/// reset connection and the two broadcasts it was owed, apart from `missed`, so received +
/// missed + owed = the 12 copies the server sent.
#[test]
fn a_reset_connection_is_owed_the_broadcasts_it_never_got() {
    const CONNS: usize = 4;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut peers: Vec<TcpStream> = (0..CONNS)
            .map(|_| {
                let (mut s, _) = listener.accept().unwrap();
                let (up, _) = read_upgrade(&mut s).expect("closed during the upgrade");
                let mut out = Vec::new();
                handshake::write_response(&up.accept, None, false, &mut out);
                s.write_all(&out).unwrap();
                s
            })
            .collect();
        let frame_of = |seq| {
            let (mut payload, mut out) = (Vec::new(), Vec::new());
            payload::encode(Format::Json, seq, now_us(), 0, &mut payload);
            frame::encode_frame(OP_TEXT, &payload, None, &mut out);
            out
        };
        for p in &mut peers {
            p.write_all(&frame_of(1)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        for seq in [2, 3] {
            for p in &mut peers[1..] {
                p.write_all(&frame_of(seq)).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let reset = socket2::Socket::from(peers.remove(0));
        reset.set_linger(Some(Duration::ZERO)).unwrap();
        drop(reset);
        peers
    });
    let (client, mut cli) = start_client(addr, CONNS as u64);
    let s = cli.wait_for("the reset", |s| s.messages.reset.connections == 1);
    assert_eq!(s.messages.reset.unreceived, Some(2), "{:?}", s.messages);
    assert_eq!(s.messages.received, 4 + 3 * 2);
    assert_eq!(s.messages.missed, Some(0));
    assert_eq!(class(&s, ErrorClass::Reset), 1, "{:?}", s.errors);
    let held = server.join().unwrap();
    client.stop();
    let s = cli.snapshot();
    assert_eq!(
        s.messages.received + s.messages.missed.unwrap() + s.messages.reset.unreceived.unwrap(),
        12
    );
    drop(held);
    assert_no_shard_panic();
}
