//! `c1m report --merge`: three `--segment` slices of one run, started a second apart, merged
//! into one report whose counts add up, whose latency histogram is the exact sum of the slices'
//! and whose history places them side by side; and the merges it refuses.

use crate::common::*;
use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn histogram(base64_v2: &str) -> Histogram<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_v2)
        .unwrap();
    Deserializer::new().deserialize(&mut &bytes[..]).unwrap()
}

/// Slice `i` of 3 of 1,200 connections for 4 s, started now.
fn slice(url: &str, i: usize, json: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_c1m"));
    cmd.args([
        "client",
        "--url",
        url,
        "--conns",
        "1200",
        "--duration",
        "4s",
    ])
    .args(["--segment", &format!("{i}/3"), "--json"])
    .arg(json);
    Proc::spawn(&mut cmd, "slice")
}

fn merge(reports: &[&Path], extra: &[&str]) -> Finished {
    let mut cmd = c1m(&["report", "--merge"]);
    cmd.args(reports).args(extra);
    run(cmd, LIMIT)
}

#[test]
fn slices_started_apart_merge_into_one_exact_report() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    let server = ServerProc::start(&["--every", "400ms", "--duration", "30s"]);
    let paths: Vec<PathBuf> = (0..3).map(|i| file(&format!("s{i}.json"))).collect();
    let mut procs = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        procs.push(slice(&server.url(), i, path));
        std::thread::sleep(Duration::from_secs(1));
    }
    for p in procs {
        let out = p.wait(LIMIT);
        assert_eq!(out.code(), Some(0), "{out}");
    }
    let parts: Vec<Value> = paths.iter().map(|p| read_json(p)).collect();
    let (json, html) = (file("m.json"), file("m.html"));
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let out = merge(
        &refs,
        &[
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("merged 3 reports"), "{out}");
    let m = read_json(&json);
    assert_eq!(schema_errors(&m), Vec::<String>::new());
    let total = |ptr: &str| parts.iter().map(|r| u64_at(r, ptr)).sum::<u64>();
    assert_eq!(u64_at(&m, "/connections/established"), 1200);
    assert_eq!(u64_at(&m, "/config/conns"), 1200);
    assert_eq!(
        u64_at(&m, "/messages/received"),
        total("/messages/received")
    );
    assert_eq!(u64_at(&m, "/messages/missed"), 0);
    assert_eq!(u64_at(&m, "/latency_us/count"), total("/latency_us/count"));

    // The latency histogram is the slices' added up, count for count.
    let mut sum = Histogram::<u64>::new(3).unwrap();
    for r in &parts {
        sum.add(histogram(r["mergeable"]["latency_hdr"].as_str().unwrap()))
            .unwrap();
    }
    let merged = histogram(m["mergeable"]["latency_hdr"].as_str().unwrap());
    assert_eq!(merged.len(), sum.len());
    for v in sum.iter_recorded() {
        assert_eq!(merged.count_at(v.value_iterated_to()), v.count_at_value());
    }
    let max = parts.iter().map(|r| u64_at(r, "/latency_us/max")).max();
    assert_eq!(Some(u64_at(&m, "/latency_us/max")), max);
    let p99s: Vec<u64> = parts.iter().map(|r| u64_at(r, "/latency_us/p99")).collect();
    let p99 = u64_at(&m, "/latency_us/p99");
    assert!(p99 >= *p99s.iter().min().unwrap() && p99 <= *p99s.iter().max().unwrap());

    // A broadcast every slice took: what each received, added; delivery to the last of them.
    let row = |r: &Value, seq: u64| -> Option<Value> {
        r["broadcasts"]
            .as_array()?
            .iter()
            .find(|b| b["seq"] == seq)
            .cloned()
    };
    let common: Vec<u64> = m["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["seq"].as_u64())
        .filter(|&s| parts.iter().all(|r| row(r, s).is_some()))
        .collect();
    assert!(!common.is_empty(), "no broadcast reached every slice");
    for seq in common {
        let b = row(&m, seq).unwrap();
        let each: Vec<Value> = parts.iter().map(|r| row(r, seq).unwrap()).collect();
        let received: u64 = each.iter().map(|b| b["received"].as_u64().unwrap()).sum();
        assert_eq!(b["received"], received, "broadcast {seq}");
        let last = each
            .iter()
            .map(|b| b["last_recv_us"].as_i64().unwrap())
            .max();
        assert_eq!(b["last_recv_us"].as_i64(), last);
        assert!(b["latency_us"]["p50"].is_null(), "not mergeable: left out");
    }

    // Slices 0 and 2 ran together from 2 s to 4 s: all 1,200 were open at once.
    assert_eq!(u64_at(&m, "/connections/peak"), 1200);
    let span = m["elapsed_s"].as_f64().unwrap();
    assert!(
        (5.5..9.0).contains(&span),
        "the run spans the three: {span}"
    );
    let charts = [
        "Connections",
        "Messages",
        "Latency per second",
        "Each broadcast",
    ];
    assert_page_reads_well(&html, &charts);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("Merged from 3 reports"),
        "the page says what it is"
    );
    server.proc.signal(libc::SIGINT);

    // Two of the three: merged, and the missing slice named.
    let out = merge(&refs[..2], &[]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("segments 2 of 3 are missing"), "{out}");
    // The same slice twice would count it twice.
    let out = merge(&[refs[0], refs[0]], &[]);
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("segment 0/3 is given twice"), "{out}");
    // A report from before `mergeable`: named, with what to do.
    let old = manifest_dir().join("tests/fixtures/old/client-34331f0.json");
    let out = merge(&[refs[0], &old], &[]);
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("has no histograms to merge"), "{out}");
}
