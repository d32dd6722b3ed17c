//! Runs split over worker processes (`--workers`), through the real binary: the parent's
//! report is the merge of its workers', every connection hears every broadcast under one
//! sequence number, and a worker killed mid-run is counted and survived. The per-worker cap is
//! forced low (`--worker-conns 400`) so that 1,200 connections take three workers.

use crate::common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const CONNS: u64 = 1200;

/// Starts `c1m client` against `url`: 1,200 connections, 400 per worker, 3 source addresses.
fn client(url: &str, json: &std::path::Path, duration: &str) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_c1m"));
    cmd.args([
        "client",
        "--url",
        url,
        "--ips",
        "3",
        "--worker-conns",
        "400",
    ])
    .args(["--conns", &CONNS.to_string(), "--duration", duration])
    .arg("--json")
    .arg(json);
    Proc::spawn(&mut cmd, "c1m client")
}

fn wait_all_open(client: &Proc) {
    client.wait_open(CONNS, Duration::from_secs(20));
}

/// SIGUSR1 to the server, then its `broadcast seq=N sent to M` line.
fn broadcast(server: &ServerProc) -> (u64, u64) {
    server.proc.signal(libc::SIGUSR1);
    let (seq, sent, _) =
        server
            .proc
            .stderr_line("broadcast line", Duration::from_secs(10), broadcast_line);
    (seq, sent)
}

/// The worker processes of `parent`, from /proc.
fn children(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let path = format!("/proc/{parent}/task/{parent}/children");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn kill(pid: libc::pid_t) {
    // SAFETY: kill(2) on a worker process this test's child started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
}

fn workers(report: &Value) -> &Vec<Value> {
    report["workers"].as_array().expect("a workers array")
}

fn died(report: &Value) -> Vec<&Value> {
    workers(report)
        .iter()
        .filter(|w| w["state"] == "died")
        .collect()
}

#[test]
fn three_server_and_three_client_workers_merge_into_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let (s_json, c_json) = (dir.path().join("s.json"), dir.path().join("c.json"));
    let server = ServerProc::start(&[
        "--workers",
        "3",
        "--every",
        "off",
        "-q",
        "--json",
        s_json.to_str().unwrap(),
    ]);
    assert_eq!(children(server.proc.pid()).len(), 3);
    let client = client(&server.url(), &c_json, "4s");
    wait_all_open(&client);
    assert_eq!(children(client.pid()).len(), 3, "1,200 at 400 per worker");
    for want in 1..=3 {
        assert_eq!(broadcast(&server), (want, CONNS), "one seq, all workers");
    }
    let out = client.wait(Duration::from_secs(30));
    assert_eq!(out.code(), Some(0), "{out}");
    server.proc.signal(libc::SIGINT);
    let s_out = server.proc.wait(Duration::from_secs(30));
    assert_eq!(s_out.code(), Some(0), "{s_out}");

    let c = read_json(&c_json);
    assert_eq!(schema_errors(&c), Vec::<String>::new());
    assert_eq!(c["config"]["workers"], 3);
    assert_eq!(c["config"]["worker_conns"], 400);
    assert_eq!(u64_at(&c, "/connections/established"), CONNS);
    assert_eq!(u64_at(&c, "/connections/peak"), CONNS);
    assert_eq!(u64_at(&c, "/errors/total"), 0, "{out}");
    // Every connection heard every broadcast: merged counts and the merged histogram agree.
    assert_eq!(u64_at(&c, "/messages/received"), 3 * CONNS);
    assert_eq!(u64_at(&c, "/messages/missed"), 0);
    assert_eq!(u64_at(&c, "/latency_us/count"), 3 * CONNS);
    let rows = c["broadcasts"].as_array().unwrap();
    let seen: Vec<(u64, u64)> = rows
        .iter()
        .map(|b| (u64_at(b, "/seq"), u64_at(b, "/received")))
        .collect();
    assert_eq!(seen, vec![(1, CONNS), (2, CONNS), (3, CONNS)]);
    // Sources are split over the workers and mapped back to the one list.
    let sources: Vec<u64> = c["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| u64_at(s, "/established"))
        .collect();
    assert_eq!(sources, vec![400, 400, 400]);
    assert_eq!(workers(&c).len(), 3);
    assert!(workers(&c).iter().all(|w| w["state"] == "stopped"), "{c}");
    assert!(
        out.stdout.contains("-- Workers (3 processes, 0 died)"),
        "{out}"
    );

    let s = read_json(&s_json);
    assert_eq!(schema_errors(&s), Vec::<String>::new());
    assert_eq!(u64_at(&s, "/connections/peak"), CONNS);
    assert_eq!(u64_at(&s, "/messages/sent"), 3 * CONNS);
    let sent: Vec<u64> = s["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| u64_at(b, "/sent"))
        .collect();
    assert_eq!(sent, vec![CONNS; 3]);
    assert_eq!(workers(&s).len(), 3);
}

#[test]
fn a_killed_client_worker_is_counted_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let c_json = dir.path().join("c.json");
    let server = ServerProc::start(&["--every", "off", "-q"]);
    let client = client(&server.url(), &c_json, "4s");
    wait_all_open(&client);
    let victim = children(client.pid())[1];
    kill(victim);
    let note = client.stderr_line("the death", Duration::from_secs(10), |l| {
        l.contains(&format!("(pid {victim}) killed by signal 9"))
            .then(|| l.to_string())
    });
    assert!(
        note.contains("its 400 connections are counted as closed (worker_died)"),
        "{note}"
    );
    // The server sees 400 connections go; the other 800 still hear broadcasts.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(broadcast(&server), (1, CONNS - 400));
    let out = client.wait(Duration::from_secs(30));
    // 400 errors against --max-errors 0: the exit status says so, and the report is written.
    assert_eq!(out.code(), Some(1), "{out}");
    let c = read_json(&c_json);
    assert_eq!(schema_errors(&c), Vec::<String>::new());
    assert_eq!(u64_at(&c, "/errors/by_class/worker_died"), 400);
    assert_eq!(u64_at(&c, "/errors/total"), 400);
    assert_eq!(u64_at(&c, "/messages/received"), CONNS - 400);
    assert_eq!(u64_at(&c, "/messages/missed"), 0);
    let dead = died(&c);
    assert_eq!(dead.len(), 1, "{c}");
    assert_eq!(dead[0]["pid"], victim);
    assert_eq!(dead[0]["exit"], "killed by signal 9");
    assert!(
        out.stdout.contains("-- Workers (3 processes, 1 died)"),
        "{out}"
    );
    server.proc.signal(libc::SIGINT);
    server.proc.wait(Duration::from_secs(30));
}

#[test]
fn a_killed_server_worker_is_counted_and_the_others_keep_broadcasting() {
    let dir = tempfile::tempdir().unwrap();
    let (s_json, c_json) = (dir.path().join("s.json"), dir.path().join("c.json"));
    let server = ServerProc::start(&[
        "--workers",
        "3",
        "--every",
        "off",
        "-q",
        "--json",
        s_json.to_str().unwrap(),
    ]);
    let client = client(&server.url(), &c_json, "4s");
    wait_all_open(&client);
    kill(children(server.proc.pid())[0]);
    server
        .proc
        .stderr_line("the death", Duration::from_secs(10), |l| {
            l.contains("killed by signal 9").then_some(())
        });
    std::thread::sleep(Duration::from_millis(300));
    let (seq, sent) = broadcast(&server);
    assert_eq!(seq, 1);
    let out = client.wait(Duration::from_secs(30));
    server.proc.signal(libc::SIGTERM);
    let s_out = server.proc.wait(Duration::from_secs(30));
    assert_eq!(s_out.code(), Some(1), "the loss is an error: {s_out}");

    let s = read_json(&s_json);
    let lost = u64_at(&s, "/errors/by_class/worker_died");
    // SO_REUSEPORT spreads connections over the three workers: the dead one held about a third.
    assert!((200..=600).contains(&lost), "lost {lost}\n{s_out}");
    assert_eq!(sent, CONNS - lost, "the survivors got the broadcast");
    assert_eq!(died(&s).len(), 1, "{s}");
    // The client saw exactly those connections end, and nothing else go wrong.
    let c = read_json(&c_json);
    let ended =
        u64_at(&c, "/errors/by_class/closed_by_server") + u64_at(&c, "/errors/by_class/reset");
    assert_eq!(ended, lost, "{out}");
    assert_eq!(u64_at(&c, "/messages/received"), CONNS - lost);
}

/// `c1m server` with no `--workers` holds what one process may, then grows: here one process
/// may hold 400 (`--worker-conns`), so 1,200 connections take it and two workers, and every
/// connection is held, with nothing refused or reset on the way.
#[test]
fn a_server_without_workers_grows_past_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (s_json, c_json) = (dir.path().join("s.json"), dir.path().join("c.json"));
    let server = ServerProc::start(&[
        "--every",
        "off",
        "--worker-conns",
        "400",
        "--json",
        s_json.to_str().unwrap(),
    ]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_c1m"));
    cmd.args([
        "client",
        "--url",
        &server.url(),
        "--ips",
        "3",
        "--rate",
        "3000",
    ])
    .args(["--conns", &CONNS.to_string(), "--duration", "4s", "--json"])
    .arg(&c_json);
    let client = Proc::spawn(&mut cmd, "c1m client");
    wait_all_open(&client);
    // The first full process hands over to a worker, which hands over to the next.
    for (from, held) in [("this process", 200), ("worker 0", 360)] {
        server
            .proc
            .stderr_line("a hand-over", Duration::from_secs(10), |l| {
                l.contains(&format!(
                    "c1m: {from} holds all it takes ({held} connections)"
                ))
                .then_some(())
            });
    }
    assert!(children(server.proc.pid()).len() >= 2);
    assert_eq!(
        broadcast(&server),
        (1, CONNS),
        "every process took the broadcast"
    );
    let out = client.wait(Duration::from_secs(30));
    assert_eq!(out.code(), Some(0), "{out}");
    server.proc.signal(libc::SIGINT);
    let s_out = server.proc.wait(Duration::from_secs(30));
    assert_eq!(s_out.code(), Some(0), "{s_out}");

    let c = read_json(&c_json);
    assert_eq!(u64_at(&c, "/connections/established"), CONNS);
    assert_eq!(u64_at(&c, "/errors/total"), 0, "{out}");
    assert_eq!(u64_at(&c, "/messages/received"), CONNS);
    assert_eq!(u64_at(&c, "/messages/missed"), 0);
    let s = read_json(&s_json);
    assert_eq!(schema_errors(&s), Vec::<String>::new());
    assert_eq!(s["config"]["grows"], true);
    assert_eq!(u64_at(&s, "/connections/peak"), CONNS);
    assert!(s["workers"].as_array().unwrap().len() >= 2, "{s:#}");
}

/// A worker a growing server adds after a broadcast declares that broadcast in its upgrades
/// (`X-C1m-Seq`): its connections are not charged for what was sent before they existed.
/// Before the fix, each connection the worker took counted one missed broadcast that never
/// was.
#[test]
fn a_worker_added_after_a_broadcast_invents_no_miss() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&["--every", "off", "--worker-conns", "400"]);
    // At 150/s, the worker is ready and taking connections well before the ramp ends.
    let client = |conns: u64, duration: &str, json: &std::path::Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_c1m"));
        cmd.args([
            "client",
            "--url",
            &server.url(),
            "--ips",
            "2",
            "--rate",
            "150",
        ])
        .args([
            "--conns",
            &conns.to_string(),
            "--duration",
            duration,
            "--json",
        ])
        .arg(json);
        let proc = Proc::spawn(&mut cmd, "c1m client");
        proc.wait_open(conns, Duration::from_secs(20));
        proc
    };
    // 90 held by the server's own process (it holds 200 and readies a worker at half), then
    // broadcast 1 to them.
    let (a_json, b_json) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let first = client(90, "10s", &a_json);
    assert_eq!(broadcast(&server), (1, 90));
    // 300 more: the process fills up and a worker started after broadcast 1 takes the rest.
    let second = client(300, "5s", &b_json);
    server
        .proc
        .stderr_line("a hand-over", Duration::from_secs(10), |l| {
            l.contains("new connections now go to worker 0")
                .then_some(())
        });
    assert_eq!(broadcast(&server), (2, 390));
    for (proc, json) in [(second, &b_json), (first, &a_json)] {
        let out = proc.wait(Duration::from_secs(30));
        assert_eq!(out.code(), Some(0), "{out}");
        let c = read_json(json);
        assert_eq!(u64_at(&c, "/messages/missed"), 0, "{c:#}");
    }
    server.proc.signal(libc::SIGINT);
}
