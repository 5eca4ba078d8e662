//! Linux capability names and numbers (`include/uapi/linux/capability.h`). Pure data: which
//! sets a process gets is the caller's policy.

/// Capability names without the `CAP_` prefix, indexed by number (`CHOWN` is 0), up to
/// Linux 5.9's `CHECKPOINT_RESTORE`.
pub const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The number of capability `name`: with or without the `CAP_` prefix, in any case
/// (`CAP_NET_ADMIN`, `sys_admin`). `None` for a name this table does not know.
pub fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES
        .iter()
        .position(|n| *n == bare)
        .and_then(|p| u32::try_from(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("cap_sys_admin"), Some(21));
        assert_eq!(number("SYS_BOOT"), Some(22));
        assert_eq!(number("net_admin"), Some(12));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_FLY"), None);
        assert_eq!(number("CAP_"), None);
        assert_eq!(number(""), None);
    }

    #[test]
    fn every_name_is_its_own_number() {
        for (i, name) in NAMES.iter().enumerate() {
            assert_eq!(number(name), u32::try_from(i).ok(), "{name}");
            assert_eq!(
                number(&format!("cap_{name}")),
                u32::try_from(i).ok(),
                "{name}"
            );
        }
    }
}
