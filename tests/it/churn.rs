//! `c1m client --churn`: half the connections leave and come back every second while the
//! server broadcasts. Every cycle is accounted (established = closed + open), none is an error
//! on either side, nothing is missed, and the leaving connections wait for the server to close
//! first, so TIME_WAIT lands on the server's port and never on the client's.

use crate::common::{Proc, ServerProc, c1m, read_json, read_upgrade, schema_errors};
use c1m::proto::{frame, handshake};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

/// TIME_WAIT sockets with `port` on the local side, and with it on the remote side, from
/// /proc/net/tcp (this test's port alone; other tests' sockets do not count).
fn time_wait(port: u16) -> (usize, usize) {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port_of = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
    let (mut local, mut remote) = (0, 0);
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 3 && f[3] == "06" {
            local += usize::from(port_of(f[1]) == port);
            remote += usize::from(port_of(f[2]) == port);
        }
    }
    (local, remote)
}

#[test]
fn churning_connections_are_all_accounted_and_leave_time_wait_to_the_server() {
    churn_run(&[]);
}

/// The same with the client's receives in io_uring: a leaving connection's receive is
/// cancelled before its socket closes, and a closed one's late completions reach no newcomer.
#[test]
fn churning_through_io_uring_receives_is_accounted_the_same() {
    churn_run(&["--io-uring"]);
}

fn churn_run(extra: &[&str]) {
    const CONNS: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let (s_json, c_json) = (dir.path().join("s.json"), dir.path().join("c.json"));
    let server = ServerProc::start(&[
        "--every",
        "250ms",
        "--duration",
        "30s",
        "--json",
        s_json.to_str().unwrap(),
    ]);
    let port = server.addr.port();
    let client = Proc::spawn(
        c1m(&[
            "client",
            "--url",
            &server.url(),
            "--conns",
            &CONNS.to_string(),
            "--churn",
            "50%",
            "--duration",
            "4s",
            "--json",
            c_json.to_str().unwrap(),
        ])
        .args(extra),
        "c1m client",
    );
    // Mid-run, after two seconds of churn: hundreds have left.
    std::thread::sleep(Duration::from_millis(3000));
    let (server_side, client_side) = time_wait(port);
    let out = client.wait(LIMIT);
    server.proc.signal(libc::SIGINT);
    let s_out = server.proc.wait(LIMIT);
    let (c, s) = (read_json(&c_json), read_json(&s_json));
    assert_eq!(schema_errors(&c), Vec::<String>::new());
    let conns = &c["connections"];
    let churned = conns["churned"].as_u64().unwrap();
    // 50 % of 200 a second, for about three seconds after the ramp.
    assert!(churned >= 200, "{out}\n{conns:#}");
    let (established, closed) = (
        conns["established"].as_u64().unwrap(),
        conns["closed"].as_u64().unwrap(),
    );
    assert_eq!(established, closed + conns["active"].as_u64().unwrap());
    // Each one that left was replaced, but those still reopening at the end.
    assert!(established + 20 >= CONNS + churned, "{conns:#}");
    assert_eq!(c["errors"]["total"], 0, "{out}\n{:#}", c["errors"]);
    assert_eq!(c["messages"]["missed"], 0, "{:#}", c["messages"]);
    assert_eq!(c["config"]["churn_per_s"], 0.5);
    assert_eq!(s["errors"]["total"], 0, "{s_out}\n{:#}", s["errors"]);
    // The server may have upgraded a few whose 101 the client had not read when its run ended.
    let on_server = s["connections"]["established"].as_u64().unwrap();
    assert!(
        (established..=established + 20).contains(&on_server),
        "server {on_server}, client {established}"
    );
    assert_eq!(client_side, 0, "the client's ports held TIME_WAIT");
    assert!(
        server_side >= 100,
        "{server_side} TIME_WAIT on the server's port"
    );
}

/// The end of a run is one more goodbye: a client that stops while broadcasts keep arriving
/// reads what is in flight and waits for the server's close, so the server counts no reset
/// (a socket closed with unread bytes, or reached by a late frame, is answered by one), and
/// the client's ports hold no TIME_WAIT.
#[test]
fn a_client_ending_mid_broadcast_leaves_the_server_no_resets() {
    ending_mid_broadcast(&[]);
}

/// The same through io_uring receives: at the end every receive is stopped and what it
/// brought is read before the goodbyes.
#[test]
fn an_io_uring_client_ending_mid_broadcast_leaves_the_server_no_resets() {
    ending_mid_broadcast(&["--io-uring"]);
}

fn ending_mid_broadcast(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let s_json = dir.path().join("s.json");
    let server = ServerProc::start(&[
        "--every",
        "10ms",
        "--duration",
        "30s",
        "--json",
        s_json.to_str().unwrap(),
    ]);
    let port = server.addr.port();
    for _ in 0..3 {
        let args = ["client", "--url", &server.url(), "--conns", "500"];
        let mut cmd = c1m(&args);
        cmd.args(["--duration", "1500ms"]).args(extra);
        let out = Proc::spawn(&mut cmd, "c1m client").wait(LIMIT);
        assert_eq!(out.code(), Some(0), "{out}");
    }
    let (server_side, client_side) = time_wait(port);
    server.proc.signal(libc::SIGINT);
    let s_out = server.proc.wait(LIMIT);
    let s = read_json(&s_json);
    assert_eq!(s["connections"]["established"], 1500);
    assert_eq!(s["errors"]["total"], 0, "{s_out}\n{:#}", s["errors"]);
    assert_eq!(client_side, 0, "the client's ports held TIME_WAIT");
    // Each ended by the server's close, not by a reset (which leaves no TIME_WAIT).
    assert!(
        server_side >= 1400,
        "{server_side} TIME_WAIT on the server's port"
    );
}

/// A server that answers the client's close frames one at a time, `GAP` apart, and pushes a
/// message every 50 ms to each connection until its turn: the last answers well after the
/// client's two seconds of patience, but the closes keep coming, so the client waits for them
/// all, and the server closes every one first (a client that gave up at two seconds closed
/// three of six itself, with the server's pushes still coming).
#[test]
fn a_client_waits_for_a_server_still_closing_its_connections() {
    const CONNS: usize = 6;
    const GAP: Duration = Duration::from_millis(700);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    // One shard: each shard waits on its own connections' closes.
    let args = ["client", "--url", &url, "--conns", "6", "--shards", "1"];
    let mut cmd = c1m(&args);
    cmd.args(["--duration", "1s"]);
    let client = Proc::spawn(&mut cmd, "c1m client");
    let turns = Arc::new(Turns::default());
    let threads: Vec<_> = (0..CONNS)
        .map(|_| {
            let (s, _) = listener.accept().unwrap();
            let turns = turns.clone();
            std::thread::spawn(move || slow_closer(s, &turns, GAP))
        })
        .collect();
    let ended: Vec<Result<(), String>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let out = client.wait(LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(ended.iter().all(Result::is_ok), "{ended:?}\n{out}");
}

/// The order in which the connections answer their close frames.
#[derive(Default)]
struct Turns {
    first: OnceLock<Instant>,
    next: AtomicUsize,
}

/// One connection of the slow closer: upgrade, push until the client's close frame, wait for
/// its turn (pushing on), answer, and read to the end. `Err` when the client reset it.
fn slow_closer(mut s: TcpStream, turns: &Turns, gap: Duration) -> Result<(), String> {
    let (up, _) = read_upgrade(&mut s).ok_or("no upgrade")?;
    let mut head = Vec::new();
    handshake::write_response(&up.accept, None, false, &mut head);
    s.write_all(&head).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut seq = 0;
    let mut turn = None;
    let mut chunk = [0u8; 256];
    loop {
        let at = turn.map(|i: u32| *turns.first.get().unwrap() + gap * i);
        if at.is_some_and(|at| Instant::now() >= at) {
            break;
        }
        seq += 1;
        let text = format!("{{\"seq\":{seq},\"ts\":{}}}", c1m::engine::now_us());
        let mut push = Vec::new();
        frame::encode_frame(frame::OP_TEXT, text.as_bytes(), None, &mut push);
        s.write_all(&push).map_err(|e| format!("push: {e}"))?;
        match s.read(&mut chunk) {
            // The client's close frame (it sends nothing else).
            Ok(n) if n > 0 && chunk[0] == 0x80 | frame::OP_CLOSE && turn.is_none() => {
                turns.first.get_or_init(Instant::now);
                turn = Some(turns.next.fetch_add(1, Ordering::Relaxed) as u32);
            }
            Ok(0) => return Err("the client closed before the server".into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let mut close = Vec::new();
    frame::encode_frame(
        frame::OP_CLOSE,
        &frame::close_payload(1000),
        None,
        &mut close,
    );
    s.write_all(&close).map_err(|e| format!("close: {e}"))?;
    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(LIMIT)).unwrap();
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("after close: {e}")),
        }
    }
}
