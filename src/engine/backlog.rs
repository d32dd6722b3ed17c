//! The client's writes that must go out whole (`--echo`): what the socket does not take at once
//! waits here, in a table beside the connections, until writable readiness. A push client
//! writes only short texts and closes a connection whose server stops reading them; an echo
//! writes back whatever came, 16 MiB at a time, so it must wait for room. Keeping the waiting
//! bytes in a side table keyed by slab key costs a connection nothing until one of its writes
//! is cut short.

use super::transport::Transport;
use super::{Failure, budget};
use crate::stats::ErrorClass;
use std::collections::HashMap;
use std::io;

/// Bytes waiting for one connection, and the end it is to have once they are out (a close the
/// server asked for is answered after the echoes before it, as the RFC orders frames).
struct Waiting {
    bytes: Vec<u8>,
    then: Option<Option<Failure>>,
}

#[derive(Default)]
pub(crate) struct Backlog {
    waiting: HashMap<usize, Waiting>,
}

/// What a flush left.
pub(crate) enum Flushed {
    /// Written out (or nothing was waiting): reading goes on.
    Clear,
    /// Still waiting for room.
    Waiting,
    /// Written out, and the connection is to end now, with this failure (or none).
    End(Option<Failure>),
}

const NOT_READING: &str = "the server is not reading what c1m echoes: more than twice \
                           --max-message waits for one connection";

impl Backlog {
    /// Whether a connection has bytes waiting, or is waiting to end.
    pub(crate) fn holds(&self, key: usize) -> bool {
        self.waiting.contains_key(&key)
    }

    /// Writes `bytes` behind whatever waits for `key`; returns the bytes written now.
    pub(crate) fn write(
        &mut self,
        key: usize,
        stream: &mut Transport,
        bytes: &[u8],
        max_message: usize,
    ) -> Result<usize, Failure> {
        if let Some(w) = self.waiting.get_mut(&key) {
            if w.bytes.len() + bytes.len() > budget::echo_backlog(max_message) {
                return Err(Failure::msg(ErrorClass::Other, NOT_READING));
            }
            w.bytes.extend_from_slice(bytes);
            return Ok(0);
        }
        let written = match stream.write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(Failure::io(e)),
        };
        if written < bytes.len() {
            let waiting = Waiting {
                bytes: bytes[written..].to_vec(),
                then: None,
            };
            self.waiting.insert(key, waiting);
        }
        Ok(written)
    }

    /// The connection is to end, with `failure`, once what waits for it is out; when nothing
    /// waits, the failure comes back: end it now.
    pub(crate) fn end_after(
        &mut self,
        key: usize,
        failure: Option<Failure>,
    ) -> Result<(), Option<Failure>> {
        match self.waiting.get_mut(&key) {
            Some(w) => {
                w.then = Some(failure);
                Ok(())
            }
            None => Err(failure),
        }
    }

    /// Whether `key` only waits to end (reads nothing more).
    pub(crate) fn ending(&self, key: usize) -> bool {
        self.waiting.get(&key).is_some_and(|w| w.then.is_some())
    }

    /// At writable readiness: writes what waits for `key`; `written` gets the bytes written.
    pub(crate) fn flush(
        &mut self,
        key: usize,
        stream: &mut Transport,
        written: &mut u64,
    ) -> io::Result<Flushed> {
        match stream.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        let Some(w) = self.waiting.get_mut(&key) else {
            return Ok(Flushed::Clear);
        };
        while !w.bytes.is_empty() {
            match stream.write(&w.bytes) {
                Ok(0) => break,
                Ok(n) => {
                    *written += n as u64;
                    w.bytes.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if !w.bytes.is_empty() {
            return Ok(Flushed::Waiting);
        }
        let w = self.waiting.remove(&key).expect("present above");
        Ok(match w.then {
            Some(failure) => Flushed::End(failure),
            None => Flushed::Clear,
        })
    }

    /// A connection that ended: its slab key goes to the next one.
    pub(crate) fn forget(&mut self, key: usize) {
        self.waiting.remove(&key);
    }
}
