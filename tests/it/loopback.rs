//! The engine end to end on loopback, in-process: c1m's server and client talk to each other.

use c1m::engine::client::{Client, ClientConfig};
use c1m::engine::server::{Server, ServerConfig};
use c1m::engine::{now_us, source};
use c1m::proto::payload::{self, Format};
use c1m::stats::aggregate::Aggregator;
use c1m::stats::{Broadcasts, Snapshot};
use c1m::stats::{Mode, ShardDelta};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

struct Side {
    rx: UnboundedReceiver<ShardDelta>,
    agg: Aggregator,
}

impl Side {
    fn new(
        mode: Mode,
        target: u64,
        sources: Vec<String>,
    ) -> (Side, tokio::sync::mpsc::UnboundedSender<ShardDelta>) {
        let (tx, rx) = unbounded_channel();
        let agg = Aggregator::new(mode, target, sources, Instant::now());
        (Side { rx, agg }, tx)
    }

    fn snapshot(&mut self) -> Snapshot {
        while let Ok(d) = self.rx.try_recv() {
            self.agg.apply(d, Instant::now());
        }
        self.agg.snapshot(Instant::now())
    }

    /// Polls the snapshot until `done` holds; panics with the last snapshot after `limit`.
    /// The next broadcast every shard has finished.
    async fn finished(&mut self, limit: Duration) -> c1m::stats::ServerBroadcast {
        let start = Instant::now();
        loop {
            self.snapshot();
            if let Some(done) = self.agg.take_finished().into_iter().next() {
                return done;
            }
            assert!(
                start.elapsed() < limit,
                "no broadcast finished within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Snapshot) -> bool,
    ) -> Snapshot {
        let start = Instant::now();
        loop {
            let s = self.snapshot();
            if done(&s) {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}: {s:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A c1m server on 127.0.0.1:0 and a client of `conns` over `ips` loopback sources, both with
/// 2 shards, each with its aggregator.
fn start_pair(
    conns: u64,
    ips: usize,
    max_inflight: usize,
    batch_window: Duration,
) -> (Server, Side, Client, Side) {
    let (srv, stx) = Side::new(Mode::Server, 0, vec![]);
    let server = Server::start(
        &ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            shards: 2,
            handshake_timeout: Duration::from_secs(10),
            joins_group: false,
            ..ServerConfig::default()
        },
        stx,
    )
    .unwrap();
    let addr = server.local_addr();
    let sources = source::plan(addr, ips, None).unwrap();
    let names = sources.iter().map(|s| s.unwrap().to_string()).collect();
    let (cli, ctx) = Side::new(Mode::Client, conns, names);
    let client = Client::start(
        &ClientConfig {
            addr,
            host: addr.to_string(),
            path: "/".into(),
            conns,
            rate: 0.0,
            sources,
            max_inflight,
            connect_timeout: Duration::from_secs(10),
            shards: 2,
            batch_window,
            reconnect: None,
            headers: vec![],
            subprotocols: vec![],
            tls: None,
            talk: Default::default(),
            reader: Default::default(),
            compression: Default::default(),
            max_message: None,
            echo: false,
            churn: 0.0,
            io_uring: false,
        },
        ctx,
    )
    .unwrap();
    (server, srv, client, cli)
}

/// Broadcasts `seq`, telling the server side's aggregator which shards will report it.
fn broadcast(server: &Server, srv: &mut Side, format: Format, seq: u64) {
    let mut buf = Vec::new();
    let ts = now_us();
    payload::encode(format, seq, ts, 0, &mut buf);
    let shards = server.broadcast(seq, &buf, ts);
    srv.agg.expect_broadcast(seq, shards);
}

async fn run_broadcasts(format: Format) {
    const N: u64 = 1000;
    let (server, mut srv, client, mut cli) = start_pair(N, 3, 256, Duration::from_micros(500));
    cli.wait_for("1000 connections", Duration::from_secs(30), |s| {
        s.connections.active == N
    })
    .await;

    for round in 1..=3u64 {
        broadcast(&server, &mut srv, format, round);
        let done = srv.finished(Duration::from_secs(10)).await;
        assert_eq!((done.seq, done.sent, done.dropped), (round, N, 0));
        assert_eq!((done.open, done.complete), (N, true));
        cli.wait_for("every message", Duration::from_secs(10), |s| {
            s.messages.received == N * round
        })
        .await;
    }
    client.stop();
    let c = cli.snapshot();
    assert_eq!(c.connections.established, N);
    assert_eq!(c.messages.received, 3 * N);
    assert_eq!(c.messages.missed, Some(0), "{c:#?}");
    assert_eq!(c.messages.unparsable, 0);
    assert_eq!(c.latency_us.count, 3 * N);
    assert_eq!(c.errors.total, 0, "{:?}", c.errors);
    let Broadcasts::Client(rows) = &c.broadcasts else {
        panic!("client rows")
    };
    let per_seq: Vec<(u64, u64)> = rows.iter().map(|r| (r.seq, r.received)).collect();
    assert_eq!(per_seq, vec![(1, N), (2, N), (3, N)]);
    // The slowest message of each broadcast is the run's slowest latency: both are receive time
    // minus the payload's timestamp, so the histogram must agree (to its 3-digit precision).
    let slowest = rows.iter().filter_map(|r| r.delivery_us).max().unwrap() as f64;
    let max = c.latency_us.max as f64;
    assert!(
        (max - slowest).abs() <= slowest / 500.0 + 2.0,
        "max {max} vs delivery {slowest}"
    );
    // Every source address carried its third of the connections.
    for s in &c.sources {
        assert!((333..=334).contains(&s.established), "{s:?}");
    }

    let s = srv
        .wait_for(
            "the server to see the closes",
            Duration::from_secs(10),
            |s| s.connections.active == 0,
        )
        .await;
    assert_eq!(s.connections.established, N);
    assert_eq!(s.messages.sent, 3 * N);
    assert_eq!(s.errors.total, 0, "{:?}", s.errors);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_gets_every_broadcast_json() {
    run_broadcasts(Format::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_gets_every_broadcast_seed_payload() {
    run_broadcasts(Format::Seed).await;
}

/// What the console's `+`, `-` and `p` keys do: the client follows a moving target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_follows_target_changes_and_pauses() {
    let (server, mut srv, client, mut cli) = start_pair(200, 2, 64, Duration::ZERO);
    let limit = Duration::from_secs(20);
    cli.wait_for("200 open", limit, |s| s.connections.active == 200)
        .await;

    client.set_target(120);
    let s = cli
        .wait_for("80 closed", limit, |s| s.connections.active == 120)
        .await;
    assert_eq!(s.connections.closed, 80);
    assert_eq!(
        s.errors.total, 0,
        "closing down is not an error: {:?}",
        s.errors
    );
    srv.wait_for("the server to see it", limit, |s| {
        s.connections.active == 120
    })
    .await;

    client.set_paused(true);
    client.set_target(300);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        cli.snapshot().connections.active,
        120,
        "a paused ramp opens nothing"
    );

    client.set_paused(false);
    let s = cli
        .wait_for("300 open", limit, |s| s.connections.active == 300)
        .await;
    assert_eq!(s.connections.established, 380);
    let per_source: Vec<u64> = s.sources.iter().map(|r| r.active).collect();
    assert_eq!(
        per_source,
        vec![150, 150],
        "still round-robin over the sources"
    );
    let s = srv
        .wait_for("server peers", limit, |s| s.connections.active == 300)
        .await;
    assert_eq!(s.connections.peers, 2, "{:?}", s.peers);
    client.stop();
    server.stop();
}
