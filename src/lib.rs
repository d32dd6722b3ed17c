#![warn(clippy::too_many_lines)]
//! c1m: hold a million WebSocket connections and push to all of them.
//!
//! `run` is the whole program; `main.rs` only parses arguments and turns errors into messages,
//! so tests drive c1m in-process.

pub mod cli;
pub mod compare;
pub mod config_file;
pub mod control;
pub mod doctor;
pub mod engine;
pub mod fmt;
pub mod headless;
pub mod html;
pub mod merge;
pub mod preset;
pub mod proto;
pub mod run;
pub mod stats;
pub mod sys;
pub mod theme;
pub mod tui;
pub mod ui;
pub mod workers;

use cli::{Cli, Command};

/// This build's version: in every report, and checked between a coordinator and its agents.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs a parsed command line to completion. The result is the process exit status.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Server(args) => headless::server(args).await,
            Command::Client(args) => headless::client(args).await,
            Command::Doctor(args) => doctor::run(args),
            Command::Compare(args) => compare::run(&args),
            Command::Report(args) if args.merge => merge::run(&args),
            Command::Report(args) => html::run(&args),
            Command::Tui(args) => tui::run(args).await,
            Command::Presets => {
                print!("{}", preset::list());
                Ok(0)
            }
            Command::Themes => {
                print!("{}", theme::list());
                Ok(0)
            }
            Command::Worker => workers::child::run().await,
            Command::Agent(args) => workers::agent::run(args).await,
        }
    })
}
