//! The one place per-connection memory is chosen.
//!
//! tungstenite's defaults allocate a 128 KiB read buffer per connection up front (≈135 KiB per
//! connection measured, 135 GB per million) and leave the write buffer unbounded. c1m does not
//! keep a WebSocket object per connection at all: a connection is a slab record of a few dozen
//! bytes (fd, a one-pointer frame decoder, a sequence number). Reads go through one scratch
//! buffer per shard; a connection allocates only while its handshake is in flight, while a frame
//! straddles two reads, or while a broadcast frame is half-written to a slow reader, and frees
//! that memory when the condition ends.
//!
//! Over TLS a connection adds its rustls session and nothing else: sessions use the unbuffered
//! API, so records are read and sealed in the shard thread's buffers (`tls_stream`), and a
//! connection holds ciphertext or plaintext of its own only while a record straddles reads,
//! data waits for the handshake, or the socket is full. The session itself (record keys,
//! secrets, state; on the client the server's certificates) is rustls' choice: 3.9 KiB on the
//! server and 4.6 on the client at 19,000 (BENCHMARKS.md). The client keeps at most one TLS 1.3
//! ticket per connection it opens, and the server sends one per handshake.
//!
//! permessage-deflate costs nothing per connection when the server keeps no context: one
//! inflate window and one output buffer per shard serve every connection (`--compression
//! shared`). A server that keeps its context makes each connection keep a window as large as
//! the server's (`--compression context`: 46.7 KiB for 32 KiB, measured), and the server side
//! of c1m never does.

use crate::proto::frame::Limits;

/// Bytes read per `read()` into the shard's shared scratch buffer.
pub const SCRATCH: usize = 64 * 1024;

/// First allocation for a handshake in flight; grows up to `proto::handshake::MAX_HEAD`.
pub const HANDSHAKE_INITIAL: usize = 512;

/// What a push server accepts from a client: control frames and small text. Anything bigger is
/// an abuse of a server that expects nothing, and is closed with 1009.
pub const SERVER_LIMITS: Limits = Limits {
    max_frame: 1024,
    max_message: 4096,
};

/// What the client accepts from a server: enough for padded payloads and foreign servers' JSON.
pub const CLIENT_LIMITS: Limits = Limits {
    max_frame: 1 << 20,
    max_message: 1 << 20,
};

/// With `--echo` and no `--max-message`: what Autobahn|Testsuite's largest cases send (9.1.6,
/// 16 MiB), which a connection buffers whole while it arrives.
pub const ECHO_MAX_MESSAGE: usize = 16 << 20;

/// A client with `--echo`: the most bytes that may wait for one connection's socket (a server
/// that sends faster than it reads its echoes back): two whole messages and a read's worth.
/// Nothing waits, and nothing is allocated, for a connection whose writes go out at once.
pub fn echo_backlog(max_message: usize) -> usize {
    max_message.saturating_mul(2).saturating_add(SCRATCH)
}

/// The limits one side decodes under: `--max-message` for frames and messages alike when
/// given; otherwise [`ECHO_MAX_MESSAGE`] with `--echo`, and `default` without.
pub fn limits(default: Limits, max_message: Option<u64>, echo: bool) -> Limits {
    match (max_message, echo) {
        (Some(n), _) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            Limits {
                max_frame: n,
                max_message: n,
            }
        }
        (None, true) => Limits {
            max_frame: ECHO_MAX_MESSAGE,
            max_message: ECHO_MAX_MESSAGE,
        },
        (None, false) => default,
    }
}

/// Listen backlog requested; the kernel caps it at net.core.somaxconn.
pub const LISTEN_BACKLOG: i32 = 65_535;

/// Handshakes a server shard works on at once; further connections wait in the kernel backlog.
pub const SERVER_HANDSHAKES_PER_SHARD: usize = 2048;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_message_over_echo_over_the_default() {
        let given = limits(SERVER_LIMITS, Some(65_536), true);
        assert_eq!((given.max_frame, given.max_message), (65_536, 65_536));
        let echo = limits(SERVER_LIMITS, None, true);
        assert_eq!(echo.max_message, ECHO_MAX_MESSAGE);
        assert_eq!(limits(SERVER_LIMITS, None, false), SERVER_LIMITS);
        assert_eq!(limits(CLIENT_LIMITS, None, false), CLIENT_LIMITS);
    }
}
