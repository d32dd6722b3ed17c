//! Merging the shards' [`ShardDelta`]s into one [`Snapshot`]. The [`Aggregator`] belongs to a
//! single task, so nothing in here locks; shards send it deltas, it answers `snapshot()` calls,
//! and once a second [`Aggregator::tick`] closes a point of the run's history.

use super::history::{ClassCounts, History, Point, PointLatency, Spread};
use super::ledger::Ledger;
use super::meter::Meter;
use super::snapshot::*;
use super::{Counters, ErrorClass, Mode, Settled, ShardDelta, SourceDelta, new_histogram};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The shortest second [`Aggregator::tick`] closes.
const TICK_AT_LEAST: Duration = Duration::from_millis(900);

pub use super::ledger::MAX_BROADCASTS;

/// A pause this long with no handshake ends the ramp when the target is unknown (a server).
const RAMP_GAP_US: i64 = 2_000_000;

/// Messages numbered by their timestamps are taken for broadcasts when, in the median, each
/// timestamp reached at least this share of the open connections.
const BROADCAST_REACH: f64 = 0.5;

/// Running totals for one source address.
#[derive(Clone, Debug, Default)]
struct SourceTotals {
    addr: String,
    opened: u64,
    closed: u64,
    errors: u64,
}

/// The first ramp: from the first handshake until the target was first held (or, with no
/// target, until a pause of [`RAMP_GAP_US`]). Later openings (`+`, reconnects) are not part of
/// it, so its rate is the rate of the ramp.
#[derive(Clone, Copy, Debug, Default)]
struct Ramp {
    first_us: i64,
    last_us: i64,
    opened: u64,
    over: bool,
}

impl Ramp {
    fn add(&mut self, opens: Option<(i64, i64)>, opened: u64) {
        let Some((first, last)) = opens else { return };
        if self.over {
            return;
        }
        if self.opened == 0 {
            *self = Ramp {
                first_us: first,
                last_us: last,
                opened,
                over: false,
            };
        } else if first - self.last_us > RAMP_GAP_US {
            self.over = true;
        } else {
            self.first_us = self.first_us.min(first);
            self.last_us = self.last_us.max(last);
            self.opened += opened;
        }
    }

    fn seconds(&self) -> Option<f64> {
        (self.opened > 0).then(|| (self.last_us - self.first_us) as f64 / 1e6)
    }

    /// Handshakes per second between the first and the last of the ramp.
    fn rate(&self) -> Option<f64> {
        (self.opened > 1 && self.last_us > self.first_us)
            .then(|| (self.opened - 1) as f64 * 1e6 / (self.last_us - self.first_us) as f64)
    }
}

/// What a second of the run adds to the history, and its latencies for the HDR interval log.
pub struct Second {
    /// Seconds from the start to the start of this interval, and its length.
    pub start: Duration,
    pub length: Duration,
    pub latency: Histogram<u64>,
}

/// Merges shard deltas. Owned by one task; see the module docs.
pub struct Aggregator {
    mode: Mode,
    target: u64,
    started: Instant,
    totals: Counters,
    /// Each shard's latest `active` gauge, indexed by shard.
    active: Vec<u64>,
    ramp: Ramp,
    /// Per shard: connects in flight, open connections per peer.
    connecting: Vec<u64>,
    peers: Vec<Vec<(std::net::IpAddr, u64)>>,
    /// Client shards' end-of-run settlement: (last seq known, connections charged up to it).
    settled: Vec<Settled>,
    /// The first failure text of each class, and those not yet taken for the log.
    samples: Vec<(ErrorClass, String)>,
    new_samples: Vec<(ErrorClass, String)>,
    /// The first payload that could not be read.
    sample: Option<String>,
    active_sum: u64,
    peak: u64,
    latency: Histogram<u64>,
    pong_rtt: Histogram<u64>,
    echo_rtt: Histogram<u64>,
    setup: Meter,
    messages: Meter,
    sources: Vec<SourceTotals>,
    ledger: Ledger,
    history: History,
    /// What the run layer last read of memory (see [`Self::note_memory`]).
    memory: Memory,
    /// The worker processes' resident sets at the last reading.
    worker_rss: Option<Spread>,
    /// The second being gathered: since when, the totals at its start, its latencies.
    second_from: Instant,
    second_totals: Counters,
    second_latency: Histogram<u64>,
}

/// What the run layer read of one side's memory (see [`Aggregator::note_memory`]).
pub struct MemoryReading {
    /// The side's resident set: its process and worker processes.
    pub rss_bytes: Option<u64>,
    /// The process's resident set when the run began.
    pub base_rss_bytes: u64,
    /// What the processes grew by since the run began (worker processes whole).
    pub grown_bytes: u64,
    /// Connections open over which `grown_bytes` is shared.
    pub open: u64,
    /// Both sides run in this process.
    pub shared: bool,
    /// The worker processes' resident sets, when there are workers.
    pub workers: Option<Spread>,
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
            ramp: Ramp::default(),
            connecting: Vec::new(),
            peers: Vec::new(),
            settled: Vec::new(),
            samples: Vec::new(),
            new_samples: Vec::new(),
            sample: None,
            active_sum: 0,
            peak: 0,
            latency: new_histogram(),
            pong_rtt: new_histogram(),
            echo_rtt: new_histogram(),
            setup: Meter::new(started),
            messages: Meter::new(started),
            sources: sources
                .into_iter()
                .map(|addr| SourceTotals {
                    addr,
                    ..SourceTotals::default()
                })
                .collect(),
            ledger: Ledger::default(),
            history: History::new(),
            memory: Memory::default(),
            worker_rss: None,
            second_from: started,
            second_totals: Counters::default(),
            second_latency: new_histogram(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn apply(&mut self, delta: ShardDelta, now: Instant) {
        let shard = delta.shard;
        self.totals.add(&delta.counters);
        self.set_active(shard, delta.active);
        self.ramp.add(delta.opens_us, delta.counters.opened);
        if self.target > 0 && self.active_sum >= self.target {
            self.ramp.over = true;
        }
        if self.connecting.len() <= shard {
            self.connecting.resize(shard + 1, 0);
            self.peers.resize(shard + 1, Vec::new());
        }
        self.connecting[shard] = delta.connecting;
        if let Some(peers) = delta.peers {
            self.peers[shard] = peers;
        }
        if let Some(settled) = delta.settled {
            self.settled.push(settled);
        }
        merge(&mut self.latency, &delta.latency);
        merge(&mut self.second_latency, &delta.latency);
        merge(&mut self.pong_rtt, &delta.pong_rtt);
        merge(&mut self.echo_rtt, &delta.echo_rtt);
        self.setup.mark_at(delta.counters.opened, now);
        self.messages.mark_at(delta.counters.messages, now);
        for s in &delta.per_source {
            self.add_source(s);
        }
        self.add_samples(delta.error_samples);
        if self.sample.is_none() {
            self.sample = delta.sample;
        }
        for (seq, h) in delta.latencies {
            self.ledger.latency(shard, seq, h);
        }
        for part in delta.broadcasts {
            self.ledger.add(shard, part);
        }
        if delta.gone {
            self.ledger.gone(shard);
        }
    }

    fn add_samples(&mut self, samples: Vec<(ErrorClass, String)>) {
        for (class, text) in samples {
            if !self.samples.iter().any(|(c, _)| *c == class) {
                self.samples.push((class, text.clone()));
                self.new_samples.push((class, text));
            }
        }
    }

    /// Closes the second being gathered, once about a second has passed since it began: adds
    /// a point to the history and returns the second's latencies (for the HDR interval log).
    /// "About": the run's once-a-second timer fires a second after its last firing, and the
    /// second began a little after that, when it was handled; a strict second would skip every
    /// other tick and make the history's points two seconds wide.
    pub fn tick(&mut self, now: Instant) -> Option<Second> {
        let length = now.saturating_duration_since(self.second_from);
        if length < TICK_AT_LEAST {
            return None;
        }
        Some(self.close_second(now, length))
    }

    /// At the end of the run: closes what has been gathered since the last second, however
    /// short.
    pub fn tick_final(&mut self, now: Instant) -> Option<Second> {
        let length = now.saturating_duration_since(self.second_from);
        (!length.is_zero()).then(|| self.close_second(now, length))
    }

    /// Once a second, from the run layer (the aggregator reads no process state): this side's
    /// memory. The per-connection figure is kept from the reading with the most connections
    /// open, once there are 1,000: the report is written after they close.
    pub fn note_memory(&mut self, reading: MemoryReading) {
        let m = &mut self.memory;
        m.rss_bytes = reading.rss_bytes;
        m.base_rss_bytes = reading.base_rss_bytes;
        m.shares_process = reading.shared;
        m.peak_rss_bytes = m.peak_rss_bytes.max(reading.rss_bytes);
        let open = reading.open;
        if open >= 1000 && open >= m.per_conn_at {
            m.per_conn_at = open;
            m.per_conn_bytes = Some(reading.grown_bytes as f64 / open as f64);
        }
        self.worker_rss = reading.workers;
    }

    fn close_second(&mut self, now: Instant, length: Duration) -> Second {
        let dt = length.as_secs_f64();
        let (c, was) = (&self.totals, &self.second_totals);
        self.history.push(Point {
            t_s: now.saturating_duration_since(self.started).as_secs_f64(),
            dt_s: dt,
            open: self.active_sum,
            target: self.target,
            setup_per_s: (c.opened - was.opened) as f64 / dt,
            messages_per_s: (c.messages - was.messages) as f64 / dt,
            errors: c.errors_total() - was.errors_total(),
            errors_by_class: ClassCounts::new(std::array::from_fn(|i| c.errors[i] - was.errors[i])),
            latency_us: PointLatency::of(&self.second_latency),
            rss_bytes: self.memory.rss_bytes,
            worker_rss_bytes: self.worker_rss,
        });
        let second = Second {
            start: self.second_from.saturating_duration_since(self.started),
            length,
            latency: std::mem::replace(&mut self.second_latency, new_histogram()),
        };
        self.second_from = now;
        self.second_totals = self.totals.clone();
        second
    }

    /// Connections open now, summed over shards.
    pub fn active(&self) -> u64 {
        self.active_sum
    }

    /// A client whose every connection was tried, and none is open or on its way: without
    /// --reconnect nothing more will happen.
    pub fn all_ended(&self) -> bool {
        let t = &self.totals;
        self.target > 0
            && t.opened + t.failed >= self.target
            && self.active_sum == 0
            && self.connecting.iter().all(|&c| c == 0)
    }

    /// The target changed mid-run (the console's `+` / `-`): the report shows the latest one.
    pub fn set_target(&mut self, target: u64) {
        self.target = target;
    }

    /// Server: `seq` was handed to these shards (global numbers); see [`Self::take_finished`].
    pub fn expect_broadcast(&mut self, seq: u64, shards: impl IntoIterator<Item = usize>) {
        self.ledger.expect(seq, shards);
    }

    /// Server: broadcasts every shard they were sent to has finished (or is gone), since the
    /// last call.
    pub fn take_finished(&mut self) -> Vec<ServerBroadcast> {
        self.ledger.take_finished()
    }

    /// Failure texts of classes not reported before, for a one-time log line each.
    pub fn take_new_error_samples(&mut self) -> Vec<(ErrorClass, String)> {
        std::mem::take(&mut self.new_samples)
    }

    /// Client: data messages received so far.
    pub fn received(&self) -> u64 {
        self.totals.messages
    }

    /// The whole-run latency histogram, e.g. for a final percentile table.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// The whole run's ping round trips (`--ping`).
    pub fn pong_rtt(&self) -> &Histogram<u64> {
        &self.pong_rtt
    }

    pub fn echo_rtt(&self) -> &Histogram<u64> {
        &self.echo_rtt
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
        let (seq, h) = self.ledger.newest_latency()?;
        Some(LastLatency {
            seq,
            latency: Latency::from_histogram(&h),
        })
    }

    fn snapshot_counts(&mut self, now: Instant) -> Snapshot {
        let c = &self.totals;
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
                churned: c.churned,
                peers: 0,
                refused: c.refused,
                ramp_s: self.ramp.seconds(),
                ramp_rate: self.ramp.rate(),
                tls_handshakes: c.tls_handshakes,
                tls_resumed: c.tls_resumed,
                compressed: c.deflate,
                compression_windows: c.deflate_windows,
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
            messages: self.messages(),
            latency_us: Latency::from_histogram(&self.latency),
            talk: Talk {
                sent: c.sent,
                heartbeats: c.heartbeats,
                replies: c.replies,
                pings: c.pings,
                pongs: c.pongs,
                echoed: c.echoed,
            },
            pong_rtt_us: Latency::from_histogram(&self.pong_rtt),
            echo_rtt_us: Latency::from_histogram(&self.echo_rtt),
            rates: Rates {
                setup: self.setup.snapshot(now),
                messages: self.messages.snapshot(now),
            },
            broadcasts: self
                .ledger
                .rows(self.mode, self.timestamps_are_broadcasts()),
            sources: self.source_rows(),
            peers: Vec::new(),
            latency_last: self.latency_last(),
            latency_buckets: buckets(&self.latency),
            latency_fixed: fixed_buckets(&self.latency),
            latency_spectrum: spectrum(&self.latency),
            bytes: Bytes {
                inbound: c.bytes_in,
                outbound: c.bytes_out,
                inflated: c.bytes_inflated,
            },
            workers: Vec::new(),
            series: self.history.points(),
            memory: self.memory.clone(),
        }
    }

    fn messages(&self) -> Messages {
        let c = &self.totals;
        let (missed, loss) = self.loss();
        let reset = ResetLoss {
            connections: c.reset_conns,
            unreceived: match loss.method {
                Loss::SEQ => Some(c.reset_unreceived),
                Loss::TIMESTAMPS => Some(c.reset_unreceived_ts),
                _ => None,
            },
        };
        match self.mode {
            Mode::Client => Messages {
                received: c.messages,
                missed,
                loss,
                unparsable: c.unparsable,
                duplicates: c.duplicates,
                skewed: c.skewed,
                ignored: c.ignored,
                // A protocol message (ignored) is worth showing only when something went
                // wrong: some messages were unreadable, or none was timed.
                sample: self
                    .sample
                    .clone()
                    .filter(|_| c.unparsable > 0 || self.latency.is_empty()),
                sent: 0,
                dropped: 0,
                reset,
            },
            Mode::Server => Messages {
                sent: c.messages,
                dropped: c.send_dropped,
                loss: Loss::not_measured(
                    "the server counts what it sent and dropped; the client counts what it missed",
                ),
                ..Messages::default()
            },
        }
    }

    /// Whether the messages numbered by their timestamps are broadcasts: each reached most of
    /// the connections open.
    fn timestamps_are_broadcasts(&self) -> bool {
        self.ledger
            .timestamp_reach()
            .is_some_and(|reach| reach >= BROADCAST_REACH)
    }

    /// Broadcasts missed, and how that was measured; never a loss that cannot be known.
    fn loss(&self) -> (Option<u64>, Loss) {
        let c = &self.totals;
        let by_seq = || {
            (
                Some(c.missed + self.missed_elsewhere()),
                Loss::measured(Loss::SEQ),
            )
        };
        if c.seq_messages > 0 {
            return by_seq();
        }
        if c.ts_messages > 0 {
            return self.loss_by_timestamps();
        }
        if c.seq_declared > 0 {
            // The server numbers its broadcasts (it said so at the upgrade), and none arrived.
            return by_seq();
        }
        let why = "no message carried a sequence number or a timestamp c1m could number";
        (None, Loss::not_measured(why))
    }

    fn loss_by_timestamps(&self) -> (Option<u64>, Loss) {
        match self.ledger.timestamp_reach() {
            Some(reach) if reach >= BROADCAST_REACH => (
                Some(self.totals.missed_ts),
                Loss::measured(Loss::TIMESTAMPS),
            ),
            reach => {
                let share = reach.map_or("none".into(), |r| format!("{:.0} %", r * 100.0));
                let why = format!(
                    "the messages carry no sequence number, and each timestamp reached {share} of \
                     the open connections (a broadcast reaches them all): the server pushes to \
                     each connection on its own, so a gap between two messages is no lost \
                     broadcast"
                );
                (None, Loss::not_measured(why))
            }
        }
    }

    /// Broadcasts that connections open at the end missed without their own process knowing:
    /// each shard charged its connections up to the last sequence number its process saw, and
    /// another process (a worker) may have seen later ones.
    fn missed_elsewhere(&self) -> u64 {
        let last = self.settled.iter().map(|s| s.cutoff).max().unwrap_or(0);
        self.settled
            .iter()
            .map(|s| s.open * last.saturating_sub(s.seen.max(s.cutoff)))
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

/// (upper bound, count) per power-of-two bucket, from 1 µs to the largest value recorded.
fn buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_log(1, 2.0)
        .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
        .collect()
}

/// Counts of `h` per bucket of [`super::prometheus_bounds`], and above the last bound.
fn fixed_buckets(h: &Histogram<u64>) -> Vec<u64> {
    if h.is_empty() {
        return Vec::new();
    }
    let bounds = super::prometheus_bounds();
    let mut out = vec![0; bounds.len() + 1];
    // One pass over what was recorded: every snapshot makes these, /metrics or not.
    for v in h.iter_recorded() {
        let bucket = bounds.partition_point(|&b| b < v.value_iterated_to());
        out[bucket] += v.count_at_value();
    }
    out
}

/// The percentile spectrum of `h`, as HdrHistogram's percentile distribution prints it (two
/// steps per halving of the distance to 100 %), ending at 100 %.
pub fn spectrum(h: &Histogram<u64>) -> Vec<SpectrumPoint> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<SpectrumPoint> = h
        .iter_quantiles(2)
        .map(|v| SpectrumPoint {
            percentile: v.quantile_iterated_to() * 100.0,
            value_us: v.value_iterated_to(),
        })
        .collect();
    points.dedup_by(|b, a| a.percentile == b.percentile);
    points
}

/// Adds `from` into `into` exactly, bucket by bucket.
fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    // `into` comes from new_histogram(), which auto-resizes, so add() can only fail if a value
    // exceeded u64 — impossible.
    into.add(from)
        .expect("an auto-resizing histogram accepts any u64 value");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{BroadcastPart, N_CLASSES};
    use std::time::Duration;

    fn delta(shard: usize) -> ShardDelta {
        ShardDelta::empty(shard)
    }

    fn part(seq: u64, count: u64, first_us: i64, last_us: i64) -> BroadcastPart {
        BroadcastPart {
            seq,
            count,
            dropped: 0,
            open: count,
            first_us,
            last_us,
            sent_ts_us: None,
            done: false,
            by_ts: false,
            bytes: 0,
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
        a.counters.seq_messages = 1;
        let settled = |cutoff, seen, open| Some(Settled { cutoff, seen, open });
        a.settled = settled(5, 5, 300);
        let mut b = delta(1);
        b.settled = settled(6, 6, 400);
        agg.apply(a, t0);
        agg.apply(b, t0);
        assert_eq!(agg.snapshot(t0).messages.missed, Some(2 + 300));
        // Had worker A seen seq 6 arrive in its last second, 6 might still have been on its
        // way to A's connections: they are not charged for it.
        let (mut late, t0) = client();
        let mut a = delta(0);
        a.counters.seq_messages = 1;
        a.settled = settled(5, 6, 300);
        let mut b = delta(1);
        b.settled = settled(6, 6, 400);
        late.apply(a, t0);
        late.apply(b, t0);
        assert_eq!(late.snapshot(t0).messages.missed, Some(0));
        // In one process every shard knows the same last number: nothing is added.
        let (mut one, t0) = client();
        for shard in 0..2 {
            let mut d = delta(shard);
            d.settled = Some(Settled {
                cutoff: 6,
                seen: 6,
                open: 100,
            });
            one.apply(d, t0);
        }
        assert_eq!(
            one.snapshot(t0).messages.missed,
            None,
            "no message, no measure"
        );
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
            d.counters.seq_messages = 95;
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
                missed: Some(9),
                loss: Loss::measured(Loss::SEQ),
                unparsable: 3,
                duplicates: 0,
                skewed: 12,
                ignored: 0,
                sample: None,
                sent: 0,
                dropped: 0,
                reset: ResetLoss {
                    connections: 0,
                    unreceived: Some(0)
                },
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
                outbound: 30,
                inflated: 0,
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
    fn a_shards_parts_add_up_and_only_its_first_brings_the_open_count() {
        let t0 = Instant::now();
        let mut agg = Aggregator::new(Mode::Server, 0, vec![], t0);
        // Shard 0 writes 10 then 15 more (of 25 open), shard 1 writes 5 then 3 (of 8).
        for (shard, count, open, last) in [
            (0, 10, 25, 150),
            (1, 5, 8, 120),
            (0, 15, 0, 300),
            (1, 3, 0, 180),
        ] {
            let mut d = delta(shard);
            let mut p = part(7, count, 100 + shard as i64, last);
            p.open = open;
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
                dropped: 4,
                open: 33,
                bytes: 0,
                duration_us: 200,
                first_us: 100,
                complete: true,
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
                open: 10,
                first_recv_us: 1_200,
                last_recv_us: 2_600,
                sent_ts_us: Some(1_000),
                delivery_us: Some(1_600),
                latency_us: None,
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
    fn each_second_closes_a_point_and_its_latencies() {
        let (mut agg, t0) = client();
        let mut d = delta(0);
        d.latency.record(42).unwrap();
        d.counters.opened = 30;
        d.counters.messages = 2;
        d.active = 30;
        agg.apply(d.clone(), t0);
        assert!(agg.tick(t0 + Duration::from_millis(500)).is_none());
        let second = agg.tick(t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(
            (second.latency.len(), second.length),
            (1, Duration::from_secs(2))
        );
        // A tick a hair early still closes its second: the next point is one second wide.
        let mut one = client().0;
        assert!(one.tick(one.started + Duration::from_millis(999)).is_some());
        let mut d2 = delta(0);
        d2.active = 30;
        agg.apply(d2, t0 + Duration::from_secs(2));
        let quiet = agg.tick(t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(
            (quiet.start, quiet.latency.len()),
            (Duration::from_secs(2), 0)
        );
        let series = agg.snapshot(t0 + Duration::from_secs(3)).series;
        assert_eq!(series.len(), 2);
        assert_eq!(
            (series[0].setup_per_s, series[0].messages_per_s),
            (15.0, 1.0)
        );
        assert_eq!(series[0].latency_us.unwrap().p99, 42);
        assert_eq!((series[1].open, series[1].target), (30, 100));
        assert!(
            series[1].latency_us.is_none(),
            "a second with nothing timed has no latency"
        );
        assert_eq!(agg.latency().len(), 1);
    }

    #[test]
    fn the_ramp_rate_is_the_first_ramps_not_the_runs() {
        let (mut agg, t0) = client();
        // 100 handshakes over one second reach the target of 100.
        for shard in 0..2 {
            let mut d = delta(shard);
            d.counters.opened = 50;
            d.active = 50;
            d.opens_us = Some((1_000_000, 2_000_000));
            agg.apply(d, t0);
        }
        // Nine seconds later `+` opens ten more: not part of the ramp.
        agg.set_target(110);
        let mut d = delta(0);
        d.counters.opened = 10;
        d.active = 60;
        d.opens_us = Some((11_000_000, 11_100_000));
        agg.apply(d, t0);
        let c = agg.snapshot(t0).connections;
        assert_eq!(c.ramp_s, Some(1.0));
        assert_eq!(c.ramp_rate, Some(99.0));
        assert_eq!(c.established, 110);
    }

    #[test]
    fn without_a_target_a_pause_ends_the_ramp() {
        let t0 = Instant::now();
        let mut agg = Aggregator::new(Mode::Server, 0, vec![], t0);
        for (first, last) in [
            (0, 1_000_000),
            (1_500_000, 2_000_000),
            (10_000_000, 10_500_000),
        ] {
            let mut d = delta(0);
            d.counters.opened = 100;
            d.opens_us = Some((first, last));
            agg.apply(d, t0);
        }
        let c = agg.snapshot(t0).connections;
        assert_eq!(c.ramp_s, Some(2.0));
        assert_eq!(c.ramp_rate, Some(199.0 / 2.0));
    }
}
