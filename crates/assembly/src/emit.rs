//! The second pass: writing the assembled tree to an output, streaming each layer once more
//! and copying the entries the tree kept straight to the output. Nothing is buffered whole;
//! the rare entry needed twice (one layer shared by two images) is spooled to an unnamed
//! temporary file.
//!
//! Order, fixed by the tree and therefore reproducible: every directory, symlink, device and
//! FIFO in path order (parents before children); then regular files with content in memory,
//! on the host or in a store blob, in path order; then files from layers, layer by layer in build order, in
//! each layer's own order. Hard links are written as groups, names in path order.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oxkit_store::Store;
use oxkit_store::layer::{Entry, EntryKind, EntryMeta};

use crate::error::{Error, Result};
use crate::layout::{Assembly, Source};
use crate::tree::{Content, Dir, InodeId, Node, SourceId};

/// Where entries go.
pub(crate) trait Sink {
    fn dir(&mut self, path: &[u8], meta: &EntryMeta) -> Result<()>;
    fn symlink(&mut self, path: &[u8], target: &[u8], meta: &EntryMeta) -> Result<()>;
    fn device(&mut self, path: &[u8], block: bool, dev: (u32, u32), meta: &EntryMeta)
    -> Result<()>;
    fn fifo(&mut self, path: &[u8], meta: &EntryMeta) -> Result<()>;
    /// A regular file under `paths` (hard links when more than one); `data` yields `size`
    /// bytes.
    fn file(
        &mut self,
        paths: &[&[u8]],
        meta: &EntryMeta,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<()>;
}

/// A hard-link group: one inode and its names.
struct Group {
    inode: InodeId,
    paths: Vec<Vec<u8>>,
}

/// Writes everything non-regular now, and collects the file groups.
fn walk_tree(
    d: &Dir,
    path: &mut Vec<u8>,
    sink: &mut dyn Sink,
    groups: &mut Vec<Group>,
    by_inode: &mut HashMap<InodeId, usize>,
) -> Result<()> {
    for (name, node) in &d.children {
        let len = path.len();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        match node {
            Node::Dir(sub) => {
                sink.dir(path, &sub.meta)?;
                walk_tree(sub, path, sink, groups, by_inode)?;
            }
            Node::File(id) => match by_inode.get(id) {
                Some(&g) => groups[g].paths.push(path.clone()),
                None => {
                    by_inode.insert(*id, groups.len());
                    groups.push(Group {
                        inode: *id,
                        paths: vec![path.clone()],
                    });
                }
            },
            Node::Symlink { target, meta } => sink.symlink(path, target, meta)?,
            Node::Device {
                block,
                major,
                minor,
                meta,
            } => sink.device(path, *block, (*major, *minor), meta)?,
            Node::Fifo { meta } => sink.fifo(path, meta)?,
        }
        path.truncate(len);
    }
    Ok(())
}

/// What a layer entry is wanted for.
#[derive(Default)]
struct Wanted {
    /// File groups, by entry ordinal.
    files: BTreeMap<u64, Vec<usize>>,
    /// Nested tars (by entry ordinal) and their source ids.
    nested: BTreeMap<u64, SourceId>,
}

/// Writes `a` to `sink`. `scratch` holds temporary files when an entry must be read twice.
pub(crate) fn emit(a: &Assembly, store: &Store, sink: &mut dyn Sink, scratch: &Path) -> Result<()> {
    let mut groups = Vec::new();
    let mut by_inode = HashMap::new();
    walk_tree(&a.root, &mut Vec::new(), sink, &mut groups, &mut by_inode)?;

    let mut wanted: BTreeMap<SourceId, Wanted> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        let inode = a.inodes.get(g.inode);
        let paths: Vec<&[u8]> = g.paths.iter().map(Vec::as_slice).collect();
        match &inode.content {
            Content::Inline(bytes) => {
                sink.file(&paths, &inode.meta, inode.size, &mut &bytes[..])?
            }
            Content::Host(p) => {
                let mut f = File::open(p).map_err(|e| host_err(p, &e))?;
                let len = f.metadata().map_err(|e| host_err(p, &e))?.len();
                if len != inode.size {
                    return Err(Error::Input {
                        message: format!(
                            "{}: changed during the build ({} bytes, was {}); build again",
                            p.display(),
                            len,
                            inode.size
                        ),
                    });
                }
                sink.file(&paths, &inode.meta, inode.size, &mut f)?;
            }
            Content::Blob(digest) => {
                let mut blob = store.open_blob(digest)?;
                if blob.size() != inode.size {
                    return Err(Error::Input {
                        message: format!(
                            "blob {digest} changed in the store during the build ({} bytes, was {}); build again",
                            blob.size(),
                            inode.size
                        ),
                    });
                }
                sink.file(&paths, &inode.meta, inode.size, &mut blob)?;
                // The reader checks the digest when it reaches the end: a corrupt blob fails
                // the build before the output is committed.
                let mut end = [0u8; 1];
                match blob.read(&mut end) {
                    Ok(0) => {}
                    Ok(_) => {
                        return Err(Error::Input {
                            message: format!(
                                "blob {digest} grew in the store during the build; build again"
                            ),
                        });
                    }
                    Err(e) => {
                        return Err(Error::Input {
                            message: format!("blob {digest}: {e}; run oxkit cache fsck"),
                        });
                    }
                }
            }
            Content::Layer { source, ordinal } => {
                wanted
                    .entry(*source)
                    .or_default()
                    .files
                    .entry(*ordinal)
                    .or_default()
                    .push(i);
            }
        }
    }
    // Nested tars are read while their parent layer streams.
    for (sid, s) in a.sources.iter().enumerate() {
        if let Source::Nested { parent, ordinal } = s
            && wanted.contains_key(&(sid as SourceId))
        {
            wanted
                .entry(*parent)
                .or_default()
                .nested
                .insert(*ordinal, sid as SourceId);
        }
    }
    let mut done = 0usize;
    let total_layer_groups: usize = wanted
        .values()
        .map(|w| w.files.values().map(Vec::len).sum::<usize>())
        .sum();
    let mut cx = Cx {
        a,
        groups: &groups,
        sink,
        scratch,
        done: &mut done,
    };
    for (sid, s) in a.sources.iter().enumerate() {
        let Source::Layer { descriptor } = s else {
            continue;
        };
        let Some(w) = wanted.get(&(sid as SourceId)) else {
            continue;
        };
        if w.files.is_empty() && w.nested.is_empty() {
            continue;
        }
        let mut failure: Option<Error> = None;
        let mut ordinal = 0u64;
        let r = oxkit_store::unpack::visit_layer_blob(store, descriptor, |entry, data| {
            let ord = ordinal;
            ordinal += 1;
            let files = w.files.get(&ord).map(Vec::as_slice).unwrap_or(&[]);
            let nested = w
                .nested
                .get(&ord)
                .and_then(|n| wanted.get(n).map(|nw| (*n, nw)));
            if files.is_empty() && nested.is_none() {
                return Ok(());
            }
            let layer = descriptor.digest.to_string();
            match cx.entry(&layer, entry, data, files, nested, &wanted) {
                Ok(()) => Ok(()),
                Err(e) => {
                    failure = Some(e);
                    Err(oxkit_store::Error::Layer {
                        layer,
                        entry: entry.path.display().to_string(),
                        reason: "writing the output failed".into(),
                    })
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        r?;
    }
    if *cx.done != total_layer_groups {
        return Err(Error::Input {
            message: format!(
                "{} of {} files were not found again in their layers (did the store change during the build?); build again",
                total_layer_groups.saturating_sub(*cx.done),
                total_layer_groups
            ),
        });
    }
    Ok(())
}

fn host_err(p: &Path, e: &io::Error) -> Error {
    Error::Input {
        message: format!("cannot read {}: {e}", p.display()),
    }
}

struct Cx<'a> {
    a: &'a Assembly,
    groups: &'a [Group],
    sink: &'a mut dyn Sink,
    scratch: &'a Path,
    done: &'a mut usize,
}

impl Cx<'_> {
    /// One wanted layer entry: its file groups and/or the nested tar it is.
    fn entry(
        &mut self,
        layer: &str,
        entry: &Entry,
        data: &mut dyn Read,
        files: &[usize],
        nested: Option<(SourceId, &Wanted)>,
        all: &BTreeMap<SourceId, Wanted>,
    ) -> Result<()> {
        let EntryKind::File { size } = entry.kind else {
            return Err(changed(layer, entry));
        };
        for g in files {
            if self.a.inodes.get(self.groups[*g].inode).size != size {
                return Err(changed(layer, entry));
            }
        }
        let consumers = files.len() + usize::from(nested.is_some());
        if consumers == 1 {
            if let Some(g) = files.first() {
                return self.group(*g, size, data);
            }
            if let Some((_, w)) = nested {
                return self.nested(layer, entry, data, w, all);
            }
            return Ok(());
        }
        // Needed more than once: spool it (an unnamed file, gone when dropped).
        let mut spool = tempfile::tempfile_in(self.scratch).map_err(|e| {
            Error::output(self.scratch, format!("cannot create a temporary file: {e}"))
        })?;
        io::copy(data, &mut spool).map_err(|e| {
            Error::output(
                self.scratch,
                format!("cannot spool {}: {e}", entry.path.display()),
            )
        })?;
        for g in files {
            spool
                .seek(SeekFrom::Start(0))
                .map_err(|e| Error::output(self.scratch, e))?;
            self.group(*g, size, &mut spool)?;
        }
        if let Some((_, w)) = nested {
            spool
                .seek(SeekFrom::Start(0))
                .map_err(|e| Error::output(self.scratch, e))?;
            self.nested(layer, entry, &mut spool, w, all)?;
        }
        Ok(())
    }

    fn group(&mut self, g: usize, size: u64, data: &mut dyn Read) -> Result<()> {
        let group = &self.groups[g];
        let inode = self.a.inodes.get(group.inode);
        let paths: Vec<&[u8]> = group.paths.iter().map(Vec::as_slice).collect();
        self.sink.file(&paths, &inode.meta, size, data)?;
        *self.done += 1;
        Ok(())
    }

    fn nested(
        &mut self,
        layer: &str,
        outer: &Entry,
        data: &mut dyn Read,
        w: &Wanted,
        all: &BTreeMap<SourceId, Wanted>,
    ) -> Result<()> {
        let name = format!("{} in layer {layer}", outer.path.display());
        let mut failure = None;
        let mut ordinal = 0u64;
        let r = oxkit_store::unpack::visit_layer(data, &name, |entry, data| {
            let ord = ordinal;
            ordinal += 1;
            let files = w.files.get(&ord).map(Vec::as_slice).unwrap_or(&[]);
            if files.is_empty() {
                return Ok(());
            }
            match self.entry(&name, entry, data, files, None, all) {
                Ok(()) => Ok(()),
                Err(e) => {
                    failure = Some(e);
                    Err(oxkit_store::Error::Layer {
                        layer: name.clone(),
                        entry: entry.path.display().to_string(),
                        reason: "writing the output failed".into(),
                    })
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        r.map_err(Error::from)
    }
}

fn changed(layer: &str, entry: &Entry) -> Error {
    Error::Input {
        message: format!(
            "layer {layer}: entry {:?} is not what it was when the tree was built (did the store change during the build?); build again",
            entry.path.display()
        ),
    }
}

/// A path from the tree as a `Path`.
pub(crate) fn as_path(p: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(p))
}

/// Writes the tree as a tar stream (oxkit-store's deterministic tar writer).
pub(crate) struct TarSink<W: io::Write> {
    pub(crate) tar: oxkit_store::layer::TarWriter<W>,
}

impl<W: io::Write> TarSink<W> {
    fn add(&mut self, e: &Entry, data: Option<&mut dyn Read>) -> Result<()> {
        self.tar.add(e, data).map_err(Error::from)
    }
}

impl<W: io::Write> Sink for TarSink<W> {
    fn dir(&mut self, path: &[u8], meta: &EntryMeta) -> Result<()> {
        self.add(&Entry::dir(as_path(path), meta.clone()), None)
    }

    fn symlink(&mut self, path: &[u8], target: &[u8], meta: &EntryMeta) -> Result<()> {
        self.add(
            &Entry::symlink(as_path(path), as_path(target), meta.clone()),
            None,
        )
    }

    fn device(
        &mut self,
        path: &[u8],
        block: bool,
        (major, minor): (u32, u32),
        meta: &EntryMeta,
    ) -> Result<()> {
        let kind = if block {
            EntryKind::BlockDevice { major, minor }
        } else {
            EntryKind::CharDevice { major, minor }
        };
        self.add(
            &Entry {
                path: as_path(path),
                kind,
                meta: meta.clone(),
            },
            None,
        )
    }

    fn fifo(&mut self, path: &[u8], meta: &EntryMeta) -> Result<()> {
        self.add(
            &Entry {
                path: as_path(path),
                kind: EntryKind::Fifo,
                meta: meta.clone(),
            },
            None,
        )
    }

    fn file(
        &mut self,
        paths: &[&[u8]],
        meta: &EntryMeta,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<()> {
        let Some((first, rest)) = paths.split_first() else {
            return Ok(());
        };
        self.add(&Entry::file(as_path(first), size, meta.clone()), Some(data))?;
        for p in rest {
            self.add(
                &Entry::hardlink(as_path(p), as_path(first), meta.clone()),
                None,
            )?;
        }
        Ok(())
    }
}
