//! Every output flag in every face, through the real binary: `--json` and `--hdr-log` on
//! `c1m server`, `c1m client` and `c1m tui` each write their file, and the file holds what the
//! run measured (a report that passes the schema, an HDR log whose intervals add up).

use crate::common::{
    ServerProc, Tmux, assert_page_reads_well, c1m, open_in_browser, read_hdr_log, read_json, run,
    schema_errors, u64_at,
};
use std::path::Path;
use std::time::Duration;

const CONNS: u64 = 100;

/// A report of `mode` that passes the schema and says how the run ended.
fn check_json(path: &Path, mode: &str, ended_by: &str) -> serde_json::Value {
    let r = read_json(path);
    assert_eq!(
        schema_errors(&r),
        Vec::<String>::new(),
        "{}",
        path.display()
    );
    assert_eq!(r["mode"], mode, "{}", path.display());
    assert_eq!(r["ended_by"], ended_by, "{}", path.display());
    let series = r["series"].as_array().unwrap();
    assert!(!series.is_empty(), "no history in {}", path.display());
    // One point a second: a tick a hair early once skipped every other second.
    let spans: Vec<f64> = series.iter().map(|p| p["dt_s"].as_f64().unwrap()).collect();
    assert!(
        spans[..spans.len() - 1].iter().all(|dt| *dt < 1.5),
        "{}: points of {spans:?} s",
        path.display()
    );
    r
}

/// An HDR log whose intervals hold `count` values, as the report counted.
fn check_hdr(path: &Path, count: u64, what: &str) {
    let (merged, intervals) = read_hdr_log(path);
    assert!(intervals >= 1, "{}", path.display());
    assert_eq!(merged.len(), count, "{}", path.display());
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(what), "{}:\n{text}", path.display());
}

/// A self-contained HTML report of `mode` that passed: charts as inline SVG, nothing fetched,
/// and the same page `c1m report` renders from the JSON report beside it.
fn check_html(path: &Path, json: &Path, mode: &str) {
    let page = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(page.starts_with("<!DOCTYPE html>"), "{page:.200}");
    assert!(
        page.contains(&format!("<h1>c1m {mode} report</h1>")),
        "{page:.400}"
    );
    assert!(page.contains("class=\"pass\">Passed</span>"), "{page:.600}");
    // Connections, setup, messages, errors, memory, the spectrum and each broadcast; the
    // client adds latency per second. (Memory per connection waits for 1,000 open.)
    let charts = if mode == "client" { 8 } else { 7 };
    assert_eq!(page.matches("<svg").count(), charts, "charts missing");
    assert!(
        page.contains(" points, one a second"),
        "a short run is not downsampled"
    );
    for fetch in ["<script", "src=", "href=", "@import", "url("] {
        assert!(
            !page.contains(fetch),
            "{} fetches something: {fetch}",
            path.display()
        );
    }
    assert!(page.len() < 1 << 20, "{} bytes", page.len());
    let again = path.with_extension("again.html");
    let out = run(
        c1m(&[
            "report",
            json.to_str().unwrap(),
            "--html",
            again.to_str().unwrap(),
        ]),
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(
        std::fs::read_to_string(&again).unwrap(),
        page,
        "c1m report renders the same"
    );
}

#[test]
fn headless_server_and_client_write_json_and_hdr_logs() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    let server = ServerProc::start(&[
        "--every",
        "300ms",
        "--duration",
        "5s",
        "--json",
        file("s.json").to_str().unwrap(),
        "--hdr-log",
        file("s.hdr").to_str().unwrap(),
        "--html",
        file("s.html").to_str().unwrap(),
    ]);
    let mut client = c1m(&[
        "client",
        "--url",
        &server.url(),
        "--conns",
        &CONNS.to_string(),
        "--duration",
        "2s",
        "--json",
        file("c.json").to_str().unwrap(),
        "--hdr-log",
        file("c.hdr").to_str().unwrap(),
        "--html",
        file("c.html").to_str().unwrap(),
    ]);
    client.stdin(std::process::Stdio::null());
    let out = run(client, Duration::from_secs(20));
    assert_eq!(out.code(), Some(0), "{out}");
    let s_out = server.proc.wait(Duration::from_secs(20));
    assert_eq!(s_out.code(), Some(0), "{s_out}");

    let c = check_json(&file("c.json"), "client", "duration");
    check_hdr(
        &file("c.hdr"),
        u64_at(&c, "/latency_us/count"),
        "Message latency",
    );
    assert!(u64_at(&c, "/latency_us/count") >= CONNS, "{c:#}");
    let s = check_json(&file("s.json"), "server", "duration");
    // The server's log is its send lag: one value per frame written.
    check_hdr(&file("s.hdr"), u64_at(&s, "/messages/sent"), "Send lag");
    assert_eq!(
        u64_at(&s, "/latency_us/count"),
        u64_at(&s, "/messages/sent")
    );
    check_html(&file("c.html"), &file("c.json"), "client");
    check_html(&file("s.html"), &file("s.json"), "server");
    // What a reader's browser makes of it: headless Chromium loads each file, fetches nothing,
    // logs no error and draws every chart with data.
    let over_time = [
        "Connections",
        "Setup rate",
        "Messages",
        "Errors by class",
        "Resident memory",
        "Each broadcast",
    ];
    let mut client_charts = over_time.to_vec();
    client_charts.extend(["Latency per second", "Latency spectrum"]);
    assert_page_reads_well(&file("c.html"), &client_charts);
    assert_page_reads_well(&file("s.html"), &over_time);
}

/// The browser check itself sees what it must refuse: a page that fetches an image and logs
/// an error.
#[test]
fn the_browser_check_sees_requests_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><img src=\"http://127.0.0.1:9/none.png\">\
         <script>console.error('broken')</script></body></html>",
    )
    .unwrap();
    let seen = open_in_browser(&page);
    assert_eq!(
        seen["requests"][0], "http://127.0.0.1:9/none.png",
        "{seen:#}"
    );
    assert!(seen["problems"].to_string().contains("broken"), "{seen:#}");
}

#[test]
fn the_console_writes_both_sides_files() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let hdr = dir.path().join("run.hdr");
    let html = dir.path().join("run.html");
    let cmd = format!(
        "{} tui --mode local --conns {CONNS} --every 300ms --duration 3s --json {} --hdr-log {} \
         --html {}; echo C1M_EXIT=$?; sleep 60",
        crate::common::BIN,
        json.display(),
        hdr.display(),
        html.display()
    );
    let tmux = Tmux::start("outputs", &cmd, 110, 34);
    let s = tmux.wait("the console to end", Duration::from_secs(30), |s| {
        s.contains("C1M_EXIT=")
    });
    assert!(s.contains("C1M_EXIT=0"), "{s}");
    let c = check_json(&json, "client", "duration");
    check_hdr(&hdr, u64_at(&c, "/latency_us/count"), "Message latency");
    let server_json = dir.path().join("run.server.json");
    let s = check_json(&server_json, "server", "duration");
    check_hdr(
        &dir.path().join("run.server.hdr"),
        u64_at(&s, "/messages/sent"),
        "Send lag",
    );
    assert_eq!(
        u64_at(&c, "/messages/received"),
        u64_at(&s, "/messages/sent"),
        "every frame the server wrote was received"
    );
    check_html(&html, &json, "client");
    check_html(&dir.path().join("run.server.html"), &server_json, "server");
}
