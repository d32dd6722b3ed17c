//! Number and time formats shared by the panes: thousands separators, microseconds as the
//! shortest readable unit, clocks and countdowns.

use std::time::Duration;

/// `1234567` → `"1,234,567"`.
pub fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency in microseconds with three significant digits at most: `850µs`, `1.23ms`,
/// `12.3ms`, `123ms`, `1.23s`.
pub fn us(v: u64) -> String {
    let v = v as f64;
    match v {
        v if v < 1_000.0 => format!("{v:.0}µs"),
        v if v < 10_000.0 => format!("{:.2}ms", v / 1e3),
        v if v < 100_000.0 => format!("{:.1}ms", v / 1e3),
        v if v < 1_000_000.0 => format!("{:.0}ms", v / 1e3),
        v if v < 10_000_000.0 => format!("{:.2}s", v / 1e6),
        v => format!("{:.1}s", v / 1e6),
    }
}

/// A per-second rate, rounded: `20,000/s`; 0 means no limit.
pub fn rate(r: f64) -> String {
    if r <= 0.0 {
        "unlimited".into()
    } else {
        format!("{}/s", int(r.round() as u64))
    }
}

/// Seconds as a wall clock: `00:01:23`, `26:00:00`.
pub fn clock(secs: f64) -> String {
    let s = if secs.is_finite() && secs > 0.0 {
        secs as u64
    } else {
        0
    };
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// A countdown rounded up to whole seconds: `42s`, `4m05s`, `1h02m`.
pub fn countdown(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(us(850), "850µs");
        assert_eq!(us(1_234), "1.23ms");
        assert_eq!(us(12_345), "12.3ms");
        assert_eq!(us(123_456), "123ms");
        assert_eq!(us(1_234_567), "1.23s");
        assert_eq!(rate(0.0), "unlimited");
        assert_eq!(rate(20_000.0), "20,000/s");
        assert_eq!(clock(83.9), "00:01:23");
        assert_eq!(clock(f64::NAN), "00:00:00");
        assert_eq!(countdown(Duration::from_millis(41_200)), "42s");
        assert_eq!(countdown(Duration::from_secs(245)), "4m05s");
        assert_eq!(countdown(Duration::from_secs(3720)), "1h02m");
    }
}
