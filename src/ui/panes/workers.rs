//! Worker processes (`--workers`): one row per worker with its state in the theme's colour, or,
//! where there is no room, one summary line. When not every row fits, the died ones come first.
//! Both read the counts [`Fleet`] keeps and touch only the rows they show, so a frame costs the
//! same with 3 workers as with 3,000.

use super::{framed, width};
use crate::fmt::{clip, int, size};
use crate::stats::{WorkerRow, WorkerState};
use crate::theme::Theme;
use crate::ui::app::{App, Fleet};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};

/// The sides that have workers, server first.
struct Side<'a> {
    name: &'static str,
    rows: &'a [WorkerRow],
    fleet: &'a Fleet,
}

fn sides(app: &App) -> Vec<Side<'_>> {
    [
        ("server", &app.server, &app.server_fleet),
        ("client", &app.client, &app.client_fleet),
    ]
    .into_iter()
    .filter_map(|(name, snap, fleet)| {
        let rows = &snap.as_ref()?.workers[..];
        (!rows.is_empty()).then_some(Side { name, rows, fleet })
    })
    .collect()
}

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let sides = sides(app);
    let died: usize = sides.iter().map(|s| s.fleet.died.len()).sum();
    let agents = sides
        .iter()
        .any(|s| s.rows.iter().any(|w| w.agent.is_some()));
    let (what, gone) = if agents {
        ("Agents", "lost")
    } else {
        ("Workers", "died")
    };
    let mut title = format!("{what}  {} running", counts(&sides));
    if died > 0 {
        title.push_str(&format!(" · {died} {gone}"));
    }
    let inner = framed(app, &title, area, buf);
    if inner.is_empty() {
        return;
    }
    let (shown, more) = pick(&sides, inner.height as usize - 1);
    table(app, sides.len() > 1, &shown, inner, buf);
    if more > 0 {
        let y = inner.y + 1 + shown.len() as u16;
        if y < inner.bottom() {
            let text = format!("… {} more", int(more as u64));
            buf.set_stringn(inner.x, y, text, inner.width as usize, app.theme.muted());
        }
    }
}

/// `server 3/3 · client 2/3`: running / all, per side.
fn counts(sides: &[Side]) -> String {
    let per_side: Vec<String> = sides
        .iter()
        .map(|s| format!("{} {}/{}", s.name, s.fleet.running, s.rows.len()))
        .collect();
    per_side.join(" · ")
}

/// The rows for `room` lines: all of them in order when they fit; otherwise the died ones, then
/// the rest in order, one line short to leave room for "… N more". Returns them and N.
fn pick<'a>(sides: &[Side<'a>], room: usize) -> (Vec<(&'static str, &'a WorkerRow)>, usize) {
    let all = || {
        sides
            .iter()
            .flat_map(|s| s.rows.iter().map(move |r| (s.name, r)))
    };
    let total: usize = sides.iter().map(|s| s.rows.len()).sum();
    if total <= room {
        return (all().collect(), 0);
    }
    let n = room.saturating_sub(1);
    let mut shown = Vec::with_capacity(n);
    let died = sides.iter().flat_map(|s| {
        s.fleet
            .died
            .iter()
            .filter_map(move |&i| Some((s.name, s.rows.get(i)?)))
    });
    shown.extend(died.take(n));
    // Room left means every died row is shown already: this skips no more than those, O(n).
    let left = n - shown.len();
    shown.extend(
        all()
            .filter(|(_, r)| r.state != WorkerState::Died)
            .take(left),
    );
    let more = total - shown.len();
    (shown, more)
}

fn state(t: &Theme, s: WorkerState) -> (&'static str, Style) {
    match s {
        WorkerState::Starting => ("starting", t.warn()),
        WorkerState::Running => ("running", t.ok()),
        WorkerState::Stopped => ("stopped", t.muted()),
        WorkerState::Died => ("died", t.error()),
    }
}

/// Column headers, in display order, and whether each is right-aligned.
const COLS: [(&str, bool); N] = [
    ("side", false),
    ("#", true),
    ("pid", true),
    ("state", false),
    ("conns", true),
    ("errors", true),
    ("cpu", true),
    ("rss", true),
    ("clock", true),
];
const N: usize = 9;
const SIDE: usize = 0;
const PID: usize = 2;
const ERRORS: usize = 5;
const CPU: usize = 6;
const RSS: usize = 7;
const CLOCK: usize = 8;
/// What goes, in this order, when the table is too wide: side, index, state and connections stay.
const DROP: [usize; 5] = [PID, RSS, CPU, CLOCK, ERRORS];

/// One row's cells. An agent is named by its host where a worker shows its pid, and has a clock
/// offset; the share of a core is over the last second.
fn cells(t: &Theme, side: &str, w: &WorkerRow) -> [(String, Style); N] {
    let (st, st_style) = state(t, w.state);
    let errors = if w.errors > 0 { t.error() } else { t.text() };
    let rss = w.rss_bytes.map_or_else(|| "-".to_string(), size);
    let cpu = w
        .cpu_percent
        .map_or_else(|| "-".into(), |p| format!("{p:.0}%"));
    let (who, clock) = match &w.agent {
        Some(a) => (
            a.host.clone(),
            a.clock_offset_us
                .map_or_else(|| "-".into(), |o| format!("{:+.1}ms", o as f64 / 1e3)),
        ),
        None => (w.pid.to_string(), "-".into()),
    };
    [
        (side.to_string(), t.text()),
        (w.index.to_string(), t.text()),
        (who, t.muted()),
        (st.to_string(), st_style),
        (int(w.active), t.text()),
        (int(w.errors), errors),
        (cpu, t.text()),
        (rss, t.text()),
        (clock, t.text()),
    ]
}

/// The header and `rows`, each column as wide as its widest cell. A died row's exit text takes
/// the place of its CPU and memory, which it no longer has, and runs on to the edge.
fn table(app: &App, with_side: bool, rows: &[(&str, &WorkerRow)], area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let agents = rows.iter().any(|(_, w)| w.agent.is_some());
    let cells: Vec<[(String, Style); N]> = rows.iter().map(|(s, w)| cells(t, s, w)).collect();
    let mut head: [(String, Style); N] = COLS.map(|(h, _)| (h.to_string(), t.muted()));
    let mut right = COLS.map(|(_, r)| r);
    if agents {
        head[PID].0 = "host".into();
        right[PID] = false;
    }
    let widths: [usize; N] = std::array::from_fn(|c| {
        cells
            .iter()
            .chain([&head])
            .map(|r| width(&r[c].0) as usize)
            .max()
            .unwrap_or(0)
    });
    let exit_w = rows
        .iter()
        .filter_map(|(_, w)| w.exit.as_deref())
        .map(|e| width(e) as usize)
        .max()
        .unwrap_or(0);
    let total = |cols: &[usize], gap: usize| {
        cols.iter().map(|&c| widths[c]).sum::<usize>() + gap * cols.len().saturating_sub(1)
    };
    // Where exit texts start: the cpu column, or past the last column when cpu was dropped.
    let exit_at = |cols: &[usize], gap: usize| -> usize {
        cols.iter()
            .take_while(|&&c| c < CPU)
            .map(|&c| widths[c] + gap)
            .sum()
    };
    let avail = area.width as usize;
    let mut cols: Vec<usize> = (0..N)
        .filter(|&c| (c != SIDE || with_side) && (c != CLOCK || agents))
        .collect();
    let roomy = total(&cols, 2) <= avail && (exit_w == 0 || exit_at(&cols, 2) + exit_w <= avail);
    let gap = if roomy { 2 } else { 1 };
    for c in DROP {
        if total(&cols, gap) <= avail {
            break;
        }
        cols.retain(|&k| k != c);
    }
    let exit_x = area.x as usize + exit_at(&cols, gap);
    let line = |buf: &mut Buffer, row: &[(String, Style)], y: u16, exit: bool| {
        let mut x = area.x as usize;
        for &c in &cols {
            let (text, style) = &row[c];
            let pad = widths[c].saturating_sub(width(text) as usize);
            let at = if right[c] { x + pad } else { x };
            if !(exit && c >= CPU) {
                put(buf, area, at, y, text, *style);
            }
            x += widths[c] + gap;
        }
    };
    line(buf, &head, area.y, false);
    for (i, (row, (_, w))) in cells.iter().zip(rows).enumerate() {
        let y = area.y + 1 + i as u16;
        if y >= area.bottom() {
            break;
        }
        line(buf, row, y, w.exit.is_some());
        if let Some(exit) = &w.exit {
            let room = (area.right() as usize).saturating_sub(exit_x);
            put(buf, area, exit_x, y, &clip(exit, room), t.text());
        }
    }
}

/// Writes `text` at (x, y), clipped at the right edge of `area`.
fn put(buf: &mut Buffer, area: Rect, x: usize, y: u16, text: &str, style: Style) {
    let right = area.right() as usize;
    if x < right && y < area.bottom() {
        buf.set_stringn(x as u16, y, text, right - x, style);
    }
}

/// One line: `workers: server 3/3 · client 2/3 running · 1 died (client 1: killed by signal 9)`.
pub fn summary(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let t = &app.theme;
    let sides = sides(app);
    let mut spans = vec![
        Span::styled("workers: ", t.muted()),
        Span::styled(counts(&sides), t.text()),
        Span::styled(" running", t.muted()),
    ];
    let died: usize = sides.iter().map(|s| s.fleet.died.len()).sum();
    if died > 0 {
        spans.push(Span::styled(" · ", t.muted()));
        spans.push(Span::styled(format!("{died} died"), t.error()));
        let first = sides
            .iter()
            .find_map(|s| Some((s.name, s.rows.get(*s.fleet.died.first()?)?)));
        // Which one and how, when it fits whole; the footer note said it at the time anyway.
        if let Some((side, w)) = first {
            let how = w.exit.as_deref().unwrap_or("exited");
            let detail = format!(" ({side} {}: {how})", w.index);
            let used: usize = spans.iter().map(Span::width).sum();
            if used + width(&detail) as usize <= area.width as usize {
                spans.push(Span::styled(detail, t.text()));
            }
        }
    }
    buf.set_line(area.x, area.y, &Line::from(spans), area.width);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::TuiMode;
    use crate::stats::Mode;
    use crate::ui::panes::fixtures::{app, empty, find, render, text, worker};
    use WorkerState::{Died, Running, Starting, Stopped};
    use std::time::Instant;

    fn r(app: &App, area: Rect, buf: &mut Buffer) {
        super::render(app, area, buf)
    }

    /// Local mode with these server and client workers.
    fn local(server: &[WorkerState], client: &[WorkerState]) -> App {
        let mut a = app(TuiMode::Local);
        let rows = |states: &[WorkerState]| {
            let rows = states.iter().enumerate().map(|(i, &s)| worker(i, s));
            rows.collect()
        };
        let mut s = empty(Mode::Server);
        s.workers = rows(server);
        a.on_server(s, Instant::now());
        let mut c = empty(Mode::Client);
        c.workers = rows(client);
        a.on_client(c, Instant::now());
        a
    }

    #[test]
    fn rows_states_and_colours() {
        let a = local(&[Running, Running, Starting], &[Running, Died, Stopped]);
        let buf = render(r, &a, 60, 9);
        let rows = text(&buf);
        assert_eq!(
            rows,
            [
                "┌ Workers  server 2/3 · client 1/3 running · 1 died ───────┐",
                "│side   #   pid state    conns errors cpu      rss         │",
                "│server 0 48211 running  3,334      0 41% 41.2 MiB         │",
                "│server 1 48212 running  3,334      0 41% 41.2 MiB         │",
                "│server 2 48213 starting 3,334      0 41% 41.2 MiB         │",
                "│client 0 48211 running  3,334      0 41% 41.2 MiB         │",
                "│client 1 48212 died         0  3,333 killed by signal 9   │",
                "│client 2 48213 stopped  3,334      0 41% 41.2 MiB         │",
                "└──────────────────────────────────────────────────────────┘",
            ]
        );
        let t = a.theme();
        let fg = |needle: &str| {
            let (x, y) = find(&buf, needle).unwrap();
            buf[(x, y)].fg
        };
        // The title says "1 died" too; the row's cell is the one after the pid.
        let (x, y) = find(&buf, "48212 died").unwrap();
        assert_eq!(buf[(x + 6, y)].fg, t.error().fg.unwrap());
        assert_eq!(buf[(x + 6, y)].modifier, t.error().add_modifier);
        assert_eq!(fg("3,333"), t.error().fg.unwrap(), "errors > 0");
        assert_eq!(fg("starting"), t.warn().fg.unwrap());
        let (x, y) = find(&buf, "48211 running").unwrap();
        assert_eq!(buf[(x + 6, y)].fg, t.ok().fg.unwrap());
        assert_eq!(fg("stopped"), t.muted().fg.unwrap());
    }

    #[test]
    fn one_side_has_no_side_column() {
        let mut a = app(TuiMode::Client);
        let mut c = empty(Mode::Client);
        c.workers = vec![worker(0, Running), worker(1, Running)];
        a.on_client(c, Instant::now());
        let rows = text(&render(r, &a, 50, 5));
        assert_eq!(
            rows[0],
            "┌ Workers  client 2/2 running ───────────────────┐"
        );
        assert_eq!(
            rows[1],
            "│#    pid  state    conns  errors  cpu       rss │"
        );
        assert_eq!(
            rows[2],
            "│0  48211  running  3,334       0  41%  41.2 MiB │"
        );
    }

    #[test]
    fn agents_are_named_by_host_with_their_clock() {
        let mut a = app(TuiMode::Client);
        let mut c = empty(Mode::Client);
        let agent = |i: usize, state, offset_us| WorkerRow {
            agent: Some(crate::stats::AgentRow {
                addr: format!("10.0.0.{}:7000", i + 2),
                host: format!("agent-{i}"),
                link: "tcp",
                clock_offset_us: Some(offset_us),
                clock_uncertainty_us: Some(40),
            }),
            ..worker(i, state)
        };
        c.workers = vec![agent(0, Running, 120_040), agent(1, Died, -300)];
        a.on_client(c, Instant::now());
        let rows = text(&render(r, &a, 64, 5));
        assert_eq!(
            rows[..4],
            [
                "┌ Agents  client 1/2 running · 1 lost ─────────────────────────┐",
                "│#  host     state    conns  errors  cpu       rss     clock   │",
                "│0  agent-0  running  3,334       0  41%  41.2 MiB  +120.0ms   │",
                "│1  agent-1  died         0   3,333  killed by signal 9        │",
            ]
        );
    }

    #[test]
    fn died_first_then_index_order_then_more() {
        let mut client = vec![Running; 40];
        client[25] = Died;
        client[31] = Died;
        let a = local(&[Running; 3], &client);
        // inner: the header and five lines, the last for "… N more"
        let rows = text(&render(r, &a, 60, 8));
        let firsts: Vec<String> = rows[2..6]
            .iter()
            .map(|l| l.chars().take(10).collect())
            .collect();
        assert_eq!(
            firsts,
            ["│client 25", "│client 31", "│server  0", "│server  1"]
        );
        assert_eq!(
            rows[6],
            "│… 39 more                                                 │"
        );

        // When all fit, plain index order, the died ones in place.
        let a = local(&[Running; 2], &[Running, Died]);
        let rows = text(&render(r, &a, 60, 7));
        assert!(rows[2].contains("server 0") && rows[5].contains("client 1"));
        assert!(!rows.join("\n").contains("more"));
    }

    #[test]
    fn shows_only_what_fits_of_a_large_fleet() {
        let mut client = vec![Running; 100_000];
        client[99_999] = Died;
        let a = local(&[], &client);
        let (shown, more) = pick(&sides(&a), 3);
        let idx: Vec<usize> = shown.iter().map(|(_, w)| w.index).collect();
        assert_eq!((idx, more), (vec![99_999, 0], 99_998));
        let every_one_died = local(&[], &vec![Died; 100_000]);
        let (shown, more) = pick(&sides(&every_one_died), 4);
        assert_eq!((shown.len(), more), (3, 99_997));
    }

    #[test]
    fn narrow_drops_pid_then_rss_then_cpu_then_errors() {
        let a = local(&[Running], &[Died]);
        let rows = text(&render(r, &a, 44, 5));
        assert_eq!(rows[1], "│side   # state   conns errors cpu      rss│");
        let rows = text(&render(r, &a, 40, 5));
        assert_eq!(rows[1], "│side   # state   conns errors cpu     │");
        assert_eq!(rows[3], "│client 0 died        0  3,333 killed …│");
        let rows = text(&render(r, &a, 31, 5));
        assert_eq!(rows[1], "│side   # state   conns errors│");
        assert_eq!(rows[3], "│client 0 died        0  3,333│");
        let rows = text(&render(r, &a, 30, 5));
        assert_eq!(rows[1], "│side   # state   conns      │");
        assert_eq!(rows[3], "│client 0 died        0 kill…│");
    }

    #[test]
    fn tiny_areas_never_panic() {
        let a = local(&[Running; 3], &[Running, Died, Starting]);
        for w in 0..70 {
            for h in 0..12 {
                render(r, &a, w, h);
                render(summary, &a, w, h);
            }
        }
        // Only the header fits: no rows, no "more" line.
        let rows = text(&render(r, &a, 60, 3));
        assert_eq!(
            rows[1],
            "│side  #  pid  state  conns  errors  cpu  rss              │"
        );
        // One line under the header: the count alone.
        let rows = text(&render(r, &a, 60, 4));
        assert!(rows[2].starts_with("│… 6 more"), "{rows:?}");
    }

    #[test]
    fn summary_line() {
        let s = |a: &App| text(&render(summary, a, 100, 1)).join("");
        let a = local(&[Running; 3], &[Running, Died, Running]);
        assert_eq!(
            s(&a),
            "workers: server 3/3 · client 2/3 running · 1 died (client 1: killed by signal 9)"
        );
        let buf = render(summary, &a, 100, 1);
        let (x, y) = find(&buf, "1 died").unwrap();
        assert_eq!(buf[(x, y)].fg, a.theme().error().fg.unwrap());
        let narrow = text(&render(summary, &a, 60, 1)).join("");
        assert_eq!(narrow, "workers: server 3/3 · client 2/3 running · 1 died");
        let a = local(&[], &[Running, Starting]);
        assert_eq!(s(&a), "workers: client 1/2 running");
    }
}
