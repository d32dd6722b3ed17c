//! Starting a run: the preflight, the control endpoint, then the sides, each with its engine
//! (here or in worker processes), its aggregator, its echo and its HDR log.

use super::config::{
    ClientEcho, Common, Echo, SegmentEcho, ServerEcho, TalkEcho, redacted, redacted_text, seconds,
};
use super::outputs::Outputs;
use super::preflight::{self, Prepared};
use super::side::Side;
use super::{ControlLink, Run, ServerHalf, Spec};
use crate::cli::{ClientOpts, Compression, DEFAULT_LISTEN, Every, ServerOpts, SlowPolicy, TuiMode};
use crate::control;
use crate::engine::client::ClientConfig;
use crate::engine::server::{self, ServerConfig};
use crate::engine::source;
use crate::engine::talk::TalkSpec;
use crate::engine::tls::{ServerTlsSpec, TlsSpec};
use crate::proto::deflate::Offer;
use crate::proto::payload::{Format, Message};
use crate::proto::reader::ReaderSpec;
use crate::stats::Mode;
use crate::stats::aggregate::Aggregator;
use crate::workers::{ClientSide, Layout, ServerSide};
use anyhow::{Context, Result, bail};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};

pub(super) async fn start(spec: Spec) -> Result<Run> {
    let prepared = preflight::prepare(&spec)?;
    let both = spec.server.is_some() && spec.client.is_some();
    // Before anything starts: an endpoint refused (exposed without a token) starts nothing.
    let endpoint = match spec.server.as_ref().and_then(|o| Some((o.control?, o))) {
        Some((addr, o)) => Some(control::bind(addr, o.control_token.as_deref()).await?),
        None => None,
    };
    let mut outputs = Outputs::new(&spec.out, both);
    outputs.set_about(&super::about::About::read(&prepared.plan));
    // The baseline for the measured bytes per connection, before any connection exists.
    let rss_at_start = crate::sys::own_rss().unwrap_or(0);
    let started = Instant::now();
    let mut server = match &spec.server {
        Some(o) => Some(start_server(&spec, o, &prepared, &outputs, started).await?),
        None => None,
    };
    let mut client = match &spec.client {
        Some(o) => {
            // In local mode the client goes to this server, over TLS if it speaks it, trusting
            // its certificate.
            let mut o = o.clone();
            let url = match &server {
                Some(s) => {
                    let addr = s.side.engine.local_addr();
                    match &s.side.echo {
                        Echo::Server(e) if e.tls_cert.is_some() => {
                            o.ca.extend(e.tls_cert.iter().map(Into::into));
                            format!("wss://{addr}/")
                        }
                        _ => format!("ws://{addr}/"),
                    }
                }
                None => o.url.clone(),
            };
            Some(start_client(&spec, &o, &prepared, &outputs, started, url).await?)
        }
        None => None,
    };
    if let (true, Some(s), Some(c)) = (both, server.as_mut(), client.as_mut()) {
        s.side.label = Some("server");
        c.label = Some("client");
    }
    let control = endpoint.map(serve).transpose()?;
    let mut second = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Ok(Run {
        mode: spec.mode,
        notes: prepared.notes.iter().map(super::Note::new).collect(),
        prepared,
        server,
        client,
        control,
        outputs,
        second,
        deadline: spec.duration.map(|d| tokio::time::Instant::now() + d),
        finished: Default::default(),
        reconnect: spec.client.as_ref().is_some_and(|c| c.reconnect.is_some()),
        none_left_told: false,
        rss_at_start,
        changes: 0,
        unreadable_told: false,
    })
}

fn serve(endpoint: control::Endpoint) -> Result<ControlLink> {
    let (published, published_rx) = watch::channel(None);
    let (commands_tx, commands) = mpsc::channel(16);
    let addr = endpoint.local_addr()?;
    let refusals = endpoint.refusals();
    let task = tokio::spawn(endpoint.serve(published_rx, commands_tx));
    Ok(ControlLink {
        published,
        commands,
        refusals,
        addr,
        task,
    })
}

fn shards(spec: &Spec, layout: Layout) -> usize {
    spec.out.shards.unwrap_or_else(|| match layout {
        // An agent runs as many shard threads as this machine has cores (see --shards).
        Layout::InProcess | Layout::Grows | Layout::Agents(_) => crate::engine::default_shards(),
        Layout::Workers(n) => crate::workers::shards_per_worker(n),
    })
}

fn common(spec: &Spec, p: &Prepared, shards: usize) -> Common {
    Common {
        shards,
        workers: p.layout.workers(),
        worker_conns: spec.out.scale.cap(),
        duration_s: spec.duration.map(seconds),
        max_errors: spec.out.max_errors,
    }
}

async fn start_server(
    spec: &Spec,
    o: &ServerOpts,
    p: &Prepared,
    outputs: &Outputs,
    started: Instant,
) -> Result<ServerHalf> {
    // The local demo's client is in this process: any free port will do, and a fixed one
    // would invite strays.
    let default = match spec.mode {
        TuiMode::Local => SocketAddr::from(([127, 0, 0, 1], 0)),
        _ => DEFAULT_LISTEN,
    };
    let shards = shards(spec, p.layout);
    let message = o.message.as_deref().map(Message::parse).transpose();
    let message = message.map_err(|e| anyhow::anyhow!("--message: {e}"))?;
    let (tls, self_signed) = server_tls(o)?;
    let compress = match (spec.compression, spec.mode) {
        (Compression::Off, _) => false,
        (Compression::Context, TuiMode::Server) => bail!(
            "--compression context is a client's offer: a c1m server never keeps a window per \
             connection; use --compression shared (each broadcast compressed once for all)"
        ),
        _ => true,
    };
    let cfg = ServerConfig {
        compress,
        tls: tls.clone(),
        listen: o.listen_or(default),
        shards,
        handshake_timeout: o.handshake_timeout,
        joins_group: false,
        max_conns: o.max_conns,
        slow: match o.slow_policy {
            SlowPolicy::Drop => server::SlowPolicy::Drop,
            SlowPolicy::Close => server::SlowPolicy::Close {
                after: o.slow_close_after,
            },
        },
        full_at: None,
        last_seq: 0,
        echo: spec.echo,
        max_message: spec.max_message,
        io_uring: spec.io_uring,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let engine = ServerSide::start(&cfg, p.layout, spec.out.scale.cap(), tx).await?;
    let every = match o.every {
        Every::Interval(d) => Some(d),
        Every::Off => None,
    };
    let echo = Echo::Server(Box::new(ServerEcho {
        listen: engine.local_addr().to_string(),
        every_s: every.map(seconds),
        payload: match (&o.message, o.payload) {
            (Some(_), _) => "message",
            (None, Format::Json) => "json",
            (None, Format::Seed) => "seed",
        },
        message: o.message.as_deref().map(redacted_text),
        pad: o.pad,
        handshake_timeout_s: seconds(o.handshake_timeout),
        max_conns: o.max_conns,
        slow_policy: match o.slow_policy {
            SlowPolicy::Drop => "drop",
            SlowPolicy::Close => "close",
        },
        slow_close_after: (o.slow_policy == SlowPolicy::Close).then_some(o.slow_close_after),
        control: o.control.map(|a| a.to_string()),
        control_token: o.control_token.is_some(),
        grows: p.layout == Layout::Grows,
        tls_cert: tls.map(|t| t.cert.display().to_string()),
        compression: if compress { "shared" } else { "off" },
        echo: spec.echo,
        max_message: spec.max_message,
        io_uring: spec.io_uring,
        common: common(spec, p, shards),
    }));
    let agg = Aggregator::new(Mode::Server, 0, Vec::new(), started);
    let hdr = outputs.open_hdr(Mode::Server, SystemTime::now())?;
    Ok(ServerHalf {
        side: Side::new(engine, rx, agg, echo, hdr),
        broadcaster: super::Broadcaster::new(o.payload, o.pad, message),
        every,
        next_timed: every.map(|d| tokio::time::Instant::now() + d),
        max_conns: o.max_conns,
        refusal_told: false,
        _self_signed: self_signed,
    })
}

/// The server's certificate: given, made at start (with the directory to remove at the end),
/// or none (plain ws://).
fn server_tls(o: &ServerOpts) -> Result<(Option<ServerTlsSpec>, Option<super::SelfSigned>)> {
    if o.tls_self_signed {
        let dir = std::env::temp_dir().join(format!("c1m-{}", std::process::id()));
        let spec = crate::engine::tls::self_signed(&dir)?;
        return Ok((Some(spec), Some(super::SelfSigned(dir))));
    }
    let given = match (&o.tls_cert, &o.tls_key) {
        (Some(cert), Some(key)) => Some(ServerTlsSpec {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    Ok((given, None))
}

async fn start_client(
    spec: &Spec,
    o: &ClientOpts,
    p: &Prepared,
    outputs: &Outputs,
    started: Instant,
    url: String,
) -> Result<Side<ClientSide>> {
    let shards = shards(spec, p.layout);
    let Url {
        addr,
        host,
        path,
        tls,
    } = parse_url(&url)?;
    let ips = o.ips.unwrap_or_else(|| match p.layout {
        // Off loopback each agent's machine has addresses of its own (c1m agent
        // --source-ips); the coordinator names none.
        crate::workers::Layout::Agents(_) if !addr.ip().is_loopback() => 1,
        crate::workers::Layout::Agents(n) => source::auto_count(o.conns.div_ceil(n as u64)),
        _ => source::auto_count(o.conns),
    });
    let sources = source::plan(addr, ips, o.source_ips.as_deref())?;
    let names: Vec<String> = sources
        .iter()
        .map(|s| s.map_or_else(|| "auto".to_string(), |ip| ip.to_string()))
        .collect();
    let cfg = ClientConfig {
        addr,
        host,
        path,
        conns: o.conns,
        rate: o.rate,
        sources,
        max_inflight: o.max_inflight,
        max_message: spec.max_message,
        // In one process with a server, the server echoes: two echoes would answer each other.
        echo: spec.echo && spec.server.is_none(),
        churn: o.churn.map_or(0.0, |c| c.share_of(o.conns)),
        connect_timeout: o.connect_timeout,
        shards,
        batch_window: o.batch_window,
        reconnect: o.reconnect,
        headers: o
            .headers
            .iter()
            .cloned()
            .chain(o.origin.iter().map(|v| format!("Origin: {v}")))
            .collect(),
        subprotocols: o.subprotocols.clone(),
        tls: tls.map(|name| TlsSpec {
            name,
            ca: o.ca.clone(),
            insecure: o.insecure,
            no_resume: o.tls_no_resume,
        }),
        talk: TalkSpec {
            send: o.send.clone(),
            heartbeat: o.heartbeat.clone(),
            ping: o.ping,
            reply: o.replies.clone(),
            tokens: o.tokens.clone(),
            index_base: o.segment.map_or(0, |s| s.slice(o.segment_of).1),
            worker: 0,
        },
        reader: ReaderSpec {
            ts_path: o.ts_path.clone(),
            seq_path: o.seq_path.clone(),
            ts_regex: o.ts_regex.clone(),
            ts_unit: o.ts_unit,
        },
        compression: match spec.compression {
            Compression::Off => Offer::Off,
            Compression::Shared => Offer::Shared,
            Compression::Context => Offer::Context,
        },
        io_uring: spec.io_uring,
    };
    // Checked here, once, so a worker process never meets a bad regex or a missing file.
    crate::engine::client::check(&cfg)?;
    let echo = client_echo(
        o,
        &cfg,
        url,
        names.clone(),
        common(spec, p, shards),
        spec.max_message,
    );
    let hdr = outputs.open_hdr(Mode::Client, SystemTime::now())?;
    let (tx, rx) = mpsc::unbounded_channel();
    let agents = reach_agents(o, p.layout, (cfg.sources.len(), spec.force)).await?;
    let engine = ClientSide::start(&cfg, p.layout, spec.out.scale.cap(), agents, tx).await?;
    let agg = Aggregator::new(Mode::Client, o.conns, names, started);
    Ok(Side::new(engine, rx, agg, echo, hdr))
}

/// The client's config echo: what it was told, as the report shows it.
fn client_echo(
    o: &ClientOpts,
    cfg: &ClientConfig,
    url: String,
    names: Vec<String>,
    common: Common,
    max_message: Option<u64>,
) -> Echo {
    Echo::Client(Box::new(ClientEcho {
        url,
        conns: o.conns,
        sources: names,
        rate: o.rate,
        max_inflight: o.max_inflight,
        max_message,
        echo: cfg.echo,
        io_uring: cfg.io_uring,
        connect_timeout_s: seconds(o.connect_timeout),
        batch_window_s: seconds(o.batch_window),
        reconnect_max_backoff_s: o.reconnect.map(seconds),
        churn_per_s: (cfg.churn > 0.0).then_some(cfg.churn),
        headers: cfg.headers.iter().map(|h| redacted(h)).collect(),
        subprotocols: cfg.subprotocols.clone(),
        ca: o.ca.iter().map(|p| p.display().to_string()).collect(),
        insecure: o.insecure && cfg.tls.is_some(),
        tls_resume: cfg.tls.as_ref().map(|t| !t.no_resume),
        compression: cfg.compression,
        segment: o.segment.map(|s| SegmentEcho {
            index: s.index,
            count: s.count,
            of: o.segment_of,
        }),
        talk: talk_echo(o),
        common,
    }))
}

/// With --agents: the agents reached, greeted and their limits checked for their shares (as
/// `c1m doctor` would check them on their machines), and how the server's clock is to be known.
async fn reach_agents(
    o: &ClientOpts,
    layout: crate::workers::Layout,
    (sources, force): (usize, bool),
) -> Result<(
    Vec<crate::workers::agent::Connected>,
    crate::workers::clock::Source,
)> {
    use crate::workers::clock::{self, Source};
    let crate::workers::Layout::Agents(_) = layout else {
        return Ok((Vec::new(), Source::Assumed));
    };
    let token = o.agent_token.as_deref().unwrap_or("");
    let mut server = clock::parse(&o.server_clock).map_err(anyhow::Error::msg)?;
    if let Source::Measured { token, .. } = &mut server {
        *token = std::env::var("C1M_CONTROL_TOKEN").ok();
    }
    let expect = (o.expect_agents, o.expect_timeout);
    let tls = match o.agent_ca.is_empty() {
        true => None,
        false => Some(crate::engine::tls::link_client(&o.agent_ca)?),
    };
    let reached = crate::workers::agent::gather(&o.agents, (token, tls), expect).await?;
    if !force {
        let share = o.conns.div_ceil(reached.len().max(1) as u64);
        for a in &reached {
            let Some(limits) = &a.limits else { continue };
            let who = format!("agent {} ({})", a.host, a.addr);
            let ips = a.own_ips.unwrap_or(sources);
            crate::doctor::preflight_remote(limits, share, Some(ips), &who)
                .map_err(anyhow::Error::msg)?;
        }
    }
    Ok((reached, server))
}

fn talk_echo(o: &crate::cli::ClientOpts) -> TalkEcho {
    TalkEcho {
        send: o.send.iter().map(|t| redacted_text(t)).collect(),
        heartbeat: o.heartbeat.as_ref().map(|(every, t)| {
            format!(
                "{}={}",
                humantime::format_duration(*every),
                redacted_text(t)
            )
        }),
        ping_s: o.ping.map(seconds),
        reply: o
            .replies
            .iter()
            .map(|(m, t)| format!("{m}={}", redacted_text(t)))
            .collect(),
        tokens: o.tokens.as_ref().map(|p| p.display().to_string()),
        ts_path: o.ts_path.clone(),
        seq_path: o.seq_path.clone(),
        ts_regex: o.ts_regex.clone(),
        ts_unit: o.ts_unit,
    }
}

/// A `ws://` or `wss://` URL, split.
pub struct Url {
    pub addr: SocketAddr,
    /// The Host header: the authority as written, port and all.
    pub host: String,
    pub path: String,
    /// `wss://`: TLS, and the host name the certificate must carry.
    pub tls: Option<String>,
}

/// Splits `ws[s]://host[:port][/path]`.
pub fn parse_url(url: &str) -> Result<Url> {
    let (rest, tls, port) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(rest), _) => (rest, false, 80),
        (_, Some(rest)) => (rest, true, 443),
        _ => bail!("--url {url}: the URL must start with ws:// or wss://"),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() {
        bail!("--url {url}: no host");
    }
    let has_port = !authority.ends_with(']') && authority.contains(':');
    let with_port = match has_port {
        true => authority.to_string(),
        false => format!("{authority}:{port}"),
    };
    let name = match has_port {
        true => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        false => authority,
    };
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("--url {url}: cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("--url {url}: {authority} has no address"))?;
    Ok(Url {
        addr,
        host: authority.to_string(),
        path,
        tls: tls.then(|| name.to_string()),
    })
}
