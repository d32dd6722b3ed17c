//! The snapshot in Prometheus' text format, through prometheus-client so names, types and
//! escaping follow the exposition format. Beside the whole run's counters it gives the last
//! second of the run's history: its rates and its latency. A latency nothing was measured for
//! has no sample, never a 0.

use crate::stats::{Broadcasts, Snapshot};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// `unauthorized` is the endpoint's own count of requests refused for want of the token.
pub fn metrics(s: &Snapshot, unauthorized: u64) -> String {
    let mut reg = Registry::with_prefix("c1m");
    connections(&mut reg, s);
    counter(
        &mut reg,
        "control_unauthorized",
        "Control requests refused with 401 for want of the bearer token",
        unauthorized,
    );
    let errors = Family::<Labels, Counter<u64>>::default();
    for (class, n) in s.errors.by_class.iter() {
        errors
            .get_or_create(&label("class", class.name()))
            .inc_by(n);
    }
    reg.register("errors", "Failures by class", errors);
    messages(&mut reg, s);
    latency(&mut reg, s);
    last_second(&mut reg, s);
    let mut out = String::new();
    let _ = encode(&mut out, &reg);
    out
}

fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: i64) {
    reg.register(name, help, ConstGauge::new(v));
}

fn connections(reg: &mut Registry, s: &Snapshot) {
    let c = &s.connections;
    gauge(
        reg,
        "connections_active",
        "WebSocket connections open now",
        c.active as i64,
    );
    gauge(
        reg,
        "connections_peak",
        "Highest number open at once",
        c.peak as i64,
    );
    for (name, help, v) in [
        (
            "connections_established",
            "Handshakes completed",
            c.established,
        ),
        (
            "connections_failed",
            "Attempts that never completed the handshake",
            c.failed,
        ),
        (
            "connections_closed",
            "Established connections that ended",
            c.closed,
        ),
        (
            "connections_refused",
            "Upgrades answered 503 at --max-conns",
            c.refused,
        ),
    ] {
        counter(reg, name, help, v);
    }
}

fn messages(reg: &mut Registry, s: &Snapshot) {
    let m = &s.messages;
    let last_seq = match &s.broadcasts {
        Broadcasts::Server(rows) => rows.last().map(|r| r.seq),
        Broadcasts::Client(rows) => rows.last().map(|r| r.seq),
    };
    if let Some(missed) = m.missed {
        let help = "Broadcasts missed, from sequence gaps (client), when measured";
        counter(reg, "messages_missed", help, missed);
    }
    for (name, help, v) in [
        ("messages_sent", "Broadcast frames written (server)", m.sent),
        (
            "messages_dropped",
            "Broadcast frames not queued: peer not reading",
            m.dropped,
        ),
        (
            "messages_received",
            "Messages received (client)",
            m.received,
        ),
        (
            "broadcasts",
            "Latest broadcast sequence number",
            last_seq.unwrap_or(0),
        ),
    ] {
        counter(reg, name, help, v);
    }
}

/// A gauge family of latency quantiles, `(quantile, µs)`; no sample when `values` is empty.
fn quantiles(reg: &mut Registry, name: &str, help: &str, values: &[(&str, u64)]) {
    let family = Family::<Labels, Gauge<i64>>::default();
    for (q, v) in values {
        family.get_or_create(&label("quantile", q)).set(*v as i64);
    }
    reg.register(name, help, family);
}

/// The whole run's latency quantiles (client: message latency; server: send lag).
fn latency(reg: &mut Registry, s: &Snapshot) {
    let l = &s.latency_us;
    let values = match l.timed() {
        true => vec![
            ("0.5", l.p50),
            ("0.99", l.p99),
            ("0.999", l.p999),
            ("1", l.max),
        ],
        false => Vec::new(),
    };
    let help = "Latency quantiles over the run (client: message latency; server: send lag)";
    quantiles(reg, "latency_microseconds", help, &values);
}

/// The newest point of the run's history.
fn last_second(reg: &mut Registry, s: &Snapshot) {
    let Some(p) = s.series.last() else {
        return;
    };
    let rate = |v: f64| v.round() as i64;
    let setup = "Handshakes per second over the last second of the run's history";
    gauge(reg, "setup_per_second", setup, rate(p.setup_per_s));
    let msgs = "Messages (client) or frames (server) per second over the last second";
    gauge(reg, "messages_per_second", msgs, rate(p.messages_per_s));
    let values = p
        .latency_us
        .map(|l| vec![("0.5", l.p50), ("0.99", l.p99), ("1", l.max)])
        .unwrap_or_default();
    let help = "Latency quantiles of the last second of the run's history";
    quantiles(reg, "latency_last_second_microseconds", help, &values);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Mode;
    use crate::stats::aggregate::Aggregator;
    use crate::stats::history::{Point, PointLatency};
    use std::sync::Arc;
    use std::time::Instant;

    fn snapshot() -> Snapshot {
        let t0 = Instant::now();
        Aggregator::new(Mode::Client, 10, vec![], t0).snapshot(t0)
    }

    #[test]
    fn nothing_timed_has_no_latency_sample() {
        let text = metrics(&snapshot(), 0);
        assert!(!text.contains("c1m_latency_microseconds{"), "{text}");
        assert!(!text.contains("last_second"), "no history yet:\n{text}");
    }

    #[test]
    fn the_last_second_comes_from_the_history() {
        let mut s = snapshot();
        s.series = Arc::new(vec![Point {
            setup_per_s: 1200.4,
            messages_per_s: 19_000.0,
            latency_us: Some(PointLatency {
                count: 19_000,
                p50: 40_000,
                p99: 90_000,
                max: 95_000,
            }),
            ..Point::default()
        }]);
        let text = metrics(&s, 2);
        for line in [
            "c1m_setup_per_second 1200\n",
            "c1m_messages_per_second 19000\n",
            "c1m_latency_last_second_microseconds{quantile=\"0.99\"} 90000\n",
            "c1m_control_unauthorized_total 2\n",
        ] {
            assert!(text.contains(line), "{line:?} missing in\n{text}");
        }
    }
}
