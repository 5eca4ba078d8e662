//! Linux capability sets by name (the names are `oxkit_linux::caps`, shared with the init), and
//! Docker's default set for build steps. Pure data: applying a set is the child's job (see
//! `plan.rs`).

use std::fmt;

use oxkit_linux::caps::{NAMES, number};

/// Docker's (and BuildKit's) default capabilities for containers and `RUN` steps: what `apt`,
/// `useradd`, `chown` and friends need, and nothing that administers the host.
const DOCKER_DEFAULT: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SYS_CHROOT",
    "MKNOD",
    "AUDIT_WRITE",
    "SETFCAP",
];

/// A set of capabilities (a bit per capability number, as in `/proc/self/status`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capabilities(u64);

/// A capability name oxkit does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown capability {name:?}: expected a name such as CAP_CHOWN or NET_ADMIN (see capabilities(7))"
)]
pub struct CapabilityError {
    pub name: String,
}

impl Capabilities {
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Every capability this crate knows (`RUN --security=insecure`).
    pub const fn all() -> Self {
        Self((1u64 << NAMES.len()) - 1)
    }

    /// CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE,
    /// NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
    pub fn docker_default() -> Self {
        let mut set = Self::empty();
        for name in DOCKER_DEFAULT {
            if let Some(n) = number(name) {
                set.0 |= 1 << n;
            }
        }
        set
    }

    /// Parses names with or without the `CAP_` prefix, in any case (`CAP_NET_ADMIN`, `sys_admin`).
    pub fn from_names<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, CapabilityError> {
        let mut set = Self::empty();
        for name in names {
            set.insert(name)?;
        }
        Ok(set)
    }

    /// Adds one capability by name.
    pub fn insert(&mut self, name: &str) -> Result<(), CapabilityError> {
        let n = number(name.trim()).ok_or_else(|| CapabilityError {
            name: name.to_string(),
        })?;
        self.0 |= 1 << n;
        Ok(())
    }

    /// The set from its bits (`CapBnd:` in `/proc/PID/status` is this in hex).
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether capability number `cap` is in the set.
    pub fn contains_number(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1 << cap) != 0
    }

    /// `CAP_`-prefixed names, in capability-number order.
    pub fn names(self) -> Vec<String> {
        NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| format!("CAP_{n}"))
            .collect()
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::docker_default()
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_default_matches_the_documented_mask() {
        // `CapBnd` of a `docker run` container on a stock Docker: 00000000a80425fb.
        assert_eq!(Capabilities::docker_default().bits(), 0xa80425fb);
        assert_eq!(Capabilities::docker_default().names().len(), 14);
    }

    #[test]
    fn names_parse_with_or_without_prefix() {
        let set = Capabilities::from_names(["CAP_NET_ADMIN", "sys_admin"]).expect("known");
        assert!(set.contains_number(12));
        assert!(set.contains_number(21));
        assert_eq!(set.names(), ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]);
        let err = Capabilities::from_names(["CAP_FLY"]).expect_err("unknown");
        assert!(err.to_string().contains("CAP_FLY"));
    }

    #[test]
    fn all_covers_every_known_capability() {
        assert_eq!(Capabilities::all().names().len(), NAMES.len());
        assert!(Capabilities::all().contains_number(40));
        assert!(!Capabilities::all().contains_number(41));
    }
}
