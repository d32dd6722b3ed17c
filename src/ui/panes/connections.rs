//! Connections: the counts, the ramp, the setup rate and its history, and one bar per client
//! source address (or, for the server, per peer address).

use super::{Kv, below, framed, grid, spark, top};
use crate::cli::TuiMode;
use crate::fmt::{int, rate};
use crate::stats::{Connections, SourceRow};
use crate::ui::app::App;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{LineGauge, Widget};

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let inner = framed(app, "Connections", area, buf);
    let items = match app.mode {
        TuiMode::Server => server_items(app),
        TuiMode::Client | TuiMode::Local => client_items(app),
    };
    let used = grid(app, &items, inner, buf);
    let mut rest = below(inner, used);

    let errors = error_line(app);
    if let Some(line) = errors.filter(|_| !rest.is_empty()) {
        buf.set_line(rest.x, rest.y, &line, rest.width);
        rest = below(rest, 1);
    }

    let (rows, per_row, what) = match app.mode {
        TuiMode::Server => {
            let rows = app.server.as_ref().map_or(&[][..], |s| &s.peers[..]);
            let max = rows.iter().map(|r| r.active).max().unwrap_or(0);
            (rows, max, "peers")
        }
        _ => {
            let rows = app.client.as_ref().map_or(&[][..], |s| &s.sources[..]);
            let per = app.target.div_ceil(rows.len().max(1) as u64);
            (rows, per, "sources")
        }
    };
    // The sparkline takes what the bars leave, 1 to 4 rows.
    let spark_h = match rest.height {
        0 => 0,
        h => h
            .saturating_sub(rows.len().min(u16::MAX as usize) as u16)
            .clamp(1, 4),
    };
    if spark_h > 0 {
        spark(app, "setup/s", app.setup_history(), top(rest, spark_h), buf);
        rest = below(rest, spark_h);
    }
    bars(app, rows, per_row, what, rest, buf);
}

fn conns(s: Option<&crate::stats::Snapshot>) -> Connections {
    s.map(|s| s.connections.clone()).unwrap_or_default()
}

fn client_items(app: &App) -> Vec<Kv> {
    let t = &app.theme;
    let c = conns(app.client.as_ref());
    let setup = app.client.as_ref().map(|s| &s.rates.setup);
    let state = match app.ramp() {
        Some(r) => r.to_string(),
        None => "starting".into(),
    };
    let failed = if c.failed > 0 { t.error() } else { t.text() };
    let mut items = vec![
        Kv::new("state", state, t.accent()),
        Kv::new("target", int(app.target), t.text()),
        Kv::new("open", int(c.active), t.text()),
        Kv::new("connecting", int(c.connecting), t.text()),
        Kv::new("failed", int(c.failed), failed),
        Kv::new("closed", int(c.closed), t.text()),
        Kv::new("setup", per_s(setup.map_or(0.0, |m| m.now)), t.text()),
        Kv::new("rate", rate(app.rate), t.text()),
        Kv::new("step", int(app.step), t.text()),
        Kv::new("m1", per_s(setup.map_or(0.0, |m| m.m1)), t.muted()),
        Kv::new("m5", per_s(setup.map_or(0.0, |m| m.m5)), t.muted()),
        Kv::new("m15", per_s(setup.map_or(0.0, |m| m.m15)), t.muted()),
        Kv::new("peak", int(c.peak), t.text()),
    ];
    if app.mode == TuiMode::Local {
        let s = conns(app.server.as_ref());
        let errors = app.server.as_ref().map_or(0, |s| s.errors.total);
        let style = if errors > 0 { t.error() } else { t.text() };
        items.push(Kv::new("srv open", int(s.active), t.text()));
        items.push(Kv::new("srv peers", int(s.peers), t.text()));
        items.push(Kv::new("srv errors", int(errors), style));
    }
    items
}

fn server_items(app: &App) -> Vec<Kv> {
    let t = &app.theme;
    let c = conns(app.server.as_ref());
    let setup = app.server.as_ref().map(|s| &s.rates.setup);
    let failed = if c.failed > 0 { t.error() } else { t.text() };
    let mut items = vec![
        Kv::new("open", int(c.active), t.accent()),
        Kv::new("peers", int(c.peers), t.text()),
        Kv::new("peak", int(c.peak), t.text()),
        Kv::new("accepted", int(c.established), t.text()),
        Kv::new("failed", int(c.failed), failed),
        Kv::new("closed", int(c.closed), t.text()),
        Kv::new("setup", per_s(setup.map_or(0.0, |m| m.now)), t.text()),
        Kv::new("m1", per_s(setup.map_or(0.0, |m| m.m1)), t.muted()),
        Kv::new("m5", per_s(setup.map_or(0.0, |m| m.m5)), t.muted()),
        Kv::new("m15", per_s(setup.map_or(0.0, |m| m.m15)), t.muted()),
    ];
    // Only a server with --max-conns ever refuses; the others keep their layout.
    if c.refused > 0 {
        items.push(Kv::new("refused", int(c.refused), t.warn()));
    }
    items
}

/// `errors refused 2 · timeout 1`, the non-zero classes of the side this pane shows; in local
/// mode each side's, named (`client timeout 1 · server handshake_failed 9`).
fn error_line(app: &App) -> Option<Line<'static>> {
    let sides: Vec<(&str, &crate::stats::Snapshot)> = match app.mode {
        TuiMode::Server => app.server.iter().map(|s| ("", s)).collect(),
        TuiMode::Client => app.client.iter().map(|s| ("", s)).collect(),
        TuiMode::Local => [
            ("client ", app.client.as_ref()),
            ("server ", app.server.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, s)| Some((name, s?)))
        .collect(),
    };
    let t = &app.theme;
    let mut spans = vec![Span::styled("errors ", t.muted())];
    for (name, s) in sides {
        for (class, n) in s.errors.by_class.iter().filter(|(_, n)| *n > 0) {
            if spans.len() > 1 {
                spans.push(Span::styled(" · ", t.muted()));
            }
            spans.push(Span::styled(name.to_string(), t.muted()));
            spans.push(Span::styled(
                format!("{} {}", class.name(), int(n)),
                t.error(),
            ));
        }
    }
    (spans.len() > 1).then(|| Line::from(spans))
}

fn per_s(r: f64) -> String {
    format!("{}/s", int(r.max(0.0).round() as u64))
}

/// One line per row: address, open count, and a bar of `active / full`. Rows past the height
/// become one "+N more" line.
fn bars(app: &App, rows: &[SourceRow], full: u64, what: &str, area: Rect, buf: &mut Buffer) {
    if area.is_empty() || rows.is_empty() {
        return;
    }
    let t = &app.theme;
    let fits = area.height as usize;
    let shown = if rows.len() > fits {
        fits - 1
    } else {
        rows.len()
    };
    for (i, r) in rows.iter().take(shown).enumerate() {
        let ratio = if full == 0 {
            0.0
        } else {
            (r.active as f64 / full as f64).clamp(0.0, 1.0)
        };
        let label = Line::from(vec![
            Span::styled(format!("{:<15}", r.addr), t.muted()),
            Span::styled(format!("{:>10}", int(r.active)), t.text()),
        ]);
        LineGauge::default()
            .ratio(ratio)
            .label(label)
            .filled_symbol("━")
            .unfilled_symbol("─")
            .filled_style(t.gauge())
            .unfilled_style(t.muted())
            .render(Rect::new(area.x, area.y + i as u16, area.width, 1), buf);
    }
    if shown < rows.len() {
        let rest = &rows[shown..];
        let open: u64 = rest.iter().map(|r| r.active).sum();
        let text = format!("+{} more {what}, {} open", rest.len(), int(open));
        let y = area.y + shown as u16;
        buf.set_stringn(area.x, y, text, area.width as usize, t.muted());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Mode;
    use crate::stats::SourceRow;
    use crate::ui::panes::fixtures::{app, empty, find, render, text};
    use std::time::Instant;

    fn source(addr: &str, active: u64) -> SourceRow {
        SourceRow {
            addr: addr.into(),
            established: active,
            active,
            errors: 0,
        }
    }

    #[test]
    fn client_counts_state_and_sources() {
        let mut a = app(TuiMode::Client);
        let mut s = empty(Mode::Client);
        s.connections.active = 6_120;
        s.connections.connecting = 512;
        s.connections.failed = 3;
        s.errors.total = 3;
        s.errors.by_class.0[crate::stats::ErrorClass::Refused.index()] = 3;
        s.sources = vec![source("127.0.0.2", 5_000), source("127.0.0.3", 1_120)];
        a.on_client(s, Instant::now());
        let buf = render(render_fn, &a, 70, 14);
        let rows = text(&buf).join("\n");
        for want in [
            "ramping",
            "10,000",
            "6,120",
            "512",
            "errors refused 3",
            "127.0.0.2",
            "5,000",
        ] {
            assert!(rows.contains(want), "{want} missing in\n{rows}");
        }
        // failures in the error style
        let (x, y) = find(&buf, "refused 3").unwrap();
        assert_eq!(buf[(x, y)].fg, a.theme().error().fg.unwrap());
        // the first source is full: its bar ends in the gauge colour
        let (_, y) = find(&buf, "127.0.0.2").unwrap();
        assert_eq!(buf[(68, y)].fg, a.theme().gauge().fg.unwrap());
        let (_, y) = find(&buf, "127.0.0.3").unwrap();
        assert_eq!(buf[(68, y)].fg, a.theme().muted().fg.unwrap());
    }

    fn render_fn(app: &App, area: Rect, buf: &mut Buffer) {
        super::render(app, area, buf)
    }

    #[test]
    fn more_sources_than_rows_are_summed() {
        let mut a = app(TuiMode::Client);
        let mut s = empty(Mode::Client);
        s.sources = (2..40)
            .map(|i| source(&format!("127.0.0.{i}"), 10))
            .collect();
        a.on_client(s, Instant::now());
        let buf = render(render_fn, &a, 60, 12);
        let rows = text(&buf).join("\n");
        assert!(rows.contains("more sources"), "{rows}");
    }

    #[test]
    fn server_shows_peers() {
        let mut a = app(TuiMode::Server);
        let mut s = empty(Mode::Server);
        s.connections.active = 30;
        s.connections.peers = 2;
        s.peers = vec![source("10.0.0.7", 20), source("10.0.0.8", 10)];
        a.on_server(s, Instant::now());
        let rows = text(&render(render_fn, &a, 70, 12)).join("\n");
        for want in ["open", "peers", "10.0.0.7", "10.0.0.8"] {
            assert!(rows.contains(want), "{want} missing in\n{rows}");
        }
        assert!(!rows.contains("target"), "{rows}");
    }
}
