//! How c1m writes numbers, sizes and times for people: one module for the status line, the
//! console, the reports and `c1m doctor`, so a figure reads the same wherever it appears.
//! It imports nothing else from the crate.

use std::time::Duration;

/// What a latency reads as when nothing was measured: never `0µs`, which would claim a
/// measurement.
pub const NONE: &str = "—";

/// `1234567` → `"1,234,567"`; the kernel's "no limit" (2^63 − 1 and above) → `"max"`.
pub fn int(n: u64) -> String {
    if n >= i64::MAX as u64 {
        return "max".into();
    }
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

/// A latency or span in microseconds with at most three significant digits: `850µs`, `1.23ms`,
/// `12.3ms`, `123ms`, `1.23s`, `12.3s`.
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

/// [`us`] for a difference of two clocks, which can come out negative.
pub fn signed_us(v: i64) -> String {
    if v < 0 {
        format!("-{}", us(v.unsigned_abs()))
    } else {
        us(v as u64)
    }
}

/// [`us`], or [`NONE`] when nothing was measured.
pub fn opt_us(v: Option<u64>) -> String {
    v.map_or_else(|| NONE.to_string(), us)
}

/// Microseconds as milliseconds with one decimal (the human report's tables), [`NONE`] when
/// unknown.
pub fn ms(v: Option<i64>) -> String {
    v.map_or_else(|| NONE.to_string(), |v| format!("{:.1}", v as f64 / 1e3))
}

/// A per-second rate, rounded: `20,000/s`; 0 means no limit.
pub fn rate(r: f64) -> String {
    if r <= 0.0 {
        "unlimited".into()
    } else {
        format!("{}/s", int(r.round() as u64))
    }
}

/// Bytes in binary units with one decimal, e.g. `10.3 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A configured duration as a person writes it: `60s`, `500ms`, `1h 30m`.
pub fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
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

/// `s` cut to `max` characters, the cut marked with `…`.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    if max > 0 {
        out.push('…');
    }
    out
}

/// "127.0.0.2 … 127.0.0.11" for a long list, the list itself for one or two.
pub fn span_of(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a}, {b}"),
        [first, .., last] => format!("{first} … {last}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(2_000_100), "2,000,100");
        assert_eq!(int(i64::MAX as u64), "max");
        assert_eq!(rate(0.0), "unlimited");
        assert_eq!(rate(20_000.0), "20,000/s");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(10 << 30), "10.0 GiB");
    }

    #[test]
    fn times() {
        assert_eq!(us(850), "850µs");
        assert_eq!(us(1_234), "1.23ms");
        assert_eq!(us(12_345), "12.3ms");
        assert_eq!(us(123_456), "123ms");
        assert_eq!(us(1_234_567), "1.23s");
        assert_eq!(us(13_900_000), "13.9s");
        assert_eq!(signed_us(-1_234), "-1.23ms");
        assert_eq!(opt_us(None), "—");
        assert_eq!(ms(Some(14_800_000)), "14800.0");
        assert_eq!(ms(None), "—");
        assert_eq!(duration(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(clock(83.9), "00:01:23");
        assert_eq!(clock(f64::NAN), "00:00:00");
        assert_eq!(countdown(Duration::from_millis(41_200)), "42s");
        assert_eq!(countdown(Duration::from_secs(245)), "4m05s");
        assert_eq!(countdown(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn text() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        assert_eq!(clip("abc", 0), "");
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(span_of(&names), "a … c");
        assert_eq!(span_of(&names[..2]), "a, b");
    }
}
