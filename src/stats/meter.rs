//! A Dropwizard-style meter: a count, a mean rate and 1/5/15-minute exponentially weighted moving
//! averages, ticked every 5 seconds exactly as `com.codahale.metrics.Meter` does, so the numbers
//! read like the seed's ConsoleReporter output. Time is passed in (`Instant`) rather than read, so
//! tests can drive a whole run in microseconds and the aggregator decides what "now" is.

use serde::Serialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Dropwizard's `Meter.TICK_INTERVAL` (and `EWMA.INTERVAL`).
pub const TICK_INTERVAL: Duration = Duration::from_secs(5);

/// The window `rate_now` looks back over.
const NOW_WINDOW: Duration = Duration::from_secs(1);

/// Samples kept for `rate_now`. Callers flush a few times a second, so this covers well over the
/// window; it only bounds memory if someone calls in a tight loop.
const MAX_SAMPLES: usize = 64;

/// One exponentially weighted moving average, a port of `com.codahale.metrics.EWMA`.
#[derive(Clone, Debug)]
struct Ewma {
    alpha: f64,
    /// Events per second; meaningful once `initialized`.
    rate: f64,
    uncounted: u64,
    initialized: bool,
}

impl Ewma {
    fn minutes(minutes: f64) -> Ewma {
        let interval_min = TICK_INTERVAL.as_secs_f64() / 60.0;
        Ewma {
            alpha: 1.0 - (-interval_min / minutes).exp(),
            rate: 0.0,
            uncounted: 0,
            initialized: false,
        }
    }

    fn update(&mut self, n: u64) {
        self.uncounted += n;
    }

    fn tick(&mut self) {
        let instant_rate = std::mem::take(&mut self.uncounted) as f64 / TICK_INTERVAL.as_secs_f64();
        if self.initialized {
            self.rate += self.alpha * (instant_rate - self.rate);
        } else {
            // Dropwizard seeds the average with the first interval's rate instead of ramping up
            // from zero; keep that so a steady load reads as steady from the first tick.
            self.rate = instant_rate;
            self.initialized = true;
        }
    }
}

/// What a meter reports; all rates are events per second.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MeterSnapshot {
    pub count: u64,
    /// count / seconds since the meter was created.
    pub mean: f64,
    pub m1: f64,
    pub m5: f64,
    pub m15: f64,
    /// Rate over roughly the last second, for status lines.
    pub now: f64,
}

#[derive(Clone, Debug)]
pub struct Meter {
    count: u64,
    start: Instant,
    /// Start of the current 5-second interval.
    last_tick: Instant,
    m1: Ewma,
    m5: Ewma,
    m15: Ewma,
    /// (time, count) pairs for `rate_now`; the front is the newest sample at least `NOW_WINDOW`
    /// old, or the oldest one we have.
    samples: VecDeque<(Instant, u64)>,
}

impl Meter {
    pub fn new(start: Instant) -> Meter {
        Meter {
            count: 0,
            start,
            last_tick: start,
            m1: Ewma::minutes(1.0),
            m5: Ewma::minutes(5.0),
            m15: Ewma::minutes(15.0),
            samples: VecDeque::from([(start, 0)]),
        }
    }

    /// Count `n` events in the current interval. Call [`Meter::tick_to`] first when time has
    /// moved on (or use [`Meter::mark_at`]), or the events land in an interval that has ended.
    pub fn mark(&mut self, n: u64) {
        self.count += n;
        self.m1.update(n);
        self.m5.update(n);
        self.m15.update(n);
    }

    /// Dropwizard's `mark(n)`: tick up to `now`, then count.
    pub fn mark_at(&mut self, n: u64, now: Instant) {
        self.advance(now);
        self.mark(n);
        // Sample after counting: the count at `now` includes what was marked at `now`.
        self.sample(now);
    }

    /// Dropwizard's `tickIfNecessary`: run one EWMA tick per whole 5-second interval that has
    /// passed. Events marked since the last tick all count towards the first of those ticks, the
    /// rest see zero — which is what Dropwizard does after an idle gap.
    pub fn tick_to(&mut self, now: Instant) {
        self.advance(now);
        self.sample(now);
    }

    fn advance(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.last_tick);
        if age > TICK_INTERVAL {
            let ticks = age.as_nanos() / TICK_INTERVAL.as_nanos();
            let remainder =
                Duration::from_nanos((age.as_nanos() % TICK_INTERVAL.as_nanos()) as u64);
            self.last_tick = now - remainder;
            for _ in 0..ticks {
                self.m1.tick();
                self.m5.tick();
                self.m15.tick();
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Events per second since creation; 0 before any event (Dropwizard's `getMeanRate`).
    pub fn mean_rate(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
        if self.count == 0 || elapsed <= 0.0 {
            0.0
        } else {
            self.count as f64 / elapsed
        }
    }

    /// Events per second over the last second or so (between one second and one second plus
    /// the caller's flush period), from the samples taken at each tick.
    pub fn rate_now(&self, now: Instant) -> f64 {
        let Some(&(t0, c0)) = self.samples.front() else {
            return 0.0;
        };
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        // Under a millisecond the division only produces noise.
        if dt < 0.001 {
            0.0
        } else {
            (self.count - c0) as f64 / dt
        }
    }

    /// Tick up to `now` and read everything.
    pub fn snapshot(&mut self, now: Instant) -> MeterSnapshot {
        self.tick_to(now);
        MeterSnapshot {
            count: self.count,
            mean: self.mean_rate(now),
            m1: self.m1.rate,
            m5: self.m5.rate,
            m15: self.m15.rate,
            now: self.rate_now(now),
        }
    }

    fn sample(&mut self, now: Instant) {
        match self.samples.back_mut() {
            // Time went backwards for this caller; keep the samples monotonic.
            Some(&mut (t, _)) if now < t => return,
            // Same instant: the newer count wins, no need for a second entry.
            Some((t, c)) if *t == now => *c = self.count,
            _ => self.samples.push_back((now, self.count)),
        }
        // Drop samples once a newer one is itself old enough to be the window's start.
        while self.samples.len() > 1
            && (self.samples.len() > MAX_SAMPLES
                || now.saturating_duration_since(self.samples[1].0) >= NOW_WINDOW)
        {
            self.samples.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() <= eps
    }

    /// Feed `per_sec` events each second for `secs` seconds, as an aggregator flushing once a
    /// second would.
    fn run(m: &mut Meter, t: &mut Instant, per_sec: u64, secs: u64) {
        for _ in 0..secs {
            *t += Duration::from_secs(1);
            m.mark_at(per_sec, *t);
        }
    }

    #[test]
    fn no_events_is_all_zero() {
        let t0 = Instant::now();
        let mut m = Meter::new(t0);
        let s = m.snapshot(t0 + Duration::from_secs(600));
        assert_eq!(s, MeterSnapshot::default());
        // and at the very start, where elapsed is zero
        assert_eq!(Meter::new(t0).snapshot(t0), MeterSnapshot::default());
    }

    #[test]
    fn steady_load_from_the_start_reads_steady() {
        // Dropwizard seeds each EWMA with the first interval's rate, so a constant load reads as
        // that constant on every average from the first tick on.
        let t0 = Instant::now();
        let mut m = Meter::new(t0);
        let mut t = t0;
        run(&mut m, &mut t, 100, 600);
        let s = m.snapshot(t);
        assert_eq!(s.count, 60_000);
        assert!(close(s.mean, 100.0, 1e-9), "{s:?}");
        for r in [s.m1, s.m5, s.m15] {
            assert!(close(r, 100.0, 1e-9), "{s:?}");
        }
        assert!(close(s.now, 100.0, 1e-9), "{s:?}");
    }

    #[test]
    fn averages_converge_like_dropwizard_after_an_idle_first_tick() {
        // One idle interval initialises every average to 0; then k ticks at rate r give the
        // closed form r * (1 - exp(-5k / 60 / minutes)).
        let t0 = Instant::now();
        let mut m = Meter::new(t0);
        let mut t = t0;
        run(&mut m, &mut t, 0, 5);
        run(&mut m, &mut t, 100, 600);
        let s = m.snapshot(t + Duration::from_millis(1)); // into the next interval: 121 ticks
        let k = 120.0;
        let expect = |minutes: f64| 100.0 * (1.0 - (-5.0 * k / 60.0 / minutes).exp());
        assert!(
            close(s.m1, expect(1.0), 1e-6),
            "{} vs {}",
            s.m1,
            expect(1.0)
        );
        assert!(
            close(s.m5, expect(5.0), 1e-6),
            "{} vs {}",
            s.m5,
            expect(5.0)
        );
        assert!(
            close(s.m15, expect(15.0), 1e-6),
            "{} vs {}",
            s.m15,
            expect(15.0)
        );
        // Sanity against the numbers a Dropwizard user would recognise.
        assert!(close(s.m1, 99.995, 1e-3));
        assert!(close(s.m5, 86.466, 1e-3));
        assert!(close(s.m15, 48.658, 1e-3));
    }

    #[test]
    fn matches_dropwizard_ewma_test_values() {
        // EWMATest.aOneMinuteEWMAWithAValueOfThree and friends: update(3), tick -> 0.6/s, then one
        // minute (12 ticks) of nothing.
        let t0 = Instant::now();
        let mut m = Meter::new(t0);
        m.mark(3);
        m.tick_to(t0 + TICK_INTERVAL + Duration::from_nanos(1));
        let s = m.snapshot(t0 + TICK_INTERVAL * 13 + Duration::from_nanos(1));
        assert!(close(s.m1, 0.220_727_66, 1e-8), "{}", s.m1);
        assert!(close(s.m5, 0.491_238_45, 1e-8), "{}", s.m5);
        assert!(close(s.m15, 0.561_304_19, 1e-8), "{}", s.m15);
    }

    #[test]
    fn a_long_gap_ticks_once_per_interval() {
        // 10 events, then 60 s of silence in one step: the first of 12 ticks carries the events.
        let t0 = Instant::now();
        let mut m = Meter::new(t0);
        m.mark(10);
        let s = m.snapshot(t0 + Duration::from_secs(61));
        let expect = 2.0 * (-11.0 * 5.0 / 60.0_f64).exp();
        assert!(close(s.m1, expect, 1e-9), "{} vs {expect}", s.m1);
    }

    #[test]
    fn rate_now_looks_back_about_a_second() {
        let t0 = Instant::now();
        let mut m = Meter::new(t0);
        let mut t = t0;
        // 10 flushes a second: 100/s for 5 s, then 1000/s for 2 s.
        for i in 0..70 {
            t += Duration::from_millis(100);
            m.mark_at(if i < 50 { 10 } else { 100 }, t);
        }
        assert!(close(m.rate_now(t), 1000.0, 1e-6), "{}", m.rate_now(t));
        assert!(m.samples.len() <= 12);
        // Idle for a while: the next sample shows the drop.
        t += Duration::from_secs(2);
        m.tick_to(t);
        assert!(m.rate_now(t) < 1000.0);
    }
}
