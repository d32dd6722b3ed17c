//! The command line as a user meets it, through the real binary: `--help`, wrong flags, a whole
//! server + client run with its reports, signals, and `--max-errors`.

use crate::common::{
    Proc, ServerProc, broadcast_line, c1m, free_port, read_json, run, schema_errors, u64_at,
};
use clap::CommandFactory;
use serde_json::Value;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(15);

/// `c1m ARGS… --help` with every run of whitespace made one space, so wrapped lines compare
/// like unwrapped ones.
fn help(args: &[&str]) -> String {
    let mut cmd = c1m(args);
    cmd.arg("--help");
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stderr.is_empty(), "{out}");
    squash(&out.stdout)
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn top_level_help_lists_the_subcommands() {
    let text = help(&[]);
    for needle in [
        "Usage: c1m <COMMAND>",
        "server Accept WebSocket connections",
        "client Open N connections",
        "--version",
        "c1m client --url ws://127.0.0.1:8080/ --conns 10000",
    ] {
        assert!(
            text.contains(needle),
            "`c1m --help` lacks {needle:?}:\n{text}"
        );
    }
}

#[test]
fn subcommand_help_shows_units_and_defaults() {
    let server = help(&["server"]);
    for needle in [
        "--listen <ADDR:PORT>",
        "[default: 127.0.0.1:8080; in `c1m tui --mode local`, a free loopback port",
        "--every <INTERVAL|off>",
        "[default: 60s]",
        "SIGUSR1",
        "--pad <BYTES>",
        "--handshake-timeout <DURATION>",
        "[default: 10s]",
        "--max-errors <COUNT>",
        "--json <PATH>",
    ] {
        assert!(
            server.contains(needle),
            "`c1m server --help` lacks {needle:?}:\n{server}"
        );
    }
    let client = help(&["client"]);
    for needle in [
        "--url <URL>",
        "[default: ws://127.0.0.1:8080/]",
        "--conns <COUNT> Connections to open [default: 1000]",
        "--rate <CONNS/S>",
        "[default: 20000]",
        "--duration <DURATION>",
        "[default: 60s]",
        "--max-inflight <COUNT>",
        "[default: 1024]",
        "--hdr-log <PATH>",
    ] {
        assert!(
            client.contains(needle),
            "`c1m client --help` lacks {needle:?}:\n{client}"
        );
    }
}

/// For every option of every subcommand, as clap knows it: problems with how `--help` shows it.
/// An option that takes a value must show the value's name and either clap's `[default: …]` or
/// say "default" in its help (e.g. "default: run until Ctrl-C").
fn help_gaps() -> Vec<String> {
    let cli = c1m::cli::Cli::command();
    let mut gaps = Vec::new();
    let mut subcommands = 0;
    for sub in cli.get_subcommands() {
        let name = sub.get_name();
        if name == "help" {
            continue;
        }
        subcommands += 1;
        let text = help(&[name]);
        for arg in sub.get_arguments() {
            let Some(long) = arg.get_long() else {
                continue;
            };
            if !text.contains(&format!("--{long}")) {
                gaps.push(format!("{name} --{long}: not in --help"));
                continue;
            }
            if !arg.get_action().takes_values() {
                continue;
            }
            let value_names: Vec<String> = match arg.get_value_names() {
                Some(names) => names.iter().map(|n| n.to_string()).collect(),
                None => vec![arg.get_id().as_str().to_uppercase()],
            };
            // A value that may be left out (`--reconnect [<MAX_BACKOFF>]`) shows in brackets.
            let optional = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
            let shown = if optional {
                format!("--{long} [<{}>]", value_names.join("> <"))
            } else {
                format!("--{long} <{}>", value_names.join("> <"))
            };
            if !text.contains(&shown) {
                gaps.push(format!("{name} --{long}: {shown:?} not in --help"));
            }
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if !defaults.is_empty() {
                let shown = format!("[default: {}]", defaults.join(", "));
                if !text.contains(&shown) {
                    gaps.push(format!("{name} --{long}: {shown:?} not in --help"));
                }
                continue;
            }
            let help = [arg.get_help(), arg.get_long_help()]
                .into_iter()
                .flatten()
                .map(|h| h.to_string().to_lowercase())
                .collect::<String>();
            if !help.contains("default") {
                gaps.push(format!(
                    "{name} --{long}: takes a value but neither has a default nor says what \
                     happens without it"
                ));
            }
        }
    }
    assert!(
        subcommands >= 2,
        "expected at least the server and client subcommands"
    );
    gaps
}

#[test]
fn every_option_shows_its_value_and_default() {
    let gaps = help_gaps();
    assert!(gaps.is_empty(), "{gaps:#?}");
}

/// A wrong value is refused before anything runs: non-zero exit, a message naming the flag or
/// the value, no report on stdout and no JSON file.
#[test]
fn wrong_flags_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let json = json.to_str().unwrap();
    let port = free_port().to_string();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["client", "--conns", "lots", "--json", json],
            &["--conns", "lots"],
        ),
        (
            &[
                "server",
                "--every",
                "soon",
                "--listen",
                "127.0.0.1:0",
                "--json",
                json,
            ],
            &["--every", "soon"],
        ),
        (
            &[
                "server",
                "--every",
                "1ms",
                "--listen",
                "127.0.0.1:0",
                "--json",
                json,
            ],
            &["--every", "10ms"],
        ),
        (
            &[
                "client",
                "--url",
                "http://x",
                "--duration",
                "2s",
                "--json",
                json,
            ],
            &["http://x", "ws://"],
        ),
        (
            &[
                "client",
                "--url",
                &format!("ws://127.0.0.1:{port}/"),
                "--source-ips",
                "nope",
                "--duration",
                "2s",
                "--json",
                json,
            ],
            &["--source-ips", "nope"],
        ),
    ];
    for (args, needles) in cases {
        let out = run(c1m(args), LIMIT);
        assert!(
            out.code().is_some_and(|c| c != 0),
            "c1m {args:?} should fail\n{out}"
        );
        for needle in *needles {
            assert!(
                out.stderr.contains(needle),
                "c1m {args:?}: the message does not name {needle:?}\n{out}"
            );
        }
        assert!(
            !out.stdout.contains("Active WebSockets") && !out.stdout.contains("-- Config"),
            "c1m {args:?} printed a report\n{out}"
        );
        assert!(
            !std::path::Path::new(json).exists(),
            "c1m {args:?} wrote a JSON report"
        );
    }
}

fn client_rows(report: &Value) -> &Vec<Value> {
    report["broadcasts"].as_array().expect("broadcast rows")
}

/// The README's example run, small: a server broadcasting every 300 ms and 200 client
/// connections from two source addresses for 2 s. Every connection gets every broadcast, and
/// the client's JSON report, HDR log and human report agree.
#[test]
fn server_and_client_end_to_end() {
    const CONNS: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let (s_json, c_json, c_hlog) = (
        dir.path().join("s.json"),
        dir.path().join("c.json"),
        dir.path().join("c.hlog"),
    );
    let server = ServerProc::start(&[
        "--every",
        "300ms",
        "--duration",
        "6s",
        "--json",
        s_json.to_str().unwrap(),
    ]);
    // Start right after a broadcast, so the 2 s run ends between two broadcasts (at 2/3 of an
    // interval) and no broadcast is cut in half by the ramp or the end.
    server
        .proc
        .stderr_line("a broadcast", LIMIT, broadcast_line);
    let client = Proc::spawn(
        c1m(&[
            "client",
            "--url",
            &server.url(),
            "--conns",
            &CONNS.to_string(),
            "--ips",
            "2",
            "--duration",
            "2s",
            "--json",
            c_json.to_str().unwrap(),
            "--hdr-log",
            c_hlog.to_str().unwrap(),
        ])
        .stdin(Stdio::null()),
        "c1m client",
    );
    let c_out = client.wait(LIMIT);
    let s_out = server.proc.wait(LIMIT);
    assert_eq!(c_out.code(), Some(0), "client: {c_out}");
    assert_eq!(s_out.code(), Some(0), "server: {s_out}");

    let c = read_json(&c_json);
    assert_eq!(schema_errors(&c), Vec::<String>::new(), "{c:#}");
    assert_eq!(c["mode"], "client");
    assert_eq!(u64_at(&c, "/connections/established"), CONNS, "{c:#}");
    assert_eq!(u64_at(&c, "/errors/total"), 0, "{c:#}");
    let rows = client_rows(&c);
    assert!(
        rows.len() >= 3,
        "2 s at 300 ms should see ~6 broadcasts: {c:#}"
    );
    for row in rows {
        assert_eq!(
            u64_at(row, "/received"),
            CONNS,
            "a broadcast not received by all: {c:#}"
        );
    }
    let received = u64_at(&c, "/messages/received");
    assert_eq!(received, CONNS * rows.len() as u64, "{c:#}");
    assert_eq!(u64_at(&c, "/messages/missed"), 0, "{c:#}");
    assert_eq!(u64_at(&c, "/messages/unparsable"), 0, "{c:#}");
    assert_eq!(u64_at(&c, "/latency_us/count"), received, "{c:#}");
    let sources = c["sources"].as_array().unwrap();
    let per_source: Vec<(&str, u64)> = sources
        .iter()
        .map(|s| (s["addr"].as_str().unwrap(), u64_at(s, "/established")))
        .collect();
    assert_eq!(per_source, [("127.0.0.2", 100), ("127.0.0.3", 100)]);

    for needle in ["Message latency", "Active WebSockets"] {
        assert!(
            c_out.stdout.contains(needle),
            "no {needle:?} on stdout: {c_out}"
        );
    }
    assert!(
        !c_out.stdout.contains("c1m client:"),
        "progress lines belong on stderr: {c_out}"
    );

    let (logged, intervals) = crate::common::read_hdr_log(&c_hlog);
    assert!(
        intervals >= 2,
        "one interval a second over 2 s, got {intervals}"
    );
    assert_eq!(logged.len(), received, "the HDR log lost latencies");
    assert_eq!(logged.max(), u64_at(&c, "/latency_us/max"));

    // The server saw the same run: the broadcasts written to all 200 are the ones received.
    let s = read_json(&s_json);
    assert_eq!(schema_errors(&s), Vec::<String>::new(), "{s:#}");
    assert_eq!(s["mode"], "server");
    assert_eq!(u64_at(&s, "/connections/established"), CONNS, "{s:#}");
    assert_eq!(u64_at(&s, "/errors/total"), 0, "{s:#}");
    let full: Vec<u64> = s["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| u64_at(r, "/sent") == CONNS)
        .map(|r| u64_at(r, "/seq"))
        .collect();
    let seen: Vec<u64> = rows.iter().map(|r| u64_at(r, "/seq")).collect();
    assert_eq!(full, seen, "server rows sent to all vs client rows");
    assert!(s_out.stdout.contains("Active WebSockets"), "{s_out}");
    let logged_lines = s_out
        .stderr
        .lines()
        .filter_map(broadcast_line)
        .filter(|&(_, n, _)| n == CONNS)
        .count();
    assert_eq!(logged_lines, seen.len(), "{s_out}");
}

/// The status line's `conns A/B` pair.
fn status_conns(line: &str) -> Option<(u64, u64)> {
    let rest = line.split_once("] conns ")?.1;
    let (a, rest) = rest.split_once('/')?;
    let b = rest.split_once(' ')?.0;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The status line's `msgs N`.
fn status_msgs(line: &str) -> Option<u64> {
    line.split_once(" msgs ")?.1.split_once(' ')?.0.parse().ok()
}

/// SIGTERM ends a client run early and SIGINT a server run, and neither loses the report: both
/// print it and write the JSON.
#[test]
fn signals_stop_runs_without_losing_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let (s_json, c_json) = (dir.path().join("s.json"), dir.path().join("c.json"));
    let server = ServerProc::start(&[
        "--every",
        "200ms",
        "--duration",
        "30s",
        "--json",
        s_json.to_str().unwrap(),
    ]);
    let client = Proc::spawn(
        c1m(&[
            "client",
            "--url",
            &server.url(),
            "--conns",
            "20",
            "--duration",
            "30s",
            "--json",
            c_json.to_str().unwrap(),
        ])
        .stdin(Stdio::null()),
        "c1m client",
    );
    client.stderr_line("all 20 connected and a message", LIMIT, |l| {
        (status_conns(l) == Some((20, 20)) && status_msgs(l) > Some(0)).then_some(())
    });

    let t = Instant::now();
    client.signal(libc::SIGTERM);
    let c_out = client.wait(Duration::from_secs(10));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the client took {:?} to stop",
        t.elapsed()
    );
    assert_eq!(c_out.code(), Some(0), "{c_out}");
    assert!(
        c_out.stdout.contains("Active WebSockets"),
        "no report: {c_out}"
    );
    assert!(
        c_out.stdout.contains("Message latency"),
        "no report: {c_out}"
    );
    let c = read_json(&c_json);
    assert_eq!(u64_at(&c, "/connections/established"), 20, "{c:#}");
    assert!(u64_at(&c, "/messages/received") > 0, "{c:#}");
    assert!(c["elapsed_s"].as_f64().unwrap() < 20.0, "{c:#}");

    let t = Instant::now();
    server.proc.signal(libc::SIGINT);
    let s_out = server.proc.wait(Duration::from_secs(10));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the server took {:?} to stop",
        t.elapsed()
    );
    assert_eq!(s_out.code(), Some(0), "{s_out}");
    assert!(
        s_out.stdout.contains("Active WebSockets"),
        "no report: {s_out}"
    );
    let s = read_json(&s_json);
    assert_eq!(u64_at(&s, "/connections/established"), 20, "{s:#}");
    assert!(u64_at(&s, "/messages/sent") > 0, "{s:#}");
}

/// A signal sent as soon as the server says it is listening must not kill it: the server must
/// already handle SIGUSR1/SIGTERM when it prints that line (scripts wait for it, then signal).
#[test]
fn signals_right_after_the_listening_line_are_handled() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("s.json");
        let mut server = ServerProc::start(&[
            "--every",
            "off",
            "--duration",
            "20s",
            "--json",
            json.to_str().unwrap(),
        ]);
        server.proc.signal(libc::SIGUSR1);
        server.proc.stderr_line("broadcast seq=1", LIMIT, |l| {
            broadcast_line(l).filter(|b| b.0 == 1)
        });
        assert!(server.proc.is_running(), "round {round}");
        server.proc.signal(libc::SIGTERM);
        let out = server.proc.wait(LIMIT);
        assert_eq!(out.code(), Some(0), "round {round}: {out}");
        assert!(json.exists(), "round {round}: no report\n{out}");
    }
}

/// The same race on the client: the banner is printed before SIGTERM is handled.
#[test]
fn client_sigterm_right_after_the_banner_keeps_the_report() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("c.json");
        let port = free_port().to_string();
        let client = Proc::spawn(
            c1m(&[
                "client",
                "--url",
                &format!("ws://127.0.0.1:{port}/"),
                "--conns",
                "1",
                "--duration",
                "20s",
                "--max-errors",
                "1",
                "--json",
                json.to_str().unwrap(),
            ])
            .stdin(Stdio::null()),
            "c1m client",
        );
        client.stderr_line("the banner", LIMIT, |l| {
            l.starts_with("c1m client: ").then_some(())
        });
        client.signal(libc::SIGTERM);
        let out = client.wait(LIMIT);
        // Stopped before anything was timed: the report is written, and the run fails.
        assert_eq!(out.code(), Some(1), "round {round}: {out}");
        assert!(
            out.stderr.contains("nothing was timed"),
            "round {round}: {out}"
        );
        assert!(json.exists(), "round {round}: no report\n{out}");
    }
}

/// Connections refused by a port nobody listens on are errors: exit status 1 unless
/// `--max-errors` allows them, and the JSON counts them under `refused`.
#[test]
fn max_errors_decides_the_exit_status() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<_> = [None, Some("5"), Some("4")]
        .into_iter()
        .map(|max| {
            let json = dir.path().join(format!("r-{}.json", max.unwrap_or("none")));
            let mut args = vec![
                "client".to_string(),
                "--url".into(),
                format!("ws://127.0.0.1:{port}/"),
                "--conns".into(),
                "5".into(),
                "--duration".into(),
                "1s".into(),
                "--json".into(),
                json.to_str().unwrap().into(),
            ];
            if let Some(max) = max {
                args.extend(["--max-errors".into(), max.into()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            (max, json, Proc::spawn(&mut c1m(&args), "c1m client"))
        })
        .collect();
    for (max, json, proc) in runs {
        let out = proc.wait(LIMIT);
        // Nothing connected, so nothing was timed: status 1 whatever --max-errors allows; the
        // errors line says whether the errors were over it too.
        assert_eq!(out.code(), Some(1), "--max-errors {max:?}: {out}");
        assert!(out.stderr.contains("nothing was timed"), "{out}");
        let over = max != Some("5");
        assert_eq!(
            out.stderr
                .contains("5 errors counted, more than --max-errors"),
            over,
            "--max-errors {max:?}: {out}"
        );
        if over {
            assert!(
                out.stderr
                    .contains("5 errors counted, more than --max-errors"),
                "the exit status is not explained: {out}"
            );
        }
        assert!(out.stdout.contains("WebSocket Errors"), "{out}");
        let r = read_json(&json);
        assert_eq!(u64_at(&r, "/errors/by_class/refused"), 5, "{r:#}");
        assert_eq!(u64_at(&r, "/errors/total"), 5, "{r:#}");
        assert_eq!(u64_at(&r, "/connections/failed"), 5, "{r:#}");
        assert_eq!(u64_at(&r, "/connections/established"), 0, "{r:#}");
    }
}

fn ws_connect(addr: std::net::SocketAddr) -> tungstenite::WebSocket<std::net::TcpStream> {
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (ws, resp) = tungstenite::client(format!("ws://{addr}/"), stream).unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

fn next_text(ws: &mut tungstenite::WebSocket<std::net::TcpStream>) -> Value {
    match ws.read().expect("a broadcast within 5 s") {
        tungstenite::Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected a text broadcast, got {other:?}"),
    }
}

/// SIGUSR1 and a `b` line on stdin broadcast at once, and each broadcast is logged with its
/// sequence number, the connections it reached and the time it took.
#[test]
fn sigusr1_and_stdin_broadcast_now() {
    let mut server =
        ServerProc::start_with(&["--every", "off", "--duration", "30s"], Stdio::piped());
    let mut peers: Vec<_> = (0..3).map(|_| ws_connect(server.addr)).collect();
    // The 101 is written when the server counts the connection open, so all 3 are counted.
    server.proc.signal(libc::SIGUSR1);
    let (seq, sent, ms) = server
        .proc
        .stderr_line("broadcast seq=1", LIMIT, broadcast_line);
    assert_eq!((seq, sent), (1, 3));
    assert!((0.0..1000.0).contains(&ms), "{ms} ms");
    for ws in &mut peers {
        assert_eq!(next_text(ws)["seq"], 1);
    }

    let mut stdin = server.proc.stdin.take().unwrap();
    stdin.write_all(b"b\n").unwrap();
    stdin.flush().unwrap();
    let (seq, sent, _) = server
        .proc
        .stderr_line("broadcast seq=2", LIMIT, broadcast_line);
    assert_eq!((seq, sent), (2, 3));
    for ws in &mut peers {
        assert_eq!(next_text(ws)["seq"], 2);
    }

    stdin.write_all(b"x\n").unwrap();
    stdin.flush().unwrap();
    server
        .proc
        .stderr_line("a hint for other input", LIMIT, |l| {
            l.contains("type `b` and Enter to broadcast").then_some(())
        });

    for mut ws in peers {
        ws.close(None).unwrap();
        // The server answers the close handshake.
        loop {
            match ws.read() {
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("closing: {e}"),
            }
        }
    }
    server.proc.signal(libc::SIGTERM);
    let out = server.proc.wait(LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("Frame Send Rate"), "{out}");
}

/// `c1m server` refuses a port another c1m server holds instead of silently sharing it
/// (SO_REUSEPORT would otherwise split the connections between the two).
#[test]
fn a_second_server_on_the_same_port_is_refused() {
    let first = ServerProc::start(&["--every", "off", "--duration", "20s"]);
    let out = run(
        c1m(&[
            "server",
            "--listen",
            &first.addr.to_string(),
            "--duration",
            "5s",
        ]),
        LIMIT,
    );
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains(&first.addr.to_string()), "{out}");
    assert!(out.stderr.contains("in use"), "{out}");
    assert!(!out.stdout.contains("Active WebSockets"), "{out}");
    drop(first);
}

/// `--ips 0` leaves no source address to connect from: it must be refused up front, not crash
/// the shard threads and then report a clean run.
#[test]
fn zero_source_addresses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let out = run(
        c1m(&[
            "client",
            "--url",
            &format!("ws://127.0.0.1:{}/", free_port()),
            "--conns",
            "5",
            "--ips",
            "0",
            "--duration",
            "1s",
            "--json",
            json.to_str().unwrap(),
        ]),
        LIMIT,
    );
    assert!(!out.stderr.contains("panicked"), "{out}");
    assert!(out.code().is_some_and(|c| c != 0), "{out}");
    assert!(out.stderr.contains("--ips"), "{out}");
    assert!(
        !json.exists(),
        "a report for a run that could not start\n{out}"
    );
}

/// The console without a terminal (a pipe, CI) explains itself instead of garbling the pipe.
#[test]
fn the_console_needs_a_terminal() {
    let out = run(
        c1m(&["tui", "--mode", "local", "--listen", "127.0.0.1:0"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("needs a terminal"), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
}
