//! The load client: shards open their share of the target at their share of the rate, each
//! from the source addresses in turn, and measure every message's latency in a per-shard HDR
//! histogram. A connection keeps a one-pointer frame decoder and the last sequence number it
//! saw; gaps in that sequence are the broadcasts it missed.

use super::backlog::{Backlog, Flushed};
use super::budget::{CLIENT_LIMITS, HANDSHAKE_INITIAL, SCRATCH};
use super::churn::Churn;
use super::farewell::Farewell;
use super::talk::{Script, Sweep, TalkSpec};
use super::tls::{Tls, TlsSpec};
use super::transport::{Read, Transport};
use super::uring::{Got, RecvRing};
use super::{
    Cause, ErrorSamples, FLUSH_EVERY, Failure, RING_TOKEN, ShardCtl, ShardIo, WAKER_TOKEN, now_us,
    read_head, shard_channel,
};
use crate::proto::deflate::{self, Agreed, Inflate, Offer, Window};
use crate::proto::frame::{self, Decoder, Event, OP_BINARY, OP_CLOSE, OP_PONG, OP_TEXT, Role};
use crate::proto::handshake::{self, HandshakeError};
use crate::proto::reader::{Reader, ReaderSpec};
use crate::proto::template;
use crate::stats::{
    BroadcastPart, Counters, ErrorClass, Settled, ShardDelta, SourceDelta, new_histogram,
};
use anyhow::Result;
use hdrhistogram::Histogram;
use mio::{Events, Interest, Token};
use slab::Slab;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ClientConfig {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header and request path, from the URL.
    pub host: String,
    pub path: String,
    pub conns: u64,
    /// New connections per second over all shards; 0 = as fast as the in-flight bound allows.
    pub rate: f64,
    /// Round-robin source addresses; `None` lets the kernel choose.
    pub sources: Vec<Option<IpAddr>>,
    /// Connects and handshakes in flight at once, over all shards.
    pub max_inflight: usize,
    pub connect_timeout: Duration,
    pub shards: usize,
    /// After a poll that returned a burst, wait this long before the next (0 = never).
    pub batch_window: Duration,
    /// Reopen connections the server closed or reset, and retry failed attempts, after a
    /// backoff that doubles up to this bound, with full jitter; `None` = never.
    #[serde(default)]
    pub reconnect: Option<Duration>,
    /// Extra upgrade headers, each `Name: value` (checked by the CLI).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Subprotocols to offer, in order of preference; the server must choose one.
    #[serde(default)]
    pub subprotocols: Vec<String>,
    /// `wss://`: TLS over every connection.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// What to send, on which timer, and what to answer.
    #[serde(default)]
    pub talk: TalkSpec,
    /// Where the messages keep their time.
    #[serde(default)]
    pub reader: ReaderSpec,
    /// `--compression`: the permessage-deflate offer.
    #[serde(default)]
    pub compression: Offer,
    /// `--max-message`: the largest frame and message taken from the server.
    #[serde(default)]
    pub max_message: Option<u64>,
    /// `--echo`: every pushed message written back, whole.
    #[serde(default)]
    pub echo: bool,
    /// `--churn`: the share of open connections closed and reopened every second (0 = none).
    #[serde(default)]
    pub churn: f64,
    /// `--io-uring`: open connections receive through a multishot receive in the shard's
    /// io_uring instead of epoll and read().
    #[serde(default)]
    pub io_uring: bool,
}

/// The header lines every upgrade request carries after c1m's own, CRLF-terminated: the
/// user's headers, c1m's User-Agent unless they gave one, and the subprotocols offered.
fn extra_head(headers: &[String], subprotocols: &[String], offer: Offer) -> Vec<u8> {
    let mut out = Vec::new();
    for h in headers {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let named = |h: &String| {
        h.split(':')
            .next()
            .is_some_and(|n| n.eq_ignore_ascii_case("User-Agent"))
    };
    if !headers.iter().any(named) {
        out.extend_from_slice(handshake::USER_AGENT_LINE);
    }
    if !subprotocols.is_empty() {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(subprotocols.join(", ").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(value) = offer.header_value() {
        out.extend_from_slice(format!("{}: {value}\r\n", deflate::HEADER).as_bytes());
    }
    out
}

/// A timestamp further in the past than this is a clock (or a server sending some other
/// number), not a delivery time: a message that old would have outlived any TCP connection.
/// It is counted as skewed, like one from the future, and kept out of the histogram.
const MAX_PLAUSIBLE_LATENCY_US: i64 = 3_600_000_000;

/// Bytes of the first unparsable payload, or of a rejection's body, kept to show the user.
const SAMPLE_BYTES: usize = 200;

const TLS_ANSWER: &str = "the server answered with TLS (its first bytes are a TLS record): it \
    wants wss://";

const CLOSED_AT_ROOT: &str = "the server closed the connection before answering the upgrade at \
    path /; servers often serve WebSockets on a path of their own: \
    /socket.io/?EIO=4&transport=websocket (Socket.IO), /graphql, /ws, /cable (Action Cable), \
    /connection/websocket (Centrifugo), /socket/websocket (Phoenix)";

const CLOSED: &str = "the server closed the connection before answering the upgrade";

/// Said after a close before the answer over plain TCP: a TLS server given plain HTTP often
/// closes without a word (Python's ssl module does).
const MAYBE_TLS: &str = "; a TLS port closes like this too: if it serves TLS, use wss://";

/// Whether the server's `Sec-WebSocket-Protocol` answer (`chosen`) agrees with the offer.
/// RFC 6455 fails a protocol that was not offered; c1m also fails none chosen when some were
/// offered, since a server that speaks none of them will not speak the run's protocol either.
fn protocol_agreed(offered: &[String], chosen: Option<&[u8]>) -> bool {
    match chosen {
        None => offered.is_empty(),
        Some(p) => offered.iter().any(|o| o.as_bytes() == p),
    }
}

fn protocol_mismatch(offered: &[String], chosen: Option<&[u8]>) -> String {
    let offer = match offered.is_empty() {
        true => "none was offered".to_string(),
        false => format!("offered: {}", offered.join(", ")),
    };
    match chosen {
        None => format!("the server chose no subprotocol ({offer})"),
        Some(p) => format!(
            "the server chose subprotocol \"{}\" ({offer})",
            p.escape_ascii()
        ),
    }
}

/// Whether `buf` starts like a TLS record (an alert or a handshake, TLS 1.0–1.3): what a TLS
/// server answers to a plain HTTP request.
fn looks_like_tls(buf: &[u8]) -> bool {
    matches!(buf, [0x15 | 0x16, 0x03, ..])
}

/// Why an upgrade failed, as the user should read it: `None` when the server closed before
/// answering. A detailed text is built only for a failure that will be shown.
fn upgrade_failure(
    e: Option<HandshakeError>,
    buf: &[u8],
    (path, over_tls): (&str, bool),
    samples: &ErrorSamples,
) -> Failure {
    let class = match e {
        Some(HandshakeError::Rejected(_)) => ErrorClass::HandshakeRejected,
        _ => ErrorClass::HandshakeFailed,
    };
    let cause = match e {
        _ if looks_like_tls(buf) => Cause::Msg(TLS_ANSWER),
        None if samples.wants(class) => {
            let at_root = if path == "/" { CLOSED_AT_ROOT } else { CLOSED };
            let tls = if over_tls { "" } else { MAYBE_TLS };
            Cause::Text(format!("{at_root}{tls}"))
        }
        None => Cause::Msg(CLOSED),
        Some(HandshakeError::Rejected(_)) if samples.wants(class) => Cause::Text(rejection(buf)),
        Some(e) => Cause::Handshake(e),
    };
    Failure { class, cause }
}

/// A connection whose TCP stream ended before any close frame.
fn closed_without_frame() -> Failure {
    Failure::msg(
        ErrorClass::ClosedByServer,
        "the server closed the connection without a close frame",
    )
}

/// A close frame with its reason text (at most 123 bytes, by RFC 6455).
fn close_reason(code: Option<u16>, reason: &[u8]) -> String {
    let code = code.map_or(String::new(), |c| format!("{c}: "));
    format!(
        "the peer sent a close frame ({code}\"{}\")",
        reason.escape_ascii()
    )
}

/// A rejected upgrade as the user should read it: the status line, and the first bytes of the
/// body that arrived with it (the server's reason, often).
fn rejection(buf: &[u8]) -> String {
    let line_end = buf
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(buf.len());
    let status = String::from_utf8_lossy(&buf[..line_end]);
    let body = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| &buf[i + 4..])
        .unwrap_or_default();
    let body = &body[..body.len().min(SAMPLE_BYTES)];
    match body.is_empty() {
        true => format!("the server answered \"{status}\" instead of 101 Switching Protocols"),
        false => format!(
            "the server answered \"{status}\" instead of 101 Switching Protocols: \"{}\"",
            body.trim_ascii().escape_ascii()
        ),
    }
}

/// The first reconnect backoff; it doubles per failure in a row up to the configured bound.
const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// How often heartbeats and pings are handed out, each time to the connections whose turn it
/// is: fine enough that an interval's load is spread, coarse enough to cost nothing idle.
const SWEEP_EVERY: Duration = Duration::from_millis(50);

const NOT_READING: &str = "the server is not reading: a message c1m had to send (--send, \
    --heartbeat, --reply or a pong) did not fit in the connection's socket buffer";

#[derive(Clone, Copy)]
enum Timed {
    Heartbeat,
    Ping,
}

/// A poll returning at least this many events counts as a burst for `batch_window`. Two, not
/// more: a client that the scheduler favours (e.g. in its own session's autogroup) is woken
/// for nearly every message, and then sees only a few sockets ready per poll even mid-burst.
const BATCH_MIN_EVENTS: usize = 2;

enum Cmd {
    /// This shard's share of a new total target.
    Target(u64),
    /// This shard's share of a new total rate (0 = unlimited).
    Rate(f64),
    Paused(bool),
    Stop,
}

/// Sequence numbers shared by the shards: the highest a payload carried, and for payloads
/// that carry only a timestamp, the number given to each distinct timestamp (one per broadcast,
/// if they are broadcasts: the aggregator judges that from how many connections each reached).
#[derive(Default)]
pub(crate) struct Sequences {
    max: AtomicU64,
    ts_max: AtomicU64,
    /// (timestamp, its number, when this process first saw it).
    by_ts: Mutex<VecDeque<(i64, u64, Instant)>>,
    /// The newest sequence numbers a payload carried, each with when it was first seen.
    firsts: Mutex<VecDeque<(u64, Instant)>>,
    /// The end-of-run cutoffs, taken once for every shard of the process, so that none
    /// charges what another judged still arriving.
    cutoffs: Mutex<Option<(u64, u64)>>,
}

/// A broadcast first seen less than this before the end of a run may still be on its way to
/// the connections that lack it (a server writes to one connection after another, and a slow
/// one takes a while): nobody is charged for it at the end. A gap before a later broadcast is
/// still a miss, whenever it happens.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(1);

/// How many recent numbers keep their first sighting.
const FIRSTS_KEPT: usize = 1024;

/// The highest number in `seen` (number, first seen) that is at least `IN_FLIGHT_GRACE` old at
/// `now`; when every kept one is younger, the one before the oldest kept if older ones were
/// let go, else none (0).
fn settled_max(
    seen: impl DoubleEndedIterator<Item = (u64, Instant)>,
    full: bool,
    now: Instant,
) -> u64 {
    let mut oldest = None;
    for (seq, at) in seen.rev() {
        if at + IN_FLIGHT_GRACE <= now {
            return seq;
        }
        oldest = Some(seq);
    }
    match (full, oldest) {
        (true, Some(seq)) => seq.saturating_sub(1),
        _ => 0,
    }
}

/// A connection's last sequence number before its first message: nothing before it is known,
/// so nothing before it is charged as missed.
const NO_BASELINE: u64 = u64::MAX;
/// Marks a connection's last number as one given to a timestamp, not carried by the payload.
const BY_TS: u64 = 1 << 63;

impl Sequences {
    /// Taken once per new number per shard, not per message.
    fn observe(&self, seq: u64) {
        // Every message comes here: the shards share a number that changes once a broadcast,
        // and only the first copy of a new one takes the lock (the shards of a process receive
        // each broadcast at the same moment, and locked each copy in turn before).
        if seq <= self.max.load(Ordering::Relaxed)
            || seq <= self.max.fetch_max(seq, Ordering::Relaxed)
        {
            return;
        }
        let mut firsts = self.firsts.lock().unwrap_or_else(|p| p.into_inner());
        if firsts.back().is_none_or(|&(last, _)| seq > last) {
            firsts.push_back((seq, Instant::now()));
            if firsts.len() > FIRSTS_KEPT {
                firsts.pop_front();
            }
        }
    }

    /// The numbers (seq field, given to timestamps) a connection still open at the end is
    /// charged up to: what this process saw, less broadcasts that may still be arriving.
    fn settled(&self, now: Instant) -> (u64, u64) {
        let mut cutoffs = self.cutoffs.lock().unwrap_or_else(|p| p.into_inner());
        *cutoffs.get_or_insert_with(|| self.cutoffs_at(now))
    }

    fn cutoffs_at(&self, now: Instant) -> (u64, u64) {
        let firsts = self.firsts.lock().unwrap_or_else(|p| p.into_inner());
        let seq = settled_max(firsts.iter().copied(), firsts.len() == FIRSTS_KEPT, now);
        let by_ts = self.by_ts.lock().unwrap_or_else(|p| p.into_inner());
        let full = by_ts.len() == FIRSTS_KEPT;
        let ts = settled_max(by_ts.iter().map(|&(_, n, at)| (n, at)), full, now);
        (seq, ts)
    }

    /// A new connection's upgrade said the server's last broadcast was `seq`. Below what was
    /// seen before, the server has started over (a restart behind --reconnect): its numbers
    /// count from there, or every reconnected connection would be charged for the old ones.
    fn baseline(&self, seq: u64) {
        if seq < self.max.load(Ordering::Relaxed) {
            self.max.store(seq, Ordering::Relaxed);
            self.ts_max.store(0, Ordering::Relaxed);
            self.by_ts.lock().unwrap_or_else(|p| p.into_inner()).clear();
            self.firsts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        } else {
            self.observe(seq);
        }
    }

    /// Taken once per broadcast per shard (the shard caches the latest answer), not per message.
    fn for_timestamp(&self, ts: i64) -> Option<u64> {
        let mut map = self.by_ts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&(_, seq, _)) = map.iter().rev().find(|(t, ..)| *t == ts) {
            return Some(seq);
        }
        if map.back().is_some_and(|&(t, ..)| ts < t) {
            // An older broadcast nobody saw before: it cannot be numbered after the fact.
            return None;
        }
        let seq = self.ts_max.fetch_add(1, Ordering::Relaxed) + 1;
        map.push_back((ts, seq, Instant::now()));
        if map.len() > FIRSTS_KEPT {
            map.pop_front();
        }
        Some(seq)
    }
}

/// Checks what `Client::start` would refuse (a bad --ts-regex or --ts-path, an unreadable
/// --tokens file), before anything starts.
pub fn check(cfg: &ClientConfig) -> Result<()> {
    if cfg.io_uring {
        if cfg.tls.is_some() {
            anyhow::bail!(
                "--io-uring receives over plain ws:// only: TLS records are decrypted from \
                 epoll-driven reads (drop --io-uring for wss://)"
            );
        }
        // Each shard makes its own ring on its own thread; this one only asks the kernel.
        RecvRing::new().map_err(|e| {
            anyhow::anyhow!(
                "--io-uring: io_uring_setup: {e} (the client's receives need Linux 6.1 or \
                 later, and io_uring not refused by kernel.io_uring_disabled)"
            )
        })?;
    }
    Shared::new(cfg).map(drop)
}

/// Shard `id`'s part of `total` split over `n` shards.
pub fn share(total: u64, n: u64, id: u64) -> u64 {
    total / n + u64::from(id < total % n)
}

pub struct Client {
    ctls: Vec<ShardCtl<Cmd>>,
    threads: Vec<JoinHandle<()>>,
    clock: Arc<AtomicI64>,
}

impl Client {
    pub fn start(cfg: &ClientConfig, deltas: UnboundedSender<ShardDelta>) -> Result<Client> {
        let shards = cfg.shards.max(1);
        let shared = Shared::new(cfg)?;
        let mut ctls = Vec::with_capacity(shards);
        let mut threads = Vec::with_capacity(shards);
        let started = Instant::now();
        for id in 0..shards {
            let (ctl, io) = shard_channel(deltas.clone())?;
            let shard = Shard::new(id, shards, io, cfg, shared.clone(), started);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("c1m-client-{id}"))
                    .spawn(move || shard.run())?,
            );
            ctls.push(ctl);
        }
        Ok(Client {
            ctls,
            threads,
            clock: shared.clock,
        })
    }

    /// This machine's clock runs `us` ahead of the coordinator's (an agent's estimate, from
    /// the lowest-delay exchange of several): every latency from now on is taken that much
    /// shorter, so agents on different machines time against one clock.
    pub fn set_clock_offset(&self, us: i64) {
        self.clock.store(us, Ordering::Relaxed);
    }

    /// Opens or closes connections until `conns` are held in total.
    pub fn set_target(&self, conns: u64) {
        let n = self.ctls.len() as u64;
        for (id, ctl) in self.ctls.iter().enumerate() {
            ctl.send(Cmd::Target(share(conns, n, id as u64)));
        }
    }

    /// New connections per second from now on, over all shards (0 = unlimited).
    pub fn set_rate(&self, rate: f64) {
        let n = self.ctls.len() as f64;
        for ctl in &self.ctls {
            ctl.send(Cmd::Rate(rate / n));
        }
    }

    /// Holds the ramp where it is (connections stay open) or resumes it.
    pub fn set_paused(&self, paused: bool) {
        for ctl in &self.ctls {
            ctl.send(Cmd::Paused(paused));
        }
    }

    /// Closes every connection (close frame 1000), counts the broadcasts each open connection
    /// missed at the end, flushes the last deltas and joins the shard threads.
    /// Returns the panic messages of shard threads that crashed (normally none).
    pub fn stop(self) -> Vec<String> {
        for ctl in &self.ctls {
            ctl.send(Cmd::Stop);
        }
        super::join_shards(self.threads)
    }
}

struct Conn {
    stream: Transport,
    source: u16,
    state: State,
}

/// What every shard of a process shares, or starts from (each clone has its own reader).
#[derive(Clone)]
struct Shared {
    tls: Option<Tls>,
    seqs: Arc<Sequences>,
    /// How far this machine's clock is ahead of the coordinator's, µs (see
    /// [`Client::set_clock_offset`]).
    clock: Arc<AtomicI64>,
    script: Arc<Script>,
    reader: Reader,
}

impl Shared {
    /// Everything the flags say that may be refused: a bad --ts-path or --ts-regex, an
    /// unreadable --tokens file or --ca.
    fn new(cfg: &ClientConfig) -> Result<Shared> {
        let head = extra_head(&cfg.headers, &cfg.subprotocols, cfg.compression);
        let head = String::from_utf8(head).expect("headers are text");
        Ok(Shared {
            tls: cfg
                .tls
                .as_ref()
                .map(|t| Tls::new(t, cfg.conns))
                .transpose()?,
            seqs: Arc::new(Sequences::default()),
            clock: Arc::new(AtomicI64::new(0)),
            script: Arc::new(Script::new(&cfg.talk, &cfg.path, &head)?),
            reader: Reader::new(&cfg.reader).map_err(anyhow::Error::msg)?,
        })
    }
}

enum State {
    Connecting(Box<Connecting>),
    Open {
        decoder: Decoder,
        last_seq: u64,
        inflate: Inflating,
    },
}

/// How a connection's compressed messages are inflated, from what its server agreed.
enum Inflating {
    Off,
    /// With the shard's one window: the server keeps no context between messages.
    Shared,
    /// The server keeps its window, so this connection keeps one too, as large as the server
    /// said its own is (47 KiB for 32 KiB, measured in BENCHMARKS.md).
    Own(Box<Window>),
}

impl Inflating {
    fn agreed(agreed: Option<Agreed>) -> Inflating {
        match agreed {
            None => Inflating::Off,
            Some(Agreed {
                server_takeover: false,
                ..
            }) => Inflating::Shared,
            Some(a) => Inflating::Own(Box::new(Window::with_bits(a.server_window_bits))),
        }
    }
}

/// permessage-deflate on one shard: the window and output buffer that serve every connection
/// whose server keeps no context, and the output buffer of those that keep their own.
#[derive(Default)]
struct Inflater {
    window: Window,
    out: Vec<u8>,
}

impl Inflating {
    /// What this connection's compressed messages inflate through: the shard's window or its
    /// own, into the shard's buffer; `None` when it agreed no compression.
    fn with<'a>(&'a mut self, shard: &'a mut Inflater) -> Option<Inflate<'a>> {
        match self {
            Inflating::Off => None,
            Inflating::Shared => Some(Inflate {
                window: &mut shard.window,
                out: &mut shard.out,
                takeover: false,
            }),
            Inflating::Own(window) => Some(Inflate {
                window,
                out: &mut shard.out,
                takeover: true,
            }),
        }
    }
}

struct Connecting {
    since: Instant,
    key: [u8; 24],
    sent: bool,
    buf: Vec<u8>,
}

enum Outcome {
    Keep,
    /// Close the connection; `Some` counts a failure.
    Close(Option<Failure>),
}

/// What one shard remembers about the broadcasts it is receiving: each recent seq's part so
/// far, and what of it was already reported (parts go up as deltas: [`BroadcastPart::since`]).
struct Recent {
    parts: Vec<(BroadcastPart, Option<(u64, u64)>)>,
    /// Deltas of parts let go before they were reported.
    unsent: Vec<BroadcastPart>,
}

impl Recent {
    const KEEP: usize = 16;

    /// A message of `seq` arrived at `now` while this shard held `open` connections; `by_ts`:
    /// the number was given to its timestamp; `sent_ts`: its send time, when it is plausible.
    fn record(&mut self, seq: u64, now: i64, sent_ts: Option<i64>, open: u64, by_ts: bool) {
        if let Some((p, _)) = self.parts.iter_mut().rev().find(|(p, _)| p.seq == seq) {
            p.count += 1;
            p.last_us = p.last_us.max(now);
            p.first_us = p.first_us.min(now);
            p.sent_ts_us = p.sent_ts_us.or(sent_ts);
            return;
        }
        // A straggler older than every seq kept was, almost surely, reported before it was let
        // go: its message still adds, but its connections were counted then.
        let straggler =
            self.parts.len() == Self::KEEP && self.parts.iter().all(|(p, _)| p.seq > seq);
        if self.parts.len() == Self::KEEP {
            let (p, told) = self.parts.remove(0);
            self.unsent.extend(Self::delta(&p, told));
        }
        self.parts.push((
            BroadcastPart {
                seq,
                count: 1,
                dropped: 0,
                open: if straggler { 0 } else { open },
                first_us: now,
                last_us: now,
                sent_ts_us: sent_ts,
                done: false,
                by_ts,
                bytes: 0,
            },
            None,
        ));
    }

    /// The parts with messages not yet reported, as deltas.
    fn take_dirty(&mut self) -> Vec<BroadcastPart> {
        let mut out = std::mem::take(&mut self.unsent);
        for (p, told) in &mut self.parts {
            out.extend(Self::delta(p, *told));
            *told = Some((p.count, p.dropped));
        }
        out
    }

    /// `p` as a delta on what was `told`, when messages came since.
    fn delta(p: &BroadcastPart, told: Option<(u64, u64)>) -> Option<BroadcastPart> {
        (p.count > told.map_or(0, |(count, _)| count)).then(|| p.since(told))
    }
}

/// Per-message accounting, apart from the connection table so both can be borrowed at once.
struct Tally {
    counters: Counters,
    latency: Histogram<u64>,
    /// --ping: the round trips of pings, until the next flush.
    pong_rtt: Histogram<u64>,
    /// `{rtt}` messages an echo server returned: their round trips, until the next flush.
    echo_rtt: Histogram<u64>,
    reader: Reader,
    recent: Recent,
    seqs: Arc<Sequences>,
    /// This machine's clock ahead of the coordinator's, µs: read once per message, written
    /// a few times a minute.
    clock: Arc<AtomicI64>,
    /// The latest (timestamp, seq) this shard resolved, so the shared map is locked only once
    /// per broadcast.
    ts_cache: (i64, u64),
    max_seen: u64,
    /// Latencies of the newest broadcast only, started afresh when a newer one arrives.
    last: Histogram<u64>,
    last_seq: u64,
    last_dirty: bool,
    /// Broadcasts a newer one overtook before their last latencies were flushed.
    closing: Vec<(u64, Histogram<u64>)>,
    /// The first payload this shard could not read, escaped, until it is sent up.
    sample: Option<String>,
    sample_sent: bool,
}

impl Tally {
    fn new(reader: Reader, seqs: Arc<Sequences>, clock: Arc<AtomicI64>) -> Tally {
        Tally {
            counters: Counters::default(),
            latency: new_histogram(),
            pong_rtt: new_histogram(),
            echo_rtt: new_histogram(),
            reader,
            recent: Recent {
                parts: Vec::with_capacity(Recent::KEEP),
                unsent: Vec::new(),
            },
            seqs,
            clock,
            ts_cache: (0, 0),
            max_seen: 0,
            last: new_histogram(),
            last_seq: 0,
            last_dirty: false,
            closing: Vec::new(),
            sample: None,
            sample_sent: false,
        }
    }

    /// The per-broadcast histograms that changed since the last call, oldest first.
    fn take_latencies(&mut self) -> Vec<(u64, Histogram<u64>)> {
        let mut out = std::mem::take(&mut self.closing);
        if std::mem::take(&mut self.last_dirty) {
            out.push((self.last_seq, self.last.clone()));
        }
        out
    }

    /// The first unreadable payload, once.
    fn take_sample(&mut self) -> Option<String> {
        let s = self.sample.take();
        self.sample_sent |= s.is_some();
        s
    }

    /// A newer broadcast arrives: the one before is final for this shard.
    fn start_broadcast(&mut self, seq: u64) {
        if self.last_dirty {
            let done = std::mem::replace(&mut self.last, new_histogram());
            self.closing.push((self.last_seq, done));
            self.last_dirty = false;
        } else {
            self.last.reset();
        }
        self.last_seq = seq;
    }

    /// One data message, on a connection whose last number is `last` (tagged [`BY_TS`] when
    /// it was given to a timestamp), while the shard held `open` connections.
    /// Returns false for a copy of a message the connection had already: one whose seq field
    /// is not past its last (its own echo back from a server that echoes too, or a server
    /// replaying). That is counted as a duplicate, never received or timed twice.
    fn message(&mut self, last: &mut u64, data: &[u8], now: i64, open: u64) -> bool {
        let stamp = match self.reader.read(data) {
            Ok(Some(stamp)) => stamp,
            Ok(None) => {
                // No time where the user said it would be: a protocol message, not data.
                self.counters.ignored += 1;
                self.keep_sample(data);
                return true;
            }
            Err(_) => {
                self.counters.messages += 1;
                self.counters.unparsable += 1;
                self.keep_sample(data);
                return true;
            }
        };
        if let Some(seq) = stamp.seq
            && *last != NO_BASELINE
            && *last & BY_TS == 0
            && seq <= *last
        {
            self.counters.duplicates += 1;
            return false;
        }
        self.counters.messages += 1;
        // On the coordinator's clock, as every agent's: the rows' receive times too.
        let now = now - self.clock.load(Ordering::Relaxed);
        let latency = now - stamp.ts_us;
        let plausible = (0..=MAX_PLAUSIBLE_LATENCY_US).contains(&latency);
        let numbered = match stamp.seq {
            Some(seq) => {
                self.counters.seq_messages += 1;
                Some((seq, false))
            }
            // A timestamp that is no delivery time (a ping's "2", a clock years off) is no
            // broadcast either: it gets no number.
            None if plausible => self.ts_number(stamp.ts_us).map(|seq| (seq, true)),
            None => None,
        };
        if plausible {
            self.time(latency as u64, numbered.map(|(seq, _)| seq));
        } else {
            self.counters.skewed += 1;
        }
        let Some((seq, by_ts)) = numbered else {
            return true;
        };
        self.account(last, seq, by_ts);
        // Received is a count: a copy whose time cannot be trusted (a corrected clock a hair
        // past the send, inside its uncertainty) still arrived, and its broadcast's row says so.
        let sent = plausible.then_some(stamp.ts_us);
        self.recent.record(seq, now, sent, open, by_ts);
        true
    }

    /// Once per shard: what a person needs to see to tell c1m where the time is.
    fn keep_sample(&mut self, data: &[u8]) {
        if self.sample.is_none() && !self.sample_sent {
            let head = &data[..data.len().min(SAMPLE_BYTES)];
            self.sample = Some(head.escape_ascii().to_string());
        }
    }

    /// A pong to one of our pings, sent at `sent` (µs).
    fn pong(&mut self, sent: i64, now: i64) {
        let rtt = now - sent;
        if (0..=MAX_PLAUSIBLE_LATENCY_US).contains(&rtt) {
            self.counters.pongs += 1;
            let _ = self.pong_rtt.record(rtt as u64);
        }
    }

    /// One of our `{rtt}` messages came back, sent at `sent` (µs, this machine's clock).
    fn round_trip(&mut self, sent: i64, now: i64) {
        let rtt = now - sent;
        if (0..=MAX_PLAUSIBLE_LATENCY_US).contains(&rtt) {
            let _ = self.echo_rtt.record(rtt as u64);
        } else {
            self.counters.skewed += 1;
        }
    }

    fn ts_number(&mut self, ts: i64) -> Option<u64> {
        self.counters.ts_messages += 1;
        if self.ts_cache.0 == ts && self.ts_cache.1 != 0 {
            return Some(self.ts_cache.1);
        }
        let seq = self.seqs.for_timestamp(ts)?;
        self.ts_cache = (ts, seq);
        Some(seq)
    }

    /// Records a delivery time, in the run's histogram and in its broadcast's.
    fn time(&mut self, latency: u64, seq: Option<u64>) {
        // `record`, not `saturating_record`: the latter clamps to the histogram's current
        // range instead of growing it. Growth allocates only the first time a range is hit.
        let _ = self.latency.record(latency);
        let Some(seq) = seq else { return };
        if seq > self.last_seq {
            self.start_broadcast(seq);
        }
        if seq == self.last_seq {
            let _ = self.last.record(latency);
            self.last_dirty = true;
        }
    }

    /// A connection whose last number was `last` ended by a reset: it is owed the broadcasts
    /// seen since, which it will never get and no gap will show.
    fn reset(&mut self, last: u64) {
        let c = &mut self.counters;
        c.reset_conns += 1;
        match last {
            NO_BASELINE => {}
            l if l & BY_TS != 0 => {
                let seen = self.seqs.ts_max.load(Ordering::Relaxed);
                c.reset_unreceived_ts += seen.saturating_sub(l & !BY_TS);
            }
            l => c.reset_unreceived += self.seqs.max.load(Ordering::Relaxed).saturating_sub(l),
        }
    }

    /// Counts the numbers a connection skipped since its last message. Its first message (or
    /// the server's word at the upgrade) is its baseline: what came before it is not known,
    /// so it is never charged.
    fn account(&mut self, last: &mut u64, seq: u64, by_ts: bool) {
        let tagged = if by_ts { seq | BY_TS } else { seq };
        if *last == NO_BASELINE || (*last & BY_TS != 0) != by_ts {
            *last = tagged;
        } else if seq > *last & !BY_TS {
            let gap = seq - (*last & !BY_TS) - 1;
            match by_ts {
                true => self.counters.missed_ts += gap,
                false => self.counters.missed += gap,
            }
            *last = tagged;
        }
        if !by_ts && seq > self.max_seen {
            self.max_seen = seq;
            self.seqs.observe(seq);
        }
    }
}

struct Shard {
    id: usize,
    io: ShardIo<Cmd>,
    dest: SocketAddr,
    host: String,
    /// The upgrade's path and extra headers, --send, --heartbeat and --reply.
    script: Arc<Script>,
    /// Where a template is rendered before it is framed.
    text: Vec<u8>,
    /// `wss://`: the sessions' shared configuration.
    tls: Option<Tls>,
    subprotocols: Vec<String>,
    /// `--compression`: what the upgrade offers, and what inflates.
    offer: Offer,
    inflater: Inflater,
    /// What the server may send.
    limits: crate::proto::frame::Limits,
    /// `--echo`, and the writes its echoes wait in.
    echo: bool,
    backlog: Backlog,
    /// Some text carries `{rtt}`: messages are searched for it on their way in.
    round_trips: bool,
    /// `--churn`: who leaves next, and who is leaving.
    churn: Option<Churn>,
    heartbeat: Option<Sweep>,
    ping: Option<Sweep>,
    sources: Vec<Option<IpAddr>>,
    conns: Slab<Conn>,
    /// `--io-uring`: open plain connections receive through this ring (made in `run`, on the
    /// shard's thread), not through epoll.
    io_uring: bool,
    recv: Option<RecvRing>,
    scratch: Box<[u8]>,
    out: Vec<u8>,
    tally: Tally,
    samples: ErrorSamples,
    per_source: Vec<SourceDelta>,
    active: u64,
    /// First and last handshake completed since the last flush.
    opens_us: Option<(i64, i64)>,
    inflight: usize,
    max_inflight: usize,
    connect_timeout: Duration,
    deadlines: VecDeque<(usize, Instant)>,
    /// This shard opens connections number `id`, `id + stride`, … of the whole client, so
    /// sources and the target are shared round-robin.
    stride: u64,
    target: u64,
    started: u64,
    rate: f64,
    /// The rate is counted from here: reset whenever the target, rate or pause changes, so a
    /// change never releases a burst of connections "owed" since the start.
    ramp_start: Instant,
    ramp_base: u64,
    paused: bool,
    batch_window: Duration,
    reconnect: Option<Duration>,
    /// Sources whose ephemeral ports ran out (EADDRNOTAVAIL) for this destination: skipped
    /// from then on, so the run goes on over the others.
    exhausted: Vec<bool>,
    /// With --reconnect: slots given back by lost connections and failed attempts, each with
    /// the time it may be tried again (its own jittered delay), soonest first.
    retries: BinaryHeap<Reverse<Instant>>,
    /// Retries whose time has come and that have not started yet.
    retries_due: u64,
    /// Failures in a row since the last completed handshake, and when that streak began.
    failures_in_row: u32,
    outage_since: Option<Instant>,
}

impl Shard {
    fn new(
        id: usize,
        shards: usize,
        io: ShardIo<Cmd>,
        cfg: &ClientConfig,
        shared: Shared,
        ramp_start: Instant,
    ) -> Shard {
        let stride = shards as u64;
        let target = share(cfg.conns, stride, id as u64);
        let now = Instant::now();
        let script = shared.script;
        let round_trips = script.times_round_trips();
        Shard {
            id,
            io,
            dest: cfg.addr,
            host: cfg.host.clone(),
            heartbeat: script
                .heartbeat
                .as_ref()
                .map(|(every, _)| Sweep::new(*every, now)),
            ping: script.ping.map(|every| Sweep::new(every, now)),
            script,
            text: Vec::new(),
            tls: shared.tls,
            subprotocols: cfg.subprotocols.clone(),
            offer: cfg.compression,
            inflater: Inflater::default(),
            limits: super::budget::limits(CLIENT_LIMITS, cfg.max_message, cfg.echo),
            echo: cfg.echo,
            backlog: Backlog::default(),
            round_trips,
            churn: Churn::new(cfg.churn, now),
            sources: cfg.sources.clone(),
            conns: Slab::with_capacity(target as usize),
            io_uring: cfg.io_uring,
            recv: None,
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            out: Vec::with_capacity(256),
            tally: Tally::new(shared.reader, shared.seqs, shared.clock),
            samples: ErrorSamples::default(),
            per_source: (0..cfg.sources.len())
                .map(|source| SourceDelta {
                    source,
                    ..Default::default()
                })
                .collect(),
            active: 0,
            opens_us: None,
            inflight: 0,
            max_inflight: (cfg.max_inflight / shards).max(1),
            connect_timeout: cfg.connect_timeout,
            deadlines: VecDeque::new(),
            stride,
            target,
            started: 0,
            rate: cfg.rate / shards as f64,
            ramp_start,
            ramp_base: 0,
            paused: false,
            batch_window: cfg.batch_window,
            reconnect: cfg.reconnect,
            exhausted: vec![false; cfg.sources.len()],
            retries: BinaryHeap::new(),
            retries_due: 0,
            failures_in_row: 0,
            outage_since: None,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_flush = Instant::now() + FLUSH_EVERY;
        if self.io_uring {
            self.start_ring();
        }
        loop {
            let tick = match self.heartbeat.is_some() || self.ping.is_some() {
                true => SWEEP_EVERY,
                false => FLUSH_EVERY,
            };
            let due = self.recv.as_mut().is_some_and(|r| r.due());
            let wait = match due {
                true => Duration::ZERO,
                false => self.ramp().min(tick),
            }
            .min(next_flush.saturating_duration_since(Instant::now()));
            if let Err(e) = self.io.poll.poll(&mut events, Some(wait))
                && e.kind() != io::ErrorKind::Interrupted
            {
                eprintln!("c1m: client shard {}: poll failed: {e}", self.id);
                break;
            }
            let mut n = 0;
            for ev in events.iter() {
                // The ring's own wake is not an arrival: its completions are counted below.
                n += usize::from(ev.token() != RING_TOKEN);
                if ev.token() != WAKER_TOKEN && ev.token() != RING_TOKEN {
                    let closed = ev.is_read_closed() || ev.is_error();
                    self.on_event(ev.token().0, ev.is_writable(), closed);
                }
            }
            n += self.on_ring(true);
            if n >= BATCH_MIN_EVENTS && !self.batch_window.is_zero() && self.started >= self.target
            {
                // A burst (a broadcast arriving): let readiness pile up briefly, so the next
                // poll takes hundreds of sockets at once. While this thread sleeps outside
                // epoll_wait the sender's kernel has no thread to wake per message, which on a
                // shared machine roughly halves the cost of each delivery on both ends.
                std::thread::sleep(self.batch_window);
            }
            if self.drain_commands() {
                break;
            }
            let now = Instant::now();
            self.sweep(now);
            if now >= next_flush {
                self.expire(now);
                self.flush();
                next_flush = now + FLUSH_EVERY;
            }
        }
        self.shutdown();
    }

    /// `--io-uring`: makes the shard's ring and has its completions wake the poll. A ring
    /// refused here (the same kernel accepted one in `check`) leaves the shard on epoll, said.
    fn start_ring(&mut self) {
        let ring = RecvRing::new().and_then(|ring| {
            let fd = ring.eventfd();
            let mut source = mio::unix::SourceFd(&fd);
            let registry = self.io.poll.registry();
            registry.register(&mut source, RING_TOKEN, Interest::READABLE)?;
            Ok(ring)
        });
        match ring {
            Ok(ring) => self.recv = Some(ring),
            Err(e) => eprintln!(
                "c1m: client shard {}: --io-uring: {e}; this shard reads through epoll",
                self.id
            ),
        }
    }

    /// `--io-uring`: hands what the ring's receives brought to their connections, and arms
    /// again (`rearm`) the receives that stopped; returns how many connections had news.
    fn on_ring(&mut self, rearm: bool) -> usize {
        let Some(ring) = &mut self.recv else {
            return 0;
        };
        ring.reap();
        let mut scratch = std::mem::take(&mut self.scratch);
        // Connections that had news, as epoll would count them: a message in several
        // buffers comes as several completions of one connection, in a row.
        let (mut n, mut last) = (0, usize::MAX);
        while let Some((key, got)) = self.recv.as_mut().and_then(|r| r.next(&mut scratch)) {
            n += usize::from(key != last);
            last = key;
            if !self.conns.contains(key) {
                continue;
            }
            let outcome = match got {
                Got::Data(len) => self.on_bytes(key, &mut scratch[..len], now_us()),
                Got::Starved => Outcome::Keep,
                Got::Eof => Outcome::Close(Some(closed_without_frame())),
                Got::Failed(e) => Outcome::Close(Some(Failure::io(e))),
            };
            let outcome = match outcome {
                Outcome::Keep if rearm => self
                    .arm(key)
                    .map_or_else(|failure| Outcome::Close(Some(failure)), |()| Outcome::Keep),
                other => other,
            };
            if let Outcome::Close(failure) = outcome {
                self.close(key, failure);
            }
        }
        self.scratch = scratch;
        n
    }

    /// `--io-uring`: arms the connection's receive again if it stopped.
    fn arm(&mut self, key: usize) -> Result<(), Failure> {
        let (Some(ring), Some(conn)) = (&mut self.recv, self.conns.get(key)) else {
            return Ok(());
        };
        match &conn.stream {
            Transport::Plain(stream) if !ring.is_armed(key) => {
                ring.arm(stream.as_raw_fd(), key).map_err(Failure::io)
            }
            _ => Ok(()),
        }
    }

    /// `--io-uring`: an open plain connection's reads go to the ring; epoll keeps only its
    /// writable readiness, for --echo's backlog.
    fn hand_to_ring(&mut self, key: usize) -> Result<(), Failure> {
        let (Some(_), Transport::Plain(stream)) = (&self.recv, &mut self.conns[key].stream) else {
            return Ok(());
        };
        let registry = self.io.poll.registry();
        registry
            .reregister(stream, Token(key), Interest::WRITABLE)
            .map_err(Failure::io)?;
        self.arm(key)
    }

    /// The end of the run: what the receives brought is read, the ring is dropped (which ends
    /// them; what they had not taken stays in the sockets), and the open connections go back
    /// to epoll for the last reads and the goodbyes.
    fn leave_ring(&mut self) {
        if self.recv.is_none() {
            return;
        }
        // Bounded: each round takes at least one completion, and at most a connection's
        // worth of its last data arrives while this runs.
        for _ in 0..4096 {
            self.on_ring(false);
            if !self.recv.as_mut().is_some_and(|r| r.due()) {
                break;
            }
        }
        self.recv = None;
        let registry = self.io.poll.registry();
        for (key, conn) in self.conns.iter_mut() {
            if let (State::Open { .. }, Transport::Plain(stream)) = (&conn.state, &mut conn.stream)
            {
                let both = Interest::READABLE | Interest::WRITABLE;
                let _ = registry.reregister(stream, Token(key), both);
            }
        }
    }

    /// Starts the connections the rate and the in-flight bound allow now; returns how long to
    /// sleep before more are due.
    fn ramp(&mut self) -> Duration {
        if self.started >= self.target || self.paused {
            return FLUSH_EVERY;
        }
        let now = Instant::now();
        while let Some(&Reverse(at)) = self.retries.peek()
            && at <= now
        {
            self.retries.pop();
            self.retries_due += 1;
        }
        // Retries not yet due hold their slots.
        let waiting = self.retries.len() as u64;
        let elapsed = self.ramp_start.elapsed().as_secs_f64();
        let due = if self.rate <= 0.0 {
            self.target
        } else {
            (self.ramp_base + (elapsed * self.rate) as u64 + 1).min(self.target)
        };
        while self.started + waiting < due && self.inflight < self.max_inflight {
            if self.retries_due > 0 {
                self.retries_due -= 1;
                self.tally.counters.reconnects += 1;
            }
            self.start_one();
        }
        let next_retry = self
            .retries
            .peek()
            .map(|Reverse(at)| at.saturating_duration_since(now));
        if self.inflight >= self.max_inflight || self.rate <= 0.0 {
            return next_retry.map_or(FLUSH_EVERY, |d| d.min(FLUSH_EVERY));
        }
        let next_at = (self.started - self.ramp_base) as f64 / self.rate;
        let next = Duration::from_secs_f64((next_at - elapsed).max(0.0005));
        next_retry.map_or(next, |d| d.min(next))
    }

    /// Sends the heartbeats and pings whose turn has come.
    fn sweep(&mut self, now: Instant) {
        let slots = self.conns.capacity();
        if let Some(due) = self.heartbeat.as_mut().map(|s| s.due(now, slots)) {
            self.send_timed(due, Timed::Heartbeat);
        }
        if let Some(due) = self.ping.as_mut().map(|s| s.due(now, slots)) {
            self.send_timed(due, Timed::Ping);
        }
        self.churn(now);
    }

    /// --churn: the connections whose turn it is say goodbye; those whose server has not
    /// closed them in time are closed here. Each is replaced when it has ended.
    fn churn(&mut self, now: Instant) {
        let Some(c) = self.churn.as_mut() else {
            return;
        };
        let (mut due, slots) = (c.due(now, self.active), self.conns.capacity());
        let overdue = c.overdue(now);
        let mut scanned = 0;
        while due > 0 && scanned < slots {
            let Some(c) = self.churn.as_mut() else { return };
            let key = c.cursor % slots;
            c.cursor = key + 1;
            scanned += 1;
            let open = matches!(
                self.conns.get(key).map(|c| &c.state),
                Some(State::Open { .. })
            );
            if !open || c.is_leaving(key) {
                continue;
            }
            c.leave(key, now);
            due -= 1;
            self.out.clear();
            let bye = frame::masked_close(1000, rand::random());
            self.out.extend_from_slice(&bye);
            if let Err(failure) = self.write_out(key) {
                self.close(key, Some(failure));
            }
        }
        for key in overdue {
            self.close(key, None);
        }
    }

    fn send_timed(&mut self, (first, n): (usize, usize), what: Timed) {
        let slots = self.conns.capacity();
        for k in 0..n {
            let key = (first + k) % slots;
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            // After its close frame a connection sends no more (RFC 6455 5.5.1).
            let leaving = self.churn.as_ref().is_some_and(|c| c.is_leaving(key));
            if !matches!(conn.state, State::Open { .. }) || leaving {
                continue;
            }
            self.out.clear();
            match what {
                Timed::Heartbeat => {
                    let i = self.global_index(key);
                    self.script.heartbeat(i, &mut self.text, &mut self.out);
                    self.tally.counters.heartbeats += 1;
                }
                Timed::Ping => {
                    Script::ping(now_us(), &mut self.out);
                    self.tally.counters.pings += 1;
                }
            }
            if let Err(failure) = self.write_out(key) {
                self.close(key, Some(failure));
            }
        }
    }

    /// Writes `self.out` to connection `key` whole, or says why it could not: a part-written
    /// frame would break the stream, and a message dropped unsaid would be a silent loss.
    fn write_out(&mut self, key: usize) -> Result<(), Failure> {
        if self.echo {
            let max = self.limits.max_message;
            let stream = &mut self.conns[key].stream;
            let n = self.backlog.write(key, stream, &self.out, max)?;
            self.tally.counters.bytes_out += n as u64;
            return Ok(());
        }
        match self.conns[key].stream.write(&self.out) {
            Ok(n) if n == self.out.len() => {
                self.tally.counters.bytes_out += n as u64;
                Ok(())
            }
            Ok(_) => Err(Failure::msg(ErrorClass::Other, NOT_READING)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(Failure::msg(ErrorClass::Other, NOT_READING))
            }
            Err(e) => Err(Failure::io(e)),
        }
    }

    /// The number `{i}` stands for: the connection's slab key, which is its own for its life,
    /// dense (the slab hands out freed keys first) and below the shard's share of the target,
    /// made unique over the shards here (and over worker processes by `index_base`). A
    /// connection carries no number of its own.
    fn global_index(&self, key: usize) -> u64 {
        self.id as u64 + key as u64 * self.stride
    }

    /// Returns true when the shard must stop.
    fn drain_commands(&mut self) -> bool {
        while let Ok(cmd) = self.io.rx.try_recv() {
            match cmd {
                Cmd::Target(target) => self.set_target(target),
                Cmd::Rate(rate) => {
                    self.rate = rate;
                    self.restart_ramp_clock();
                }
                Cmd::Paused(paused) => {
                    self.paused = paused;
                    self.restart_ramp_clock();
                }
                Cmd::Stop => return true,
            }
        }
        false
    }

    fn restart_ramp_clock(&mut self) {
        self.ramp_start = Instant::now();
        self.ramp_base = self.started;
    }

    /// A lower target closes open connections (a normal close, not an error) and forgets the
    /// attempts above it, so raising the target again opens that many anew.
    fn set_target(&mut self, target: u64) {
        let held = self.active + self.inflight as u64;
        if held > target {
            let excess = (held - target) as usize;
            let keys: Vec<usize> = self
                .conns
                .iter()
                .filter(|(_, c)| matches!(c.state, State::Open { .. }))
                .map(|(k, _)| k)
                .take(excess)
                .collect();
            let bye = frame::masked_close(1000, rand::random());
            for key in keys {
                let _ = self.conns[key].stream.write(&bye);
                self.close(key, None);
            }
        }
        self.target = target;
        self.started = self.started.min(target);
        // Slots waiting to be retried above the new target are let go.
        while self.started + self.retries_due + self.retries.len() as u64 > target {
            if self.retries_due > 0 {
                self.retries_due -= 1;
            } else if self.retries.pop().is_none() {
                break;
            }
        }
        self.restart_ramp_clock();
    }

    fn start_one(&mut self) {
        let global = self.id as u64 + self.started * self.stride;
        self.started += 1;
        let n = self.sources.len();
        let mut source = (global % n as u64) as usize;
        let mut stream = loop {
            if self.exhausted[source]
                && let Some(next) = (1..n)
                    .map(|k| (source + k) % n)
                    .find(|&s| !self.exhausted[s])
            {
                source = next;
            }
            let connected = super::source::connect(self.sources[source], self.dest);
            match connected.and_then(|s| self.transport(s)) {
                Ok(t) => break t,
                Err((class, e)) => {
                    let spent = class == ErrorClass::AddrNotAvail && !self.exhausted[source];
                    let failure = Failure {
                        class,
                        cause: Cause::Io(e),
                    };
                    if spent && self.exhausted.iter().filter(|x| !**x).count() > 1 {
                        // This address has no port left for this server: count it against the
                        // address once and carry on with the others.
                        self.exhausted[source] = true;
                        self.count_failure(source, failure);
                        continue;
                    }
                    self.fail_attempt(source, failure);
                    return;
                }
            }
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.io.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.fail_attempt(source, Failure::io(e));
            return;
        }
        let since = Instant::now();
        entry.insert(Conn {
            stream,
            source: source as u16,
            state: State::Connecting(Box::new(Connecting {
                since,
                key: handshake::generate_key(&mut rand::rng()),
                sent: false,
                buf: Vec::new(),
            })),
        });
        self.inflight += 1;
        self.deadlines.push_back((key, since));
    }

    /// A connected socket as the URL wants it: plain, or under a new TLS session.
    fn transport(&self, s: mio::net::TcpStream) -> Result<Transport, (ErrorClass, io::Error)> {
        match &self.tls {
            None => Ok(Transport::Plain(s)),
            Some(tls) => match tls.stream(s) {
                Ok(t) => Ok(Transport::Tls(Box::new(t))),
                Err(e) => Err((ErrorClass::TlsHandshake, e)),
            },
        }
    }

    fn fail_attempt(&mut self, source: usize, failure: Failure) {
        self.tally.counters.failed += 1;
        self.count_failure(source, failure);
        self.retry_later();
    }

    /// With --reconnect, gives a lost connection's slot back to the ramp, to be reopened after
    /// a delay of its own, drawn uniformly below a ceiling ("full jitter") so a restarted
    /// server is not hit by every connection at once. The ceiling doubles from 100 ms per
    /// failure in a row up to the bound, and never exceeds half the outage so far: a server
    /// back after an outage of T finds every connection retrying within T/2 of its return.
    fn retry_later(&mut self) {
        let Some(max) = self.reconnect else {
            return;
        };
        self.started = self.started.saturating_sub(1);
        let now = Instant::now();
        let since = *self.outage_since.get_or_insert(now);
        let ceiling = BACKOFF_MIN
            .saturating_mul(1u32 << self.failures_in_row.min(16))
            .min(max)
            .min((now.saturating_duration_since(since) / 2).max(BACKOFF_MIN));
        self.failures_in_row = self.failures_in_row.saturating_add(1);
        let delay = ceiling.mul_f64(rand::random::<f64>());
        self.retries.push(Reverse(now + delay));
    }

    fn count_failure(&mut self, source: usize, failure: Failure) {
        self.tally.counters.error(failure.class);
        self.per_source[source].errors += 1;
        let from = self.sources[source];
        self.samples.note(
            &failure,
            format_args!(
                "{} → {}",
                from.map_or_else(|| "*".to_string(), |ip| ip.to_string()),
                self.dest
            ),
        );
    }

    fn on_event(&mut self, key: usize, writable: bool, peer_closed: bool) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let ringed = self.recv.is_some() && matches!(conn.stream, Transport::Plain(_));
        let outcome = match conn.state {
            State::Connecting(_) => self.on_connecting(key, peer_closed),
            // Its reads come from the ring; epoll tells only that its backlog may go out.
            State::Open { .. } if ringed => {
                match self.echo && self.backlog.holds(key) && (writable || peer_closed) {
                    true => self.flush_backlog(key),
                    false => Outcome::Keep,
                }
            }
            State::Open { .. } if self.echo && self.backlog.holds(key) => {
                // A peer gone shows as an error on the write.
                let flushed = match writable || peer_closed {
                    true => self.flush_backlog(key),
                    false => Outcome::Keep,
                };
                match flushed {
                    // One that waits only to end reads nothing more.
                    Outcome::Keep if !self.backlog.ending(key) => {
                        self.on_readable(key, peer_closed)
                    }
                    other => other,
                }
            }
            State::Open { .. } => self.on_readable(key, peer_closed),
        };
        if let Outcome::Close(failure) = outcome {
            self.close(key, failure);
        }
    }

    /// --echo: writes what waits for the connection, and ends it if it only waited to end.
    fn flush_backlog(&mut self, key: usize) -> Outcome {
        let stream = &mut self.conns[key].stream;
        match self
            .backlog
            .flush(key, stream, &mut self.tally.counters.bytes_out)
        {
            Ok(Flushed::Clear | Flushed::Waiting) => Outcome::Keep,
            Ok(Flushed::End(failure)) => Outcome::Close(failure),
            Err(e) => Outcome::Close(Some(Failure::io(e))),
        }
    }

    /// Writes the upgrade request, at the first readiness of a connecting socket: that means
    /// it connected or failed, and the write tells which (a failed connect returns its error,
    /// e.g. ECONNREFUSED), which saves the SO_ERROR and getpeername calls per connection.
    /// `None`: sent, go on reading.
    fn send_request(&mut self, key: usize) -> Option<Outcome> {
        let i = self.global_index(key);
        let conn = &mut self.conns[key];
        let State::Connecting(c) = &mut conn.state else {
            return Some(Outcome::Keep);
        };
        self.out.clear();
        let at = self.script.request_parts(i, &mut self.text);
        let (path, extra) = self.text.split_at(at);
        handshake::write_request_with(&self.host, path, &c.key, extra, &mut self.out);
        match conn.stream.write(&self.out) {
            Ok(n) if n == self.out.len() => {}
            Ok(_) => {
                return Some(Outcome::Close(Some(Failure::msg(
                    ErrorClass::HandshakeFailed,
                    "the upgrade request could not be written in one go",
                ))));
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(libc::ENOTCONN) =>
            {
                return Some(Outcome::Keep);
            }
            Err(e) => return Some(Outcome::Close(Some(Failure::io(e)))),
        }
        self.tally.counters.bytes_out += self.out.len() as u64;
        c.sent = true;
        c.buf.reserve_exact(HANDSHAKE_INITIAL);
        None
    }

    fn on_connecting(&mut self, key: usize, peer_closed: bool) -> Outcome {
        let conn = &mut self.conns[key];
        let State::Connecting(c) = &mut conn.state else {
            return Outcome::Keep;
        };
        if !c.sent
            && let Some(outcome) = self.send_request(key)
        {
            return outcome;
        }
        let conn = &mut self.conns[key];
        let State::Connecting(c) = &mut conn.state else {
            return Outcome::Keep;
        };
        let eof = match read_head(&mut conn.stream, &mut self.scratch, &mut c.buf, peer_closed) {
            Ok(eof) => eof,
            Err(e) => return Outcome::Close(Some(Failure::io(e))),
        };
        match handshake::parse_response_to(&c.buf, &c.key, self.offer) {
            Ok(None) if eof => Outcome::Close(Some(upgrade_failure(
                None,
                &c.buf,
                (self.script.path.as_str(), self.tls.is_some()),
                &self.samples,
            ))),
            Ok(None) => Outcome::Keep,
            Ok(Some(accepted)) => {
                let chosen = accepted.protocol.map(|(a, b)| &c.buf[a..b]);
                if !protocol_agreed(&self.subprotocols, chosen) {
                    let class = ErrorClass::HandshakeFailed;
                    let cause = match self.samples.wants(class) {
                        true => Cause::Text(protocol_mismatch(&self.subprotocols, chosen)),
                        false => Cause::Msg("the server's subprotocol does not match the offer"),
                    };
                    return Outcome::Close(Some(Failure { class, cause }));
                }
                // The head reader stops at MAX_HEAD: a full buffer means more may be waiting.
                let more_waiting = c.buf.len() >= handshake::MAX_HEAD;
                self.tally.counters.bytes_in += accepted.consumed as u64;
                if let Some(seq) = accepted.seq {
                    self.tally.seqs.baseline(seq);
                    self.tally.counters.seq_declared += 1;
                }
                self.failures_in_row = 0;
                self.outage_since = None;
                if let Some(resumed) = conn.stream.resumed() {
                    self.tally.counters.tls_handshakes += 1;
                    self.tally.counters.tls_resumed += u64::from(resumed);
                }
                // The server's word on its last broadcast before this connection, when it gives
                // one (c1m's X-C1m-Seq); else the connection's first message is its baseline.
                let baseline = accepted.seq.unwrap_or(NO_BASELINE);
                let mut rest = c.buf.split_off(accepted.consumed);
                let inflate = Inflating::agreed(accepted.deflate);
                self.tally.counters.deflate += u64::from(accepted.deflate.is_some());
                self.tally.counters.deflate_windows +=
                    u64::from(matches!(inflate, Inflating::Own(_)));
                conn.state = State::Open {
                    decoder: Decoder::new(),
                    last_seq: baseline,
                    inflate,
                };
                // The socket stays registered for writable readiness too: edge-triggered, it
                // reports nothing more unless a write fills the buffer, so re-registering for
                // reads only would be one more syscall per connection for nothing.
                self.inflight -= 1;
                self.active += 1;
                self.tally.counters.opened += 1;
                self.opens_us = Some(match self.opens_us {
                    Some((first, _)) => (first, now_us()),
                    None => (now_us(), now_us()),
                });
                self.per_source[conn.source as usize].opened += 1;
                if let Err(failure) = self.greet(key) {
                    return Outcome::Close(Some(failure));
                }
                let mut outcome = if rest.is_empty() {
                    Outcome::Keep
                } else {
                    self.on_bytes(key, &mut rest, now_us())
                };
                if more_waiting && matches!(outcome, Outcome::Keep) && !eof {
                    outcome = self.on_readable(key, peer_closed);
                }
                match outcome {
                    Outcome::Keep if eof => Outcome::Close(Some(Failure::msg(
                        ErrorClass::ClosedByServer,
                        "the server closed the connection right after the upgrade",
                    ))),
                    Outcome::Keep => match self.hand_to_ring(key) {
                        Ok(()) => Outcome::Keep,
                        Err(failure) => Outcome::Close(Some(failure)),
                    },
                    other => other,
                }
            }
            Err(e) => Outcome::Close(Some(upgrade_failure(
                Some(e),
                &c.buf,
                (self.script.path.as_str(), self.tls.is_some()),
                &self.samples,
            ))),
        }
    }

    /// `--send`, right after the upgrade.
    fn greet(&mut self, key: usize) -> Result<(), Failure> {
        let i = self.global_index(key);
        if self.script.talks() {
            // A heartbeat, a reply or a ping must not wait behind the previous small write
            // for the peer's delayed ACK (Nagle): a pong would read 40 ms late.
            let _ = self.conns[key].stream.set_nodelay();
        }
        self.out.clear();
        let n = self.script.greeting(i, &mut self.text, &mut self.out);
        if n == 0 {
            return Ok(());
        }
        self.tally.counters.sent += n;
        self.write_out(key)
    }

    fn on_readable(&mut self, key: usize, peer_closed: bool) -> Outcome {
        let mut scratch = std::mem::take(&mut self.scratch);
        let outcome = loop {
            match self.conns[key].stream.read(&mut scratch) {
                Read::Data(n) => {
                    let outcome = self.on_bytes(key, &mut scratch[..n], now_us());
                    if !matches!(outcome, Outcome::Keep)
                        || !self.conns[key]
                            .stream
                            .read_again(n, scratch.len(), peer_closed)
                    {
                        break outcome;
                    }
                }
                Read::WouldBlock => break Outcome::Keep,
                Read::Eof => break Outcome::Close(Some(closed_without_frame())),
                Read::Failed(e) => break Outcome::Close(Some(Failure::io(e))),
            }
        };
        self.scratch = scratch;
        outcome
    }

    fn on_bytes(&mut self, key: usize, bytes: &mut [u8], now: i64) -> Outcome {
        self.tally.counters.bytes_in += bytes.len() as u64;
        let i = self.global_index(key);
        let conn = &mut self.conns[key];
        let State::Open {
            decoder,
            last_seq,
            inflate,
        } = &mut conn.state
        else {
            return Outcome::Keep;
        };
        let inflate = inflate.with(&mut self.inflater);
        let deflated = inflate.is_some();
        let open = self.active;
        let wants_reason = self.samples.wants(ErrorClass::ClosedByServer);
        let tally = &mut self.tally;
        let out = &mut self.out;
        let (script, text) = (&self.script, &mut self.text);
        let leaving = self.churn.as_ref().is_some_and(|c| c.is_leaving(key));
        // After its close frame a connection sends no more data: no replies, no echoes.
        let replies = script.has_replies() && !leaving;
        let (echo, round_trips) = (self.echo && !leaving, self.round_trips);
        out.clear();
        let mut close = None;
        let res = decoder.feed_inflating(bytes, Role::Client, &self.limits, inflate, |ev| {
            let opcode = match ev {
                Event::Text(_) => OP_TEXT,
                _ => OP_BINARY,
            };
            match ev {
                Event::Text(data) | Event::Binary(data) => {
                    if deflated {
                        tally.counters.bytes_inflated += data.len() as u64;
                    }
                    // Our own message back from an echo server: a round trip, not a push.
                    if round_trips && let Some(sent) = template::rtt_sent(data) {
                        tally.round_trip(sent, now);
                        return;
                    }
                    let fresh = if replies && script.reply(data, i, text, out) {
                        tally.counters.replies += 1;
                        true
                    } else {
                        tally.message(last_seq, data, now, open)
                    };
                    // A copy the connection had already (its own echo, back from a server
                    // that echoes too) is not sent round again.
                    if echo && fresh {
                        frame::encode_frame(opcode, data, Some(rand::random()), out);
                        tally.counters.echoed += 1;
                    }
                }
                Event::Ping(data) => {
                    frame::encode_frame(OP_PONG, data, Some(rand::random()), out);
                }
                Event::Pong(data) => {
                    if let Some(sent) = Script::pong_sent(data) {
                        tally.pong(sent, now);
                    }
                }
                // A leaving connection's close answered: it waits for the server to end TCP.
                Event::Close(..) if leaving => {}
                Event::Close(code, reason) => {
                    if close.is_none() {
                        let payload = frame::close_payload(code.unwrap_or(1000));
                        frame::encode_frame(OP_CLOSE, &payload, Some(rand::random()), out);
                        // The server's reason, when it gave one and this is the first shown.
                        let cause = match (reason.is_empty(), wants_reason) {
                            (false, true) => Cause::Text(close_reason(code, reason)),
                            _ => Cause::CloseFrame(code),
                        };
                        close = Some(Failure {
                            class: ErrorClass::ClosedByServer,
                            cause,
                        });
                    }
                }
            }
        });
        if let Err(err) = res {
            let payload = frame::close_payload(err.close_code());
            frame::encode_frame(OP_CLOSE, &payload, Some(rand::random()), out);
            close = Some(Failure {
                class: ErrorClass::Protocol,
                cause: Cause::Frame(err),
            });
        }
        self.answer(key, close)
    }

    /// Writes what reading a connection's bytes called for (pongs, replies, echoes, a close),
    /// and says whether it goes on.
    fn answer(&mut self, key: usize, mut close: Option<Failure>) -> Outcome {
        match (self.out.is_empty(), close.is_some(), self.echo) {
            (true, ..) => {}
            (false, false, _) => close = self.write_out(key).err(),
            // The echoes before a close go out before it, and the connection ends after them.
            (false, true, true) => {
                if self.write_out(key).is_ok() {
                    close = match self.backlog.end_after(key, close) {
                        Ok(()) => return Outcome::Keep,
                        Err(close) => close,
                    };
                }
            }
            // The close frame is best effort: the connection ends either way.
            (false, true, false) => {
                let _ = self.conns[key].stream.write(&self.out);
            }
        }
        match close {
            Some(failure) => Outcome::Close(Some(failure)),
            None => Outcome::Keep,
        }
    }

    /// Ends a connection's part in the run and counts how; returns its stream, which closes
    /// when dropped (the end of run keeps it open until the server has closed it).
    fn close(&mut self, key: usize, failure: Option<Failure>) -> Option<Transport> {
        let conn = self.conns.try_remove(key)?;
        if let Some(ring) = &mut self.recv {
            // Before its descriptor can close: a receive in flight holds the socket open.
            ring.disarm(key);
        }
        if self.echo {
            self.backlog.forget(key);
        }
        let churned = self.churn.as_mut().is_some_and(|c| c.ended(key));
        let source = conn.source as usize;
        match conn.state {
            State::Connecting(_) => {
                self.inflight -= 1;
                let failure = failure.unwrap_or(Failure::msg(ErrorClass::Other, "gave up"));
                self.fail_attempt(source, failure);
            }
            State::Open { last_seq, .. } => {
                self.active -= 1;
                self.tally.counters.closed += 1;
                self.per_source[source].closed += 1;
                // The server's close is what a leaving connection waited for; its slot is
                // opened again at once.
                let failure = match churned {
                    true => failure.filter(|f| f.class != ErrorClass::ClosedByServer),
                    false => failure,
                };
                if churned {
                    self.tally.counters.churned += 1;
                    self.started = self.started.saturating_sub(1);
                }
                if failure
                    .as_ref()
                    .is_some_and(|f| f.class == ErrorClass::Reset)
                {
                    self.tally.reset(last_seq);
                }
                if let Some(failure) = failure {
                    self.count_failure(source, failure);
                    if !churned {
                        self.retry_later();
                    }
                }
            }
        }
        Some(conn.stream)
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(key, since)) = self.deadlines.front() {
            if since + self.connect_timeout > now {
                break;
            }
            self.deadlines.pop_front();
            let stale = matches!(
                self.conns.get(key).map(|c| &c.state),
                Some(State::Connecting(c)) if c.since == since
            );
            if stale {
                self.close(
                    key,
                    Some(Failure::msg(
                        ErrorClass::Timeout,
                        "no connection and upgrade within --connect-timeout",
                    )),
                );
            }
        }
    }

    fn flush(&mut self) {
        let per_source = self
            .per_source
            .iter_mut()
            .filter(|s| s.opened + s.closed + s.errors > 0)
            .map(|s| {
                let d = s.clone();
                (s.opened, s.closed, s.errors) = (0, 0, 0);
                d
            })
            .collect();
        let delta = ShardDelta {
            shard: self.id,
            counters: std::mem::take(&mut self.tally.counters),
            latency: std::mem::replace(&mut self.tally.latency, new_histogram()),
            pong_rtt: std::mem::replace(&mut self.tally.pong_rtt, new_histogram()),
            echo_rtt: std::mem::replace(&mut self.tally.echo_rtt, new_histogram()),
            active: self.active,
            opens_us: self.opens_us.take(),
            per_source,
            error_samples: self.samples.take(),
            connecting: self.inflight as u64,
            peers: None,
            latencies: self.tally.take_latencies(),
            sample: self.tally.take_sample(),
            broadcasts: self.tally.recent.take_dirty(),
            settled: None,
            gone: false,
            full: false,
        };
        let _ = self.io.deltas.send(delta);
    }

    fn shutdown(&mut self) {
        self.leave_ring();
        // What already arrived is read before anything is counted as missed: a batch window or
        // a busy core can leave the tail of the last broadcast sitting in socket buffers.
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for &key in &keys {
            if matches!(self.conns[key].state, State::Open { .. })
                && let Outcome::Close(failure) = self.on_readable(key, false)
            {
                self.close(key, failure);
            }
        }
        let (final_seq, final_ts) = self.tally.seqs.settled(Instant::now());
        let bye = frame::masked_close(1000, rand::random());
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        let mut settled = 0;
        let mut ending = Farewell::default();
        for key in keys {
            let conn = &mut self.conns[key];
            match conn.state {
                State::Open { last_seq, .. } => {
                    // Charged for what came after its last message; a connection that never
                    // had a baseline is charged nothing.
                    let c = &mut self.tally.counters;
                    match last_seq {
                        NO_BASELINE => {}
                        l if l & BY_TS != 0 => c.missed_ts += final_ts.saturating_sub(l & !BY_TS),
                        // It got past the cutoff: nothing is owed, here or by the aggregator.
                        l if l > final_seq => {}
                        l => {
                            c.missed += final_seq - l;
                            settled += 1;
                        }
                    }
                    let _ = conn.stream.write(&bye);
                    let _ = conn.stream.flush();
                    if let Some(stream) = self.close(key, None) {
                        ending.closing(key, stream);
                    }
                }
                State::Connecting(_) => {
                    // An attempt cut short by the end of the run is neither a failure nor open;
                    // one the server may have upgraded already is let go as an open one is.
                    let conn = self.conns.remove(key);
                    self.inflight -= 1;
                    let plain = matches!(conn.stream, Transport::Plain(_));
                    if let State::Connecting(c) = conn.state
                        && c.sent
                        && plain
                    {
                        ending.upgrading(key, conn.stream, c.buf);
                    }
                }
            }
        }
        self.flush();
        // Another process's shards may have seen a later broadcast than this process: the
        // aggregator charges these connections for it (see `ShardDelta::settled`).
        let mut last = ShardDelta::empty(self.id);
        last.settled = Some(Settled {
            cutoff: final_seq,
            seen: self.tally.seqs.max.load(Ordering::Relaxed),
            open: settled,
        });
        let _ = self.io.deltas.send(last);
        ending.wait(&mut self.io.poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_reads_as_its_status_line_and_reason() {
        let buf = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nno \x01way\r\n";
        assert_eq!(
            rejection(buf),
            r#"the server answered "HTTP/1.1 403 Forbidden" instead of 101 Switching Protocols: "no \x01way""#
        );
        let head = b"HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert!(rejection(head).ends_with("instead of 101 Switching Protocols"));
    }

    #[test]
    fn the_users_headers_go_first_and_their_user_agent_replaces_c1ms() {
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let head = extra_head(&h(&["X-A: 1"]), &h(&["v1", "v2"]), Offer::Off);
        assert_eq!(
            head,
            b"X-A: 1\r\nUser-Agent: c1m\r\nSec-WebSocket-Protocol: v1, v2\r\n"
        );
        let head = extra_head(&h(&["user-agent: probe/1"]), &[], Offer::Context);
        assert_eq!(
            head,
            b"user-agent: probe/1\r\n\
              Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        );
        let head = extra_head(&h(&["user-agent: probe/1"]), &[], Offer::Off);
        assert_eq!(head, b"user-agent: probe/1\r\n");
        assert!(protocol_agreed(&[], None));
        assert!(!protocol_agreed(&h(&["v1"]), None));
        assert!(!protocol_agreed(&[], Some(b"v1")));
        assert!(protocol_agreed(&h(&["v1", "v2"]), Some(b"v2")));
    }

    #[test]
    fn tls_records_are_told_from_http() {
        assert!(looks_like_tls(b"\x15\x03\x03\x00\x02\x02\x46"));
        assert!(looks_like_tls(b"\x16\x03\x01\x02\x00"));
        assert!(!looks_like_tls(b"HTTP/1.1 400 Bad Request\r\n"));
        assert!(!looks_like_tls(b""));
    }

    #[test]
    fn a_broadcast_still_arriving_at_the_end_is_charged_to_nobody() {
        let now = Instant::now() + Duration::from_secs(10);
        let ago = |ms: u64| now - Duration::from_millis(ms);
        let seen = [
            (7, ago(3000)),
            (8, ago(1500)),
            (9, ago(400)),
            (10, ago(100)),
        ];
        assert_eq!(settled_max(seen.into_iter(), false, now), 8);
        assert_eq!(settled_max(seen[2..].iter().copied(), false, now), 0);
        // Older numbers were let go: they are all older than the oldest kept.
        assert_eq!(settled_max(seen[2..].iter().copied(), true, now), 8);
        assert_eq!(settled_max(std::iter::empty(), false, now), 0);
    }

    #[test]
    fn every_shard_of_a_process_charges_up_to_the_same_cutoff() {
        let seqs = Sequences::default();
        let t0 = Instant::now();
        seqs.observe(1);
        // The first shard to stop, within the grace: nothing is settled yet.
        assert_eq!(seqs.settled(t0), (0, 0));
        // A shard stopping later, past the grace, must not judge otherwise.
        assert_eq!(seqs.settled(t0 + IN_FLIGHT_GRACE * 2), (0, 0));
    }

    #[test]
    fn a_connection_is_charged_only_from_its_baseline() {
        let reader = Reader::new(&ReaderSpec::default()).unwrap();
        let mut t = Tally::new(reader, Arc::new(Sequences::default()), Arc::default());
        let mut last = NO_BASELINE;
        // Joining at 2,354: nothing before it is a loss.
        t.account(&mut last, 2_354, false);
        assert_eq!((t.counters.missed, last), (0, 2_354));
        t.account(&mut last, 2_357, false);
        assert_eq!(t.counters.missed, 2);
        // Gaps in numbers given to timestamps are kept apart, for the aggregator to judge.
        let mut by_ts = NO_BASELINE;
        t.account(&mut by_ts, 5, true);
        t.account(&mut by_ts, 8, true);
        assert_eq!((t.counters.missed, t.counters.missed_ts), (2, 2));
    }

    /// Parts go up as deltas that add to what the shard received, the open count once; a
    /// straggler for a seq the shard let go still counts, and nothing let go unreported is lost.
    #[test]
    fn broadcast_parts_go_up_as_deltas_that_add_to_what_arrived() {
        let mut r = Recent {
            parts: Vec::new(),
            unsent: Vec::new(),
        };
        let counts = |parts: Vec<BroadcastPart>| -> Vec<(u64, u64, u64)> {
            parts.iter().map(|p| (p.seq, p.count, p.open)).collect()
        };
        for now in 0..3 {
            r.record(1, now, None, 40, false);
        }
        assert_eq!(counts(r.take_dirty()), [(1, 3, 40)]);
        r.record(1, 5, None, 40, false);
        r.record(1, 6, None, 40, false);
        assert_eq!(counts(r.take_dirty()), [(1, 2, 0)]);
        assert!(r.take_dirty().is_empty());
        // Seventeen newer broadcasts before the next flush: 17 lets go of 1 (all reported),
        // 18 lets go of 2 unreported, and the straggler for 1 lets go of 3.
        for seq in 2..=18 {
            r.record(seq, 10, None, 40, false);
        }
        r.record(1, 20, None, 40, false);
        let got = counts(r.take_dirty());
        assert_eq!(got.iter().map(|(_, n, _)| n).sum::<u64>(), 18);
        assert!(got.contains(&(2, 1, 40)), "{got:?}");
        assert!(got.contains(&(1, 1, 0)), "{got:?}");
    }

    /// A copy whose corrected time reads a hair before its send (inside the clock's
    /// uncertainty) is not timed, but it arrived: its broadcast's row counts it, and the row's
    /// send time comes from a copy that could be timed.
    #[test]
    fn an_untimed_copy_still_counts_in_its_broadcast_row() {
        let reader = Reader::new(&ReaderSpec::default()).unwrap();
        let mut t = Tally::new(reader, Arc::new(Sequences::default()), Arc::default());
        // Two connections' copies of broadcast 1.
        let (mut a, mut b) = (NO_BASELINE, NO_BASELINE);
        let sent = 1_796_000_000_000_000i64;
        let copy = format!("{{\"seq\":1,\"ts\":{sent}}}");
        assert!(t.message(&mut a, copy.as_bytes(), sent - 40, 2));
        assert!(t.message(&mut b, copy.as_bytes(), sent + 900, 2));
        // The same copy again on one of them is a duplicate: not received twice.
        assert!(!t.message(&mut b, copy.as_bytes(), sent + 950, 2));
        assert_eq!(t.counters.duplicates, 1);
        assert_eq!((t.counters.messages, t.counters.skewed), (2, 1));
        let parts = t.recent.take_dirty();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].count, 2);
        assert_eq!(parts[0].sent_ts_us, Some(sent));
    }
}
