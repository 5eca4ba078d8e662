//! A streaming writer for ISO 9660 images of a root file system, with Rock Ridge (RRIP 1.12
//! on SUSP 1.12: POSIX modes, owners, link counts, inode numbers, device numbers, symlinks,
//! names of up to 255 bytes, mtimes) and a Joliet tree (names of up to 103 UCS-2 characters),
//! as LinuxKit's `kernel+iso` makes them with `genisoimage -l -J -R -joliet-long -V
//! LinuxKit`. Linux reads the Rock Ridge tree; Windows the Joliet one.
//!
//! Layout, in 2 KiB blocks: the system area (0-15, zeros), the primary volume descriptor (16),
//! Joliet's supplementary volume descriptor (17), the terminator (18), then each file's data
//! from block 19 on, as files are added (each file at a block boundary; the names of a hard
//! link share one extent). [`IsoRootWriter::finish`] then writes the Rock Ridge continuation
//! areas (entries that do not fit in their directory record, such as the `ER` extension
//! reference and long names or symlink targets), the primary tree's directories and its path
//! tables (little- and big-endian), Joliet's directories and path tables, and last the
//! descriptors. Only names and metadata stay in memory.
//!
//! The primary tree's own names are what ISO 9660 allows with `-l`: up to 31 characters of
//! `A-Z0-9_` (a file's last dot kept as the separator of its extension, and `;1` after it),
//! made unique within their directory; readers that know Rock Ridge use its `NM` names.
//! Directories deeper than ISO 9660's 8 levels stay where they are (`genisoimage -D`): Linux
//! and libisofs read them there.
//!
//! Not kept: extended attributes (Rock Ridge has none; `genisoimage` drops them too, as the
//! `newc` initrd does). Files of 4 GiB or more are refused (they would need several extents).
//!
//! Deterministic: the same calls give the same bytes. Directory records are sorted as ISO
//! 9660 and Joliet sort them; inode numbers follow the order entries were first added;
//! mtimes are clamped to `[0, epoch]`, and the volume's dates are `epoch`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Seek, SeekFrom, Write};

use oxkit_store::layer::EntryMeta;

use crate::bootsplit::RootWriter;
use crate::imagefs::{
    Attrs, Content, Format, ImageError, ImageWriter, Node, ROOT, S_IFBLK, S_IFCHR, S_IFDIR,
    S_IFIFO, S_IFLNK, S_IFREG, Tree, check_symlink, file_path, unrepresentable,
};
use crate::iso::{both16, both32};

const BLOCK: usize = 2048;
const BLOCK_U64: u64 = BLOCK as u64;
const PVD_LBA: u64 = 16;
const SVD_LBA: u64 = 17;
const TERMINATOR_LBA: u64 = 18;
const DATA_LBA: u64 = 19;
const VOLUME_ID: &str = "LinuxKit";
const SYSTEM_ID: &str = "LINUX";
/// A directory record's length without its identifier, padding and system use field.
const RECORD_BASE: usize = 33;
/// The longest directory record (its length is one byte, and even).
const MAX_RECORD: usize = 254;
/// The longest primary-tree identifier of a directory, and of a file's name and extension.
const MAX_ISO_DIR: usize = 31;
const MAX_ISO_FILE: usize = 30;
/// The longest Joliet name, in UCS-2 characters (`-joliet-long`).
const MAX_JOLIET: usize = 103;
const FLAG_DIRECTORY: u8 = 0x02;
/// The size of a `CE` entry, which points at a continuation area.
const CE_LEN: usize = 28;

const ER_ID: &[u8] = b"RRIP_1991A";
const ER_DESCRIPTOR: &[u8] =
    b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SOURCE: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE \
PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

/// For the tree of names and the messages; extended attributes are dropped, not checked.
const FS: Format = Format {
    name: "ISO 9660 (Rock Ridge)",
    max_name: 255,
    xattr_holder: "ISO 9660",
    xattr_codes: [0, 0, 0],
    max_xattr_name: 0,
    max_xattr_value: 0,
    value_too_large: |_| String::new(),
};

fn too_large(reason: &str) -> ImageError {
    FS.too_large(reason)
}

#[derive(Clone)]
enum Kind {
    /// Data at `extent` (0 when empty).
    File {
        extent: u32,
        size: u32,
    },
    Symlink(Vec<u8>),
    Device {
        block: bool,
        major: u32,
        minor: u32,
    },
    Fifo,
}

#[derive(Clone)]
struct Leaf {
    attrs: Attrs,
    kind: Kind,
}

/// A SUSP entry's bytes (signature, length, version, data).
type Entry = Vec<u8>;

/// A place in the continuation areas: block (counted from their first), offset, length.
#[derive(Clone, Copy)]
struct Continued {
    block: u32,
    offset: u32,
    len: u32,
}

/// A directory record to write: what it names and its system use entries.
struct Record {
    ident: Vec<u8>,
    node: usize,
    is_dir: bool,
    entries: Vec<Entry>,
    continued: Option<Continued>,
}

/// One tree of directories (the primary one, or Joliet's): in path table order.
struct DirTree {
    /// Node of each directory, and its parent's number (1-based, the root its own parent).
    dirs: Vec<(usize, u16)>,
    /// Each directory's records, `.` and `..` first.
    records: Vec<Vec<Record>>,
    /// Each directory's identifier in the path table.
    idents: Vec<Vec<u8>>,
    /// Each directory's extent length in blocks, and first block (set when laid out).
    blocks: Vec<u32>,
    lba: Vec<u32>,
}

/// Writes an ISO 9660 image with Rock Ridge and Joliet (see the module documentation).
pub(crate) struct IsoRootWriter<W: Write + Seek> {
    out: W,
    base: u64,
    /// Blocks written so far, relative to `base` (the reserved ones included).
    blocks: u64,
    epoch: u64,
    tree: Tree<Attrs, Leaf>,
    buf: Vec<u8>,
}

impl<W: Write + Seek> IsoRootWriter<W> {
    fn attrs(&self, path: &[u8], meta: &EntryMeta) -> Result<Attrs, ImageError> {
        FS.plain_attrs(path, meta, self.epoch)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.out.write_all(bytes).map_err(ImageError::Write)
    }

    /// Zeros up to the next block boundary after `len` bytes of data.
    fn pad(&mut self, len: u64) -> Result<(), ImageError> {
        let rest = (BLOCK_U64 - len % BLOCK_U64) % BLOCK_U64;
        self.put(&vec![0; rest as usize])
    }

    fn add_leaf(&mut self, path: &[u8], attrs: Attrs, kind: Kind) -> Result<(), ImageError> {
        let place = self.tree.parent(&FS, path)?;
        self.tree.add(&[place], Node::Leaf(Leaf { attrs, kind }));
        Ok(())
    }
}

impl<W: Write + Seek> ImageWriter<W> for IsoRootWriter<W> {
    /// Reserves the system area and the descriptors' blocks.
    fn new(mut out: W, epoch: i64) -> Result<Self, ImageError> {
        let base = out.stream_position().map_err(ImageError::Write)?;
        let epoch = u64::try_from(epoch.max(0)).unwrap_or(0);
        let root = Attrs {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: epoch,
        };
        let mut w = Self {
            out,
            base,
            blocks: DATA_LBA,
            epoch,
            tree: Tree::new(root),
            buf: vec![0; 16 * BLOCK],
        };
        w.put(&vec![0; DATA_LBA as usize * BLOCK])?;
        Ok(w)
    }

    fn root(&mut self, meta: &EntryMeta) -> Result<(), ImageError> {
        let attrs = self.attrs(b"", meta)?;
        self.tree.set_root(attrs);
        Ok(())
    }

    fn finish(mut self) -> Result<W, ImageError> {
        let nlink = link_counts(&self.tree);
        let mut ce = Continuation::default();
        let mut primary = dir_tree(&self.tree, &nlink, &mut ce, Names::Iso)?;
        let mut joliet = dir_tree(&self.tree, &nlink, &mut ce, Names::Joliet)?;
        let ce_lba = self.blocks;
        let mut next = ce_lba + u64::from(ce.blocks());
        let mut place = |t: &mut DirTree| -> Result<(u64, u64, u64), ImageError> {
            for (i, &b) in t.blocks.iter().enumerate() {
                t.lba[i] = u32::try_from(next).map_err(|_| too_large("more than 2^32 blocks"))?;
                next += u64::from(b);
            }
            let table = path_table_len(&t.idents);
            let table_blocks = table.div_ceil(BLOCK) as u64;
            let l = next;
            let m = next + table_blocks;
            next = m + table_blocks;
            Ok((l, m, table as u64))
        };
        let (p_l, p_m, p_len) = place(&mut primary)?;
        let (j_l, j_m, j_len) = place(&mut joliet)?;
        let total = u32::try_from(next).map_err(|_| too_large("more than 2^32 blocks"))?;
        let ce_lba = u32::try_from(ce_lba).map_err(|_| too_large("more than 2^32 blocks"))?;

        // The continuation areas, then each tree's directories and path tables.
        let ce_bytes = ce.bytes(ce_lba);
        self.put(&ce_bytes)?;
        for (t, l, m) in [(&primary, p_l, p_m), (&joliet, j_l, j_m)] {
            let index: HashMap<usize, usize> = t
                .dirs
                .iter()
                .enumerate()
                .map(|(i, &(n, _))| (n, i))
                .collect();
            for d in 0..t.dirs.len() {
                let bytes = directory_bytes(&self.tree, t, d, &index, ce_lba);
                self.put(&bytes)?;
            }
            let (table_l, table_m) = path_tables(t);
            debug_assert_eq!(self.blocks_written()?, l);
            self.put(&table_l)?;
            self.pad(table_l.len() as u64)?;
            debug_assert_eq!(self.blocks_written()?, m);
            self.put(&table_m)?;
            self.pad(table_m.len() as u64)?;
        }
        let end = self.base + u64::from(total) * BLOCK_U64;

        // The descriptors.
        let root_of = |t: &DirTree| (t.lba[0], t.blocks[0] * BLOCK as u32);
        let pvd = volume_descriptor(false, total, p_len, p_l, p_m, root_of(&primary), self.epoch)?;
        let svd = volume_descriptor(true, total, j_len, j_l, j_m, root_of(&joliet), self.epoch)?;
        let mut term = [0u8; BLOCK];
        term[0] = 255;
        term[1..6].copy_from_slice(b"CD001");
        term[6] = 1;
        self.out
            .seek(SeekFrom::Start(self.base + PVD_LBA * BLOCK_U64))
            .map_err(ImageError::Write)?;
        self.put(&pvd)?;
        debug_assert_eq!(SVD_LBA, PVD_LBA + 1);
        self.put(&svd)?;
        debug_assert_eq!(TERMINATOR_LBA, SVD_LBA + 1);
        self.put(&term)?;
        self.out
            .seek(SeekFrom::Start(end))
            .map_err(ImageError::Write)?;
        Ok(self.out)
    }
}

impl<W: Write + Seek> IsoRootWriter<W> {
    fn blocks_written(&mut self) -> Result<u64, ImageError> {
        let at = self.out.stream_position().map_err(ImageError::Write)?;
        Ok((at - self.base) / BLOCK_U64)
    }
}

impl<W: Write + Seek> RootWriter for IsoRootWriter<W> {
    type Error = ImageError;

    fn dir(&mut self, path: &[u8], meta: &EntryMeta) -> Result<(), ImageError> {
        let attrs = self.attrs(path, meta)?;
        self.tree.dir(&FS, path, attrs)
    }

    fn symlink(&mut self, path: &[u8], target: &[u8], meta: &EntryMeta) -> Result<(), ImageError> {
        check_symlink(path, target)?;
        let attrs = self.attrs(path, meta)?;
        self.add_leaf(path, attrs, Kind::Symlink(target.to_vec()))
    }

    fn device(
        &mut self,
        path: &[u8],
        block: bool,
        (major, minor): (u32, u32),
        meta: &EntryMeta,
    ) -> Result<(), ImageError> {
        let attrs = self.attrs(path, meta)?;
        self.add_leaf(
            path,
            attrs,
            Kind::Device {
                block,
                major,
                minor,
            },
        )
    }

    fn fifo(&mut self, path: &[u8], meta: &EntryMeta) -> Result<(), ImageError> {
        let attrs = self.attrs(path, meta)?;
        self.add_leaf(path, attrs, Kind::Fifo)
    }

    /// `content` must yield exactly `size` bytes, which are written now.
    fn file(
        &mut self,
        names: &[&[u8]],
        meta: &EntryMeta,
        size: u64,
        content: &mut dyn Read,
    ) -> Result<(), ImageError> {
        let path = file_path(names);
        let attrs = self.attrs(path, meta)?;
        let places = self.tree.places(&FS, names)?;
        let Ok(size32) = u32::try_from(size) else {
            return Err(unrepresentable(
                path,
                format!("{size} bytes: an ISO 9660 file extent holds less than 4 GiB"),
            ));
        };
        let extent = if size == 0 {
            0
        } else {
            u32::try_from(self.blocks).map_err(|_| too_large("more than 2^32 blocks"))?
        };
        let c = Content::new(path, size);
        let mut done = 0u64;
        let mut buf = std::mem::take(&mut self.buf);
        let read = (|| {
            while done < size {
                let n = (size - done).min(buf.len() as u64) as usize;
                c.read_exact(content, &mut buf[..n], done)?;
                self.put(&buf[..n])?;
                done += n as u64;
            }
            c.end(content)
        })();
        self.buf = buf;
        if let Err(e) = read {
            // What was written is dropped: the next file starts where this one did.
            self.out
                .seek(SeekFrom::Start(self.base + self.blocks * BLOCK_U64))
                .map_err(ImageError::Write)?;
            return Err(e);
        }
        self.pad(size)?;
        self.blocks += size.div_ceil(BLOCK_U64);
        self.tree.add(
            &places,
            Node::Leaf(Leaf {
                attrs,
                kind: Kind::File {
                    extent,
                    size: size32,
                },
            }),
        );
        Ok(())
    }
}

/// Each node's link count: names for files, 2 and one per subdirectory for directories.
fn link_counts(tree: &Tree<Attrs, Leaf>) -> Vec<u32> {
    let mut n = vec![0u32; tree.nodes.len()];
    n[ROOT] = 2;
    let mut queue = VecDeque::from([ROOT]);
    let mut seen = HashSet::from([ROOT]);
    while let Some(d) = queue.pop_front() {
        let Node::Dir { children, .. } = &tree.nodes[d] else {
            continue;
        };
        for &c in children.values() {
            if let Node::Dir { .. } = tree.nodes[c] {
                n[d] += 1;
                n[c] = 2;
                if seen.insert(c) {
                    queue.push_back(c);
                }
            } else {
                n[c] += 1;
            }
        }
    }
    n
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Names {
    Iso,
    Joliet,
}

/// The directories of `tree` in path table order (breadth first, each directory's entries
/// in identifier order), with their records and Rock Ridge entries (primary tree only),
/// continuation areas allocated in `ce`.
fn dir_tree(
    tree: &Tree<Attrs, Leaf>,
    nlink: &[u32],
    ce: &mut Continuation,
    names: Names,
) -> Result<DirTree, ImageError> {
    let mut t = DirTree {
        dirs: vec![(ROOT, 1)],
        records: Vec::new(),
        idents: vec![vec![0]],
        blocks: Vec::new(),
        lba: Vec::new(),
    };
    let mut i = 0;
    while i < t.dirs.len() {
        let (node, parent_no) = t.dirs[i];
        let parent = t.dirs[usize::from(parent_no) - 1].0;
        // Only directories are queued; anything else would list nothing.
        let children = match &tree.nodes[node] {
            Node::Dir { children, .. } => Some(children),
            Node::Leaf(_) => None,
        };
        let kids: Vec<(&[u8], usize, bool)> = children
            .into_iter()
            .flatten()
            .map(|(name, &c)| {
                (
                    name.as_slice(),
                    c,
                    matches!(tree.nodes[c], Node::Dir { .. }),
                )
            })
            .collect();
        let idents = match names {
            Names::Iso => iso_idents(&kids),
            Names::Joliet => joliet_idents(&kids),
        };
        let mut order: Vec<usize> = (0..kids.len()).collect();
        order.sort_by(|&a, &b| idents[a].cmp(&idents[b]));
        let rock = names == Names::Iso;
        let mut records = Vec::with_capacity(kids.len() + 2);
        for (ident, n) in [(vec![0u8], node), (vec![1u8], parent)] {
            let mut entries = Vec::new();
            if rock {
                let at_root = node == ROOT && ident == [0];
                if at_root {
                    entries.push(sp_entry());
                }
                entries.extend(attr_entries(tree, n, nlink));
                if at_root {
                    entries.push(er_entry());
                }
            }
            records.push(Record {
                ident,
                node: n,
                is_dir: true,
                entries,
                continued: None,
            });
        }
        let this_no = u16::try_from(i + 1)
            .map_err(|_| too_large("more than 65535 directories (the path table's limit)"))?;
        for k in order {
            let (name, c, is_dir) = kids[k];
            let mut entries = Vec::new();
            if rock {
                entries.extend(attr_entries(tree, c, nlink));
                entries.extend(nm_entries(name));
                if let Node::Leaf(l) = &tree.nodes[c] {
                    match &l.kind {
                        Kind::Symlink(target) => entries.extend(sl_entries(target)),
                        Kind::Device { major, minor, .. } => {
                            entries.push(pn_entry(*major, *minor));
                        }
                        Kind::File { .. } | Kind::Fifo => {}
                    }
                }
            }
            if is_dir {
                t.dirs.push((c, this_no));
                t.idents.push(idents[k].clone());
            }
            records.push(Record {
                ident: idents[k].clone(),
                node: c,
                is_dir,
                entries,
                continued: None,
            });
        }
        for r in &mut records {
            spill(r, ce);
        }
        let mut blocks = 1u32;
        let mut used = 0usize;
        for r in &records {
            let len = record_len(r);
            if used + len > BLOCK {
                blocks += 1;
                used = 0;
            }
            used += len;
        }
        t.records.push(records);
        t.blocks.push(blocks);
        t.lba.push(0);
        i += 1;
    }
    Ok(t)
}

/// The entries of `r` that fit in its record stay; the rest go to continuation areas, the
/// record keeping a `CE` entry that points at them.
fn spill(r: &mut Record, ce: &mut Continuation) {
    let room = MAX_RECORD - fixed_len(&r.ident);
    let total: usize = r.entries.iter().map(Vec::len).sum();
    if total <= room {
        return;
    }
    let mut inline = 0;
    let mut used = 0;
    while inline < r.entries.len() && used + r.entries[inline].len() + CE_LEN <= room {
        used += r.entries[inline].len();
        inline += 1;
    }
    let rest = r.entries.split_off(inline);
    r.continued = Some(ce.add(rest));
}

/// A record's length before its system use field: base, identifier, padding.
fn fixed_len(ident: &[u8]) -> usize {
    RECORD_BASE + ident.len() + usize::from(ident.len().is_multiple_of(2))
}

fn record_len(r: &Record) -> usize {
    let su: usize =
        r.entries.iter().map(Vec::len).sum::<usize>() + r.continued.map_or(0, |_| CE_LEN);
    let len = fixed_len(&r.ident) + su;
    len + len % 2
}

/// The continuation areas: each within one block; an area too long for a block continues
/// in another, its last entry a `CE` pointing there.
#[derive(Default)]
struct Continuation {
    /// Areas: where, and their entries (without the chaining `CE`).
    areas: Vec<(Continued, Vec<Entry>, Option<Continued>)>,
    block: u32,
    used: u32,
}

impl Continuation {
    fn alloc(&mut self, len: usize) -> Continued {
        let len = len as u32;
        if self.used + len > BLOCK as u32 {
            self.block += 1;
            self.used = 0;
        }
        let at = Continued {
            block: self.block,
            offset: self.used,
            len,
        };
        self.used += len;
        at
    }

    /// Places `entries` (each at most 255 bytes); returns where the first area is.
    fn add(&mut self, entries: Vec<Entry>) -> Continued {
        // Split into areas of at most a block, each but the last keeping room for a CE.
        let mut groups: Vec<Vec<Entry>> = vec![Vec::new()];
        let mut used = 0;
        let n = entries.len();
        for (i, e) in entries.into_iter().enumerate() {
            let last = i + 1 == n;
            let need = e.len() + if last { 0 } else { CE_LEN };
            if used + need > BLOCK && !groups.last().is_some_and(Vec::is_empty) {
                groups.push(Vec::new());
                used = 0;
            }
            used += e.len();
            if let Some(g) = groups.last_mut() {
                g.push(e);
            }
        }
        let lens: Vec<usize> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                g.iter().map(Vec::len).sum::<usize>()
                    + if i + 1 < groups.len() { CE_LEN } else { 0 }
            })
            .collect();
        let places: Vec<Continued> = lens.iter().map(|&l| self.alloc(l)).collect();
        for (i, g) in groups.into_iter().enumerate() {
            self.areas.push((places[i], g, places.get(i + 1).copied()));
        }
        places[0]
    }

    fn blocks(&self) -> u32 {
        if self.areas.is_empty() {
            0
        } else {
            self.block + 1
        }
    }

    /// The areas' blocks, `CE` entries pointing from `lba` on.
    fn bytes(&self, lba: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.blocks() as usize * BLOCK];
        for (at, entries, next) in &self.areas {
            let mut pos = at.block as usize * BLOCK + at.offset as usize;
            for e in entries {
                out[pos..pos + e.len()].copy_from_slice(e);
                pos += e.len();
            }
            if let Some(n) = next {
                let e = ce_entry(lba, *n);
                out[pos..pos + e.len()].copy_from_slice(&e);
            }
        }
        out
    }
}

/// One directory's extent: its records, none crossing a block boundary. `index` gives a
/// directory node's place in `t`.
fn directory_bytes(
    tree: &Tree<Attrs, Leaf>,
    t: &DirTree,
    d: usize,
    index: &HashMap<usize, usize>,
    ce_lba: u32,
) -> Vec<u8> {
    let mut out = vec![0u8; t.blocks[d] as usize * BLOCK];
    let mut pos = 0;
    let dir_extent = |node: usize| -> (u32, u32) {
        let i = index.get(&node).copied().unwrap_or_default();
        (t.lba[i], t.blocks[i] * BLOCK as u32)
    };
    for r in &t.records[d] {
        let len = record_len(r);
        if pos % BLOCK + len > BLOCK {
            pos = pos.next_multiple_of(BLOCK);
        }
        let (extent, size) = if r.is_dir {
            dir_extent(r.node)
        } else {
            match &tree.nodes[r.node] {
                Node::Leaf(Leaf {
                    kind: Kind::File { extent, size },
                    ..
                }) => (*extent, *size),
                _ => (0, 0),
            }
        };
        let mtime = match &tree.nodes[r.node] {
            Node::Dir { attrs, .. } => attrs.mtime,
            Node::Leaf(l) => l.attrs.mtime,
        };
        let rec = &mut out[pos..pos + len];
        rec[0] = len as u8;
        both32(&mut rec[2..10], extent);
        both32(&mut rec[10..18], size);
        rec[18..25].copy_from_slice(&record_date(mtime));
        rec[25] = if r.is_dir { FLAG_DIRECTORY } else { 0 };
        both16(&mut rec[28..32], 1);
        rec[32] = r.ident.len() as u8;
        rec[33..33 + r.ident.len()].copy_from_slice(&r.ident);
        let mut su = fixed_len(&r.ident);
        for e in &r.entries {
            rec[su..su + e.len()].copy_from_slice(e);
            su += e.len();
        }
        if let Some(c) = r.continued {
            let e = ce_entry(ce_lba, c);
            rec[su..su + e.len()].copy_from_slice(&e);
        }
        pos += len;
    }
    out
}

fn path_table_len(idents: &[Vec<u8>]) -> usize {
    idents.iter().map(|i| 8 + i.len() + i.len() % 2).sum()
}

/// The little- and big-endian path tables.
fn path_tables(t: &DirTree) -> (Vec<u8>, Vec<u8>) {
    let mut l = Vec::with_capacity(path_table_len(&t.idents));
    let mut m = Vec::with_capacity(l.capacity());
    for (i, ident) in t.idents.iter().enumerate() {
        let parent = t.dirs[i].1;
        for (out, big) in [(&mut l, false), (&mut m, true)] {
            out.push(ident.len() as u8);
            out.push(0);
            if big {
                out.extend_from_slice(&t.lba[i].to_be_bytes());
                out.extend_from_slice(&parent.to_be_bytes());
            } else {
                out.extend_from_slice(&t.lba[i].to_le_bytes());
                out.extend_from_slice(&parent.to_le_bytes());
            }
            out.extend_from_slice(ident);
            if ident.len() % 2 == 1 {
                out.push(0);
            }
        }
    }
    (l, m)
}

/// A primary or Joliet supplementary volume descriptor.
fn volume_descriptor(
    joliet: bool,
    total: u32,
    table_len: u64,
    table_l: u64,
    table_m: u64,
    (root_lba, root_len): (u32, u32),
    epoch: u64,
) -> Result<Vec<u8>, ImageError> {
    let mut d = vec![0u8; BLOCK];
    d[0] = if joliet { 2 } else { 1 };
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    let text = |s: &str, len: usize| -> Vec<u8> {
        if joliet {
            let mut v: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
            while v.len() + 2 <= len {
                v.extend_from_slice(&[0, b' ']);
            }
            v.resize(len, b' ');
            v
        } else {
            let mut v = s.as_bytes().to_vec();
            v.resize(len, b' ');
            v
        }
    };
    d[8..40].copy_from_slice(&text(SYSTEM_ID, 32));
    d[40..72].copy_from_slice(&text(VOLUME_ID, 32));
    both32(&mut d[80..88], total);
    if joliet {
        d[88..91].copy_from_slice(b"%/E");
    }
    both16(&mut d[120..124], 1);
    both16(&mut d[124..128], 1);
    both16(&mut d[128..132], BLOCK as u16);
    let table_len = u32::try_from(table_len).map_err(|_| too_large("a path table over 4 GiB"))?;
    both32(&mut d[132..140], table_len);
    let lba = |v: u64| u32::try_from(v).map_err(|_| too_large("more than 2^32 blocks"));
    d[140..144].copy_from_slice(&lba(table_l)?.to_le_bytes());
    d[148..152].copy_from_slice(&lba(table_m)?.to_be_bytes());
    // The root directory's record.
    let r = &mut d[156..190];
    r[0] = 34;
    both32(&mut r[2..10], root_lba);
    both32(&mut r[10..18], root_len);
    r[18..25].copy_from_slice(&record_date(epoch));
    r[25] = FLAG_DIRECTORY;
    both16(&mut r[28..32], 1);
    r[32] = 1;
    for (at, len) in [(190, 128), (318, 128), (446, 128), (574, 128)] {
        d[at..at + len].copy_from_slice(&text("", len));
    }
    for (at, len) in [(702, 37), (739, 37), (776, 37)] {
        d[at..at + len].copy_from_slice(&text("", len));
    }
    let date = volume_date(epoch);
    d[813..830].copy_from_slice(&date);
    d[830..847].copy_from_slice(&date);
    let unset = *b"0000000000000000\0";
    d[847..864].copy_from_slice(&unset);
    d[864..881].copy_from_slice(&unset);
    d[881] = 1;
    Ok(d)
}

/// [`both32`], appended.
fn both32_vec(v: &mut Vec<u8>, x: u32) {
    let mut b = [0u8; 8];
    both32(&mut b, x);
    v.extend_from_slice(&b);
}

/// UTC date and time of `secs` since 1970: year, month, day, hour, minute, second.
fn utc(secs: u64) -> (u64, u8, u8, u8, u8, u8) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a civil date (proleptic Gregorian), by 400-year eras.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + u64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u8,
        (rem % 3600 / 60) as u8,
        (rem % 60) as u8,
    )
}

/// A directory record's (and `TF`'s) 7-byte date: years since 1900 (at most 2155), UTC.
fn record_date(secs: u64) -> [u8; 7] {
    let (y, mo, d, h, mi, s) = utc(secs);
    if y > 2155 {
        return [255, 12, 31, 23, 59, 59, 0];
    }
    [(y - 1900) as u8, mo, d, h, mi, s, 0]
}

/// A volume descriptor's 17-byte date, `YYYYMMDDHHMMSScc` and a zero UTC offset.
fn volume_date(secs: u64) -> [u8; 17] {
    let (y, mo, d, h, mi, s) = utc(secs);
    let text = format!("{:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00", y.min(9999));
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(text.as_bytes());
    out
}

fn entry(sig: &[u8; 2], data: &[u8]) -> Entry {
    let mut e = Vec::with_capacity(4 + data.len());
    e.extend_from_slice(sig);
    e.push((4 + data.len()) as u8);
    e.push(1);
    e.extend_from_slice(data);
    e
}

/// `SP`: SUSP is in use (first entry of the root's `.` record), no bytes skipped.
fn sp_entry() -> Entry {
    entry(b"SP", &[0xbe, 0xef, 0])
}

/// `ER`: the extension in use is RRIP 1.12 (`RRIP_1991A`).
fn er_entry() -> Entry {
    let mut data = vec![
        ER_ID.len() as u8,
        ER_DESCRIPTOR.len() as u8,
        ER_SOURCE.len() as u8,
        1,
    ];
    data.extend_from_slice(ER_ID);
    data.extend_from_slice(ER_DESCRIPTOR);
    data.extend_from_slice(ER_SOURCE);
    entry(b"ER", &data)
}

fn ce_entry(lba: u32, c: Continued) -> Entry {
    let mut data = Vec::with_capacity(24);
    both32_vec(&mut data, lba + c.block);
    both32_vec(&mut data, c.offset);
    both32_vec(&mut data, c.len);
    entry(b"CE", &data)
}

/// `PX` (mode, links, owner, inode number) and `TF` (modify, access and attribute change
/// times, all the mtime) of `node`.
fn attr_entries(tree: &Tree<Attrs, Leaf>, node: usize, nlink: &[u32]) -> [Entry; 2] {
    let (a, kind) = match &tree.nodes[node] {
        Node::Dir { attrs, .. } => (*attrs, S_IFDIR),
        Node::Leaf(l) => (
            l.attrs,
            match l.kind {
                Kind::File { .. } => S_IFREG,
                Kind::Symlink(_) => S_IFLNK,
                Kind::Device { block: true, .. } => S_IFBLK,
                Kind::Device { block: false, .. } => S_IFCHR,
                Kind::Fifo => S_IFIFO,
            },
        ),
    };
    let mut px = Vec::with_capacity(40);
    both32_vec(&mut px, u32::from(a.mode | kind));
    both32_vec(&mut px, nlink[node].max(1));
    both32_vec(&mut px, a.uid);
    both32_vec(&mut px, a.gid);
    both32_vec(&mut px, u32::try_from(node + 1).unwrap_or(u32::MAX));
    let date = record_date(a.mtime);
    let mut tf = vec![0x0e];
    for _ in 0..3 {
        tf.extend_from_slice(&date);
    }
    [entry(b"PX", &px), entry(b"TF", &tf)]
}

/// `NM` entries holding `name` (more than one for names over 250 bytes).
fn nm_entries(name: &[u8]) -> Vec<Entry> {
    let chunks: Vec<&[u8]> = name.chunks(250).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut data = vec![u8::from(i + 1 < chunks.len())];
            data.extend_from_slice(c);
            entry(b"NM", &data)
        })
        .collect()
}

/// `PN`: the device number as a 64-bit `dev_t` (glibc's encoding, what `stat` gives
/// `genisoimage`), high half then low half. Linux reads a low half with a zero high half as
/// an old 8:8 number, which this encoding is for minors below 256.
fn pn_entry(major: u32, minor: u32) -> Entry {
    let (major, minor) = (u64::from(major), u64::from(minor));
    let dev = ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff);
    let mut data = Vec::with_capacity(16);
    both32_vec(&mut data, (dev >> 32) as u32);
    both32_vec(&mut data, dev as u32);
    entry(b"PN", &data)
}

/// `SL` entries spelling `target` as components (root, `.`, `..` or a name, split where an
/// entry is full, the continued part flagged).
fn sl_entries(target: &[u8]) -> Vec<Entry> {
    const ROOM: usize = 250;
    let mut comps: Vec<(u8, &[u8])> = Vec::new();
    if target.first() == Some(&b'/') {
        comps.push((0x08, b""));
    }
    for part in target.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        comps.push(match part {
            b"." => (0x02, b""),
            b".." => (0x04, b""),
            _ => (0, part),
        });
    }
    let mut entries: Vec<Vec<u8>> = vec![Vec::new()];
    for (flags, mut bytes) in comps {
        loop {
            let cur = entries.last().map_or(0, Vec::len);
            if cur + 2 > ROOM || (cur + 2 == ROOM && !bytes.is_empty()) {
                entries.push(Vec::new());
                continue;
            }
            let space = ROOM - cur - 2;
            let take = bytes.len().min(space);
            let more = take < bytes.len();
            if let Some(e) = entries.last_mut() {
                e.push(flags | u8::from(more));
                e.push(take as u8);
                e.extend_from_slice(&bytes[..take]);
            }
            bytes = &bytes[take..];
            if !more {
                break;
            }
            entries.push(Vec::new());
        }
    }
    let n = entries.len();
    entries
        .into_iter()
        .enumerate()
        .map(|(i, comps)| {
            let mut data = vec![u8::from(i + 1 < n)];
            data.extend_from_slice(&comps);
            entry(b"SL", &data)
        })
        .collect()
}

/// Identifiers unique among `taken`: `base` truncated to leave room for a counter.
/// (Bytes for the primary tree, UCS-2 units for Joliet's.)
fn unique<T: Copy + Eq + std::hash::Hash + From<u8>>(
    base: &[T],
    suffix: &[T],
    max: usize,
    taken: &mut HashSet<Vec<T>>,
) -> Vec<T> {
    let mut id = base.to_vec();
    id.truncate(max - suffix.len());
    id.extend_from_slice(suffix);
    let mut n = 0u32;
    while !taken.insert(id.clone()) {
        let counter: Vec<T> = format!("{n:03}").bytes().map(T::from).collect();
        id = base.to_vec();
        id.truncate(max.saturating_sub(suffix.len() + counter.len()));
        id.extend_from_slice(&counter);
        id.extend_from_slice(suffix);
        n += 1;
    }
    id
}

/// The primary tree's identifiers for a directory's entries (in their order): upper-case
/// `A-Z0-9_`, a file's extension after its last dot, `;1` after a file's.
fn iso_idents(kids: &[(&[u8], usize, bool)]) -> Vec<Vec<u8>> {
    let map = |s: &[u8]| -> Vec<u8> {
        s.iter()
            .map(|&b| match b {
                b'a'..=b'z' => b.to_ascii_uppercase(),
                b'A'..=b'Z' | b'0'..=b'9' | b'_' => b,
                _ => b'_',
            })
            .collect()
    };
    let mut taken = HashSet::new();
    kids.iter()
        .map(|&(name, _, is_dir)| {
            if is_dir {
                return unique(&map(name), b"", MAX_ISO_DIR, &mut taken);
            }
            let (stem, ext) = match name.iter().rposition(|&b| b == b'.') {
                Some(i) if i > 0 => (&name[..i], &name[i + 1..]),
                _ => (name, &b""[..]),
            };
            let mut ext = map(ext);
            ext.truncate(MAX_ISO_FILE / 2);
            let mut suffix = vec![b'.'];
            suffix.extend_from_slice(&ext);
            let id = unique(&map(stem), &suffix, MAX_ISO_FILE + 1, &mut taken);
            let mut id = id;
            id.extend_from_slice(b";1");
            id
        })
        .collect()
}

/// Joliet's identifiers for a directory's entries: UCS-2 big-endian, what Joliet forbids
/// (and what is not UTF-8, or outside the BMP) as `_`, `;1` after a file's.
fn joliet_idents(kids: &[(&[u8], usize, bool)]) -> Vec<Vec<u8>> {
    let mut taken = HashSet::new();
    kids.iter()
        .map(|&(name, _, is_dir)| {
            let text = String::from_utf8_lossy(name);
            let chars: Vec<u16> = text
                .chars()
                .map(|c| match c {
                    '*' | '/' | ':' | ';' | '?' | '\\' | '\u{fffd}' => '_' as u16,
                    c if (c as u32) < 0x20 || (c as u32) > 0xffff => '_' as u16,
                    c => c as u16,
                })
                .collect();
            let max = if is_dir { MAX_JOLIET } else { MAX_JOLIET - 2 };
            let id = unique(&chars, &[], max, &mut taken);
            let mut bytes: Vec<u8> = id.iter().flat_map(|u| u.to_be_bytes()).collect();
            if !is_dir {
                bytes.extend_from_slice(&[0, b';', 0, b'1']);
            }
            bytes
        })
        .collect()
}

#[cfg(test)]
#[path = "rockridge/tests.rs"]
mod tests;
