//! The charts over time, from the report's per-second history (`series`).

use super::chart::{Chart, Line};
use serde_json::Value;

/// Error classes drawn as their own lines; the rest are summed into one, so that a line
/// colour always tells a reader which class it is.
const CLASS_LINES: usize = 3;

pub fn charts(r: &Value, mode: &str) -> Vec<Chart<'static>> {
    let num = |k: &'static str| move |p: &Value| p[k].as_f64();
    let mut conns = vec![Line::new("open", series(r, num("open")))];
    if mode == "client" {
        conns.push(Line::new("target", series(r, num("target"))));
    }
    let chart = |title, y_label, lines| Chart {
        title,
        x_label: "seconds",
        y_label,
        lines,
        spectrum: false,
    };
    let mut charts = vec![
        chart("Connections", "connections", conns),
        chart(
            "Setup rate",
            "handshakes/s",
            vec![Line::new("setup", series(r, num("setup_per_s")))],
        ),
        chart(
            "Messages",
            "messages/s",
            vec![Line::new("messages", series(r, num("messages_per_s")))],
        ),
    ];
    if mode == "client" {
        charts.push(chart("Latency per second", "ms", latency(r)));
    }
    charts.push(chart("Errors by class", "errors in the second", errors(r)));
    charts.push(chart(
        "Resident memory",
        "MiB",
        vec![Line::new("rss", series(r, |p| mib(&p["rss_bytes"])))],
    ));
    charts.extend(per_connection(r).map(|l| chart("Memory per connection", "KiB", vec![l])));
    if has(r, "worker_rss_bytes") {
        charts.push(chart(
            "Resident memory per worker process",
            "MiB",
            workers(r),
        ));
    }
    charts
}

/// (t, value) of each series point where `f` has one.
fn series(r: &Value, f: impl Fn(&Value) -> Option<f64>) -> Vec<(f64, f64)> {
    gappy(r, f).into_iter().flatten().collect()
}

/// (t, value) of each series point, `None` where `f` has nothing: a line breaks there.
fn gappy(r: &Value, f: impl Fn(&Value) -> Option<f64>) -> Vec<Option<(f64, f64)>> {
    points(r)
        .map(|p| Some((p["t_s"].as_f64()?, f(p)?)))
        .collect()
}

fn points(r: &Value) -> impl Iterator<Item = &Value> {
    r["series"].as_array().into_iter().flatten()
}

fn has(r: &Value, key: &str) -> bool {
    points(r).any(|p| !p[key].is_null())
}

fn mib(v: &Value) -> Option<f64> {
    Some(v.as_f64()? / 1048576.0)
}

fn latency(r: &Value) -> Vec<Line> {
    ["p50", "p99", "max"]
        .into_iter()
        .map(|k| {
            Line::new(
                k,
                series(r, |p| Some(p["latency_us"][k].as_f64()? / 1000.0)),
            )
        })
        .collect()
}

/// One line per error class that occurred, the most frequent first, the rest summed; all
/// errors as one line in a report from before classes were kept per second.
fn errors(r: &Value) -> Vec<Line> {
    if !has(r, "errors_by_class") {
        return vec![Line::new("errors", series(r, |p| p["errors"].as_f64()))];
    }
    let mut totals: Vec<(String, u64)> = Vec::new();
    for p in points(r) {
        for (class, n) in p["errors_by_class"].as_object().into_iter().flatten() {
            match totals.iter_mut().find(|(c, _)| c == class) {
                Some((_, t)) => *t += n.as_u64().unwrap_or(0),
                None => totals.push((class.clone(), n.as_u64().unwrap_or(0))),
            }
        }
    }
    totals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if totals.is_empty() {
        return vec![Line::new(
            "errors (none)",
            series(r, |p| p["errors"].as_f64()),
        )];
    }
    let own = match totals.len() {
        n if n <= CLASS_LINES + 1 => n,
        _ => CLASS_LINES,
    };
    let mut lines: Vec<Line> = totals[..own]
        .iter()
        .map(|(class, _)| {
            Line::new(
                class.clone(),
                series(r, |p| {
                    Some(p["errors_by_class"][class].as_f64().unwrap_or(0.0))
                }),
            )
        })
        .collect();
    if own < totals.len() {
        let rest: Vec<&String> = totals[own..].iter().map(|(c, _)| c).collect();
        let name = format!("{} other classes", rest.len());
        lines.push(Line::new(
            name,
            series(r, |p| {
                Some(
                    rest.iter()
                        .filter_map(|c| p["errors_by_class"][c.as_str()].as_f64())
                        .sum(),
                )
            }),
        ));
    }
    lines
}

/// What the side grew by since the start over the connections open, where 1,000 or more are
/// (the report's `memory.per_conn_bytes` is this figure at its peak). Left out when both
/// sides share the process, whose growth is theirs together.
fn per_connection(r: &Value) -> Option<Line> {
    let m = &r["memory"];
    let base = m["base_rss_bytes"].as_f64()?;
    if m["shares_process"].as_bool() == Some(true) {
        return None;
    }
    let line = Line::broken(
        "grown / open",
        gappy(r, |p| {
            let open = p["open"].as_f64().filter(|n| *n >= 1000.0)?;
            Some((p["rss_bytes"].as_f64()? - base).max(0.0) / open / 1024.0)
        }),
    );
    (!line.runs.is_empty()).then_some(line)
}

fn workers(r: &Value) -> Vec<Line> {
    ["min", "median", "max"]
        .into_iter()
        .map(|k| Line::broken(k, gappy(r, |p| mib(&p["worker_rss_bytes"][k]))))
        .collect()
}
