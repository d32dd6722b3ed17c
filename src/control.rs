//! The control endpoint of a running server: `POST /broadcast`, `GET /stats` (the JSON report
//! so far) and `GET /metrics` (Prometheus text format). It is the way to trigger a broadcast from
//! somewhere else: the console in client mode, a script, a CI job.
//!
//! Tiny on purpose: one request per connection, `Connection: close`, a head of at most 8 KiB.
//! It only reads what the run loop publishes and asks it to broadcast through a bounded channel.
//!
//! It can make the server write to every connection, so it is on loopback unless the user also
//! sets a bearer token; with a token, every request must carry it.

use crate::stats::{Broadcasts, Snapshot};
use anyhow::{Context, Result, bail};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

/// What the run loop publishes for the endpoint, about once a second.
#[derive(Clone, Debug)]
pub struct Published {
    pub snapshot: Snapshot,
    /// The JSON report so far (what `--json` would write now).
    pub report: serde_json::Value,
}

/// A request the run loop must act on.
pub enum Command {
    /// Broadcast now; the reply is the sequence number used.
    Broadcast(oneshot::Sender<u64>),
}

/// Requests turned away for want of the right token. The endpoint counts them; the run loop
/// tells the user about the first, where its output goes (stderr, or the console's notes).
#[derive(Debug, Default)]
pub struct Refusals {
    count: AtomicU64,
    first_from: OnceLock<SocketAddr>,
    told: AtomicBool,
}

impl Refusals {
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn note(&self, peer: SocketAddr) {
        let _ = self.first_from.set(peer);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// A line about the first refusal, once; `None` before it and after.
    pub fn first_news(&self) -> Option<String> {
        let peer = self.first_from.get()?;
        if self.told.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(format!(
            "control endpoint: refused a request from {peer} without the right bearer token \
             (401); further ones are only counted, as c1m_control_unauthorized_total in /metrics"
        ))
    }
}

/// A bound endpoint, not yet serving.
pub struct Endpoint {
    listener: TcpListener,
    token: Option<Arc<[u8]>>,
    refusals: Arc<Refusals>,
}

/// Binds the endpoint. An address other than loopback needs a token: the endpoint can trigger
/// broadcasts to every connection, so exposing it is a decision the user must make explicitly,
/// and then not one anybody on the network can take over.
pub async fn bind(addr: SocketAddr, token: Option<&str>) -> Result<Endpoint> {
    if let Some(t) = token
        && (t.is_empty() || t.bytes().any(|b| !b.is_ascii_graphic()))
    {
        bail!(
            "--control-token: the token must be printable ASCII without spaces (it travels in \
             an HTTP header), and not empty"
        );
    }
    if !addr.ip().is_loopback() && token.is_none() {
        bail!(
            "--control {addr}: the control endpoint can make the server broadcast to every \
             connection, so an address other than loopback needs --control-token TOKEN (or \
             C1M_CONTROL_TOKEN in the environment); or keep --control on 127.0.0.1 and reach it \
             through an SSH tunnel"
        );
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("--control {addr}: cannot listen"))?;
    Ok(Endpoint {
        listener,
        token: token.map(|t| Arc::from(t.as_bytes())),
        refusals: Arc::default(),
    })
}

impl Endpoint {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The refusal count, to report while the endpoint serves.
    pub fn refusals(&self) -> Arc<Refusals> {
        self.refusals.clone()
    }

    /// Serves until the listener fails; run it as a task and abort it on shutdown.
    pub async fn serve(
        self,
        published: watch::Receiver<Option<Arc<Published>>>,
        commands: mpsc::Sender<Command>,
    ) {
        loop {
            let Ok((stream, peer)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let published = published.clone();
            let commands = commands.clone();
            let token = self.token.clone();
            let refusals = self.refusals.clone();
            tokio::spawn(async move {
                let request = Request {
                    peer,
                    token: token.as_deref(),
                    refusals: &refusals,
                };
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    handle(stream, request, published, commands),
                )
                .await;
            });
        }
    }
}

/// Who asked, and what they must show.
struct Request<'a> {
    peer: SocketAddr,
    token: Option<&'a [u8]>,
    refusals: &'a Refusals,
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme is case-insensitive).
fn bearer<'h>(headers: &[httparse::Header<'h>]) -> Option<&'h [u8]> {
    let value = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))?
        .value;
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// Compares in a time that depends on the lengths only, so that timing a wrong guess tells
/// nothing about how much of it was right.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(!e);
        diff = std::hint::black_box(diff);
    }
    diff == 0
}

async fn handle(
    mut stream: TcpStream,
    request: Request<'_>,
    published: watch::Receiver<Option<Arc<Published>>>,
    commands: mpsc::Sender<Command>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (method, path, authorized) = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let authorized = match request.token {
                    None => true,
                    Some(expected) => {
                        bearer(req.headers).is_some_and(|given| same_secret(given, expected))
                    }
                };
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                    authorized,
                );
            }
            Ok(httparse::Status::Partial) if buf.len() < 8192 => continue,
            _ => return respond(&mut stream, 400, "text/plain", "bad request\n").await,
        }
    };
    if !authorized {
        request.refusals.note(request.peer);
        let body =
            "unauthorized: send the server's --control-token as Authorization: Bearer TOKEN\n";
        return respond(&mut stream, 401, "text/plain", body).await;
    }
    let path = path.split('?').next().unwrap_or("");
    let latest = published.borrow().clone();
    match (method.as_str(), path) {
        ("POST", "/broadcast") => {
            let (tx, rx) = oneshot::channel();
            if commands.try_send(Command::Broadcast(tx)).is_err() {
                return respond(&mut stream, 503, "text/plain", "busy, try again\n").await;
            }
            match rx.await {
                Ok(seq) => {
                    let body = format!("{{\"seq\":{seq}}}\n");
                    respond(&mut stream, 202, "application/json", &body).await
                }
                Err(_) => respond(&mut stream, 503, "text/plain", "shutting down\n").await,
            }
        }
        ("GET", "/stats") => match latest {
            Some(p) => {
                let body = serde_json::to_string_pretty(&p.report).unwrap_or_default() + "\n";
                respond(&mut stream, 200, "application/json", &body).await
            }
            None => respond(&mut stream, 503, "text/plain", "no figures yet\n").await,
        },
        ("GET", "/metrics") => match latest {
            Some(p) => {
                let body = metrics(&p.snapshot, request.refusals.count());
                let ctype = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                respond(&mut stream, 200, ctype, &body).await
            }
            None => respond(&mut stream, 503, "text/plain", "no figures yet\n").await,
        },
        (_, "/broadcast" | "/stats" | "/metrics") => {
            respond(&mut stream, 405, "text/plain", "method not allowed\n").await
        }
        _ => {
            let body = "c1m control: POST /broadcast, GET /stats, GET /metrics\n";
            respond(&mut stream, 404, "text/plain", body).await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let challenge = if status == 401 {
        "WWW-Authenticate: Bearer realm=\"c1m\"\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         {challenge}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The snapshot in Prometheus' text format, through prometheus-client so names, types and
/// escaping follow the exposition format. `unauthorized` is the endpoint's own refusal count.
pub fn metrics(s: &Snapshot, unauthorized: u64) -> String {
    let mut reg = Registry::with_prefix("c1m");
    let counter = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        reg.register(name, help, c);
    };
    let gauge = |reg: &mut Registry, name: &str, help: &str, v: i64| {
        let g = Gauge::<i64>::default();
        g.set(v);
        reg.register(name, help, g);
    };
    let c = &s.connections;
    gauge(
        &mut reg,
        "connections_active",
        "WebSocket connections open now",
        c.active as i64,
    );
    gauge(
        &mut reg,
        "connections_peak",
        "Highest number open at once",
        c.peak as i64,
    );
    counter(
        &mut reg,
        "connections_established",
        "Handshakes completed",
        c.established,
    );
    counter(
        &mut reg,
        "connections_failed",
        "Attempts that never completed the handshake",
        c.failed,
    );
    counter(
        &mut reg,
        "connections_closed",
        "Established connections that ended",
        c.closed,
    );
    counter(
        &mut reg,
        "connections_refused",
        "Upgrades answered 503 at --max-conns",
        c.refused,
    );
    counter(
        &mut reg,
        "control_unauthorized",
        "Control requests refused with 401 for want of the bearer token",
        unauthorized,
    );
    let errors = Family::<Vec<(String, String)>, Counter<u64>>::default();
    for (class, n) in s.errors.by_class.iter() {
        errors
            .get_or_create(&vec![("class".to_string(), class.name().to_string())])
            .inc_by(n);
    }
    reg.register("errors", "Failures by class", errors);
    let m = &s.messages;
    counter(
        &mut reg,
        "messages_sent",
        "Broadcast frames written (server)",
        m.sent,
    );
    counter(
        &mut reg,
        "messages_dropped",
        "Broadcast frames not queued: peer not reading",
        m.dropped,
    );
    counter(
        &mut reg,
        "messages_received",
        "Messages received (client)",
        m.received,
    );
    counter(
        &mut reg,
        "messages_missed",
        "Broadcasts missed, from sequence gaps (client)",
        m.missed,
    );
    let last_seq = match &s.broadcasts {
        Broadcasts::Server(rows) => rows.last().map(|r| r.seq),
        Broadcasts::Client(rows) => rows.last().map(|r| r.seq),
    };
    counter(
        &mut reg,
        "broadcasts",
        "Latest broadcast sequence number",
        last_seq.unwrap_or(0),
    );
    let quantiles = Family::<Vec<(String, String)>, Gauge<i64>>::default();
    let l = &s.latency_us;
    for (q, v) in [
        ("0.5", l.p50),
        ("0.99", l.p99),
        ("0.999", l.p999),
        ("1", l.max),
    ] {
        quantiles
            .get_or_create(&vec![("quantile".to_string(), q.to_string())])
            .set(v as i64);
    }
    reg.register(
        "latency_microseconds",
        "Message latency quantiles (client)",
        quantiles,
    );
    let mut out = String::new();
    let _ = encode(&mut out, &reg);
    out
}

/// Asks a server's control endpoint for a broadcast, with its bearer token when there is one;
/// returns the broadcast's sequence number.
pub async fn request_broadcast(url: &str, token: Option<&str>) -> Result<u64> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--control-url {url}: must start with http://"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let mut stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(authority))
        .await
        .with_context(|| format!("{url}: timed out connecting"))?
        .with_context(|| format!("{url}: cannot connect"))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "POST /broadcast HTTP/1.1\r\nHost: {authority}\r\n{auth}Content-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut resp))
        .await
        .with_context(|| format!("{url}: no answer"))??;
    let text = String::from_utf8_lossy(&resp);
    let status = text.split_whitespace().nth(1).unwrap_or("");
    match (status, token) {
        ("202", _) => {}
        ("401", None) => bail!(
            "{url}: the server wants a bearer token: give it with --control-token (or \
             C1M_CONTROL_TOKEN)"
        ),
        ("401", Some(_)) => bail!("{url}: the server refused this --control-token"),
        _ => bail!(
            "{url}: the server answered {}",
            text.lines().next().unwrap_or("nothing")
        ),
    }
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    v["seq"]
        .as_u64()
        .with_context(|| format!("{url}: unexpected answer {body:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        for wrong in [&b""[..], b"s3cre", b"s3cret!", b"S3cret", b"x3cret"] {
            assert!(!same_secret(wrong, b"s3cret"), "{wrong:?}");
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let header = |value: &'static [u8]| {
            [httparse::Header {
                name: "authorization",
                value,
            }]
        };
        assert_eq!(bearer(&header(b"Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&header(b"bearer  abc ")), Some(&b"abc"[..]));
        assert_eq!(bearer(&header(b"Basic abc")), None);
        assert_eq!(bearer(&header(b"Bearer")), None);
        assert_eq!(bearer(&[]), None);
    }

    #[tokio::test]
    async fn a_token_must_be_sendable() {
        for bad in ["", "two words", "tab\there"] {
            let err = bind("127.0.0.1:0".parse().unwrap(), Some(bad)).await.err();
            let text = format!("{:#}", err.expect("refused"));
            assert!(text.contains("--control-token"), "{text}");
        }
    }

    #[test]
    fn the_first_refusal_is_told_once() {
        let r = Refusals::default();
        assert_eq!(r.first_news(), None);
        r.note("127.0.0.1:5000".parse().unwrap());
        r.note("127.0.0.1:5001".parse().unwrap());
        let line = r.first_news().unwrap();
        assert!(line.contains("127.0.0.1:5000"), "{line}");
        assert_eq!(r.first_news(), None);
        assert_eq!(r.count(), 2);
    }
}
