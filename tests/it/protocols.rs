//! The six protocol presets against push servers of those protocols: Socket.IO and graphql-ws
//! (the npm libraries), Action Cable (PyPI's django-actioncable under uvicorn), and Pusher,
//! Phoenix and Centrifugo (small servers written to their public protocol descriptions; none
//! of those installs here). Each server is strict: a client that misses the protocol's
//! keep-alive is closed, and only subscribed connections get pushes. So a run that passes
//! subscribed, kept alive, and timed every push. scripts/test installs them all.

use crate::common::{Proc, c1m, interop_dir, read_json, require_node_ws, run, schema_errors};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

const CONNS: u64 = 200;
/// Client run; the server outlives it by two seconds, then prints its counters.
const RUN_S: u64 = 4;

struct Protocol<'a> {
    preset: &'static str,
    /// Interpreter and script in tests/interop, with its own arguments.
    server: (&'static str, &'static str, &'static [&'static str]),
    /// The URL's path and query (the preset's, on the server's port).
    path: &'static str,
    flags: &'a [&'a str],
}

fn require_peers(interpreter: &str) {
    match interpreter {
        "node" => {
            require_node_ws();
            for module in ["socket.io", "graphql-ws", "graphql"] {
                let found = interop_dir().join("node_modules").join(module).exists();
                assert!(
                    found,
                    "the protocol tests need npm's {module}: run `cd tests/interop && npm ci`"
                );
            }
        }
        _ => {
            let ok = Command::new("python3")
                .args(["-c", "import websockets, actioncable, uvicorn, channels"])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "the protocol tests need python3 with websockets, django-actioncable, channels \
                 and uvicorn: run the install block of scripts/test"
            );
        }
    }
}

/// Runs the client with the protocol's preset against its server; returns the client's
/// report and the server's final counters.
fn run_protocol(p: &Protocol<'_>) -> (Value, Value) {
    let (interpreter, script, args) = p.server;
    require_peers(interpreter);
    let duration = (RUN_S + 2).to_string();
    let mut cmd = Command::new(interpreter);
    cmd.arg(interop_dir().join(script))
        .args(["--port", "0", "--duration", &duration])
        .args(args)
        .current_dir(interop_dir())
        .stdin(Stdio::null());
    let server = Proc::spawn(&mut cmd, script);
    let limit = Duration::from_secs(30);
    let port: u16 = server.stdout_line("listening line", limit, |l| {
        l.strip_prefix("listening ")?.trim().parse().ok()
    });

    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let url = format!("ws://127.0.0.1:{port}{}", p.path);
    let mut client = c1m(&["client", "--preset", p.preset, "--url", &url]);
    client
        .args(["--conns", &CONNS.to_string()])
        .args(["--duration", &format!("{RUN_S}s")])
        .args(["--json", json.to_str().unwrap()])
        .args(p.flags);
    let out = run(client, limit);
    let report = read_json(&json);
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    assert_eq!(out.code(), Some(0), "{}: {out}", p.preset);

    let finished = server.wait(limit);
    let stats = finished
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("stats "))
        .unwrap_or_else(|| panic!("{script} printed no stats: {finished}"));
    (report, serde_json::from_str(stats).unwrap())
}

/// Every connection subscribed and stayed; every push it got was timed; nothing was lost.
fn measured_everything(p: &Protocol<'_>) -> (Value, Value) {
    let (r, stats) = run_protocol(p);
    let name = p.preset;
    assert_eq!(r["errors"]["total"], 0, "{name}: {r:#}");
    assert_eq!(r["connections"]["established"], CONNS, "{name}: {r:#}");
    assert_eq!(stats["subscribed"], CONNS, "{name}: {stats}");
    assert_eq!(stats["closed_for_silence"], 0, "{name}: {stats}");
    let m = &r["messages"];
    let received = m["received"].as_u64().unwrap();
    // A push every 100 ms, to every connection: at least a second's worth each. (Not the whole
    // run's: on a busy CI machine django-actioncable's loop fell to 26 pushes in 4 s, a slow
    // server, not a loss; losses are `missed`, checked below.)
    assert!(received >= CONNS * 10, "{name}: {r:#}");
    assert_eq!(r["latency_us"]["count"].as_u64(), Some(received), "{name}");
    assert_eq!(m["unparsable"], 0, "{name}: {r:#}");
    assert_eq!(m["skewed"], 0, "{name}: {r:#}");
    assert_eq!(m["missed"], 0, "{name}: {r:#}");
    // What the server wrote and the client did not count as data was protocol: acks, pings.
    assert!(
        stats["pushed"].as_u64().unwrap() >= received,
        "{name}: {stats} vs {received}"
    );
    (r, stats)
}

#[test]
fn socketio_preset_joins_answers_pings_and_times_events() {
    let (r, _) = measured_everything(&Protocol {
        preset: "socketio",
        server: ("node", "socketio_server.js", &["--silence-ms", "1000"]),
        path: "/socket.io/?EIO=4&transport=websocket",
        flags: &[],
    });
    // Engine.IO pings every 500 ms here: about eight answered per connection.
    let replies = r["talk"]["replies"].as_u64().unwrap();
    assert!(replies >= CONNS * 5, "{r:#}");
    assert_eq!(r["talk"]["sent"], CONNS);
}

#[test]
fn graphql_ws_preset_subscribes_on_ack_and_answers_pings() {
    let (r, _) = measured_everything(&Protocol {
        preset: "graphql-ws",
        server: ("node", "graphql_ws_server.js", &["--silence-ms", "1000"]),
        path: "/graphql",
        flags: &[],
    });
    assert_eq!(r["messages"]["loss"]["method"], "seq field", "{r:#}");
    // The subscribe answering each ack, and the pongs answering the server's pings.
    assert!(r["talk"]["replies"].as_u64().unwrap() >= CONNS * 5, "{r:#}");
}

#[test]
fn actioncable_preset_subscribes_and_ignores_the_servers_pings() {
    let (r, _) = measured_everything(&Protocol {
        preset: "actioncable",
        server: ("python3", "actioncable_server.py", &[]),
        path: "/cable",
        flags: &[],
    });
    assert_eq!(r["messages"]["loss"]["method"], "seq field", "{r:#}");
    // The welcome and the subscription's confirmation at least, per connection.
    assert!(
        r["messages"]["ignored"].as_u64().unwrap() >= CONNS * 2,
        "{r:#}"
    );
}

#[test]
fn pusher_preset_subscribes_and_answers_pings() {
    let (r, stats) = measured_everything(&Protocol {
        preset: "pusher",
        server: ("python3", "pusher_server.py", &["--silence-ms", "1000"]),
        path: "/app/c1m-key?protocol=7&client=c1m&version=0.1",
        flags: &[],
    });
    assert_eq!(r["talk"]["sent"], CONNS, "{r:#}");
    assert!(stats["pushed"].as_u64().unwrap() > 0);
}

#[test]
fn phoenix_preset_joins_and_heartbeats() {
    // Phoenix times out after 60 s of silence; this server after 2 s, so the heartbeat is
    // shortened to match, in the preset's own words.
    let (r, _) = measured_everything(&Protocol {
        preset: "phoenix",
        server: ("python3", "phoenix_server.py", &["--silence-ms", "2000"]),
        path: "/socket/websocket?vsn=2.0.0",
        flags: &[
            "--heartbeat",
            r#"1s=[null,"{now_ms}","phoenix","heartbeat",{}]"#,
        ],
    });
    assert_eq!(r["messages"]["loss"]["method"], "seq field", "{r:#}");
    assert!(
        r["talk"]["heartbeats"].as_u64().unwrap() >= CONNS * 3,
        "{r:#}"
    );
}

#[test]
fn centrifugo_preset_connects_with_a_token_subscribes_and_pongs() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.txt");
    std::fs::write(&tokens, "tok-a\ntok-b\n").unwrap();
    let (r, _) = measured_everything(&Protocol {
        preset: "centrifugo",
        server: ("python3", "centrifugo_server.py", &["--ping-s", "1"]),
        path: "/connection/websocket",
        flags: &["--tokens", tokens.to_str().unwrap()],
    });
    assert_eq!(r["messages"]["loss"]["method"], "seq field", "{r:#}");
    assert!(r["talk"]["replies"].as_u64().unwrap() >= CONNS * 2, "{r:#}");
}
