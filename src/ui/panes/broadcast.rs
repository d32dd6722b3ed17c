//! Broadcast: the latest sequence number, a gauge of the broadcast in flight, the next timed
//! one, and the durations of the recent ones (server loop time, client delivery time).

use super::{Kv, below, framed, grid};
use crate::cli::TuiMode;
use crate::fmt::{countdown, int, us};
use crate::stats::{Broadcasts, ClientBroadcast, ServerBroadcast, Snapshot};
use crate::ui::app::App;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Span;
use ratatui::widgets::{Gauge, Widget};

fn server_rows(s: Option<&Snapshot>) -> &[ServerBroadcast] {
    match s.map(|s| &s.broadcasts) {
        Some(Broadcasts::Server(rows)) => rows,
        _ => &[],
    }
}

fn client_rows(s: Option<&Snapshot>) -> &[ClientBroadcast] {
    match s.map(|s| &s.broadcasts) {
        Some(Broadcasts::Client(rows)) => rows,
        _ => &[],
    }
}

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let inner = framed(app, "Broadcast", area, buf);
    let used = grid(app, &items(app), inner, buf);
    let rest = below(inner, used);
    if rest.is_empty() {
        return;
    }
    in_flight(app, Rect { height: 1, ..rest }, buf);
    recent(app, below(rest, 1), buf);
}

fn items(app: &App) -> Vec<Kv> {
    let t = &app.theme;
    let server = app.server.as_ref();
    let client = app.client.as_ref();
    let seq = match app.mode {
        TuiMode::Client => client_rows(client).last().map(|r| r.seq),
        _ => server_rows(server).last().map(|r| r.seq),
    };
    let next = match (app.mode, app.next_broadcast, app.now) {
        (TuiMode::Client, ..) => "by server".to_string(),
        (_, Some(at), Some(now)) => format!("in {}", countdown(at.saturating_duration_since(now))),
        (_, Some(_), None) => "timed".to_string(),
        (_, None, _) => "on demand".to_string(),
    };
    let mut items = vec![
        Kv::new("seq", seq.map_or("—".into(), int), t.accent()),
        Kv::new("next", next, t.text()),
    ];
    if let Some(c) = client {
        let missed = c.messages.missed;
        let style = if missed.unwrap_or(0) > 0 {
            t.error()
        } else {
            t.text()
        };
        items.push(Kv::new("missed", missed.map_or("—".into(), int), style));
        items.push(Kv::new("received", int(c.messages.received), t.text()));
        // Shown once they happen: protocol messages (--ts-path/--ts-regex found no time),
        // --reply answers, and --ping round trips.
        if c.messages.ignored > 0 {
            items.push(Kv::new("protocol", int(c.messages.ignored), t.muted()));
        }
        if c.talk.replies > 0 {
            items.push(Kv::new("replied", int(c.talk.replies), t.muted()));
        }
        if c.talk.pings > 0 {
            let p99 = match c.pong_rtt_us.count {
                0 => "—".to_string(),
                _ => crate::fmt::us(c.pong_rtt_us.p99),
            };
            items.push(Kv::new("pong p99", p99, t.text()));
        }
    }
    if let Some(s) = server {
        let dropped = s.messages.dropped;
        let style = if dropped > 0 { t.warn() } else { t.text() };
        items.push(Kv::new("dropped", int(dropped), style));
        items.push(Kv::new("sent", int(s.messages.sent), t.text()));
    }
    items
}

/// The latest broadcast against what was open when it was sent: connections that open or
/// close afterwards (`+`, `-`, a dead worker) do not move its whole. Server: frames sent / open
/// when it began. Client: messages received / open when it arrived (in local mode, the
/// server's count of open connections when it began).
fn in_flight(app: &App, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let (seq, done, of) = match app.mode {
        TuiMode::Server => {
            let row = server_rows(app.server.as_ref()).last();
            (
                row.map(|r| r.seq),
                row.map_or(0, |r| r.sent),
                row.map_or(0, |r| r.open),
            )
        }
        _ => {
            let row = client_rows(app.client.as_ref()).last();
            let received = row.map_or(0, |r| r.received);
            let sent_to = row.and_then(|r| {
                server_rows(app.server.as_ref())
                    .iter()
                    .find(|s| s.seq == r.seq)
                    .map(|s| s.open)
            });
            let of = sent_to.unwrap_or_else(|| row.map_or(0, |r| r.open));
            (row.map(|r| r.seq), received, of.max(received))
        }
    };
    let ratio = if of == 0 {
        0.0
    } else {
        (done as f64 / of as f64).clamp(0.0, 1.0)
    };
    let label = match seq {
        Some(seq) => format!(
            "#{seq}: {} / {} ({:.0}%)",
            int(done),
            int(of),
            ratio * 100.0
        ),
        None => "no broadcast yet".to_string(),
    };
    Gauge::default()
        .ratio(ratio)
        .label(Span::styled(label, t.text()))
        .gauge_style(t.gauge())
        .use_unicode(true)
        .render(area, buf);
}

/// Newest first, one broadcast a row, as many as fit under a header.
fn recent(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let server = server_rows(app.server.as_ref());
    let client = client_rows(app.client.as_ref());
    let dash = || "—".to_string();
    let delivery = |r: Option<&ClientBroadcast>| {
        r.and_then(|r| r.delivery_us)
            .map_or_else(dash, |d| us(d.max(0) as u64))
    };
    let (head, rows): (&[&str], Vec<Vec<String>>) = match app.mode {
        TuiMode::Server => (
            &["seq", "sent", "dropped", "loop"],
            server
                .iter()
                .rev()
                .take(area.height as usize - 1)
                .map(|r| {
                    vec![
                        int(r.seq),
                        int(r.sent),
                        int(r.dropped),
                        us(r.duration_us.max(0) as u64),
                    ]
                })
                .collect(),
        ),
        TuiMode::Client => (
            &["seq", "received", "delivery"],
            client
                .iter()
                .rev()
                .take(area.height as usize - 1)
                .map(|r| vec![int(r.seq), int(r.received), delivery(Some(r))])
                .collect(),
        ),
        TuiMode::Local => (
            &["seq", "sent", "loop", "recv", "delivery"],
            server
                .iter()
                .rev()
                .take(area.height as usize - 1)
                .map(|r| {
                    let c = client
                        .binary_search_by_key(&r.seq, |c| c.seq)
                        .ok()
                        .map(|i| &client[i]);
                    vec![
                        int(r.seq),
                        int(r.sent),
                        us(r.duration_us.max(0) as u64),
                        c.map_or_else(dash, |c| int(c.received)),
                        delivery(c),
                    ]
                })
                .collect(),
        ),
    };
    if !rows.is_empty() {
        super::table(app, head, &rows, area, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Mode;
    use crate::ui::panes::fixtures::{app, empty, render, text};
    use std::time::{Duration, Instant};

    fn r(app: &App, area: Rect, buf: &mut Buffer) {
        super::render(app, area, buf)
    }

    fn srv(seq: u64, sent: u64, open: u64, duration_us: i64) -> ServerBroadcast {
        ServerBroadcast {
            seq,
            sent,
            dropped: 0,
            open,
            bytes: 0,
            duration_us,
            first_us: 0,
            complete: true,
        }
    }

    fn cli(seq: u64, received: u64, open: u64, delivery_us: Option<i64>) -> ClientBroadcast {
        ClientBroadcast {
            seq,
            received,
            open,
            first_recv_us: 0,
            last_recv_us: 0,
            sent_ts_us: None,
            delivery_us,
            latency_us: None,
        }
    }

    #[test]
    fn server_gauge_table_and_countdown() {
        let mut a = app(TuiMode::Server);
        let t0 = Instant::now();
        let mut s = empty(Mode::Server);
        s.connections.active = 1_000;
        s.broadcasts =
            Broadcasts::Server(vec![srv(1, 1_000, 1_000, 12_300), srv(2, 250, 1_000, 800)]);
        a.set_next_broadcast(Some(t0 + Duration::from_secs(42)));
        a.on_server(s, t0);
        let rows = text(&render(r, &a, 60, 10)).join("\n");
        for want in [
            "next",
            "in 42s",
            "#2: 250 / 1,000 (25%)",
            "loop",
            "12.3ms",
            "800µs",
        ] {
            assert!(rows.contains(want), "{want} missing in\n{rows}");
        }
        // newest first
        assert!(
            rows.find("800µs").unwrap() < rows.find("12.3ms").unwrap(),
            "{rows}"
        );
    }

    #[test]
    fn a_broadcast_is_measured_against_what_was_sent_not_what_is_open_now() {
        // Local mode: 1,000 got seq 5, then a worker holding 400 died.
        let mut a = app(TuiMode::Local);
        let t0 = Instant::now();
        let mut server = empty(Mode::Server);
        server.connections.active = 600;
        server.broadcasts = Broadcasts::Server(vec![srv(5, 1_000, 1_000, 900)]);
        let mut client = empty(Mode::Client);
        client.connections.active = 600;
        client.broadcasts = Broadcasts::Client(vec![cli(5, 1_000, 1_000, None)]);
        a.on_server(server, t0);
        a.on_client(client, t0);
        let rows = text(&render(r, &a, 60, 6)).join("\n");
        assert!(rows.contains("#5: 1,000 / 1,000 (100%)"), "{rows}");
    }

    #[test]
    fn connections_that_open_after_a_broadcast_are_not_its_whole() {
        // A server sent #1 to the 9,000 it held; `+` then took it to 10,000.
        let mut a = app(TuiMode::Server);
        let mut s = empty(Mode::Server);
        s.connections.active = 10_000;
        s.broadcasts = Broadcasts::Server(vec![srv(1, 9_000, 9_000, 900)]);
        a.on_server(s, Instant::now());
        let rows = text(&render(r, &a, 60, 6)).join("\n");
        assert!(rows.contains("#1: 9,000 / 9,000 (100%)"), "{rows}");
        // A client got #1 on the 9,000 it held, then `+` opened 1,000 more.
        let mut a = app(TuiMode::Client);
        let mut c = empty(Mode::Client);
        c.connections.active = 10_000;
        c.broadcasts = Broadcasts::Client(vec![cli(1, 9_000, 9_000, None)]);
        a.on_client(c, Instant::now());
        let rows = text(&render(r, &a, 60, 6)).join("\n");
        assert!(rows.contains("#1: 9,000 / 9,000 (100%)"), "{rows}");
    }

    #[test]
    fn on_demand_and_client_rows() {
        let mut a = app(TuiMode::Local);
        a.on_server(empty(Mode::Server), Instant::now());
        let rows = text(&render(r, &a, 60, 6)).join("\n");
        assert!(
            rows.contains("on demand") && rows.contains("no broadcast yet"),
            "{rows}"
        );

        let mut a = app(TuiMode::Client);
        let mut s = empty(Mode::Client);
        s.connections.active = 4;
        s.messages.missed = Some(2);
        s.broadcasts = Broadcasts::Client(vec![cli(9, 4, 4, Some(1_500))]);
        a.on_client(s, Instant::now());
        let buf = render(r, &a, 60, 8);
        let rows = text(&buf).join("\n");
        for want in ["#9: 4 / 4 (100%)", "delivery", "1.50ms", "missed"] {
            assert!(rows.contains(want), "{want} missing in\n{rows}");
        }

        // What a protocol preset adds: protocol messages, replies, pong round trips.
        let mut a = app(TuiMode::Client);
        let mut s = empty(Mode::Client);
        s.messages.ignored = 8;
        s.talk.replies = 12;
        s.talk.pings = 4;
        s.pong_rtt_us.count = 4;
        s.pong_rtt_us.p99 = 250;
        a.on_client(s, Instant::now());
        let rows = text(&render(r, &a, 80, 10)).join("\n");
        for want in ["protocol", "replied", "pong p99", "250µs"] {
            assert!(rows.contains(want), "{want} missing in\n{rows}");
        }
    }
}
