//! The cgroup layout (v1, v2 or hybrid), read from the mount table. Informational: oxkit's
//! sandbox does not use cgroups, but runc/crun and resource limits do.

use std::fs;

use super::{Check, Status};

/// How cgroups are mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup2 at /sys/fs/cgroup.
    Unified,
    /// v1 controllers, and cgroup2 at /sys/fs/cgroup/unified.
    Hybrid {
        controllers: Vec<String>,
    },
    /// v1 controllers only.
    Legacy {
        controllers: Vec<String>,
    },
    NotMounted,
}

/// Classifies `/proc/self/mountinfo` text.
pub fn cgroup_layout(mountinfo: &str) -> CgroupLayout {
    let mut v2_root = false;
    let mut v2_unified = false;
    let mut controllers = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let fstype = right.next().unwrap_or("");
        let super_opts = right.nth(1).unwrap_or("");
        match fstype {
            "cgroup2" if mount_point == "/sys/fs/cgroup" => v2_root = true,
            "cgroup2" if mount_point == "/sys/fs/cgroup/unified" => v2_unified = true,
            "cgroup" => {
                let known = super_opts.split(',').filter(|o| {
                    !matches!(*o, "rw" | "ro") && !o.starts_with("name=") && !o.contains('=')
                });
                let names: Vec<&str> = known.collect();
                if names.is_empty() {
                    if let Some(n) = super_opts.split(',').find_map(|o| o.strip_prefix("name=")) {
                        controllers.push(format!("name={n}"));
                    }
                } else {
                    controllers.extend(names.into_iter().map(String::from));
                }
            }
            _ => {}
        }
    }
    controllers.sort();
    controllers.dedup();
    match (v2_root, controllers.is_empty(), v2_unified) {
        (true, _, _) => CgroupLayout::Unified,
        (false, false, true) => CgroupLayout::Hybrid { controllers },
        (false, false, false) => CgroupLayout::Legacy { controllers },
        (false, true, _) => CgroupLayout::NotMounted,
    }
}

pub(super) fn check() -> Check {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let summary = match cgroup_layout(&text) {
        CgroupLayout::Unified => "cgroup v2 (unified) at /sys/fs/cgroup".to_string(),
        CgroupLayout::Hybrid { controllers } => format!(
            "hybrid: cgroup v1 controllers ({}) with cgroup2 at /sys/fs/cgroup/unified",
            controllers.join(", ")
        ),
        CgroupLayout::Legacy { controllers } => {
            format!("cgroup v1 only ({})", controllers.join(", "))
        }
        CgroupLayout::NotMounted => "no cgroup filesystem mounted".to_string(),
    };
    Check::new(
        "cgroups",
        Status::Info,
        format!("{summary}; oxkit's sandbox does not need cgroups"),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on this project's CI machine (Debian 12, hybrid layout).
    const HYBRID: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const UNIFIED: &str = "\
25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn layouts_are_told_apart() {
        assert_eq!(
            cgroup_layout(HYBRID),
            CgroupLayout::Hybrid {
                controllers: vec!["cpu".into(), "memory".into(), "name=systemd".into()]
            }
        );
        assert_eq!(cgroup_layout(UNIFIED), CgroupLayout::Unified);
        let legacy: String = HYBRID
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(matches!(
            cgroup_layout(&legacy),
            CgroupLayout::Legacy { .. }
        ));
        assert_eq!(cgroup_layout(""), CgroupLayout::NotMounted);
    }
}
