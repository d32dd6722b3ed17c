//! Agents on separate hosts: network namespaces a test makes itself (a server host, three
//! agent hosts and a coordinator host, each with a veth pair onto one bridge in a "switch"
//! namespace, addresses in 10.213.0.0/24), removed at the end. Three agents hold 2,000
//! connections each through three broadcasts; then one agent host's link is deleted
//! mid-run, the coordinator counts it `agent_lost`, the survivors take the next broadcast, and
//! the report is written. Skipped, saying why, where namespaces cannot be made (not root).

use crate::common::*;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// The namespaces, deleted on drop.
struct Hosts {
    prefix: String,
    names: Vec<String>,
}

impl Hosts {
    /// `hosts` namespaces plus the switch; `None`, with the reason, when that is not allowed.
    fn make(hosts: &[&str]) -> Result<Hosts, String> {
        let prefix = format!("c1mt{}", std::process::id());
        let mut made = Hosts {
            prefix: prefix.clone(),
            names: Vec::new(),
        };
        let sw = format!("{prefix}sw");
        made.ns(&sw)?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for (k, h) in hosts.iter().enumerate() {
            let ns = format!("{prefix}{h}");
            made.ns(&ns)?;
            let (v, p) = (format!("v{k}"), format!("p{k}"));
            ip(&[
                "link", "add", &v, "netns", &ns, "type", "veth", "peer", "name", &p, "netns", &sw,
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", addr(k)),
                "dev",
                &v,
            ])?;
            ip(&["-n", &ns, "link", "set", &v, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &sw, "link", "set", &p, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &p, "up"])?;
        }
        Ok(made)
    }

    fn ns(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.names.push(name.to_string());
        Ok(())
    }

    /// `c1m ARGS` on host `h`.
    fn c1m(&self, h: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &format!("{}{h}", self.prefix),
            env!("CARGO_BIN_EXE_c1m"),
        ])
        .args(args);
        cmd
    }

    /// Cuts host number `k` off the switch: its link goes, as if its machine were unplugged.
    fn unplug(&self, k: usize) {
        ip(&[
            "-n",
            &format!("{}sw", self.prefix),
            "link",
            "del",
            &format!("p{k}"),
        ])
        .unwrap();
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in self.names.iter().rev() {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Host `k`'s address.
fn addr(k: usize) -> String {
    format!("10.213.0.{}", 10 + k)
}

#[test]
fn three_agent_hosts_merge_exactly_and_one_unplugged_is_counted() {
    // Hosts: 0 the server, 1–3 agents, 4 the coordinator.
    let hosts = match Hosts::make(&["srv", "a1", "a2", "a3", "co"]) {
        Ok(h) => h,
        Err(why) => {
            eprintln!("skipped: network namespaces cannot be made here ({why})");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let listen = format!("{}:8080", addr(0));
    let server = Proc::spawn(
        &mut hosts.c1m(
            "srv",
            &[
                "server",
                "--listen",
                &listen,
                "--every",
                "off",
                "--duration",
                "60s",
            ],
        ),
        "server",
    );
    server.stderr_line("listening", Duration::from_secs(10), |l| {
        l.contains("listening on").then_some(())
    });
    let agents: Vec<Proc> = (1..=3)
        .map(|k| {
            let at = format!("{}:7070", addr(k));
            let a = Proc::spawn(
                &mut hosts.c1m(
                    &format!("a{k}"),
                    &["agent", "--listen", &at, "--token", "t0ken"],
                ),
                "agent",
            );
            a.stderr_line("listening", Duration::from_secs(10), |l| {
                l.contains("listening on").then_some(())
            });
            a
        })
        .collect();
    let list = (1..=3)
        .map(|k| format!("{}:7070", addr(k)))
        .collect::<Vec<_>>()
        .join(",");
    let url = format!("ws://{listen}/");
    let mut cmd = hosts.c1m(
        "co",
        &[
            "client",
            "--url",
            &url,
            "--agents",
            &list,
            "--conns",
            "6000",
            "--duration",
            "40s",
            "--json",
        ],
    );
    cmd.arg(&json).env("C1M_AGENT_TOKEN", "t0ken");
    let client = Proc::spawn(&mut cmd, "coordinator");
    client.wait_open(6000, Duration::from_secs(30));
    for seq in 1..=3 {
        server.signal(libc::SIGUSR1);
        let got = server.stderr_line("broadcast", Duration::from_secs(10), broadcast_line);
        assert_eq!((got.0, got.1), (seq, 6000));
        std::thread::sleep(Duration::from_millis(500));
    }
    // Every copy counted by the coordinator before a host goes: an agent unplugged with
    // messages it had not reported yet (a loaded machine) would take them with it.
    client.stderr_line("18,000 received", Duration::from_secs(20), |l| {
        let msgs = l.split(" msgs ").nth(1)?.split(' ').next()?;
        (msgs.parse::<u64>().ok()? >= 18_000).then_some(())
    });
    hosts.unplug(2);
    client.stderr_line("the loss", Duration::from_secs(20), |l| {
        l.contains("(agent_lost)").then_some(())
    });
    server.signal(libc::SIGUSR1);
    server.stderr_line("broadcast 4", Duration::from_secs(10), |l| {
        broadcast_line(l).filter(|b| b.0 == 4)
    });
    std::thread::sleep(Duration::from_secs(1));
    client.signal(libc::SIGINT);
    let out = client.wait(LIMIT);
    assert_eq!(
        out.code(),
        Some(1),
        "the lost connections are errors: {out}"
    );
    let r = read_json(&json);
    assert_eq!(schema_errors(&r), Vec::<String>::new(), "{r:#}");
    let received: Vec<u64> = r["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["received"].as_u64().unwrap())
        .collect();
    assert_eq!(received, [6000, 6000, 6000, 4000], "{:#}", r["broadcasts"]);
    assert_eq!(u64_at(&r, "/messages/received"), 22_000);
    assert_eq!(u64_at(&r, "/messages/missed"), 0);
    assert_eq!(u64_at(&r, "/errors/by_class/agent_lost"), 2000);
    let rows = r["workers"].as_array().unwrap();
    let states: Vec<&str> = rows.iter().map(|w| w["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["stopped", "died", "stopped"], "{rows:#?}");
    for (k, w) in rows.iter().enumerate() {
        assert_eq!(w["agent"]["addr"], format!("{}:7070", addr(k + 1)));
    }
    drop(agents);
    server.signal(libc::SIGINT);
}
