//! One connection's TLS session over its socket, with rustls' unbuffered API.
//!
//! rustls' buffered connections keep a record buffer, a plaintext queue and an output queue per
//! session whatever their state: about 8 KiB per connection measured at 19,000 (BENCHMARKS.md).
//! Here a session keeps its keys and state only. Ciphertext is read into, and encrypted into,
//! two buffers each shard thread owns; a connection holds bytes of its own only while a record
//! straddles two reads, decrypted bytes wait for a reader, application data waits for the
//! handshake, or ciphertext waits for room in the socket — and frees them when that ends.

use mio::net::TcpStream;
use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{CommonState, HandshakeKind};
use std::cell::RefCell;
use std::io::{self, Read as _, Write as _};

/// Bytes read from a socket at once: a read may end anywhere in a record, so the buffer holds
/// the start of the last one (at most a whole record, 16 KiB and its overhead) and a read.
const READ: usize = 64 * 1024;
const RECORD: usize = 16 * 1024 + 256;

/// The shard thread's buffers: ciphertext read, and ciphertext made (handshake records,
/// encrypted frames) before it goes to the socket.
#[derive(Default)]
struct Scratch {
    cipher: Vec<u8>,
    seal: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

pub(super) enum Session {
    Client(UnbufferedClientConnection),
    Server(UnbufferedServerConnection),
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Session::Client(_) => "Session::Client",
            Session::Server(_) => "Session::Server",
        })
    }
}

impl Session {
    fn common(&self) -> &CommonState {
        match self {
            Session::Client(c) => c,
            Session::Server(s) => s,
        }
    }
}

#[derive(Debug)]
pub struct TlsStream {
    pub(super) sock: TcpStream,
    session: Session,
    /// The first bytes of a record whose rest has not arrived.
    partial: Vec<u8>,
    /// Decrypted bytes a read had no room for.
    plain: Vec<u8>,
    /// Application data written before the handshake allowed it; sent as soon as it does.
    early: Vec<u8>,
    /// Ciphertext the socket had no room for, in order.
    backlog: Vec<u8>,
    /// The peer sent close_notify: reads answer end of stream once `plain` is empty.
    peer_closed: bool,
}

/// Where `drive` puts what it decrypts: the caller's buffer first, then `plain`.
struct Sink<'a> {
    out: &'a mut [u8],
    filled: usize,
}

impl TlsStream {
    pub(super) fn new(sock: TcpStream, session: Session) -> TlsStream {
        TlsStream {
            sock,
            session,
            partial: Vec::new(),
            plain: Vec::new(),
            early: Vec::new(),
            backlog: Vec::new(),
            peer_closed: false,
        }
    }

    /// Decrypted bytes, reading and decrypting records as needed. `WouldBlock` once the socket
    /// has nothing more; `Ok(0)` once the peer has closed.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.plain.is_empty() {
            let n = buf.len().min(self.plain.len());
            buf[..n].copy_from_slice(&self.plain[..n]);
            self.plain.drain(..n);
            release(&mut self.plain);
            return Ok(n);
        }
        // What the handshake owes the peer goes first: the peer may be waiting for it. A full
        // socket does not stop the reading.
        match self.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        SCRATCH.with_borrow_mut(|s| self.read_records(buf, s))
    }

    fn read_records(&mut self, buf: &mut [u8], s: &mut Scratch) -> io::Result<usize> {
        let Scratch { cipher, seal } = s;
        cipher.resize(READ + RECORD, 0);
        loop {
            if self.peer_closed {
                return Ok(0);
            }
            let held = self.partial.len();
            cipher[..held].copy_from_slice(&self.partial);
            let n = match self.sock.read(&mut cipher[held..]) {
                Ok(0) => return Ok(0),
                Ok(n) => n,
                Err(e) => return Err(e),
            };
            let mut sink = Sink {
                out: buf,
                filled: 0,
            };
            let used = self.drive(&mut cipher[..held + n], seal, &mut sink)?;
            self.partial.clear();
            self.partial.extend_from_slice(&cipher[used..held + n]);
            release(&mut self.partial);
            if sink.filled > 0 || self.peer_closed {
                return Ok(sink.filled);
            }
        }
    }

    /// Takes `buf` whole: encrypted and sent now, what the socket cannot take kept as the
    /// backlog; or, before the handshake allows data, kept and sent when it does. Before the
    /// socket has connected it takes nothing and returns that error, so the caller may retry
    /// the same bytes on the next readiness.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let handshaking = self.session.common().is_handshaking();
        if handshaking && self.early.is_empty() {
            self.sock.peer_addr()?;
        }
        // The common case, a frame over an established session, is encrypted straight from
        // `buf`; only data the session cannot take yet is copied.
        let now = match handshaking || !self.early.is_empty() {
            true => {
                self.early.extend_from_slice(buf);
                &[][..]
            }
            false => buf,
        };
        let sent = SCRATCH.with_borrow_mut(|s| {
            let mut sink = Sink {
                out: &mut [],
                filled: 0,
            };
            self.drive_with(&mut [], now, &mut s.seal, &mut sink)
        })?;
        if !sent.1 {
            self.early.extend_from_slice(now);
        }
        Ok(buf.len())
    }

    /// Whether bytes wait to go out: the frame in flight, for the server's one-frame-in-flight
    /// policy.
    pub fn backlogged(&self) -> bool {
        !self.backlog.is_empty() || !self.early.is_empty()
    }

    /// Sends the backlog until the socket would block.
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.backlog.is_empty() {
            match self.sock.write(&self.backlog) {
                Ok(n) => {
                    self.backlog.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        release(&mut self.backlog);
        Ok(())
    }

    /// Whether the handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.session.common().handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// Runs the session over `input` until it needs more: handshake records are made and
    /// sent, decrypted data goes to `sink`, data written early goes out once it may. Returns
    /// how many bytes of `input` it used; the rest is the start of a record.
    fn drive(
        &mut self,
        input: &mut [u8],
        seal: &mut Vec<u8>,
        sink: &mut Sink,
    ) -> io::Result<usize> {
        Ok(self.drive_with(input, &[], seal, sink)?.0)
    }

    /// [`Self::drive`], encrypting `now` after any early data once the session allows it.
    /// Returns the input used and whether `now` went out (or was empty).
    fn drive_with(
        &mut self,
        input: &mut [u8],
        now: &[u8],
        seal: &mut Vec<u8>,
        sink: &mut Sink,
    ) -> io::Result<(usize, bool)> {
        let mut at = 0;
        let mut sealed = 0;
        let mut now = now;
        loop {
            let mut io = Io {
                sock: &mut self.sock,
                backlog: &mut self.backlog,
                early: &mut self.early,
                now: &mut now,
                plain: &mut self.plain,
                seal: &mut *seal,
                sealed: &mut sealed,
                sink: &mut *sink,
            };
            let (discard, step) = match &mut self.session {
                Session::Client(c) => step(c.process_tls_records(&mut input[at..]), &mut io),
                Session::Server(s) => step(s.process_tls_records(&mut input[at..]), &mut io),
            };
            at += discard;
            match step {
                Ok(Step::Again) => {}
                Ok(Step::PeerClosed) => self.peer_closed = true,
                Ok(Step::Wait) => return Ok((at, now.is_empty())),
                Err(e) => {
                    self.send_alert(seal);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
    }

    /// After a failure rustls has an alert queued for the peer: best effort, so it learns why.
    fn send_alert(&mut self, seal: &mut Vec<u8>) {
        let mut sealed = 0;
        let mut io = Io {
            sock: &mut self.sock,
            backlog: &mut self.backlog,
            early: &mut Vec::new(),
            now: &mut &[][..],
            plain: &mut self.plain,
            seal,
            sealed: &mut sealed,
            sink: &mut Sink {
                out: &mut [],
                filled: 0,
            },
        };
        let _ = match &mut self.session {
            Session::Client(c) => step(c.process_tls_records(&mut []), &mut io),
            Session::Server(s) => step(s.process_tls_records(&mut []), &mut io),
        };
        let _ = io.transmit();
    }
}

/// What `step` leaves the loop to do.
enum Step {
    Again,
    PeerClosed,
    /// Nothing more without more input.
    Wait,
}

/// The parts of a stream one state needs, borrowed apart from its session.
struct Io<'a, 'b, 'c> {
    sock: &'a mut TcpStream,
    backlog: &'a mut Vec<u8>,
    early: &'a mut Vec<u8>,
    /// The caller's bytes to encrypt after `early`; emptied once sealed.
    now: &'a mut &'c [u8],
    plain: &'a mut Vec<u8>,
    seal: &'a mut Vec<u8>,
    /// Bytes of `seal` made and not yet sent.
    sealed: &'a mut usize,
    sink: &'a mut Sink<'b>,
}

impl Io<'_, '_, '_> {
    /// Sends what was sealed, keeping what the socket cannot take (after any older backlog,
    /// so bytes never overtake each other).
    fn transmit(&mut self) -> io::Result<()> {
        let bytes = &self.seal[..*self.sealed];
        *self.sealed = 0;
        let mut sent = 0;
        if self.backlog.is_empty() {
            loop {
                match self.sock.write(&bytes[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
                if sent == bytes.len() {
                    break;
                }
            }
        }
        self.backlog.extend_from_slice(&bytes[sent..]);
        Ok(())
    }

    /// Room for `want` more bytes after what is sealed.
    fn room(&mut self, want: usize) -> &mut [u8] {
        let need = *self.sealed + want;
        if self.seal.len() < need {
            self.seal.resize(need, 0);
        }
        &mut self.seal[*self.sealed..]
    }

    fn take(&mut self, data: &[u8]) {
        let Sink { out, filled } = &mut *self.sink;
        let n = (out.len() - *filled).min(data.len());
        out[*filled..*filled + n].copy_from_slice(&data[..n]);
        *filled += n;
        self.plain.extend_from_slice(&data[n..]);
    }
}

/// Handles one state of the session; returns the bytes of input it consumed.
fn step<Data>(
    status: UnbufferedStatus<'_, '_, Data>,
    io: &mut Io,
) -> (usize, Result<Step, rustls::Error>) {
    let UnbufferedStatus { discard, state } = status;
    let step = match state {
        Err(e) => Err(e),
        Ok(state) => on_state(state, io),
    };
    (discard, step)
}

fn on_state<Data>(
    state: ConnectionState<'_, '_, Data>,
    io: &mut Io,
) -> Result<Step, rustls::Error> {
    match state {
        ConnectionState::ReadTraffic(mut r) => {
            while let Some(record) = r.next_record() {
                io.take(record?.payload);
            }
            Ok(Step::Again)
        }
        ConnectionState::EncodeTlsData(mut e) => {
            let mut want = RECORD;
            loop {
                match e.encode(io.room(want)) {
                    Ok(n) => break *io.sealed += n,
                    Err(EncodeError::InsufficientSize(s)) => want = s.required_size,
                    Err(err) => return Err(rustls::Error::General(err.to_string())),
                }
            }
            Ok(Step::Again)
        }
        ConnectionState::TransmitTlsData(mut t) => {
            if let Some(mut w) = t.may_encrypt_app_data() {
                seal_pending(&mut w, io)?;
            }
            io.transmit()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            t.done();
            Ok(Step::Again)
        }
        ConnectionState::WriteTraffic(mut w) => {
            if !io.early.is_empty() || !io.now.is_empty() {
                seal_pending(&mut w, io)?;
                io.transmit()
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
            }
            Ok(Step::Wait)
        }
        ConnectionState::PeerClosed => Ok(Step::PeerClosed),
        // No early data is accepted, and a closed or blocked session waits for input.
        _ => Ok(Step::Wait),
    }
}

/// Encrypts what waits to go out, the early data then the caller's, into the seal.
fn seal_pending<Data>(
    w: &mut rustls::unbuffered::WriteTraffic<'_, Data>,
    io: &mut Io,
) -> Result<(), rustls::Error> {
    let early = std::mem::take(io.early);
    let res = seal(w, &early, io);
    *io.early = early;
    res?;
    io.early.clear();
    release(io.early);
    let now = std::mem::take(io.now);
    seal(w, now, io)
}

fn seal<Data>(
    w: &mut rustls::unbuffered::WriteTraffic<'_, Data>,
    data: &[u8],
    io: &mut Io,
) -> Result<(), rustls::Error> {
    if data.is_empty() {
        return Ok(());
    }
    // Each 16 KiB record adds at most 22 bytes (TLS 1.3) or 29 (TLS 1.2).
    let mut want = data.len() + (data.len() / (16 * 1024) + 1) * 64;
    loop {
        match w.encrypt(data, io.room(want)) {
            Ok(n) => {
                *io.sealed += n;
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(s)) => want = s.required_size,
            Err(err) => return Err(rustls::Error::General(err.to_string())),
        }
    }
}

/// Gives an emptied buffer's memory back: a connection keeps none while it has nothing held.
fn release(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = Vec::new();
    }
}
