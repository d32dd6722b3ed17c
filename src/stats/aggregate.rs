//! Merging the shards' [`ShardDelta`]s into one [`Snapshot`]. The [`Aggregator`] belongs to a
//! single task, so nothing in here locks; shards send it deltas, it answers `snapshot()` calls.

use super::meter::{Meter, MeterSnapshot};
use super::{
    BroadcastPart, Counters, ErrorClass, Mode, N_CLASSES, ShardDelta, SourceDelta, new_histogram,
};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use std::collections::BTreeMap;
use std::time::Instant;

/// Broadcasts kept for the report; older sequence numbers are forgotten.
pub const MAX_BROADCASTS: usize = 1000;

/// The merged state of a run at one moment. Serialised, this is the body of the JSON report
/// (`report::json` adds `version`, `config` and `generated_at`); `schema/report.schema.json`
/// documents every field, and users' scripts rely on the names.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub mode: Mode,
    /// Seconds since the run started.
    pub elapsed_s: f64,
    pub connections: Connections,
    pub errors: Errors,
    pub messages: Messages,
    pub latency_us: Latency,
    pub rates: Rates,
    /// Oldest first, at most [`MAX_BROADCASTS`].
    pub broadcasts: Broadcasts,
    /// Client: one row per source address, in the order given. Server: empty.
    pub sources: Vec<SourceRow>,
    /// Server: connections open per peer address (at most the 64 largest).
    pub peers: Vec<SourceRow>,
    /// Client: the latency of the latest broadcast alone; `None` before the first.
    pub latency_last: Option<LastLatency>,
    /// The whole run's latency histogram as (upper bound µs, count) in powers of two, for charts.
    #[serde(skip)]
    pub latency_buckets: Vec<(u64, u64)>,
    pub bytes: Bytes,
    /// One row per worker process when the run is split over several (`--workers`); empty
    /// when one process holds everything. Filled by the side that owns the workers.
    pub workers: Vec<WorkerRow>,
}

/// One worker process, as the parent sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerRow {
    pub index: usize,
    pub pid: u32,
    pub state: WorkerState,
    /// Connections open in this worker now.
    pub active: u64,
    /// Errors this worker counted over the run.
    pub errors: u64,
    /// Its resident set, bytes (`None` once it has exited).
    pub rss_bytes: Option<u64>,
    /// How it ended, e.g. "killed by signal 9", when it ended unasked.
    pub exit: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    Starting,
    Running,
    Stopped,
    Died,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Connections {
    /// Connections asked for (client: N; server: the expected peers, 0 if unknown).
    pub target: u64,
    /// Handshakes completed over the run.
    pub established: u64,
    /// Open now.
    pub active: u64,
    /// Highest `active` seen.
    pub peak: u64,
    /// Attempts that never completed the handshake.
    pub failed: u64,
    /// Established connections that ended.
    pub closed: u64,
    /// Client: connects and handshakes in flight now.
    pub connecting: u64,
    /// Client with --reconnect: lost connections and failed attempts retried.
    pub reconnects: u64,
    /// Server: distinct peer addresses with connections open now.
    pub peers: u64,
    /// Server: upgrades answered 503 because `--max-conns` connections were open.
    pub refused: u64,
    /// Seconds from the first to the last completed handshake: the ramp, when the run opened
    /// its connections once. `None` before the first.
    pub ramp_s: Option<f64>,
    /// Handshakes per second over `ramp_s` (the setup rate while ramping).
    pub ramp_rate: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    pub total: u64,
    pub by_class: ByClass,
    /// The first failure text seen for each class that occurred, keyed by class name.
    pub samples: BTreeMap<&'static str, String>,
}

/// Error counts indexed by [`ErrorClass`]. Serialises as a map with every class name as a key,
/// zeros included, in [`ErrorClass::ALL`] order, so scripts never meet a missing key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ByClass(pub [u64; N_CLASSES]);

impl ByClass {
    pub fn get(&self, class: ErrorClass) -> u64 {
        self.0[class.index()]
    }

    pub fn iter(&self) -> impl Iterator<Item = (ErrorClass, u64)> + '_ {
        ErrorClass::ALL.iter().map(|&c| (c, self.get(c)))
    }
}

impl Serialize for ByClass {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(N_CLASSES))?;
        for (class, n) in self.iter() {
            map.serialize_entry(class.name(), &n)?;
        }
        map.end()
    }
}

/// Client fills the first four, server the last two; the others stay 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Messages {
    pub received: u64,
    pub missed: u64,
    pub unparsable: u64,
    pub skewed: u64,
    pub sent: u64,
    pub dropped: u64,
}

/// Whole-run latency distribution in microseconds; all zero when `count` is 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub min: u64,
    pub max: u64,
    pub mean: f64,
    pub stddev: f64,
    pub p50: u64,
    pub p75: u64,
    pub p95: u64,
    pub p98: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let q = |quantile: f64| h.value_at_quantile(quantile);
        Latency {
            count: h.len(),
            min: h.min(),
            max: h.max(),
            mean: h.mean(),
            stddev: h.stdev(),
            p50: q(0.50),
            p75: q(0.75),
            p95: q(0.95),
            p98: q(0.98),
            p99: q(0.99),
            p999: q(0.999),
            p9999: q(0.9999),
        }
    }
}

/// Latency of one broadcast.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LastLatency {
    pub seq: u64,
    pub latency: Latency,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Handshakes completed per second.
    pub setup: MeterSnapshot,
    /// Client: messages received per second. Server: broadcast frames written per second.
    pub messages: MeterSnapshot,
}

/// The broadcast rows of one mode. Untagged: in JSON both are plain arrays, and `mode` says which
/// row shape to expect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Broadcasts {
    Server(Vec<ServerBroadcast>),
    Client(Vec<ClientBroadcast>),
}

impl Broadcasts {
    pub fn len(&self) -> usize {
        match self {
            Broadcasts::Server(rows) => rows.len(),
            Broadcasts::Client(rows) => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One broadcast as the server saw it, summed over its shards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerBroadcast {
    pub seq: u64,
    /// Frames written.
    pub sent: u64,
    /// Frames that could not be queued.
    pub dropped: u64,
    /// Server loop time: last send finished − first send started, across shards (µs).
    pub duration_us: i64,
    /// First send, µs since the Unix epoch.
    pub first_us: i64,
}

/// One broadcast as this client saw it, summed over its shards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientBroadcast {
    pub seq: u64,
    pub received: u64,
    /// µs since the Unix epoch, client clock.
    pub first_recv_us: i64,
    pub last_recv_us: i64,
    /// The timestamp in the payload (server clock), if any message carried one.
    pub sent_ts_us: Option<i64>,
    /// last_recv_us − sent_ts_us: first send to last receive, when `sent_ts_us` is known.
    pub delivery_us: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceRow {
    pub addr: String,
    pub established: u64,
    pub active: u64,
    pub errors: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Bytes {
    #[serde(rename = "in")]
    pub inbound: u64,
    #[serde(rename = "out")]
    pub outbound: u64,
}

/// Running totals for one source address.
#[derive(Clone, Debug, Default)]
struct SourceTotals {
    addr: String,
    opened: u64,
    closed: u64,
    errors: u64,
}

/// The latest part from each shard for one broadcast. Keyed by shard so a shard re-sending its
/// growing part replaces what it sent before instead of adding to it.
#[derive(Clone, Debug, Default)]
struct BroadcastParts(Vec<(usize, BroadcastPart)>);

impl BroadcastParts {
    fn upsert(&mut self, shard: usize, part: BroadcastPart) {
        // A linear scan: there are as many entries as shards, a handful.
        match self.0.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, p)) => *p = part,
            None => self.0.push((shard, part)),
        }
    }

    fn parts(&self) -> impl Iterator<Item = &BroadcastPart> {
        self.0.iter().map(|(_, p)| p)
    }

    fn sum(&self, f: impl Fn(&BroadcastPart) -> u64) -> u64 {
        self.parts().map(f).sum()
    }

    fn first_us(&self) -> i64 {
        self.parts().map(|p| p.first_us).min().unwrap_or(0)
    }

    fn last_us(&self) -> i64 {
        self.parts().map(|p| p.last_us).max().unwrap_or(0)
    }

    fn server_row(&self, seq: u64) -> ServerBroadcast {
        ServerBroadcast {
            seq,
            sent: self.sum(|p| p.count),
            dropped: self.sum(|p| p.dropped),
            duration_us: self.last_us() - self.first_us(),
            first_us: self.first_us(),
        }
    }

    fn client_row(&self, seq: u64) -> ClientBroadcast {
        // Every copy carries the same server stamp; min() only guards against a shard that
        // parsed a different one.
        let sent_ts_us = self.parts().filter_map(|p| p.sent_ts_us).min();
        let last_recv_us = self.last_us();
        ClientBroadcast {
            seq,
            received: self.sum(|p| p.count),
            first_recv_us: self.first_us(),
            last_recv_us,
            sent_ts_us,
            delivery_us: sent_ts_us.map(|ts| last_recv_us - ts),
        }
    }
}

/// Merges shard deltas. Owned by one task; see the module docs.
pub struct Aggregator {
    mode: Mode,
    target: u64,
    started: Instant,
    totals: Counters,
    /// Each shard's latest `active` gauge, indexed by shard.
    active: Vec<u64>,
    /// First and last handshake completion seen (µs since the epoch).
    opens_us: Option<(i64, i64)>,
    /// Per shard: connects in flight, open connections per peer, latest broadcast's latency.
    connecting: Vec<u64>,
    peers: Vec<Vec<(std::net::IpAddr, u64)>>,
    last_latency: Vec<Option<(u64, Histogram<u64>)>>,
    /// Client shards' end-of-run settlement: (last seq known, connections charged up to it).
    settled: Vec<(u64, u64)>,
    /// The first failure text of each class, and those not yet taken for the log.
    samples: Vec<(ErrorClass, String)>,
    new_samples: Vec<(ErrorClass, String)>,
    active_sum: u64,
    peak: u64,
    latency: Histogram<u64>,
    /// Latencies since the last `take_interval`, for the HDR interval log.
    interval: Histogram<u64>,
    setup: Meter,
    messages: Meter,
    sources: Vec<SourceTotals>,
    broadcasts: BTreeMap<u64, BroadcastParts>,
}

impl Aggregator {
    /// `sources` are the client's source addresses, as displayed; empty for the server.
    pub fn new(mode: Mode, target: u64, sources: Vec<String>, started: Instant) -> Aggregator {
        Aggregator {
            mode,
            target,
            started,
            totals: Counters::default(),
            active: Vec::new(),
            opens_us: None,
            connecting: Vec::new(),
            peers: Vec::new(),
            last_latency: Vec::new(),
            settled: Vec::new(),
            samples: Vec::new(),
            new_samples: Vec::new(),
            active_sum: 0,
            peak: 0,
            latency: new_histogram(),
            interval: new_histogram(),
            setup: Meter::new(started),
            messages: Meter::new(started),
            sources: sources
                .into_iter()
                .map(|addr| SourceTotals {
                    addr,
                    ..SourceTotals::default()
                })
                .collect(),
            broadcasts: BTreeMap::new(),
        }
    }

    pub fn apply(&mut self, delta: ShardDelta, now: Instant) {
        self.totals.add(&delta.counters);
        self.set_active(delta.shard, delta.active);
        let shard = delta.shard;
        if self.connecting.len() <= shard {
            self.connecting.resize(shard + 1, 0);
            self.peers.resize(shard + 1, Vec::new());
            self.last_latency.resize(shard + 1, None);
        }
        self.connecting[shard] = delta.connecting;
        if let Some(peers) = delta.peers {
            self.peers[shard] = peers;
        }
        if let Some(last) = delta.last_latency {
            self.last_latency[shard] = Some(last);
        }
        if let Some(settled) = delta.settled {
            self.settled.push(settled);
        }
        if let Some((first, last)) = delta.opens_us {
            self.opens_us = Some(match self.opens_us {
                Some((f, l)) => (f.min(first), l.max(last)),
                None => (first, last),
            });
        }
        merge(&mut self.latency, &delta.latency);
        merge(&mut self.interval, &delta.latency);
        self.setup.mark_at(delta.counters.opened, now);
        self.messages.mark_at(delta.counters.messages, now);
        for s in &delta.per_source {
            self.add_source(s);
        }
        for (class, text) in delta.error_samples {
            if !self.samples.iter().any(|(c, _)| *c == class) {
                self.samples.push((class, text.clone()));
                self.new_samples.push((class, text));
            }
        }
        for part in delta.broadcasts {
            self.add_broadcast(delta.shard, part);
        }
    }

    /// Connections open now, summed over shards.
    pub fn active(&self) -> u64 {
        self.active_sum
    }

    /// The target changed mid-run (the console's `+` / `-`): the report shows the latest one.
    pub fn set_target(&mut self, target: u64) {
        self.target = target;
    }

    /// Failure texts of classes not reported before, for a one-time log line each.
    pub fn take_new_error_samples(&mut self) -> Vec<(ErrorClass, String)> {
        std::mem::take(&mut self.new_samples)
    }

    /// The latencies merged since the previous call (or since the start), leaving an empty
    /// histogram in their place.
    pub fn take_interval(&mut self) -> Histogram<u64> {
        std::mem::replace(&mut self.interval, new_histogram())
    }

    /// The whole-run latency histogram, e.g. for a final percentile table.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    pub fn snapshot(&mut self, now: Instant) -> Snapshot {
        let mut snap = self.snapshot_counts(now);
        snap.peers = self.peer_rows();
        snap.connections.peers = snap.peers.iter().filter(|p| p.active > 0).count() as u64;
        snap
    }

    /// Open connections per peer address, summed over shards, the 64 largest.
    fn peer_rows(&self) -> Vec<SourceRow> {
        let mut by_ip: BTreeMap<std::net::IpAddr, u64> = BTreeMap::new();
        for (ip, n) in self.peers.iter().flatten() {
            *by_ip.entry(*ip).or_default() += n;
        }
        let mut rows: Vec<SourceRow> = by_ip
            .into_iter()
            .map(|(ip, active)| SourceRow {
                addr: ip.to_string(),
                established: 0,
                active,
                errors: 0,
            })
            .collect();
        rows.sort_by(|a, b| b.active.cmp(&a.active).then_with(|| a.addr.cmp(&b.addr)));
        rows.truncate(64);
        rows
    }

    /// The shards' histograms for the highest sequence number any of them saw, merged.
    fn latency_last(&self) -> Option<LastLatency> {
        let seq = self.last_latency.iter().flatten().map(|(s, _)| *s).max()?;
        let mut h = new_histogram();
        for (_, part) in self
            .last_latency
            .iter()
            .flatten()
            .filter(|(s, _)| *s == seq)
        {
            merge(&mut h, part);
        }
        Some(LastLatency {
            seq,
            latency: Latency::from_histogram(&h),
        })
    }

    fn snapshot_counts(&mut self, now: Instant) -> Snapshot {
        let c = &self.totals;
        let client = self.mode == Mode::Client;
        Snapshot {
            mode: self.mode,
            elapsed_s: now.saturating_duration_since(self.started).as_secs_f64(),
            connections: Connections {
                target: self.target,
                established: c.opened,
                active: self.active_sum,
                peak: self.peak,
                failed: c.failed,
                closed: c.closed,
                connecting: self.connecting.iter().sum(),
                reconnects: c.reconnects,
                peers: 0,
                refused: c.refused,
                ramp_s: self.opens_us.map(|(f, l)| (l - f) as f64 / 1e6),
                ramp_rate: self
                    .opens_us
                    .filter(|(f, l)| l > f)
                    .map(|(f, l)| (c.opened.saturating_sub(1)) as f64 * 1e6 / (l - f) as f64),
            },
            errors: Errors {
                total: c.errors_total(),
                by_class: ByClass(c.errors),
                samples: self
                    .samples
                    .iter()
                    .map(|(c, t)| (c.name(), t.clone()))
                    .collect(),
            },
            messages: Messages {
                received: if client { c.messages } else { 0 },
                missed: c.missed + self.missed_elsewhere(),
                unparsable: c.unparsable,
                skewed: c.skewed,
                sent: if client { 0 } else { c.messages },
                dropped: c.send_dropped,
            },
            latency_us: Latency::from_histogram(&self.latency),
            rates: Rates {
                setup: self.setup.snapshot(now),
                messages: self.messages.snapshot(now),
            },
            broadcasts: self.broadcast_rows(),
            sources: self.source_rows(),
            peers: Vec::new(),
            latency_last: self.latency_last(),
            latency_buckets: buckets(&self.latency),
            bytes: Bytes {
                inbound: c.bytes_in,
                outbound: c.bytes_out,
            },
            workers: Vec::new(),
        }
    }

    /// Broadcasts that connections open at the end missed without their own process knowing:
    /// each shard charged its connections up to the last sequence number its process saw, and
    /// another process (a worker) may have seen later ones.
    fn missed_elsewhere(&self) -> u64 {
        let last = self.settled.iter().map(|&(seq, _)| seq).max().unwrap_or(0);
        self.settled
            .iter()
            .map(|&(seq, open)| open * (last - seq))
            .sum()
    }

    fn set_active(&mut self, shard: usize, active: u64) {
        if shard >= self.active.len() {
            self.active.resize(shard + 1, 0);
        }
        // Keep a running sum: adjusting by the difference is O(1) per delta.
        self.active_sum = self.active_sum - self.active[shard] + active;
        self.active[shard] = active;
        self.peak = self.peak.max(self.active_sum);
    }

    fn add_source(&mut self, s: &SourceDelta) {
        if s.source >= self.sources.len() {
            // An index beyond the list we were given: keep its counts under a placeholder name
            // rather than lose them.
            let missing = self.sources.len()..=s.source;
            self.sources.extend(missing.map(|i| SourceTotals {
                addr: format!("source #{i}"),
                ..SourceTotals::default()
            }));
        }
        let t = &mut self.sources[s.source];
        t.opened += s.opened;
        t.closed += s.closed;
        t.errors += s.errors;
    }

    fn add_broadcast(&mut self, shard: usize, part: BroadcastPart) {
        self.broadcasts
            .entry(part.seq)
            .or_default()
            .upsert(shard, part);
        // A late part for a long-forgotten seq is inserted and at once evicted again.
        while self.broadcasts.len() > MAX_BROADCASTS {
            self.broadcasts.pop_first();
        }
    }

    fn broadcast_rows(&self) -> Broadcasts {
        let rows = self.broadcasts.iter();
        match self.mode {
            Mode::Server => Broadcasts::Server(rows.map(|(&seq, p)| p.server_row(seq)).collect()),
            Mode::Client => Broadcasts::Client(rows.map(|(&seq, p)| p.client_row(seq)).collect()),
        }
    }

    fn source_rows(&self) -> Vec<SourceRow> {
        self.sources
            .iter()
            .map(|t| SourceRow {
                addr: t.addr.clone(),
                established: t.opened,
                active: t.opened.saturating_sub(t.closed),
                errors: t.errors,
            })
            .collect()
    }
}

/// Add `from` into `into` exactly, bucket by bucket.
/// (upper bound, count) per power-of-two bucket, from 1 µs to the largest value recorded.
fn buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_log(1, 2.0)
        .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
        .collect()
}

fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    // `into` comes from new_histogram(), which auto-resizes, so add() can only fail if a value
    // exceeded u64 — impossible.
    into.add(from)
        .expect("an auto-resizing histogram accepts any u64 value");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn delta(shard: usize) -> ShardDelta {
        ShardDelta::empty(shard)
    }

    fn part(seq: u64, count: u64, first_us: i64, last_us: i64) -> BroadcastPart {
        BroadcastPart {
            seq,
            count,
            dropped: 0,
            first_us,
            last_us,
            sent_ts_us: None,
        }
    }

    fn client() -> (Aggregator, Instant) {
        let t0 = Instant::now();
        (Aggregator::new(Mode::Client, 100, vec![], t0), t0)
    }

    #[test]
    fn connections_open_at_the_end_are_charged_for_broadcasts_only_other_workers_saw() {
        let (mut agg, t0) = client();
        // Worker A's shard charged its 300 open connections up to seq 5 and counted 2 misses
        // of its own; worker B's shard saw seq 6 before the end.
        let mut a = delta(0);
        a.counters.missed = 2;
        a.settled = Some((5, 300));
        let mut b = delta(1);
        b.settled = Some((6, 400));
        agg.apply(a, t0);
        agg.apply(b, t0);
        assert_eq!(agg.snapshot(t0).messages.missed, 2 + 300);
        // In one process every shard knows the same last number: nothing is added.
        let (mut one, t0) = client();
        for shard in 0..2 {
            let mut d = delta(shard);
            d.settled = Some((6, 100));
            one.apply(d, t0);
        }
        assert_eq!(one.snapshot(t0).messages.missed, 0);
    }

    #[test]
    fn merged_histograms_equal_one_histogram_of_all_values() {
        let (mut agg, t0) = client();
        let mut all = new_histogram();
        // Three shards, very different ranges, two flushes each.
        for round in 0..2u64 {
            for shard in 0..3usize {
                let mut d = delta(shard);
                for i in 0..1000u64 {
                    let v = (i * 37 + round * 11) * 10u64.pow(shard as u32 * 2) + 1;
                    d.latency.record(v).unwrap();
                    all.record(v).unwrap();
                }
                agg.apply(d, t0);
            }
        }
        let h = agg.latency();
        assert_eq!(h.len(), all.len());
        assert_eq!(h.min(), all.min());
        assert_eq!(h.max(), all.max());
        for q in [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(h.value_at_quantile(q), all.value_at_quantile(q), "q={q}");
        }
        let s = agg.snapshot(t0);
        assert_eq!(s.latency_us, Latency::from_histogram(&all));
        assert_eq!(s.latency_us.count, 6000);
    }

    #[test]
    fn empty_latency_is_all_zero() {
        let (mut agg, t0) = client();
        let s = agg.snapshot(t0);
        assert_eq!(s.latency_us, Latency::default());
        assert!(!s.latency_us.mean.is_nan() && !s.latency_us.stddev.is_nan());
    }

    #[test]
    fn counters_add() {
        let (mut agg, t0) = client();
        for shard in 0..3 {
            let mut d = delta(shard);
            d.counters.opened = 10;
            d.counters.failed = 2;
            d.counters.closed = 1;
            d.counters.messages = 100;
            d.counters.missed = 3;
            d.counters.unparsable = 1;
            d.counters.skewed = 4;
            d.counters.bytes_in = 1000;
            d.counters.bytes_out = 10;
            d.counters.error(ErrorClass::Refused);
            d.counters.error(ErrorClass::Timeout);
            agg.apply(d, t0 + Duration::from_secs(1));
        }
        let s = agg.snapshot(t0 + Duration::from_secs(2));
        assert_eq!(s.connections.established, 30);
        assert_eq!(s.connections.failed, 6);
        assert_eq!(s.connections.closed, 3);
        assert_eq!(s.connections.target, 100);
        assert_eq!(
            s.messages,
            Messages {
                received: 300,
                missed: 9,
                unparsable: 3,
                skewed: 12,
                sent: 0,
                dropped: 0
            }
        );
        assert_eq!(s.errors.total, 6);
        assert_eq!(s.errors.by_class.get(ErrorClass::Refused), 3);
        assert_eq!(s.errors.by_class.get(ErrorClass::Timeout), 3);
        assert_eq!(s.errors.by_class.get(ErrorClass::Reset), 0);
        assert_eq!(
            s.bytes,
            Bytes {
                inbound: 3000,
                outbound: 30
            }
        );
        assert_eq!(s.rates.setup.count, 30);
        assert_eq!(s.rates.messages.count, 300);
        assert!((s.rates.messages.mean - 150.0).abs() < 1e-9);
    }

    #[test]
    fn server_counts_messages_as_sent() {
        let t0 = Instant::now();
        let mut agg = Aggregator::new(Mode::Server, 0, vec![], t0);
        let mut d = delta(0);
        d.counters.messages = 7;
        d.counters.send_dropped = 2;
        d.counters.refused = 3;
        agg.apply(d, t0);
        let s = agg.snapshot(t0);
        let m = s.messages;
        assert_eq!((m.sent, m.dropped, m.received), (7, 2, 0));
        assert_eq!((s.connections.refused, s.errors.total), (3, 0));
    }

    #[test]
    fn error_classes_serialise_with_every_name() {
        let mut by = ByClass::default();
        by.0[ErrorClass::Bind.index()] = 5;
        let v = serde_json::to_value(&by).unwrap();
        let map = v.as_object().unwrap();
        assert_eq!(map.len(), N_CLASSES);
        for c in ErrorClass::ALL {
            assert!(map.contains_key(c.name()), "{}", c.name());
        }
        assert_eq!(map["bind"], 5);
    }

    #[test]
    fn repeated_part_from_a_shard_replaces_it() {
        let t0 = Instant::now();
        let mut agg = Aggregator::new(Mode::Server, 0, vec![], t0);
        for (shard, count, last) in [(0, 10, 150), (1, 5, 120), (0, 25, 300), (1, 8, 180)] {
            let mut d = delta(shard);
            let mut p = part(7, count, 100 + shard as i64, last);
            p.dropped = 1;
            d.broadcasts.push(p);
            agg.apply(d, t0);
        }
        let Broadcasts::Server(rows) = agg.snapshot(t0).broadcasts else {
            panic!("server rows expected");
        };
        assert_eq!(
            rows,
            vec![ServerBroadcast {
                seq: 7,
                sent: 33,
                dropped: 2,
                duration_us: 200,
                first_us: 100,
            }]
        );
    }

    #[test]
    fn client_rows_measure_first_send_to_last_receive() {
        let (mut agg, t0) = client();
        let mut d0 = delta(0);
        d0.broadcasts.push(BroadcastPart {
            sent_ts_us: Some(1_000),
            ..part(1, 4, 1_500, 2_000)
        });
        d0.broadcasts.push(part(2, 1, 5_000, 5_000)); // no timestamp parsed
        let mut d1 = delta(1);
        d1.broadcasts.push(BroadcastPart {
            sent_ts_us: Some(1_000),
            ..part(1, 6, 1_200, 2_600)
        });
        agg.apply(d0, t0);
        agg.apply(d1, t0);
        let Broadcasts::Client(rows) = agg.snapshot(t0).broadcasts else {
            panic!("client rows expected");
        };
        assert_eq!(
            rows[0],
            ClientBroadcast {
                seq: 1,
                received: 10,
                first_recv_us: 1_200,
                last_recv_us: 2_600,
                sent_ts_us: Some(1_000),
                delivery_us: Some(1_600),
            }
        );
        assert_eq!((rows[1].seq, rows[1].delivery_us), (2, None));
    }

    #[test]
    fn keeps_only_the_last_broadcasts() {
        let (mut agg, t0) = client();
        let mut d = delta(0);
        d.broadcasts = (0..MAX_BROADCASTS as u64 + 50)
            .map(|seq| part(seq, 1, 0, 0))
            .collect();
        agg.apply(d, t0);
        // a straggler for an evicted seq does not come back
        let mut late = delta(1);
        late.broadcasts.push(part(3, 1, 0, 0));
        agg.apply(late, t0);
        let b = agg.snapshot(t0).broadcasts;
        let Broadcasts::Client(rows) = b else {
            panic!()
        };
        assert_eq!(rows.len(), MAX_BROADCASTS);
        assert_eq!(rows[0].seq, 50);
        assert_eq!(rows.last().unwrap().seq, MAX_BROADCASTS as u64 + 49);
    }

    #[test]
    fn peak_tracks_the_max_of_the_summed_gauges() {
        let (mut agg, t0) = client();
        let mut step = |shard, active| {
            let mut d = delta(shard);
            d.active = active;
            agg.apply(d, t0);
        };
        step(0, 100);
        step(1, 50); // 150
        step(0, 30); // 80
        step(2, 60); // 140
        step(1, 200); // 290
        step(1, 0); // 90
        let c = agg.snapshot(t0).connections;
        assert_eq!((c.active, c.peak), (90, 290));
    }

    #[test]
    fn per_source_sums() {
        let t0 = Instant::now();
        let addrs = vec!["10.0.0.1".to_string(), "10.0.0.2".to_string()];
        let mut agg = Aggregator::new(Mode::Client, 10, addrs, t0);
        for shard in 0..2 {
            let mut d = delta(shard);
            d.per_source = vec![
                SourceDelta {
                    source: 0,
                    opened: 5,
                    closed: 1,
                    errors: 2,
                },
                SourceDelta {
                    source: 1,
                    opened: 3,
                    closed: 0,
                    errors: 0,
                },
            ];
            agg.apply(d, t0);
        }
        let mut d = delta(0);
        d.per_source.push(SourceDelta {
            source: 3,
            opened: 1,
            ..SourceDelta::default()
        });
        agg.apply(d, t0);
        let rows = agg.snapshot(t0).sources;
        let brief: Vec<_> = rows
            .iter()
            .map(|r| (r.addr.as_str(), r.established, r.active, r.errors))
            .collect();
        assert_eq!(
            brief,
            vec![
                ("10.0.0.1", 10, 8, 4),
                ("10.0.0.2", 6, 6, 0),
                ("source #2", 0, 0, 0),
                ("source #3", 1, 1, 0),
            ]
        );
    }

    #[test]
    fn take_interval_returns_and_resets() {
        let (mut agg, t0) = client();
        let mut d = delta(0);
        d.latency.record(42).unwrap();
        agg.apply(d.clone(), t0);
        agg.apply(d, t0);
        assert_eq!(agg.take_interval().len(), 2);
        assert_eq!(agg.take_interval().len(), 0);
        assert_eq!(agg.latency().len(), 2);
    }
}
