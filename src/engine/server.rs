//! The push server: shards share the listening port through SO_REUSEPORT, so the kernel spreads
//! accepts over them and a connection never changes threads. A shard does the HTTP upgrade
//! itself, then keeps only a slab record per connection. A broadcast is one pre-encoded frame
//! shared by every shard and written to each socket with a single `write()` (or, with
//! `--io-uring`, in batches of sends: see `fanout`).

mod fanout;

use super::budget::{
    HANDSHAKE_INITIAL, LISTEN_BACKLOG, SCRATCH, SERVER_HANDSHAKES_PER_SHARD, SERVER_LIMITS,
};
use super::tls::{ServerTls, ServerTlsSpec};
use super::transport::{Read, Transport};
use super::uring::SendRing;
use super::{
    Cause, ErrorSamples, FLUSH_EVERY, Failure, LISTENER_TOKEN, ShardCtl, ShardIo, WAKER_TOKEN,
    now_us, read_head, shard_channel,
};
use crate::proto::deflate::{Inflate, Window};
use crate::proto::frame::{
    self, Decoder, Event, Limits, OP_BINARY, OP_CLOSE, OP_PONG, OP_TEXT, Role,
};
use crate::proto::handshake;
use crate::stats::{BroadcastPart, Counters, ErrorClass, ShardDelta, new_histogram};
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Token};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub shards: usize,
    /// A connection that has not finished its upgrade by then is closed and counted.
    pub handshake_timeout: Duration,
    /// This server is one of several worker processes sharing a port their parent reserved:
    /// joining the SO_REUSEPORT group is the point, so the in-use probe is skipped.
    pub joins_group: bool,
    /// Most connections open at once in this process; an upgrade past it is answered 503 and
    /// counted as refused. `None`: no cap.
    #[serde(default)]
    pub max_conns: Option<u64>,
    /// What a connection that does not take broadcasts costs it.
    #[serde(default)]
    pub slow: SlowPolicy,
    /// When this process holds this many sockets (open and handshaking), the shard that took
    /// the last one says so at once (`ShardDelta::full`): a server that grows then sends new
    /// connections elsewhere. `None`: never.
    #[serde(default)]
    pub full_at: Option<u64>,
    /// Speak TLS (wss://) with this certificate.
    #[serde(default)]
    pub tls: Option<ServerTlsSpec>,
    /// `--compression shared`: take clients' permessage-deflate offers, compress each
    /// broadcast once and write the same compressed frame to every connection that agreed.
    #[serde(default)]
    pub compress: bool,
    /// The group's last broadcast before this server started: what its upgrades declare
    /// (`X-C1m-Seq`) until it broadcasts itself. A worker added mid-run must not say 0, or a
    /// connection it takes is charged for broadcasts sent before it existed.
    #[serde(default)]
    pub last_seq: u64,
    /// `--echo`: write every text and binary message back to its sender.
    #[serde(default)]
    pub echo: bool,
    /// `--max-message`: the largest frame and message taken from a client.
    #[serde(default)]
    pub max_message: Option<u64>,
    /// `--io-uring`: write broadcasts in batches of sends through an io_uring per shard.
    #[serde(default)]
    pub io_uring: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shards: 1,
            handshake_timeout: Duration::from_secs(10),
            joins_group: false,
            max_conns: None,
            slow: SlowPolicy::Drop,
            full_at: None,
            tls: None,
            compress: false,
            last_seq: 0,
            echo: false,
            max_message: None,
            io_uring: false,
        }
    }
}

/// A connection has at most one broadcast frame in flight; this says what happens when the next
/// broadcast finds it still there (or the socket full). Either way the memory a slow reader pins
/// is its socket buffer plus at most one partial frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SlowPolicy {
    /// The connection misses that broadcast (counted as dropped) and stays open.
    #[default]
    Drop,
    /// As `Drop`, and after `after` misses in a row the connection is closed with 1008 and
    /// counted as `slow_consumer`.
    Close { after: u32 },
}

/// The answer to an upgrade past `max_conns`: a status rather than a refused connect, so the
/// client learns why and nothing is left in the listen backlog.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
    Content-Type: text/plain\r\nRetry-After: 1\r\nContent-Length: 32\r\n\r\n\
    c1m server: --max-conns reached\n";

/// `max_conns` for this process. The shards share one count, so the cap is exact however the
/// kernel spreads accepts over them; it is touched once per open and close, never per message.
#[derive(Clone)]
struct Cap {
    max: u64,
    open: Arc<AtomicU64>,
}

impl Cap {
    fn take(&self) -> bool {
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Cmd {
    Broadcast {
        seq: u64,
        frame: Arc<[u8]>,
        /// The same message compressed, for connections with permessage-deflate.
        deflated: Option<Arc<[u8]>>,
        stamp_us: i64,
    },
    Stop,
}

/// The sockets this process holds, shared by its shards: touched once per accept and close,
/// never per message.
#[derive(Clone)]
struct Load {
    held: Arc<AtomicU64>,
    full_at: Option<u64>,
}

impl Load {
    /// Counts one more socket; true for the one that reaches `full_at`.
    fn take(&self) -> bool {
        let n = self.held.fetch_add(1, Ordering::Relaxed) + 1;
        self.full_at == Some(n)
    }

    fn give_back(&self) {
        self.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running server. Dropping it without [`Server::stop`] leaves the shard threads running.
pub struct Server {
    ctls: Vec<ShardCtl<Cmd>>,
    threads: Vec<JoinHandle<()>>,
    local_addr: SocketAddr,
    held: Arc<AtomicU64>,
    /// A handle on the listening socket of shard 0, to steer the SO_REUSEPORT group with.
    group: Socket,
    compress: bool,
}

impl Server {
    /// Binds the port (every shard's socket) before returning, so a bad address fails here.
    pub fn start(cfg: &ServerConfig, deltas: UnboundedSender<ShardDelta>) -> Result<Server> {
        let shards = cfg.shards.max(1);
        let tls = cfg.tls.as_ref().map(ServerTls::new).transpose()?;
        if !cfg.joins_group {
            ensure_port_free(cfg.listen)?;
        }
        let mut listeners = Vec::with_capacity(shards);
        let first = bind_reuseport(cfg.listen)
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let local_addr = first.local_addr()?;
        let group = socket2::SockRef::from(&first).try_clone()?;
        listeners.push(first);
        for _ in 1..shards {
            listeners.push(
                bind_reuseport(local_addr)
                    .with_context(|| format!("cannot listen on {local_addr}"))?,
            );
        }
        let mut ctls = Vec::with_capacity(shards);
        let mut threads = Vec::with_capacity(shards);
        let cap = cfg.max_conns.map(|max| Cap {
            max,
            open: Arc::new(AtomicU64::new(0)),
        });
        let load = Load {
            held: Arc::new(AtomicU64::new(0)),
            full_at: cfg.full_at,
        };
        for (id, listener) in listeners.into_iter().enumerate() {
            let (ctl, io) = shard_channel(deltas.clone())?;
            let shard = Shard::new(
                id,
                io,
                listener,
                cfg,
                cap.clone(),
                load.clone(),
                tls.clone(),
            )?;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("c1m-server-{id}"))
                    .spawn(move || shard.run())?,
            );
            ctls.push(ctl);
        }
        Ok(Server {
            ctls,
            threads,
            local_addr,
            held: load.held,
            group,
            compress: cfg.compress,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sockets this process holds now, open and handshaking.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// The SO_REUSEPORT group this server's listeners are in, for `engine::steer`.
    pub fn group(&self) -> &Socket {
        &self.group
    }

    pub fn shards(&self) -> usize {
        self.ctls.len()
    }

    /// Writes `payload` as one text frame, encoded once and shared by every shard, to every
    /// open connection under `seq`; `stamp_us` is the send time inside the payload, from which
    /// each write's send lag is measured. Returns the shards it was handed to: each reports its
    /// part through the deltas, the last one marked done (`BroadcastPart::done`).
    pub fn broadcast(&self, seq: u64, payload: &[u8], stamp_us: i64) -> std::ops::Range<usize> {
        let mut buf = Vec::with_capacity(payload.len() + 10);
        frame::encode_frame(frame::OP_TEXT, payload, None, &mut buf);
        let frame: Arc<[u8]> = buf.into();
        let deflated: Option<Arc<[u8]>> = self.compress.then(|| {
            let mut buf = Vec::new();
            frame::encode_deflated(frame::OP_TEXT, payload, None, &mut buf);
            buf.into()
        });
        for ctl in &self.ctls {
            ctl.send(Cmd::Broadcast {
                seq,
                frame: frame.clone(),
                deflated: deflated.clone(),
                stamp_us,
            });
        }
        0..self.ctls.len()
    }

    /// Closes every connection with 1001 (going away), flushes the last deltas and joins the
    /// shard threads.
    /// Returns the panic messages of shard threads that crashed (normally none).
    pub fn stop(self) -> Vec<String> {
        for ctl in &self.ctls {
            ctl.send(Cmd::Stop);
        }
        super::join_shards(self.threads)
    }
}

/// SO_REUSEPORT would let a second server silently join an existing group on the same port and
/// steal half its connections; a plain bind first turns that into a clear error.
pub fn ensure_port_free(addr: SocketAddr) -> Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into()).with_context(|| {
        format!("cannot listen on {addr}: the address is in use or not local (is another server running?)")
    })?;
    Ok(())
}

/// Holds `addr`'s port for a group of worker processes: bound with SO_REUSEPORT but not
/// listening, so it takes no connections itself while the workers' listeners join its group.
/// Port 0 picks a free port, which the returned socket's `local_addr` tells.
pub fn reserve_port(addr: SocketAddr) -> Result<Socket> {
    ensure_port_free(addr)?;
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(s)
}

pub(crate) fn bind_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(s.into()))
}

/// Writes `bytes` to an open connection in full: what the socket does not take now waits
/// behind anything already waiting and goes out as it drains (`--echo`, where every byte of a
/// message must arrive). Returns the bytes written now.
fn send_all(
    conn: &mut Conn,
    bytes: &[u8],
    registry: &mio::Registry,
    token: Token,
) -> io::Result<usize> {
    let State::Open { pending, .. } = &mut conn.state else {
        return Ok(0);
    };
    if bytes.is_empty() {
        return Ok(0);
    }
    let written = match pending {
        Some(_) => 0,
        None => match conn.stream.write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        },
    };
    let interest = Interest::READABLE | Interest::WRITABLE;
    if written < bytes.len() {
        let mut rest = pending.take().map(Vec::from).unwrap_or_default();
        rest.extend_from_slice(&bytes[written..]);
        *pending = Some(rest.into_boxed_slice());
        registry.reregister(&mut conn.stream, token, interest)?;
    } else if conn.stream.backlogged() {
        registry.reregister(&mut conn.stream, token, interest)?;
    }
    Ok(written)
}

struct Conn {
    stream: Transport,
    /// Index into the shard's peer table: a u16 instead of a 17-byte address per connection.
    peer: u16,
    state: State,
}

enum State {
    /// Boxed so that the common, long-lived `Open` state sets the size of the slab entry.
    Handshake(Box<Handshake>),
    Open {
        decoder: Decoder,
        /// The unwritten rest of a broadcast frame a slow reader could not take at once.
        pending: Option<Box<[u8]>>,
        /// Broadcasts dropped in a row for this connection, for `SlowPolicy::Close`.
        missed: u32,
        /// permessage-deflate agreed: broadcasts go out compressed, and what the client
        /// sends may be.
        deflate: bool,
        /// `--echo`: the peer's close is answered, behind echoes still going out; the
        /// connection ends when they have, and reads nothing more meanwhile.
        closing: bool,
    },
}

struct Handshake {
    buf: Vec<u8>,
    since: Instant,
}

/// Open connections per peer address. Peers are few (a client machine's source addresses), so
/// a connection stores a small index; past u16::MAX distinct addresses the rest share one slot.
#[derive(Default)]
struct Peers {
    index: std::collections::HashMap<std::net::IpAddr, u16>,
    open: Vec<(std::net::IpAddr, u64)>,
    changed: bool,
}

impl Peers {
    fn index(&mut self, ip: std::net::IpAddr) -> u16 {
        if let Some(&i) = self.index.get(&ip) {
            return i;
        }
        if self.open.len() > usize::from(u16::MAX) {
            return u16::MAX;
        }
        let i = self.open.len() as u16;
        self.index.insert(ip, i);
        self.open.push((ip, 0));
        i
    }

    fn open(&mut self, i: u16) {
        self.open[usize::from(i)].1 += 1;
        self.changed = true;
    }

    fn close(&mut self, i: u16) {
        self.open[usize::from(i)].1 -= 1;
        self.changed = true;
    }

    fn take_changed(&mut self) -> Option<Vec<(std::net::IpAddr, u64)>> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        Some(self.open.iter().filter(|(_, n)| *n > 0).copied().collect())
    }
}

enum Outcome {
    Keep,
    /// Close the connection; `Some` counts a failure.
    Close(Option<Failure>),
    /// Close a connection turned away with 503 at `max_conns`.
    Refuse,
}

struct Shard {
    id: usize,
    io: ShardIo<Cmd>,
    /// `--tls-cert`: every accepted connection starts a TLS session.
    tls: Option<ServerTls>,
    /// `--compression shared`: take permessage-deflate offers.
    compress: bool,
    /// `--echo`: messages go back to their sender.
    echo: bool,
    /// What a client may send.
    limits: Limits,
    /// Inflates what clients send compressed; they keep no window (the answer says so).
    window: Window,
    inflated: Vec<u8>,
    listener: TcpListener,
    conns: Slab<Conn>,
    scratch: Box<[u8]>,
    out: Vec<u8>,
    counters: Counters,
    samples: ErrorSamples,
    peers: Peers,
    active: u64,
    /// First and last handshake completed since the last flush.
    opens_us: Option<(i64, i64)>,
    handshaking: usize,
    /// Handshakes in start order, for timeouts without scanning every connection.
    deadlines: VecDeque<(usize, Instant)>,
    handshake_timeout: Duration,
    cap: Option<Cap>,
    load: Load,
    /// `SlowPolicy::Close`'s limit; `None` under `SlowPolicy::Drop`.
    slow_close_after: Option<u32>,
    /// Accepting paused: too many handshakes in flight, or EMFILE until the given time.
    accept_again_at: Option<Instant>,
    accept_ready: bool,
    last_seq: u64,
    parts: Vec<BroadcastPart>,
    /// Send lag of each frame written since the last flush (µs from stamp to write).
    lag: Histogram<u64>,
    /// `--io-uring`: broadcasts go out in batches of sends through this ring.
    ring: Option<SendRing>,
}

impl Shard {
    fn new(
        id: usize,
        io: ShardIo<Cmd>,
        mut listener: TcpListener,
        cfg: &ServerConfig,
        cap: Option<Cap>,
        load: Load,
        tls: Option<ServerTls>,
    ) -> io::Result<Shard> {
        io.poll
            .registry()
            .register(&mut listener, LISTENER_TOKEN, Interest::READABLE)?;
        Ok(Shard {
            id,
            tls,
            compress: cfg.compress,
            echo: cfg.echo,
            limits: super::budget::limits(SERVER_LIMITS, cfg.max_message, cfg.echo),
            window: Window::default(),
            inflated: Vec::new(),
            io,
            listener,
            conns: Slab::new(),
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            out: Vec::with_capacity(256),
            counters: Counters::default(),
            samples: ErrorSamples::default(),
            peers: Peers::default(),
            active: 0,
            opens_us: None,
            handshaking: 0,
            deadlines: VecDeque::new(),
            handshake_timeout: cfg.handshake_timeout,
            cap,
            load,
            slow_close_after: match cfg.slow {
                SlowPolicy::Drop => None,
                SlowPolicy::Close { after } => Some(after.max(1)),
            },
            accept_again_at: None,
            accept_ready: true,
            last_seq: cfg.last_seq,
            parts: Vec::new(),
            lag: new_histogram(),
            ring: match cfg.io_uring {
                true => Some(SendRing::new().map_err(|e| {
                    let hint = "Linux 5.6 or later, and not refused by kernel.io_uring_disabled \
                                or a seccomp profile";
                    io::Error::new(
                        e.kind(),
                        format!("--io-uring: io_uring_setup: {e} (needs {hint})"),
                    )
                })?),
                false => None,
            },
        })
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_flush = Instant::now() + FLUSH_EVERY;
        loop {
            let now = Instant::now();
            let timeout = next_flush.saturating_duration_since(now);
            if let Err(e) = self.io.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                eprintln!("c1m: server shard {}: poll failed: {e}", self.id);
                break;
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER_TOKEN => {}
                    LISTENER_TOKEN => self.accept_ready = true,
                    Token(key) => self.on_event(key, ev.is_writable(), ev.is_read_closed()),
                }
            }
            if self.drain_commands() {
                break;
            }
            self.accept();
            let now = Instant::now();
            if now >= next_flush {
                self.expire_handshakes(now);
                self.flush();
                next_flush = now + FLUSH_EVERY;
            }
        }
        self.shutdown();
    }

    /// Returns true when the shard must stop.
    fn drain_commands(&mut self) -> bool {
        while let Ok(cmd) = self.io.rx.try_recv() {
            match cmd {
                Cmd::Broadcast {
                    seq,
                    frame,
                    deflated,
                    stamp_us,
                } => {
                    let frames = (&frame[..], deflated.as_deref().unwrap_or(&frame));
                    self.broadcast(seq, frames, stamp_us);
                }
                Cmd::Stop => return true,
            }
        }
        false
    }

    fn accept(&mut self) {
        if let Some(at) = self.accept_again_at {
            if Instant::now() < at && self.handshaking >= SERVER_HANDSHAKES_PER_SHARD {
                return;
            }
            if Instant::now() < at {
                return;
            }
            self.accept_again_at = None;
        }
        while self.accept_ready && self.handshaking < SERVER_HANDSHAKES_PER_SHARD {
            match self.listener.accept() {
                Ok((stream, peer)) => self.adopt(stream, peer.ip()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.accept_ready = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE/ENFILE and friends: count once, then back off instead of spinning
                    // on a listener that stays readable.
                    self.count_failure(Failure::io(e), "accept");
                    self.accept_again_at = Some(Instant::now() + Duration::from_millis(50));
                    return;
                }
            }
        }
    }

    fn adopt(&mut self, stream: TcpStream, ip: std::net::IpAddr) {
        let peer = self.peers.index(ip);
        let mut stream = match &self.tls {
            None => Transport::Plain(stream),
            Some(tls) => match tls.stream(stream) {
                Ok(s) => Transport::Tls(Box::new(s)),
                Err(e) => return self.count_failure(Failure::io(e), "accept"),
            },
        };
        let _ = stream.set_nodelay();
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if self
            .io
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
            .is_err()
        {
            let failure = Failure::msg(ErrorClass::Other, "cannot register with epoll");
            self.count_failure(failure, "accept");
            return;
        }
        let since = Instant::now();
        entry.insert(Conn {
            stream,
            peer,
            state: State::Handshake(Box::new(Handshake {
                buf: Vec::with_capacity(HANDSHAKE_INITIAL),
                since,
            })),
        });
        self.handshaking += 1;
        self.deadlines.push_back((key, since));
        if self.load.take() {
            // At once: the process is nearly full, and a growing server must steer new
            // connections elsewhere before the next flush.
            self.flush_full();
        }
        // The request usually arrives with the connection; don't wait for the edge.
        self.on_event(key, false, false);
    }

    fn on_event(&mut self, key: usize, writable: bool, peer_closed: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let outcome = match &mut conn.state {
            State::Handshake(_) => self.on_handshake(key, peer_closed),
            State::Open { .. } => {
                let mut outcome = Outcome::Keep;
                if writable {
                    outcome = self.flush_pending(key);
                }
                if matches!(outcome, Outcome::Keep) {
                    outcome = self.on_readable(key, peer_closed);
                }
                outcome
            }
        };
        match outcome {
            Outcome::Keep => {}
            Outcome::Close(failure) => self.close(key, failure),
            Outcome::Refuse => self.refuse(key),
        }
    }

    fn on_handshake(&mut self, key: usize, peer_closed: bool) -> Outcome {
        let conn = &mut self.conns[key];
        let State::Handshake(hs) = &mut conn.state else {
            return Outcome::Keep;
        };
        let eof = match read_head(
            &mut conn.stream,
            &mut self.scratch,
            &mut hs.buf,
            peer_closed,
        ) {
            Ok(eof) => eof,
            Err(e) => return Outcome::Close(Some(Failure::io(e))),
        };
        // The head is counted once, when it ends: a request that arrives in several reads is
        // parsed from the whole buffer each time, and what follows the head goes to `on_frames`.
        match handshake::parse_request(&hs.buf) {
            Ok(None) if eof => {
                self.counters.bytes_in += hs.buf.len() as u64;
                Outcome::Close(Some(Failure::msg(
                    ErrorClass::HandshakeFailed,
                    "the client closed the connection during the upgrade",
                )))
            }
            Ok(None) => Outcome::Keep,
            Ok(Some(up)) => {
                self.counters.bytes_in += up.consumed as u64;
                if let Some(cap) = &self.cap
                    && !cap.take()
                {
                    // Best effort, like any rejection: the request has been read in full, so
                    // closing sends a FIN after it rather than a reset.
                    if let Ok(n) = conn.stream.write(FULL) {
                        self.counters.bytes_out += n as u64;
                    }
                    return Outcome::Refuse;
                }
                self.out.clear();
                let deflate = self.compress && up.deflate;
                handshake::write_response(&up.accept, Some(self.last_seq), deflate, &mut self.out);
                if conn.stream.write(&self.out).ok() != Some(self.out.len()) {
                    return Outcome::Close(Some(Failure::msg(
                        ErrorClass::HandshakeFailed,
                        "the 101 response could not be written in one go",
                    )));
                }
                self.counters.bytes_out += self.out.len() as u64;
                // The head reader stops at MAX_HEAD: a full buffer means more may be waiting.
                let more_waiting = hs.buf.len() >= handshake::MAX_HEAD;
                let mut rest = hs.buf.split_off(up.consumed);
                conn.state = State::Open {
                    decoder: Decoder::new(),
                    pending: None,
                    missed: 0,
                    deflate,
                    closing: false,
                };
                self.counters.deflate += u64::from(deflate);
                self.handshaking -= 1;
                self.active += 1;
                self.counters.opened += 1;
                self.peers.open(conn.peer);
                self.opens_us = Some(match self.opens_us {
                    Some((first, _)) => (first, now_us()),
                    None => (now_us(), now_us()),
                });
                let outcome = if rest.is_empty() {
                    Outcome::Keep
                } else {
                    self.on_frames(key, &mut rest)
                };
                match outcome {
                    Outcome::Keep if more_waiting && !eof => self.on_readable(key, peer_closed),
                    other => other,
                }
            }
            Err(err) => {
                self.counters.bytes_in += hs.buf.len() as u64;
                self.out.clear();
                handshake::write_rejection(&err, &mut self.out);
                let _ = conn.stream.write(&self.out);
                Outcome::Close(Some(Failure {
                    class: ErrorClass::HandshakeFailed,
                    cause: Cause::Handshake(err),
                }))
            }
        }
    }

    fn on_readable(&mut self, key: usize, peer_closed: bool) -> Outcome {
        let mut scratch = std::mem::take(&mut self.scratch);
        let outcome = loop {
            match self.conns[key].stream.read(&mut scratch) {
                Read::Data(n) => {
                    let outcome = self.on_frames(key, &mut scratch[..n]);
                    if !matches!(outcome, Outcome::Keep)
                        || !self.conns[key]
                            .stream
                            .read_again(n, scratch.len(), peer_closed)
                    {
                        break outcome;
                    }
                }
                Read::WouldBlock => break Outcome::Keep,
                Read::Eof => break Outcome::Close(None),
                Read::Failed(e) => break Outcome::Close(Some(Failure::io(e))),
            }
        };
        self.scratch = scratch;
        outcome
    }

    /// Frames from a client: a push server answers pings and closes, and otherwise ignores data,
    /// or with `--echo` writes each message back.
    fn on_frames(&mut self, key: usize, bytes: &mut [u8]) -> Outcome {
        self.counters.bytes_in += bytes.len() as u64;
        let conn = &mut self.conns[key];
        let State::Open {
            decoder,
            deflate,
            closing,
            ..
        } = &mut conn.state
        else {
            return Outcome::Keep;
        };
        if *closing {
            return Outcome::Keep;
        }
        let inflate = deflate.then_some(Inflate {
            window: &mut self.window,
            out: &mut self.inflated,
            takeover: false,
        });
        let out = &mut self.out;
        out.clear();
        let mut close = None;
        let (limits, echo) = (&self.limits, self.echo);
        let res = decoder.feed_inflating(bytes, Role::Server, limits, inflate, |ev| match ev {
            // After its close, a peer's frames are not answered (RFC 6455 5.5.1).
            _ if close.is_some() => {}
            Event::Ping(data) => frame::encode_frame(OP_PONG, data, None, out),
            Event::Text(data) if echo => frame::encode_frame(OP_TEXT, data, None, out),
            Event::Binary(data) if echo => frame::encode_frame(OP_BINARY, data, None, out),
            Event::Close(code, _) => {
                frame::encode_frame(
                    OP_CLOSE,
                    &frame::close_payload(code.unwrap_or(1000)),
                    None,
                    out,
                );
                close = Some(None);
            }
            _ => {}
        });
        if let Err(err) = res {
            frame::encode_frame(OP_CLOSE, &frame::close_payload(err.close_code()), None, out);
            close = Some(Some(Failure {
                class: ErrorClass::Protocol,
                cause: Cause::Frame(err),
            }));
        }
        if echo {
            let registry = self.io.poll.registry();
            match send_all(conn, out, registry, Token(key)) {
                Ok(n) => self.counters.bytes_out += n as u64,
                Err(e) => return Outcome::Close(Some(Failure::io(e))),
            }
            // A clean close waits for the echoes before it (RFC 6455 7.1.2: the close is the
            // last frame sent); flush_pending ends the connection when they are out.
            if let (
                Some(None),
                State::Open {
                    pending, closing, ..
                },
            ) = (&close, &mut conn.state)
                && pending.is_some()
            {
                *closing = true;
                return Outcome::Keep;
            }
        } else if !out.is_empty() {
            // Control replies are best effort: a peer that does not read them loses nothing.
            let _ = conn.stream.write(out);
            self.counters.bytes_out += out.len() as u64;
        }
        match close {
            Some(failure) => Outcome::Close(failure),
            None => Outcome::Keep,
        }
    }

    fn flush_pending(&mut self, key: usize) -> Outcome {
        let conn = &mut self.conns[key];
        let State::Open {
            pending, closing, ..
        } = &mut conn.state
        else {
            return Outcome::Keep;
        };
        let Some(rest) = pending.as_mut() else {
            return match conn.stream.flush() {
                Ok(()) if *closing && !conn.stream.backlogged() => Outcome::Close(None),
                Ok(()) if !conn.stream.backlogged() => {
                    let registry = self.io.poll.registry();
                    let _ = registry.reregister(&mut conn.stream, Token(key), Interest::READABLE);
                    Outcome::Keep
                }
                Ok(()) => Outcome::Keep,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Outcome::Keep,
                Err(e) => Outcome::Close(Some(Failure::io(e))),
            };
        };
        match conn.stream.write(rest) {
            Ok(n) if n == rest.len() => {
                self.counters.bytes_out += n as u64;
                *pending = None;
                match (*closing, conn.stream.backlogged()) {
                    (true, false) => return Outcome::Close(None),
                    // TLS still holds the last records: the next writable readiness flushes.
                    (true, true) => return Outcome::Keep,
                    _ => {}
                }
                let _ = self.io.poll.registry().reregister(
                    &mut conn.stream,
                    Token(key),
                    Interest::READABLE,
                );
                Outcome::Keep
            }
            Ok(n) => {
                self.counters.bytes_out += n as u64;
                *rest = rest[n..].into();
                Outcome::Keep
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Outcome::Keep,
            Err(e) => Outcome::Close(Some(Failure::io(e))),
        }
    }

    /// `SlowPolicy::Close`: a 1008 close frame if the socket can take it, then the socket is
    /// closed. A frame may only follow a whole frame, so a partial one in flight goes first if it
    /// can; on a full socket the peer sees the end of the stream only.
    fn close_slow(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let State::Open { pending, .. } = &mut conn.state else {
            return;
        };
        if let Some(rest) = pending
            && let Ok(n) = conn.stream.write(rest)
        {
            self.counters.bytes_out += n as u64;
            if n == rest.len() {
                *pending = None;
            }
        }
        if pending.is_none() {
            self.out.clear();
            frame::encode_frame(OP_CLOSE, &frame::close_payload(1008), None, &mut self.out);
            if let Ok(n) = conn.stream.write(&self.out) {
                self.counters.bytes_out += n as u64;
            }
        }
        let failure = Failure::msg(
            ErrorClass::SlowConsumer,
            "it took none of --slow-close-after broadcasts in a row (--slow-policy close)",
        );
        self.close(key, Some(failure));
    }

    /// Ends a connection answered 503 at `max_conns`: counted as refused, not as a failure.
    fn refuse(&mut self, key: usize) {
        if self.conns.try_remove(key).is_none() {
            return;
        }
        self.load.give_back();
        self.handshaking -= 1;
        self.counters.refused += 1;
        if self.handshaking < SERVER_HANDSHAKES_PER_SHARD {
            self.accept_ready = true;
        }
    }

    fn count_failure(&mut self, failure: Failure, context: &str) {
        self.counters.error(failure.class);
        self.samples.note(&failure, context);
    }

    fn close(&mut self, key: usize, failure: Option<Failure>) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        self.load.give_back();
        match conn.state {
            State::Handshake(_) => {
                self.handshaking -= 1;
                self.counters.failed += 1;
                if self.handshaking < SERVER_HANDSHAKES_PER_SHARD {
                    self.accept_ready = true;
                }
            }
            State::Open { .. } => {
                self.active -= 1;
                self.counters.closed += 1;
                self.peers.close(conn.peer);
                if let Some(cap) = &self.cap {
                    cap.give_back();
                }
            }
        }
        if let Some(failure) = failure {
            self.count_failure(failure, "client connection");
        }
        // Dropping the stream closes the fd, which also removes it from the epoll set.
    }

    fn expire_handshakes(&mut self, now: Instant) {
        while let Some(&(key, since)) = self.deadlines.front() {
            if since + self.handshake_timeout > now {
                break;
            }
            self.deadlines.pop_front();
            let stale = matches!(
                self.conns.get(key).map(|c| &c.state),
                Some(State::Handshake(hs)) if hs.since == since
            );
            if stale {
                let failure = Failure::msg(
                    ErrorClass::Timeout,
                    "no complete upgrade request within --handshake-timeout",
                );
                self.close(key, Some(failure));
            }
        }
        // Keys of finished handshakes stay queued until their deadline; bound that garbage.
        if self.deadlines.len() > 4 * SERVER_HANDSHAKES_PER_SHARD + self.handshaking {
            let conns = &self.conns;
            self.deadlines.retain(|&(key, since)| {
                matches!(conns.get(key).map(|c| &c.state), Some(State::Handshake(hs)) if hs.since == since)
            });
        }
    }

    /// A flush that also says this process has reached `full_at`.
    fn flush_full(&mut self) {
        let mut d = self.delta();
        d.full = true;
        let _ = self.io.deltas.send(d);
    }

    fn flush(&mut self) {
        let d = self.delta();
        let _ = self.io.deltas.send(d);
    }

    fn delta(&mut self) -> ShardDelta {
        ShardDelta {
            shard: self.id,
            counters: std::mem::take(&mut self.counters),
            latency: std::mem::replace(&mut self.lag, new_histogram()),
            pong_rtt: new_histogram(),
            echo_rtt: new_histogram(),
            active: self.active,
            opens_us: self.opens_us.take(),
            per_source: Vec::new(),
            error_samples: self.samples.take(),
            connecting: 0,
            peers: self.peers.take_changed(),
            latencies: Vec::new(),
            broadcasts: std::mem::take(&mut self.parts),
            settled: None,
            sample: None,
            gone: false,
            full: false,
        }
    }

    fn shutdown(&mut self) {
        let mut bye = Vec::new();
        frame::encode_frame(OP_CLOSE, &frame::close_payload(1001), None, &mut bye);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let State::Open { .. } = self.conns[key].state {
                let _ = self.conns[key].stream.write(&bye);
            }
            self.close(key, None);
        }
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slow_policy_costs_no_memory_per_connection() {
        // The count of missed broadcasts sits in the padding beside the enum's tag.
        assert_eq!(size_of::<State>(), 32);
    }

    #[test]
    fn the_503_is_well_formed() {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut res = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = res.parse(FULL).unwrap() else {
            panic!("incomplete");
        };
        assert_eq!(res.code, Some(503));
        let length = res
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .unwrap();
        let body = &FULL[head..];
        assert_eq!(
            std::str::from_utf8(length.value).unwrap(),
            body.len().to_string()
        );
        assert!(body.ends_with(b"--max-conns reached\n"));
    }

    #[test]
    fn the_cap_is_shared_and_given_back() {
        let cap = Cap {
            max: 2,
            open: Arc::new(AtomicU64::new(0)),
        };
        let other_shard = cap.clone();
        assert!(cap.take());
        assert!(other_shard.take());
        assert!(!cap.take());
        other_shard.give_back();
        assert!(cap.take());
    }
}
