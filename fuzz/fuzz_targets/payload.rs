//! `proto::payload::parse` on arbitrary bytes: the clients run it on every message a server
//! sends, c1m's or anyone else's.
//!
//! Invariants, beyond "never panics":
//! - a parsed time is in `0..2.6e17` µs (negatives are refused; every unit tops out below 1e17,
//!   and RFC 3339 text at the end of year 9999, 2.53e17);
//! - ASCII whitespace around a payload changes nothing;
//! - re-encoding a parsed stamp with `payload::encode` (both formats, any padding) parses back
//!   to the same seq and time, for times in the unit the encoder writes (µs since the epoch,
//!   1973 onwards: smaller numbers are read as seconds or milliseconds by design);
//! - a valid JSON object (per serde_json) is never `BadJson`, and when its top-level `ts`,
//!   `time`, `timestamp` and `seq` are plain unsigned integers appearing once, `parse` returns
//!   exactly them (`ts` first, then `time`, then `timestamp`).
#![no_main]

use c1m::proto::payload::{Format, PayloadError, Stamp, encode, parse};
use libfuzzer_sys::fuzz_target;

/// Where each unit's range starts, per the doc comment on `to_micros`.
const MICROS_FROM: i64 = 100_000_000_000_000;
const LIMIT: i64 = 260_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);

    let mut padded = b" \t".to_vec();
    padded.extend_from_slice(data);
    padded.extend_from_slice(b"\r\n");
    assert_eq!(
        parse(&padded),
        parsed,
        "surrounding whitespace changed the result"
    );

    if let Ok(stamp) = parsed {
        assert!(
            (0..LIMIT).contains(&stamp.ts_us),
            "time out of range: {stamp:?}"
        );
        if stamp.ts_us >= MICROS_FROM {
            round_trip(stamp, data.first().copied().unwrap_or(0));
        }
    }

    if data.trim_ascii_start().first() == Some(&b'{') {
        against_serde(data, parsed);
    }
});

fn round_trip(stamp: Stamp, pad: u8) {
    let seq = stamp.seq.unwrap_or(0);
    for pad in [0, usize::from(pad)] {
        let mut json = Vec::new();
        encode(Format::Json, seq, stamp.ts_us, pad, &mut json);
        assert_eq!(
            parse(&json),
            Ok(Stamp {
                seq: Some(seq),
                ts_us: stamp.ts_us
            }),
            "json round trip of {stamp:?} with pad {pad}"
        );
        let mut seed = Vec::new();
        encode(Format::Seed, seq, stamp.ts_us, pad, &mut seed);
        assert_eq!(
            parse(&seed),
            Ok(Stamp {
                seq: None,
                ts_us: stamp.ts_us / 1000 * 1000
            }),
            "seed round trip of {stamp:?} with pad {pad}"
        );
    }
}

fn against_serde(data: &[u8], parsed: Result<Stamp, PayloadError>) {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(data) else {
        return;
    };
    assert_ne!(
        parsed,
        Err(PayloadError::BadJson),
        "valid JSON refused: {:?}",
        String::from_utf8_lossy(data)
    );
    // Without escapes, a key is spelt as written, and counting `"ts"` etc. rules out duplicate
    // keys (serde keeps the last, the scanner stops at the first bad one).
    if data.contains(&b'\\') {
        return;
    }
    let once = |key: &[u8]| data.windows(key.len()).filter(|w| *w == key).count() <= 1;
    if !(once(b"\"ts\"") && once(b"\"time\"") && once(b"\"timestamp\"") && once(b"\"seq\"")) {
        return;
    }
    let field = |key: &str| match map.get(key) {
        None => Some(None),
        Some(v) => v.as_u64().map(Some),
    };
    let (Some(ts), Some(time), Some(timestamp), Some(seq)) = (
        field("ts"),
        field("time"),
        field("timestamp"),
        field("seq"),
    ) else {
        return;
    };
    let expected = match ts.or(time).or(timestamp) {
        None => Err(PayloadError::NoTimestamp),
        Some(n) => Ok(Stamp {
            seq,
            ts_us: micros(n),
        }),
    };
    assert_eq!(parsed, expected, "{:?}", String::from_utf8_lossy(data));
}

/// The unit rule of `payload::to_micros`, for whole numbers: s, ms, µs or ns by magnitude.
fn micros(n: u64) -> i64 {
    let n = match n {
        0..100_000_000_000 => n * 1_000_000,
        100_000_000_000..100_000_000_000_000 => n * 1_000,
        100_000_000_000_000..100_000_000_000_000_000 => n,
        _ => n / 1_000,
    };
    n as i64
}
