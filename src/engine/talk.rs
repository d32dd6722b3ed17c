//! What the client says to a server, besides the upgrade's fixed parts: `--send` after the
//! upgrade, `--heartbeat` and `--ping` on a timer, `--reply` to a message, and the templated
//! path and headers of the upgrade itself.
//!
//! [`Script`] is built once per process and shared by the shards; every text is a
//! [`Template`] rendered into a shard's reused buffer when it is written, so a connection holds
//! nothing of them (`{i}` is its slab key). [`Sweep`] spreads a timer over the interval by slab key, so a million
//! connections do not all send at the same instant.

use crate::proto::frame::{self, OP_PING, OP_TEXT};
use crate::proto::template::{Template, Var, Vars};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The talk flags, as given (and carried to worker processes as is).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TalkSpec {
    /// `--send`: texts sent in order right after the upgrade.
    pub send: Vec<String>,
    /// `--heartbeat INTERVAL=TEXT`.
    pub heartbeat: Option<(Duration, String)>,
    /// `--ping INTERVAL`: WebSocket pings, whose pongs are timed.
    pub ping: Option<Duration>,
    /// `--reply MATCH=TEXT`.
    pub reply: Vec<(String, String)>,
    /// `--tokens FILE`: `{token}` is its line `i mod n`.
    pub tokens: Option<PathBuf>,
    /// This process's first connection index (`{i}` is unique over worker processes).
    pub index_base: u64,
    /// `{worker}`: this worker process's number, 0 for a client without workers.
    pub worker: u32,
}

pub struct Script {
    pub path: Template,
    /// Header lines after c1m's own, CRLF-terminated.
    head: Template,
    send: Box<[Template]>,
    pub heartbeat: Option<(Duration, Template)>,
    pub ping: Option<Duration>,
    replies: Box<[(Box<[u8]>, Template)]>,
    tokens: Box<[Box<str>]>,
    index_base: u64,
    worker: u32,
}

impl Script {
    pub fn new(spec: &TalkSpec, path: &str, head: &str) -> Result<Script> {
        let tokens = match &spec.tokens {
            Some(file) => read_tokens(file)?,
            None => Box::default(),
        };
        let script = Script {
            path: Template::parse(path),
            head: Template::parse(head),
            send: spec.send.iter().map(|t| Template::parse(t)).collect(),
            heartbeat: spec
                .heartbeat
                .as_ref()
                .map(|(every, text)| (*every, Template::parse(text))),
            ping: spec.ping,
            replies: spec
                .reply
                .iter()
                .map(|(m, t)| (m.as_bytes().into(), Template::parse(t)))
                .collect(),
            tokens,
            index_base: spec.index_base,
            worker: spec.worker,
        };
        if script.tokens.is_empty() && script.templates().any(|t| t.uses(Var::Token)) {
            bail!("{{token}} is used, but no --tokens FILE gives the tokens");
        }
        Ok(script)
    }

    fn templates(&self) -> impl Iterator<Item = &Template> {
        let timed = self.heartbeat.iter().map(|(_, t)| t);
        let replies = self.replies.iter().map(|(_, t)| t);
        [&self.path, &self.head]
            .into_iter()
            .chain(self.send.iter())
            .chain(timed)
            .chain(replies)
    }

    fn vars(&self, i: u64) -> Vars<'_> {
        Vars {
            i: self.index_base + i,
            worker: self.worker,
            tokens: &self.tokens,
        }
    }

    /// Renders the request's path and extra header lines for connection `i` into `buf`;
    /// returns where the path ends.
    pub fn request_parts(&self, i: u64, buf: &mut Vec<u8>) -> usize {
        buf.clear();
        let vars = self.vars(i);
        self.path.render(&vars, buf);
        let at = buf.len();
        self.head.render(&vars, buf);
        at
    }

    /// The `--send` frames of connection `i`, appended to `out`.
    pub fn greeting(&self, i: u64, text: &mut Vec<u8>, out: &mut Vec<u8>) -> u64 {
        for t in self.send.iter() {
            self.frame(t, i, text, out);
        }
        self.send.len() as u64
    }

    /// The `--heartbeat` frame of connection `i`, appended to `out`.
    pub fn heartbeat(&self, i: u64, text: &mut Vec<u8>, out: &mut Vec<u8>) {
        if let Some((_, t)) = &self.heartbeat {
            self.frame(t, i, text, out);
        }
    }

    /// A ping whose payload is the time it was sent, so the pong times itself.
    pub fn ping(now_us: i64, out: &mut Vec<u8>) {
        frame::encode_frame(OP_PING, &now_us.to_be_bytes(), Some(rand::random()), out);
    }

    /// The time a pong's ping was sent, if it is one of ours.
    pub fn pong_sent(data: &[u8]) -> Option<i64> {
        Some(i64::from_be_bytes(data.try_into().ok()?))
    }

    /// Answers `data` if a `--reply` matches it exactly; returns whether one did.
    pub fn reply(&self, data: &[u8], i: u64, text: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
        let Some((_, t)) = self.replies.iter().find(|(m, _)| **m == *data) else {
            return false;
        };
        self.frame(t, i, text, out);
        true
    }

    /// Whether connections write anything after the upgrade.
    pub fn talks(&self) -> bool {
        !self.send.is_empty()
            || self.heartbeat.is_some()
            || self.ping.is_some()
            || !self.replies.is_empty()
    }

    pub fn has_replies(&self) -> bool {
        !self.replies.is_empty()
    }

    /// Whether any text carries `{rtt}`: only then is a message searched for c1m's mark.
    pub fn times_round_trips(&self) -> bool {
        self.templates().any(|t| t.uses(Var::Rtt))
    }

    fn frame(&self, t: &Template, i: u64, text: &mut Vec<u8>, out: &mut Vec<u8>) {
        text.clear();
        t.render(&self.vars(i), text);
        frame::encode_frame(OP_TEXT, text, Some(rand::random()), out);
    }
}

fn read_tokens(file: &std::path::Path) -> Result<Box<[Box<str>]>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read --tokens {}", file.display()))?;
    let tokens: Box<[Box<str>]> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(Into::into)
        .collect();
    if let Some(n) = tokens
        .iter()
        .position(|t| t.bytes().any(|b| b.is_ascii_control()))
    {
        bail!(
            "--tokens {}: line {} holds a control character (a token may go into a header)",
            file.display(),
            n + 1
        );
    }
    if tokens.is_empty() {
        bail!("--tokens {} has no token (one per line)", file.display());
    }
    Ok(tokens)
}

/// A timer spread over its interval: each call hands out the slab keys whose turn came since
/// the last, sweeping the whole table once per interval.
pub struct Sweep {
    every: Duration,
    cursor: usize,
    last: Instant,
    owed: f64,
}

impl Sweep {
    pub fn new(every: Duration, now: Instant) -> Sweep {
        Sweep {
            every,
            cursor: 0,
            last: now,
            owed: 0.0,
        }
    }

    /// The keys due now out of a table of `slots`, as (first, count), wrapping at `slots`.
    pub fn due(&mut self, now: Instant, slots: usize) -> (usize, usize) {
        let dt = now.saturating_duration_since(self.last);
        self.last = now;
        self.owed += slots as f64 * dt.as_secs_f64() / self.every.as_secs_f64();
        let n = (self.owed as usize).min(slots);
        self.owed = (self.owed - n as f64).min(slots as f64);
        let first = if slots == 0 { 0 } else { self.cursor % slots };
        self.cursor = first + n;
        (first, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_visits_every_key_once_per_interval() {
        let t0 = Instant::now();
        let mut s = Sweep::new(Duration::from_secs(1), t0);
        let mut seen = vec![0u32; 1000];
        for step in 1..=20 {
            let (first, n) = s.due(t0 + Duration::from_millis(50 * step), 1000);
            for k in 0..n {
                seen[(first + k) % 1000] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "{:?}", &seen[..20]);
    }

    #[test]
    fn replies_match_whole_messages_and_tokens_are_required() {
        let spec = TalkSpec {
            reply: vec![("2".into(), "3".into())],
            ..Default::default()
        };
        let script = Script::new(&spec, "/", "").unwrap();
        let (mut text, mut out) = (Vec::new(), Vec::new());
        assert!(!script.reply(b"22", 0, &mut text, &mut out));
        assert!(out.is_empty());
        assert!(script.reply(b"2", 0, &mut text, &mut out));
        assert_eq!(text, b"3");
        let spec = TalkSpec {
            send: vec!["{token}".into()],
            ..Default::default()
        };
        let e = Script::new(&spec, "/", "").err().unwrap();
        assert!(e.to_string().contains("--tokens"), "{e}");
    }
}
