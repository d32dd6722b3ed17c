//! Latency (client and local): the latest broadcast's percentiles beside the whole run's, a
//! histogram of the run in powers of two, and the p99 of each broadcast over time.

use super::{below, framed, spark};
use crate::fmt::{int, us};
use crate::stats::Latency;
use crate::ui::app::App;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

/// The stats table's width: label, last, run.
const TABLE_W: u16 = 30;
/// Below this inner width the histogram is left out.
const WITH_HISTOGRAM: u16 = TABLE_W + 24;

type Stat = (&'static str, fn(&Latency) -> String);

const STATS: &[Stat] = &[
    ("p50", |l| us(l.p50)),
    ("p75", |l| us(l.p75)),
    ("p95", |l| us(l.p95)),
    ("p99", |l| us(l.p99)),
    ("p99.9", |l| us(l.p999)),
    ("p99.99", |l| us(l.p9999)),
    ("max", |l| us(l.max)),
    ("mean", |l| us(l.mean.round() as u64)),
    ("stddev", |l| us(l.stddev.round() as u64)),
    ("count", |l| int(l.count)),
];

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let inner = framed(app, "Latency", area, buf);
    if inner.is_empty() {
        return;
    }
    if inner.height < 5 {
        return compact(app, inner, buf);
    }
    // Below the table (a header and a row per stat), the rest goes to the p99 history.
    let table_h = STATS.len() as u16 + 1;
    let spark_h = inner.height.saturating_sub(table_h).min(8);
    let main = Rect {
        height: inner.height - spark_h,
        ..inner
    };
    if spark_h > 0 {
        spark(
            app,
            "p99 per broadcast",
            app.p99_history(),
            below(inner, main.height),
            buf,
        );
    }
    table(
        app,
        Rect {
            width: main.width.min(TABLE_W),
            ..main
        },
        buf,
    );
    if main.width >= WITH_HISTOGRAM {
        let x = main.x + TABLE_W + 2;
        let hist = Rect {
            x,
            width: main.right() - x,
            ..main
        };
        histogram(app, hist, buf);
    }
}

fn sides(app: &App) -> (Option<(u64, &Latency)>, Option<&Latency>) {
    match app.client.as_ref() {
        Some(s) => (
            s.latency_last.as_ref().map(|l| (l.seq, &l.latency)),
            Some(&s.latency_us),
        ),
        None => (None, None),
    }
}

fn value(l: Option<&Latency>, f: fn(&Latency) -> String) -> String {
    match l {
        Some(l) if l.count > 0 => f(l),
        _ => "—".into(),
    }
}

fn table(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let (last, run) = sides(app);
    let last_head = last.map_or("last".to_string(), |(seq, _)| format!("last #{seq}"));
    let head = Line::from(vec![
        Span::raw(format!("{:<8}", "")),
        Span::styled(format!("{last_head:>11}"), t.title(false)),
        Span::styled(format!("{:>11}", "run"), t.title(false)),
    ]);
    buf.set_line(area.x, area.y, &head, area.width);
    for (i, (label, f)) in STATS.iter().enumerate().take(area.height as usize - 1) {
        let line = Line::from(vec![
            Span::styled(format!("{label:<8}"), t.muted()),
            Span::styled(
                format!("{:>11}", value(last.map(|(_, l)| l), *f)),
                t.accent(),
            ),
            Span::styled(format!("{:>11}", value(run, *f)), t.text()),
        ]);
        buf.set_line(area.x, area.y + 1 + i as u16, &line, area.width);
    }
}

/// Two lines: the latest broadcast and the run, each `p50 … p99 … p99.9 … max …`.
fn compact(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let (last, run) = sides(app);
    let line = |name: String, l: Option<&Latency>| {
        let mut spans = vec![Span::styled(format!("{name:<9}"), t.muted())];
        for (label, f) in [STATS[0], STATS[3], STATS[4], STATS[6]] {
            spans.push(Span::styled(format!("{label} "), t.muted()));
            spans.push(Span::styled(format!("{:<8}", value(l, f)), t.text()));
        }
        Line::from(spans)
    };
    let last_name = last.map_or("last".to_string(), |(seq, _)| format!("#{seq}"));
    buf.set_line(
        area.x,
        area.y,
        &line(last_name, last.map(|(_, l)| l)),
        area.width,
    );
    if area.height > 1 {
        buf.set_line(area.x, area.y + 1, &line("run".into(), run), area.width);
    }
}

/// The run's buckets, from the first non-empty one to the last, as horizontal bars; adjacent
/// buckets are merged (powers of four, eight, …) until they fit the height.
fn histogram(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    buf.set_stringn(
        area.x,
        area.y,
        "histogram, whole run",
        area.width as usize,
        t.title(false),
    );
    let area = below(area, 1);
    let all = app
        .client
        .as_ref()
        .map_or(&[][..], |s| &s.latency_buckets[..]);
    let first = all.iter().position(|(_, n)| *n > 0);
    let last = all.iter().rposition(|(_, n)| *n > 0);
    let (Some(first), Some(last)) = (first, last) else {
        buf.set_stringn(
            area.x,
            area.y,
            "no latencies yet",
            area.width as usize,
            t.muted(),
        );
        return;
    };
    // At most 64 buckets: merging allocates a few dozen pairs, not per connection.
    let mut buckets: Vec<(u64, u64)> = all[first..=last].to_vec();
    while buckets.len() > area.height as usize && buckets.len() > 1 {
        buckets = buckets
            .chunks(2)
            .map(|c| (c[c.len() - 1].0, c.iter().map(|(_, n)| n).sum()))
            .collect();
    }
    let max = buckets.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    const LABEL: u16 = 9;
    const COUNT: u16 = 10;
    let bar_w = area.width.saturating_sub(LABEL + COUNT);
    for (i, (bound, n)) in buckets.iter().enumerate().take(area.height as usize) {
        let y = area.y + i as u16;
        let label = format!("≤{:<7} ", us(*bound));
        buf.set_stringn(area.x, y, &label, area.width as usize, t.muted());
        if bar_w > 0 {
            let bar = bar(*n, max, bar_w);
            buf.set_stringn(area.x + LABEL, y, &bar, bar_w as usize, t.gauge());
        }
        let count = format!("{:>w$}", int(*n), w = COUNT as usize);
        let x = area.x + LABEL + bar_w;
        buf.set_stringn(
            x,
            y,
            count,
            area.right().saturating_sub(x) as usize,
            t.text(),
        );
    }
}

/// A bar of `n / max` of `width` cells, in eighths.
fn bar(n: u64, max: u64, width: u16) -> String {
    const EIGHTHS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let eighths = (n as f64 / max as f64 * f64::from(width) * 8.0).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    s.push_str(EIGHTHS[eighths % 8]);
    if n > 0 && s.is_empty() {
        s.push('▏');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::TuiMode;
    use crate::stats::LastLatency;
    use crate::stats::Mode;
    use crate::ui::panes::fixtures::{app, empty, find, render, text};
    use std::time::Instant;

    fn r(app: &App, area: Rect, buf: &mut Buffer) {
        super::render(app, area, buf)
    }

    fn lat(base: u64) -> Latency {
        Latency {
            count: 1000,
            min: base,
            max: base * 20,
            mean: base as f64 * 2.0,
            stddev: base as f64,
            p50: base,
            p75: base * 2,
            p95: base * 4,
            p98: base * 5,
            p99: base * 8,
            p999: base * 10,
            p9999: base * 16,
        }
    }

    #[test]
    fn last_beside_run_and_histogram() {
        let mut a = app(TuiMode::Client);
        let mut s = empty(Mode::Client);
        s.latency_us = lat(1_000);
        s.latency_last = Some(LastLatency {
            seq: 42,
            latency: lat(500),
        });
        s.latency_buckets = vec![(1, 0), (2, 0), (512, 10), (1024, 700), (2048, 290)];
        a.on_client(s, Instant::now());
        let buf = render(r, &a, 80, 14);
        let rows = text(&buf);
        let all = rows.join("\n");
        let p99 = rows
            .iter()
            .find(|r| r.trim_start_matches('│').starts_with("p99 "))
            .unwrap();
        assert!(p99.contains("4.00ms") && p99.contains("8.00ms"), "{all}");
        for want in ["last #42", "histogram", "≤512µs", "≤1.02ms", "700"] {
            assert!(all.contains(want), "{want} missing in\n{all}");
        }
        assert!(
            !all.contains("≤1µs"),
            "leading empty buckets are trimmed\n{all}"
        );
        let (x, y) = find(&buf, "█").unwrap();
        assert_eq!(buf[(x, y)].fg, a.theme().gauge().fg.unwrap());
    }

    #[test]
    fn empty_and_compact() {
        let mut a = app(TuiMode::Local);
        a.on_client(empty(Mode::Client), Instant::now());
        let all = text(&render(r, &a, 80, 14)).join("\n");
        assert!(
            all.contains("no latencies yet") && all.contains("—"),
            "{all}"
        );
        let all = text(&render(r, &a, 60, 4)).join("\n");
        assert!(all.contains("run") && all.contains("p99"), "{all}");
    }

    #[test]
    fn many_buckets_merge_to_fit() {
        let mut a = app(TuiMode::Client);
        let mut s = empty(Mode::Client);
        s.latency_us = lat(1);
        s.latency_buckets = (0..30).map(|i| (1u64 << i, 1)).collect();
        a.on_client(s, Instant::now());
        let rows = text(&render(r, &a, 80, 10));
        let bars = rows.iter().filter(|r| r.contains('≤')).count();
        assert!(bars > 0 && bars <= 7, "{rows:#?}");
    }
}
