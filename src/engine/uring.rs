//! `--io-uring`: a broadcast's writes reach the kernel in batches through one io_uring per
//! shard, one `io_uring_enter` per [`BATCH`] connections instead of one `write` each.
//!
//! Every send carries `MSG_DONTWAIT`, so a full socket completes at once with EAGAIN (the
//! broadcast's drop policy) instead of arming a poll, and every send of a batch has completed
//! when [`SendRing::complete`] returns: nothing is in flight between two batches, so the
//! caller's buffers and descriptors need to outlive one call only.

use io_uring::{IoUring, opcode, types};
use std::io;
use std::os::fd::RawFd;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

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
