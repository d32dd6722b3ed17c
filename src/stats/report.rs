//! Rendering a [`Snapshot`]: the human report (laid out like Dropwizard's ConsoleReporter, which
//! the seed's numbers came from), the JSON report (`schema/report.schema.json`), and the
//! one-line-a-second status line.

use super::Mode;
use super::meter::MeterSnapshot;
use super::snapshot::{
    Broadcasts, ClientBroadcast, ServerBroadcast, Snapshot, SourceRow, WorkerRow, WorkerState,
};
use crate::fmt::{self as show, clip, ms};
use serde_json::Value;
use std::fmt::Write as _;
use std::time::SystemTime;

/// Dropwizard's CONSOLE_WIDTH; also the most a line of the human report may take.
const WIDTH: usize = 80;
/// Column of the `=` in `label = value` lines, as in ConsoleReporter.
const LABEL: usize = 18;
/// Broadcasts shown in the human report.
const LAST_BROADCASTS: usize = 10;

/// The human-readable report. `config` is echoed first, as (key, effective value) pairs.
pub fn human(s: &Snapshot, config: &[(&str, String)]) -> String {
    let mut r = Report::default();
    r.config(s, config);
    r.counters(s);
    if s.mode == Mode::Client || s.latency_us.count > 0 {
        r.histogram(s);
    }
    r.meters(s);
    r.broadcasts(&s.broadcasts);
    if !s.sources.is_empty() {
        r.sources(&s.sources);
    }
    if !s.workers.is_empty() {
        r.workers(&s.workers);
    }
    r.out
}

/// A title line over a report, to the full width: `== client report =====…`.
pub fn title(text: &str) -> String {
    let head = format!("== {text} ");
    let rule = "=".repeat(WIDTH.saturating_sub(head.chars().count()));
    format!("{head}{rule}\n")
}

/// The JSON report: the snapshot's fields at the top level plus `version`, `config`,
/// `ended_by` (what ended the run: `duration`, `q`, `SIGINT`…; `running` while it runs) and
/// `generated_at` (RFC 3339, UTC, now).
pub fn json(s: &Snapshot, config: Value, version: &str, ended_by: &str) -> Value {
    json_at(s, config, version, ended_by, SystemTime::now())
}

/// [`json`] with the generation time given, for reproducible output.
pub fn json_at(
    s: &Snapshot,
    config: Value,
    version: &str,
    ended_by: &str,
    generated_at: SystemTime,
) -> Value {
    let mut v = serde_json::to_value(s).expect("a Snapshot has only string keys and numbers");
    let obj = v
        .as_object_mut()
        .expect("a Snapshot serialises as an object");
    obj.insert("version".into(), version.into());
    obj.insert("config".into(), config);
    obj.insert("ended_by".into(), ended_by.into());
    let at = humantime::format_rfc3339_seconds(generated_at).to_string();
    obj.insert("generated_at".into(), at.into());
    v
}

/// A JSON report written by `--json`, read back (`c1m compare`, `c1m report`): refused, with
/// the file named, when it is unreadable, not JSON, or has no `mode` and `latency_us`.
pub fn read(path: &std::path::Path) -> anyhow::Result<Value> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let report: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a c1m JSON report", path.display()))?;
    if report["mode"].as_str().is_none() || !report["latency_us"].is_object() {
        anyhow::bail!(
            "{} is not a c1m JSON report (no mode or latency_us)",
            path.display()
        );
    }
    Ok(report)
}

/// One short progress line, e.g.
/// `[  12.0s] conns 18400/19000 (+3012/s) msgs 57000 (1900/s) p99 1.2ms missed 0 errors 0`.
pub fn status_line(s: &Snapshot) -> String {
    let c = &s.connections;
    let head = format!("[{:>6.1}s]", s.elapsed_s);
    let line = status_counts(s, c, &head);
    if s.workers.is_empty() {
        return line;
    }
    let running = s
        .workers
        .iter()
        .filter(|w| w.state == WorkerState::Running)
        .count();
    format!("{line} workers {running}/{}", s.workers.len())
}

fn status_counts(s: &Snapshot, c: &super::Connections, head: &str) -> String {
    let setup = s.rates.setup.now.round();
    match s.mode {
        Mode::Client => {
            let m = &s.messages;
            let line = format!(
                "{head} conns {}/{} (+{setup}/s) msgs {} ({}/s) p99 {} missed {} errors {}",
                c.active,
                c.target,
                m.received,
                s.rates.messages.now.round(),
                p99_or_none(s),
                m.missed.map_or(show::NONE.to_string(), |n| n.to_string()),
                s.errors.total,
            );
            // Shown once there is something to show: messages that timed nothing.
            match (m.unparsable, m.skewed) {
                (0, 0) => line,
                (u, k) => format!("{line} unparsable {u} skewed {k}"),
            }
        }
        Mode::Server => {
            let line = format!(
                "{head} conns {} peak {} (+{setup}/s) bcast {} errors {}",
                c.active,
                c.peak,
                last_broadcast(&s.broadcasts),
                s.errors.total,
            );
            // Shown once there is something to show: only --max-conns refuses.
            match c.refused {
                0 => line,
                n => format!("{line} refused {n}"),
            }
        }
    }
}

/// The whole run's p99, or `—` before the first message was timed.
fn p99_or_none(s: &Snapshot) -> String {
    let l = &s.latency_us;
    show::opt_us((l.count > 0).then_some(l.p99))
}

/// `#3 sent 19000 drop 0 in 1.2s` for the newest server broadcast, `-` before the first.
fn last_broadcast(b: &Broadcasts) -> String {
    match b {
        Broadcasts::Server(rows) => match rows.last() {
            Some(r) => format!(
                "#{} sent {} drop {} in {}",
                r.seq,
                r.sent,
                r.dropped,
                show::signed_us(r.duration_us)
            ),
            None => "-".into(),
        },
        Broadcasts::Client(rows) => rows.last().map_or("-".into(), |r| format!("#{}", r.seq)),
    }
}

/// CPU seconds a worker or agent used, `-` before it said.
fn cpu_s(w: &WorkerRow) -> String {
    w.cpu_s.map_or("-".to_string(), |s| format!("{s:.1}"))
}

/// The human report being written; each method is one section.
#[derive(Default)]
struct Report {
    out: String,
}

impl Report {
    /// `-- Title -----…` to the full width, as ConsoleReporter's `printWithBanner`.
    fn banner(&mut self, title: &str) {
        let head = format!("-- {title} ");
        let dashes = WIDTH.saturating_sub(head.chars().count());
        let _ = writeln!(self.out, "{head}{}", "-".repeat(dashes));
    }

    fn line(&mut self, text: &str) {
        self.out.push_str(&clip(text, WIDTH));
        self.out.push('\n');
    }

    /// `             count = 42`: the label right-aligned so the `=` signs line up.
    fn value(&mut self, label: &str, value: impl std::fmt::Display) {
        self.line(&format!("{label:>LABEL$} = {value}"));
    }

    /// `              75% <= 633`: the `=` of `<=` lines up with the other `=` signs.
    fn quantile(&mut self, label: &str, value: &str) {
        self.line(&format!("{label:>w$} <= {value}", w = LABEL - 1));
    }

    fn config(&mut self, s: &Snapshot, config: &[(&str, String)]) {
        self.banner("Config");
        let mode = match s.mode {
            Mode::Server => "server",
            Mode::Client => "client",
        };
        self.value("mode", mode);
        self.value("elapsed", format!("{:.1} s", s.elapsed_s));
        for (key, value) in config {
            self.value(key, value);
        }
    }

    fn counters(&mut self, s: &Snapshot) {
        self.banner("Counters");
        let c = &s.connections;
        self.line("Active WebSockets");
        self.value("count", c.active);
        self.value("peak", c.peak);
        self.value("target", c.target);
        self.value("established", c.established);
        self.value("failed", c.failed);
        self.value("closed", c.closed);
        if s.mode == Mode::Server {
            // Not the error class `refused` (a client's ECONNREFUSED): upgrades answered 503.
            self.value("refused (503)", c.refused);
        }
        if c.tls_handshakes > 0 {
            self.value("tls handshakes", c.tls_handshakes);
            self.value("tls resumed", c.tls_resumed);
        }
        if c.compressed > 0 {
            self.value("compressed", c.compressed);
            if s.mode == Mode::Client {
                self.value("own windows", c.compression_windows);
            }
        }
        self.line("WebSocket Errors");
        self.value("count", s.errors.total);
        for (class, n) in s.errors.by_class.iter().filter(|&(_, n)| n > 0) {
            self.value(class.name(), n);
            if let Some(text) = s.errors.samples.get(class.name()) {
                self.value("first", text);
            }
        }
        let m = &s.messages;
        match s.mode {
            Mode::Client => {
                self.client_messages(m);
                self.talk(&s.talk);
            }
            Mode::Server => {
                self.line("Frames dropped (peer not reading)");
                self.value("count", m.dropped);
            }
        }
        self.line("Bytes");
        self.value("in", s.bytes.inbound);
        self.value("out", s.bytes.outbound);
        if s.bytes.inflated > 0 {
            self.value("inflated", s.bytes.inflated);
        }
        self.memory(&s.memory);
    }

    fn memory(&mut self, m: &super::Memory) {
        let Some(rss) = m.rss_bytes else { return };
        self.line(match m.shares_process {
            true => "Memory (this process, both sides)",
            false => "Memory",
        });
        self.value("rss", crate::fmt::size(rss));
        if let Some(peak) = m.peak_rss_bytes {
            self.value("peak rss", crate::fmt::size(peak));
        }
        match m.per_conn_bytes {
            Some(b) => self.value(
                "per connection",
                format!(
                    "{:.2} KiB at {} open",
                    b / 1024.0,
                    crate::fmt::int(m.per_conn_at)
                ),
            ),
            None => self.value("per connection", "- (fewer than 1,000 open)"),
        }
    }

    fn client_messages(&mut self, m: &super::Messages) {
        self.line("Messages missed");
        match m.missed {
            Some(n) => self.value("count", n),
            None => self.value("count", show::NONE),
        }
        self.value("measured by", m.loss.method);
        if let Some(why) = &m.loss.why {
            self.value("why", why);
        }
        if m.reset.connections > 0 {
            self.line("Reset connections (what the kernel held for them is lost, unseen)");
            self.value("count", m.reset.connections);
            let owed = m
                .reset
                .unreceived
                .map_or(show::NONE.to_string(), |n| n.to_string());
            self.value("broadcasts owed, not in missed", owed);
        }
        if m.ignored > 0 {
            self.line("Protocol messages (no time where told, not data)");
            self.value("count", m.ignored);
        }
        self.line("Unparsable payloads");
        self.value("count", m.unparsable);
        if let Some(first) = &m.sample {
            self.value("first", first);
        }
        self.line("Skewed timestamps (not recorded)");
        self.value("count", m.skewed);
        if m.duplicates > 0 {
            self.line("Duplicates (a seq the connection had had: not received again)");
            self.value("count", m.duplicates);
        }
    }

    /// What the client wrote besides the upgrade, when it wrote anything.
    fn talk(&mut self, t: &super::Talk) {
        if *t == super::Talk::default() {
            return;
        }
        self.line("Sent to the server");
        self.value("--send", t.sent);
        self.value("heartbeats", t.heartbeats);
        self.value("replies", t.replies);
        self.value("pings", t.pings);
        self.value("pongs", t.pongs);
        if t.echoed > 0 {
            self.value("echoed (--echo)", t.echoed);
        }
    }

    fn histogram(&mut self, s: &Snapshot) {
        self.banner("Histograms");
        self.latency(
            match s.mode {
                Mode::Client => "Message latency (µs)",
                Mode::Server => "Send lag (µs): payload stamp to the write of each frame",
            },
            &s.latency_us,
        );
        if s.talk.pings > 0 {
            self.latency("Pong round trip (µs), --ping", &s.pong_rtt_us);
        }
        if s.echo_rtt_us.count > 0 {
            self.latency("Echo round trip (µs), {rtt} messages", &s.echo_rtt_us);
        }
    }

    fn latency(&mut self, title: &str, l: &super::Latency) {
        self.line(title);
        self.value("count", l.count);
        // Nothing timed reads as a dash, never as a latency of 0.
        let int = |v: u64| {
            if l.timed() {
                v.to_string()
            } else {
                show::NONE.into()
            }
        };
        let real = |v: f64| {
            if l.timed() {
                format!("{v:.2}")
            } else {
                show::NONE.into()
            }
        };
        self.value("min", int(l.min));
        self.value("max", int(l.max));
        self.value("mean", real(l.mean));
        self.value("stddev", real(l.stddev));
        self.value("median", int(l.p50));
        for (label, v) in [
            ("75%", l.p75),
            ("95%", l.p95),
            ("98%", l.p98),
            ("99%", l.p99),
            ("99.9%", l.p999),
            ("99.99%", l.p9999),
        ] {
            self.quantile(label, &int(v));
        }
    }

    fn meters(&mut self, s: &Snapshot) {
        self.banner("Meters");
        let messages = match s.mode {
            Mode::Client => "Message Rate",
            Mode::Server => "Frame Send Rate",
        };
        self.meter(messages, &s.rates.messages);
        self.meter("Setup Rate", &s.rates.setup);
        if let (Some(ramp_s), Some(rate)) = (s.connections.ramp_s, s.connections.ramp_rate) {
            self.value(
                "ramp",
                format!("{} in {ramp_s:.2} s", s.connections.established),
            );
            self.value("ramp rate", format!("{rate:.2} events/second"));
        }
    }

    fn meter(&mut self, title: &str, m: &MeterSnapshot) {
        self.line(title);
        self.value("count", m.count);
        let rate = |r: f64| format!("{r:.2} events/second");
        self.value("mean rate", rate(m.mean));
        self.value("1-minute rate", rate(m.m1));
        self.value("5-minute rate", rate(m.m5));
        self.value("15-minute rate", rate(m.m15));
        self.value("last-second rate", rate(m.now));
    }

    fn broadcasts(&mut self, b: &Broadcasts) {
        let shown = b.len().min(LAST_BROADCASTS);
        self.banner(&format!("Broadcasts (last {shown} of {})", b.len()));
        match b {
            Broadcasts::Server(rows) => self.server_broadcasts(tail(rows)),
            Broadcasts::Client(rows) => self.client_broadcasts(tail(rows)),
        }
    }

    fn server_broadcasts(&mut self, rows: &[ServerBroadcast]) {
        self.line(&format!(
            "{:>10} {:>12} {:>12} {:>14}",
            "seq", "sent", "dropped", "loop ms"
        ));
        for r in rows {
            self.line(&format!(
                "{:>10} {:>12} {:>12} {:>14}",
                r.seq,
                r.sent,
                r.dropped,
                ms(Some(r.duration_us))
            ));
        }
    }

    fn client_broadcasts(&mut self, rows: &[ClientBroadcast]) {
        // "first ms": send to the first receive; "delivery ms": send to the last receive.
        self.line(&format!(
            "{:>10} {:>12} {:>14} {:>14}",
            "seq", "received", "first ms", "delivery ms"
        ));
        for r in rows {
            let first = r.sent_ts_us.map(|ts| r.first_recv_us - ts);
            self.line(&format!(
                "{:>10} {:>12} {:>14} {:>14}",
                r.seq,
                r.received,
                ms(first),
                ms(r.delivery_us)
            ));
        }
    }

    fn workers(&mut self, rows: &[WorkerRow]) {
        if rows.iter().any(|w| w.agent.is_some()) {
            return self.agents(rows);
        }
        let died = rows.iter().filter(|w| w.state == WorkerState::Died).count();
        self.banner(&format!("Workers ({} processes, {died} died)", rows.len()));
        self.line(&format!(
            "{:>6} {:>8} {:>9} {:>10} {:>8} {:>10} {:>7}  {}",
            "worker", "pid", "state", "active", "errors", "rss", "cpu s", "exit"
        ));
        for w in rows {
            let state = match w.state {
                WorkerState::Starting => "starting",
                WorkerState::Running => "running",
                WorkerState::Stopped => "stopped",
                WorkerState::Died => "died",
            };
            let rss = w.rss_bytes.map_or("-".to_string(), show::size);
            self.line(&format!(
                "{:>6} {:>8} {:>9} {:>10} {:>8} {:>10} {:>7}  {}",
                w.index,
                w.pid,
                state,
                w.active,
                w.errors,
                rss,
                cpu_s(w),
                w.exit.as_deref().unwrap_or("")
            ));
        }
    }

    /// A row per agent: which it is, what it holds and costs, and its clock against this
    /// machine's. Agents are named by host when their hosts differ (pods, machines), by address
    /// when they share one.
    fn agents(&mut self, rows: &[WorkerRow]) {
        let lost = rows.iter().filter(|w| w.state == WorkerState::Died).count();
        let tls = rows
            .iter()
            .filter(|w| w.agent.as_ref().is_some_and(|a| a.link == "tls"))
            .count();
        let link = match tls {
            0 => "",
            n if n == rows.len() => ", links over TLS",
            _ => ", some links over TLS",
        };
        self.banner(&format!("Agents ({}, {lost} lost{link})", rows.len()));
        let hosts: Vec<&str> = rows
            .iter()
            .filter_map(|w| Some(w.agent.as_ref()?.host.as_str()))
            .collect();
        let by_host = hosts
            .iter()
            .all(|h| hosts.iter().filter(|o| *o == h).count() == 1);
        self.line(&format!(
            "{:>2} {:<21} {:>7} {:>8} {:>6} {:>8} {:>7} {:>14}",
            "#",
            if by_host { "host" } else { "address" },
            "state",
            "active",
            "errors",
            "rss",
            "cpu s",
            "clock offset"
        ));
        for w in rows {
            let Some(a) = &w.agent else { continue };
            let state = match w.state {
                WorkerState::Starting => "starting",
                WorkerState::Running => "running",
                WorkerState::Stopped => "stopped",
                WorkerState::Died => "lost",
            };
            let clock = match (a.clock_offset_us, a.clock_uncertainty_us) {
                (Some(o), Some(u)) => format!("{:+.1}±{:.1} ms", o as f64 / 1e3, u as f64 / 1e3),
                _ => "-".to_string(),
            };
            self.line(&format!(
                "{:>2} {:<21} {:>7} {:>8} {:>6} {:>8} {:>7} {:>14}",
                w.index,
                clip(if by_host { &a.host } else { &a.addr }, 21),
                state,
                w.active,
                w.errors,
                w.rss_bytes.map_or("-".to_string(), show::size),
                cpu_s(w),
                clock
            ));
        }
    }

    fn sources(&mut self, rows: &[SourceRow]) {
        self.banner("Sources");
        let (addr, est, act, err) = ("address", "established", "active", "errors");
        self.line(&format!("{addr:<39} {est:>12} {act:>12} {err:>12}"));
        for r in rows {
            self.line(&format!(
                "{:<39} {:>12} {:>12} {:>12}",
                clip(&r.addr, 39),
                r.established,
                r.active,
                r.errors
            ));
        }
    }
}

fn tail<T>(rows: &[T]) -> &[T] {
    &rows[rows.len().saturating_sub(LAST_BROADCASTS)..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::aggregate::Aggregator;
    use crate::stats::{
        BroadcastPart, Counters, ErrorClass, ShardDelta, SourceDelta, new_histogram,
    };
    use std::time::{Duration, Instant};

    fn snapshot(mode: Mode) -> Snapshot {
        let t0 = Instant::now();
        let sources = match mode {
            Mode::Client => vec![
                "192.168.77.10".into(),
                "a-very-long-source-name.example.org:0".repeat(2),
            ],
            Mode::Server => vec![],
        };
        let mut agg = Aggregator::new(mode, 19_000, sources, t0);
        for i in 0..12u64 {
            let now = t0 + Duration::from_secs(i + 1);
            let mut counters = Counters {
                opened: 1500,
                messages: 1900,
                seq_messages: 1900,
                bytes_in: 40_000,
                ..Counters::default()
            };
            counters.error(ErrorClass::Refused);
            let mut latency = new_histogram();
            if mode == Mode::Client {
                for v in 600..700 {
                    latency.record(v * 1000).unwrap();
                }
            }
            let per_source = match mode {
                Mode::Client => vec![SourceDelta {
                    source: (i % 2) as usize,
                    opened: 1500,
                    closed: 0,
                    errors: 1,
                }],
                Mode::Server => vec![],
            };
            agg.apply(
                ShardDelta {
                    shard: (i % 3) as usize,
                    counters,
                    latency,
                    pong_rtt: new_histogram(),
                    echo_rtt: new_histogram(),
                    active: 1500 * (i + 1) / 3,
                    opens_us: None,
                    per_source,
                    error_samples: Vec::new(),
                    connecting: 0,
                    peers: None,
                    latencies: Vec::new(),
                    settled: None,
                    sample: None,
                    gone: false,
                    full: false,
                    broadcasts: vec![BroadcastPart {
                        seq: i,
                        count: 6000,
                        dropped: 0,
                        open: 6000,
                        first_us: 1_000_000,
                        last_us: 14_900_000,
                        sent_ts_us: Some(100_000),
                        done: true,
                        by_ts: false,
                        bytes: 0,
                    }],
                },
                now,
            );
        }
        agg.snapshot(t0 + Duration::from_secs(12))
    }

    #[test]
    fn human_report_has_the_dropwizard_sections_and_fits_80_columns() {
        for mode in [Mode::Client, Mode::Server] {
            let config = [
                ("url", "ws://127.0.0.1:8080/ws".to_string()),
                ("connections", "19000".to_string()),
                ("a-rather-long-key", "x".repeat(200)),
            ];
            let text = human(&snapshot(mode), &config);
            for line in text.lines() {
                assert!(line.chars().count() <= WIDTH, "too wide: {line:?}");
            }
            for needle in [
                "-- Config ---",
                "-- Counters ---",
                "-- Meters ---",
                "Active WebSockets\n             count = ",
                "WebSocket Errors\n             count = 12\n           refused = 12\n",
                "               url = ws://127.0.0.1:8080/ws\n",
                "     1-minute rate = ",
                " events/second\n",
                "-- Broadcasts (last 10 of 12) ---",
            ] {
                assert!(text.contains(needle), "{mode:?} lacks {needle:?}:\n{text}");
            }
            if mode == Mode::Client {
                assert!(text.contains("-- Histograms ---"));
                assert!(text.contains("Message latency (µs)\n             count = 1200\n"));
                assert!(text.contains("           99.99% <= "));
                assert!(text.contains("Messages missed\n"));
                assert!(text.contains("-- Sources ---"));
                assert!(text.contains("192.168.77.10"));
                // the last broadcast row: delivery 14.9 s − 0.1 s
                assert!(
                    text.contains("11         6000          900.0        14800.0\n"),
                    "{text}"
                );
            } else {
                assert!(!text.contains("-- Histograms"));
                assert!(!text.contains("-- Sources"));
                assert!(
                    text.contains("11         6000            0        13900.0\n"),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn status_lines_are_short() {
        let c = status_line(&snapshot(Mode::Client));
        assert!(c.starts_with("[  12.0s] conns 16500/19000 (+"), "{c}");
        assert!(c.contains(" p99 698ms "), "{c}");
        assert!(c.ends_with(" missed 0 errors 12"), "{c}");
        // Loss not measured reads as a dash; payloads that timed nothing are shown.
        let mut n = snapshot(Mode::Client);
        (n.messages.missed, n.messages.unparsable) = (None, 7);
        assert!(status_line(&n).ends_with(" missed — errors 12 unparsable 7 skewed 0"));
        let s = status_line(&snapshot(Mode::Server));
        assert!(
            s.contains("bcast #11 sent 6000 drop 0 in 13.9s errors 12"),
            "{s}"
        );
    }

    #[test]
    fn refusals_at_max_conns_show_once_there_are_any() {
        let mut s = snapshot(Mode::Server);
        assert!(!status_line(&s).contains("refused"));
        s.connections.refused = 7;
        assert!(
            status_line(&s).ends_with(" errors 12 refused 7"),
            "{}",
            status_line(&s)
        );
        let text = human(&s, &[]);
        assert!(text.contains("     refused (503) = 7\n"), "{text}");
        assert!(!human(&snapshot(Mode::Client), &[]).contains("refused (503)"));
    }

    #[test]
    fn json_adds_version_config_and_time() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v = json_at(
            &snapshot(Mode::Client),
            serde_json::json!({"n": 1}),
            "0.1.0",
            "q",
            at,
        );
        assert_eq!(v["version"], "0.1.0");
        assert_eq!(v["ended_by"], "q");
        assert_eq!(v["config"]["n"], 1);
        assert_eq!(v["generated_at"], "2023-11-14T22:13:20Z");
        assert_eq!(v["mode"], "client");
        assert_eq!(v["errors"]["by_class"]["refused"], 12);
        assert_eq!(v["bytes"]["in"], 480_000);
    }
}
