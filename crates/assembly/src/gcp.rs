//! Google Compute Engine images (`gcp`): `NAME.img.tar.gz`, the archive Compute Engine
//! creates an image from. It holds one file, `disk.raw`: the raw BIOS disk, padded to whole GiB
//! (Compute Engine's requirement). The archive is a GNU tar, gzip-compressed, as Google's
//! documentation makes it (`tar --format=oldgnu -Sczf`): the padding is a hole of the sparse
//! file, recorded in its header's sparse map, not gigabytes of zeros in the stream.
//!
//! The tar is what `tar --format=oldgnu -S --numeric-owner --owner=0 --group=0 --mode=0644
//! --mtime=@EPOCH -cf - disk.raw` writes for a file whose bytes up to the disk's length are
//! data and the rest a hole: one header, the data, two zero blocks, and zeros up to GNU tar's
//! 10 KiB record. Reproducible: the mtime is the build's epoch, and the gzip stream is the
//! store's parallel gzip, whose bytes do not depend on the thread count.

use std::fs::File;
use std::io::{self, Read, Write};

use oxkit_store::layer::ParallelGzip;

use crate::rawdisk::{copy_prefix, whole_sectors};

const BLOCK: u64 = 512;
/// GNU tar's default record: 20 blocks.
const RECORD: u64 = 20 * BLOCK;
const GIB: u64 = 1 << 30;
/// The name Compute Engine looks for.
const DISK_NAME: &[u8] = b"disk.raw";
/// The old GNU format's magic and version: `ustar`, two spaces, NUL.
const OLDGNU_MAGIC: &[u8; 8] = b"ustar  \0";
const GZIP_LEVEL: u32 = 6;

/// A numeric header field: zero-padded octal digits and a NUL, or, for values too large for
/// them, GNU's base-256 (the first byte's top bit set, big-endian).
fn numeric(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if value < 8u64.pow(digits as u32) {
        let text = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
    } else {
        field.fill(0);
        let bytes = value.to_be_bytes();
        let n = field.len();
        field[n - 8..].copy_from_slice(&bytes);
        field[0] |= 0x80;
    }
}

/// The header of `disk.raw`, `size` bytes of which the first `data` are stored (the rest a
/// hole), with mtime `epoch`: a sparse file (type `S`) whose map has the data and the end of
/// the hole, or a regular file (type `0`) when there is no hole.
fn header(data: u64, size: u64, epoch: i64) -> [u8; BLOCK as usize] {
    let mut h = [0u8; BLOCK as usize];
    h[..DISK_NAME.len()].copy_from_slice(DISK_NAME);
    numeric(&mut h[100..108], 0o644);
    numeric(&mut h[108..116], 0);
    numeric(&mut h[116..124], 0);
    numeric(&mut h[124..136], data);
    numeric(&mut h[136..148], u64::try_from(epoch.max(0)).unwrap_or(0));
    h[257..265].copy_from_slice(OLDGNU_MAGIC);
    if data < size {
        h[156] = b'S';
        // The sparse map: (offset, length) pairs, the data, then the hole's end.
        numeric(&mut h[386..398], 0);
        numeric(&mut h[398..410], data);
        numeric(&mut h[410..422], size);
        numeric(&mut h[422..434], 0);
        numeric(&mut h[483..495], size);
    } else {
        h[156] = b'0';
    }
    // The checksum is computed with its own field as spaces, and written as six octal digits,
    // a NUL and a space.
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

/// The size `disk.raw` has for a raw disk of `len` bytes: whole GiB, at least one.
pub(crate) fn padded_size(len: u64) -> u64 {
    len.div_ceil(GIB).max(1) * GIB
}

/// Writes the `gcp` archive of `raw` (a whole disk image, a multiple of 512 bytes) to `out`,
/// made at `epoch`; returns `out`.
pub(crate) fn write_gcp<W: Write + Send + 'static>(
    raw: &File,
    out: W,
    epoch: i64,
) -> io::Result<W> {
    let len = whole_sectors(raw, "disk.raw")?;
    let size = padded_size(len);
    let mut gz = ParallelGzip::new(out, GZIP_LEVEL);
    gz.write_all(&header(len, size, epoch))?;
    copy_prefix(raw, len, &mut gz)?;
    // The end of the archive (two zero blocks) and of its last record.
    let archive = BLOCK + len + 2 * BLOCK;
    let end = archive.div_ceil(RECORD) * RECORD;
    io::copy(&mut io::repeat(0).take(end - BLOCK - len), &mut gz)?;
    gz.finish()
}

#[cfg(test)]
#[path = "gcp/tests.rs"]
mod tests;
