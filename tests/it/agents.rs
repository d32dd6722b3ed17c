//! `c1m agent` and a coordinator (`c1m client --agents`) on loopback, through the real binary:
//! the target split over agents with one merged report and a row per agent, an agent whose
//! clock is wrong (the test-only `C1M_TEST_CLOCK_SKEW_MS`) corrected by the coordinator's
//! clock exchanges, an agent killed mid-run counted as `agent_lost` while the others go on,
//! and the token.

use crate::common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// `c1m agent --listen 127.0.0.1:0` with `env`, and the address its banner gives.
fn agent(env: &[(&str, &str)], extra: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_c1m"));
    cmd.args(["agent", "--listen", "127.0.0.1:0"]).args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let proc = Proc::spawn(&mut cmd, "c1m agent");
    let addr = proc.stderr_line("the agent's banner", Duration::from_secs(10), |l| {
        l.strip_prefix("c1m agent: listening on ")?
            .split(' ')
            .next()?
            .parse()
            .ok()
    });
    (proc, addr)
}

fn coordinator(
    url: &str,
    agents: &[SocketAddr],
    conns: u64,
    duration: &str,
    json: &std::path::Path,
) -> Command {
    let list: Vec<String> = agents.iter().map(ToString::to_string).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_c1m"));
    cmd.args(["client", "--url", url, "--agents", &list.join(",")])
        .args([
            "--conns",
            &conns.to_string(),
            "--duration",
            duration,
            "--json",
        ])
        .arg(json);
    cmd
}

fn agent_rows(r: &Value) -> Vec<&Value> {
    r["workers"].as_array().unwrap().iter().collect()
}

/// Two agents, one whose clock runs 250 ms ahead: every message is counted once, each agent
/// has its row, and the skewed one's offset is measured and taken out of the latencies.
#[test]
fn two_agents_one_merged_run_with_clocks_corrected() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let server = ServerProc::start(&["--every", "500ms", "--duration", "30s"]);
    let (a, a_addr) = agent(&[], &[]);
    let (b, b_addr) = agent(&[("C1M_TEST_CLOCK_SKEW_MS", "250")], &[]);
    let out = run(
        coordinator(&server.url(), &[a_addr, b_addr], 600, "4s", &json),
        LIMIT,
    );
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("Agents (2, 0 lost)"), "{out}");
    let r = read_json(&json);
    assert_eq!(schema_errors(&r), Vec::<String>::new(), "{r:#}");
    assert_eq!(u64_at(&r, "/connections/established"), 600);
    assert_eq!(u64_at(&r, "/messages/missed"), 0);
    // Every broadcast sent after the ramp reached all 600, counted once.
    // The last broadcast may be cut by the end of the run.
    let rows = r["broadcasts"].as_array().unwrap();
    let full: Vec<u64> = rows[..rows.len() - 1]
        .iter()
        .filter(|b| b["open"] == 600)
        .map(|b| b["received"].as_u64().unwrap())
        .collect();
    assert!(
        full.len() >= 4 && full.iter().all(|&n| n == 600),
        "{:#}",
        r["broadcasts"]
    );
    let rows = agent_rows(&r);
    assert_eq!(rows.len(), 2);
    for w in &rows {
        assert!(w["cpu_s"].as_f64().is_some_and(|s| s > 0.0), "{w:#}");
    }
    let addrs: Vec<&str> = rows
        .iter()
        .map(|w| w["agent"]["addr"].as_str().unwrap())
        .collect();
    assert_eq!(addrs, [a_addr.to_string(), b_addr.to_string()]);
    let offset = rows[1]["agent"]["clock_offset_us"].as_i64().unwrap();
    let within = rows[1]["agent"]["clock_uncertainty_us"].as_i64().unwrap() + 5_000;
    assert!(
        (offset - 250_000).abs() <= within,
        "offset {offset} µs, ±{within}"
    );
    // Uncorrected, half the messages would read 250 ms late; corrected, none does.
    let max = u64_at(&r, "/latency_us/max");
    assert!(
        max < 200_000,
        "latency max {max} µs: the skew was not taken out"
    );
    drop((a, b));
    server.proc.signal(libc::SIGINT);
}

/// An agent killed mid-run: its connections are counted as closed under `agent_lost`, the run
/// goes on with the others, and the report is written.
#[test]
fn a_lost_agent_is_counted_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let server = ServerProc::start(&["--every", "off", "--duration", "30s"]);
    let agents: Vec<(Proc, SocketAddr)> = (0..3).map(|_| agent(&[], &[])).collect();
    let addrs: Vec<SocketAddr> = agents.iter().map(|a| a.1).collect();
    let client = Proc::spawn(
        &mut coordinator(&server.url(), &addrs, 900, "6s", &json),
        "coordinator",
    );
    client.wait_open(900, Duration::from_secs(20));
    agents[1].0.signal(libc::SIGKILL);
    client.stderr_line("the loss", Duration::from_secs(10), |l| {
        l.contains("(agent_lost)").then_some(())
    });
    server.proc.signal(libc::SIGUSR1);
    let (seq, sent, _) =
        server
            .proc
            .stderr_line("broadcast", Duration::from_secs(10), broadcast_line);
    assert_eq!((seq, sent), (1, 600), "the survivors took the broadcast");
    let out = client.wait(LIMIT);
    // 300 errors over --max-errors 0: the run fails, and says why, with its report written.
    assert_eq!(out.code(), Some(1), "{out}");
    let r = read_json(&json);
    assert_eq!(schema_errors(&r), Vec::<String>::new(), "{r:#}");
    assert_eq!(u64_at(&r, "/errors/by_class/agent_lost"), 300);
    assert_eq!(u64_at(&r, "/messages/received"), 600);
    assert_eq!(u64_at(&r, "/messages/missed"), 0);
    let rows = agent_rows(&r);
    assert_eq!(rows[1]["state"], "died", "{rows:#?}");
    assert_eq!(rows[0]["state"], "stopped");
    server.proc.signal(libc::SIGINT);
}

/// A coordinator with the wrong token is refused with words that say so; an agent will not
/// listen off loopback without a token.
#[test]
fn the_token_is_checked() {
    let (_a, addr) = agent(&[], &["--token", "right"]);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = coordinator(
        "ws://127.0.0.1:9/",
        &[addr],
        10,
        "1s",
        &dir.path().join("c.json"),
    );
    cmd.env("C1M_AGENT_TOKEN", "wrong");
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(
        out.stderr.contains("refused this coordinator: wrong token"),
        "{out}"
    );
    let out = run(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_c1m"));
            c.args(["agent", "--listen", "0.0.0.0:0"])
                .env_remove("C1M_AGENT_TOKEN");
            c
        },
        LIMIT,
    );
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(
        out.stderr
            .contains("--token TOKEN (or C1M_AGENT_TOKEN) is needed"),
        "{out}"
    );
}

/// An agent asked for more than one of its processes holds (`--worker-conns 150` here) runs
/// worker processes of its own; the coordinator still sees one agent and exact counts.
#[test]
fn an_agent_splits_its_share_over_its_own_workers() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let server = ServerProc::start(&["--every", "400ms", "--duration", "30s"]);
    let (a, addr) = agent(&[], &["--worker-conns", "150"]);
    let out = run(coordinator(&server.url(), &[addr], 400, "3s", &json), LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    a.stderr_line("the agent's split", Duration::from_secs(5), |l| {
        l.contains("400 connections are more than one process holds here (150): 3 worker processes")
            .then_some(())
    });
    let r = read_json(&json);
    assert_eq!(u64_at(&r, "/connections/established"), 400);
    assert_eq!(u64_at(&r, "/messages/missed"), 0);
    // The last broadcast may be cut by the end of the run.
    let rows = r["broadcasts"].as_array().unwrap();
    let mut full = rows[..rows.len() - 1].iter().filter(|b| b["open"] == 400);
    assert!(full.clone().count() >= 3, "{:#}", r["broadcasts"]);
    assert!(full.all(|b| b["received"] == 400), "{:#}", r["broadcasts"]);
    let rows = agent_rows(&r);
    assert_eq!(rows.len(), 1);
    // The agent's row counts its worker processes' CPU too: more than the agent process alone
    // has used, even now, after the run.
    let tree = rows[0]["cpu_s"]
        .as_f64()
        .expect("the agent reported its CPU");
    let own = cpu_s_of(a.pid());
    assert!(tree > own, "row {tree} s, agent process alone {own} s");
    server.proc.signal(libc::SIGINT);
}

/// A process's CPU time, user and system, seconds.
fn cpu_s_of(pid: libc::pid_t) -> f64 {
    let stat = procfs::process::Process::new(pid).unwrap().stat().unwrap();
    (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64
}

/// `c1m agent --metrics`: each agent serves its own share's figures while the run lasts, in
/// the form Prometheus adds up over agents (counters and the latency histogram's buckets); the
/// agents' open connections add up to the coordinator's target, and once the run is over the
/// endpoint says there is nothing to report rather than serve the last second forever.
#[test]
fn each_agent_serves_its_own_metrics() {
    let server = ServerProc::start(&["--every", "300ms", "--duration", "30s"]);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let agents: Vec<(Proc, SocketAddr, String)> = (0..2)
        .map(|_| {
            let (p, addr) = agent(&[], &["--metrics", "127.0.0.1:0"]);
            let metrics = p.stderr_line("the metrics banner", LIMIT, |l| {
                let rest = l.strip_prefix("c1m agent: this agent's figures at http://")?;
                Some(rest.split('/').next()?.to_string())
            });
            (p, addr, metrics)
        })
        .collect();
    for (_, _, m) in &agents {
        assert_eq!(http(m, "GET", "/metrics").0, 503, "no run yet");
    }
    let addrs: Vec<SocketAddr> = agents.iter().map(|a| a.1).collect();
    let mut cmd = coordinator(&server.url(), &addrs, 600, "6s", &json);
    let coordinator = Proc::spawn(&mut cmd, "coordinator");
    coordinator.wait_open(600, LIMIT);
    // Two broadcasts at least after every connection is open.
    std::thread::sleep(Duration::from_millis(2_500));
    let scrape = |m: &str, name: &str| -> f64 {
        let (status, body) = http(m, "GET", "/metrics");
        assert_eq!(status, 200, "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{body}"))
    };
    let open: Vec<f64> = agents
        .iter()
        .map(|a| scrape(&a.2, "c1m_connections_active"))
        .collect();
    assert_eq!(open, [300.0, 300.0], "each agent its share");
    for (_, _, m) in &agents {
        let timed = scrape(m, "c1m_latency_seconds_count");
        let inf = scrape(m, "c1m_latency_seconds_bucket{le=\"+Inf\"}");
        assert!(timed >= 300.0 && inf == timed, "{timed} timed, +Inf {inf}");
        assert!(scrape(m, "c1m_resident_memory_bytes") > 1e6);
    }
    let out = coordinator.wait(LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    for (_, _, m) in &agents {
        assert_eq!(http(m, "GET", "/metrics").0, 503, "the run is over");
    }
    server.proc.signal(libc::SIGINT);
}

/// A CA, and a certificate it signed for `names` with its key: (ca.pem, cert.pem, key.pem).
fn ca_and_cert(dir: &std::path::Path, names: &[&str]) -> [std::path::PathBuf; 3] {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(ToString::to_string).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = ["ca.pem", "cert.pem", "key.pem"].map(|f| dir.join(f));
    std::fs::write(&paths[0], ca.pem()).unwrap();
    std::fs::write(&paths[1], cert.pem()).unwrap();
    std::fs::write(&paths[2], key.serialize_pem()).unwrap();
    paths
}

/// An agent with the token `t0ken` that speaks TLS with this certificate and key.
fn tls_agent(cert: &std::path::Path, key: &std::path::Path) -> (Proc, SocketAddr) {
    let tls = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    agent(&[("C1M_AGENT_TOKEN", "t0ken")], &tls)
}

/// `--agent-ca` on the coordinator and `--tls-cert/--tls-key` on the agent: the link is TLS,
/// the agent's certificate checked for the address it was given, and the report says so. A
/// coordinator that speaks the other way, or reaches the agent under a name its certificate
/// does not carry, is stopped with words that say which.
#[test]
fn the_link_to_an_agent_can_be_tls() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = ca_and_cert(dir.path(), &["127.0.0.1"]);
    let (_a, addr) = tls_agent(&cert, &key);
    let server = ServerProc::start(&["--every", "300ms", "--duration", "30s"]);
    let json = dir.path().join("c.json");
    let coordinator = |ca: Option<&std::path::Path>, agents: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_c1m"));
        cmd.args(["client", "--url", &server.url(), "--agents", agents])
            .args(["--conns", "200", "--duration", "2s", "--json"])
            .arg(&json)
            .env("C1M_AGENT_TOKEN", "t0ken");
        if let Some(ca) = ca {
            cmd.arg("--agent-ca").arg(ca);
        }
        run(cmd, LIMIT)
    };
    let out = coordinator(Some(&ca), &addr.to_string());
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stdout.contains("Agents (1, 0 lost, links over TLS)"),
        "{out}"
    );
    let r = read_json(&json);
    assert_eq!(r["workers"][0]["agent"]["link"], "tls");
    assert_eq!(u64_at(&r, "/connections/established"), 200);
    assert!(u64_at(&r, "/messages/received") >= 200);

    let out = coordinator(None, &addr.to_string());
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("this agent speaks TLS"), "{out}");
    assert!(out.stderr.contains("--agent-ca"), "{out}");

    // An agent whose certificate names another address.
    let other = tempfile::tempdir().unwrap();
    let [other_ca, cert, key] = ca_and_cert(other.path(), &["127.0.0.2"]);
    let (_b, b_addr) = tls_agent(&cert, &key);
    let out = coordinator(Some(&other_ca), &b_addr.to_string());
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("the TLS handshake failed"), "{out}");
    assert!(out.stderr.contains("certificate for 127.0.0.1"), "{out}");

    let (_plain, plain_addr) = agent(&[("C1M_AGENT_TOKEN", "t0ken")], &[]);
    let out = coordinator(Some(&ca), &plain_addr.to_string());
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("the TLS handshake failed"), "{out}");
    server.proc.signal(libc::SIGINT);
}

/// The coordinator checks each agent's limits for its share, as `c1m doctor` would on that
/// machine: an agent with one source address of its own cannot hold 100,000 connections to one
/// server port, and the run is refused before any agent opens one, naming the agent, the limit
/// and where to lift it.
#[test]
fn an_agents_limits_are_checked_for_its_share() {
    let (_a, addr) = agent(&[], &["--source-ips", "127.0.0.2"]);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let out = run(
        coordinator("ws://127.0.0.1:9/", &[addr], 100_000, "1s", &json),
        LIMIT,
    );
    assert_eq!(out.code(), Some(2), "{out}");
    let want = format!(
        "agent {} ({addr})'s limits are too low for 100,000",
        hostname()
    );
    assert!(out.stderr.contains(&want), "{out}");
    assert!(out.stderr.contains("net.ipv4.ip_local_port_range"), "{out}");
    assert!(out.stderr.contains("on that machine, `c1m doctor"), "{out}");
    assert!(!json.exists(), "refused before the run");
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// `--expect-agents`: the coordinator waits for an agent that starts late, and past
/// `--expect-timeout` names what is missing.
#[test]
fn expect_agents_waits_for_a_late_agent_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&["--every", "500ms", "--duration", "30s"]);
    let (a, a_addr) = agent(&[], &[]);
    // A free port for the late agent: nothing listens there until it starts.
    let late_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let json = dir.path().join("c.json");
    let mut cmd = coordinator(&server.url(), &[a_addr, late_addr], 200, "2s", &json);
    cmd.args(["--expect-agents", "2", "--expect-timeout", "20s"]);
    let client = Proc::spawn(&mut cmd, "coordinator");
    std::thread::sleep(Duration::from_millis(1500));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_c1m"));
    cmd.args(["agent", "--listen", &late_addr.to_string()]);
    let b = Proc::spawn(&mut cmd, "late agent");
    let out = client.wait(LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    let r = read_json(&json);
    assert_eq!(agent_rows(&r).len(), 2);
    assert_eq!(u64_at(&r, "/connections/established"), 200);
    drop((a, b));
    // Two expected, one there: the error after the timeout names the one that is not.
    let (c, c_addr) = agent(&[], &[]);
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = coordinator(&server.url(), &[c_addr, gone], 10, "1s", &json);
    cmd.args(["--expect-agents", "2", "--expect-timeout", "2s"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(
        out.stderr
            .contains("--expect-agents 2: 1 answered within 2s"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains(&format!("agent {gone}: cannot connect")),
        "{out}"
    );
    drop(c);
    server.proc.signal(libc::SIGINT);
}

/// Three copies started apart, as an Indexed Job's pods are (`--segments 3` with
/// JOB_COMPLETION_INDEX): their slices add up to the target, each report says its slice.
#[test]
fn segments_started_apart_add_up_to_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&["--every", "400ms", "--duration", "30s"]);
    let copies: Vec<(Proc, std::path::PathBuf)> = (0..3)
        .map(|i| {
            let json = dir.path().join(format!("c{i}.json"));
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_c1m"));
            cmd.args(["client", "--url", &server.url(), "--conns", "1000"])
                .args(["--segments", "3", "--duration", "2s", "--json"])
                .arg(&json)
                .env("JOB_COMPLETION_INDEX", i.to_string());
            (Proc::spawn(&mut cmd, "segment"), json)
        })
        .collect();
    let mut total = 0;
    for (i, (proc, json)) in copies.into_iter().enumerate() {
        let out = proc.wait(LIMIT);
        assert_eq!(out.code(), Some(0), "{out}");
        let r = read_json(&json);
        assert_eq!(r["config"]["segment"]["index"], i as u64);
        assert_eq!(r["config"]["segment"]["of"], 1000);
        total += u64_at(&r, "/connections/established");
    }
    assert_eq!(total, 1000);
    server.proc.signal(libc::SIGINT);
}

/// A server whose clock runs 300 ms behind: agents timing against their own clocks would read
/// every message 300 ms late; with `--server-clock` pointing at its control endpoint the
/// coordinator measures the server's clock and sets the agents to it. `none` says so instead.
#[test]
fn the_servers_clock_is_measured_through_its_control_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let control = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_c1m"));
    cmd.args([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--every",
        "300ms",
        "--duration",
        "30s",
    ])
    .args(["--control", &control.to_string()])
    .env("C1M_TEST_CLOCK_SKEW_MS", "-300");
    let proc = Proc::spawn(&mut cmd, "skewed server");
    let addr = proc.stderr_line("listening line", Duration::from_secs(10), listening_addr);
    let url = format!("ws://{addr}/");
    let (a, a_addr) = agent(&[], &[]);
    let json = dir.path().join("measured.json");
    let mut cmd = coordinator(&url, &[a_addr], 200, "3s", &json);
    cmd.args(["--server-clock", &format!("http://{control}")]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr
            .contains("measured through its control endpoint: -"),
        "{out}"
    );
    let r = read_json(&json);
    assert_eq!(schema_errors(&r), Vec::<String>::new(), "{r:#}");
    assert_eq!(r["clock"]["server"], "measured");
    let offset = r["clock"]["server_offset_us"].as_i64().unwrap();
    assert!(
        (offset + 300_000).abs() < 5_000,
        "server offset {offset} µs"
    );
    let max = u64_at(&r, "/latency_us/max");
    assert!(
        max < 200_000,
        "latency max {max} µs: the server's clock was not taken out"
    );
    // Without it, the report says the clock was assumed, and the skew shows.
    let json = dir.path().join("assumed.json");
    let out = run(coordinator(&url, &[a_addr], 200, "3s", &json), LIMIT);
    assert!(out.stderr.contains("--server-clock none"), "{out}");
    let r = read_json(&json);
    assert_eq!(r["clock"]["server"], "assumed");
    assert!(
        u64_at(&r, "/latency_us/p50") > 250_000,
        "{:#}",
        r["latency_us"]
    );
    drop(a);
    proc.signal(libc::SIGINT);
}
