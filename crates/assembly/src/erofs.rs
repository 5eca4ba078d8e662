//! A streaming writer for uncompressed EROFS images (what Linux mounts since 5.4 and
//! erofs-utils' `fsck.erofs` and `dump.erofs` read), laid out the way `mkfs.erofs DIR IMG`
//! lays them out by default: 4 KiB blocks, file data stored flat (`EROFS_INODE_FLAT_PLAIN`),
//! and the tail of a file, directory or symlink (the bytes after its last full block) stored
//! right after its inode (`EROFS_INODE_FLAT_INLINE`) whenever the inode, its extended
//! attributes and the tail fit in one block; directories as blocks of entries sorted by name
//! (`.` and `..` included), extended attributes (`user.`, `trusted.`, `security.`) inline in
//! their inode (no shared xattr area), no compression, no chunked files, no holes (an
//! all-zero block is stored as zeros, as `mkfs.erofs` stores it).
//!
//! Inodes are compact (32 bytes) when their fields fit: uid and gid below 65536, fewer than
//! 65536 links, a size below 4 GiB and an mtime equal to the image's build time, since a
//! compact inode has no mtime of its own (Linux shows the build time for it); otherwise they
//! are extended (64 bytes, with the mtime). That is `mkfs.erofs`'s rule too, so with the
//! build time set to `epoch` the kernel shows every entry's (clamped) mtime.
//!
//! Layout: block 0 holds the superblock (at byte 1024) and the root directory's inode
//! (nid 36, as `mkfs.erofs` puts it: the superblock's root nid has only 16 bits), both
//! written by [`ErofsWriter::finish`]. File data is streamed to the output as files are
//! added, and the inodes of files, symlinks, devices and fifos (with their inline tails) are
//! packed into metadata blocks that go to the output between data blocks as they fill up; so
//! only one metadata block and the names and inode numbers of the tree stay in memory.
//! Directories are written last: their inodes packed into metadata blocks, then the full
//! blocks of their listings. The metadata area starts at block 0 (`meta_blkaddr` 0), so an
//! inode's nid is its byte offset in the image divided by 32.
//!
//! The superblock carries a CRC32C checksum (`EROFS_FEATURE_COMPAT_SB_CHKSUM`) and the
//! `mtime` compat flag, as `mkfs.erofs` 1.5 sets them; its UUID and volume name are left
//! zero (no UUID), so that the image depends only on what was written.
//!
//! Deterministic by construction: the same calls give the same bytes. Directory entries are
//! sorted by name bytes whatever the order they were added in; mtimes are clamped to
//! `[0, epoch]` and the build time is `epoch`.
//!
//! Paths are relative to the root, `/`-separated, without a leading `/`; a path's parent
//! directory must have been added before it (the root always exists). A path added twice:
//! the later entry replaces the earlier one, but a directory added over a directory only
//! takes the new metadata and keeps its entries. The inode and data of a replaced entry stay
//! in the image, unreferenced.
//!
//! This module only encodes: it never reads the file system, and it refuses what this EROFS
//! layout cannot hold (ids above 2^32-1, device numbers beyond 12-bit major / 20-bit minor,
//! names over 255 bytes, xattrs outside the three namespaces or with values over 64 KiB,
//! images over 16 TiB) with an error naming the path. After a write error the output is
//! unusable; after a content error ([`ImageError::Short`], [`ImageError::Long`],
//! [`ImageError::Read`]) the writer stays usable and the entry was not added.

use std::collections::{BTreeSet, VecDeque};
use std::io::{self, Read, Seek, SeekFrom, Write};

use oxkit_store::layer::EntryMeta;

use crate::bootsplit::RootWriter;
use crate::imagefs::{
    Attrs, Content, Format, ImageError, ImageWriter, Node, ROOT, S_IFBLK, S_IFCHR, S_IFDIR,
    S_IFIFO, S_IFLNK, S_IFREG, Tree, check_symlink, file_path, put16, put32, put64,
    unrepresentable,
};

const MAGIC: u32 = 0xE0F5_E1E2;
const BLOCK: usize = 4096;
const BLOCK_U64: u64 = 4096;
const BLOCK_BITS: u8 = 12;
const SUPER_OFFSET: usize = 1024;
const SUPER_LEN: usize = 128;
/// Where the root inode goes in block 0 (right after the superblock), and its nid.
const ROOT_OFFSET: usize = SUPER_OFFSET + SUPER_LEN;
const ROOT_NID: u64 = (ROOT_OFFSET / 32) as u64;
const FEATURE_COMPAT_SB_CHKSUM: u32 = 0x1;
const FEATURE_COMPAT_MTIME: u32 = 0x2;
/// The block address of an inode without data blocks.
const NULL_ADDR: u32 = u32::MAX;

const COMPACT_LEN: usize = 32;
const EXTENDED_LEN: usize = 64;
const LAYOUT_FLAT_PLAIN: u16 = 0;
const LAYOUT_FLAT_INLINE: u16 = 2;

const DIRENT_LEN: usize = 12;
const XATTR_HEADER_LEN: usize = 12;

const FT_REG: u8 = 1;
const FT_DIR: u8 = 2;
const FT_CHR: u8 = 3;
const FT_BLK: u8 = 4;
const FT_FIFO: u8 = 5;
const FT_SYMLINK: u8 = 7;

/// How much file data is read and written at a time (whole blocks).
const CHUNK: usize = 32 * BLOCK;

const FS: Format = Format {
    name: "EROFS",
    max_name: 255,
    xattr_holder: "this writer",
    // EROFS's name indexes.
    xattr_codes: [1, 4, 6],
    max_xattr_name: u8::MAX as usize,
    max_xattr_value: u16::MAX as usize,
    value_too_large: |len| format!("the value is {len} bytes, EROFS holds at most 65535"),
};

fn too_many_blocks() -> ImageError {
    FS.too_large("more than 2^32 blocks of 4 KiB")
}

/// An inode's metadata, validated.
struct Meta {
    attrs: Attrs,
    /// The encoded inline xattr area (header and entries), empty without xattrs.
    xattrs: Vec<u8>,
}

/// Where an inode was written: in the `index`th metadata block at `offset`, or at a nid.
#[derive(Clone, Copy)]
enum Loc {
    Meta { index: usize, offset: usize },
    Nid(u64),
}

/// A file, symlink, device or fifo: already written.
struct Leaf {
    loc: Loc,
    file_type: u8,
    /// The link count written and whether the inode is extended (where the count sits).
    nlink: u32,
    extended: bool,
}

/// Directories keep their metadata until the end; leaves are encoded when added.
type Entry = Node<Meta, Leaf>;

const fn crc32c_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC32C: [u32; 256] = crc32c_table();

/// CRC32C (Castagnoli) of `data` from `crc`, without the final inversion: what Linux's
/// `crc32c(~0, ...)` returns and what the superblock checksum holds.
fn crc32c_raw(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = CRC32C[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

fn round32(n: usize) -> usize {
    n.div_ceil(32) * 32
}

/// The fields an inode core needs.
struct Core {
    format_layout: u16,
    mode: u16,
    nlink: u32,
    size: u64,
    /// Block address, or the device number.
    u: u32,
    ino: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

/// Whether an inode with these fields needs the extended form.
fn needs_extended(a: &Attrs, nlink: u64, size: u64, build_time: u64) -> bool {
    a.uid > u32::from(u16::MAX)
        || a.gid > u32::from(u16::MAX)
        || nlink > u64::from(u16::MAX)
        || size > u64::from(u32::MAX)
        || a.mtime != build_time
}

/// Appends an inode core (compact or extended) and the xattr area to `b`.
fn encode_core(b: &mut Vec<u8>, c: &Core, extended: bool, xattrs: &[u8]) {
    // The xattr area is at least the 12-byte header; its length was checked to fit.
    let icount = if xattrs.is_empty() {
        0
    } else {
        ((xattrs.len() - XATTR_HEADER_LEN) / 4 + 1) as u16
    };
    if extended {
        put16(b, 1 | (c.format_layout << 1));
        put16(b, icount);
        put16(b, c.mode);
        put16(b, 0);
        put64(b, c.size);
        put32(b, c.u);
        put32(b, c.ino);
        put32(b, c.uid);
        put32(b, c.gid);
        put64(b, c.mtime);
        put32(b, 0);
        put32(b, c.nlink);
        b.extend_from_slice(&[0; 16]);
    } else {
        // needs_extended() was false: these fit.
        put16(b, c.format_layout << 1);
        put16(b, icount);
        put16(b, c.mode);
        put16(b, c.nlink as u16);
        put32(b, c.size as u32);
        put32(b, 0);
        put32(b, c.u);
        put32(b, c.ino);
        put16(b, c.uid as u16);
        put16(b, c.gid as u16);
        put32(b, 0);
    }
    b.extend_from_slice(xattrs);
}

/// A directory entry: name, nid, file type.
type Dirent<'a> = (&'a [u8], u64, u8);

/// A directory's listing split into blocks: each block's entries (name, nid, type).
fn listing_blocks(entries: &[Dirent<'_>]) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let mut j = i;
        let mut used = 0;
        while j < entries.len() && used + DIRENT_LEN + entries[j].0.len() <= BLOCK {
            used += DIRENT_LEN + entries[j].0.len();
            j += 1;
        }
        // A name is at most 255 bytes, so every block takes at least one entry.
        let j = j.max(i + 1);
        let mut b = Vec::with_capacity(used);
        let mut nameoff = DIRENT_LEN * (j - i);
        for &(name, nid, ft) in &entries[i..j] {
            put64(&mut b, nid);
            put16(&mut b, nameoff as u16);
            b.push(ft);
            b.push(0);
            nameoff += name.len();
        }
        for &(name, ..) in &entries[i..j] {
            b.extend_from_slice(name);
        }
        blocks.push(b);
        i = j;
    }
    blocks
}

/// A directory's size and layout, decided before any nid is known.
struct DirPlan {
    node: usize,
    parent: usize,
    nlink: u32,
    size: u64,
    extended: bool,
    inline: bool,
    /// Blocks of the listing stored as data blocks.
    data_blocks: u64,
    nid: u64,
    blkaddr: u32,
    ino: u32,
}

/// Writes an uncompressed EROFS image to `W`, starting at its position when
/// [`ErofsWriter::new`] is called. `W` should be buffered (a `BufWriter<File>`): the writer
/// issues one write per 128 KiB of file data and per metadata block.
pub(crate) struct ErofsWriter<W: Write + Seek> {
    out: W,
    /// Where the image starts in `out`.
    base: u64,
    /// Blocks written so far (the next block's address).
    blocks: u32,
    build_time: u64,
    tree: Tree<Meta, Leaf>,
    /// The metadata block being filled and the addresses of those written.
    meta: Vec<u8>,
    meta_blocks: Vec<u32>,
    /// The next inode number (`i_ino`, for 32-bit `stat`).
    next_ino: u32,
    buf: Vec<u8>,
}

impl<W: Write + Seek> ImageWriter<W> for ErofsWriter<W> {
    /// A writer whose entries' mtimes are clamped to `epoch` (negative means 0), which is
    /// also the image's build time. Reserves block 0 for the superblock and the root.
    fn new(mut out: W, epoch: i64) -> Result<Self, ImageError> {
        let base = out.stream_position().map_err(ImageError::Write)?;
        let build_time = u64::try_from(epoch.max(0)).unwrap_or(0);
        let mut w = Self {
            out,
            base,
            blocks: 0,
            build_time,
            tree: Tree::new(Meta {
                attrs: Attrs {
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    mtime: build_time,
                },
                xattrs: Vec::new(),
            }),
            meta: Vec::with_capacity(BLOCK),
            meta_blocks: Vec::new(),
            next_ino: 1,
            buf: vec![0; CHUNK],
        };
        w.put_block(&[])?;
        Ok(w)
    }

    /// The root directory's metadata (0755, root:root, `epoch`, no xattrs unless set here).
    fn root(&mut self, meta: &EntryMeta) -> Result<(), ImageError> {
        let attrs = self.attrs(b"", meta)?;
        if EXTENDED_LEN + attrs.xattrs.len() > BLOCK - ROOT_OFFSET {
            return Err(unrepresentable(
                b"",
                format!(
                    "the root's extended attributes take {} bytes; at most {} fit",
                    attrs.xattrs.len(),
                    BLOCK - ROOT_OFFSET - EXTENDED_LEN
                ),
            ));
        }
        self.tree.set_root(attrs);
        Ok(())
    }

    /// Writes the directories, the superblock and the root inode; returns the output,
    /// positioned at the end of the image.
    fn finish(mut self) -> Result<W, ImageError> {
        self.flush_meta()?;
        let nodes = std::mem::take(&mut self.tree.nodes);
        let n = nodes.len();

        // Reachable directories breadth-first, link counts of everything reachable.
        let mut links = vec![0u64; n];
        let mut order: Vec<DirPlan> = Vec::new();
        let mut dir_nids = vec![0u64; n];
        let mut queue = VecDeque::from([(ROOT, ROOT)]);
        let mut inodes: u64 = 0;
        while let Some((d, parent)) = queue.pop_front() {
            let Node::Dir { children, .. } = &nodes[d] else {
                continue;
            };
            inodes += 1;
            let mut subdirs: u64 = 0;
            for &c in children.values() {
                match nodes[c] {
                    Node::Dir { .. } => {
                        subdirs += 1;
                        queue.push_back((c, d));
                    }
                    Node::Leaf(_) => {
                        if links[c] == 0 {
                            inodes += 1;
                        }
                        links[c] += 1;
                    }
                }
            }
            order.push(DirPlan {
                node: d,
                parent,
                nlink: u32::try_from(subdirs + 2)
                    .map_err(|_| FS.too_large("a directory with more than 2^32 subdirectories"))?,
                size: 0,
                extended: false,
                inline: false,
                data_blocks: 0,
                nid: 0,
                blkaddr: NULL_ADDR,
                ino: 0,
            });
        }

        // Sizes and layouts, then places: the root in block 0, the other directories'
        // inodes packed from the next block, then their listings' data blocks.
        let region_start = u64::from(self.blocks);
        let mut cursor: usize = 0;
        let mut region_len: u64 = 0;
        for (i, plan) in order.iter_mut().enumerate() {
            let entries = self.entries(&nodes, &dir_nids, plan.node, plan.parent)?;
            let blocks = listing_blocks(&entries);
            let last = blocks.last().map_or(0, Vec::len);
            plan.size = (blocks.len().saturating_sub(1) * BLOCK + last) as u64;
            let Meta { attrs, xattrs } = dir_meta(&nodes[plan.node])?;
            plan.extended =
                needs_extended(attrs, u64::from(plan.nlink), plan.size, self.build_time);
            let isize = if plan.extended {
                EXTENDED_LEN
            } else {
                COMPACT_LEN
            } + xattrs.len();
            let tail = (plan.size % BLOCK_U64) as usize;
            let room = if i == 0 { BLOCK - ROOT_OFFSET } else { BLOCK };
            plan.inline = tail != 0 && isize + tail <= room;
            plan.data_blocks = plan.size.div_ceil(BLOCK_U64) - u64::from(plan.inline);
            plan.ino = if i == 0 { 0 } else { self.ino()? };
            let need = isize + if plan.inline { tail } else { 0 };
            if i == 0 {
                if need > room {
                    return Err(unrepresentable(
                        b"",
                        "the root's inode does not fit block 0",
                    ));
                }
                plan.nid = ROOT_NID;
                continue;
            }
            let within = cursor % BLOCK;
            if within != 0 && within + need > BLOCK {
                cursor += BLOCK - within;
            }
            plan.nid = (region_start * BLOCK_U64 + cursor as u64) / 32;
            cursor += round32(need);
            region_len = cursor as u64;
        }
        let region_blocks = region_len.div_ceil(BLOCK_U64);
        let mut next = region_start + region_blocks;
        for plan in &mut order {
            if plan.data_blocks > 0 {
                plan.blkaddr = u32::try_from(next).map_err(|_| too_many_blocks())?;
                next += plan.data_blocks;
            }
        }
        let end = u32::try_from(next).map_err(|_| too_many_blocks())?;

        for plan in &order {
            dir_nids[plan.node] = plan.nid;
        }

        // Encode the directory inodes into block 0 and the region.
        let mut block0 = vec![0u8; BLOCK];
        let region_cap =
            usize::try_from(region_blocks * BLOCK_U64).map_err(|_| too_many_blocks())?;
        let mut region = vec![0u8; region_cap];
        let mut b = Vec::with_capacity(BLOCK);
        for plan in &order {
            let Meta { attrs, xattrs } = dir_meta(&nodes[plan.node])?;
            let entries = self.entries(&nodes, &dir_nids, plan.node, plan.parent)?;
            let blocks = listing_blocks(&entries);
            b.clear();
            encode_core(
                &mut b,
                &Core {
                    format_layout: if plan.inline {
                        LAYOUT_FLAT_INLINE
                    } else {
                        LAYOUT_FLAT_PLAIN
                    },
                    mode: S_IFDIR | attrs.mode,
                    nlink: plan.nlink,
                    size: plan.size,
                    u: plan.blkaddr,
                    ino: plan.ino,
                    uid: attrs.uid,
                    gid: attrs.gid,
                    mtime: attrs.mtime,
                },
                plan.extended,
                xattrs,
            );
            if plan.inline
                && let Some(last) = blocks.last()
            {
                b.extend_from_slice(last);
            }
            let (dest, at) = if plan.node == ROOT {
                (&mut block0, ROOT_OFFSET)
            } else {
                let at = plan.nid * 32 - region_start * BLOCK_U64;
                (
                    &mut region,
                    usize::try_from(at).map_err(|_| too_many_blocks())?,
                )
            };
            let slot = dest
                .get_mut(at..at + b.len())
                .ok_or_else(|| FS.too_large("internal: a directory inode is out of place"))?;
            slot.copy_from_slice(&b);
        }
        self.out.write_all(&region).map_err(ImageError::Write)?;
        self.blocks = u32::try_from(region_start + region_blocks).map_err(|_| too_many_blocks())?;
        drop(region);

        // The listings' data blocks.
        for plan in &order {
            if plan.data_blocks == 0 {
                continue;
            }
            let entries = self.entries(&nodes, &dir_nids, plan.node, plan.parent)?;
            let blocks = listing_blocks(&entries);
            let count = usize::try_from(plan.data_blocks).unwrap_or(usize::MAX);
            for block in blocks.iter().take(count) {
                self.put_block(block)?;
            }
        }
        if self.blocks != end {
            return Err(FS.too_large("internal: the directory blocks do not add up"));
        }

        // Link counts of files that lost names to later entries.
        for (i, node) in nodes.iter().enumerate() {
            let Node::Leaf(leaf) = node else {
                continue;
            };
            if links[i] == 0 || links[i] == u64::from(leaf.nlink) {
                continue;
            }
            let at = self.nid(leaf.loc)? * 32 + if leaf.extended { 44 } else { 6 };
            self.out
                .seek(SeekFrom::Start(self.base + at))
                .map_err(ImageError::Write)?;
            // links[i] < leaf.nlink, which fit.
            let bytes = if leaf.extended {
                (links[i] as u32).to_le_bytes().to_vec()
            } else {
                (links[i] as u16).to_le_bytes().to_vec()
            };
            self.out.write_all(&bytes).map_err(ImageError::Write)?;
        }

        // The superblock, checksummed with the root inode that shares its block.
        let mut sb = Vec::with_capacity(SUPER_LEN);
        put32(&mut sb, MAGIC);
        put32(&mut sb, 0);
        put32(&mut sb, FEATURE_COMPAT_SB_CHKSUM | FEATURE_COMPAT_MTIME);
        sb.push(BLOCK_BITS);
        sb.push(0);
        put16(&mut sb, ROOT_NID as u16);
        put64(&mut sb, inodes);
        put64(&mut sb, self.build_time);
        put32(&mut sb, 0);
        put32(&mut sb, end);
        put32(&mut sb, 0);
        put32(&mut sb, 0);
        sb.resize(SUPER_LEN, 0);
        block0[SUPER_OFFSET..SUPER_OFFSET + SUPER_LEN].copy_from_slice(&sb);
        let crc = crc32c_raw(!0, &block0[SUPER_OFFSET..]);
        block0[SUPER_OFFSET + 4..SUPER_OFFSET + 8].copy_from_slice(&crc.to_le_bytes());
        self.out
            .seek(SeekFrom::Start(self.base))
            .map_err(ImageError::Write)?;
        self.out.write_all(&block0).map_err(ImageError::Write)?;
        self.out
            .seek(SeekFrom::Start(self.base + u64::from(end) * BLOCK_U64))
            .map_err(ImageError::Write)?;
        self.out.flush().map_err(ImageError::Write)?;
        Ok(self.out)
    }
}

impl<W: Write + Seek> ErofsWriter<W> {
    /// Streams `size` bytes of `content` out (full blocks, and the tail when it is not
    /// inline) and writes the inode; `u` is the device number of a device.
    #[allow(clippy::too_many_arguments)]
    fn leaf(
        &mut self,
        path: &[u8],
        meta: &Meta,
        kind: u16,
        file_type: u8,
        nlink: u32,
        size: u64,
        content: &mut dyn Read,
        u: u32,
    ) -> Result<Leaf, ImageError> {
        let c = Content::new(path, size);
        let Meta { attrs, xattrs } = meta;
        let extended = needs_extended(attrs, u64::from(nlink), size, self.build_time);
        let isize = if extended { EXTENDED_LEN } else { COMPACT_LEN } + xattrs.len();
        let tail = (size % BLOCK_U64) as usize;
        let inline = tail != 0 && isize + tail <= BLOCK;
        let full = size / BLOCK_U64;
        let data_blocks = full + u64::from(tail != 0 && !inline);
        let start = self.blocks;
        if u64::from(start) + data_blocks + 2 > u64::from(u32::MAX) {
            return Err(too_many_blocks());
        }

        let mut done: u64 = 0;
        let full_bytes = full * BLOCK_U64;
        while done < full_bytes {
            let len = usize::try_from((full_bytes - done).min(CHUNK as u64)).unwrap_or(CHUNK);
            c.read_exact(content, &mut self.buf[..len], done)?;
            self.out
                .write_all(&self.buf[..len])
                .map_err(ImageError::Write)?;
            self.blocks += (len / BLOCK) as u32;
            done += len as u64;
        }
        c.read_exact(content, &mut self.buf[..tail], done)?;
        c.end(content)?;
        if tail != 0 && !inline {
            self.buf[tail..BLOCK].fill(0);
            self.out
                .write_all(&self.buf[..BLOCK])
                .map_err(ImageError::Write)?;
            self.blocks += 1;
        }

        let ino = self.ino()?;
        let core = Core {
            format_layout: if inline {
                LAYOUT_FLAT_INLINE
            } else {
                LAYOUT_FLAT_PLAIN
            },
            mode: kind | attrs.mode,
            nlink,
            size,
            u: if kind == S_IFCHR || kind == S_IFBLK {
                u
            } else if data_blocks == 0 {
                if inline { NULL_ADDR } else { 0 }
            } else {
                start
            },
            ino,
            uid: attrs.uid,
            gid: attrs.gid,
            mtime: attrs.mtime,
        };
        let mut b = Vec::with_capacity(isize + tail);
        encode_core(&mut b, &core, extended, xattrs);
        if inline {
            b.extend_from_slice(&self.buf[..tail]);
        }
        let loc = self.place(&b)?;
        Ok(Leaf {
            loc,
            file_type,
            nlink,
            extended,
        })
    }

    fn ino(&mut self) -> Result<u32, ImageError> {
        let ino = self.next_ino;
        self.next_ino = ino
            .checked_add(1)
            .ok_or_else(|| FS.too_large("more than 2^32 inodes"))?;
        Ok(ino)
    }

    /// Puts an inode (with its inline tail) in the metadata block being filled, or starts a
    /// new one; an inode larger than a block (large xattrs, no tail) gets blocks of its own.
    fn place(&mut self, inode: &[u8]) -> Result<Loc, ImageError> {
        let at = round32(self.meta.len());
        if at + inode.len() <= BLOCK {
            self.meta.resize(at, 0);
            self.meta.extend_from_slice(inode);
            return Ok(Loc::Meta {
                index: self.meta_blocks.len(),
                offset: at,
            });
        }
        if inode.len() <= BLOCK {
            self.flush_meta()?;
            self.meta.extend_from_slice(inode);
            return Ok(Loc::Meta {
                index: self.meta_blocks.len(),
                offset: 0,
            });
        }
        let nid = u64::from(self.blocks) * (BLOCK_U64 / 32);
        for chunk in inode.chunks(BLOCK) {
            self.put_block(chunk)?;
        }
        Ok(Loc::Nid(nid))
    }

    /// Writes the metadata block being filled, if any.
    fn flush_meta(&mut self) -> Result<(), ImageError> {
        if self.meta.is_empty() {
            return Ok(());
        }
        let addr = self.blocks;
        let meta = std::mem::take(&mut self.meta);
        self.put_block(&meta)?;
        self.meta = meta;
        self.meta.clear();
        self.meta_blocks.push(addr);
        Ok(())
    }

    /// Writes `bytes` (at most a block) as one block, zero-padded.
    fn put_block(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        let next = self.blocks.checked_add(1).ok_or_else(too_many_blocks)?;
        let mut pad = [0u8; BLOCK];
        let len = bytes.len().min(BLOCK);
        pad[..len].copy_from_slice(&bytes[..len]);
        self.out.write_all(&pad).map_err(ImageError::Write)?;
        self.blocks = next;
        Ok(())
    }

    fn nid(&self, loc: Loc) -> Result<u64, ImageError> {
        match loc {
            Loc::Nid(n) => Ok(n),
            Loc::Meta { index, offset } => {
                let addr = self
                    .meta_blocks
                    .get(index)
                    .ok_or_else(|| FS.too_large("internal: a metadata block was not written"))?;
                Ok((u64::from(*addr) * BLOCK_U64 + offset as u64) / 32)
            }
        }
    }

    /// A directory's entries in name order, `.` and `..` included; `dir_nids` has the nids
    /// of the directories (zeros while only the sizes matter).
    fn entries<'a>(
        &self,
        nodes: &'a [Entry],
        dir_nids: &[u64],
        dir: usize,
        parent: usize,
    ) -> Result<Vec<Dirent<'a>>, ImageError> {
        let Node::Dir { children, .. } = &nodes[dir] else {
            return Ok(Vec::new());
        };
        let mut v = Vec::with_capacity(children.len() + 2);
        v.push((b".".as_slice(), dir_nids[dir], FT_DIR));
        v.push((b"..".as_slice(), dir_nids[parent], FT_DIR));
        for (name, &c) in children {
            let (nid, ft) = match &nodes[c] {
                Node::Dir { .. } => (dir_nids[c], FT_DIR),
                Node::Leaf(l) => (self.nid(l.loc)?, l.file_type),
            };
            v.push((name.as_slice(), nid, ft));
        }
        v.sort_by(|a, b| a.0.cmp(b.0));
        Ok(v)
    }

    /// Validates `meta` for `path`, encoding its xattr area.
    fn attrs(&self, path: &[u8], meta: &EntryMeta) -> Result<Meta, ImageError> {
        let (attrs, found) = FS.attrs(path, meta, self.build_time)?;
        let mut xattrs = Vec::new();
        if !found.is_empty() {
            xattrs.resize(XATTR_HEADER_LEN, 0);
            for x in found {
                // FS's limits: the name fits a byte, the value 16 bits.
                xattrs.push(x.name.len() as u8);
                xattrs.push(x.code);
                put16(&mut xattrs, x.value.len() as u16);
                xattrs.extend_from_slice(x.name.as_bytes());
                xattrs.extend_from_slice(x.value);
                xattrs.resize(xattrs.len().div_ceil(4) * 4, 0);
            }
            if (xattrs.len() - XATTR_HEADER_LEN) / 4 + 1 > usize::from(u16::MAX) {
                return Err(unrepresentable(
                    path,
                    format!(
                        "the extended attributes take {} bytes, more than an inode holds",
                        xattrs.len()
                    ),
                ));
            }
        }
        Ok(Meta { attrs, xattrs })
    }

    /// Adds a symlink, device or fifo at `path` (one link): its inode, and `size` bytes of
    /// `content`; `u` is the device number of a device.
    #[allow(clippy::too_many_arguments)]
    fn add_leaf(
        &mut self,
        path: &[u8],
        meta: &EntryMeta,
        kind: u16,
        file_type: u8,
        size: u64,
        content: &mut dyn Read,
        u: u32,
    ) -> Result<(), ImageError> {
        let meta = self.attrs(path, meta)?;
        let place = self.tree.parent(&FS, path)?;
        let leaf = self.leaf(path, &meta, kind, file_type, 1, size, content, u)?;
        self.tree.add(&[place], Node::Leaf(leaf));
        Ok(())
    }
}

fn dir_meta(node: &Entry) -> Result<&Meta, ImageError> {
    match node {
        Node::Dir { attrs, .. } => Ok(attrs),
        Node::Leaf(_) => Err(FS.too_large("internal: a directory without metadata")),
    }
}

impl<W: Write + Seek> RootWriter for ErofsWriter<W> {
    type Error = ImageError;

    fn dir(&mut self, path: &[u8], meta: &EntryMeta) -> Result<(), ImageError> {
        let meta = self.attrs(path, meta)?;
        self.tree.dir(&FS, path, meta)
    }

    fn symlink(&mut self, path: &[u8], target: &[u8], meta: &EntryMeta) -> Result<(), ImageError> {
        check_symlink(path, target)?;
        let size = target.len() as u64;
        self.add_leaf(path, meta, S_IFLNK, FT_SYMLINK, size, &mut &target[..], 0)
    }

    fn device(
        &mut self,
        path: &[u8],
        block: bool,
        dev: (u32, u32),
        meta: &EntryMeta,
    ) -> Result<(), ImageError> {
        let rdev = FS.rdev(path, dev)?;
        let (kind, ft) = if block {
            (S_IFBLK, FT_BLK)
        } else {
            (S_IFCHR, FT_CHR)
        };
        self.add_leaf(path, meta, kind, ft, 0, &mut io::empty(), rdev)
    }

    fn fifo(&mut self, path: &[u8], meta: &EntryMeta) -> Result<(), ImageError> {
        self.add_leaf(path, meta, S_IFIFO, FT_FIFO, 0, &mut io::empty(), 0)
    }

    /// `content` must yield exactly `size` bytes, which are written now.
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
        let distinct: BTreeSet<(usize, &[u8])> = places.iter().copied().collect();
        let nlink = u32::try_from(distinct.len()).unwrap_or(u32::MAX);
        let leaf = self.leaf(shown_path, &meta, S_IFREG, FT_REG, nlink, size, content, 0)?;
        self.tree.add(&places, Node::Leaf(leaf));
        Ok(())
    }
}

#[cfg(test)]
#[path = "erofs/tests.rs"]
mod tests;
