//! TLS setup rates, full and resumed: a c1m server (`--tls-self-signed`'s certificate) and a
//! c1m client in this process, co-located on loopback. Three ramps of `CONNS` connections at
//! `--rate 0`: one by a client that never resumes (every handshake full), then, by a client
//! that resumes, a first ramp and — after closing them all — a second, in which every
//! connection has a ticket from the first. Prints handshakes per second and how many resumed,
//! and appends the table to BENCHMARKS.md.
//!
//!     cargo bench --bench tls_resume
//!
//! Both sides share one process, whose descriptors are capped at 20,000 here: 9,000
//! connections use 18,000 of them.
use c1m::engine::client::{Client, ClientConfig};
use c1m::engine::server::{Server, ServerConfig};
use c1m::engine::source;
use c1m::engine::tls::{TlsSpec, self_signed};
use c1m::stats::aggregate::Aggregator;
use c1m::stats::{Mode, ShardDelta, Snapshot};
use std::io::Write;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

const CONNS: u64 = 9_000;

struct Side {
    rx: UnboundedReceiver<ShardDelta>,
    agg: Aggregator,
}

impl Side {
    fn wait_for(&mut self, done: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let limit = Instant::now() + Duration::from_secs(120);
        loop {
            while let Ok(d) = self.rx.try_recv() {
                self.agg.apply(d, Instant::now());
            }
            let s = self.agg.snapshot(Instant::now());
            if done(&s) || Instant::now() > limit {
                return s;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn client(addr: std::net::SocketAddr, ca: &std::path::Path, no_resume: bool) -> (Client, Side) {
    let (tx, rx) = unbounded_channel();
    let cfg = ClientConfig {
        addr,
        host: addr.to_string(),
        path: "/".into(),
        conns: CONNS,
        rate: 0.0,
        sources: source::plan(addr, 2, None).unwrap(),
        max_inflight: 1024,
        connect_timeout: Duration::from_secs(30),
        shards: 1,
        batch_window: Duration::from_millis(5),
        reconnect: None,
        headers: vec![],
        subprotocols: vec![],
        tls: Some(TlsSpec {
            name: "127.0.0.1".into(),
            ca: vec![ca.to_path_buf()],
            insecure: false,
            no_resume,
        }),
        talk: Default::default(),
        reader: Default::default(),
        compression: Default::default(),
        max_message: None,
        echo: false,
        churn: 0.0,
        io_uring: false,
    };
    let agg = Aggregator::new(Mode::Client, CONNS, vec![], Instant::now());
    (Client::start(&cfg, tx).unwrap(), Side { rx, agg })
}

/// Opens `CONNS` more connections; (handshakes per second, resumed among them).
fn ramp(client: &Client, side: &mut Side, before: &Snapshot) -> (f64, u64) {
    let t = Instant::now();
    client.set_target(CONNS);
    let s = side.wait_for(|s| s.connections.established >= before.connections.established + CONNS);
    let opened = s.connections.established - before.connections.established;
    let resumed = s.connections.tls_resumed - before.connections.tls_resumed;
    (opened as f64 / t.elapsed().as_secs_f64(), resumed)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let tls = self_signed(dir.path()).unwrap();
    let ca = tls.cert.clone();
    let (stx, _srx) = unbounded_channel();
    let server = Server::start(
        &ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            shards: 1,
            tls: Some(tls),
            ..ServerConfig::default()
        },
        stx,
    )
    .unwrap();
    let addr = server.local_addr();
    let mut rows = Vec::new();
    for (name, no_resume, ramps) in [("--tls-no-resume", true, 1), ("resuming", false, 2)] {
        let (c, mut side) = client(addr, &ca, no_resume);
        c.set_target(0);
        let mut before = side.wait_for(|_| true);
        for round in 1..=ramps {
            let (rate, resumed) = ramp(&c, &mut side, &before);
            rows.push(format!(
                "| {name}, ramp {round} | {CONNS} | {resumed} | {rate:.0} |"
            ));
            c.set_target(0);
            before = side.wait_for(|s| s.connections.active == 0);
        }
        c.stop();
    }
    server.stop();
    let mut table =
        String::from("| client, ramp | handshakes | resumed | handshakes/s |\n|---|---|---|---|\n");
    for r in rows {
        table += &r;
        table.push('\n');
    }
    print!("{table}");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open("BENCHMARKS.md")
        .unwrap();
    writeln!(
        f,
        "\n### TLS setup, full and resumed: {CONNS} connections in one process, one shard each side — `cargo bench --bench tls_resume`, git {}\n\n{table}",
        git_head()
    )
    .unwrap();
}

fn git_head() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
