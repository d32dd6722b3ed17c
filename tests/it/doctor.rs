//! `c1m doctor` through the real binary: the table, the verdict in the exit status, what a
//! machine whose hard RLIMIT_NOFILE is too low (a container) tells its user, and `--apply` on
//! the two paths that cannot change this machine (nothing to change; not root).

use crate::common::{BIN, c1m, run};
use c1m::cli::TuiMode;
use c1m::doctor::{checks, fixes, plan_as_run};
use c1m::sys::{apply, limits};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(15);

#[test]
fn a_million_on_one_machine() {
    let out = run(
        c1m(&["doctor", "--target", "1000000", "--side", "local"]),
        LIMIT,
    );
    let text = &out.stdout;
    assert!(
        text.starts_with("c1m doctor: 1,000,000 connections per side"),
        "{out}"
    );
    assert!(text.contains("limit "), "{out}");
    assert!(text.contains("The current limits allow about "), "{out}");
    assert!(text.lines().all(|l| l.chars().count() <= 100), "{out}");
    // The exit status is the verdict.
    let fails = text.contains("FAIL");
    assert_eq!(out.code(), Some(i32::from(fails)), "{out}");
    // Both sides in one process would need 2,000,000 descriptors and 100 more; below that, c1m
    // splits each side over worker processes and the descriptor rows are per worker.
    let hard = c1m::sys::nofile().1;
    if hard < 2_000_100 {
        let workers = 1_000_000u64.div_ceil(hard - 100);
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains(&format!(
                "so c1m runs each side as {workers} worker processes"
            )),
            "{out}"
        );
        // The headline says the same, never "one process".
        let head = flat.split("Fixes run as root.").next().unwrap();
        assert!(
            head.contains(&format!("each side as {workers} worker processes")),
            "{out}"
        );
        assert!(!head.contains("one process"), "{out}");
        let row = text
            .lines()
            .find(|l| l.starts_with("RLIMIT_NOFILE (hard)"))
            .unwrap_or_else(|| panic!("no hard limit row\n{out}"));
        assert!(!row.contains("FAIL"), "{out}");
    }
}

#[test]
fn a_small_server_target() {
    let out = run(
        c1m(&["doctor", "--target", "100", "--side", "server"]),
        LIMIT,
    );
    assert!(out.stdout.contains("the server on this machine"), "{out}");
    // A server uses no source ports.
    assert!(!out.stdout.contains("ip_local_port_range"), "{out}");
    let fails = out.stdout.contains("FAIL");
    assert_eq!(out.code(), Some(i32::from(fails)), "{out}");
}

/// The sysctls `doctor --apply` would change on this machine for this target, planned and read
/// the way the binary plans and reads them (split over workers past the descriptor cap).
fn pending(target: u64, ips: Option<usize>, side: TuiMode) -> Vec<apply::Change> {
    let checks = checks::check(&limits::read(), &plan_as_run(target, ips, side));
    fixes::changes(&checks, |key| {
        apply::read(Path::new(apply::PROC_SYS), key).ok()
    })
}

/// The raw values of the sysctls doctor knows, to show that a run left them as they were.
fn sysctls_now() -> Vec<(&'static str, Option<String>)> {
    [
        limits::FILE_MAX,
        limits::NR_OPEN,
        limits::PORT_RANGE,
        limits::SOMAXCONN,
        limits::SYN_BACKLOG,
        limits::TCP_MEM,
        limits::CONNTRACK_MAX,
    ]
    .map(|key| (key, apply::read(Path::new(apply::PROC_SYS), key).ok()))
    .into()
}

#[test]
fn apply_with_nothing_to_change_changes_nothing() {
    // A client: a server's rows include the listen backlogs, which a stock kernel keeps below
    // what c1m asks for, and this test may run as root: it must not touch the machine.
    let args = [
        "doctor", "--target", "100", "--side", "client", "--ips", "1",
    ];
    let needs = pending(100, Some(1), TuiMode::Client);
    if !needs.is_empty() {
        eprintln!("skipped: this machine would need {needs:?} even for 100 connections");
        return;
    }
    let before = sysctls_now();
    let out = run(c1m(&[&args[..], &["--apply"]].concat()), LIMIT);
    assert!(
        out.stdout.starts_with(
            "Nothing to change: every kernel setting (sysctl) this target needs is already in \
             place.\n"
        ),
        "{out}"
    );
    assert!(!out.stdout.contains("changed "), "{out}");
    assert!(!out.stdout.contains("only root"), "{out}");
    // The table follows, and the exit status is plain doctor's verdict.
    assert!(
        out.stdout.contains("c1m doctor: 100 connections per side"),
        "{out}"
    );
    let fails = out.stdout.contains("FAIL");
    assert_eq!(out.code(), Some(i32::from(fails)), "{out}");
    assert_eq!(sysctls_now(), before);
}

/// `c1m ARGS…` as a user that is not root: directly when the tests already run as one, else
/// through util-linux's setpriv as uid/gid 65534 (nobody). `Err` says why neither works.
fn c1m_not_root(args: &[&str]) -> Result<Command, String> {
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(c1m(args));
    }
    let nobody = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    // setpriv missing, or the binary (or a directory above it) closed to uid 65534.
    match nobody(&["--help"]).output() {
        Ok(o) if o.status.success() => Ok(nobody(args)),
        Ok(o) => Err(format!(
            "uid 65534 cannot run {BIN}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run setpriv (util-linux): {e}")),
    }
}

#[test]
fn apply_without_root_changes_nothing_and_shows_the_commands() {
    let needs = pending(1_000_000, None, TuiMode::Local);
    if needs.is_empty() {
        eprintln!("skipped: this machine's sysctls already hold 1,000,000 connections");
        return;
    }
    let cmd = match c1m_not_root(&["doctor", "--target", "1000000", "--apply"]) {
        Ok(cmd) => cmd,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let before = sysctls_now();
    let out = run(cmd, LIMIT);
    let flat = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("only root may do"), "{out}");
    assert!(flat.contains("nothing was changed"), "{out}");
    for c in &needs {
        assert!(
            out.stdout.lines().any(|l| l == c.command()),
            "no line `{}`\n{out}",
            c.command()
        );
    }
    assert!(!out.stdout.contains("\nchanged "), "{out}");
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(sysctls_now(), before);
}
