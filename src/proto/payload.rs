//! The broadcast payload: a timestamp (and in c1m's own format a sequence number) that the
//! server encodes once per broadcast and every client parses once per message.
//!
//! `parse` also has to understand servers c1m did not write, so it accepts bare numbers in any
//! common unit, RFC 3339 date-times, and JSON objects with a `ts`, `time` or `timestamp` field,
//! without allocating. Where a server puts its time elsewhere, the reader module finds it.

use thiserror::Error;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"seq":N,"ts":MICROS}`: c1m's default; the sequence number lets clients count lost
    /// broadcasts.
    Json,
    /// Bare epoch milliseconds as text, exactly as the 2015 Netty server sent.
    Seed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub seq: Option<u64>,
    /// Send time in microseconds since the Unix epoch.
    pub ts_us: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PayloadError {
    #[error("empty payload")]
    Empty,
    #[error("payload is not valid UTF-8")]
    NotUtf8,
    #[error(
        "no timestamp: expected a number, a date-time, or a JSON object with a `ts`, `time` or \
         `timestamp` field"
    )]
    NoTimestamp,
    #[error("malformed JSON object")]
    BadJson,
    #[error("timestamp or sequence number is not a number, or is too large")]
    BadNumber,
    #[error("negative timestamp or sequence number")]
    Negative,
    #[error("timestamp text is not an RFC 3339 date-time (2026-11-29T15:00:00.123Z)")]
    BadDate,
}

/// The unit of a numeric timestamp. `Auto` tells them apart by magnitude: epoch times of this
/// era are ~1.7e9 s, 1.7e12 ms, 1.7e15 µs and 1.7e18 ns.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    #[default]
    Auto,
    S,
    Ms,
    Us,
    Ns,
}

const JSON_PAD_FIELD: &[u8] = b",\"pad\":\"\"";

/// Appends one payload. When `pad` exceeds the natural length the payload is made exactly `pad`
/// bytes long, so message size can be varied without changing the parser's work.
pub fn encode(format: Format, seq: u64, ts_us: i64, pad: usize, out: &mut Vec<u8>) {
    let start = out.len();
    match format {
        Format::Json => {
            out.extend_from_slice(b"{\"seq\":");
            push_u64(out, seq);
            out.extend_from_slice(b",\"ts\":");
            push_i64(out, ts_us);
            // +1 for the closing brace still to come.
            let short = pad.saturating_sub(out.len() - start + 1);
            if short >= JSON_PAD_FIELD.len() {
                out.extend_from_slice(b",\"pad\":\"");
                out.resize(out.len() + short - JSON_PAD_FIELD.len(), b'x');
                out.push(b'"');
            } else {
                // Too few bytes for a field; whitespace keeps the JSON valid.
                out.resize(out.len() + short, b' ');
            }
            out.push(b'}');
        }
        Format::Seed => {
            let ms = ts_us / 1000;
            if ms < 0 {
                out.push(b'-');
            }
            let mut digits = [0u8; 20];
            let digits = format_u64(ms.unsigned_abs(), &mut digits);
            let short = pad.saturating_sub(out.len() - start + digits.len());
            out.resize(out.len() + short, b'0');
            out.extend_from_slice(digits);
        }
    }
}

/// Appends `n` in decimal without going through `fmt`.
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(format_u64(n, &mut digits));
}

fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// `c1m server --message`: a broadcast text of the user's, with `{seq}`, `{ts_us}` and
/// `{ts_ms}` filled in per broadcast (any other brace is text, so JSON needs no escaping). A
/// message must carry its send time, or no client could time it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    parts: Box<[MessagePart]>,
    /// It has no `{seq}`: clients number its broadcasts by their timestamps.
    pub unnumbered: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum MessagePart {
    Text(Box<[u8]>),
    Seq,
    TsUs,
    TsMs,
}

const MESSAGE_VARS: [(&str, MessagePart); 3] = [
    ("{seq}", MessagePart::Seq),
    ("{ts_us}", MessagePart::TsUs),
    ("{ts_ms}", MessagePart::TsMs),
];

impl Message {
    pub fn parse(text: &str) -> Result<Message, String> {
        let mut parts = Vec::new();
        let (mut at, mut lit) = (0, 0);
        while let Some(open) = text[at..].find('{').map(|o| at + o) {
            match MESSAGE_VARS
                .iter()
                .find(|(n, _)| text[open..].starts_with(n))
            {
                Some((name, part)) => {
                    if lit < open {
                        parts.push(MessagePart::Text(text.as_bytes()[lit..open].into()));
                    }
                    parts.push(part.clone());
                    at = open + name.len();
                    lit = at;
                }
                None => at = open + 1,
            }
        }
        if lit < text.len() {
            parts.push(MessagePart::Text(text.as_bytes()[lit..].into()));
        }
        let has = |p: &MessagePart| parts.contains(p);
        if !has(&MessagePart::TsUs) && !has(&MessagePart::TsMs) {
            return Err(
                "the message carries no send time: put {ts_us} or {ts_ms} in it \
                 (e.g. {\"ts\":{ts_us},\"seq\":{seq},...}), or no client can time it"
                    .into(),
            );
        }
        Ok(Message {
            unnumbered: !has(&MessagePart::Seq),
            parts: parts.into(),
        })
    }

    /// Appends the message for broadcast `seq` sent at `ts_us`.
    pub fn render(&self, seq: u64, ts_us: i64, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                MessagePart::Text(t) => out.extend_from_slice(t),
                MessagePart::Seq => push_u64(out, seq),
                MessagePart::TsUs => push_i64(out, ts_us),
                MessagePart::TsMs => push_i64(out, ts_us / 1000),
            }
        }
    }
}

/// Reads the send time (and sequence number, if any) from a message. Runs once per message, so
/// it never allocates.
pub fn parse(data: &[u8]) -> Result<Stamp, PayloadError> {
    parse_in(data, Unit::Auto)
}

/// [`parse`], reading numeric timestamps in `unit`.
pub fn parse_in(data: &[u8], unit: Unit) -> Result<Stamp, PayloadError> {
    std::str::from_utf8(data).map_err(|_| PayloadError::NotUtf8)?;
    let data = data.trim_ascii();
    match data.first() {
        None => Err(PayloadError::Empty),
        Some(b'{') => parse_c1m(data).map_or_else(|| parse_object(data, unit), Ok),
        Some(b'0'..=b'9' | b'-' | b'+' | b'.') => Ok(Stamp {
            seq: None,
            ts_us: parse_time(data, unit)?,
        }),
        Some(_) => Err(PayloadError::NoTimestamp),
    }
}

/// The fast path for exactly what `encode(Format::Json, ..)` writes; `None` sends anything
/// else to the general scanner.
fn parse_c1m(data: &[u8]) -> Option<Stamp> {
    let rest = data.strip_prefix(b"{\"seq\":")?;
    let (seq, rest) = leading_u64(rest)?;
    let rest = rest.strip_prefix(b",\"ts\":")?;
    let (ts, rest) = leading_u64(rest)?;
    let pad = match rest.strip_prefix(b",\"pad\":\"") {
        Some(pad) => pad.strip_suffix(b"\"}")?,
        None => rest.strip_suffix(b"}")?,
    };
    if !pad.iter().all(|&b| b == b'x' || b == b' ') {
        return None;
    }
    Some(Stamp {
        seq: Some(seq),
        ts_us: to_micros(ts, 0, 0, Unit::Auto).ok()?,
    })
}

fn leading_u64(s: &[u8]) -> Option<(u64, &[u8])> {
    let end = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    Some((parse_u64(&s[..end]).ok()?, &s[end..]))
}

/// Scans the top level of a JSON object for `ts`, `time`, `timestamp` and `seq`, skipping every
/// other value (nested ones included) without building anything.
fn parse_object(data: &[u8], unit: Unit) -> Result<Stamp, PayloadError> {
    let mut scan = Scanner { data, pos: 1 };
    let (mut ts, mut time, mut timestamp, mut seq) = (None, None, None, None);
    scan.skip_ws();
    if scan.peek() == Some(b'}') {
        scan.pos += 1;
    } else {
        loop {
            let key = scan.string()?;
            scan.skip_ws();
            scan.expect(b':')?;
            scan.skip_ws();
            match key {
                b"ts" => ts = Some(parse_time(scan.number_or_string()?, unit)?),
                b"time" => time = Some(parse_time(scan.number_or_string()?, unit)?),
                b"timestamp" => timestamp = Some(parse_time(scan.number_or_string()?, unit)?),
                b"seq" => seq = Some(parse_seq(scan.number_or_string()?)?),
                _ => scan.skip_value()?,
            }
            scan.skip_ws();
            match scan.next() {
                Some(b',') => scan.skip_ws(),
                Some(b'}') => break,
                _ => return Err(PayloadError::BadJson),
            }
        }
    }
    if scan.pos != data.len() {
        return Err(PayloadError::BadJson);
    }
    Ok(Stamp {
        seq,
        ts_us: ts.or(time).or(timestamp).ok_or(PayloadError::NoTimestamp)?,
    })
}

/// A cursor over JSON text that reads only what it is asked for.
pub(crate) struct Scanner<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    pub(crate) fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn expect(&mut self, want: u8) -> Result<(), PayloadError> {
        match self.next() {
            Some(b) if b == want => Ok(()),
            _ => Err(PayloadError::BadJson),
        }
    }

    pub(crate) fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// A string's raw contents between the quotes, escapes left in place: the keys we look for
    /// contain none, and an escaped number is not a number.
    pub(crate) fn string(&mut self) -> Result<&'a [u8], PayloadError> {
        self.expect(b'"')?;
        let start = self.pos;
        loop {
            match self.next() {
                Some(b'"') => return Ok(&self.data[start..self.pos - 1]),
                Some(b'\\') => {
                    self.next().ok_or(PayloadError::BadJson)?;
                }
                Some(_) => {}
                None => return Err(PayloadError::BadJson),
            }
        }
    }

    /// A scalar: number, `true`, `false` or `null`, up to the next delimiter.
    fn scalar(&mut self) -> Result<&'a [u8], PayloadError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| !matches!(b, b',' | b'}' | b']' | b'"') && !b.is_ascii_whitespace())
        {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(PayloadError::BadJson);
        }
        Ok(&self.data[start..self.pos])
    }

    pub(crate) fn number_or_string(&mut self) -> Result<&'a [u8], PayloadError> {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'{' | b'[') => Err(PayloadError::BadNumber),
            _ => self.scalar(),
        }
    }

    /// Skips one value. Nesting is tracked with a counter rather than recursion so a deeply
    /// nested payload cannot overflow the stack.
    pub(crate) fn skip_value(&mut self) -> Result<(), PayloadError> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.peek().ok_or(PayloadError::BadJson)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                    self.pos += 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
            }
            _ => self.scalar().map(drop),
        }
    }
}

pub(crate) fn parse_seq(s: &[u8]) -> Result<u64, PayloadError> {
    match s {
        [b'-', rest @ ..] if parse_u64(rest).is_ok() => Err(PayloadError::Negative),
        _ => parse_u64(s),
    }
}

fn parse_u64(digits: &[u8]) -> Result<u64, PayloadError> {
    if digits.is_empty() {
        return Err(PayloadError::BadNumber);
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return Err(PayloadError::BadNumber);
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(PayloadError::BadNumber)
    })
}

/// A timestamp as text: an RFC 3339 date-time, an integer, or a decimal whose fraction is kept
/// to microseconds, in `unit` (see `to_micros`).
pub(crate) fn parse_time(s: &[u8], unit: Unit) -> Result<i64, PayloadError> {
    let s = s.trim_ascii();
    if super::rfc3339::looks_like_date(s) {
        return match super::rfc3339::parse(s) {
            Some(us) if us < 0 => Err(PayloadError::Negative),
            Some(us) => Ok(us),
            None => Err(PayloadError::BadDate),
        };
    }
    let (negative, s) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (&s[..dot], Some(&s[dot + 1..])),
        None => (s, None),
    };
    let int = parse_u64(int)?;
    let (frac, frac_digits) = match frac {
        None => (0, 0),
        Some(f) if f.len() > 19 => {
            parse_u64(&f[19..])?;
            (parse_u64(&f[..19])?, 19)
        }
        Some(f) => (parse_u64(f)?, f.len() as u32),
    };
    if negative {
        return Err(PayloadError::Negative);
    }
    to_micros(int, frac, frac_digits, unit)
}

/// Converts a count in `unit` to µs. `Unit::Auto` goes by magnitude, with thresholds that leave
/// each unit centuries of room either way. The fraction (`frac` with `frac_digits` digits)
/// counts only down to a microsecond.
fn to_micros(n: u64, frac: u64, frac_digits: u32, unit: Unit) -> Result<i64, PayloadError> {
    let unit = match unit {
        Unit::Auto => match n {
            0..100_000_000_000 => Unit::S,
            100_000_000_000..100_000_000_000_000 => Unit::Ms,
            100_000_000_000_000..100_000_000_000_000_000 => Unit::Us,
            _ => Unit::Ns,
        },
        known => known,
    };
    let (per_unit, unit_digits) = match unit {
        Unit::S => (1_000_000, 6),
        Unit::Ms => (1_000, 3),
        Unit::Us | Unit::Auto => (1, 0),
        Unit::Ns => return i64::try_from(n / 1_000).map_err(|_| PayloadError::BadNumber),
    };
    let frac_us = if frac_digits > unit_digits {
        frac / 10u64.pow(frac_digits - unit_digits)
    } else {
        frac * 10u64.pow(unit_digits - frac_digits)
    };
    n.checked_mul(per_unit)
        .and_then(|us| us.checked_add(frac_us))
        .and_then(|us| i64::try_from(us).ok())
        .ok_or(PayloadError::BadNumber)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: i64 = 1_764_000_000_123_456;

    fn stamp(ts_us: i64) -> Result<Stamp, PayloadError> {
        Ok(Stamp { seq: None, ts_us })
    }

    fn encoded(format: Format, seq: u64, ts_us: i64, pad: usize) -> Vec<u8> {
        let mut out = Vec::new();
        encode(format, seq, ts_us, pad, &mut out);
        out
    }

    #[test]
    fn encodes_both_formats() {
        assert_eq!(
            encoded(Format::Json, 7, TS, 0),
            br#"{"seq":7,"ts":1764000000123456}"#
        );
        assert_eq!(encoded(Format::Seed, 7, TS, 0), b"1764000000123");
        assert_eq!(encoded(Format::Seed, 7, TS, 16), b"0001764000000123");
        let mut out = b"prefix".to_vec();
        encode(Format::Json, 1, 2, 0, &mut out);
        assert_eq!(out, br#"prefix{"seq":1,"ts":2}"#);
    }

    #[test]
    fn a_message_template_is_filled_in_and_reads_back() {
        let m = Message::parse(r#"{"type":"tick","seq":{seq},"ts":{ts_us},"at":"{ts_ms}","x":{}}"#)
            .unwrap();
        assert!(!m.unnumbered);
        let mut out = Vec::new();
        m.render(7, TS, &mut out);
        let want = format!(
            r#"{{"type":"tick","seq":7,"ts":{TS},"at":"{}","x":{{}}}}"#,
            TS / 1000
        );
        assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
        assert_eq!(
            parse(&out),
            Ok(Stamp {
                ts_us: TS,
                seq: Some(7)
            })
        );
        assert!(Message::parse("{ts_ms}").unwrap().unnumbered);
        let e = Message::parse(r#"{"seq":{seq}}"#).unwrap_err();
        assert!(e.contains("{ts_us}"), "{e}");
    }

    #[test]
    fn round_trips_with_exact_padding() {
        let natural = encoded(Format::Json, 42, TS, 0).len();
        for pad in [
            0,
            10,
            natural,
            natural + 1,
            natural + 8,
            natural + 9,
            natural + 10,
            4096,
        ] {
            let json = encoded(Format::Json, 42, TS, pad);
            assert_eq!(json.len(), pad.max(natural), "json pad {pad}");
            serde_json::from_slice::<serde_json::Value>(&json).unwrap();
            assert_eq!(
                parse(&json),
                Ok(Stamp {
                    seq: Some(42),
                    ts_us: TS
                }),
                "pad {pad}"
            );
            assert_eq!(
                parse_c1m(&json),
                Some(Stamp {
                    seq: Some(42),
                    ts_us: TS
                })
            );

            let seed = encoded(Format::Seed, 42, TS, pad);
            assert_eq!(seed.len(), pad.max(13), "seed pad {pad}");
            assert_eq!(parse(&seed), stamp(TS / 1000 * 1000), "seed pad {pad}");
        }
    }

    #[test]
    fn bare_numbers_in_every_unit() {
        assert_eq!(parse(b"1764000000"), stamp(1_764_000_000_000_000));
        assert_eq!(parse(b"1764000000123"), stamp(1_764_000_000_123_000));
        assert_eq!(parse(b"1764000000123456"), stamp(TS));
        assert_eq!(parse(b"1764000000123456789"), stamp(TS));
        assert_eq!(
            parse(b" \t0001764000000123\r\n"),
            stamp(1_764_000_000_123_000)
        );
        assert_eq!(parse(b"1764000000.123456"), stamp(TS));
        assert_eq!(parse(b"1764000000.1234567"), stamp(TS));
        assert_eq!(parse(b"1764000000.5"), stamp(1_764_000_000_500_000));
        assert_eq!(parse(b"1764000000123.456"), stamp(TS));
        assert_eq!(parse(b"0"), stamp(0));
    }

    #[test]
    fn json_objects() {
        let ok = |json: &str, seq, ts_us| {
            assert_eq!(parse(json.as_bytes()), Ok(Stamp { seq, ts_us }), "{json}");
        };
        ok(r#"{"ts":1764000000123456}"#, None, TS);
        ok(r#"{"time":"1764000000123"}"#, None, 1_764_000_000_123_000);
        ok(r#"{"time":1764000000.123456}"#, None, TS);
        ok(
            r#" { "seq" : 3 , "ts" : "1764000000123456" } "#,
            Some(3),
            TS,
        );
        ok(
            r#"{"a":[1,{"ts":5},"]"],"b":{"c":{"d":null}},"e":"\"ts\":9","ts":1764000000123456,"f":true}"#,
            None,
            TS,
        );
        ok(
            r#"{"note":"say \"hi\\\"","time":1764000000,"ts":1764000000123456}"#,
            None,
            TS,
        );
        ok(
            r#"{"seq":"9","type":"tick","ts":1764000000123456,"x":-1.5e3}"#,
            Some(9),
            TS,
        );
        ok("{\"ts\":1764000000123456,\"pad\":\"xxx\"   }", None, TS);
    }

    #[test]
    fn same_instant_in_every_unit_and_form() {
        let forms = [
            "1764000000",
            "1764000000000",
            "1764000000000000",
            "1764000000000000000",
            "1764000000.0",
            r#"{"ts":1764000000}"#,
            r#"{"time":"1764000000000000000"}"#,
        ];
        for form in forms {
            assert_eq!(
                parse(form.as_bytes()),
                stamp(1_764_000_000_000_000),
                "{form}"
            );
        }
    }

    #[test]
    fn rejects_without_panicking() {
        let cases: &[(&[u8], PayloadError)] = &[
            (b"", PayloadError::Empty),
            (b" \n ", PayloadError::Empty),
            (b"\xff\xfe", PayloadError::NotUtf8),
            (b"{\"ts\":\"\xff\"}", PayloadError::NotUtf8),
            (b"hello", PayloadError::NoTimestamp),
            (b"{}", PayloadError::NoTimestamp),
            (b"{\"seq\":1}", PayloadError::NoTimestamp),
            (b"-5", PayloadError::Negative),
            (b"-1764000000.5", PayloadError::Negative),
            (b"{\"ts\":-5}", PayloadError::Negative),
            (b"{\"ts\":1,\"seq\":-1}", PayloadError::Negative),
            (b"99999999999999999999999", PayloadError::BadNumber),
            (b"18446744073709551616", PayloadError::BadNumber),
            (b"1.99999999999999999999999x", PayloadError::BadNumber),
            (b"12abc", PayloadError::BadNumber),
            (b"1.", PayloadError::BadNumber),
            (b".5", PayloadError::BadNumber),
            (b"1e9", PayloadError::BadNumber),
            (b"--5", PayloadError::BadNumber),
            (b"{\"ts\":null}", PayloadError::BadNumber),
            (b"{\"ts\":{\"a\":1}}", PayloadError::BadNumber),
            (b"{\"ts\":1,\"seq\":1.5}", PayloadError::BadNumber),
            (b"{\"ts\":1", PayloadError::BadJson),
            (b"{\"ts\":1}}", PayloadError::BadJson),
            (b"{\"ts\" 1}", PayloadError::BadJson),
            (b"{\"a\":[1,2}", PayloadError::BadJson),
            (b"{\"a\":\"unterminated}", PayloadError::BadJson),
            (b"{\"a\":\"\\", PayloadError::BadJson),
            (b"{ts:1}", PayloadError::BadJson),
            (b"{\"a\":,\"ts\":1}", PayloadError::BadJson),
            (b"{,}", PayloadError::BadJson),
        ];
        for &(input, expected) in cases {
            assert_eq!(
                parse(input),
                Err(expected),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        // u64::MAX nanoseconds is still a representable instant.
        assert_eq!(
            parse(b"18446744073709551615"),
            stamp(18_446_744_073_709_551)
        );
    }

    #[test]
    fn fuzzish_inputs_never_panic() {
        let seeds: [&[u8]; 4] = [
            br#"{"seq":7,"ts":1764000000123456,"pad":"xx"}"#,
            br#"{"a":[{"b":"\"}"}],"time":"17640000.5"}"#,
            b"  1764000000.123456 ",
            b"{[[[[[[[[[[",
        ];
        for seed in seeds {
            for end in 0..=seed.len() {
                for start in 0..end {
                    let _ = parse(&seed[start..end]);
                }
            }
        }
        let deep = [b"{\"a\":".as_slice(), &[b'['; 100_000]].concat();
        assert_eq!(parse(&deep), Err(PayloadError::BadJson));
    }

    #[test]
    fn format_names_on_the_command_line_and_in_json() {
        use clap::ValueEnum;
        assert_eq!(Format::from_str("seed", false), Ok(Format::Seed));
        assert_eq!(serde_json::to_string(&Format::Json).unwrap(), r#""json""#);
    }
}
