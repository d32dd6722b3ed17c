//! The control endpoint of a running server: `POST /broadcast`, `GET /stats` (the JSON report
//! so far) and `GET /metrics` (Prometheus text format). It is the way to trigger a broadcast from
//! somewhere else: the console in client mode, a script, a CI job.
//!
//! Tiny on purpose: one request per connection, `Connection: close`, a head of at most 8 KiB.
//! It only reads what the run loop publishes and asks it to broadcast through a bounded channel.

use crate::stats::aggregate::{Broadcasts, Snapshot};
use anyhow::{Context, Result, bail};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
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

/// Binds the endpoint. Only loopback addresses: the endpoint can trigger broadcasts to every
/// connection, so exposing it is a decision the user must make explicitly.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    if !addr.ip().is_loopback() {
        bail!(
            "--control {addr}: the control endpoint binds to loopback only (127.0.0.1 or [::1]); \
             reach it from elsewhere through an SSH tunnel"
        );
    }
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("--control {addr}: cannot listen"))
}

/// Serves until the listener fails; run it as a task and abort it on shutdown.
pub async fn serve(
    listener: TcpListener,
    published: watch::Receiver<Option<Arc<Published>>>,
    commands: mpsc::Sender<Command>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let published = published.clone();
        let commands = commands.clone();
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(10), handle(stream, published, commands))
                    .await;
        });
    }
}

async fn handle(
    mut stream: TcpStream,
    published: watch::Receiver<Option<Arc<Published>>>,
    commands: mpsc::Sender<Command>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (method, path) = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                );
            }
            Ok(httparse::Status::Partial) if buf.len() < 8192 => continue,
            _ => return respond(&mut stream, 400, "text/plain", "bad request\n").await,
        }
    };
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
                let body = metrics(&p.snapshot);
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
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The snapshot in Prometheus' text format, through prometheus-client so names, types and
/// escaping follow the exposition format.
pub fn metrics(s: &Snapshot) -> String {
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

/// Asks a server's control endpoint for a broadcast; returns its sequence number.
pub async fn request_broadcast(url: &str) -> Result<u64> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--control-url {url}: must start with http://"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let mut stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(authority))
        .await
        .with_context(|| format!("{url}: timed out connecting"))?
        .with_context(|| format!("{url}: cannot connect"))?;
    let req = format!(
        "POST /broadcast HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut resp))
        .await
        .with_context(|| format!("{url}: no answer"))??;
    let text = String::from_utf8_lossy(&resp);
    let status = text.split_whitespace().nth(1).unwrap_or("");
    if status != "202" {
        bail!(
            "{url}: the server answered {}",
            text.lines().next().unwrap_or("nothing")
        );
    }
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    v["seq"]
        .as_u64()
        .with_context(|| format!("{url}: unexpected answer {body:?}"))
}
