//! Where the bytes of a blob to upload come from, and cutting them into chunks. A large file
//! is mapped read-only, so a request's body is a slice of the page cache that goes to the
//! socket without being read into memory first (reading 40 MB cost ~30 ms here, during which
//! the registry waited) or copied per chunk; this is the one `unsafe` outside the Linux
//! crates (see [`map`]). A small file is read.
//!
//! This module only reads; it never hashes (the registry verifies) and never talks HTTP.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::{Error, Result};

/// Where the bytes of a blob to upload come from.
#[derive(Debug, Clone)]
pub enum BlobSource {
    /// In memory (manifests, configs, small test blobs).
    Bytes(Bytes),
    /// A file holding exactly the blob, that nobody writes to while it uploads (a store
    /// blob: they are written once and renamed into place).
    File(PathBuf),
}

/// Chunks of a blob from some offset on, in order.
pub(crate) struct Chunks {
    bytes: Bytes,
    offset: u64,
    end: u64,
    chunk: usize,
    /// Why the blob could not be had: the first chunk is this error.
    failed: Option<Error>,
}

impl Chunks {
    /// The next chunk, `None` after the last.
    pub(crate) fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        if let Some(e) = self.failed.take() {
            return Some(Err(e));
        }
        let len = self.bytes.len();
        let start = usize::try_from(self.offset).unwrap_or(usize::MAX).min(len);
        let stop = start
            .saturating_add(self.chunk)
            .min(usize::try_from(self.end).unwrap_or(usize::MAX))
            .min(len);
        if stop <= start {
            return None;
        }
        self.offset = stop as u64;
        Some(Ok(self.bytes.slice(start..stop)))
    }
}

fn short_file(path: &Path) -> Error {
    Error::Io {
        op: "read",
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file is shorter than the blob's size",
        ),
    }
}

/// Runs `f` over the chunks of `[start, end)` of `source`.
pub(crate) fn with_chunks<R>(
    source: &BlobSource,
    start: u64,
    end: u64,
    chunk: usize,
    f: impl FnOnce(&mut Chunks) -> R,
) -> R {
    let (bytes, failed) = match whole_blob(source, end) {
        Ok(b) => (b, None),
        Err(e) => (Bytes::new(), Some(e)),
    };
    f(&mut Chunks {
        bytes,
        offset: start,
        end,
        chunk: chunk.max(1),
        failed,
    })
}

/// Files at least this large are mapped rather than read.
const MAP_AT: u64 = 1 << 20;

/// The first `size` bytes of the blob in one buffer: memory as it is; a large file mapped, a
/// small one read. A file shorter than `size` is an error naming it.
pub(crate) fn whole_blob(source: &BlobSource, size: u64) -> Result<Bytes> {
    match source {
        BlobSource::Bytes(bytes) => {
            let end = usize::try_from(size).unwrap_or(usize::MAX).min(bytes.len());
            Ok(bytes.slice(..end))
        }
        BlobSource::File(path) => {
            let file = File::open(path).map_err(Error::io("open", path))?;
            if size >= MAP_AT {
                let len = file.metadata().map_err(Error::io("stat", path))?.len();
                if len < size {
                    return Err(short_file(path));
                }
                let end = usize::try_from(size).map_err(|_| short_file(path))?;
                match map(&file) {
                    Ok(m) => return Ok(Bytes::from_owner(m).slice(..end)),
                    // A file system that cannot map files: read it instead.
                    Err(e) => tracing::debug!("cannot map {}: {e}; reading it", path.display()),
                }
            }
            let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            // `read_to_end` fills spare capacity without zeroing it first.
            let n = file
                .take(size)
                .read_to_end(&mut buf)
                .map_err(Error::io("read", path))?;
            if n as u64 != size {
                return Err(short_file(path));
            }
            Ok(Bytes::from(buf))
        }
    }
}

/// `file` mapped read-only.
#[allow(unsafe_code)]
fn map(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: a mapping is only sound while nobody changes the file, and `BlobSource::File`
    // promises that: its files are store blobs, which are written once under a temporary
    // name and renamed into place, never written in place; deleting one (`cache clean`)
    // leaves the mapped inode intact. The mapping is private and read-only.
    unsafe { memmap2::MmapOptions::new().map(file) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_file_is_read_whole_even_past_the_first_chunk() {
        // Larger than the chunked reader's first chunk, which once went up alone.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..(11u32 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let got = whole_blob(&BlobSource::File(path), data.len() as u64).unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got[..] == data[..]);
        let mem = whole_blob(
            &BlobSource::Bytes(Bytes::from(data.clone())),
            data.len() as u64,
        )
        .unwrap();
        assert!(mem[..] == data[..]);
        let short = dir.path().join("short");
        std::fs::write(&short, b"1234").unwrap();
        let e = whole_blob(&BlobSource::File(short.clone()), 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("shorter") && e.contains("short"), "{e}");
        // Mapped (large) and read (small) alike: a file shorter than the blob is refused, and
        // a longer one gives just the blob's bytes.
        let e = whole_blob(&BlobSource::File(short), MAP_AT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("shorter"), "{e}");
        for size in [MAP_AT - 1, MAP_AT, MAP_AT + 4096] {
            let got = whole_blob(&BlobSource::File(dir.path().join("blob")), size).unwrap();
            assert!(got[..] == data[..size as usize], "{size}");
        }
    }

    fn collect(source: &BlobSource, start: u64, end: u64, chunk: usize) -> Result<Vec<Vec<u8>>> {
        with_chunks(source, start, end, chunk, |c| {
            let mut out = Vec::new();
            while let Some(b) = c.next_chunk() {
                let b = b?;
                out.push(b.to_vec());
            }
            Ok(out)
        })
    }

    #[test]
    fn memory_and_file_chunks_agree() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, &data).unwrap();
        for (start, chunk) in [(0, 300), (250, 100), (999, 64), (0, 5000)] {
            let mem = collect(
                &BlobSource::Bytes(Bytes::from(data.clone())),
                start,
                1000,
                chunk,
            )
            .unwrap();
            let file = collect(&BlobSource::File(path.clone()), start, 1000, chunk).unwrap();
            assert_eq!(
                mem.concat(),
                data[start as usize..],
                "start {start} chunk {chunk}"
            );
            assert_eq!(
                file.concat(),
                data[start as usize..],
                "start {start} chunk {chunk}"
            );
            assert!(mem.iter().chain(&file).all(|c| c.len() <= chunk));
        }
        assert!(
            collect(&BlobSource::File(path.clone()), 1000, 1000, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_large_file_is_cut_into_chunks_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..(5u32 << 20) + 17).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let chunks = collect(&BlobSource::File(path), 100, data.len() as u64, 2 << 20).unwrap();
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2 << 20, 2 << 20, (1 << 20) + 17 - 100]);
        assert!(chunks.concat() == data[100..]);
    }

    #[test]
    fn a_short_or_missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, b"12345").unwrap();
        let e = collect(&BlobSource::File(path.clone()), 0, 10, 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("shorter") && e.contains("blob"), "{e}");
        let e = collect(&BlobSource::File(dir.path().join("nope")), 0, 10, 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
