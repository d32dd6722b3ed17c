//! What a run leaves behind, the same for every face: the human report (for stdout), the JSON
//! report and the HDR interval log (files), and the exit status. In a local run both sides
//! report: the client at the paths given, the server beside them (`PATH.server.json`,
//! `PATH.server.hdr`).

use super::side::{HdrOut, Stopping};
use crate::stats::hdrlog::HdrLog;
use crate::stats::{Mode, Snapshot, report};
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

pub use crate::VERSION;

/// The output flags of a run.
#[derive(Clone, Debug)]
pub struct Outputs {
    json: Option<PathBuf>,
    hdr: Option<PathBuf>,
    html: Option<PathBuf>,
    max_errors: u64,
    /// Both sides run here, so the server's files go beside the client's.
    both: bool,
    /// The command line, the machine and the limits at start, for every JSON report.
    about: Option<serde_json::Value>,
}

/// How a run ended, for the face to print: the report for stdout, lines for stderr, and the
/// exit status (2 if a shard crashed or an output could not be written, 1 if errors exceed
/// --max-errors).
#[derive(Debug)]
pub struct Finished {
    pub report: String,
    pub notes: Vec<String>,
    pub code: i32,
}

/// A client run that timed nothing measured nothing: it fails, saying what arrived.
pub fn nothing_timed(s: &crate::stats::Snapshot) -> Option<String> {
    // Round trips of {rtt} messages are what a test against an echo server times.
    if s.mode != Mode::Client || s.latency_us.timed() || s.echo_rtt_us.timed() {
        return None;
    }
    let m = &s.messages;
    let held = s.connections.established;
    let what = if held == 0 {
        "no connection was established".to_string()
    } else if m.received == 0 && m.ignored > 0 {
        let first = m
            .sample
            .as_ref()
            .map_or(String::new(), |p| format!(": the first \"{p}\""));
        format!(
            "{held} connections were established, and none of the {} messages that arrived had \
             a time where --ts-path or --ts-regex said{first}",
            m.ignored
        )
    } else if m.received == 0 {
        format!(
            "{held} connections were established, and the server sent no message in {:.0} s \
             (does it push only when asked, or less often than the run lasted?)",
            s.elapsed_s
        )
    } else {
        let first = m.sample.as_ref().map_or(String::new(), |p| {
            format!("; the first unreadable payload: \"{p}\"")
        });
        format!(
            "{} messages received, {} with no timestamp c1m can read, {} with a timestamp that \
             is no delivery time (skewed){first}",
            m.received, m.unparsable, m.skewed
        )
    };
    Some(format!("nothing was timed: {what}"))
}

impl Finished {
    /// The report on stdout, the last notes on stderr; returns the exit status.
    pub fn print(&self) -> i32 {
        print!("{}", self.report);
        for n in &self.notes {
            eprintln!("c1m: {n}");
        }
        self.code
    }
}

impl Outputs {
    pub fn new(out: &crate::cli::Output, both: bool) -> Outputs {
        Outputs {
            json: out.json.clone(),
            hdr: out.hdr_log.clone(),
            html: out.html.clone(),
            max_errors: out.max_errors,
            both,
            about: None,
        }
    }

    /// What every JSON report of this run says about the run itself (`run`).
    pub fn set_about(&mut self, about: &super::about::About) {
        self.about = serde_json::to_value(about).ok();
    }

    /// A side's JSON report: the snapshot, its config echo, and `run`.
    pub fn json(&self, snap: &Snapshot, echo: &super::config::Echo, ended_by: &str) -> Value {
        let config = serde_json::to_value(echo).unwrap_or_default();
        let mut doc = report::json(snap, config, VERSION, ended_by);
        if let (Some(obj), Some(about)) = (doc.as_object_mut(), &self.about) {
            obj.insert("run".into(), about.clone());
        }
        doc
    }

    /// The file for a side: the path given, or beside it for the server of a local run.
    fn path(&self, base: Option<&Path>, mode: Mode, ext: &str) -> Option<PathBuf> {
        let base = base?;
        Some(match (mode, self.both) {
            (Mode::Server, true) => base.with_extension(format!("server.{ext}")),
            _ => base.to_path_buf(),
        })
    }

    /// The side's HDR interval log, created now (with its header) so that a path that cannot
    /// be written stops the run before it starts.
    pub fn open_hdr(&self, mode: Mode, start: SystemTime) -> Result<Option<HdrOut>> {
        let Some(path) = self.path(self.hdr.as_deref(), mode, "hdr") else {
            return Ok(None);
        };
        let what = match mode {
            Mode::Client => "Message latency in microseconds",
            Mode::Server => "Send lag in microseconds: payload stamp to the write of each frame",
        };
        let log = HdrLog::create(&path, start, what)
            .with_context(|| format!("cannot write the HDR log {}", path.display()))?;
        Ok(Some(HdrOut { log, path }))
    }

    /// Reports every side (the client first: it counts what the server sent before closing)
    /// and turns what they counted into the exit status.
    pub fn finish(&self, sides: Vec<Stopping>, ended_by: &str) -> Result<Finished> {
        let mut done = Finished {
            report: String::new(),
            notes: Vec::new(),
            code: 0,
        };
        for side in sides {
            self.report(side, ended_by, &mut done)?;
        }
        Ok(done)
    }

    fn report(&self, side: Stopping, ended_by: &str, done: &mut Finished) -> Result<()> {
        let Stopping {
            mut agg,
            echo,
            label,
            stopped,
            output_failed,
            notes,
        } = side;
        done.notes.extend(notes.iter().map(ToString::to_string));
        done.notes.extend(stopped.notes.iter().map(|n| match label {
            Some(l) => format!("{l}: {n}"),
            None => n.clone(),
        }));
        let mut snap = agg.snapshot(Instant::now());
        snap.workers = stopped.workers;
        done.notes.extend(clock_warnings(&snap));
        let mut config = echo.lines();
        config.push(("ended_by", ended_by.to_string()));
        if let Some(label) = label {
            done.report += &report::title(&format!("{label} report"));
        }
        done.report += &report::human(&snap, &config);
        done.report.push('\n');
        let who = label.map_or(String::new(), |l| format!(" by the {l}"));
        let (verdict, notes) = self.judge(&snap, &stopped.panics, output_failed, &who);
        let mut doc = self.json(&snap, &echo, ended_by);
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("verdict".into(), serde_json::to_value(&verdict)?);
            obj.insert("mergeable".into(), mergeable(&agg, &snap));
            if let Some(clock) = &stopped.clock {
                obj.insert("clock".into(), serde_json::to_value(clock)?);
                done.notes.push(server_clock_note(clock));
            }
        }
        if let Some(path) = self.path(self.json.as_deref(), snap.mode, "json") {
            std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")
                .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
            done.notes
                .push(format!("JSON report written to {}", path.display()));
        }
        // Rendered from the JSON, as `c1m report` renders a saved one: the page shows nothing
        // the JSON does not carry.
        if let Some(path) = self.path(self.html.as_deref(), snap.mode, "html") {
            std::fs::write(&path, crate::html::render(&doc))
                .with_context(|| format!("cannot write the HTML report to {}", path.display()))?;
            done.notes
                .push(format!("HTML report written to {}", path.display()));
        }
        done.notes.extend(notes);
        done.code = done.code.max(verdict.exit_status);
        Ok(())
    }

    /// The run's verdict, as its exit status gives it: 2 when a shard crashed or an output
    /// failed, 1 when nothing was timed or errors passed `--max-errors`; and the lines that
    /// say so, naming the side (`who`: " by the server") when there are two.
    fn judge(
        &self,
        snap: &Snapshot,
        panics: &[String],
        output_failed: bool,
        who: &str,
    ) -> (Verdict, Vec<String>) {
        if !panics.is_empty() || output_failed {
            let mut why: Vec<String> = panics
                .iter()
                .map(|p| format!("a shard thread crashed: {p}"))
                .collect();
            if output_failed {
                why.push("an output could not be written".to_string());
            }
            let notes = panics
                .iter()
                .map(|p| {
                    format!(
                        "a shard thread crashed{who}: {p}; its connections are missing from the \
                         report"
                    )
                })
                .collect();
            return (Verdict::new(2, why), notes);
        }
        let mut reasons = Vec::new();
        reasons.extend(nothing_timed(snap).map(Failure::NothingTimed));
        if snap.errors.total > self.max_errors {
            reasons.push(Failure::Errors(snap.errors.total, self.max_errors));
        }
        let why: Vec<String> = reasons.iter().map(|r| r.text("")).collect();
        let notes = reasons
            .iter()
            .map(|r| format!("{}: exit status 1", r.text(who)))
            .collect();
        (Verdict::new(i32::from(!why.is_empty()), why), notes)
    }
}

/// Why a run that ran failed (exit status 1).
enum Failure {
    /// What arrived, when nothing could be timed.
    NothingTimed(String),
    /// Errors counted, and --max-errors.
    Errors(u64, u64),
}

impl Failure {
    /// The reason, naming the side (`who`: " by the server") when there are two.
    fn text(&self, who: &str) -> String {
        match self {
            Failure::NothingTimed(what) => format!("{what}{who}"),
            Failure::Errors(errors, max) => {
                format!("{errors} errors counted{who}, more than --max-errors {max}")
            }
        }
    }
}

/// How the agents' latencies were set to the server's clock, said at the end.
/// What `c1m report --merge` needs to merge this report with others exactly: when the run
/// started on this machine's clock (µs since the epoch; it places the points of `series` beside
/// another report's), and the whole run's histograms in HdrHistogram's V2 form, base64.
fn mergeable(agg: &crate::stats::aggregate::Aggregator, snap: &Snapshot) -> Value {
    use crate::stats::hdr_serde::histogram::encode;
    let started_at_us = crate::engine::now_us() - (snap.elapsed_s * 1e6) as i64;
    serde_json::json!({
        "started_at_us": started_at_us,
        "latency_hdr": encode(agg.latency()),
        "pong_rtt_hdr": encode(agg.pong_rtt()),
        "echo_rtt_hdr": encode(agg.echo_rtt()),
    })
}

fn server_clock_note(c: &crate::workers::clock::Estimate) -> String {
    match (c.server, c.server_offset_us, c.server_uncertainty_us) {
        ("measured", Some(o), Some(u)) => format!(
            "the server's clock, measured through its control endpoint: {:+.2} ms ± {:.2} ms \
             against this one; the agents timed against it",
            o as f64 / 1e3,
            u as f64 / 1e3
        ),
        ("measured", ..) => "the server's clock could not be measured (its control endpoint did \
             not answer GET /clock): the agents timed against this machine's clock"
            .to_string(),
        ("given", Some(o), _) => format!(
            "the server's clock, as given (--server-clock): {:+.2} ms against this one",
            o as f64 / 1e3
        ),
        _ => "the server's clock is taken to be this machine's (--server-clock none): run the \
              coordinator on the server's machine or keep both on NTP"
            .to_string(),
    }
}

/// Agents whose clock is known less well than a tenth of the median latency: their
/// correction may move the figures by more than the figures can bear.
fn clock_warnings(snap: &Snapshot) -> Vec<String> {
    let p50 = snap.latency_us.p50;
    snap.workers
        .iter()
        .filter_map(|w| {
            let a = w.agent.as_ref()?;
            let u = a.clock_uncertainty_us?;
            (snap.latency_us.timed() && u * 10 > p50).then(|| {
                format!(
                    "agent {} ({}): its clock is known to ±{:.2} ms, more than 10 % of the \
                     measured p50 ({:.2} ms); latencies below a few times that are not to be trusted",
                    w.index,
                    a.addr,
                    u as f64 / 1e3,
                    p50 as f64 / 1e3
                )
            })
        })
        .collect()
}

/// What the exit status said, and why, carried in the JSON report so that a page rendered
/// from it later says the same.
#[derive(serde::Serialize)]
struct Verdict {
    passed: bool,
    exit_status: i32,
    why: Vec<String>,
}

impl Verdict {
    fn new(exit_status: i32, why: Vec<String>) -> Verdict {
        Verdict {
            passed: exit_status == 0,
            exit_status,
            why,
        }
    }
}
