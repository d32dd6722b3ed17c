//! How the parent reaches one worker: the seam under the fleets. A worker is a line stream
//! each way (commands down, deltas and events up, see `wire`), a side channel of text for the
//! user, a way to learn how it ended and a way to end it. A local child process is the one link
//! today; a TCP connection to a remote agent becomes another constructor here, and the fleets
//! do not change.

use anyhow::{Context, Result};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use tokio::io::{AsyncBufRead, AsyncWrite, BufReader};

/// Resolves once the worker has ended, to how it ended ("exited with status 1", "killed by
/// signal 9").
pub type Ended = Pin<Box<dyn Future<Output = String> + Send>>;

/// One worker, as the parent holds it.
pub struct Link {
    /// Where commands go, one JSON line each.
    pub down: Box<dyn AsyncWrite + Send + Unpin>,
    /// What the worker sends, one JSON line each; EOF when it has gone.
    pub up: Box<dyn AsyncBufRead + Send + Unpin>,
    /// Text the worker prints for the user (its stderr), when the link carries any.
    pub notes: Option<Box<dyn AsyncBufRead + Send + Unpin>>,
    /// How it ended; poll after `up` reached EOF.
    pub ended: Ended,
    /// Ends it at once (SIGKILL for a child process).
    pub kill: Box<dyn Fn() + Send + Sync>,
}

/// Starts `exe worker` as a child process. It runs in its own process group, so Ctrl-C in the
/// terminal reaches the parent only, which then stops every worker in order and still writes
/// the report.
pub fn local_child(exe: &Path) -> Result<Link> {
    let mut child = tokio::process::Command::new(exe)
        .arg("worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start a worker process ({})", exe.display()))?;
    let pid = child.id().unwrap_or(0);
    let down = child.stdin.take().context("the worker's stdin is piped")?;
    let up = child
        .stdout
        .take()
        .context("the worker's stdout is piped")?;
    let notes = child
        .stderr
        .take()
        .context("the worker's stderr is piped")?;
    Ok(Link {
        down: Box::new(down),
        up: Box::new(BufReader::new(up)),
        notes: Some(Box::new(BufReader::new(notes))),
        ended: Box::pin(async move { describe(child.wait().await) }),
        kill: Box::new(move || {
            if pid > 0 {
                // SAFETY: kill() with the pid of a child we started; once it has been reaped
                // the call only fails.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }),
    })
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => s.to_string(),
        },
        Err(e) => format!("unknown exit ({e})"),
    }
}
