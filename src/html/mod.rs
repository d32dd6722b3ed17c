//! The HTML report: one self-contained file rendered from a JSON report (`c1m report RUN.json
//! --html OUT.html`, and `--html PATH` at the end of a run, through the same JSON), so a run on
//! another machine renders the same later. Inline SVG charts and CSS only: no script, no font,
//! no image, nothing fetched.

mod chart;

use chart::{Chart, Line, spectrum_x};
use serde_json::Value;
use std::fmt::Write as _;

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:900px;\
color:#111}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;text-align:right;\
border-bottom:1px solid #eee}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}\
.pass{color:#00622a;font-weight:bold}.fail{color:#a00000;font-weight:bold}.none{color:#555}\
code{font-size:12px;word-break:break-all}svg{max-width:100%;height:auto}\
@media print{h2{break-after:avoid}svg{break-inside:avoid}}";

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// A JSON report written by `--json`.
    #[arg(value_name = "RUN.json")]
    pub json: std::path::PathBuf,
    /// Where to write the HTML page (required: there is no default).
    #[arg(long, value_name = "OUT.html")]
    pub html: std::path::PathBuf,
}

/// `c1m report RUN.json --html OUT.html`.
pub fn run(args: &ReportArgs) -> anyhow::Result<i32> {
    use anyhow::Context;
    let report = crate::stats::report::read(&args.json)?;
    std::fs::write(&args.html, render(&report))
        .with_context(|| format!("cannot write {}", args.html.display()))?;
    eprintln!("c1m: HTML report written to {}", args.html.display());
    Ok(0)
}

/// The whole page for one report.
pub fn render(r: &Value) -> String {
    let mode = r["mode"].as_str().unwrap_or("?");
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>c1m {mode} report</title><style>{STYLE}</style></head><body>"
    );
    page += &header(r, mode);
    page += &charts(r, mode);
    page += &percentiles(r);
    page += &broadcast_chart(r, mode);
    page += &broadcasts(r, mode);
    page += &workers(r);
    page += &errors(r);
    page += &key_values("Limits at the start", limits(r));
    page += &key_values("Configuration", config(r));
    page += "</body></html>\n";
    page
}

/// Text for HTML: what a report holds came from servers and users.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Passed, or failed and why, as the run's exit status judged it.
fn verdict(r: &Value, mode: &str) -> (bool, String) {
    let errors = r["errors"]["total"].as_u64().unwrap_or(0);
    let max = r["config"]["max_errors"].as_u64().unwrap_or(0);
    if errors > max {
        return (
            false,
            format!("{errors} errors, more than --max-errors {max}"),
        );
    }
    if mode == "client" && r["latency_us"]["count"].as_u64() == Some(0) {
        return (false, "nothing was timed".into());
    }
    (true, format!("{errors} errors (--max-errors {max})"))
}

fn header(r: &Value, mode: &str) -> String {
    let (passed, why) = verdict(r, mode);
    let class = if passed { "pass" } else { "fail" };
    let word = if passed { "Passed" } else { "Failed" };
    let run = &r["run"];
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
    let c = &r["connections"];
    format!(
        "<h1>c1m {mode} report</h1><p><span class=\"{class}\">{word}</span>: {}; ended by {}. \
         Peak {} connections, {} missed.</p><p><code>{}</code></p><p>c1m {} · {} · {} cores, \
         {memory}, Linux {}</p>",
        esc(&why),
        esc(r["ended_by"].as_str().unwrap_or("?")),
        crate::fmt::int(c["peak"].as_u64().unwrap_or(0)),
        r["messages"]["missed"]
            .as_u64()
            .map_or("-".into(), crate::fmt::int),
        esc(&argv.join(" ")),
        esc(r["version"].as_str().unwrap_or("?")),
        esc(r["generated_at"].as_str().unwrap_or("?")),
        m["cores"].as_u64().unwrap_or(0),
        esc(m["kernel"].as_str().unwrap_or("?")),
    )
}

/// (t, value) of each series point where `f` has one.
fn series(r: &Value, f: impl Fn(&Value) -> Option<f64>) -> Vec<(f64, f64)> {
    r["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["t_s"].as_f64()?, f(p)?)))
        .collect()
}

fn charts(r: &Value, mode: &str) -> String {
    let line = |name, points| Line { name, points };
    let num = |k: &'static str| move |p: &Value| p[k].as_f64();
    let mut out = String::from("<h2>Over time</h2>");
    out += &resolution(r);
    let mut conns = vec![line("open", series(r, num("open")))];
    if mode == "client" {
        conns.push(line("target", series(r, num("target"))));
    }
    let charts = [
        Chart {
            title: "Connections",
            x_label: "seconds",
            y_label: "connections",
            lines: conns,
            spectrum: false,
        },
        Chart {
            title: "Setup rate",
            x_label: "seconds",
            y_label: "handshakes/s",
            lines: vec![line("setup", series(r, num("setup_per_s")))],
            spectrum: false,
        },
        Chart {
            title: "Messages",
            x_label: "seconds",
            y_label: "messages/s",
            lines: vec![line("messages", series(r, num("messages_per_s")))],
            spectrum: false,
        },
        Chart {
            title: "Latency per second",
            x_label: "seconds",
            y_label: "ms",
            lines: latency_lines(r),
            spectrum: false,
        },
        Chart {
            title: "Resident memory",
            x_label: "seconds",
            y_label: "MiB",
            lines: vec![line(
                "rss",
                series(r, |p| Some(p["rss_bytes"].as_f64()? / 1048576.0)),
            )],
            spectrum: false,
        },
        Chart {
            title: "Errors",
            x_label: "seconds",
            y_label: "errors in the second",
            lines: vec![line("errors", series(r, num("errors")))],
            spectrum: false,
        },
    ];
    for c in &charts {
        out += &c.svg();
    }
    out += "<h2>Latency distribution</h2>";
    out += &Chart {
        title: "Latency spectrum",
        x_label: "percentile",
        y_label: "ms",
        lines: vec![line("latency", spectrum(r))],
        spectrum: true,
    }
    .svg();
    out
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
        false => format!("<p>{points} points, one a second.</p>"),
    }
}

fn latency_lines(r: &Value) -> Vec<Line> {
    ["p50", "p99", "max"]
        .into_iter()
        .map(|k| Line {
            name: k,
            points: series(r, |p| Some(p["latency_us"][k].as_f64()? / 1000.0)),
        })
        .collect()
}

fn spectrum(r: &Value) -> Vec<(f64, f64)> {
    r["latency_spectrum_us"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                spectrum_x(p["percentile"].as_f64()?),
                p["value_us"].as_f64()? / 1000.0,
            ))
        })
        .collect()
}

/// Each broadcast's time (client: first send to last receive, and its latency p50 and p99;
/// server: its loop), by sequence number.
fn broadcast_chart(r: &Value, mode: &str) -> String {
    let rows = r["broadcasts"].as_array().cloned().unwrap_or_default();
    let per = |f: &dyn Fn(&Value) -> Option<f64>| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|b| Some((b["seq"].as_f64()?, f(b)? / 1000.0)))
            .collect()
    };
    let lines = match mode {
        "server" => vec![Line {
            name: "server loop",
            points: per(&|b| b["duration_us"].as_f64()),
        }],
        _ => vec![
            Line {
                name: "first send → last receive",
                points: per(&|b| b["delivery_us"].as_f64()),
            },
            Line {
                name: "p50",
                points: per(&|b| b["latency_us"]["p50"].as_f64()),
            },
            Line {
                name: "p99",
                points: per(&|b| b["latency_us"]["p99"].as_f64()),
            },
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
    let mut out = format!(
        "<h2>Worker processes ({})</h2><table><tr><th>worker</th><th>pid</th><th>state</th>\
         <th>open</th><th>errors</th><th>RSS</th><th>exit</th></tr>",
        rows.len()
    );
    for w in &rows {
        let rss = w["rss_bytes"].as_u64().map_or("-".into(), crate::fmt::size);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{rss}</td><td>{}</td></tr>",
            w["index"],
            w["pid"],
            esc(w["state"].as_str().unwrap_or("?")),
            w["active"],
            w["errors"],
            esc(w["exit"].as_str().unwrap_or("")),
        );
    }
    out + "</table>"
}

fn percentiles(r: &Value) -> String {
    let l = &r["latency_us"];
    let mut out = String::from("<h2>Latency percentiles (ms)</h2><table><tr>");
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
        "</tr></table><p>{} messages timed.</p>",
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
