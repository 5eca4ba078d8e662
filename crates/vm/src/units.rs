//! Parsers for the human units `oxkit run qemu` takes: memory sizes (`1024M`, `2G`) and
//! durations (`90s`, `2m`, `1m30s`, `500ms`). Pure; they never guess a unit they cannot name.

use std::time::Duration;

use crate::error::VmError;

/// Largest guest memory accepted (1 TiB), so a typo cannot ask QEMU for an absurd allocation.
const MAX_MEMORY_MIB: u64 = 1024 * 1024;

/// A memory size in MiB: a number with an optional `M`/`MB`/`MiB` or `G`/`GB`/`GiB` suffix
/// (case-insensitive); a bare number means MiB, as with QEMU's `-m` and LinuxKit's `-mem`.
pub fn parse_memory_mib(value: &str) -> Result<u32, VmError> {
    let invalid = || VmError::InvalidMemory(value.to_string());
    let trimmed = value.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: u64 = digits.parse().map_err(|_| invalid())?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => 1,
        "g" | "gb" | "gib" => 1024,
        _ => return Err(invalid()),
    };
    let mib = number.checked_mul(factor).ok_or_else(invalid)?;
    if mib == 0 || mib > MAX_MEMORY_MIB {
        return Err(invalid());
    }
    u32::try_from(mib).map_err(|_| invalid())
}

/// A duration: one or more `NUMBER UNIT` groups with units `ms`, `s`, `m`, `h` (`1m30s`,
/// `1.5h`, `500ms`), or a bare number of seconds. Zero is refused: a timeout of nothing would
/// kill every VM at once.
pub fn parse_duration(value: &str) -> Result<Duration, VmError> {
    let invalid = || VmError::InvalidDuration(value.to_string());
    let text = value.trim();
    if text.is_empty() {
        return Err(invalid());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return positive(Duration::from_secs(secs)).ok_or_else(invalid);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (num, after) = rest.split_at(num_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let number: f64 = num.parse().map_err(|_| invalid())?;
        let seconds_per_unit = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        let part = Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|_| invalid())?;
        total = total.checked_add(part).ok_or_else(invalid)?;
        rest = next;
    }
    positive(total).ok_or_else(invalid)
}

fn positive(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory_mib("1024M").ok(), Some(1024));
        assert_eq!(parse_memory_mib("512").ok(), Some(512));
        assert_eq!(parse_memory_mib("2G").ok(), Some(2048));
        assert_eq!(parse_memory_mib("3gib").ok(), Some(3072));
        assert_eq!(parse_memory_mib("256MiB").ok(), Some(256));
    }

    #[test]
    fn memory_rejects_nonsense() {
        for bad in [
            "",
            "0",
            "0M",
            "M",
            "1T",
            "12K",
            "-5",
            "1.5G",
            "99999999999G",
            "2048G",
        ] {
            let err = parse_memory_mib(bad).expect_err(bad);
            assert!(err.to_string().contains("--mem"), "{bad}: {err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("500ms").ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_duration("1.5h").ok(), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 10s ").ok(), Some(Duration::from_secs(10)));
    }

    #[test]
    fn durations_reject_nonsense() {
        for bad in [
            "",
            "0",
            "0s",
            "s",
            "10x",
            "1d",
            "-3s",
            "1..5s",
            "1e9999h",
            "ten seconds",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.to_string().contains("--timeout"), "{bad}: {err}");
        }
    }
}
