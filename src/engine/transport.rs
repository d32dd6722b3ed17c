//! How a connection's bytes move: the seam under the engine's shards. Plain TCP is the one
//! transport today; an encrypting one (TLS) becomes a second variant here, and nothing above
//! this file changes but the broadcast, which may share one pre-encoded frame only over plain
//! sockets.
//!
//! An enum, not a trait object: a connection record stays one file descriptor wide while there
//! is one variant, and the per-message path pays a predictable branch, not an indirect call.

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read as _, Write as _};

/// One `read()`, with the cases an edge-triggered loop must tell apart.
pub(crate) enum Read {
    Data(usize),
    WouldBlock,
    Eof,
    Failed(io::Error),
}

#[derive(Debug)]
pub(crate) enum Transport {
    Plain(TcpStream),
}

impl Transport {
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Read {
        let Transport::Plain(stream) = self;
        loop {
            return match stream.read(buf) {
                Ok(0) => Read::Eof,
                Ok(n) => Read::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Read::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Read::Failed(e),
            };
        }
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Transport::Plain(stream) = self;
        stream.write(buf)
    }

    /// Whether to read again at once after a read that returned `n` of the `asked` bytes.
    ///
    /// A plain socket is drained by a short read, and edge-triggered epoll reports anything that
    /// arrives later as a new event, so the usual extra read that returns EAGAIN is skipped;
    /// a peer that has also closed is read on, to see the EOF. A transport that buffers (TLS
    /// holds decrypted bytes a read did not take) must answer from its buffer instead: "short
    /// read, so drained" is a property of plain sockets only.
    pub(crate) fn read_again(&self, n: usize, asked: usize, peer_closed: bool) -> bool {
        match self {
            Transport::Plain(_) => n == asked || peer_closed,
        }
    }

    pub(crate) fn set_nodelay(&self) -> io::Result<()> {
        let Transport::Plain(stream) = self;
        stream.set_nodelay(true)
    }
}

impl Source for Transport {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        let Transport::Plain(stream) = self;
        stream.register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        let Transport::Plain(stream) = self;
        stream.reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        let Transport::Plain(stream) = self;
        stream.deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_record_stays_one_descriptor_wide() {
        assert_eq!(size_of::<Transport>(), size_of::<TcpStream>());
    }
}
