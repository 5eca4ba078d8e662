//! Resolving a container path (`/etc/resolv.conf`) to the host path it names inside a root
//! filesystem, following symlinks as if the rootfs were `/`: an absolute link target or `..`
//! never leaves the rootfs. This is what keeps a mount destination that is a symlink in the
//! image (LinuxKit images link `/etc/resolv.conf` to `/run/...`) from landing on the host.
//!
//! Reads symlinks only; creates nothing.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// More links than this in one resolution means a loop (Linux's own limit).
const MAX_LINKS: usize = 40;

/// The host path `path` names inside `root`. Components that do not exist are appended as
/// they are; a symlink loop stops resolution where it was found.
pub fn resolve(root: &Path, path: &str) -> PathBuf {
    // Components still to walk, in reverse order so that pop() gives the next one.
    let mut pending: Vec<Vec<u8>> = components(path.as_bytes());
    pending.reverse();
    let mut resolved: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == b".." {
            resolved.pop();
            continue;
        }
        let candidate = join(root, &resolved).join(OsStr::from_bytes(&part));
        match std::fs::read_link(&candidate) {
            Ok(target) if links < MAX_LINKS => {
                links += 1;
                let target = target.as_os_str().as_bytes();
                if target.starts_with(b"/") {
                    resolved.clear();
                }
                let mut more = components(target);
                more.reverse();
                pending.extend(more);
            }
            _ => resolved.push(part),
        }
    }
    join(root, &resolved)
}

fn components(path: &[u8]) -> Vec<Vec<u8>> {
    Path::new(OsStr::from_bytes(path))
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes().to_vec()),
            Component::ParentDir => Some(b"..".to_vec()),
            _ => None,
        })
        .collect()
}

fn join(root: &Path, parts: &[Vec<u8>]) -> PathBuf {
    let mut p = root.to_path_buf();
    for part in parts {
        p.push(OsStr::from_bytes(part));
    }
    p
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).expect("etc");
        std::fs::create_dir_all(r.join("run/resolvconf")).expect("run");
        symlink("/run/resolvconf/resolv.conf", r.join("etc/resolv.conf")).expect("link");
        symlink("../../..", r.join("run/resolvconf/up")).expect("link");
        symlink("/etc", r.join("etc2")).expect("link");
        symlink("loop", r.join("loop")).expect("link");

        assert_eq!(
            resolve(r, "/etc/resolv.conf"),
            r.join("run/resolvconf/resolv.conf")
        );
        assert_eq!(resolve(r, "/run/resolvconf/up/etc"), r.join("etc"));
        assert_eq!(resolve(r, "/../../etc"), r.join("etc"));
        assert_eq!(resolve(r, "/etc2/hosts"), r.join("etc/hosts"));
        assert_eq!(resolve(r, "/missing/deeper"), r.join("missing/deeper"));
        assert_eq!(resolve(r, "/"), r.to_path_buf());
        assert_eq!(resolve(r, "loop/x"), r.join("loop/x"));
    }
}
