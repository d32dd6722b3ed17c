//! `c1m client --echo`: pushed messages go back to the server whole, even when they are larger
//! than the sockets between hold, and before the close that follows them; c1m's own `{rtt}`
//! messages coming back from an echo server are timed as round trips, apart from pushes, and
//! are never sent round again.

use crate::common::ServerProc;
use serde_json::Value;
use std::net::TcpListener;
use std::time::Duration;
use tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(30);

/// `c1m client --echo` with `flags` for `duration` against `url`: what it printed, and its
/// JSON report.
fn echo_client(url: &str, conns: u64, duration: &str, flags: &[&str]) -> (String, Value) {
    let flags: Vec<&str> = ["--echo"].iter().chain(flags).copied().collect();
    let (out, report) = crate::loss::client_run(url, conns, duration, &flags);
    (out.to_string(), report)
}

/// A tungstenite server pushes 8 MiB (more than the sockets take at once), a text and a
/// close at once: all come back whole, in order, the close last.
#[test]
fn pushes_come_back_whole_and_before_the_close() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let big: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let sent = big.clone();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut ws = tungstenite::accept(stream).unwrap();
        ws.send(Message::binary(sent)).unwrap();
        ws.send(Message::text("héllo")).unwrap();
        ws.close(None).unwrap();
        let mut back = Vec::new();
        loop {
            match ws.read() {
                Ok(Message::Close(f)) => {
                    back.push(format!("close {:?}", f.map(|f| u16::from(f.code))));
                    break;
                }
                Ok(m) => back.push(format!("{} {}", m.is_text(), m.len())),
                Err(e) => {
                    back.push(format!("error {e}"));
                    break;
                }
            }
        }
        back
    });
    let (out, r) = echo_client(&url, 1, "3s", &[]);
    let back = server.join().unwrap();
    assert_eq!(
        back,
        [
            format!("false {}", big.len()),
            "true 6".into(),
            "close Some(1000)".into()
        ],
        "{out}"
    );
    assert_eq!(r["talk"]["echoed"], 2, "{r:#}");
    assert_eq!(r["config"]["echo"], true);
    assert_eq!(r["messages"]["unparsable"], 2);
}

/// c1m's own server, echoing too, and broadcasting: each broadcast is received once per
/// connection and echoed once (the server's echo of it is a duplicate, not sent round again),
/// and the `{rtt}` heartbeats are timed as round trips, not as pushes.
#[test]
fn rtt_messages_are_timed_apart_and_nothing_loops() {
    let server = ServerProc::start(&["--echo", "--every", "400ms", "--duration", "8s"]);
    let (out, r) = echo_client(&server.url(), 20, "3s", &["--heartbeat", "250ms={rtt}"]);
    let (m, talk) = (&r["messages"], &r["talk"]);
    let received = m["received"].as_u64().unwrap();
    assert!(received >= 20 * 5, "{out}\n{r:#}");
    assert_eq!(talk["echoed"].as_u64(), Some(received), "{r:#}");
    // The server's echoes of the last ones may still be on their way at the end.
    let duplicates = m["duplicates"].as_u64().unwrap();
    assert!(
        duplicates + 20 >= received && duplicates <= received,
        "{r:#}"
    );
    assert_eq!(m["missed"], 0);
    assert_eq!(r["latency_us"]["count"].as_u64(), Some(received));
    let rtt = r["echo_rtt_us"]["count"].as_u64().unwrap();
    let heartbeats = talk["heartbeats"].as_u64().unwrap();
    // Every heartbeat came back, but those still on their way at the end.
    assert!(
        rtt >= heartbeats.saturating_sub(20) && rtt <= heartbeats,
        "{r:#}"
    );
    assert!(heartbeats >= 20 * 8, "{r:#}");
    assert!(r["echo_rtt_us"]["p50"].as_u64().unwrap() < 1_000_000);
    assert!(out.contains("Echo round trip (µs)"), "{out}");
}

/// A round-trip test against an echo server that pushes nothing: the {rtt} round trips are
/// what was timed, so the run passes (it had failed as "nothing was timed").
#[test]
fn round_trips_alone_are_a_measurement() {
    let server = ServerProc::start(&["--echo", "--every", "off", "--duration", "8s"]);
    let flags = ["--heartbeat", "200ms={rtt}"];
    let (out, r) = crate::loss::client_run(&server.url(), 10, "2s", &flags);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(r["latency_us"]["count"], 0);
    assert!(r["echo_rtt_us"]["count"].as_u64().unwrap() >= 50, "{r:#}");
    assert_eq!(r["verdict"]["exit_status"], 0, "{:#}", r["verdict"]);
}
