//! The bottom line: key hints, as many as fit, or the current note.

use crate::cli::TuiMode;
use crate::ui::app::App;
use crate::ui::keys;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let t = &app.theme;
    if let Some(note) = app.current_note() {
        buf.set_stringn(area.x, area.y, note, area.width as usize, t.accent());
        return;
    }
    let hints = keys::hints(app.mode != TuiMode::Server);
    let cost = |(key, what, _): &(&str, &str, u8)| key.len() + 1 + what.len() + 2;
    // Keep the most important hints that fit (the last needs no trailing gap).
    let mut by_priority: Vec<_> = hints.iter().collect();
    by_priority.sort_by_key(|h| h.2);
    let mut budget = area.width as usize + 2;
    let mut keep = [false; 8];
    for h in by_priority {
        if cost(h) <= budget {
            budget -= cost(h);
            keep[h.2 as usize] = true;
        }
    }
    let mut spans = Vec::new();
    for (key, what, _) in hints.iter().filter(|h| keep[h.2 as usize]) {
        spans.push(Span::styled(*key, t.accent()));
        spans.push(Span::styled(format!(" {what}  "), t.muted()));
    }
    buf.set_line(area.x, area.y, &Line::from(spans), area.width);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::panes::fixtures::{app, render, text};
    use std::time::Instant;

    fn r(app: &App, area: Rect, buf: &mut Buffer) {
        super::render(app, area, buf)
    }

    #[test]
    fn hints_fit_or_note() {
        let mut a = app(TuiMode::Client);
        let row = text(&render(r, &a, 80, 1)).join("");
        assert_eq!(
            row,
            "+/- target  [/] rate  p pause  b broadcast  t theme  ? help  q quit"
        );
        let row = text(&render(r, &a, 40, 1)).join("");
        assert_eq!(row, "+/- target  b broadcast  ? help  q quit");
        let a_server = app(TuiMode::Server);
        let row = text(&render(r, &a_server, 80, 1)).join("");
        assert_eq!(row, "b broadcast  t theme  ? help  q quit");
        a.note("hello there", Instant::now());
        let buf = render(r, &a, 80, 1);
        assert_eq!(text(&buf)[0], "hello there");
        assert_eq!(buf[(0, 0)].fg, a.theme().accent().fg.unwrap());
    }
}
