//! `c1m compare` on real reports: a run against itself passes; against a copy whose latencies
//! doubled it fails with status 1 and names the figures; a threshold above the change passes;
//! a server report against a client one is refused.

use crate::common::{ServerProc, assert_page_reads_well, c1m, manifest_dir, run};
use crate::loss::client_for;
use serde_json::Value;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn compare(a: &std::path::Path, b: &std::path::Path, flags: &[&str]) -> (Option<i32>, String) {
    let mut cmd = c1m(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    cmd.args(flags);
    let out = run(cmd, LIMIT);
    (out.code(), format!("{}{}", out.stdout, out.stderr))
}

/// Multiplies every latency figure of a report, per broadcast too, by `k`.
fn slower(r: &Value, k: f64) -> Value {
    let mut r = r.clone();
    let scale = |v: &mut Value| {
        if let Some(obj) = v.as_object_mut() {
            for (key, x) in obj.iter_mut() {
                if key.starts_with('p') || key == "max" || key == "delivery_us" {
                    *x = Value::from((x.as_f64().unwrap_or(0.0) * k) as u64);
                }
            }
        }
    };
    scale(&mut r["latency_us"]);
    for b in r["broadcasts"].as_array_mut().unwrap() {
        scale(&mut b["latency_us"]);
        scale(b);
    }
    r
}

#[test]
fn compare_passes_a_run_against_itself_and_fails_a_slower_one() {
    let server = ServerProc::start(&["--every", "300ms", "--duration", "30s"]);
    let (code, stderr, a) = client_for(&server.url(), 20, "3s", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    std::fs::write(&pa, a.to_string()).unwrap();

    let (code, out) = compare(&pa, &pa, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("latency p99") && out.contains("same"), "{out}");
    assert!(out.contains("not worse than A"), "{out}");

    std::fs::write(&pb, slower(&a, 2.0).to_string()).unwrap();
    let (code, out) = compare(&pa, &pb, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("+100.0 %"), "{out}");
    assert!(out.contains("worse than A by more than 10 % on: "), "{out}");
    assert!(out.contains("latency p50"), "{out}");
    // The same change under a 150 % threshold passes, still called worse.
    let (code, out) = compare(&pa, &pb, &["--threshold", "150%"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("worse"), "{out}");
    // B faster than A: better, and passes.
    let (code, out) = compare(&pb, &pa, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("better"), "{out}");
    // The same comparison as a page: the verdicts, both spectra on one chart, both runs'
    // broadcasts, in a browser that fetches nothing.
    let page = dir.path().join("compare.html");
    let (code, out) = compare(&pa, &pb, &["--html", page.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("class=\"fail\">worse"), "{html:.3000}");
    assert!(
        html.contains("B is worse than A by more than 10 %"),
        "{html:.3000}"
    );
    assert_page_reads_well(
        &page,
        &[
            "Latency spectrum, A and B",
            "Each broadcast (first send → last receive), A and B",
        ],
    );

    server.proc.signal(libc::SIGTERM);
}

#[test]
fn compare_refuses_mismatched_or_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let (client, server, junk) = (
        dir.path().join("c.json"),
        dir.path().join("s.json"),
        dir.path().join("j.json"),
    );
    let report = |mode: &str| serde_json::json!({"mode": mode, "latency_us": {}, "connections": {}, "broadcasts": []});
    std::fs::write(&client, report("client").to_string()).unwrap();
    std::fs::write(&server, report("server").to_string()).unwrap();
    std::fs::write(&junk, "{\"hello\": 1}").unwrap();
    let (code, out) = compare(&client, &server, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("a client report and B a server one"), "{out}");
    let (code, out) = compare(&client, &junk, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("not a c1m JSON report"), "{out}");
    let (code, out) = compare(&client, &client, &["--threshold", "lots"]);
    assert_eq!(code, Some(2), "{out}");
}

/// A run of 1,500 connections reports its memory per connection, read while they were open,
/// and its latency spectrum; `compare` gates on the memory.
#[test]
fn the_report_carries_memory_per_connection_and_compare_gates_on_it() {
    let server = ServerProc::start(&["--every", "500ms", "--duration", "30s"]);
    let (code, stderr, a) = client_for(&server.url(), 1500, "3s", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let m = &a["memory"];
    assert_eq!(m["per_conn_at"], 1500, "{m}");
    let per_conn = m["per_conn_bytes"].as_f64().unwrap();
    // c1m's client holds a few hundred bytes per connection; anything near 20 KiB is wrong.
    assert!(per_conn > 0.0 && per_conn < 20_480.0, "{m}");
    assert!(m["rss_bytes"].as_u64().unwrap() > 1 << 20, "{m}");
    assert_eq!(m["shares_process"], false, "{m}");
    let series = a["series"].as_array().unwrap();
    assert!(
        series.iter().any(|p| p["rss_bytes"].as_u64() > Some(0)),
        "{a:#}"
    );
    // The spectrum runs from 0 % to 100 %, both axes rising, and ends at the maximum.
    let spectrum = a["latency_spectrum_us"].as_array().unwrap();
    assert!(spectrum.len() >= 10, "{spectrum:?}");
    let points: Vec<(f64, u64)> = spectrum
        .iter()
        .map(|p| {
            (
                p["percentile"].as_f64().unwrap(),
                p["value_us"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(points[0].0, 0.0);
    assert_eq!(points.last().unwrap().0, 100.0);
    assert!(
        points
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{points:?}"
    );
    let max = a["latency_us"]["max"].as_u64().unwrap();
    assert!(
        points.last().unwrap().1.abs_diff(max) <= max / 100,
        "{points:?} vs {max}"
    );

    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    std::fs::write(&pa, a.to_string()).unwrap();
    let mut b = a.clone();
    b["memory"]["per_conn_bytes"] = Value::from(per_conn * 1.5);
    std::fs::write(&pb, b.to_string()).unwrap();
    let (code, out) = compare(&pa, &pb, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("on: memory per connection."), "{out}");
    server.proc.signal(libc::SIGTERM);
}

/// Reports written by c1m at 34331f0 (before the history, the spectrum, memory and the run's
/// description were kept; tests/fixtures/old): `c1m report` renders what they hold and says
/// what is missing, and `compare` reads them.
#[test]
fn reports_from_an_older_c1m_still_render_and_compare() {
    let dir = tempfile::tempdir().unwrap();
    let old = manifest_dir().join("tests/fixtures/old");
    for (side, broadcasts, charts) in [
        ("client", 8, &["Latency spectrum", "Each broadcast"][..]),
        ("server", 12, &["Each broadcast"][..]),
    ] {
        let json = old.join(format!("{side}-34331f0.json"));
        let page = dir.path().join(format!("{side}.html"));
        let out = run(
            c1m(&[
                "report",
                json.to_str().unwrap(),
                "--html",
                page.to_str().unwrap(),
            ]),
            LIMIT,
        );
        assert_eq!(out.code(), Some(0), "{out}");
        let html = std::fs::read_to_string(&page).unwrap();
        for said in [
            "This report has no per-second history",
            "This report has no command line, machine or kernel limits",
        ] {
            assert!(
                html.contains(said),
                "{side}: {said:?} missing: {html:.3000}"
            );
        }
        let rows = format!("Broadcasts ({broadcasts})");
        assert!(html.contains(&rows), "{side}: no {rows:?}: {html:.3000}");
        assert_page_reads_well(&page, charts);
    }
    let client = old.join("client-34331f0.json");
    let (code, out) = compare(&client, &client, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("memory per connection") && out.contains("not in both reports"),
        "{out}"
    );
}
