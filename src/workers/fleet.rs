//! The parent's side of worker processes: it starts workers over a [`Link`], feeds each its
//! commands, and turns what they send into the same [`ShardDelta`] stream one process would
//! produce, so one `stats::aggregate::Aggregator` merges everything exactly. A worker's shards
//! get global numbers (worker × shards per worker + shard), and a client worker's source indices
//! are mapped back to the global list.
//!
//! A worker that dies is not an error of the run: its reader notices the end of its stream,
//! zeroes the worker's gauges, counts the connections it held as closed (`worker_died`), marks
//! its shards gone so no broadcast waits for them, and the rest go on.

use super::link::{self, Link};
use super::wire::{Down, Start, Up, line};
use crate::stats::{ErrorClass, ShardDelta, WorkerRow, WorkerState};
use anyhow::{Result, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

/// How long a worker may take to start before the run gives up on it.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long stopping may take before the stragglers are killed. Closing 20,000 connections takes
/// one worker well under a second alone, but a million held by 51 workers a side on two cores,
/// each connection closed as RFC 6455 asks (the server answers every close frame), took longer
/// than 30 s.
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// Exchanges at the start (the first estimate comes before the ramp), then one a second.
const CLOCK_BURST: usize = 5;
/// Shard numbers the coordinator keeps for each agent: an agent with worker processes of its
/// own numbers their shards within its range (51 workers × 2 shards is 102).
const AGENT_SHARD_SLOTS: usize = 1024;
/// An agent sends its usage every second and answers a clock exchange every second: this long
/// without a line from it, it is lost.
const AGENT_SILENCE: Duration = Duration::from_secs(10);
/// How long stopping agents may take, while they keep talking.
const AGENT_STOP_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the start waits for every agent's first clock estimate.
const CLOCK_WAIT: Duration = Duration::from_secs(5);

/// Asks an agent for its clock: a burst at the start, then once a second, until the link
/// closes.
async fn clock_exchanges(tx: UnboundedSender<Down>) {
    for k in 0.. {
        if tx
            .send(Down::Clock {
                t0_us: crate::engine::now_us(),
            })
            .is_err()
        {
            return;
        }
        let pause = if k < CLOCK_BURST { 100 } else { 1000 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// What the parent knows about one worker; written by its reader task, read for the table.
#[derive(Debug)]
struct Info {
    pid: u32,
    state: WorkerState,
    /// The latest `active` and `connecting` gauges of each of its shards.
    active: Vec<u64>,
    connecting: Vec<u64>,
    errors: u64,
    /// Deltas it sent: what the parent spends on it is per delta.
    deltas: u64,
    /// As the worker last reported it.
    rss_bytes: Option<u64>,
    cpu: Cpu,
    exit: Option<String>,
    panics: Vec<String>,
    local_addr: Option<SocketAddr>,
    /// A remote agent: where, and its clock.
    agent: Option<crate::stats::AgentRow>,
    /// An agent's last clock exchanges.
    clock: super::clock::Exchanges,
    /// The clock offset last sent down.
    sent_offset: Option<i64>,
}

/// A worker's CPU time as it reports it, and the share of a core it used between its last two
/// reports.
#[derive(Debug, Default)]
struct Cpu {
    total_s: Option<f64>,
    percent: Option<f64>,
    at: Option<std::time::Instant>,
}

impl Cpu {
    fn add(&mut self, total_s: f64, now: std::time::Instant) {
        // An agent that is stopping reports its own process only, its workers' time already
        // counted: the total never goes back.
        let last = self.total_s.unwrap_or(0.0);
        let total_s = total_s.max(last);
        if let (Some(_), Some(at)) = (self.total_s, self.at) {
            let wall = now.duration_since(at).as_secs_f64();
            if wall > 0.0 {
                self.percent = Some((total_s - last) / wall * 100.0);
            }
        }
        self.total_s = Some(total_s);
        self.at = Some(now);
    }
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
    /// The worker's output has ended: it said goodbye or died.
    Ended(usize),
}

struct Handle {
    tx: UnboundedSender<Down>,
    kill: Arc<dyn Fn() + Send + Sync>,
}

/// How a fleet maps its workers' numbers into the parent's.
#[derive(Clone, Copy)]
struct Mapping {
    index: usize,
    /// The parent's number of the fleet's first shard (shards of its own come first).
    first_shard: usize,
    shards_per_worker: usize,
    /// Client: the worker's rotation of the source list, and the list's length.
    source_offset: usize,
    sources: usize,
}

impl Mapping {
    /// The parent's number for the worker's shard `local`.
    fn shard(&self, local: usize) -> usize {
        self.first_shard
            + self.index * self.shards_per_worker
            + local.min(self.shards_per_worker - 1)
    }
}

/// Worker processes of one side.
pub struct Fleet {
    exe: PathBuf,
    first_shard: usize,
    shards_per_worker: usize,
    handles: Vec<Handle>,
    shared: Arc<Mutex<Shared>>,
    deltas: UnboundedSender<ShardDelta>,
    events_tx: UnboundedSender<Event>,
    events: UnboundedReceiver<Event>,
    ended: Vec<bool>,
    ready: Vec<bool>,
    /// Agents: the server's clock, which each agent is set to.
    server_clock: Option<super::clock::ServerClock>,
}

impl Fleet {
    pub fn new(
        exe: PathBuf,
        shards_per_worker: usize,
        deltas: UnboundedSender<ShardDelta>,
    ) -> Fleet {
        Fleet::after(exe, 0, shards_per_worker, deltas)
    }

    /// A fleet whose shards are numbered from `first_shard`: the parent has shards of its own.
    pub fn after(
        exe: PathBuf,
        first_shard: usize,
        shards_per_worker: usize,
        deltas: UnboundedSender<ShardDelta>,
    ) -> Fleet {
        let (events_tx, events) = mpsc::unbounded_channel();
        Fleet {
            exe,
            first_shard,
            shards_per_worker: shards_per_worker.max(1),
            handles: Vec::new(),
            shared: Arc::default(),
            deltas,
            events_tx,
            events,
            ended: Vec::new(),
            ready: Vec::new(),
            server_clock: None,
        }
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Workers not known to have ended.
    pub fn alive(&mut self) -> Vec<usize> {
        self.collect_ended();
        (0..self.handles.len())
            .filter(|&i| !self.ended[i])
            .collect()
    }

    /// The parent's shard numbers of worker `i`.
    pub fn shards_of(&self, i: usize) -> std::ops::Range<usize> {
        let first = self.first_shard + i * self.shards_per_worker;
        first..first + self.shards_per_worker
    }

    /// The worker a shard (parent's number) belongs to.
    pub fn worker_of(&self, shard: usize) -> Option<usize> {
        let i = shard.checked_sub(self.first_shard)? / self.shards_per_worker;
        (i < self.handles.len()).then_some(i)
    }

    /// Whether worker `i` has started and not ended.
    pub fn is_ready(&mut self, i: usize) -> bool {
        self.collect_ended();
        self.ready.get(i).copied().unwrap_or(false) && !self.ended[i]
    }

    /// Whether worker `i` ended without being asked to.
    pub fn died(&self, i: usize) -> bool {
        self.lock()
            .infos
            .get(i)
            .is_some_and(|w| w.state == WorkerState::Died)
    }

    /// Starts worker `self.len()` with `start`; it reports `Ready` through the events.
    pub(super) fn spawn(
        &mut self,
        start: &Start,
        source_offset: usize,
        sources: usize,
    ) -> Result<usize> {
        let link = link::local_child(&self.exe)?;
        Ok(self.spawn_on(link, None, start, source_offset, sources))
    }

    /// Runs `start` on `link` as worker `self.len()`: a local child, or a remote agent
    /// (`agent`: where it is and what it said of itself), whose clock is then measured.
    pub(super) fn spawn_on(
        &mut self,
        link: Link,
        agent: Option<crate::stats::AgentRow>,
        start: &Start,
        source_offset: usize,
        sources: usize,
    ) -> usize {
        let index = self.handles.len();
        let Link {
            mut down,
            up,
            notes,
            ended,
            kill,
        } = link;
        let (tx, mut rx) = mpsc::unbounded_channel::<Down>();
        let first = line(start);
        tokio::spawn(async move {
            if down.write_all(&first).await.is_err() {
                return;
            }
            while let Some(cmd) = rx.recv().await {
                if down.write_all(&line(&cmd)).await.is_err() {
                    break;
                }
            }
            // Dropping the writer closes the link: a worker that reads EOF stops.
        });
        self.lock().infos.push(Info {
            pid: 0,
            state: WorkerState::Starting,
            active: vec![0; self.shards_per_worker],
            connecting: vec![0; self.shards_per_worker],
            errors: 0,
            deltas: 0,
            rss_bytes: None,
            cpu: Cpu::default(),
            exit: None,
            panics: Vec::new(),
            local_addr: None,
            agent: agent.clone(),
            clock: super::clock::Exchanges::default(),
            sent_offset: None,
        });
        if agent.is_some() {
            tokio::spawn(clock_exchanges(tx.clone()));
        }
        let map = Mapping {
            index,
            first_shard: self.first_shard,
            shards_per_worker: self.shards_per_worker,
            source_offset,
            sources,
        };
        if let Some(notes) = notes {
            tokio::spawn(read_notes(index, notes, self.shared.clone()));
        }
        let kill: Arc<dyn Fn() + Send + Sync> = Arc::from(kill);
        let reader = Reader {
            map,
            shared: self.shared.clone(),
            deltas: self.deltas.clone(),
            events: self.events_tx.clone(),
            down: tx.clone(),
            // A local worker's end is seen (its pipe closes); an agent behind a cut network
            // just falls silent.
            silence: agent.is_some().then_some(AGENT_SILENCE),
            kill: kill.clone(),
            server_clock: self.server_clock.clone(),
        };
        tokio::spawn(reader.run(up, ended));
        self.handles.push(Handle { tx, kill });
        self.ended.push(false);
        self.ready.push(false);
        index
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
                Some(Event::Ready(i)) => {
                    self.ready[i] = true;
                    waiting.retain(|&w| w != i);
                }
                Some(Event::Ended(i)) => {
                    self.ended[i] = true;
                    let notes = self.take_notes().join("\n");
                    bail!("worker {i} could not start:\n{notes}");
                }
                None => bail!("lost the workers' events"),
            }
        }
        Ok(())
    }

    /// Waits (a few seconds at most) until every agent's clock has been measured, so no
    /// message is timed on an uncorrected clock; an agent that does not answer in time is
    /// told of, and its first latencies are on its own clock.
    async fn await_clocks(&mut self) {
        let deadline = tokio::time::Instant::now() + CLOCK_WAIT;
        loop {
            let waiting: Vec<usize> = {
                let shared = self.lock();
                let infos = shared.infos.iter().enumerate();
                infos
                    .filter(|(_, i)| {
                        i.agent
                            .as_ref()
                            .is_some_and(|a| a.clock_offset_us.is_none())
                    })
                    .map(|(k, _)| k)
                    .collect()
            };
            if waiting.is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                self.lock().notes.push(format!(
                    "agents {waiting:?} did not answer a clock exchange within {CLOCK_WAIT:?}: \
                     their latencies are on their own clocks until they do"
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(super) fn send(&self, worker: usize, cmd: Down) {
        let _ = self.handles[worker].tx.send(cmd);
    }

    /// Marks workers whose output ended, so commands and shares go to the live ones only.
    fn collect_ended(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Ended(i) => self.ended[i] = true,
                Event::Ready(i) => self.ready[i] = true,
            }
        }
    }

    /// Lines for the user since the last call: what workers printed, and deaths.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lock().notes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One row per worker, memory as each worker last reported it.
    pub fn rows(&mut self) -> Vec<WorkerRow> {
        self.collect_ended();
        self.lock()
            .infos
            .iter()
            .enumerate()
            .map(|(index, info)| WorkerRow {
                index,
                pid: info.pid,
                state: info.state,
                active: info.active.iter().sum(),
                errors: info.errors,
                deltas: info.deltas,
                rss_bytes: match info.state {
                    WorkerState::Starting | WorkerState::Running => info.rss_bytes,
                    WorkerState::Stopped | WorkerState::Died => None,
                },
                cpu_s: info.cpu.total_s,
                cpu_percent: match info.state {
                    WorkerState::Starting | WorkerState::Running => info.cpu.percent,
                    WorkerState::Stopped | WorkerState::Died => None,
                },
                exit: info.exit.clone(),
                agent: info.agent.clone(),
            })
            .collect()
    }

    /// Tells every live worker to stop, waits for each to send its last deltas and exit (or
    /// kills it after [`STOP_TIMEOUT`]).
    pub async fn stop(mut self) -> super::Stopped {
        for i in self.alive() {
            self.send(i, Down::Stop);
        }
        // Agents say something every second while they close (a quarter of a million
        // connections can take most of a minute), and one that falls silent is lost anyway.
        let limit = match self.server_clock {
            Some(_) => AGENT_STOP_TIMEOUT,
            None => STOP_TIMEOUT,
        };
        let deadline = tokio::time::Instant::now() + limit;
        if tokio::time::timeout_at(deadline, self.await_ended())
            .await
            .is_err()
        {
            for i in self.alive() {
                (self.handles[i].kill)();
            }
            // Their readers now see the end, count the loss and send Ended.
            self.await_ended().await;
        }
        let panics = self
            .lock()
            .infos
            .iter()
            .enumerate()
            .flat_map(|(i, info)| info.panics.iter().map(move |p| format!("worker {i}: {p}")))
            .collect();
        super::Stopped {
            panics,
            workers: self.rows(),
            notes: self.take_notes(),
            clock: self
                .server_clock
                .as_ref()
                .map(super::clock::ServerClock::estimate),
        }
    }

    async fn await_ended(&mut self) {
        while self.ended.iter().any(|e| !e) {
            match self.events.recv().await {
                Some(Event::Ended(i)) => self.ended[i] = true,
                Some(Event::Ready(i)) => self.ready[i] = true,
                None => break,
            }
        }
    }
}

async fn read_notes(
    index: usize,
    notes: Box<dyn tokio::io::AsyncBufRead + Send + Unpin>,
    shared: Arc<Mutex<Shared>>,
) {
    let mut lines = notes.lines();
    while let Ok(Some(text)) = lines.next_line().await {
        let text = text.strip_prefix("c1m: ").unwrap_or(&text).to_string();
        let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.notes.push(format!("worker {index}: {text}"));
    }
}

/// Reads one worker's stream until it ends, then accounts for how it ended.
struct Reader {
    map: Mapping,
    shared: Arc<Mutex<Shared>>,
    deltas: UnboundedSender<ShardDelta>,
    events: UnboundedSender<Event>,
    /// Commands to the same worker: the clock offset goes back down.
    down: UnboundedSender<Down>,
    /// How long it may say nothing before it counts as lost (agents only).
    silence: Option<Duration>,
    kill: Arc<dyn Fn() + Send + Sync>,
    server_clock: Option<super::clock::ServerClock>,
}

impl Reader {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(self, up: Box<dyn tokio::io::AsyncBufRead + Send + Unpin>, ended: link::Ended) {
        let index = self.map.index;
        let mut lines = up.lines();
        let mut said_bye = false;
        let mut silent = false;
        loop {
            let next = match self.silence {
                Some(limit) => match tokio::time::timeout(limit, lines.next_line()).await {
                    Ok(next) => next,
                    Err(_) => {
                        silent = true;
                        (self.kill)();
                        break;
                    }
                },
                None => lines.next_line().await,
            };
            let Ok(Some(text)) = next else { break };
            match serde_json::from_str::<Up>(&text) {
                Ok(Up::Bye { panics }) => {
                    said_bye = true;
                    self.lock().infos[index].panics = panics;
                }
                Ok(msg) => self.on(msg),
                Err(e) => self
                    .lock()
                    .notes
                    .push(format!("worker {index} sent a line c1m cannot read: {e}")),
            }
        }
        let how = match silent {
            true => format!(
                "lost: no word from it in {} s (its machine gone, or the network cut)",
                AGENT_SILENCE.as_secs()
            ),
            false => ended.await,
        };
        if said_bye {
            self.lock().infos[index].state = WorkerState::Stopped;
        } else {
            self.died(how);
        }
        let _ = self.events.send(Event::Ended(index));
    }

    fn on(&self, msg: Up) {
        let index = self.map.index;
        match msg {
            Up::Ready {
                local_addr, pid, ..
            } => {
                {
                    let mut shared = self.lock();
                    let info = &mut shared.infos[index];
                    info.state = WorkerState::Running;
                    info.local_addr = local_addr;
                    info.pid = pid;
                }
                let _ = self.events.send(Event::Ready(index));
                // An empty delta wakes the parent's run loop, so a growing server can steer to
                // this worker now rather than at its first flush.
                let _ = self.deltas.send(ShardDelta::empty(self.map.shard(0)));
            }
            Up::Delta(d) => self.delta(*d),
            Up::Usage { rss_bytes, cpu_s } => {
                let mut shared = self.lock();
                let info = &mut shared.infos[index];
                info.rss_bytes = rss_bytes;
                if let Some(s) = cpu_s {
                    info.cpu.add(s, std::time::Instant::now());
                }
            }
            Up::Clock {
                t0_us,
                t1_us,
                t2_us,
            } => self.clock(t0_us, t1_us, t2_us),
            Up::Bye { .. } => {}
        }
    }

    fn delta(&self, mut d: ShardDelta) {
        let local = d.shard;
        {
            let mut shared = self.lock();
            let info = &mut shared.infos[self.map.index];
            if local < info.active.len() {
                info.active[local] = d.active;
                info.connecting[local] = d.connecting;
            }
            info.errors += d.counters.errors_total();
            info.deltas += 1;
        }
        d.shard = self.map.shard(local);
        if self.map.sources > 0 {
            for s in &mut d.per_source {
                s.source = (s.source + self.map.source_offset) % self.map.sources;
            }
        }
        let _ = self.deltas.send(d);
    }

    /// One clock exchange answered now (NTP's t3): the agent's estimate (see
    /// [`super::clock::Exchanges`]), and its offset to the server's clock sent down when it
    /// moves.
    fn clock(&self, t0: i64, t1: i64, t2: i64) {
        let t3 = crate::engine::now_us();
        let mut shared = self.lock();
        let info = &mut shared.infos[self.map.index];
        let (offset, uncertainty) = info.clock.add(t0, t1, t2, t3);
        let Some(agent) = info.agent.as_mut() else {
            return;
        };
        agent.clock_offset_us = Some(offset);
        agent.clock_uncertainty_us = Some(uncertainty);
        // The agent is set to the server's clock: its own offset less the server's.
        let to_server = offset - self.server_clock.as_ref().map_or(0, |c| c.offset());
        if info.sent_offset != Some(to_server) {
            let _ = self.down.send(Down::ClockOffset { us: to_server });
            info.sent_offset = Some(to_server);
        }
    }

    /// Died unasked: its connections are gone. Count them once, as closed, under their own
    /// class, zero its gauges so the totals stay true, and mark its shards gone.
    fn died(&self, how: String) {
        let mut shared = self.lock();
        let Shared { infos, notes } = &mut *shared;
        let info = &mut infos[self.map.index];
        let lost: u64 = info.active.iter().sum();
        let class = match info.agent {
            Some(_) => ErrorClass::AgentLost,
            None => ErrorClass::WorkerDied,
        };
        for (local, &active) in info.active.iter().enumerate() {
            let mut d = ShardDelta::empty(self.map.shard(local));
            d.counters.closed = active;
            d.counters.errors[class.index()] = active;
            d.peers = Some(Vec::new());
            d.gone = true;
            let _ = self.deltas.send(d);
        }
        info.errors += lost;
        info.active.iter_mut().for_each(|a| *a = 0);
        info.connecting.iter_mut().for_each(|a| *a = 0);
        info.state = WorkerState::Died;
        notes.push(match &info.agent {
            Some(a) => format!(
                "agent {} ({}, {}) {how}: its {lost} connections are counted as closed \
                 (agent_lost); the other agents go on",
                self.map.index, a.addr, a.host
            ),
            None => format!(
                "worker {} (pid {}) {how}: its {lost} connections are counted as closed \
                 (worker_died); the other workers go on",
                self.map.index, info.pid
            ),
        });
        info.exit = Some(how);
    }
}

/// A fleet of server workers sharing one port; broadcasts go to all of them under one
/// sequence number.
pub struct ServerFleet {
    fleet: Fleet,
    local_addr: SocketAddr,
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
            .ok_or_else(|| anyhow::anyhow!("the reserved port has no IP address"))?;
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
        Ok(ServerFleet { fleet, local_addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn workers(&self) -> usize {
        self.fleet.len()
    }

    /// Sends the same payload to every live worker; each writes it to its connections.
    /// Returns the shards (parent's numbers) it went to.
    pub fn broadcast(&mut self, seq: u64, payload: &[u8], stamp_us: i64) -> Vec<usize> {
        let mut shards = Vec::new();
        for i in self.fleet.alive() {
            self.fleet.send(
                i,
                Down::Broadcast {
                    seq,
                    payload: payload.to_vec(),
                    stamp_us,
                },
            );
            shards.extend(self.fleet.shards_of(i));
        }
        shards
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
        let fleet = Fleet::new(exe, cfg.shards.max(1), deltas);
        let mut fleet = ClientFleet::new(fleet, cfg, per_worker);
        fleet.grow(workers.max(1))?;
        fleet.fleet.await_ready(0).await?;
        fleet.distribute();
        Ok(fleet)
    }

    pub fn workers(&self) -> usize {
        self.fleet.len()
    }

    fn new(fleet: Fleet, cfg: &crate::engine::client::ClientConfig, per_worker: u64) -> Self {
        ClientFleet {
            fleet,
            cfg: cfg.clone(),
            per_worker: per_worker.max(1),
            target: cfg.conns,
            rate: cfg.rate,
            paused: false,
        }
    }

    /// The members are remote agents (they measure the server's clock): the fleet never
    /// starts local workers to hold more.
    fn on_agents(&self) -> bool {
        self.fleet.server_clock.is_some()
    }

    /// The client on remote agents: each is reached and greeted (all of them, or the run does
    /// not start), runs an idle client with its slice of the sources and of `{i}`, and gets its
    /// share of the target only once every agent is ready, so none ramps ahead of the others.
    pub async fn start_agents(
        cfg: &crate::engine::client::ClientConfig,
        agents: Vec<super::agent::Connected>,
        server_clock: super::clock::Source,
        deltas: UnboundedSender<ShardDelta>,
    ) -> Result<ClientFleet> {
        let n = agents.len().max(1);
        // An agent numbers its shards itself (its worker processes' too): each gets a range
        // wide enough for any of them.
        let mut fleet = Fleet::new(PathBuf::new(), AGENT_SHARD_SLOTS, deltas);
        fleet.server_clock = Some(super::clock::ServerClock::start(server_clock));
        let mut fleet = ClientFleet::new(fleet, cfg, cfg.conns.div_ceil(n as u64));
        for super::agent::Connected {
            addr,
            host,
            link,
            tls,
            ..
        } in agents
        {
            let row = crate::stats::AgentRow {
                addr: addr.to_string(),
                host,
                link: if tls { "tls" } else { "tcp" },
                clock_offset_us: None,
                clock_uncertainty_us: None,
            };
            let index = fleet.fleet.len();
            let (start, offset) = match fleet.start_line(index, n) {
                (Start::Client(cfg), offset) => (
                    Start::Agent {
                        cfg,
                        share: fleet.per_worker,
                    },
                    offset,
                ),
                other => other,
            };
            let sources = fleet.cfg.sources.len();
            fleet
                .fleet
                .spawn_on(link, Some(row), &start, offset, sources);
        }
        fleet.fleet.await_ready(0).await?;
        fleet.fleet.await_clocks().await;
        fleet.distribute();
        Ok(fleet)
    }

    /// Starts workers until there are `n`; each starts idle and gets its share from
    /// [`Self::distribute`].
    fn grow(&mut self, n: usize) -> Result<()> {
        let sources = self.cfg.sources.len();
        while self.fleet.len() < n {
            let index = self.fleet.len();
            let (start, offset) = self.start_line(index, n);
            self.fleet.spawn(&start, offset, sources)?;
        }
        Ok(())
    }

    /// What worker `index` of `n` runs: an idle client with the source list rotated (so that
    /// workers holding few connections each still spread them over every address) and its own
    /// base for `{i}`, which so stays unique over all of them; and the rotation.
    fn start_line(&self, index: usize, n: usize) -> (Start, usize) {
        let sources = self.cfg.sources.len();
        let offset = if sources == 0 {
            0
        } else {
            (index as u64 * self.per_worker % sources as u64) as usize
        };
        let mut rotated = self.cfg.sources.clone();
        rotated.rotate_left(offset);
        let start = Start::Client(Box::new(crate::engine::client::ClientConfig {
            conns: 0,
            rate: 0.0,
            sources: rotated,
            max_inflight: (self.cfg.max_inflight / n).max(16),
            talk: crate::engine::talk::TalkSpec {
                index_base: index as u64 * self.per_worker,
                worker: index as u32,
                ..self.cfg.talk.clone()
            },
            ..self.cfg.clone()
        }));
        (start, offset)
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
        let alive = self.fleet.alive().len();
        let needed = conns.div_ceil(self.per_worker) as usize;
        if needed > alive && !self.on_agents() {
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
        self.distribute();
    }

    /// Passes an agent's clock offset on to its worker processes.
    pub fn set_clock_offset(&mut self, us: i64) {
        for i in self.fleet.alive() {
            self.fleet.send(i, Down::ClockOffset { us });
        }
    }

    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        for i in self.fleet.alive() {
            self.fleet.send(i, Down::Paused(paused));
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
