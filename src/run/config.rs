//! What a side of the run actually used, echoed at the top of its report: named fields, numbers
//! as numbers in JSON (durations in seconds, `null` for off or none), and the same values as a
//! person reads them in the human report.

use crate::fmt::{duration, int, span_of};
use serde::Serialize;
use std::time::Duration;

/// How a side runs over processes, and when the run ends: common to both sides.
#[derive(Clone, Debug, Serialize)]
pub struct Common {
    /// Shard threads per process.
    pub shards: usize,
    /// Worker processes (0: everything in this process).
    pub workers: usize,
    /// Most connections one process holds (the worker size).
    pub worker_conns: u64,
    /// `--duration`, seconds; `null`: until stopped.
    pub duration_s: Option<f64>,
    pub max_errors: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerEcho {
    /// The address it listened on (the port chosen, for port 0).
    pub listen: String,
    /// Seconds between timed broadcasts; `null`: on demand only.
    pub every_s: Option<f64>,
    /// json, seed, or message (--message).
    pub payload: &'static str,
    pub pad: usize,
    /// `--message`, as given (templates unrendered; redacted if it names a credential).
    pub message: Option<String>,
    pub handshake_timeout_s: f64,
    /// `null`: no cap.
    pub max_conns: Option<u64>,
    pub slow_policy: &'static str,
    /// With `slow_policy` close: broadcasts missed in a row before the connection is closed.
    pub slow_close_after: Option<u32>,
    /// The control endpoint's address; `null`: off.
    pub control: Option<String>,
    /// Whether the control endpoint wants a bearer token (never the token itself).
    pub control_token: bool,
    /// It adds worker processes as it nears what one process may hold (no --workers given).
    pub grows: bool,
    /// wss://: the certificate (PEM) it presents; `null`: plain ws://.
    pub tls_cert: Option<String>,
    /// `--compression`: `off`, or `shared` (offers taken, each broadcast compressed once).
    pub compression: &'static str,
    /// `--echo`: clients' messages written back.
    pub echo: bool,
    /// `--max-message` in bytes; `null`: the default (4 KiB, 16 MiB with --echo).
    pub max_message: Option<u64>,
    /// `--io-uring`: broadcasts written through io_uring.
    pub io_uring: bool,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Clone, Debug, Serialize)]
pub struct SegmentEcho {
    pub index: u64,
    pub count: u64,
    pub of: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClientEcho {
    pub url: String,
    /// Connections asked for at the start.
    pub conns: u64,
    /// The source addresses, in the order used.
    pub sources: Vec<String>,
    /// New connections per second; 0: as fast as `max_inflight` allows.
    pub rate: f64,
    pub max_inflight: usize,
    /// `--max-message` in bytes; `null`: the default, 1 MiB (16 MiB with --echo).
    pub max_message: Option<u64>,
    /// `--echo`: pushed messages written back.
    pub echo: bool,
    /// `--io-uring`: open connections received through io_uring.
    #[serde(default)]
    pub io_uring: bool,
    pub connect_timeout_s: f64,
    pub batch_window_s: f64,
    /// With --churn: the share of open connections replaced per second; `null`: none.
    pub churn_per_s: Option<f64>,
    /// With --reconnect: the longest backoff, seconds; `null`: reconnect off.
    pub reconnect_max_backoff_s: Option<f64>,
    /// Extra upgrade headers (-H, --origin), with secret-looking values redacted.
    pub headers: Vec<String>,
    /// Subprotocols offered, in order of preference.
    pub subprotocols: Vec<String>,
    /// wss://: PEM files trusted besides the system's roots.
    pub ca: Vec<String>,
    /// wss:// with --insecure: the server's certificate was not verified.
    pub insecure: bool,
    /// wss://: whether sessions are resumed (false with --tls-no-resume); `null` for ws://.
    pub tls_resume: Option<bool>,
    /// `--compression`: the permessage-deflate offer made (`connections.compressed` says how
    /// many servers took it).
    pub compression: crate::proto::deflate::Offer,
    /// `--segment I/N`: this copy ran slice `index` of `count` of a target of `of`
    /// connections; `null`: the whole target.
    pub segment: Option<SegmentEcho>,
    #[serde(flatten)]
    pub talk: TalkEcho,
    #[serde(flatten)]
    pub common: Common,
}

/// The client's talk and message-reading flags, texts as given (templates unrendered).
#[derive(Clone, Debug, Default, Serialize)]
pub struct TalkEcho {
    pub send: Vec<String>,
    /// `INTERVAL=TEXT`.
    pub heartbeat: Option<String>,
    pub ping_s: Option<f64>,
    /// `MATCH=TEXT`.
    pub reply: Vec<String>,
    pub tokens: Option<String>,
    pub ts_path: Option<String>,
    pub seq_path: Option<String>,
    pub ts_regex: Option<String>,
    pub ts_unit: crate::proto::payload::Unit,
}

impl TalkEcho {
    /// Only what was set: most runs set none of it.
    fn lines(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut some = |key, v: Option<String>| {
            if let Some(v) = v {
                out.push((key, v));
            }
        };
        let list = |l: &[String]| (!l.is_empty()).then(|| l.join(" · "));
        some("send", list(&self.send));
        some("heartbeat", self.heartbeat.clone());
        some("ping", self.ping_s.map(secs));
        some("reply", list(&self.reply));
        some("tokens", self.tokens.clone());
        some("ts_path", self.ts_path.clone());
        some("seq_path", self.seq_path.clone());
        some("ts_regex", self.ts_regex.clone());
        if self.ts_unit != crate::proto::payload::Unit::Auto {
            some(
                "ts_unit",
                serde_json::to_value(self.ts_unit)
                    .ok()
                    .map(|v| v.to_string()),
            );
        }
        out
    }
}

/// A text c1m sends, as a report may show it: one that names a credential and carries it
/// literally (not through {token}) is kept out of files people paste.
pub fn redacted_text(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let literal = ["token", "secret", "password", "auth"]
        .iter()
        .any(|w| lower.contains(w))
        && !text.contains("{token}");
    match literal {
        true => format!("(redacted: {} bytes)", text.len()),
        false => text.to_string(),
    }
}

/// One side's echo.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Echo {
    Server(Box<ServerEcho>),
    Client(Box<ClientEcho>),
}

pub fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Echo {
    /// (key, value) as the human report prints them, in order.
    pub fn lines(&self) -> Vec<(&'static str, String)> {
        let mut out = match self {
            Echo::Server(s) => s.lines(),
            Echo::Client(c) => c.lines(),
        };
        let common = match self {
            Echo::Server(s) => &s.common,
            Echo::Client(c) => &c.common,
        };
        out.extend(common.lines());
        out
    }
}

fn secs(s: f64) -> String {
    duration(Duration::from_secs_f64(s.max(0.0)))
}

impl Common {
    fn lines(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("shards", self.shards.to_string())];
        if self.workers > 0 {
            out.push(("workers", self.workers.to_string()));
            out.push(("worker_conns", int(self.worker_conns)));
        }
        let duration = self.duration_s.map_or("until stopped".into(), secs);
        out.push(("duration", duration));
        out.push(("max_errors", self.max_errors.to_string()));
        out
    }
}

impl ServerEcho {
    fn lines(&self) -> Vec<(&'static str, String)> {
        let slow = match self.slow_close_after {
            Some(n) => format!("close after {n} missed"),
            None => self.slow_policy.to_string(),
        };
        let control = match (&self.control, self.control_token) {
            (None, _) => "off".to_string(),
            (Some(a), false) => a.clone(),
            (Some(a), true) => format!("{a} (bearer token required)"),
        };
        let payload = match &self.message {
            Some(m) => format!("message {m}"),
            None => self.payload.to_string(),
        };
        vec![
            ("listen", self.listen.clone()),
            ("every", self.every_s.map_or("off".into(), secs)),
            ("payload", payload),
            ("pad", self.pad.to_string()),
            ("handshake_timeout", secs(self.handshake_timeout_s)),
            ("max_conns", self.max_conns.map_or("none".into(), int)),
            ("slow_policy", slow),
            ("control", control),
            ("tls", self.tls_cert.clone().unwrap_or_else(|| "off".into())),
            ("compression", self.compression.to_string()),
            ("echo", if self.echo { "on" } else { "off" }.into()),
            (
                "max_message",
                self.max_message.map_or("default".into(), crate::fmt::size),
            ),
            (
                "io",
                if self.io_uring { "io_uring" } else { "epoll" }.into(),
            ),
        ]
    }
}

impl ClientEcho {
    fn lines(&self) -> Vec<(&'static str, String)> {
        let rate = if self.rate > 0.0 {
            format!("{}/s", self.rate)
        } else {
            "unlimited".into()
        };
        let reconnect = self
            .reconnect_max_backoff_s
            .map_or("off".into(), |s| format!("backoff up to {}", secs(s)));
        vec![
            ("url", self.url.clone()),
            ("conns", int(self.conns)),
            ("sources", span_of(&self.sources)),
            ("rate", rate),
            ("max_inflight", self.max_inflight.to_string()),
            (
                "max_message",
                self.max_message.map_or(
                    if self.echo { "16.0 MiB" } else { "1.0 MiB" }.into(),
                    crate::fmt::size,
                ),
            ),
            ("echo", if self.echo { "on" } else { "off" }.into()),
            (
                "io",
                if self.io_uring { "io_uring" } else { "epoll" }.into(),
            ),
            ("connect_timeout", secs(self.connect_timeout_s)),
            ("batch_window", secs(self.batch_window_s)),
            ("reconnect", reconnect),
            (
                "churn",
                self.churn_per_s
                    .map_or("off".into(), |s| format!("{:.1} % a second", s * 100.0)),
            ),
            ("headers", list_or_none(&self.headers)),
            ("subprotocols", list_or_none(&self.subprotocols)),
            ("compression", self.compression.name().to_string()),
        ]
        .into_iter()
        .chain((!self.ca.is_empty()).then(|| ("ca", self.ca.join(", "))))
        .chain(
            self.insecure
                .then(|| ("insecure", "yes: certificates not verified".into())),
        )
        .chain(
            (self.tls_resume == Some(false))
                .then(|| ("tls_resume", "off: every handshake full".into())),
        )
        .chain(self.talk.lines())
        .collect()
    }
}

fn list_or_none(items: &[String]) -> String {
    match items.is_empty() {
        true => "none".into(),
        false => items.join(", "),
    }
}

/// A header as a report may show it: credentials are kept out of files people paste.
pub fn redacted(header: &str) -> String {
    let (name, _) = header.split_once(':').unwrap_or((header, ""));
    let lower = name.to_ascii_lowercase();
    // "auth" covers Authorization and Proxy-Authorization.
    let secret = ["cookie", "token", "secret", "key", "password", "auth"]
        .iter()
        .any(|w| lower.contains(w));
    match secret {
        true => format!("{name}: (redacted)"),
        false => header.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Echo {
        Echo::Client(Box::new(ClientEcho {
            url: "ws://127.0.0.1:8080/".into(),
            conns: 10_000,
            sources: vec!["127.0.0.2".into(), "127.0.0.3".into()],
            rate: 0.0,
            max_inflight: 1024,
            max_message: None,
            echo: false,
            io_uring: false,
            connect_timeout_s: 10.0,
            batch_window_s: 0.005,
            reconnect_max_backoff_s: None,
            churn_per_s: None,
            headers: vec![
                redacted("Authorization: Bearer s3cret"),
                redacted("X-Tenant: a"),
            ],
            subprotocols: vec![],
            ca: vec![],
            insecure: false,
            tls_resume: None,
            compression: crate::proto::deflate::Offer::Off,
            segment: None,
            talk: TalkEcho {
                send: vec![
                    redacted_text(r#"{"connect":{"token":"abc"}}"#),
                    redacted_text(r#"{"connect":{"token":"{token}"}}"#),
                ],
                ..TalkEcho::default()
            },
            common: Common {
                shards: 2,
                workers: 0,
                worker_conns: 19_900,
                duration_s: Some(60.0),
                max_errors: 0,
            },
        }))
    }

    #[test]
    fn json_keeps_numbers_as_numbers() {
        let v = serde_json::to_value(client()).unwrap();
        assert_eq!(v["conns"], 10_000);
        assert_eq!(v["headers"][0], "Authorization: (redacted)");
        assert_eq!(v["headers"][1], "X-Tenant: a");
        assert_eq!(v["rate"], 0.0);
        assert_eq!(v["batch_window_s"], 0.005);
        assert_eq!(v["duration_s"], 60.0);
        assert_eq!(v["workers"], 0);
        assert!(v["reconnect_max_backoff_s"].is_null());
        assert_eq!(v["sources"][1], "127.0.0.3");
        assert_eq!(v["send"][0], "(redacted: 27 bytes)");
        assert_eq!(v["send"][1], r#"{"connect":{"token":"{token}"}}"#);
        assert!(v["ts_path"].is_null());
        assert_eq!(v["ts_unit"], "auto");
    }

    #[test]
    fn people_read_units() {
        let lines = client().lines();
        let get = |k: &str| lines.iter().find(|(key, _)| *key == k).unwrap().1.clone();
        assert_eq!(get("conns"), "10,000");
        assert_eq!(get("rate"), "unlimited");
        assert_eq!(get("batch_window"), "5ms");
        assert_eq!(get("duration"), "1m");
        assert_eq!(get("reconnect"), "off");
        assert!(!lines.iter().any(|(k, _)| *k == "workers"));
    }
}
