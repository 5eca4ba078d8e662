//! A streaming writer for SquashFS 4.0 images (what Linux mounts since 2.6.29 and
//! `unsquashfs` reads), laid out the way `mksquashfs` lays them out by default: 128 KiB data
//! blocks and 8 KiB metadata blocks compressed with zlib ("gzip", level 9), files smaller than
//! a block packed together into shared fragment blocks, all-zero blocks stored sparse (no
//! bytes), a block that does not shrink stored as is with the "uncompressed" bit, extended
//! attributes (`user.`, `trusted.`, `security.`) in the xattr table, a directory index in
//! the inode of every directory whose listing crosses a metadata block (so the kernel's
//! lookups in large directories skip ahead), and no NFS export table.
//! Like `mksquashfs`'s default, the tail of a file of a block or more is a short block of its
//! own, not a fragment. Identical files (the same size and SHA-256) share their data, as
//! `mksquashfs` makes them share it.
//!
//! File data goes to the output as files are added, a block at a time (the blocks of a large
//! file compressed a batch at a time, one per core, each on its own; full fragment blocks
//! queued and compressed [`FRAGMENT_BATCH`] at a time the same way: the bytes do not depend
//! on the number of cores); only the metadata
//! (names, inode fields, block sizes: a few bytes per 128 KiB) stays in memory until
//! [`SquashfsWriter::finish`] writes the inode, directory, fragment, id and xattr tables and,
//! last, the superblock at the position where the image started. The image is padded to a
//! multiple of 4 KiB, as `mksquashfs` pads it for loop devices.
//!
//! Deterministic by construction: the same calls give the same bytes. Directory entries are
//! sorted by name bytes whatever the order they were added in; inode numbers are handed out
//! breadth-first (the root is 1, each directory's entries get consecutive numbers in name
//! order); the id and xattr tables list ids and attribute sets in first-use order of that
//! numbering's depth-first write; mtimes are clamped to `[0, epoch]` and the image's creation
//! time is `epoch`.
//!
//! Paths are relative to the root, `/`-separated, without a leading `/`; a path's parent
//! directory must have been added before it (the root always exists). A path added twice:
//! the later entry replaces the earlier one, but a directory added over a directory only
//! takes the new metadata and keeps its entries. The data of a replaced file stays in the
//! image, unreferenced.
//!
//! This module only encodes: it never reads the file system, and it refuses what SquashFS
//! cannot hold (ids above 2^32-1 or more than 65535 distinct ids, device numbers beyond
//! 12-bit major / 20-bit minor, names over 256 bytes, xattrs outside the three namespaces)
//! with an error naming the path. After a write error the output is unusable; after a content
//! error ([`ImageError::Short`], [`ImageError::Long`], [`ImageError::Read`]) the
//! writer stays usable and the entry was not added.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom, Write};

use flate2::{Compress, Compression, FlushCompress, Status};
use oxkit_spec::{Digest, Sha256Hasher};
use oxkit_store::layer::EntryMeta;

use crate::bootsplit::RootWriter;
use crate::imagefs::{
    Attrs, Content, Format, ImageError, ImageWriter, Node, ROOT, Tree, check_symlink, file_path,
    put16, put32, put64,
};

const MAGIC: u32 = 0x7371_7368;
const BLOCK_SIZE: usize = 128 * 1024;
const BLOCK_LOG: u16 = 17;
const METADATA_SIZE: usize = 8192;
const COMPRESSION_GZIP: u16 = 1;
const DATA_UNCOMPRESSED: u32 = 1 << 24;
const META_UNCOMPRESSED: u16 = 0x8000;
const NO_FRAGMENT: u32 = u32::MAX;
const NO_XATTR: u32 = u32::MAX;
const NO_TABLE: u64 = u64::MAX;
const SUPERBLOCK_LEN: usize = 96;
const DEVICE_BLOCK: u64 = 4096;
const MAX_DIR_HEADER_ENTRIES: usize = 256;
const FLAG_NO_XATTRS: u16 = 0x0200;

const T_DIR: u16 = 1;
const T_FILE: u16 = 2;
const T_SYMLINK: u16 = 3;
const T_BLOCK: u16 = 4;
const T_CHAR: u16 = 5;
const T_FIFO: u16 = 6;
/// Added to a basic type to get its extended type.
const EXTENDED: u16 = 7;

const FS: Format = Format {
    name: "SquashFS",
    max_name: 256,
    xattr_holder: "SquashFS",
    xattr_codes: [0, 1, 2],
    max_xattr_name: u16::MAX as usize,
    max_xattr_value: u32::MAX as usize,
    value_too_large: |_| "the value is too large".into(),
};

/// An inode's metadata, validated.
#[derive(Clone, Copy)]
struct Meta {
    attrs: Attrs,
    /// Index into the interned xattr sets.
    xattrs: Option<usize>,
}

#[derive(Clone)]
struct FileData {
    start: u64,
    size: u64,
    blocks: Vec<u32>,
    /// Fragment index and offset in it.
    fragment: Option<(u32, u32)>,
    /// Bytes of the file stored as sparse blocks.
    sparse: u64,
}

enum Body {
    File(FileData),
    Symlink(Vec<u8>),
    Device { block: bool, rdev: u32 },
    Fifo,
}

/// Anything but a directory.
struct Leaf {
    meta: Meta,
    body: Body,
}

type Entry = Node<Meta, Leaf>;

/// One interned xattr set: (prefix type, name without the prefix, value), sorted by full name.
type XattrSet = Vec<(u16, Vec<u8>, Vec<u8>)>;

/// zlib at level 9, reused for every block; `out` holds the last result.
struct Zlib {
    c: Compress,
    out: Vec<u8>,
}

impl Zlib {
    fn new() -> Self {
        Self {
            c: Compress::new(Compression::best(), true),
            out: Vec::with_capacity(BLOCK_SIZE),
        }
    }

    /// Compresses `data` into `self.out`; false when the result would not be smaller.
    fn shrink(&mut self, data: &[u8]) -> Result<bool, ImageError> {
        self.c.reset();
        self.out.clear();
        if self.out.capacity() < data.len() {
            self.out.reserve(data.len());
        }
        let status = self
            .c
            .compress_vec(data, &mut self.out, FlushCompress::Finish)
            .map_err(|e| ImageError::Compress(e.to_string()))?;
        Ok(status == Status::StreamEnd && self.out.len() < data.len())
    }
}

/// How many data blocks are compressed side by side: one per core, up to 16.
fn batch_blocks() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(16))
}

/// Full fragment blocks compressed together. A fixed number, so that where they land in the
/// image does not depend on the number of cores.
const FRAGMENT_BATCH: usize = 16;

/// `f` over `blocks`, one thread and one compressor of `zs` per block (`zs` has one for each).
fn each_block<T: Send>(
    zs: &mut [Zlib],
    blocks: &[&[u8]],
    f: fn(&mut Zlib, &[u8]) -> Result<T, ImageError>,
) -> Vec<Result<T, ImageError>> {
    if let ([z], [b]) = (&mut *zs, blocks) {
        return vec![f(z, b)];
    }
    std::thread::scope(|s| {
        let running: Vec<_> = zs
            .iter_mut()
            .zip(blocks)
            .map(|(z, &b)| s.spawn(move || f(z, b)))
            .collect();
        running
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ImageError::Compress("a compression thread failed".into()))
                })
            })
            .collect()
    })
}

/// `None` for an all-zero block (stored sparse); else whether `z.out` holds it compressed
/// smaller (`false`: store it as is).
fn compress_block(z: &mut Zlib, block: &[u8]) -> Result<Option<bool>, ImageError> {
    if block.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    z.shrink(block).map(Some)
}

/// A metadata table being built in memory: 8 KiB blocks, each compressed (when that helps)
/// behind a 2-byte length header.
#[derive(Default)]
struct MetaTable {
    done: Vec<u8>,
    buf: Vec<u8>,
}

impl MetaTable {
    /// Where the next byte goes: the start of its block in the table and its offset in the
    /// block's uncompressed bytes.
    fn pos(&self) -> Result<(u32, u16), ImageError> {
        let block = u32::try_from(self.done.len())
            .map_err(|_| FS.too_large("a metadata table exceeds 4 GiB"))?;
        // `buf` is flushed whenever it reaches METADATA_SIZE, so the offset fits.
        Ok((block, self.buf.len() as u16))
    }

    fn reference(&self) -> Result<u64, ImageError> {
        let (block, offset) = self.pos()?;
        Ok((u64::from(block) << 16) | u64::from(offset))
    }

    fn push(&mut self, z: &mut Zlib, bytes: &[u8]) -> Result<(), ImageError> {
        self.buf.extend_from_slice(bytes);
        while self.buf.len() >= METADATA_SIZE {
            let rest = self.buf.split_off(METADATA_SIZE);
            let block = std::mem::replace(&mut self.buf, rest);
            meta_block(z, &block, &mut self.done)?;
        }
        Ok(())
    }

    fn finish(mut self, z: &mut Zlib) -> Result<Vec<u8>, ImageError> {
        if !self.buf.is_empty() {
            meta_block(z, &self.buf, &mut self.done)?;
        }
        Ok(self.done)
    }
}

/// Appends one metadata block (at most 8 KiB of `data`) to `out`.
fn meta_block(z: &mut Zlib, data: &[u8], out: &mut Vec<u8>) -> Result<(), ImageError> {
    // METADATA_SIZE < 0x8000, so both lengths fit the 15 bits.
    if z.shrink(data)? {
        out.extend_from_slice(&(z.out.len() as u16).to_le_bytes());
        out.extend_from_slice(&z.out);
    } else {
        out.extend_from_slice(&(data.len() as u16 | META_UNCOMPRESSED).to_le_bytes());
        out.extend_from_slice(data);
    }
    Ok(())
}

/// Writes a SquashFS 4.0 image to `W`, starting at its position when [`SquashfsWriter::new`]
/// is called. `W` should be buffered (a `BufWriter<File>`): the writer issues one write per
/// data block and a few per table.
pub(crate) struct SquashfsWriter<W: Write + Seek> {
    out: W,
    /// Where the image starts in `out`.
    base: u64,
    /// Bytes written so far, relative to `base`.
    pos: u64,
    epoch: u32,
    tree: Tree<Meta, Leaf>,
    xattr_sets: Vec<XattrSet>,
    xattr_index: HashMap<XattrSet, usize>,
    z: Zlib,
    /// Up to [`batch_blocks`] data blocks read ahead, compressed side by side with `zs`.
    block: Vec<u8>,
    zs: Vec<Zlib>,
    /// The fragment block being filled.
    fragment: Vec<u8>,
    /// Full fragment blocks not written yet (fewer than [`FRAGMENT_BATCH`]), and spare ones.
    pending: Vec<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    /// Written fragments: start and on-disk size word.
    fragments: Vec<(u64, u32)>,
    /// Every file's data by size and SHA-256, so that identical files share it.
    stored: HashMap<(u64, Digest), FileData>,
}

impl<W: Write + Seek> ImageWriter<W> for SquashfsWriter<W> {
    /// A writer whose entries' mtimes are clamped to `epoch` (negative means 0), which is
    /// also the image's creation time. Reserves the superblock's place.
    fn new(mut out: W, epoch: i64) -> Result<Self, ImageError> {
        let base = out.stream_position().map_err(ImageError::Write)?;
        let epoch = u32::try_from(epoch.clamp(0, i64::from(u32::MAX))).unwrap_or(u32::MAX);
        let mut w = Self {
            out,
            base,
            pos: 0,
            epoch,
            tree: Tree::new(Meta {
                attrs: Attrs {
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    mtime: u64::from(epoch),
                },
                xattrs: None,
            }),
            xattr_sets: Vec::new(),
            xattr_index: HashMap::new(),
            z: Zlib::new(),
            block: vec![0; BLOCK_SIZE * batch_blocks()],
            zs: (0..batch_blocks()).map(|_| Zlib::new()).collect(),
            fragment: Vec::with_capacity(BLOCK_SIZE),
            pending: Vec::new(),
            spare: Vec::new(),
            fragments: Vec::new(),
            stored: HashMap::new(),
        };
        w.put(&[0; SUPERBLOCK_LEN])?;
        Ok(w)
    }

    /// The root directory's metadata (0755, root:root, `epoch`, no xattrs unless set here).
    fn root(&mut self, meta: &EntryMeta) -> Result<(), ImageError> {
        let meta = self.attrs(b"", meta)?;
        self.tree.set_root(meta);
        Ok(())
    }

    /// Writes the tables and the superblock, pads the image to 4 KiB; returns the output,
    /// positioned at the end of the image.
    fn finish(mut self) -> Result<W, ImageError> {
        self.flush_fragment()?;
        self.write_fragments()?;
        let nodes = std::mem::take(&mut self.tree.nodes);
        let n = nodes.len();

        // Inode numbers (breadth-first), link counts, parents.
        let mut ino = vec![0u32; n];
        let mut nlink = vec![0u32; n];
        let mut parent_ino = vec![0u32; n];
        let mut count: u32 = 1;
        ino[ROOT] = 1;
        let mut queue = VecDeque::from([ROOT]);
        while let Some(d) = queue.pop_front() {
            let Node::Dir { children, .. } = &nodes[d] else {
                continue;
            };
            let mut subdirs: u32 = 0;
            for &c in children.values() {
                let is_dir = matches!(nodes[c], Node::Dir { .. });
                if ino[c] == 0 {
                    count = count
                        .checked_add(1)
                        .ok_or_else(|| FS.too_large("more than 2^32 inodes"))?;
                    ino[c] = count;
                    if is_dir {
                        parent_ino[c] = ino[d];
                        queue.push_back(c);
                    }
                }
                nlink[c] = nlink[c].saturating_add(1);
                subdirs = subdirs.saturating_add(u32::from(is_dir));
            }
            nlink[d] = subdirs.saturating_add(2);
        }
        parent_ino[ROOT] = count.saturating_add(1);

        // Inodes and directory listings, children before their directory.
        let mut t = Tables::default();
        let mut written: Vec<Option<u64>> = vec![None; n];
        struct Frame<'a> {
            dir: usize,
            children: Vec<(&'a [u8], usize)>,
            next: usize,
        }
        let frame = |d: usize| Frame {
            dir: d,
            children: match &nodes[d] {
                Node::Dir { children, .. } => {
                    children.iter().map(|(k, &v)| (k.as_slice(), v)).collect()
                }
                Node::Leaf(_) => Vec::new(),
            },
            next: 0,
        };
        let mut stack = vec![frame(ROOT)];
        while let Some(top) = stack.last_mut() {
            if let Some(&(_, c)) = top.children.get(top.next) {
                top.next += 1;
                if written[c].is_some() {
                    continue;
                }
                if matches!(nodes[c], Node::Dir { .. }) {
                    stack.push(frame(c));
                } else {
                    let r = t.inode(
                        &mut self.z,
                        &nodes[c],
                        &self.xattr_sets,
                        ino[c],
                        nlink[c],
                        None,
                    )?;
                    written[c] = Some(r);
                }
                continue;
            }
            let Some(done) = stack.pop() else { break };
            let mut entries = Vec::with_capacity(done.children.len());
            for (name, c) in done.children {
                let r =
                    written[c].ok_or_else(|| FS.too_large("internal: an entry was not written"))?;
                entries.push((name, r, ino[c], basic_type(&nodes[c])));
            }
            let listing = t.listing(&mut self.z, &entries)?;
            let d = done.dir;
            let r = t.inode(
                &mut self.z,
                &nodes[d],
                &self.xattr_sets,
                ino[d],
                nlink[d],
                Some((listing, parent_ino[d])),
            )?;
            written[d] = Some(r);
        }
        let root_ref =
            written[ROOT].ok_or_else(|| FS.too_large("internal: the root was not written"))?;

        let Tables {
            inodes,
            dirs,
            ids,
            xattr_order,
            ..
        } = t;
        let inodes = inodes.finish(&mut self.z)?;
        let dirs = dirs.finish(&mut self.z)?;
        let inode_table_start = self.pos;
        self.put(&inodes)?;
        let directory_table_start = self.pos;
        self.put(&dirs)?;

        let mut frag_entries = Vec::with_capacity(self.fragments.len() * 16);
        for &(start, size) in &self.fragments {
            put64(&mut frag_entries, start);
            put32(&mut frag_entries, size);
            put32(&mut frag_entries, 0);
        }
        let fragment_table_start = self.table(&frag_entries)?;

        let mut id_entries = Vec::with_capacity(ids.len() * 4);
        for id in &ids {
            put32(&mut id_entries, *id);
        }
        let id_table_start = self.table(&id_entries)?;

        let xattr_id_table_start = if xattr_order.is_empty() {
            NO_TABLE
        } else {
            let mut kv = MetaTable::default();
            let mut id_entries = Vec::with_capacity(xattr_order.len() * 16);
            for &set in &xattr_order {
                let r = kv.reference()?;
                let mut bytes = Vec::new();
                for (kind, name, value) in &self.xattr_sets[set] {
                    put16(&mut bytes, *kind);
                    put16(&mut bytes, name.len() as u16);
                    bytes.extend_from_slice(name);
                    put32(&mut bytes, value.len() as u32);
                    bytes.extend_from_slice(value);
                }
                kv.push(&mut self.z, &bytes)?;
                put64(&mut id_entries, r);
                put32(&mut id_entries, self.xattr_sets[set].len() as u32);
                put32(
                    &mut id_entries,
                    u32::try_from(bytes.len())
                        .map_err(|_| FS.too_large("an xattr set exceeds 4 GiB"))?,
                );
            }
            let kv = kv.finish(&mut self.z)?;
            let kv_start = self.pos;
            self.put(&kv)?;
            let starts = self.table_blocks(&id_entries)?;
            let table_start = self.pos;
            let mut head = Vec::new();
            put64(&mut head, kv_start);
            put32(&mut head, xattr_order.len() as u32);
            put32(&mut head, 0);
            for s in starts {
                put64(&mut head, s);
            }
            self.put(&head)?;
            table_start
        };

        let bytes_used = self.pos;
        let rem = bytes_used % DEVICE_BLOCK;
        if rem != 0 {
            let zeros = [0u8; DEVICE_BLOCK as usize];
            self.put(&zeros[..(DEVICE_BLOCK - rem) as usize])?;
        }
        let end = self.pos;

        let id_count = u16::try_from(ids.len())
            .map_err(|_| FS.too_large("more than 65535 distinct uids/gids"))?;
        let fragment_count = u32::try_from(self.fragments.len())
            .map_err(|_| FS.too_large("more than 2^32 fragments"))?;
        let flags = if xattr_order.is_empty() {
            FLAG_NO_XATTRS
        } else {
            0
        };
        let mut sb = Vec::with_capacity(SUPERBLOCK_LEN);
        put32(&mut sb, MAGIC);
        put32(&mut sb, count);
        put32(&mut sb, self.epoch);
        put32(&mut sb, BLOCK_SIZE as u32);
        put32(&mut sb, fragment_count);
        put16(&mut sb, COMPRESSION_GZIP);
        put16(&mut sb, BLOCK_LOG);
        put16(&mut sb, flags);
        put16(&mut sb, id_count);
        put16(&mut sb, 4);
        put16(&mut sb, 0);
        put64(&mut sb, root_ref);
        put64(&mut sb, bytes_used);
        put64(&mut sb, id_table_start);
        put64(&mut sb, xattr_id_table_start);
        put64(&mut sb, inode_table_start);
        put64(&mut sb, directory_table_start);
        put64(&mut sb, fragment_table_start);
        put64(&mut sb, NO_TABLE);
        self.out
            .seek(SeekFrom::Start(self.base))
            .map_err(ImageError::Write)?;
        self.out.write_all(&sb).map_err(ImageError::Write)?;
        self.out
            .seek(SeekFrom::Start(self.base + end))
            .map_err(ImageError::Write)?;
        self.out.flush().map_err(ImageError::Write)?;
        Ok(self.out)
    }
}

impl<W: Write + Seek> SquashfsWriter<W> {
    /// Writes `entries` as metadata blocks followed by the index of their positions; returns
    /// the index's position.
    fn table(&mut self, entries: &[u8]) -> Result<u64, ImageError> {
        let starts = self.table_blocks(entries)?;
        let index = self.pos;
        let mut bytes = Vec::with_capacity(starts.len() * 8);
        for s in &starts {
            put64(&mut bytes, *s);
        }
        self.put(&bytes)?;
        Ok(index)
    }

    /// Writes `entries` as metadata blocks; returns their positions.
    fn table_blocks(&mut self, entries: &[u8]) -> Result<Vec<u64>, ImageError> {
        let mut starts = Vec::new();
        let mut block = Vec::new();
        for chunk in entries.chunks(METADATA_SIZE) {
            starts.push(self.pos);
            block.clear();
            meta_block(&mut self.z, chunk, &mut block)?;
            self.put(&block)?;
        }
        Ok(starts)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.out.write_all(bytes).map_err(ImageError::Write)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Validates `meta` for `path`, interning its xattr set.
    fn attrs(&mut self, path: &[u8], meta: &EntryMeta) -> Result<Meta, ImageError> {
        let (attrs, found) = FS.attrs(path, meta, u64::from(self.epoch))?;
        let xattrs = if found.is_empty() {
            None
        } else {
            let set: XattrSet = found
                .into_iter()
                .map(|x| {
                    (
                        u16::from(x.code),
                        x.name.as_bytes().to_vec(),
                        x.value.to_vec(),
                    )
                })
                .collect();
            Some(match self.xattr_index.get(&set) {
                Some(&i) => i,
                None => {
                    let i = self.xattr_sets.len();
                    self.xattr_index.insert(set.clone(), i);
                    self.xattr_sets.push(set);
                    i
                }
            })
        };
        Ok(Meta { attrs, xattrs })
    }

    /// Adds a symlink, device or fifo at `path`.
    fn leaf(&mut self, path: &[u8], meta: Meta, body: Body) -> Result<(), ImageError> {
        let place = self.tree.parent(&FS, path)?;
        self.tree.add(&[place], Node::Leaf(Leaf { meta, body }));
        Ok(())
    }

    /// Streams `size` bytes of `content` out as data blocks (or into the fragment block).
    fn data(
        &mut self,
        path: &[u8],
        size: u64,
        content: &mut dyn Read,
    ) -> Result<FileData, ImageError> {
        let c = Content::new(path, size);
        let mut data = FileData {
            start: self.pos,
            size,
            blocks: Vec::new(),
            fragment: None,
            sparse: 0,
        };
        if size == 0 {
            data.start = 0;
            c.end(content)?;
            return Ok(data);
        }
        if size < BLOCK_SIZE as u64 {
            // A fragment: read it whole before touching the fragment block.
            let len = size as usize;
            c.read_exact(content, &mut self.block[..len], 0)?;
            c.end(content)?;
            let key = (size, Digest::sha256(&self.block[..len]));
            if let Some(same) = self.stored.get(&key) {
                return Ok(same.clone());
            }
            if self.fragment.len() + len > BLOCK_SIZE {
                self.flush_fragment()?;
            }
            let index = u32::try_from(self.fragments.len() + self.pending.len())
                .map_err(|_| FS.too_large("more than 2^32 fragments"))?;
            data.start = 0;
            data.fragment = Some((index, self.fragment.len() as u32));
            self.fragment.extend_from_slice(&self.block[..len]);
            self.stored.insert(key, data.clone());
            return Ok(data);
        }
        // The blocks of a large file are compressed a batch at a time, one thread per block:
        // each block is compressed on its own, so the bytes do not depend on how many.
        let mut done: u64 = 0;
        let mut hash = Sha256Hasher::new();
        while done < size {
            let mut lens = Vec::with_capacity(self.zs.len());
            while lens.len() < self.zs.len() && done < size {
                let len = (size - done).min(BLOCK_SIZE as u64) as usize;
                let at = lens.len() * BLOCK_SIZE;
                c.read_exact(content, &mut self.block[at..at + len], done)?;
                hash.update(&self.block[at..at + len]);
                done += len as u64;
                lens.push(len);
            }
            let blocks: Vec<&[u8]> = lens
                .iter()
                .enumerate()
                .map(|(i, &len)| &self.block[i * BLOCK_SIZE..i * BLOCK_SIZE + len])
                .collect();
            let shrunk = each_block(&mut self.zs[..blocks.len()], &blocks, compress_block);
            for ((block, z), shrunk) in blocks.iter().zip(self.zs.iter()).zip(shrunk) {
                let word = match shrunk? {
                    None => {
                        data.blocks.push(0);
                        data.sparse += block.len() as u64;
                        continue;
                    }
                    Some(true) => {
                        self.out.write_all(&z.out).map_err(ImageError::Write)?;
                        z.out.len() as u32
                    }
                    Some(false) => {
                        self.out.write_all(block).map_err(ImageError::Write)?;
                        block.len() as u32 | DATA_UNCOMPRESSED
                    }
                };
                self.pos += u64::from(word & !DATA_UNCOMPRESSED);
                data.blocks.push(word);
            }
        }
        c.end(content)?;
        let key = (size, hash.finish());
        if let Some(same) = self.stored.get(&key) {
            // The same bytes are stored already: write over this copy.
            self.out
                .seek(SeekFrom::Start(self.base + data.start))
                .map_err(ImageError::Write)?;
            self.pos = data.start;
            return Ok(same.clone());
        }
        self.stored.insert(key, data.clone());
        Ok(data)
    }

    /// Compresses `n` blocks at once instead of one per core (the bytes are the same).
    #[cfg(test)]
    fn set_compressors(&mut self, n: usize) {
        self.zs = (0..n).map(|_| Zlib::new()).collect();
        self.block = vec![0; BLOCK_SIZE * n];
    }

    /// Queues the fragment block being filled; writes the queue once it is a batch.
    fn flush_fragment(&mut self) -> Result<(), ImageError> {
        if self.fragment.is_empty() {
            return Ok(());
        }
        let next = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BLOCK_SIZE));
        let full = std::mem::replace(&mut self.fragment, next);
        self.pending.push(full);
        if self.pending.len() == FRAGMENT_BATCH {
            self.write_fragments()?;
        }
        Ok(())
    }

    /// Compresses the queued fragment blocks, as many at once as there are compressors, and
    /// writes them in order.
    fn write_fragments(&mut self) -> Result<(), ImageError> {
        let mut pending = std::mem::take(&mut self.pending);
        for chunk in pending.chunks(self.zs.len()) {
            let blocks: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            let shrunk = each_block(&mut self.zs[..blocks.len()], &blocks, Zlib::shrink);
            for ((block, z), shrunk) in blocks.iter().zip(&self.zs).zip(shrunk) {
                let start = self.pos;
                let word = if shrunk? {
                    self.out.write_all(&z.out).map_err(ImageError::Write)?;
                    z.out.len() as u32
                } else {
                    self.out.write_all(block).map_err(ImageError::Write)?;
                    block.len() as u32 | DATA_UNCOMPRESSED
                };
                self.pos += u64::from(word & !DATA_UNCOMPRESSED);
                self.fragments.push((start, word));
            }
        }
        for mut b in pending.drain(..) {
            b.clear();
            self.spare.push(b);
        }
        self.pending = pending;
        Ok(())
    }
}

impl<W: Write + Seek> RootWriter for SquashfsWriter<W> {
    type Error = ImageError;

    fn dir(&mut self, path: &[u8], meta: &EntryMeta) -> Result<(), ImageError> {
        let meta = self.attrs(path, meta)?;
        self.tree.dir(&FS, path, meta)
    }

    fn symlink(&mut self, path: &[u8], target: &[u8], meta: &EntryMeta) -> Result<(), ImageError> {
        check_symlink(path, target)?;
        let meta = self.attrs(path, meta)?;
        self.leaf(path, meta, Body::Symlink(target.to_vec()))
    }

    fn device(
        &mut self,
        path: &[u8],
        block: bool,
        dev: (u32, u32),
        meta: &EntryMeta,
    ) -> Result<(), ImageError> {
        let rdev = FS.rdev(path, dev)?;
        let meta = self.attrs(path, meta)?;
        self.leaf(path, meta, Body::Device { block, rdev })
    }

    fn fifo(&mut self, path: &[u8], meta: &EntryMeta) -> Result<(), ImageError> {
        let meta = self.attrs(path, meta)?;
        self.leaf(path, meta, Body::Fifo)
    }

    /// `content` must yield exactly `size` bytes, which are compressed and written now.
    fn file(
        &mut self,
        names: &[&[u8]],
        meta: &EntryMeta,
        size: u64,
        content: &mut dyn Read,
    ) -> Result<(), ImageError> {
        let shown_path = file_path(names);
        let meta = self.attrs(shown_path, meta)?;
        let places = self.tree.places(&FS, names)?;
        let data = self.data(shown_path, size, content)?;
        let body = Body::File(data);
        self.tree.add(&places, Node::Leaf(Leaf { meta, body }));
        Ok(())
    }
}

fn basic_type(node: &Entry) -> u16 {
    let Node::Leaf(leaf) = node else {
        return T_DIR;
    };
    match leaf.body {
        Body::File(_) => T_FILE,
        Body::Symlink(_) => T_SYMLINK,
        Body::Device { block: true, .. } => T_BLOCK,
        Body::Device { block: false, .. } => T_CHAR,
        Body::Fifo => T_FIFO,
    }
}

/// The metadata built at the end: inode and directory tables, ids, xattr sets in use.
#[derive(Default)]
struct Tables {
    inodes: MetaTable,
    dirs: MetaTable,
    ids: Vec<u32>,
    id_index: HashMap<u32, u16>,
    /// Interned xattr set indexes in first-use order (the position is the xattr id).
    xattr_order: Vec<usize>,
    xattr_ids: HashMap<usize, u32>,
}

/// Where a directory's listing starts in the directory table, and its length.
struct Listing {
    block: u32,
    offset: u16,
    len: u32,
    /// Directory index entries (one per metadata block the listing reaches after its first),
    /// for lookups to skip ahead.
    index: Vec<u8>,
    index_count: u16,
}

impl Tables {
    fn id(&mut self, v: u32) -> Result<u16, ImageError> {
        if let Some(&i) = self.id_index.get(&v) {
            return Ok(i);
        }
        let i = u16::try_from(self.ids.len())
            .ok()
            .filter(|&i| i < u16::MAX)
            .ok_or_else(|| FS.too_large("more than 65535 distinct uids/gids"))?;
        self.ids.push(v);
        self.id_index.insert(v, i);
        Ok(i)
    }

    fn xattr(&mut self, set: Option<usize>) -> u32 {
        let Some(set) = set else { return NO_XATTR };
        if let Some(&i) = self.xattr_ids.get(&set) {
            return i;
        }
        let i = self.xattr_order.len() as u32;
        self.xattr_order.push(set);
        self.xattr_ids.insert(set, i);
        i
    }

    /// Writes a directory listing; entries are (name, inode reference, inode number, type)
    /// in name order. A header starts a run of at most 256 entries whose inodes share a
    /// metadata block and whose numbers are within an `i16` of the header's, and no run
    /// crosses more than one metadata block boundary (as `mksquashfs` splits them), so that
    /// the directory index can point at a header in every block the listing reaches.
    fn listing(
        &mut self,
        z: &mut Zlib,
        entries: &[(&[u8], u64, u32, u16)],
    ) -> Result<Listing, ImageError> {
        let (block, offset) = self.dirs.pos()?;
        let mut len: u64 = 0;
        let mut index = Vec::new();
        let mut index_count: u16 = 0;
        let mut indexed_block = block;
        let mut bytes = Vec::new();
        let mut i = 0;
        while i < entries.len() {
            let start_block = entries[i].1 >> 16;
            let base = entries[i].2;
            let mut j = i;
            let mut run_len = 12;
            while j < entries.len()
                && j - i < MAX_DIR_HEADER_ENTRIES
                && entries[j].1 >> 16 == start_block
                && i16::try_from(i64::from(entries[j].2) - i64::from(base)).is_ok()
                && (j == i || run_len + 8 + entries[j].0.len() <= METADATA_SIZE)
            {
                run_len += 8 + entries[j].0.len();
                j += 1;
            }
            let start_block = u32::try_from(start_block)
                .map_err(|_| FS.too_large("the inode table exceeds 4 GiB"))?;
            let (here, _) = self.dirs.pos()?;
            if here != indexed_block && index_count < u16::MAX {
                let first = entries[i].0;
                put32(
                    &mut index,
                    u32::try_from(len)
                        .map_err(|_| FS.too_large("a directory listing exceeds 4 GiB"))?,
                );
                put32(&mut index, here);
                put32(&mut index, (first.len() - 1) as u32);
                index.extend_from_slice(first);
                index_count += 1;
                indexed_block = here;
            }
            bytes.clear();
            put32(&mut bytes, (j - i - 1) as u32);
            put32(&mut bytes, start_block);
            put32(&mut bytes, base);
            for &(name, r, ino, kind) in &entries[i..j] {
                put16(&mut bytes, (r & 0xffff) as u16);
                put16(&mut bytes, (i64::from(ino) - i64::from(base)) as i16 as u16);
                put16(&mut bytes, kind);
                put16(&mut bytes, (name.len() - 1) as u16);
                bytes.extend_from_slice(name);
            }
            self.dirs.push(z, &bytes)?;
            len += bytes.len() as u64;
            i = j;
        }
        let len = u32::try_from(len)
            .ok()
            .filter(|&l| l <= u32::MAX - 3)
            .ok_or_else(|| FS.too_large("a directory listing exceeds 4 GiB"))?;
        Ok(Listing {
            block,
            offset,
            len,
            index,
            index_count,
        })
    }

    /// Writes one inode; `dir` is the listing and parent inode number of a directory.
    fn inode(
        &mut self,
        z: &mut Zlib,
        node: &Entry,
        xattr_sets: &[XattrSet],
        ino: u32,
        nlink: u32,
        dir: Option<(Listing, u32)>,
    ) -> Result<u64, ImageError> {
        let r = self.inodes.reference()?;
        let (m, body) = match node {
            Node::Dir { attrs, .. } => (*attrs, None),
            Node::Leaf(leaf) => (leaf.meta, Some(&leaf.body)),
        };
        let a = m.attrs;
        // Clamped to the epoch, which fits.
        let mtime = u32::try_from(a.mtime).unwrap_or(u32::MAX);
        let xattr = self.xattr(m.xattrs.filter(|&s| s < xattr_sets.len()));
        let has_xattr = xattr != NO_XATTR;
        let basic = basic_type(node);
        let mut b = Vec::with_capacity(64);
        let header = |b: &mut Vec<u8>, t: &mut Self, kind: u16| -> Result<(), ImageError> {
            put16(b, kind);
            put16(b, a.mode);
            let uid = t.id(a.uid)?;
            let gid = t.id(a.gid)?;
            put16(b, uid);
            put16(b, gid);
            put32(b, mtime);
            put32(b, ino);
            Ok(())
        };
        match (body, dir) {
            (None, Some((l, parent))) => {
                let size = l.len + 3;
                if !has_xattr && l.index_count == 0 && size <= u32::from(u16::MAX) {
                    header(&mut b, self, T_DIR)?;
                    put32(&mut b, l.block);
                    put32(&mut b, nlink);
                    put16(&mut b, size as u16);
                    put16(&mut b, l.offset);
                    put32(&mut b, parent);
                } else {
                    header(&mut b, self, T_DIR + EXTENDED)?;
                    put32(&mut b, nlink);
                    put32(&mut b, size);
                    put32(&mut b, l.block);
                    put32(&mut b, parent);
                    put16(&mut b, l.index_count);
                    put16(&mut b, l.offset);
                    put32(&mut b, xattr);
                    b.extend_from_slice(&l.index);
                }
            }
            (Some(Body::File(f)), _) => {
                let (frag, frag_off) = f.fragment.unwrap_or((NO_FRAGMENT, 0));
                if nlink == 1
                    && !has_xattr
                    && f.sparse == 0
                    && let (Ok(start), Ok(size)) = (u32::try_from(f.start), u32::try_from(f.size))
                {
                    header(&mut b, self, T_FILE)?;
                    put32(&mut b, start);
                    put32(&mut b, frag);
                    put32(&mut b, frag_off);
                    put32(&mut b, size);
                } else {
                    header(&mut b, self, T_FILE + EXTENDED)?;
                    put64(&mut b, f.start);
                    put64(&mut b, f.size);
                    put64(&mut b, f.sparse);
                    put32(&mut b, nlink);
                    put32(&mut b, frag);
                    put32(&mut b, frag_off);
                    put32(&mut b, xattr);
                }
                for w in &f.blocks {
                    put32(&mut b, *w);
                }
            }
            (Some(Body::Symlink(target)), _) => {
                header(&mut b, self, basic + if has_xattr { EXTENDED } else { 0 })?;
                put32(&mut b, nlink);
                put32(&mut b, target.len() as u32);
                b.extend_from_slice(target);
                if has_xattr {
                    put32(&mut b, xattr);
                }
            }
            (Some(Body::Device { rdev, .. }), _) => {
                header(&mut b, self, basic + if has_xattr { EXTENDED } else { 0 })?;
                put32(&mut b, nlink);
                put32(&mut b, *rdev);
                if has_xattr {
                    put32(&mut b, xattr);
                }
            }
            (Some(Body::Fifo), _) => {
                header(&mut b, self, basic + if has_xattr { EXTENDED } else { 0 })?;
                put32(&mut b, nlink);
                if has_xattr {
                    put32(&mut b, xattr);
                }
            }
            (None, None) => {
                return Err(FS.too_large("internal: a directory without its listing"));
            }
        }
        self.inodes.push(z, &b)?;
        Ok(r)
    }
}

#[cfg(test)]
#[path = "squashfs/tests.rs"]
mod tests;
