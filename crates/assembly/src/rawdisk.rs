//! What the disk image formats share about the raw disk they wrap: finding the chunks of it
//! that hold data (skipping holes), checking it is whole sectors, and copying it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

/// How much raw data is read at once while scanning.
const READ_CHUNK: usize = 4 << 20;

/// The byte ranges of `raw`'s first `len` bytes that may hold data: the file system's data
/// extents (`SEEK_DATA` and `SEEK_HOLE`: a sparse raw disk is mostly holes, which need not be
/// read), or everything from where the file system stops answering.
fn data_extents(raw: &File, len: u64) -> Vec<(u64, u64)> {
    use rustix::fs::{SeekFrom, seek};
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let start = match seek(raw, SeekFrom::Data(at)) {
            Ok(s) => s,
            // No data from `at` on.
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => {
                out.push((at, len));
                break;
            }
        };
        if start >= len {
            break;
        }
        let end = seek(raw, SeekFrom::Hole(start)).map_or(len, |e| e.min(len));
        if end <= start {
            out.push((start, len));
            break;
        }
        out.push((start, end));
        at = end;
    }
    out
}

/// The `2^bits`-byte chunks of `raw`'s first `len` bytes (their indices, ascending) that hold
/// a non-zero byte: qcow2's clusters, a dynamic VHD's blocks. Holes are not read.
pub(crate) fn nonzero_chunks(raw: &File, len: u64, cluster_bits: u32) -> io::Result<Vec<u64>> {
    let cs = 1u64 << cluster_bits;
    let chunk = (READ_CHUNK as u64).max(cs);
    let mut buf = vec![0u8; chunk as usize];
    let mut found: Vec<u64> = Vec::new();
    for (start, end) in data_extents(raw, len) {
        let mut offset = start & !(cs - 1);
        let end = end.div_ceil(cs).saturating_mul(cs).min(len);
        while offset < end {
            let want = (end - offset).min(chunk) as usize;
            raw.read_exact_at(&mut buf[..want], offset)?;
            for (i, c) in buf[..want].chunks(cs as usize).enumerate() {
                let cluster = (offset >> cluster_bits) + i as u64;
                // Two extents may share a cluster once aligned.
                if !is_zero(c) && found.last().is_none_or(|&l| l < cluster) {
                    found.push(cluster);
                }
            }
            offset += want as u64;
        }
    }
    Ok(found)
}

/// Writes the `2^bits`-byte chunks `chunks` (indices, in the order given) of `raw`'s first
/// `len` bytes to `out`, each whole (the disk's last, partial chunk padded with zeros) and
/// each behind `header` (a dynamic VHD block's sector bitmap; empty for none): the data part
/// of the sparse formats, whose tables [`nonzero_chunks`] laid out.
pub(crate) fn write_chunks(
    raw: &File,
    len: u64,
    bits: u32,
    chunks: &[u64],
    header: &[u8],
    out: &mut impl Write,
) -> io::Result<()> {
    let size = 1u64 << bits;
    let mut buf = vec![0u8; size as usize];
    for &c in chunks {
        let at = c << bits;
        let n = (len - at).min(size) as usize;
        raw.read_exact_at(&mut buf[..n], at)?;
        buf[n..].fill(0);
        out.write_all(header)?;
        out.write_all(&buf)?;
    }
    Ok(())
}

/// Whether `b` is all zeros.
pub(crate) fn is_zero(b: &[u8]) -> bool {
    // OR-folding a block has no early exit, so it vectorises; blocks stop at the first hit.
    b.chunks(256)
        .all(|c| c.iter().fold(0u8, |a, &x| a | x) == 0)
}

/// The length of `raw`, which a `what` (a format's name) can hold only in whole 512-byte
/// sectors.
pub(crate) fn whole_sectors(raw: &File, what: &str) -> io::Result<u64> {
    let len = raw.metadata()?.len();
    if len % 512 != 0 {
        return Err(io::Error::other(format!(
            "{what} holds whole 512-byte sectors; the disk is {len} bytes"
        )));
    }
    Ok(len)
}

/// Copies the first `len` bytes of `raw` to `out`.
pub(crate) fn copy_prefix(raw: &File, len: u64, out: &mut impl Write) -> io::Result<()> {
    let mut from = raw.try_clone()?;
    from.seek(SeekFrom::Start(0))?;
    let copied = io::copy(&mut Read::by_ref(&mut from).take(len), out)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the disk image shrank while it was copied",
        ));
    }
    Ok(())
}
