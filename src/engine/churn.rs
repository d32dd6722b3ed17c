//! `--churn`: a share of the client's open connections leaves every second and is replaced,
//! as users come and go. A leaving connection says goodbye the way RFC 6455 asks: it sends a
//! close frame and waits for the server to close the TCP connection first, so that TIME_WAIT
//! falls on the server (one listening port, no ports to run out of) rather than on the
//! client's source ports, which a churning client would otherwise exhaust in a minute. A server
//! that does not close within [`LEAVE_TIMEOUT`] is left by the client itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a leaving connection waits for the server to close it.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Churn {
    /// Connections to replace per second, as a share of those open.
    share: f64,
    owed: f64,
    last: Instant,
    /// Where the next pick starts in the slab, so every connection takes its turn.
    pub cursor: usize,
    /// Connections that sent their close frame, and when.
    leaving: HashMap<usize, Instant>,
}

impl Churn {
    /// `share` per second; `None` when it is 0 (no churn).
    pub fn new(share: f64, now: Instant) -> Option<Churn> {
        (share > 0.0).then(|| Churn {
            share,
            owed: 0.0,
            last: now,
            cursor: 0,
            leaving: HashMap::new(),
        })
    }

    /// How many of `open` connections are to leave now.
    pub fn due(&mut self, now: Instant, open: u64) -> usize {
        let staying = open.saturating_sub(self.leaving.len() as u64);
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.owed += staying as f64 * self.share * dt;
        let n = (self.owed as u64).min(staying);
        self.owed -= n as f64;
        n as usize
    }

    pub fn leave(&mut self, key: usize, now: Instant) {
        self.leaving.insert(key, now);
    }

    pub fn is_leaving(&self, key: usize) -> bool {
        self.leaving.contains_key(&key)
    }

    /// A connection ended: whether it was one that was leaving.
    pub fn ended(&mut self, key: usize) -> bool {
        self.leaving.remove(&key).is_some()
    }

    /// Leaving connections whose server has not closed them in time.
    pub fn overdue(&self, now: Instant) -> Vec<usize> {
        self.leaving
            .iter()
            .filter(|&(_, &since)| now.saturating_duration_since(since) >= LEAVE_TIMEOUT)
            .map(|(&key, _)| key)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenth_a_second_leaves_at_a_steady_pace() {
        let t0 = Instant::now();
        let mut c = Churn::new(0.1, t0).unwrap();
        let mut left = 0;
        for step in 1..=50 {
            left += c.due(t0 + Duration::from_millis(20 * step), 10_000);
        }
        // One second at 10 % of 10,000.
        assert!((999..=1000).contains(&left), "{left}");
        assert!(Churn::new(0.0, t0).is_none());
    }

    #[test]
    fn those_leaving_are_not_picked_twice_and_time_out() {
        let t0 = Instant::now();
        let mut c = Churn::new(1.0, t0).unwrap();
        for key in 0..10 {
            c.leave(key, t0);
        }
        // 10 open, all leaving: none more is due.
        assert_eq!(c.due(t0 + Duration::from_secs(1), 10), 0);
        assert!(c.is_leaving(3));
        assert!(c.overdue(t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(c.overdue(t0 + LEAVE_TIMEOUT).len(), 10);
        assert!(c.ended(3));
        assert!(!c.ended(3));
    }
}
