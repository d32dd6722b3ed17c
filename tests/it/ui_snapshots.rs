//! The whole console screen, as a user sees it, at 80×24, 120×40 and 60×20, for the states that
//! matter: a fresh start, a client mid-ramp, a local run holding with broadcasts and latencies
//! (also split over worker processes, one of them dead), failing kernel limits, the help
//! overlay, and a server. Snapshots are built by hand and time is injected, so every frame is
//! deterministic. Review changed `.snap` files by eye: they are the screen.

use c1m::cli::TuiMode;
use c1m::doctor::checks::{Check, Status};
use c1m::stats::ErrorClass;
use c1m::stats::Mode;
use c1m::stats::aggregate::Aggregator;
use c1m::stats::history::Point;
use c1m::stats::{
    BroadcastLatency, Broadcasts, ClientBroadcast, LastLatency, Latency, ServerBroadcast, Snapshot,
    SourceRow, WorkerRow, WorkerState,
};
use c1m::theme::Theme;
use c1m::ui::{App, Header};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::widgets::Widget;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIZES: [(u16, u16); 3] = [(80, 24), (120, 40), (60, 20)];

fn empty(mode: Mode, t0: Instant) -> Snapshot {
    Aggregator::new(mode, 0, Vec::new(), t0).snapshot(t0)
}

fn header(mode: TuiMode, address: &str, every: Option<u64>) -> Header {
    Header {
        mode,
        address: address.into(),
        every: every.map(Duration::from_secs),
        control_url: None,
    }
}

fn latency(base: u64, count: u64) -> Latency {
    Latency {
        count,
        min: base / 2,
        max: base * 40,
        mean: base as f64 * 1.6,
        stddev: base as f64 * 1.1,
        p50: base,
        p75: base * 2,
        p95: base * 4,
        p98: base * 6,
        p99: base * 8,
        p999: base * 15,
        p9999: base * 30,
    }
}

/// One point a second of the run's history, with these setup rates.
fn series(setup: impl Iterator<Item = u64>) -> Arc<Vec<Point>> {
    Arc::new(
        setup
            .enumerate()
            .map(|(i, r)| Point {
                t_s: i as f64 + 1.0,
                dt_s: 1.0,
                setup_per_s: r as f64,
                ..Point::default()
            })
            .collect(),
    )
}

/// A broadcast's own latency with this p99.
fn p99(p99: u64) -> Option<BroadcastLatency> {
    Some(BroadcastLatency {
        count: 10_000,
        p50: p99 / 8,
        p99,
        max: p99 * 5,
    })
}

fn server_row(seq: u64, sent: u64, dropped: u64, duration_us: i64) -> ServerBroadcast {
    ServerBroadcast {
        seq,
        sent,
        dropped,
        open: sent + dropped,
        bytes: sent * 60,
        duration_us,
        first_us: 0,
        complete: true,
    }
}

fn source(addr: &str, active: u64) -> SourceRow {
    SourceRow {
        addr: addr.into(),
        established: active,
        active,
        errors: 0,
    }
}

fn check(name: &str, value: &str, target: &str, status: Status, fix: Option<&str>) -> Check {
    Check {
        name: name.into(),
        value: value.into(),
        target: target.into(),
        status,
        fix: fix.map(String::from),
        why: "",
        persist: None,
    }
}

fn ok_limits() -> Vec<Check> {
    vec![
        check(
            "RLIMIT_NOFILE (soft)",
            "1,048,576",
            "20,100",
            Status::Ok,
            None,
        ),
        check(
            "RLIMIT_NOFILE (hard)",
            "1,048,576",
            "20,100",
            Status::Ok,
            None,
        ),
        check("fs.file-max", "9,223,372", "2,100,000", Status::Ok, None),
        check("fs.nr_open", "1,048,576", "20,100", Status::Ok, None),
        check("local ports", "28,232 × 2 IPs", "10,000", Status::Ok, None),
        check("net.core.somaxconn", "4,096", "4,096", Status::Ok, None),
        check("tcp_max_syn_backlog", "4,096", "4,096", Status::Ok, None),
        check("memory", "12.1 GiB free", "0.4 GiB", Status::Ok, None),
    ]
}

fn failing_limits() -> Vec<Check> {
    let mut v = ok_limits();
    v[0] = check(
        "RLIMIT_NOFILE (soft)",
        "1,024",
        "200,100",
        Status::Fail,
        Some("ulimit -n 200100"),
    );
    v[2] = check(
        "fs.file-max",
        "65,536",
        "2,100,000",
        Status::Fail,
        Some("sudo sysctl -w fs.file-max=2100000"),
    );
    v[4] = check(
        "local ports",
        "28,232 × 2 IPs",
        "100,000",
        Status::Warn,
        Some("--ips 4"),
    );
    v
}

/// A local run started 10 minutes ago, holding 10,000 connections, five broadcasts done.
fn local_steady(t0: Instant) -> App {
    local_run(t0, false)
}

fn worker(index: usize, pid: u32, active: u64, rss_mib: f64) -> WorkerRow {
    WorkerRow {
        index,
        pid,
        state: WorkerState::Running,
        active,
        errors: 0,
        deltas: 0,
        rss_bytes: Some((rss_mib * 1_048_576.0) as u64),
        cpu_s: Some(active as f64 / 1_000.0),
        cpu_percent: Some(active as f64 / 100.0),
        exit: None,
        agent: None,
    }
}

/// [`local_steady`] with each side over three worker processes (`--workers 3`), after client
/// worker 1 was killed and its 3,333 connections closed.
fn local_workers(t0: Instant) -> App {
    local_run(t0, true)
}

fn local_run(t0: Instant, workers: bool) -> App {
    let mut app = App::new(
        TuiMode::Local,
        Theme::fallback(),
        header(TuiMode::Local, "ws://127.0.0.1:8080/", Some(60)),
        10_000,
        1_000,
        20_000.0,
    );
    app.on_limits(ok_limits());
    app.set_next_broadcast(Some(t0 + Duration::from_secs(642)));
    let seqs = 1..=5u64;
    let now = t0 + Duration::from_secs(600);
    let mut s = empty(Mode::Server, t0);
    s.elapsed_s = 600.2;
    s.connections.active = 10_000;
    s.connections.established = 10_000;
    s.connections.peak = 10_000;
    s.connections.peers = 2;
    s.peers = vec![source("127.0.0.2", 5_000), source("127.0.0.3", 5_000)];
    s.messages.sent = 50_000;
    s.broadcasts = Broadcasts::Server(
        seqs.clone()
            .map(|seq| server_row(seq, 10_000, 0, 9_000 + seq as i64 * 700))
            .collect(),
    );
    // The worker died between broadcasts #4 and #5.
    if workers {
        s.connections.active = 6_667;
        s.connections.closed = 3_333;
        s.messages.sent = 46_667;
        if let Broadcasts::Server(b) = &mut s.broadcasts {
            (b[4].sent, b[4].open) = (6_667, 6_667);
        }
        s.peers = vec![source("127.0.0.2", 3_334), source("127.0.0.3", 3_333)];
        s.workers = vec![
            worker(0, 48_211, 2_223, 38.6),
            worker(1, 48_212, 2_222, 38.4),
            worker(2, 48_213, 2_222, 38.5),
        ];
    }
    app.on_server(s, now);

    let mut c = empty(Mode::Client, t0);
    c.elapsed_s = 600.2;
    c.connections.target = 10_000;
    c.connections.active = 10_000;
    c.connections.established = 10_000;
    c.connections.peak = 10_000;
    c.connections.ramp_s = Some(0.6);
    c.connections.ramp_rate = Some(16_600.0);
    c.rates.setup.count = 10_000;
    c.rates.setup.mean = 16.6;
    c.rates.setup.m1 = 0.0;
    c.rates.setup.m5 = 8.2;
    c.rates.setup.m15 = 10.7;
    c.messages.received = 49_998;
    c.messages.missed = Some(2);
    c.sources = vec![source("127.0.0.2", 5_000), source("127.0.0.3", 5_000)];
    // The first three seconds ramped; each broadcast's p99 a little different.
    c.series = series((0..30u64).map(|i| if i < 3 { 5_000 - i * 1_500 } else { 0 }));
    c.broadcasts = Broadcasts::Client(
        seqs.map(|seq| ClientBroadcast {
            seq,
            received: if seq == 3 { 9_998 } else { 10_000 },
            open: 10_000,
            first_recv_us: 0,
            last_recv_us: 0,
            sent_ts_us: Some(0),
            delivery_us: Some(14_000 + seq as i64 * 900),
            latency_us: p99((1_100 + (seq - 1) * 150) * 8),
        })
        .collect(),
    );
    c.latency_us = latency(1_100, 49_998);
    c.latency_last = Some(LastLatency {
        seq: 5,
        latency: latency(1_500, 10_000),
    });
    if workers {
        c.connections.active = 6_667;
        c.connections.closed = 3_333;
        c.messages.received = 46_665;
        c.latency_us.count = 46_665;
        if let Broadcasts::Client(b) = &mut c.broadcasts {
            (b[4].received, b[4].open) = (6_667, 6_667);
        }
        if let Some(last) = &mut c.latency_last {
            last.latency.count = 6_667;
        }
        c.errors.total = 3_333;
        c.errors.by_class.0[ErrorClass::WorkerDied.index()] = 3_333;
        c.sources = vec![source("127.0.0.2", 3_334), source("127.0.0.3", 3_333)];
        let died = WorkerRow {
            state: WorkerState::Died,
            errors: 3_333,
            rss_bytes: None,
            exit: Some("killed by signal 9".into()),
            agent: None,
            ..worker(1, 48_215, 0, 0.0)
        };
        c.workers = vec![
            worker(0, 48_214, 3_334, 61.2),
            died,
            worker(2, 48_216, 3_333, 60.9),
        ];
    }
    c.latency_buckets = vec![
        (1, 0),
        (2, 0),
        (4, 0),
        (8, 0),
        (16, 0),
        (32, 0),
        (64, 0),
        (128, 0),
        (256, 12),
        (512, 2_310),
        (1_023, 18_002),
        (2_047, 21_540),
        (4_095, 6_120),
        (8_191, 1_650),
        (16_383, 330),
        (32_767, 30),
        (65_535, 4),
    ];
    app.on_client(c, now);
    app
}

/// A client half way up a ramp to 100,000 from four addresses, one broadcast arriving.
fn client_mid_ramp(t0: Instant, limits: Vec<Check>) -> App {
    let mut app = App::new(
        TuiMode::Client,
        Theme::fallback(),
        header(TuiMode::Client, "ws://10.0.0.1:8080/", None),
        100_000,
        10_000,
        20_000.0,
    );
    app.on_limits(limits);
    let now = t0 + Duration::from_secs(25);
    let mut c = empty(Mode::Client, t0);
    c.elapsed_s = 25.4;
    c.connections.target = 100_000;
    c.connections.active = 41_988;
    c.connections.established = 42_000;
    c.connections.peak = 41_988;
    c.connections.connecting = 1_024;
    c.connections.failed = 12;
    c.connections.closed = 12;
    c.errors.total = 24;
    c.errors.by_class.0[ErrorClass::Timeout.index()] = 12;
    c.errors.by_class.0[ErrorClass::Reset.index()] = 12;
    c.rates.setup.now = 19_870.0;
    c.rates.setup.m1 = 14_210.5;
    c.rates.setup.m5 = 3_902.0;
    c.rates.setup.m15 = 1_371.0;
    c.sources = vec![
        source("10.0.1.2", 10_497),
        source("10.0.1.3", 10_497),
        source("10.0.1.4", 10_497),
        source("10.0.1.5", 10_497),
    ];
    c.series = series((0..25u64).map(|i| (i * 900).min(19_800)));
    c.broadcasts = Broadcasts::Client(vec![ClientBroadcast {
        seq: 1,
        received: 30_112,
        open: 41_988,
        first_recv_us: 0,
        last_recv_us: 0,
        sent_ts_us: None,
        delivery_us: None,
        latency_us: p99(16_000),
    }]);
    c.messages.received = 30_112;
    // c1m's server numbers its broadcasts: loss is measured.
    c.messages.missed = Some(0);
    c.latency_us = latency(2_000, 30_112);
    c.latency_last = Some(LastLatency {
        seq: 1,
        latency: latency(2_000, 30_112),
    });
    c.latency_buckets = vec![(512, 100), (1_023, 9_000), (2_047, 15_000), (4_095, 6_012)];
    app.on_client(c, now);
    app
}

/// Nothing connected yet: the first frame of `c1m tui` (local).
fn fresh(t0: Instant) -> App {
    let mut app = App::new(
        TuiMode::Local,
        Theme::fallback(),
        header(TuiMode::Local, "ws://127.0.0.1:8080/", Some(60)),
        1_000,
        100,
        20_000.0,
    );
    app.set_next_broadcast(Some(t0 + Duration::from_secs(60)));
    app.on_server(empty(Mode::Server, t0), t0);
    app.on_client(empty(Mode::Client, t0), t0);
    app.on_limits(ok_limits());
    app
}

/// A server holding 250,000 connections from five client machines, broadcasting on demand.
fn server(t0: Instant) -> App {
    let mut app = App::new(
        TuiMode::Server,
        Theme::fallback(),
        header(TuiMode::Server, "ws://0.0.0.0:8080/", None),
        0,
        1,
        0.0,
    );
    app.on_limits(ok_limits());
    let mut s = empty(Mode::Server, t0);
    s.series = series((0..20usize).map(|i| [0, 8_000, 20_000, 20_000, 19_000][i % 5]));
    s.elapsed_s = 3_725.0;
    s.connections.active = 250_000;
    s.connections.established = 250_310;
    s.connections.peak = 250_000;
    s.connections.closed = 310;
    s.connections.peers = 5;
    s.peers = (1..=5)
        .map(|i| source(&format!("10.0.0.{}", 10 + i), 50_000))
        .collect();
    s.messages.sent = 1_749_990;
    s.messages.dropped = 10;
    s.rates.setup.m1 = 3.2;
    s.rates.setup.m5 = 801.0;
    s.rates.setup.m15 = 2_677.3;
    s.broadcasts = Broadcasts::Server(
        (1..=7u64)
            .map(|seq| {
                let dropped = if seq == 4 { 10 } else { 0 };
                server_row(
                    seq,
                    250_000 - dropped,
                    dropped,
                    180_000 + seq as i64 * 3_100,
                )
            })
            .collect(),
    );
    app.on_server(s, t0 + Duration::from_secs(3_725));
    app
}

fn screen(app: &App, w: u16, h: u16) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| f.render_widget(app, f.area())).unwrap();
    terminal.backend().clone()
}

fn snapshots(name: &str, app: &App) {
    for (w, h) in SIZES {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(app, w, h));
    }
}

#[test]
fn fresh_start() {
    snapshots("fresh", &fresh(Instant::now()));
}

#[test]
fn client_ramping() {
    snapshots(
        "client_ramping",
        &client_mid_ramp(Instant::now(), ok_limits()),
    );
}

#[test]
fn local_holding_with_broadcasts() {
    snapshots("local_steady", &local_steady(Instant::now()));
}

#[test]
fn local_with_workers_one_died() {
    snapshots("local_workers", &local_workers(Instant::now()));
}

#[test]
fn limits_failing() {
    snapshots(
        "limits_failing",
        &client_mid_ramp(Instant::now(), failing_limits()),
    );
}

#[test]
fn help_overlay() {
    let t0 = Instant::now();
    let mut app = local_steady(t0);
    let key = KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE);
    app.on_key(key, t0 + Duration::from_secs(600));
    assert!(app.help_open());
    snapshots("help", &app);
}

#[test]
fn server_holding() {
    snapshots("server", &server(Instant::now()));
}

#[test]
fn a_key_note_replaces_the_hints() {
    let t0 = Instant::now();
    let mut app = client_mid_ramp(t0, ok_limits());
    let b = KeyEvent::new(KeyCode::Char('b'), KeyModifiers::NONE);
    assert!(app.on_key(b, t0 + Duration::from_secs(25)).is_empty());
    let shown = screen(&app, 120, 40).to_string();
    assert!(shown.contains("b: no --control-url"), "{shown}");
    app.tick(t0 + Duration::from_secs(31));
    let shown = screen(&app, 120, 40).to_string();
    assert!(shown.contains("q quit"), "{shown}");
}

#[test]
fn no_size_panics_with_data() {
    let t0 = Instant::now();
    let mut apps = vec![
        fresh(t0),
        client_mid_ramp(t0, failing_limits()),
        local_steady(t0),
        local_workers(t0),
        server(t0),
    ];
    let mut help = local_steady(t0);
    help.on_key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE), t0);
    apps.push(help);
    for app in &apps {
        for w in (0..=130u16).step_by(3).chain([0, 1, 2]) {
            for h in (0..=45u16).step_by(2).chain([0, 1, 2, 3]) {
                let mut buf = Buffer::empty(Rect::new(0, 0, w, h));
                app.render(buf.area, &mut buf);
            }
        }
    }
}
