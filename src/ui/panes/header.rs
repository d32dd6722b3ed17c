//! The top line: `c1m · local · ws://127.0.0.1:8080/ · 00:01:23`, the theme's name on the right.

use crate::cli::TuiMode;
use crate::fmt::clock;
use crate::ui::app::App;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let t = &app.theme;
    let mode = match app.mode {
        TuiMode::Server => "server",
        TuiMode::Client => "client",
        TuiMode::Local => "local",
    };
    // Time from the snapshots themselves, so a frozen engine shows a frozen clock.
    let elapsed = [app.server.as_ref(), app.client.as_ref()]
        .into_iter()
        .flatten()
        .map(|s| s.elapsed_s)
        .fold(0.0, f64::max);
    let dot = || Span::styled(" · ", t.muted());
    let left = Line::from(vec![
        Span::styled("c1m", t.accent()),
        dot(),
        Span::styled(mode, t.text()),
        dot(),
        Span::styled(app.header.address.as_str(), t.text()),
        dot(),
        Span::styled(clock(elapsed), t.text()),
    ]);
    let right = format!("theme {}", app.theme.name);
    let right_w = right.chars().count() as u16;
    let left_w = left.width() as u16;
    buf.set_line(area.x, area.y, &left, area.width);
    if left_w + 2 + right_w <= area.width {
        let x = area.right() - right_w;
        buf.set_stringn(x, area.y, right, right_w as usize, t.muted());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Mode;
    use crate::ui::panes::fixtures::{app, empty, render, text};
    use std::time::Instant;

    #[test]
    fn line() {
        let mut a = app(TuiMode::Local);
        let mut s = empty(Mode::Client);
        s.elapsed_s = 83.4;
        a.on_client(s, Instant::now());
        let row = text(&render(render_fn, &a, 70, 1)).join("");
        assert!(
            row.starts_with("c1m · local · ws://127.0.0.1:8080/ · 00:01:23  "),
            "{row}"
        );
        assert!(
            row.ends_with("  theme default") && row.chars().count() == 70,
            "{row}"
        );
        let buf = render(render_fn, &a, 40, 1);
        assert_eq!(buf[(0, 0)].fg, a.theme().accent().fg.unwrap());
        assert!(
            !text(&buf)[0].contains("theme"),
            "no room: the theme is left out"
        );
    }

    fn render_fn(app: &App, area: Rect, buf: &mut Buffer) {
        super::render(app, area, buf)
    }
}
