//! `c1m agent`: a client share on another machine. It listens for a coordinator (`c1m client
//! --agents`), checks its token, then runs what it is told over that one connection with the
//! same line protocol a local worker speaks on its stdin and stdout ([`super::child::serve`]);
//! when the coordinator stops it or goes away, it waits for the next one.
//!
//! The coordinator's side is [`connect`]: a [`Link`] over TCP, so the fleets treat an agent as
//! one more worker.

use super::link::Link;
use crate::sys::limits::Readings;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a coordinator waits for an agent to connect and answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An agent reached and greeted.
pub struct Connected {
    pub addr: SocketAddr,
    pub host: String,
    pub link: Link,
    /// Its machine's limits when it answered, for the coordinator's checks.
    pub limits: Option<Readings>,
    /// How many source addresses it was given itself (`c1m agent --source-ips`).
    pub own_ips: Option<usize>,
    /// The link is TLS.
    pub tls: bool,
}

/// Reaches the agents `given` names (HOST:PORT, or `dns:NAME:PORT` for every address the name
/// resolves to). Without `expect`, every one must answer now. With it, names are resolved
/// again and silent agents tried again until `expect.0` have answered, for up to `expect.1`;
/// then the error names the ones missing and why.
pub async fn gather(
    given: &[String],
    (token, tls): (&str, Option<Arc<rustls::ClientConfig>>),
    expect: (Option<usize>, Duration),
) -> Result<Vec<Connected>> {
    let (expect, wait) = expect;
    let deadline = tokio::time::Instant::now() + wait;
    let mut done: Vec<Connected> = Vec::new();
    loop {
        let addrs = resolve(given)?;
        let mut failed = Vec::new();
        let pending: Vec<(SocketAddr, String)> = addrs
            .iter()
            .filter(|(a, _)| !done.iter().any(|c| c.addr == *a))
            .cloned()
            .collect();
        for (addr, name) in pending {
            let tls = tls.clone().map(|config| (config, name));
            match connect(addr, token, tls).await {
                Ok(c) => done.push(c),
                Err(e) if expect.is_none() => return Err(e),
                Err(e) => failed.push(format!("{e:#}")),
            }
        }
        let want = expect.unwrap_or(addrs.len());
        if done.len() >= want {
            done.truncate(want);
            return Ok(done);
        }
        if tokio::time::Instant::now() >= deadline {
            let answered: Vec<String> = done.iter().map(|c| c.addr.to_string()).collect();
            bail!(
                "--expect-agents {want}: {} answered within {wait:?} ({}); {} resolve to \
                 {} addresses; missing: {}",
                done.len(),
                answered.join(", "),
                given.join(","),
                addrs.len(),
                if failed.is_empty() {
                    "no more addresses to try".to_string()
                } else {
                    failed.join("; ")
                }
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Each HOST:PORT, or every address `dns:NAME:PORT` resolves to (a Kubernetes headless
/// Service names one address per ready pod); a name that does not resolve yet is no address.
/// With each, the name its certificate must carry: HOST, or NAME.
fn resolve(given: &[String]) -> Result<Vec<(SocketAddr, String)>> {
    use std::net::ToSocketAddrs;
    let mut out: Vec<(SocketAddr, String)> = Vec::new();
    for a in given {
        let spec = a.strip_prefix("dns:").unwrap_or(a);
        let host = spec.rsplit_once(':').map_or(spec, |(h, _)| h);
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        match a.strip_prefix("dns:") {
            Some(name) => out.extend(
                name.to_socket_addrs()
                    .into_iter()
                    .flatten()
                    .map(|addr| (addr, host.clone())),
            ),
            None => out.push((
                a.to_socket_addrs()
                    .with_context(|| {
                        format!("--agents {a}: not HOST:PORT, or the name does not resolve")
                    })?
                    .next()
                    .with_context(|| format!("--agents {a}: the name resolves to no address"))?,
                host,
            )),
        }
    }
    out.dedup();
    Ok(out)
}

/// The coordinator's first line.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    token: String,
    version: String,
}

/// The agent's answer: who it is and what its machine allows, or why not.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Welcome {
        host: String,
        version: String,
        #[serde(default)]
        limits: Option<Box<Readings>>,
        #[serde(default)]
        own_ips: Option<usize>,
    },
    Refused(String),
}

/// `c1m agent` until interrupted (or, with `once`, after one run).
pub async fn run(args: crate::cli::AgentArgs) -> Result<i32> {
    let crate::cli::AgentArgs {
        listen,
        token,
        once,
        worker_conns,
        source_ips,
        metrics,
        tls_cert,
        tls_key,
    } = args;
    if !listen.ip().is_loopback() && token.is_none() {
        bail!(
            "c1m agent: --token TOKEN (or C1M_AGENT_TOKEN) is needed to listen on {listen}: \
             whoever reaches the port could run load from this machine"
        );
    }
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => {
            let spec = crate::engine::tls::ServerTlsSpec { cert, key };
            Some(TlsAcceptor::from(crate::engine::tls::link_server(&spec)?))
        }
        _ => None,
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("c1m agent: cannot listen on {listen}"))?;
    eprintln!(
        "c1m agent: listening on {} for a coordinator (c1m client --agents){}{}",
        listener.local_addr()?,
        if tls.is_some() { ", over TLS" } else { "" },
        if token.is_some() {
            ", token required"
        } else {
            ""
        }
    );
    let metrics = match metrics {
        Some(addr) => Some(serve_metrics(addr).await?),
        None => None,
    };
    loop {
        let (stream, peer) = listener.accept().await?;
        let own = super::child::Own {
            worker_conns,
            source_ips: source_ips.clone(),
            metrics: metrics.clone(),
        };
        match session(stream, tls.as_ref(), token.as_deref(), own).await {
            Ok(()) => eprintln!("c1m agent: the run from {peer} ended"),
            Err(e) => eprintln!("c1m agent: {peer}: {e:#}"),
        }
        if once {
            return Ok(0);
        }
    }
}

/// `--metrics`: this agent's `/metrics`, served from now on; each run publishes into it.
async fn serve_metrics(addr: SocketAddr) -> Result<super::child::Metrics> {
    let endpoint = crate::control::bind_metrics(addr).await?;
    eprintln!(
        "c1m agent: this agent's figures at http://{}/metrics while a run lasts",
        endpoint.local_addr()?
    );
    let (tx, rx) = tokio::sync::watch::channel(None);
    tokio::spawn(endpoint.serve_metrics(rx));
    Ok(std::sync::Arc::new(tx))
}

/// One coordinator: TLS when this agent has a certificate, then [`converse`]. A coordinator
/// speaking the other way is told so rather than left waiting: a plain hello to a TLS agent is
/// refused in plain words, a TLS hello to a plain agent gets its connection closed.
async fn session(
    stream: TcpStream,
    tls: Option<&TlsAcceptor>,
    token: Option<&str>,
    own: super::child::Own,
) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut first = [0u8; 1];
    stream.peek(&mut first).await?;
    let speaks_tls = first[0] == TLS_HANDSHAKE_RECORD;
    match (tls, speaks_tls) {
        (Some(acceptor), true) => {
            let stream = acceptor
                .accept(stream)
                .await
                .context("the TLS handshake failed")?;
            converse(stream, token, own).await
        }
        (None, false) => converse(stream, token, own).await,
        (Some(_), false) => {
            let why = "this agent speaks TLS (c1m agent --tls-cert): give the coordinator \
                       --agent-ca FILE, the CA that signed it";
            let mut stream = stream;
            stream
                .write_all(&super::wire::line(&Answer::Refused(why.into())))
                .await?;
            bail!("refused a coordinator without TLS");
        }
        (None, true) => bail!(
            "a coordinator spoke TLS (--agent-ca) to this agent, which has no certificate: \
             start it with --tls-cert and --tls-key, or drop --agent-ca"
        ),
    }
}

/// The first byte of a TLS ClientHello (a handshake record), where a plain coordinator sends
/// `{`.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The hello and the answer, then the run.
async fn converse(
    stream: impl AsyncRead + AsyncWrite + Unpin,
    token: Option<&str>,
    own: super::child::Own,
) -> Result<()> {
    let (read, mut write) = tokio::io::split(stream);
    let mut read = BufReader::new(read);
    let mut first = String::new();
    read.read_line(&mut first).await?;
    let hello: Hello =
        serde_json::from_str(&first).context("not a c1m coordinator (no hello line)")?;
    let refuse = if token
        .is_some_and(|t| !crate::control::same_secret(hello.token.as_bytes(), t.as_bytes()))
    {
        Some(
            "wrong token (--agent-token or C1M_AGENT_TOKEN must match the agent's --token)"
                .to_string(),
        )
    } else if hello.version != crate::VERSION {
        Some(format!(
            "version mismatch: the coordinator is c1m {}, this agent c1m {}",
            hello.version,
            crate::VERSION
        ))
    } else {
        None
    };
    let answer = match &refuse {
        Some(why) => Answer::Refused(why.clone()),
        None => Answer::Welcome {
            host: crate::sys::hostname(),
            version: crate::VERSION.to_string(),
            limits: Some(Box::new(crate::sys::limits::read())),
            own_ips: own_ips(&own)?,
        },
    };
    write.write_all(&super::wire::line(&answer)).await?;
    if let Some(why) = refuse {
        bail!("refused: {why}");
    }
    super::child::serve_as(&mut read, &mut write, own).await?;
    // The last deltas and the goodbye are written: end this direction, then read what the
    // coordinator still sends (clock exchanges) until it closes. Closing with unread input
    // would reset the connection, and a reset loses what the coordinator had not read yet.
    write.shutdown().await?;
    let mut sink = tokio::io::sink();
    let drain = tokio::io::copy(&mut read, &mut sink);
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    Ok(())
}

/// How many source addresses the agent's own `--source-ips` names.
fn own_ips(own: &super::child::Own) -> Result<Option<usize>> {
    let Some(list) = &own.source_ips else {
        return Ok(None);
    };
    Ok(Some(crate::engine::source::parse_list(list)?.len()))
}

/// Reaches the agent at `addr` and introduces this coordinator: the agent as the fleets hold
/// it, with the host name and the limits it gave.
/// With `tls`, the link is TLS and the agent's certificate must carry that name.
pub async fn connect(
    addr: SocketAddr,
    token: &str,
    tls: Option<(Arc<rustls::ClientConfig>, String)>,
) -> Result<Connected> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("agent {addr}: no answer within {CONNECT_TIMEOUT:?}"))?
        .with_context(|| format!("agent {addr}: cannot connect (is `c1m agent` running there?)"))?;
    stream.set_nodelay(true)?;
    let std = stream.into_std()?;
    let killer = std.try_clone()?;
    let stream = TcpStream::from_std(std)?;
    match tls {
        None => greet(addr, stream, token, (killer, false)).await,
        Some(tls) => {
            let stream = tls_handshake(addr, stream, tls).await?;
            greet(addr, stream, token, (killer, true)).await
        }
    }
}

/// TLS on the link, the agent's certificate checked for `name`.
async fn tls_handshake(
    addr: SocketAddr,
    stream: TcpStream,
    (config, name): (Arc<rustls::ClientConfig>, String),
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let server_name = rustls::pki_types::ServerName::try_from(name.clone())
        .with_context(|| format!("--agents: {name} is not a name TLS can check"))?;
    let handshake = TlsConnector::from(config).connect(server_name, stream);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| anyhow::anyhow!("agent {addr}: no TLS answer within {CONNECT_TIMEOUT:?}"))?
        .with_context(|| {
            format!(
                "agent {addr}: the TLS handshake failed (is it started with --tls-cert, with a \
                 certificate for {name} signed by the --agent-ca?)"
            )
        })?;
    Ok(stream)
}

/// The hello and the agent's answer, over the link (`killer` is its TCP socket, to end it;
/// `tls`, whether the link is TLS).
async fn greet(
    addr: SocketAddr,
    stream: impl AsyncRead + AsyncWrite + Send + Unpin + 'static,
    token: &str,
    (killer, tls): (std::net::TcpStream, bool),
) -> Result<Connected> {
    let (read, mut write) = tokio::io::split(stream);
    let hello = Hello {
        token: token.to_string(),
        version: crate::VERSION.to_string(),
    };
    write.write_all(&super::wire::line(&hello)).await?;
    let mut read = BufReader::new(read);
    let mut first = String::new();
    tokio::time::timeout(CONNECT_TIMEOUT, read.read_line(&mut first))
        .await
        .map_err(|_| {
            anyhow::anyhow!("agent {addr}: no answer to the hello within {CONNECT_TIMEOUT:?}")
        })??;
    let (host, limits, own_ips) = match serde_json::from_str::<Answer>(&first) {
        Ok(Answer::Welcome {
            host,
            limits,
            own_ips,
            ..
        }) => (host, limits.map(|l| *l), own_ips),
        Ok(Answer::Refused(why)) => bail!("agent {addr} refused this coordinator: {why}"),
        Err(_) => bail!("{addr} is not a c1m agent (it answered {:?})", first.trim()),
    };
    let link = Link {
        down: Box::new(write),
        up: Box::new(read),
        notes: None,
        ended: Box::pin(
            async move { "lost: its connection to the coordinator closed".to_string() },
        ),
        kill: Box::new(move || {
            let _ = killer.shutdown(std::net::Shutdown::Both);
        }),
    };
    Ok(Connected {
        addr,
        host,
        link,
        limits,
        own_ips,
        tls,
    })
}
