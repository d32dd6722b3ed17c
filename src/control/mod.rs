//! The control endpoint of a running server: `POST /broadcast`, `GET /stats` (the JSON report
//! so far) and `GET /metrics` (Prometheus text format). It is the way to trigger a broadcast from
//! somewhere else: the console in client mode, a script, a CI job.
//!
//! HTTP is hyper's (keep-alive, header limits, a header read timeout) and routing axum's; this
//! module only says what each route answers. It reads what the run publishes once a second and
//! asks it to broadcast through a bounded channel; it never touches the engine.
//!
//! It can make the server write to every connection, so it is on loopback unless the user also
//! sets a bearer token; with a token, every request must carry it.

mod client;
mod metrics;

pub use client::request_broadcast;
pub use metrics::metrics;

use crate::stats::Snapshot;
use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

/// A request's head must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a request's head and buffered body may take.
const MAX_BUF: usize = 16 * 1024;
/// How long `POST /broadcast` waits for the run to take it.
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Binds an endpoint that will serve `GET /metrics` alone ([`Endpoint::serve_metrics`]): it
/// reads figures and triggers nothing, so, as any Prometheus exporter, it may listen on every
/// address without a token (`c1m agent --metrics 0.0.0.0:9100` in a pod).
pub async fn bind_metrics(addr: SocketAddr) -> Result<Endpoint> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics {addr}: cannot listen"))?;
    Ok(Endpoint {
        listener,
        token: None,
        refusals: Arc::default(),
    })
}

/// What every request's handler can see.
#[derive(Clone)]
struct Shared {
    published: watch::Receiver<Option<Arc<Published>>>,
    commands: mpsc::Sender<Command>,
    token: Option<Arc<[u8]>>,
    refusals: Arc<Refusals>,
}

/// The peer of the connection a request came on.
#[derive(Clone, Copy)]
struct Peer(SocketAddr);

impl Endpoint {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The refusal count, to report while the endpoint serves.
    pub fn refusals(&self) -> Arc<Refusals> {
        self.refusals.clone()
    }

    /// Serves until the task is aborted (the run does that when it ends).
    pub async fn serve(
        self,
        published: watch::Receiver<Option<Arc<Published>>>,
        commands: mpsc::Sender<Command>,
    ) {
        let shared = Shared {
            published,
            commands,
            token: self.token.clone(),
            refusals: self.refusals.clone(),
        };
        self.accept(router(shared)).await;
    }

    /// Serves `GET /metrics` alone until the task is aborted.
    pub async fn serve_metrics(self, published: watch::Receiver<Option<Arc<Published>>>) {
        let shared = Shared {
            published,
            commands: mpsc::channel(1).0,
            token: None,
            refusals: self.refusals.clone(),
        };
        let app = Router::new()
            .route("/metrics", get(prometheus))
            .fallback(|| async { (StatusCode::NOT_FOUND, "c1m agent: GET /metrics\n") })
            .with_state(shared);
        self.accept(app).await;
    }

    async fn accept(self, app: Router) {
        loop {
            let Ok((stream, peer)) = self.listener.accept().await else {
                // EMFILE and the like: wait for descriptors instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let app = app.clone().layer(axum::Extension(Peer(peer)));
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_BUF)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                    .await;
            });
        }
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/broadcast", post(broadcast))
        .route("/stats", get(stats))
        .route("/metrics", get(prometheus))
        .route("/clock", get(clock))
        .method_not_allowed_fallback(|| async {
            (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        })
        .fallback(|| async {
            let body = "c1m control: POST /broadcast, GET /stats, GET /metrics, GET /clock\n";
            (StatusCode::NOT_FOUND, body)
        })
        // Before routing: an unauthorized request learns nothing, not even which paths exist.
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .with_state(shared)
}

/// With a token, a request without `Authorization: Bearer TOKEN` gets 401 and is counted.
async fn authorize(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let Some(expected) = s.token.as_deref() else {
        return next.run(req).await;
    };
    if bearer(req.headers()).is_some_and(|given| same_secret(given, expected)) {
        return next.run(req).await;
    }
    if let Some(Peer(peer)) = req.extensions().get::<Peer>() {
        s.refusals.note(*peer);
    }
    let body = "unauthorized: send the server's --control-token as Authorization: Bearer TOKEN\n";
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"c1m\"")],
        body,
    )
        .into_response()
}

async fn broadcast(State(s): State<Shared>) -> Response {
    let busy = (StatusCode::SERVICE_UNAVAILABLE, "busy, try again\n");
    let (tx, rx) = oneshot::channel();
    if s.commands.try_send(Command::Broadcast(tx)).is_err() {
        return busy.into_response();
    }
    match tokio::time::timeout(BROADCAST_TIMEOUT, rx).await {
        Ok(Ok(seq)) => {
            let body = format!("{{\"seq\":{seq}}}\n");
            let json = [(header::CONTENT_TYPE, "application/json")];
            (StatusCode::ACCEPTED, json, body).into_response()
        }
        Ok(Err(_)) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
        Err(_) => busy.into_response(),
    }
}

fn latest(s: &Shared) -> Option<Arc<Published>> {
    s.published.borrow().clone()
}

const NOTHING_YET: (StatusCode, &str) = (StatusCode::SERVICE_UNAVAILABLE, "no figures yet\n");

async fn stats(State(s): State<Shared>) -> Response {
    let Some(p) = latest(&s) else {
        return NOTHING_YET.into_response();
    };
    let body = serde_json::to_string_pretty(&p.report).unwrap_or_default() + "\n";
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// This machine's clock for a coordinator's NTP-style exchange: when the request was handled
/// and when the answer left, µs since the epoch (`c1m client --server-clock URL`).
async fn clock() -> Response {
    let t1_us = crate::engine::now_us();
    let body = format!(
        "{{\"t1_us\":{t1_us},\"t2_us\":{}}}\n",
        crate::engine::now_us()
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn prometheus(State(s): State<Shared>) -> Response {
    let Some(p) = latest(&s) else {
        return NOTHING_YET.into_response();
    };
    let body = metrics(&p.snapshot, s.refusals.count());
    let ctype = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, ctype)], body).into_response()
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// Compares in a time that depends on the lengths only, so that timing a wrong guess tells
/// nothing about how much of it was right.
pub(crate) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(!e);
        diff = std::hint::black_box(diff);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        for wrong in [&b""[..], b"s3cre", b"s3cret!", b"S3cret", b"x3cret"] {
            assert!(!same_secret(wrong, b"s3cret"), "{wrong:?}");
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let header = |value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            h
        };
        assert_eq!(bearer(&header("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&header("bearer  abc ")), Some(&b"abc"[..]));
        assert_eq!(bearer(&header("Basic abc")), None);
        assert_eq!(bearer(&header("Bearer")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
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
