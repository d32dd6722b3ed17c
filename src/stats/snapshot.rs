//! What a run looks like at one moment: the [`Snapshot`] every face renders and the JSON
//! report serialises. `schema/report.schema.json` documents every field, and users' scripts
//! rely on the names.

use super::history::Point;
use super::meter::MeterSnapshot;
use super::{ErrorClass, Mode, N_CLASSES};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The merged state of a run at one moment. Serialised, this is the body of the JSON report
/// (`report::json` adds `version`, `config`, `ended_by` and `generated_at`).
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub mode: Mode,
    /// Seconds since the run started.
    pub elapsed_s: f64,
    pub connections: Connections,
    pub errors: Errors,
    pub messages: Messages,
    pub latency_us: Latency,
    /// Client: what it wrote besides the upgrade (--send, --heartbeat, --reply, --ping).
    pub talk: Talk,
    /// Client, --ping: round trips of WebSocket pings; `count` 0 without --ping.
    pub pong_rtt_us: Latency,
    /// Client: round trips of its `{rtt}` messages an echo server returned.
    pub echo_rtt_us: Latency,
    pub rates: Rates,
    /// Oldest first, at most 1,000 (the ledger keeps no more).
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
    /// The same histogram over fixed bounds (`stats::PROMETHEUS_BOUNDS_US`, then one above the
    /// last), counts per bucket: every process and agent gives the same buckets, so Prometheus
    /// can add them up (`/metrics`).
    #[serde(skip)]
    pub latency_fixed: Vec<u64>,
    /// The latency distribution as percentiles, for a spectrum with a log-scaled axis (the
    /// HdrHistogram plotter's): two points per halving of the tail, 0 % to 100 %.
    #[serde(rename = "latency_spectrum_us")]
    pub latency_spectrum: Vec<SpectrumPoint>,
    pub bytes: Bytes,
    /// One row per worker process when the run is split over several (`--workers`); empty
    /// when one process holds everything. Filled by the side that owns the workers.
    pub workers: Vec<WorkerRow>,
    /// One point a second from the start (coarser after an hour; see `stats::history`).
    pub series: Arc<Vec<Point>>,
    /// Resident memory, as the run layer reads it.
    pub memory: Memory,
}

/// One point of a latency spectrum: this percentile of the messages took at most `value_us`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SpectrumPoint {
    pub percentile: f64,
    pub value_us: u64,
}

/// What this side's processes hold in memory. Per connection is user memory only: the kernel's
/// socket buffers are in `c1m doctor` and BENCHMARKS.md.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Memory {
    /// Resident set now: this process and its worker processes, bytes.
    pub rss_bytes: Option<u64>,
    /// The largest `rss_bytes` seen.
    pub peak_rss_bytes: Option<u64>,
    /// This process's resident set when the run began: `per_conn_bytes` (and the HTML
    /// report's memory per connection over time) count growth over it.
    pub base_rss_bytes: u64,
    /// What the processes grew by since the run began (worker processes whole), per
    /// connection open, read when the most connections were open; `None` under 1,000.
    pub per_conn_bytes: Option<f64>,
    /// The connections open at that reading.
    pub per_conn_at: u64,
    /// A server and a client share this process (`c1m tui --mode local`): the figures are
    /// the process's, and per connection counts both sides' connections.
    pub shares_process: bool,
}

/// One worker process, as the parent sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerRow {
    pub index: usize,
    pub pid: u32,
    pub state: WorkerState,
    /// Connections open in this worker now.
    pub active: u64,
    /// Errors this worker counted over the run.
    pub errors: u64,
    /// Deltas (its shards' flushes) it sent the parent: the parent's work is per delta.
    pub deltas: u64,
    /// Its resident set, bytes (`None` once it has exited).
    pub rss_bytes: Option<u64>,
    /// CPU seconds it used, user and system, as it last reported (an agent's worker processes
    /// included).
    pub cpu_s: Option<f64>,
    /// The share of one core it used over its last report interval, % (`None` once it has
    /// exited).
    pub cpu_percent: Option<f64>,
    /// How it ended, e.g. "killed by signal 9", when it ended unasked.
    pub exit: Option<String>,
    /// A remote agent's (`--agents`): where it is and how its clock stands; `None` for a
    /// worker process on this machine.
    pub agent: Option<AgentRow>,
}

/// What the coordinator knows of one agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentRow {
    /// The address it was reached at, and the host name it gave.
    pub addr: String,
    pub host: String,
    /// How the coordinator's link to it went: `tls` (`--agent-ca`) or `tcp`.
    pub link: &'static str,
    /// Its clock ahead of the coordinator's, µs, from the lowest-delay exchange of the last
    /// few (NTP's offset); its latencies are taken on the coordinator's clock by this much.
    pub clock_offset_us: Option<i64>,
    /// Half that exchange's round trip, µs: the offset is right within this.
    pub clock_uncertainty_us: Option<u64>,
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
    /// Client with --churn: connections closed on purpose and replaced (in `closed`, never in
    /// errors).
    pub churned: u64,
    /// Server: distinct peer addresses with connections open now.
    pub peers: u64,
    /// Server: upgrades answered 503 because `--max-conns` connections were open.
    pub refused: u64,
    /// Seconds from the first to the last completed handshake: the ramp, when the run opened
    /// its connections once. `None` before the first.
    pub ramp_s: Option<f64>,
    /// Handshakes per second over `ramp_s` (the setup rate while ramping).
    pub ramp_rate: Option<f64>,
    /// Client, wss://: TLS handshakes completed, and how many resumed an earlier session.
    pub tls_handshakes: u64,
    pub tls_resumed: u64,
    /// Upgrades that agreed permessage-deflate.
    pub compressed: u64,
    /// Client: of those, connections keeping an inflate window of their own because the server
    /// keeps its compression context (`--compression context`, or a server that ignored
    /// `shared`'s server_no_context_takeover).
    pub compression_windows: u64,
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

/// Client fills received, missed, unparsable, skewed and the sample; server sent and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Messages {
    pub received: u64,
    /// Broadcasts missed; `None` when loss could not be measured (`loss` says why).
    pub missed: Option<u64>,
    /// How `missed` was measured.
    pub loss: Loss,
    pub unparsable: u64,
    /// Messages whose seq field the connection had had already: copies, not received again.
    pub duplicates: u64,
    pub skewed: u64,
    /// Messages with no time where --ts-path or --ts-regex said: protocol messages, not data
    /// (not in `received`).
    pub ignored: u64,
    /// The first payload c1m could not read (its first 200 bytes, escaped).
    pub sample: Option<String>,
    pub sent: u64,
    pub dropped: u64,
    /// Client: connections ended by a reset, and the copies lost with them.
    pub reset: ResetLoss,
}

/// Client: a connection reset mid-run takes with it whatever the kernel held for it, unseen.
/// For the accounting to close, a broadcast's copies are received, missed (a gap a connection
/// saw), or owed to a reset connection: the broadcasts this process had seen on other
/// connections, after the reset one's last message, before it ended. Those went out while it
/// was open; the server may or may not have written each to it, so this is at most the copies
/// lost, and never in `missed`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResetLoss {
    pub connections: u64,
    /// `None` when loss is not measured (`loss` says why).
    pub unreceived: Option<u64>,
}

/// Client: frames written besides the upgrade.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Talk {
    /// --send texts.
    pub sent: u64,
    pub heartbeats: u64,
    /// Messages answered by --reply.
    pub replies: u64,
    pub pings: u64,
    /// Pongs to c1m's pings (each timed in `pong_rtt_us`).
    pub pongs: u64,
    /// --echo: pushed messages written back.
    pub echoed: u64,
}

/// How loss was measured: from the `seq field` payloads carry, from `timestamps of a broadcast`
/// (each distinct timestamp numbered, when each reached most connections), or `not measured`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Loss {
    pub method: &'static str,
    /// Why it could not be measured.
    pub why: Option<String>,
}

impl Loss {
    pub const SEQ: &'static str = "seq field";
    pub const TIMESTAMPS: &'static str = "timestamps of a broadcast";
    pub const NOT_MEASURED: &'static str = "not measured";

    pub fn measured(method: &'static str) -> Loss {
        Loss { method, why: None }
    }

    pub fn not_measured(why: impl Into<String>) -> Loss {
        Loss {
            method: Loss::NOT_MEASURED,
            why: Some(why.into()),
        }
    }
}

/// A latency distribution in microseconds. Nothing timed reads as `count` 0 with every other
/// field `null` in JSON (and `—` on screen), never as a latency of 0.
#[derive(Clone, Debug, Default, PartialEq)]
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

impl Serialize for Latency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let timed = self.count > 0;
        let int = |v: u64| timed.then_some(v);
        let real = |v: f64| timed.then_some(v);
        let mut map = serializer.serialize_map(Some(12))?;
        map.serialize_entry("count", &self.count)?;
        map.serialize_entry("min", &int(self.min))?;
        map.serialize_entry("max", &int(self.max))?;
        map.serialize_entry("mean", &real(self.mean))?;
        map.serialize_entry("stddev", &real(self.stddev))?;
        for (key, v) in [
            ("p50", self.p50),
            ("p75", self.p75),
            ("p95", self.p95),
            ("p98", self.p98),
            ("p99", self.p99),
            ("p999", self.p999),
            ("p9999", self.p9999),
        ] {
            map.serialize_entry(key, &int(v))?;
        }
        map.end()
    }
}

impl Latency {
    /// Whether anything was timed.
    pub fn timed(&self) -> bool {
        self.count > 0
    }

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

/// One broadcast as the server saw it, summed over its shards (and worker processes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerBroadcast {
    pub seq: u64,
    /// Frames written.
    pub sent: u64,
    /// Frames that could not be queued (the peer had not taken the previous one).
    pub dropped: u64,
    /// Connections open when the broadcast began: what `sent` is measured against.
    pub open: u64,
    /// Frame bytes written (compressed where permessage-deflate was agreed, before TLS): the
    /// broadcast's size on the wire, headers included; bytes / sent is a frame's mean size.
    pub bytes: u64,
    /// Server loop time: last send finished − first send started, across shards (µs).
    pub duration_us: i64,
    /// First send, µs since the Unix epoch.
    pub first_us: i64,
    /// Every shard that was sent the broadcast has written it to all its connections.
    pub complete: bool,
}

/// One broadcast as this client saw it, summed over its shards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientBroadcast {
    pub seq: u64,
    pub received: u64,
    /// Connections open when the broadcast reached each shard (at its first message there):
    /// what `received` is measured against.
    pub open: u64,
    /// µs since the Unix epoch, client clock.
    pub first_recv_us: i64,
    pub last_recv_us: i64,
    /// The timestamp in the payload (server clock), if any message carried one.
    pub sent_ts_us: Option<i64>,
    /// last_recv_us − sent_ts_us: first send to last receive, when `sent_ts_us` is known.
    pub delivery_us: Option<i64>,
    /// The latency of this broadcast's messages; `None` when none was timed.
    pub latency_us: Option<BroadcastLatency>,
}

/// The latency of one broadcast's messages, µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BroadcastLatency {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl BroadcastLatency {
    pub fn of(h: &Histogram<u64>) -> Option<BroadcastLatency> {
        (!h.is_empty()).then(|| BroadcastLatency {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        })
    }
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
    /// Client: data message bytes, once inflated, on connections that agreed compression (0
    /// without); `in` is what crossed the wire.
    pub inflated: u64,
}
