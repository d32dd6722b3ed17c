//! Counters, histograms and meters. Each engine shard thread keeps its own counters and
//! histograms and touches only those on the per-message path; a few times a second it swaps them
//! out into a [`ShardDelta`] and sends it to the [`aggregate::Aggregator`], which merges deltas
//! into an [`aggregate::Snapshot`] and keeps the run's history (`history`). Every face renders
//! snapshots: the status line, the console, the reports and the control endpoint.

pub mod aggregate;
pub mod hdr_serde;
pub mod hdrlog;
pub mod history;
mod ledger;
pub mod meter;
pub mod report;
pub mod snapshot;

pub use snapshot::*;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::io;

/// Why a connection failed or ended abnormally. The names are the JSON keys in `errors.by_class`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// connect() got ECONNREFUSED: nothing listens, or the backlog overflowed.
    Refused,
    /// connect or handshake did not finish in time.
    Timeout,
    /// EADDRNOTAVAIL from connect(): the source address ran out of ephemeral ports.
    AddrNotAvail,
    /// EMFILE / ENFILE: the process or system fd limit.
    FdLimit,
    /// The server answered the upgrade with something other than 101.
    HandshakeRejected,
    /// A malformed handshake (server: bad request from a client; client: bad 101 response).
    HandshakeFailed,
    /// ECONNRESET / EPIPE on an established connection.
    Reset,
    /// The server closed an established connection (close frame or EOF).
    ClosedByServer,
    /// The peer broke the WebSocket framing rules.
    Protocol,
    /// bind() of the source address failed, e.g. EADDRNOTAVAIL for an address that is not
    /// configured on this machine.
    Bind,
    /// Anything else; the report keeps the count, `errors.samples` the first text.
    Other,
    /// Connections that were open in a worker process when it died: one per connection.
    WorkerDied,
    /// Server, `--slow-policy close`: a connection closed because it took none of
    /// `--slow-close-after` broadcasts in a row.
    SlowConsumer,
    /// TLS: the server's certificate chains to no trusted root (`--ca` adds one).
    TlsUnknownIssuer,
    /// TLS: the certificate does not name the URL's host.
    TlsNameMismatch,
    /// TLS: the certificate is expired or not yet valid.
    TlsExpired,
    /// TLS: no common protocol version or cipher suite.
    TlsVersion,
    /// TLS: any other handshake failure (an alert, a refused certificate, a malformed record).
    TlsHandshake,
    /// Connections that were open on an agent (`--agents`) when the coordinator lost it: one
    /// per connection.
    AgentLost,
}

pub const N_CLASSES: usize = 19;

impl ErrorClass {
    pub const ALL: [ErrorClass; N_CLASSES] = [
        ErrorClass::Refused,
        ErrorClass::Timeout,
        ErrorClass::AddrNotAvail,
        ErrorClass::FdLimit,
        ErrorClass::HandshakeRejected,
        ErrorClass::HandshakeFailed,
        ErrorClass::Reset,
        ErrorClass::ClosedByServer,
        ErrorClass::Protocol,
        ErrorClass::Bind,
        ErrorClass::Other,
        ErrorClass::WorkerDied,
        ErrorClass::SlowConsumer,
        ErrorClass::TlsUnknownIssuer,
        ErrorClass::TlsNameMismatch,
        ErrorClass::TlsExpired,
        ErrorClass::TlsVersion,
        ErrorClass::TlsHandshake,
        ErrorClass::AgentLost,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Refused => "refused",
            ErrorClass::Timeout => "timeout",
            ErrorClass::AddrNotAvail => "addr_not_avail",
            ErrorClass::FdLimit => "fd_limit",
            ErrorClass::HandshakeRejected => "handshake_rejected",
            ErrorClass::HandshakeFailed => "handshake_failed",
            ErrorClass::Reset => "reset",
            ErrorClass::ClosedByServer => "closed_by_server",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Bind => "bind",
            ErrorClass::Other => "other",
            ErrorClass::WorkerDied => "worker_died",
            ErrorClass::SlowConsumer => "slow_consumer",
            ErrorClass::TlsUnknownIssuer => "tls_unknown_issuer",
            ErrorClass::TlsNameMismatch => "tls_name_mismatch",
            ErrorClass::TlsExpired => "tls_expired",
            ErrorClass::TlsVersion => "tls_version",
            ErrorClass::TlsHandshake => "tls_handshake",
            ErrorClass::AgentLost => "agent_lost",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Classifies an I/O error from connect, accept, read or write.
    pub fn from_io(err: &io::Error) -> ErrorClass {
        match err.raw_os_error() {
            Some(libc::ECONNREFUSED) => ErrorClass::Refused,
            Some(libc::ETIMEDOUT) => ErrorClass::Timeout,
            Some(libc::EADDRNOTAVAIL) => ErrorClass::AddrNotAvail,
            Some(libc::EMFILE) | Some(libc::ENFILE) => ErrorClass::FdLimit,
            Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ECONNABORTED) => {
                ErrorClass::Reset
            }
            _ => match err.kind() {
                io::ErrorKind::TimedOut => ErrorClass::Timeout,
                io::ErrorKind::UnexpectedEof => ErrorClass::ClosedByServer,
                _ => ErrorClass::Other,
            },
        }
    }
}

/// Plain counters a shard accumulates between two flushes. Only the owning thread writes them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Connections that completed the WebSocket handshake.
    pub opened: u64,
    /// Established connections that ended (for any reason, errors included).
    pub closed: u64,
    /// Connection attempts that never completed the handshake (each also counted in `errors`).
    pub failed: u64,
    /// Failures by [`ErrorClass::index`]: connect/handshake failures and abnormal ends.
    pub errors: [u64; N_CLASSES],
    /// Data messages received (client) or broadcast frames written (server).
    pub messages: u64,
    /// Client: broadcasts missed, from gaps in the sequence numbers payloads carried.
    pub missed: u64,
    /// Client: gaps in the numbers given to distinct timestamps; losses only if those
    /// messages are broadcasts, which the aggregator judges.
    #[serde(default)]
    pub missed_ts: u64,
    /// Client: messages whose payload carried a sequence number.
    #[serde(default)]
    pub seq_messages: u64,
    /// Client: upgrades in which the server declared its last sequence number (c1m's
    /// X-C1m-Seq): its broadcasts are numbered, whether or not one arrives.
    #[serde(default)]
    pub seq_declared: u64,
    /// Client: messages numbered by their timestamp (no sequence number in the payload).
    #[serde(default)]
    pub ts_messages: u64,
    /// Client: messages whose payload held no timestamp c1m can read.
    pub unparsable: u64,
    /// Client: messages whose seq field a connection had already received (not in
    /// `messages`, never timed).
    #[serde(default)]
    pub duplicates: u64,
    /// Client: messages whose timestamp lies in the future (negative latency): not recorded.
    pub skewed: u64,
    /// Client: messages without a time where --ts-path or --ts-regex said (protocol
    /// messages: acks, pings, welcomes); not data, not in `messages`.
    #[serde(default)]
    pub ignored: u64,
    /// Client: frames written for --send, --heartbeat and --reply, and pings and pongs for --ping.
    #[serde(default)]
    pub sent: u64,
    #[serde(default)]
    pub heartbeats: u64,
    #[serde(default)]
    pub replies: u64,
    #[serde(default)]
    pub pings: u64,
    #[serde(default)]
    pub pongs: u64,
    /// Client, --echo: pushed messages written back.
    #[serde(default)]
    pub echoed: u64,
    /// Client, wss://: TLS handshakes completed (with the upgrade), and how many of them
    /// resumed an earlier session.
    #[serde(default)]
    pub tls_handshakes: u64,
    #[serde(default)]
    pub tls_resumed: u64,
    /// Upgrades that agreed permessage-deflate.
    #[serde(default)]
    pub deflate: u64,
    /// Client: of those, connections whose server keeps its compression window, so each keeps
    /// an inflate window of its own (≈ 40 KiB).
    #[serde(default)]
    pub deflate_windows: u64,
    /// Client: data message bytes, after inflating, on connections that agreed compression
    /// (compare with `bytes_in`, what crossed the wire).
    #[serde(default)]
    pub bytes_inflated: u64,
    /// Server: broadcast frames that could not be queued because the peer stopped reading.
    pub send_dropped: u64,
    /// Server: upgrades answered 503 because `--max-conns` connections were open. Not errors:
    /// the server did what it was told (the client counts `handshake_rejected`).
    #[serde(default)]
    pub refused: u64,
    /// Client with --reconnect: lost connections and failed attempts scheduled to be retried.
    #[serde(default)]
    pub reconnects: u64,
    /// Client with --churn: connections closed on purpose (each replaced).
    #[serde(default)]
    pub churned: u64,
    /// Client: established connections that ended by a reset mid-run (the kernel throws away
    /// what it held for them), and the broadcasts this process had seen that they never got,
    /// numbered by seq field and by timestamp: copies that are neither received nor missed.
    #[serde(default)]
    pub reset_conns: u64,
    #[serde(default)]
    pub reset_unreceived: u64,
    #[serde(default)]
    pub reset_unreceived_ts: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Counters {
    pub fn error(&mut self, class: ErrorClass) {
        self.errors[class.index()] += 1;
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn add(&mut self, other: &Counters) {
        self.opened += other.opened;
        self.closed += other.closed;
        self.failed += other.failed;
        for (a, b) in self.errors.iter_mut().zip(other.errors.iter()) {
            *a += b;
        }
        self.messages += other.messages;
        self.missed += other.missed;
        self.missed_ts += other.missed_ts;
        self.seq_messages += other.seq_messages;
        self.seq_declared += other.seq_declared;
        self.ts_messages += other.ts_messages;
        self.unparsable += other.unparsable;
        self.duplicates += other.duplicates;
        self.skewed += other.skewed;
        self.ignored += other.ignored;
        self.sent += other.sent;
        self.heartbeats += other.heartbeats;
        self.replies += other.replies;
        self.pings += other.pings;
        self.pongs += other.pongs;
        self.echoed += other.echoed;
        self.tls_handshakes += other.tls_handshakes;
        self.tls_resumed += other.tls_resumed;
        self.deflate += other.deflate;
        self.deflate_windows += other.deflate_windows;
        self.bytes_inflated += other.bytes_inflated;
        self.send_dropped += other.send_dropped;
        self.refused += other.refused;
        self.reconnects += other.reconnects;
        self.churned += other.churned;
        self.reset_conns += other.reset_conns;
        self.reset_unreceived += other.reset_unreceived;
        self.reset_unreceived_ts += other.reset_unreceived_ts;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
    }
}

/// One shard's share of one broadcast: the one description of a broadcast's progress, from a
/// shard to the aggregator, in one process or through a worker's pipe. The aggregator sums the
/// parts of a sequence number into its report row ([`ServerBroadcast`] or [`ClientBroadcast`]).
///
/// A shard reports a broadcast in as many parts as it likes, each a delta: the counts (`count`,
/// `dropped`, `open`, `bytes`) are what changed since its last part for that seq, so they add;
/// the times are the extremes so far, so they take min and max. Summing needs no memory per
/// shard, and a part that comes late still counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastPart {
    pub seq: u64,
    /// Server: frames written. Client: messages received with this sequence number.
    pub count: u64,
    /// Server: frames that could not be queued.
    pub dropped: u64,
    /// Connections this shard held open when the broadcast reached it (server: when it began
    /// writing; client: at its first message of this seq): the part's whole, carried by the
    /// shard's first part for the seq only.
    #[serde(default)]
    pub open: u64,
    /// Microseconds since the Unix epoch. Server: first send. Client: first receive.
    pub first_us: i64,
    /// Server: last send finished. Client: last receive.
    pub last_us: i64,
    /// Client: the send timestamp carried in the payload (server's clock), when there is one.
    pub sent_ts_us: Option<i64>,
    /// Server: the shard has written to every connection; this part is final.
    #[serde(default)]
    pub done: bool,
    /// Client: the seq was given to the payload's timestamp (no sequence number in it).
    #[serde(default)]
    pub by_ts: bool,
    /// Server: frame bytes written (compressed where agreed, before TLS).
    #[serde(default)]
    pub bytes: u64,
}

impl BroadcastPart {
    /// This part so far as a delta on what its shard already told of it: `told` = (count,
    /// dropped) in earlier parts, `None` before the first, which alone carries `open`.
    pub fn since(&self, told: Option<(u64, u64)>) -> BroadcastPart {
        let (count, dropped) = told.unwrap_or_default();
        BroadcastPart {
            count: self.count - count,
            dropped: self.dropped - dropped,
            open: if told.is_none() { self.open } else { 0 },
            ..self.clone()
        }
    }
}

/// A client shard's end-of-run charge: its process's `cutoff` (the newest sequence number seen
/// at least a second before the end: later ones may still be arriving), the newest it `seen`
/// at all, and the `open` connections whose last number was at or below the cutoff, charged
/// up to it. Those are charged by the aggregator for numbers past both, that another process
/// judged old enough: never for one their own process may have seen still arriving.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    pub cutoff: u64,
    pub seen: u64,
    pub open: u64,
}

/// The bounds of `/metrics`' latency histogram, µs: four to an octave (each 19 % above the
/// last) from 64 µs to about 134 s. Fixed, so every process's and agent's buckets add up.
pub fn prometheus_bounds() -> &'static [u64] {
    static BOUNDS: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    BOUNDS.get_or_init(|| {
        (0..=84)
            .map(|k| (64.0 * 2f64.powf(f64::from(k) / 4.0)).round() as u64)
            .collect()
    })
}

/// Histogram of latencies in microseconds, 3 significant digits, auto-resizing.
pub fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).expect("3 significant figures is valid");
    h.auto(true);
    h
}

/// What a shard hands to the aggregator. Counters are deltas since the previous flush;
/// `active` is the shard's current gauge.
///
/// Worker processes send theirs to the parent as JSON (`workers::wire`), histograms in
/// HdrHistogram's V2 serialized form, so the parent's merge is as exact as an in-process one.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardDelta {
    pub shard: usize,
    pub counters: Counters,
    /// Latencies recorded since the previous flush (µs).
    #[serde(
        default = "new_histogram",
        skip_serializing_if = "hdr_serde::histogram::is_empty",
        with = "hdr_serde::histogram"
    )]
    pub latency: Histogram<u64>,
    /// Client, --ping: pong round trips recorded since the previous flush (µs).
    #[serde(
        default = "new_histogram",
        skip_serializing_if = "hdr_serde::histogram::is_empty",
        with = "hdr_serde::histogram"
    )]
    pub pong_rtt: Histogram<u64>,
    /// Client: round trips of its own `{rtt}` messages an echo server returned (µs).
    #[serde(
        default = "new_histogram",
        skip_serializing_if = "hdr_serde::histogram::is_empty",
        with = "hdr_serde::histogram"
    )]
    pub echo_rtt: Histogram<u64>,
    /// Connections open in this shard now.
    pub active: u64,
    /// When the first and the last handshake of this delta completed (µs since the epoch), so
    /// the ramp's duration is known to the microsecond rather than to the flush interval.
    pub opens_us: Option<(i64, i64)>,
    /// Client only: per source address (index into the source list): handshakes completed and
    /// failures since the previous flush.
    pub per_source: Vec<SourceDelta>,
    /// The first failure text of each class this shard has seen, sent once.
    pub error_samples: Vec<(ErrorClass, String)>,
    /// Client: connects and handshakes in flight now (a gauge).
    pub connecting: u64,
    /// Server: connections open per peer address now, sent when it changed.
    pub peers: Option<Vec<(std::net::IpAddr, u64)>>,
    /// Client: the latency histograms of the broadcasts this shard received since the
    /// previous flush, (seq, histogram), each cumulative for its seq, oldest first: the part of
    /// an older seq is final once a newer one follows it.
    #[serde(default, with = "hdr_serde::latencies")]
    pub latencies: Vec<(u64, Histogram<u64>)>,
    /// Broadcast parts finished or updated since the previous flush. A part for the same seq may
    /// arrive again with a larger count; the aggregator merges them.
    pub broadcasts: Vec<BroadcastPart>,
    /// Client, once, at the end: how this shard charged its open connections (see
    /// [`Settled`]). A worker process knows only its own numbers, so the aggregator charges
    /// those connections for later broadcasts another worker saw.
    #[serde(default)]
    pub settled: Option<Settled>,
    /// Client, once: the first payload this shard could not read (its first 200 bytes,
    /// escaped), for the user to see where the time is.
    #[serde(default)]
    pub sample: Option<String>,
    /// This shard is gone (its worker process died): nothing more will come from it, so no
    /// broadcast waits for its part.
    #[serde(default)]
    pub gone: bool,
    /// Server: this shard's process has just reached the number of sockets it may hold
    /// (`ServerConfig::full_at`), so a growing server steers new connections elsewhere.
    #[serde(default)]
    pub full: bool,
}

impl ShardDelta {
    /// A delta with nothing in it, for struct-update syntax.
    pub fn empty(shard: usize) -> ShardDelta {
        ShardDelta {
            shard,
            counters: Counters::default(),
            latency: new_histogram(),
            pong_rtt: new_histogram(),
            echo_rtt: new_histogram(),
            active: 0,
            opens_us: None,
            per_source: Vec::new(),
            error_samples: Vec::new(),
            connecting: 0,
            peers: None,
            latencies: Vec::new(),
            broadcasts: Vec::new(),
            settled: None,
            sample: None,
            gone: false,
            full: false,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceDelta {
    pub source: usize,
    pub opened: u64,
    pub closed: u64,
    pub errors: u64,
}

/// Which side a snapshot describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Server,
    Client,
}
