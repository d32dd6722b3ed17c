//! The console as a person uses it: the real binary in a tmux pane, keys sent with send-keys,
//! the screen read with capture-pane. Loopback only, 500 connections, bounded in time.

use crate::common::{Tmux, field};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_c1m");

#[test]
fn local_console_ramps_broadcasts_raises_the_target_and_quits_cleanly() {
    let cmd = format!(
        "{BIN} tui --mode local --conns 500 --step 50 --listen 127.0.0.1:0 --every off; \
         echo C1M_EXIT=$?; sleep 60"
    );
    let tmux = Tmux::start("local", &cmd, 120, 40);
    let limit = Duration::from_secs(30);

    let s = tmux.wait("500 connections open", limit, |s| {
        field(s, "open") == Some(500)
    });
    assert!(s.contains("holding"), "{s}");
    assert_eq!(field(&s, "target"), Some(500), "{s}");

    tmux.keys("b");
    let s = tmux.wait("broadcast 1 received by all", limit, |s| {
        field(s, "seq") == Some(1) && field(s, "received") == Some(500)
    });
    assert_eq!(field(&s, "count"), Some(500), "latency count moved:\n{s}");

    tmux.keys("+");
    let s = tmux.wait("the target to rise by the step", limit, |s| {
        field(s, "target") == Some(550) && field(s, "open") == Some(550)
    });
    assert!(s.contains("holding"), "{s}");

    tmux.keys("b");
    tmux.wait("broadcast 2 received by all 550", limit, |s| {
        field(s, "seq") == Some(2) && field(s, "received") == Some(1050)
    });

    tmux.keys("q");
    let s = tmux.wait("the console to exit", limit, |s| s.contains("C1M_EXIT="));
    assert!(s.contains("C1M_EXIT=0"), "{s}");
    // The terminal is back to normal: main screen, cursor visible.
    let state = tmux.run(&[
        "display-message",
        "-p",
        "-t",
        "c1m",
        "#{alternate_on} #{cursor_flag}",
    ]);
    assert_eq!(state.trim(), "0 1", "terminal not restored");
    let all = tmux.history();
    for needle in [
        "Message latency (µs)",
        "Active WebSockets",
        "Frame Send Rate",
    ] {
        assert!(
            all.contains(needle),
            "no {needle:?} in the final report:\n{all}"
        );
    }
    assert!(
        all.contains("count = 1050"),
        "client received 500 + 550:\n{all}"
    );
}

#[test]
fn client_mode_without_a_control_url_explains_b() {
    // Nothing listens on port 1: the client fails fast, which is fine for this key check.
    let cmd = format!(
        "{BIN} tui --mode client --url ws://127.0.0.1:1/ --conns 10; echo C1M_EXIT=$?; sleep 60"
    );
    let tmux = Tmux::start("client", &cmd, 100, 30);
    tmux.wait("the console", Duration::from_secs(20), |s| {
        s.contains("Connections")
    });
    tmux.keys("b");
    tmux.wait("the footer to explain", Duration::from_secs(10), |s| {
        s.contains("--control-url")
    });
    tmux.keys("q");
    tmux.wait("exit", Duration::from_secs(20), |s| s.contains("C1M_EXIT="));
}

#[test]
fn no_color_keeps_the_console_mono() {
    let cmd = format!(
        "NO_COLOR=1 {BIN} tui --mode server --listen 127.0.0.1:0 --every off; echo C1M_EXIT=$?; sleep 60"
    );
    let tmux = Tmux::start("nocolor", &cmd, 100, 30);
    tmux.wait("the console", Duration::from_secs(20), |s| {
        s.contains("theme mono")
    });
    tmux.keys("t");
    tmux.wait("the footer to explain", Duration::from_secs(10), |s| {
        s.contains("NO_COLOR is set")
    });
    assert!(tmux.screen().contains("theme mono"));
    tmux.keys("q");
    tmux.wait("exit", Duration::from_secs(20), |s| {
        s.contains("C1M_EXIT=0")
    });
}

#[test]
fn local_console_with_workers_shows_them_and_survives_a_dead_one() {
    let cmd = format!(
        "{BIN} tui --mode local --conns 600 --worker-conns 200 --listen 127.0.0.1:0 --every off; \
         echo C1M_EXIT=$?; sleep 60"
    );
    let tmux = Tmux::start("workers", &cmd, 120, 40);
    let limit = Duration::from_secs(30);
    let s = tmux.wait("600 open over 3 + 3 workers", limit, |s| {
        field(s, "open") == Some(600) && s.contains("Workers  server 3/3 · client 3/3 running")
    });
    assert_eq!(
        s.matches("running").count(),
        7,
        "the title and six worker rows:\n{s}"
    );

    tmux.keys("b");
    tmux.wait("broadcast 1 received by all 600", limit, |s| {
        field(s, "seq") == Some(1) && field(s, "received") == Some(600)
    });

    // Kill a client worker, as the OOM killer would: the console says so and goes on.
    // The pane's row `client  1  PID  running …`, right of the latency pane.
    let pid = s
        .lines()
        .find_map(|l| {
            l.split_once("│client  1 ")
                .map(|(_, rest)| rest.to_string())
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse::<i32>().ok())
        .unwrap_or_else(|| panic!("no pid for client worker 1:\n{s}"));
    // SAFETY: kill(2) on a worker process the console started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let s = tmux.wait("the death shown", limit, |s| {
        s.contains("client 2/3 running · 1 died") && field(s, "open") == Some(400)
    });
    assert!(s.contains("killed by signal 9"), "{s}");
    assert!(s.contains("worker_died 200"), "{s}");

    tmux.keys("b");
    tmux.wait("broadcast 2 received by the 400 left", limit, |s| {
        field(s, "seq") == Some(2) && field(s, "received") == Some(1000)
    });
    tmux.keys("q");
    let s = tmux.wait("the console to exit", limit, |s| s.contains("C1M_EXIT="));
    // 200 errors (the dead worker's connections) against --max-errors 0.
    assert!(s.contains("C1M_EXIT=1"), "{s}");
    let all = tmux.history();
    assert!(all.contains("-- Workers (3 processes, 1 died)"), "{all}");
}

#[test]
fn sigterm_restores_the_terminal_and_prints_the_report() {
    let cmd = format!(
        "{BIN} tui --mode local --conns 300 --step 37 --listen 127.0.0.1:0 --every off; \
         echo C1M_EXIT=$?; sleep 60"
    );
    let tmux = Tmux::start("sigterm", &cmd, 120, 40);
    let limit = Duration::from_secs(30);
    tmux.wait("300 open", limit, |s| field(s, "open") == Some(300));
    // One broadcast, so the run has timed something and may end well.
    tmux.keys("b");
    tmux.wait("broadcast 1 received", limit, |s| {
        field(s, "received") == Some(300)
    });
    let pane_shell = tmux.run(&["display-message", "-p", "-t", "c1m", "#{pane_pid}"]);
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", pane_shell.trim())).unwrap();
    let pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: kill(2) on the console this test started in its tmux pane.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let s = tmux.wait("the console to exit", limit, |s| s.contains("C1M_EXIT="));
    assert!(s.contains("C1M_EXIT=0"), "{s}");
    let state = tmux.run(&[
        "display-message",
        "-p",
        "-t",
        "c1m",
        "#{alternate_on} #{cursor_flag}",
    ]);
    assert_eq!(state.trim(), "0 1", "terminal not restored");
    let all = tmux.history();
    assert!(all.contains("stopping (SIGTERM)"), "{all}");
    assert!(all.contains("Active WebSockets"), "{all}");
}
