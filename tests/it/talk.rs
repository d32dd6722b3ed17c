//! The client talking to servers c1m did not write (Python's `websockets`, see
//! tests/interop/push_server.py): it finds the time where it is, subscribes first, keeps a
//! strict server happy with heartbeats, gives each connection its own URL and header, and
//! times WebSocket pings.

use crate::loss::{client_for, client_with, push_server};
use serde_json::Value;

fn url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/")
}

/// Every data message was timed, none unreadable, and nothing was lost.
fn all_timed(r: &Value) {
    let m = &r["messages"];
    let received = m["received"].as_u64().unwrap();
    assert!(received > 0, "{r:#}");
    assert_eq!(r["latency_us"]["count"].as_u64(), Some(received), "{r:#}");
    assert_eq!(m["unparsable"], 0, "{r:#}");
    assert_eq!(m["skewed"], 0, "{r:#}");
    assert_eq!(m["missed"], 0, "{r:#}");
    assert_eq!(r["errors"]["total"], 0, "{r:#}");
}

#[test]
fn a_nested_timestamp_is_found_by_its_path() {
    let (_server, port) = push_server("nested");
    let (code, stderr, r) = client_with(&url(port), 100, &["--ts-path", "data.sent_at"]);
    assert_eq!(code, Some(0), "{stderr}");
    all_timed(&r);
    assert!(r["messages"]["received"].as_u64().unwrap() >= 100 * 10);
    assert_eq!(r["config"]["ts_path"], "data.sent_at");
}

#[test]
fn rfc3339_times_are_read_without_configuration() {
    let (_server, port) = push_server("iso");
    let (code, stderr, r) = client_with(&url(port), 100, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    all_timed(&r);
    assert_eq!(
        r["messages"]["loss"]["method"], "timestamps of a broadcast",
        "{r:#}"
    );
}

#[test]
fn a_subscribe_first_server_is_measured_once_asked() {
    let (_server, port) = push_server("subscribe");
    let subscribe = r#"{"type":"subscribe","channel":"ticks"}"#;
    let flags = ["--send", subscribe, "--ts-path", "ts", "--seq-path", "seq"];
    let (code, stderr, r) = client_with(&url(port), 200, &flags);
    assert_eq!(code, Some(0), "{stderr}");
    all_timed(&r);
    assert!(r["messages"]["received"].as_u64().unwrap() >= 200 * 10);
    assert_eq!(r["messages"]["loss"]["method"], "seq field");
    // The server's {"type":"subscribed"}, once per connection: protocol, not data.
    assert_eq!(r["messages"]["ignored"], 200, "{r:#}");
    assert_eq!(r["talk"]["sent"], 200, "{r:#}");

    // Not asked, it sends nothing: a run that timed nothing fails and says so.
    let (code, stderr, r) = client_with(&url(port), 50, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(r["messages"]["received"], 0);
    assert!(stderr.contains("nothing was timed"), "{stderr}");
}

#[test]
fn heartbeats_keep_a_strict_server_from_closing_silent_clients() {
    let (_server, port) = push_server("silence");
    let (code, stderr, r) = client_for(&url(port), 200, "9s", &["--heartbeat", "1s=hi"]);
    assert_eq!(code, Some(0), "{stderr}");
    all_timed(&r);
    assert_eq!(r["connections"]["established"], 200, "{r:#}");
    let beats = r["talk"]["heartbeats"].as_u64().unwrap();
    assert!(
        (200 * 8..=200 * 10).contains(&beats),
        "{beats} heartbeats: {r:#}"
    );

    // Without them, the server closes every connection after 2 s of silence.
    let (code, _, r) = client_for(&url(port), 50, "4s", &[]);
    assert_eq!(code, Some(1));
    assert_eq!(r["errors"]["by_class"]["closed_by_server"], 50, "{r:#}");
    let first = r["errors"]["samples"]["closed_by_server"].as_str().unwrap();
    assert!(
        first.contains("4000") && first.contains("silent for 2 s"),
        "{first}"
    );
}

#[test]
fn each_connection_gets_its_own_url_and_header() {
    let (_server, port) = push_server("unique-id");
    let templated = format!("ws://127.0.0.1:{port}/ws?id={{i}}");
    let flags = ["-H", "X-Conn: {i}"];
    let (code, stderr, r) = client_with(&templated, 500, &flags);
    assert_eq!(code, Some(0), "{stderr}");
    all_timed(&r);
    assert_eq!(r["connections"]["established"], 500, "{r:#}");

    // Split over worker processes, the numbers stay unique: each worker counts from its own
    // base.
    let flags = ["-H", "X-Conn: {i}", "--workers", "3"];
    let (code, stderr, r) = client_with(&templated, 300, &flags);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(r["connections"]["established"], 300, "{r:#}");
    assert_eq!(r["workers"].as_array().unwrap().len(), 3, "{r:#}");

    // The same id for everyone: the server takes one and refuses the rest.
    let fixed = format!("ws://127.0.0.1:{port}/ws?id=7");
    let (code, _, r) = client_with(&fixed, 20, &["-H", "X-Conn: 7"]);
    assert_eq!(code, Some(1));
    assert_eq!(r["connections"]["established"], 1, "{r:#}");
    let first = r["errors"]["samples"]["handshake_rejected"]
        .as_str()
        .unwrap();
    assert!(
        first.contains("409") && first.contains("id 7 is taken"),
        "{first}"
    );
}

#[test]
fn pings_are_timed_by_their_pongs() {
    let (_server, port) = push_server("running-seq");
    let (code, stderr, r) = client_for(&url(port), 100, "3s", &["--ping", "500ms"]);
    assert_eq!(code, Some(0), "{stderr}");
    all_timed(&r);
    let (pings, pongs) = (
        r["talk"]["pings"].as_u64().unwrap(),
        r["talk"]["pongs"].as_u64().unwrap(),
    );
    // Six rounds of 100 over 3 s, less the pongs still on their way at the end.
    assert!((400..=700).contains(&pings), "{r:#}");
    assert!(pongs >= pings - 100 && pongs <= pings, "{r:#}");
    let rtt = &r["pong_rtt_us"];
    assert_eq!(rtt["count"].as_u64(), Some(pongs));
    assert!(rtt["p50"].as_u64().unwrap() < 1_000_000, "{rtt}");
    // Without --ping there is no round trip to show, and no zero pretending to be one.
    let (_, _, r) = client_with(&url(port), 10, &[]);
    assert_eq!(r["pong_rtt_us"]["count"], 0);
    assert!(r["pong_rtt_us"]["p50"].is_null());
}

#[test]
fn a_bad_path_regex_or_token_file_is_refused_before_anything_connects() {
    let cases: [(&[&str], &str); 4] = [
        (&["--ts-path", "a..b"], "empty key"),
        (&["--ts-regex", "(a)(b)"], "exactly one"),
        (&["--send", "{token}"], "--tokens"),
        (
            &["--tokens", "/nonexistent/tokens.txt"],
            "cannot read --tokens",
        ),
    ];
    for (flags, want) in cases {
        let mut cmd = crate::common::c1m(&["client", "--url", "ws://127.0.0.1:9/", "--conns", "1"]);
        cmd.args(flags);
        let out = crate::common::run(cmd, std::time::Duration::from_secs(10));
        assert_ne!(out.code(), Some(0), "{out}");
        assert!(out.stderr.contains(want), "{flags:?}: {out}");
    }
}
