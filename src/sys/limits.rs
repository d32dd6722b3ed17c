//! Kernel and process limits that decide how many connections a machine can hold, read
//! through procfs into [`Readings`]. Judging them against a target is `doctor::checks`; this
//! module only reads, so it imports nothing else from the crate.

use procfs::Current;

/// TCP's line of /proc/net/sockstat (IPv4 sockets; `mem` counts IPv6 ones too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TcpSockstat {
    pub inuse: u64,
    /// Pages of socket buffer memory held by all TCP sockets, compared with `tcp_mem`.
    pub mem: u64,
    pub tw: u64,
}

/// Every raw value the checks use. `None` means it could not be read; `conntrack_max` is also
/// `None` when nf_conntrack is not loaded.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Readings {
    pub nofile_soft: Option<u64>,
    pub nofile_hard: Option<u64>,
    pub file_max: Option<u64>,
    /// Allocated file handles, the first field of fs.file-nr.
    pub file_nr: Option<u64>,
    pub nr_open: Option<u64>,
    /// net.ipv4.ip_local_port_range, inclusive.
    pub port_range: Option<(u16, u16)>,
    pub somaxconn: Option<u64>,
    pub tcp_max_syn_backlog: Option<u64>,
    /// net.ipv4.tcp_mem: low, pressure, high, in pages.
    pub tcp_mem: Option<[u64; 3]>,
    pub sockstat: Option<TcpSockstat>,
    pub conntrack_count: Option<u64>,
    pub conntrack_max: Option<u64>,
    /// Buckets of the TCP established-connection hash this network namespace uses
    /// (net.ipv4.tcp_ehash_entries, Linux 6.1+; negative there means the shared global one).
    pub tcp_ehash: Option<u64>,
    /// Bytes.
    pub mem_available: Option<u64>,
    /// Bytes.
    pub mem_total: Option<u64>,
    /// This process's resident set, bytes.
    pub rss: Option<u64>,
    pub oom_score_adj: Option<i32>,
    /// Bytes.
    pub page_size: Option<u64>,
    /// The process the oom_score_adj fix names; `None` names the shell (`$$`), whose children
    /// inherit the setting.
    pub pid: Option<u32>,
}

pub const NOFILE_SOFT: &str = "RLIMIT_NOFILE (soft)";
pub const NOFILE_HARD: &str = "RLIMIT_NOFILE (hard)";
pub const FILE_MAX: &str = "fs.file-max";
pub const NR_OPEN: &str = "fs.nr_open";
pub const PORT_RANGE: &str = "net.ipv4.ip_local_port_range";
pub const SOMAXCONN: &str = "net.core.somaxconn";
pub const SYN_BACKLOG: &str = "net.ipv4.tcp_max_syn_backlog";
pub const TCP_MEM: &str = "net.ipv4.tcp_mem";
pub const CONNTRACK_MAX: &str = "net.netfilter.nf_conntrack_max";
pub const EHASH: &str = "net.ipv4.tcp_ehash_entries";
pub const CHILD_EHASH: &str = "net.ipv4.tcp_child_ehash_entries";
pub const MEM_AVAILABLE: &str = "MemAvailable";
pub const RSS: &str = "RSS (this process)";
pub const OOM_SCORE_ADJ: &str = "oom_score_adj";

/// Reads every value; one that cannot be read stays `None`.
pub fn read() -> Readings {
    let me = procfs::process::Process::myself().ok();
    let meminfo = procfs::Meminfo::current().ok();
    let (soft, hard) = super::nofile();
    let conntrack_max = sysctl::<1>("net/netfilter/nf_conntrack_max").map(|[v]| v);
    Readings {
        nofile_soft: Some(soft),
        nofile_hard: Some(hard),
        file_max: procfs::sys::fs::file_max().ok().map(|v| v as u64),
        file_nr: procfs::sys::fs::file_nr().ok().map(|f| f.allocated),
        nr_open: sysctl::<1>("fs/nr_open").map(|[v]| v),
        port_range: read_port_range(),
        somaxconn: sysctl::<1>("net/core/somaxconn").map(|[v]| v),
        tcp_max_syn_backlog: sysctl::<1>("net/ipv4/tcp_max_syn_backlog").map(|[v]| v),
        tcp_mem: sysctl::<3>("net/ipv4/tcp_mem"),
        sockstat: read_sockstat(),
        conntrack_count: conntrack_max
            .and_then(|_| sysctl::<1>("net/netfilter/nf_conntrack_count").map(|[v]| v)),
        conntrack_max,
        tcp_ehash: std::fs::read_to_string("/proc/sys/net/ipv4/tcp_ehash_entries")
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .map(i64::unsigned_abs),
        mem_available: meminfo.as_ref().and_then(|m| m.mem_available),
        mem_total: meminfo.as_ref().map(|m| m.mem_total),
        rss: me
            .as_ref()
            .and_then(|p| p.status().ok()?.vmrss)
            .map(|kib| kib * 1024),
        oom_score_adj: me
            .as_ref()
            .and_then(|p| p.oom_score_adj().ok())
            .map(i32::from),
        page_size: Some(procfs::page_size()),
        pid: Some(std::process::id()),
    }
}

/// TCP's line of /proc/net/sockstat (procfs has no parser for it); cheap enough for 1 Hz.
pub fn read_sockstat() -> Option<TcpSockstat> {
    parse_sockstat(&std::fs::read_to_string("/proc/net/sockstat").ok()?)
}

fn parse_sockstat(text: &str) -> Option<TcpSockstat> {
    let line = text.lines().find_map(|l| l.strip_prefix("TCP:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let field = |name: &str| -> Option<u64> {
        words
            .chunks(2)
            .find(|kv| kv[0] == name)?
            .get(1)?
            .parse()
            .ok()
    };
    Some(TcpSockstat {
        inuse: field("inuse")?,
        mem: field("mem")?,
        tw: field("tw")?,
    })
}

/// The `N` numbers of /proc/sys/`path` (procfs has no reader for these knobs).
/// net.ipv4.ip_local_port_range, inclusive; `None` when it cannot be read.
pub(crate) fn read_port_range() -> Option<(u16, u16)> {
    sysctl::<2>("net/ipv4/ip_local_port_range")
        .and_then(|[lo, hi]| Some((u16::try_from(lo).ok()?, u16::try_from(hi).ok()?)))
}

/// N whole numbers from /proc/sys/PATH.
fn sysctl<const N: usize>(path: &str) -> Option<[u64; N]> {
    let text = std::fs::read_to_string(format!("/proc/sys/{path}")).ok()?;
    let mut words = text.split_whitespace().map(|w| w.parse::<u64>().ok());
    let mut out = [0; N];
    for v in &mut out {
        *v = words.next()??;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_parses_the_tcp_line() {
        let text = "sockets: used 12\nTCP: inuse 38003 orphan 0 tw 20 alloc 38004 mem 311\n\
                    UDP: inuse 0 mem 0\n";
        assert_eq!(
            parse_sockstat(text),
            Some(TcpSockstat {
                inuse: 38003,
                mem: 311,
                tw: 20
            })
        );
        assert_eq!(parse_sockstat("UDP: inuse 0 mem 0\n"), None);
    }

    #[test]
    fn this_machine_reads() {
        let r = read();
        assert!(r.nofile_hard.is_some() && r.page_size.is_some(), "{r:?}");
        assert!(r.file_max.is_some() && r.port_range.is_some(), "{r:?}");
    }
}
