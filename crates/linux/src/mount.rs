//! `MS_*` mount flags as text, for messages and records (`bind,rec`, `ro,nosuid,nodev`).
//! Parent side only: it allocates.

/// `MS_*` as u64 (libc spells them as c_ulong, 32 bits on 32-bit targets).
#[allow(clippy::unnecessary_cast)]
const fn ms(flag: libc::c_ulong) -> u64 {
    flag as u64
}

/// Flag names in the order they are printed.
const NAMES: [(u64, &str); 15] = [
    (ms(libc::MS_BIND), "bind"),
    (ms(libc::MS_REC), "rec"),
    (ms(libc::MS_REMOUNT), "remount"),
    (ms(libc::MS_MOVE), "move"),
    (ms(libc::MS_RDONLY), "ro"),
    (ms(libc::MS_NOSUID), "nosuid"),
    (ms(libc::MS_NODEV), "nodev"),
    (ms(libc::MS_NOEXEC), "noexec"),
    (ms(libc::MS_PRIVATE), "private"),
    (ms(libc::MS_SLAVE), "slave"),
    (ms(libc::MS_SHARED), "shared"),
    (ms(libc::MS_UNBINDABLE), "unbindable"),
    (ms(libc::MS_RELATIME), "relatime"),
    (ms(libc::MS_STRICTATIME), "strictatime"),
    (ms(libc::MS_NOATIME), "noatime"),
];

/// The names of the flags set in `flags`, comma-separated; `defaults` when none is.
pub fn describe_flags(flags: u64) -> String {
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "defaults".to_string()
    } else {
        names.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_in_a_fixed_order() {
        assert_eq!(describe_flags(0), "defaults");
        let f = |v: &[libc::c_ulong]| v.iter().fold(0u64, |a, b| a | ms(*b));
        assert_eq!(
            describe_flags(f(&[libc::MS_REC, libc::MS_BIND])),
            "bind,rec"
        );
        assert_eq!(
            describe_flags(f(&[libc::MS_RDONLY, libc::MS_REMOUNT, libc::MS_BIND])),
            "bind,remount,ro"
        );
        assert_eq!(
            describe_flags(f(&[libc::MS_NOEXEC, libc::MS_NOSUID, libc::MS_NODEV])),
            "nosuid,nodev,noexec"
        );
        assert_eq!(describe_flags(f(&[libc::MS_MOVE])), "move");
    }
}
