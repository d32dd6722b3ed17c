//! The run: what both faces stand on. A [`Run`] starts the sides a command asks for (a server,
//! a client, or both in one process), drives the timers, the broadcasts and the control
//! endpoint, keeps one aggregator per side with its history, and writes the reports at the end.
//! `headless.rs` prints it as status lines; `tui.rs` draws it. Neither starts an engine, stamps
//! a broadcast or writes a report itself.
//!
//! ```text
//! face ── Run::start(spec) ── preflight ── sides (engine + deltas + aggregator + echo)
//!   │        next().await → Second | Done | Deadline        broadcast(), set_target(), …
//!   └──────  finish(ended_by) → Finished { report, notes, code }
//! ```

pub mod about;
pub mod broadcaster;
pub mod config;
pub mod notes;
pub mod outputs;
pub mod preflight;
pub mod side;
mod start;

use crate::cli::{ClientOpts, Compression, Output, ServerOpts, TuiMode};
use crate::control::{self, Published, Refusals};
use crate::doctor::checks::{self, Check};
use crate::stats::{ServerBroadcast, Snapshot};
use crate::sys::limits;
use crate::workers::{ClientSide, Layout, ServerSide};
use broadcaster::Broadcaster;
use notes::Note;
use outputs::{Finished, Outputs};
use preflight::Prepared;
use side::Side;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// After this many messages with none timed, the user is told at once, not only at the end.
const UNREADABLE_WARNING: u64 = 100;

/// What a command asks of a run.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Which sides run in this process.
    pub mode: TuiMode,
    /// Connections per side the run is sized for (0 when unknown: a server alone).
    pub target: u64,
    /// The server's options, when `mode` runs a server.
    pub server: Option<ServerOpts>,
    /// The client's options, when `mode` runs a client.
    pub client: Option<ClientOpts>,
    /// `--compression`, for every side the run has.
    pub compression: Compression,
    /// `--max-message`, for every side the run has.
    pub max_message: Option<u64>,
    /// `--echo`: the server's, or a client's when it runs without a server in this process.
    pub echo: bool,
    /// `--io-uring`: the server's broadcasts go out, and the client's messages come in, through
    /// io_uring.
    pub io_uring: bool,
    pub out: Output,
    pub duration: Option<Duration>,
    /// Start despite the limits check (and, for a client, its descriptor limit).
    pub force: bool,
}

/// What the run tells its face; see [`Run::next`].
#[derive(Debug)]
pub enum Event {
    /// A second passed: history, HDR logs, notes and the control endpoint are up to date.
    Second,
    /// A broadcast every shard it was sent to has finished.
    Done(ServerBroadcast),
    /// `--duration` is over.
    Deadline,
    /// A client without --reconnect has no connection open and none pending: told once, as
    /// soon as the delta that closed the last one arrives.
    NoneLeft,
}

/// The server side and what only it has.
pub struct ServerHalf {
    pub side: Side<ServerSide>,
    broadcaster: Broadcaster,
    every: Option<Duration>,
    next_timed: Option<tokio::time::Instant>,
    /// `--max-conns`, and whether the first refusal was told.
    max_conns: Option<u64>,
    refusal_told: bool,
    /// `--tls-self-signed`: the directory of its certificate, removed when the run ends.
    _self_signed: Option<SelfSigned>,
}

/// A directory the run made and removes when it is dropped.
pub(crate) struct SelfSigned(pub std::path::PathBuf);

impl Drop for SelfSigned {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The control endpoint as the run serves it.
struct ControlLink {
    published: watch::Sender<Option<Arc<Published>>>,
    commands: mpsc::Receiver<control::Command>,
    refusals: Arc<Refusals>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

pub struct Run {
    pub mode: TuiMode,
    pub prepared: Prepared,
    server: Option<ServerHalf>,
    client: Option<Side<ClientSide>>,
    control: Option<ControlLink>,
    outputs: Outputs,
    second: tokio::time::Interval,
    deadline: Option<tokio::time::Instant>,
    finished: VecDeque<ServerBroadcast>,
    notes: Vec<Note>,
    /// The reconnect setting, for [`Event::NoneLeft`], and whether that was told.
    reconnect: bool,
    none_left_told: bool,
    /// This process's RSS before any connection, for the measured memory per connection.
    rss_at_start: u64,
    /// Deltas applied so far: a face redraws when this moves.
    changes: u64,
    /// Whether the early warning about unreadable messages is settled: given, or never
    /// needed because something was timed.
    unreadable_told: bool,
}

/// What woke the run's loop.
enum Wake {
    Server(crate::stats::ShardDelta),
    Client(crate::stats::ShardDelta),
    Second,
    Control(control::Command),
    Timer,
    Deadline,
}

impl Run {
    /// Runs the preflight, binds the control endpoint and starts the sides; nothing is started
    /// when a check refuses.
    pub async fn start(spec: Spec) -> anyhow::Result<Run> {
        start::start(spec).await
    }

    /// The next thing a face should react to. Deltas, timed broadcasts and the control
    /// endpoint are handled inside. Cancel-safe: it can sit in a face's `select!`.
    pub async fn next(&mut self) -> Event {
        loop {
            if let Some(done) = self.finished.pop_front() {
                return Event::Done(done);
            }
            match self.wake().await {
                Wake::Server(d) => self.on_server_delta(d),
                Wake::Client(d) => {
                    self.changes += 1;
                    if let Some(c) = self.client.as_mut() {
                        c.apply(d);
                        if !self.reconnect && !self.none_left_told && c.agg.all_ended() {
                            self.none_left_told = true;
                            return Event::NoneLeft;
                        }
                    }
                }
                Wake::Second => {
                    self.on_second();
                    return Event::Second;
                }
                Wake::Control(control::Command::Broadcast(reply)) => {
                    if let Some(seq) = self.broadcast() {
                        let _ = reply.send(seq);
                    }
                }
                Wake::Timer => {
                    self.broadcast();
                }
                Wake::Deadline => return Event::Deadline,
            }
        }
    }

    async fn wake(&mut self) -> Wake {
        let Run {
            server,
            client,
            control,
            second,
            deadline,
            ..
        } = self;
        let timed = server.as_ref().and_then(|s| s.next_timed);
        tokio::select! {
            Some(d) = recv(server.as_mut().map(|s| &mut s.side)) => Wake::Server(d),
            Some(d) = recv(client.as_mut()) => Wake::Client(d),
            _ = second.tick() => Wake::Second,
            Some(c) = command(control.as_mut()) => Wake::Control(c),
            _ = sleep(timed) => Wake::Timer,
            _ = sleep(*deadline) => Wake::Deadline,
        }
    }

    fn on_server_delta(&mut self, d: crate::stats::ShardDelta) {
        self.changes += 1;
        if let Some(s) = self.server.as_mut() {
            s.side.engine.on_delta(&d);
            s.side.apply(d);
            self.finished.extend(s.side.agg.take_finished());
        }
    }

    /// Once a second: a point of history and an HDR interval per side, the notes, and what
    /// the control endpoint serves.
    fn on_second(&mut self) {
        let now = Instant::now();
        self.note_memory();
        if let Some(c) = self.client.as_mut() {
            self.notes.extend(c.second(now));
            self.notes.extend(c.notes());
            // Read off two counters; a snapshot is built only for the warning itself.
            if !self.unreadable_told && !c.agg.latency().is_empty() {
                self.unreadable_told = true;
            } else if !self.unreadable_told && c.agg.received() >= UNREADABLE_WARNING {
                self.unreadable_told = true;
                let why = outputs::nothing_timed(&c.agg.snapshot(now)).unwrap_or_default();
                self.notes
                    .push(Note::new(format!("so far {why}")).on(c.label));
            }
        }
        if let Some(s) = self.server.as_mut() {
            s.side.engine.maintain();
            self.notes.extend(s.side.second(now));
            self.notes.extend(s.side.notes());
        }
        self.serve_control(now);
    }

    /// Each side's memory for its report: its resident set (this process and its workers),
    /// and what the processes grew by since the start over the connections open. When both
    /// sides run here, the process is theirs together, and so is the figure.
    fn note_memory(&mut self) {
        let own = crate::sys::own_rss();
        let grown_here = own.unwrap_or(0).saturating_sub(self.rss_at_start);
        let rss_of = |rows: Vec<crate::stats::WorkerRow>| -> Vec<u64> {
            rows.iter().filter_map(|w| w.rss_bytes).collect()
        };
        let mut sides: Vec<(&mut crate::stats::aggregate::Aggregator, Vec<u64>)> = Vec::new();
        if let Some(c) = self.client.as_mut() {
            sides.push((&mut c.agg, rss_of(c.engine.rows())));
        }
        if let Some(s) = self.server.as_mut() {
            sides.push((&mut s.side.agg, rss_of(s.side.engine.rows())));
        }
        let shared = sides.len() == 2;
        let all_workers: u64 = sides.iter().flat_map(|(_, w)| w).sum();
        let all_open: u64 = sides.iter().map(|(a, _)| a.active()).sum();
        for (agg, mut workers) in sides {
            let sum: u64 = workers.iter().sum();
            let (grown, open) = match shared {
                true => (grown_here + all_workers, all_open),
                false => (grown_here + sum, agg.active()),
            };
            agg.note_memory(crate::stats::aggregate::MemoryReading {
                rss_bytes: own.map(|o| o + sum),
                base_rss_bytes: self.rss_at_start,
                grown_bytes: grown,
                open,
                shared,
                workers: crate::stats::history::Spread::of(&mut workers),
            });
        }
    }

    fn serve_control(&mut self, now: Instant) {
        let Some(s) = self.server.as_mut() else {
            return;
        };
        let snapshot = s.side.snapshot(now);
        if let Some(n) = s.first_refusal(&snapshot, self.prepared.layout) {
            self.notes.push(n);
        }
        let Some(c) = self.control.as_ref() else {
            return;
        };
        if let Some(line) = c.refusals.first_news() {
            self.notes.push(Note::new(line).on(s.side.label));
        }
        let report = self.outputs.json(&snapshot, &s.side.echo, "running");
        c.published
            .send_replace(Some(Arc::new(Published { snapshot, report })));
    }

    /// Broadcasts now when a server side runs here; returns its sequence number.
    pub fn broadcast(&mut self) -> Option<u64> {
        let s = self.server.as_mut()?;
        let stamped = s.broadcaster.stamp();
        let seq = stamped.seq;
        let shards = s.side.engine.broadcast(seq, stamped.payload, stamped.ts_us);
        s.side.agg.expect_broadcast(seq, shards);
        if let Some(every) = s.every {
            s.next_timed = Some(tokio::time::Instant::now() + every);
        }
        Some(seq)
    }

    /// How many deltas the run has taken in: it moves whenever a figure may have changed.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Notes since the last call, oldest first.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// When the next timed broadcast is due, if any.
    pub fn next_broadcast(&self) -> Option<Instant> {
        let s = self.server.as_ref()?;
        s.next_timed.map(tokio::time::Instant::into_std)
    }

    pub fn server_addr(&self) -> Option<SocketAddr> {
        Some(self.server.as_ref()?.side.engine.local_addr())
    }

    pub fn control_addr(&self) -> Option<SocketAddr> {
        Some(self.control.as_ref()?.addr)
    }

    pub fn runs_server(&self) -> bool {
        self.server.is_some()
    }

    pub fn server_echo(&self) -> Option<&config::ServerEcho> {
        match &self.server.as_ref()?.side.echo {
            config::Echo::Server(e) => Some(e),
            config::Echo::Client(_) => None,
        }
    }

    pub fn client_echo(&self) -> Option<&config::ClientEcho> {
        match &self.client.as_ref()?.echo {
            config::Echo::Client(e) => Some(e),
            config::Echo::Server(_) => None,
        }
    }

    pub fn server_snapshot(&mut self, now: Instant) -> Option<Snapshot> {
        Some(self.server.as_mut()?.side.snapshot(now))
    }

    pub fn client_snapshot(&mut self, now: Instant) -> Option<Snapshot> {
        Some(self.client.as_mut()?.snapshot(now))
    }

    /// Client: hold this many connections. `Err(held)` when the server's workers, started for
    /// a smaller target, cannot take them all: the target is then what they hold.
    pub fn set_target(&mut self, conns: u64) -> Result<u64, u64> {
        let (conns, fits) = match self.prepared.server_capacity {
            Some(cap) if conns > cap => (cap, false),
            _ => (conns, true),
        };
        if let Some(c) = self.client.as_mut() {
            c.engine.set_target(conns);
            c.agg.set_target(conns);
        }
        if fits { Ok(conns) } else { Err(conns) }
    }

    pub fn set_rate(&mut self, rate: f64) {
        if let Some(c) = self.client.as_mut() {
            c.engine.set_rate(rate);
        }
    }

    pub fn set_paused(&mut self, paused: bool) {
        if let Some(c) = self.client.as_mut() {
            c.engine.set_paused(paused);
        }
    }

    /// The limits table now, its memory row projected from what this run really uses per
    /// connection once a thousand are open (worker processes' resident sets included).
    pub fn limits(&mut self) -> Vec<Check> {
        let readings = limits::read();
        let mut open = 0;
        let mut rows = Vec::new();
        if let Some(s) = self.server.as_mut() {
            open += s.side.agg.active();
            rows.extend(s.side.engine.rows());
        }
        if let Some(c) = self.client.as_mut() {
            open += c.agg.active();
            rows.extend(c.engine.rows());
        }
        let worker_rss: u64 = rows.iter().filter_map(|w| w.rss_bytes).sum();
        let grown = readings.rss.unwrap_or(0).saturating_sub(self.rss_at_start) + worker_rss;
        let mut plan = self.prepared.plan.clone();
        if open >= 1000 * (1 + rows.len() as u64) {
            plan.user_bytes_per_conn = grown as f64 / open as f64;
        }
        checks::check(&readings, &plan)
    }

    /// Stops the client, then the server (so the client's report counts what the server sent
    /// before closing), and writes every report.
    pub async fn finish(self, ended_by: &str) -> anyhow::Result<Finished> {
        if let Some(c) = self.control {
            c.task.abort();
        }
        let mut sides = Vec::new();
        if let Some(c) = self.client {
            sides.push(c.stop().await);
        }
        if let Some(s) = self.server {
            sides.push(s.side.stop().await);
        }
        let mut done = self.outputs.finish(sides, ended_by)?;
        let mut early: Vec<String> = self.notes.iter().map(ToString::to_string).collect();
        early.append(&mut done.notes);
        done.notes = early;
        Ok(done)
    }
}

impl ServerHalf {
    /// The first time the server turned a connection away at `--max-conns`: what happened and
    /// what to do about it, once.
    fn first_refusal(&mut self, snap: &Snapshot, layout: Layout) -> Option<Note> {
        if self.refusal_told || snap.connections.refused == 0 {
            return None;
        }
        self.refusal_told = true;
        let max = self.max_conns.unwrap_or(0);
        let share = match layout {
            Layout::Workers(n) => {
                format!(" ({} per worker process)", max.div_ceil(n.max(1) as u64))
            }
            Layout::InProcess | Layout::Grows | Layout::Agents(_) => String::new(),
        };
        let text = format!(
            "turned a connection away with 503 at --max-conns {max}{share}; refusals are \
             counted as connections.refused (a c1m client counts handshake_rejected); raise \
             --max-conns to take more"
        );
        Some(Note::new(text).on(self.side.label))
    }
}

async fn recv<E: side::Engine>(side: Option<&mut Side<E>>) -> Option<crate::stats::ShardDelta> {
    match side {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn command(control: Option<&mut ControlLink>) -> Option<control::Command> {
    match control {
        Some(c) => c.commands.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
