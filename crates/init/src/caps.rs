//! Linux capability names (`CAP_NET_ADMIN`) to bit numbers and sets, for the five sets of an OCI
//! `process.capabilities`.
//!
//! Pure: no syscalls. The names are `oxkit_linux::caps`, shared with the build sandbox.
//! Unknown names are returned to the caller, which logs them once and goes on without them
//! (runc refuses them; an init must not).

use oxkit_linux::caps::number;

/// The set named by `names` as a bit mask, and the names it did not know.
pub fn set(names: Option<&[String]>) -> (u64, Vec<String>) {
    let mut bits = 0u64;
    let mut unknown = Vec::new();
    for name in names.unwrap_or_default() {
        match number(name) {
            Some(n) => bits |= 1 << n,
            None => unknown.push(name.clone()),
        }
    }
    (bits, unknown)
}

/// The five sets of a process, as bit masks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapSets {
    /// From the spec's lists; unknown names are collected (deduplicated) for one log line.
    pub fn from_spec(caps: Option<&crate::spec::Capabilities>) -> (Self, Vec<String>) {
        let Some(c) = caps else {
            return (Self::default(), Vec::new());
        };
        let mut unknown = Vec::new();
        let mut one = |names: &Option<Vec<String>>| {
            let (bits, bad) = set(names.as_deref());
            for b in bad {
                if !unknown.contains(&b) {
                    unknown.push(b);
                }
            }
            bits
        };
        let sets = Self {
            bounding: one(&c.bounding),
            effective: one(&c.effective),
            permitted: one(&c.permitted),
            inheritable: one(&c.inheritable),
            ambient: one(&c.ambient),
        };
        (sets, unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_from_runc_spec() {
        let spec = crate::spec::Spec::parse(include_str!("../tests/fixtures/runc-spec.json"))
            .expect("spec");
        let caps = spec.process.as_ref().and_then(|p| p.capabilities.as_ref());
        let (sets, unknown) = CapSets::from_spec(caps);
        assert!(unknown.is_empty());
        let expect = (1 << 29) | (1 << 5) | (1 << 10); // AUDIT_WRITE, KILL, NET_BIND_SERVICE
        assert_eq!(sets.bounding, expect);
        assert_eq!(sets.effective, expect);
        assert_eq!(sets.ambient, expect);
        // runc spec writes no inheritable set.
        assert_eq!(sets.inheritable, 0);
    }

    #[test]
    fn unknown_names_are_reported_once() {
        let c = crate::spec::Capabilities {
            bounding: Some(vec!["CAP_KILL".into(), "CAP_FLY".into()]),
            effective: Some(vec!["CAP_FLY".into()]),
            ..Default::default()
        };
        let (sets, unknown) = CapSets::from_spec(Some(&c));
        assert_eq!(sets.bounding, 1 << 5);
        assert_eq!(sets.effective, 0);
        assert_eq!(unknown, ["CAP_FLY"]);
    }
}
