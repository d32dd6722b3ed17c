//! A server that grows: `c1m server` started without `--workers` holds connections in this
//! process until it nears what one process may hold (the hard RLIMIT_NOFILE less 100, or
//! `--worker-conns`), then adds worker processes of its own binary, one at a time, up to what
//! the kernel allows. So the two plain commands of the README reach 200K and 1M on a host whose
//! descriptor limit is 20,000.
//!
//! Every member listens on the same port (SO_REUSEPORT). The newest is the one accepting: a
//! program attached to the port's group (`engine::steer`) sends it every new connection, and a
//! full member keeps what it holds without being handed more, and without closing its listener
//! (which would reset the connections in its queue). One worker waits ready beside the
//! accepting member, so the switch costs a setsockopt, not a process start.

use super::fleet::Fleet;
use super::wire::Start;
use crate::engine::server::{Server, ServerConfig};
use crate::engine::steer;
use crate::stats::{ShardDelta, WorkerRow};
use anyhow::Result;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::sync::mpsc::UnboundedSender;

/// When a worker says it is full: it keeps a reserve for what arrives while new connections
/// are steered elsewhere (a client may have a thousand in flight, and the kernel may have
/// queued as many for this process before the switch).
pub fn full_at(cap: u64) -> u64 {
    cap - (cap / 10).min(2000)
}

/// When this process says it is full: it keeps half its descriptors for the pipes of the
/// workers it starts (three each), so it can always start the next one.
pub fn parent_full_at(cap: u64) -> u64 {
    full_at(cap).min(cap / 2)
}

/// One process of the group: this one (member 0) or a worker.
#[derive(Clone, Copy, Debug)]
struct Member {
    /// Its listeners in the port's group.
    listeners: u32,
    /// Its index in the fleet; `None` for this process.
    worker: Option<usize>,
    /// The sockets at which it says it is full, and whether it has.
    full_at: u64,
    full: bool,
}

pub struct Growing {
    local: Server,
    fleet: Fleet,
    /// What a new worker runs: this server's settings, one shard, joining the group.
    worker: ServerConfig,
    cap: u64,
    max_conns: Option<u64>,
    members: Vec<Member>,
    accepting: usize,
    standby: Option<usize>,
    /// A member died: the kernel moved listeners into its slots, so the group is left to its
    /// own hash until a new member joins at the end.
    released: bool,
    /// The last broadcast sent: a worker added later starts from it.
    last_seq: u64,
    /// Growth stopped (a worker could not start); why, told once.
    stopped: Option<String>,
    notes: Vec<String>,
}

impl Growing {
    pub fn start(
        exe: PathBuf,
        cfg: &ServerConfig,
        cap: u64,
        deltas: UnboundedSender<ShardDelta>,
    ) -> Result<Growing> {
        let local = Server::start(
            &ServerConfig {
                full_at: Some(parent_full_at(cap)),
                ..cfg.clone()
            },
            deltas.clone(),
        )?;
        let shards = local.shards();
        // One shard a worker: fewer threads on the cores both ends share. Measured at 1M on
        // this 2-core box, two shards a worker ramped slower (15.9K and 16.7K/s) than one
        // (18.8K/s), and cost the client more CPU.
        let worker = ServerConfig {
            listen: local.local_addr(),
            shards: 1,
            joins_group: true,
            full_at: Some(full_at(cap)),
            ..cfg.clone()
        };
        Ok(Growing {
            fleet: Fleet::after(exe, shards, 1, deltas),
            members: vec![Member {
                listeners: shards as u32,
                worker: None,
                full_at: parent_full_at(cap),
                full: false,
            }],
            local,
            worker,
            cap,
            max_conns: cfg.max_conns,
            accepting: 0,
            standby: None,
            released: false,
            last_seq: 0,
            stopped: None,
            notes: Vec::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local.local_addr()
    }

    /// Every shard a broadcast goes to: this process's and the live workers'.
    pub fn broadcast(&mut self, seq: u64, payload: &[u8], stamp_us: i64) -> Vec<usize> {
        self.last_seq = seq;
        let mut shards: Vec<usize> = self.local.broadcast(seq, payload, stamp_us).collect();
        for i in self.fleet.alive() {
            self.fleet.send(
                i,
                super::wire::Down::Broadcast {
                    seq,
                    payload: payload.to_vec(),
                    stamp_us,
                },
            );
            shards.extend(self.fleet.shards_of(i));
        }
        shards
    }

    /// A shard's delta (a few a second per shard, and one at once when a member fills up or a
    /// worker is ready): a member that says it is full is steered away from at once.
    pub fn on_delta(&mut self, d: &ShardDelta) {
        if d.full {
            let worker = self.fleet.worker_of(d.shard);
            if let Some(m) = self.members.iter_mut().find(|m| m.worker == worker) {
                m.full = true;
            }
        }
        self.step();
    }

    /// Once a second: members that died, then [`Self::step`].
    pub fn maintain(&mut self) {
        self.bury();
        self.step();
    }

    /// Keeps one worker ready beside the accepting member once it is half full, switches to it
    /// when the accepting one is full, and recovers the steering after a member died.
    fn step(&mut self) {
        let accepting = self.members[self.accepting];
        let half = accepting.worker.is_some() || self.local.held() >= accepting.full_at / 2;
        if self.standby.is_none() && (half || accepting.full || self.released) {
            self.add_standby();
        }
        let Some(next) = self.standby else { return };
        let ready = self.members[next]
            .worker
            .is_some_and(|w| self.fleet.is_ready(w));
        if ready && (self.members[self.accepting].full || self.released) {
            self.switch_to(next);
            // The next one starts now: it has the whole fill of this one to get ready.
            self.add_standby();
        }
    }

    /// Members whose worker died: their listeners are gone, and the steering with them.
    fn bury(&mut self) {
        let dead: Vec<usize> = (0..self.members.len())
            .filter(|&m| self.members[m].worker.is_some_and(|w| self.fleet.died(w)))
            .collect();
        for m in dead.into_iter().rev() {
            let was = self.members.remove(m);
            if self.accepting == m {
                self.accepting = 0;
            } else if self.accepting > m {
                self.accepting -= 1;
            }
            self.standby = match self.standby {
                Some(s) if s == m => None,
                Some(s) if s > m => Some(s - 1),
                other => other,
            };
            let _ = steer::release(self.local.group());
            self.released = true;
            self.notes.push(format!(
                "a worker holding {} listener(s) died: new connections are spread over every \
                 process until a new worker joins",
                was.listeners
            ));
        }
    }

    fn add_standby(&mut self) {
        if self.stopped.is_some() {
            return;
        }
        if self.members.len() == 1 && !self.released {
            // Before the first worker listens: until now the kernel's own hash spread
            // connections over this process's shards, and it would give the newcomer a share.
            let _ = steer::steer(self.local.group(), 0, self.members[0].listeners);
        }
        let held: u64 = self.local.held() + self.fleet.rows().iter().map(|r| r.active).sum::<u64>();
        let start = Start::Server(ServerConfig {
            max_conns: self.max_conns.map(|m| m.saturating_sub(held)),
            last_seq: self.last_seq,
            ..self.worker.clone()
        });
        match self.fleet.spawn(&start, 0, 0) {
            Ok(w) => {
                self.members.push(Member {
                    listeners: self.worker.shards as u32,
                    worker: Some(w),
                    full_at: full_at(self.cap),
                    full: false,
                });
                self.standby = Some(self.members.len() - 1);
            }
            Err(e) => {
                let why =
                    format!("cannot add a worker process ({e:#}): the server holds what it has");
                self.notes.push(why.clone());
                self.stopped = Some(why);
            }
        }
    }

    /// Steers every new connection to member `m`, the newest: its listeners are the last in
    /// the group.
    fn switch_to(&mut self, m: usize) {
        let total: u32 = self.members.iter().map(|m| m.listeners).sum();
        let n = self.members[m].listeners;
        if let Err(e) = steer::steer(self.local.group(), total - n, n) {
            self.notes.push(format!(
                "cannot steer new connections to the new worker: {e}"
            ));
            return;
        }
        let was = self.members[self.accepting];
        let from = match was.worker {
            None => "this process".to_string(),
            Some(w) => format!("worker {w}"),
        };
        let to = self.members[m].worker.map_or(0, |w| w);
        if !self.released {
            self.notes.push(format!(
                "{from} holds all it takes ({} connections): new connections now go to worker \
                 {to}",
                was.full_at
            ));
        }
        self.accepting = m;
        self.standby = None;
        self.released = false;
    }

    pub fn rows(&mut self) -> Vec<WorkerRow> {
        self.fleet.rows()
    }

    pub fn take_notes(&mut self) -> Vec<String> {
        let mut notes = std::mem::take(&mut self.notes);
        notes.extend(self.fleet.take_notes());
        notes
    }

    /// Stops this process's shards and every worker.
    pub async fn stop(self) -> super::Stopped {
        let local = self.local;
        let mut stopped = self.fleet.stop().await;
        let panics = tokio::task::spawn_blocking(move || local.stop())
            .await
            .unwrap_or_else(|e| vec![e.to_string()]);
        stopped.panics.extend(panics);
        stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_keeps_room_for_what_arrives_while_it_is_steered_away_from() {
        assert_eq!(full_at(19_900), 17_910);
        assert_eq!(full_at(500), 450);
        assert_eq!(full_at(10), 9);
        // This process also keeps room for the workers' pipes.
        assert_eq!(parent_full_at(19_900), 9_950);
        assert_eq!(parent_full_at(400), 200);
    }
}
