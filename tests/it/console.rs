//! The console in-process: `Console::run` on ratatui's `TestBackend`, keys sent as terminal
//! events, against a real loopback engine (local mode: a server and 400 client connections in
//! this process). Each step waits, with a deadline, for what a person would see on the screen.

use c1m::cli::{Cli, Command, TuiArgs};
use c1m::run::Run;
use c1m::theme::Theme;
use c1m::tui::{Console, spec};
use clap::Parser;
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::{Backend, ClearType, TestBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Position, Size};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(20);

/// A `TestBackend` the test reads while the console draws into it.
#[derive(Clone)]
struct Shared(Rc<RefCell<TestBackend>>);

impl Shared {
    fn screen(&self) -> String {
        let b = self.0.borrow();
        let buf = b.buffer();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Backend for Shared {
    type Error = std::convert::Infallible;

    fn draw<'a, I: Iterator<Item = (u16, u16, &'a Cell)>>(
        &mut self,
        content: I,
    ) -> Result<(), Self::Error> {
        self.0.borrow_mut().draw(content)
    }
    fn hide_cursor(&mut self) -> Result<(), Self::Error> {
        self.0.borrow_mut().hide_cursor()
    }
    fn show_cursor(&mut self) -> Result<(), Self::Error> {
        self.0.borrow_mut().show_cursor()
    }
    fn get_cursor_position(&mut self) -> Result<Position, Self::Error> {
        self.0.borrow_mut().get_cursor_position()
    }
    fn set_cursor_position<P: Into<Position>>(&mut self, p: P) -> Result<(), Self::Error> {
        self.0.borrow_mut().set_cursor_position(p)
    }
    fn clear(&mut self) -> Result<(), Self::Error> {
        self.0.borrow_mut().clear()
    }
    fn clear_region(&mut self, clear_type: ClearType) -> Result<(), Self::Error> {
        self.0.borrow_mut().clear_region(clear_type)
    }
    fn size(&self) -> Result<Size, Self::Error> {
        self.0.borrow().size()
    }
    fn window_size(&mut self) -> Result<WindowSize, Self::Error> {
        self.0.borrow_mut().window_size()
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.borrow_mut().flush()
    }
}

/// What the test does to the console: press keys, and wait for the screen.
struct Person {
    screen: Shared,
    keys: mpsc::UnboundedSender<std::io::Result<Event>>,
}

impl Person {
    fn press(&self, c: char) {
        let code = KeyCode::Char(c);
        self.key(code);
    }

    fn key(&self, code: KeyCode) {
        let ev = Event::Key(KeyEvent::new(code, KeyModifiers::NONE));
        self.keys.send(Ok(ev)).expect("the console reads keys");
    }

    /// Waits until every one of `wanted` is on the screen; returns the screen. `label=value`
    /// means a pane's value for that label (as the grid lays them out, apart by spaces).
    async fn sees(&self, wanted: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen.screen();
            if wanted.iter().all(|w| shows(&screen, w)) {
                return screen;
            }
            assert!(
                start.elapsed() < LIMIT,
                "not on the screen within {LIMIT:?}: {wanted:?}\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether `screen` shows `what`: plain text, or `label=value` for a label and its value.
fn shows(screen: &str, what: &str) -> bool {
    let Some((label, value)) = what.split_once('=') else {
        return screen.contains(what);
    };
    screen.match_indices(label).any(|(at, _)| {
        let rest = screen[at + label.len()..].trim_start_matches(' ');
        rest.split([' ', '│']).next() == Some(value)
    })
}

fn args(json: &std::path::Path) -> TuiArgs {
    let argv = [
        "c1m", "tui", "--mode", "local", "--conns", "400", "--step", "100", "--rate", "0",
        "--every", "off", "--ips", "1", "--json",
    ];
    let cli = Cli::parse_from(argv.iter().copied().chain([json.to_str().unwrap()]));
    match cli.command {
        Command::Tui(args) => args,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn what_a_person_sees_after_b_plus_minus_esc_a_stray_request_and_q() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let args = args(&json);
    let run = Run::start(spec(&args)).await.expect("the run starts");
    let server = run.server_addr().unwrap();
    let mut console = Console::new(run, &args, Theme::fallback(), false);
    let screen = Shared(Rc::new(RefCell::new(TestBackend::new(110, 34))));
    let mut terminal = Terminal::new(screen.clone()).unwrap();
    let (keys, rx) = mpsc::unbounded_channel();
    let input = futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|ev| (ev, rx)) },
    )
    .boxed_local();
    let person = Person { screen, keys };
    let script = async {
        person.sees(&["holding", "open=400"]).await;
        person.press('b');
        person.sees(&["#1: 400 / 400 (100%)"]).await;
        // `+` opens 100 more; the next broadcast is measured against the 500 open then.
        person.press('+');
        let more = person.sees(&["target=500", "open=500", "holding"]).await;
        // The 100 opened since do not change what #1 was sent to.
        assert!(more.contains("#1: 400 / 400 (100%)"), "{more}");
        person.press('b');
        person.sees(&["#2: 500 / 500 (100%)"]).await;
        person.press('-');
        person.sees(&["target=400", "open=400", "holding"]).await;
        // Esc closes the help, and nothing else: the run goes on.
        person.press('?');
        person.sees(&["close this help"]).await;
        person.key(KeyCode::Esc);
        person.key(KeyCode::Esc);
        person.press('b');
        let last = person.sees(&["#3: 400 / 400 (100%)"]).await;
        assert!(!last.contains("close this help"), "{last}");
        // Local mode listens on a free port, not on 8080 where strays probe.
        assert!(
            last.contains(&format!("ws://{server}/")) && server.port() != 8080,
            "{last}"
        );
        // Something that is not a WebSocket client reaches the port, as curl would: the
        // server answers 400, and the screen says so as it happens, naming the server.
        let mut curl = std::net::TcpStream::connect(server).unwrap();
        std::io::Write::write_all(&mut curl, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        person
            .sees(&[
                "srv errors=1",
                "server handshake_failed 1",
                "server: first handshake_failed",
            ])
            .await;
        person.press('q');
    };
    let (ended, ()) = tokio::join!(
        console.run(&mut terminal, input, futures::stream::pending()),
        script
    );
    assert_eq!(ended.unwrap(), "q");
    let done = console.into_run().finish("q").await.unwrap();
    // The exit status counts the server's error, and the last line says whose it was.
    assert_eq!(done.code, 1, "{done:?}");
    assert!(
        done.notes
            .iter()
            .any(|n| n == "1 errors counted by the server, more than --max-errors 0: exit status 1"),
        "{done:?}"
    );
    let r = &done.report;
    assert!(
        r.contains("== client report ==") && r.contains("== server report =="),
        "{r}"
    );
    assert!(r.contains("          ended_by = q\n"), "{r}");
    // 400 + 500 + 400 messages, none missed.
    let client: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(client["ended_by"], "q");
    assert_eq!(client["messages"]["received"], 1_300);
    assert_eq!(client["messages"]["missed"], 0);
    let server_json = json.with_extension("server.json");
    let server: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(server_json).unwrap()).unwrap();
    let opens: Vec<_> = server["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["open"].as_u64().unwrap())
        .collect();
    assert_eq!(opens, [400, 500, 400]);
}
