//! Kernel limits: one row per [`Check`] with its status in the theme's colour and the fix for the
//! first failing one; or, where there is no room, a one-line summary.

use super::{below, framed};
use crate::doctor::checks::{Check, Status};
use crate::fmt::clip;
use crate::ui::app::App;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};

const VALUE_W: usize = 16;
const STATUS_W: usize = 5;

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let inner = framed(app, "Kernel limits", area, buf);
    if inner.is_empty() {
        return;
    }
    let t = &app.theme;
    let Some(checks) = app.limits.as_deref() else {
        buf.set_stringn(
            inner.x,
            inner.y,
            "reading…",
            inner.width as usize,
            t.muted(),
        );
        return;
    };
    let worst = first_problem(checks);
    // Rows for the table: header + checks, keeping at least two lines for the fix.
    let fix_lines = if worst.is_some_and(|c| c.fix.is_some()) {
        2
    } else {
        0
    };
    let room = (inner.height as usize).saturating_sub(1 + fix_lines).max(1);
    // When not every row fits, the failing ones go first.
    let mut order: Vec<&Check> = checks.iter().collect();
    if order.len() > room {
        order.sort_by_key(|c| std::cmp::Reverse(c.status));
    }
    let name_w = (inner.width as usize)
        .saturating_sub(2 * VALUE_W + STATUS_W)
        .clamp(8, 24);
    let head = Line::from(vec![
        Span::styled(format!("{:<name_w$}", "limit"), t.title(false)),
        Span::styled(format!("{:>VALUE_W$}", "now"), t.title(false)),
        Span::styled(format!("{:>VALUE_W$}", "needs"), t.title(false)),
    ]);
    buf.set_line(inner.x, inner.y, &head, inner.width);
    let shown = order.len().min(room);
    for (i, c) in order.iter().take(shown).enumerate() {
        let line = Line::from(vec![
            Span::styled(format!("{:<name_w$}", clip(&c.name, name_w)), t.text()),
            Span::styled(
                format!("{:>VALUE_W$}", clip(&c.value, VALUE_W - 1)),
                t.text(),
            ),
            Span::styled(
                format!("{:>VALUE_W$}", clip(&c.target, VALUE_W - 1)),
                t.muted(),
            ),
            Span::styled(format!("{:>STATUS_W$}", c.status), t.status(c.status)),
        ]);
        let y = inner.y + 1 + i as u16;
        if y < inner.bottom() {
            buf.set_line(inner.x, y, &line, inner.width);
        }
    }
    let rest = below(inner, 1 + shown as u16);
    if let Some(c) = worst
        && let Some(fix) = &c.fix
        && !rest.is_empty()
    {
        let text = Line::from(vec![
            Span::styled(format!("fix {}: ", c.name), t.status(c.status)),
            Span::styled(fix.clone(), t.text()),
        ]);
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .render(rest, buf);
    }
}

/// The first row that fails, or else the first that warns.
fn first_problem(checks: &[Check]) -> Option<&Check> {
    let first = |s| checks.iter().find(|c| c.status == s);
    first(Status::Fail).or_else(|| first(Status::Warn))
}

/// One line: `limits: 2 fail, 1 warn · fs.file-max: sysctl -w …`, or `limits: all 12 ok`.
pub fn summary(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let t = &app.theme;
    let mut spans = vec![Span::styled("limits: ", t.muted())];
    match app.limits.as_deref() {
        None => spans.push(Span::styled("reading…", t.muted())),
        Some(checks) => {
            let count = |s| checks.iter().filter(|c| c.status == s).count();
            let (fail, warn) = (count(Status::Fail), count(Status::Warn));
            if fail + warn == 0 {
                spans.push(Span::styled(format!("all {} ok", checks.len()), t.ok()));
            } else {
                let mut parts = Vec::new();
                if fail > 0 {
                    parts.push(Span::styled(format!("{fail} fail"), t.error()));
                }
                if warn > 0 {
                    if !parts.is_empty() {
                        parts.push(Span::styled(", ", t.muted()));
                    }
                    parts.push(Span::styled(format!("{warn} warn"), t.warn()));
                }
                spans.extend(parts);
                if let Some(c) = first_problem(checks) {
                    spans.push(Span::styled(format!(" · {}", c.name), t.status(c.status)));
                    if let Some(fix) = &c.fix {
                        spans.push(Span::styled(format!(": {fix}"), t.text()));
                    }
                }
            }
        }
    }
    buf.set_line(area.x, area.y, &Line::from(spans), area.width);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cli::TuiMode;
    use crate::ui::panes::fixtures::{app, find, render, text};

    pub fn check(
        name: &str,
        value: &str,
        target: &str,
        status: Status,
        fix: Option<&str>,
    ) -> Check {
        Check {
            name: name.into(),
            value: value.into(),
            target: target.into(),
            status,
            fix: fix.map(String::from),
            why: "",
            persist: None,
        }
    }

    fn checks() -> Vec<Check> {
        vec![
            check(
                "RLIMIT_NOFILE (soft)",
                "1,024",
                "20,100",
                Status::Warn,
                Some("ulimit -n 20100"),
            ),
            check(
                "fs.file-max",
                "8,192",
                "2,100,000",
                Status::Fail,
                Some("sysctl -w fs.file-max=2100000"),
            ),
            check("net.core.somaxconn", "4,096", "65,535", Status::Ok, None),
        ]
    }

    fn r(app: &App, area: Rect, buf: &mut Buffer) {
        super::render(app, area, buf)
    }

    #[test]
    fn rows_status_colours_and_fix() {
        let mut a = app(TuiMode::Local);
        a.on_limits(checks());
        let buf = render(r, &a, 70, 8);
        let all = text(&buf).join("\n");
        for want in [
            "fs.file-max",
            "8,192",
            "2,100,000",
            "FAIL",
            "warn",
            "ok",
            "sysctl -w fs.file-max=2100000",
        ] {
            assert!(all.contains(want), "{want} missing in\n{all}");
        }
        let t = a.theme();
        let (x, y) = find(&buf, "FAIL").unwrap();
        assert_eq!(buf[(x, y)].fg, t.error().fg.unwrap());
        assert_eq!(buf[(x, y)].modifier, t.error().add_modifier);
        let (x, y) = find(&buf, "warn").unwrap();
        assert_eq!(buf[(x, y)].fg, t.warn().fg.unwrap());
        let (x, y) = find(&buf, "   ok").unwrap();
        assert_eq!(buf[(x + 3, y)].fg, t.ok().fg.unwrap());
    }

    #[test]
    fn failing_rows_first_when_short() {
        let mut a = app(TuiMode::Local);
        a.on_limits(checks());
        let all = text(&render(r, &a, 70, 6)).join("\n");
        // room for one row: the failing one
        assert!(
            all.contains("fs.file-max") && !all.contains("somaxconn"),
            "{all}"
        );
    }

    #[test]
    fn summary_line() {
        let mut a = app(TuiMode::Client);
        let s = |a: &App| text(&render(summary, a, 100, 1)).join("");
        assert_eq!(s(&a), "limits: reading…");
        a.on_limits(checks());
        assert_eq!(
            s(&a),
            "limits: 1 fail, 1 warn · fs.file-max: sysctl -w fs.file-max=2100000"
        );
        a.on_limits(vec![check("x", "1", "1", Status::Ok, None)]);
        assert_eq!(s(&a), "limits: all 1 ok");
    }
}
