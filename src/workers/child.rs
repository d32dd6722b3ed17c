//! The worker side: `c1m worker` (hidden) reads a [`Start`] line, runs one server or client
//! engine, forwards its deltas up and obeys commands from the parent. It prints nothing of its
//! own: the parent owns the console and the reports. When its stdin closes (the parent is gone)
//! it stops as if told to, so no worker outlives its parent.

use super::wire::{Down, Start, Up, line};
use crate::engine::client::Client;
use crate::engine::server::Server;
use crate::stats::ShardDelta;
use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

pub async fn run() -> Result<i32> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines.next_line().await?.context(
        "c1m worker is started by c1m server/client/tui --workers; it reads its task on stdin",
    )?;
    let start: Start = serde_json::from_str(&first).context("a malformed start line")?;
    // A worker is sized to its fd limit by the parent: take all of it.
    let (_, hard) = crate::sys::nofile();
    crate::sys::ensure_fds(hard.saturating_sub(crate::sys::FD_MARGIN), "a worker")?;
    let mut out = tokio::io::stdout();
    let (tx, mut rx) = mpsc::unbounded_channel::<ShardDelta>();
    match start {
        Start::Server(cfg) => {
            let mut server = Server::start(&cfg, tx)?;
            let shards = server.shards();
            send(
                &mut out,
                &Up::Ready {
                    local_addr: Some(server.local_addr()),
                    shards,
                },
            )
            .await?;
            loop {
                tokio::select! {
                    cmd = lines.next_line() => match parse(cmd) {
                        Cmd::Do(Down::Broadcast { seq, payload }) => server.broadcast_frame(seq, &payload),
                        Cmd::Do(Down::Stop) | Cmd::Gone => break,
                        Cmd::Do(_) | Cmd::Ignore => {}
                    },
                    Some(d) = rx.recv() => send(&mut out, &Up::Delta(Box::new(d))).await?,
                    Some(done) = server.next_done() => send(&mut out, &Up::Done(done)).await?,
                }
            }
            let panics = tokio::task::spawn_blocking(move || server.stop()).await?;
            finish(&mut out, &mut rx, panics).await?;
        }
        Start::Client(cfg) => {
            let shards = cfg.shards;
            let client = Client::start(&cfg, tx)?;
            send(
                &mut out,
                &Up::Ready {
                    local_addr: None,
                    shards,
                },
            )
            .await?;
            loop {
                tokio::select! {
                    cmd = lines.next_line() => match parse(cmd) {
                        Cmd::Do(Down::Target(n)) => client.set_target(n),
                        Cmd::Do(Down::Rate(r)) => client.set_rate(r),
                        Cmd::Do(Down::Paused(p)) => client.set_paused(p),
                        Cmd::Do(Down::Stop) | Cmd::Gone => break,
                        Cmd::Do(Down::Broadcast { .. }) | Cmd::Ignore => {}
                    },
                    Some(d) = rx.recv() => send(&mut out, &Up::Delta(Box::new(d))).await?,
                }
            }
            let panics = tokio::task::spawn_blocking(move || client.stop()).await?;
            finish(&mut out, &mut rx, panics).await?;
        }
    }
    Ok(0)
}

/// What a line from the parent asks for.
enum Cmd {
    Do(Down),
    /// A line that does not parse: a bug between two copies of the same binary. It is reported
    /// on stderr, which the parent shows, and otherwise ignored.
    Ignore,
    /// EOF or a broken pipe: the parent has gone.
    Gone,
}

fn parse(line: std::io::Result<Option<String>>) -> Cmd {
    let Some(text) = line.ok().flatten() else {
        return Cmd::Gone;
    };
    match serde_json::from_str(&text) {
        Ok(cmd) => Cmd::Do(cmd),
        Err(e) => {
            eprintln!("ignored a malformed command ({e}): {text}");
            Cmd::Ignore
        }
    }
}

async fn send(out: &mut tokio::io::Stdout, msg: &Up) -> Result<()> {
    out.write_all(&line(msg)).await?;
    out.flush().await?;
    Ok(())
}

async fn finish(
    out: &mut tokio::io::Stdout,
    rx: &mut mpsc::UnboundedReceiver<ShardDelta>,
    panics: Vec<String>,
) -> Result<()> {
    while let Ok(d) = rx.try_recv() {
        send(out, &Up::Delta(Box::new(d))).await?;
    }
    send(out, &Up::Bye { panics }).await
}
