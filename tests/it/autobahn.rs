//! Autobahn|Testsuite against c1m: `wstest -m fuzzingclient` (Python 2.7, installed by
//! scripts/test under target/autobahn) drives `c1m server --echo` through the cases named in
//! tests/autobahn/fuzzingclient.json, and `wstest -m fuzzingserver` drives `c1m client --echo`
//! through those of tests/autobahn/fuzzingserver.json, one `c1m client --conns 1` per case as
//! the suite asks (a client ends as soon as its one connection has). No case may fail; every case that is not plainly OK must
//! be one tests/autobahn/known.json lists with its reason, and no listed case may have become
//! OK unnoticed. `cargo test --test it autobahn -- --nocapture` prints the summary the README
//! shows.

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// wstest as scripts/test installs it.
fn require_wstest() -> PathBuf {
    let wstest = manifest_dir().join("target/autobahn/bin/wstest");
    assert!(
        wstest.exists(),
        "the Autobahn tests need wstest: run `bash scripts/test` (it installs it), or \
         `PYENV_VERSION=2.7.18 PYTHONUSERBASE=$PWD/target/autobahn python -m pip install --user \
         autobahntestsuite==25.10.1`"
    );
    wstest
}

/// The suite's harness for clients: wstest commands are URLs, their answers text messages.
/// wstest prints "Ok, will run" before its reactor listens, so a refused connect is retried
/// for a while (on a fresh CI machine the first ask came before the listen).
fn ask(port: u16, path: &str) -> Option<String> {
    let url = format!("ws://127.0.0.1:{port}{path}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut ws = loop {
        match tungstenite::connect(&url) {
            Ok((ws, _)) => break ws,
            Err(e) if std::time::Instant::now() > deadline => panic!("{url}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    match ws.read() {
        Ok(tungstenite::Message::Text(t)) => Some(t.as_str().to_string()),
        _ => None,
    }
}

fn suite_command(wstest: &std::path::Path, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(wstest);
    cmd.current_dir(dir)
        .env("PYENV_VERSION", "2.7.18")
        .env("PYTHONUSERBASE", manifest_dir().join("target/autobahn"));
    cmd
}

fn read(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Case number → (case id, behavior, behaviorClose), in case order.
fn results(index: &Value, agent: &str) -> BTreeMap<Vec<u32>, (String, String, String)> {
    index[agent]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, r)| {
            let key = id.split('.').map(|n| n.parse().unwrap()).collect();
            let b = |k: &str| r[k].as_str().unwrap().to_string();
            (key, (id.clone(), b("behavior"), b("behaviorClose")))
        })
        .collect()
}

/// Checks a run's results (`index`, the suite's index.json) against known.json's `side` list,
/// and prints the summary.
fn judge(side: &str, index: &Value, agent: &str) {
    let known = read(&manifest_dir().join("tests/autobahn/known.json"));
    let known = known[side].as_object().unwrap();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut not_ok = Vec::new();
    let cases: Vec<(String, String, String)> = results(index, agent).into_values().collect();
    for (id, behavior, close) in cases.iter().cloned() {
        *counts.entry(behavior.clone()).or_default() += 1;
        let plain = behavior == "OK" && close == "OK";
        if !plain {
            not_ok.push(id.clone());
        }
        let listed = known.get(&id).and_then(|k| k["behavior"].as_str());
        match (plain, listed) {
            (true, None) => {}
            (false, Some(b)) if b == behavior => {}
            _ => unexpected.push(format!(
                "{id}: {behavior} / close {close}, known: {listed:?}"
            )),
        }
    }
    for id in known.keys() {
        if !cases.iter().any(|r| &r.0 == id) {
            unexpected.push(format!("{id}: listed in known.json but not run"));
        }
    }
    eprintln!(
        "autobahn {side}: {counts:?}; not plainly OK: {}",
        not_ok.join(" ")
    );
    assert!(
        unexpected.is_empty(),
        "Autobahn|Testsuite, {side}: {unexpected:#?}"
    );
    assert_eq!(counts.get("FAILED"), None, "no case may fail");
}

#[test]
fn the_echo_server_passes_the_autobahn_fuzzing_client() {
    let wstest = require_wstest();
    let server = ServerProc::start(&[
        "--echo",
        "--every",
        "off",
        "--compression",
        "shared",
        "--duration",
        "600s",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut spec = read(&manifest_dir().join("tests/autobahn/fuzzingclient.json"));
    spec["servers"][0]["url"] = server.url().trim_end_matches('/').into();
    spec["outdir"] = dir.path().join("reports").to_str().unwrap().into();
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let mut cmd = suite_command(&wstest, dir.path());
    cmd.args(["-m", "fuzzingclient", "-s"]).arg(&spec_path);
    let out = run(cmd, Duration::from_secs(300));
    assert_eq!(out.code(), Some(0), "{out}");
    let index = read(&dir.path().join("reports/index.json"));
    judge("server", &index, "c1m");
    server.proc.signal(libc::SIGINT);
}

#[test]
fn the_echo_client_passes_the_autobahn_fuzzing_server() {
    fuzzing_server(&[]);
}

/// The same cases with the client's receives in io_uring: frames arrive in the ring's 512-byte
/// pieces and echoes wait on epoll's writable readiness alone.
#[test]
fn the_io_uring_echo_client_passes_the_autobahn_fuzzing_server() {
    fuzzing_server(&["--io-uring"]);
}

fn fuzzing_server(extra: &[&str]) {
    let wstest_bin = require_wstest();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut spec = read(&manifest_dir().join("tests/autobahn/fuzzingserver.json"));
    spec["url"] = format!("ws://127.0.0.1:{port}").into();
    spec["outdir"] = dir.path().join("reports").to_str().unwrap().into();
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let mut cmd = suite_command(&wstest_bin, dir.path());
    cmd.args(["-m", "fuzzingserver", "-s"])
        .arg(&spec_path)
        .stdin(std::process::Stdio::null());
    let suite = Proc::spawn(&mut cmd, "wstest -m fuzzingserver");
    let limit = Duration::from_secs(60);
    suite.stdout_line("the case count", limit, |l| {
        l.starts_with("Ok, will run").then_some(())
    });
    let count: u32 = ask(port, "/getCaseCount").unwrap().parse().unwrap();
    assert!(count > 300, "{count} cases");
    for case in 1..=count {
        let info: Value =
            serde_json::from_str(&ask(port, &format!("/getCaseInfo?case={case}")).unwrap())
                .unwrap();
        let id = info["id"].as_str().unwrap();
        let url = format!("ws://127.0.0.1:{port}/runCase?case={case}&agent=c1m");
        let mut args = vec!["client", "--url", &url, "--conns", "1", "--echo"];
        args.extend(["--duration", "60s", "--quiet"]);
        args.extend(extra);
        // Compression cases: the client offers what browsers offer (a window per connection).
        if id.starts_with("12.") || id.starts_with("13.") {
            args.extend(["--compression", "context"]);
        }
        let out = run(c1m(&args), Duration::from_secs(90));
        assert!(!out.stderr.contains("panicked"), "case {id}: {out}");
    }
    assert_eq!(ask(port, "/updateReports?agent=c1m"), None);
    let index = read(&dir.path().join("reports/index.json"));
    judge("client", &index, "c1m");
}
