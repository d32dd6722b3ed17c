//! The run's history: one point a second (connections open and wanted, setup and message
//! rates, errors, and the latency of that second), so a report, `/metrics`, a chart or the
//! console can show how the run went, not only where it ended.
//!
//! Memory is bounded: past [`MAX_POINTS`] points, neighbours are merged in pairs and new points
//! cover twice the time, so an hour keeps one-second points and a day about twenty-four-second
//! ones. A merged point's rates are the means over its time and its latency percentiles the
//! highest of the merged points (an upper bound, never an invented improvement).

use super::{ErrorClass, N_CLASSES};
use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};
use std::sync::Arc;

/// Points kept before neighbours are merged.
pub const MAX_POINTS: usize = 3600;

/// The latency of one point, µs; absent when no message was timed in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PointLatency {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl PointLatency {
    pub fn of(h: &Histogram<u64>) -> Option<PointLatency> {
        (!h.is_empty()).then(|| PointLatency {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        })
    }

    fn merge(a: Option<PointLatency>, b: Option<PointLatency>) -> Option<PointLatency> {
        match (a, b) {
            (Some(a), Some(b)) => Some(PointLatency {
                count: a.count + b.count,
                p50: a.p50.max(b.p50),
                p99: a.p99.max(b.p99),
                max: a.max.max(b.max),
            }),
            (a, b) => a.or(b),
        }
    }
}

/// Errors by class in one point. Most seconds have none, and a run keeps up to
/// [`MAX_POINTS`] points: the counts live on the heap only when there are some, so a quiet hour
/// costs 8 bytes a point here instead of 152.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClassCounts(Option<Box<[u64; N_CLASSES]>>);

impl ClassCounts {
    pub fn new(counts: [u64; N_CLASSES]) -> ClassCounts {
        ClassCounts(counts.iter().any(|&n| n > 0).then(|| Box::new(counts)))
    }

    /// The count of class `i` (an index into [`ErrorClass::ALL`]).
    pub fn get(&self, i: usize) -> u64 {
        self.0.as_ref().map_or(0, |c| c[i])
    }

    fn merge(a: &ClassCounts, b: &ClassCounts) -> ClassCounts {
        match (&a.0, &b.0) {
            (Some(_), Some(_)) => ClassCounts::new(std::array::from_fn(|i| a.get(i) + b.get(i))),
            (Some(_), None) => a.clone(),
            _ => b.clone(),
        }
    }
}

impl Serialize for ClassCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            ErrorClass::ALL
                .iter()
                .enumerate()
                .filter(|&(i, _)| self.get(i) > 0)
                .map(|(i, c)| (c.name(), self.get(i))),
        )
    }
}

/// One interval of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Point {
    /// Seconds from the start of the run to the end of this interval.
    pub t_s: f64,
    /// Seconds this point covers.
    pub dt_s: f64,
    /// Connections open at the end of the interval.
    pub open: u64,
    /// Connections wanted at the end of the interval (0 when unknown: a server).
    pub target: u64,
    /// Handshakes completed per second.
    pub setup_per_s: f64,
    /// Messages received (client) or frames written (server) per second.
    pub messages_per_s: f64,
    /// Errors counted in the interval.
    pub errors: u64,
    /// The same errors by class; the report names only the classes that occurred.
    pub errors_by_class: ClassCounts,
    /// Latency of the messages timed in the interval (client).
    pub latency_us: Option<PointLatency>,
    /// This side's resident set at the end of the interval (its process and worker
    /// processes); the larger of two when points are merged.
    pub rss_bytes: Option<u64>,
    /// The worker processes' resident sets at the end of the interval, when the side has
    /// workers; each figure the larger of two when points are merged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_rss_bytes: Option<Spread>,
}

/// Lowest, median and highest of several processes' figures: 51 workers' lines would hide
/// each other, and the three show both the typical worker and the odd one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Spread {
    pub min: u64,
    pub median: u64,
    pub max: u64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &mut [u64]) -> Option<Spread> {
        values.sort_unstable();
        Some(Spread {
            min: *values.first()?,
            median: values[values.len() / 2],
            max: *values.last()?,
        })
    }

    fn merge(a: Option<Spread>, b: Option<Spread>) -> Option<Spread> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Spread {
                min: a.min.max(b.min),
                median: a.median.max(b.median),
                max: a.max.max(b.max),
            }),
            (a, b) => a.or(b),
        }
    }
}

impl Point {
    /// One point covering `a` then `b`.
    fn merge(a: &Point, b: &Point) -> Point {
        let dt = a.dt_s + b.dt_s;
        let mean = |x: f64, y: f64| {
            if dt > 0.0 {
                (x * a.dt_s + y * b.dt_s) / dt
            } else {
                0.0
            }
        };
        Point {
            t_s: b.t_s,
            dt_s: dt,
            open: b.open,
            target: b.target,
            setup_per_s: mean(a.setup_per_s, b.setup_per_s),
            messages_per_s: mean(a.messages_per_s, b.messages_per_s),
            errors: a.errors + b.errors,
            errors_by_class: ClassCounts::merge(&a.errors_by_class, &b.errors_by_class),
            latency_us: PointLatency::merge(a.latency_us, b.latency_us),
            rss_bytes: a.rss_bytes.max(b.rss_bytes),
            worker_rss_bytes: Spread::merge(a.worker_rss_bytes, b.worker_rss_bytes),
        }
    }
}

/// The points so far. Shared with snapshots: a snapshot clones the `Arc`, not the points, and
/// the points are copied at most once a second, when one is added while a snapshot holds them.
#[derive(Clone, Debug, Default)]
pub struct History {
    points: Arc<Vec<Point>>,
    /// Seconds a new point covers before it is stored: 1, then 2, 4… after each merge.
    resolution: f64,
    /// Seconds gathered towards the next stored point at the current resolution.
    pending: Option<Point>,
}

impl History {
    pub fn new() -> History {
        History {
            points: Arc::default(),
            resolution: 1.0,
            pending: None,
        }
    }

    pub fn points(&self) -> Arc<Vec<Point>> {
        self.points.clone()
    }

    /// Adds one measured interval (normally a second).
    pub fn push(&mut self, p: Point) {
        let p = match self.pending.take() {
            Some(before) => Point::merge(&before, &p),
            None => p,
        };
        // A second closed a hair short (the timer fires a second after its last firing, and
        // the second began when that was handled) is a whole one: a strict test would hold
        // every other point back and merge it with the next.
        if p.dt_s < self.resolution * 0.75 {
            self.pending = Some(p);
            return;
        }
        let points = Arc::make_mut(&mut self.points);
        if points.len() == points.capacity() {
            // Once, to the bound: doubling would leave up to half of a megabyte-sized block
            // unused, and copy it all at each step.
            points.reserve_exact(MAX_POINTS - points.len());
        }
        points.push(p);
        if points.len() >= MAX_POINTS {
            let merged: Vec<Point> = points
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] => Point::merge(a, b),
                    [a] => a.clone(),
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            *points = merged;
            self.resolution *= 2.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(t: u64, setup: f64, p99: Option<u64>) -> Point {
        Point {
            t_s: t as f64,
            dt_s: 1.0,
            open: t * 10,
            target: 100,
            setup_per_s: setup,
            messages_per_s: 0.0,
            errors: 1,
            errors_by_class: ClassCounts::new(std::array::from_fn(|i| u64::from(i == 6))),
            rss_bytes: Some(t * 1000),
            worker_rss_bytes: Some(Spread {
                min: t,
                median: 2 * t,
                max: 3 * t,
            }),
            latency_us: p99.map(|p| PointLatency {
                count: 1,
                p50: p,
                p99: p,
                max: p,
            }),
        }
    }

    #[test]
    fn one_point_a_second_until_the_bound_then_pairs_merge() {
        let mut h = History::new();
        for t in 1..=MAX_POINTS as u64 - 1 {
            h.push(second(t, 10.0, Some(t)));
        }
        assert_eq!(h.points().len(), MAX_POINTS - 1);
        h.push(second(MAX_POINTS as u64, 30.0, None));
        let p = h.points();
        assert_eq!(p.len(), MAX_POINTS / 2);
        let last = p.last().unwrap();
        assert_eq!((last.t_s, last.dt_s), (MAX_POINTS as f64, 2.0));
        // The mean rate over the two seconds, the end's gauge, both seconds' errors, the worse
        // latency, and a second with no timing leaves the other's.
        assert_eq!(last.setup_per_s, 20.0);
        assert_eq!(last.open, MAX_POINTS as u64 * 10);
        assert_eq!(last.errors, 2);
        assert_eq!(last.errors_by_class.get(ErrorClass::Reset.index()), 2);
        let w = last.worker_rss_bytes.unwrap();
        let t = MAX_POINTS as u64;
        assert_eq!((w.min, w.median, w.max), (t, 2 * t, 3 * t));
        assert_eq!(last.latency_us.unwrap().p99, MAX_POINTS as u64 - 1);
        // From now on a stored point covers two seconds.
        h.push(second(MAX_POINTS as u64 + 1, 1.0, None));
        assert_eq!(h.points().len(), MAX_POINTS / 2);
        h.push(second(MAX_POINTS as u64 + 2, 3.0, None));
        let p = h.points();
        assert_eq!(p.len(), MAX_POINTS / 2 + 1);
        assert_eq!(
            (p.last().unwrap().dt_s, p.last().unwrap().setup_per_s),
            (2.0, 2.0)
        );
    }

    #[test]
    fn a_point_names_the_error_classes_that_occurred() {
        let json = serde_json::to_value(second(1, 0.0, None)).unwrap();
        assert_eq!(json["errors_by_class"], serde_json::json!({"reset": 1}));
        assert_eq!(json["worker_rss_bytes"]["median"], 2);
        let mut v = [5, 1, 9, 3];
        let s = Spread::of(&mut v).unwrap();
        assert_eq!((s.min, s.median, s.max), (1, 5, 9));
        assert_eq!(Spread::of(&mut []), None);
    }

    #[test]
    fn a_second_a_hair_short_is_stored_as_one() {
        let mut h = History::new();
        for t in 1..=3 {
            h.push(Point {
                dt_s: 0.9995,
                ..second(t, 1.0, None)
            });
        }
        assert_eq!(h.points().len(), 3);
    }

    #[test]
    fn a_snapshot_keeps_what_it_saw() {
        let mut h = History::new();
        h.push(second(1, 1.0, None));
        let seen = h.points();
        h.push(second(2, 1.0, None));
        assert_eq!((seen.len(), h.points().len()), (1, 2));
    }
}
