//! One broadcast, written by a shard to every open connection: by one `write` each, or with
//! `--io-uring` in batches of sends through the shard's ring. Both count each connection the
//! same way, once per broadcast: sent, dropped (the previous frame still in flight or the
//! socket full) or, on a write error, closed.

use super::{Shard, State};
use crate::engine::transport::Transport;
use crate::engine::uring::SendRing;
use crate::engine::{Failure, now_us};
use crate::stats::{BroadcastPart, ShardDelta};
use mio::{Interest, Token};
use std::io;
use std::os::fd::AsRawFd;

/// How many connections a shard writes between two progress reports of a broadcast.
const PROGRESS_EVERY: u64 = 16_384;

/// What became of one connection's copy of a broadcast frame.
pub(super) enum Offer {
    /// Written, or begun with the rest kept to go out as the socket drains: bytes written.
    Queued(usize),
    /// The previous frame is still in flight or the socket is full: this one is skipped.
    Dropped,
    Failed(io::Error),
}

/// One broadcast's tally in a shard, until it is reported.
struct Fanout {
    part: BroadcastPart,
    stamp_us: i64,
    failed: Vec<(usize, io::Error)>,
    slow: Vec<usize>,
    written: u64,
    visited: u64,
    /// Frames written and dropped, as far as parts already told; `None` before the first.
    told: Option<(u64, u64)>,
}

impl Fanout {
    /// The part so far, as a delta on what progress parts already told (see
    /// [`BroadcastPart`]): counts since then, the whole `open` only in the first.
    fn delta(&mut self) -> BroadcastPart {
        let d = self.part.since(self.told);
        self.told = Some((self.part.count, self.part.dropped));
        d
    }
}

impl Shard {
    /// Writes one broadcast, `frames` = (plain, compressed), to every open connection.
    pub(super) fn broadcast(&mut self, seq: u64, frames: (&[u8], &[u8]), stamp_us: i64) {
        let mut f = Fanout {
            part: BroadcastPart {
                seq,
                count: 0,
                dropped: 0,
                open: self.active,
                first_us: now_us(),
                last_us: 0,
                sent_ts_us: None,
                done: false,
                by_ts: false,
                bytes: 0,
            },
            stamp_us,
            failed: Vec::new(),
            slow: Vec::new(),
            written: 0,
            visited: 0,
            told: None,
        };
        match self.ring.take() {
            Some(mut ring) => {
                self.write_batched(&mut ring, frames, &mut f);
                self.ring = Some(ring);
            }
            None => self.write_each(0, frames, &mut f),
        }
        self.finish(f);
    }

    /// The connection's frame, if it is open and takes one: (plain, compressed) by what it
    /// agreed. Counts it visited, and reports progress now and then.
    fn frame_for<'a>(
        &mut self,
        key: usize,
        frames: (&'a [u8], &'a [u8]),
        f: &mut Fanout,
    ) -> Option<&'a [u8]> {
        if !matches!(self.conns.get(key)?.state, State::Open { .. }) {
            return None;
        }
        let frame = self.frame_of(key, frames);
        f.visited += 1;
        if f.visited.is_multiple_of(PROGRESS_EVERY) {
            // A broadcast to a million takes seconds: let the console's gauge move.
            f.part.last_us = now_us();
            let _ = self.io.deltas.send(ShardDelta {
                broadcasts: vec![f.delta()],
                active: self.active,
                ..ShardDelta::empty(self.id)
            });
        }
        Some(frame)
    }

    /// Plain connections with nothing in flight go through the ring, [`BATCH`] at a time; the
    /// others (TLS, or a frame still going out) take the one-by-one path.
    ///
    /// [`BATCH`]: crate::engine::uring::BATCH
    fn write_batched(&mut self, ring: &mut SendRing, frames: (&[u8], &[u8]), f: &mut Fanout) {
        let slots = self.conns.capacity();
        let mut key = 0;
        while key < slots {
            while key < slots && !ring.is_full() {
                if let Some(frame) = self.frame_for(key, frames, f) {
                    match self.ring_ready(key) {
                        // SAFETY: frames outlive this call, and no connection closes before
                        // complete() below returns (failures are closed after the broadcast).
                        Some(fd) => unsafe { ring.push(fd, frame, key) },
                        None => {
                            let offer = self.offer(key, frame);
                            self.account(key, offer, f);
                        }
                    }
                }
                key += 1;
            }
            let done = ring.complete(|k, res| {
                let frame = self.frame_of(k, frames);
                let offer = self.took(k, frame, res);
                self.account(k, offer, f);
            });
            if let Err(e) = done {
                // The ring itself failed (its unanswered sends were counted failed): the rest of
                // this broadcast, and those after it, go out one write at a time.
                eprintln!(
                    "c1m: server shard {}: io_uring failed ({e}); writing one by one",
                    self.id
                );
                self.ring = None;
                return self.write_each(key, frames, f);
            }
        }
    }

    /// One `write` per connection, from slab key `from` on.
    fn write_each(&mut self, from: usize, frames: (&[u8], &[u8]), f: &mut Fanout) {
        for key in from..self.conns.capacity() {
            if let Some(frame) = self.frame_for(key, frames, f) {
                let offer = self.offer(key, frame);
                self.account(key, offer, f);
            }
        }
    }

    /// The descriptor of a plain connection with no frame in flight.
    fn ring_ready(&self, key: usize) -> Option<i32> {
        let conn = self.conns.get(key)?;
        match (&conn.stream, &conn.state) {
            (Transport::Plain(s), State::Open { pending: None, .. }) => Some(s.as_raw_fd()),
            _ => None,
        }
    }

    /// The frame a connection takes: compressed if it agreed to permessage-deflate.
    fn frame_of<'a>(&self, key: usize, frames: (&'a [u8], &'a [u8])) -> &'a [u8] {
        match self.conns.get(key).map(|c| &c.state) {
            Some(State::Open { deflate: true, .. }) => frames.1,
            _ => frames.0,
        }
    }

    /// Policy: one frame in flight per connection; a reader that has not taken the previous
    /// one, or whose socket is full, loses this one, counted here and as a gap by the client.
    fn offer(&mut self, key: usize, frame: &[u8]) -> Offer {
        let conn = &mut self.conns[key];
        let State::Open { pending, .. } = &conn.state else {
            return Offer::Dropped;
        };
        if pending.is_some() || conn.stream.backlogged() {
            return Offer::Dropped;
        }
        let res = conn.stream.write(frame);
        self.took(key, frame, res)
    }

    /// What a write of `frame` that returned `res` means for the connection.
    fn took(&mut self, key: usize, frame: &[u8], res: io::Result<usize>) -> Offer {
        let registry = self.io.poll.registry();
        let conn = &mut self.conns[key];
        let State::Open { pending, .. } = &mut conn.state else {
            return Offer::Dropped;
        };
        match res {
            Ok(n) if n == frame.len() => {
                if conn.stream.backlogged() {
                    // TLS took the frame whole; its ciphertext goes out on writable readiness.
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    let _ = registry.reregister(&mut conn.stream, Token(key), interest);
                }
                Offer::Queued(n)
            }
            Ok(n) => {
                // The rest is counted by flush_pending as it goes out.
                *pending = Some(frame[n..].into());
                let interest = Interest::READABLE | Interest::WRITABLE;
                let _ = registry.reregister(&mut conn.stream, Token(key), interest);
                Offer::Queued(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Offer::Dropped,
            Err(e) => Offer::Failed(e),
        }
    }

    fn account(&mut self, key: usize, offer: Offer, f: &mut Fanout) {
        let State::Open { missed, .. } = &mut self.conns[key].state else {
            return;
        };
        match offer {
            Offer::Queued(n) => {
                f.written += n as u64;
                f.part.count += 1;
                *missed = 0;
                // Send lag: from the payload's stamp to this connection's write.
                let _ = self.lag.record((now_us() - f.stamp_us).max(0) as u64);
            }
            Offer::Dropped => {
                f.part.dropped += 1;
                *missed = missed.saturating_add(1);
                if self.slow_close_after.is_some_and(|after| *missed >= after) {
                    f.slow.push(key);
                }
            }
            Offer::Failed(e) => f.failed.push((key, e)),
        }
    }

    fn finish(&mut self, mut f: Fanout) {
        for (key, e) in std::mem::take(&mut f.failed) {
            self.close(key, Some(Failure::io(e)));
        }
        for key in std::mem::take(&mut f.slow) {
            self.close_slow(key);
        }
        let whole = &mut f.part;
        whole.last_us = now_us();
        // Progress parts carry no bytes: the final part carries them all.
        whole.bytes = f.written;
        whole.done = true;
        self.last_seq = whole.seq;
        self.counters.messages += whole.count;
        self.counters.bytes_out += f.written;
        self.counters.send_dropped += whole.dropped;
        let last = f.delta();
        self.parts.push(last);
        // At once, not at the next flush: whoever waits for the broadcast learns it is done.
        self.flush();
    }
}
