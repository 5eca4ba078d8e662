//! File-system helpers for a stage's root filesystem: container paths cleaned like Go's
//! `path.Clean`, paths resolved inside a root with symlinks followed but never out of it
//! (BuildKit's scoped resolution), directories created with an owner, and removal of trees a
//! build made (even when a step left read-only directories behind).
//!
//! Nothing here knows about layers or instructions.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{StepError, io_step};

/// How many symlinks one resolution may follow (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// Cleans an absolute container path: `/a/./b/../c/` is `/a/c`; `..` never climbs above `/`.
pub(crate) fn clean_abs(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = String::from("/");
    out.push_str(&parts.join("/"));
    out
}

/// `path` made absolute against `workdir` (BuildKit resolves relative COPY destinations,
/// WORKDIR and mount targets this way), then cleaned. A trailing slash is kept, because it
/// decides whether a COPY destination is a directory.
pub(crate) fn absolute(workdir: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!(
            "{}/{}",
            if workdir.is_empty() { "/" } else { workdir },
            path
        )
    };
    let mut cleaned = clean_abs(&joined);
    let wants_dir = path.ends_with('/') || path.ends_with("/.") || path == "." || path.is_empty();
    if wants_dir && !cleaned.ends_with('/') {
        cleaned.push('/');
    }
    cleaned
}

/// The host path for container path `path` in `root`, with symlinks in it resolved inside
/// `root` (an absolute link target starts again at `root`; `..` stops at `root`). The last
/// component is followed only when `follow_last`. Missing components are kept as written, so
/// the result may not exist.
pub(crate) fn resolve_in_root(
    root: &Path,
    path: &str,
    follow_last: bool,
) -> Result<PathBuf, StepError> {
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .rev()
        .map(str::to_string)
        .collect();
    let mut current: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = todo.pop() {
        if comp == ".." {
            current.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(current.iter());
        candidate.push(&comp);
        let is_last = todo.is_empty();
        let meta = match fs::symlink_metadata(&candidate) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                current.push(comp);
                continue;
            }
            Err(e) => return Err(io_step("inspect", &candidate)(e)),
        };
        if meta.file_type().is_symlink() && (!is_last || follow_last) {
            hops += 1;
            if hops > MAX_SYMLINKS {
                return Err(StepError::new(format!(
                    "too many levels of symbolic links resolving {path:?} in the stage's filesystem"
                )));
            }
            let target = fs::read_link(&candidate).map_err(io_step("read link", &candidate))?;
            let target = target.to_string_lossy().into_owned();
            if target.starts_with('/') {
                current.clear();
            }
            for c in target.split('/').rev() {
                if !c.is_empty() && c != "." {
                    todo.push(c.to_string());
                }
            }
            continue;
        }
        current.push(comp);
    }
    let mut out = root.to_path_buf();
    out.extend(current.iter());
    Ok(out)
}

/// Creates `dir` (a host path inside a root) and its missing parents with `mode`, owned by
/// `owner` when given. Returns the directories created, parents first.
pub(crate) fn mkdir_all(
    dir: &Path,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<Vec<PathBuf>, StepError> {
    let mut missing = Vec::new();
    let mut cur = dir.to_path_buf();
    loop {
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(StepError::new(format!(
                    "cannot create directory {}: a file of another kind is in the way",
                    cur.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(cur.clone());
                if !cur.pop() {
                    break;
                }
            }
            Err(e) => return Err(io_step("inspect", &cur)(e)),
        }
    }
    missing.reverse();
    for d in &missing {
        fs::DirBuilder::new()
            .mode(mode)
            .create(d)
            .map_err(io_step("create directory", d))?;
        // The umask may have cut bits off.
        fs::set_permissions(d, fs::Permissions::from_mode(mode))
            .map_err(io_step("set permissions of", d))?;
        if let Some((uid, gid)) = owner {
            chown(d, uid, gid)?;
        }
    }
    Ok(missing)
}

/// `lchown`, skipped (not failed) without root when the owner is already ours; without root
/// other owners cannot be set, and the layer records them from the step's bookkeeping instead.
pub(crate) fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), StepError> {
    let r = rustix::fs::chownat(
        rustix::fs::CWD,
        path,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    );
    match r {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::PERM) if !is_root() => Ok(()),
        Err(e) => Err(io_step("change the owner of", path)(e.into())),
    }
}

/// Whether this process runs as root (owners and devices can then be set for real).
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Removes a tree the build made. Steps may leave directories without write permission,
/// which `remove_dir_all` cannot empty without root: make them writable and try again.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(path);
            fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            make_writable(&e.path());
        }
    }
}

/// A directory removed (with [`remove_tree`]) when dropped.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates a fresh directory `prefix-XXXX` under `parent`.
    pub(crate) fn new_in(parent: &Path, prefix: &str) -> io::Result<Self> {
        fs::create_dir_all(parent)?;
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
        Ok(Self { path: dir.keep() })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.path) {
            tracing::warn!("cannot remove {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn clean_and_absolute() {
        assert_eq!(clean_abs("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_abs("../../x"), "/x");
        assert_eq!(clean_abs(""), "/");
        assert_eq!(absolute("/app", "x"), "/app/x");
        assert_eq!(absolute("/app", "x/"), "/app/x/");
        assert_eq!(absolute("/app", "."), "/app/");
        assert_eq!(absolute("/", "/etc/../opt"), "/opt");
        assert_eq!(absolute("", "a"), "/a");
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        symlink("/usr", root.join("abs")).unwrap();
        symlink("../../../../etc", root.join("usr/escape")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/bin/sh", false).unwrap(),
            root.join("usr/bin/sh")
        );
        assert_eq!(
            resolve_in_root(root, "/abs/bin", true).unwrap(),
            root.join("usr/bin")
        );
        assert_eq!(
            resolve_in_root(root, "/usr/escape/passwd", true).unwrap(),
            root.join("etc/passwd")
        );
        // The last component is a link: kept unless asked to follow.
        assert_eq!(
            resolve_in_root(root, "/bin", false).unwrap(),
            root.join("bin")
        );
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert!(resolve_in_root(root, "/loop1/x", true).is_err());
    }

    #[test]
    fn mkdir_all_reports_what_it_made() {
        let tmp = tempfile::tempdir().unwrap();
        let made = mkdir_all(&tmp.path().join("a/b/c"), 0o750, None).unwrap();
        assert_eq!(made.len(), 3);
        let mode = fs::metadata(tmp.path().join("a/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o750);
        assert!(
            mkdir_all(&tmp.path().join("a/b"), 0o755, None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn scratch_dirs_go_even_when_read_only() {
        let tmp = tempfile::tempdir().unwrap();
        let path;
        {
            let s = ScratchDir::new_in(tmp.path(), "x-").unwrap();
            path = s.path().to_path_buf();
            fs::create_dir_all(path.join("ro/inner")).unwrap();
            fs::write(path.join("ro/inner/f"), "x").unwrap();
            fs::set_permissions(path.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        }
        assert!(!path.exists());
    }
}
