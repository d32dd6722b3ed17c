//! The console's state and its pure update functions. Nothing here reads a clock, a socket or
//! the terminal: snapshots, limits, keys and `now` come in as arguments; [`Command`]s go out for
//! the runtime (`tui.rs`) to carry to the engine.

use super::keys::{self, Action};
use crate::cli::TuiMode;
use crate::doctor::checks::Check;
use crate::stats::{Snapshot, WorkerRow, WorkerState};
use crate::theme::Theme;
use ratatui::crossterm::event::KeyEvent;
use std::fmt;
use std::time::{Duration, Instant};

/// How long a footer note stays.
pub const NOTE_FOR: Duration = Duration::from_secs(5);
/// Where `[` takes an unlimited rate.
pub const FIRST_FINITE_RATE: f64 = 10_000.0;
/// `]` stops doubling here.
pub const MAX_RATE: f64 = 10_000_000.0;
/// `[` stops halving here.
pub const MIN_RATE: f64 = 1.0;

/// What the header shows and what decides whether `b` can work in client mode.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub mode: TuiMode,
    /// Server: `ws://listen/`; client: the URL it connects to.
    pub address: String,
    /// The server's timed broadcast interval; `None` when broadcasts are on demand (or unknown,
    /// in client mode).
    pub every: Option<Duration>,
    /// Client mode: the server's control endpoint that `b` asks to broadcast.
    pub control_url: Option<String>,
}

/// What the app asks of the runtime.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Client: hold this many connections (open more or close some).
    SetTarget(u64),
    /// Client: new connections per second; 0 = unlimited.
    SetRate(f64),
    /// Client: stop or resume opening connections.
    SetPaused(bool),
    /// Server/local: broadcast now. Client: ask the control URL to (only sent when one is set).
    Broadcast,
    /// Switch to the next built-in theme: `app.set_theme(app.theme().next_builtin())`.
    NextTheme,
    /// End the run; the key that asked, as the report names it (`q`, `Ctrl-C`).
    Quit(&'static str),
}

/// Where the client's ramp stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ramp {
    /// Open + connecting < target.
    Ramping,
    /// `p` pressed.
    Paused,
    /// Open + connecting = target (or the target is reached with some still connecting).
    Holding,
    /// Open > target: connections are being closed after a `-`.
    Closing,
}

impl Ramp {
    /// From the live target and the client's counts. Closing wins over paused (closing is not
    /// paused by `p`), paused over the rest.
    pub fn derive(target: u64, active: u64, connecting: u64, paused: bool) -> Ramp {
        if active > target {
            Ramp::Closing
        } else if paused {
            Ramp::Paused
        } else if active + connecting < target {
            Ramp::Ramping
        } else {
            Ramp::Holding
        }
    }
}

impl fmt::Display for Ramp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Ramp::Ramping => "ramping",
            Ramp::Paused => "paused",
            Ramp::Holding => "holding",
            Ramp::Closing => "closing",
        })
    }
}

/// One side's worker processes, counted when its snapshot arrives so that a frame reads counts
/// and touches only the rows it shows, however many workers there are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fleet {
    pub running: usize,
    /// Positions in the snapshot's `workers` of the ones that died, in index order.
    pub died: Vec<usize>,
}

impl Fleet {
    pub fn count(rows: &[WorkerRow]) -> Fleet {
        let mut f = Fleet::default();
        for (i, w) in rows.iter().enumerate() {
            match w.state {
                WorkerState::Running => f.running += 1,
                WorkerState::Died => f.died.push(i),
                WorkerState::Starting | WorkerState::Stopped => {}
            }
        }
        f
    }
}

pub struct App {
    pub(super) mode: TuiMode,
    pub(super) theme: Theme,
    pub(super) header: Header,
    pub(super) server: Option<Snapshot>,
    pub(super) client: Option<Snapshot>,
    /// Counts over `server.workers` and `client.workers`.
    pub(super) server_fleet: Fleet,
    pub(super) client_fleet: Fleet,
    /// `None` until the first reading.
    pub(super) limits: Option<Vec<Check>>,
    pub(super) target: u64,
    pub(super) step: u64,
    pub(super) rate: f64,
    pub(super) paused: bool,
    pub(super) help_open: bool,
    quit: Option<&'static str>,
    /// The note and when it expires.
    note: Option<(String, Instant)>,
    pub(super) next_broadcast: Option<Instant>,
    /// The latest `now` passed in; countdowns and note expiry are measured from it.
    pub(super) now: Option<Instant>,
    /// Each side's handshakes per second, newest first, the most a sparkline shows: taken out
    /// of a snapshot's history, which the console does not keep (a snapshot held across the
    /// next second made the run's history copy itself on every point it added).
    server_setup: Vec<u64>,
    client_setup: Vec<u64>,
}

/// Points of setup rate kept for the sparkline: wider than any terminal.
const SETUP_KEPT: usize = 1024;

/// Takes a snapshot's setup rates into `into`, newest first, and lets go of its history.
fn keep_setup(into: &mut Vec<u64>, s: &mut Snapshot) {
    into.clear();
    let rates = s.series.iter().rev().take(SETUP_KEPT);
    into.extend(rates.map(|p| p.setup_per_s.max(0.0).round() as u64));
    s.series = Default::default();
}

impl App {
    pub fn new(
        mode: TuiMode,
        theme: Theme,
        header: Header,
        target: u64,
        step: u64,
        rate: f64,
    ) -> App {
        App {
            mode,
            theme,
            header: Header { mode, ..header },
            server: None,
            client: None,
            server_fleet: Fleet::default(),
            client_fleet: Fleet::default(),
            limits: None,
            target,
            step: step.max(1),
            rate: rate.max(0.0),
            paused: false,
            help_open: false,
            quit: None,
            note: None,
            next_broadcast: None,
            now: None,
            server_setup: Vec::new(),
            client_setup: Vec::new(),
        }
    }

    /// The server side's latest snapshot (server and local modes); the previous one is dropped.
    pub fn on_server(&mut self, mut s: Snapshot, now: Instant) {
        self.now = Some(now);
        self.server_fleet = Fleet::count(&s.workers);
        keep_setup(&mut self.server_setup, &mut s);
        self.server = Some(s);
    }

    /// The client side's latest snapshot (client and local modes).
    pub fn on_client(&mut self, mut s: Snapshot, now: Instant) {
        self.now = Some(now);
        self.client_fleet = Fleet::count(&s.workers);
        keep_setup(&mut self.client_setup, &mut s);
        self.client = Some(s);
    }

    /// Handshakes per second, one point a second from the run's history, newest first: the
    /// server's in server mode, else the client's.
    pub fn setup_history(&self) -> impl Iterator<Item = u64> + '_ {
        match self.mode {
            TuiMode::Server => self.server_setup.iter().copied(),
            _ => self.client_setup.iter().copied(),
        }
    }

    /// The client's p99 of each broadcast, newest first (0 for one with nothing timed).
    pub fn p99_history(&self) -> impl Iterator<Item = u64> + '_ {
        let rows = match self.client.as_ref().map(|c| &c.broadcasts) {
            Some(crate::stats::Broadcasts::Client(rows)) => &rows[..],
            _ => &[],
        };
        rows.iter().rev().map(|r| r.latency_us.map_or(0, |l| l.p99))
    }

    pub fn on_limits(&mut self, checks: Vec<Check>) {
        self.limits = Some(checks);
    }

    pub fn set_next_broadcast(&mut self, at: Option<Instant>) {
        self.next_broadcast = at;
    }

    /// Moves the app's clock without a snapshot (countdowns, note expiry).
    pub fn tick(&mut self, now: Instant) {
        self.now = Some(now);
    }

    /// Shows `msg` in the footer for [`NOTE_FOR`].
    pub fn note(&mut self, msg: impl Into<String>, now: Instant) {
        self.now = Some(now);
        self.note = Some((msg.into(), now + NOTE_FOR));
    }

    /// The footer note, if one is showing at the app's `now`.
    pub fn current_note(&self) -> Option<&str> {
        let (msg, until) = self.note.as_ref()?;
        match self.now {
            Some(now) if now >= *until => None,
            _ => Some(msg),
        }
    }

    /// Worker processes on both sides; 0 when each side runs in this process.
    pub fn worker_count(&self) -> usize {
        [&self.server, &self.client]
            .into_iter()
            .flatten()
            .map(|s| s.workers.len())
            .sum()
    }

    pub fn theme(&self) -> &Theme {
        &self.theme
    }

    pub fn set_theme(&mut self, t: Theme) {
        self.theme = t;
    }

    /// The key that asked to quit, once one did.
    pub fn quit_requested(&self) -> Option<&'static str> {
        self.quit
    }

    pub fn mode(&self) -> TuiMode {
        self.mode
    }

    /// The engine cannot hold more than `max`: the target shown stops there.
    pub fn clamp_target(&mut self, max: u64) {
        self.target = self.target.min(max);
    }

    pub fn target(&self) -> u64 {
        self.target
    }

    /// The ramp rate now, connections per second; 0 = unlimited.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn help_open(&self) -> bool {
        self.help_open
    }

    /// The client's ramp state; `None` in server mode, or before the client's first snapshot.
    pub fn ramp(&self) -> Option<Ramp> {
        let c = &self.client.as_ref()?.connections;
        Some(Ramp::derive(
            self.target,
            c.active,
            c.connecting,
            self.paused,
        ))
    }

    /// Applies a key press and returns what the runtime must do.
    pub fn on_key(&mut self, key: KeyEvent, now: Instant) -> Vec<Command> {
        self.now = Some(now);
        let Some(action) = keys::action(key) else {
            return Vec::new();
        };
        let steers = self.mode != TuiMode::Server;
        let server_only = "server mode: the clients decide how many connect and how fast; \
                           steer them from `c1m tui --mode client`";
        match action {
            Action::Quit(key) => {
                self.quit = Some(key);
                vec![Command::Quit(key)]
            }
            // Esc closes the overlay and nothing else: a run is never ended by a stray Esc.
            Action::Escape => {
                self.help_open = false;
                Vec::new()
            }
            Action::ToggleHelp => {
                self.help_open = !self.help_open;
                Vec::new()
            }
            Action::NextTheme => vec![Command::NextTheme],
            Action::TargetUp
            | Action::TargetDown
            | Action::RateUp
            | Action::RateDown
            | Action::TogglePause
                if !steers =>
            {
                self.note(server_only, now);
                Vec::new()
            }
            Action::TargetUp => {
                self.target = self.target.saturating_add(self.step);
                vec![Command::SetTarget(self.target)]
            }
            Action::TargetDown if self.target == 0 => {
                self.note("the target is already 0", now);
                Vec::new()
            }
            Action::TargetDown => {
                self.target = self.target.saturating_sub(self.step);
                vec![Command::SetTarget(self.target)]
            }
            Action::RateUp if self.rate == 0.0 => {
                self.note("the rate is already unlimited; [ sets a limit", now);
                Vec::new()
            }
            Action::RateUp => {
                self.rate = (self.rate * 2.0).min(MAX_RATE);
                vec![Command::SetRate(self.rate)]
            }
            Action::RateDown => {
                self.rate = if self.rate == 0.0 {
                    FIRST_FINITE_RATE
                } else {
                    (self.rate / 2.0).max(MIN_RATE)
                };
                vec![Command::SetRate(self.rate)]
            }
            Action::TogglePause => {
                self.paused = !self.paused;
                vec![Command::SetPaused(self.paused)]
            }
            Action::Broadcast => match (&self.header.control_url, self.mode) {
                (_, TuiMode::Server | TuiMode::Local) => vec![Command::Broadcast],
                (Some(url), TuiMode::Client) => {
                    let msg = format!("asking {url} to broadcast…");
                    self.note(msg, now);
                    vec![Command::Broadcast]
                }
                (None, TuiMode::Client) => {
                    self.note(
                        "b: no --control-url, cannot trigger a broadcast from client mode \
                         (start the server with --control and pass its address here)",
                        now,
                    );
                    Vec::new()
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Mode;
    use crate::stats::aggregate::Aggregator;
    use ratatui::crossterm::event::{KeyCode, KeyModifiers};

    fn header(mode: TuiMode, control_url: Option<&str>) -> Header {
        Header {
            mode,
            address: "ws://127.0.0.1:8080/".into(),
            every: Some(Duration::from_secs(60)),
            control_url: control_url.map(String::from),
        }
    }

    fn app(mode: TuiMode) -> App {
        App::new(
            mode,
            Theme::fallback(),
            header(mode, None),
            1000,
            100,
            20_000.0,
        )
    }

    fn press(app: &mut App, c: char) -> Vec<Command> {
        app.on_key(
            KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE),
            Instant::now(),
        )
    }

    fn esc(app: &mut App) -> Vec<Command> {
        app.on_key(
            KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE),
            Instant::now(),
        )
    }

    fn snapshot(mode: Mode) -> Snapshot {
        let t0 = Instant::now();
        Aggregator::new(mode, 0, Vec::new(), t0).snapshot(t0)
    }

    #[test]
    fn target_moves_by_step_and_never_below_zero() {
        for mode in [TuiMode::Client, TuiMode::Local] {
            let mut a = App::new(mode, Theme::fallback(), header(mode, None), 250, 100, 1.0);
            assert_eq!(press(&mut a, '+'), vec![Command::SetTarget(350)]);
            assert_eq!(press(&mut a, '-'), vec![Command::SetTarget(250)]);
            assert_eq!(press(&mut a, '-'), vec![Command::SetTarget(150)]);
            assert_eq!(press(&mut a, '-'), vec![Command::SetTarget(50)]);
            assert_eq!(press(&mut a, '-'), vec![Command::SetTarget(0)]);
            assert_eq!(press(&mut a, '-'), vec![]);
            assert_eq!(a.target(), 0);
            assert!(a.current_note().unwrap().contains("already 0"));
        }
    }

    #[test]
    fn rate_doubles_halves_and_handles_unlimited() {
        let mut a = app(TuiMode::Client);
        assert_eq!(press(&mut a, ']'), vec![Command::SetRate(40_000.0)]);
        assert_eq!(press(&mut a, '['), vec![Command::SetRate(20_000.0)]);
        assert_eq!(press(&mut a, '['), vec![Command::SetRate(10_000.0)]);
        let mut a = App::new(
            TuiMode::Local,
            Theme::fallback(),
            header(TuiMode::Local, None),
            10,
            1,
            0.0,
        );
        assert_eq!(press(&mut a, ']'), vec![], "] on unlimited stays unlimited");
        assert_eq!(a.rate(), 0.0);
        assert_eq!(
            press(&mut a, '['),
            vec![Command::SetRate(FIRST_FINITE_RATE)]
        );
        let mut a = App::new(
            TuiMode::Client,
            Theme::fallback(),
            header(TuiMode::Client, None),
            10,
            1,
            1.0,
        );
        assert_eq!(press(&mut a, '['), vec![Command::SetRate(MIN_RATE)]);
        let mut a = App::new(
            TuiMode::Client,
            Theme::fallback(),
            header(TuiMode::Client, None),
            10,
            1,
            MAX_RATE,
        );
        assert_eq!(press(&mut a, ']'), vec![Command::SetRate(MAX_RATE)]);
    }

    #[test]
    fn pause_toggles() {
        let mut a = app(TuiMode::Local);
        assert_eq!(press(&mut a, 'p'), vec![Command::SetPaused(true)]);
        assert!(a.paused());
        assert_eq!(press(&mut a, 'p'), vec![Command::SetPaused(false)]);
        assert!(!a.paused());
    }

    #[test]
    fn server_mode_explains_instead_of_steering() {
        let mut a = app(TuiMode::Server);
        for c in ['+', '-', ']', '[', 'p'] {
            assert_eq!(press(&mut a, c), vec![], "{c}");
            assert!(a.current_note().unwrap().contains("server mode"), "{c}");
        }
        assert_eq!((a.target(), a.rate(), a.paused()), (1000, 20_000.0, false));
        assert_eq!(press(&mut a, 'b'), vec![Command::Broadcast]);
    }

    #[test]
    fn broadcast_per_mode() {
        assert_eq!(
            press(&mut app(TuiMode::Local), 'b'),
            vec![Command::Broadcast]
        );
        let mut a = app(TuiMode::Client);
        assert_eq!(press(&mut a, 'b'), vec![]);
        assert!(a.current_note().unwrap().contains("--control-url"));
        let h = header(TuiMode::Client, Some("http://10.0.0.1:9100"));
        let mut a = App::new(TuiMode::Client, Theme::fallback(), h, 10, 1, 1.0);
        assert_eq!(press(&mut a, 'b'), vec![Command::Broadcast]);
        assert!(a.current_note().unwrap().contains("http://10.0.0.1:9100"));
    }

    #[test]
    fn help_quit_theme_and_unknown_keys() {
        let mut a = app(TuiMode::Client);
        assert_eq!(press(&mut a, 't'), vec![Command::NextTheme]);
        assert_eq!(press(&mut a, 'x'), vec![]);
        assert_eq!(press(&mut a, '?'), vec![]);
        assert!(a.help_open());
        assert_eq!(esc(&mut a), vec![], "Esc closes the help first");
        assert!(!a.help_open() && a.quit_requested().is_none());
        press(&mut a, '?');
        press(&mut a, '?');
        assert!(!a.help_open());
        assert_eq!(esc(&mut a), vec![], "Esc never quits");
        assert!(a.quit_requested().is_none());

        let mut a = app(TuiMode::Server);
        assert_eq!(press(&mut a, 'q'), vec![Command::Quit("q")]);
        assert_eq!(a.quit_requested(), Some("q"));
        let mut a = app(TuiMode::Server);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(
            a.on_key(ctrl_c, Instant::now()),
            vec![Command::Quit("Ctrl-C")]
        );
        assert_eq!(a.quit_requested(), Some("Ctrl-C"));
    }

    #[test]
    fn worker_counts_follow_each_side() {
        let row = |index, state| WorkerRow {
            index,
            pid: 100 + index as u32,
            state,
            active: 0,
            errors: 0,
            deltas: 0,
            rss_bytes: None,
            cpu_s: None,
            cpu_percent: None,
            exit: None,
            agent: None,
        };
        let mut a = app(TuiMode::Local);
        assert_eq!(a.worker_count(), 0);
        let mut s = snapshot(Mode::Server);
        s.workers = vec![row(0, WorkerState::Running), row(1, WorkerState::Starting)];
        a.on_server(s, Instant::now());
        let mut c = snapshot(Mode::Client);
        c.workers = vec![
            row(0, WorkerState::Died),
            row(1, WorkerState::Running),
            row(2, WorkerState::Died),
        ];
        a.on_client(c, Instant::now());
        assert_eq!(a.worker_count(), 5);
        assert_eq!(
            a.server_fleet,
            Fleet {
                running: 1,
                died: vec![]
            }
        );
        assert_eq!(
            a.client_fleet,
            Fleet {
                running: 1,
                died: vec![0, 2]
            }
        );
        // The next snapshot replaces the counts.
        a.on_client(snapshot(Mode::Client), Instant::now());
        assert_eq!(a.client_fleet, Fleet::default());
        assert_eq!(a.worker_count(), 2);
    }

    #[test]
    fn notes_expire() {
        let mut a = app(TuiMode::Client);
        let t0 = Instant::now();
        a.note("hello", t0);
        a.tick(t0 + NOTE_FOR - Duration::from_millis(1));
        assert_eq!(a.current_note(), Some("hello"));
        a.tick(t0 + NOTE_FOR);
        assert_eq!(a.current_note(), None);
    }

    #[test]
    fn ramp_state() {
        use Ramp::*;
        assert_eq!(Ramp::derive(100, 10, 5, false), Ramping);
        assert_eq!(Ramp::derive(100, 95, 5, false), Holding);
        assert_eq!(Ramp::derive(100, 100, 0, false), Holding);
        assert_eq!(Ramp::derive(100, 10, 0, true), Paused);
        assert_eq!(Ramp::derive(100, 101, 0, false), Closing);
        assert_eq!(Ramp::derive(100, 101, 0, true), Closing);
        assert_eq!(Ramp::derive(0, 0, 0, false), Holding);

        let mut a = app(TuiMode::Client);
        assert_eq!(a.ramp(), None);
        let mut s = snapshot(Mode::Client);
        s.connections.active = 400;
        s.connections.connecting = 100;
        a.on_client(s, Instant::now());
        assert_eq!(a.ramp(), Some(Ramping));
        press(&mut a, 'p');
        assert_eq!(a.ramp(), Some(Paused));
        for _ in 0..7 {
            press(&mut a, '-');
        }
        assert_eq!(a.ramp(), Some(Closing));
    }

    #[test]
    fn sparklines_read_the_runs_history() {
        use crate::stats::history::Point;
        use crate::stats::{BroadcastLatency, Broadcasts, ClientBroadcast};
        let t0 = Instant::now();
        let point = |setup: f64| Point {
            setup_per_s: setup,
            ..Point::default()
        };
        let row = |seq: u64, p99: Option<u64>| ClientBroadcast {
            seq,
            received: 1,
            open: 1,
            first_recv_us: 0,
            last_recv_us: 0,
            sent_ts_us: None,
            delivery_us: None,
            latency_us: p99.map(|p99| BroadcastLatency {
                count: 1,
                p50: p99,
                p99,
                max: p99,
            }),
        };
        let mut c = snapshot(Mode::Client);
        c.series = std::sync::Arc::new(vec![point(10.0), point(20.4)]);
        c.broadcasts = Broadcasts::Client(vec![row(1, Some(700)), row(2, None)]);
        let mut s = snapshot(Mode::Server);
        s.series = std::sync::Arc::new(vec![point(99.0)]);
        let mut a = app(TuiMode::Local);
        a.on_client(c.clone(), t0);
        a.on_server(s.clone(), t0);
        assert_eq!(a.setup_history().collect::<Vec<_>>(), vec![20, 10]);
        assert_eq!(a.p99_history().collect::<Vec<_>>(), vec![0, 700]);
        // Server mode shows the server's own setup rate.
        let mut a = app(TuiMode::Server);
        a.on_server(s, t0);
        assert_eq!(a.setup_history().collect::<Vec<_>>(), vec![99]);
        assert_eq!(a.p99_history().count(), 0);
    }
}
