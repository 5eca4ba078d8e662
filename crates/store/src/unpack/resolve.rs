//! Resolving a path inside a root directory the way the kernel would inside a chroot
//! (`openat2`'s `RESOLVE_IN_ROOT`): symlinks in parent components are followed, but an
//! absolute target starts again at the root and `..` never climbs above it. The result is
//! a path relative to the root whose every component is a real directory, so writing
//! below it can never leave the root.
//!
//! This is what makes merged-/usr images work (`lib -> usr/lib`, then `lib/x.so` in a later
//! layer) without ever writing through a link to the host. The final component is never
//! followed; callers replace whatever is there.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed per resolution before giving up (Linux's limit).
const MAX_HOPS: usize = 40;

/// Why a path could not be resolved.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// A component exists and is not a directory (nor a link to one).
    NotADirectory(PathBuf),
    /// A component is missing and `create` was not asked for.
    Missing(PathBuf),
    TooManyLinks,
    Io(PathBuf, std::io::Error),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotADirectory(p) => write!(f, "/{} is not a directory", p.display()),
            Self::Missing(p) => write!(f, "/{} does not exist", p.display()),
            Self::TooManyLinks => write!(f, "too many levels of symbolic links"),
            Self::Io(p, e) => write!(f, "cannot inspect /{}: {e}", p.display()),
        }
    }
}

fn components(p: &Path) -> impl Iterator<Item = OsString> + '_ {
    p.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

/// Resolves the directory `rel` (relative to `root`) in root. Missing directories are
/// created (mode 0755) when `create` is set, and reported through `on_create` so the caller
/// can track them.
pub(crate) fn resolve_dir(
    root: &Path,
    rel: &Path,
    create: bool,
    on_create: &mut dyn FnMut(&Path),
) -> Result<PathBuf, ResolveError> {
    let mut resolved = PathBuf::new();
    let mut pending: VecDeque<OsString> = components(rel).collect();
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        if c.as_bytes() == b".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        let full = root.join(&candidate);
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => resolved = candidate,
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(ResolveError::TooManyLinks);
                }
                let target = std::fs::read_link(&full)
                    .map_err(|e| ResolveError::Io(candidate.clone(), e))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                for (i, t) in components(&target).enumerate() {
                    pending.insert(i, t);
                }
            }
            Ok(_) => return Err(ResolveError::NotADirectory(candidate)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                std::fs::create_dir(&full).map_err(|e| ResolveError::Io(candidate.clone(), e))?;
                on_create(&candidate);
                resolved = candidate;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ResolveError::Missing(candidate));
            }
            Err(e) => return Err(ResolveError::Io(candidate, e)),
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn links_resolve_inside_the_root_and_never_above_it() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::create_dir_all(outer.path().join("host")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/usr", root.join("abs")).unwrap();
        symlink("../../../../host", root.join("climb")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        std::fs::write(root.join("file"), "").unwrap();
        let mut none = |_: &Path| {};
        assert_eq!(
            resolve_dir(&root, Path::new("lib"), false, &mut none).unwrap(),
            PathBuf::from("usr/lib")
        );
        assert_eq!(
            resolve_dir(&root, Path::new("abs/lib"), false, &mut none).unwrap(),
            PathBuf::from("usr/lib")
        );
        // `..` stops at the root: "climb" means /host inside the root, which is missing.
        assert!(matches!(
            resolve_dir(&root, Path::new("climb"), false, &mut none),
            Err(ResolveError::Missing(p)) if p == Path::new("host")
        ));
        let mut made = Vec::new();
        let got = resolve_dir(&root, Path::new("climb/x"), true, &mut |p: &Path| {
            made.push(p.to_path_buf())
        })
        .unwrap();
        assert_eq!(got, PathBuf::from("host/x"));
        assert_eq!(made, [PathBuf::from("host"), PathBuf::from("host/x")]);
        assert!(
            root.join("host/x").is_dir()
                && std::fs::read_dir(outer.path().join("host"))
                    .unwrap()
                    .count()
                    == 0
        );
        assert!(matches!(
            resolve_dir(&root, Path::new("loop1"), true, &mut none),
            Err(ResolveError::TooManyLinks)
        ));
        assert!(matches!(
            resolve_dir(&root, Path::new("file/x"), true, &mut none),
            Err(ResolveError::NotADirectory(_))
        ));
    }
}
