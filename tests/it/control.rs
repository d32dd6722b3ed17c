//! The server's control endpoint, as a script or the console in client mode uses it.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Reads one response (head and a Content-Length body) from a kept-alive connection.
fn one_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .expect("a Content-Length");
            if body.len() >= length {
                return text;
            }
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the connection closed after {text:?}");
        got.extend_from_slice(&chunk[..n]);
    }
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

    // A client that keeps its connection (a Prometheus scraper, a script's session) gets
    // every answer on it.
    let mut kept = TcpStream::connect(&control).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for seq in 2..=3 {
        write!(
            kept,
            "POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let text = one_response(&mut kept);
        assert!(text.starts_with("HTTP/1.1 202"), "{text}");
        assert!(text.ends_with(&format!("{{\"seq\":{seq}}}\n")), "{text}");
    }
}

/// The port in `c1m server: control endpoint on http://ADDR:PORT/ …`.
fn control_port(server: &ServerProc) -> u16 {
    server
        .proc
        .stderr_line("control line", Duration::from_secs(5), |l| {
            l.strip_prefix("c1m server: control endpoint on http://")
                .and_then(|r| r.split('/').next())
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
                .map(|a| a.port())
        })
}

#[test]
fn the_endpoint_stays_on_loopback_without_a_token() {
    let mut cmd = c1m(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--control",
        "0.0.0.0:0",
        "--duration",
        "1s",
    ]);
    cmd.env_remove("C1M_CONTROL_TOKEN");
    let out = run(cmd, Duration::from_secs(10));
    assert_eq!(out.code(), Some(2), "{out}");
    for needle in [
        "--control 0.0.0.0:0",
        "--control-token",
        "C1M_CONTROL_TOKEN",
    ] {
        assert!(out.stderr.contains(needle), "lacks {needle:?}: {out}");
    }
    // Refused before anything listened.
    assert!(!out.stderr.contains("listening on"), "{out}");
}

#[test]
fn with_a_token_every_request_must_carry_it() {
    // Bound to every address, as a user exposing it would, but reached over loopback only.
    let mut cmd = std::process::Command::new(BIN);
    cmd.args([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--every",
        "off",
        "--control",
        "0.0.0.0:0",
        "-q",
    ])
    .env("C1M_CONTROL_TOKEN", "s3cret-token")
    .stdin(std::process::Stdio::null());
    let proc = Proc::spawn(&mut cmd, "c1m server");
    let addr = proc.stderr_line("listening line", Duration::from_secs(10), listening_addr);
    let server = ServerProc { proc, addr };
    let control = format!("127.0.0.1:{}", control_port(&server));
    let (mut ws, _) = tungstenite::connect(server.url()).unwrap();

    let (status, body) = http(&control, "POST", "/broadcast");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body.lines().count(), 1, "{body:?}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let wrong = "Authorization: Bearer s3cret-tokem\r\n";
    assert_eq!(http_with(&control, "POST", "/broadcast", wrong).0, 401);
    // Every path, not only the one that broadcasts.
    assert_eq!(http(&control, "GET", "/stats").0, 401);
    server
        .proc
        .stderr_line("refusal log", Duration::from_secs(5), |l| {
            (l.contains("control endpoint: refused a request") && l.contains("bearer token"))
                .then_some(())
        });

    let right = "Authorization: Bearer s3cret-token\r\n";
    let (status, body) = http_with(&control, "POST", "/broadcast", right);
    assert_eq!((status, body.trim()), (202, r#"{"seq":1}"#));
    let msg = ws.read().unwrap().into_text().unwrap();
    assert!(msg.starts_with(r#"{"seq":1,"ts":"#), "{msg}");

    // What the console in client mode sends.
    let url = format!("http://{control}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seq = rt
        .block_on(c1m::control::request_broadcast(&url, Some("s3cret-token")))
        .unwrap();
    assert_eq!(seq, 2);
    let err = rt
        .block_on(c1m::control::request_broadcast(&url, None))
        .unwrap_err();
    assert!(format!("{err:#}").contains("--control-token"), "{err:#}");
    let msg = ws.read().unwrap().into_text().unwrap();
    assert!(msg.starts_with(r#"{"seq":2,"ts":"#), "{msg}");

    std::thread::sleep(Duration::from_millis(1200));
    let (status, body) = http_with(&control, "GET", "/metrics", right);
    assert_eq!(status, 200);
    assert!(
        body.contains("c1m_control_unauthorized_total 4\n"),
        "{body}"
    );
    server.proc.signal(libc::SIGTERM);
    let out = server.proc.wait(Duration::from_secs(10));
    // The refusal was told once; the token is never printed.
    assert_eq!(
        out.stderr.matches("control endpoint: refused").count(),
        1,
        "{out}"
    );
    assert!(
        !out.stderr.contains("s3cret") && !out.stdout.contains("s3cret"),
        "{out}"
    );
}

#[test]
fn a_bare_control_port_is_loopback() {
    let port = free_port().to_string();
    let server = ServerProc::start(&["--every", "off", "--control", &port, "-q"]);
    assert_eq!(control_port(&server).to_string(), port);
    let (status, _) = http(&format!("127.0.0.1:{port}"), "POST", "/broadcast");
    assert_eq!(status, 202);
}
