//! `proto::reader::Reader` on arbitrary bytes, with a JSON path and with a regex: the clients
//! run it on every message when --ts-path or --ts-regex is given.
//!
//! Invariants, beyond "never panics":
//! - a message in which the path finds a plain unsigned integer (per serde_json, no escapes in
//!   the text) is read as exactly that number of milliseconds (`--ts-unit ms`);
//! - a valid JSON document without the path is `Ok(None)` (ignored), never an error;
//! - the regex reader answers `Ok(None)` exactly when the regex does not match.
#![no_main]

use c1m::proto::payload::Unit;
use c1m::proto::reader::{Reader, ReaderSpec};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

const PATH: &str = "data[1].ts";

static READERS: LazyLock<(Reader, Reader)> = LazyLock::new(|| {
    let path = ReaderSpec {
        ts_path: Some(PATH.into()),
        ts_unit: Unit::Ms,
        ..ReaderSpec::default()
    };
    let regex = ReaderSpec {
        ts_regex: Some(r#""ts":(\d+)"#.into()),
        ts_unit: Unit::Ms,
        ..ReaderSpec::default()
    };
    (Reader::new(&path).unwrap(), Reader::new(&regex).unwrap())
});

fuzz_target!(|data: &[u8]| {
    let (mut by_path, mut by_regex) = READERS.clone();
    let found = by_path.read(data);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data)
        && !data.contains(&b'\\')
    {
        let at = value.get("data").and_then(|d| d.get(1)).and_then(|d| d.get("ts"));
        let once = data.windows(6).filter(|w| *w == b"\"data\"").count() <= 1
            && data.windows(4).filter(|w| *w == b"\"ts\"").count() <= 1;
        match at {
            None if once => assert_eq!(found, Ok(None), "{:?}", String::from_utf8_lossy(data)),
            Some(v) if once => {
                if let Some(ms) = v.as_u64().filter(|ms| *ms < 1 << 40) {
                    let got = found.unwrap().unwrap().ts_us;
                    assert_eq!(got, ms as i64 * 1000, "{:?}", String::from_utf8_lossy(data));
                }
            }
            _ => {}
        }
    }
    let matched = data.windows(5).any(|w| w == b"\"ts\":")
        && data
            .windows(6)
            .any(|w| w.starts_with(b"\"ts\":") && w[5].is_ascii_digit());
    match by_regex.read(data) {
        Ok(None) => assert!(!matched, "{:?}", String::from_utf8_lossy(data)),
        _ => assert!(matched),
    }
});
