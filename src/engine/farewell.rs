//! The end of a client's run, as RFC 6455 §7.1.1 asks: each connection sends its close frame
//! and the server closes TCP first. A server that closes none for [`LEAVE_TIMEOUT`] is left by
//! the client; one that is still closing them is waited for, up to [`FAREWELL_LIMIT`], because
//! a busy server answers a hundred thousand close frames over seconds, not at once. Meanwhile
//! whatever arrives is read and thrown away: a socket closed with unread bytes, or one that a
//! late broadcast reaches after it closed, makes this kernel answer with a reset, which the
//! server counts as an error of its own. And TIME_WAIT falls on the server's one port, not on
//! source ports.
//!
//! A connection still upgrading (request sent, response not yet read) is the same case for the
//! server, which holds it open from its 101: it waits for the response, then says goodbye too.

use super::churn::LEAVE_TIMEOUT;
use super::transport::{Read, Transport};
use crate::proto::frame;
use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

/// The longest a client's end waits for its server's closes while they keep coming: inside
/// the parent's patience with a stopping worker.
pub const FAREWELL_LIMIT: Duration = Duration::from_secs(60);

struct Leaving {
    stream: Transport,
    /// While upgrading: the server's response head so far. `None` once the close frame is out
    /// (or the server refused the upgrade): waiting for the server to close.
    head: Option<Vec<u8>>,
}

#[derive(Default)]
pub(crate) struct Farewell {
    conns: HashMap<usize, Leaving>,
}

impl Farewell {
    /// An open connection that has sent its close frame; `key` is its token.
    pub fn closing(&mut self, key: usize, stream: Transport) {
        let head = None;
        self.conns.insert(key, Leaving { stream, head });
    }

    /// A plain connection whose upgrade request is out, with the response bytes read so far.
    pub fn upgrading(&mut self, key: usize, stream: Transport, head: Vec<u8>) {
        let head = Some(head);
        self.conns.insert(key, Leaving { stream, head });
    }

    /// Waits until the server has closed every connection, or has closed none for
    /// [`LEAVE_TIMEOUT`], or [`FAREWELL_LIMIT`] has passed; those left then close from this side.
    pub fn wait(mut self, poll: &mut mio::Poll) {
        let start = Instant::now();
        let mut progress = start;
        let mut scratch = [0u8; 16 * 1024];
        self.conns.retain(|_, l| l.still_open(&mut scratch));
        let mut events = mio::Events::with_capacity(1024);
        while !self.conns.is_empty() {
            let deadline = (progress + LEAVE_TIMEOUT).min(start + FAREWELL_LIMIT);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Err(e) = poll.poll(&mut events, Some(left))
                && e.kind() != io::ErrorKind::Interrupted
            {
                break;
            }
            for ev in events.iter() {
                let key = ev.token().0;
                if let Some(l) = self.conns.get_mut(&key)
                    && !l.still_open(&mut scratch)
                {
                    self.conns.remove(&key);
                    progress = Instant::now();
                }
            }
        }
    }
}

impl Leaving {
    /// Reads what arrived; false once the peer has closed the connection.
    fn still_open(&mut self, scratch: &mut [u8]) -> bool {
        loop {
            let n = match self.stream.read(scratch) {
                Read::Data(n) => n,
                Read::WouldBlock => return true,
                Read::Eof | Read::Failed(_) => return false,
            };
            if let Some(head) = &mut self.head {
                head.extend_from_slice(&scratch[..n]);
                self.on_head();
            }
        }
    }

    /// Once the response head is whole: after a 101 the connection is open on the server, so
    /// it gets a close frame; any other answer the server closes itself.
    fn on_head(&mut self) {
        let Some(head) = &self.head else { return };
        if !head.windows(4).any(|w| w == b"\r\n\r\n") {
            return;
        }
        if head.starts_with(b"HTTP/1.1 101") {
            let _ = self
                .stream
                .write(&frame::masked_close(1000, rand::random()));
        }
        self.head = None;
    }
}
