//! Go's `time.ParseDuration` syntax (`30s`, `1m30s`, `1.5h`, `300ms`), which HEALTHCHECK flags
//! use. Negative durations are rejected here: BuildKit refuses anything below 1ms anyway.

use std::time::Duration;

/// Parses a Go duration; `None` when it is not one (or is negative or overflows).
pub(crate) fn parse_go_duration(s: &str) -> Option<Duration> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.len() - a.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        let mut value = int.checked_mul(nanos_per_unit)?;
        // Fractions are scaled digit by digit, truncating like Go.
        let mut scale = nanos_per_unit;
        for d in frac_part.bytes().take(40) {
            scale /= 10;
            value = value.checked_add(u128::from(d - b'0') * scale)?;
        }
        total = total.checked_add(value)?;
        if total > i64::MAX as u128 {
            return None;
        }
        rest = after;
    }
    if negative && total > 0 {
        return None;
    }
    let nanos = u64::try_from(total).ok()?;
    Some(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("30s"), Some(ms(30_000)));
        assert_eq!(parse_go_duration("1m30s"), Some(ms(90_000)));
        assert_eq!(parse_go_duration("1.5h"), Some(ms(5_400_000)));
        assert_eq!(parse_go_duration("300ms"), Some(ms(300)));
        assert_eq!(parse_go_duration(".5s"), Some(ms(500)));
        assert_eq!(parse_go_duration("1.s"), Some(ms(1000)));
        assert_eq!(parse_go_duration("2us"), Some(Duration::from_nanos(2000)));
        assert_eq!(parse_go_duration("2µs"), Some(Duration::from_nanos(2000)));
        assert_eq!(parse_go_duration("+5s"), Some(ms(5000)));
        assert_eq!(parse_go_duration("-0s"), Some(Duration::ZERO));
        for bad in [
            "",
            "5",
            "s",
            "1x",
            ".s",
            "-5s",
            "1e3s",
            "9999999999999h",
            "1..5s",
        ] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }
}
