//! Past one process's file-descriptor limit: several worker processes of this same binary, one
//! merged view. A hard RLIMIT_NOFILE of 20,000 (a container's, say) caps a process near 19,900
//! sockets, so a million connections on one machine take about fifty processes per side. The
//! parent keeps the console, the timers and the reports; workers hold connections and stream
//! their deltas up (see [`wire`]); the parent's aggregator merges them as it merges shards.
//!
//! [`ServerSide`] and [`ClientSide`] give headless runs and the console one interface whether
//! the engine runs in this process or in workers.

pub mod agent;
pub mod child;
pub mod clock;
pub mod fleet;
pub mod grow;
pub mod link;
pub mod wire;

use crate::engine::client::{Client, ClientConfig};
use crate::engine::server::{Server, ServerConfig};
use crate::stats::{ShardDelta, WorkerRow};
use anyhow::{Context, Result};
use fleet::{ClientFleet, ServerFleet};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::sync::mpsc::UnboundedSender;

/// What is left when a side has stopped.
#[derive(Debug, Default)]
pub struct Stopped {
    /// Panic messages of shard threads that crashed (normally none).
    pub panics: Vec<String>,
    /// The final per-worker table (empty in one process).
    pub workers: Vec<WorkerRow>,
    /// What workers said while stopping.
    pub notes: Vec<String>,
    /// Agents: how the server's clock was known.
    pub clock: Option<clock::Estimate>,
}

/// How a side runs: in this process, in this many worker processes, or (a server alone) in
/// this process until it nears its descriptor limit, then adding workers ([`grow`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    InProcess,
    Workers(usize),
    Grows,
    /// A client on this many remote agents (`--agents`); this process holds no connection.
    Agents(usize),
}

impl Layout {
    /// `--workers` if given (0 = in this process), else one process when `sockets` fit under
    /// `cap`, else enough workers for `conns` at `cap` each.
    pub fn choose(explicit: Option<usize>, conns: u64, sockets: u64, cap: u64) -> Layout {
        match explicit {
            Some(0) => Layout::InProcess,
            Some(n) => Layout::Workers(n),
            None if sockets <= cap => Layout::InProcess,
            None => Layout::Workers(conns.div_ceil(cap.max(1)) as usize),
        }
    }

    /// Worker processes started up front (a growing server starts none).
    pub fn workers(self) -> usize {
        match self {
            Layout::InProcess | Layout::Grows | Layout::Agents(_) => 0,
            Layout::Workers(n) => n,
        }
    }
}

/// Shard threads per worker: the cores shared out, at least one.
pub fn shards_per_worker(workers: usize) -> usize {
    (crate::engine::default_shards() / workers.max(1)).max(1)
}

/// The binary workers run: this one, unless `C1M_WORKER_EXE` names another (tests run the
/// engine in-process from a test binary, which is not c1m).
pub fn worker_exe() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("C1M_WORKER_EXE") {
        return Ok(PathBuf::from(p));
    }
    std::env::current_exe().context("cannot find this program's path to start workers")
}

pub enum ServerSide {
    Local(Server),
    Workers(Box<ServerFleet>),
    Grows(Box<grow::Growing>),
}

impl ServerSide {
    /// `cap`: the most one process holds, for a server that grows.
    pub async fn start(
        cfg: &ServerConfig,
        layout: Layout,
        cap: u64,
        deltas: UnboundedSender<ShardDelta>,
    ) -> Result<ServerSide> {
        Ok(match layout {
            // A server never runs on agents: a run with --agents has no server side.
            Layout::InProcess | Layout::Agents(_) => ServerSide::Local(Server::start(cfg, deltas)?),
            Layout::Workers(n) => ServerSide::Workers(Box::new(
                ServerFleet::start(worker_exe()?, cfg, n, deltas).await?,
            )),
            Layout::Grows => ServerSide::Grows(Box::new(grow::Growing::start(
                worker_exe()?,
                cfg,
                cap,
                deltas,
            )?)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        match self {
            ServerSide::Local(s) => s.local_addr(),
            ServerSide::Workers(f) => f.local_addr(),
            ServerSide::Grows(g) => g.local_addr(),
        }
    }

    /// A delta on its way to the aggregator: a growing server reacts at once to a process
    /// that says it is full.
    pub fn on_delta(&mut self, d: &ShardDelta) {
        if let ServerSide::Grows(g) = self {
            g.on_delta(d);
        }
    }

    /// Once a second: a growing server keeps a worker ready and its steering right.
    pub fn maintain(&mut self) {
        if let ServerSide::Grows(g) = self {
            g.maintain();
        }
    }

    /// Writes `payload` to every connection under `seq`; returns the shards it went to (the
    /// aggregator's numbers), each of which reports its part through the deltas.
    pub fn broadcast(&mut self, seq: u64, payload: &[u8], stamp_us: i64) -> Vec<usize> {
        match self {
            ServerSide::Local(s) => s.broadcast(seq, payload, stamp_us).collect(),
            ServerSide::Workers(f) => f.broadcast(seq, payload, stamp_us),
            ServerSide::Grows(g) => g.broadcast(seq, payload, stamp_us),
        }
    }

    /// The per-worker table (empty in one process).
    pub fn rows(&mut self) -> Vec<WorkerRow> {
        match self {
            ServerSide::Local(_) => Vec::new(),
            ServerSide::Workers(f) => f.rows(),
            ServerSide::Grows(g) => g.rows(),
        }
    }

    /// What workers printed, and their deaths, since the last call.
    pub fn take_notes(&mut self) -> Vec<String> {
        match self {
            ServerSide::Local(_) => Vec::new(),
            ServerSide::Workers(f) => f.take_notes(),
            ServerSide::Grows(g) => g.take_notes(),
        }
    }

    /// Closes every connection and joins the shards (or workers).
    pub async fn stop(self) -> Stopped {
        match self {
            ServerSide::Local(s) => in_process(move || s.stop()).await,
            ServerSide::Workers(f) => f.stop().await,
            ServerSide::Grows(g) => g.stop().await,
        }
    }
}

pub enum ClientSide {
    Local(Client),
    Workers(Box<ClientFleet>),
}

impl ClientSide {
    /// `agents`: the agents reached, for [`Layout::Agents`].
    pub async fn start(
        cfg: &ClientConfig,
        layout: Layout,
        per_worker: u64,
        agents: (Vec<agent::Connected>, clock::Source),
        deltas: UnboundedSender<ShardDelta>,
    ) -> Result<ClientSide> {
        Ok(match layout {
            Layout::Agents(_) => ClientSide::Workers(Box::new(
                ClientFleet::start_agents(cfg, agents.0, agents.1, deltas).await?,
            )),
            Layout::InProcess | Layout::Grows => ClientSide::Local(Client::start(cfg, deltas)?),
            Layout::Workers(n) => ClientSide::Workers(Box::new(
                ClientFleet::start(worker_exe()?, cfg, n, per_worker, deltas).await?,
            )),
        })
    }

    pub fn set_target(&mut self, conns: u64) {
        match self {
            ClientSide::Local(c) => c.set_target(conns),
            ClientSide::Workers(f) => f.set_target(conns),
        }
    }

    pub fn set_rate(&mut self, rate: f64) {
        match self {
            ClientSide::Local(c) => c.set_rate(rate),
            ClientSide::Workers(f) => f.set_rate(rate),
        }
    }

    pub fn set_paused(&mut self, paused: bool) {
        match self {
            ClientSide::Local(c) => c.set_paused(paused),
            ClientSide::Workers(f) => f.set_paused(paused),
        }
    }

    /// This machine's clock runs `us` ahead of the coordinator's (an agent's).
    pub fn set_clock_offset(&mut self, us: i64) {
        match self {
            ClientSide::Local(c) => c.set_clock_offset(us),
            ClientSide::Workers(f) => f.set_clock_offset(us),
        }
    }

    pub fn rows(&mut self) -> Vec<WorkerRow> {
        match self {
            ClientSide::Local(_) => Vec::new(),
            ClientSide::Workers(f) => f.rows(),
        }
    }

    pub fn take_notes(&mut self) -> Vec<String> {
        match self {
            ClientSide::Local(_) => Vec::new(),
            ClientSide::Workers(f) => f.take_notes(),
        }
    }

    /// Closes every connection, counting the broadcasts each missed at the end.
    pub async fn stop(self) -> Stopped {
        match self {
            ClientSide::Local(c) => in_process(move || c.stop()).await,
            ClientSide::Workers(f) => f.stop().await,
        }
    }
}

/// Stopping joins threads: off the runtime's thread.
async fn in_process(stop: impl FnOnce() -> Vec<String> + Send + 'static) -> Stopped {
    let panics = tokio::task::spawn_blocking(stop)
        .await
        .unwrap_or_else(|e| vec![e.to_string()]);
    Stopped {
        panics,
        ..Stopped::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_while_the_sockets_fit() {
        assert_eq!(Layout::choose(None, 1000, 2000, 19_900), Layout::InProcess);
        assert_eq!(
            Layout::choose(None, 10_000, 20_000, 19_900),
            Layout::Workers(1)
        );
        assert_eq!(
            Layout::choose(None, 1_000_000, 1_000_000, 19_900),
            Layout::Workers(51)
        );
        // A tuned host: a million fit in one process.
        assert_eq!(
            Layout::choose(None, 1_000_000, 1_000_000, 1_048_476),
            Layout::InProcess
        );
        assert_eq!(Layout::choose(Some(3), 10, 10, 19_900), Layout::Workers(3));
        assert_eq!(
            Layout::choose(Some(0), 1_000_000, 1_000_000, 100),
            Layout::InProcess
        );
    }
}
