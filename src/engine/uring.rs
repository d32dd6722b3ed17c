//! `--io-uring`. Server: a broadcast's writes reach the kernel in batches through one io_uring
//! per shard, one `io_uring_enter` per [`BATCH`] connections instead of one `write` each
//! ([`SendRing`]). Client: every open connection has one multishot receive armed in its shard's
//! ring, which reads into buffers the shard lends the kernel ([`RecvRing`]): no connection owns
//! a buffer, and no `epoll_wait` + `read` pair is paid per message.
//!
//! Every send carries `MSG_DONTWAIT`, so a full socket completes at once with EAGAIN (the
//! broadcast's drop policy) instead of arming a poll, and every send of a batch has completed
//! when [`SendRing::complete`] returns: nothing is in flight between two batches, so the
//! caller's buffers and descriptors need to outlive one call only.

use io_uring::types::{BufRingEntry, CancelBuilder};
use io_uring::{IoUring, cqueue, opcode, types};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};

/// Sends per submission. The ring holds this many entries; its memory (about 100 bytes an
/// entry for the submission and completion queues) is the shard's, not its connections'.
pub(crate) const BATCH: usize = 512;

pub(crate) struct SendRing {
    ring: IoUring,
    /// The keys of the batch queued, by position (a send's user data is its position).
    keys: Vec<usize>,
    /// Which positions have completed.
    answered: Vec<bool>,
}

impl SendRing {
    pub fn new() -> io::Result<SendRing> {
        // Not SINGLE_ISSUER: the ring is made where the shard is, then moves to its thread.
        let ring = IoUring::builder().build(BATCH as u32)?;
        Ok(SendRing {
            ring,
            keys: Vec::with_capacity(BATCH),
            answered: Vec::with_capacity(BATCH),
        })
    }

    pub fn is_full(&self) -> bool {
        self.keys.len() == BATCH
    }

    /// Queues a send of `buf` to `fd`, to be answered under `key`.
    ///
    /// # Safety
    /// `buf` and `fd` must stay valid until the next [`SendRing::complete`] returns.
    pub unsafe fn push(&mut self, fd: RawFd, buf: &[u8], key: usize) {
        assert!(!self.is_full(), "complete() the batch first");
        let sqe = opcode::Send::new(types::Fd(fd), buf.as_ptr(), buf.len() as u32)
            .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            .build()
            .user_data(self.keys.len() as u64);
        // SAFETY: the caller keeps buf and fd alive until complete(); the queue has room.
        unsafe {
            self.ring
                .submission()
                .push(&sqe)
                .expect("a batch never exceeds the ring");
        }
        self.keys.push(key);
    }

    /// Submits what is queued, waits for all of it and hands each send's key and result to
    /// `done`, once each. If the ring itself fails, the sends it has not answered are handed
    /// over with its error (whether they went out is unknown) and the error is returned.
    pub fn complete(&mut self, mut done: impl FnMut(usize, io::Result<usize>)) -> io::Result<()> {
        let queued = self.keys.len();
        self.answered.clear();
        self.answered.resize(queued, false);
        let mut seen = 0;
        let mut failure = None;
        while seen < queued {
            match self.ring.submit_and_wait(queued - seen) {
                Err(e) if e.raw_os_error() != Some(libc::EINTR) => {
                    failure = Some(e);
                    break;
                }
                _ => {}
            }
            for cqe in self.ring.completion() {
                let pos = cqe.user_data() as usize;
                let res = cqe.result();
                let res = match res >= 0 {
                    true => Ok(res as usize),
                    false => Err(io::Error::from_raw_os_error(-res)),
                };
                self.answered[pos] = true;
                seen += 1;
                done(self.keys[pos], res);
            }
        }
        if let Some(e) = &failure {
            for (pos, _) in self.answered.iter().enumerate().filter(|(_, d)| !**d) {
                done(self.keys[pos], Err(io::Error::new(e.kind(), e.to_string())));
            }
        }
        self.keys.clear();
        failure.map_or(Ok(()), Err)
    }
}

/// Client: the buffers a shard lends its ring, their size and number. Messages are read into
/// them in pieces of this size at most (the decoder joins pieces as it joins reads); a burst
/// that takes every buffer before the shard returns them stops the receives it starves, which
/// are armed again (nothing is lost: the bytes wait in the socket). 1 MiB a shard.
pub(crate) const RECV_BUF: usize = 512;
pub(crate) const RECV_BUFS: u16 = 2048;

/// The buffer group the receives draw from (a ring has only this one).
const GROUP: u16 = 0;
/// A receive's user data: its connection's key in the low half, the key's generation in the
/// high half, so a completion still queued for a closed connection is not taken for the new
/// connection that reuses its key.
const KEY_BITS: u32 = 32;
/// In `gens`: the key has a receive armed.
const ARMED: u32 = 1 << 31;

/// What a completion brought a connection.
pub(crate) enum Got {
    /// This many bytes, copied into the caller's buffer.
    Data(usize),
    Eof,
    Failed(io::Error),
    /// The shard's buffers ran out: the receive stopped and must be armed again.
    Starved,
}

/// One completion, as reaped: (user data, result, flags).
type Cqe = (u64, i32, u32);

pub(crate) struct RecvRing {
    ring: IoUring,
    /// The ring of buffer descriptors the kernel takes from (page-aligned, mmap'd).
    entries: *mut BufRingEntry,
    tail: u16,
    /// The buffers themselves, `RECV_BUFS` × `RECV_BUF`.
    bufs: Box<[u8]>,
    /// Per connection key: its generation, and [`ARMED`].
    gens: Vec<u32>,
    /// Completions reaped and not yet handed out.
    reaped: std::collections::VecDeque<Cqe>,
    /// The eventfd the ring signals when receives complete, for the shard's poll.
    eventfd: RawFd,
    /// The last call with the work-pending flag up completed nothing (see `reap`).
    stalled: bool,
}

// SAFETY: the buffer ring's memory is owned by the RecvRing and used from one thread at a time.
unsafe impl Send for RecvRing {}

impl RecvRing {
    /// Made on the thread that uses it: the ring is single-issuer, and the kernel completes
    /// its receives only when that thread asks (`DEFER_TASKRUN`), so a burst that arrives
    /// while the shard sleeps (its batch window) wakes nobody and is taken in one go, as
    /// epoll's ready list is; the eventfd says the first arrival to a shard in `epoll_wait`.
    /// Linux 6.1 or later.
    pub fn new() -> io::Result<RecvRing> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(2 * u32::from(RECV_BUFS))
            .build(1024)?;
        // SAFETY: an eventfd with no pointers involved.
        let eventfd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if eventfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let size = usize::from(RECV_BUFS) * size_of::<BufRingEntry>();
        // SAFETY: a fresh anonymous mapping; checked below.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        if mem == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: our own descriptor, not yet handed to anything.
            unsafe { libc::close(eventfd) };
            return Err(e);
        }
        // From here a failure drops `me`, which gives the mapping and the eventfd back.
        let mut me = RecvRing {
            ring,
            entries: mem.cast(),
            tail: 0,
            bufs: vec![0u8; RECV_BUFS as usize * RECV_BUF].into_boxed_slice(),
            gens: Vec::new(),
            reaped: std::collections::VecDeque::with_capacity(1024),
            eventfd,
            stalled: false,
        };
        me.ring.submitter().register_eventfd(eventfd)?;
        // SAFETY: `entries` is page-aligned, RECV_BUFS long and lives as long as the ring.
        unsafe {
            me.ring
                .submitter()
                .register_buf_ring_with_flags(mem as u64, RECV_BUFS, GROUP, 0)?
        };
        for bid in 0..RECV_BUFS {
            me.lend(bid);
        }
        Ok(me)
    }

    /// The descriptor to poll for completions (readable when some are due).
    pub fn eventfd(&self) -> RawFd {
        self.eventfd
    }

    /// Gives buffer `bid` (back) to the kernel.
    fn lend(&mut self, bid: u16) {
        let mask = RECV_BUFS - 1;
        // SAFETY: the index is masked into the ring; the buffer lives in `bufs`.
        unsafe {
            let entry = &mut *self.entries.add(usize::from(self.tail & mask));
            entry.set_addr(self.bufs.as_ptr().add(usize::from(bid) * RECV_BUF) as u64);
            entry.set_len(RECV_BUF as u32);
            entry.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            let tail = BufRingEntry::tail(self.entries) as *mut u16;
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    fn user_data(&self, key: usize) -> u64 {
        u64::from(self.gens[key] & !ARMED) << KEY_BITS | key as u64
    }

    /// Arms a multishot receive on `fd` for `key`; it goes in with the next [`Self::reap`].
    /// Fails when the submission queue stays full after a submit (the kernel refusing them).
    pub fn arm(&mut self, fd: RawFd, key: usize) -> io::Result<()> {
        if self.gens.len() <= key {
            self.gens.resize(key + 1, 0);
        }
        let sqe = opcode::RecvMulti::new(types::Fd(fd), GROUP)
            .build()
            .user_data(self.user_data(key));
        for _ in 0..2 {
            // SAFETY: the descriptor outlives the receive: `disarm` cancels it before a close.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                self.gens[key] |= ARMED;
                return Ok(());
            }
            self.ring.submit()?;
        }
        Err(io::Error::other(
            "io_uring: the submission queue stays full",
        ))
    }

    pub fn is_armed(&self, key: usize) -> bool {
        self.gens.get(key).is_some_and(|g| g & ARMED != 0)
    }

    /// Before `key`'s descriptor closes: stops its receive (waiting until the kernel has), and
    /// makes whatever it completed that was not yet taken stale.
    pub fn disarm(&mut self, key: usize) {
        if self.is_armed(key) {
            // A receive queued and not yet submitted cannot be cancelled: submit it first.
            if !self.ring.submission().is_empty() {
                let _ = self.ring.submit();
            }
            let ud = self.user_data(key);
            let _ = self
                .ring
                .submitter()
                .register_sync_cancel(None, CancelBuilder::user_data(ud));
        }
        if let Some(g) = self.gens.get_mut(key) {
            *g = (*g & !ARMED).wrapping_add(1) & !ARMED;
        }
    }

    /// Whether completions may be waiting to be taken (the shard must not sleep).
    pub fn due(&mut self) -> bool {
        !self.reaped.is_empty()
            || !self.ring.completion().is_empty()
            || self.ring.submission().cq_overflow()
            || (self.ring.submission().taskrun() && !self.stalled)
    }

    /// Submits the receives armed since the last call, has the kernel complete those due
    /// (it runs about 20 per call, so this asks again while each call brings some, up to half
    /// the buffers' worth), and takes the completions.
    ///
    /// The kernel's "work pending" flag can outlast the work (a wake that found no data
    /// completes nothing): a call that brings nothing ends the asking, and `due` ignores the
    /// flag until a call brings something again, so a stale flag never spins the shard. New
    /// work signals the eventfd.
    pub fn reap(&mut self) {
        let room = usize::from(RECV_BUFS / 2);
        loop {
            let taskrun = self.ring.submission().taskrun();
            // Completions past the queue's end wait in the kernel until an enter fetches them.
            let overflow = self.ring.submission().cq_overflow();
            if taskrun || overflow || !self.ring.submission().is_empty() {
                // With the flag up, the crate's submit asks the kernel to run the work.
                let _ = self.ring.submit();
            }
            let before = self.reaped.len();
            let mut cq = self.ring.completion();
            cq.sync();
            self.reaped
                .extend(cq.map(|c| (c.user_data(), c.result(), c.flags())));
            let brought = self.reaped.len() > before;
            self.stalled = taskrun && !brought;
            if !brought || !self.ring.submission().taskrun() || self.reaped.len() >= room {
                break;
            }
        }
    }

    /// The next completion reaped for a live connection: its key and what it brought (data is
    /// copied into `into`, whose length must be at least [`RECV_BUF`], and the buffer lent
    /// again at once). Completions of closed connections are dropped here.
    pub fn next(&mut self, into: &mut [u8]) -> Option<(usize, Got)> {
        loop {
            let (ud, res, flags) = self.reaped.pop_front()?;
            let key = (ud & u64::from(u32::MAX)) as usize;
            let generation = (ud >> KEY_BITS) as u32;
            let got = match (res, cqueue::buffer_select(flags)) {
                (n, Some(bid)) if n > 0 => {
                    let n = n as usize;
                    let at = usize::from(bid) * RECV_BUF;
                    into[..n].copy_from_slice(&self.bufs[at..at + n]);
                    self.lend(bid);
                    Got::Data(n)
                }
                (0, _) => Got::Eof,
                (n, _) if n == -libc::ENOBUFS => Got::Starved,
                (n, _) if n < 0 => Got::Failed(io::Error::from_raw_os_error(-n)),
                _ => continue,
            };
            let Some(g) = self.gens.get_mut(key) else {
                continue;
            };
            if *g & !ARMED != generation || res == -libc::ECANCELED {
                continue;
            }
            if !cqueue::more(flags) {
                *g &= !ARMED;
            }
            return Some((key, got));
        }
    }
}

/// Dropping the ring ends every receive still armed: the kernel cancels them as it tears the
/// ring down, in one pass. (Cancelling them first, all at once, was tried: at 19,600 receives
/// a shard, 51 worker processes took over two minutes to stop.) What they had not received
/// stays in the sockets, for plain reads.
impl Drop for RecvRing {
    fn drop(&mut self) {
        // No receive can take a buffer, or bytes from a socket into one, once the buffers are
        // unregistered: `bufs` may then be freed before the ring's teardown ends.
        let _ = self.ring.submitter().unregister_buf_ring(GROUP);
        let size = usize::from(RECV_BUFS) * size_of::<BufRingEntry>();
        // SAFETY: the mapping and the eventfd are this ring's, and no longer registered.
        unsafe {
            libc::munmap(self.entries.cast(), size);
            libc::close(self.eventfd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    /// Reaps until `until` says enough, for at most two seconds; what was handed out.
    fn take(ring: &mut RecvRing, until: impl Fn(&[(usize, Got)]) -> bool) -> Vec<(usize, Got)> {
        let mut buf = vec![0u8; RECV_BUF];
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !until(&got) && std::time::Instant::now() < deadline {
            ring.reap();
            while let Some((key, g)) = ring.next(&mut buf) {
                got.push((key, g));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        got
    }

    #[test]
    fn a_receive_hands_out_its_bytes_in_order_and_a_closed_keys_never_reach_its_next_owner() {
        use std::io::Write;
        let mut ring = RecvRing::new().unwrap();
        let (mut a, b) = pair();
        ring.arm(b.as_raw_fd(), 7).unwrap();
        let msg: Vec<u8> = (0..3 * RECV_BUF as u32 + 100).map(|i| i as u8).collect();
        a.write_all(&msg).unwrap();
        let mut bytes = Vec::new();
        let mut buf = vec![0u8; RECV_BUF];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while bytes.len() < msg.len() && std::time::Instant::now() < deadline {
            ring.reap();
            while let Some((key, got)) = ring.next(&mut buf) {
                let Got::Data(n) = got else {
                    panic!("not data")
                };
                assert_eq!(key, 7);
                bytes.extend_from_slice(&buf[..n]);
            }
        }
        assert_eq!(bytes, msg, "in pieces of at most {RECV_BUF}, in order");
        assert!(ring.is_armed(7), "a multishot receive stays armed");

        // Bytes that arrive before the key is closed are not handed out afterwards, and the
        // key's next owner hears only its own connection: its end of stream.
        a.write_all(b"late").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        ring.disarm(7);
        let (c, d) = pair();
        ring.arm(d.as_raw_fd(), 7).unwrap();
        drop(c);
        let got = take(&mut ring, |g| !g.is_empty());
        assert!(
            matches!(got[..], [(7, Got::Eof)]),
            "{} completions",
            got.len()
        );
        assert!(!ring.is_armed(7), "an end of stream ends the receive");
    }

    #[test]
    fn sends_complete_in_one_batch_and_a_full_socket_answers_eagain() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sender = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut receiver, _) = listener.accept().unwrap();
        let mut ring = SendRing::new().unwrap();
        let msg = b"hello";
        for key in 0..3 {
            unsafe { ring.push(sender.as_raw_fd(), msg, key) };
        }
        let mut got = Vec::new();
        ring.complete(|key, res| got.push((key, res.unwrap())))
            .unwrap();
        assert_eq!(got, vec![(0, 5), (1, 5), (2, 5)]);
        let mut buf = [0u8; 15];
        receiver.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hellohellohello");
        // Nobody reads: the socket fills and a send is refused at once, not parked.
        let big = vec![7u8; 1 << 20];
        let mut refused = false;
        for _ in 0..64 {
            unsafe { ring.push(sender.as_raw_fd(), &big, 9) };
            ring.complete(|_, res| {
                refused |= matches!(res, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock)
            })
            .unwrap();
            if refused {
                break;
            }
        }
        assert!(refused, "a full socket made a send wait");
    }
}
