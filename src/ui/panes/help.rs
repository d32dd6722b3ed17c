//! The `?` overlay: every key and what it does, centred over a cleared area.

use super::framed;
use crate::ui::app::App;
use crate::ui::keys::HELP;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Widget};

const KEY_W: usize = 11;

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let t = &app.theme;
    let text_w = HELP
        .iter()
        .map(|(_, d)| d.chars().count())
        .max()
        .unwrap_or(0)
        + KEY_W;
    let w = (text_w as u16 + 4).min(area.width);
    let h = (HELP.len() as u16 + 4).min(area.height);
    let popup = area.centered(Constraint::Length(w), Constraint::Length(h));
    Clear.render(popup, buf);
    let inner = framed(app, "Keys · ? or Esc closes", popup, buf);
    for (i, (key, what)) in HELP.iter().enumerate() {
        let y = inner.y + 1 + i as u16;
        if y >= inner.bottom() {
            break;
        }
        let line = Line::from(vec![
            Span::styled(format!(" {key:<w$}", w = KEY_W - 1), t.accent()),
            Span::styled(*what, t.text()),
        ]);
        buf.set_line(inner.x, y, &line, inner.width);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::TuiMode;
    use crate::ui::panes::fixtures::{app, render, text};

    fn r(app: &App, area: Rect, buf: &mut Buffer) {
        super::render(app, area, buf)
    }

    #[test]
    fn every_key_listed() {
        let a = app(TuiMode::Local);
        let all = text(&render(r, &a, 100, 20)).join("\n");
        for (key, what) in HELP {
            assert!(
                all.contains(key) && all.contains(what),
                "{key} missing in\n{all}"
            );
        }
    }
}
