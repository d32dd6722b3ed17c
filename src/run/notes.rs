//! What a person should read while a run goes on, whichever face shows it (a line on stderr,
//! or the console's footer): the first error of each class with its cause and what to do,
//! what worker processes said, and the server's first refusals. Each note says which side it
//! came from when both sides run here.

use crate::stats::{ErrorClass, Mode, ServerBroadcast};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// "server" or "client" when both sides run in this process; `None` when one does.
    pub side: Option<&'static str>,
    pub text: String,
    /// What to do about it, when c1m knows.
    pub hint: Option<&'static str>,
}

impl Note {
    pub fn new(text: impl Into<String>) -> Note {
        Note {
            side: None,
            text: text.into(),
            hint: None,
        }
    }

    /// The first failure of `class` a side counted: its text and the hint for it.
    pub fn first_error(mode: Mode, class: ErrorClass, text: &str) -> Note {
        Note {
            side: None,
            text: format!("first {} error: {text}", class.name()),
            hint: hint(mode, class, text),
        }
    }

    /// `broadcast seq=3 sent to 19000 connections in 84.2 ms`, and the frames not queued.
    pub fn done(b: &ServerBroadcast) -> String {
        let dropped = match b.dropped {
            0 => String::new(),
            n => format!(" ({n} not queued: peers not reading)"),
        };
        format!(
            "broadcast seq={} sent to {} connections in {:.1} ms{dropped}",
            b.seq,
            b.sent,
            b.duration_us as f64 / 1000.0
        )
    }

    pub fn on(mut self, side: Option<&'static str>) -> Note {
        self.side = side;
        self
    }
}

impl fmt::Display for Note {
    /// One line: `server: first timeout error: …`; the hint is apart (see [`Note::hint`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(side) = self.side {
            write!(f, "{side}: ")?;
        }
        f.write_str(&self.text)
    }
}

fn hint(mode: Mode, class: ErrorClass, text: &str) -> Option<&'static str> {
    Some(match (mode, class) {
        (Mode::Client, ErrorClass::Bind) if text.contains("os error 99") => {
            "that source address is not configured on this machine (`ip -br addr` lists them)"
        }
        (Mode::Client, ErrorClass::AddrNotAvail) => {
            "a source address ran out of ports: add addresses (--ips / --source-ips) or widen \
             `sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"`"
        }
        (_, ErrorClass::FdLimit) => {
            "out of file descriptors: raise `ulimit -n` (and `sysctl fs.nr_open`, `fs.file-max`), \
             or let c1m split the side over worker processes (--workers)"
        }
        (Mode::Client, ErrorClass::Refused) => {
            "nothing accepted the connection: is the server up at that address? A full accept \
             queue also refuses: see `sysctl net.core.somaxconn`"
        }
        (Mode::Client, ErrorClass::Timeout) => {
            "the server did not accept or upgrade in time: it may be slow (lower --rate), or \
             full: at its connection cap (--max-conns) or its descriptor limit (a process holds \
             what its hard `ulimit -n` allows; a c1m server's banner says how many)"
        }
        (Mode::Server, ErrorClass::HandshakeFailed) => {
            "something that is not a WebSocket client reached the port (a probe, a health check, \
             curl): its request was answered 400"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_names_the_servers_caps() {
        let n = Note::first_error(Mode::Client, ErrorClass::Timeout, "x");
        let hint = n.hint.unwrap();
        assert!(
            hint.contains("--max-conns") && hint.contains("descriptor limit"),
            "{hint}"
        );
    }

    #[test]
    fn a_note_names_its_side_when_both_run() {
        let n = Note::first_error(Mode::Server, ErrorClass::HandshakeFailed, "bad request");
        assert_eq!(n.to_string(), "first handshake_failed error: bad request");
        assert_eq!(
            n.on(Some("server")).to_string(),
            "server: first handshake_failed error: bad request"
        );
    }
}
