//! Which kernel settings `c1m doctor --apply` writes for a target: the sysctls the checks found
//! short, each raised from its current value, and one sentence for each short row that is not a
//! sysctl (a process's RLIMIT_NOFILE and oom_score_adj belong to the shell that starts c1m,
//! which no child can change).

use super::checks::{Check, Persist, Status};
use crate::sys::apply::{Change, raise};
use crate::sys::limits::OOM_SCORE_ADJ;

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
    use crate::sys::apply::{apply, path, read};
    use crate::sys::limits::*;
    use std::collections::HashMap;
    use std::path::Path;

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
    use crate::sys::apply::fake_proc_sys as proc_sys;

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
