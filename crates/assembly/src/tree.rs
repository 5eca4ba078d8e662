//! The assembled file system as a tree of metadata: directories, symlinks, devices, FIFOs and
//! regular files whose content is a reference (a layer entry, bytes in memory, a host file, a
//! store blob),
//! never the bytes of an image. Memory grows with the number of entries, not their size.
//!
//! Operations follow tar-extraction semantics, which is what LinuxKit's output gets when the
//! kernel unpacks it: a later entry replaces an earlier one at the same path, except that a
//! directory over a directory only updates its metadata. Parent components that are symbolic
//! links are followed when they stay inside the tree (`lib -> usr/lib`); a link that is
//! absolute or climbs above the root is refused, because the entry would be written outside
//! the tree when the output is unpacked. The last component is never followed.
//!
//! Paths are relative byte strings with `/` separators, already normalised (no `.`, `..` or
//! empty components): `oxkit_store::layer::normalize_path` is the gate.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use oxkit_spec::Digest;
use oxkit_store::layer::EntryMeta;

/// Index of an [`Inode`] in [`Inodes`].
pub(crate) type InodeId = u32;

/// Index of a layer (or a tar inside one) in the build's source table.
pub(crate) type SourceId = u32;

/// Symlinks followed per lookup before giving up (Linux's limit).
const MAX_HOPS: usize = 40;

/// Where a regular file's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Content {
    /// Generated or small: held in memory.
    Inline(Arc<[u8]>),
    /// The `ordinal`-th entry of a layer (counted as the layer visitor hands them out).
    Layer { source: SourceId, ordinal: u64 },
    /// A file on the build host (`files:` with `source:`), read when the output is written.
    Host(PathBuf),
    /// A blob of the store (a `format: oci` volume's layout), streamed when the output is
    /// written.
    Blob(Digest),
}

/// A regular file; hard links share one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inode {
    pub(crate) meta: EntryMeta,
    pub(crate) size: u64,
    pub(crate) content: Content,
}

/// All regular files of a build.
#[derive(Debug, Default)]
pub(crate) struct Inodes {
    all: Vec<Inode>,
}

impl Inodes {
    pub(crate) fn add(&mut self, inode: Inode) -> InodeId {
        self.all.push(inode);
        // More than 4 billion files would exhaust memory long before this wraps.
        u32::try_from(self.all.len() - 1).unwrap_or(u32::MAX)
    }

    pub(crate) fn get(&self, id: InodeId) -> &Inode {
        &self.all[id as usize]
    }

    pub(crate) fn get_mut(&mut self, id: InodeId) -> &mut Inode {
        &mut self.all[id as usize]
    }
}

/// One tree node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    Dir(Dir),
    File(InodeId),
    Symlink {
        target: Vec<u8>,
        meta: EntryMeta,
    },
    Device {
        block: bool,
        major: u32,
        minor: u32,
        meta: EntryMeta,
    },
    Fifo {
        meta: EntryMeta,
    },
}

impl Node {
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Node::Dir(_) => "a directory",
            Node::File(_) => "a regular file",
            Node::Symlink { .. } => "a symbolic link",
            Node::Device { block: true, .. } => "a block device",
            Node::Device { .. } => "a character device",
            Node::Fifo { .. } => "a FIFO",
        }
    }
}

/// A directory and its children, sorted by name bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dir {
    pub(crate) meta: EntryMeta,
    /// Created only because something below it was written (no entry of its own).
    pub(crate) implicit: bool,
    pub(crate) children: BTreeMap<Vec<u8>, Node>,
}

impl Dir {
    /// A directory with `meta`.
    pub(crate) fn new(meta: EntryMeta) -> Self {
        Self {
            meta,
            implicit: false,
            children: BTreeMap::new(),
        }
    }

    /// What a missing parent becomes: 0755, root, at `mtime`.
    pub(crate) fn implicit(mtime: i64) -> Self {
        Self {
            meta: EntryMeta {
                mode: 0o755,
                mtime,
                ..EntryMeta::default()
            },
            implicit: true,
            children: BTreeMap::new(),
        }
    }
}

/// Why an operation on the tree was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TreeError {
    #[error(
        "it would be written through the symbolic link /{link} -> {target}, which points outside the root file system"
    )]
    Escape { link: String, target: String },
    #[error("/{0} is not a directory")]
    NotADirectory(String),
    #[error("too many levels of symbolic links")]
    TooManyLinks,
}

pub(crate) fn split_components(path: &[u8]) -> Vec<&[u8]> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .collect()
}

fn shown(comps: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(&comps.join(&b'/')).into_owned()
}

/// Resolves the directory components `comps` (from `root`), following symlinks that stay
/// inside the tree. Components that do not exist are kept as they are (the caller creates
/// them).
pub(crate) fn resolve_dir_path(root: &Dir, comps: &[&[u8]]) -> Result<Vec<Vec<u8>>, TreeError> {
    let mut pending: std::collections::VecDeque<Vec<u8>> =
        comps.iter().map(|c| c.to_vec()).collect();
    let mut resolved: Vec<Vec<u8>> = Vec::new();
    // The directory `resolved` names, while it exists in the tree.
    let mut hops = 0;
    // The last link followed, for the error when its target climbs above the root.
    let mut last_link: Option<(String, String)> = None;
    while let Some(c) = pending.pop_front() {
        if c == b".." {
            // Only symlink targets bring `..` here (paths are normalised). Climbing above the
            // root through a chain of links (`s -> ..`, then `l -> s/../x`) escapes too.
            if resolved.pop().is_none() {
                let (link, target) = last_link.unwrap_or_default();
                return Err(TreeError::Escape { link, target });
            }
            continue;
        }
        if c == b"." || c.is_empty() {
            continue;
        }
        let node = lookup_dir(root, &resolved).and_then(|d| d.children.get(&c));
        match node {
            None | Some(Node::Dir(_)) => resolved.push(c),
            Some(Node::Symlink { target, .. }) => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(TreeError::TooManyLinks);
                }
                let mut link = resolved.clone();
                link.push(c.clone());
                let escape = || TreeError::Escape {
                    link: shown(&link),
                    target: String::from_utf8_lossy(target).into_owned(),
                };
                if target.first() == Some(&b'/') {
                    return Err(escape());
                }
                // The target, relative to the link's directory, must not climb above the root.
                let mut depth = resolved.len();
                for t in target.split(|b| *b == b'/') {
                    match t {
                        b"" | b"." => {}
                        b".." => depth = depth.checked_sub(1).ok_or_else(escape)?,
                        _ => depth += 1,
                    }
                }
                last_link = Some((shown(&link), String::from_utf8_lossy(target).into_owned()));
                let parts: Vec<Vec<u8>> = target
                    .split(|b| *b == b'/')
                    .filter(|t| !t.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect();
                for (i, t) in parts.into_iter().enumerate() {
                    pending.insert(i, t);
                }
            }
            Some(_) => {
                resolved.push(c);
                return Err(TreeError::NotADirectory(shown(&resolved)));
            }
        }
    }
    Ok(resolved)
}

/// The directory at `comps` (no symlinks followed), if it exists.
pub(crate) fn lookup_dir<'a>(root: &'a Dir, comps: &[Vec<u8>]) -> Option<&'a Dir> {
    let mut d = root;
    for c in comps {
        match d.children.get(c) {
            Some(Node::Dir(sub)) => d = sub,
            _ => return None,
        }
    }
    Some(d)
}

/// The directory at `comps` (no symlinks followed), mutably, if it exists.
pub(crate) fn lookup_dir_mut<'a>(mut d: &'a mut Dir, comps: &[Vec<u8>]) -> Option<&'a mut Dir> {
    for c in comps {
        match d.children.get_mut(c) {
            Some(Node::Dir(sub)) => d = sub,
            _ => return None,
        }
    }
    Some(d)
}

/// The node at `comps` (no symlinks followed).
pub(crate) fn lookup<'a>(root: &'a Dir, comps: &[Vec<u8>]) -> Option<&'a Node> {
    let (last, parents) = comps.split_last()?;
    lookup_dir(root, parents)?.children.get(last)
}

/// The directory at `comps` (already resolved), creating missing ones as implicit directories.
pub(crate) fn dir_mut<'a>(
    mut d: &'a mut Dir,
    comps: &[Vec<u8>],
    mtime: i64,
) -> Result<&'a mut Dir, TreeError> {
    for (i, c) in comps.iter().enumerate() {
        let node = d
            .children
            .entry(c.clone())
            .or_insert_with(|| Node::Dir(Dir::implicit(mtime)));
        match node {
            Node::Dir(sub) => d = sub,
            _ => return Err(TreeError::NotADirectory(shown(&comps[..=i]))),
        }
    }
    Ok(d)
}

/// Puts `node` at `name` in `dir` with tar semantics: a directory over a directory takes the
/// new metadata and keeps the children (an implicit one changes nothing); anything else
/// replaces what was there.
pub(crate) fn put(dir: &mut Dir, name: Vec<u8>, node: Node) {
    match (dir.children.get_mut(&name), node) {
        (Some(Node::Dir(old)), Node::Dir(new)) => {
            if !new.implicit {
                old.meta = new.meta;
                old.implicit = false;
            }
            for (n, child) in new.children {
                put(old, n, child);
            }
        }
        (_, node) => {
            dir.children.insert(name, node);
        }
    }
}

/// Merges `src` into `dst` entry by entry, as unpacking `src`'s entries over `dst` would.
pub(crate) fn merge(dst: &mut Dir, src: Dir) {
    if !src.implicit {
        dst.meta = src.meta;
        dst.implicit = false;
    }
    for (name, node) in src.children {
        put(dst, name, node);
    }
}

#[cfg(test)]
/// Visits every node below `root` depth-first in name order (parents before children),
/// with its path.
pub(crate) fn walk<'a>(root: &'a Dir, f: &mut dyn FnMut(&[u8], &'a Node)) {
    fn go<'a>(d: &'a Dir, path: &mut Vec<u8>, f: &mut dyn FnMut(&[u8], &'a Node)) {
        for (name, node) in &d.children {
            let len = path.len();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name);
            f(path, node);
            if let Node::Dir(sub) = node {
                go(sub, path, f);
            }
            path.truncate(len);
        }
    }
    go(root, &mut Vec::new(), f);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(inodes: &mut Inodes, byte: u8) -> Node {
        Node::File(inodes.add(Inode {
            meta: EntryMeta::mode(0o644),
            size: 1,
            content: Content::Inline(Arc::from(vec![byte])),
        }))
    }

    fn link(target: &str) -> Node {
        Node::Symlink {
            target: target.as_bytes().to_vec(),
            meta: EntryMeta::mode(0o777),
        }
    }

    fn comps(p: &str) -> Vec<&[u8]> {
        split_components(p.as_bytes())
    }

    #[test]
    fn relative_links_resolve_inside_and_escapes_are_refused() {
        let mut root = Dir::default();
        dir_mut(&mut root, &[b"usr".to_vec(), b"lib".to_vec()], 0).unwrap();
        put(&mut root, b"lib".to_vec(), link("usr/lib"));
        let etc = dir_mut(&mut root, &[b"etc".to_vec()], 0).unwrap();
        put(etc, b"up".to_vec(), link("../usr/./lib"));
        put(etc, b"climb".to_vec(), link("../../x"));
        put(etc, b"abs".to_vec(), link("/usr"));
        put(etc, b"loop".to_vec(), link("loop"));
        let mut inodes = Inodes::default();
        let f = file(&mut inodes, 1);
        put(etc, b"file".to_vec(), f);
        // Each link is harmless alone; chained, they climb above the root.
        let a = dir_mut(&mut root, &[b"a".to_vec()], 0).unwrap();
        put(a, b"s".to_vec(), link(".."));
        put(a, b"l".to_vec(), link("s/../x"));
        let got = |p: &str| resolve_dir_path(&root, &comps(p));
        assert_eq!(
            got("lib/x").unwrap(),
            [b"usr".to_vec(), b"lib".to_vec(), b"x".to_vec()]
        );
        assert_eq!(got("etc/up").unwrap(), [b"usr".to_vec(), b"lib".to_vec()]);
        let e = got("etc/climb/y").unwrap_err();
        assert_eq!(
            e.to_string(),
            "it would be written through the symbolic link /etc/climb -> ../../x, which points outside the root file system"
        );
        assert!(matches!(got("etc/abs"), Err(TreeError::Escape { .. })));
        assert!(matches!(got("a/l/y"), Err(TreeError::Escape { .. })));
        assert_eq!(got("a/s/usr").unwrap(), [b"usr".to_vec()]);
        assert_eq!(got("etc/loop").unwrap_err(), TreeError::TooManyLinks);
        assert_eq!(
            got("etc/file/x").unwrap_err(),
            TreeError::NotADirectory("etc/file".into())
        );
        // Missing components are kept for the caller to create.
        assert_eq!(got("new/dir").unwrap(), [b"new".to_vec(), b"dir".to_vec()]);
    }

    #[test]
    fn put_and_merge_follow_tar_semantics() {
        let mut inodes = Inodes::default();
        let mut a = Dir::default();
        let etc = dir_mut(&mut a, &[b"etc".to_vec()], 0).unwrap();
        etc.meta.mode = 0o750;
        etc.implicit = false;
        let f1 = file(&mut inodes, 1);
        put(etc, b"a".to_vec(), f1);
        put(&mut a, b"lib".to_vec(), link("usr/lib"));

        let mut b = Dir::default();
        let mut etc_b = Dir::new(EntryMeta::mode(0o755));
        let f2 = file(&mut inodes, 2);
        etc_b.children.insert(b"b".to_vec(), f2);
        b.children.insert(b"etc".to_vec(), Node::Dir(etc_b));
        // An implicit directory over the symlink replaces it (explicit or not, a dir wins).
        let mut lib = Dir::implicit(0);
        let f3 = file(&mut inodes, 3);
        lib.children.insert(b"x".to_vec(), f3);
        b.children.insert(b"lib".to_vec(), Node::Dir(lib));
        merge(&mut a, b);

        let mut seen = Vec::new();
        walk(&a, &mut |p, n| {
            seen.push((String::from_utf8_lossy(p).into_owned(), n.kind_name()))
        });
        assert_eq!(
            seen,
            [
                ("etc".to_string(), "a directory"),
                ("etc/a".to_string(), "a regular file"),
                ("etc/b".to_string(), "a regular file"),
                ("lib".to_string(), "a directory"),
                ("lib/x".to_string(), "a regular file"),
            ]
        );
        let Some(Node::Dir(etc)) = a.children.get(b"etc".as_slice()) else {
            panic!("etc")
        };
        assert_eq!(etc.meta.mode, 0o755, "the later directory's metadata wins");

        // An implicit directory over an explicit one keeps the explicit metadata.
        let mut c = Dir::default();
        let mut etc_c = Dir::implicit(0);
        etc_c.meta.mode = 0o700;
        c.children.insert(b"etc".to_vec(), Node::Dir(etc_c));
        merge(&mut a, c);
        let Some(Node::Dir(etc)) = a.children.get(b"etc".as_slice()) else {
            panic!("etc")
        };
        assert_eq!(etc.meta.mode, 0o755);
        // A file over a directory replaces the whole subtree.
        let f4 = file(&mut inodes, 4);
        put(&mut a, b"etc".to_vec(), f4);
        assert!(matches!(
            a.children.get(b"etc".as_slice()),
            Some(Node::File(_))
        ));
    }
}
