//! RFC 6455 framing for both ends of a connection.
//!
//! The decoder is built for a million idle connections sharing one read buffer: in the steady
//! state it is a single null pointer, and it only allocates while a frame straddles two reads or
//! a message is fragmented.

use super::deflate::{self, Inflate, InflateError};
use thiserror::Error;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The longest header: 2 fixed bytes, a 64-bit length and a mask key.
const MAX_HEADER: usize = 14;
const MAX_CONTROL_PAYLOAD: u64 = 125;
/// No buffer can exceed `isize::MAX`, and staying below it leaves room to add the header length,
/// whatever `Limits` says.
const MAX_PAYLOAD: usize = isize::MAX as usize - MAX_HEADER;

/// Which end of the connection is decoding; it decides which masking the peer must use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Decodes frames sent by clients, which must be masked.
    Server,
    /// Decodes frames sent by servers, which must not be masked.
    Client,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload accepted in a single frame.
    pub max_frame: usize,
    /// Largest data message accepted after reassembling its fragments.
    pub max_message: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error(
        "frame masking is wrong for this direction (client frames must be masked, server frames must not)"
    )]
    BadMask,
    #[error("control frame payload longer than 125 bytes")]
    ControlTooLong,
    #[error("fragmented control frame")]
    ControlFragmented,
    #[error("frame payload of {0} bytes exceeds the frame size limit")]
    FrameTooLarge(u64),
    #[error("message exceeds the message size limit")]
    MessageTooLarge,
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    #[error("text message or close reason is not valid UTF-8")]
    BadUtf8,
    #[error("compressed message is not valid DEFLATE data")]
    BadDeflate,
    #[error("close frame with a 1-byte payload or an invalid close code")]
    BadClosePayload,
}

impl FrameError {
    /// The close code to send before dropping the connection (RFC 6455 7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::BadUtf8 | FrameError::BadDeflate => 1007,
            FrameError::FrameTooLarge(_) | FrameError::MessageTooLarge => 1009,
            _ => 1002,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    Text(&'a [u8]),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// The close code, if any, and the (UTF-8 validated) reason.
    Close(Option<u16>, &'a [u8]),
}

/// Per-connection streaming decoder; see the module docs for its memory behaviour.
#[derive(Debug, Default)]
pub struct Decoder {
    state: Option<Box<Partial>>,
}

/// Everything that has to outlive one read. Dropped as soon as it is empty again.
#[derive(Debug, Default)]
struct Partial {
    /// An incomplete frame, header included and still masked, copied out of the caller's buffer
    /// because that buffer is reused for the next connection.
    frame: Vec<u8>,
    /// Unmasked payload of a fragmented data message so far.
    message: Vec<u8>,
    /// OP_TEXT or OP_BINARY while a fragmented message is in progress, OP_CONT otherwise. Kept
    /// apart from `message` because a fragment may be empty.
    message_op: u8,
    /// The message in progress is compressed (RSV1 on its first frame).
    message_deflated: bool,
}

impl Partial {
    fn is_idle(&self) -> bool {
        self.frame.is_empty() && self.message_op == OP_CONT
    }
}

/// What every frame of one `feed` is checked against.
struct Cx<'a> {
    role: Role,
    limits: &'a Limits,
    /// permessage-deflate agreed: RSV1 allowed on a message's first frame.
    deflate: bool,
}

struct Header {
    fin: bool,
    /// RSV1 on a data frame with permessage-deflate agreed.
    deflated: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: usize,
    payload_len: usize,
}

impl Header {
    fn frame_len(&self) -> usize {
        self.len + self.payload_len
    }
}

impl Decoder {
    pub const fn new() -> Self {
        Decoder { state: None }
    }

    /// Bytes held between reads: 0 in the steady state.
    pub fn buffered(&self) -> usize {
        self.state
            .as_ref()
            .map_or(0, |p| p.frame.len() + p.message.len())
    }

    /// Decodes `input`, the bytes just read, calling `on_event` for each control frame and each
    /// complete data message. Masked payloads are unmasked in place, so events borrow straight
    /// from `input` unless a frame straddled reads or a message was fragmented.
    pub fn feed(
        &mut self,
        input: &mut [u8],
        role: Role,
        limits: &Limits,
        on_event: impl FnMut(Event<'_>),
    ) -> Result<(), FrameError> {
        self.feed_inflating(input, role, limits, None, on_event)
    }

    /// As [`Decoder::feed`] with permessage-deflate agreed when `inflate` is given: a data
    /// message with RSV1 set is inflated into `inflate.out` (at most `limits.max_message`
    /// bytes) before it is checked and handed on.
    pub fn feed_inflating(
        &mut self,
        input: &mut [u8],
        role: Role,
        limits: &Limits,
        mut inflate: Option<Inflate<'_>>,
        mut on_event: impl FnMut(Event<'_>),
    ) -> Result<(), FrameError> {
        let cx = Cx {
            role,
            limits,
            deflate: inflate.is_some(),
        };
        let mut pos = 0;
        if self.state.as_ref().is_some_and(|p| !p.frame.is_empty()) {
            pos = self.resume(input, &cx, &mut inflate, &mut on_event)?;
        }
        while pos < input.len() {
            let rest = &mut input[pos..];
            let Some(header) = parse_header(rest, &cx, self.message())? else {
                self.stash(rest, None);
                break;
            };
            if rest.len() < header.frame_len() {
                self.stash(rest, Some(&header));
                break;
            }
            let payload = &mut rest[header.len..header.frame_len()];
            unmask(payload, header.mask);
            self.dispatch(&header, payload, limits, &mut inflate, &mut on_event)?;
            pos += header.frame_len();
        }
        if self.state.as_ref().is_some_and(|p| p.is_idle()) {
            self.state = None;
        }
        Ok(())
    }

    /// The opcode and length so far of the fragmented message in progress.
    fn message(&self) -> Option<(u8, usize)> {
        self.state
            .as_ref()
            .filter(|p| p.message_op != OP_CONT)
            .map(|p| (p.message_op, p.message.len()))
    }

    /// Completes the frame held from earlier reads with bytes from `input`, returning how many
    /// of them it took.
    fn resume(
        &mut self,
        input: &[u8],
        cx: &Cx<'_>,
        inflate: &mut Option<Inflate<'_>>,
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Result<usize, FrameError> {
        let message = self.message();
        let Some(partial) = self.state.as_mut() else {
            return Ok(0);
        };
        // The header may itself be split, so look at it through a small stack window that
        // spans both buffers instead of copying input we may not need.
        let mut window = [0u8; MAX_HEADER];
        let held = partial.frame.len().min(MAX_HEADER);
        let fresh = (MAX_HEADER - held).min(input.len());
        window[..held].copy_from_slice(&partial.frame[..held]);
        window[held..held + fresh].copy_from_slice(&input[..fresh]);
        let Some(header) = parse_header(&window[..held + fresh], cx, message)? else {
            partial.frame.extend_from_slice(input);
            return Ok(input.len());
        };
        let take = (header.frame_len() - partial.frame.len()).min(input.len());
        partial
            .frame
            .reserve_exact(header.frame_len() - partial.frame.len());
        partial.frame.extend_from_slice(&input[..take]);
        if partial.frame.len() < header.frame_len() {
            return Ok(take);
        }
        // Taking the buffer out frees it once the frame is handled and lets dispatch borrow the
        // rest of the state.
        let mut frame = std::mem::take(&mut partial.frame);
        let payload = &mut frame[header.len..];
        unmask(payload, header.mask);
        self.dispatch(&header, payload, cx.limits, inflate, on_event)?;
        Ok(take)
    }

    /// Keeps the unconsumed tail of the caller's buffer for the next read.
    fn stash(&mut self, rest: &[u8], header: Option<&Header>) {
        let partial = self.state.get_or_insert_default();
        partial
            .frame
            .reserve_exact(header.map_or(rest.len(), Header::frame_len));
        partial.frame.extend_from_slice(rest);
    }

    /// Handles one complete, unmasked frame whose header already passed `parse_header`.
    fn dispatch(
        &mut self,
        header: &Header,
        payload: &[u8],
        limits: &Limits,
        inflate: &mut Option<Inflate<'_>>,
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Result<(), FrameError> {
        match header.opcode {
            OP_PING => on_event(Event::Ping(payload)),
            OP_PONG => on_event(Event::Pong(payload)),
            OP_CLOSE => {
                let (code, reason) = parse_close(payload)?;
                on_event(Event::Close(code, reason));
            }
            OP_CONT => {
                let Some(partial) = self.state.as_mut() else {
                    return Err(FrameError::UnexpectedContinuation);
                };
                partial.message.extend_from_slice(payload);
                if header.fin {
                    let message = std::mem::take(&mut partial.message);
                    let opcode = std::mem::replace(&mut partial.message_op, OP_CONT);
                    let deflated = std::mem::take(&mut partial.message_deflated);
                    let data = Data { opcode, deflated };
                    emit_data(data, &message, limits, inflate, on_event)?;
                }
            }
            opcode if header.fin => {
                let data = Data {
                    opcode,
                    deflated: header.deflated,
                };
                emit_data(data, payload, limits, inflate, on_event)?;
            }
            opcode => {
                let partial = self.state.get_or_insert_default();
                partial.message_op = opcode;
                partial.message_deflated = header.deflated;
                partial.message.extend_from_slice(payload);
            }
        }
        Ok(())
    }
}

/// A complete data message: its opcode, and whether it is compressed.
struct Data {
    opcode: u8,
    deflated: bool,
}

fn emit_data(
    data: Data,
    payload: &[u8],
    limits: &Limits,
    inflate: &mut Option<Inflate<'_>>,
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<(), FrameError> {
    let payload = match inflate {
        Some(inflate) if data.deflated => {
            inflate
                .message(payload, limits.max_message)
                .map_err(|e| match e {
                    InflateError::TooLarge => FrameError::MessageTooLarge,
                    InflateError::Corrupt => FrameError::BadDeflate,
                })?;
            &inflate.out[..]
        }
        _ => payload,
    };
    if data.opcode == OP_TEXT {
        std::str::from_utf8(payload).map_err(|_| FrameError::BadUtf8)?;
        on_event(Event::Text(payload));
    } else {
        on_event(Event::Binary(payload));
    }
    Ok(())
}

fn parse_close(payload: &[u8]) -> Result<(Option<u16>, &[u8]), FrameError> {
    match payload {
        [] => Ok((None, payload)),
        [_] => Err(FrameError::BadClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            // 1004-1006 and 1015 are reserved for reporting and must never be sent (RFC 6455
            // 7.4.1); 1012-1014 were registered with IANA later.
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(FrameError::BadClosePayload);
            }
            std::str::from_utf8(reason).map_err(|_| FrameError::BadUtf8)?;
            Ok((Some(code), reason))
        }
    }
}

/// Parses and validates a frame header; `None` means more bytes are needed. Everything that can
/// be rejected from the header alone is rejected here, before any payload is buffered.
fn parse_header(
    buf: &[u8],
    cx: &Cx<'_>,
    message: Option<(u8, usize)>,
) -> Result<Option<Header>, FrameError> {
    let (role, limits) = (cx.role, cx.limits);
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    let control = match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => false,
        OP_CLOSE | OP_PING | OP_PONG => true,
        other => return Err(FrameError::UnknownOpcode(other)),
    };
    // RSV1 marks a compressed message on its first frame only (RFC 7692 6.1).
    let deflated = b0 & 0x40 != 0;
    let first_data = matches!(opcode, OP_TEXT | OP_BINARY);
    if b0 & 0x30 != 0 || (deflated && !(cx.deflate && first_data)) {
        return Err(FrameError::ReservedBits);
    }
    let masked = b1 & 0x80 != 0;
    if masked != (role == Role::Server) {
        return Err(FrameError::BadMask);
    }
    let len7 = b1 & 0x7F;
    if control {
        if !fin {
            return Err(FrameError::ControlFragmented);
        }
        if u64::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(FrameError::ControlTooLong);
        }
    }

    let (payload_len, mut len) = match len7 {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    let payload_len = match usize::try_from(payload_len) {
        Ok(n) if n <= limits.max_frame.min(MAX_PAYLOAD) => n,
        _ => return Err(FrameError::FrameTooLarge(payload_len)),
    };

    if !control {
        let so_far = match (opcode, message) {
            (OP_CONT, None) => return Err(FrameError::UnexpectedContinuation),
            (OP_CONT, Some((_, so_far))) => so_far,
            (_, Some(_)) => return Err(FrameError::ExpectedContinuation),
            (_, None) => 0,
        };
        if so_far.saturating_add(payload_len) > limits.max_message {
            return Err(FrameError::MessageTooLarge);
        }
    }

    let mask = if masked {
        let Some(key) = buf.get(len..len + 4) else {
            return Ok(None);
        };
        len += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        deflated,
        opcode,
        mask,
        len,
        payload_len,
    }))
}

/// XORs the payload with the key; a whole message is always unmasked in one call, so the key
/// starts at offset 0.
fn unmask(payload: &mut [u8], mask: Option<[u8; 4]>) {
    let Some(key) = mask else { return };
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// Appends one complete FIN frame, using the shortest length form.
pub fn encode_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask);
}

/// Appends one FIN frame carrying `payload` compressed (permessage-deflate), RSV1 set.
pub fn encode_deflated(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let mut z = Vec::new();
    deflate::deflate_message(payload, &mut z);
    let start = out.len();
    encode_frame(opcode, &z, mask, out);
    out[start] |= RSV1;
}

/// The header bit that marks a compressed message (RFC 7692 6).
const RSV1: u8 = 0x40;

pub fn close_payload(code: u16) -> [u8; 2] {
    code.to_be_bytes()
}

/// A client's close frame carrying `code`, masked with `mask`: eight bytes on the stack, for
/// the paths that say goodbye to many connections at once.
pub fn masked_close(code: u16, mask: [u8; 4]) -> [u8; 8] {
    let [hi, lo] = code.to_be_bytes();
    let [m0, m1, m2, m3] = mask;
    [0x80 | OP_CLOSE, 0x80 | 2, m0, m1, m2, m3, hi ^ m0, lo ^ m1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read, Write};

    const LIMITS: Limits = Limits {
        max_frame: 1 << 20,
        max_message: 1 << 21,
    };
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[derive(Debug, PartialEq, Eq)]
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
                Event::Close(c, r) => Owned::Close(c, r.to_vec()),
            }
        }
    }

    fn decode_with(
        decoder: &mut Decoder,
        bytes: &[u8],
        role: Role,
        limits: &Limits,
    ) -> Result<Vec<Owned>, FrameError> {
        let mut events = Vec::new();
        let mut input = bytes.to_vec();
        decoder.feed(&mut input, role, limits, |e| events.push(e.into()))?;
        Ok(events)
    }

    fn decode(bytes: &[u8], role: Role) -> Result<Vec<Owned>, FrameError> {
        decode_with(&mut Decoder::new(), bytes, role, &LIMITS)
    }

    fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(opcode, payload, mask, &mut out);
        out
    }

    /// A frame with arbitrary first byte, for fragments and invalid bits.
    fn raw(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = frame(OP_BINARY, payload, mask);
        out[0] = b0;
        out
    }

    #[test]
    fn decoder_is_one_pointer() {
        assert_eq!(size_of::<Decoder>(), 8);
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 section 5.7.
        let hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(frame(OP_TEXT, b"Hello", None), hello);
        assert_eq!(frame(OP_TEXT, b"Hello", Some(KEY)), masked);
        assert_eq!(
            decode(&hello, Role::Client).unwrap(),
            [Owned::Text(b"Hello".to_vec())]
        );
        assert_eq!(
            decode(&masked, Role::Server).unwrap(),
            [Owned::Text(b"Hello".to_vec())]
        );
    }

    #[test]
    fn round_trips_every_length_form() {
        for len in [0, 1, 5, 7, 8, 13, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let header_len = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            let client = frame(OP_BINARY, &payload, Some(KEY));
            assert_eq!(client.len(), header_len + 4 + len);
            assert_eq!(
                decode(&client, Role::Server).unwrap(),
                [Owned::Binary(payload.clone())]
            );
            let server = frame(OP_BINARY, &payload, None);
            assert_eq!(server.len(), header_len + len);
            assert_eq!(
                decode(&server, Role::Client).unwrap(),
                [Owned::Binary(payload)]
            );
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let payload: Vec<u8> = (0..300).map(|i| i as u8).collect();
        let mut bytes = frame(OP_BINARY, &payload, Some(KEY));
        bytes.extend(frame(OP_TEXT, b"hi", Some(KEY)));
        let mut decoder = Decoder::new();
        let mut events = Vec::new();
        for &b in &bytes {
            events.extend(decode_with(&mut decoder, &[b], Role::Server, &LIMITS).unwrap());
        }
        assert_eq!(
            events,
            [Owned::Binary(payload), Owned::Text(b"hi".to_vec())]
        );
        assert_eq!(decoder.buffered(), 0);
        assert!(decoder.state.is_none());
    }

    #[test]
    fn every_split_point() {
        let mut bytes = frame(OP_TEXT, &[b'a'; 200], Some(KEY));
        bytes.extend(raw(OP_BINARY, b"frag", Some(KEY)));
        bytes.extend(frame(OP_PING, b"p", Some(KEY)));
        bytes.extend(raw(0x80 | OP_CONT, b"ment", Some(KEY)));
        let expected = [
            Owned::Text(vec![b'a'; 200]),
            Owned::Ping(b"p".to_vec()),
            Owned::Binary(b"fragment".to_vec()),
        ];
        for split in 0..=bytes.len() {
            let mut decoder = Decoder::new();
            let mut events =
                decode_with(&mut decoder, &bytes[..split], Role::Server, &LIMITS).unwrap();
            let rest = decode_with(&mut decoder, &bytes[split..], Role::Server, &LIMITS);
            events.extend(rest.unwrap());
            assert_eq!(events, expected, "split at {split}");
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn two_frames_in_one_read() {
        let mut bytes = frame(OP_TEXT, b"one", None);
        bytes.extend(frame(OP_TEXT, b"two", None));
        assert_eq!(
            decode(&bytes, Role::Client).unwrap(),
            [Owned::Text(b"one".to_vec()), Owned::Text(b"two".to_vec())]
        );
    }

    #[test]
    fn buffers_only_while_incomplete() {
        let bytes = frame(OP_TEXT, b"hello", Some(KEY));
        let mut decoder = Decoder::new();
        assert!(
            decode_with(&mut decoder, &bytes[..4], Role::Server, &LIMITS)
                .unwrap()
                .is_empty()
        );
        assert_eq!(decoder.buffered(), 4);
        let events = decode_with(&mut decoder, &bytes[4..], Role::Server, &LIMITS).unwrap();
        assert_eq!(events, [Owned::Text(b"hello".to_vec())]);
        assert_eq!(decoder.buffered(), 0);
        assert!(decoder.state.is_none());
    }

    #[test]
    fn fragmented_text_with_ping_in_between() {
        let mut bytes = raw(OP_TEXT, "héllo, ".as_bytes(), Some(KEY));
        bytes.extend(frame(OP_PING, b"ping", Some(KEY)));
        bytes.extend(raw(OP_CONT, b"", Some(KEY)));
        bytes.extend(raw(0x80 | OP_CONT, "wörld".as_bytes(), Some(KEY)));
        assert_eq!(
            decode(&bytes, Role::Server).unwrap(),
            [
                Owned::Ping(b"ping".to_vec()),
                Owned::Text("héllo, wörld".as_bytes().to_vec())
            ]
        );

        // Across reads, the message is held until its last fragment and then released.
        let mut decoder = Decoder::new();
        let first = raw(OP_BINARY, b"ab", None);
        assert!(
            decode_with(&mut decoder, &first, Role::Client, &LIMITS)
                .unwrap()
                .is_empty()
        );
        assert_eq!(decoder.buffered(), 2);
        let last = raw(0x80 | OP_CONT, b"cd", None);
        let events = decode_with(&mut decoder, &last, Role::Client, &LIMITS).unwrap();
        assert_eq!(events, [Owned::Binary(b"abcd".to_vec())]);
        assert!(decoder.state.is_none());
    }

    #[test]
    fn utf8_split_across_fragments() {
        let text = "€".as_bytes();
        let mut bytes = raw(OP_TEXT, &text[..1], None);
        bytes.extend(raw(0x80 | OP_CONT, &text[1..], None));
        assert_eq!(
            decode(&bytes, Role::Client).unwrap(),
            [Owned::Text(text.to_vec())]
        );
    }

    #[test]
    fn close_frames() {
        assert_eq!(
            decode(&frame(OP_CLOSE, b"", None), Role::Client).unwrap(),
            [Owned::Close(None, vec![])]
        );
        let mut payload = close_payload(1001).to_vec();
        payload.extend_from_slice(b"bye");
        assert_eq!(
            decode(&frame(OP_CLOSE, &payload, None), Role::Client).unwrap(),
            [Owned::Close(Some(1001), b"bye".to_vec())]
        );
        assert_eq!(
            decode(&frame(OP_CLOSE, &close_payload(4000), None), Role::Client).unwrap(),
            [Owned::Close(Some(4000), vec![])]
        );
        let mask = [0x12, 0xab, 0x7f, 0x01];
        let mut encoded = Vec::new();
        encode_frame(OP_CLOSE, &close_payload(1001), Some(mask), &mut encoded);
        assert_eq!(masked_close(1001, mask).as_slice(), encoded);
        assert_eq!(
            decode(&masked_close(1000, mask), Role::Server).unwrap(),
            [Owned::Close(Some(1000), vec![])]
        );
    }

    #[test]
    fn masking_is_enforced_per_role() {
        let masked = frame(OP_TEXT, b"x", Some(KEY));
        let plain = frame(OP_TEXT, b"x", None);
        assert!(decode(&masked, Role::Server).is_ok());
        assert!(decode(&plain, Role::Client).is_ok());
        assert_eq!(decode(&plain, Role::Server), Err(FrameError::BadMask));
        assert_eq!(decode(&masked, Role::Client), Err(FrameError::BadMask));
    }

    fn inflating(bytes: &[u8], role: Role) -> Result<Vec<Owned>, FrameError> {
        let (mut window, mut out) = (Default::default(), Vec::new());
        let mut events = Vec::new();
        let inflate = Inflate {
            window: &mut window,
            out: &mut out,
            takeover: false,
        };
        Decoder::new().feed_inflating(&mut bytes.to_vec(), role, &LIMITS, Some(inflate), |e| {
            events.push(e.into())
        })?;
        Ok(events)
    }

    #[test]
    fn compressed_messages_whole_and_fragmented() {
        let mut z = Vec::new();
        deflate::deflate_message(b"Hello, compressed world", &mut z);
        let whole = raw(0x80 | 0x40 | OP_TEXT, &z, Some(KEY));
        let hello = Owned::Text(b"Hello, compressed world".to_vec());
        assert_eq!(
            inflating(&whole, Role::Server),
            Ok(vec![Owned::Text(b"Hello, compressed world".to_vec())])
        );
        // RSV1 on the first fragment only; a ping in between is not compressed.
        let (a, b) = z.split_at(3);
        let split = [
            raw(0x40 | OP_TEXT, a, None),
            frame(OP_PING, b"p", None),
            raw(0x80 | OP_CONT, b, None),
        ]
        .concat();
        assert_eq!(
            inflating(&split, Role::Client),
            Ok(vec![Owned::Ping(b"p".to_vec()), hello])
        );
        // An uncompressed message still reads when compression was agreed.
        let plain = frame(OP_TEXT, b"plain", None);
        assert_eq!(
            inflating(&plain, Role::Client),
            Ok(vec![Owned::Text(b"plain".to_vec())])
        );
    }

    #[test]
    fn compression_errors() {
        let mut z = Vec::new();
        deflate::deflate_message(b"x", &mut z);
        let rsv1 = |b0: u8, p: &[u8]| inflating(&raw(b0, p, None), Role::Client);
        // RSV1 without the extension, on a continuation, on a control frame; RSV2 and RSV3.
        assert_eq!(
            decode(&raw(0xC1, &z, None), Role::Client),
            Err(FrameError::ReservedBits)
        );
        let cont = [raw(OP_TEXT, b"a", None), raw(0x80 | 0x40, &z, None)].concat();
        assert_eq!(
            inflating(&cont, Role::Client),
            Err(FrameError::ReservedBits)
        );
        assert_eq!(
            rsv1(0x80 | 0x40 | OP_PING, b""),
            Err(FrameError::ReservedBits)
        );
        assert_eq!(
            rsv1(0x80 | 0x20 | OP_TEXT, b""),
            Err(FrameError::ReservedBits)
        );
        assert_eq!(
            rsv1(0x80 | 0x10 | OP_TEXT, b""),
            Err(FrameError::ReservedBits)
        );
        // Not DEFLATE: 1007. Inflated text that is not UTF-8: 1007 too.
        let bad = rsv1(0x80 | 0x40 | OP_TEXT, &[0xff, 0xff, 0xff]);
        assert_eq!(bad, Err(FrameError::BadDeflate));
        assert_eq!(FrameError::BadDeflate.close_code(), 1007);
        let mut latin1 = Vec::new();
        deflate::deflate_message(&[0xe9], &mut latin1);
        assert_eq!(
            rsv1(0x80 | 0x40 | OP_TEXT, &latin1),
            Err(FrameError::BadUtf8)
        );
    }

    #[test]
    fn every_error() {
        let small = Limits {
            max_frame: 100,
            max_message: 150,
        };
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (
                raw(0x80 | 0x40 | OP_TEXT, b"", None),
                FrameError::ReservedBits,
            ),
            (raw(0x83, b"", None), FrameError::UnknownOpcode(3)),
            (raw(0x8B, b"", None), FrameError::UnknownOpcode(0xB)),
            (frame(OP_TEXT, b"", Some(KEY)), FrameError::BadMask),
            (frame(OP_PING, &[0; 126], None), FrameError::ControlTooLong),
            (raw(OP_PING, b"", None), FrameError::ControlFragmented),
            (
                frame(OP_BINARY, &[0; 101], None),
                FrameError::FrameTooLarge(101),
            ),
            (
                [raw(OP_BINARY, &[0; 100], None), raw(0x80, &[0; 51], None)].concat(),
                FrameError::MessageTooLarge,
            ),
            (
                raw(0x80 | OP_CONT, b"", None),
                FrameError::UnexpectedContinuation,
            ),
            (
                [raw(OP_TEXT, b"a", None), raw(0x80 | OP_TEXT, b"b", None)].concat(),
                FrameError::ExpectedContinuation,
            ),
            (frame(OP_TEXT, &[0xff], None), FrameError::BadUtf8),
            (
                frame(OP_CLOSE, &[0x03, 0xe8, 0xff], None),
                FrameError::BadUtf8,
            ),
            (frame(OP_CLOSE, &[0x03], None), FrameError::BadClosePayload),
        ];
        for (bytes, expected) in cases {
            let result = decode_with(&mut Decoder::new(), &bytes, Role::Client, &small);
            assert_eq!(result, Err(expected), "{bytes:02x?}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, u16::MAX] {
            let bytes = frame(OP_CLOSE, &close_payload(code), None);
            assert_eq!(
                decode(&bytes, Role::Client),
                Err(FrameError::BadClosePayload),
                "{code}"
            );
        }
        // A 64-bit length is rejected from the header alone, before anything is buffered.
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            decode(&huge, Role::Client),
            Err(FrameError::FrameTooLarge(u64::MAX))
        );
        let unlimited = Limits {
            max_frame: usize::MAX,
            max_message: usize::MAX,
        };
        assert_eq!(
            decode_with(&mut Decoder::new(), &huge, Role::Client, &unlimited),
            Err(FrameError::FrameTooLarge(u64::MAX))
        );
    }

    #[test]
    fn close_codes() {
        assert_eq!(FrameError::BadUtf8.close_code(), 1007);
        assert_eq!(FrameError::FrameTooLarge(1).close_code(), 1009);
        assert_eq!(FrameError::MessageTooLarge.close_code(), 1009);
        assert_eq!(FrameError::BadMask.close_code(), 1002);
        assert_eq!(FrameError::BadClosePayload.close_code(), 1002);
    }

    #[test]
    fn events_before_an_error_are_delivered() {
        let bytes = [frame(OP_TEXT, b"ok", None), raw(0x83, b"", None)].concat();
        let mut events = Vec::new();
        let result = Decoder::new().feed(&mut bytes.clone(), Role::Client, &LIMITS, |e| {
            events.push(Owned::from(e))
        });
        assert_eq!(result, Err(FrameError::UnknownOpcode(3)));
        assert_eq!(events, [Owned::Text(b"ok".to_vec())]);
    }

    /// An in-memory socket: reads come from `input`, writes collect in `output`.
    struct Pipe {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Pipe {
        fn new(input: Vec<u8>) -> Self {
            Pipe {
                input: Cursor::new(input),
                output: Vec::new(),
            }
        }
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn big_text() -> String {
        "0123456789abcdef".repeat(5000)
    }

    #[test]
    fn decodes_what_tungstenite_writes() {
        use tungstenite::protocol::frame::coding::{Data, OpCode};
        use tungstenite::protocol::frame::{Frame, FrameHeader};
        use tungstenite::{Message, protocol::Role as WsRole, protocol::WebSocket};

        for (ws_role, our_role) in [
            (WsRole::Client, Role::Server),
            (WsRole::Server, Role::Client),
        ] {
            let mut ws = WebSocket::from_raw_socket(Pipe::new(vec![]), ws_role, None);
            ws.send(Message::text("hello")).unwrap();
            ws.send(Message::binary(vec![7u8; 70_000])).unwrap();
            ws.send(Message::text(big_text())).unwrap();
            ws.send(Message::Ping(b"p".to_vec().into())).unwrap();
            ws.close(None).unwrap();
            ws.flush().unwrap();
            let bytes = std::mem::take(&mut ws.get_mut().output);
            assert_eq!(
                decode(&bytes, our_role).unwrap(),
                [
                    Owned::Text(b"hello".to_vec()),
                    Owned::Binary(vec![7; 70_000]),
                    Owned::Text(big_text().into_bytes()),
                    Owned::Ping(b"p".to_vec()),
                    Owned::Close(None, vec![]),
                ],
                "{our_role:?}"
            );
        }

        // Fragments built with tungstenite's own frame formatter.
        let mut bytes = Vec::new();
        let header = |opcode, is_final| FrameHeader {
            is_final,
            opcode,
            mask: Some(KEY),
            ..FrameHeader::default()
        };
        let parts = [
            (OpCode::Data(Data::Text), false, "ab"),
            (OpCode::Data(Data::Continue), false, "cd"),
            (OpCode::Data(Data::Continue), true, "ef"),
        ];
        for (opcode, is_final, text) in parts {
            Frame::from_payload(header(opcode, is_final), text.as_bytes().to_vec().into())
                .format(&mut bytes)
                .unwrap();
        }
        assert_eq!(
            decode(&bytes, Role::Server).unwrap(),
            [Owned::Text(b"abcdef".to_vec())]
        );
    }

    #[test]
    fn tungstenite_reads_what_we_write() {
        use tungstenite::{Message, protocol::Role as WsRole, protocol::WebSocket};

        for (ws_role, mask) in [(WsRole::Server, Some(KEY)), (WsRole::Client, None)] {
            let mut bytes = Vec::new();
            encode_frame(OP_TEXT, b"", mask, &mut bytes);
            encode_frame(OP_TEXT, big_text().as_bytes(), mask, &mut bytes);
            encode_frame(OP_BINARY, &[1; 126], mask, &mut bytes);
            encode_frame(OP_BINARY, &[2; 65536], mask, &mut bytes);
            encode_frame(OP_PONG, b"pong", mask, &mut bytes);
            encode_frame(OP_CLOSE, &close_payload(1000), mask, &mut bytes);
            let mut ws = WebSocket::from_raw_socket(Pipe::new(bytes), ws_role, None);
            assert_eq!(ws.read().unwrap(), Message::text(""));
            assert_eq!(ws.read().unwrap(), Message::text(big_text()));
            assert_eq!(ws.read().unwrap(), Message::binary(vec![1; 126]));
            assert_eq!(ws.read().unwrap(), Message::binary(vec![2; 65536]));
            assert_eq!(ws.read().unwrap(), Message::Pong(b"pong".to_vec().into()));
            match ws.read().unwrap() {
                Message::Close(Some(close)) => assert_eq!(u16::from(close.code), 1000),
                other => panic!("expected close, got {other:?}"),
            }
        }
    }
}
