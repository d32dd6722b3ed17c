//! Writing sysctls to /proc/sys for this boot (`c1m doctor --apply`), and reading them back.
//! Values are only ever raised ([`raise`]). Which sysctls a target needs is `doctor::fixes`;
//! where the values live is a parameter, so the tests write to a temporary directory instead
//! of the kernel.

use super::limits::PORT_RANGE;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where the kernel exposes its sysctls.
pub const PROC_SYS: &str = "/proc/sys";

/// One sysctl to raise: its current value and the one it gets, both as the kernel spells them
/// (numbers separated by single spaces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The sysctl name, e.g. "net.ipv4.ip_local_port_range".
    pub key: &'static str,
    /// "unknown" when it could not be read.
    pub from: String,
    pub to: String,
}

impl Change {
    /// The command a person would type, quoted so that a shell keeps "1024 65535" whole.
    pub fn command(&self) -> String {
        if self.to.contains(' ') {
            format!("sysctl -w {}=\"{}\"", self.key, self.to)
        } else {
            format!("sysctl -w {}={}", self.key, self.to)
        }
    }
}

/// The file behind a sysctl name: `net.core.somaxconn` → `ROOT/net/core/somaxconn`.
pub fn path(proc_sys_root: &Path, key: &str) -> PathBuf {
    proc_sys_root.join(key.replace('.', "/"))
}

/// A sysctl's raw value with its whitespace (the kernel separates numbers with tabs) made single
/// spaces, so that it reads and compares like the value c1m writes.
pub fn read(proc_sys_root: &Path, key: &str) -> io::Result<String> {
    let text = std::fs::read_to_string(path(proc_sys_root, key))?;
    Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `wanted` merged into `current` so that nothing shrinks: the port range only widens (the
/// lower bound may only go down), every other value only goes up, number by number (tcp_mem's
/// low, pressure and high each keep the larger of the two). `None` when that changes nothing.
pub fn raise(key: &'static str, wanted: &str, current: Option<&str>) -> Option<Change> {
    let numbers =
        |s: &str| -> Option<Vec<u64>> { s.split_whitespace().map(|w| w.parse().ok()).collect() };
    let want = numbers(wanted)?;
    let Some(have) = current.and_then(numbers).filter(|h| h.len() == want.len()) else {
        // Nothing to compare with: ask for the value and let the write report what happens.
        return Some(Change {
            key,
            from: current.unwrap_or("unknown").to_string(),
            to: wanted.to_string(),
        });
    };
    let merged: Vec<u64> = have
        .iter()
        .zip(&want)
        .enumerate()
        .map(|(i, (&h, &w))| {
            if key == PORT_RANGE && i == 0 {
                h.min(w)
            } else {
                h.max(w)
            }
        })
        .collect();
    if merged == have {
        return None;
    }
    let spell = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
    Some(Change {
        key,
        from: spell(&have),
        to: spell(&merged),
    })
}

/// What one write did: the change with `to` as the kernel reads it back, or why it failed.
pub type Applied = Result<Change, (Change, io::Error)>;

/// Writes each change under `proc_sys_root` and reads it back. A value the kernel accepted but
/// holds differently (clamped, or ignored inside some sandboxes) is a failure too, so the user
/// never reads "changed" for a setting that did not take.
pub fn apply(changes: &[Change], proc_sys_root: &Path) -> Vec<Applied> {
    changes
        .iter()
        .map(|c| match write(proc_sys_root, c) {
            Ok(now) => Ok(Change {
                to: now,
                ..c.clone()
            }),
            Err(e) => Err((c.clone(), e)),
        })
        .collect()
}

fn write(proc_sys_root: &Path, c: &Change) -> io::Result<String> {
    // Never create: a missing file is a sysctl this kernel does not have (a module not loaded).
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path(proc_sys_root, c.key))?;
    // One write(2) call: procfs parses each write on its own.
    file.write_all(format!("{}\n", c.to).as_bytes())?;
    drop(file);
    let now = read(proc_sys_root, c.key)?;
    if now != c.to {
        return Err(io::Error::other(format!(
            "wrote \"{}\", but it reads back as \"{now}\"",
            c.to
        )));
    }
    Ok(now)
}

/// A /proc/sys look-alike holding `files` (key → raw text), for tests that write sysctls.
#[cfg(test)]
pub(crate) fn fake_proc_sys(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (key, text) in files {
        let p = path(dir.path(), key);
        std::fs::create_dir_all(p.parent().expect("a sysctl has a parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::limits::{FILE_MAX, NR_OPEN, SOMAXCONN};

    fn change(key: &'static str, from: &str, to: &str) -> Change {
        Change {
            key,
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn a_failed_write_is_reported_and_the_others_still_happen() {
        let root = fake_proc_sys(&[(NR_OPEN, "1048576\n")]);
        // A directory where the file should be: refused even for root, unlike a read-only mode.
        std::fs::create_dir_all(path(root.path(), SOMAXCONN)).unwrap();
        let planned = [
            change(FILE_MAX, "unknown", "211000"),
            change(SOMAXCONN, "128", "4096"),
            change(NR_OPEN, "1048576", "2000100"),
        ];
        let done = apply(&planned, root.path());
        let (c, e) = done[0].as_ref().unwrap_err();
        assert_eq!((c, e.kind()), (&planned[0], io::ErrorKind::NotFound));
        // Not created: a missing sysctl stays missing.
        assert!(!path(root.path(), FILE_MAX).exists());
        let (c, _) = done[1].as_ref().unwrap_err();
        assert_eq!(c, &planned[1]);
        assert_eq!(done[2].as_ref().unwrap(), &planned[2]);
    }
}
