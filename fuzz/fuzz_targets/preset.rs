//! `Preset::parse` (TOML text → checked preset, or every problem at once) on arbitrary UTF-8,
//! against c1m's real command line.
//!
//! Invariants, beyond "never panics":
//! - a refusal names the file, has at least one problem, lists problems in line order (those
//!   without a line last) with every line inside the text, and renders as a message;
//! - an accepted preset validates again, and used the way the binary uses it (`splice`, then
//!   clap) it gives a command line clap accepts for `c1m server`, `c1m client` and `c1m tui` in
//!   every `--mode`: a preset that passes the check never fails later on its flags.
#![no_main]

use c1m::cli::Cli;
use c1m::preset::{ConfigError, Preset, splice_with};
use clap::{CommandFactory, Parser};
use libfuzzer_sys::fuzz_target;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

const FILE: &str = "fuzz.toml";

/// Built once: `Preset::parse` clones it, and a built command skips clap's (slow, debug-only)
/// self-checks on every clone.
fn cli() -> &'static clap::Command {
    static CLI: OnceLock<clap::Command> = OnceLock::new();
    CLI.get_or_init(|| {
        let mut cli = Cli::command();
        cli.build();
        cli
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Preset::parse("fuzz", FILE, text, cli()) {
        Err(e) => check_refusal(&e, "preset", text),
        Ok(preset) => {
            assert_eq!(preset.validate(cli()), Ok(()));
            check_command_lines(text);
        }
    }
});

/// What every refusal must look like (the theme target checks the same).
fn check_refusal(e: &ConfigError, kind: &str, text: &str) {
    assert_eq!(e.kind, kind);
    assert_eq!(e.file, FILE);
    assert!(!e.problems.is_empty(), "refused without a problem");
    let last_line = text.matches('\n').count() + 1;
    let lines: Vec<usize> = e
        .problems
        .iter()
        .map(|p| p.line.unwrap_or(usize::MAX))
        .collect();
    assert!(lines.is_sorted(), "problems out of line order: {lines:?}");
    for p in &e.problems {
        if let Some(line) = p.line {
            assert!(
                (1..=last_line).contains(&line),
                "line {line} of {last_line}"
            );
        }
        assert!(!p.message.is_empty());
    }
    let shown = e.to_string();
    assert!(shown.contains(FILE), "{shown}");
}

fn check_command_lines(text: &str) {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("c1m-fuzz-preset-{}.toml", std::process::id()))
    });
    std::fs::write(path, text).expect("write the preset to a temporary file");
    let argvs: [&[&str]; 6] = [
        &["server"],
        &["client"],
        &["tui"],
        &["tui", "--mode", "local"],
        &["tui", "--mode", "server"],
        &["tui", "--mode", "client"],
    ];
    for args in argvs {
        let mut argv: Vec<OsString> = vec!["c1m".into(), args[0].into()];
        argv.push("--preset".into());
        argv.push(path.into());
        argv.extend(args[1..].iter().map(OsString::from));
        let spliced = splice_with(argv.clone(), cli())
            .unwrap_or_else(|e| panic!("accepted, then refused by {args:?}: {e}"));
        if let Err(e) = Cli::try_parse_from(&spliced) {
            panic!("accepted, but {spliced:?} fails: {e}");
        }
    }
}
