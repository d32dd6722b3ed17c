//! `c1m compare A.json B.json --html OUT.html`: the comparison as one self-contained page —
//! the figures with their verdicts, both runs' latency spectra on one chart, and each
//! broadcast's time in both runs.

use super::chart::{Chart, Line};
use super::{esc, head, spectrum};
use serde_json::Value;
use std::fmt::Write as _;

/// One compared figure, as `c1m compare` shows it.
pub struct Figure {
    pub name: &'static str,
    pub a: String,
    pub b: String,
    pub change: String,
    pub verdict: String,
    /// The page's class for the verdict: `pass` (better), `warn` (worse), `fail` (worse past
    /// the threshold), `none` (within noise, the same, or missing).
    pub class: &'static str,
}

/// What the page shows: each run's one-line summary and report, the figures, how to read
/// them, and whether B failed the gate with the sentence that says so.
pub struct Pair<'a> {
    pub a: (&'a str, &'a Value),
    pub b: (&'a str, &'a Value),
    pub figures: &'a [Figure],
    pub explain: &'a [&'a str],
    pub outcome: (bool, &'a str),
}

pub fn page(p: &Pair) -> String {
    let (failed, outcome) = p.outcome;
    let class = if failed { "fail" } else { "pass" };
    let mut out = head("c1m compare");
    let _ = write!(
        out,
        "<h1>c1m compare</h1><p class=\"{class}\">{}</p><p>A = <code>{}</code><br>B = \
         <code>{}</code></p>",
        esc(outcome),
        esc(p.a.0),
        esc(p.b.0)
    );
    out += &table(p.figures);
    for line in p.explain {
        let _ = write!(out, "<p class=\"none\">{}</p>", esc(line));
    }
    out += &spectra(p.a.1, p.b.1);
    out += &broadcasts(p.a.1, p.b.1);
    out + "</body></html>\n"
}

fn table(figures: &[Figure]) -> String {
    let mut out = String::from(
        "<table><tr><th>figure</th><th>A</th><th>B</th><th>change</th><th>verdict</th></tr>",
    );
    for f in figures {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            f.name,
            esc(&f.a),
            esc(&f.b),
            esc(&f.change),
            f.class,
            esc(&f.verdict)
        );
    }
    out + "</table>"
}

fn spectra(a: &Value, b: &Value) -> String {
    let ((pa, whole_a), (pb, whole_b)) = (spectrum(a), spectrum(b));
    let mut out = String::from("<h2>Latency distribution</h2>");
    if !(whole_a && whole_b) {
        out += "<p class=\"none\">A report without a whole spectrum (from a c1m before it was \
                kept) is drawn through its percentile table.</p>";
    }
    out + &Chart {
        title: "Latency spectrum, A and B",
        x_label: "percentile",
        y_label: "ms",
        lines: vec![Line::new("A", pa), Line::new("B", pb)],
        spectrum: true,
    }
    .svg()
}

/// Each broadcast's time by its place in the run (sequence numbers need not match).
fn broadcasts(a: &Value, b: &Value) -> String {
    let (key, what) = match a["mode"].as_str() {
        Some("server") => ("duration_us", "server loop"),
        _ => ("delivery_us", "first send → last receive"),
    };
    let times = |r: &Value| -> Vec<(f64, f64)> {
        let rows = r["broadcasts"].as_array().into_iter().flatten();
        let ms = rows.filter_map(|b| Some(b[key].as_f64()? / 1000.0));
        ms.enumerate().map(|(i, t)| (i as f64 + 1.0, t)).collect()
    };
    let title = format!("Each broadcast ({what}), A and B");
    let chart = Chart {
        title: &title,
        x_label: "broadcast (in order)",
        y_label: "ms",
        lines: vec![Line::new("A", times(a)), Line::new("B", times(b))],
        spectrum: false,
    };
    "<h2>Broadcasts</h2>".to_string() + &chart.svg()
}
