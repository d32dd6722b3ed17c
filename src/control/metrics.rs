//! The snapshot in Prometheus' text format, through prometheus-client so names, types and
//! escaping follow the exposition format. Beside the whole run's counters it gives the last
//! second of the run's history: its rates and its latency. A latency nothing was measured for
//! has no sample, never a 0.

use crate::stats::{Broadcasts, Snapshot};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
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
    if let Some(rss) = s.memory.rss_bytes {
        let help = "Resident memory of this side's processes (workers included), bytes";
        gauge(&mut reg, "resident_memory_bytes", help, rss as i64);
    }
    latency(&mut reg, s);
    histogram(&mut reg, s);
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

/// The run's latency as a classic Prometheus histogram in seconds, over fixed buckets (four to
/// an octave), so that `histogram_quantile(0.99, sum by (le) (rate(c1m_latency_seconds_bucket
/// [1m])))` adds up every agent; no sample when nothing was timed.
fn histogram(reg: &mut Registry, s: &Snapshot) {
    if s.latency_fixed.is_empty() {
        return;
    }
    let bounds = crate::stats::prometheus_bounds();
    let mut buckets: Vec<(f64, u64)> = bounds
        .iter()
        .zip(&s.latency_fixed)
        .map(|(&b, &n)| (b as f64 / 1e6, n))
        .collect();
    buckets.push((f64::INFINITY, s.latency_fixed.last().copied().unwrap_or(0)));
    let l = &s.latency_us;
    let help = "Latency over the run, seconds (client: message latency; server: send lag)";
    reg.register(
        "latency_seconds",
        help,
        Fixed {
            sum: l.mean * l.count as f64 / 1e6,
            count: l.count,
            buckets,
        },
    );
}

/// A histogram already counted (the run's HDR histogram, bucketed): prometheus-client's own
/// records one value at a time.
#[derive(Debug)]
struct Fixed {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for Fixed {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
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

    /// What Prometheus' histogram_quantile computes from cumulative buckets: linear
    /// interpolation inside the bucket the rank falls in.
    fn histogram_quantile(q: f64, text: &str) -> f64 {
        let buckets: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("c1m_latency_seconds_bucket{le=\""))
            .map(|l| {
                let (le, n) = l.split_once("\"} ").unwrap();
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, n.trim().parse().unwrap())
            })
            .collect();
        let total = buckets.last().unwrap().1;
        let rank = q * total;
        let mut below = (0.0, 0.0);
        for &(le, n) in &buckets {
            if n >= rank {
                return below.0 + (le - below.0) * (rank - below.1) / (n - below.1);
            }
            below = (le, n);
        }
        unreachable!()
    }

    #[test]
    fn latency_is_a_histogram_prometheus_can_add_up() {
        let t0 = Instant::now();
        let mut agg = Aggregator::new(Mode::Client, 10, vec![], t0);
        let mut d = crate::stats::ShardDelta::empty(0);
        // 10,000 latencies spread from 1 ms to 100 ms, log-uniformly.
        for i in 0..10_000u32 {
            let v = 1000.0 * 100f64.powf(f64::from(i) / 10_000.0);
            d.latency.record(v as u64).unwrap();
        }
        agg.apply(d, t0);
        let s = agg.snapshot(t0);
        let text = metrics(&s, 0);
        assert!(
            text.contains("# TYPE c1m_latency_seconds histogram"),
            "{text}"
        );
        assert!(text.contains("c1m_latency_seconds_count 10000\n"), "{text}");
        assert!(
            text.contains("c1m_latency_seconds_bucket{le=\"+Inf\"} 10000\n"),
            "{text}"
        );
        // Every scrape has the same 86 buckets, whatever was measured.
        assert_eq!(text.matches("c1m_latency_seconds_bucket{").count(), 86);
        for (q, exact) in [(0.5, s.latency_us.p50), (0.99, s.latency_us.p99)] {
            let estimate = histogram_quantile(q, &text) * 1e6;
            let error = (estimate - exact as f64).abs() / exact as f64;
            // One bucket is 19 % wide; interpolation lands well inside it.
            assert!(
                error < 0.1,
                "q {q}: {estimate:.0} µs against {exact}: {error:.3}"
            );
        }
    }

    /// The Grafana dashboard in deploy/prometheus asks only for series /metrics has.
    #[test]
    fn the_dashboard_names_series_that_exist() {
        let t0 = Instant::now();
        let mut agg = Aggregator::new(Mode::Client, 10, vec![], t0);
        let mut d = crate::stats::ShardDelta::empty(0);
        d.latency.record(1000).unwrap();
        d.counters.error(crate::stats::ErrorClass::Reset);
        agg.apply(d, t0);
        agg.note_memory(crate::stats::aggregate::MemoryReading {
            rss_bytes: Some(1 << 20),
            base_rss_bytes: 0,
            grown_bytes: 0,
            open: 0,
            shared: false,
            workers: None,
        });
        let mut s = agg.snapshot(t0);
        s.series = Arc::new(vec![Point::default()]);
        let text = metrics(&s, 0);
        let dashboard = include_str!("../../deploy/prometheus/grafana-dashboard.json");
        let names: Vec<&str> = dashboard
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("c1m_"))
            .collect();
        assert!(names.len() >= 6, "{names:?}");
        for name in names {
            assert!(
                text.contains(&format!("\n{name}")),
                "{name} is not in /metrics:\n{text}"
            );
        }
    }
}
