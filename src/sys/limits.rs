//! Kernel and process limits that decide how many connections a machine can hold, read through
//! procfs, each judged against a plan and paired with the exact command that lifts it.

/// How a limit compares with what the plan needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
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
