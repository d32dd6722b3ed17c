//! The integration tests, as one binary: the crate is linked once for all of them (fifteen
//! binaries linked it fifteen times). `proto_no_alloc` stays apart: it installs its own
//! allocator.

mod common;

mod agents;
mod architecture;
mod autobahn;
mod bad_input;
mod churn;
mod cli;
mod compare;
mod compression;
mod config_files;
mod console;
mod control;
mod deploy;
mod doctor;
mod echo;
mod faults;
mod hosts;
mod interop;
mod loopback;
mod loss;
mod merge;
mod outputs;
mod protocols;
mod report_schema;
mod server_policy;
mod talk;
mod tls;
mod tui_tmux;
mod ui_snapshots;
mod workers;
