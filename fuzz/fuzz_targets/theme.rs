//! `Theme::parse` (TOML text → resolved styles, or every problem at once) on arbitrary UTF-8.
//!
//! Invariants, beyond "never panics":
//! - a refusal names the file, has at least one problem, lists problems in line order (those
//!   without a line last) with every line inside the text, and renders as a message;
//! - an accepted theme keeps its name and parses identically a second time.
#![no_main]

use c1m::theme::{ConfigError, Theme};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Theme::parse("fuzz", FILE, text) {
        Err(e) => check_refusal(&e, text),
        Ok(theme) => {
            assert_eq!(theme.name, "fuzz");
            assert_eq!(Theme::parse("fuzz", FILE, text), Ok(theme));
        }
    }
});

fn check_refusal(e: &ConfigError, text: &str) {
    assert_eq!(e.kind, "theme");
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
