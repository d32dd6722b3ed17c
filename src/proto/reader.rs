//! Where a message keeps its time, when the user says so: `--ts-path` and `--seq-path` (a
//! dotted JSON path with array indices, `payload.data[0].ts`), `--ts-regex` (one capture group)
//! and `--ts-unit`. Without them, [`payload::parse_in`] guesses, as it always has.
//!
//! A message in which the path or the regex finds nothing is a protocol message (an ack, a
//! ping, a welcome), not a broken one: [`Reader::read`] answers `Ok(None)` and the client
//! counts it as ignored. One whose value is there but is no time is unparsable.
//!
//! Everything is parsed once, by [`Reader::new`]; `read` allocates nothing and takes no lock
//! (the regex runs with this reader's own cache).

use super::payload::{self, PayloadError, Scanner, Stamp, Unit};
use regex_automata::meta::{Cache, Regex};
use regex_automata::util::primitives::NonMaxUsize;
use regex_automata::{Input, PatternID};
use std::sync::Arc;

/// What the user said about the message format, as given on the command line (and carried to
/// worker processes as is).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReaderSpec {
    pub ts_path: Option<String>,
    pub seq_path: Option<String>,
    pub ts_regex: Option<String>,
    #[serde(default)]
    pub ts_unit: Unit,
}

impl ReaderSpec {
    /// Whether the user told c1m where the time is: then messages without it are ignored.
    pub fn locates(&self) -> bool {
        self.ts_path.is_some() || self.ts_regex.is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(Box<[u8]>),
    Index(usize),
}

/// A parsed `--ts-path` or `--seq-path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path(Box<[Seg]>);

impl Path {
    /// `a.b[2].c`, `[4].ts`, `payload[1]`. Keys are matched as written, escapes and all.
    pub fn parse(text: &str) -> Result<Path, String> {
        let mut segs = Vec::new();
        for (n, part) in text.split('.').enumerate() {
            let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
            if key.is_empty() && (n > 0 || rest.is_empty()) {
                return Err(format!("empty key in path \"{text}\""));
            }
            if !key.is_empty() {
                segs.push(Seg::Key(key.as_bytes().into()));
            }
            while let Some(open) = rest.strip_prefix('[') {
                let close = open
                    .find(']')
                    .ok_or_else(|| format!("unclosed [ in path \"{text}\""))?;
                let index = open[..close].parse().map_err(|_| {
                    format!(
                        "\"[{}]\" in path \"{text}\" is not an array index",
                        &open[..close]
                    )
                })?;
                segs.push(Seg::Index(index));
                rest = &open[close + 1..];
            }
            if !rest.is_empty() {
                return Err(format!("unexpected \"{rest}\" in path \"{text}\""));
            }
        }
        Ok(Path(segs.into()))
    }

    /// The raw value at this path (a string's contents, or a scalar), `None` when the message
    /// has no such place.
    fn find<'a>(&self, data: &'a [u8]) -> Result<Option<&'a [u8]>, PayloadError> {
        let mut scan = Scanner { data, pos: 0 };
        for seg in &self.0 {
            scan.skip_ws();
            let found = match (seg, scan.peek()) {
                (Seg::Key(key), Some(b'{')) => enter_key(&mut scan, key)?,
                (Seg::Index(i), Some(b'[')) => enter_index(&mut scan, *i)?,
                _ => false,
            };
            if !found {
                return Ok(None);
            }
        }
        scan.skip_ws();
        scan.number_or_string().map(Some)
    }
}

/// Moves from an object's `{` to the value of `key`; false if it has none.
fn enter_key(scan: &mut Scanner, key: &[u8]) -> Result<bool, PayloadError> {
    scan.pos += 1;
    scan.skip_ws();
    if scan.peek() == Some(b'}') {
        return Ok(false);
    }
    loop {
        let k = scan.string()?;
        scan.skip_ws();
        scan.expect(b':')?;
        scan.skip_ws();
        if k == key {
            return Ok(true);
        }
        scan.skip_value()?;
        scan.skip_ws();
        match scan.next() {
            Some(b',') => scan.skip_ws(),
            Some(b'}') => return Ok(false),
            _ => return Err(PayloadError::BadJson),
        }
    }
}

/// Moves from an array's `[` to its element `index`; false if it is shorter.
fn enter_index(scan: &mut Scanner, index: usize) -> Result<bool, PayloadError> {
    scan.pos += 1;
    scan.skip_ws();
    if scan.peek() == Some(b']') {
        return Ok(false);
    }
    for _ in 0..index {
        scan.skip_value()?;
        scan.skip_ws();
        match scan.next() {
            Some(b',') => scan.skip_ws(),
            Some(b']') => return Ok(false),
            _ => return Err(PayloadError::BadJson),
        }
    }
    Ok(true)
}

/// `--ts-regex`: compiled once, shared; each reader keeps its own search cache.
struct Pattern {
    regex: Arc<Regex>,
    cache: Cache,
}

impl Clone for Pattern {
    fn clone(&self) -> Pattern {
        Pattern {
            regex: self.regex.clone(),
            cache: self.regex.create_cache(),
        }
    }
}

impl Pattern {
    fn new(text: &str) -> Result<Pattern, String> {
        let regex = Regex::new(text).map_err(|e| format!("--ts-regex \"{text}\": {e}"))?;
        let groups = regex.group_info().group_len(PatternID::ZERO);
        if groups != 2 {
            return Err(format!(
                "--ts-regex \"{text}\" has {} capture groups; it needs exactly one, around the \
                 timestamp (use (?:…) for the others)",
                groups - 1
            ));
        }
        Ok(Pattern {
            cache: regex.create_cache(),
            regex: Arc::new(regex),
        })
    }

    /// The text of the capture group, if the pattern matches.
    fn capture<'a>(&mut self, data: &'a [u8]) -> Option<&'a [u8]> {
        let mut slots: [Option<NonMaxUsize>; 4] = [None; 4];
        self.regex
            .search_slots_with(&mut self.cache, &Input::new(data), &mut slots)?;
        let (start, end) = (slots[2]?.get(), slots[3]?.get());
        Some(&data[start..end])
    }
}

#[derive(Clone)]
enum Find {
    Auto,
    Path(Path),
    Regex(Box<Pattern>),
}

/// Reads the time (and sequence number) of each message, one per client shard.
#[derive(Clone)]
pub struct Reader {
    find: Find,
    seq: Option<Path>,
    unit: Unit,
}

impl Reader {
    pub fn new(spec: &ReaderSpec) -> Result<Reader, String> {
        let find = match (&spec.ts_path, &spec.ts_regex) {
            (Some(_), Some(_)) => return Err("give --ts-path or --ts-regex, not both".into()),
            (Some(path), None) => Find::Path(Path::parse(path)?),
            (None, Some(re)) => Find::Regex(Box::new(Pattern::new(re)?)),
            (None, None) => Find::Auto,
        };
        let seq = spec.seq_path.as_deref().map(Path::parse).transpose()?;
        Ok(Reader {
            find,
            seq,
            unit: spec.ts_unit,
        })
    }

    /// The message's stamp; `Ok(None)` when it has no time where the user said it would be.
    pub fn read(&mut self, data: &[u8]) -> Result<Option<Stamp>, PayloadError> {
        let ts_us = match &mut self.find {
            Find::Auto => {
                let stamp = payload::parse_in(data, self.unit)?;
                return Ok(Some(match &self.seq {
                    Some(path) => Stamp {
                        seq: read_seq(path, data)?,
                        ..stamp
                    },
                    None => stamp,
                }));
            }
            Find::Path(path) => match path.find(data)? {
                Some(text) => text,
                None => return Ok(None),
            },
            Find::Regex(pattern) => match pattern.capture(data) {
                Some(text) => text,
                None => return Ok(None),
            },
        };
        std::str::from_utf8(ts_us).map_err(|_| PayloadError::NotUtf8)?;
        let ts_us = payload::parse_time(ts_us, self.unit)?;
        let seq = match &self.seq {
            Some(path) => read_seq(path, data)?,
            None => None,
        };
        Ok(Some(Stamp { seq, ts_us }))
    }
}

fn read_seq(path: &Path, data: &[u8]) -> Result<Option<u64>, PayloadError> {
    path.find(data)?.map(payload::parse_seq).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_764_000_000_123_000;

    fn reader(ts_path: Option<&str>, seq_path: Option<&str>, ts_regex: Option<&str>) -> Reader {
        Reader::new(&ReaderSpec {
            ts_path: ts_path.map(Into::into),
            seq_path: seq_path.map(Into::into),
            ts_regex: ts_regex.map(Into::into),
            ts_unit: Unit::Auto,
        })
        .unwrap()
    }

    fn stamp(seq: Option<u64>, ts_us: i64) -> Result<Option<Stamp>, PayloadError> {
        Ok(Some(Stamp { seq, ts_us }))
    }

    #[test]
    fn paths_parse_or_say_what_is_wrong() {
        let p = Path::parse("payload[1].ts").unwrap();
        assert_eq!(
            p.0.as_ref(),
            [
                Seg::Key((*b"payload").into()),
                Seg::Index(1),
                Seg::Key((*b"ts").into())
            ]
        );
        assert_eq!(Path::parse("[4][0].t").unwrap().0.len(), 3);
        for bad in ["", "a..b", "a.", "a[x]", "a[1", "a[1]b", ".a"] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_path_finds_the_time_anywhere() {
        let mut r = reader(Some("data.sent_at"), None, None);
        let nested = br#"{"event":"tick","data":{"x":[1,{"sent_at":2}],"sent_at":1764000000123}}"#;
        assert_eq!(r.read(nested), stamp(None, MS));
        // A message without that place is a protocol message, not a broken one.
        assert_eq!(r.read(br#"{"event":"ack"}"#), Ok(None));
        assert_eq!(r.read(br#"{"data":5}"#), Ok(None));
        assert_eq!(r.read(b"2"), Ok(None));
        assert_eq!(
            r.read(br#"{"data":{"sent_at":"soon"}}"#),
            Err(PayloadError::BadNumber)
        );
        assert_eq!(
            r.read(br#"{"data":{"sent_at":{}}}"#),
            Err(PayloadError::BadNumber)
        );
        assert_eq!(r.read(br#"{"data":{"a" 1}}"#), Err(PayloadError::BadJson));

        let mut phoenix = reader(Some("[4].ts"), Some("[4].seq"), None);
        let push = br#"[null,null,"room:lobby","tick",{"seq":7,"ts":1764000000123}]"#;
        assert_eq!(phoenix.read(push), stamp(Some(7), MS));
        let reply = br#"["1","1","room:lobby","phx_reply",{"status":"ok","response":{}}]"#;
        assert_eq!(phoenix.read(reply), Ok(None));
        assert_eq!(phoenix.read(br#"[1,2]"#), Ok(None));

        let mut iso = reader(Some("at"), None, None);
        assert_eq!(
            iso.read(br#"{"at":"2026-11-29T15:00:00.5Z"}"#),
            stamp(None, 1_795_964_400_500_000)
        );
    }

    #[test]
    fn a_regex_captures_the_time() {
        let mut r = reader(None, None, Some(r#"^42\["tick",\{.*"ts":(\d+)"#));
        assert_eq!(
            r.read(br#"42["tick",{"seq":1,"ts":1764000000123}]"#),
            stamp(None, MS)
        );
        assert_eq!(r.read(b"2"), Ok(None));
        assert_eq!(r.read(br#"0{"sid":"x"}"#), Ok(None));
        let e = Reader::new(&ReaderSpec {
            ts_regex: Some("(a)(b)".into()),
            ..Default::default()
        });
        assert!(e.err().unwrap().contains("2 capture groups"));
        assert!(
            Reader::new(&ReaderSpec {
                ts_regex: Some("(".into()),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn units_are_as_told() {
        let mut r = Reader::new(&ReaderSpec {
            ts_path: Some("t".into()),
            ts_unit: Unit::S,
            ..Default::default()
        })
        .unwrap();
        // Auto would read 1764000000123 as milliseconds; told seconds, it is far future.
        assert_eq!(r.read(br#"{"t":5}"#), stamp(None, 5_000_000));
        assert_eq!(
            r.read(br#"{"t":1764000000123456789}"#),
            Err(PayloadError::BadNumber)
        );
        let mut ms = Reader::new(&ReaderSpec {
            ts_unit: Unit::Ms,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ms.read(b"1764000000"), stamp(None, 1_764_000_000_000));
        assert_eq!(ms.read(br#"{"timestamp":1764000000123}"#), stamp(None, MS));
    }
}
