//! `c1m report --merge A.json B.json …`: one client report from the reports of one run's
//! slices (`--segment I/N` on several machines, the pods of an Indexed Job). Counts add up; the
//! whole run's latency and ping histograms merge exactly from their serialized form
//! (`mergeable` in each report); broadcasts meet by sequence number; the per-second history
//! meets by wall-clock second. What cannot be merged exactly — percentiles of a second or of one
//! broadcast, which need histograms the reports do not carry — is left out (null) and the
//! merged report says so, rather than guessed from the parts.

use crate::stats::aggregate::spectrum;
use crate::stats::hdr_serde::histogram;
use crate::stats::{Latency, new_histogram};
use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the merged report says it could not merge.
const INEXACT: &str = "percentiles of one second (series[].latency_us p50, p99) and of one \
    broadcast (broadcasts[].latency_us p50, p99) need histograms the reports do not carry: they \
    are null; counts, maxima and the whole run's percentiles are exact";

/// One report to merge, and where it came from.
struct Part {
    path: PathBuf,
    r: Value,
    /// When its run started, µs since the epoch on its machine's clock.
    start_us: i64,
    latency: Histogram<u64>,
    pong: Histogram<u64>,
    /// `{rtt}` round trips (empty in a report written before they were kept).
    echo: Histogram<u64>,
}

/// `c1m report --merge`: the merged report as a short summary on stdout, and as JSON and HTML
/// where asked.
pub fn run(args: &crate::cli::ReportArgs) -> Result<i32> {
    if args.reports.len() < 2 {
        bail!("c1m report --merge: give two or more JSON reports of one run's slices");
    }
    let mut parts = Vec::new();
    for path in &args.reports {
        parts.push(part(path)?);
    }
    let merged = merge(&parts)?;
    print!("{}", summary(&merged));
    if let Some(note) = missing_note(&merged) {
        eprintln!("c1m: {note}");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&merged)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("c1m: merged JSON report written to {}", path.display());
    }
    if let Some(path) = &args.html {
        std::fs::write(path, crate::html::render(&merged))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("c1m: merged HTML report written to {}", path.display());
    }
    Ok(merged["verdict"]["exit_status"].as_i64().unwrap_or(0) as i32)
}

/// A report read and checked: a client's, with the histograms a merge needs.
fn part(path: &Path) -> Result<Part> {
    let r = crate::stats::report::read(path)?;
    let name = path.display();
    if r["mode"] != "client" {
        bail!(
            "{name} is a {} report: --merge adds up the client slices of one run",
            r["mode"].as_str().unwrap_or("?")
        );
    }
    let m = &r["mergeable"];
    let (Some(start_us), Some(lat), Some(pong)) = (
        m["started_at_us"].as_i64(),
        m["latency_hdr"].as_str(),
        m["pong_rtt_hdr"].as_str(),
    ) else {
        bail!(
            "{name} has no histograms to merge (no `mergeable`: written by an older c1m, \
             version {}); rerun the slice with this c1m ({})",
            r["version"].as_str().unwrap_or("?"),
            crate::VERSION
        );
    };
    let decode = |text: &str| {
        histogram::decode(text).map_err(|e| anyhow::anyhow!("{name}: a damaged histogram: {e}"))
    };
    Ok(Part {
        path: path.to_path_buf(),
        start_us,
        latency: decode(lat)?,
        pong: decode(pong)?,
        echo: match m["echo_rtt_hdr"].as_str() {
            Some(text) => decode(text)?,
            None => new_histogram(),
        },
        r,
    })
}

/// The merged report.
fn merge(parts: &[Part]) -> Result<Value> {
    let segments = check_segments(parts)?;
    check_same_target(parts)?;
    let first = &parts[0].r;
    let mut out = first.clone();
    let t0 = parts.iter().map(|p| p.start_us).min().unwrap_or(0);
    let end = parts
        .iter()
        .map(|p| p.start_us + seconds_us(p.r["elapsed_s"].as_f64().unwrap_or(0.0)))
        .max()
        .unwrap_or(t0);
    let [latency, pong, echo] = histograms(parts);
    for section in [
        "/connections",
        "/messages",
        "/bytes",
        "/talk",
        "/errors/by_class",
    ] {
        add_counts(&mut out, parts, section);
    }
    out["errors"]["total"] = sum(parts, "/errors/total");
    out["errors"]["samples"] = first_of_each(parts, "/errors/samples");
    for meter in ["/rates/messages", "/rates/setup"] {
        add_numbers(&mut out, parts, meter);
    }
    // add_counts passes over a count the first report has as null (nothing measured there).
    out["messages"]["missed"] = sum(parts, "/messages/missed");
    out["messages"]["reset"]["connections"] = sum(parts, "/messages/reset/connections");
    out["messages"]["reset"]["unreceived"] = sum(parts, "/messages/reset/unreceived");
    out["messages"]["sample"] = first_present(parts, "/messages/sample");
    out["elapsed_s"] = json!((end - t0) as f64 / 1e6);
    out["latency_us"] = serde_json::to_value(Latency::from_histogram(&latency))?;
    out["pong_rtt_us"] = serde_json::to_value(Latency::from_histogram(&pong))?;
    out["echo_rtt_us"] = serde_json::to_value(Latency::from_histogram(&echo))?;
    out["latency_spectrum_us"] = serde_json::to_value(spectrum(&latency))?;
    out["latency_last"] = Value::Null;
    out["broadcasts"] = broadcasts(parts);
    out["sources"] = concat(parts, "/sources");
    let series = series(parts, t0);
    ramp(&mut out, parts, t0, &series);
    memory(&mut out, parts, &series);
    out["series"] = Value::Array(series);
    out["workers"] = workers(parts);
    config(&mut out, parts);
    out["verdict"] = verdict(parts);
    let ended: Vec<&str> = parts
        .iter()
        .filter_map(|p| p.r["ended_by"].as_str())
        .collect();
    out["ended_by"] = json!(unique(&ended).join(", "));
    out["version"] = json!(crate::VERSION);
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    out["generated_at"] = json!(now);
    if let Some(obj) = out.as_object_mut() {
        // Each slice measured its own clock against its server: no one estimate covers all.
        obj.remove("clock");
        if let Some(run) = obj.get_mut("run") {
            run["argv"] = json!(std::env::args().collect::<Vec<_>>());
        }
    }
    out["mergeable"] = json!({
        "started_at_us": t0,
        "latency_hdr": histogram::encode(&latency),
        "pong_rtt_hdr": histogram::encode(&pong),
        "echo_rtt_hdr": histogram::encode(&echo),
    });
    out["merged"] = json!({
        "reports": parts.iter().map(|p| p.path.display().to_string()).collect::<Vec<_>>(),
        "segments": segments.given,
        "of": segments.of,
        "missing": segments.missing,
        "inexact": INEXACT,
    });
    Ok(out)
}

fn seconds_us(s: f64) -> i64 {
    (s * 1e6).round() as i64
}

/// The slices' latency, pong and echo round-trip histograms, each merged exactly.
fn histograms(parts: &[Part]) -> [Histogram<u64>; 3] {
    let mut merged = [new_histogram(), new_histogram(), new_histogram()];
    for p in parts {
        for (sum, h) in merged.iter_mut().zip([&p.latency, &p.pong, &p.echo]) {
            sum.add(h)
                .expect("an auto-resizing histogram accepts any u64 value");
        }
    }
    merged
}

/// Which slices the reports are (`config.segment`; `None` without one), of how many, and which
/// of those are missing.
struct Slices {
    given: Vec<Option<u64>>,
    of: Option<u64>,
    missing: Vec<u64>,
}

/// The slices the reports are. Two reports of the same slice would count it twice: refused.
fn check_segments(parts: &[Part]) -> Result<Slices> {
    let seg = |p: &Part| {
        let s = &p.r["config"]["segment"];
        s["index"].as_u64().zip(s["count"].as_u64())
    };
    let indices: Vec<Option<u64>> = parts.iter().map(|p| seg(p).map(|s| s.0)).collect();
    let counts: Vec<u64> = parts.iter().filter_map(|p| seg(p).map(|s| s.1)).collect();
    let Some(&of) = counts.first() else {
        return Ok(Slices {
            given: indices,
            of: None,
            missing: Vec::new(),
        });
    };
    if counts.len() != parts.len() || counts.iter().any(|&c| c != of) {
        bail!(
            "the reports are not slices of one run: their --segment counts differ ({})",
            describe(parts, |p| seg(p)
                .map_or("none".into(), |(i, n)| format!("{i}/{n}")))
        );
    }
    for (k, i) in indices.iter().enumerate() {
        if let Some(j) = indices[..k].iter().position(|o| o == i) {
            bail!(
                "segment {}/{of} is given twice: {} and {}",
                i.unwrap_or(0),
                parts[j].path.display(),
                parts[k].path.display()
            );
        }
    }
    let missing = (0..of).filter(|i| !indices.contains(&Some(*i))).collect();
    Ok(Slices {
        given: indices,
        of: Some(of),
        missing,
    })
}

/// Slices of one run aim at one server.
fn check_same_target(parts: &[Part]) -> Result<()> {
    let url = |p: &Part| p.r["config"]["url"].as_str().unwrap_or("").to_string();
    if parts.iter().any(|p| url(p) != url(&parts[0])) {
        bail!(
            "the reports aim at different servers, not one run: {}",
            describe(parts, url)
        );
    }
    Ok(())
}

fn describe(parts: &[Part], what: impl Fn(&Part) -> String) -> String {
    let each: Vec<String> = parts
        .iter()
        .map(|p| format!("{} {}", p.path.display(), what(p)))
        .collect();
    each.join(", ")
}

/// The sum of an integer at `pointer` over the reports; null when one of them has null there.
fn sum(parts: &[Part], pointer: &str) -> Value {
    let mut total = 0u64;
    for p in parts {
        match p.r.pointer(pointer) {
            Some(Value::Number(n)) if n.is_u64() => total += n.as_u64().unwrap_or(0),
            None => {}
            Some(_) => return Value::Null,
        }
    }
    json!(total)
}

/// Every integer field of the object at `pointer` summed over the reports.
fn add_counts(out: &mut Value, parts: &[Part], pointer: &str) {
    let keys: Vec<String> = match out.pointer(pointer) {
        Some(Value::Object(m)) => m
            .iter()
            .filter(|(_, v)| v.is_u64())
            .map(|(k, _)| k.clone())
            .collect(),
        _ => return,
    };
    for k in keys {
        let total = sum(parts, &format!("{pointer}/{k}"));
        if let Some(slot) = out.pointer_mut(&format!("{pointer}/{k}")) {
            *slot = total;
        }
    }
}

/// Every number of a meter (counts and rates over the same wall-clock windows add up).
fn add_numbers(out: &mut Value, parts: &[Part], pointer: &str) {
    let Some(Value::Object(m)) = out.pointer_mut(pointer) else {
        return;
    };
    for (k, v) in m.iter_mut() {
        let each = parts.iter().map(|p| {
            p.r.pointer(&format!("{pointer}/{k}"))
                .and_then(Value::as_f64)
        });
        *v = each.sum::<Option<f64>>().map_or(Value::Null, |s| json!(s));
    }
}

fn first_present(parts: &[Part], pointer: &str) -> Value {
    parts
        .iter()
        .filter_map(|p| p.r.pointer(pointer))
        .find(|v| !v.is_null())
        .cloned()
        .unwrap_or(Value::Null)
}

/// For an object of samples by class: the first report's text for each class.
fn first_of_each(parts: &[Part], pointer: &str) -> Value {
    let mut out = Map::new();
    for p in parts {
        if let Some(Value::Object(m)) = p.r.pointer(pointer) {
            for (k, v) in m {
                out.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    Value::Object(out)
}

fn concat(parts: &[Part], pointer: &str) -> Value {
    let all = parts
        .iter()
        .filter_map(|p| p.r.pointer(pointer)?.as_array())
        .flatten()
        .cloned();
    Value::Array(all.collect())
}

fn unique<'a>(words: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for w in words {
        if !out.contains(w) {
            out.push(w);
        }
    }
    out
}

/// Each broadcast once, with what every slice received of it: counts add up, the first and
/// last receive times are the earliest and latest, delivery runs from the server's stamp to
/// the last; the percentiles of one broadcast cannot be merged and are null.
fn broadcasts(parts: &[Part]) -> Value {
    let mut by_seq: BTreeMap<u64, Value> = BTreeMap::new();
    for b in parts
        .iter()
        .filter_map(|p| p.r["broadcasts"].as_array())
        .flatten()
    {
        let Some(seq) = b["seq"].as_u64() else {
            continue;
        };
        let Some(m) = by_seq.get_mut(&seq) else {
            let mut first = b.clone();
            if first["latency_us"].is_object() {
                first["latency_us"]["p50"] = Value::Null;
                first["latency_us"]["p99"] = Value::Null;
            }
            by_seq.insert(seq, first);
            continue;
        };
        for k in ["received", "open"] {
            m[k] = json!(m[k].as_u64().unwrap_or(0) + b[k].as_u64().unwrap_or(0));
        }
        m["first_recv_us"] = pick(&m["first_recv_us"], &b["first_recv_us"], i64::min);
        m["last_recv_us"] = pick(&m["last_recv_us"], &b["last_recv_us"], i64::max);
        m["sent_ts_us"] = pick(&m["sent_ts_us"], &b["sent_ts_us"], i64::min);
        m["latency_us"] = match (&m["latency_us"], &b["latency_us"]) {
            (Value::Null, l) | (l, Value::Null) if l.is_object() => {
                json!({"count": l["count"], "max": l["max"], "p50": null, "p99": null})
            }
            (a, l) if a.is_object() => json!({
                "count": a["count"].as_u64().unwrap_or(0) + l["count"].as_u64().unwrap_or(0),
                "max": a["max"].as_u64().max(l["max"].as_u64()),
                "p50": null,
                "p99": null,
            }),
            _ => Value::Null,
        };
        if let (Some(last), Some(sent)) = (m["last_recv_us"].as_i64(), m["sent_ts_us"].as_i64()) {
            m["delivery_us"] = json!(last - sent);
        }
    }
    Value::Array(by_seq.into_values().collect())
}

/// `f` of two optional integers; the one there when only one is.
fn pick(a: &Value, b: &Value, f: fn(i64, i64) -> i64) -> Value {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => json!(f(x, y)),
        (Some(x), None) | (None, Some(x)) => json!(x),
        (None, None) => Value::Null,
    }
}

/// The slices' histories side by side: each point placed at its wall-clock second from the
/// earliest start (a slice's points stay one second apart and in order), and the points of a
/// second added up. A slice not running in a second adds nothing to it.
fn series(parts: &[Part], t0: i64) -> Vec<Value> {
    let mut by_second: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for p in parts {
        let mut last: Option<u64> = None;
        for point in p.r["series"].as_array().into_iter().flatten() {
            let t = point["t_s"].as_f64().unwrap_or(0.0);
            let at = ((p.start_us - t0) as f64 / 1e6 + t).round().max(0.0) as u64;
            let at = last.map_or(at, |l| at.max(l + 1));
            last = Some(at);
            by_second.entry(at).or_default().push(point);
        }
    }
    by_second
        .into_iter()
        .map(|(at, points)| merged_point(at, &points))
        .collect()
}

fn merged_point(at: u64, points: &[&Value]) -> Value {
    let add = |k: &str| -> u64 { points.iter().filter_map(|p| p[k].as_u64()).sum() };
    let add_f = |k: &str| -> f64 { points.iter().filter_map(|p| p[k].as_f64()).sum() };
    let mut by_class = Map::new();
    for p in points {
        for (class, n) in p["errors_by_class"].as_object().into_iter().flatten() {
            let was = by_class.get(class).and_then(Value::as_u64).unwrap_or(0);
            by_class.insert(class.clone(), json!(was + n.as_u64().unwrap_or(0)));
        }
    }
    let timed: Vec<&Value> = points
        .iter()
        .map(|p| &p["latency_us"])
        .filter(|l| l.is_object())
        .collect();
    let latency = if timed.is_empty() {
        Value::Null
    } else {
        json!({
            "count": timed.iter().filter_map(|l| l["count"].as_u64()).sum::<u64>(),
            "max": timed.iter().filter_map(|l| l["max"].as_u64()).max(),
            "p50": null,
            "p99": null,
        })
    };
    let rss: Option<u64> = points.iter().map(|p| p["rss_bytes"].as_u64()).sum();
    json!({
        "t_s": at as f64,
        "dt_s": points.iter().filter_map(|p| p["dt_s"].as_f64()).fold(0.0, f64::max),
        "open": add("open"),
        "target": add("target"),
        "setup_per_s": add_f("setup_per_s"),
        "messages_per_s": add_f("messages_per_s"),
        "errors": add("errors"),
        "errors_by_class": by_class,
        "latency_us": latency,
        "rss_bytes": rss,
    })
}

/// The ramp of the whole run: from the earliest start to the last slice's end of ramp; the
/// peak is the most open together in one second of the merged history (or at the end).
fn ramp(out: &mut Value, parts: &[Part], t0: i64, series: &[Value]) {
    let c = &mut out["connections"];
    let together = series.iter().filter_map(|p| p["open"].as_u64()).max();
    let at_end = c["active"].as_u64().unwrap_or(0);
    c["peak"] = json!(together.unwrap_or(0).max(at_end));
    let ends: Option<Vec<i64>> = parts
        .iter()
        .map(|p| Some(p.start_us + seconds_us(p.r["connections"]["ramp_s"].as_f64()?)))
        .collect();
    match ends.and_then(|e| e.into_iter().max()) {
        Some(end) if end > t0 => {
            let ramp_s = (end - t0) as f64 / 1e6;
            c["ramp_s"] = json!(ramp_s);
            c["ramp_rate"] = json!(c["established"].as_u64().unwrap_or(0) as f64 / ramp_s);
        }
        _ => {
            c["ramp_s"] = Value::Null;
            c["ramp_rate"] = Value::Null;
        }
    }
}

/// Memory adds up over the slices' machines; the peak is the most held together in one second
/// of the merged history, and memory per connection the slices' own, weighted by connections.
fn memory(out: &mut Value, parts: &[Part], series: &[Value]) {
    let m = &mut out["memory"];
    let each = |k: &'static str| parts.iter().map(move |p| p.r["memory"][k].as_u64());
    m["rss_bytes"] = json!(each("rss_bytes").sum::<Option<u64>>());
    m["base_rss_bytes"] = json!(each("base_rss_bytes").map(|b| b.unwrap_or(0)).sum::<u64>());
    let together = series.iter().filter_map(|p| p["rss_bytes"].as_u64()).max();
    m["peak_rss_bytes"] = json!(together);
    m["shares_process"] = json!(false);
    let weighted: Vec<(f64, u64)> = parts
        .iter()
        .filter_map(|p| {
            let mem = &p.r["memory"];
            Some((
                mem["per_conn_bytes"].as_f64()?,
                mem["per_conn_at"].as_u64()?,
            ))
        })
        .collect();
    let at: u64 = weighted.iter().map(|w| w.1).sum();
    m["per_conn_at"] = json!(at);
    m["per_conn_bytes"] = if at == 0 || weighted.len() < parts.len() {
        Value::Null
    } else {
        json!(weighted.iter().map(|(b, n)| b * *n as f64).sum::<f64>() / at as f64)
    };
}

/// Every slice's worker or agent rows, numbered in order.
fn workers(parts: &[Part]) -> Value {
    let mut rows = Vec::new();
    for w in parts
        .iter()
        .filter_map(|p| p.r["workers"].as_array())
        .flatten()
    {
        let mut w = w.clone();
        w["index"] = json!(rows.len());
        rows.push(w);
    }
    Value::Array(rows)
}

/// The first slice's settings, for the whole run: the connections and the rate of all slices,
/// and no segment.
fn config(out: &mut Value, parts: &[Part]) {
    let c = &mut out["config"];
    if c.is_null() {
        return;
    }
    c["conns"] = sum(parts, "/config/conns");
    let rates: Option<f64> = parts.iter().map(|p| p.r["config"]["rate"].as_f64()).sum();
    c["rate"] = json!(rates);
    c["segment"] = Value::Null;
}

/// Passed when every slice passed; the highest exit status; each slice's reasons, named.
fn verdict(parts: &[Part]) -> Value {
    let mut why = Vec::new();
    for p in parts {
        for reason in p.r["verdict"]["why"].as_array().into_iter().flatten() {
            let text = reason.as_str().unwrap_or("?");
            why.push(json!(format!("{}: {text}", p.path.display())));
        }
    }
    let status = parts
        .iter()
        .map(|p| p.r["verdict"]["exit_status"].as_i64().unwrap_or(0))
        .max()
        .unwrap_or(0);
    let passed = parts.iter().all(|p| p.r["verdict"]["passed"] != false);
    json!({"passed": passed, "exit_status": status, "why": why})
}

/// A slice missing from the merge, said where the user sees it.
fn missing_note(merged: &Value) -> Option<String> {
    let m = &merged["merged"];
    let missing: Vec<String> = m["missing"]
        .as_array()?
        .iter()
        .map(ToString::to_string)
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "segments {} of {} are missing: the merged report covers only the slices given",
            missing.join(", "),
            m["of"]
        )
    })
}

/// What a user wants to see at once: how many, what arrived, how fast.
fn summary(r: &Value) -> String {
    use crate::fmt::{int, opt_us};
    let n = r["merged"]["reports"].as_array().map_or(0, Vec::len);
    let c = &r["connections"];
    let m = &r["messages"];
    let l = &r["latency_us"];
    let count = |v: &Value| int(v.as_u64().unwrap_or(0));
    let us = |k: &str| opt_us(l[k].as_u64());
    format!(
        "merged {n} reports ({})\n\
         connections  established {}  failed {}  peak together {}\n\
         messages     received {}  missed {}  errors {}\n\
         latency      p50 {}  p99 {}  p99.9 {}  max {}\n",
        r["ended_by"].as_str().unwrap_or("?"),
        count(&c["established"]),
        count(&c["failed"]),
        count(&c["peak"]),
        count(&m["received"]),
        m["missed"].as_u64().map_or("-".into(), int),
        count(&r["errors"]["total"]),
        us("p50"),
        us("p99"),
        us("p999"),
        us("max"),
    )
}
