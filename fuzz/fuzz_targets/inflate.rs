//! permessage-deflate glue (`proto::deflate`): inflating arbitrary bytes as compressed
//! messages, whole and through the frame decoder, and parsing arbitrary extension headers.
//!
//! Input layout: byte 0 picks the inflated-size limit (bits 0-1: 64 B, 1 KiB, 64 KiB, 1 MiB)
//! and context takeover (bit 2); byte 1 cuts the rest into two messages; byte 2 cuts each
//! message into two frames for the decoder; the rest is the compressed data, and is also
//! parsed as a `Sec-WebSocket-Extensions` value.
//!
//! Invariants, beyond "never panics" (and no unbounded allocation: a bomb stops at the limit):
//! - an inflated message is never longer than the limit, and the buffer never grows past it
//!   by more than one byte;
//! - the decoder, given the messages as RSV1 frames cut in two, yields the same messages and
//!   the same first error as inflating them whole;
//! - what inflated, deflated again by c1m, inflates back to itself;
//! - after an error the window reads a good message (it was reset);
//! - a permessage-deflate element that parses has window sizes in 8..=15 (0: no value).
#![no_main]

use c1m::proto::deflate::{self, Inflate, Offer, Window};
use c1m::proto::frame::{Decoder, Event, FrameError, Limits, OP_BINARY, OP_CONT, Role, encode_frame};
use c1m::proto::deflate::InflateError;
use libfuzzer_sys::fuzz_target;

fn inflate(window: &mut Window, data: &[u8], max: usize, takeover: bool) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    let res = Inflate { window, out: &mut out, takeover }.message(data, max);
    assert!(out.capacity() <= max + 1 || out.capacity() <= 4096, "buffer grew past the limit");
    res.map(|()| out)
}

/// The messages as the decoder sees them: each an RSV1 binary frame and a continuation.
fn through_decoder(messages: &[&[u8]], cut: usize, max: usize, takeover: bool) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut wire = Vec::new();
    for m in messages {
        let at = cut.min(m.len());
        let start = wire.len();
        encode_frame(OP_BINARY, &m[..at], None, &mut wire);
        wire[start] = (wire[start] & !0x80) | 0x40;
        encode_frame(OP_CONT, &m[at..], None, &mut wire);
    }
    let limits = Limits { max_frame: 1 << 20, max_message: max };
    let (mut window, mut out) = (Window::default(), Vec::new());
    let mut got = Vec::new();
    let inflate = Inflate { window: &mut window, out: &mut out, takeover };
    let res = Decoder::new().feed_inflating(&mut wire, Role::Client, &limits, Some(inflate), |e| {
        if let Event::Binary(p) = e {
            got.push(p.to_vec());
        }
    });
    (got, res.err())
}

fuzz_target!(|data: &[u8]| {
    let [b0, b1, b2, rest @ ..] = data else {
        return;
    };
    let max = [64, 1024, 64 << 10, 1 << 20][usize::from(b0 & 3)];
    let takeover = b0 & 4 != 0;
    let split = usize::from(*b1) % (rest.len() + 1);
    let messages = [&rest[..split], &rest[split..]];

    let mut window = Window::default();
    let mut whole = Vec::new();
    let mut error = None;
    for m in messages {
        match inflate(&mut window, m, max, takeover) {
            Ok(out) => {
                assert!(out.len() <= max);
                whole.push(out);
            }
            Err(e) => {
                error = Some(e);
                let mut good = Vec::new();
                deflate::deflate_message(b"after", &mut good);
                assert_eq!(inflate(&mut window, &good, 64, false).unwrap(), b"after");
                break;
            }
        }
    }
    // A message of more than max compressed bytes trips the frame's own size check first.
    if messages.iter().all(|m| m.len() <= max) {
        let (got, err) = through_decoder(&messages, usize::from(*b2), max, takeover);
        assert_eq!(got, whole);
        let error = error.map(|e| match e {
            InflateError::TooLarge => FrameError::MessageTooLarge,
            InflateError::Corrupt => FrameError::BadDeflate,
        });
        assert_eq!(err, error);
    }
    for out in &whole {
        let mut z = Vec::new();
        deflate::deflate_message(out, &mut z);
        assert_eq!(&inflate(&mut Window::default(), &z, max, false).unwrap(), out);
    }

    if let Ok(Some(p)) = deflate::parse_element(rest) {
        for bits in [p.server_max_window_bits, p.client_max_window_bits].into_iter().flatten() {
            assert!(bits == 0 || (8..=15).contains(&bits), "{bits}");
        }
    }
    let _ = deflate::accepts_offer(std::iter::once(rest));
    for offer in [Offer::Off, Offer::Shared, Offer::Context] {
        let _ = deflate::parse_answer(offer, std::iter::once(rest));
    }
});
