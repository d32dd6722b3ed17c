//! What a report says about the run itself, for a reader who was not there: the command line
//! (credentials redacted), the machine, and the kernel limits as they stood at the start.
//! Read once, at start; every report of the run carries it as `run`.

use super::config::{redacted, redacted_text};
use crate::doctor::checks::{self, Status};
use crate::sys::limits;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct About {
    /// The command line as typed, a credential's value replaced by `(redacted)`.
    pub argv: Vec<String>,
    pub machine: Machine,
    /// `c1m doctor`'s checks against the run's plan, at the start.
    pub limits_at_start: Vec<Limit>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_bytes: Option<u64>,
    /// The kernel release (`uname -r`).
    pub kernel: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Limit {
    pub name: String,
    pub value: String,
    pub target: String,
    pub status: &'static str,
}

impl About {
    pub fn read(plan: &checks::Plan) -> About {
        let readings = limits::read();
        let limits_at_start = checks::check(&readings, plan)
            .into_iter()
            .map(|c| Limit {
                name: c.name,
                value: c.value,
                target: c.target,
                status: match c.status {
                    Status::Ok => "ok",
                    Status::Warn => "warn",
                    Status::Fail => "fail",
                },
            })
            .collect();
        About {
            argv: redact_argv(std::env::args()),
            machine: Machine {
                cores: std::thread::available_parallelism().map_or(1, usize::from),
                memory_bytes: readings.mem_total,
                kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .ok()
                    .map(|s| s.trim().to_string()),
            },
            limits_at_start,
        }
    }
}

/// How a flag's value may hold a credential, and how it is shown.
fn redactor(flag: &str) -> Option<fn(&str) -> String> {
    match flag {
        "--control-token" => Some(|_| "(redacted)".into()),
        "-H" | "--header" => Some(redacted),
        "--send" | "--heartbeat" | "--reply" | "--message" => Some(redacted_text),
        _ => None,
    }
}

/// The command line with credentials out, as `config` shows the same values.
pub fn redact_argv(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending: Option<fn(&str) -> String> = None;
    for arg in args {
        if let Some(redact) = pending.take() {
            out.push(redact(&arg));
            continue;
        }
        match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") && redactor(flag).is_some() => {
                let redact = redactor(flag).expect("checked");
                out.push(format!("{flag}={}", redact(value)));
            }
            _ => {
                pending = redactor(&arg);
                out.push(arg);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_command_line() {
        let argv = [
            "c1m",
            "client",
            "-H",
            "Authorization: Bearer s3cret",
            "--header=X-Tenant: a",
            "--send",
            r#"{"token":"abc"}"#,
            "--control-token=hunter2",
            "--conns",
            "10",
        ]
        .map(String::from);
        let out = redact_argv(argv);
        let joined = out.join(" ");
        assert!(
            !joined.contains("s3cret") && !joined.contains("abc"),
            "{joined}"
        );
        assert!(!joined.contains("hunter2"), "{joined}");
        assert!(joined.contains("--header=X-Tenant: a"), "{joined}");
        assert!(joined.contains("--conns 10"), "{joined}");
        assert_eq!(out.len(), 10);
    }
}
