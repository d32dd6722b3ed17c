//! The headless face of `c1m server` and `c1m client`: a banner, a status line a second and
//! the notes on stderr, broadcasts from SIGUSR1 and from `b` typed on stdin, Ctrl-C and SIGTERM,
//! and the final report on stdout (so stdout holds only the report). The run itself is
//! `run::Run`'s.

use crate::cli::{ClientArgs, ServerArgs, TuiMode};
use crate::fmt::{duration, span_of};
use crate::run::notes::Note;
use crate::run::outputs::Finished;
use crate::run::{Event, Run, Spec};
use crate::stats::report;
use crate::workers::Layout;
use anyhow::Result;
use std::time::Instant;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

pub async fn server(args: ServerArgs) -> Result<i32> {
    // Handlers first: a signal that arrives once the banner is out must be handled, not kill us.
    let mut signals = Signals::new(true)?;
    let spec = Spec {
        mode: TuiMode::Server,
        target: 0,
        server: Some(args.opts),
        client: None,
        compression: args.compression.compression,
        max_message: args.message.max_message,
        echo: args.echo.echo,
        io_uring: args.io.io_uring,
        out: args.out,
        duration: args.duration,
        force: args.force,
    };
    let quiet = spec.out.quiet;
    let mut run = Run::start(spec).await?;
    print_notes(&mut run);
    eprintln!("{}", server_banner(&run));
    if let Some(addr) = run.control_addr() {
        let token = match run.server_echo().is_some_and(|e| e.control_token) {
            true => ", bearer token required",
            false => "",
        };
        eprintln!(
            "c1m server: control endpoint on http://{addr}/ (POST /broadcast, GET /stats, \
             GET /metrics{token})"
        );
    }
    let ended = drive(&mut run, &mut signals, quiet).await;
    eprintln!("c1m server: stopping");
    report(run.finish(ended).await?)
}

pub async fn client(mut args: ClientArgs) -> Result<i32> {
    let mut signals = Signals::new(false)?;
    let o = &mut args.opts;
    if let Some(seg) =
        crate::cli::Segment::given(o.segment, o.segments).map_err(anyhow::Error::msg)?
    {
        // This copy's slice; the report names it (config.segment) with the whole target.
        o.segment = Some(seg);
        o.segment_of = o.conns;
        (o.conns, _) = seg.slice(o.conns);
        o.rate /= seg.count as f64;
    }
    let conns = args.opts.conns;
    let spec = Spec {
        mode: TuiMode::Client,
        target: conns,
        server: None,
        client: Some(args.opts),
        compression: args.compression.compression,
        max_message: args.message.max_message,
        echo: args.echo.echo,
        io_uring: args.io.io_uring,
        out: args.out,
        duration: Some(args.duration),
        force: args.force,
    };
    let quiet = spec.out.quiet;
    let mut run = Run::start(spec).await?;
    print_notes(&mut run);
    eprintln!("{}", client_banner(&run));
    let ended = drive(&mut run, &mut signals, quiet).await;
    eprintln!("c1m client: closing connections");
    report(run.finish(ended).await?)
}

fn server_banner(run: &Run) -> String {
    let Some(e) = run.server_echo() else {
        return String::new();
    };
    let cap = e.common.worker_conns;
    let processes = match run.prepared.layout {
        Layout::InProcess => format!("one process, which holds at most {cap} connections here"),
        Layout::Grows => format!(
            "one process for now, adding worker processes as it nears the {cap} connections one \
             process may hold here; --workers N fixes the count"
        ),
        Layout::Workers(n) => format!("{n} worker processes of {} shards", e.common.shards),
        Layout::Agents(n) => format!("{n} agents"),
    };
    let every = e.every_s.map_or("off".into(), |s| {
        duration(std::time::Duration::from_secs_f64(s))
    });
    let (scheme, tls) = match &e.tls_cert {
        Some(cert) => ("wss", format!("; TLS with {cert} (clients: --ca {cert})")),
        None => ("ws", String::new()),
    };
    format!(
        "c1m server: listening on {scheme}://{}/ ({processes}), broadcast every {every}; SIGUSR1 \
         or a line `b` on stdin broadcasts now; Ctrl-C stops and reports{tls}",
        e.listen
    )
}

fn client_banner(run: &Run) -> String {
    let Some(e) = run.client_echo() else {
        return String::new();
    };
    let n = e.sources.len();
    let rate = if e.rate > 0.0 {
        format!("{}", e.rate)
    } else {
        "unlimited".into()
    };
    let hold = e.common.duration_s.map_or("until stopped".into(), |s| {
        duration(std::time::Duration::from_secs_f64(s))
    });
    format!(
        "c1m client: {} connections to {} from {n} source address{} ({}), {rate}/s, holding \
         for {hold}",
        e.conns,
        e.url,
        if n == 1 { "" } else { "es" },
        span_of(&e.sources),
    )
}

/// The signals a headless run answers.
struct Signals {
    usr1: Option<Signal>,
    term: Signal,
    int: Signal,
}

impl Signals {
    /// `broadcasts`: SIGUSR1 broadcasts (a server); otherwise it keeps its default action.
    fn new(broadcasts: bool) -> Result<Signals> {
        Ok(Signals {
            usr1: broadcasts
                .then(|| signal(SignalKind::user_defined1()))
                .transpose()?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

async fn usr1(s: &mut Option<Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Runs until the duration is over, a signal, or (a client) nothing is left to measure;
/// returns what ended it, as the report names it.
async fn drive(run: &mut Run, signals: &mut Signals, quiet: bool) -> &'static str {
    let mut stdin = match run.runs_server() {
        true => stdin_lines(),
        false => mpsc::unbounded_channel().1,
    };
    loop {
        tokio::select! {
            ev = run.next() => match ev {
                Event::Second => {
                    print_notes(run);
                    if !quiet {
                        status(run);
                    }
                }
                Event::Done(b) => eprintln!("{}", Note::done(&b)),
                Event::Deadline => return "duration",
                Event::NoneLeft => {
                    eprintln!("c1m client: no connection is open and none is pending: stopping early");
                    return "no connection left";
                }
            },
            _ = usr1(&mut signals.usr1) => {
                run.broadcast();
            }
            Some(line) = stdin.recv() => {
                if line == "b" {
                    run.broadcast();
                } else {
                    eprintln!("c1m: type `b` and Enter to broadcast; Ctrl-C to stop");
                }
            }
            _ = signals.term.recv() => return "SIGTERM",
            _ = signals.int.recv() => return "SIGINT",
        }
    }
}

fn status(run: &mut Run) {
    let now = Instant::now();
    let snap = run
        .client_snapshot(now)
        .or_else(|| run.server_snapshot(now));
    if let Some(s) = snap {
        eprintln!("{}", report::status_line(&s));
    }
}

fn print_notes(run: &mut Run) {
    for note in run.take_notes() {
        print_note(&note);
    }
}

fn print_note(note: &Note) {
    eprintln!("c1m: {note}");
    if let Some(hint) = note.hint {
        eprintln!("     {hint}");
    }
}

fn report(done: Finished) -> Result<i32> {
    Ok(done.print())
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
