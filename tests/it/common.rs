//! Helpers shared by the integration tests that drive the real `c1m` binary and third-party
//! peers: child processes with deadlines, the server's stderr read line by line, the JSON report
//! and its schema, and the checks that the interop peers are installed.
//!
//! Every wait here has a deadline, and every child is killed when its handle is dropped, so a
//! hang fails the test instead of blocking `cargo test`.

#![allow(dead_code)] // each test file uses its own subset

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_c1m");

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn interop_dir() -> PathBuf {
    manifest_dir().join("tests/interop")
}

/// A loopback port nobody listens on: bound, read and released again.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `c1m ARGS…` with stdin closed and stdout/stderr captured.
pub fn c1m(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// What a finished child left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion; kills it and panics if it takes longer than `limit`.
pub fn run(mut cmd: Command, limit: Duration) -> Finished {
    Proc::spawn(&mut cmd, "command").wait(limit)
}

/// A child process whose stdout and stderr are read by threads, line by line: lines can be
/// waited for while the child runs, and everything is kept for the final assertions. Killed on
/// drop.
pub struct Proc {
    name: String,
    child: Child,
    pub stdin: Option<ChildStdin>,
    out: Stream,
    err: Stream,
}

struct Stream {
    rx: Receiver<String>,
    all: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Stream {
    fn new(pipe: impl Read + Send + 'static) -> Stream {
        let (tx, rx) = mpsc::channel();
        let all = Arc::new(Mutex::new(String::new()));
        let keep = all.clone();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                keep.lock().unwrap().push_str(&line);
                let _ = tx.send(line.trim_end().to_owned());
                line.clear();
            }
        });
        Stream {
            rx,
            all,
            reader: Some(reader),
        }
    }

    fn text(&self) -> String {
        self.all.lock().unwrap().clone()
    }

    fn finish(&mut self) -> String {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.text()
    }
}

impl Proc {
    pub fn spawn(cmd: &mut Command, name: &str) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let out = Stream::new(child.stdout.take().unwrap());
        let err = Stream::new(child.stderr.take().unwrap());
        Proc {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            out,
            err,
        }
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Sends `sig` to this child (and nothing else).
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child we started and have not reaped yet.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Waits for a stderr line for which `pick` returns `Some`, and returns that.
    pub fn stderr_line<T>(
        &self,
        what: &str,
        limit: Duration,
        pick: impl FnMut(&str) -> Option<T>,
    ) -> T {
        self.line(&self.err, "stderr", what, limit, pick)
    }

    /// Waits for a stdout line for which `pick` returns `Some`, and returns that.
    pub fn stdout_line<T>(
        &self,
        what: &str,
        limit: Duration,
        pick: impl FnMut(&str) -> Option<T>,
    ) -> T {
        self.line(&self.out, "stdout", what, limit, pick)
    }

    fn line<T>(
        &self,
        stream: &Stream,
        stream_name: &str,
        what: &str,
        limit: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match stream.rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(v) = pick(&line) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: no {what} on {stream_name} within {limit:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.name,
                    self.out.text(),
                    self.err.text()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{}: {stream_name} closed before {what}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.name,
                    self.out.text(),
                    self.err.text()
                ),
            }
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the child to exit; kills it and panics after `limit`.
    /// Waits for a client's status line to show all `conns` open (`conns N/N`).
    pub fn wait_open(&self, conns: u64, limit: Duration) {
        self.stderr_line("all connections open", limit, |l| {
            l.contains(&format!("conns {conns}/{conns} ")).then_some(())
        });
    }

    pub fn wait(mut self, limit: Duration) -> Finished {
        self.stdin.take();
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {limit:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.name,
                    self.out.finish(),
                    self.err.finish()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Finished {
            status,
            stdout: self.out.finish(),
            stderr: self.err.finish(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `c1m server` child on `127.0.0.1:0`, with the address it printed.
pub struct ServerProc {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl ServerProc {
    /// Starts `c1m server --listen 127.0.0.1:0 EXTRA…` and reads the address from its
    /// `c1m server: listening on ws://ADDR/ …` line.
    pub fn start(extra: &[&str]) -> ServerProc {
        Self::start_with(extra, Stdio::null())
    }

    pub fn start_with(extra: &[&str], stdin: Stdio) -> ServerProc {
        let mut cmd = Command::new(BIN);
        cmd.args(["server", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(stdin);
        let proc = Proc::spawn(&mut cmd, "c1m server");
        let addr = proc.stderr_line("listening line", Duration::from_secs(10), |l| {
            listening_addr(l)
        });
        ServerProc { proc, addr }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }
}

/// The address in `c1m server: listening on ws://ADDR/ …`.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("c1m server: listening on ")?;
    let rest = rest
        .strip_prefix("ws://")
        .or_else(|| rest.strip_prefix("wss://"))?;
    rest.split('/').next()?.parse().ok()
}

/// `broadcast seq=N sent to M connections in X ms…` as (N, M, X).
pub fn broadcast_line(line: &str) -> Option<(u64, u64, f64)> {
    let rest = line.strip_prefix("broadcast seq=")?;
    let (seq, rest) = rest.split_once(" sent to ")?;
    let (conns, rest) = rest.split_once(" connections in ")?;
    let ms = rest.split_once(" ms")?.0;
    Some((seq.parse().ok()?, conns.parse().ok()?, ms.parse().ok()?))
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the JSON report {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}\n{text}", path.display()))
}

/// Every way `report` breaks `schema/report.schema.json`, one per line.
pub fn schema_errors(report: &Value) -> Vec<String> {
    let path = manifest_dir().join("schema/report.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema compiles");
    validator
        .iter_errors(report)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

pub fn u64_at(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no integer at {pointer} in {v:#}"))
}

/// Microseconds since the Unix epoch, by the test's clock.
pub fn now_us() -> i64 {
    c1m::engine::now_us()
}

/// Fails (never skips) when Python's `websockets` is missing.
pub fn require_python_websockets() {
    let ok = Command::new("python3")
        .args(["-c", "import websockets"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the interop tests need python3 with the `websockets` package: run `pip install websockets`"
    );
}

/// Fails (never skips) when Node or tests/interop/node_modules/ws is missing.
pub fn require_node_ws() {
    let ws = interop_dir().join("node_modules/ws/package.json");
    assert!(
        ws.exists(),
        "the interop tests need Node's `ws` in tests/interop/node_modules: run `cd tests/interop && npm ci`"
    );
    let ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the interop tests need `node` on PATH (Node.js 18 or later)"
    );
}

/// What headless Chromium made of an HTML page opened from disk (tests/interop/check_page.js,
/// playwright-core driving Debian's `chromium`): the requests it made besides the page, its
/// console errors, each chart's title and drawn points, and a full-page screenshot's share of
/// non-white pixels (`SHOT.png` beside the page).
pub fn open_in_browser(page: &std::path::Path) -> serde_json::Value {
    require_node_ws();
    let shot = page.with_extension("png");
    let out = Command::new("node")
        .arg("check_page.js")
        .arg(page)
        .arg(&shot)
        .current_dir(interop_dir())
        .stdin(Stdio::null())
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "the browser check failed (it needs `chromium` on PATH and `npm ci` in tests/interop; \
         scripts/test installs both): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

/// Asserts what a reader would notice of a report page in a browser: it fetched nothing,
/// logged no error, drew every chart titled in `charts` with data, and is not a blank
/// screenshot.
pub fn assert_page_reads_well(page: &std::path::Path, charts: &[&str]) {
    let seen = open_in_browser(page);
    assert_eq!(seen["requests"], serde_json::json!([]), "{seen:#}");
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen:#}");
    let drawn = seen["charts"].as_array().unwrap();
    for title in charts {
        let chart = drawn.iter().find(|c| c["title"] == *title);
        let points = chart.map_or(0, |c| c["points"].as_u64().unwrap_or(0));
        assert!(points >= 2, "chart {title:?} has {points} points: {seen:#}");
    }
    let shot = &seen["screenshot"];
    let inked = shot["inked"].as_f64().unwrap();
    assert!(
        inked > 0.02 && inked < 0.9,
        "screenshot ink {inked}: {seen:#}"
    );
    assert!(shot["colours"].as_u64().unwrap() > 20, "{seen:#}");
}

/// Records panics on c1m's shard threads (named `c1m-server-N` / `c1m-client-N`), whose
/// `JoinHandle` errors `stop()` does not report. Call [`assert_no_shard_panic`] at the end.
pub fn watch_shard_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("c1m-"))
            {
                SHARD_PANICS.lock().unwrap().push(info.to_string());
            }
            previous(info);
        }));
    });
}

static SHARD_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn assert_no_shard_panic() {
    let panics = SHARD_PANICS.lock().unwrap();
    assert!(
        panics.is_empty(),
        "a c1m shard thread panicked: {panics:#?}"
    );
}

/// The latencies in an HDR interval log, merged, after checking its header.
pub fn read_hdr_log(path: &std::path::Path) -> (Histogram<u64>, usize) {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("#[Logged with c1m "), "{text}");
    for header in [
        "#[StartTime: ",
        "#[BaseTime: ",
        "\"StartTimestamp\",\"Interval_Length\"",
    ] {
        assert!(
            lines.iter().take(8).any(|l| l.starts_with(header)),
            "no {header:?} in the header:\n{text}"
        );
    }
    let interval_lines = lines
        .iter()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('"'))
        .count();
    assert!(interval_lines >= 1, "no interval line:\n{text}");
    let mut merged = c1m::stats::new_histogram();
    let mut intervals = 0;
    for entry in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(ilh) = entry.unwrap_or_else(|e| panic!("{e:?}:\n{text}")) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(ilh.encoded_histogram())
                .unwrap();
            let h: Histogram<u64> = Deserializer::new()
                .deserialize(&mut raw.as_slice())
                .unwrap();
            assert!(
                ilh.max() >= h.max() as f64 * 0.99,
                "max column below the data"
            );
            merged.add(&h).unwrap();
            intervals += 1;
        }
    }
    assert_eq!(
        intervals, interval_lines,
        "the reader skipped lines:\n{text}"
    );
    (merged, intervals)
}

/// A private tmux server (its own socket), killed when the test ends however it ends.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(name: &str, cmd: &str, width: u16, height: u16) -> Tmux {
        let have = Command::new("tmux").arg("-V").output();
        assert!(
            have.is_ok_and(|o| o.status.success()),
            "tmux is needed for this test: apt-get install tmux (.ci/run does it)"
        );
        let t = Tmux {
            socket: format!("c1m-test-{}-{name}", std::process::id()),
        };
        t.run(&[
            "new-session",
            "-d",
            "-s",
            "c1m",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            cmd,
        ]);
        t
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "c1m"])
    }

    /// The screen plus scrollback: what the user scrolls back to after the console exits.
    pub fn history(&self) -> String {
        self.run(&["capture-pane", "-p", "-S", "-400", "-t", "c1m"])
    }

    pub fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "c1m", keys]);
    }

    /// Polls the screen until `ok` holds; fails with the last screen after `limit`.
    pub fn wait(&self, what: &str, limit: Duration, ok: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + limit;
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The number after `label` on the screen, e.g. `open        500` → 500.
pub fn field(screen: &str, label: &str) -> Option<u64> {
    screen.lines().find_map(|line| {
        let rest = &line[line.find(&format!("{label} "))? + label.len()..];
        let token = rest.split_whitespace().next()?;
        token.replace(',', "").parse().ok()
    })
}

/// One HTTP/1.1 request on a connection of its own; the status and the body.
pub fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    http_with(addr, method, path, "")
}

/// One request with `extra` header lines (each ending in CRLF), on a connection of its own,
/// as curl sends it; the status and the body.
pub fn http_with(addr: &str, method: &str, path: &str, extra: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A client's upgrade request, read whole (and the bytes it came in); `None` when the peer
/// closed or went quiet (30 s) first.
pub fn read_upgrade(s: &mut TcpStream) -> Option<(c1m::proto::handshake::Upgrade, Vec<u8>)> {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
    loop {
        let n = s.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(up) = c1m::proto::handshake::parse_request(&buf).unwrap() {
            return Some((up, buf));
        }
    }
}
