//! Layer diffs by snapshot comparison: a stage's root filesystem is walked (`lstat` only) before
//! a step and again after it; what differs becomes the step's layer.
//!
//! Why not overlayfs upperdirs: a snapshot compare works the same as root and without root, on
//! any file system (including tmpfs and overlay-backed `/tmp`), and for steps oxkit performs
//! itself (COPY, ADD, WORKDIR) as well as for RUN; it costs one `lstat` walk per step (the
//! walk after step N is the snapshot before step N+1) and reads only the files that changed.
//!
//! What counts as a change: a new path; a path whose kind changed; for files and symlinks any
//! difference in mode, owner, size, mtime, ctime or inode (ctime cannot be set from user space,
//! so rewriting a file and restoring its mtime is still seen); for directories a different mode,
//! owner or mtime (not ctime: the builder restores the mtime of directories in which the sandbox
//! created and removed mount points, which changes their ctime). A directory whose inode changed
//! was replaced: it becomes an opaque directory with all of its content. A path that is gone
//! becomes a whiteout, unless its parent is gone or replaced too.
//!
//! This module does not decide what a step is; it compares trees and writes layers.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oxkit_store::Store;
use oxkit_store::layer::{Entry, EntryKind, EntryMeta, LayerInfo, LayerOptions, LayerWriter};

use crate::error::{StepError, io_step};

/// What a walk records about one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    /// `S_IFMT` bits.
    fmt: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
}

impl Stat {
    fn of(m: &Metadata) -> Self {
        Self {
            fmt: m.mode() & 0o170000,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
        }
    }

    fn is_dir(&self) -> bool {
        self.fmt == 0o040000
    }

    pub(crate) fn mtime(&self) -> (i64, i64) {
        self.mtime
    }

    /// Whether `self` (after) differs from `before` for the layer's purposes.
    fn changed_from(&self, before: &Stat) -> bool {
        if self.fmt != before.fmt {
            return true;
        }
        let meta = self.mode != before.mode
            || self.uid != before.uid
            || self.gid != before.gid
            || self.mtime != before.mtime;
        if self.is_dir() {
            meta
        } else {
            meta || self.size != before.size || self.ctime != before.ctime || self.ino != before.ino
        }
    }
}

/// Every path under a root (relative, the root itself excluded) with its [`Stat`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    entries: HashMap<PathBuf, Stat>,
}

impl Snapshot {
    /// Walks `root`.
    pub(crate) fn take(root: &Path) -> Result<Self, StepError> {
        let mut snap = Self::default();
        walk(root, &mut |rel, _full, meta| {
            snap.entries.insert(rel.to_path_buf(), Stat::of(meta));
            Ok(Visit::Descend)
        })?;
        Ok(snap)
    }

    pub(crate) fn get(&self, rel: &Path) -> Option<&Stat> {
        self.entries.get(rel)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

enum Visit {
    Descend,
}

/// Depth-first walk of `root` with each directory's children sorted by name bytes (the
/// order layers are written in). Never follows symlinks.
fn walk(
    root: &Path,
    f: &mut dyn FnMut(&Path, &Path, &Metadata) -> Result<Visit, StepError>,
) -> Result<(), StepError> {
    let mut stack: Vec<(PathBuf, std::vec::IntoIter<OsString>)> =
        vec![(PathBuf::new(), list_sorted(root)?.into_iter())];
    while let Some((rel_dir, children)) = stack.last_mut() {
        let Some(name) = children.next() else {
            stack.pop();
            continue;
        };
        let rel = rel_dir.join(&name);
        let full = root.join(&rel);
        let meta = fs::symlink_metadata(&full).map_err(io_step("inspect", &full))?;
        let Visit::Descend = f(&rel, &full, &meta)?;
        if meta.is_dir() {
            let children = list_sorted(&full)?.into_iter();
            stack.push((rel, children));
        }
    }
    Ok(())
}

fn list_sorted(dir: &Path) -> Result<Vec<OsString>, StepError> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir).map_err(io_step("list", dir))? {
        names.push(e.map_err(io_step("list", dir))?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// One difference, in layer terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Write the path as it is now.
    Write(PathBuf),
    /// A directory that replaced the one below: written, then marked opaque.
    Opaque(PathBuf),
    /// The path is gone.
    Whiteout(PathBuf),
}

impl Change {
    pub(crate) fn path(&self) -> &Path {
        match self {
            Self::Write(p) | Self::Opaque(p) | Self::Whiteout(p) => p,
        }
    }
}

/// The differences between `before` and the tree under `root` now, in layer order, and the
/// snapshot of the tree now (the next step's `before`).
pub(crate) fn diff(root: &Path, before: &Snapshot) -> Result<(Vec<Change>, Snapshot), StepError> {
    let mut after = Snapshot::default();
    let mut changes = Vec::new();
    // Directories replaced in this step: everything below them is new.
    let mut replaced: Vec<PathBuf> = Vec::new();
    walk(root, &mut |rel, _full, meta| {
        let stat = Stat::of(meta);
        let under_replaced = replaced.iter().any(|r| rel.starts_with(r) && rel != r);
        match before.get(rel) {
            _ if under_replaced => changes.push(Change::Write(rel.to_path_buf())),
            None => changes.push(Change::Write(rel.to_path_buf())),
            Some(old) if old.is_dir() && stat.is_dir() && old.ino != stat.ino => {
                replaced.push(rel.to_path_buf());
                changes.push(Change::Opaque(rel.to_path_buf()));
            }
            Some(old) if stat.changed_from(old) => changes.push(Change::Write(rel.to_path_buf())),
            Some(_) => {}
        }
        after.entries.insert(rel.to_path_buf(), stat);
        Ok(Visit::Descend)
    })?;
    for (path, old) in &before.entries {
        if after.entries.contains_key(path) {
            continue;
        }
        // Covered by the parent's own whiteout, replacement or change of kind.
        let parent_same = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            None => true,
            Some(parent) => match (before.get(parent), after.get(parent)) {
                (Some(b), Some(a)) => a.is_dir() && b.is_dir() && a.ino == b.ino,
                _ => false,
            },
        };
        let _ = old;
        if parent_same {
            changes.push(Change::Whiteout(path.clone()));
        }
    }
    changes.sort_by(|a, b| cmp_components(a.path(), b.path()));
    Ok((changes, after))
}

/// Depth-first order: component by component, by bytes (so `a/b` comes before `a-c`).
fn cmp_components(a: &Path, b: &Path) -> std::cmp::Ordering {
    let mut ai = a.iter();
    let mut bi = b.iter();
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => match x.as_bytes().cmp(y.as_bytes()) {
                std::cmp::Ordering::Equal => {}
                o => return o,
            },
        }
    }
}

/// Who owns a path in the layer. As root it is the owner on disk; without root every file on
/// disk belongs to the caller, who is root inside the sandbox's user namespace, so the layer
/// says root unless the build recorded another owner (`COPY --chown`, a base layer's owner).
pub(crate) trait Owners {
    fn owner(&self, rel: &Path, meta: &Metadata) -> (u64, u64);
}

/// Owners as they are on disk (running as root).
pub(crate) struct DiskOwners;

impl Owners for DiskOwners {
    fn owner(&self, _rel: &Path, meta: &Metadata) -> (u64, u64) {
        (u64::from(meta.uid()), u64::from(meta.gid()))
    }
}

/// Owners recorded by the build, root otherwise (running without root).
#[derive(Debug, Default, Clone)]
pub(crate) struct RecordedOwners {
    pub(crate) owners: HashMap<PathBuf, (u32, u32)>,
}

impl Owners for RecordedOwners {
    fn owner(&self, rel: &Path, _meta: &Metadata) -> (u64, u64) {
        let (u, g) = self.owners.get(rel).copied().unwrap_or((0, 0));
        (u64::from(u), u64::from(g))
    }
}

/// Writes `changes` (from [`diff`]) of the tree under `root` as a layer; `None` when there are
/// no changes (the step adds no layer, as BuildKit does).
pub(crate) fn write_layer(
    store: &Store,
    opts: &LayerOptions,
    root: &Path,
    changes: &[Change],
    owners: &dyn Owners,
) -> Result<Option<LayerInfo>, StepError> {
    if changes.is_empty() {
        return Ok(None);
    }
    let mut w = LayerWriter::new(store, opts)?;
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for change in changes {
        let rel = change.path();
        match change {
            Change::Whiteout(_) => {
                w.add(&Entry::whiteout(rel), None)?;
                continue;
            }
            Change::Write(_) | Change::Opaque(_) => {}
        }
        let full = root.join(rel);
        let md = fs::symlink_metadata(&full).map_err(io_step("inspect", &full))?;
        let (uid, gid) = owners.owner(rel, &md);
        let mut meta = EntryMeta {
            mode: md.mode() & 0o7777,
            uid,
            gid,
            mtime: md.mtime(),
            xattrs: Default::default(),
        };
        let ft = md.file_type();
        if ft.is_file()
            && let Some(cap) = get_capability(&full)?
        {
            meta.xattrs.insert("security.capability".to_string(), cap);
        }
        if ft.is_dir() {
            w.add(&Entry::dir(rel, meta), None)?;
            if matches!(change, Change::Opaque(_)) {
                w.add(&Entry::opaque(rel), None)?;
            }
            continue;
        }
        if ft.is_file() && md.nlink() > 1 {
            if let Some(first) = links.get(&(md.dev(), md.ino())) {
                w.add(&Entry::hardlink(rel, first.clone(), meta), None)?;
                continue;
            }
            links.insert((md.dev(), md.ino()), rel.to_path_buf());
        }
        let Some(kind) =
            EntryKind::from_metadata(&full, &md).map_err(io_step("read link", &full))?
        else {
            // Sockets cannot be stored in a layer.
            continue;
        };
        let entry = Entry {
            path: rel.to_path_buf(),
            kind,
            meta,
        };
        match entry.kind {
            EntryKind::File { size } if size > 0 => {
                let mut f = File::options()
                    .read(true)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&full)
                    .map_err(io_step("open", &full))?;
                w.add(&entry, Some(&mut f))?;
            }
            _ => w.add(&entry, None)?,
        }
    }
    Ok(Some(w.finish()?))
}

/// The file capability of `path` (Docker keeps only this extended attribute).
fn get_capability(path: &Path) -> Result<Option<Vec<u8>>, StepError> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, "security.capability", &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => Ok(None),
        Err(e) => Err(io_step("read extended attributes of", path)(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn paths(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Write(p) => format!("+{}", p.display()),
                Change::Opaque(p) => format!("O{}", p.display()),
                Change::Whiteout(p) => format!("-{}", p.display()),
            })
            .collect()
    }

    #[test]
    fn additions_changes_deletions_and_replacements() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("etc/sub")).unwrap();
        fs::create_dir_all(root.join("gone/deep")).unwrap();
        fs::create_dir_all(root.join("swap/old")).unwrap();
        fs::write(root.join("etc/keep"), "k").unwrap();
        fs::write(root.join("etc/edit"), "1").unwrap();
        fs::write(root.join("etc/sub/rm"), "x").unwrap();
        fs::write(root.join("gone/deep/f"), "x").unwrap();
        symlink("keep", root.join("etc/link")).unwrap();
        let before = Snapshot::take(root).unwrap();
        assert_eq!(before.len(), 11);
        let (none, _) = diff(root, &before).unwrap();
        assert!(none.is_empty(), "{none:?}");

        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(root.join("etc/edit"), "2").unwrap();
        fs::remove_file(root.join("etc/sub/rm")).unwrap();
        fs::remove_dir_all(root.join("gone")).unwrap();
        // The replacement is made before the old directory goes, so that it cannot get the
        // old one's inode number back (file systems reuse freed inodes; a directory that does
        // is indistinguishable from one that was edited, and diffs as such).
        fs::create_dir_all(root.join("swap.next/new")).unwrap();
        fs::remove_dir_all(root.join("swap")).unwrap();
        fs::rename(root.join("swap.next"), root.join("swap")).unwrap();
        fs::write(root.join("new"), "n").unwrap();
        let (changes, after) = diff(root, &before).unwrap();
        assert_eq!(
            paths(&changes),
            [
                "+etc/edit",
                "+etc/sub",
                "-etc/sub/rm",
                "-gone",
                "+new",
                "Oswap",
                "+swap/new"
            ]
        );
        let (again, _) = diff(root, &after).unwrap();
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn dir_mtime_restored_is_not_a_change_but_a_chmod_is() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir(root.join("etc")).unwrap();
        let before = Snapshot::take(root).unwrap();
        let m = fs::metadata(root.join("etc")).unwrap();
        fs::write(root.join("etc/stub"), "").unwrap();
        fs::remove_file(root.join("etc/stub")).unwrap();
        let t = rustix::fs::Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec(),
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            root.join("etc"),
            &rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        assert!(diff(root, &before).unwrap().0.is_empty());
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root.join("etc"), fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(paths(&diff(root, &before).unwrap().0), ["+etc"]);
    }

    #[test]
    fn components_sort_depth_first() {
        let mut v = vec![
            PathBuf::from("a-c"),
            PathBuf::from("a/b"),
            PathBuf::from("a"),
        ];
        v.sort_by(|a, b| cmp_components(a, b));
        assert_eq!(v, [PathBuf::from("a"), "a/b".into(), "a-c".into()]);
    }
}
