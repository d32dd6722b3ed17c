//! The server's control endpoint, as a script or the console in client mode uses it.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn broadcast_stats_and_metrics_over_http() {
    let server = ServerProc::start(&["--every", "off", "--control", "127.0.0.1:0", "-q"]);
    let control = server
        .proc
        .stderr_line("control line", Duration::from_secs(5), |l| {
            l.strip_prefix("c1m server: control endpoint on http://")
                .and_then(|r| r.split('/').next())
                .map(str::to_string)
        });
    let (mut ws, _) = tungstenite::connect(server.url()).unwrap();

    let (status, body) = http(&control, "POST", "/broadcast");
    assert_eq!((status, body.trim()), (202, r#"{"seq":1}"#));
    let msg = ws.read().unwrap().into_text().unwrap();
    assert!(msg.starts_with(r#"{"seq":1,"ts":"#), "{msg}");
    server
        .proc
        .stderr_line("broadcast log", Duration::from_secs(5), broadcast_line);

    // Figures are published once a second.
    std::thread::sleep(Duration::from_millis(1200));
    let (status, body) = http(&control, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("c1m_connections_active 1\n"), "{body}");
    assert!(body.contains("c1m_messages_sent_total 1\n"), "{body}");
    assert!(
        body.contains(r#"c1m_errors_total{class="refused"} 0"#),
        "{body}"
    );

    let (status, body) = http(&control, "GET", "/stats");
    assert_eq!(status, 200);
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    assert_eq!(u64_at(&report, "/connections/active"), 1);

    assert_eq!(http(&control, "GET", "/broadcast").0, 405);
    assert_eq!(http(&control, "GET", "/").0, 404);
}

#[test]
fn the_endpoint_stays_on_loopback() {
    let out = run(
        c1m(&[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "0.0.0.0:0",
            "--duration",
            "1s",
        ]),
        Duration::from_secs(10),
    );
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("loopback only"), "{out}");
}
