//! The key map: which key means what ([`action`]), and the two lists that explain it: every key
//! for the help overlay ([`HELP`]) and the short hints the footer shows ([`hints`]).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What a key asks for, before the app decides whether it applies in this mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    TargetUp,
    TargetDown,
    RateUp,
    RateDown,
    TogglePause,
    Broadcast,
    NextTheme,
    ToggleHelp,
    /// Esc: closes the help overlay (and nothing else).
    Escape,
    /// End the run; the key, as the report names it.
    Quit(&'static str),
}

/// The action for a key press; `None` for keys c1m does not use (and for key releases).
pub fn action(key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') | KeyCode::Char('C') => Some(Action::Quit("Ctrl-C")),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char('+') | KeyCode::Char('=') => Action::TargetUp,
        KeyCode::Char('-') | KeyCode::Char('_') => Action::TargetDown,
        KeyCode::Char(']') => Action::RateUp,
        KeyCode::Char('[') => Action::RateDown,
        KeyCode::Char('p') => Action::TogglePause,
        KeyCode::Char('b') => Action::Broadcast,
        KeyCode::Char('t') => Action::NextTheme,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Char('q') => Action::Quit("q"),
        KeyCode::Esc => Action::Escape,
        _ => return None,
    })
}

/// Every key with one line of explanation, for the help overlay.
pub const HELP: &[(&str, &str)] = &[
    ("+  -", "raise / lower the target by the step"),
    ("]  [", "double / halve the ramp rate (0 = unlimited)"),
    ("p", "pause / resume the ramp; open ones stay open"),
    ("b", "broadcast now (client: via --control-url)"),
    ("t", "next colour theme"),
    ("?", "show / hide this help"),
    ("Esc", "close this help"),
    ("q  Ctrl-C", "quit and print the report"),
];

/// Footer hints as (keys, what, priority), in display order; a narrow footer keeps the lowest
/// priorities. `steers` is false in server mode, where the ramp keys do nothing.
pub fn hints(steers: bool) -> &'static [(&'static str, &'static str, u8)] {
    const ALL: &[(&str, &str, u8)] = &[
        ("+/-", "target", 2),
        ("[/]", "rate", 4),
        ("p", "pause", 5),
        ("b", "broadcast", 3),
        ("t", "theme", 6),
        ("?", "help", 1),
        ("q", "quit", 0),
    ];
    if steers { ALL } else { &ALL[3..] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn maps_every_key() {
        let cases = [
            (KeyCode::Char('+'), Action::TargetUp),
            (KeyCode::Char('='), Action::TargetUp),
            (KeyCode::Char('-'), Action::TargetDown),
            (KeyCode::Char(']'), Action::RateUp),
            (KeyCode::Char('['), Action::RateDown),
            (KeyCode::Char('p'), Action::TogglePause),
            (KeyCode::Char('b'), Action::Broadcast),
            (KeyCode::Char('t'), Action::NextTheme),
            (KeyCode::Char('?'), Action::ToggleHelp),
            (KeyCode::Char('q'), Action::Quit("q")),
            (KeyCode::Esc, Action::Escape),
        ];
        for (code, want) in cases {
            assert_eq!(action(key(code)), Some(want), "{code:?}");
        }
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action(ctrl_c), Some(Action::Quit("Ctrl-C")));
    }

    #[test]
    fn ignores_unknown_keys_and_releases() {
        assert_eq!(action(key(KeyCode::Char('x'))), None);
        assert_eq!(action(key(KeyCode::F(1))), None);
        assert_eq!(action(key(KeyCode::Char('c'))), None);
        let ctrl_p = KeyEvent::new(KeyCode::Char('p'), KeyModifiers::CONTROL);
        assert_eq!(action(ctrl_p), None);
        let mut release = key(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(action(release), None);
    }
}
