//! RFC 3339 date-times (`2026-11-29T15:00:00.123Z`), the text form of a time most servers reach
//! for first (`new Date().toISOString()`, `datetime.isoformat()`), read without allocating.
//!
//! Accepted: `T`, `t` or a space between date and time; a fraction of any length, kept to the
//! microsecond; `Z`, `z`, `+HH:MM`, `-HH:MM` or `+HHMM`. No offset at all (Python's
//! `datetime.utcnow().isoformat()`) is read as UTC: a local time would land hours away and be
//! counted as skewed, not timed.

/// Whether `s` starts like a date (`YYYY-`), so a number parser should not try it.
pub fn looks_like_date(s: &[u8]) -> bool {
    matches!(s, [a, b, c, d, b'-', ..] if [a, b, c, d].iter().all(|x| x.is_ascii_digit()))
}

/// Microseconds since the Unix epoch; `None` if `s` is not a date-time.
pub fn parse(s: &[u8]) -> Option<i64> {
    let n = |from: usize, len: usize| -> Option<i64> {
        let digits = s.get(from..from + len)?;
        digits.iter().try_fold(0i64, |acc, &b| match b {
            b'0'..=b'9' => Some(acc * 10 + i64::from(b - b'0')),
            _ => None,
        })
    };
    let at = |i: usize, want: &[u8]| s.get(i).is_some_and(|b| want.contains(b));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (n(0, 4)?, n(5, 2)?, n(8, 2)?);
    let (hour, min, sec) = (n(11, 2)?, n(14, 2)?, n(17, 2)?);
    // 60 is a leap second, which Unix time folds into the next.
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut pos = 19;
    let mut micros = 0i64;
    if at(pos, b".,") {
        pos += 1;
        let digits = s[pos..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        micros = n(pos, digits.min(6))? * 10i64.pow(6 - digits.min(6) as u32);
        pos += digits;
    }
    let offset_s = match s.get(pos..).unwrap_or_default() {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let field = |x: u8, y: u8| -> Option<i64> {
                match (x, y) {
                    (b'0'..=b'9', b'0'..=b'9') => Some(i64::from((x - b'0') * 10 + (y - b'0'))),
                    _ => None,
                }
            };
            let secs = field(*h1, *h2)? * 3600 + field(*m1, *m2)? * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    Some(secs * 1_000_000 + micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_servers_write() {
        // 2026-11-29T15:00:00Z, checked with `date -ud @1795964400`.
        let base = 1_795_964_400_000_000;
        let cases: &[(&str, i64)] = &[
            ("2026-11-29T15:00:00Z", base),
            ("2026-11-29T15:00:00.123Z", base + 123_000),
            ("2026-11-29t15:00:00.123456789z", base + 123_456),
            ("2026-11-29 15:00:00.5", base + 500_000),
            ("2026-11-29T16:00:00+01:00", base),
            ("2026-11-29T10:30:00.000-0430", base),
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T00:00:00Z", 951_782_400_000_000),
        ];
        for &(text, want) in cases {
            assert_eq!(parse(text.as_bytes()), Some(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_date_time() {
        for text in [
            "2026-11-29",
            "2026-13-01T00:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T15:00:00.Z",
            "2026-11-29T15:00:00+1",
            "2026-11-29T15:00:00Zjunk",
            "2026/11/29T15:00:00Z",
            "2026-11-29T15:0a:00Z",
        ] {
            assert_eq!(parse(text.as_bytes()), None, "{text}");
        }
        assert!(looks_like_date(b"2026-"));
        assert!(!looks_like_date(b"1764000000"));
    }
}
