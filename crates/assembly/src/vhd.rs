//! Fixed VHD disk images (`vhd`): a raw disk image followed by the 512-byte footer of
//! Microsoft's Virtual Hard Disk format (version 1.0), the format Hyper-V and Azure take.
//! A fixed VHD is the raw bytes as they are; the footer says how large the disk is, that it is
//! fixed, and who made it, with a checksum.
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
use std::io::{self, Read, Seek, SeekFrom, Write};

const FOOTER_BYTES: usize = 512;
const COOKIE: &[u8; 8] = b"conectix";
/// "Reserved": the specification says this bit is always set.
const FEATURES: u32 = 0x0000_0002;
const FORMAT_VERSION: u32 = 0x0001_0000;
/// A fixed disk has no dynamic header.
const NO_DATA_OFFSET: u64 = u64::MAX;
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
    let mut f = [0u8; FOOTER_BYTES];
    f[0..8].copy_from_slice(COOKIE);
    f[8..12].copy_from_slice(&FEATURES.to_be_bytes());
    f[12..16].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    f[16..24].copy_from_slice(&NO_DATA_OFFSET.to_be_bytes());
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
    f[60..64].copy_from_slice(&DISK_TYPE_FIXED.to_be_bytes());
    f[68..84].copy_from_slice(&id);
    // The one's complement of the sum of the footer's bytes, the checksum field as zeros.
    let sum = f.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
    f[64..68].copy_from_slice(&(!sum).to_be_bytes());
    f
}

/// Writes `raw` (a whole disk image, a multiple of 512 bytes) to `out` as a fixed VHD.
pub(crate) fn write_fixed_vhd(
    raw: &File,
    out: &mut impl Write,
    epoch: i64,
    id: [u8; 16],
) -> io::Result<()> {
    let len = raw.metadata()?.len();
    if len % 512 != 0 {
        return Err(io::Error::other(format!(
            "a VHD holds whole 512-byte sectors; the disk is {len} bytes"
        )));
    }
    let mut from = raw.try_clone()?;
    from.seek(SeekFrom::Start(0))?;
    let copied = io::copy(&mut Read::by_ref(&mut from).take(len), out)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the disk image shrank while it was copied",
        ));
    }
    out.write_all(&footer(len, epoch, id))
}

#[cfg(test)]
#[path = "vhd/tests.rs"]
mod tests;
