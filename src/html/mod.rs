//! The HTML report: one self-contained file rendered from a JSON report (`c1m report RUN.json
//! --html OUT.html`, and `--html PATH` at the end of a run, through the same JSON), so a run on
//! another machine renders the same later. Inline SVG charts and CSS only: no script, no font,
//! no image, nothing fetched.

mod chart;
pub mod compare;
mod over_time;

use chart::{Chart, Line, spectrum_x};
use serde_json::Value;
use std::fmt::Write as _;

/// The page's layout; its colours are the theme's roles (see [`colours`]).
const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:900px;\
color:var(--text)}h1{font-size:1.5em;color:var(--accent)}h2{font-size:1.15em;margin-top:2em;\
color:var(--accent);border-bottom:1px solid var(--rule)}table{border-collapse:collapse;\
margin:.5em 0}td,th{padding:2px 10px;text-align:right;border-bottom:1px solid var(--rule)}\
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}\
.pass{color:var(--ok);font-weight:bold}.fail{color:var(--error);font-weight:bold}\
.warn{color:var(--warn);font-weight:bold}.none{color:var(--muted)}\
code{font-size:12px;word-break:break-all}svg{max-width:100%;height:auto}\
@media print{h2{break-after:avoid}svg{break-inside:avoid}}";

/// The theme whose roles colour the page: white paper wants the light terminal's colours.
const PAGE_THEME: &str = "light";

/// CSS variables for the theme's roles: text, muted, ok, warn, error, accent, and the
/// border's colour for rules.
fn colours() -> String {
    let theme =
        crate::theme::Theme::load(PAGE_THEME).unwrap_or_else(|_| crate::theme::Theme::fallback());
    let roles = [
        ("text", theme.text, "#1c1c1c"),
        ("muted", theme.muted, "#595959"),
        ("ok", theme.ok, "#007a00"),
        ("warn", theme.warn, "#875f00"),
        ("error", theme.error, "#af0000"),
        ("accent", theme.accent, "#005f87"),
        ("rule", theme.border, "#a8a8a8"),
    ];
    let mut out = String::from(":root{");
    for (name, style, fallback) in roles {
        let colour = crate::theme::css_colour(style).unwrap_or_else(|| fallback.into());
        let _ = write!(out, "--{name}:{colour};");
    }
    out + "}"
}

/// `c1m report RUN.json --html OUT.html`.
pub fn run(args: &crate::cli::ReportArgs) -> anyhow::Result<i32> {
    use anyhow::Context;
    let (Some(html), [json]) = (&args.html, &args.reports[..]) else {
        anyhow::bail!(
            "c1m report RUN.json --html OUT.html renders one report; to merge several, add --merge"
        );
    };
    let report = crate::stats::report::read(json)?;
    std::fs::write(html, render(&report))
        .with_context(|| format!("cannot write {}", html.display()))?;
    eprintln!("c1m: HTML report written to {}", html.display());
    Ok(0)
}

/// The whole page for one report.
pub fn render(r: &Value) -> String {
    let mode = r["mode"].as_str().unwrap_or("?");
    let mut page = head(&format!("c1m {mode} report"));
    page += &header(r, mode);
    page += &charts(r, mode);
    page += &percentiles(
        &r["latency_us"],
        "Latency percentiles (ms)",
        "messages timed",
    );
    // Round trips: shown when the run timed any (a client with --ping, or {rtt} messages an
    // echo server sent back).
    for (key, title, noun) in [
        (
            "echo_rtt_us",
            "Echo round trip (ms)",
            "round trips timed ({rtt} messages the server sent back)",
        ),
        ("pong_rtt_us", "Ping round trip (ms)", "pongs timed"),
    ] {
        if r[key]["count"].as_u64().unwrap_or(0) > 0 {
            page += &percentiles(&r[key], title, noun);
        }
    }
    page += &broadcast_chart(r, mode);
    page += &broadcasts(r, mode);
    page += &workers(r);
    page += &errors(r);
    if !r["run"].is_null() {
        page += &key_values("Limits at the start", limits(r));
    }
    page += &key_values("Configuration", config(r));
    page += "</body></html>\n";
    page
}

/// The page up to its body: the title and the style, nothing fetched.
fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{}{STYLE}</style></head><body>",
        esc(title),
        colours()
    )
}

/// Text for HTML: what a report holds came from servers and users.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Passed, or failed and why, as the run's exit status judged it (`verdict` in the report);
/// judged again from the counts for a report from before it was kept.
fn verdict(r: &Value, mode: &str) -> (bool, String) {
    let errors = r["errors"]["total"].as_u64().unwrap_or(0);
    let max = r["config"]["max_errors"].as_u64().unwrap_or(0);
    if let Some(passed) = r["verdict"]["passed"].as_bool() {
        let why: Vec<&str> = r["verdict"]["why"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        return match passed {
            true => (true, format!("{errors} errors (--max-errors {max})")),
            false => (false, why.join("; ")),
        };
    }
    if errors > max {
        return (
            false,
            format!("{errors} errors, more than --max-errors {max}"),
        );
    }
    let timed = |k: &str| r[k]["count"].as_u64().unwrap_or(0) > 0;
    if mode == "client" && !timed("latency_us") && !timed("echo_rtt_us") {
        return (false, "nothing was timed".into());
    }
    (true, format!("{errors} errors (--max-errors {max})"))
}

fn header(r: &Value, mode: &str) -> String {
    let (passed, why) = verdict(r, mode);
    let class = if passed { "pass" } else { "fail" };
    let word = if passed { "Passed" } else { "Failed" };
    let c = &r["connections"];
    format!(
        "<h1>c1m {mode} report</h1><p><span class=\"{class}\">{word}</span>: {}; ended by {}. \
         Peak {} connections, {} missed.{}</p>{}{}",
        esc(&why),
        esc(r["ended_by"].as_str().unwrap_or("?")),
        crate::fmt::int(c["peak"].as_u64().unwrap_or(0)),
        r["messages"]["missed"]
            .as_u64()
            .map_or("-".into(), crate::fmt::int),
        resets(&r["messages"]["reset"]),
        about(r),
        merged(&r["merged"]),
    )
}

/// Connections reset mid-run, and the broadcasts lost with them, when there were any.
fn resets(reset: &Value) -> String {
    match reset["connections"].as_u64() {
        Some(n) if n > 0 => format!(
            " {} connections reset, owed {} broadcasts not counted missed.",
            crate::fmt::int(n),
            reset["unreceived"]
                .as_u64()
                .map_or("-".into(), crate::fmt::int)
        ),
        _ => String::new(),
    }
}

/// A report `c1m report --merge` wrote: from what, and what it could not merge.
fn merged(m: &Value) -> String {
    let Some(reports) = m["reports"].as_array() else {
        return String::new();
    };
    let names: Vec<&str> = reports.iter().filter_map(Value::as_str).collect();
    let slices = match m["of"].as_u64() {
        Some(of) => {
            let given: Vec<String> = m["segments"]
                .as_array()
                .into_iter()
                .flatten()
                .map(ToString::to_string)
                .collect();
            format!(": segments {} of {of}", given.join(", "))
        }
        None => String::new(),
    };
    format!(
        "<p>Merged from {} reports ({}{slices}); the machine and limits shown are the first's. \
         Percentiles of one second or of one broadcast cannot be merged and are not drawn.</p>",
        names.len(),
        esc(&names.join(", ")),
    )
}

/// The command line, version and machine; what an older report lacks is said.
fn about(r: &Value) -> String {
    let version = esc(r["version"].as_str().unwrap_or("?"));
    let at = esc(r["generated_at"].as_str().unwrap_or("?"));
    let run = &r["run"];
    if run.is_null() {
        return format!(
            "<p>c1m {version} · {at}</p>{}",
            missing("command line, machine or kernel limits (<code>run</code>)")
        );
    }
    let argv: Vec<&str> = run["argv"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let m = &run["machine"];
    let memory = m["memory_bytes"]
        .as_u64()
        .map_or("?".into(), crate::fmt::size);
    format!(
        "<p><code>{}</code></p><p>c1m {version} · {at} · {} cores, {memory}, Linux {}</p>",
        esc(&argv.join(" ")),
        m["cores"].as_u64().unwrap_or(0),
        esc(m["kernel"].as_str().unwrap_or("?")),
    )
}

fn charts(r: &Value, mode: &str) -> String {
    let mut out = String::from("<h2>Over time</h2>");
    if r["series"].is_array() {
        out += &resolution(r);
        for c in over_time::charts(r, mode) {
            out += &c.svg();
        }
    } else {
        out += &missing("per-second history (<code>series</code>)");
    }
    out += "<h2>Latency distribution</h2>";
    let (points, whole) = spectrum(r);
    if !whole {
        out += &missing_so(
            "percentile spectrum (<code>latency_spectrum_us</code>)",
            "the chart joins the percentiles below",
        );
    }
    out += &Chart {
        title: "Latency spectrum",
        x_label: "percentile",
        y_label: "ms",
        lines: vec![Line::new("latency", points)],
        spectrum: true,
    }
    .svg();
    out
}

/// Said where a part of the page is left out because the report does not carry it: an
/// older c1m wrote it.
fn missing(what: &str) -> String {
    missing_so(what, "this part is left out")
}

fn missing_so(what: &str, so: &str) -> String {
    format!(
        "<p class=\"none\">This report has no {what}: it was written by a c1m from before that \
         was kept, so {so}.</p>"
    )
}

/// What one point of the charts covers: a second, or more once a long run's history merged
/// neighbours (at most 3,600 points are kept).
fn resolution(r: &Value) -> String {
    let mut spans: Vec<f64> = r["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["dt_s"].as_f64())
        .collect();
    let points = spans.len();
    spans.sort_by(f64::total_cmp);
    let widest = spans.last().copied().unwrap_or(0.0);
    // The history halves itself at 3,600 points, merging neighbours into points of 2, 4, … s;
    // a short run's points are seconds, some stretched by a late tick or cut by the end.
    let merged = points >= 1800 && spans[points / 2] > 1.5;
    match merged {
        true => format!(
            "<p>{points} points; the run's history was downsampled to keep at most 3,600, so a \
             point covers up to {widest:.0} s (rates are means over it, latency the highest \
             percentiles in it).</p>"
        ),
        false if widest > 1.5 => format!(
            "<p>{points} points, one a second; a point covers up to {widest:.1} s where the run \
             was too busy to close its second on time.</p>"
        ),
        false => format!("<p>{points} points, one a second.</p>"),
    }
}

/// The latency spectrum's points (x as [`spectrum_x`], ms), and whether they are the report's
/// whole spectrum: a report without one still has the percentile table, and the points are
/// those.
fn spectrum(r: &Value) -> (Vec<(f64, f64)>, bool) {
    let point = |p: f64, us: &Value| Some((spectrum_x(p), us.as_f64()? / 1000.0));
    if let Some(all) = r["latency_spectrum_us"].as_array() {
        let points = all
            .iter()
            .filter_map(|p| point(p["percentile"].as_f64()?, &p["value_us"]))
            .collect();
        return (points, true);
    }
    let l = &r["latency_us"];
    let table = [
        (50.0, "p50"),
        (75.0, "p75"),
        (95.0, "p95"),
        (99.0, "p99"),
        (99.9, "p999"),
        (99.99, "p9999"),
    ];
    let points = table
        .into_iter()
        .filter_map(|(p, k)| point(p, &l[k]))
        .collect();
    (points, false)
}

/// Each broadcast's time (client: first send to last receive, and its latency p50 and p99;
/// server: its loop), by sequence number.
fn broadcast_chart(r: &Value, mode: &str) -> String {
    let rows = r["broadcasts"].as_array().cloned().unwrap_or_default();
    let per = |name, f: &dyn Fn(&Value) -> Option<f64>| {
        let points = rows
            .iter()
            .map(|b| Some((b["seq"].as_f64()?, f(b)? / 1000.0)));
        Line::broken(name, points)
    };
    let lines = match mode {
        "server" => vec![per("server loop", &|b| b["duration_us"].as_f64())],
        _ => vec![
            per("first send → last receive", &|b| {
                b["delivery_us"].as_f64()
            }),
            per("p50", &|b| b["latency_us"]["p50"].as_f64()),
            per("p99", &|b| b["latency_us"]["p99"].as_f64()),
        ],
    };
    Chart {
        title: "Each broadcast",
        x_label: "broadcast (seq)",
        y_label: "ms",
        lines,
        spectrum: false,
    }
    .svg()
}

/// One row per worker process, when the side ran as several.
fn workers(r: &Value) -> String {
    let rows = r["workers"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return String::new();
    }
    if rows.iter().any(|w| w["agent"].is_object()) {
        return agents(&rows);
    }
    let mut out = format!(
        "<h2>Worker processes ({})</h2><table><tr><th>worker</th><th>pid</th><th>state</th>\
         <th>open</th><th>errors</th><th>RSS</th><th>CPU s</th><th>exit</th></tr>",
        rows.len()
    );
    for w in &rows {
        let rss = w["rss_bytes"].as_u64().map_or("-".into(), crate::fmt::size);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{rss}</td><td>{}</td><td>{}</td></tr>",
            w["index"],
            w["pid"],
            esc(w["state"].as_str().unwrap_or("?")),
            w["active"],
            w["errors"],
            cpu_s(w),
            esc(w["exit"].as_str().unwrap_or("")),
        );
    }
    out + "</table>"
}

/// One row per agent: where it is, and its clock against the coordinator's.
fn agents(rows: &[Value]) -> String {
    let mut out = format!(
        "<h2>Agents ({})</h2><table><tr><th>agent</th><th>address</th><th>host</th><th>link</th>\
         <th>state</th><th>open</th><th>errors</th><th>RSS</th><th>CPU s</th>\
         <th>clock offset (ms)</th></tr>",
        rows.len()
    );
    for w in rows {
        let a = &w["agent"];
        let clock = match (
            a["clock_offset_us"].as_f64(),
            a["clock_uncertainty_us"].as_f64(),
        ) {
            (Some(o), Some(u)) => format!("{:+.2} ± {:.2}", o / 1e3, u / 1e3),
            _ => "-".into(),
        };
        let state = match w["state"].as_str() {
            Some("died") => "lost",
            Some(s) => s,
            None => "?",
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{clock}</td></tr>",
            w["index"],
            esc(a["addr"].as_str().unwrap_or("?")),
            esc(a["host"].as_str().unwrap_or("?")),
            esc(a["link"].as_str().unwrap_or("-")),
            esc(state),
            w["active"],
            w["errors"],
            w["rss_bytes"].as_u64().map_or("-".into(), crate::fmt::size),
            cpu_s(w),
        );
    }
    out + "</table>"
}

/// A worker's or agent's CPU seconds; `-` in a report from before c1m counted them.
fn cpu_s(w: &Value) -> String {
    w["cpu_s"]
        .as_f64()
        .map_or("-".into(), |s| format!("{s:.1}"))
}

/// A histogram's percentiles (`l` as latency_us is), under `title`; `noun` says what it counted.
fn percentiles(l: &Value, title: &str, noun: &str) -> String {
    let mut out = format!("<h2>{title}</h2><table><tr>");
    let keys = ["min", "p50", "p75", "p95", "p99", "p999", "p9999", "max"];
    for k in keys {
        let _ = write!(out, "<th>{k}</th>");
    }
    out += "</tr><tr>";
    for k in keys {
        let v = l[k]
            .as_f64()
            .map_or("-".into(), |v| format!("{:.2}", v / 1000.0));
        let _ = write!(out, "<td>{v}</td>");
    }
    let _ = write!(
        out,
        "</tr></table><p>{} {noun}.</p>",
        crate::fmt::int(l["count"].as_u64().unwrap_or(0))
    );
    out
}

fn broadcasts(r: &Value, mode: &str) -> String {
    let rows = r["broadcasts"].as_array().cloned().unwrap_or_default();
    let mut out = format!("<h2>Broadcasts ({})</h2><table>", rows.len());
    let ms = |v: &Value| {
        v.as_f64()
            .map_or("-".into(), |v| format!("{:.1}", v / 1000.0))
    };
    match mode {
        "server" => {
            out += "<tr><th>seq</th><th>sent</th><th>dropped</th><th>open</th><th>bytes</th><th>server loop ms</th></tr>";
            for b in &rows {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    b["seq"],
                    b["sent"],
                    b["dropped"],
                    b["open"],
                    b["bytes"],
                    ms(&b["duration_us"])
                );
            }
        }
        _ => {
            out += "<tr><th>seq</th><th>received</th><th>open</th><th>first send → last receive ms</th><th>p50 ms</th><th>p99 ms</th></tr>";
            for b in &rows {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    b["seq"],
                    b["received"],
                    b["open"],
                    ms(&b["delivery_us"]),
                    ms(&b["latency_us"]["p50"]),
                    ms(&b["latency_us"]["p99"])
                );
            }
        }
    }
    out + "</table>"
}

fn errors(r: &Value) -> String {
    let mut out =
        String::from("<h2>Errors</h2><table><tr><th>class</th><th>count</th><th>first</th></tr>");
    let classes = r["errors"]["by_class"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    for (class, n) in classes.iter().filter(|(_, n)| n.as_u64() > Some(0)) {
        any = true;
        let first = r["errors"]["samples"][class].as_str().unwrap_or("");
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{n}</td><td>{}</td></tr>",
            esc(class),
            esc(first)
        );
    }
    if !any {
        out += "<tr><td colspan=\"3\">none</td></tr>";
    }
    out + "</table>"
}

fn limits(r: &Value) -> Vec<(String, String)> {
    r["run"]["limits_at_start"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let name = l["name"].as_str().unwrap_or("?").to_string();
            let v = format!(
                "{} (needs {}): {}",
                l["value"].as_str().unwrap_or("?"),
                l["target"].as_str().unwrap_or("?"),
                l["status"].as_str().unwrap_or("?")
            );
            (name, v)
        })
        .collect()
}

fn config(r: &Value) -> Vec<(String, String)> {
    r["config"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect()
}

fn key_values(title: &str, rows: Vec<(String, String)>) -> String {
    let mut out = format!("<h2>{title}</h2><table>");
    for (k, v) in rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td></tr>",
            esc(&k),
            esc(&v)
        );
    }
    out + "</table>"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// WCAG's contrast of `#rrggbb` on white.
    fn contrast_on_white(hex: &str) -> f64 {
        let lin = |i: usize| {
            let s = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
            if s <= 0.039_28 {
                s / 12.92
            } else {
                ((s + 0.055) / 1.055).powf(2.4)
            }
        };
        1.05 / (0.2126 * lin(1) + 0.7152 * lin(3) + 0.0722 * lin(5) + 0.05)
    }

    #[test]
    fn the_pages_words_are_readable_in_the_theme_colours() {
        let css = colours();
        for role in ["text", "muted", "ok", "warn", "error", "accent"] {
            let at = css.find(&format!("--{role}:#")).expect(role) + role.len() + 3;
            let hex = &css[at..at + 7];
            // WCAG AA for normal text: 4.5:1.
            assert!(
                contrast_on_white(hex) >= 4.5,
                "{role} {hex}: {:.2}:1",
                contrast_on_white(hex)
            );
        }
        // The light theme's own colours, not the fallbacks.
        assert!(
            css.contains("--error:#af0000;") && css.contains("--muted:#6c6c6c;"),
            "{css}"
        );
    }

    /// A client report as an hour-long run writes it: 3,600 points (merged to 2 s each), 1,000
    /// broadcasts, 51 workers, and a server's words that are not HTML.
    fn hour_long() -> Value {
        let series: Vec<Value> = (0..3600u32)
            .map(|i| {
                json!({"t_s": 2.0 * f64::from(i), "dt_s": 2.0, "open": 1_000_000, "target": 1_000_000,
                  "setup_per_s": 0.0, "messages_per_s": 170_000.0 + f64::from(i % 7), "errors": i % 3,
                  "latency_us": {"count": 10, "p50": 3_000_000 + i, "p99": 6_000_000 + i, "max": 6_500_000 + i},
                  "rss_bytes": 5_000_000_000u64 + u64::from(i)})
            })
            .collect();
        let broadcasts: Vec<Value> = (1..=1000)
            .map(|seq| json!({"seq": seq, "received": 1_000_000, "open": 1_000_000,
                "delivery_us": 6_300_000 + seq, "latency_us": {"count": 1_000_000, "p50": 3_100_000, "p99": 6_200_000, "max": 6_300_000}}))
            .collect();
        let workers: Vec<Value> = (0..51)
            .map(|i| {
                json!({"index": i, "pid": 1000 + i, "state": "running", "active": 19_607,
                "errors": 0, "rss_bytes": 9_000_000, "exit": null})
            })
            .collect();
        let spectrum: Vec<Value> = (0..60)
            .map(|i| json!({"percentile": 100.0 - 100.0 / f64::powi(2.0, i / 2), "value_us": 1000 * (i + 1)}))
            .collect();
        json!({"mode": "client", "version": "0.1.0", "generated_at": "2026-11-30T00:00:00Z",
            "ended_by": "duration", "config": {"max_errors": 0, "url": "ws://x/"},
            "connections": {"peak": 1_000_000}, "messages": {"missed": 0},
            "errors": {"total": 2, "by_class": {"closed_by_server": 2},
                       "samples": {"closed_by_server": "4000: \"<script>alert(1)</script>\""}},
            "latency_us": {"count": 1_000_000_000u64, "p50": 3_000_000, "p99": 6_000_000, "max": 6_600_000},
            "latency_spectrum_us": spectrum, "series": series, "broadcasts": broadcasts, "workers": workers,
            "run": {"argv": ["c1m", "client", "--url", "ws://x/<b>"], "machine": {"cores": 2, "memory_bytes": 25_000_000_000u64, "kernel": "6.18"}, "limits_at_start": []}})
    }

    #[test]
    fn an_hour_long_run_fits_in_a_mebibyte_and_says_it_was_downsampled() {
        let page = render(&hour_long());
        assert!(page.len() < 1 << 20, "{} bytes", page.len());
        assert!(
            page.contains("a point covers up to 2 s"),
            "no word on downsampling"
        );
        assert!(page.contains("Worker processes (51)"));
        assert_eq!(page.matches("<svg").count(), 8);
        // Failed: 2 errors over --max-errors 0.
        assert!(
            page.contains("class=\"fail\">Failed</span>: 2 errors"),
            "{:.600}",
            page
        );
    }

    #[test]
    fn round_trips_get_their_own_table_when_the_run_timed_any() {
        let mut r = hour_long();
        assert!(!render(&r).contains("round trip (ms)"));
        r["echo_rtt_us"] =
            json!({"count": 1558, "min": 900, "p50": 1500, "p99": 4100, "max": 5200});
        r["pong_rtt_us"] = json!({"count": 0, "min": null, "p50": null});
        let page = render(&r);
        assert!(
            page.contains("<h2>Echo round trip (ms)</h2>"),
            "no echo table"
        );
        assert!(page.contains("<td>1.50</td>") && page.contains("1,558 round trips timed"));
        assert!(
            !page.contains("Ping round trip"),
            "a ping table with nothing timed"
        );
    }

    #[test]
    fn what_servers_and_users_wrote_is_text_not_markup() {
        let page = render(&hour_long());
        assert!(
            !page.contains("<script"),
            "a server's close reason became markup"
        );
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("ws://x/&lt;b&gt;"));
    }
}
