//! `c1m doctor` and the start-up check: the limits table for a target, how many connections
//! the machine allows as it stands, and the files that make the fixes permanent — the seed's
//! tuning walk-through, done for the user.

pub mod checks;
pub mod fixes;

use crate::cli::{DoctorArgs, TuiMode};
use crate::engine::source;
use crate::fmt::int as thousands;
use crate::sys::limits::{self, Readings};
use crate::sys::{FD_MARGIN, apply};
use checks::{Check, Persist, Plan, Status};
use std::path::Path;

/// User-space bytes per connection for the memory projection: BENCHMARKS.md measures 0.22 KiB
/// per connection in the server and 0.16 KiB in the client.
pub const USER_BYTES_PER_CONN: f64 = 256.0;

/// Report lines are wrapped to this width.
const WIDTH: usize = 100;

/// The plan for `target` connections per side with `side` on this machine. `local` is the
/// console's loopback mode: server and client in one process, so that process holds both ends.
pub fn plan_for(target: u64, ips: Option<usize>, side: TuiMode) -> Plan {
    let sources = || ips.unwrap_or_else(|| source::auto_count(target));
    let (sources, sockets) = match side {
        TuiMode::Server => (0, target),
        TuiMode::Client => (sources(), target),
        TuiMode::Local => (sources(), 2 * target),
    };
    Plan {
        conns: target,
        sources,
        sockets,
        sockets_per_process: sockets,
        user_bytes_per_conn: USER_BYTES_PER_CONN,
    }
}

/// [`plan_for`] as a run would hold it: past one process's descriptors, each side runs as
/// worker processes, and the descriptor limits then apply to one worker's share.
pub fn plan_as_run(target: u64, ips: Option<usize>, side: TuiMode) -> Plan {
    plan_with_cap(target, ips, side, crate::sys::per_process_conns())
}

/// [`plan_as_run`] on a machine whose processes hold at most `cap` connections each.
fn plan_with_cap(target: u64, ips: Option<usize>, side: TuiMode, cap: u64) -> Plan {
    let one = plan_for(target, ips, side);
    let layout = crate::workers::Layout::choose(None, target, one.sockets, cap);
    one.split(layout.workers())
}

/// `c1m doctor`: prints the report; exit status 1 when a limit fails the plan.
pub fn run(args: DoctorArgs) -> anyhow::Result<i32> {
    let plan = plan_as_run(args.target, args.ips, args.side);
    if args.apply {
        return run_apply(&args, &plan);
    }
    let r = read_for_shell();
    print!("{}", report(&r, &plan));
    Ok(i32::from(fails(&r, &plan)))
}

/// The readings, with the oom_score_adj fix naming the shell that starts c1m: this process
/// exits at once.
fn read_for_shell() -> Readings {
    Readings {
        pid: None,
        ..limits::read()
    }
}

fn fails(r: &Readings, plan: &Plan) -> bool {
    checks::check(r, plan)
        .iter()
        .any(|c| c.status == Status::Fail)
}

/// `c1m doctor --apply`: raises the short sysctls (root only), then shows the table as it stands
/// afterwards. Exit status 1 when a write failed, when not root and something needed changing,
/// or when a limit still fails the plan.
fn run_apply(args: &DoctorArgs, plan: &Plan) -> anyhow::Result<i32> {
    let root = Path::new(apply::PROC_SYS);
    let r = read_for_shell();
    let checks = checks::check(&r, plan);
    let changes = fixes::changes(&checks, |key| apply::read(root, key).ok());
    // After a blank line, when there are any.
    let notes: String = fixes::left_alone(&checks)
        .iter()
        .map(|line| wrap(line, 0) + "\n")
        .collect();
    let notes = if notes.is_empty() {
        notes
    } else {
        "\n".to_string() + &notes
    };
    if changes.is_empty() {
        print!("{NOTHING_TO_CHANGE}{notes}\n{}", report(&r, plan));
        return Ok(i32::from(fails(&r, plan)));
    }
    // SAFETY: geteuid takes no arguments and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        let mut again = format!(
            "c1m doctor --target {} --side {}",
            plan.conns,
            side_name(plan)
        );
        if let Some(ips) = args.ips {
            again += &format!(" --ips {ips}");
        }
        print!("{}{notes}", not_root(&changes, euid, &again));
        return Ok(1);
    }
    let results = apply::apply(&changes, root);
    let failed = results.iter().any(Result::is_err);
    let after = read_for_shell();
    print!(
        "{}\nThe limits now:\n\n{}",
        applied(&results, &notes),
        report(&after, plan)
    );
    Ok(i32::from(failed || fails(&after, plan)))
}

const NOTHING_TO_CHANGE: &str =
    "Nothing to change: every kernel setting (sysctl) this target needs is already in place.\n";

/// Why nothing was changed, and the commands root would have run, one per line to copy.
fn not_root(changes: &[apply::Change], euid: u32, again: &str) -> String {
    let para = format!(
        "--apply writes kernel settings, which only root may do, and this process runs as uid \
         {euid}: nothing was changed. As root it would have run:"
    );
    let mut out = wrap(&para, 0) + "\n\n";
    for c in changes {
        out += &format!("{}\n", c.command());
    }
    out += "\n";
    out += &wrap(&format!("Run those as root, or `sudo {again} --apply`."), 0);
    out + "\n"
}

/// One line per write (what the value became, or why it could not be set), the rows left
/// alone, and the file that keeps the new values: a write to /proc/sys lasts until reboot.
fn applied(results: &[apply::Applied], notes: &str) -> String {
    let mut out = String::new();
    let mut kept = String::new();
    for result in results {
        let line = match result {
            Ok(c) => {
                kept += &format!("{} = {}\n", c.key, c.to);
                format!("changed {}: {} -> {}", c.key, c.from, c.to)
            }
            Err((c, e)) => format!("could not set {} to {}: {e}", c.key, c.to),
        };
        out += &wrap(&line, 0);
        out.push('\n');
    }
    out += notes;
    if !kept.is_empty() {
        out += "\nThese last for this boot only; to keep them across reboots, as root:\n";
        out += &keep_files(&kept, "");
    }
    out
}

/// The start-up check of `c1m server` and `c1m client`: the rows, or one paragraph per failing
/// limit (value, need, fix) when the run cannot reach its target.
pub fn preflight(plan: &Plan) -> Result<Vec<Check>, String> {
    preflight_on(&limits::read(), plan)
}

/// [`preflight`] on given readings.
pub fn preflight_on(r: &Readings, plan: &Plan) -> Result<Vec<Check>, String> {
    judge(r, plan, "this machine's", "")
}

/// [`preflight`] for another machine (an agent, `who`) on the readings it sent: it holds
/// `share` connections, over worker processes of its own past its descriptor cap.
pub fn preflight_remote(
    r: &Readings,
    share: u64,
    ips: Option<usize>,
    who: &str,
) -> Result<Vec<Check>, String> {
    let cap = r.nofile_hard.map_or(share, crate::sys::conns_under);
    let plan = plan_with_cap(share, ips, TuiMode::Client, cap);
    judge(r, &plan, &format!("{who}'s"), "on that machine, ")
}

/// The checks of `plan` on `r`; `Err` names each failing limit and its fix, for `whose`
/// machine, where the commands are to be run (`on`: "" for this one).
fn judge(r: &Readings, plan: &Plan, whose: &str, on: &str) -> Result<Vec<Check>, String> {
    let checks = checks::check(r, plan);
    let failing: Vec<&Check> = checks.iter().filter(|c| c.status == Status::Fail).collect();
    if failing.is_empty() {
        return Ok(checks);
    }
    let mut msg = format!(
        "{whose} limits are too low for {} connections:\n",
        thousands(plan.conns)
    );
    for c in failing {
        let fix = c.fix.as_deref().unwrap_or("-");
        let para = format!(
            "{} is {}; this run needs {}. {}",
            c.name, c.value, c.target, c.why
        );
        // The fix on lines of its own, so that it can be copied.
        msg += &format!("\n{}\nFix: {}\n", wrap(&para, 0), wrap(fix, 5).trim_start());
    }
    if let Some(note) = nofile_note(r, plan) {
        msg += &format!("\n{}\n", wrap(&note, 0));
    }
    let hint = format!(
        "{on}`c1m doctor --target {} --side {}` shows every limit and the settings that keep \
         the fixes; use --force to start anyway.",
        plan.conns,
        side_name(plan)
    );
    msg += &format!("\n{}", wrap(&hint, 0));
    Err(msg)
}

fn side_name(plan: &Plan) -> &'static str {
    match (plan.accepts(), plan.connects()) {
        (true, true) => "local",
        (false, true) => "client",
        _ => "server",
    }
}

/// The limits table, the connection count the machine allows now, and the persistent settings.
pub fn report(r: &Readings, plan: &Plan) -> String {
    let checks = checks::check(r, plan);
    let mut out = String::new();
    let shape = shape(plan);
    let sources = if plan.connects() {
        format!(" from {} source addresses", plan.sources)
    } else {
        String::new()
    };
    let headline = format!(
        "c1m doctor: {} connections per side, {shape}: {} sockets{sources}.",
        thousands(plan.conns),
        thousands(plan.sockets),
    );
    out += &wrap(&headline, 0);
    out.push('\n');
    out += "Fixes run as root.\n\n";
    out += &table(&checks);

    let not_ok: Vec<&Check> = checks.iter().filter(|c| c.status != Status::Ok).collect();
    if !not_ok.is_empty() {
        out += "\nWhy:\n";
        for c in &not_ok {
            out += &wrap(&format!("{}: {}", c.name, c.why), 2);
            out.push('\n');
        }
    }
    if let Some(note) = nofile_note(r, plan).or_else(|| workers_note(r, plan)) {
        out += &format!("\n{}\n", wrap(&note, 0));
    }
    let (max, bound) = checks::max_connections(r, plan);
    let allow = format!(
        "The current limits allow about {} connections per side (bound by {bound}).",
        thousands(max)
    );
    out += &format!("\n{}\n", wrap(&allow, 0));
    out += &wrap(
        &format!(
            "Memory is projected at {USER_BYTES_PER_CONN} bytes per connection in c1m (measured: \
             about 0.2 KiB per side) and {} KiB per socket in the kernel.",
            checks::KERNEL_BYTES_PER_SOCKET / 1024
        ),
        0,
    );
    out.push('\n');
    out += &persistent(&not_ok);
    out
}

/// Which sides run here, and over how many processes: the headline says what the run will do.
fn shape(plan: &Plan) -> String {
    let split = plan.conns > 0 && plan.sockets_per_process < plan.conns;
    let workers = plan.conns.div_ceil(plan.sockets_per_process.max(1));
    match (side_name(plan), split) {
        ("local", false) => "server and client in one process on this machine".into(),
        ("local", true) => format!(
            "server and client on this machine, each side as {} worker processes",
            thousands(workers)
        ),
        ("client", false) => "the client on this machine".into(),
        ("client", true) => format!(
            "the client on this machine as {} worker processes",
            thousands(workers)
        ),
        (_, false) => "the server on this machine".into(),
        (_, true) => format!(
            "the server on this machine as {} worker processes",
            thousands(workers)
        ),
    }
}

/// The rows in aligned columns; a fix that does not fit beside its row goes under it.
fn table(checks: &[Check]) -> String {
    let head = ["limit", "value", "needs", "status"];
    let cols: Vec<[String; 4]> = checks
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                c.value.clone(),
                c.target.clone(),
                c.status.to_string(),
            ]
        })
        .collect();
    let width = |i: usize| {
        cols.iter()
            .map(|c| c[i].chars().count())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w = [width(0), width(1), width(2), width(3)];
    let line = |c: [&str; 4]| {
        format!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:<w3$}  ",
            c[0],
            c[1],
            c[2],
            c[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )
    };
    let mut out = line(head).trim_end().to_string() + "  fix\n";
    for (c, row) in checks.iter().zip(&cols) {
        let start = line([&row[0], &row[1], &row[2], &row[3]]);
        match &c.fix {
            Some(fix) if start.chars().count() + fix.chars().count() <= WIDTH => {
                out += &format!("{start}{fix}\n");
            }
            Some(fix) => {
                out += &format!("{}\n{}\n", start.trim_end(), wrap(fix, 4));
            }
            None => out += &format!("{}\n", start.trim_end()),
        }
    }
    out
}

/// When the hard RLIMIT_NOFILE is short: it may be fixed for good (a container's runtime sets
/// it), and then the only way to the target is several processes, each under the limit.
fn nofile_note(r: &Readings, plan: &Plan) -> Option<String> {
    let hard = r.nofile_hard?;
    let need = plan.sockets_per_process + FD_MARGIN;
    if hard >= need {
        return None;
    }
    let per_process = hard.saturating_sub(FD_MARGIN).max(1);
    let processes = plan.sockets.div_ceil(per_process);
    Some(format!(
        "The hard RLIMIT_NOFILE of {} caps one process at {} sockets. Only root can raise it; in \
         a container it is fixed when the container starts (docker run --ulimit \
         nofile={need}:{need}). If it cannot be raised, split the run over {} processes of at \
         most {} sockets each: c1m does that itself with --workers (the console and the client \
         choose the count when the target needs it).",
        thousands(hard),
        thousands(per_process),
        thousands(processes),
        thousands(per_process),
    ))
}

/// When the plan is split over worker processes, one line saying how.
fn workers_note(r: &Readings, plan: &Plan) -> Option<String> {
    if plan.sockets_per_process >= plan.conns || plan.conns == 0 {
        return None;
    }
    let workers = plan.conns.div_ceil(plan.sockets_per_process.max(1));
    let hard = r.nofile_hard.map_or("?".into(), thousands);
    Some(format!(
        "One process may hold {} connections here (hard RLIMIT_NOFILE {hard} less {FD_MARGIN}), \
         so c1m runs each side as {} worker processes of about {} connections (--workers); the \
         descriptor rows are per worker.",
        thousands(crate::sys::per_process_conns()),
        thousands(workers),
        thousands(plan.sockets_per_process),
    ))
}

/// The sysctl.d and limits.d files that keep the fixes across reboots and logins, as commands
/// to paste; sysctl first, because pam_limits cannot raise nofile above fs.nr_open.
fn persistent(not_ok: &[&Check]) -> String {
    let mut sysctl = String::new();
    let mut nofile = String::new();
    for c in not_ok {
        match &c.persist {
            Some(Persist::Sysctl { key, value }) => sysctl += &format!("{key} = {value}\n"),
            // root is named apart: pam_limits' `*` does not cover it.
            Some(Persist::Nofile { kind, value }) => {
                nofile += &format!("*    {kind} nofile {value}\nroot {kind} nofile {value}\n");
            }
            None => {}
        }
    }
    if sysctl.is_empty() && nofile.is_empty() {
        return "\nNo setting needs to change for this target.\n".into();
    }
    "\nTo keep these settings across reboots, as root:\n".to_string()
        + &keep_files(&sysctl, &nofile)
}

/// The commands that write `sysctl` (`key = value` lines) to sysctl.d and `nofile` (limits.conf
/// lines) to limits.d; either may be empty.
fn keep_files(sysctl: &str, nofile: &str) -> String {
    let mut out = String::new();
    if !sysctl.is_empty() {
        out +=
            &format!("\ncat > /etc/sysctl.d/90-c1m.conf <<'EOF'\n{sysctl}EOF\nsysctl --system\n");
    }
    if !nofile.is_empty() {
        out += &format!(
            "\ncat > /etc/security/limits.d/90-c1m.conf <<'EOF'\n{nofile}EOF\n\
             # read at login: log in again, then check `ulimit -n` and `ulimit -Hn`\n"
        );
    }
    out
}

/// Wraps `text` at word boundaries to WIDTH columns, every line indented by `indent`.
fn wrap(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut lines: Vec<String> = Vec::new();
    let mut line = pad.clone();
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if len > indent && len + 1 + word.chars().count() > WIDTH {
            lines.push(std::mem::replace(&mut line, pad.clone()));
        }
        if line.chars().count() > indent {
            line.push(' ');
        }
        line += word;
    }
    lines.push(line);
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::limits::TcpSockstat;
    use crate::sys::limits::{CONNTRACK_MAX, NR_OPEN, PORT_RANGE};

    /// This machine's numbers: a container whose hard RLIMIT_NOFILE is 20,000.
    fn container() -> Readings {
        Readings {
            nofile_soft: Some(20_000),
            nofile_hard: Some(20_000),
            file_max: Some(2_466_177),
            file_nr: Some(413),
            nr_open: Some(1_048_576),
            port_range: Some((32768, 60999)),
            somaxconn: Some(4096),
            tcp_max_syn_backlog: Some(2048),
            tcp_mem: Some([287_901, 383_868, 575_802]),
            sockstat: Some(TcpSockstat {
                inuse: 1,
                mem: 2,
                tw: 0,
            }),
            conntrack_count: Some(0),
            conntrack_max: Some(262_144),
            tcp_ehash: Some(262_144),
            mem_available: Some(23 << 30),
            mem_total: Some(24 << 30),
            rss: Some(3 << 20),
            oom_score_adj: Some(0),
            page_size: Some(4096),
            pid: None,
        }
    }

    fn local(target: u64, ips: usize) -> Plan {
        plan_for(target, Some(ips), TuiMode::Local)
    }

    #[test]
    fn plans_count_sockets_per_side() {
        let p = plan_for(1000, None, TuiMode::Server);
        assert_eq!(
            (p.sources, p.sockets, p.sockets_per_process),
            (0, 1000, 1000)
        );
        let p = plan_for(1000, Some(3), TuiMode::Client);
        assert_eq!(
            (p.sources, p.sockets, p.sockets_per_process),
            (3, 1000, 1000)
        );
        let p = plan_for(1000, None, TuiMode::Local);
        assert_eq!(
            (p.sources, p.sockets, p.sockets_per_process),
            (1, 2000, 2000)
        );
        assert_eq!(p.user_bytes_per_conn, USER_BYTES_PER_CONN);
    }

    #[test]
    fn a_million_in_a_container_fails_on_the_hard_limit() {
        let text = report(&container(), &local(1_000_000, 38));
        assert!(text.contains("RLIMIT_NOFILE (hard)"), "{text}");
        assert!(text.contains("FAIL"), "{text}");
        assert!(
            text.contains("ulimit -n 2000100 as root, or `* hard nofile 2000100`"),
            "{text}"
        );
        assert!(
            text.contains("docker run --ulimit nofile=2000100:2000100"),
            "{text}"
        );
        // 2,000,000 sockets at 19,900 per process.
        assert!(text.contains("split the run over 101 processes"), "{text}");
        assert!(
            text.contains(
                "The current limits allow about 9,950 connections per side (bound by \
                 RLIMIT_NOFILE (hard))."
            ),
            "{text}"
        );
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "too wide: {line:?}");
        }
    }

    #[test]
    fn a_failing_plan_gets_the_files_that_keep_the_fixes() {
        let text = report(&container(), &local(1_000_000, 38));
        let sysctl = "cat > /etc/sysctl.d/90-c1m.conf <<'EOF'\n\
                      fs.nr_open = 2000100\n\
                      net.ipv4.tcp_max_syn_backlog = 4096\n\
                      net.ipv4.tcp_child_ehash_entries = 2097152\n\
                      net.netfilter.nf_conntrack_max = 1000000\n\
                      EOF\n\
                      sysctl --system\n";
        assert!(text.contains(sysctl), "{text}");
        let limits = "cat > /etc/security/limits.d/90-c1m.conf <<'EOF'\n\
                      *    soft nofile 2000100\n\
                      root soft nofile 2000100\n\
                      *    hard nofile 2000100\n\
                      root hard nofile 2000100\n\
                      EOF\n";
        assert!(text.contains(limits), "{text}");
        assert!(text.contains("log in again"), "{text}");
    }

    #[test]
    fn a_passing_plan_changes_nothing() {
        let text = report(&container(), &plan_for(5_000, Some(1), TuiMode::Client));
        assert!(!text.contains("sysctl.d"), "{text}");
        assert!(!text.contains("limits.d"), "{text}");
        assert!(!text.contains("FAIL"), "{text}");
        assert!(text.contains("No setting needs to change"), "{text}");
    }

    #[test]
    fn long_fixes_wrap_under_their_row() {
        let text = report(&container(), &local(1_000_000, 38));
        let at = text
            .lines()
            .position(|l| l.starts_with("RLIMIT_NOFILE (hard)"))
            .unwrap();
        let next = text.lines().nth(at + 1).unwrap();
        assert!(next.starts_with("    ulimit -n 2000100 as root"), "{text}");
        // A short fix stays on its row.
        assert!(
            text.lines()
                .any(|l| l.starts_with("fs.nr_open") && l.ends_with("sysctl -w fs.nr_open=2000100")),
            "{text}"
        );
    }

    #[test]
    fn preflight_names_the_limit_its_value_need_and_fix() {
        let err =
            preflight_on(&container(), &plan_for(100_000, Some(4), TuiMode::Client)).unwrap_err();
        let flat = err.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains("RLIMIT_NOFILE (hard) is 20,000; this run needs 100,100."),
            "{err}"
        );
        assert!(err.contains("\nFix: ulimit -n 100100 as root"), "{err}");
        assert!(flat.contains("split the run over 6 processes"), "{err}");
        assert!(
            flat.contains("c1m doctor --target 100000 --side client"),
            "{err}"
        );
        assert!(flat.ends_with("use --force to start anyway."), "{err}");
        // Warnings alone let the run start.
        let ok = preflight_on(&container(), &plan_for(10_000, Some(1), TuiMode::Client)).unwrap();
        assert!(ok.iter().all(|c| c.status != Status::Fail));
    }

    fn change(key: &'static str, from: &str, to: &str) -> apply::Change {
        apply::Change {
            key,
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn without_root_apply_lists_the_commands_it_would_run() {
        let changes = [
            change(PORT_RANGE, "32768 60999", "1024 65535"),
            change(NR_OPEN, "1048576", "2000100"),
        ];
        let text = not_root(&changes, 65534, "c1m doctor --target 1000000 --side local");
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains("only root may do"), "{text}");
        assert!(flat.contains("uid 65534: nothing was changed."), "{text}");
        assert!(
            text.contains(
                "\nsysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"\n\
                 sysctl -w fs.nr_open=2000100\n"
            ),
            "{text}"
        );
        assert!(
            flat.contains("`sudo c1m doctor --target 1000000 --side local --apply`"),
            "{text}"
        );
    }

    #[test]
    fn apply_reports_each_write_and_keeps_only_those_that_took() {
        let results = [
            Ok(change(NR_OPEN, "1048576", "2000100")),
            Err((
                change(CONNTRACK_MAX, "262144", "1000000"),
                std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            )),
        ];
        let text = applied(&results, "left alone oom_score_adj: because.\n");
        assert!(
            text.starts_with(
                "changed fs.nr_open: 1048576 -> 2000100\n\
                 could not set net.netfilter.nf_conntrack_max to 1000000: permission denied\n\
                 left alone oom_score_adj: because.\n"
            ),
            "{text}"
        );
        assert!(text.contains("for this boot only"), "{text}");
        assert!(
            text.contains(
                "cat > /etc/sysctl.d/90-c1m.conf <<'EOF'\nfs.nr_open = 2000100\nEOF\n\
                 sysctl --system\n"
            ),
            "{text}"
        );
        assert!(!text.contains("limits.d"), "{text}");
        // Nothing took: nothing to keep.
        let text = applied(&results[1..], "");
        assert!(!text.contains("sysctl.d"), "{text}");
    }

    #[test]
    fn wrap_keeps_words_whole() {
        let text = "word ".repeat(60);
        let wrapped = wrap(&text, 4);
        assert!(
            wrapped
                .lines()
                .all(|l| l.starts_with("    word") && l.len() <= WIDTH)
        );
        assert_eq!(wrapped.split_whitespace().count(), 60);
    }
}
