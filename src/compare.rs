//! `c1m compare A.json B.json`: two runs' JSON reports side by side, each figure with its
//! change, a verdict (better, worse, within noise) and an exit status CI can gate a change on.
//!
//! Noise comes from the runs themselves: a run with several broadcasts has a figure per
//! broadcast (its latency percentiles, its delivery time). A's and B's are compared with a
//! Mann–Whitney U test (two-sided, normal approximation with tie correction): a change is
//! "within noise" when B's broadcasts cannot be told apart from A's (p ≥ 0.05). Ranks, not
//! means: one slow broadcast moves the verdict no more than any other. A whole-run figure with
//! no per-broadcast counterpart (the setup rate, p99.9, errors, memory per connection), or
//! fewer than [`MIN_BROADCASTS`] broadcasts on a side, has no noise estimate.

use anyhow::{Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Which way is better for a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Better {
    Lower,
    Higher,
}

/// One figure of both runs.
#[derive(Debug, PartialEq)]
struct Row {
    name: &'static str,
    unit: Unit,
    better: Better,
    /// Whether a worsening past the threshold fails the comparison.
    gates: bool,
    a: Option<f64>,
    b: Option<f64>,
    /// How likely A's and B's per-broadcast values are to differ this much by chance (the
    /// Mann–Whitney U test's two-sided p-value).
    p: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Micros,
    PerSecond,
    Count,
    Bytes,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Better,
    Worse,
    WithinNoise,
    Same,
    Missing,
}

impl Row {
    /// B relative to A: +0.25 is 25 % more.
    fn change(&self) -> Option<f64> {
        let (a, b) = (self.a?, self.b?);
        match a == 0.0 {
            true => (b == 0.0).then_some(0.0),
            false => Some((b - a) / a),
        }
    }

    fn verdict(&self) -> Verdict {
        let (Some(a), Some(b)) = (self.a, self.b) else {
            return Verdict::Missing;
        };
        // Equal, or a change the table shows as ±0.0 %.
        if a == b || self.change().is_some_and(|c| c.abs() < 0.0005) {
            return Verdict::Same;
        }
        if self.p.is_some_and(|p| p >= SIGNIFICANT) {
            return Verdict::WithinNoise;
        }
        match (b < a) == (self.better == Better::Lower) {
            true => Verdict::Better,
            false => Verdict::Worse,
        }
    }

    /// Worse by more than `threshold` (a fraction), outside the noise: fails the comparison.
    fn fails(&self, threshold: f64) -> bool {
        if !self.gates || self.verdict() != Verdict::Worse {
            return false;
        }
        match self.change() {
            Some(change) => change.abs() > threshold,
            // From zero to something: worse by any measure.
            None => true,
        }
    }
}

/// A report, read.
struct Run {
    path: PathBuf,
    report: Value,
}

impl Run {
    fn read(path: &Path) -> Result<Run> {
        Ok(Run {
            path: path.to_path_buf(),
            report: crate::stats::report::read(path)?,
        })
    }

    fn mode(&self) -> &str {
        self.report["mode"].as_str().unwrap_or("?")
    }

    fn num(&self, pointer: &str) -> Option<f64> {
        self.report.pointer(pointer)?.as_f64()
    }

    /// The per-broadcast values at `pointer` inside each row, where present, over the
    /// broadcasts sent at the run's full strength: those to at least 99 % of the most
    /// connections any broadcast found open (a broadcast during the ramp reaches fewer and is
    /// faster, and would pass for noise). A client's broadcast that reached fewer connections
    /// than were open (cut by the end of the run, or with losses) is left out too: its times
    /// are not a whole broadcast's.
    fn per_broadcast(&self, pointer: &str) -> Vec<f64> {
        let rows: Vec<&Value> = self.report["broadcasts"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let open = |b: &Value| b["open"].as_u64().unwrap_or(0);
        let most = rows.iter().map(|b| open(b)).max().unwrap_or(0);
        let full = |b: &Value| open(b) as f64 >= 0.99 * most as f64;
        let whole = |b: &Value| b["received"].as_u64().is_none_or(|r| r >= open(b));
        rows.into_iter()
            .filter(|b| full(b) && whole(b))
            .filter_map(|b| b.pointer(pointer)?.as_f64())
            .collect()
    }

    fn broadcast_time(&self) -> Option<f64> {
        median(self.per_broadcast(self.broadcast_pointer()))
    }

    fn broadcast_pointer(&self) -> &'static str {
        match self.mode() {
            "server" => "/duration_us",
            _ => "/delivery_us",
        }
    }

    fn summary(&self) -> String {
        let r = &self.report;
        format!(
            "{} ({}, {} connections, {} broadcasts, {})",
            self.path.display(),
            self.mode(),
            crate::fmt::int(r["connections"]["peak"].as_u64().unwrap_or(0)),
            r["broadcasts"].as_array().map_or(0, Vec::len),
            r["generated_at"].as_str().unwrap_or("undated"),
        )
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Fewer broadcasts than this on either side give no noise estimate.
pub const MIN_BROADCASTS: usize = 5;

/// A p-value at or above this is "within noise".
const SIGNIFICANT: f64 = 0.05;

/// The Mann–Whitney U test's two-sided p-value for samples `a` and `b` (normal approximation,
/// with the tie correction and a continuity correction); `None` when either has fewer than
/// [`MIN_BROADCASTS`] values.
fn mann_whitney_p(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() < MIN_BROADCASTS || b.len() < MIN_BROADCASTS {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a.iter().map(|&x| (x, true)).collect();
    all.extend(b.iter().map(|&x| (x, false)));
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (mut rank_sum_a, mut ties, mut i) = (0.0, 0.0, 0);
    while i < all.len() {
        let j = i + all[i..].iter().take_while(|v| v.0 == all[i].0).count() - 1;
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        rank_sum_a += rank * all[i..=j].iter().filter(|v| v.1).count() as f64;
        i = j + 1;
    }
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let n = n1 + n2;
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if variance <= 0.0 {
        return Some(1.0);
    }
    let z = ((u - n1 * n2 / 2.0).abs() - 0.5).max(0.0) / variance.sqrt();
    Some(erfc(z / std::f64::consts::SQRT_2).min(1.0))
}

/// The complementary error function (Numerical Recipes' erfcc, relative error under 1.2e-7):
/// a p-value needs no more.
fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = [
        -1.265_512_23,
        1.000_023_68,
        0.374_091_96,
        0.096_784_18,
        -0.186_288_06,
        0.278_868_07,
        -1.135_203_98,
        1.488_515_87,
        -0.822_152_23,
        0.170_872_77,
    ];
    let sum = poly.iter().rev().fold(0.0, |acc, c| acc * t + c);
    let r = t * (-x * x + sum).exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

fn noise(a: &Run, b: &Run, pointer: &str) -> Option<f64> {
    mann_whitney_p(&a.per_broadcast(pointer), &b.per_broadcast(pointer))
}

fn rows(a: &Run, b: &Run) -> Vec<Row> {
    let latency = |name, key: &str, per_broadcast: Option<&str>| Row {
        name,
        unit: Unit::Micros,
        better: Better::Lower,
        gates: true,
        a: a.num(&format!("/latency_us/{key}")),
        b: b.num(&format!("/latency_us/{key}")),
        p: per_broadcast.and_then(|p| noise(a, b, p)),
    };
    let count = |name, pointer: &str| Row {
        name,
        unit: Unit::Count,
        better: Better::Lower,
        gates: false,
        a: a.num(pointer),
        b: b.num(pointer),
        p: None,
    };
    let mut rows = vec![
        Row {
            name: "setup rate",
            unit: Unit::PerSecond,
            better: Better::Higher,
            gates: false,
            a: a.num("/connections/ramp_rate"),
            b: b.num("/connections/ramp_rate"),
            p: None,
        },
        Row {
            name: match a.mode() {
                "server" => "server loop (median)",
                _ => "broadcast (median)",
            },
            unit: Unit::Micros,
            better: Better::Lower,
            gates: true,
            a: a.broadcast_time(),
            b: b.broadcast_time(),
            p: noise(a, b, a.broadcast_pointer()),
        },
    ];
    if a.mode() == "client" {
        rows.extend([
            latency("latency p50", "p50", Some("/latency_us/p50")),
            latency("latency p99", "p99", Some("/latency_us/p99")),
            latency("latency p99.9", "p999", None),
            latency("latency max", "max", Some("/latency_us/max")),
            count("missed", "/messages/missed"),
        ]);
    }
    rows.push(count("errors", "/errors/total"));
    rows.push(Row {
        name: "memory per connection",
        unit: Unit::Bytes,
        better: Better::Lower,
        gates: true,
        a: a.num("/memory/per_conn_bytes"),
        b: b.num("/memory/per_conn_bytes"),
        p: None,
    });
    rows
}

fn show(v: Option<f64>, unit: Unit) -> String {
    let Some(v) = v else {
        return "-".into();
    };
    match unit {
        Unit::Micros if v < 1_000.0 => format!("{v:.0} µs"),
        Unit::Micros if v < 1_000_000.0 => format!("{:.1} ms", v / 1e3),
        Unit::Micros => format!("{:.2} s", v / 1e6),
        Unit::PerSecond => format!("{}/s", crate::fmt::int(v.round() as u64)),
        Unit::Count => crate::fmt::int(v.round() as u64),
        Unit::Bytes => format!("{:.2} KiB", v / 1024.0),
    }
}

fn verdict_text(row: &Row) -> String {
    let noise = row
        .p
        .map(|p| match p {
            p if p < 0.001 => " (p < 0.001)".to_string(),
            p => format!(" (p {p:.3})"),
        })
        .unwrap_or_default();
    match row.verdict() {
        Verdict::Better => format!("better{noise}"),
        Verdict::Worse => format!("worse{noise}"),
        Verdict::WithinNoise => format!("within noise{noise}"),
        Verdict::Same => "same".into(),
        Verdict::Missing => "not in both reports".into(),
    }
}

/// How the figures are read, said under the table in the terminal and on the page.
const EXPLAIN: [&str; 3] = [
    "broadcast: first send to last receive (client) or the server's loop (server), the median \
     over the run's broadcasts at full strength (to at least 99 % of the most connections any \
     found open: not those of the ramp); a client's broadcast that reached fewer connections \
     than were open (cut by the end of the run, or with losses) is left out of it and of the \
     noise.",
    "Noise: where each broadcast has the figure (its time, its p50, p99 and max), A's \
     broadcasts are compared with B's by a Mann-Whitney U test; p is the chance of a \
     difference this large between two runs of the same thing, and at p >= 0.05 the change is \
     within noise. It needs 5 broadcasts at full strength on each side; the setup rate, p99.9, \
     counts and memory have no per-broadcast value and no p.",
    "Memory per connection: the report's memory.per_conn_bytes, user memory grown over the run \
     per connection open at the most.",
];

/// The rows as shown, both in the terminal and on the page.
fn figures(rows: &[Row], threshold: f64) -> Vec<crate::html::compare::Figure> {
    rows.iter()
        .map(|r| crate::html::compare::Figure {
            name: r.name,
            a: show(r.a, r.unit),
            b: show(r.b, r.unit),
            change: r
                .change()
                .map_or("-".into(), |c| format!("{:+.1} %", c * 100.0)),
            verdict: verdict_text(r),
            class: match r.verdict() {
                _ if r.fails(threshold) => "fail",
                Verdict::Better => "pass",
                Verdict::Worse => "warn",
                _ => "none",
            },
        })
        .collect()
}

/// Whether B failed the gate, and the sentence that says so.
fn outcome(rows: &[Row], threshold: f64) -> (bool, String) {
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.fails(threshold))
        .map(|r| r.name)
        .collect();
    let pct = threshold * 100.0;
    match failed.is_empty() {
        true => (
            false,
            format!("B is not worse than A by more than {pct:.0} % on any gated figure."),
        ),
        false => (
            true,
            format!(
                "B is worse than A by more than {pct:.0} % on: {}.",
                failed.join(", ")
            ),
        ),
    }
}

/// The comparison as a person reads it in a terminal.
fn render(a: &Run, b: &Run, figures: &[crate::html::compare::Figure], outcome: &str) -> String {
    let mut out = format!("A = {}\nB = {}\n\n", a.summary(), b.summary());
    let width = figures.iter().map(|f| f.name.len()).max().unwrap_or(0);
    out += &format!(
        "{:width$}  {:>12}  {:>12}  {:>9}  verdict\n",
        "figure", "A", "B", "change"
    );
    for f in figures {
        out += &format!(
            "{:width$}  {:>12}  {:>12}  {:>9}  {}\n",
            f.name, f.a, f.b, f.change, f.verdict
        );
    }
    out.push('\n');
    for line in EXPLAIN {
        out += line;
        out.push('\n');
    }
    out + outcome + "\n"
}

/// Runs `c1m compare`: the exit status is 1 when B is worse past the threshold.
pub fn run(args: &crate::cli::CompareArgs) -> Result<i32> {
    let (a, b) = (Run::read(&args.a)?, Run::read(&args.b)?);
    if a.mode() != b.mode() {
        bail!(
            "A is a {} report and B a {} one: compare a side with the same side",
            a.mode(),
            b.mode()
        );
    }
    let rows = rows(&a, &b);
    let figures = figures(&rows, args.threshold);
    let (failed, outcome) = outcome(&rows, args.threshold);
    print!("{}", render(&a, &b, &figures, &outcome));
    if let Some(path) = &args.html {
        use anyhow::Context;
        let page = crate::html::compare::page(&crate::html::compare::Pair {
            a: (&a.summary(), &a.report),
            b: (&b.summary(), &b.report),
            figures: &figures,
            explain: &EXPLAIN,
            outcome: (failed, &outcome),
        });
        std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("c1m: HTML comparison written to {}", path.display());
    }
    Ok(i32::from(failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(a: f64, b: f64, p: Option<f64>) -> Row {
        Row {
            name: "latency p99",
            unit: Unit::Micros,
            better: Better::Lower,
            gates: true,
            a: Some(a),
            b: Some(b),
            p,
        }
    }

    #[test]
    fn verdicts_and_the_gate() {
        assert_eq!(row(100.0, 90.0, None).verdict(), Verdict::Better);
        assert_eq!(row(100.0, 130.0, None).verdict(), Verdict::Worse);
        assert!(row(100.0, 130.0, None).fails(0.1));
        assert!(!row(100.0, 105.0, None).fails(0.1));
        // Runs that cannot be told apart: within noise, and no failure however large.
        let noisy = row(100.0, 130.0, Some(0.4));
        assert_eq!(noisy.verdict(), Verdict::WithinNoise);
        assert!(!noisy.fails(0.1));
        assert_eq!(row(0.0, 0.0, None).verdict(), Verdict::Same);
        let higher = Row {
            better: Better::Higher,
            ..row(100.0, 90.0, None)
        };
        assert_eq!(higher.verdict(), Verdict::Worse);
        // Ungated figures never fail.
        let ungated = Row {
            gates: false,
            ..row(1.0, 50.0, None)
        };
        assert!(!ungated.fails(0.1));
        // From zero: worse by any measure.
        assert!(row(0.0, 5.0, None).fails(0.5));
    }

    #[test]
    fn mann_whitney_and_thresholds() {
        // Against SciPy's mannwhitneyu(a, b, method="asymptotic") (continuity corrected).
        let a: Vec<f64> = (1..=10).map(f64::from).collect();
        let b: Vec<f64> = (11..=20).map(f64::from).collect();
        let p = mann_whitney_p(&a, &b).unwrap();
        assert!((p - 0.000_182_67).abs() < 1e-6, "{p}");
        let odd = [1.0, 3.0, 5.0, 7.0, 9.0];
        let even = [2.0, 4.0, 6.0, 8.0, 10.0];
        let p = mann_whitney_p(&odd, &even).unwrap();
        assert!((p - 0.676_103).abs() < 1e-5, "{p}");
        // One wild broadcast does not hide a shift: ranks, not ranges.
        let mut slow: Vec<f64> = (0..10).map(|i| 130.0 + f64::from(i)).collect();
        let mut base: Vec<f64> = (0..10).map(|i| 100.0 + f64::from(i)).collect();
        base.push(400.0);
        slow.push(131.0);
        assert!(mann_whitney_p(&base, &slow).unwrap() < 0.01);
        assert_eq!(mann_whitney_p(&[1.0; 4], &[1.0; 9]), None);
        assert_eq!(mann_whitney_p(&[1.0; 5], &[1.0; 5]), Some(1.0));
        assert_eq!(crate::cli::parse_threshold("10%"), Ok(0.1));
        assert_eq!(crate::cli::parse_threshold("0.25"), Ok(0.25));
        assert!(crate::cli::parse_threshold("-3%").is_err());
        assert!(crate::cli::parse_threshold("ten").is_err());
    }
}
