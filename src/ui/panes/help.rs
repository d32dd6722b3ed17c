//! The `?` overlay: every key and what it does, centred over a cleared area.

use super::framed;
use crate::ui::app::App;
use crate::ui::keys::HELP;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Widget};

const KEY_W: usize = 11;
/// Shown under the keys only when there are workers, so the pane it explains is on screen.
const WORKERS: &str = "Workers: one row per --workers process, died ones first";

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
    let workers = app.worker_count() > 0;
    let text_w = if workers {
        text_w.max(WORKERS.chars().count() + 1)
    } else {
        text_w
    };
    let w = (text_w as u16 + 4).min(area.width);
    let extra = if workers { 2 } else { 0 };
    let h = (HELP.len() as u16 + 4 + extra).min(area.height);
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
    let y = inner.y + 2 + HELP.len() as u16;
    if workers && y < inner.bottom() {
        let line = Line::from(Span::styled(format!(" {WORKERS}"), t.muted()));
        buf.set_line(inner.x, y, &line, inner.width);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::TuiMode;
    use crate::stats::Mode;
    use crate::stats::WorkerState;
    use crate::ui::panes::fixtures::{app, empty, render, text, worker};
    use std::time::Instant;

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
        assert!(!all.contains("Workers:"), "only with workers:\n{all}");
    }

    #[test]
    fn mentions_workers_when_there_are_some() {
        let mut a = app(TuiMode::Client);
        let mut s = empty(Mode::Client);
        s.workers = vec![worker(0, WorkerState::Running)];
        a.on_client(s, Instant::now());
        let all = text(&render(r, &a, 100, 20)).join("\n");
        assert!(all.contains(WORKERS), "{all}");
        assert!(all.contains("quit and print the report"), "{all}");
    }
}
