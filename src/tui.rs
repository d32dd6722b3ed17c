//! The console face of `c1m tui`: the terminal's lifecycle and a [`Console`] that turns what
//! happens (a frame tick, a key, an event of the run, a signal) into calls on the run and
//! updates of the screen's state (`ui::App`), one method per event in the manner of ratatui's
//! async examples. The run is `run::Run`'s; the console only steers and draws it.
//!
//! [`Console::run`] takes the terminal backend, the input events and the stop signals as
//! arguments, so a test drives the whole console in-process on ratatui's `TestBackend` with
//! scripted keys against a real loopback engine.

use crate::cli::{Every, TuiArgs, TuiMode};
use crate::control;
use crate::run::notes::Note;
use crate::run::{self, Run, Spec};
use crate::theme::Theme;
use crate::ui::{App, Command, Header};
use anyhow::{Context, Result};
use futures::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::crossterm::event::{Event, EventStream, KeyEvent, KeyEventKind};
use ratatui::crossterm::{cursor, execute, terminal};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

/// At most this many frames a second, whatever the load.
const FRAME: Duration = Duration::from_millis(100);
/// The limits pane is re-read this often.
const LIMITS_EVERY: Duration = Duration::from_secs(1);

/// `c1m tui`: checks and starts the run, hands the terminal to the console, and prints the
/// report once the terminal is back.
pub async fn run(args: TuiArgs) -> Result<i32> {
    // Everything that can be refused is checked before the terminal changes mode.
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "`c1m tui` needs a terminal on stdin and stdout; for a run without one use \
             `c1m server` and `c1m client`, which print status lines and the same report"
        );
    }
    let theme = Theme::from_env_or(&args.theme)?;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let run = Run::start(spec(&args)).await?;
    let mut console = Console::new(run, &args, theme, no_color);
    let stops = signals()?;
    let started = Instant::now();
    let ended = {
        let _guard = TerminalGuard::enter()?;
        let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
        let mut terminal = Terminal::new(backend)?;
        terminal.clear()?;
        console
            .run(&mut terminal, EventStream::new(), stops)
            .await?
    };
    let _ = std::io::stdout().flush();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "c1m tui: stopping ({ended}); {} frames in {secs:.1} s ({:.1} fps)",
        console.frames,
        console.frames as f64 / secs.max(0.001)
    );
    Ok(console.into_run().finish(ended).await?.print())
}

/// What the console's command line asks of a run.
pub fn spec(args: &TuiArgs) -> Spec {
    let mode = args.mode;
    Spec {
        mode,
        target: args.client.conns,
        server: (mode != TuiMode::Client).then(|| args.server.clone()),
        client: (mode != TuiMode::Server).then(|| args.client.clone()),
        compression: args.compression.compression,
        max_message: args.message.max_message,
        echo: args.echo.echo,
        io_uring: args.io.io_uring,
        out: args.out.clone(),
        duration: args.duration,
        force: args.force,
    }
}

/// SIGTERM and SIGINT as a stream of the names the report gives them.
fn signals() -> Result<impl Stream<Item = &'static str> + Unpin> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if tx.send(name).is_err() {
                break;
            }
        }
    });
    Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|name| (name, rx))
    })))
}

/// The console: the run, the screen's state, and what is in flight between them.
pub struct Console {
    run: Run,
    app: App,
    no_color: bool,
    control_url: Option<String>,
    control_token: Option<String>,
    /// A broadcast asked of a remote server's control endpoint (client mode).
    remote: Option<JoinHandle<Result<u64>>>,
    limits_at: Option<Instant>,
    /// Redraw at the next frame: a key, a resize, an event of the run…
    dirty: bool,
    /// …or a delta since the last frame.
    changes: u64,
    pub frames: u64,
    /// `C1M_TUI_FRAMES_LOG=PATH` (for bench/soak.sh): each second, the frames drawn so far.
    frames_log: Option<std::fs::File>,
}

impl Console {
    pub fn new(run: Run, args: &TuiArgs, theme: Theme, no_color: bool) -> Console {
        let every = match args.server.every {
            Every::Interval(d) if run.runs_server() => Some(d),
            _ => None,
        };
        let tls = run.server_echo().is_some_and(|e| e.tls_cert.is_some());
        let address = match run.server_addr() {
            Some(a) if tls => format!("wss://{a}/"),
            Some(a) => format!("ws://{a}/"),
            None => args.client.url.clone(),
        };
        let header = Header {
            mode: args.mode,
            address,
            every,
            control_url: args.control_url.clone(),
        };
        let conns = args.client.conns;
        let step = args.step.unwrap_or((conns / 10).max(1));
        let app = App::new(args.mode, theme, header, conns, step, args.client.rate);
        Console {
            run,
            app,
            no_color,
            control_url: args.control_url.clone(),
            control_token: args.server.control_token.clone(),
            remote: None,
            limits_at: None,
            dirty: true,
            changes: 0,
            frames: 0,
            frames_log: std::env::var_os("C1M_TUI_FRAMES_LOG").and_then(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .ok()
            }),
        }
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    pub fn into_run(self) -> Run {
        self.run
    }

    /// Runs until a quit key, a stop signal, the end of the input or `--duration`; returns
    /// what ended it, as the report names it.
    pub async fn run<B: Backend>(
        &mut self,
        terminal: &mut Terminal<B>,
        mut input: impl Stream<Item = std::io::Result<Event>> + Unpin,
        mut stops: impl Stream<Item = &'static str> + Unpin,
    ) -> Result<&'static str>
    where
        B::Error: Send + Sync + 'static,
    {
        let mut frame = tokio::time::interval(FRAME);
        frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let ended = tokio::select! {
                _ = frame.tick() => self.on_frame(terminal)?,
                ev = input.next() => self.on_input(ev),
                ev = self.run.next() => self.on_run(ev),
                res = remote(&mut self.remote) => self.on_remote(res),
                Some(stop) = stops.next() => Some(stop),
            };
            if let Some(ended) = ended {
                return Ok(ended);
            }
        }
    }

    /// The frame timer: snapshots to the screen, the limits once a second, and a redraw when
    /// something changed.
    fn on_frame<B: Backend>(&mut self, terminal: &mut Terminal<B>) -> Result<Option<&'static str>>
    where
        B::Error: Send + Sync + 'static,
    {
        let now = Instant::now();
        if self.limits_at.is_none_or(|t| now >= t) {
            self.limits_at = Some(now + LIMITS_EVERY);
            self.app.on_limits(self.run.limits());
            self.dirty = true;
        }
        if self.dirty || self.run.changes() != self.changes {
            if let Some(s) = self.run.server_snapshot(now) {
                self.app.on_server(s, now);
            }
            if let Some(c) = self.run.client_snapshot(now) {
                self.app.on_client(c, now);
            }
        }
        self.app.set_next_broadcast(self.run.next_broadcast());
        self.app.tick(now);
        let changes = self.run.changes();
        if !self.dirty && changes == self.changes {
            return Ok(None);
        }
        self.changes = changes;
        terminal
            .draw(|f| f.render_widget(&self.app, f.area()))
            .context("cannot draw the console")?;
        self.frames += 1;
        self.dirty = false;
        Ok(None)
    }

    fn on_input(&mut self, ev: Option<std::io::Result<Event>>) -> Option<&'static str> {
        match ev {
            Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => self.on_key(key),
            Some(Ok(Event::Resize(..))) => {
                self.dirty = true;
                None
            }
            Some(Ok(_)) => None,
            Some(Err(_)) | None => Some("terminal closed"),
        }
    }

    fn on_key(&mut self, key: KeyEvent) -> Option<&'static str> {
        self.dirty = true;
        for cmd in self.app.on_key(key, Instant::now()) {
            self.on_command(cmd);
        }
        self.app.quit_requested()
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Quit(_) => {}
            Command::SetTarget(n) => {
                if let Err(cap) = self.run.set_target(n) {
                    let text = format!(
                        "the server's workers hold at most {cap}: restart with a larger \
                         --conns or --workers"
                    );
                    self.app.note(text, now);
                    self.app.clamp_target(cap);
                }
            }
            Command::SetRate(r) => self.run.set_rate(r),
            Command::SetPaused(p) => self.run.set_paused(p),
            Command::Broadcast => self.broadcast(),
            // NO_COLOR is the user's standing choice: `t` does not undo it.
            Command::NextTheme if self.no_color => {
                self.app.note("NO_COLOR is set: the theme stays mono", now);
            }
            Command::NextTheme => {
                let next = self.app.theme().next_builtin();
                self.app.set_theme(next);
            }
        }
    }

    /// `b`: here when the server runs here, else through the server's control endpoint.
    fn broadcast(&mut self) {
        if self.run.broadcast().is_some() {
            return;
        }
        if let Some(url) = self.control_url.clone() {
            let token = self.control_token.clone();
            self.remote = Some(tokio::spawn(async move {
                control::request_broadcast(&url, token.as_deref()).await
            }));
        }
    }

    fn on_run(&mut self, ev: run::Event) -> Option<&'static str> {
        let now = Instant::now();
        self.dirty = true;
        match ev {
            run::Event::Second => {
                if let Some(log) = self.frames_log.as_mut() {
                    let unix = crate::engine::now_us() / 1_000_000;
                    let _ = writeln!(log, "{unix} {}", self.frames);
                }
                for n in self.run.take_notes() {
                    self.app.note(note_text(&n), now);
                }
                None
            }
            run::Event::Done(b) => {
                self.app.note(Note::done(&b), now);
                None
            }
            run::Event::Deadline => Some("duration"),
            // The console stays: `+` opens more.
            run::Event::NoneLeft => None,
        }
    }

    fn on_remote(
        &mut self,
        res: Result<Result<u64>, tokio::task::JoinError>,
    ) -> Option<&'static str> {
        self.remote = None;
        let text = match res {
            Ok(Ok(seq)) => format!("the server broadcast seq={seq}"),
            Ok(Err(e)) => format!("broadcast request failed: {e:#}"),
            Err(e) => format!("broadcast request failed: {e}"),
        };
        self.app.note(text, Instant::now());
        self.dirty = true;
        None
    }
}

/// A note as the footer shows it: the hint after the text.
fn note_text(n: &Note) -> String {
    match n.hint {
        Some(h) => format!("{n} ({h})"),
        None => n.to_string(),
    }
}

async fn remote(
    task: &mut Option<JoinHandle<Result<u64>>>,
) -> Result<Result<u64>, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
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
