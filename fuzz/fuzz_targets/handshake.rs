//! The HTTP upgrade: `parse_request` (the server reading a client) and `parse_response` (the
//! client reading a server) on arbitrary bytes, and `write_request`/`write_response` round
//! trips built from the same bytes.
//!
//! Invariants, beyond "never panics":
//! - a complete head is at most `MAX_HEAD` bytes and `consumed` never exceeds the input; the
//!   verdict on the head alone equals the verdict with whatever follows it;
//! - the outcome does not depend on how the head was split into reads: every prefix shorter
//!   than a head that parsed is `Ok(None)` (more bytes needed), and `Ok(None)` is only ever
//!   answered below `MAX_HEAD` bytes;
//! - `write_request` with a host, a path and a key built from the input parses back, consuming
//!   exactly what was written (not the first frame after it), with the accept key for that key;
//!   `write_response` with that accept key and a sequence number parses back to the same
//!   sequence number, and is refused as `BadAccept` for any other key.
#![no_main]

use base64::Engine;
use c1m::proto::handshake::{
    Accepted, HandshakeError, MAX_HEAD, accept_key, parse_request, parse_response, write_request,
    write_response,
};
use libfuzzer_sys::fuzz_target;

/// The RFC 6455 example key, whose accept value a seed response carries.
const RFC_KEY: &[u8; 24] = b"dGhlIHNhbXBsZSBub25jZQ==";

fuzz_target!(|data: &[u8]| {
    let pick = data.first().copied().unwrap_or(0);
    streamed(data, pick, parse_request);
    streamed(data, pick, |b| parse_response(b, RFC_KEY));
    round_trip(data);
});

/// The streaming contract shared by both parsers.
fn streamed<T: Consumed + PartialEq + std::fmt::Debug>(
    data: &[u8],
    pick: u8,
    parse: impl Fn(&[u8]) -> Result<Option<T>, HandshakeError>,
) {
    let verdict = parse(data);
    match &verdict {
        Ok(None) => assert!(data.len() < MAX_HEAD, "waits for more past MAX_HEAD"),
        Ok(Some(head)) => {
            let n = head.consumed();
            assert!(
                n <= data.len() && n <= MAX_HEAD,
                "consumed {n} of {}",
                data.len()
            );
            assert_eq!(
                parse(&data[..n]),
                verdict,
                "what follows the head changed it"
            );
            for k in [n - 1, n / 2, n * usize::from(pick) / 256] {
                assert_eq!(parse(&data[..k]), Ok(None), "prefix {k} of a {n}-byte head");
            }
        }
        Err(_) => {}
    }
}

trait Consumed {
    fn consumed(&self) -> usize;
}

impl Consumed for c1m::proto::handshake::Upgrade {
    fn consumed(&self) -> usize {
        self.consumed
    }
}

impl Consumed for Accepted {
    fn consumed(&self) -> usize {
        self.consumed
    }
}

fn round_trip(data: &[u8]) {
    if data.len() < 24 {
        return;
    }
    let (nonce, rest) = data.split_at(16);
    let (seq_bytes, rest) = rest.split_at(8);
    let mut key = [0u8; 24];
    base64::engine::general_purpose::STANDARD
        .encode_slice(nonce, &mut key)
        .expect("16 bytes are 24 base64 characters");
    // A host and a path as a URL would give them: printable, no spaces.
    let (host, path) = rest.split_at(rest.len() / 2);
    let host: String = host
        .iter()
        .filter(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(b))
        .map(|&b| char::from(b))
        .collect();
    let host = if host.is_empty() { "localhost" } else { &host };
    let path: String = std::iter::once('/')
        .chain(
            path.iter()
                .filter(|b| b.is_ascii_alphanumeric() || b"/-._~?=&%+,;:@!$'()*".contains(b))
                .map(|&b| char::from(b)),
        )
        .collect();

    let mut request = Vec::new();
    write_request(host, &path, &key, &mut request);
    let written = request.len();
    request.extend_from_slice(b"\x81\x00"); // a first frame in the same read
    let upgrade = parse_request(&request)
        .unwrap_or_else(|e| panic!("own request refused ({e}): {host:?} {path:?}"))
        .expect("a whole request is complete");
    assert_eq!(upgrade.consumed, written);
    assert_eq!(upgrade.accept, accept_key(&key));

    let seq = (nonce[0] & 1 == 1).then(|| u64::from_le_bytes(seq_bytes.try_into().unwrap()));
    let mut response = Vec::new();
    write_response(&upgrade.accept, seq, false, &mut response);
    let written = response.len();
    response.extend_from_slice(b"\x81\x00");
    assert_eq!(
        parse_response(&response, &key),
        Ok(Some(Accepted {
            consumed: written,
            seq,
            protocol: None,
            deflate: None,
        }))
    );
    if &key != RFC_KEY {
        assert_eq!(
            parse_response(&response, RFC_KEY),
            Err(HandshakeError::BadAccept)
        );
    }
}
