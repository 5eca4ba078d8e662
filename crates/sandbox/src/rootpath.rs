//! Paths inside a root filesystem, resolved the way the container will see them: symlinks are
//! followed with absolute targets taken relative to the root and `..` clamped at it, so a hostile
//! image (`/etc/hosts -> /etc/shadow`, `/proc -> ../../..`) can never make the sandbox create
//! or mount anything outside its root filesystem. Also creates missing mount points and records
//! them. Runs in the parent, before any namespace exists; it must not mount anything.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::SandboxError;

/// Same limit as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: u32 = 40;

/// What a missing mount point should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
}

/// `path` (absolute, as the container sees it) resolved to a host path under `root`. Missing
/// trailing components are appended as written.
pub(crate) fn resolve(root: &Path, path: &str) -> Result<PathBuf, SandboxError> {
    walk(root, path, None, &mut Vec::new())
}

/// Like [`resolve`], but creates what is missing: directories for intermediate components, and
/// `kind` for the last one. Created paths (as the container sees them) are appended to
/// `created`, parents first.
pub(crate) fn ensure(
    root: &Path,
    path: &str,
    kind: Kind,
    created: &mut Vec<PathBuf>,
) -> Result<PathBuf, SandboxError> {
    walk(root, path, Some(kind), created)
}

/// The host path of container path `inner` (already free of symlinks and `..`).
pub(crate) fn host_path(root: &Path, inner: &Path) -> PathBuf {
    root.join(inner.strip_prefix("/").unwrap_or(inner))
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn walk(
    root: &Path,
    path: &str,
    create: Option<Kind>,
    created: &mut Vec<PathBuf>,
) -> Result<PathBuf, SandboxError> {
    let unsafe_path = |reason| SandboxError::UnsafePath {
        rootfs: root.to_path_buf(),
        path: path.to_string(),
        reason,
    };
    if !path.starts_with('/') {
        return Err(unsafe_path("must be an absolute path"));
    }
    let mut current = PathBuf::from("/");
    let mut pending = components(Path::new(path));
    let mut links = 0;
    while let Some(comp) = pending.pop_front() {
        if comp == ".." {
            current.pop();
            continue;
        }
        let candidate = current.join(&comp);
        let host = host_path(root, &candidate);
        match fs::symlink_metadata(&host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(unsafe_path("too many levels of symbolic links"));
                }
                let target = fs::read_link(&host)
                    .map_err(|e| SandboxError::io("reading symbolic link", &host, e))?;
                if target.is_absolute() {
                    current = PathBuf::from("/");
                }
                let mut next = components(&target);
                next.extend(pending);
                pending = next;
            }
            Ok(meta) => {
                if !pending.is_empty() && !meta.is_dir() {
                    return Err(unsafe_path("a parent component is not a directory"));
                }
                current = candidate;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match create {
                None => {
                    current = candidate;
                    for rest in pending.drain(..) {
                        if rest == ".." {
                            current.pop();
                        } else {
                            current.push(rest);
                        }
                    }
                }
                Some(kind) => {
                    let made = if pending.is_empty() && kind == Kind::File {
                        fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(0o644)
                            .open(&host)
                            .map(drop)
                    } else {
                        fs::DirBuilder::new().mode(0o755).create(&host)
                    };
                    match made {
                        Ok(()) => {
                            created.push(candidate.clone());
                            current = candidate;
                        }
                        // Someone else created it meanwhile: look at it again, it is not ours.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            pending.push_front(comp);
                        }
                        Err(e) => return Err(SandboxError::io("creating mount point", &host, e)),
                    }
                }
            },
            Err(e) => return Err(SandboxError::io("inspecting", &host, e)),
        }
    }
    Ok(host_path(root, &current))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn absolute_symlinks_stay_inside_the_root() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        fs::create_dir_all(root.join("etc")).expect("etc");
        symlink("/etc/shadow", root.join("etc/hosts")).expect("link");
        symlink("../../../../..", root.join("up")).expect("link");
        assert_eq!(
            resolve(root, "/etc/hosts").expect("ok"),
            root.join("etc/shadow")
        );
        assert_eq!(resolve(root, "/up/etc").expect("ok"), root.join("etc"));
        assert_eq!(resolve(root, "/../../x").expect("ok"), root.join("x"));
    }

    #[test]
    fn ensure_creates_parents_then_the_leaf_and_reports_them() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        fs::create_dir(root.join("etc")).expect("etc");
        let mut created = Vec::new();
        let host = ensure(root, "/run/secrets/token", Kind::File, &mut created).expect("ok");
        assert_eq!(host, root.join("run/secrets/token"));
        assert!(host.is_file());
        assert_eq!(
            created,
            [
                PathBuf::from("/run"),
                "/run/secrets".into(),
                "/run/secrets/token".into()
            ]
        );
        // Existing paths are not reported again.
        let mut again = Vec::new();
        ensure(root, "/run/secrets/token", Kind::File, &mut again).expect("ok");
        ensure(root, "/etc", Kind::Dir, &mut again).expect("ok");
        assert!(again.is_empty());
    }

    #[test]
    fn ensure_follows_a_dangling_symlink_inside_the_root() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        fs::create_dir(root.join("etc")).expect("etc");
        // Debian's resolvconf layout.
        symlink(
            "../run/resolvconf/resolv.conf",
            root.join("etc/resolv.conf"),
        )
        .expect("link");
        let mut created = Vec::new();
        let host = ensure(root, "/etc/resolv.conf", Kind::File, &mut created).expect("ok");
        assert_eq!(host, root.join("run/resolvconf/resolv.conf"));
        assert_eq!(
            created,
            [
                PathBuf::from("/run"),
                "/run/resolvconf".into(),
                "/run/resolvconf/resolv.conf".into()
            ]
        );
    }

    #[test]
    fn loops_and_files_as_directories_are_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        symlink("/a", root.join("b")).expect("link");
        symlink("/b", root.join("a")).expect("link");
        let err = resolve(root, "/a/x").expect_err("loop");
        assert!(err.to_string().contains("symbolic links"), "{err}");
        fs::write(root.join("file"), "").expect("file");
        let err = ensure(root, "/file/sub", Kind::Dir, &mut Vec::new()).expect_err("not a dir");
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert!(resolve(root, "relative").is_err());
    }
}
