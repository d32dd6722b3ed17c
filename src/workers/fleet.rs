//! The parent's side of worker processes: it starts `c1m worker` children, feeds each its
//! commands, and turns what they send into the same [`ShardDelta`] stream one process would
//! produce, so one [`crate::stats::aggregate::Aggregator`] merges everything exactly. A worker's
//! shards get global numbers (worker × shards per worker + shard), and a client worker's source
//! indices are mapped back to the global list.
//!
//! A worker that dies is not an error of the run: its reader notices the closed pipe, zeroes
//! the worker's gauges, counts the connections it held as closed (`worker_died`), and the rest
//! go on.

use super::wire::{Down, Start, Up, line};
use crate::engine::server::BroadcastDone;
use crate::stats::aggregate::{WorkerRow, WorkerState};
use crate::stats::{ErrorClass, ShardDelta};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

/// How long a worker may take to start before the run gives up on it.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long stopping may take (closing 20,000 connections takes well under a second) before the
/// stragglers are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the parent knows about one worker; written by its reader task, read for the table.
#[derive(Debug)]
struct Info {
    pid: u32,
    state: WorkerState,
    /// The latest `active` and `connecting` gauges of each of its shards.
    active: Vec<u64>,
    connecting: Vec<u64>,
    errors: u64,
    exit: Option<String>,
    panics: Vec<String>,
    local_addr: Option<SocketAddr>,
}

/// State shared between the fleet and its reader tasks (a handful of updates a second each).
#[derive(Debug, Default)]
struct Shared {
    infos: Vec<Info>,
    /// Lines for the user: workers' stderr and deaths, oldest first.
    notes: Vec<String>,
}

enum Event {
    Ready(usize),
    Done(usize, BroadcastDone),
    /// The worker's output has ended: it said goodbye or died.
    Ended(usize),
}

struct Handle {
    tx: UnboundedSender<Down>,
}

/// How a fleet maps its workers' numbers into the parent's.
#[derive(Clone, Copy)]
struct Mapping {
    shards_per_worker: usize,
    /// Client: the worker's rotation of the source list, and the list's length.
    source_offset: usize,
    sources: usize,
}

/// Worker processes of one side.
pub struct Fleet {
    exe: PathBuf,
    shards_per_worker: usize,
    handles: Vec<Handle>,
    shared: Arc<Mutex<Shared>>,
    deltas: UnboundedSender<ShardDelta>,
    events_tx: UnboundedSender<Event>,
    events: UnboundedReceiver<Event>,
    ended: Vec<bool>,
    rows: Vec<WorkerRow>,
    rows_at: Option<Instant>,
}

impl Fleet {
    pub fn new(
        exe: PathBuf,
        shards_per_worker: usize,
        deltas: UnboundedSender<ShardDelta>,
    ) -> Fleet {
        let (events_tx, events) = mpsc::unbounded_channel();
        Fleet {
            exe,
            shards_per_worker,
            handles: Vec::new(),
            shared: Arc::default(),
            deltas,
            events_tx,
            events,
            ended: Vec::new(),
            rows: Vec::new(),
            rows_at: None,
        }
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Workers not known to have ended.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.handles.len())
            .filter(|&i| !self.ended[i])
            .collect()
    }

    /// Starts worker `self.len()` with `start`; it reports `Ready` through the events.
    fn spawn(&mut self, start: &Start, source_offset: usize, sources: usize) -> Result<usize> {
        let index = self.handles.len();
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: Ctrl-C in the terminal reaches the parent only, which then
            // stops every worker in order and still writes the report.
            .process_group(0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start a worker process ({})", self.exe.display()))?;
        let pid = child.id().unwrap_or(0);
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, mut rx) = mpsc::unbounded_channel::<Down>();
        let first = line(start);
        tokio::spawn(async move {
            if stdin.write_all(&first).await.is_err() {
                return;
            }
            while let Some(cmd) = rx.recv().await {
                if stdin.write_all(&line(&cmd)).await.is_err() {
                    break;
                }
            }
            // Dropping stdin closes the pipe: a worker that reads EOF stops.
        });
        {
            let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            shared.infos.push(Info {
                pid,
                state: WorkerState::Starting,
                active: vec![0; self.shards_per_worker],
                connecting: vec![0; self.shards_per_worker],
                errors: 0,
                exit: None,
                panics: Vec::new(),
                local_addr: None,
            });
        }
        let mapping = Mapping {
            shards_per_worker: self.shards_per_worker,
            source_offset,
            sources,
        };
        tokio::spawn(read_stderr(index, stderr, self.shared.clone()));
        tokio::spawn(read_stdout(
            index,
            child,
            stdout,
            mapping,
            self.shared.clone(),
            self.deltas.clone(),
            self.events_tx.clone(),
        ));
        self.handles.push(Handle { tx });
        self.ended.push(false);
        Ok(index)
    }

    /// Waits until workers `from..` have all started; a worker that ends first fails the start
    /// with what it printed.
    async fn await_ready(&mut self, from: usize) -> Result<()> {
        let mut waiting: Vec<usize> = (from..self.handles.len()).collect();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while !waiting.is_empty() {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "{} worker process(es) did not start within {}s",
                        waiting.len(),
                        START_TIMEOUT.as_secs()
                    )
                })?;
            match event {
                Some(Event::Ready(i)) => waiting.retain(|&w| w != i),
                Some(Event::Ended(i)) => {
                    self.ended[i] = true;
                    let notes = self.take_notes().join("\n");
                    bail!("worker {i} could not start:\n{notes}");
                }
                Some(Event::Done(..)) => {}
                None => bail!("lost the workers' events"),
            }
        }
        Ok(())
    }

    fn send(&self, worker: usize, cmd: Down) {
        let _ = self.handles[worker].tx.send(cmd);
    }

    /// Lines for the user since the last call: what workers printed, and deaths.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lock().notes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One row per worker; memory is read from /proc at most once a second.
    pub fn rows(&mut self) -> Vec<WorkerRow> {
        let fresh = self
            .rows_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
        let shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::take(&mut self.rows);
        self.rows = shared
            .infos
            .iter()
            .enumerate()
            .map(|(index, info)| {
                let alive = matches!(info.state, WorkerState::Starting | WorkerState::Running);
                let rss_bytes = if !alive {
                    None
                } else if fresh {
                    old.get(index).and_then(|r| r.rss_bytes)
                } else {
                    rss_of(info.pid)
                };
                WorkerRow {
                    index,
                    pid: info.pid,
                    state: info.state,
                    active: info.active.iter().sum(),
                    errors: info.errors,
                    rss_bytes,
                    exit: info.exit.clone(),
                }
            })
            .collect();
        drop(shared);
        if !fresh {
            self.rows_at = Some(Instant::now());
        }
        self.rows.clone()
    }

    /// Tells every live worker to stop, waits for each to send its last deltas and exit (or
    /// kills it after [`STOP_TIMEOUT`]).
    pub async fn stop(mut self) -> super::Stopped {
        for i in self.alive() {
            self.send(i, Down::Stop);
        }
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        while !self.alive().is_empty() {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Event::Ended(i))) => self.ended[i] = true,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    for i in self.alive() {
                        let pid = self.lock().infos[i].pid;
                        // SAFETY: kill() with a pid we started; a stale pid is only an error.
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    }
                    // Their readers now see EOF, count the loss and send Ended.
                    while !self.alive().is_empty() {
                        match self.events.recv().await {
                            Some(Event::Ended(i)) => self.ended[i] = true,
                            Some(_) => {}
                            None => break,
                        }
                    }
                }
            }
        }
        let panics = self
            .lock()
            .infos
            .iter()
            .enumerate()
            .flat_map(|(i, info)| info.panics.iter().map(move |p| format!("worker {i}: {p}")))
            .collect();
        self.rows_at = None;
        super::Stopped {
            panics,
            workers: self.rows(),
            notes: self.take_notes(),
        }
    }
}

fn rss_of(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * crate::sys::page_size())
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => s.to_string(),
        },
        Err(e) => format!("unknown exit ({e})"),
    }
}

async fn read_stderr(
    index: usize,
    stderr: tokio::process::ChildStderr,
    shared: Arc<Mutex<Shared>>,
) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(text)) = lines.next_line().await {
        let text = text.strip_prefix("c1m: ").unwrap_or(&text).to_string();
        let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.notes.push(format!("worker {index}: {text}"));
    }
}

async fn read_stdout(
    index: usize,
    mut child: tokio::process::Child,
    stdout: tokio::process::ChildStdout,
    map: Mapping,
    shared: Arc<Mutex<Shared>>,
    deltas: UnboundedSender<ShardDelta>,
    events: UnboundedSender<Event>,
) {
    let base = index * map.shards_per_worker;
    let mut lines = BufReader::new(stdout).lines();
    let mut said_bye = false;
    while let Ok(Some(text)) = lines.next_line().await {
        let msg = match serde_json::from_str::<Up>(&text) {
            Ok(msg) => msg,
            Err(e) => {
                let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
                shared
                    .notes
                    .push(format!("worker {index} sent a line c1m cannot read: {e}"));
                continue;
            }
        };
        match msg {
            Up::Ready { local_addr, .. } => {
                {
                    let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
                    let info = &mut shared.infos[index];
                    info.state = WorkerState::Running;
                    info.local_addr = local_addr;
                }
                let _ = events.send(Event::Ready(index));
            }
            Up::Delta(mut d) => {
                let local = d.shard;
                {
                    let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
                    let info = &mut shared.infos[index];
                    if local < info.active.len() {
                        info.active[local] = d.active;
                        info.connecting[local] = d.connecting;
                    }
                    info.errors += d.counters.errors_total();
                }
                d.shard = base + local.min(map.shards_per_worker - 1);
                if map.sources > 0 {
                    for s in &mut d.per_source {
                        s.source = (s.source + map.source_offset) % map.sources;
                    }
                }
                let _ = deltas.send(*d);
            }
            Up::Done(done) => {
                let _ = events.send(Event::Done(index, done));
            }
            Up::Bye { panics } => {
                said_bye = true;
                let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
                shared.infos[index].panics = panics;
            }
        }
    }
    let status = child.wait().await;
    {
        let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
        let Shared { infos, notes } = &mut *shared;
        let info = &mut infos[index];
        if said_bye {
            info.state = WorkerState::Stopped;
        } else {
            // Died unasked: its connections are gone. Count them once, as closed, under their
            // own class, and zero its gauges so the totals stay true.
            let how = describe(status);
            let lost: u64 = info.active.iter().sum();
            for (local, (&active, &connecting)) in
                info.active.iter().zip(&info.connecting).enumerate()
            {
                if active == 0 && connecting == 0 {
                    continue;
                }
                let mut d = ShardDelta::empty(base + local);
                d.counters.closed = active;
                d.counters.errors[ErrorClass::WorkerDied.index()] = active;
                d.peers = Some(Vec::new());
                let _ = deltas.send(d);
            }
            info.errors += lost;
            info.active.iter_mut().for_each(|a| *a = 0);
            info.connecting.iter_mut().for_each(|a| *a = 0);
            info.state = WorkerState::Died;
            notes.push(format!(
                "worker {index} (pid {}) {how}: its {lost} connections are counted as closed \
                 (worker_died); the other workers go on",
                info.pid
            ));
            info.exit = Some(how);
        }
    }
    let _ = events.send(Event::Ended(index));
}

/// A fleet of server workers sharing one port; broadcasts go to all of them under one
/// sequence number.
pub struct ServerFleet {
    fleet: Fleet,
    local_addr: SocketAddr,
    seq: u64,
    /// Broadcasts not yet finished by every worker that was alive when they started.
    pending: BTreeMap<u64, Pending>,
}

struct Pending {
    waiting: Vec<usize>,
    parts: Vec<BroadcastDone>,
}

impl ServerFleet {
    /// Starts `workers` server workers on `cfg.listen` (port 0 picks one) and waits until all
    /// listen.
    pub async fn start(
        exe: PathBuf,
        cfg: &crate::engine::server::ServerConfig,
        workers: usize,
        deltas: UnboundedSender<ShardDelta>,
    ) -> Result<ServerFleet> {
        // Held until every worker listens, so that port 0 means one port for all of them.
        let reservation = crate::engine::server::reserve_port(cfg.listen)?;
        let local_addr = reservation
            .local_addr()?
            .as_socket()
            .context("the reserved port has no IP address")?;
        let mut fleet = Fleet::new(exe, cfg.shards.max(1), deltas);
        // Each worker caps its own share: SO_REUSEPORT spreads connections within about 1 %,
        // so the whole fleet's cap is that approximate.
        let workers = workers.max(1);
        let start = Start::Server(crate::engine::server::ServerConfig {
            listen: local_addr,
            joins_group: true,
            max_conns: cfg.max_conns.map(|n| n.div_ceil(workers as u64)),
            ..cfg.clone()
        });
        for _ in 0..workers {
            fleet.spawn(&start, 0, 0)?;
        }
        fleet.await_ready(0).await?;
        drop(reservation);
        Ok(ServerFleet {
            fleet,
            local_addr,
            seq: 0,
            pending: BTreeMap::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn workers(&self) -> usize {
        self.fleet.len()
    }

    pub fn next_seq(&self) -> u64 {
        self.seq + 1
    }

    /// Sends the same payload to every live worker; each writes it to its connections.
    pub fn broadcast_frame(&mut self, seq: u64, payload: &[u8]) {
        self.seq = seq;
        let alive = self.fleet.alive();
        for &i in &alive {
            self.fleet.send(
                i,
                Down::Broadcast {
                    seq,
                    payload: payload.to_vec(),
                },
            );
        }
        self.pending.insert(
            seq,
            Pending {
                waiting: alive,
                parts: Vec::new(),
            },
        );
    }

    /// The next broadcast every worker has finished (a worker that dies meanwhile is not
    /// waited for). Cancel-safe.
    pub async fn next_done(&mut self) -> Option<BroadcastDone> {
        loop {
            if let Some(seq) = self
                .pending
                .iter()
                .find(|(_, p)| p.waiting.is_empty())
                .map(|(&s, _)| s)
            {
                let p = self.pending.remove(&seq)?;
                return Some(BroadcastDone::combine(
                    seq,
                    p.parts
                        .iter()
                        .map(|d| (d.sent, d.dropped, d.first_us, d.last_us)),
                ));
            }
            match self.fleet.events.recv().await? {
                Event::Done(i, done) => {
                    if let Some(p) = self.pending.get_mut(&done.seq) {
                        p.waiting.retain(|&w| w != i);
                        p.parts.push(done);
                    }
                }
                Event::Ended(i) => {
                    self.fleet.ended[i] = true;
                    for p in self.pending.values_mut() {
                        p.waiting.retain(|&w| w != i);
                    }
                }
                Event::Ready(_) => {}
            }
        }
    }

    pub fn rows(&mut self) -> Vec<WorkerRow> {
        self.fleet.rows()
    }

    pub fn take_notes(&mut self) -> Vec<String> {
        self.fleet.take_notes()
    }

    pub async fn stop(self) -> super::Stopped {
        self.fleet.stop().await
    }
}

/// A fleet of client workers splitting the target, the rate and the source addresses.
pub struct ClientFleet {
    fleet: Fleet,
    cfg: crate::engine::client::ClientConfig,
    /// Most connections one worker holds.
    per_worker: u64,
    target: u64,
    rate: f64,
    paused: bool,
}

impl ClientFleet {
    pub async fn start(
        exe: PathBuf,
        cfg: &crate::engine::client::ClientConfig,
        workers: usize,
        per_worker: u64,
        deltas: UnboundedSender<ShardDelta>,
    ) -> Result<ClientFleet> {
        let mut fleet = ClientFleet {
            fleet: Fleet::new(exe, cfg.shards.max(1), deltas),
            cfg: cfg.clone(),
            per_worker: per_worker.max(1),
            target: cfg.conns,
            rate: cfg.rate,
            paused: false,
        };
        fleet.grow(workers.max(1))?;
        fleet.fleet.await_ready(0).await?;
        fleet.distribute();
        Ok(fleet)
    }

    pub fn workers(&self) -> usize {
        self.fleet.len()
    }

    /// Starts workers until there are `n`; each starts idle and gets its share from
    /// [`Self::distribute`].
    fn grow(&mut self, n: usize) -> Result<()> {
        let sources = self.cfg.sources.len();
        while self.fleet.len() < n {
            let index = self.fleet.len();
            // Rotate the source list so that workers holding few connections each still
            // spread them over every address.
            let offset = if sources == 0 {
                0
            } else {
                (index as u64 * self.per_worker % sources as u64) as usize
            };
            let mut rotated = self.cfg.sources.clone();
            rotated.rotate_left(offset);
            let start = Start::Client(crate::engine::client::ClientConfig {
                conns: 0,
                rate: 0.0,
                sources: rotated,
                max_inflight: (self.cfg.max_inflight / n).max(16),
                ..self.cfg.clone()
            });
            self.fleet.spawn(&start, offset, sources)?;
        }
        Ok(())
    }

    /// Gives every live worker its share of the target and the rate.
    fn distribute(&mut self) {
        let alive = self.fleet.alive();
        let n = alive.len().max(1) as u64;
        for (k, &i) in alive.iter().enumerate() {
            let share = crate::engine::client::share(self.target, n, k as u64);
            self.fleet.send(i, Down::Rate(self.rate / n as f64));
            self.fleet.send(i, Down::Paused(self.paused));
            self.fleet.send(i, Down::Target(share));
        }
    }

    /// Opens or closes connections until `conns` are held over all workers, starting more
    /// workers when the live ones cannot hold that many.
    pub fn set_target(&mut self, conns: u64) {
        self.target = conns;
        self.collect_ended();
        let alive = self.fleet.alive().len();
        let needed = conns.div_ceil(self.per_worker) as usize;
        if needed > alive {
            let more = needed - alive;
            if let Err(e) = self.grow(self.fleet.len() + more) {
                self.fleet
                    .lock()
                    .notes
                    .push(format!("cannot start more workers: {e:#}"));
            }
        }
        self.distribute();
    }

    pub fn set_rate(&mut self, rate: f64) {
        self.rate = rate;
        self.collect_ended();
        self.distribute();
    }

    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        for i in self.fleet.alive() {
            self.fleet.send(i, Down::Paused(paused));
        }
    }

    /// Marks workers whose output ended, so shares go to the live ones only.
    fn collect_ended(&mut self) {
        while let Ok(event) = self.fleet.events.try_recv() {
            if let Event::Ended(i) = event {
                self.fleet.ended[i] = true;
            }
        }
    }

    pub fn rows(&mut self) -> Vec<WorkerRow> {
        self.collect_ended();
        self.fleet.rows()
    }

    pub fn take_notes(&mut self) -> Vec<String> {
        self.fleet.take_notes()
    }

    pub async fn stop(self) -> super::Stopped {
        self.fleet.stop().await
    }
}
