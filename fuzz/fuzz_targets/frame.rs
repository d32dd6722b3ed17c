//! The WebSocket frame `Decoder` on arbitrary bytes, split into reads at arbitrary points, at
//! both ends of a connection (a server decoding masked client frames, a client decoding
//! unmasked server frames).
//!
//! Input layout: byte 0 picks the role (bit 0), the limits (bits 1-2: the server's, the
//! client's, or small ones from bytes 1 and 2) and whether to feed one byte per read (bit 3);
//! byte 3's low nibble says how many of the next bytes are read sizes (0-255 each, 0 being an
//! empty read); everything after is the stream, and what the read sizes do not cover is the
//! last read.
//!
//! Invariants, beyond "never panics" (and no unbounded allocation: the limits bound it):
//! - the stream decoded in one read and in the chosen reads gives the same events, then the
//!   same error or none, and then holds the same number of bytes;
//! - events obey the limits and the protocol: data messages within `max_message`, control
//!   payloads at most 125 bytes, text and close reasons valid UTF-8, close codes sendable;
//! - the decoder never holds more bytes than it was given;
//! - every event, encoded again with `encode_frame` (masked when decoding as the server),
//!   decodes to the same event.
#![no_main]

use c1m::engine::budget::{CLIENT_LIMITS, SERVER_LIMITS};
use c1m::proto::frame::{
    Decoder, Event, FrameError, Limits, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Role,
    encode_frame,
};
use libfuzzer_sys::fuzz_target;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Owned {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, Vec<u8>),
}

impl From<Event<'_>> for Owned {
    fn from(event: Event<'_>) -> Self {
        match event {
            Event::Text(p) => Owned::Text(p.to_vec()),
            Event::Binary(p) => Owned::Binary(p.to_vec()),
            Event::Ping(p) => Owned::Ping(p.to_vec()),
            Event::Pong(p) => Owned::Pong(p.to_vec()),
            Event::Close(code, reason) => Owned::Close(code, reason.to_vec()),
        }
    }
}

struct Outcome {
    events: Vec<Owned>,
    result: Result<(), FrameError>,
    buffered: usize,
}

/// Feeds `stream` as reads of the given lengths, stopping at the first error as a connection
/// would. The decoder unmasks in place, so it works on its own copy.
fn decode(stream: &[u8], reads: &[usize], role: Role, limits: &Limits) -> Outcome {
    let mut stream = stream.to_vec();
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    let mut result = Ok(());
    let mut at = 0;
    for &len in reads {
        let read = &mut stream[at..at + len];
        at += len;
        result = decoder.feed(read, role, limits, |e| events.push(e.into()));
        assert!(decoder.buffered() <= at, "holds more than it was given");
        if result.is_err() {
            break;
        }
    }
    Outcome {
        events,
        result,
        buffered: decoder.buffered(),
    }
}

fuzz_target!(|data: &[u8]| {
    let [b0, b1, b2, b3, rest @ ..] = data else {
        return;
    };
    let role = if b0 & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let limits = match (b0 >> 1) & 3 {
        0 => SERVER_LIMITS,
        1 => CLIENT_LIMITS,
        2 => Limits {
            max_frame: usize::from(*b1),
            max_message: usize::from(*b2) * 4,
        },
        _ => Limits {
            max_frame: usize::from(*b1) * 16,
            max_message: usize::from(*b2),
        },
    };
    let n_sizes = usize::from(b3 & 0x0F).min(rest.len());
    let (sizes, stream) = rest.split_at(n_sizes);

    let mut reads: Vec<usize> = Vec::new();
    if b0 & 8 != 0 {
        reads.resize(stream.len(), 1);
    } else {
        let mut left = stream.len();
        for &size in sizes {
            let len = usize::from(size).min(left);
            reads.push(len);
            left -= len;
        }
        reads.push(left);
    }

    let whole = decode(stream, &[stream.len()], role, &limits);
    let split = decode(stream, &reads, role, &limits);
    assert_eq!(whole.events, split.events, "events depend on the reads");
    assert_eq!(whole.result, split.result, "errors depend on the reads");
    if whole.result.is_ok() {
        assert_eq!(
            whole.buffered, split.buffered,
            "held bytes depend on the reads"
        );
    }

    for event in &whole.events {
        check(event, &limits);
    }
    re_encode(&whole.events, role, [*b0, *b1, *b2, *b3]);
});

fn check(event: &Owned, limits: &Limits) {
    match event {
        Owned::Text(p) => {
            assert!(p.len() <= limits.max_message);
            assert!(std::str::from_utf8(p).is_ok(), "text is not UTF-8");
        }
        Owned::Binary(p) => assert!(p.len() <= limits.max_message),
        Owned::Ping(p) | Owned::Pong(p) => assert!(p.len() <= 125),
        Owned::Close(code, reason) => {
            assert!(reason.len() <= 123);
            assert!(
                std::str::from_utf8(reason).is_ok(),
                "close reason is not UTF-8"
            );
            match code {
                None => assert!(reason.is_empty()),
                Some(c) => assert!(matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999)),
            }
        }
    }
}

/// What the decoder reported, written again as single frames, must decode the same.
fn re_encode(events: &[Owned], role: Role, key: [u8; 4]) {
    let mask = (role == Role::Server).then_some(key);
    let mut bytes = Vec::new();
    for event in events {
        let (opcode, payload) = match event {
            Owned::Text(p) => (OP_TEXT, p.clone()),
            Owned::Binary(p) => (OP_BINARY, p.clone()),
            Owned::Ping(p) => (OP_PING, p.clone()),
            Owned::Pong(p) => (OP_PONG, p.clone()),
            Owned::Close(None, _) => (OP_CLOSE, Vec::new()),
            Owned::Close(Some(code), reason) => {
                (OP_CLOSE, [&code.to_be_bytes()[..], reason].concat())
            }
        };
        encode_frame(opcode, &payload, mask, &mut bytes);
    }
    // A reassembled message may be longer than one frame was allowed to be.
    let roomy = Limits {
        max_frame: 1 << 20,
        max_message: 1 << 20,
    };
    let again = decode(&bytes, &[bytes.len()], role, &roomy);
    assert_eq!(again.result, Ok(()));
    assert_eq!(again.events, events, "re-encoded events decode differently");
    assert_eq!(again.buffered, 0);
}
