//! How a connection's bytes move: the seam under the engine's shards. Plain TCP, or (client,
//! `wss://`) a TLS session over it; nothing above this file tells them apart but the
//! broadcast, which may share one pre-encoded frame only over plain sockets.
//!
//! An enum, not a trait object: the per-message path pays a predictable branch, not an
//! indirect call. The TLS session is boxed, so a plain connection's record grows by the
//! enum's tag only.

use super::tls_stream::TlsStream;
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
    Tls(Box<TlsStream>),
}

impl Transport {
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Read {
        loop {
            let got = match self {
                Transport::Plain(stream) => stream.read(buf),
                Transport::Tls(tls) => tls.read(buf),
            };
            return match got {
                Ok(0) => Read::Eof,
                Ok(n) => Read::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Read::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A TLS peer that closed without close_notify: the same end as a plain EOF.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Read::Eof,
                Err(e) => Read::Failed(e),
            };
        }
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.write(buf),
            Transport::Tls(tls) => tls.write(buf),
        }
    }

    /// TLS: ciphertext waits for room in the socket (a write took the plaintext whole). The
    /// server counts it as the frame in flight.
    pub(crate) fn backlogged(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(tls) => tls.backlogged(),
        }
    }

    /// TLS: sends waiting ciphertext until the socket would block.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            Transport::Tls(tls) => tls.flush(),
        }
    }

    /// Whether a TLS handshake resumed an earlier session; `None` over plain TCP.
    pub(crate) fn resumed(&self) -> Option<bool> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(tls) => Some(tls.resumed()),
        }
    }

    fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(stream) => stream,
            Transport::Tls(tls) => &tls.sock,
        }
    }

    fn socket_mut(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(stream) => stream,
            Transport::Tls(tls) => &mut tls.sock,
        }
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
            // Read until the session and the socket both have nothing more.
            Transport::Tls(_) => true,
        }
    }

    pub(crate) fn set_nodelay(&self) -> io::Result<()> {
        self.socket().set_nodelay(true)
    }
}

impl Source for Transport {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.socket_mut().register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.socket_mut().reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.socket_mut().deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_connection_pays_only_the_tag_for_tls() {
        // A descriptor, a tag, and room for the boxed session's pointer.
        assert!(size_of::<Transport>() <= size_of::<TcpStream>().max(8) + 8);
    }
}
