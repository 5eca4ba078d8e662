//! Applying a layer to a directory with OCI semantics: whiteouts delete, opaque markers
//! clear what lower layers put in a directory, later entries replace earlier ones, hard
//! links, symlinks, devices (optionally refused), and ownership, modes, xattrs and mtimes
//! when running as root.
//!
//! Nothing is ever written outside the root: names with `..` are refused by the visitor,
//! absolute names are made relative, parent directories are resolved inside the root (see
//! [`super::resolve`]), the final component is replaced rather than followed, and
//! metadata is applied through descriptors opened with `O_NOFOLLOW`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};

use super::resolve::{ResolveError, resolve_dir};
use super::visit::visit_layer;
use crate::error::{Error, Result};
use crate::layer::{Entry, EntryKind, EntryMeta, split_parent};

/// What to do with character and block devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceMode {
    /// Create them (needs root; without it they are skipped and counted).
    #[default]
    Create,
    /// Leave them out, counting them.
    Skip,
    /// Fail on the first one.
    Refuse,
}

/// How layers are applied.
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    pub devices: DeviceMode,
    /// Set owners from the layer (only root can); otherwise files belong to the caller.
    pub ownership: bool,
    /// Set extended attributes from the layer.
    pub xattrs: bool,
}

impl Default for UnpackOptions {
    /// Ownership when running as root, devices created, xattrs kept.
    fn default() -> Self {
        Self {
            devices: DeviceMode::Create,
            ownership: rustix::process::geteuid().is_root(),
            xattrs: true,
        }
    }
}

/// Counts of what a layer did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    /// Paths removed by whiteouts, opaque markers or replacement.
    pub removed: u64,
    pub devices_skipped: u64,
}

/// Applies the layer read from `reader` (gzip, zstd or plain tar) onto `dest`, creating
/// `dest` if needed. `layer` names the layer in errors (its digest). On error `dest` is
/// left partly changed: apply layers to a scratch directory.
pub fn apply_layer<R: Read>(
    reader: R,
    dest: &Path,
    layer: &str,
    opts: &UnpackOptions,
) -> Result<UnpackStats> {
    fs::create_dir_all(dest).map_err(Error::io("create directory", dest))?;
    let mut a = Applier {
        root: dest.to_path_buf(),
        layer: layer.to_string(),
        opts: opts.clone(),
        created: HashSet::new(),
        dirs: Vec::new(),
        parents: HashMap::new(),
        stats: UnpackStats::default(),
    };
    visit_layer(reader, layer, |entry, data| {
        a.stats.entries += 1;
        a.apply(entry, data).map_err(|reason| Error::Layer {
            layer: layer.to_string(),
            entry: entry.path.display().to_string(),
            reason,
        })
    })?;
    a.finish_dirs()?;
    Ok(a.stats)
}

type Step<T = ()> = std::result::Result<T, String>;

struct Applier {
    root: PathBuf,
    layer: String,
    opts: UnpackOptions,
    /// Resolved paths this layer created: an opaque marker must not remove them.
    created: HashSet<PathBuf>,
    /// Directories whose metadata is applied at the end (children would change mtimes).
    dirs: Vec<(PathBuf, EntryMeta)>,
    /// Resolved parents, cleared whenever something is removed.
    parents: HashMap<PathBuf, PathBuf>,
    stats: UnpackStats,
}

fn split(path: &Path) -> (&Path, &OsStr) {
    let (parent, name) = split_parent(path.as_os_str().as_bytes());
    (
        Path::new(OsStr::from_bytes(parent)),
        OsStr::from_bytes(name),
    )
}

fn uid_gid(meta: &EntryMeta) -> Step<(rustix::fs::Uid, rustix::fs::Gid)> {
    let uid = u32::try_from(meta.uid).ok().filter(|u| *u != u32::MAX);
    let gid = u32::try_from(meta.gid).ok().filter(|g| *g != u32::MAX);
    match (uid, gid) {
        (Some(u), Some(g)) => Ok((rustix::fs::Uid::from_raw(u), rustix::fs::Gid::from_raw(g))),
        _ => Err(format!("owner {}:{} is out of range", meta.uid, meta.gid)),
    }
}

fn timestamps(meta: &EntryMeta) -> Timestamps {
    let t = Timespec {
        tv_sec: meta.mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

impl Applier {
    fn full(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// The resolved parent directory of `path`, created if missing.
    fn parent(&mut self, path: &Path) -> Step<PathBuf> {
        let (parent, _) = split(path);
        if let Some(p) = self.parents.get(parent) {
            return Ok(p.clone());
        }
        let mut made = Vec::new();
        let resolved = resolve_dir(&self.root, parent, true, &mut |p: &Path| {
            made.push(p.to_path_buf())
        })
        .map_err(|e| format!("cannot use its parent directory: {e}"))?;
        self.created.extend(made);
        self.parents.insert(parent.to_path_buf(), resolved.clone());
        Ok(resolved)
    }

    /// Resolves an existing directory; `None` when it (or a parent) is missing.
    fn existing_dir(&self, path: &Path) -> Step<Option<PathBuf>> {
        match resolve_dir(&self.root, path, false, &mut |_: &Path| {}) {
            Ok(p) => Ok(Some(p)),
            Err(ResolveError::Missing(_) | ResolveError::NotADirectory(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Removes whatever is at `rel` (a resolved path); whether something was there.
    fn remove(&mut self, rel: &Path) -> Step<bool> {
        let full = self.full(rel);
        let r = match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&full),
            Ok(_) => fs::remove_file(&full),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(format!("cannot inspect /{}: {e}", rel.display())),
        };
        r.map_err(|e| format!("cannot remove /{}: {e}", rel.display()))?;
        self.parents.clear();
        self.dirs.retain(|(d, _)| !d.starts_with(rel));
        self.created.retain(|c| !c.starts_with(rel));
        self.stats.removed += 1;
        Ok(true)
    }

    fn apply(&mut self, entry: &Entry, data: &mut dyn Read) -> Step {
        match &entry.kind {
            EntryKind::Whiteout => {
                let (parent, name) = split(&entry.path);
                if let Some(parent) = self.existing_dir(parent)? {
                    self.remove(&parent.join(name))?;
                }
                Ok(())
            }
            EntryKind::Opaque => {
                let Some(dir) = self.existing_dir(&entry.path)? else {
                    return Ok(());
                };
                let full = self.full(&dir);
                let children: Vec<PathBuf> = fs::read_dir(&full)
                    .and_then(|rd| rd.map(|e| e.map(|e| dir.join(e.file_name()))).collect())
                    .map_err(|e| format!("cannot list /{}: {e}", dir.display()))?;
                for child in children {
                    if !self.created.contains(&child) {
                        self.remove(&child)?;
                    }
                }
                Ok(())
            }
            EntryKind::Dir => {
                let target = self.parent(&entry.path)?.join(split(&entry.path).1);
                let full = self.full(&target);
                match fs::symlink_metadata(&full) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        self.remove(&target)?;
                        fs::create_dir(&full).map_err(|e| format!("cannot create it: {e}"))?;
                    }
                    Err(_) => {
                        fs::create_dir(&full).map_err(|e| format!("cannot create it: {e}"))?
                    }
                }
                self.created.insert(target.clone());
                self.dirs.push((target, entry.meta.clone()));
                Ok(())
            }
            EntryKind::File { size } => {
                let target = self.replace_target(&entry.path)?;
                let full = self.full(&target);
                let mut f = File::options()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(OFlags::NOFOLLOW.bits() as i32)
                    .open(&full)
                    .map_err(|e| format!("cannot create it: {e}"))?;
                let copied = io::copy(data, &mut f).map_err(|e| format!("cannot write it: {e}"))?;
                if copied != *size {
                    return Err(format!("got {copied} of {size} bytes (truncated layer?)"));
                }
                self.stats.files += 1;
                self.stats.bytes += copied;
                self.fd_meta(&f, &entry.meta)?;
                self.created.insert(target);
                Ok(())
            }
            EntryKind::Symlink { target: link } => {
                let target = self.replace_target(&entry.path)?;
                let full = self.full(&target);
                std::os::unix::fs::symlink(link, &full)
                    .map_err(|e| format!("cannot create it: {e}"))?;
                self.path_meta(&full, &entry.meta, false)?;
                self.created.insert(target);
                Ok(())
            }
            EntryKind::Hardlink { target: to } => {
                let (to_parent, to_name) = split(to);
                let to_dir = self.existing_dir(to_parent)?.ok_or_else(|| {
                    format!(
                        "its target /{} does not exist in this layer or below",
                        to.display()
                    )
                })?;
                let to_rel = to_dir.join(to_name);
                match fs::symlink_metadata(self.full(&to_rel)) {
                    Ok(m) if !m.is_dir() => {}
                    Ok(_) => return Err(format!("its target /{} is a directory", to.display())),
                    Err(_) => {
                        return Err(format!(
                            "its target /{} does not exist in this layer or below",
                            to.display()
                        ));
                    }
                }
                let target = self.parent(&entry.path)?.join(split(&entry.path).1);
                if target == to_rel {
                    return Ok(());
                }
                self.remove(&target)?;
                // linkat without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink.
                fs::hard_link(self.full(&to_rel), self.full(&target))
                    .map_err(|e| format!("cannot link it to /{}: {e}", to.display()))?;
                self.created.insert(target);
                Ok(())
            }
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                match self.opts.devices {
                    DeviceMode::Refuse => {
                        return Err("device files are not allowed here (devices refused)".into());
                    }
                    DeviceMode::Skip => {
                        self.stats.devices_skipped += 1;
                        return Ok(());
                    }
                    DeviceMode::Create => {}
                }
                let ft = if matches!(entry.kind, EntryKind::CharDevice { .. }) {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                let target = self.replace_target(&entry.path)?;
                let full = self.full(&target);
                match rustix::fs::mknodat(
                    CWD,
                    &full,
                    ft,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(*major, *minor),
                ) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::PERM) if !self.opts.ownership => {
                        self.stats.devices_skipped += 1;
                        return Ok(());
                    }
                    Err(e) => return Err(format!("cannot create the device: {e}")),
                }
                self.path_meta(&full, &entry.meta, true)?;
                self.created.insert(target);
                Ok(())
            }
            EntryKind::Fifo => {
                let target = self.replace_target(&entry.path)?;
                let full = self.full(&target);
                rustix::fs::mknodat(CWD, &full, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .map_err(|e| format!("cannot create the fifo: {e}"))?;
                self.path_meta(&full, &entry.meta, true)?;
                self.created.insert(target);
                Ok(())
            }
        }
    }

    /// The resolved path for a non-directory entry, with whatever was there removed.
    fn replace_target(&mut self, path: &Path) -> Step<PathBuf> {
        let target = self.parent(path)?.join(split(path).1);
        self.remove(&target)?;
        Ok(target)
    }

    fn set_xattr(&self, r: rustix::io::Result<()>, name: &str) -> Step {
        match r {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::NOTSUP) => {
                tracing::debug!("layer {}: xattr {name} not supported here", self.layer);
                Ok(())
            }
            Err(rustix::io::Errno::PERM | rustix::io::Errno::ACCESS) if !self.opts.ownership => {
                Ok(())
            }
            Err(e) => Err(format!("cannot set xattr {name}: {e}")),
        }
    }

    /// Owner, mode, xattrs, mtime through an open descriptor (chown first: it clears
    /// setuid bits and file capabilities).
    fn fd_meta(&self, fd: &impl AsFd, meta: &EntryMeta) -> Step {
        if self.opts.ownership {
            let (u, g) = uid_gid(meta)?;
            rustix::fs::fchown(fd, Some(u), Some(g))
                .map_err(|e| format!("cannot set its owner: {e}"))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777))
            .map_err(|e| format!("cannot set its mode: {e}"))?;
        if self.opts.xattrs {
            for (k, v) in &meta.xattrs {
                self.set_xattr(
                    rustix::fs::fsetxattr(fd, k.as_str(), v, XattrFlags::empty()),
                    k,
                )?;
            }
        }
        rustix::fs::futimens(fd, &timestamps(meta))
            .map_err(|e| format!("cannot set its mtime: {e}"))
    }

    /// The same for nodes that cannot be opened (symlinks, devices, fifos), by path and
    /// without following the final component.
    fn path_meta(&self, full: &Path, meta: &EntryMeta, chmod: bool) -> Step {
        if self.opts.ownership {
            let (u, g) = uid_gid(meta)?;
            rustix::fs::chownat(CWD, full, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| format!("cannot set its owner: {e}"))?;
        }
        if chmod {
            // Not a symlink (we just created this node), so chmod cannot be redirected.
            rustix::fs::chmodat(
                CWD,
                full,
                Mode::from_raw_mode(meta.mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(|e| format!("cannot set its mode: {e}"))?;
            if self.opts.xattrs {
                for (k, v) in &meta.xattrs {
                    self.set_xattr(
                        rustix::fs::lsetxattr(full, k.as_str(), v, XattrFlags::empty()),
                        k,
                    )?;
                }
            }
        }
        rustix::fs::utimensat(CWD, full, &timestamps(meta), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| format!("cannot set its mtime: {e}"))
    }

    /// Directory metadata, deepest first, through `O_NOFOLLOW` descriptors.
    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, meta) in dirs.iter().rev() {
            let full = self.full(rel);
            let fail = |reason: String| Error::Layer {
                layer: self.layer.clone(),
                entry: rel.display().to_string(),
                reason,
            };
            let fd = match rustix::fs::open(
                &full,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // Replaced by a later entry of this layer: nothing to do.
                Err(
                    rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP | rustix::io::Errno::NOENT,
                ) => continue,
                Err(e) => return Err(fail(format!("cannot open it: {e}"))),
            };
            self.fd_meta(&fd, meta).map_err(fail)?;
        }
        Ok(())
    }
}
