//! permessage-deflate (RFC 7692): the offer and the answer in the upgrade, and the inflate and
//! deflate glue around zlib-rs (through flate2).
//!
//! c1m keeps compression state per connection only when the peer insists. The client's
//! `shared` offer asks the server to compress every message on its own (no context takeover),
//! so one inflater per shard serves every connection; the server always answers with no context
//! takeover both ways, so it compresses a broadcast once for everyone and inflates what clients
//! send with one inflater per shard too.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

pub const NAME: &str = "permessage-deflate";

/// The header a client sends, and the one a server answers with.
pub const HEADER: &str = "Sec-WebSocket-Extensions";

/// Ends every message's sync flush; senders strip it and receivers put it back (RFC 7692 7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What the client offers (`--compression`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Offer {
    /// No extension offered: every message arrives as sent.
    #[default]
    Off,
    /// No context takeover either way: one inflater per shard serves every connection.
    Shared,
    /// What browsers offer: the server may keep its window, so each connection keeps one too.
    Context,
}

impl Offer {
    pub fn name(self) -> &'static str {
        match self {
            Offer::Off => "off",
            Offer::Shared => "shared",
            Offer::Context => "context",
        }
    }

    /// The `Sec-WebSocket-Extensions` value, or `None` for `Off`.
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            Offer::Off => None,
            Offer::Shared => {
                Some("permessage-deflate; client_no_context_takeover; server_no_context_takeover")
            }
            Offer::Context => Some("permessage-deflate; client_max_window_bits"),
        }
    }
}

/// The server's `Sec-WebSocket-Extensions` answer when it takes an offer: it never keeps a
/// window, and asks the client not to either.
pub const ANSWER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The parameters of one `permessage-deflate` element. A window-bits parameter given without
/// a value (allowed for `client_max_window_bits` in an offer) reads as 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    pub client_max_window_bits: Option<u8>,
}

/// Parses one extension element (`name; param; param=value`): `Ok(None)` when it is another
/// extension, an error when it is permessage-deflate with a parameter RFC 7692 does not allow.
pub fn parse_element(element: &[u8]) -> Result<Option<Params>, &'static str> {
    let mut parts = element.split(|&b| b == b';').map(<[u8]>::trim_ascii);
    if !parts
        .next()
        .is_some_and(|n| n.eq_ignore_ascii_case(NAME.as_bytes()))
    {
        return Ok(None);
    }
    let mut p = Params::default();
    for param in parts {
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (
                param[..i].trim_ascii(),
                Some(unquote(param[i + 1..].trim_ascii())),
            ),
            None => (param, None),
        };
        let name = std::str::from_utf8(name).map_err(|_| "a parameter name is not text")?;
        let seen = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => {
                std::mem::replace(&mut p.server_no_context_takeover, true)
            }
            "client_no_context_takeover" if value.is_none() => {
                std::mem::replace(&mut p.client_no_context_takeover, true)
            }
            "server_max_window_bits" => {
                let bits = window_bits(value.ok_or("server_max_window_bits needs a value")?)?;
                p.server_max_window_bits.replace(bits).is_some()
            }
            "client_max_window_bits" => {
                let bits = value.map_or(Ok(0), window_bits)?;
                p.client_max_window_bits.replace(bits).is_some()
            }
            _ => return Err("an unknown permessage-deflate parameter"),
        };
        if seen {
            return Err("a permessage-deflate parameter given twice");
        }
    }
    Ok(Some(p))
}

fn unquote(v: &[u8]) -> &[u8] {
    v.strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(v)
}

fn window_bits(v: &[u8]) -> Result<u8, &'static str> {
    match v {
        [d] if (b'8'..=b'9').contains(d) => Ok(d - b'0'),
        [b'1', d] if (b'0'..=b'5').contains(d) => Ok(10 + d - b'0'),
        _ => Err("a window size outside 8..15"),
    }
}

/// The elements of every `Sec-WebSocket-Extensions` value given, in order.
fn elements<'a>(values: impl Iterator<Item = &'a [u8]>) -> impl Iterator<Item = &'a [u8]> {
    values
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
}

/// Server side: whether any offer can be taken with [`ANSWER`]. An offer that asks the server
/// for a window under 32 KiB is passed over, since the shared broadcast frame is compressed
/// once with the full window; one c1m cannot read is passed over too.
pub fn accepts_offer<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    elements(values).any(|e| {
        matches!(parse_element(e), Ok(Some(p)) if matches!(p.server_max_window_bits, None | Some(15)))
    })
}

/// What the server agreed to, as the client needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// The server keeps its window between messages: this connection needs its own inflater.
    pub server_takeover: bool,
    /// The window the server compresses with (server_max_window_bits, 15 when unsaid): a
    /// window kept for it needs no more (Python's websockets says 12: 4 KiB instead of 32).
    pub server_window_bits: u8,
}

/// Client side: reads the server's answer to `offer`. `Ok(None)`: compression declined.
pub fn parse_answer<'a>(
    offer: Offer,
    values: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<Agreed>, &'static str> {
    let mut agreed = None;
    for element in elements(values) {
        let Some(p) = parse_element(element)? else {
            return Err("the server named an extension that was not offered");
        };
        if offer == Offer::Off {
            return Err("the server answered permessage-deflate, which was not offered");
        }
        if agreed.is_some() {
            return Err("the server answered permessage-deflate twice");
        }
        if p.server_max_window_bits.is_some_and(|b| b < 8) || p.client_max_window_bits == Some(0) {
            return Err("a window size outside 8..15");
        }
        // client_max_window_bits is accepted whatever was offered: c1m never compresses what it
        // sends, so a limit on its own window costs nothing.
        agreed = Some(Agreed {
            server_takeover: !p.server_no_context_takeover,
            server_window_bits: p.server_max_window_bits.unwrap_or(15),
        });
    }
    Ok(agreed)
}

/// Why a compressed message did not inflate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// More than the limit came out (a decompression bomb stops here).
    TooLarge,
    /// The input is not DEFLATE data.
    Corrupt,
}

/// One inflate stream: per shard when no peer keeps context, per connection otherwise.
pub struct Window(Decompress);

impl Default for Window {
    fn default() -> Self {
        Window(Decompress::new(false))
    }
}

impl Window {
    /// A window of 2^`bits` bytes (8..=15; zlib reads 8 as 9, which is still enough).
    pub fn with_bits(bits: u8) -> Window {
        Window(Decompress::new_with_window_bits(false, bits.clamp(9, 15)))
    }
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Window")
    }
}

/// What the frame decoder needs to inflate a compressed message: a window, the shard's output
/// buffer, and whether the peer carries its window over to the next message.
pub struct Inflate<'a> {
    pub window: &'a mut Window,
    pub out: &'a mut Vec<u8>,
    pub takeover: bool,
}

impl Inflate<'_> {
    /// Inflates one whole message into `out`. More than `max` bytes of output is `TooLarge`
    /// however small the input (a decompression bomb stops there).
    pub fn message(&mut self, payload: &[u8], max: usize) -> Result<(), InflateError> {
        self.out.clear();
        let res = self.run(payload, max);
        if !self.takeover || res.is_err() {
            self.window.0.reset(false);
        }
        res
    }

    fn run(&mut self, payload: &[u8], max: usize) -> Result<(), InflateError> {
        let z = &mut self.window.0;
        for part in [payload, &TAIL[..]] {
            let mut input = part;
            loop {
                if self.out.len() == self.out.capacity() {
                    if self.out.len() > max {
                        return Err(InflateError::TooLarge);
                    }
                    // One byte past the limit is enough to know it was passed.
                    let want = (self.out.capacity() * 2).max(4096).min(max + 1);
                    self.out.reserve_exact(want - self.out.len());
                }
                let (before_in, before_out) = (z.total_in(), z.total_out());
                let status = z
                    .decompress_vec(input, self.out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                input = &input[(z.total_in() - before_in) as usize..];
                if self.out.len() > max {
                    return Err(InflateError::TooLarge);
                }
                let full = self.out.len() == self.out.capacity();
                let stuck = z.total_in() == before_in && z.total_out() == before_out;
                match status {
                    // A final block ends the stream: the next message starts a new one.
                    Status::StreamEnd => {
                        z.reset(false);
                        return Ok(());
                    }
                    _ if full => {}
                    _ if input.is_empty() || stuck => break,
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Compresses one message as RFC 7692 says: raw DEFLATE, a sync flush, the tail stripped, no
/// window carried over. Appends to `out`.
pub fn deflate_message(payload: &[u8], out: &mut Vec<u8>) {
    let mut z = Compress::new(Compression::default(), false);
    let start = out.len();
    out.reserve(payload.len() / 2 + 64);
    let mut input = payload;
    loop {
        let before = z.total_in();
        z.compress_vec(input, out, FlushCompress::Sync)
            .expect("deflate into a buffer with room cannot fail");
        input = &input[(z.total_in() - before) as usize..];
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    debug_assert!(out[start..].ends_with(&TAIL));
    if out[start..].ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn inflate(
        window: &mut Window,
        data: &[u8],
        max: usize,
        takeover: bool,
    ) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        Inflate {
            window,
            out: &mut out,
            takeover,
        }
        .message(data, max)?;
        Ok(out)
    }

    #[test]
    fn rfc_7692_examples() {
        // 7.2.3.1: "Hello" compressed, and 7.2.3.2: the same sent twice with context takeover.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut w = Window::default();
        assert_eq!(inflate(&mut w, &hello, 100, false).unwrap(), b"Hello");
        let again = [0xf2, 0x00, 0x11, 0x00, 0x00];
        assert_eq!(inflate(&mut w, &hello, 100, true).unwrap(), b"Hello");
        assert_eq!(inflate(&mut w, &again, 100, true).unwrap(), b"Hello");
        // 7.2.3.3: an uncompressed (stored) block.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate(&mut w, &stored, 100, false).unwrap(), b"Hello");
        // 7.2.3.4: BFINAL set.
        let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate(&mut w, &last, 100, true).unwrap(), b"Hello");
        assert_eq!(inflate(&mut w, &hello, 100, false).unwrap(), b"Hello");
    }

    #[test]
    fn what_we_deflate_zlib_inflates_and_so_do_we() {
        let text = br#"{"seq":1,"ts":1700000000000000,"pad":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#;
        let mut out = Vec::new();
        deflate_message(text, &mut out);
        assert!(out.len() < text.len(), "{} bytes", out.len());
        assert!(!out.ends_with(&TAIL));
        let mut w = Window::default();
        assert_eq!(inflate(&mut w, &out, 1 << 20, false).unwrap(), text);
        // A second message through the same window, as a shard's shared inflater sees it.
        assert_eq!(inflate(&mut w, &out, 1 << 20, false).unwrap(), text);
    }

    #[test]
    fn a_window_kept_over_messages_reads_what_zlib_sends_with_context() {
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
        let mut w = Window::default();
        for i in 0..5 {
            let msg = format!("{{\"seq\":{i},\"body\":\"the same words again and again\"}}");
            z.write_all(msg.as_bytes()).unwrap();
            z.flush().unwrap();
            let mut wire = std::mem::take(z.get_mut());
            assert!(wire.ends_with(&TAIL));
            wire.truncate(wire.len() - 4);
            assert_eq!(
                inflate(&mut w, &wire, 1 << 20, true).unwrap(),
                msg.as_bytes()
            );
        }
    }

    #[test]
    fn a_small_window_reads_what_a_small_window_wrote() {
        let answer = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12";
        let agreed = parse_answer(Offer::Context, std::iter::once(answer.as_bytes()));
        let bits = agreed.unwrap().unwrap().server_window_bits;
        assert_eq!(bits, 12);
        let mut z = Compress::new_with_window_bits(Compression::default(), false, bits);
        let mut w = Window::with_bits(bits);
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for chunk in text.chunks(3000) {
            let mut wire = Vec::with_capacity(4096);
            z.compress_vec(chunk, &mut wire, FlushCompress::Sync)
                .unwrap();
            wire.truncate(wire.len() - 4);
            assert_eq!(inflate(&mut w, &wire, 1 << 20, true).unwrap(), chunk);
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 10 << 20];
        let mut bomb = Vec::new();
        deflate_message(&zeros, &mut bomb);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let mut w = Window::default();
        let mut out = Vec::new();
        let err = Inflate {
            window: &mut w,
            out: &mut out,
            takeover: false,
        }
        .message(&bomb, 1 << 20);
        assert_eq!(err, Err(InflateError::TooLarge));
        assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());
        // The window is reset: the next message reads.
        let mut ok = Vec::new();
        deflate_message(b"fine", &mut ok);
        assert_eq!(inflate(&mut w, &ok, 100, false).unwrap(), b"fine");
    }

    #[test]
    fn garbage_is_bad_deflate_and_the_window_recovers() {
        let mut w = Window::default();
        assert_eq!(
            inflate(&mut w, &[0xff, 0xff, 0xff, 0xff], 100, false),
            Err(InflateError::Corrupt)
        );
        let mut ok = Vec::new();
        deflate_message(b"fine", &mut ok);
        assert_eq!(inflate(&mut w, &ok, 100, true).unwrap(), b"fine");
    }

    #[test]
    fn offers_and_answers() {
        let one = |v: &str| parse_element(v.as_bytes());
        assert_eq!(one("x-webkit-deflate-frame"), Ok(None));
        let p = one("permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\"")
            .unwrap()
            .unwrap();
        assert_eq!(p.client_max_window_bits, Some(0));
        assert_eq!(p.server_max_window_bits, Some(10));
        assert!(one("permessage-deflate; server_max_window_bits").is_err());
        assert!(one("permessage-deflate; server_max_window_bits=16").is_err());
        assert!(one("permessage-deflate; foo").is_err());
        assert!(
            one("permessage-deflate; server_no_context_takeover; server_no_context_takeover")
                .is_err()
        );
        assert!(one("permessage-deflate; client_no_context_takeover=1").is_err());

        let vals = |v: &'static str| std::iter::once(v.as_bytes());
        assert!(accepts_offer(vals(
            "permessage-deflate; client_max_window_bits"
        )));
        assert!(!accepts_offer(vals(
            "permessage-deflate; server_max_window_bits=10"
        )));
        assert!(accepts_offer(vals(
            "permessage-deflate; server_max_window_bits=10, permessage-deflate"
        )));
        assert!(!accepts_offer(vals("foo, bar")));
        assert!(!accepts_offer(std::iter::empty()));

        let shared = Agreed {
            server_takeover: false,
            server_window_bits: 15,
        };
        assert_eq!(parse_answer(Offer::Shared, vals(ANSWER)), Ok(Some(shared)));
        assert_eq!(
            parse_answer(Offer::Context, vals("permessage-deflate")),
            Ok(Some(Agreed {
                server_takeover: true,
                server_window_bits: 15,
            }))
        );
        assert_eq!(parse_answer(Offer::Shared, std::iter::empty()), Ok(None));
        assert!(parse_answer(Offer::Off, vals("permessage-deflate")).is_err());
        assert!(parse_answer(Offer::Shared, vals("foo")).is_err());
        assert!(
            parse_answer(
                Offer::Shared,
                vals("permessage-deflate, permessage-deflate")
            )
            .is_err()
        );
        assert!(
            parse_answer(
                Offer::Shared,
                vals("permessage-deflate; client_max_window_bits")
            )
            .is_err()
        );
    }
}
