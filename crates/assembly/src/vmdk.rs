//! VMDK disk images (`vmdk`), VMware's virtual disk format as a `monolithicSparse` disk: one
//! file holding a hosted sparse extent (format version 1) with its text descriptor embedded.
//! It is what `qemu-img convert -O vmdk` writes by default, which is how LinuxKit makes its
//! `vmdk`; VMware Workstation and Fusion, VirtualBox and QEMU open it as is.
//!
//! Layout, in 512-byte sectors, as QEMU lays it out:
//! - sector 0: the sparse extent header;
//! - sectors 1-20: the descriptor (the disk's id, type, extent line and geometry);
//! - from sector 21: the redundant grain directory, then every grain table it points to;
//! - then the grain directory and its grain tables, the same entries again;
//! - from the first 64 KiB boundary after those: the grains (64 KiB each) of the disk that
//!   hold a non-zero byte, in disk order. Every other grain is unallocated (its grain table
//!   entry is 0) and reads as zeros.
//!
//! Every grain table exists, allocated or not, so the layout depends on the disk's size and
//! which grains hold data; the bytes, on the disk's bytes, the file name the descriptor names,
//! and the content id the caller gives. The raw disk is read twice: once to find the grains
//! holding data (holes in a sparse file are skipped, not read), once to copy them.

use std::fs::File;
use std::io::{self, Write};

use crate::rawdisk::{nonzero_chunks, whole_sectors, write_chunks};

const SECTOR: u64 = 512;
const MAGIC: &[u8; 4] = b"KDMV";
const VERSION: u32 = 1;
/// Valid new-line detection test (bit 0) and a redundant grain table (bit 1).
const FLAGS: u32 = 0b11;
/// 64 KiB grains (128 sectors), QEMU's and VMware's default.
const GRAIN_BITS: u32 = 16;
const GRAIN_SECTORS: u64 = (1 << GRAIN_BITS) / SECTOR;
/// 512 entries per grain table: each table covers 32 MiB, in 4 sectors.
const GT_ENTRIES: u64 = 512;
const GT_SECTORS: u64 = GT_ENTRIES * 4 / SECTOR;
const DESCRIPTOR_OFFSET: u64 = 1;
const DESCRIPTOR_SECTORS: u64 = 20;
/// The bytes that show a file was damaged by a text-mode transfer.
const NEWLINE_CHECK: [u8; 4] = *b"\n \r\n";
/// What errors call the format.
const VMDK: &str = "a VMDK";

/// Where each part goes, in sectors, for a disk of `capacity` sectors whose grains holding data
/// are `data` (grain indices, ascending).
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    capacity: u64,
    gt_count: u64,
    gd_sectors: u64,
    redundant_gd: u64,
    gd: u64,
    /// The first grain; `data[i]` is stored at `first_grain + i * GRAIN_SECTORS`.
    first_grain: u64,
    data: Vec<u64>,
}

impl Layout {
    fn new(capacity: u64, data: Vec<u64>) -> io::Result<Self> {
        let grains = capacity.div_ceil(GRAIN_SECTORS);
        let gt_count = grains.div_ceil(GT_ENTRIES).max(1);
        let gd_sectors = (gt_count * 4).div_ceil(SECTOR);
        let redundant_gd = DESCRIPTOR_OFFSET + DESCRIPTOR_SECTORS;
        let tables = gd_sectors + gt_count * GT_SECTORS;
        let gd = redundant_gd + tables;
        let first_grain = (gd + tables).next_multiple_of(GRAIN_SECTORS);
        // At least one grain: the tables before the grains must be addressable too.
        check_addressable(first_grain, (data.len() as u64).max(1))?;
        Ok(Layout {
            capacity,
            gt_count,
            gd_sectors,
            redundant_gd,
            gd,
            first_grain,
            data,
        })
    }

    fn header(&self) -> [u8; SECTOR as usize] {
        let mut h = [0u8; SECTOR as usize];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            h[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(MAGIC);
        put(&VERSION.to_le_bytes());
        put(&FLAGS.to_le_bytes());
        put(&self.capacity.to_le_bytes());
        put(&GRAIN_SECTORS.to_le_bytes());
        put(&DESCRIPTOR_OFFSET.to_le_bytes());
        put(&DESCRIPTOR_SECTORS.to_le_bytes());
        put(&(GT_ENTRIES as u32).to_le_bytes());
        put(&self.redundant_gd.to_le_bytes());
        put(&self.gd.to_le_bytes());
        put(&self.first_grain.to_le_bytes());
        put(&[0]); // unclean shutdown: no
        put(&NEWLINE_CHECK);
        put(&0u16.to_le_bytes()); // no compression
        h
    }

    /// Writes a grain directory at sector `at` and the grain tables after it to `out`, one
    /// table at a time (a disk's tables may be large; its data grains are few).
    fn write_tables(&self, at: u64, out: &mut impl Write) -> io::Result<()> {
        let mut gd = vec![0u8; (self.gd_sectors * SECTOR) as usize];
        let first_table = at + self.gd_sectors;
        for (i, e) in gd
            .chunks_exact_mut(4)
            .take(self.gt_count as usize)
            .enumerate()
        {
            // Fits: `new` checked that everything starts below 2^32 sectors.
            e.copy_from_slice(&((first_table + i as u64 * GT_SECTORS) as u32).to_le_bytes());
        }
        out.write_all(&gd)?;
        let mut data = self.data.iter().enumerate().peekable();
        let mut gt = [0u8; (GT_SECTORS * SECTOR) as usize];
        for t in 0..self.gt_count {
            gt.fill(0);
            while let Some((k, &grain)) = data.next_if(|(_, g)| **g / GT_ENTRIES == t) {
                let sector = (self.first_grain + k as u64 * GRAIN_SECTORS) as u32;
                let e = (grain % GT_ENTRIES) as usize * 4;
                gt[e..e + 4].copy_from_slice(&sector.to_le_bytes());
            }
            out.write_all(&gt)?;
        }
        Ok(())
    }

    /// The embedded descriptor, padded to its sectors. The geometry is QEMU's for an IDE
    /// disk (16 heads, 63 sectors per track, as many cylinders as fit).
    fn descriptor(&self, file_name: &str, cid: u32) -> Vec<u8> {
        let cylinders = self.capacity / (63 * 16);
        let text = format!(
            "# Disk DescriptorFile\n\
             version=1\n\
             CID={cid:x}\n\
             parentCID=ffffffff\n\
             createType=\"monolithicSparse\"\n\
             \n\
             # Extent description\n\
             RW {} SPARSE \"{file_name}\"\n\
             \n\
             # The Disk Data Base\n\
             #DDB\n\
             \n\
             ddb.virtualHWVersion = \"4\"\n\
             ddb.geometry.cylinders = \"{cylinders}\"\n\
             ddb.geometry.heads = \"16\"\n\
             ddb.geometry.sectors = \"63\"\n\
             ddb.adapterType = \"ide\"\n\
             ddb.toolsVersion = \"2147483647\"\n",
            self.capacity
        );
        let mut d = text.into_bytes();
        d.resize((DESCRIPTOR_SECTORS * SECTOR) as usize, 0);
        d
    }
}

/// Refuses `grains` grains from sector `first_grain` on when the last would start past what a
/// grain table entry (a 32-bit sector number) addresses.
fn check_addressable(first_grain: u64, grains: u64) -> io::Result<()> {
    let Some(last) = grains.checked_sub(1) else {
        return Ok(());
    };
    let start = last
        .checked_mul(GRAIN_SECTORS)
        .and_then(|s| s.checked_add(first_grain))
        .unwrap_or(u64::MAX);
    if start > u64::from(u32::MAX) {
        return Err(io::Error::other(format!(
            "the disk holds too much data for {VMDK}: its last grain would start at sector \
             {start}, past the 2 TiB a sparse extent addresses"
        )));
    }
    Ok(())
}

/// The content id a descriptor carries for an image whose unique id is `id`: never
/// `ffffffff`, which means "no parent" in the `parentCID` beside it.
pub(crate) fn content_id(id: [u8; 16]) -> u32 {
    match u32::from_le_bytes([id[0], id[1], id[2], id[3]]) {
        u32::MAX => 0xffff_fffe,
        cid => cid,
    }
}

/// Writes `raw` (a whole disk image, a multiple of 512 bytes) to `out` as a `monolithicSparse`
/// VMDK whose descriptor names `file_name` (the file it is written to) and carries content id
/// `cid`.
pub(crate) fn write_vmdk(
    raw: &File,
    out: &mut impl Write,
    file_name: &str,
    cid: u32,
) -> io::Result<()> {
    if file_name.is_empty() || file_name.contains(['"', '\n', '/']) {
        return Err(io::Error::other(format!(
            "{VMDK}'s descriptor cannot name the file {file_name:?}"
        )));
    }
    let len = whole_sectors(raw, VMDK)?;
    let layout = Layout::new(len / SECTOR, nonzero_chunks(raw, len, GRAIN_BITS)?)?;
    out.write_all(&layout.header())?;
    out.write_all(&layout.descriptor(file_name, cid))?;
    layout.write_tables(layout.redundant_gd, out)?;
    layout.write_tables(layout.gd, out)?;
    let written = layout.gd + layout.gd_sectors + layout.gt_count * GT_SECTORS;
    out.write_all(&vec![
        0u8;
        ((layout.first_grain - written) * SECTOR) as usize
    ])?;
    write_chunks(raw, len, GRAIN_BITS, &layout.data, &[], out)
}

#[cfg(test)]
#[path = "vmdk/tests.rs"]
mod tests;
