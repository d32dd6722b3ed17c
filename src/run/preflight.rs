//! Everything a run checks before it starts anything: how each side is laid out over processes,
//! whether the kernel's limits allow the target (`c1m doctor`'s plan), and whether this process
//! may open the descriptors it needs. A refusal here names the limit and the command that lifts
//! it, before a socket is opened or the terminal changes mode.

use super::Spec;
use crate::cli::TuiMode;
use crate::doctor::{self, checks::Plan};
use crate::workers::Layout;
use anyhow::Result;

/// The outcome of the checks: how the run is laid out, and what to tell the user about it.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub layout: Layout,
    /// The plan the limits are judged against (the console re-checks it once a second).
    pub plan: Plan,
    /// Server side in worker processes: the most they hold (`+` stops there).
    pub server_capacity: Option<u64>,
    /// Lines for the user before the run starts.
    pub notes: Vec<String>,
}

pub fn prepare(spec: &Spec) -> Result<Prepared> {
    let scale = &spec.out.scale;
    let cap = scale.cap();
    let target = spec.target;
    let runs_server = spec.mode != TuiMode::Client;
    // Both ends of a local run are in one process unless it splits.
    let in_one_process = match spec.mode {
        TuiMode::Local => 2 * target,
        _ => target,
    };
    let agents = spec.client.as_ref().map_or(0, |c| match c.agents.len() {
        0 => 0,
        n => c.expect_agents.unwrap_or(n),
    });
    if agents > 0 && spec.mode != TuiMode::Client {
        anyhow::bail!(
            "--agents runs a client on other machines: use it with c1m client or c1m tui --mode client"
        );
    }
    let layout = match (spec.mode, scale.workers) {
        _ if agents > 0 => Layout::Agents(agents),
        // A server alone does not know how many will come: it grows as they do.
        (TuiMode::Server, None) => Layout::Grows,
        _ => Layout::choose(scale.workers, target, in_one_process, cap),
    };
    if let Layout::Agents(n) = layout {
        // This process holds no connection: each agent's limits are its own machine's.
        return Ok(Prepared {
            layout,
            plan: doctor::plan_for(0, None, spec.mode),
            server_capacity: None,
            notes: vec![format!(
                "{target} connections on {n} agent{}, {} each at most",
                if n == 1 { "" } else { "s" },
                target.div_ceil(n as u64)
            )],
        });
    }
    let mut notes = Vec::new();
    if let (Layout::Workers(n), None) = (layout, scale.workers) {
        let (_, hard) = crate::sys::nofile();
        let side = match spec.mode {
            TuiMode::Local => "each side",
            TuiMode::Client => "the client",
            TuiMode::Server => "the server",
        };
        notes.push(format!(
            "{target} connections are more than one process may hold here ({cap}: the hard \
             RLIMIT_NOFILE of {hard} less 100): {side} runs as {n} worker processes"
        ));
    }
    let sockets_per_process = match layout {
        Layout::InProcess => in_one_process,
        Layout::Grows => in_one_process.min(cap),
        Layout::Workers(n) | Layout::Agents(n) => target.div_ceil(n as u64),
    };
    let plan = Plan {
        sockets_per_process,
        ..doctor::plan_for(target, spec.client.as_ref().and_then(|c| c.ips), spec.mode)
    };
    if !spec.force {
        doctor::preflight(&plan).map_err(anyhow::Error::msg)?;
    }
    if spec.mode != TuiMode::Server && layout == Layout::InProcess {
        check_fds(sockets_per_process, target, spec.force, &mut notes)?;
    }
    // Said where every face shows its notes (the console's footer, stderr headless), not only
    // in the headless banner.
    if let Some(c) = &spec.client
        && c.insecure
        && spec.mode == TuiMode::Client
        && c.url.starts_with("wss://")
    {
        notes.push("--insecure: the server's TLS certificate is not verified".into());
    }
    let server_capacity = match layout {
        Layout::Workers(n) if runs_server => Some(n as u64 * cap),
        _ => None,
    };
    Ok(Prepared {
        layout,
        plan,
        server_capacity,
        notes,
    })
}

/// A client in this process must be able to open its sockets; with `--force` it starts anyway
/// and counts those past the limit as `fd_limit`.
fn check_fds(sockets: u64, conns: u64, force: bool, notes: &mut Vec<String>) -> Result<()> {
    let Err(e) = crate::sys::ensure_fds(sockets, &format!("--conns {conns}")) else {
        return Ok(());
    };
    if !force {
        return Err(e);
    }
    notes.push(format!(
        "{e:#}\n--force: starting anyway; the connections past the limit will fail as fd_limit"
    ));
    Ok(())
}
