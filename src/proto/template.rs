//! Text with per-connection variables, for everything the client writes that a server may want
//! to differ per connection: the URL's path, header values, `--send`, `--heartbeat` and
//! `--reply` texts.
//!
//! Variables: `{i}` (the connection's global index), `{worker}` (the worker process's index),
//! `{uuid}` (a fresh random UUID v4), `{now_ms}` (epoch milliseconds when the text is written)
//! and `{token}` (line `i mod n` of `--tokens FILE`). Any other brace is text, so JSON needs no
//! escaping. A template is parsed once; a connection carries no copy of it, and rendering
//! appends to a buffer the caller reuses, so it allocates nothing once that buffer has grown.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    I,
    Worker,
    Uuid,
    NowMs,
    Token,
    Rtt,
}

const VARS: [(&str, Var); 6] = [
    ("{i}", Var::I),
    ("{worker}", Var::Worker),
    ("{uuid}", Var::Uuid),
    ("{now_ms}", Var::NowMs),
    ("{token}", Var::Token),
    ("{rtt}", Var::Rtt),
];

/// What `{rtt}` writes before the time: c1m's mark, so that the message is known as its own
/// when an echo server returns it, wherever the user put it in the text.
pub const RTT_MARK: &[u8] = b"c1m-rtt:";

/// The send time (µs since the epoch) of a `{rtt}` message coming back: the digits after the
/// first mark in `data`; `None` when it carries no mark.
pub fn rtt_sent(data: &[u8]) -> Option<i64> {
    let at = data.windows(RTT_MARK.len()).position(|w| w == RTT_MARK)?;
    let digits = &data[at + RTT_MARK.len()..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end.min(19)])
        .ok()?
        .parse()
        .ok()
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// A byte range of the template's text.
    Text(u32, u32),
    Var(Var),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    text: Box<str>,
    parts: Box<[Part]>,
}

/// What the variables stand for when one connection writes.
pub struct Vars<'a> {
    pub i: u64,
    pub worker: u32,
    pub tokens: &'a [Box<str>],
}

impl Template {
    pub fn parse(text: &str) -> Template {
        let mut parts = Vec::new();
        let (mut at, mut lit) = (0, 0);
        while let Some(open) = text[at..].find('{').map(|o| at + o) {
            match VARS.iter().find(|(name, _)| text[open..].starts_with(name)) {
                Some(&(name, var)) => {
                    if lit < open {
                        parts.push(Part::Text(lit as u32, open as u32));
                    }
                    parts.push(Part::Var(var));
                    at = open + name.len();
                    lit = at;
                }
                None => at = open + 1,
            }
        }
        if lit < text.len() {
            parts.push(Part::Text(lit as u32, text.len() as u32));
        }
        Template {
            text: text.into(),
            parts: parts.into(),
        }
    }

    /// The text as written, variables and all.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn uses(&self, var: Var) -> bool {
        self.parts.contains(&Part::Var(var))
    }

    pub fn render(&self, vars: &Vars, out: &mut Vec<u8>) {
        for part in self.parts.iter() {
            match *part {
                Part::Text(a, b) => {
                    out.extend_from_slice(&self.text.as_bytes()[a as usize..b as usize])
                }
                Part::Var(Var::I) => super::payload::push_u64(out, vars.i),
                Part::Var(Var::Worker) => super::payload::push_u64(out, u64::from(vars.worker)),
                Part::Var(Var::Uuid) => push_uuid(out, rand::random()),
                Part::Var(Var::NowMs) => {
                    let ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    super::payload::push_u64(out, ms);
                }
                Part::Var(Var::Rtt) => {
                    let us = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_micros() as u64);
                    out.extend_from_slice(RTT_MARK);
                    super::payload::push_u64(out, us);
                }
                Part::Var(Var::Token) => {
                    if !vars.tokens.is_empty() {
                        let line = (vars.i % vars.tokens.len() as u64) as usize;
                        out.extend_from_slice(vars.tokens[line].as_bytes());
                    }
                }
            }
        }
    }
}

/// A random (version 4) UUID in its 36-character form.
fn push_uuid(out: &mut Vec<u8>, random: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = (random & !(0xf << 76) & !(0b11 << 62)) | (0x4 << 76) | (0b10 << 62);
    for (k, byte) in n.to_be_bytes().iter().enumerate() {
        if matches!(k, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(byte >> 4)]);
        out.push(HEX[usize::from(byte & 0xf)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, i: u64, tokens: &[Box<str>]) -> String {
        let mut out = Vec::new();
        let vars = Vars {
            i,
            worker: 3,
            tokens,
        };
        Template::parse(t).render(&vars, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn variables_are_filled_and_other_braces_kept() {
        let tokens: Vec<Box<str>> = vec!["a".into(), "b".into(), "c".into()];
        assert_eq!(
            render(r#"{"id":"{i}","w":{worker},"t":"{token}"}"#, 7, &tokens),
            r#"{"id":"7","w":3,"t":"b"}"#
        );
        assert_eq!(render("/ws?id={i}&{x}", 12, &[]), "/ws?id=12&{x}");
        assert_eq!(render("{", 0, &[]), "{");
        assert_eq!(render("{i}{i}", 5, &[]), "55");
        assert!(!Template::parse("static {x}").uses(Var::I));
        assert!(Template::parse("x{token}").uses(Var::Token));
        let ms: u64 = render("{now_ms}", 0, &[]).parse().unwrap();
        assert!(ms > 1_700_000_000_000);
    }

    #[test]
    fn an_rtt_mark_is_found_wherever_it_was_put() {
        let text = render(r#"{"type":"echo","data":"{rtt}"}"#, 0, &[]);
        let sent = rtt_sent(text.as_bytes()).unwrap();
        assert!(sent > 1_700_000_000_000_000, "{text}");
        assert_eq!(rtt_sent(b"c1m-rtt:42"), Some(42));
        assert_eq!(rtt_sent(b"x c1m-rtt:7\"}"), Some(7));
        assert_eq!(rtt_sent(b"c1m-rtt:"), None);
        assert_eq!(rtt_sent(br#"{"seq":1,"ts":1700000000000000}"#), None);
    }

    #[test]
    fn uuids_are_version_4() {
        let a = render("{uuid}", 0, &[]);
        let b = render("{uuid}", 0, &[]);
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let dashes: Vec<usize> = a.match_indices('-').map(|(k, _)| k).collect();
        assert_eq!(dashes, [8, 13, 18, 23]);
        assert_eq!(&a[14..15], "4");
        assert!("89ab".contains(&a[19..20]), "{a}");
        let mut out = Vec::new();
        push_uuid(&mut out, 0);
        assert_eq!(out, b"00000000-0000-4000-8000-000000000000");
    }
}
