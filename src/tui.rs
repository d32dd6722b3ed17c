//! The console's runtime: the terminal, one `select!` over the frame timer, keys, the engine's
//! deltas and timers, and the final report once the terminal is restored. The screen itself is
//! `ui::App`, which only ever sees snapshots.

use crate::cli::{Every, TuiArgs, TuiMode};
use crate::control::{self, Published};
use crate::headless::{self, Stamper};
use crate::stats::aggregate::Aggregator;
use crate::stats::{Mode, ShardDelta, report};
use crate::sys::limits;
use crate::theme::Theme;
use crate::ui::{App, Command, Header};
use crate::workers::{Layout, Stopped};
use anyhow::{Context, Result};
use futures::StreamExt;
use ratatui::crossterm::event::{Event, EventStream, KeyEventKind};
use ratatui::crossterm::{cursor, execute, terminal};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::sync::{oneshot, watch};

/// At most this many frames a second, whatever the load.
const FRAME: Duration = Duration::from_millis(100);

/// One side of the test as the console drives it.
struct Side<T> {
    engine: T,
    rx: UnboundedReceiver<ShardDelta>,
    agg: Aggregator,
    config: Vec<(&'static str, String)>,
}

impl<T> Side<T> {
    fn drain(&mut self) -> bool {
        let mut any = false;
        while let Ok(d) = self.rx.try_recv() {
            self.agg.apply(d, Instant::now());
            any = true;
        }
        any
    }
}

/// Stops one side's engine, takes its last deltas, and prints and writes its report.
async fn finish<T>(
    side: Side<T>,
    out: &crate::cli::Output,
    json: Option<std::path::PathBuf>,
    stop: impl AsyncFnOnce(T) -> Stopped,
) -> Result<i32> {
    let Side {
        engine,
        rx,
        agg,
        config,
    } = side;
    let stopped = stop(engine).await;
    for note in stopped.notes {
        eprintln!("c1m: {note}");
    }
    let mut side = Side {
        engine: (),
        rx,
        agg,
        config,
    };
    side.drain();
    headless::report_side(
        &mut side.agg,
        out,
        json.as_deref(),
        &side.config,
        stopped.panics,
        stopped.workers,
    )
}

/// Puts the terminal back: raw mode off, main screen, cursor shown. Safe to call twice.
fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
}

/// Restores the terminal when dropped, so every exit path (errors and panics included) leaves
/// the user's shell usable.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> Result<TerminalGuard> {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            hook(info);
        }));
        terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )?;
        Ok(TerminalGuard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

pub async fn run(args: TuiArgs) -> Result<i32> {
    let mut term_sig = signal(SignalKind::terminate())?;
    let mut int_sig = signal(SignalKind::interrupt())?;
    // Everything that can be refused is checked before the terminal changes mode.
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "`c1m tui` needs a terminal on stdin and stdout; for a run without one use \
             `c1m server` and `c1m client`, which print status lines and the same report"
        );
    }
    let theme = Theme::from_env_or(&args.theme)?;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let runs_server = args.mode != TuiMode::Client;
    let runs_client = args.mode != TuiMode::Server;
    let conns = args.client.conns;
    let in_one_process = match args.mode {
        TuiMode::Server => conns,
        TuiMode::Client => conns,
        TuiMode::Local => 2 * conns,
    };
    let scale = &args.out.scale;
    // Both sides split alike: in local mode one process would hold both ends.
    let layout = headless::layout_for(scale, conns, in_one_process, "each side");
    let sockets_per_process = match layout {
        Layout::InProcess => in_one_process,
        Layout::Workers(n) => conns.div_ceil(n as u64),
    };
    let plan = crate::doctor::plan_for(conns, args.client.ips, args.mode);
    let plan = crate::doctor::checks::Plan {
        sockets_per_process,
        ..plan
    };
    if !args.force {
        crate::doctor::preflight(&plan).map_err(|m| anyhow::anyhow!(m))?;
    }
    if runs_client && layout == Layout::InProcess {
        crate::sys::ensure_fds(sockets_per_process, &format!("--conns {conns}"))?;
    }
    // A server's workers are started for the target and not added to later: new connections
    // would still be spread over the full ones (SO_REUSEPORT). `+` stops at what they hold.
    let server_capacity = match layout {
        Layout::Workers(n) if runs_server => Some(n as u64 * scale.cap()),
        _ => None,
    };

    // Before anything starts: an endpoint refused (exposed without a token) starts nothing.
    let endpoint = match (args.server.control, runs_server) {
        (Some(addr), true) => {
            Some(control::bind(addr, args.server.control_token.as_deref()).await?)
        }
        _ => None,
    };

    // The baseline for the measured bytes per connection, before any connection exists.
    let rss_at_start = limits::read().rss.unwrap_or(0);
    let mut server = if runs_server {
        let (engine, rx, config) =
            headless::start_server(&args.server, args.out.shards, layout).await?;
        let agg = Aggregator::new(Mode::Server, 0, Vec::new(), Instant::now());
        Some(Side {
            engine,
            rx,
            agg,
            config,
        })
    } else {
        None
    };
    let url = match &server {
        Some(s) => format!("ws://{}/", s.engine.local_addr()),
        None => args.client.url.clone(),
    };
    let mut client = if runs_client {
        let mut opts = args.client.clone();
        opts.url = url.clone();
        let (engine, rx, config, names) =
            headless::start_client(&opts, args.out.shards, layout, scale.cap()).await?;
        let agg = Aggregator::new(Mode::Client, conns, names, Instant::now());
        Some(Side {
            engine,
            rx,
            agg,
            config,
        })
    } else {
        None
    };

    let (published, published_rx) = watch::channel(None);
    let (control_tx, mut control_rx) = mpsc::channel(16);
    let refusals = endpoint.as_ref().map(|e| e.refusals());
    let control_task = endpoint.map(|e| tokio::spawn(e.serve(published_rx, control_tx)));
    let mut refused_told = false;

    let every = match args.server.every {
        Every::Interval(d) if runs_server => Some(d),
        _ => None,
    };
    let header = Header {
        mode: args.mode,
        address: url.clone(),
        every,
        control_url: args.control_url.clone(),
    };
    let step = args.step.unwrap_or((conns / 10).max(1));
    let mut app = App::new(args.mode, theme, header, conns, step, args.client.rate);
    let mut stamper = Stamper::new(args.server.payload, args.server.pad);
    let started = Instant::now();
    let mut next_broadcast = every.map(|d| started + d);
    app.set_next_broadcast(next_broadcast);
    let deadline = args.duration.map(|d| started + d);

    let guard = TerminalGuard::enter()?;
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    let mut terminal = ratatui::Terminal::new(backend)?;
    terminal.clear()?;
    let mut events = EventStream::new();
    let mut frame = tokio::time::interval(FRAME);
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_limits = Instant::now() - Duration::from_secs(2);
    let mut last_publish = Instant::now();
    let mut dirty = true;
    let mut pending_reply: Option<oneshot::Sender<u64>> = None;
    let mut remote_broadcast: Option<tokio::task::JoinHandle<Result<u64>>> = None;

    let mut frames = 0u64;
    let quit_reason = loop {
        let mut broadcast_now = false;
        tokio::select! {
            _ = frame.tick() => {
                let now = Instant::now();
                if let Some(s) = server.as_mut() {
                    dirty |= s.drain();
                }
                if let Some(c) = client.as_mut() {
                    dirty |= c.drain();
                }
                if now.duration_since(last_limits) >= Duration::from_secs(1) {
                    last_limits = now;
                    let readings = limits::read();
                    // Once enough are open, project memory from what this process really uses
                    // per socket rather than from the doctor's estimate.
                    let open: u64 = server.as_ref().map_or(0, |s| s.agg.active())
                        + client.as_ref().map_or(0, |c| c.agg.active());
                    // Workers' whole resident sets count, baselines included.
                    let workers: Vec<_> = server.as_mut().map(|s| s.engine.rows()).unwrap_or_default()
                        .into_iter()
                        .chain(client.as_mut().map(|c| c.engine.rows()).unwrap_or_default())
                        .collect();
                    let worker_rss: u64 = workers.iter().filter_map(|w| w.rss_bytes).sum();
                    let grown = readings.rss.unwrap_or(0).saturating_sub(rss_at_start) + worker_rss;
                    let user_bytes_per_conn = if open >= 1000 * (1 + workers.len() as u64) {
                        grown as f64 / open as f64
                    } else {
                        plan.user_bytes_per_conn
                    };
                    let plan = crate::doctor::checks::Plan {
                        sockets_per_process,
                        user_bytes_per_conn,
                        ..plan.clone()
                    };
                    app.on_limits(crate::doctor::checks::check(&readings, &plan));
                    dirty = true;
                }
                if let Some(at) = next_broadcast && now >= at {
                    broadcast_now = true;
                    next_broadcast = every.map(|d| at + d);
                    app.set_next_broadcast(next_broadcast);
                }
                if deadline.is_some_and(|d| now >= d) {
                    break "duration";
                }
                for note in server.as_mut().map(|s| s.engine.take_notes()).unwrap_or_default().into_iter()
                    .chain(client.as_mut().map(|c| c.engine.take_notes()).unwrap_or_default())
                {
                    app.note(note, now);
                    dirty = true;
                }
                if let Some(line) = refusals.as_ref().and_then(|r| r.first_news()) {
                    app.note(line, now);
                    dirty = true;
                }
                if dirty {
                    if let Some(s) = server.as_mut() {
                        let mut snap = s.agg.snapshot(now);
                        snap.workers = s.engine.rows();
                        if let Some(line) = headless::first_refusal(&snap, &mut refused_told, &args.server, layout) {
                            app.note(line, now);
                        }
                        if control_task.is_some() && now.duration_since(last_publish) >= Duration::from_secs(1) {
                            last_publish = now;
                            let report = report::json(&snap, headless::config_json(&s.config), headless::VERSION);
                            published.send_replace(Some(Arc::new(Published { snapshot: snap.clone(), report })));
                        }
                        app.on_server(snap, now);
                    }
                    if let Some(c) = client.as_mut() {
                        let mut snap = c.agg.snapshot(now);
                        snap.workers = c.engine.rows();
                        app.on_client(snap, now);
                    }
                    terminal.draw(|f| f.render_widget(&app, f.area()))?;
                    frames += 1;
                    dirty = false;
                }
            }
            ev = events.next() => {
                match ev {
                    Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                        for cmd in app.on_key(key, Instant::now()) {
                            match cmd {
                                Command::Quit => {}
                                Command::SetTarget(n) => {
                                    let n = match server_capacity {
                                        Some(cap) if n > cap => {
                                            app.note(
                                                format!("the server's workers hold at most {cap}: restart with a larger --conns or --workers"),
                                                Instant::now(),
                                            );
                                            app.clamp_target(cap);
                                            cap
                                        }
                                        _ => n,
                                    };
                                    if let Some(c) = client.as_mut() {
                                        c.engine.set_target(n);
                                        c.agg.set_target(n);
                                    }
                                }
                                Command::SetRate(r) => {
                                    if let Some(c) = client.as_mut() { c.engine.set_rate(r) }
                                }
                                Command::SetPaused(p) => {
                                    if let Some(c) = client.as_mut() { c.engine.set_paused(p) }
                                }
                                Command::Broadcast if runs_server => broadcast_now = true,
                                Command::Broadcast => {
                                    if let Some(url) = args.control_url.clone() {
                                        let token = args.server.control_token.clone();
                                        remote_broadcast = Some(tokio::spawn(async move {
                                            control::request_broadcast(&url, token.as_deref()).await
                                        }));
                                    }
                                }
                                // NO_COLOR is the user's standing choice: `t` does not undo it.
                                Command::NextTheme if no_color => {
                                    app.note("NO_COLOR is set: the theme stays mono", Instant::now());
                                }
                                Command::NextTheme => {
                                    let next = app.theme().next_builtin();
                                    app.set_theme(next);
                                }
                            }
                        }
                        if app.quit_requested() {
                            break "q";
                        }
                        dirty = true;
                    }
                    Some(Ok(Event::Resize(..))) => dirty = true,
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break "terminal closed",
                }
            }
            Some(done) = async { server.as_mut().unwrap().engine.next_done().await }, if server.is_some() => {
                app.note(
                    format!("broadcast seq={} sent to {} connections in {:.1} ms", done.seq, done.sent, done.duration_us as f64 / 1000.0),
                    Instant::now(),
                );
                dirty = true;
            }
            res = async { remote_broadcast.as_mut().unwrap().await }, if remote_broadcast.is_some() => {
                remote_broadcast = None;
                let text = match res {
                    Ok(Ok(seq)) => format!("the server broadcast seq={seq}"),
                    Ok(Err(e)) => format!("broadcast request failed: {e:#}"),
                    Err(e) => format!("broadcast request failed: {e}"),
                };
                app.note(text, Instant::now());
                dirty = true;
            }
            Some(control::Command::Broadcast(tx)) = control_rx.recv() => {
                pending_reply = Some(tx);
                broadcast_now = true;
            }
            _ = term_sig.recv() => break "SIGTERM",
            _ = int_sig.recv() => break "SIGINT",
        }
        if broadcast_now && let Some(s) = server.as_mut() {
            let seq = s.engine.next_seq();
            s.engine.broadcast_frame(seq, stamper.stamp(seq));
            if let Some(tx) = pending_reply.take() {
                let _ = tx.send(seq);
            }
        }
    };
    drop(terminal);
    drop(guard);
    let _ = std::io::stdout().flush();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "c1m tui: stopping ({quit_reason}); {frames} frames in {secs:.1} s ({:.1} fps)",
        frames as f64 / secs.max(0.001)
    );
    if let Some(task) = control_task {
        task.abort();
    }

    // The client first, so its report counts what the server sent before closing.
    let mut code = 0;
    if let Some(c) = client {
        code = code.max(
            finish(c, &args.out, args.out.json.clone(), async |e| {
                e.stop().await
            })
            .await?,
        );
    }
    if let Some(s) = server {
        // Local mode writes two reports: the client's at --json, the server's beside it.
        let json = match (&args.out.json, runs_client) {
            (Some(p), true) => Some(p.with_extension("server.json")),
            (p, _) => p.clone(),
        };
        code = code.max(finish(s, &args.out, json, async |e| e.stop().await).await?);
    }
    Ok(code)
}
