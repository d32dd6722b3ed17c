//! What the operating system allows, and what to do when it is not enough.

use anyhow::{Result, bail};

/// (soft, hard) RLIMIT_NOFILE.
pub fn nofile() -> (u64, u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return (1024, 1024);
    }
    (rl.rlim_cur, rl.rlim_max)
}

/// File descriptors a process needs besides its sockets (stdio, epoll, eventfds, logs).
pub const FD_MARGIN: u64 = 100;

/// Makes sure this process may open `sockets` more descriptors: raises the soft limit up to the
/// hard one if needed, or explains which limit is in the way and how to lift it.
pub fn ensure_fds(sockets: u64, what: &str) -> Result<()> {
    let need = sockets + FD_MARGIN;
    let (soft, hard) = nofile();
    if need <= soft {
        return Ok(());
    }
    if need <= hard {
        let rl = libc::rlimit {
            rlim_cur: need as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } == 0 {
            return Ok(());
        }
    }
    bail!(
        "{what} needs {need} file descriptors, but this process may open only {soft} \
         (RLIMIT_NOFILE soft {soft}, hard {hard}).\n\
         Raise it for this shell with `ulimit -n {need}` (as root, or after raising the hard \
         limit in /etc/security/limits.d/c1m.conf: `* - nofile {need}`), and make sure \
         `sysctl fs.nr_open` is at least {need}."
    )
}

/// Turns transparent huge pages off for this process. mimalloc asks for huge pages on its
/// arenas (MADV_HUGEPAGE), so every 2 MiB region it touches is counted whole: measured here, a
/// server holding 19,000 connections showed 26 MiB of RSS with them and 4 MiB without. c1m's
/// heap is sparse by design, so exact accounting beats the TLB gain.
pub fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

pub mod apply;
pub mod limits;

/// Sets a socket option the socket2 crate has no setter for.
pub fn setsockopt<T>(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> std::io::Result<()> {
    // SAFETY: a pointer to a `T` that outlives the call, and its size; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Bytes per memory page.
pub fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// This process's resident set, bytes, from /proc/self/statm (cheap enough for once a second).
pub fn own_rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// CPU time this process has used, user and system, seconds since it started.
pub fn own_cpu_s() -> Option<f64> {
    let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
    Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// Connections one process can hold: its hard RLIMIT_NOFILE (c1m raises the soft limit to it
/// by itself) less [`FD_MARGIN`].
pub fn per_process_conns() -> u64 {
    conns_under(nofile().1)
}

/// Connections a process with this hard RLIMIT_NOFILE can hold (here or on an agent's machine).
pub fn conns_under(nofile_hard: u64) -> u64 {
    nofile_hard.saturating_sub(FD_MARGIN).max(1)
}

/// This machine's host name (`/proc/sys/kernel/hostname`), "unknown" when it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod cpu_tests {
    #[test]
    fn busy_work_shows_in_this_process_cpu_time() {
        let before = super::own_cpu_s().expect("procfs is there");
        let start = std::time::Instant::now();
        let mut x = 1u64;
        while super::own_cpu_s().unwrap() <= before && start.elapsed().as_secs() < 5 {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) ^ i);
            }
        }
        let after = super::own_cpu_s().unwrap();
        assert!(after > before && after < before + 5.0, "{before} → {after}");
    }
}
