//! Where the bytes of a blob to upload come from, and reading them in chunks: slices of
//! memory as they are, or chunks of a file read ahead by a helper thread, so the next chunk
//! is read while the current one is on the wire. Two buffers take turns; a sent chunk's
//! buffer is handed back for the next read, so a long upload neither copies nor allocates
//! per chunk. Buffers are filled without zeroing them first. A blob that goes up in one
//! request is mapped instead, when large (the one `unsafe` outside the Linux crates: see
//! [`map`]).
//!
//! This module only reads; it never hashes (the registry verifies) and never talks HTTP.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use bytes::Bytes;

use crate::error::{Error, Result};

/// Where the bytes of a blob to upload come from.
#[derive(Debug, Clone)]
pub enum BlobSource {
    /// In memory (manifests, configs, small test blobs).
    Bytes(Bytes),
    /// A file holding exactly the blob, that nobody writes to while it uploads (a store
    /// blob: they are written once and renamed into place); mapped or read chunk by chunk.
    File(PathBuf),
}

/// Chunks of a blob from some offset on, in order.
pub(crate) struct Chunks<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Memory {
        bytes: &'a Bytes,
        offset: u64,
        end: u64,
        chunk: usize,
    },
    File {
        rx: Receiver<Result<Bytes>>,
        recycle: SyncSender<Vec<u8>>,
    },
}

impl Chunks<'_> {
    /// The next chunk, `None` after the last.
    pub(crate) fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        match &mut self.inner {
            Inner::Memory {
                bytes,
                offset,
                end,
                chunk,
            } => {
                if *offset >= *end {
                    return None;
                }
                let start = usize::try_from(*offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let stop = start
                    .saturating_add(*chunk)
                    .min(usize::try_from(*end).unwrap_or(usize::MAX))
                    .min(bytes.len());
                if stop <= start {
                    return None;
                }
                *offset = stop as u64;
                Some(Ok(bytes.slice(start..stop)))
            }
            Inner::File { rx, .. } => rx.recv().ok(),
        }
    }

    /// Hands a sent chunk's buffer back for reuse, when nothing else holds it any more.
    pub(crate) fn recycle(&self, sent: Bytes) {
        if let Inner::File { recycle, .. } = &self.inner
            && let Ok(m) = sent.try_into_mut()
        {
            // The reader may be busy or gone; then the buffer is simply freed.
            let _ = recycle.try_send(m.into());
        }
    }
}

/// The size of the first chunk read from a file.
const FIRST_CHUNK: usize = 4 << 20;

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

/// Reads `[start, end)` of a file in `chunk`-sized pieces into `tx`, reusing buffers from
/// `recycled`. Stops early when the receiver is gone.
fn read_ahead(
    path: &Path,
    start: u64,
    end: u64,
    chunk: usize,
    tx: &SyncSender<Result<Bytes>>,
    recycled: &Receiver<Vec<u8>>,
) {
    let mut file =
        match File::open(path).and_then(|mut f| f.seek(SeekFrom::Start(start)).map(|_| f)) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(Err(Error::io("open", path)(e)));
                return;
            }
        };
    let mut offset = start;
    // The first chunks are small and double up to `chunk`, so bytes start flowing at once
    // instead of after a whole large chunk has been read.
    let mut step = chunk.min(FIRST_CHUNK);
    while offset < end {
        let len = usize::try_from(end - offset)
            .unwrap_or(usize::MAX)
            .min(step);
        step = step.saturating_mul(2).min(chunk);
        let mut buf = recycled.try_recv().unwrap_or_default();
        buf.clear();
        buf.reserve_exact(len);
        // `read_to_end` fills spare capacity without zeroing it first.
        let got = (&mut file).take(len as u64).read_to_end(&mut buf);
        let item = match got {
            Ok(n) if n == len => Ok(Bytes::from(buf)),
            Ok(_) => Err(short_file(path)),
            Err(e) => Err(Error::io("read", path)(e)),
        };
        let failed = item.is_err();
        if tx.send(item).is_err() || failed {
            return;
        }
        offset += len as u64;
    }
}

/// Runs `f` over the chunks of `[start, end)` of `source`. For a file, a helper thread reads
/// ahead (one chunk ready while another is sent); it stops when `f` returns.
pub(crate) fn with_chunks<R>(
    source: &BlobSource,
    start: u64,
    end: u64,
    chunk: usize,
    f: impl FnOnce(&mut Chunks<'_>) -> R,
) -> R {
    let chunk = chunk.max(1);
    match source {
        BlobSource::Bytes(bytes) => f(&mut Chunks {
            inner: Inner::Memory {
                bytes,
                offset: start,
                end,
                chunk,
            },
        }),
        BlobSource::File(path) => std::thread::scope(|s| {
            // A rendezvous channel: the reader holds at most one finished chunk while the
            // caller sends another, so two buffers are in use.
            let (tx, rx) = sync_channel::<Result<Bytes>>(0);
            let (recycle, recycled) = sync_channel::<Vec<u8>>(2);
            s.spawn(move || read_ahead(path, start, end, chunk, &tx, &recycled));
            let mut chunks = Chunks {
                inner: Inner::File { rx, recycle },
            };
            // `chunks` (and with it the receiver) is dropped when `f` returns, which lets a
            // reader blocked on sending see that nobody listens and stop.
            f(&mut chunks)
        }),
    }
}

/// Files at least this large are mapped rather than read for a monolithic upload.
const MAP_AT: u64 = 1 << 20;

/// The whole blob in one buffer, for a monolithic upload: memory as it is; a large file
/// mapped, so that its pages go from the page cache to the socket as the request is written
/// (reading it into memory first cost ~30 ms for 40 MB, during which the registry waited);
/// a small file read straight into one buffer.
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
                return Ok(Bytes::from_owner(map(&file, path)?).slice(..end));
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
fn map(file: &File, path: &Path) -> Result<memmap2::Mmap> {
    // SAFETY: a mapping is only sound while nobody changes the file, and `BlobSource::File`
    // promises that: its files are store blobs, which are written once under a temporary
    // name and renamed into place, never written in place; deleting one (`cache clean`)
    // leaves the mapped inode intact. The mapping is private and read-only.
    unsafe { memmap2::MmapOptions::new().map(file) }.map_err(Error::io("map", path))
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
                c.recycle(b);
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
    fn file_chunks_start_small_and_grow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let size = 40usize << 20;
        std::fs::write(&path, vec![7u8; size]).unwrap();
        let sizes: Vec<usize> = collect(&BlobSource::File(path), 0, size as u64, 16 << 20)
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [4 << 20, 8 << 20, 16 << 20, 12 << 20]);
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

    #[test]
    fn stopping_early_does_not_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();
        let first = with_chunks(&BlobSource::File(path), 0, 10_000, 100, |c| {
            c.next_chunk().map(|r| r.map(|b| b.len()))
        });
        assert_eq!(first.unwrap().unwrap(), 100);
    }
}
