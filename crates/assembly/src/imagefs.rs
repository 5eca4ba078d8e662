//! What the file system image writers ([`crate::squashfs`], [`crate::erofs`], and for its
//! names, content and errors [`crate::rockridge`]) share: their
//! error type, the tree of names they keep in memory while file data streams out (paths
//! checked, a parent required before its entries, a directory added over a directory keeping
//! its entries), the validation of an entry's metadata (32-bit ids, permission bits, mtimes
//! clamped to `[0, epoch]`, extended attributes in the `user.`, `trusted.` and `security.`
//! namespaces), the checks on a symlink target, a device number and a file's content, and
//! little-endian encoding. What differs between the formats (their name in messages, their
//! limits) is a [`Format`].

use std::collections::BTreeMap;
use std::io::{self, Read};

use oxkit_store::layer::EntryMeta;

use crate::bootsplit::RootWriter;

#[cfg(test)]
#[path = "imagefs/testutil.rs"]
pub(crate) mod testutil;

/// What went wrong writing an entry (the caller adds the output file's name).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImageError {
    #[error("{path}: {reason}")]
    Unrepresentable { path: String, reason: String },
    #[error("{path}: the parent directory was not added before it")]
    NoParent { path: String },
    #[error(
        "{path}: the content ended after {got} of {want} bytes (did it change while being read?)"
    )]
    Short { path: String, got: u64, want: u64 },
    #[error("{path}: the content is longer than {want} bytes (did it change while being read?)")]
    Long { path: String, want: u64 },
    #[error("{path}: cannot read the content: {source}")]
    Read { path: String, source: io::Error },
    /// The format's name and what does not fit.
    #[error("the image is too large for {0}: {1}")]
    TooLarge(&'static str, String),
    /// SquashFS only.
    #[error("cannot compress: {0}")]
    Compress(String),
    #[error("cannot write the image: {0}")]
    Write(#[source] io::Error),
}

/// A file system image writer: [`RootWriter`] for its entries, and how it starts and ends.
pub(crate) trait ImageWriter<W>: RootWriter<Error = ImageError> + Sized {
    /// A writer whose image starts at `out`'s position, entries' mtimes clamped to `epoch`
    /// (negative means 0), which is also the image's creation time.
    fn new(out: W, epoch: i64) -> Result<Self, ImageError>;
    /// The root directory's metadata (0755, root:root, `epoch`, no xattrs unless set here).
    fn root(&mut self, meta: &EntryMeta) -> Result<(), ImageError>;
    /// Writes what is left (tables, superblock); returns the output, positioned at the end
    /// of the image.
    fn finish(self) -> Result<W, ImageError>;
}

/// `path` as messages show it (`/` for the root).
pub(crate) fn shown(path: &[u8]) -> String {
    if path.is_empty() {
        return "/".into();
    }
    String::from_utf8_lossy(path).into_owned()
}

pub(crate) fn unrepresentable(path: &[u8], reason: impl Into<String>) -> ImageError {
    ImageError::Unrepresentable {
        path: shown(path),
        reason: reason.into(),
    }
}

pub(crate) fn put16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
pub(crate) fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
pub(crate) fn put64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// POSIX file type bits (the top of `st_mode`), as the cpio, SquashFS, EROFS and Rock Ridge
/// writers store them.
pub(crate) const S_IFIFO: u16 = 0o010_000;
pub(crate) const S_IFCHR: u16 = 0o020_000;
pub(crate) const S_IFDIR: u16 = 0o040_000;
pub(crate) const S_IFBLK: u16 = 0o060_000;
pub(crate) const S_IFREG: u16 = 0o100_000;
pub(crate) const S_IFLNK: u16 = 0o120_000;

/// Linux refuses longer symlink targets (PATH_MAX, NUL included).
pub(crate) const MAX_SYMLINK: usize = 4095;

/// The namespaces an extended attribute's name may start with, in the order of
/// [`Format::xattr_codes`].
const XATTR_PREFIXES: [&str; 3] = ["user.", "trusted.", "security."];

/// What sets a format apart in what it holds and how its messages name it.
pub(crate) struct Format {
    /// The format's name in messages ("SquashFS").
    pub(crate) name: &'static str,
    /// The longest name of a directory entry, in bytes.
    pub(crate) max_name: usize,
    /// What "only holds user., trusted. and security. attributes" in messages.
    pub(crate) xattr_holder: &'static str,
    /// The format's codes for the `user.`, `trusted.` and `security.` prefixes.
    pub(crate) xattr_codes: [u8; 3],
    /// The longest extended attribute name without its prefix, in bytes.
    pub(crate) max_xattr_name: usize,
    /// The largest extended attribute value, in bytes, and what a message says of a larger one
    /// of the given length.
    pub(crate) max_xattr_value: usize,
    pub(crate) value_too_large: fn(usize) -> String,
}

/// An inode's metadata, validated: what both formats keep.
#[derive(Clone, Copy)]
pub(crate) struct Attrs {
    /// Permission bits (with setuid, setgid, sticky), without the type.
    pub(crate) mode: u16,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Clamped to `[0, epoch]`.
    pub(crate) mtime: u64,
}

/// An extended attribute, validated: the format's code for its prefix, its name without the
/// prefix, its value.
pub(crate) struct Xattr<'a> {
    pub(crate) code: u8,
    pub(crate) name: &'a str,
    pub(crate) value: &'a [u8],
}

impl Format {
    pub(crate) fn too_large(&self, reason: &str) -> ImageError {
        ImageError::TooLarge(self.name, reason.into())
    }

    /// Validates `meta`'s mode, ids and mtime for `path`, the mtime clamped to `[0, epoch]`
    /// (what a format without extended attributes keeps).
    pub(crate) fn plain_attrs(
        &self,
        path: &[u8],
        meta: &EntryMeta,
        epoch: u64,
    ) -> Result<Attrs, ImageError> {
        let id = |v: u64, what: &str| {
            u32::try_from(v).map_err(|_| {
                unrepresentable(
                    path,
                    format!("{what} {v} does not fit in {}'s 32 bits", self.name),
                )
            })
        };
        Ok(Attrs {
            mode: (meta.mode & 0o7777) as u16,
            uid: id(meta.uid, "uid")?,
            gid: id(meta.gid, "gid")?,
            mtime: u64::try_from(meta.mtime.max(0)).unwrap_or(0).min(epoch),
        })
    }

    /// Validates `meta` for `path`, the mtime clamped to `[0, epoch]`; the extended attributes
    /// in name order.
    pub(crate) fn attrs<'m>(
        &self,
        path: &[u8],
        meta: &'m EntryMeta,
        epoch: u64,
    ) -> Result<(Attrs, Vec<Xattr<'m>>), ImageError> {
        let attrs = self.plain_attrs(path, meta, epoch)?;
        let mut xattrs = Vec::with_capacity(meta.xattrs.len());
        for (name, value) in &meta.xattrs {
            let Some((code, rest)) = XATTR_PREFIXES
                .iter()
                .zip(self.xattr_codes)
                .find_map(|(p, k)| name.strip_prefix(p).map(|rest| (k, rest)))
            else {
                return Err(unrepresentable(
                    path,
                    format!(
                        "extended attribute {name:?}: {} only holds user., trusted. and \
                         security. attributes",
                        self.xattr_holder
                    ),
                ));
            };
            if rest.is_empty() || rest.len() > self.max_xattr_name {
                return Err(unrepresentable(
                    path,
                    format!("extended attribute {name:?}: not a usable name"),
                ));
            }
            if value.len() > self.max_xattr_value {
                return Err(unrepresentable(
                    path,
                    format!(
                        "extended attribute {name:?}: {}",
                        (self.value_too_large)(value.len())
                    ),
                ));
            }
            xattrs.push(Xattr {
                code,
                name: rest,
                value,
            });
        }
        Ok((attrs, xattrs))
    }

    /// The device number `(major, minor)` as both formats encode it (Linux's `new_encode_dev`).
    pub(crate) fn rdev(&self, path: &[u8], (major, minor): (u32, u32)) -> Result<u32, ImageError> {
        if major > 0xfff || minor > 0xf_ffff {
            return Err(unrepresentable(
                path,
                format!(
                    "device {major}:{minor}: {} holds majors up to 4095 and minors up to \
                     1048575",
                    self.name
                ),
            ));
        }
        Ok((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
    }
}

/// The path errors about a file under `paths` show: its first.
pub(crate) fn file_path<'p>(paths: &[&'p [u8]]) -> &'p [u8] {
    paths.first().copied().unwrap_or(b"(unnamed file)")
}

/// Refuses a symlink target Linux would not follow.
pub(crate) fn check_symlink(path: &[u8], target: &[u8]) -> Result<(), ImageError> {
    if target.is_empty() || target.contains(&0) || target.len() > MAX_SYMLINK {
        return Err(unrepresentable(
            path,
            format!(
                "a symlink target must be 1 to {MAX_SYMLINK} bytes without NUL bytes \
                 (it has {} bytes)",
                target.len()
            ),
        ));
    }
    Ok(())
}

/// The content of the file at `path`, announced as `size` bytes, as it is read.
#[derive(Clone, Copy)]
pub(crate) struct Content<'a> {
    path: &'a [u8],
    size: u64,
}

impl<'a> Content<'a> {
    pub(crate) fn new(path: &'a [u8], size: u64) -> Self {
        Self { path, size }
    }

    fn read_error(self, source: io::Error) -> ImageError {
        ImageError::Read {
            path: shown(self.path),
            source,
        }
    }

    /// Fills `buf` from `r`, `done` bytes having been read before; an error when the content
    /// ends first.
    pub(crate) fn read_exact(
        self,
        r: &mut dyn Read,
        buf: &mut [u8],
        done: u64,
    ) -> Result<(), ImageError> {
        let got = fill(r, buf).map_err(|e| self.read_error(e))?;
        if got < buf.len() {
            return Err(ImageError::Short {
                path: shown(self.path),
                got: done + got as u64,
                want: self.size,
            });
        }
        Ok(())
    }

    /// An error when `r`, all `size` bytes read, has more.
    pub(crate) fn end(self, r: &mut dyn Read) -> Result<(), ImageError> {
        let mut one = [0u8; 1];
        if fill(r, &mut one).map_err(|e| self.read_error(e))? != 0 {
            return Err(ImageError::Long {
                path: shown(self.path),
                want: self.size,
            });
        }
        Ok(())
    }
}

/// Reads until `buf` is full or the content ends; returns how much was read.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The root directory's index in [`Tree::nodes`].
pub(crate) const ROOT: usize = 0;

/// A directory (its metadata `D` and its entries: names, sorted, and node indexes) or
/// whatever else the format keeps of an entry (`L`).
pub(crate) enum Node<D, L> {
    Dir {
        attrs: D,
        children: BTreeMap<Vec<u8>, usize>,
    },
    Leaf(L),
}

/// The names of an image: nodes by index, the root at [`ROOT`]. A node a later entry
/// replaced stays, unreachable.
pub(crate) struct Tree<D, L> {
    pub(crate) nodes: Vec<Node<D, L>>,
}

impl<D, L> Tree<D, L> {
    /// A tree of an empty root directory.
    pub(crate) fn new(root: D) -> Self {
        Self {
            nodes: vec![Node::Dir {
                attrs: root,
                children: BTreeMap::new(),
            }],
        }
    }

    pub(crate) fn set_root(&mut self, root: D) {
        if let Some(Node::Dir { attrs, .. }) = self.nodes.get_mut(ROOT) {
            *attrs = root;
        }
    }

    fn dir_at(&self, dir: usize) -> Option<&BTreeMap<Vec<u8>, usize>> {
        match self.nodes.get(dir) {
            Some(Node::Dir { children, .. }) => Some(children),
            _ => None,
        }
    }

    /// The directory that holds `path`, and `path`'s last component.
    pub(crate) fn parent<'p>(
        &self,
        fs: &Format,
        path: &'p [u8],
    ) -> Result<(usize, &'p [u8]), ImageError> {
        let mut parts = path.split(|&b| b == b'/');
        let mut last = parts.next().unwrap_or_default();
        let mut dir = ROOT;
        let check = |name: &[u8]| {
            if name.is_empty() || name == b"." || name == b".." || name.contains(&0) {
                return Err(unrepresentable(
                    path,
                    "not a usable path (empty, `.` or `..` component, or a NUL byte)",
                ));
            }
            if name.len() > fs.max_name {
                return Err(unrepresentable(
                    path,
                    format!("a name longer than {} bytes", fs.max_name),
                ));
            }
            Ok(())
        };
        check(last)?;
        for next in parts {
            check(next)?;
            dir = match self.dir_at(dir).and_then(|c| c.get(last)) {
                Some(&c) if self.dir_at(c).is_some() => c,
                _ => return Err(ImageError::NoParent { path: shown(path) }),
            };
            last = next;
        }
        Ok((dir, last))
    }

    /// The directory and name of each of a file's `paths`.
    pub(crate) fn places<'p>(
        &self,
        fs: &Format,
        paths: &[&'p [u8]],
    ) -> Result<Vec<(usize, &'p [u8])>, ImageError> {
        paths.iter().map(|path| self.parent(fs, path)).collect()
    }

    /// Adds the directory `path`; over a directory, only its metadata changes.
    pub(crate) fn dir(&mut self, fs: &Format, path: &[u8], attrs: D) -> Result<(), ImageError> {
        let (parent, name) = self.parent(fs, path)?;
        if let Some(&existing) = self.dir_at(parent).and_then(|c| c.get(name))
            && let Some(Node::Dir { attrs: old, .. }) = self.nodes.get_mut(existing)
        {
            *old = attrs;
            return Ok(());
        }
        self.add(
            &[(parent, name)],
            Node::Dir {
                attrs,
                children: BTreeMap::new(),
            },
        );
        Ok(())
    }

    /// Adds `node` under each of `places` (directory, name), replacing what they named.
    pub(crate) fn add(&mut self, places: &[(usize, &[u8])], node: Node<D, L>) {
        let id = self.nodes.len();
        self.nodes.push(node);
        for &(parent, name) in places {
            if let Some(Node::Dir { children, .. }) = self.nodes.get_mut(parent) {
                children.insert(name.to_vec(), id);
            }
        }
    }
}
