//! VHD disk images, Microsoft's Virtual Hard Disk format (version 1.0), which Hyper-V and Azure
//! take:
//! - fixed (`vhd`): the raw disk image followed by a 512-byte footer that says how large the
//!   disk is, that it is fixed, and who made it, with a checksum;
//! - dynamic (`dynamic-vhd`): a copy of the footer, the dynamic disk header, the block
//!   allocation table (BAT), then only the 2 MiB blocks of the disk that hold a non-zero byte,
//!   each behind its sector bitmap (every sector present), and the footer. Blocks of zeros are
//!   left unallocated (their BAT entry is `0xFFFFFFFF`) and read as zeros.
//!
//! The footer's CHS geometry is the largest there is (65535 cylinders, 16 heads, 255
//! sectors), as `qemu-img convert -o subformat=fixed,force_size` writes it (the command
//! Azure's documentation and LinuxKit's `vhd` use): readers that would otherwise size the disk
//! by its geometry, rounding it down (QEMU for creators it does not know, Virtual PC), then
//! take the footer's exact size, as Hyper-V always does.
//!
//! Reproducible: the timestamp is the build's epoch (seconds since 2000-01-01, the format's
//! origin; 0 before it) and the unique id comes from the caller.

use std::fs::File;
use std::io::{self, Write};

use crate::rawdisk::{copy_prefix, nonzero_chunks, whole_sectors, write_chunks};

const FOOTER_BYTES: usize = 512;
const COOKIE: &[u8; 8] = b"conectix";
/// "Reserved": the specification says this bit is always set.
const FEATURES: u32 = 0x0000_0002;
const FORMAT_VERSION: u32 = 0x0001_0000;
/// A fixed disk has no dynamic header; the dynamic header has no further data.
const NO_DATA_OFFSET: u64 = u64::MAX;
const DISK_TYPE_DYNAMIC: u32 = 3;
const DYNAMIC_COOKIE: &[u8; 8] = b"cxsparse";
const DYNAMIC_HEADER_BYTES: usize = 1024;
/// The dynamic header follows the footer's copy; the BAT follows the header.
const DYNAMIC_HEADER_OFFSET: u64 = FOOTER_BYTES as u64;
const BAT_OFFSET: u64 = DYNAMIC_HEADER_OFFSET + DYNAMIC_HEADER_BYTES as u64;
/// 2 MiB blocks, the size Hyper-V and QEMU use.
const BLOCK_BITS: u32 = 21;
const BLOCK_BYTES: u64 = 1 << BLOCK_BITS;
/// What errors call the format.
const VHD: &str = "a VHD";
/// A block's sector bitmap: one bit per 512-byte sector, padded to whole sectors.
const BITMAP_BYTES: usize = ((BLOCK_BYTES / 512 / 8) as usize).next_multiple_of(512);
const CREATOR_APP: &[u8; 4] = b"oxkt";
const CREATOR_VERSION: u32 = 0x0001_0000;
/// "Wi2k": what Windows, Hyper-V's tools and QEMU record as the creator's host.
const CREATOR_HOST: &[u8; 4] = b"Wi2k";
const DISK_TYPE_FIXED: u32 = 2;
/// 2000-01-01 00:00:00 UTC, the footer timestamp's origin.
const VHD_EPOCH: i64 = 946_684_800;
/// The largest CHS geometry: cylinders, heads, sectors per track.
const MAX_CYLINDERS: u16 = 65_535;
const MAX_HEADS: u8 = 16;
const MAX_SECTORS: u8 = 255;

/// The footer of a fixed disk of `bytes` (a multiple of 512), made at `epoch` (Unix seconds),
/// with unique id `id`.
pub(crate) fn footer(bytes: u64, epoch: i64, id: [u8; 16]) -> [u8; FOOTER_BYTES] {
    footer_of(bytes, epoch, id, DISK_TYPE_FIXED, NO_DATA_OFFSET)
}

/// A footer for a disk of `disk_type` whose dynamic header (if any) is at `data_offset`.
fn footer_of(
    bytes: u64,
    epoch: i64,
    id: [u8; 16],
    disk_type: u32,
    data_offset: u64,
) -> [u8; FOOTER_BYTES] {
    let mut f = [0u8; FOOTER_BYTES];
    f[0..8].copy_from_slice(COOKIE);
    f[8..12].copy_from_slice(&FEATURES.to_be_bytes());
    f[12..16].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    f[16..24].copy_from_slice(&data_offset.to_be_bytes());
    let stamp = u32::try_from((epoch - VHD_EPOCH).max(0)).unwrap_or(u32::MAX);
    f[24..28].copy_from_slice(&stamp.to_be_bytes());
    f[28..32].copy_from_slice(CREATOR_APP);
    f[32..36].copy_from_slice(&CREATOR_VERSION.to_be_bytes());
    f[36..40].copy_from_slice(CREATOR_HOST);
    f[40..48].copy_from_slice(&bytes.to_be_bytes()); // original size
    f[48..56].copy_from_slice(&bytes.to_be_bytes()); // current size
    f[56..58].copy_from_slice(&MAX_CYLINDERS.to_be_bytes());
    f[58] = MAX_HEADS;
    f[59] = MAX_SECTORS;
    f[60..64].copy_from_slice(&disk_type.to_be_bytes());
    f[68..84].copy_from_slice(&id);
    let sum = checksum(&f);
    f[64..68].copy_from_slice(&sum.to_be_bytes());
    f
}

/// Writes `raw` (a whole disk image, a multiple of 512 bytes) to `out` as a fixed VHD.
pub(crate) fn write_fixed_vhd(
    raw: &File,
    out: &mut impl Write,
    epoch: i64,
    id: [u8; 16],
) -> io::Result<()> {
    let len = whole_sectors(raw, VHD)?;
    copy_prefix(raw, len, out)?;
    out.write_all(&footer(len, epoch, id))
}

/// VHD's checksum of a footer or header (its checksum field still zeros): the one's complement
/// of the sum of its bytes.
fn checksum(bytes: &[u8]) -> u32 {
    !bytes
        .iter()
        .fold(0u32, |s, &b| s.wrapping_add(u32::from(b)))
}

/// The dynamic disk header of a disk with `entries` BAT entries.
fn dynamic_header(entries: u32) -> [u8; DYNAMIC_HEADER_BYTES] {
    let mut h = [0u8; DYNAMIC_HEADER_BYTES];
    h[0..8].copy_from_slice(DYNAMIC_COOKIE);
    h[8..16].copy_from_slice(&NO_DATA_OFFSET.to_be_bytes());
    h[16..24].copy_from_slice(&BAT_OFFSET.to_be_bytes());
    h[24..28].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    h[28..32].copy_from_slice(&entries.to_be_bytes());
    h[32..36].copy_from_slice(&(BLOCK_BYTES as u32).to_be_bytes());
    // No parent: its id, timestamp, name and locators stay zero.
    let sum = checksum(&h);
    h[36..40].copy_from_slice(&sum.to_be_bytes());
    h
}

/// Writes `raw` (a whole disk image, a multiple of 512 bytes) to `out` as a dynamic VHD.
pub(crate) fn write_dynamic_vhd(
    raw: &File,
    out: &mut impl Write,
    epoch: i64,
    id: [u8; 16],
) -> io::Result<()> {
    let len = whole_sectors(raw, VHD)?;
    let entries = u32::try_from(len.div_ceil(BLOCK_BYTES))
        .map_err(|_| io::Error::other("the disk is too large for a dynamic VHD"))?;
    // Which blocks hold data (holes are not read), to lay the BAT out; they are read again to
    // be copied.
    let present = nonzero_chunks(raw, len, BLOCK_BITS)?;
    let bat_bytes = (entries as usize * 4).next_multiple_of(512);
    let first_block = BAT_OFFSET + bat_bytes as u64;
    let stride = BITMAP_BYTES as u64 + BLOCK_BYTES;
    // Every entry unallocated (0xFFFFFFFF), the padding too, but for the blocks stored.
    let mut bat = vec![0xffu8; bat_bytes];
    for (i, &b) in present.iter().enumerate() {
        let sector = (first_block + i as u64 * stride) / 512;
        let sector = u32::try_from(sector)
            .map_err(|_| io::Error::other("the disk is too large for a dynamic VHD"))?;
        bat[b as usize * 4..b as usize * 4 + 4].copy_from_slice(&sector.to_be_bytes());
    }
    let foot = footer_of(len, epoch, id, DISK_TYPE_DYNAMIC, DYNAMIC_HEADER_OFFSET);
    out.write_all(&foot)?;
    out.write_all(&dynamic_header(entries))?;
    out.write_all(&bat)?;
    // Every sector of a stored block is present.
    write_chunks(raw, len, BLOCK_BITS, &present, &[0xff; BITMAP_BYTES], out)?;
    out.write_all(&foot)
}

#[cfg(test)]
#[path = "vhd/tests.rs"]
mod tests;
