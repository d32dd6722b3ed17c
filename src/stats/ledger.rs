//! Every broadcast's parts, summed into one row per sequence number, and the one way a
//! broadcast is known to be finished: each shard it was sent to has sent its final part, or is
//! gone. Client side, each broadcast's latency too: shards send the histogram of their newest
//! broadcast, and the one before becomes final for that shard when a newer one starts arriving.

use super::snapshot::{BroadcastLatency, Broadcasts, ClientBroadcast, ServerBroadcast};
use super::{BroadcastPart, Mode, new_histogram};
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, BTreeSet};

/// Broadcasts kept; older sequence numbers are forgotten.
pub const MAX_BROADCASTS: usize = 1000;

/// Broadcasts whose latency is kept as histograms, to merge parts that come late; older ones
/// keep only their summary.
const OPEN_LATENCIES: usize = 8;

/// One broadcast's parts from every shard, summed. Parts are deltas (see [`BroadcastPart`]), so
/// a row costs the same whether 2 shards or 200 took part, and a part that comes late, even
/// for a broadcast long finished, still adds what it carries.
#[derive(Clone, Copy, Debug, Default)]
struct Row {
    count: u64,
    dropped: u64,
    open: u64,
    bytes: u64,
    first_us: i64,
    last_us: i64,
    sent_ts_us: Option<i64>,
    by_ts: bool,
}

impl Row {
    fn of(p: &BroadcastPart) -> Row {
        let mut r = Row {
            first_us: p.first_us,
            last_us: p.last_us,
            ..Row::default()
        };
        r.add(p);
        r
    }

    fn add(&mut self, p: &BroadcastPart) {
        self.count += p.count;
        self.dropped += p.dropped;
        self.open += p.open;
        self.bytes += p.bytes;
        self.first_us = self.first_us.min(p.first_us);
        self.last_us = self.last_us.max(p.last_us);
        // Every copy carries the same server stamp; min() only guards against a shard that
        // parsed a different one.
        self.sent_ts_us = match (self.sent_ts_us, p.sent_ts_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.by_ts |= p.by_ts;
    }
}

#[derive(Default)]
pub struct Ledger {
    rows: BTreeMap<u64, Row>,
    /// Server: the shards each unfinished broadcast still waits for.
    waiting: BTreeMap<u64, BTreeSet<usize>>,
    /// Server: shards whose final part came before the broadcast was expected of them.
    early: BTreeMap<u64, Vec<usize>>,
    /// Shards known to be gone (their worker died).
    gone: BTreeSet<usize>,
    /// Finished broadcasts not yet taken.
    finished: Vec<u64>,
    /// Client: each shard's newest (seq, histogram), cumulative for that seq.
    newest: Vec<Option<(u64, Histogram<u64>)>>,
    /// Client: shards' final histograms of recent broadcasts, merged.
    closed: BTreeMap<u64, Histogram<u64>>,
    /// Client: the latency of broadcasts whose histograms were let go.
    summaries: BTreeMap<u64, BroadcastLatency>,
}

impl Ledger {
    pub fn add(&mut self, shard: usize, part: BroadcastPart) {
        let (seq, done) = (part.seq, part.done);
        self.rows
            .entry(seq)
            .and_modify(|r| r.add(&part))
            .or_insert_with(|| Row::of(&part));
        // A late part for a long-forgotten seq is inserted and at once evicted again.
        while self.rows.len() > MAX_BROADCASTS {
            if let Some((old, _)) = self.rows.pop_first() {
                self.summaries.remove(&old);
            }
        }
        if done {
            self.arrived(seq, shard);
        }
    }

    /// Server: `seq` was handed to `shards`; it is finished when each has sent its final part.
    pub fn expect(&mut self, seq: u64, shards: impl IntoIterator<Item = usize>) {
        let mut wait: BTreeSet<usize> = shards
            .into_iter()
            .filter(|s| !self.gone.contains(s))
            .collect();
        // Final parts that came before the expectation (they cannot, in one task, but a late
        // registration must not wait forever).
        if let Some(done) = self.early.remove(&seq) {
            wait.retain(|s| !done.contains(s));
        }
        if wait.is_empty() {
            self.finished.push(seq);
        } else {
            self.waiting.insert(seq, wait);
        }
    }

    fn arrived(&mut self, seq: u64, shard: usize) {
        let Some(wait) = self.waiting.get_mut(&seq) else {
            self.early.entry(seq).or_default().push(shard);
            while self.early.len() > MAX_BROADCASTS {
                self.early.pop_first();
            }
            return;
        };
        wait.remove(&shard);
        if wait.is_empty() {
            self.waiting.remove(&seq);
            self.finished.push(seq);
        }
    }

    /// `shard` will send nothing more: no broadcast waits for it.
    pub fn gone(&mut self, shard: usize) {
        self.gone.insert(shard);
        let seqs: Vec<u64> = self.waiting.keys().copied().collect();
        for seq in seqs {
            self.arrived(seq, shard);
        }
    }

    /// Server: broadcasts finished since the last call, oldest first.
    pub fn take_finished(&mut self) -> Vec<ServerBroadcast> {
        let mut seqs = std::mem::take(&mut self.finished);
        seqs.sort_unstable();
        seqs.into_iter().map(|seq| self.server_row(seq)).collect()
    }

    /// Client: `shard`'s newest broadcast latency, (seq, histogram so far).
    pub fn latency(&mut self, shard: usize, seq: u64, h: Histogram<u64>) {
        if self.newest.len() <= shard {
            self.newest.resize(shard + 1, None);
        }
        if let Some((old, done)) = self.newest[shard].take()
            && old != seq
        {
            // A newer broadcast reached this shard: its part of the older one is final.
            let into = self.closed.entry(old).or_insert_with(new_histogram);
            into.add(&done)
                .expect("an auto-resizing histogram accepts any u64 value");
            while self.closed.len() > OPEN_LATENCIES {
                let Some(&seq) = self.closed.keys().next() else {
                    break;
                };
                // Shards that never saw a newer broadcast still hold their part of it.
                if let Some(l) = BroadcastLatency::of(&self.merged(seq)) {
                    self.summaries.insert(seq, l);
                }
                self.closed.remove(&seq);
            }
        }
        self.newest[shard] = Some((seq, h));
    }

    /// The merged histogram of the newest broadcast any shard saw, and its seq.
    pub fn newest_latency(&self) -> Option<(u64, Histogram<u64>)> {
        let seq = self.newest.iter().flatten().map(|(s, _)| *s).max()?;
        Some((seq, self.merged(seq)))
    }

    fn merged(&self, seq: u64) -> Histogram<u64> {
        let mut h = self.closed.get(&seq).cloned().unwrap_or_else(new_histogram);
        for (_, part) in self.newest.iter().flatten().filter(|(s, _)| *s == seq) {
            h.add(part)
                .expect("an auto-resizing histogram accepts any u64 value");
        }
        h
    }

    fn broadcast_latency(&self, seq: u64) -> Option<BroadcastLatency> {
        if let Some(l) = self.summaries.get(&seq) {
            return Some(*l);
        }
        let open =
            self.closed.contains_key(&seq) || self.newest.iter().flatten().any(|(s, _)| *s == seq);
        open.then(|| BroadcastLatency::of(&self.merged(seq)))
            .flatten()
    }

    /// Client: how widely broadcasts numbered by their timestamps were received: the median,
    /// over them, of the share of the open connections each reached; `None` when there is none.
    /// A true broadcast reaches nearly all; a server that pushes to each connection on its own
    /// timer gives each timestamp to one or two.
    pub fn timestamp_reach(&self) -> Option<f64> {
        let mut shares: Vec<f64> = self
            .rows
            .values()
            .filter(|r| r.by_ts && r.open > 0)
            .map(|r| r.count as f64 / r.open as f64)
            .collect();
        if shares.is_empty() {
            return None;
        }
        shares.sort_by(f64::total_cmp);
        Some(shares[shares.len() / 2])
    }

    /// The rows; those numbered by timestamps only when `timestamps` (they are broadcasts).
    pub fn rows(&self, mode: Mode, timestamps: bool) -> Broadcasts {
        let seqs = self
            .rows
            .iter()
            .filter(|(_, r)| timestamps || !r.by_ts)
            .map(|(&seq, _)| seq);
        match mode {
            Mode::Server => Broadcasts::Server(seqs.map(|s| self.server_row(s)).collect()),
            Mode::Client => Broadcasts::Client(seqs.map(|s| self.client_row(s)).collect()),
        }
    }

    fn server_row(&self, seq: u64) -> ServerBroadcast {
        let r = self.rows.get(&seq).copied().unwrap_or_default();
        ServerBroadcast {
            seq,
            sent: r.count,
            dropped: r.dropped,
            open: r.open,
            bytes: r.bytes,
            duration_us: r.last_us - r.first_us,
            first_us: r.first_us,
            complete: !self.waiting.contains_key(&seq),
        }
    }

    fn client_row(&self, seq: u64) -> ClientBroadcast {
        let r = self.rows[&seq];
        ClientBroadcast {
            seq,
            received: r.count,
            open: r.open,
            first_recv_us: r.first_us,
            last_recv_us: r.last_us,
            sent_ts_us: r.sent_ts_us,
            delivery_us: r.sent_ts_us.map(|ts| r.last_us - ts),
            latency_us: self.broadcast_latency(seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(seq: u64, count: u64, done: bool) -> BroadcastPart {
        BroadcastPart {
            seq,
            count,
            dropped: 0,
            open: count,
            first_us: 100,
            last_us: 200,
            sent_ts_us: None,
            done,
            by_ts: false,
            bytes: 0,
        }
    }

    #[test]
    fn a_broadcast_is_finished_when_every_shard_it_went_to_is_done_or_gone() {
        let mut l = Ledger::default();
        l.expect(1, [0, 1, 2]);
        l.add(0, part(1, 5, true));
        l.add(1, part(1, 3, false));
        assert!(l.take_finished().is_empty());
        // Shard 1's second part: one more written.
        l.add(1, part(1, 1, true));
        assert!(l.take_finished().is_empty());
        l.gone(2);
        let done = l.take_finished();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].seq, done[0].sent, done[0].complete), (1, 9, true));
        // A shard known gone is not waited for by later broadcasts.
        l.expect(2, [0, 2]);
        l.add(0, part(2, 5, true));
        assert_eq!(l.take_finished()[0].seq, 2);
        // Nobody to send to: finished at once, with nothing sent.
        l.expect(3, []);
        assert_eq!(l.take_finished()[0].sent, 0);
    }

    /// A slow worker's part for a broadcast long overtaken still lands in that broadcast's row.
    #[test]
    fn a_late_part_adds_to_its_broadcast_however_old() {
        let mut l = Ledger::default();
        l.add(0, part(1, 5, false));
        for seq in 2..500 {
            l.add(0, part(seq, 5, false));
        }
        l.add(3, part(1, 2, false));
        let Broadcasts::Client(rows) = l.rows(Mode::Client, true) else {
            panic!("client rows")
        };
        assert_eq!((rows[0].seq, rows[0].received, rows[0].open), (1, 7, 7));
        assert_eq!(rows.len(), 499);
    }

    #[test]
    fn each_broadcast_keeps_its_own_latency() {
        let mut l = Ledger::default();
        let h = |values: &[u64]| {
            let mut h = new_histogram();
            for &v in values {
                h.record(v).unwrap();
            }
            h
        };
        l.add(0, part(1, 2, false));
        l.add(1, part(1, 1, false));
        l.latency(0, 1, h(&[100, 200]));
        l.latency(1, 1, h(&[300]));
        l.add(0, part(2, 1, false));
        l.latency(0, 2, h(&[1_500]));
        let Broadcasts::Client(rows) = l.rows(Mode::Client, true) else {
            panic!("client rows")
        };
        let one = rows[0].latency_us.unwrap();
        assert_eq!((one.count, one.max), (3, 300));
        assert_eq!(rows[1].latency_us.unwrap().max, 1_500);
        assert_eq!(l.newest_latency().unwrap().0, 2);
        // Many broadcasts later, the first still has its summary.
        for seq in 3..20 {
            l.add(0, part(seq, 1, false));
            l.latency(0, seq, h(&[seq]));
        }
        let Broadcasts::Client(rows) = l.rows(Mode::Client, true) else {
            panic!("client rows")
        };
        assert_eq!(rows[0].latency_us.unwrap().count, 3);
        assert_eq!(rows[1].latency_us.unwrap().max, 1_500);
    }
}
