//! `c1m doctor` through the real binary: the table, the verdict in the exit status, and what a
//! machine whose hard RLIMIT_NOFILE is too low (a container) tells its user.

mod common;

use common::{c1m, run};
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
    // Both sides in one process need 2,000,000 descriptors and 100 more.
    if c1m::sys::nofile().1 < 2_000_100 {
        let row = text
            .lines()
            .find(|l| l.starts_with("RLIMIT_NOFILE (hard)"))
            .unwrap_or_else(|| panic!("no hard limit row\n{out}"));
        assert!(row.contains("FAIL"), "{out}");
        assert!(text.contains("`* hard nofile 2000100`"), "{out}");
        assert!(text.contains("split the run over"), "{out}");
        assert!(text.contains("(bound by RLIMIT_NOFILE (hard))"), "{out}");
        assert!(
            text.contains("/etc/security/limits.d/90-c1m.conf <<'EOF'"),
            "{out}"
        );
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
