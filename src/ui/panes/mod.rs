//! One file per pane. Each is a `render(app, area, buf)` that reads the app's latest snapshots
//! and draws into `area` only, whatever its size (an empty area draws nothing). The helpers here
//! are the pieces several panes share: a titled block, a label/value grid, a sparkline row.

pub mod broadcast;
pub mod connections;
pub mod footer;
pub mod header;
pub mod help;
pub mod latency;
pub mod limits;
pub mod workers;

use super::app::App;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, RenderDirection, Sparkline, Widget};

/// Draws a bordered block titled `title` over `area` and returns the inside.
pub(super) fn framed(app: &App, title: &str, area: Rect, buf: &mut Buffer) -> Rect {
    let t = &app.theme;
    let block = Block::bordered()
        .border_style(t.border(false))
        .title(Line::from(Span::styled(
            format!(" {title} "),
            t.title(false),
        )));
    let inner = block.inner(area);
    block.render(area, buf);
    inner
}

/// One label/value cell of a [`grid`].
pub(super) struct Kv {
    pub label: &'static str,
    pub value: String,
    pub style: Style,
}

impl Kv {
    pub fn new(label: &'static str, value: impl Into<String>, style: Style) -> Kv {
        Kv {
            label,
            value: value.into(),
            style,
        }
    }
}

fn width(s: &str) -> u16 {
    Span::raw(s).width().min(u16::MAX as usize) as u16
}

/// Lays `items` out row by row in as many columns as fit (each as wide as its widest cell),
/// labels muted and values right-aligned, and returns the rows used. Items past the height are
/// dropped, so callers put the most important first.
pub(super) fn grid(app: &App, items: &[Kv], area: Rect, buf: &mut Buffer) -> u16 {
    if area.is_empty() || items.is_empty() {
        return 0;
    }
    const GAP: u16 = 3;
    /// Values get at least this width, so columns do not jump at every new digit.
    const MIN_VALUE: u16 = 5;
    let cell = |kv: &Kv| width(kv.label) + 1 + width(&kv.value).max(MIN_VALUE);
    let widths = |cols: usize| -> Vec<u16> {
        (0..cols)
            .map(|c| {
                items
                    .iter()
                    .skip(c)
                    .step_by(cols)
                    .map(cell)
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    };
    let fits = |w: &[u16]| w.iter().sum::<u16>() + GAP * (w.len() as u16 - 1) <= area.width;
    let widths = (1..=items.len())
        .rev()
        .map(widths)
        .find(|w| fits(w))
        .unwrap_or_else(|| vec![area.width]);
    let cols = widths.len();
    let rows = (items.len().div_ceil(cols) as u16).min(area.height);
    for (i, kv) in items.iter().enumerate() {
        let (row, col) = ((i / cols) as u16, i % cols);
        if row >= rows {
            break;
        }
        let x = area.x + widths[..col].iter().map(|w| w + GAP).sum::<u16>();
        let inner = widths[col].min(area.right().saturating_sub(x));
        let y = area.y + row;
        let vw = width(&kv.value).min(inner);
        let label_room = (inner - vw).saturating_sub(1);
        buf.set_stringn(x, y, kv.label, label_room as usize, app.theme.muted());
        buf.set_stringn(x + inner - vw, y, &kv.value, vw as usize, kv.style);
    }
    rows
}

/// Right-aligned columns, each as wide as its widest cell, two spaces apart; the header muted.
pub(super) fn table(app: &App, head: &[&str], rows: &[Vec<String>], area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let t = &app.theme;
    let widths: Vec<usize> = (0..head.len())
        .map(|c| {
            rows.iter()
                .map(|r| width(&r[c]) as usize)
                .chain([width(head[c]) as usize])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>, style: Style| {
        Line::from(
            cells
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    let gap = if i == 0 { "" } else { "  " };
                    Span::styled(format!("{gap}{c:>w$}"), style)
                })
                .collect::<Vec<_>>(),
        )
    };
    buf.set_line(
        area.x,
        area.y,
        &line(&mut head.iter().copied(), t.muted()),
        area.width,
    );
    for (i, r) in rows.iter().enumerate().take(area.height as usize - 1) {
        let l = line(&mut r.iter().map(String::as_str), t.text());
        buf.set_line(area.x, area.y + 1 + i as u16, &l, area.width);
    }
}

/// A sparkline of `newest_first`, the newest point at the right edge, with `label` on a row of
/// its own above it when there are 3 rows or more, else on the left of its first row.
pub(super) fn spark(
    app: &App,
    label: &str,
    newest_first: impl Iterator<Item = u64>,
    area: Rect,
    buf: &mut Buffer,
) {
    if area.is_empty() {
        return;
    }
    buf.set_stringn(
        area.x,
        area.y,
        label,
        area.width as usize,
        app.theme.muted(),
    );
    let area = if area.height >= 3 {
        below(area, 1)
    } else {
        let lw = (width(label) + 1).min(area.width);
        Rect {
            x: area.x + lw,
            width: area.width - lw,
            ..area
        }
    };
    Sparkline::default()
        .data(newest_first.take(area.width as usize))
        .direction(RenderDirection::RightToLeft)
        .style(app.theme.gauge())
        .render(area, buf);
}

/// Removes the first `n` rows of `area` (or all of them).
pub(super) fn below(area: Rect, n: u16) -> Rect {
    let n = n.min(area.height);
    Rect {
        y: area.y + n,
        height: area.height - n,
        ..area
    }
}

/// The first `n` rows of `area` (or all of them).
pub(super) fn top(area: Rect, n: u16) -> Rect {
    Rect {
        height: n.min(area.height),
        ..area
    }
}

#[cfg(test)]
pub(super) mod fixtures {
    //! Fixed snapshots for the pane tests.
    use crate::cli::TuiMode;
    use crate::stats::Mode;
    use crate::stats::aggregate::Aggregator;
    use crate::stats::{Snapshot, WorkerRow, WorkerState};
    use crate::theme::Theme;
    use crate::ui::app::{App, Header};
    use ratatui::buffer::Buffer;
    use ratatui::layout::Rect;
    use std::time::{Duration, Instant};

    pub fn empty(mode: Mode) -> Snapshot {
        let t0 = Instant::now();
        Aggregator::new(mode, 0, Vec::new(), t0).snapshot(t0)
    }

    /// A worker with 3,334 connections in 41.2 MiB, or, if it died, none and its exit text.
    pub fn worker(index: usize, state: WorkerState) -> WorkerRow {
        let died = state == WorkerState::Died;
        WorkerRow {
            index,
            pid: 48_211 + index as u32,
            state,
            active: if died { 0 } else { 3_334 },
            errors: if died { 3_333 } else { 0 },
            deltas: 120,
            rss_bytes: (!died).then_some(43_200_000),
            cpu_s: Some(12.5),
            cpu_percent: (!died).then_some(41.0),
            exit: died.then(|| "killed by signal 9".to_string()),
            agent: None,
        }
    }

    pub fn app(mode: TuiMode) -> App {
        let header = Header {
            mode,
            address: "ws://127.0.0.1:8080/".into(),
            every: Some(Duration::from_secs(60)),
            control_url: None,
        };
        App::new(mode, Theme::fallback(), header, 10_000, 1_000, 20_000.0)
    }

    /// The buffer's text, one string per row, trailing spaces trimmed.
    pub fn text(buf: &Buffer) -> Vec<String> {
        let a = buf.area;
        (a.top()..a.bottom())
            .map(|y| {
                let row: String = (a.left()..a.right())
                    .map(|x| buf[(x, y)].symbol())
                    .collect();
                row.trim_end().to_string()
            })
            .collect()
    }

    pub fn render(f: impl Fn(&App, Rect, &mut Buffer), app: &App, w: u16, h: u16) -> Buffer {
        let mut buf = Buffer::empty(Rect::new(0, 0, w, h));
        f(app, buf.area, &mut buf);
        buf
    }

    /// Where `needle` starts in the buffer, as (x, y).
    pub fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
        text(buf).iter().enumerate().find_map(|(y, row)| {
            let byte = row.find(needle)?;
            Some((row[..byte].chars().count() as u16, y as u16))
        })
    }
}
