//! The HTTP/1.1 upgrade (RFC 6455 section 4), both sides, parsed with httparse.
//!
//! Hand-rolled rather than tungstenite's handshake so that a connection needs no `http::Request`
//! allocation, and so the server can add `X-C1m-Seq` to its answer.

use super::deflate::{self, Agreed, Offer};
use super::payload::push_u64;
use thiserror::Error;

/// Longest request or response head accepted; a real upgrade is a few hundred bytes.
pub const MAX_HEAD: usize = 4096;
const MAX_HEADERS: usize = 32;
const SEQ_HEADER: &str = "X-C1m-Seq";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    #[error("not an HTTP request or response: {0}")]
    NotHttp(&'static str),
    #[error("method is not GET")]
    NotGet,
    #[error("missing `Upgrade: websocket` or `Connection: Upgrade`")]
    MissingUpgrade,
    #[error("Sec-WebSocket-Version is not 13")]
    BadVersion,
    #[error("Sec-WebSocket-Key is missing or not 24 base64 characters")]
    MissingKey,
    #[error("HTTP head longer than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("server answered {0} instead of 101 Switching Protocols")]
    Rejected(u16),
    #[error("Sec-WebSocket-Accept does not match the key sent")]
    BadAccept,
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    #[error("Sec-WebSocket-Extensions answer refused: {0}")]
    BadExtension(&'static str),
}

/// A valid upgrade request: how many bytes its head took and the accept key to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade {
    pub consumed: usize,
    pub accept: [u8; 28],
    /// The client offered permessage-deflate in a form this server can take.
    pub deflate: bool,
}

/// The server's 101 answer, as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub consumed: usize,
    /// The last broadcast sequence number sent before this connection joined, from a c1m server.
    pub seq: Option<u64>,
    /// Where the `Sec-WebSocket-Protocol` the server chose lies in the buffer, (start, end).
    pub protocol: Option<(usize, usize)>,
    /// permessage-deflate, when the server took the offer.
    pub deflate: Option<Agreed>,
}

/// Parses an upgrade request. `Ok(None)` means the head is incomplete and more bytes are needed.
pub fn parse_request(buf: &[u8]) -> Result<Option<Upgrade>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Some(consumed) = complete(req.parse(buf), buf.len())? else {
        return Ok(None);
    };
    if req.method != Some("GET") {
        return Err(HandshakeError::NotGet);
    }
    if !is_upgrade(req.headers) {
        return Err(HandshakeError::MissingUpgrade);
    }
    if header(req.headers, "Sec-WebSocket-Version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(HandshakeError::BadVersion);
    }
    let key = header(req.headers, "Sec-WebSocket-Key")
        .map(<[u8]>::trim_ascii)
        .filter(|key| is_key(key))
        .ok_or(HandshakeError::MissingKey)?;
    Ok(Some(Upgrade {
        consumed,
        accept: accept_key(key),
        deflate: deflate::accepts_offer(values(req.headers, deflate::HEADER)),
    }))
}

/// The Sec-WebSocket-Accept value for a client key (RFC 6455 4.2.2).
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let derived = tungstenite::handshake::derive_accept_key(key);
    let mut accept = [0u8; 28];
    // Base64 of a 20-byte SHA-1 digest is always 28 bytes.
    accept.copy_from_slice(derived.as_bytes());
    accept
}

/// Appends the 101 answer. `seq` lets a c1m client count the broadcasts it misses exactly;
/// `deflate` takes the client's permessage-deflate offer with [`deflate::ANSWER`].
pub fn write_response(accept: &[u8; 28], seq: Option<u64>, deflate: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept);
    out.extend_from_slice(b"\r\n");
    if let Some(seq) = seq {
        out.extend_from_slice(SEQ_HEADER.as_bytes());
        out.extend_from_slice(b": ");
        push_u64(out, seq);
        out.extend_from_slice(b"\r\n");
    }
    if deflate {
        out.extend_from_slice(deflate::HEADER.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(deflate::ANSWER.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends an error answer that tells a person (or curl) what was wrong with the request.
pub fn write_rejection(err: &HandshakeError, out: &mut Vec<u8>) {
    let body = format!("{err}\n");
    if *err == HandshakeError::BadVersion {
        out.extend_from_slice(b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\nContent-Type: text/plain\r\nContent-Length: ");
    push_u64(out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
}

/// A fresh Sec-WebSocket-Key: base64 of 16 random bytes.
pub fn generate_key(rng: &mut impl rand::Rng) -> [u8; 24] {
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    base64_16(&nonce)
}

/// The request headers [`write_request_with`] always writes: no one else may set them.
pub const OWN_REQUEST_HEADERS: [&str; 5] = [
    "Host",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
];

/// The `User-Agent` line c1m sends unless the user gives one of their own.
pub const USER_AGENT_LINE: &[u8] = b"User-Agent: c1m\r\n";

pub fn write_request(host: &str, path: &str, key: &[u8; 24], out: &mut Vec<u8>) {
    write_request_with(host, path.as_bytes(), key, USER_AGENT_LINE, out);
}

/// An upgrade request with [`OWN_REQUEST_HEADERS`] and then `extra` header lines, each ending
/// in CRLF (`Authorization: …\r\n`).
pub fn write_request_with(
    host: &str,
    path: &[u8],
    key: &[u8; 24],
    extra: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(
        b"\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Key: ",
    );
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n");
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

/// Parses the server's answer to a request sent with `key` and no extension offered.
/// `Ok(None)` means incomplete.
pub fn parse_response(buf: &[u8], key: &[u8; 24]) -> Result<Option<Accepted>, HandshakeError> {
    parse_response_to(buf, key, Offer::Off)
}

/// Parses the server's answer to a request sent with `key` and `offer`.
pub fn parse_response_to(
    buf: &[u8],
    key: &[u8; 24],
    offer: Offer,
) -> Result<Option<Accepted>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let Some(consumed) = complete(res.parse(buf), buf.len())? else {
        return Ok(None);
    };
    match res.code {
        Some(101) => {}
        code => return Err(HandshakeError::Rejected(code.unwrap_or(0))),
    }
    if !is_upgrade(res.headers) {
        return Err(HandshakeError::MissingUpgrade);
    }
    let accept = header(res.headers, "Sec-WebSocket-Accept").map(<[u8]>::trim_ascii);
    if accept != Some(&accept_key(key)[..]) {
        return Err(HandshakeError::BadAccept);
    }
    let seq = header(res.headers, SEQ_HEADER)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok());
    let protocol = header(res.headers, "Sec-WebSocket-Protocol").map(|v| {
        let v = v.trim_ascii();
        let start = v.as_ptr() as usize - buf.as_ptr() as usize;
        (start, start + v.len())
    });
    let deflate = deflate::parse_answer(offer, values(res.headers, deflate::HEADER))
        .map_err(HandshakeError::BadExtension)?;
    Ok(Some(Accepted {
        consumed,
        seq,
        protocol,
        deflate,
    }))
}

/// Turns httparse's verdict into the head length, `None` while incomplete, or an error. A head
/// longer than `MAX_HEAD` is refused even when it arrived complete in one read, so the outcome
/// does not depend on how the bytes were split.
fn complete(
    status: httparse::Result<usize>,
    buffered: usize,
) -> Result<Option<usize>, HandshakeError> {
    match status {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buffered < MAX_HEAD => Ok(None),
        Ok(_) => Err(HandshakeError::TooLarge),
        Err(httparse::Error::TooManyHeaders) => Err(HandshakeError::TooManyHeaders),
        Err(e) => Err(HandshakeError::NotHttp(match e {
            httparse::Error::HeaderName => "invalid header name",
            httparse::Error::HeaderValue => "invalid header value",
            httparse::Error::NewLine => "invalid line ending",
            httparse::Error::Status => "invalid status",
            httparse::Error::Token => "invalid token",
            httparse::Error::Version => "invalid HTTP version",
            httparse::Error::TooManyHeaders => "too many headers",
        })),
    }
}

fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Every value of a header that may be repeated.
fn values<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Both headers are token lists that proxies and browsers send in varied case, possibly
/// repeated, e.g. `Connection: keep-alive, Upgrade`.
fn is_upgrade(headers: &[httparse::Header<'_>]) -> bool {
    let has_token = |name: &str, token: &[u8]| {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    };
    has_token("Upgrade", b"websocket") && has_token("Connection", b"upgrade")
}

/// A key must decode to 16 bytes: 22 base64 characters and `==`.
fn is_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn base64_16(bytes: &[u8; 16]) -> [u8; 24] {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = [b'='; 24];
    // Five full 3-byte groups, then one byte left over that becomes two characters and `==`.
    for (group, chunk) in bytes.chunks(3).enumerate() {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for (i, slot) in out[group * 4..group * 4 + chars].iter_mut().enumerate() {
            *slot = ALPHABET[(n >> (18 - 6 * i) & 0x3F) as usize];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_KEY: &[u8; 24] = b"dGhlIHNhbXBsZSBub25jZQ==";

    fn request(headers: &str) -> Vec<u8> {
        format!("GET /ws HTTP/1.1\r\nHost: example\r\n{headers}\r\n").into_bytes()
    }

    const GOOD: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                        Sec-WebSocket-Version: 13\r\n";

    #[test]
    fn permessage_deflate_is_offered_answered_and_read_back() {
        let key = generate_key(&mut rand::rng());
        for (offer, takeover) in [(Offer::Shared, false), (Offer::Context, false)] {
            let line = format!("{}: {}\r\n", deflate::HEADER, offer.header_value().unwrap());
            let mut req = Vec::new();
            write_request_with("h", b"/", &key, line.as_bytes(), &mut req);
            let up = parse_request(&req).unwrap().unwrap();
            assert!(up.deflate, "{offer:?}");
            let mut res = Vec::new();
            write_response(&up.accept, None, up.deflate, &mut res);
            let got = parse_response_to(&res, &key, offer).unwrap().unwrap();
            let agreed = Agreed {
                server_takeover: takeover,
                server_window_bits: 15,
            };
            assert_eq!(got.deflate, Some(agreed), "{offer:?}");
            // A server that speaks no extension answers none: compression off, no error.
            let mut plain = Vec::new();
            write_response(&up.accept, None, false, &mut plain);
            let got = parse_response_to(&plain, &key, offer).unwrap().unwrap();
            assert_eq!(got.deflate, None);
        }
        // No offer, no extension: a server that answers one anyway fails the upgrade.
        let mut req = Vec::new();
        write_request("h", "/", &key, &mut req);
        let up = parse_request(&req).unwrap().unwrap();
        assert!(!up.deflate);
        let mut res = Vec::new();
        write_response(&up.accept, None, true, &mut res);
        assert!(matches!(
            parse_response(&res, &key),
            Err(HandshakeError::BadExtension(_))
        ));
    }

    #[test]
    fn rfc_example_key() {
        assert_eq!(&accept_key(RFC_KEY), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn round_trip() {
        let key = generate_key(&mut rand::rng());
        assert!(is_key(&key));
        let mut buf = Vec::new();
        write_request("localhost:8080", "/any/path?x=1", &key, &mut buf);
        buf.extend_from_slice(b"\x81\x00"); // a first frame in the same read
        let upgrade = parse_request(&buf).unwrap().unwrap();
        assert_eq!(upgrade.consumed, buf.len() - 2);

        for seq in [None, Some(0), Some(u64::MAX)] {
            let mut res = Vec::new();
            write_response(&upgrade.accept, seq, false, &mut res);
            let accepted = parse_response(&res, &key).unwrap().unwrap();
            assert_eq!(
                accepted,
                Accepted {
                    consumed: res.len(),
                    seq,
                    protocol: None,
                    deflate: None,
                }
            );
        }
    }

    #[test]
    fn extra_headers_go_out_and_the_chosen_protocol_comes_back() {
        let key = generate_key(&mut rand::rng());
        let mut req = Vec::new();
        let extra =
            b"Authorization: Bearer t0k\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n";
        write_request_with("h:1", b"/graphql", &key, extra, &mut req);
        let text = String::from_utf8(req.clone()).unwrap();
        assert!(text.ends_with(
            "Authorization: Bearer t0k\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        ));
        let upgrade = parse_request(&req).unwrap().unwrap();
        let mut res = Vec::new();
        write_response(&upgrade.accept, None, false, &mut res);
        // A server that chose a protocol says so in its answer.
        let at = res.len() - 2;
        res.splice(
            at..at,
            b"Sec-WebSocket-Protocol:  graphql-transport-ws \r\n"
                .iter()
                .copied(),
        );
        let accepted = parse_response(&res, &key).unwrap().unwrap();
        let (a, b) = accepted.protocol.unwrap();
        assert_eq!(&res[a..b], b"graphql-transport-ws");
    }

    #[test]
    fn base64_known_answers() {
        assert_eq!(&base64_16(b"the sample nonce"), RFC_KEY);
        assert_eq!(&base64_16(&[0; 16]), b"AAAAAAAAAAAAAAAAAAAAAA==");
        assert_eq!(&base64_16(&[0xff; 16]), b"/////////////////////w==");
        assert_eq!(
            &base64_16(&core::array::from_fn(|i| i as u8)),
            b"AAECAwQFBgcICQoLDA0ODw=="
        );
    }

    #[test]
    fn incomplete_prefixes_wait_for_more() {
        let full = request(GOOD);
        for end in 0..full.len() {
            assert_eq!(parse_request(&full[..end]), Ok(None), "prefix {end}");
        }
    }

    #[test]
    fn endless_heads_are_too_large() {
        let mut req = b"GET / HTTP/1.1\r\nX-Filler: ".to_vec();
        req.resize(5000, b'a');
        assert_eq!(parse_request(&req), Err(HandshakeError::TooLarge));
        let mut res = b"HTTP/1.1 101 Switching Protocols\r\nX-Filler: ".to_vec();
        res.resize(5000, b'a');
        assert_eq!(parse_response(&res, RFC_KEY), Err(HandshakeError::TooLarge));
    }

    #[test]
    fn complete_but_oversized_head() {
        let padding = format!("X-Filler: {}\r\n", "a".repeat(MAX_HEAD));
        let req = request(&format!("{GOOD}{padding}"));
        assert_eq!(parse_request(&req), Err(HandshakeError::TooLarge));
    }

    #[test]
    fn request_errors() {
        let cases = [
            (
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
                HandshakeError::NotHttp("invalid token"),
            ),
            (
                b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n".to_vec(),
                HandshakeError::NotHttp("invalid header name"),
            ),
            (
                [b"POST".as_slice(), &request(GOOD)[3..]].concat(),
                HandshakeError::NotGet,
            ),
            (
                request(&GOOD.replace("Upgrade: websocket", "Upgrade: h2c")),
                HandshakeError::MissingUpgrade,
            ),
            (
                request(&GOOD.replace("Connection: Upgrade", "Connection: close")),
                HandshakeError::MissingUpgrade,
            ),
            (
                request(&GOOD.replace("Version: 13", "Version: 8")),
                HandshakeError::BadVersion,
            ),
            (
                request(&GOOD.replace("Sec-WebSocket-Key", "X-Key")),
                HandshakeError::MissingKey,
            ),
            (
                request(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")),
                HandshakeError::MissingKey,
            ),
            (
                request(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ!!")),
                HandshakeError::MissingKey,
            ),
            (
                request(&"X-A: b\r\n".repeat(40)),
                HandshakeError::TooManyHeaders,
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                parse_request(&bytes),
                Err(expected),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn lenient_token_lists_and_case() {
        let headers = "upgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n\
                       sec-websocket-key:  dGhlIHNhbXBsZSBub25jZQ== \r\n\
                       sec-websocket-version: 13\r\n";
        let upgrade = parse_request(&request(headers)).unwrap().unwrap();
        assert_eq!(&upgrade.accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let split = "Upgrade: websocket\r\nConnection: keep-alive\r\nConnection: upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        assert!(parse_request(&request(split)).unwrap().is_some());
    }

    #[test]
    fn response_errors() {
        let not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse_response(not_found, RFC_KEY),
            Err(HandshakeError::Rejected(404))
        );

        let mut wrong = Vec::new();
        write_response(
            &accept_key(b"AAAAAAAAAAAAAAAAAAAAAA=="),
            None,
            false,
            &mut wrong,
        );
        assert_eq!(
            parse_response(&wrong, RFC_KEY),
            Err(HandshakeError::BadAccept)
        );

        let no_upgrade = b"HTTP/1.1 101 Switching Protocols\r\n\
                           Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(
            parse_response(no_upgrade, RFC_KEY),
            Err(HandshakeError::MissingUpgrade)
        );

        assert!(matches!(
            parse_response(b"\x00\x01garbage\r\n\r\n", RFC_KEY),
            Err(HandshakeError::NotHttp(_))
        ));
        assert_eq!(parse_response(b"HTTP/1.1 101 Swi", RFC_KEY), Ok(None));
    }

    #[test]
    fn seq_header_is_optional_and_numeric() {
        let mut res = Vec::new();
        write_response(&accept_key(RFC_KEY), Some(42), false, &mut res);
        let text = String::from_utf8(res).unwrap();
        assert!(text.contains("\r\nX-C1m-Seq: 42\r\n"), "{text}");
        let junk = text.replace("X-C1m-Seq: 42", "x-c1m-seq: soon");
        assert_eq!(
            parse_response(junk.as_bytes(), RFC_KEY)
                .unwrap()
                .unwrap()
                .seq,
            None
        );
    }

    #[test]
    fn rejections_name_the_problem() {
        let mut out = Vec::new();
        write_rejection(&HandshakeError::BadVersion, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));

        let mut out = Vec::new();
        write_rejection(&HandshakeError::MissingKey, &mut out);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains("\r\nConnection: close"));
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        assert_eq!(
            body,
            "Sec-WebSocket-Key is missing or not 24 base64 characters\n"
        );

        // The answer parses as HTTP, so a client reports the status.
        let mut out = Vec::new();
        write_rejection(&HandshakeError::NotGet, &mut out);
        assert_eq!(
            parse_response(&out, RFC_KEY),
            Err(HandshakeError::Rejected(400))
        );
    }
}
