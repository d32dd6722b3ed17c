//! `c1m doctor --apply`: the sysctls a target needs, written to /proc/sys for this boot.
//!
//! Only kernel settings are applied. A process's RLIMIT_NOFILE and oom_score_adj belong to the
//! shell that starts c1m, which no child can change, so those rows get a sentence instead.
//! What to change is a pure function of the checks and the current raw values; where the values
//! live is a parameter, so the tests write to a temporary directory instead of the kernel.

use super::limits::{Check, OOM_SCORE_ADJ, PORT_RANGE, Persist, Status};
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

/// The sysctls that the checks found short, each raised from its current value as `current`
/// reads it (`None`: unreadable). A value is never lowered: a machine tuned further than this
/// target needs keeps its tuning, so rows that are already high enough drop out.
pub fn changes(checks: &[Check], current: impl Fn(&'static str) -> Option<String>) -> Vec<Change> {
    checks
        .iter()
        .filter(|c| c.status != Status::Ok)
        .filter_map(|c| match &c.persist {
            Some(Persist::Sysctl { key, value }) => raise(key, value, current(key).as_deref()),
            _ => None,
        })
        .collect()
}

/// `wanted` merged into `current` so that nothing shrinks: the port range only widens (the
/// lower bound may only go down), every other value only goes up, number by number (tcp_mem's
/// low, pressure and high each keep the larger of the two). `None` when that changes nothing.
fn raise(key: &'static str, wanted: &str, current: Option<&str>) -> Option<Change> {
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

/// One sentence for each short row that `--apply` leaves alone because it is not a sysctl:
/// they are limits of the shell that starts c1m, which its children cannot change.
pub fn left_alone(checks: &[Check]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c.status != Status::Ok)
        .filter_map(|c| match (&c.persist, c.name.as_str()) {
            (Some(Persist::Nofile { kind: "soft", .. }), _) => Some(format!(
                "left alone {}: no process can raise the limits of the shell that started it, \
                 and c1m needs no help here: it raises its own soft limit up to the hard one.",
                c.name
            )),
            (Some(Persist::Nofile { value, .. }), _) => Some(format!(
                "left alone {}: no process can raise the limits of the shell that started it. \
                 Raise it there (`ulimit -Hn {value}` as root, or in \
                 /etc/security/limits.d/90-c1m.conf and a new login); until then c1m splits a \
                 run past it over worker processes (`--workers`), each under the limit.",
                c.name
            )),
            (None, OOM_SCORE_ADJ) => Some(format!(
                "left alone {}: it belongs to the shell that starts c1m, whose children inherit \
                 it; in that shell, as root: `{}`.",
                c.name,
                c.fix
                    .as_deref()
                    .unwrap_or("echo -1000 > /proc/$$/oom_score_adj")
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::limits::{FILE_MAX, NOFILE_HARD, NOFILE_SOFT, NR_OPEN, SOMAXCONN, TCP_MEM};
    use std::collections::HashMap;

    /// A row the checks found short, asking for `key = value`.
    fn short(key: &'static str, value: &str) -> Check {
        Check {
            name: key.to_string(),
            value: String::new(),
            target: String::new(),
            status: Status::Fail,
            fix: None,
            why: "",
            persist: Some(Persist::Sysctl {
                key,
                value: value.to_string(),
            }),
        }
    }

    /// A /proc/sys look-alike holding `files` (key → raw text).
    fn proc_sys(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (key, text) in files {
            let p = path(dir.path(), key);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    fn changes_in(checks: &[Check], root: &Path) -> Vec<Change> {
        changes(checks, |key| read(root, key).ok())
    }

    fn change(key: &'static str, from: &str, to: &str) -> Change {
        Change {
            key,
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn short_values_are_written_and_read_back() {
        let root = proc_sys(&[
            (PORT_RANGE, "32768\t60999\n"),
            (NR_OPEN, "1048576\n"),
            (SOMAXCONN, "4096\n"),
        ]);
        let checks = [
            short(PORT_RANGE, "1024 65535"),
            short(NR_OPEN, "2000100"),
            // Already in place: a row that passed has no persist, but an Ok status is enough.
            Check {
                status: Status::Ok,
                ..short(SOMAXCONN, "65535")
            },
        ];
        let planned = changes_in(&checks, root.path());
        assert_eq!(
            planned,
            [
                change(PORT_RANGE, "32768 60999", "1024 65535"),
                change(NR_OPEN, "1048576", "2000100"),
            ]
        );
        let done: Vec<Change> = apply(&planned, root.path())
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(done, planned);
        let on_disk = |key| std::fs::read_to_string(path(root.path(), key)).unwrap();
        assert_eq!(on_disk(PORT_RANGE), "1024 65535\n");
        assert_eq!(on_disk(NR_OPEN), "2000100\n");
        assert_eq!(on_disk(SOMAXCONN), "4096\n");
        assert_eq!(
            planned[0].command(),
            "sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\""
        );
        assert_eq!(planned[1].command(), "sysctl -w fs.nr_open=2000100");
    }

    #[test]
    fn a_value_already_high_enough_is_left_alone() {
        let root = proc_sys(&[(NR_OPEN, "3000000\n"), (FILE_MAX, "9223372036854775807\n")]);
        let checks = [short(NR_OPEN, "2000100"), short(FILE_MAX, "211000")];
        assert_eq!(changes_in(&checks, root.path()), []);
    }

    #[test]
    fn nothing_is_lowered() {
        let current: HashMap<&str, &str> = [
            // Wider at the bottom than asked: widened at the top only.
            (PORT_RANGE, "1000 2000"),
            // Pressure already above what is asked: only low and high rise.
            (TCP_MEM, "10 45000 50001"),
        ]
        .into();
        let checks = [
            short(PORT_RANGE, "1024 65535"),
            short(TCP_MEM, "25001 40000 50002"),
        ];
        let planned = changes(&checks, |key| current.get(key).map(|s| s.to_string()));
        assert_eq!(
            planned,
            [
                change(PORT_RANGE, "1000 2000", "1000 65535"),
                change(TCP_MEM, "10 45000 50001", "25001 45000 50002"),
            ]
        );
    }

    #[test]
    fn an_unreadable_value_is_still_asked_for() {
        let planned = changes(&[short(NR_OPEN, "2000100")], |_| None);
        assert_eq!(planned, [change(NR_OPEN, "unknown", "2000100")]);
    }

    #[test]
    fn a_failed_write_is_reported_and_the_others_still_happen() {
        let root = proc_sys(&[(NR_OPEN, "1048576\n")]);
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

    #[test]
    fn rows_that_are_not_sysctls_say_why_they_are_left_alone() {
        let row = |name: &str, persist, fix: Option<&str>| Check {
            name: name.into(),
            persist,
            fix: fix.map(str::to_string),
            ..short(NR_OPEN, "1")
        };
        let checks = [
            row(
                NOFILE_SOFT,
                Some(Persist::Nofile {
                    kind: "soft",
                    value: 2_000_100,
                }),
                None,
            ),
            row(
                NOFILE_HARD,
                Some(Persist::Nofile {
                    kind: "hard",
                    value: 2_000_100,
                }),
                None,
            ),
            row(
                OOM_SCORE_ADJ,
                None,
                Some("echo -1000 > /proc/$$/oom_score_adj"),
            ),
            short(NR_OPEN, "2000100"),
        ];
        let lines = left_alone(&checks);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[0].starts_with("left alone RLIMIT_NOFILE (soft): "));
        assert!(lines[0].contains("raises its own soft limit up to the hard one"));
        assert!(lines[1].contains("`ulimit -Hn 2000100` as root"));
        assert!(lines[1].contains("`--workers`"));
        assert!(lines[2].contains("`echo -1000 > /proc/$$/oom_score_adj`"));
        // Rows that pass say nothing.
        let ok: Vec<Check> = checks
            .iter()
            .map(|c| Check {
                status: Status::Ok,
                ..c.clone()
            })
            .collect();
        assert!(left_alone(&ok).is_empty());
    }
}
