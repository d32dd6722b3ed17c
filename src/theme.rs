//! Colour themes. Panes ask the theme for meanings (`theme.border(focused)`, `theme.error()`),
//! never for raw colours, so a theme file can restyle everything and `mono` can drop colour.

use ratatui::style::{Color, Modifier, Style};

#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    pub name: String,
    pub border: Style,
    pub border_focused: Style,
    pub text: Style,
    pub muted: Style,
    pub ok: Style,
    pub warn: Style,
    pub error: Style,
    pub accent: Style,
    pub gauge: Style,
}

impl Theme {
    /// The built-in dark theme, also what tests render with.
    pub fn fallback() -> Theme {
        Theme {
            name: "default".into(),
            border: Style::new().fg(Color::DarkGray),
            border_focused: Style::new().fg(Color::Cyan),
            text: Style::new().fg(Color::White),
            muted: Style::new().fg(Color::Gray),
            ok: Style::new().fg(Color::Green),
            warn: Style::new().fg(Color::Yellow),
            error: Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            accent: Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            gauge: Style::new().fg(Color::Blue),
        }
    }

    pub fn border(&self, focused: bool) -> Style {
        if focused {
            self.border_focused
        } else {
            self.border
        }
    }

    pub fn title(&self, focused: bool) -> Style {
        if focused {
            self.accent
        } else {
            self.text.add_modifier(Modifier::BOLD)
        }
    }

    pub fn text(&self) -> Style {
        self.text
    }
    pub fn muted(&self) -> Style {
        self.muted
    }
    pub fn ok(&self) -> Style {
        self.ok
    }
    pub fn warn(&self) -> Style {
        self.warn
    }
    pub fn error(&self) -> Style {
        self.error
    }
    pub fn accent(&self) -> Style {
        self.accent
    }
    pub fn gauge(&self) -> Style {
        self.gauge
    }

    pub fn status(&self, s: crate::sys::limits::Status) -> Style {
        use crate::sys::limits::Status;
        match s {
            Status::Ok => self.ok,
            Status::Warn => self.warn,
            Status::Fail => self.error,
        }
    }
}
