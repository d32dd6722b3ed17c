//! A broadcast's beginning: the next sequence number and its payload, stamped with the send
//! time just before the server side writes it. Whatever asks for a broadcast (the timer, `b`,
//! SIGUSR1, a line on stdin, `POST /broadcast`) goes through here, and its end comes back one
//! way: the aggregator's finished rows.

use crate::engine::now_us;
use crate::proto::payload::{self, Format, Message};

/// One broadcast to send: its number, payload and the timestamp inside it.
pub struct Stamped<'a> {
    pub seq: u64,
    pub payload: &'a [u8],
    /// µs since the Unix epoch, as written in the payload.
    pub ts_us: i64,
}

pub struct Broadcaster {
    format: Format,
    pad: usize,
    /// `--message`: the user's text instead of c1m's payload.
    message: Option<Message>,
    seq: u64,
    /// Seed format, or a message without {seq}: the last millisecond used, so that two
    /// broadcasts never share a stamp (a client that sees only a timestamp tells broadcasts
    /// apart by it).
    last_ms: i64,
    buf: Vec<u8>,
}

impl Broadcaster {
    pub fn new(format: Format, pad: usize, message: Option<Message>) -> Broadcaster {
        Broadcaster {
            format,
            pad,
            message,
            seq: 0,
            last_ms: 0,
            buf: Vec::new(),
        }
    }

    /// The last sequence number given out (0 before the first).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The next broadcast, stamped now.
    pub fn stamp(&mut self) -> Stamped<'_> {
        self.seq += 1;
        let mut ts = now_us();
        let by_ts = match &self.message {
            Some(m) => m.unnumbered,
            None => self.format == Format::Seed,
        };
        if by_ts {
            if ts / 1000 <= self.last_ms {
                ts = (self.last_ms + 1) * 1000;
            }
            self.last_ms = ts / 1000;
        }
        self.buf.clear();
        match &self.message {
            Some(m) => m.render(self.seq, ts, &mut self.buf),
            None => payload::encode(self.format, self.seq, ts, self.pad, &mut self.buf),
        }
        Stamped {
            seq: self.seq,
            payload: &self.buf,
            ts_us: ts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_count_up_and_seed_stamps_never_repeat() {
        let mut b = Broadcaster::new(Format::Seed, 0, None);
        let first = b.stamp().ts_us;
        let second = b.stamp();
        assert_eq!(second.seq, 2);
        assert!(second.ts_us / 1000 > first / 1000);
        let parsed = payload::parse(second.payload).unwrap();
        assert_eq!(parsed.ts_us / 1000, second.ts_us / 1000);
        let mut j = Broadcaster::new(Format::Json, 0, None);
        let s = j.stamp();
        assert_eq!(payload::parse(s.payload).unwrap().seq, Some(1));
    }
}
