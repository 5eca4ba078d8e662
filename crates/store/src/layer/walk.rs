//! Directory trees as layer entries: a depth-first walk with each directory's children
//! sorted by the bytes of their names (the order Go's `filepath.Walk` uses), numeric owners,
//! hard links detected by (device, inode), and extended attributes by policy.
//!
//! Memory stays flat whatever the tree's size: one sorted listing per directory level on
//! the current path, plus the paths of multiply-linked files. Sockets are skipped (they
//! cannot be stored in a tar). The walk never follows symlinks.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::entry::{Entry, EntryKind, EntryMeta};
use super::writer::{LayerInfo, LayerOptions, LayerWriter, TarWriter, XattrPolicy};
use crate::error::{Error, Result};
use crate::store::Store;

/// Writes `root` (a directory) as a layer into `store`. The root itself is not an entry.
pub fn layer_from_dir(store: &Store, root: &Path, opts: &LayerOptions) -> Result<LayerInfo> {
    let mut w = LayerWriter::new(store, opts)?;
    w.add_tree(root, opts.xattrs)?;
    w.finish()
}

/// One directory being walked: its path relative to the root and its remaining children.
struct Level {
    rel: PathBuf,
    children: std::vec::IntoIter<OsString>,
}

fn list_sorted(dir: &Path) -> Result<Vec<OsString>> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .map_err(Error::io("list", dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(Error::io("list", dir))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Appends every entry under `root` to `tar`, depth first, sorted by name bytes.
pub fn write_tree<W: Write>(
    tar: &mut TarWriter<W>,
    root: &Path,
    xattrs: XattrPolicy,
) -> Result<()> {
    let meta = fs::symlink_metadata(root).map_err(Error::io("read", root))?;
    if !meta.is_dir() {
        return Err(Error::Invalid(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut stack = vec![Level {
        rel: PathBuf::new(),
        children: list_sorted(root)?.into_iter(),
    }];
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.children.next() else {
            stack.pop();
            continue;
        };
        let rel = level.rel.join(&name);
        let full = root.join(&rel);
        let md = fs::symlink_metadata(&full).map_err(Error::io("read", &full))?;
        let ft = md.file_type();
        let mut meta = entry_meta(&md);
        if !ft.is_symlink() {
            meta.xattrs = read_xattrs(&full, xattrs)?;
        }
        if ft.is_dir() {
            tar.add(&Entry::dir(rel.clone(), meta), None)?;
            let children = list_sorted(&full)?.into_iter();
            stack.push(Level { rel, children });
            continue;
        }
        if md.nlink() > 1 {
            match links.get(&(md.dev(), md.ino())) {
                Some(first) => {
                    tar.add(&Entry::hardlink(rel, first.clone(), meta), None)?;
                    continue;
                }
                None => {
                    links.insert((md.dev(), md.ino()), rel.clone());
                }
            }
        }
        let Some(kind) =
            EntryKind::from_metadata(&full, &md).map_err(Error::io("read link", &full))?
        else {
            tracing::debug!("skipping socket {}", full.display());
            continue;
        };
        let entry = Entry {
            path: rel,
            kind,
            meta,
        };
        if let EntryKind::File { size } = entry.kind
            && size > 0
        {
            let mut f = File::options()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&full)
                .map_err(Error::io("open", &full))?;
            tar.add(&entry, Some(&mut f))?;
        } else {
            tar.add(&entry, None)?;
        }
    }
    Ok(())
}

fn entry_meta(md: &Metadata) -> EntryMeta {
    EntryMeta {
        mode: md.mode() & 0o7777,
        uid: u64::from(md.uid()),
        gid: u64::from(md.gid()),
        mtime: md.mtime(),
        xattrs: BTreeMap::new(),
    }
}

/// Reads the extended attributes `policy` asks for; file systems without xattr support
/// simply have none.
pub(crate) fn read_xattrs(path: &Path, policy: XattrPolicy) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let names: Vec<String> = match policy {
        XattrPolicy::None => return Ok(out),
        XattrPolicy::Capabilities => vec!["security.capability".to_string()],
        XattrPolicy::All => list_xattrs(path)?
            .into_iter()
            .filter(|n| n != "security.selinux")
            .collect(),
    };
    for name in names {
        if let Some(v) = get_xattr(path, &name)? {
            out.insert(name, v);
        }
    }
    Ok(out)
}

fn list_xattrs(path: &Path) -> Result<Vec<String>> {
    let mut buf = vec![0u8; 1024];
    loop {
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                return Ok(buf[..n]
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .filter_map(|s| std::str::from_utf8(s).ok().map(str::to_string))
                    .collect());
            }
            Err(rustix::io::Errno::RANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list xattrs of", path)(e.into())),
        }
    }
}

fn get_xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::RANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(Error::io("read xattr of", path)(e.into())),
        }
    }
}
