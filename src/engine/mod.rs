//! The network. Established connections live in shard threads, each running its own `mio` event
//! loop over a slab of small per-connection records: no task, no waker and no buffer per
//! connection, which is what keeps a million of them in a few hundred megabytes. The control
//! plane (timers, signals, the reports) runs on tokio and talks to shards through [`ShardCtl`].
//!
//! Nothing here knows how results are shown: shards emit [`crate::stats::ShardDelta`]s.

mod backlog;
pub mod budget;
mod churn;
pub mod client;
mod farewell;
pub mod server;
pub mod source;
pub mod steer;
pub mod talk;
pub mod tls;
mod tls_stream;
pub(crate) mod transport;
mod uring;

use crate::stats::{ErrorClass, ShardDelta};
use std::io;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use transport::{Read, Transport};

/// Microseconds since the Unix epoch: the unit of every timestamp c1m sends or records.
pub fn now_us() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    now + skew_us()
}

/// For tests only: `C1M_TEST_CLOCK_SKEW_MS` makes this process's clock run that far ahead, as
/// an agent's on a machine whose clock is wrong, so a test on one machine can check that the
/// coordinator's clock correction takes it out. Read once; 0 when unset.
fn skew_us() -> i64 {
    static SKEW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *SKEW.get_or_init(|| {
        std::env::var("C1M_TEST_CLOCK_SKEW_MS")
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map_or(0, |ms| ms * 1000)
    })
}

/// The token mio reserves for a shard's waker; connection tokens are slab indices below it.
pub(crate) const WAKER_TOKEN: mio::Token = mio::Token(usize::MAX - 1);
/// A client shard's io_uring (`--io-uring`): its completions are due.
pub(crate) const RING_TOKEN: mio::Token = mio::Token(usize::MAX - 2);
/// The token of a server shard's listening socket.
pub(crate) const LISTENER_TOKEN: mio::Token = mio::Token(usize::MAX - 2);

/// How often a shard hands its counters and histogram to the aggregator.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Sends commands to one shard thread and wakes its poll loop.
pub(crate) struct ShardCtl<C> {
    tx: mpsc::Sender<C>,
    waker: Arc<mio::Waker>,
}

impl<C> Clone for ShardCtl<C> {
    fn clone(&self) -> Self {
        ShardCtl {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
    }
}

impl<C> ShardCtl<C> {
    /// A closed shard (it has exited) is not an error for the sender: there is nobody to tell.
    pub(crate) fn send(&self, cmd: C) {
        if self.tx.send(cmd).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// What a shard thread is handed when it starts.
pub(crate) struct ShardIo<C> {
    pub poll: mio::Poll,
    pub rx: mpsc::Receiver<C>,
    pub deltas: tokio::sync::mpsc::UnboundedSender<ShardDelta>,
}

pub(crate) fn shard_channel<C>(
    deltas: tokio::sync::mpsc::UnboundedSender<ShardDelta>,
) -> io::Result<(ShardCtl<C>, ShardIo<C>)> {
    let poll = mio::Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER_TOKEN)?);
    let (tx, rx) = mpsc::channel();
    Ok((ShardCtl { tx, waker }, ShardIo { poll, rx, deltas }))
}

/// Joins shard threads; returns the panic messages of those that crashed (normally none).
pub(crate) fn join_shards(threads: Vec<std::thread::JoinHandle<()>>) -> Vec<String> {
    threads
        .into_iter()
        .filter_map(|t| t.join().err())
        .map(|p| {
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into())
        })
        .collect()
}

/// Default shard count: one per core, so both ends of a co-located test share the cores.
pub fn default_shards() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Appends what the connection has to an HTTP head being collected in `buf`, up to
/// `proto::handshake::MAX_HEAD` bytes (the parser reports a head that long as too large).
/// It never reads past that bound, so bytes the peer sent after its head (a server that pushes
/// right after the 101) stay in the socket for the frame reader: when `buf` comes back full,
/// the caller must read on, because edge-triggered readiness will not report them again.
/// `Ok(true)` means the peer closed.
pub(crate) fn read_head(
    conn: &mut Transport,
    scratch: &mut [u8],
    buf: &mut Vec<u8>,
    peer_closed: bool,
) -> io::Result<bool> {
    use crate::proto::handshake::MAX_HEAD;
    while buf.len() < MAX_HEAD {
        let room = (MAX_HEAD - buf.len()).min(scratch.len());
        match conn.read(&mut scratch[..room]) {
            Read::Data(n) => {
                buf.extend_from_slice(&scratch[..n]);
                if !conn.read_again(n, room, peer_closed) {
                    break;
                }
            }
            Read::WouldBlock => break,
            Read::Eof => return Ok(true),
            Read::Failed(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Why a connection failed or ended badly: the class that is counted, and the cause a person
/// reads. Building it costs nothing on the common path: the text is rendered only for the first
/// failure of each class in a shard (see [`ErrorSamples`]).
#[derive(Debug)]
pub(crate) struct Failure {
    pub class: ErrorClass,
    pub cause: Cause,
}

#[derive(Debug)]
pub(crate) enum Cause {
    Io(io::Error),
    Handshake(crate::proto::handshake::HandshakeError),
    Frame(crate::proto::frame::FrameError),
    CloseFrame(Option<u16>),
    Msg(&'static str),
    /// A text built for the first failure of its class only (see [`ErrorSamples::wants`]).
    Text(String),
}

impl Failure {
    pub(crate) fn io(e: io::Error) -> Failure {
        if let Some(tls) = tls::classify(&e) {
            return tls;
        }
        Failure {
            class: ErrorClass::from_io(&e),
            cause: Cause::Io(e),
        }
    }

    pub(crate) fn msg(class: ErrorClass, text: &'static str) -> Failure {
        Failure {
            class,
            cause: Cause::Msg(text),
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Io(e) => write!(f, "{e}"),
            Cause::Handshake(e) => write!(f, "{e}"),
            Cause::Frame(e) => write!(f, "{e} (closed with {})", e.close_code()),
            Cause::CloseFrame(Some(code)) => write!(f, "the peer sent a close frame ({code})"),
            Cause::CloseFrame(None) => write!(f, "the peer sent a close frame"),
            Cause::Msg(text) => f.write_str(text),
            Cause::Text(text) => f.write_str(text),
        }
    }
}

/// The first failure text of each class a shard sees, so the user reads a cause once instead of
/// a count only, and a storm of identical errors costs one string.
#[derive(Default)]
pub(crate) struct ErrorSamples {
    seen: [bool; crate::stats::N_CLASSES],
    new: Vec<(ErrorClass, String)>,
}

impl ErrorSamples {
    pub(crate) fn note(&mut self, failure: &Failure, context: impl std::fmt::Display) {
        let seen = &mut self.seen[failure.class.index()];
        if !*seen {
            *seen = true;
            self.new
                .push((failure.class, format!("{context}: {}", failure.cause)));
        }
    }

    /// Whether a failure of `class` would be shown: only then is a detailed text worth
    /// building.
    pub(crate) fn wants(&self, class: ErrorClass) -> bool {
        !self.seen[class.index()]
    }

    pub(crate) fn take(&mut self) -> Vec<(ErrorClass, String)> {
        std::mem::take(&mut self.new)
    }
}
