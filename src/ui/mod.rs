//! The console's screen. [`App`] holds the state and updates it from snapshots and keys
//! (`app.rs`, pure); `keys.rs` maps key presses; `panes/` draws one pane a file. `impl Widget for
//! &App` lays the panes out for the terminal's size and draws them: O(panes) per frame, reading
//! only the latest snapshots, whatever the number of connections.
//!
//! Layouts: at 100×30 and up, two columns (connections and latency left; broadcast and kernel
//! limits right). From 70×20, the two top panes side by side over the latency, with the limits
//! as one summary line. Below that, everything stacks and condenses. Server mode has no latency
//! pane; its limits pane takes the room. With worker processes (`--workers`), the two-column
//! layout puts a workers pane above the limits, in at most half their room; smaller layouts give
//! the workers one summary line. Without workers, every layout is as if workers did not exist.

pub mod app;
pub mod keys;
mod panes;

pub use app::{App, Command, Header, Ramp};

use crate::cli::TuiMode;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::Widget;

/// Where each pane goes on a screen of a given size.
#[derive(Debug, Default, PartialEq)]
struct Areas {
    header: Rect,
    connections: Rect,
    broadcast: Rect,
    latency: Rect,
    /// The full limits pane, or…
    limits: Rect,
    /// …the one-line summary.
    limits_line: Rect,
    /// The workers table, or…
    workers: Rect,
    /// …the one-line summary.
    workers_line: Rect,
    footer: Rect,
}

/// `workers` is how many worker processes there are on both sides (0 without `--workers`).
fn areas(mode: TuiMode, area: Rect, workers: usize) -> Areas {
    use Constraint::{Fill, Length, Percentage};
    let [header, body, footer] = Layout::vertical([Length(1), Fill(1), Length(1)]).areas(area);
    let mut a = Areas {
        header,
        footer,
        ..Areas::default()
    };
    let latency = mode != TuiMode::Server;
    if body.width >= 100 && body.height >= 28 {
        let [left, right] = Layout::horizontal([Percentage(50), Fill(1)]).areas(body);
        let [b, l] = Layout::vertical([Percentage(42), Fill(1)]).areas(right);
        a.broadcast = b;
        if workers > 0 {
            // Borders and the header row, then one row per worker, within half of the room.
            let want = (workers.min(u16::MAX as usize) as u16).saturating_add(3);
            let h = want.min(l.height / 2);
            [a.workers, a.limits] = Layout::vertical([Length(h), Fill(1)]).areas(l);
        } else {
            a.limits = l;
        }
        if latency {
            [a.connections, a.latency] = Layout::vertical([Percentage(42), Fill(1)]).areas(left);
        } else {
            a.connections = left;
        }
    } else if body.width >= 70 && body.height >= 18 {
        let rest = if latency { Length(10) } else { Percentage(45) };
        let [top, rest] = Layout::vertical([Fill(1), rest]).areas(body);
        [a.connections, a.broadcast] = Layout::horizontal([Percentage(50), Fill(1)]).areas(top);
        match (latency, workers > 0) {
            (true, false) => {
                [a.latency, a.limits_line] = Layout::vertical([Fill(1), Length(1)]).areas(rest);
            }
            (true, true) => {
                [a.latency, a.workers_line, a.limits_line] =
                    Layout::vertical([Fill(1), Length(1), Length(1)]).areas(rest);
            }
            (false, false) => a.limits = rest,
            (false, true) => {
                [a.limits, a.workers_line] = Layout::vertical([Fill(1), Length(1)]).areas(rest);
            }
        }
    } else {
        let lat = if latency { 4 } else { 0 };
        if workers > 0 {
            [
                a.connections,
                a.broadcast,
                a.latency,
                a.workers_line,
                a.limits_line,
            ] = Layout::vertical([Fill(1), Length(5), Length(lat), Length(1), Length(1)])
                .areas(body);
        } else {
            [a.connections, a.broadcast, a.latency, a.limits_line] =
                Layout::vertical([Fill(1), Length(5), Length(lat), Length(1)]).areas(body);
        }
    }
    a
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let area = area.intersection(buf.area);
        if area.is_empty() {
            return;
        }
        let a = areas(self.mode, area, self.worker_count());
        panes::header::render(self, a.header, buf);
        panes::connections::render(self, a.connections, buf);
        panes::broadcast::render(self, a.broadcast, buf);
        panes::latency::render(self, a.latency, buf);
        panes::limits::render(self, a.limits, buf);
        panes::limits::summary(self, a.limits_line, buf);
        panes::workers::render(self, a.workers, buf);
        panes::workers::summary(self, a.workers_line, buf);
        panes::footer::render(self, a.footer, buf);
        if self.help_open {
            panes::help::render(self, area, buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::WorkerState;
    use crate::theme::Theme;
    use std::time::Duration;

    fn app(mode: TuiMode) -> App {
        let header = Header {
            mode,
            address: "ws://127.0.0.1:8080/".into(),
            every: Some(Duration::from_secs(60)),
            control_url: None,
        };
        App::new(mode, Theme::fallback(), header, 1000, 100, 1000.0)
    }

    #[test]
    fn server_has_no_latency_pane() {
        for size in [
            Rect::new(0, 0, 120, 40),
            Rect::new(0, 0, 80, 24),
            Rect::new(0, 0, 60, 20),
        ] {
            assert!(
                areas(TuiMode::Server, size, 0).latency.is_empty(),
                "{size:?}"
            );
            assert!(
                !areas(TuiMode::Local, size, 0).latency.is_empty(),
                "{size:?}"
            );
        }
        let wide = areas(TuiMode::Client, Rect::new(0, 0, 120, 40), 0);
        assert!(!wide.limits.is_empty() && wide.limits_line.is_empty());
        let narrow = areas(TuiMode::Client, Rect::new(0, 0, 60, 20), 0);
        assert!(narrow.limits.is_empty() && narrow.limits_line.height == 1);
    }

    #[test]
    fn workers_get_room_only_when_there_are_some() {
        for mode in [TuiMode::Server, TuiMode::Client, TuiMode::Local] {
            let wide = areas(mode, Rect::new(0, 0, 120, 40), 6);
            assert_eq!(wide.workers.height, 9, "{mode:?}: borders, header, 6 rows");
            assert!(wide.workers_line.is_empty());
            assert_eq!(wide.workers.bottom(), wide.limits.y);
            let many = areas(mode, Rect::new(0, 0, 120, 40), 500);
            assert!(many.workers.height <= many.limits.height, "{mode:?}");
            for size in [Rect::new(0, 0, 80, 24), Rect::new(0, 0, 60, 20)] {
                let a = areas(mode, size, 6);
                assert!(a.workers.is_empty(), "{mode:?} {size:?}");
                assert_eq!(a.workers_line.height, 1, "{mode:?} {size:?}");
            }
            for size in [
                Rect::new(0, 0, 120, 40),
                Rect::new(0, 0, 80, 24),
                Rect::new(0, 0, 60, 20),
            ] {
                let a = areas(mode, size, 0);
                assert!(a.workers.is_empty() && a.workers_line.is_empty());
            }
        }
    }

    #[test]
    fn never_panics_at_any_size() {
        for mode in [TuiMode::Server, TuiMode::Client, TuiMode::Local] {
            let mut a = app(mode);
            let mut s = crate::ui::panes::fixtures::empty(crate::stats::Mode::Server);
            s.workers = vec![
                crate::ui::panes::fixtures::worker(0, WorkerState::Died),
                crate::ui::panes::fixtures::worker(1, WorkerState::Running),
            ];
            a.on_server(s, std::time::Instant::now());
            for help in [false, true] {
                a.help_open = help;
                for w in (0..=130u16).step_by(7).chain(0..4) {
                    for h in (0..=45u16).step_by(3).chain(0..4) {
                        let mut buf = Buffer::empty(Rect::new(0, 0, w, h));
                        (&a).render(buf.area, &mut buf);
                    }
                }
            }
        }
    }

    #[test]
    fn renders_into_an_offset_area() {
        let a = app(TuiMode::Local);
        let mut buf = Buffer::empty(Rect::new(5, 3, 90, 30));
        (&a).render(Rect::new(5, 3, 200, 200), &mut buf);
    }
}
