//! The worker side: `c1m worker` (hidden) reads a [`Start`] line, runs one server or client
//! engine, forwards its deltas up and obeys commands from the parent. It prints nothing of its
//! own: the parent owns the console and the reports. When its input closes (the parent is gone)
//! it stops as if told to, so no worker outlives its parent.
//!
//! [`serve`] speaks the line protocol over any reader and writer: stdin and stdout for a child
//! process today, a socket for a remote agent later.

use super::wire::{Down, Start, Up, line};
use crate::engine::client::Client;
use crate::engine::server::Server;
use crate::stats::ShardDelta;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader, Lines};
use tokio::sync::{mpsc, watch};

/// How often a worker reports what it costs.
const USAGE_EVERY: Duration = Duration::from_secs(1);

pub async fn run() -> Result<i32> {
    serve(BufReader::new(tokio::io::stdin()), tokio::io::stdout()).await?;
    Ok(0)
}

/// Runs what the first line asks for until told to stop or until `input` closes.
pub async fn serve(input: impl AsyncBufRead + Unpin, out: impl AsyncWrite + Unpin) -> Result<()> {
    serve_as(input, out, Own::default()).await
}

/// What an agent's machine decides for itself, over what its coordinator sends.
#[derive(Clone, Debug, Default)]
pub struct Own {
    /// The most connections one process holds here (`None`: the hard RLIMIT_NOFILE less a
    /// margin).
    pub worker_conns: Option<u64>,
    /// Source addresses of this machine (`c1m agent --source-ips`).
    pub source_ips: Option<String>,
    /// Where this agent's own figures go for its `/metrics` (`c1m agent --metrics`).
    pub metrics: Option<Metrics>,
}

/// The figures `c1m agent --metrics` serves.
pub type Metrics = Arc<watch::Sender<Option<Arc<crate::control::Published>>>>;

/// [`serve`], for an agent: what it decides itself (`own`).
pub async fn serve_as(
    input: impl AsyncBufRead + Unpin,
    out: impl AsyncWrite + Unpin,
    own: Own,
) -> Result<()> {
    let mut lines = input.lines();
    let first = lines.next_line().await?.context(
        "c1m worker is started by c1m server/client/tui --workers; it reads its task on stdin",
    )?;
    let start: Start = serde_json::from_str(&first).context("a malformed start line")?;
    // A worker is sized to its fd limit by the parent: take all of it.
    let (_, hard) = crate::sys::nofile();
    crate::sys::ensure_fds(hard.saturating_sub(crate::sys::FD_MARGIN), "a worker")?;
    let mut up = Upstream { out };
    let (tx, rx) = mpsc::unbounded_channel::<ShardDelta>();
    match start {
        Start::Server(cfg) => {
            let server = Server::start(&cfg, tx)?;
            let ready = ready(Some(server.local_addr()), server.shards());
            up.send(&ready).await?;
            let stop = drive(&mut lines, &mut up, rx, &mut &server).await?;
            let panics = tokio::task::spawn_blocking(move || server.stop()).await?;
            stop.finish(&mut up, panics).await
        }
        Start::Client(cfg) => {
            let side = super::ClientSide::Local(Client::start(&cfg, tx)?);
            let member = ClientMember { side, view: None };
            run_client(&mut lines, &mut up, (member, cfg.shards), rx).await
        }
        Start::Agent { mut cfg, share } => {
            let cap = own
                .worker_conns
                .unwrap_or_else(crate::sys::per_process_conns);
            if let Some(list) = &own.source_ips {
                cfg.sources = crate::engine::source::plan(cfg.addr, 0, Some(list))?;
            }
            let view = own.metrics.map(|out| View::new(&cfg, share, out));
            agent_client(&mut lines, &mut up, (*cfg, share, cap), view, (tx, rx)).await
        }
    }
}

/// An agent's client: in this process, or over worker processes of its own when its share
/// is more than one process may hold here; either way one stream of deltas up (the workers'
/// shards numbered within the agent), and its memory is the whole tree's.
async fn agent_client<R, W>(
    lines: &mut Lines<R>,
    up: &mut Upstream<W>,
    (mut cfg, share, cap): (crate::engine::client::ClientConfig, u64, u64),
    view: Option<View>,
    (tx, rx): (
        mpsc::UnboundedSender<ShardDelta>,
        mpsc::UnboundedReceiver<ShardDelta>,
    ),
) -> Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use super::{ClientSide, Layout};
    let layout = Layout::choose(None, share, share, cap);
    cfg.shards = match layout {
        Layout::Workers(n) => super::shards_per_worker(n),
        _ => crate::engine::default_shards(),
    };
    if let Layout::Workers(n) = layout {
        eprintln!(
            "c1m agent: {share} connections are more than one process holds here ({cap}): {n} worker processes"
        );
    }
    let none = (Vec::new(), super::clock::Source::Assumed);
    let side = ClientSide::start(&cfg, layout, cap, none, tx).await?;
    let shards = cfg.shards * layout.workers().max(1);
    run_client(lines, up, (ClientMember { side, view }, shards), rx).await
}

/// A client (a worker's, or an agent's, perhaps over workers of its own) until told to stop:
/// ready, then commands obeyed and deltas forwarded, then its last deltas and goodbye.
async fn run_client<R, W>(
    lines: &mut Lines<R>,
    up: &mut Upstream<W>,
    (mut member, shards): (ClientMember, usize),
    rx: mpsc::UnboundedReceiver<ShardDelta>,
) -> Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    up.send(&ready(None, shards)).await?;
    let stop = drive(lines, up, rx, &mut member).await?;
    let ClientMember { side, view } = member;
    if let Some(view) = view {
        // The run is over: `/metrics` says so rather than serve its last second forever.
        view.out.send_replace(None);
    }
    // Closing a quarter of a million connections over worker processes takes a while: the
    // parent (an agent's coordinator) hears from this process each second meanwhile, or it
    // would count it lost.
    let stopping = side.stop();
    tokio::pin!(stopping);
    let mut alive = tokio::time::interval(USAGE_EVERY);
    let stopped = loop {
        tokio::select! {
            stopped = &mut stopping => break stopped,
            _ = alive.tick() => up.send(&own_usage()).await?,
        }
    };
    for note in &stopped.notes {
        eprintln!("c1m agent: {note}");
    }
    stop.finish(up, stopped.panics).await
}

/// What a worker runs, as the loop in [`drive`] sees it.
trait Member {
    fn obey(&mut self, cmd: Down);

    /// A delta on its way up.
    fn seen(&mut self, _: &ShardDelta) {}

    /// What it costs now; asked once a second.
    fn usage(&mut self) -> Up {
        own_usage()
    }
}

impl Member for &Server {
    fn obey(&mut self, cmd: Down) {
        if let Down::Broadcast {
            seq,
            payload,
            stamp_us,
        } = cmd
        {
            self.broadcast(seq, &payload, stamp_us);
        }
    }
}

/// A client, and for an agent with `--metrics` its own view of its share.
struct ClientMember {
    side: super::ClientSide,
    view: Option<View>,
}

impl Member for ClientMember {
    fn obey(&mut self, cmd: Down) {
        let side = &mut self.side;
        match cmd {
            Down::Target(n) => {
                side.set_target(n);
                if let Some(v) = &mut self.view {
                    v.agg.set_target(n);
                }
            }
            Down::Rate(r) => side.set_rate(r),
            Down::Paused(p) => side.set_paused(p),
            Down::ClockOffset { us } => side.set_clock_offset(us),
            Down::Broadcast { .. } | Down::Clock { .. } | Down::Stop => {}
        }
    }

    fn seen(&mut self, d: &ShardDelta) {
        if let Some(v) = &mut self.view {
            v.agg.apply(d.clone(), std::time::Instant::now());
        }
    }

    /// This process and the worker processes it runs (an agent's): the machine's share of the
    /// run is the whole tree's.
    fn usage(&mut self) -> Up {
        let (mut rss, mut cpu) = (crate::sys::own_rss(), crate::sys::own_cpu_s());
        for w in self.side.rows() {
            rss = rss.map(|r| r + w.rss_bytes.unwrap_or(0));
            cpu = cpu.map(|c| c + w.cpu_s.unwrap_or(0.0));
        }
        if let Some(v) = &mut self.view {
            v.publish(rss);
        }
        Up::Usage {
            rss_bytes: rss,
            cpu_s: cpu,
        }
    }
}

/// An agent's own figures of its share, from the deltas it forwards, for its `/metrics`: what
/// Prometheus scrapes from every agent and adds up.
struct View {
    agg: crate::stats::aggregate::Aggregator,
    out: Metrics,
}

impl View {
    fn new(cfg: &crate::engine::client::ClientConfig, share: u64, out: Metrics) -> View {
        let names = cfg
            .sources
            .iter()
            .map(|s| s.map_or_else(|| "auto".to_string(), |ip| ip.to_string()))
            .collect();
        let agg = crate::stats::aggregate::Aggregator::new(
            crate::stats::Mode::Client,
            share,
            names,
            std::time::Instant::now(),
        );
        View { agg, out }
    }

    /// A second has passed: the figures so far, with the memory the agent reads for itself.
    fn publish(&mut self, rss_bytes: Option<u64>) {
        let now = std::time::Instant::now();
        self.agg.tick(now);
        let mut snapshot = self.agg.snapshot(now);
        snapshot.memory.rss_bytes = rss_bytes;
        let report = serde_json::Value::Null;
        let published = crate::control::Published { snapshot, report };
        self.out.send_replace(Some(Arc::new(published)));
    }
}

/// What this process costs.
fn own_usage() -> Up {
    Up::Usage {
        rss_bytes: crate::sys::own_rss(),
        cpu_s: crate::sys::own_cpu_s(),
    }
}

fn ready(local_addr: Option<std::net::SocketAddr>, shards: usize) -> Up {
    Up::Ready {
        local_addr,
        shards,
        pid: std::process::id(),
    }
}

/// The line writer towards the parent.
struct Upstream<W> {
    out: W,
}

impl<W: AsyncWrite + Unpin> Upstream<W> {
    async fn send(&mut self, msg: &Up) -> Result<()> {
        self.out.write_all(&line(msg)).await?;
        self.out.flush().await?;
        Ok(())
    }
}

/// The deltas still to forward once the engine has stopped.
struct Stopping {
    rx: mpsc::UnboundedReceiver<ShardDelta>,
}

impl Stopping {
    async fn finish<W: AsyncWrite + Unpin>(
        mut self,
        up: &mut Upstream<W>,
        panics: Vec<String>,
    ) -> Result<()> {
        while let Ok(d) = self.rx.try_recv() {
            up.send(&Up::Delta(Box::new(d))).await?;
        }
        up.send(&Up::Bye { panics }).await
    }
}

/// Forwards deltas and usage up and hands commands to `member`, until `Stop` or the end of the
/// input.
async fn drive<R, W>(
    lines: &mut Lines<R>,
    up: &mut Upstream<W>,
    mut rx: mpsc::UnboundedReceiver<ShardDelta>,
    member: &mut impl Member,
) -> Result<Stopping>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut usage = tokio::time::interval(USAGE_EVERY);
    loop {
        tokio::select! {
            cmd = lines.next_line() => match parse(cmd) {
                Cmd::Do(Down::Stop) | Cmd::Gone => break,
                Cmd::Do(Down::Clock { t0_us }) => {
                    let t1_us = crate::engine::now_us();
                    up.send(&Up::Clock { t0_us, t1_us, t2_us: crate::engine::now_us() }).await?;
                }
                Cmd::Do(cmd) => member.obey(cmd),
                Cmd::Ignore => {}
            },
            Some(d) = rx.recv() => {
                member.seen(&d);
                up.send(&Up::Delta(Box::new(d))).await?;
            }
            _ = usage.tick() => up.send(&member.usage()).await?,
        }
    }
    Ok(Stopping { rx })
}

/// What a line from the parent asks for.
enum Cmd {
    Do(Down),
    /// A line that does not parse: a bug between two copies of the same binary. It is reported
    /// on stderr, which the parent shows, and otherwise ignored.
    Ignore,
    /// EOF or a broken pipe: the parent has gone.
    Gone,
}

fn parse(line: std::io::Result<Option<String>>) -> Cmd {
    let Some(text) = line.ok().flatten() else {
        return Cmd::Gone;
    };
    match serde_json::from_str(&text) {
        Ok(cmd) => Cmd::Do(cmd),
        Err(e) => {
            eprintln!("ignored a malformed command ({e}): {text}");
            Cmd::Ignore
        }
    }
}
