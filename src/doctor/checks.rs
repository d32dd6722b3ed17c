//! Each limit judged against a plan: one [`Check`] row with its value, what the plan needs, a
//! status, the exact command that lifts it and the setting that keeps the fix. Pure functions of
//! [`Readings`] and a [`Plan`], so every judgement is tested on fixed numbers.

use crate::fmt::{int as thousands, size};
use crate::sys::FD_MARGIN;
use crate::sys::limits::*;
use std::fmt;

/// How a limit compares with what the plan needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        })
    }
}

/// One row of the limits table (the TUI pane, `c1m doctor`, the start-up check).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Check {
    /// Short name, e.g. "fs.file-max" or "RLIMIT_NOFILE (soft)".
    pub name: String,
    /// The current value, as shown to the user.
    pub value: String,
    /// What the plan needs, as shown to the user.
    pub target: String,
    pub status: Status,
    /// The exact command that fixes it, when status is not ok.
    pub fix: Option<String>,
    /// One sentence on why this limit matters.
    pub why: &'static str,
    /// The setting that keeps the fix across reboots and logins, when status is not ok and a
    /// config file can hold it.
    pub persist: Option<Persist>,
}

/// A line for one of the files that make a fix permanent (`c1m doctor` writes them out).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Persist {
    /// `key = value` in /etc/sysctl.d/.
    Sysctl { key: &'static str, value: String },
    /// A `nofile` line in /etc/security/limits.d/; `kind` is "soft" or "hard".
    Nofile { kind: &'static str, value: u64 },
}

/// What a machine is asked to hold: the input to every check.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Connections per side.
    pub conns: u64,
    /// Client source addresses.
    pub sources: usize,
    /// Sockets this machine holds: `conns` for one side, `2 × conns` for both on one machine.
    pub sockets: u64,
    /// Sockets one process holds (for RLIMIT_NOFILE).
    pub sockets_per_process: u64,
    /// User-space bytes per connection, for the memory projection.
    pub user_bytes_per_conn: f64,
}

impl Plan {
    /// The same plan with each side split over `workers` processes (0 = none): the
    /// descriptor limits then apply to one worker's share.
    pub fn split(self, workers: usize) -> Plan {
        if workers == 0 {
            return self;
        }
        Plan {
            sockets_per_process: self.conns.div_ceil(workers as u64),
            ..self
        }
    }

    /// A client runs here: only a client spreads over source addresses.
    pub fn connects(&self) -> bool {
        self.sources > 0
    }

    /// A server runs here: no client at all, or more sockets than one side's connections.
    pub fn accepts(&self) -> bool {
        !self.connects() || self.sockets > self.conns
    }
}

/// Files the rest of the machine may open during a run, on top of what is open now.
pub const SYSTEM_FD_MARGIN: u64 = 10_000;
/// Kernel memory per idle TCP socket (socket, inode, file, epoll item): README measures
/// 8.9–9.8 KiB of slab for the two ends of a connection.
pub const KERNEL_BYTES_PER_SOCKET: u64 = 5 * 1024;
/// Accept and SYN queues shorter than this drop handshakes during a fast ramp.
pub const MIN_BACKLOG: u64 = 4096;
/// From this many connections on, losing the process to the OOM killer is worth a warning.
pub const OOM_PROTECT_FROM: u64 = 100_000;
/// Ports per source address with the widest usual range, 1024–65535.
const WIDEST_PORTS: u64 = 65_535 - 1024 + 1;

impl Check {
    fn new(name: &str, why: &'static str, value: String, target: String) -> Check {
        Check {
            name: name.to_string(),
            value,
            target,
            status: Status::Ok,
            fix: None,
            why,
            persist: None,
        }
    }

    fn unknown(name: &str, why: &'static str, target: String) -> Check {
        Check {
            status: Status::Warn,
            ..Check::new(name, why, "unknown".into(), target)
        }
    }

    /// Marks the row `status` with its fix when `short` holds.
    fn short_if(self, short: bool, status: Status, fix: String, persist: Option<Persist>) -> Check {
        if !short {
            return self;
        }
        Check {
            status,
            fix: Some(fix),
            persist,
            ..self
        }
    }
}

fn sysctl_fix(key: &'static str, value: String) -> (String, Option<Persist>) {
    let shown = if value.contains(' ') {
        format!("\"{value}\"")
    } else {
        value.clone()
    };
    (
        format!("sysctl -w {key}={shown}"),
        Some(Persist::Sysctl { key, value }),
    )
}

/// Judges every limit against the plan, one row each, in the order a reader fixes them.
pub fn check(r: &Readings, plan: &Plan) -> Vec<Check> {
    let mut out = vec![
        nofile_soft(r, plan),
        nofile_hard(r, plan),
        file_max(r, plan),
        nr_open(r, plan),
    ];
    if plan.connects() {
        out.push(port_range(r, plan));
    }
    if plan.accepts() {
        out.push(backlog(SOMAXCONN, r.somaxconn, SOMAXCONN_WHY));
        out.push(backlog(SYN_BACKLOG, r.tcp_max_syn_backlog, SYN_BACKLOG_WHY));
    }
    out.extend([
        tcp_mem(r, plan),
        ehash(r, plan),
        conntrack(r, plan),
        memory(r, plan),
        rss(r),
        oom(r, plan),
    ]);
    out
}

fn nofile_need(plan: &Plan) -> u64 {
    plan.sockets_per_process + FD_MARGIN
}

fn nofile_soft(r: &Readings, plan: &Plan) -> Check {
    const WHY: &str = "Every connection is a file descriptor; c1m raises its soft limit itself, \
                       up to the hard limit.";
    let need = nofile_need(plan);
    let Some(soft) = r.nofile_soft else {
        return Check::unknown(NOFILE_SOFT, WHY, thousands(need));
    };
    // A warning only: the hard limit decides whether c1m can raise it (that row fails).
    Check::new(NOFILE_SOFT, WHY, thousands(soft), thousands(need)).short_if(
        soft < need,
        Status::Warn,
        format!("ulimit -n {need}"),
        Some(Persist::Nofile {
            kind: "soft",
            value: need,
        }),
    )
}

fn nofile_hard(r: &Readings, plan: &Plan) -> Check {
    const WHY: &str = "No process may raise its soft limit above the hard one; only root lifts \
                       it, and in a container only the runtime that starts it.";
    let need = nofile_need(plan);
    let Some(hard) = r.nofile_hard else {
        return Check::unknown(NOFILE_HARD, WHY, thousands(need));
    };
    Check::new(NOFILE_HARD, WHY, thousands(hard), thousands(need)).short_if(
        hard < need,
        Status::Fail,
        format!(
            "ulimit -n {need} as root, or `* hard nofile {need}` in \
             /etc/security/limits.d/90-c1m.conf and log in again"
        ),
        Some(Persist::Nofile {
            kind: "hard",
            value: need,
        }),
    )
}

fn file_max_need(r: &Readings, plan: &Plan) -> u64 {
    plan.sockets + r.file_nr.unwrap_or(0) + SYSTEM_FD_MARGIN
}

fn file_max(r: &Readings, plan: &Plan) -> Check {
    const WHY: &str = "It caps open files on the whole machine (in use now + these sockets + a \
                       margin); past it every accept and connect fails with ENFILE.";
    let need = file_max_need(r, plan);
    let Some(max) = r.file_max else {
        return Check::unknown(FILE_MAX, WHY, thousands(need));
    };
    let (fix, persist) = sysctl_fix(FILE_MAX, need.to_string());
    Check::new(FILE_MAX, WHY, thousands(max), thousands(need)).short_if(
        max < need,
        Status::Fail,
        fix,
        persist,
    )
}

fn nr_open(r: &Readings, plan: &Plan) -> Check {
    const WHY: &str = "No process's RLIMIT_NOFILE can be set above it, not even by root.";
    let need = nofile_need(plan);
    let Some(nr_open) = r.nr_open else {
        return Check::unknown(NR_OPEN, WHY, thousands(need));
    };
    let (fix, persist) = sysctl_fix(NR_OPEN, need.to_string());
    Check::new(NR_OPEN, WHY, thousands(nr_open), thousands(need)).short_if(
        nr_open < need,
        Status::Fail,
        fix,
        persist,
    )
}

fn ports(range: (u16, u16)) -> u64 {
    u64::from(range.1.saturating_sub(range.0)) + u64::from(range.1 >= range.0)
}

fn port_range(r: &Readings, plan: &Plan) -> Check {
    const WHY: &str = "A source address has one local port per connection to the server, so \
                       ports × source addresses caps the client's connections (EADDRNOTAVAIL).";
    let sources = plan.sources as u64;
    let Some(range) = r.port_range else {
        return Check::unknown(PORT_RANGE, WHY, thousands(plan.conns));
    };
    let ports = ports(range);
    let value = format!("{} × {} IPs", thousands(ports), sources);
    // Widen the range first (no set-up on the network side), then add addresses.
    let (fix, persist) = if ports >= WIDEST_PORTS {
        (format!("--ips {}", plan.conns.div_ceil(ports.max(1))), None)
    } else {
        let (widen, persist) = sysctl_fix(PORT_RANGE, "1024 65535".into());
        let fix = if WIDEST_PORTS * sources >= plan.conns {
            let ips = plan.conns.div_ceil(ports.max(1));
            format!("{widen}, or --ips {ips}")
        } else {
            let ips = plan.conns.div_ceil(WIDEST_PORTS);
            format!("{widen} and --ips {ips}")
        };
        (fix, persist)
    };
    Check::new(PORT_RANGE, WHY, value, thousands(plan.conns)).short_if(
        ports * sources < plan.conns,
        Status::Fail,
        fix,
        persist,
    )
}

const SOMAXCONN_WHY: &str = "It caps the accept queue (c1m asks for 65,535); a short queue \
                             drops handshakes when connections arrive faster than accepted.";
const SYN_BACKLOG_WHY: &str = "Half-open connections beyond it are dropped or answered with SYN \
                               cookies during a fast ramp.";

fn backlog(name: &'static str, value: Option<u64>, why: &'static str) -> Check {
    let Some(v) = value else {
        return Check::unknown(name, why, thousands(MIN_BACKLOG));
    };
    let (fix, persist) = sysctl_fix(name, MIN_BACKLOG.to_string());
    Check::new(name, why, thousands(v), thousands(MIN_BACKLOG)).short_if(
        v < MIN_BACKLOG,
        Status::Warn,
        fix,
        persist,
    )
}

/// Pages TCP may need: what it holds now, plus one page per four sockets for a broadcast in
/// flight (idle sockets hold no buffer: 19,000 connections held 55 pages between broadcasts).
fn tcp_mem_need(r: &Readings, plan: &Plan) -> u64 {
    r.sockstat.map_or(0, |s| s.mem) + plan.sockets / 4
}

fn tcp_mem(r: &Readings, plan: &Plan) -> Check {
    const WHY: &str = "Above its third value (pages, all TCP sockets together) the kernel \
                       refuses buffer memory and broadcasts stall; the need is what TCP holds now \
                       plus a page per 4 sockets.";
    let need = tcp_mem_need(r, plan);
    let target = format!("{} pages", thousands(need));
    let Some([low, pressure, high]) = r.tcp_mem else {
        return Check::unknown(TCP_MEM, WHY, target);
    };
    // Keep low ≤ pressure ≤ high, in about the kernel's own proportions, never lowering one.
    let raised = format!(
        "{} {} {need}",
        low.max(need / 2),
        pressure.max(need / 3 * 2)
    );
    let (fix, persist) = sysctl_fix(TCP_MEM, raised);
    Check::new(TCP_MEM, WHY, format!("{} pages", thousands(high)), target).short_if(
        high < need,
        Status::Warn,
        fix,
        persist,
    )
}

/// Buckets that keep the chains short for `sockets`: the next power of two.
fn ehash_need(plan: &Plan) -> u64 {
    plan.sockets.max(1).next_power_of_two()
}

fn ehash(r: &Readings, plan: &Plan) -> Check {
    const WHY: &str = "Every packet finds its socket in this hash table, sized at boot; with more \
                       sockets than buckets each lookup walks a chain. Measured here: 2,000,000 \
                       sockets in 262,144 buckets made lookups 18 % of the CPU and a broadcast \
                       to 1,000,000 take 11 s instead of 7.6 s. The child setting sizes the \
                       table of network namespaces created after it (`unshare -n`).";
    let need = ehash_need(plan);
    let Some(buckets) = r.tcp_ehash else {
        // Not published before Linux 6.1: nothing to judge, and nothing to fix here.
        return Check::new(EHASH, WHY, "unknown".into(), String::new());
    };
    // A performance warning, never a failure: long chains slow a run, they do not stop it.
    let (_, persist) = sysctl_fix(CHILD_EHASH, need.to_string());
    Check::new(EHASH, WHY, thousands(buckets), thousands(need)).short_if(
        buckets * 2 < plan.sockets,
        Status::Warn,
        format!(
            "boot with thash_entries={need}, or `sysctl -w {CHILD_EHASH}={need}` and run c1m in \
             a new network namespace: unshare -n sh -c 'ip link set lo up; c1m …'"
        ),
        persist,
    )
}

/// One conntrack entry per connection, even with both ends on this machine.
fn conntrack_need(r: &Readings, plan: &Plan) -> u64 {
    r.conntrack_count.unwrap_or(0) + plan.conns
}

fn conntrack(r: &Readings, plan: &Plan) -> Check {
    const WHY: &str = "When the connection-tracking table is full the kernel drops new \
                       connections' packets (dmesg: \"nf_conntrack: table full\").";
    let Some(max) = r.conntrack_max else {
        return Check::new(CONNTRACK_MAX, WHY, "not loaded".into(), String::new());
    };
    let need = conntrack_need(r, plan);
    let (fix, persist) = sysctl_fix(CONNTRACK_MAX, need.to_string());
    Check::new(CONNTRACK_MAX, WHY, thousands(max), thousands(need)).short_if(
        max < need,
        Status::Fail,
        fix,
        persist,
    )
}

fn bytes_per_socket(plan: &Plan) -> f64 {
    plan.user_bytes_per_conn + KERNEL_BYTES_PER_SOCKET as f64
}

fn memory(r: &Readings, plan: &Plan) -> Check {
    const WHY: &str = "Projected as sockets × (c1m's bytes per connection + 5 KiB of kernel \
                       memory per socket); past MemAvailable the OOM killer ends the run.";
    let need = (plan.sockets as f64 * bytes_per_socket(plan)) as u64;
    let Some(avail) = r.mem_available else {
        return Check::unknown(MEM_AVAILABLE, WHY, size(need));
    };
    let status = if need > avail {
        Status::Fail
    } else {
        Status::Warn
    };
    Check::new(MEM_AVAILABLE, WHY, size(avail), size(need)).short_if(
        need as f64 > avail as f64 * 0.8,
        status,
        "free memory, or use a bigger machine, or fewer connections per machine".into(),
        None,
    )
}

fn rss(r: &Readings) -> Check {
    const WHY: &str = "What this process holds in memory now, for comparison.";
    let value = r.rss.map_or("unknown".into(), size);
    Check::new(RSS, WHY, value, String::new())
}

fn oom(r: &Readings, plan: &Plan) -> Check {
    const WHY: &str = "Holding this many connections makes c1m the largest process, the OOM \
                       killer's first choice (the seed lost its server that way); -1000 exempts \
                       it, and a shell's setting passes to the programs it starts.";
    let matters = plan.conns >= OOM_PROTECT_FROM;
    let target = if matters { "-1000" } else { "any" }.to_string();
    let Some(adj) = r.oom_score_adj else {
        return Check::unknown(OOM_SCORE_ADJ, WHY, target);
    };
    let pid = r.pid.map_or("$$".into(), |p| p.to_string());
    Check::new(OOM_SCORE_ADJ, WHY, adj.to_string(), target).short_if(
        matters && adj > -1000,
        Status::Warn,
        format!("echo -1000 > /proc/{pid}/oom_score_adj"),
        None,
    )
}

/// The largest connection count per side that the current limits allow for this plan's shape
/// (sockets and sockets per process per connection, source addresses), and the limit that
/// binds it. Unreadable limits bind nothing; the soft RLIMIT_NOFILE binds nothing because c1m
/// raises it.
pub fn max_connections(r: &Readings, plan: &Plan) -> (u64, String) {
    let conns = plan.conns.max(1) as f64;
    let per_conn = |sockets: u64| sockets as f64 / conns;
    // Connections that fit in `room` when each takes `per` of it.
    let fit = |room: u64, per: f64| {
        if per > 0.0 {
            (room as f64 / per).floor() as u64
        } else {
            u64::MAX
        }
    };
    let per_process = per_conn(plan.sockets_per_process);
    let per_machine = per_conn(plan.sockets);
    let mut bounds: Vec<(u64, &str)> = Vec::new();
    if let Some(hard) = r.nofile_hard {
        bounds.push((
            fit(hard.saturating_sub(FD_MARGIN), per_process),
            NOFILE_HARD,
        ));
    }
    if let Some(max) = r.file_max {
        let room = max.saturating_sub(r.file_nr.unwrap_or(0) + SYSTEM_FD_MARGIN);
        bounds.push((fit(room, per_machine), FILE_MAX));
    }
    if let Some(nr_open) = r.nr_open {
        bounds.push((fit(nr_open.saturating_sub(FD_MARGIN), per_process), NR_OPEN));
    }
    if let (true, Some(range)) = (plan.connects(), r.port_range) {
        bounds.push((ports(range) * plan.sources as u64, PORT_RANGE));
    }
    if let Some([_, _, high]) = r.tcp_mem {
        let room = high.saturating_sub(r.sockstat.map_or(0, |s| s.mem)) * 4;
        bounds.push((fit(room, per_machine), TCP_MEM));
    }
    if let Some(max) = r.conntrack_max {
        bounds.push((
            max.saturating_sub(r.conntrack_count.unwrap_or(0)),
            CONNTRACK_MAX,
        ));
    }
    if let Some(avail) = r.mem_available {
        let sockets = (avail as f64 / bytes_per_socket(plan)) as u64;
        bounds.push((fit(sockets, per_machine), MEM_AVAILABLE));
    }
    bounds
        .into_iter()
        .min_by_key(|b| b.0)
        .map_or((u64::MAX, "no readable limit".into()), |(n, name)| {
            (n, name.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100,000 connections per side, both sides here in one process, 4 source addresses.
    fn plan() -> Plan {
        Plan {
            conns: 100_000,
            sources: 4,
            sockets: 200_000,
            sockets_per_process: 200_000,
            user_bytes_per_conn: 256.0,
        }
    }

    /// A machine tuned as the seed's was: every check passes `plan()`.
    fn roomy() -> Readings {
        Readings {
            nofile_soft: Some(2_000_000),
            nofile_hard: Some(2_000_000),
            file_max: Some(2_000_000),
            file_nr: Some(1_000),
            nr_open: Some(2_000_000),
            port_range: Some((1024, 65535)),
            somaxconn: Some(4096),
            tcp_max_syn_backlog: Some(8192),
            tcp_mem: Some([786_432, 2_097_152, 3_145_728]),
            sockstat: Some(TcpSockstat {
                inuse: 10,
                mem: 2,
                tw: 0,
            }),
            conntrack_count: Some(100),
            conntrack_max: Some(1_000_000),
            tcp_ehash: Some(2_097_152),
            mem_available: Some(30 << 30),
            mem_total: Some(32 << 30),
            rss: Some(4 << 20),
            oom_score_adj: Some(-1000),
            page_size: Some(4096),
            pid: Some(42),
        }
    }

    fn row(r: &Readings, plan: &Plan, name: &str) -> Check {
        check(r, plan)
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no row {name}"))
    }

    fn fix(c: &Check) -> &str {
        c.fix.as_deref().unwrap_or("")
    }

    #[test]
    fn a_tuned_machine_passes_in_order() {
        let rows = check(&roomy(), &plan());
        let names: Vec<&str> = rows.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                NOFILE_SOFT,
                NOFILE_HARD,
                FILE_MAX,
                NR_OPEN,
                PORT_RANGE,
                SOMAXCONN,
                SYN_BACKLOG,
                TCP_MEM,
                EHASH,
                CONNTRACK_MAX,
                MEM_AVAILABLE,
                RSS,
                OOM_SCORE_ADJ
            ]
        );
        for c in &rows {
            assert_eq!(
                (c.status, &c.fix, &c.persist),
                (Status::Ok, &None, &None),
                "{c:?}"
            );
        }
    }

    #[test]
    fn a_small_connection_hash_warns_with_the_namespace_fix() {
        let r = Readings {
            tcp_ehash: Some(262_144),
            ..roomy()
        };
        let million = Plan {
            conns: 1_000_000,
            sources: 89,
            sockets: 2_000_000,
            sockets_per_process: 19_608,
            ..plan()
        };
        let c = row(&r, &million, EHASH);
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert_eq!(c.target, "2,097,152");
        assert!(fix(&c).contains("sysctl -w net.ipv4.tcp_child_ehash_entries=2097152"));
        assert!(fix(&c).contains("unshare -n"));
        // Chains of two are fine.
        let r = Readings {
            tcp_ehash: Some(1_048_576),
            ..roomy()
        };
        assert_eq!(row(&r, &million, EHASH).status, Status::Ok);
    }

    #[test]
    fn unreadable_values_warn_as_unknown() {
        for c in check(&Readings::default(), &plan()) {
            match c.name.as_str() {
                // Informative, or absent when not loaded.
                RSS | CONNTRACK_MAX | EHASH => assert_eq!(c.status, Status::Ok, "{c:?}"),
                _ => assert_eq!(
                    (c.status, c.value.as_str()),
                    (Status::Warn, "unknown"),
                    "{c:?}"
                ),
            }
        }
    }

    #[test]
    fn each_side_gets_its_own_rows() {
        let server = Plan {
            sources: 0,
            sockets: 100_000,
            sockets_per_process: 100_000,
            ..plan()
        };
        let client = Plan {
            sockets: 100_000,
            sockets_per_process: 100_000,
            ..plan()
        };
        let names =
            |p: &Plan| -> Vec<String> { check(&roomy(), p).into_iter().map(|c| c.name).collect() };
        assert!(!names(&server).contains(&PORT_RANGE.to_string()));
        assert!(names(&server).contains(&SOMAXCONN.to_string()));
        assert!(names(&client).contains(&PORT_RANGE.to_string()));
        assert!(!names(&client).contains(&SYN_BACKLOG.to_string()));
    }

    #[test]
    fn soft_nofile_below_the_hard_limit_only_warns() {
        let r = Readings {
            nofile_soft: Some(1024),
            ..roomy()
        };
        let c = row(&r, &plan(), NOFILE_SOFT);
        assert_eq!((c.status, fix(&c)), (Status::Warn, "ulimit -n 200100"));
        assert_eq!(
            c.persist,
            Some(Persist::Nofile {
                kind: "soft",
                value: 200_100
            })
        );
        assert_eq!(row(&r, &plan(), NOFILE_HARD).status, Status::Ok);
    }

    #[test]
    fn hard_nofile_below_the_need_fails() {
        let r = Readings {
            nofile_soft: Some(20_000),
            nofile_hard: Some(20_000),
            ..roomy()
        };
        let c = row(&r, &plan(), NOFILE_HARD);
        assert_eq!(
            (c.status, c.value.as_str(), c.target.as_str()),
            (Status::Fail, "20,000", "200,100")
        );
        assert_eq!(
            fix(&c),
            "ulimit -n 200100 as root, or `* hard nofile 200100` in \
             /etc/security/limits.d/90-c1m.conf and log in again"
        );
        assert_eq!(
            c.persist,
            Some(Persist::Nofile {
                kind: "hard",
                value: 200_100
            })
        );
    }

    #[test]
    fn file_max_counts_open_files_and_a_margin() {
        // 200,000 sockets + 1,000 open + 10,000 margin.
        let at = |max| {
            row(
                &Readings {
                    file_max: Some(max),
                    ..roomy()
                },
                &plan(),
                FILE_MAX,
            )
        };
        assert_eq!(at(211_000).status, Status::Ok);
        let c = at(210_999);
        assert_eq!(
            (c.status, fix(&c)),
            (Status::Fail, "sysctl -w fs.file-max=211000")
        );
        assert_eq!(
            c.persist,
            Some(Persist::Sysctl {
                key: FILE_MAX,
                value: "211000".into()
            })
        );
        assert_eq!(at(i64::MAX as u64).value, "max");
    }

    #[test]
    fn nr_open_must_hold_one_process() {
        let at = |v| {
            row(
                &Readings {
                    nr_open: Some(v),
                    ..roomy()
                },
                &plan(),
                NR_OPEN,
            )
        };
        assert_eq!(at(200_100).status, Status::Ok);
        let c = at(200_099);
        assert_eq!(
            (c.status, fix(&c)),
            (Status::Fail, "sysctl -w fs.nr_open=200100")
        );
    }

    #[test]
    fn ports_times_sources_must_cover_the_connections() {
        let at = |range, sources| {
            let p = Plan { sources, ..plan() };
            row(
                &Readings {
                    port_range: Some(range),
                    ..roomy()
                },
                &p,
                PORT_RANGE,
            )
        };
        // 28,232 ports × 4 = 112,928 ≥ 100,000.
        assert_eq!(at((32768, 60999), 4).status, Status::Ok);
        // × 3 = 84,696: widening alone would do, or 4 addresses at the current range.
        let c = at((32768, 60999), 3);
        assert_eq!(c.value, "28,232 × 3 IPs");
        assert_eq!(
            (c.status, fix(&c)),
            (
                Status::Fail,
                "sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\", or --ips 4"
            )
        );
        assert_eq!(
            c.persist,
            Some(Persist::Sysctl {
                key: PORT_RANGE,
                value: "1024 65535".into()
            })
        );
        // One address cannot hold 100,000 even widened: both.
        let c = at((32768, 60999), 1);
        assert_eq!(
            fix(&c),
            "sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\" and --ips 2"
        );
        // Already widest: only more addresses help, and there is nothing to persist.
        let c = at((1024, 65535), 1);
        assert_eq!(
            (c.status, fix(&c), &c.persist),
            (Status::Fail, "--ips 2", &None)
        );
    }

    #[test]
    fn short_backlogs_warn() {
        let r = Readings {
            somaxconn: Some(128),
            tcp_max_syn_backlog: Some(2048),
            ..roomy()
        };
        let c = row(&r, &plan(), SOMAXCONN);
        assert_eq!(
            (c.status, fix(&c)),
            (Status::Warn, "sysctl -w net.core.somaxconn=4096")
        );
        let c = row(&r, &plan(), SYN_BACKLOG);
        assert_eq!(
            (c.status, fix(&c)),
            (Status::Warn, "sysctl -w net.ipv4.tcp_max_syn_backlog=4096")
        );
    }

    #[test]
    fn tcp_mem_high_must_cover_a_page_per_four_sockets() {
        // need = 2 pages now + 200,000 / 4.
        let at = |mem| {
            row(
                &Readings {
                    tcp_mem: Some(mem),
                    ..roomy()
                },
                &plan(),
                TCP_MEM,
            )
        };
        assert_eq!(at([10, 20, 50_002]).status, Status::Ok);
        let c = at([10, 40_000, 50_001]);
        assert_eq!(c.target, "50,002 pages");
        assert_eq!(
            (c.status, fix(&c)),
            (
                Status::Warn,
                "sysctl -w net.ipv4.tcp_mem=\"25001 40000 50002\""
            )
        );
    }

    #[test]
    fn conntrack_counts_one_entry_per_connection() {
        let at = |max| {
            row(
                &Readings {
                    conntrack_max: Some(max),
                    ..roomy()
                },
                &plan(),
                CONNTRACK_MAX,
            )
        };
        assert_eq!(at(100_100).status, Status::Ok);
        let c = at(100_099);
        assert_eq!(
            (c.status, fix(&c)),
            (
                Status::Fail,
                "sysctl -w net.netfilter.nf_conntrack_max=100100"
            )
        );
        let c = row(
            &Readings {
                conntrack_max: None,
                ..roomy()
            },
            &plan(),
            CONNTRACK_MAX,
        );
        assert_eq!((c.status, c.value.as_str()), (Status::Ok, "not loaded"));
    }

    #[test]
    fn memory_warns_above_80_percent_and_fails_above_available() {
        // 200,000 × (256 + 5,120) bytes = 1,075,200,000.
        let need = 1_075_200_000u64;
        let at = |avail| {
            row(
                &Readings {
                    mem_available: Some(avail),
                    ..roomy()
                },
                &plan(),
                MEM_AVAILABLE,
            )
        };
        assert_eq!(at(need * 2).status, Status::Ok);
        assert_eq!(at(need).status, Status::Warn);
        let c = at(need - 1);
        assert_eq!((c.status, c.target.as_str()), (Status::Fail, "1.0 GiB"));
        assert!(fix(&c).contains("bigger machine"), "{c:?}");
    }

    #[test]
    fn oom_score_adj_matters_from_100k() {
        let r = Readings {
            oom_score_adj: Some(0),
            ..roomy()
        };
        let c = row(&r, &plan(), OOM_SCORE_ADJ);
        assert_eq!(
            (c.status, fix(&c)),
            (Status::Warn, "echo -1000 > /proc/42/oom_score_adj")
        );
        let shell = Readings {
            pid: None,
            ..r.clone()
        };
        assert_eq!(
            fix(&row(&shell, &plan(), OOM_SCORE_ADJ)),
            "echo -1000 > /proc/$$/oom_score_adj"
        );
        let small = Plan {
            conns: 99_999,
            ..plan()
        };
        assert_eq!(row(&r, &small, OOM_SCORE_ADJ).status, Status::Ok);
        assert_eq!(row(&r, &plan(), RSS).status, Status::Ok);
    }

    #[test]
    fn max_connections_names_the_binding_limit() {
        // Both sides in one process: 2 descriptors per connection.
        let r = Readings {
            nofile_hard: Some(20_000),
            ..roomy()
        };
        assert_eq!(
            max_connections(&r, &plan()),
            (9_950, NOFILE_HARD.to_string())
        );
        let r = Readings {
            conntrack_max: Some(5_100),
            ..roomy()
        };
        assert_eq!(
            max_connections(&r, &plan()),
            (5_000, CONNTRACK_MAX.to_string())
        );
        let r = Readings {
            port_range: Some((60000, 60999)),
            ..roomy()
        };
        assert_eq!(
            max_connections(&r, &plan()),
            (4_000, PORT_RANGE.to_string())
        );
        // 1 GiB over 2 sockets of 5,376 bytes per connection.
        let r = Readings {
            mem_available: Some(1 << 30),
            ..roomy()
        };
        assert_eq!(
            max_connections(&r, &plan()),
            (99_864, MEM_AVAILABLE.to_string())
        );
        assert_eq!(max_connections(&Readings::default(), &plan()).0, u64::MAX);
    }
}
