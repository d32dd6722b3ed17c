//! deploy/k8s: the manifests validate offline against a current Kubernetes (kubernetes-validate
//! --strict, from PyPI), and render.py sizes them for N agents consistently: the Indexed Job
//! runs N pods, the coordinator expects N and asks for the whole target, the agents' shares
//! add up to it, and each agent's memory request covers its share.

use crate::common::manifest_dir;
use serde_json::Value;
use std::process::Command;

fn k8s() -> std::path::PathBuf {
    manifest_dir().join("deploy/k8s")
}

fn validate(files: &[std::path::PathBuf]) {
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .args(files)
        .output()
        .expect("the deploy test needs kubernetes-validate (scripts/test installs it from PyPI)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !text.contains("ERROR"), "{text}");
}

fn render(agents: u64, conns: u64) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(k8s().join("render.py"))
        .args([
            "--agents",
            &agents.to_string(),
            "--conns",
            &conns.to_string(),
            "--json",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn job<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == "Job" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Job {name}"))
}

fn flag<'a>(args: &'a [Value], name: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("no {name} in {args:?}"));
    args[i + 1].as_str().unwrap()
}

/// "3185Mi" in KiB.
fn kib(quantity: &str) -> u64 {
    let (n, unit) = quantity.split_at(quantity.find(|c: char| !c.is_ascii_digit()).unwrap());
    let n: u64 = n.parse().unwrap();
    match unit {
        "Mi" => n * 1024,
        "Gi" => n * 1024 * 1024,
        other => panic!("unit {other}"),
    }
}

#[test]
fn the_manifests_validate_and_render_for_any_number_of_agents() {
    let files: Vec<_> = [
        "namespace",
        "secret",
        "server",
        "agents",
        "coordinator",
        "node-setup",
    ]
    .iter()
    .map(|f| k8s().join(format!("{f}.yaml")))
    .collect();
    validate(&files);
    for (agents, conns) in [(1u64, 10_000u64), (4, 1_000_000), (7, 1_000_003)] {
        let docs = render(agents, conns);
        let dir = tempfile::tempdir().unwrap();
        let rendered = dir.path().join("c1m.yaml");
        let yaml: Vec<String> = docs
            .iter()
            .map(|d| serde_json::to_string(d).unwrap())
            .collect();
        // JSON is YAML: one document per line.
        std::fs::write(&rendered, yaml.join("\n---\n")).unwrap();
        validate(&[rendered]);
        let a = &job(&docs, "c1m-agents")["spec"];
        assert_eq!(
            (a["completions"].as_u64(), a["parallelism"].as_u64()),
            (Some(agents), Some(agents))
        );
        assert_eq!(a["completionMode"], "Indexed");
        let c = &job(&docs, "c1m-coordinator")["spec"]["template"]["spec"]["containers"][0]["args"];
        let args = c.as_array().unwrap();
        assert_eq!(flag(args, "--expect-agents"), agents.to_string());
        assert_eq!(flag(args, "--conns"), conns.to_string());
        assert!(
            flag(args, "--agents").starts_with("dns:c1m-agents."),
            "{args:?}"
        );
        // The coordinator's split: every connection goes to exactly one agent.
        let shares: Vec<u64> = (0..agents)
            .map(|k| c1m::engine::client::share(conns, agents, k))
            .collect();
        assert_eq!(shares.iter().sum::<u64>(), conns);
        let memory = a["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"]
            .as_str()
            .unwrap();
        let largest = *shares.iter().max().unwrap();
        assert!(
            kib(memory) >= largest * 10,
            "{memory} for {largest} connections"
        );
    }
}
