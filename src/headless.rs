//! Headless runs: drive the engine from timers and signals, print a status line a second, and
//! finish with the human report (stdout) and the JSON report / HDR log (files).
//! Progress and log lines go to stderr so that stdout holds only the report.

use crate::cli::{ClientArgs, ClientOpts, Every, Output, ServerArgs, ServerOpts, SlowPolicy};
use crate::control::{self, Published};
use crate::engine::client::ClientConfig;
use crate::engine::server::ServerConfig;
use crate::engine::{self, now_us, source};
use crate::proto::payload::{self, Format};
use crate::stats::aggregate::Aggregator;
use crate::stats::aggregate::WorkerRow;
use crate::stats::hdrlog::HdrLog;
use crate::stats::{ErrorClass, Mode, ShardDelta, report};
use crate::workers::{ClientSide, Layout, ServerSide};
use anyhow::{Context, Result, bail};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::sync::{oneshot, watch};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Stamps and encodes broadcast payloads; keeps seed-format timestamps distinct, because a
/// client that sees only a timestamp tells broadcasts apart by it.
pub struct Stamper {
    format: Format,
    pad: usize,
    last_ms: i64,
    buf: Vec<u8>,
}

impl Stamper {
    pub fn new(format: Format, pad: usize) -> Stamper {
        Stamper {
            format,
            pad,
            last_ms: 0,
            buf: Vec::new(),
        }
    }

    pub fn stamp(&mut self, seq: u64) -> &[u8] {
        let mut ts = now_us();
        if self.format == Format::Seed {
            if ts / 1000 <= self.last_ms {
                ts = (self.last_ms + 1) * 1000;
            }
            self.last_ms = ts / 1000;
        }
        self.buf.clear();
        payload::encode(self.format, seq, ts, self.pad, &mut self.buf);
        &self.buf
    }
}

/// Lines typed on stdin, when stdin is a terminal or a pipe (never /dev/null or a file).
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on fd 0 writes into `st`.
    let ok = unsafe { libc::fstat(0, &mut st) } == 0;
    let kind = st.st_mode & libc::S_IFMT;
    if ok && (kind == libc::S_IFIFO || kind == libc::S_IFCHR && unsafe { libc::isatty(0) } == 1) {
        std::thread::spawn(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).unwrap_or(0) > 0 {
                if tx.send(line.trim().to_owned()).is_err() {
                    break;
                }
                line.clear();
            }
        });
    }
    rx
}

fn drain(rx: &mut UnboundedReceiver<ShardDelta>, agg: &mut Aggregator) {
    while let Ok(d) = rx.try_recv() {
        agg.apply(d, Instant::now());
    }
}

/// One line per error class, the first time it occurs: the cause, and what to do about it.
fn log_new_errors(agg: &mut Aggregator) {
    for (class, text) in agg.take_new_error_samples() {
        eprintln!("c1m: first {} error: {text}", class.name());
        if let Some(hint) = hint(class, &text) {
            eprintln!("     {hint}");
        }
    }
}

fn hint(class: ErrorClass, text: &str) -> Option<&'static str> {
    Some(match class {
        ErrorClass::Bind if text.contains("os error 99") => {
            "that source address is not configured on this machine (`ip -br addr` lists them)"
        }
        ErrorClass::AddrNotAvail => {
            "a source address ran out of ports: add addresses (--ips / --source-ips) or widen \
             `sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"`"
        }
        ErrorClass::FdLimit => {
            "out of file descriptors: raise `ulimit -n` (and `sysctl fs.nr_open`, `fs.file-max`)"
        }
        ErrorClass::Refused => {
            "nothing accepted the connection: is the server up at that address? A full accept \
             queue also refuses: see `sysctl net.core.somaxconn`"
        }
        ErrorClass::Timeout => "the server is slow to accept or upgrade: lower --rate",
        _ => return None,
    })
}

/// Prints the report, writes the JSON, and turns the error count into the exit status.
fn finish(
    agg: &mut Aggregator,
    out: &Output,
    config: Config,
    panics: Vec<String>,
    workers: Vec<WorkerRow>,
) -> Result<i32> {
    report_side(agg, out, out.json.as_deref(), &config, panics, workers)
}

/// The end of one side's run: the human report on stdout, the JSON file if asked, and the exit
/// status (2 if a shard crashed, 1 if errors exceed --max-errors).
pub fn report_side(
    agg: &mut Aggregator,
    out: &Output,
    json: Option<&std::path::Path>,
    config: &[(&str, String)],
    panics: Vec<String>,
    workers: Vec<WorkerRow>,
) -> Result<i32> {
    let mut snap = agg.snapshot(Instant::now());
    snap.workers = workers;
    println!("{}", report::human(&snap, config));
    if let Some(path) = json {
        let doc = report::json(&snap, config_json(config), VERSION);
        let text = serde_json::to_string_pretty(&doc)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
        eprintln!("c1m: JSON report written to {}", path.display());
    }
    if !panics.is_empty() {
        for p in &panics {
            eprintln!(
                "c1m: a shard thread crashed: {p}; its connections are missing from the report"
            );
        }
        return Ok(2);
    }
    let errors = snap.errors.total;
    if errors > out.max_errors {
        eprintln!(
            "c1m: {errors} errors counted, more than --max-errors {}: exit status 1",
            out.max_errors
        );
        return Ok(1);
    }
    Ok(0)
}

pub fn config_json(config: &[(&str, String)]) -> serde_json::Value {
    serde_json::Value::Object(
        config
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Starts a server on `opts`, in this process or in worker processes; returns it, its delta
/// stream and the effective config.
pub async fn start_server(
    opts: &ServerOpts,
    shards: Option<usize>,
    layout: Layout,
) -> Result<(ServerSide, UnboundedReceiver<ShardDelta>, Config)> {
    let shards = shards.unwrap_or_else(|| match layout {
        Layout::InProcess => engine::default_shards(),
        Layout::Workers(n) => crate::workers::shards_per_worker(n),
    });
    let cfg = ServerConfig {
        listen: opts.listen,
        shards,
        handshake_timeout: opts.handshake_timeout,
        joins_group: false,
        max_conns: opts.max_conns,
        slow: match opts.slow_policy {
            SlowPolicy::Drop => engine::server::SlowPolicy::Drop,
            SlowPolicy::Close => engine::server::SlowPolicy::Close {
                after: opts.slow_close_after,
            },
        },
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let server = ServerSide::start(&cfg, layout, tx).await?;
    let every = match opts.every {
        Every::Off => "off".to_string(),
        Every::Interval(d) => fmt_duration(d),
    };
    let mut config = vec![
        ("listen", server.local_addr().to_string()),
        ("every", every),
        ("payload", format!("{:?}", opts.payload).to_lowercase()),
        ("pad", opts.pad.to_string()),
        ("shards", shards.to_string()),
        ("handshake_timeout", fmt_duration(opts.handshake_timeout)),
        (
            "max_conns",
            opts.max_conns.map_or("none".into(), |n| n.to_string()),
        ),
        (
            "slow_policy",
            match opts.slow_policy {
                SlowPolicy::Drop => "drop".to_string(),
                SlowPolicy::Close => format!("close after {} missed", opts.slow_close_after),
            },
        ),
        (
            "control",
            match (opts.control, &opts.control_token) {
                (None, _) => "off".into(),
                (Some(a), None) => a.to_string(),
                // Never the token itself: reports are shared.
                (Some(a), Some(_)) => format!("{a} (bearer token required)"),
            },
        ),
    ];
    if let Layout::Workers(n) = layout {
        config.push(("workers", n.to_string()));
    }
    Ok((server, rx, config))
}

/// The first time the server has turned a connection away at `--max-conns`: what happened and
/// what to do about it, once.
pub fn first_refusal(
    snap: &crate::stats::aggregate::Snapshot,
    told: &mut bool,
    opts: &ServerOpts,
    layout: Layout,
) -> Option<String> {
    if *told || snap.connections.refused == 0 {
        return None;
    }
    *told = true;
    let max = opts.max_conns.unwrap_or(0);
    let share = match layout {
        Layout::Workers(n) => format!(" ({} per worker process)", max.div_ceil(n.max(1) as u64)),
        Layout::InProcess => String::new(),
    };
    Some(format!(
        "turned a connection away with 503 at --max-conns {max}{share}; refusals are counted \
         as connections.refused (a c1m client counts handshake_rejected); raise --max-conns to \
         take more"
    ))
}

/// Prints what workers said (their stderr, their deaths) since the last call.
fn log_notes(notes: Vec<String>) {
    for n in notes {
        eprintln!("c1m: {n}");
    }
}

/// The effective values of a run, in the order the report prints them.
pub type Config = Vec<(&'static str, String)>;

pub async fn server(args: ServerArgs) -> Result<i32> {
    // Handlers first: a signal that arrives once the banner is out must be handled, not kill us.
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    if !args.force {
        // The server alone on this machine; the peers' count is unknown, so no target.
        let plan = crate::doctor::plan_for(0, None, crate::cli::TuiMode::Server);
        crate::doctor::preflight(&plan).map_err(anyhow::Error::msg)?;
    }
    // Before the server starts: an endpoint refused (exposed without a token) starts nothing.
    let endpoint = match args.opts.control {
        Some(addr) => Some(control::bind(addr, args.opts.control_token.as_deref()).await?),
        None => None,
    };
    let layout = Layout::choose(args.out.scale.workers, 0, 0, args.out.scale.cap());
    let (mut server, mut rx, config) = start_server(&args.opts, args.out.shards, layout).await?;
    let processes = match layout {
        Layout::InProcess => {
            let cap = args.out.scale.cap();
            format!(
                "one process, which holds at most {cap} connections here (--workers N for more)"
            )
        }
        Layout::Workers(n) => format!("{n} worker processes of {} shards", config[4].1),
    };
    eprintln!(
        "c1m server: listening on ws://{}/ ({processes}), broadcast every {}; \
         SIGUSR1 or a line `b` on stdin broadcasts now; Ctrl-C stops and reports",
        server.local_addr(),
        config[1].1
    );
    let started = Instant::now();
    let mut agg = Aggregator::new(Mode::Server, 0, Vec::new(), started);
    let mut stamper = Stamper::new(args.opts.payload, args.opts.pad);
    let mut status = tokio::time::interval(Duration::from_secs(1));
    status.reset();
    let period = match args.opts.every {
        Every::Interval(d) => d,
        Every::Off => Duration::from_secs(86_400 * 365),
    };
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut stdin = stdin_lines();
    let (published, published_rx) = watch::channel(None);
    let (control_tx, mut control) = mpsc::channel(16);
    let mut refusals = None;
    let control_task = match endpoint {
        Some(endpoint) => {
            let token = match args.opts.control_token {
                Some(_) => ", bearer token required",
                None => "",
            };
            eprintln!(
                "c1m server: control endpoint on http://{}/ (POST /broadcast, GET /stats, GET /metrics{token})",
                endpoint.local_addr()?
            );
            refusals = Some(endpoint.refusals());
            Some(tokio::spawn(endpoint.serve(published_rx, control_tx)))
        }
        None => None,
    };
    let mut refused_told = false;
    let mut reply: Option<oneshot::Sender<u64>> = None;
    loop {
        let broadcast_now = tokio::select! {
            Some(d) = rx.recv() => { agg.apply(d, Instant::now()); false }
            _ = status.tick() => {
                log_new_errors(&mut agg);
                log_notes(server.take_notes());
                let mut snapshot = agg.snapshot(Instant::now());
                snapshot.workers = server.rows();
                if let Some(line) = refusals.as_ref().and_then(|r| r.first_news()) {
                    eprintln!("c1m: {line}");
                }
                if let Some(line) = first_refusal(&snapshot, &mut refused_told, &args.opts, layout) {
                    eprintln!("c1m server: {line}");
                }
                if !args.out.quiet {
                    eprintln!("{}", report::status_line(&snapshot));
                }
                if control_task.is_some() {
                    let report = report::json(&snapshot, config_json(&config), VERSION);
                    published.send_replace(Some(Arc::new(Published { snapshot, report })));
                }
                false
            }
            Some(control::Command::Broadcast(tx)) = control.recv() => {
                reply = Some(tx);
                true
            }
            _ = timer.tick(), if args.opts.every != Every::Off => true,
            _ = usr1.recv() => true,
            Some(line) = stdin.recv() => {
                if line == "b" { true } else {
                    eprintln!("c1m: type `b` and Enter to broadcast; Ctrl-C to stop");
                    false
                }
            }
            Some(done) = server.next_done() => {
                eprintln!(
                    "broadcast seq={} sent to {} connections in {:.1} ms{}",
                    done.seq, done.sent, done.duration_us as f64 / 1000.0,
                    if done.dropped > 0 { format!(" ({} not queued: peers not reading)", done.dropped) } else { String::new() }
                );
                false
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => break,
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        if broadcast_now {
            let seq = server.next_seq();
            let payload = stamper.stamp(seq);
            server.broadcast_frame(seq, payload);
            if let Some(tx) = reply.take() {
                let _ = tx.send(seq);
            }
        }
    }
    if let Some(task) = control_task {
        task.abort();
    }
    eprintln!("c1m server: stopping");
    let stopped = server.stop().await;
    log_notes(stopped.notes);
    drain(&mut rx, &mut agg);
    log_new_errors(&mut agg);
    finish(&mut agg, &args.out, config, stopped.panics, stopped.workers)
}

/// Splits `ws://host[:port][/path]` into the socket address, the Host header and the path.
pub fn parse_url(url: &str) -> Result<(SocketAddr, String, String)> {
    let Some(rest) = url.strip_prefix("ws://") else {
        if url.starts_with("wss://") {
            bail!("--url {url}: wss:// (TLS) is not supported; use ws://");
        }
        bail!("--url {url}: the URL must start with ws://");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() {
        bail!("--url {url}: no host");
    }
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:80")
    } else {
        authority.to_string()
    };
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("--url {url}: cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("--url {url}: {authority} has no address"))?;
    Ok((addr, authority.to_string(), path))
}

/// Starts a client on `opts`, in this process or in worker processes; returns it, its delta
/// stream, the effective config and the source address names.
pub async fn start_client(
    opts: &ClientOpts,
    shards: Option<usize>,
    layout: Layout,
    per_worker: u64,
) -> Result<(
    ClientSide,
    UnboundedReceiver<ShardDelta>,
    Config,
    Vec<String>,
)> {
    let shards = shards.unwrap_or_else(|| match layout {
        Layout::InProcess => engine::default_shards(),
        Layout::Workers(n) => crate::workers::shards_per_worker(n),
    });
    let (addr, host, path) = parse_url(&opts.url)?;
    let ips = opts.ips.unwrap_or_else(|| source::auto_count(opts.conns));
    let sources = source::plan(addr, ips, opts.source_ips.as_deref())?;
    let cfg = ClientConfig {
        addr,
        host,
        path,
        conns: opts.conns,
        rate: opts.rate,
        sources: sources.clone(),
        max_inflight: opts.max_inflight,
        connect_timeout: opts.connect_timeout,
        shards,
        batch_window: opts.batch_window,
        reconnect: opts.reconnect,
    };
    let names: Vec<String> = sources
        .iter()
        .map(|s| s.map_or_else(|| "auto".to_string(), |ip| ip.to_string()))
        .collect();
    let mut config = vec![
        ("url", opts.url.clone()),
        ("conns", opts.conns.to_string()),
        ("sources", summarize(&names)),
        ("rate", opts.rate.to_string()),
        ("max_inflight", opts.max_inflight.to_string()),
        ("connect_timeout", fmt_duration(opts.connect_timeout)),
        ("shards", shards.to_string()),
        ("batch_window", fmt_duration(opts.batch_window)),
        (
            "reconnect",
            opts.reconnect.map_or("off".into(), |d| {
                format!("backoff up to {}", fmt_duration(d))
            }),
        ),
    ];
    if let Layout::Workers(n) = layout {
        config.push(("workers", n.to_string()));
        config.push(("worker_conns", per_worker.to_string()));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let client = ClientSide::start(&cfg, layout, per_worker, tx).await?;
    Ok((client, rx, config, names))
}

/// How a side of `conns` connections runs, and a line saying so when it takes workers.
pub fn layout_for(scale: &crate::cli::Scale, conns: u64, sockets: u64, side: &str) -> Layout {
    let cap = scale.cap();
    let layout = Layout::choose(scale.workers, conns, sockets, cap);
    if let (Layout::Workers(n), None) = (layout, scale.workers) {
        let (_, hard) = crate::sys::nofile();
        eprintln!(
            "c1m: {conns} connections are more than one process may hold here ({cap}: the hard \
             RLIMIT_NOFILE of {hard} less 100): the {side} runs as {n} worker processes"
        );
    }
    layout
}

pub async fn client(args: ClientArgs) -> Result<i32> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let conns = args.opts.conns;
    let layout = layout_for(&args.out.scale, conns, conns, "client");
    if !args.force {
        let plan = crate::doctor::plan_for(conns, args.opts.ips, crate::cli::TuiMode::Client)
            .split(layout.workers());
        crate::doctor::preflight(&plan).map_err(anyhow::Error::msg)?;
    }
    if layout == Layout::InProcess
        && let Err(e) = crate::sys::ensure_fds(conns, &format!("--conns {conns}"))
    {
        if !args.force {
            return Err(e);
        }
        // The user asked to start anyway: open what the limit allows, count the rest.
        eprintln!(
            "c1m: {e:#}\nc1m: --force: starting anyway; the connections past the limit will \
             fail as fd_limit"
        );
    }
    let (mut client, mut rx, mut config, names) =
        start_client(&args.opts, args.out.shards, layout, args.out.scale.cap()).await?;
    eprintln!(
        "c1m client: {} connections to {} from {} source address{} ({}), {}/s, holding for {}",
        args.opts.conns,
        args.opts.url,
        names.len(),
        if names.len() == 1 { "" } else { "es" },
        summarize(&names),
        if args.opts.rate > 0.0 {
            format!("{}", args.opts.rate)
        } else {
            "unlimited".into()
        },
        fmt_duration(args.duration)
    );
    config.push(("duration", fmt_duration(args.duration)));
    let started = Instant::now();
    let mut agg = Aggregator::new(Mode::Client, args.opts.conns, names, started);
    let mut hdr = match &args.opts.hdr_log {
        Some(p) => Some(
            HdrLog::create(p, SystemTime::now())
                .with_context(|| format!("cannot write the HDR log {}", p.display()))?,
        ),
        None => None,
    };
    let mut status = tokio::time::interval(Duration::from_secs(1));
    status.reset();
    let end = tokio::time::Instant::now() + args.duration;
    let mut last_interval = started;
    loop {
        tokio::select! {
            Some(d) = rx.recv() => agg.apply(d, Instant::now()),
            _ = status.tick() => {
                let now = Instant::now();
                if let Some(log) = hdr.as_mut() {
                    let h = agg.take_interval();
                    log.write_interval(&h, last_interval - started, now - last_interval)?;
                    last_interval = now;
                }
                log_new_errors(&mut agg);
                log_notes(client.take_notes());
                let mut snap = agg.snapshot(now);
                snap.workers = client.rows();
                if !args.out.quiet {
                    eprintln!("{}", report::status_line(&snap));
                }
                let c = &snap.connections;
                // With --reconnect an empty client is waiting for its server to come back.
                if args.opts.reconnect.is_none()
                    && c.established + c.failed >= c.target && c.active == 0 && c.target > 0
                {
                    eprintln!("c1m client: no connection is open and none is pending: stopping early");
                    break;
                }
            }
            _ = tokio::time::sleep_until(end) => break,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    eprintln!("c1m client: closing connections");
    let stopped = client.stop().await;
    log_notes(stopped.notes);
    drain(&mut rx, &mut agg);
    log_new_errors(&mut agg);
    if let Some(log) = hdr.as_mut() {
        let now = Instant::now();
        let h = agg.take_interval();
        log.write_interval(&h, last_interval - started, now - last_interval)?;
    }
    finish(&mut agg, &args.out, config, stopped.panics, stopped.workers)
}

/// "127.0.0.2 … 127.0.0.11" for a long list.
fn summarize(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a}, {b}"),
        [first, .., last] => format!("{first} … {last}"),
    }
}
