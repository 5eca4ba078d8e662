//! Removal of the mount points a run had to create, once the builder no longer needs them: the
//! counterpart of BuildKit's mount-stub cleaner. Only empty directories and empty files are
//! removed, so anything the step itself wrote stays.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::SandboxError;
use crate::rootpath;

/// Removes `created` (from [`crate::RunOutcome::created_mountpoints`]) from `rootfs`, children
/// first, keeping any that are no longer empty or that a symlink now redirects elsewhere.
/// Returns the paths removed.
pub fn remove_mount_stubs(
    rootfs: &Path,
    created: &[PathBuf],
) -> Result<Vec<PathBuf>, SandboxError> {
    let mut removed = Vec::new();
    for inner in created.iter().rev() {
        let Some(inner_str) = inner.to_str() else {
            continue;
        };
        let expected = rootpath::host_path(rootfs, inner);
        // A step may have replaced a parent with a symlink: never follow it out of the root.
        if rootpath::resolve(rootfs, inner_str)? != expected {
            continue;
        }
        let meta = match fs::symlink_metadata(&expected) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SandboxError::io("inspecting", &expected, e)),
        };
        let result = if meta.is_dir() {
            fs::remove_dir(&expected)
        } else if meta.is_file() && meta.len() == 0 {
            fs::remove_file(&expected)
        } else {
            continue;
        };
        match result {
            Ok(()) => removed.push(inner.clone()),
            // Not empty: the step put something there.
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
            Err(e) => return Err(SandboxError::io("removing mount point", &expected, e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_stubs_go_and_used_ones_stay() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        for d in ["proc", "run", "run/cache"] {
            fs::create_dir(root.join(d)).expect("dir");
        }
        fs::write(root.join("run/kept"), "data").expect("file");
        fs::write(root.join("hosts"), "").expect("file");
        let created: Vec<PathBuf> = ["/proc", "/run", "/run/cache", "/hosts", "/gone"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let removed = remove_mount_stubs(root, &created).expect("ok");
        assert_eq!(
            removed,
            [PathBuf::from("/hosts"), "/run/cache".into(), "/proc".into()]
        );
        assert!(root.join("run/kept").exists());
        assert!(!root.join("proc").exists());
    }

    #[test]
    fn symlinked_parents_are_not_followed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(outside.join("cache")).expect("outside");
        fs::create_dir(&root).expect("root");
        std::os::unix::fs::symlink(&outside, root.join("run")).expect("link");
        let removed = remove_mount_stubs(&root, &[PathBuf::from("/run/cache")]).expect("ok");
        assert!(removed.is_empty());
        assert!(outside.join("cache").exists());
    }
}
