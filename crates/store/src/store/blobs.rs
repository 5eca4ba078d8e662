//! Blobs: content-addressed files under `blobs/<algorithm>/<hex>`.
//!
//! Writes stream into a temporary file inside the store while being hashed; the file is
//! fsynced and renamed into place only when the digest (and size) match what was expected.
//! Reads verify the digest too: whole reads before returning, streaming reads at EOF.
//! Nothing here decides what a blob means.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;

use oxkit_spec::{Digest, DigestHasher, Sha256Hasher};
use serde::Serialize;
use tempfile::TempPath;

use super::Store;
use super::lock::Lease;
use crate::error::{Error, Result};
use crate::oci::{self, Descriptor};

/// What a committed blob is: its digest and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

impl BlobInfo {
    /// A descriptor for this blob with `media_type`.
    pub fn descriptor(&self, media_type: impl Into<String>) -> Descriptor {
        Descriptor::new(media_type, self.digest.clone(), self.size)
    }
}

/// A blob being written. Bytes are hashed as they pass; [`BlobWriter::commit`] moves the
/// file into `blobs/` only if the content matches the expected digest and size (when
/// given). Dropping the writer without committing leaves the store unchanged.
///
/// While alive it holds a [`Lease`], so garbage collection cannot remove its temporary
/// file; hold your own lease until the blob is referenced (tagged, or listed in a cache
/// entry).
pub struct BlobWriter {
    out: BufWriter<File>,
    temp: TempPath,
    hasher: DigestHasher,
    size: u64,
    expected: Option<Digest>,
    expected_size: Option<u64>,
    store: Store,
    _lease: Lease,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("temp", &self.temp)
            .field("size", &self.size)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl BlobWriter {
    fn new(store: &Store, expected: Option<Digest>, expected_size: Option<u64>) -> Result<Self> {
        let hasher = match &expected {
            Some(d) => DigestHasher::for_digest(d),
            None => DigestHasher::Sha256(Sha256Hasher::new()),
        };
        let lease = store.lease()?;
        let (file, temp) = store.temp_file("blob-")?.into_parts();
        Ok(Self {
            out: BufWriter::with_capacity(256 * 1024, file),
            temp,
            hasher,
            size: 0,
            expected,
            expected_size,
            store: store.clone(),
            _lease: lease,
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.size
    }

    /// Checks the content and moves it into `blobs/`.
    pub fn commit(self) -> Result<BlobInfo> {
        // The lease is kept until the blob is in place, so GC cannot clear the temp file.
        let (info, staged, lease) = self.finish_inner()?;
        staged.persist()?;
        drop(lease);
        Ok(info)
    }

    /// Verifies and fsyncs the content but leaves it in its temporary file, for callers that
    /// must check a whole batch before any of it enters `blobs/` (archive import). The
    /// writer's lease is released: the caller must hold its own until the blobs are
    /// persisted (one lease for the batch, not one open lock file per blob).
    pub(crate) fn finish_verified(self) -> Result<(BlobInfo, StagedBlob)> {
        let (info, staged, _lease) = self.finish_inner()?;
        Ok((info, staged))
    }

    fn finish_inner(self) -> Result<(BlobInfo, StagedBlob, Lease)> {
        let Self {
            out,
            temp,
            hasher,
            size,
            expected,
            expected_size,
            store,
            _lease,
        } = self;
        let file = out
            .into_inner()
            .map_err(|e| Error::io("write", &*temp)(e.into_error()))?;
        file.sync_all().map_err(Error::io("sync", &*temp))?;
        drop(file);
        let digest = hasher.finish();
        if let Some(want) = expected_size
            && want != size
        {
            return Err(Error::SizeMismatch {
                what: expected
                    .as_ref()
                    .map_or_else(|| "blob".into(), |d| format!("blob {d}")),
                expected: want,
                actual: size,
            });
        }
        if let Some(want) = expected
            && want != digest
        {
            return Err(Error::DigestMismatch {
                what: "blob".into(),
                expected: want,
                actual: digest,
            });
        }
        let info = BlobInfo { digest, size };
        let dest = store.blob_path(&info.digest);
        Ok((info, StagedBlob { temp, dest }, _lease))
    }
}

/// A verified blob waiting in a temporary file to be moved into `blobs/`.
#[derive(Debug)]
pub(crate) struct StagedBlob {
    temp: TempPath,
    dest: PathBuf,
}

impl StagedBlob {
    /// Where the verified content waits.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.temp
    }

    pub(crate) fn persist(self) -> Result<()> {
        if let Some(dir) = self.dest.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
        }
        let dest = self.dest;
        self.temp
            .persist(&dest)
            .map_err(|e| Error::io("rename into place", &dest)(e.error))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(max) = self.expected_size
            && self.size + buf.len() as u64 > max
        {
            // Refuse early: a stream longer than announced is wrong however it ends.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob is longer than the expected {max} bytes"),
            ));
        }
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A blob opened for streaming. The digest is checked when the reader reaches EOF: the
/// final `read` returns an `InvalidData` error instead of `Ok(0)` if the content is corrupt.
/// A caller that stops early gets no verification.
pub struct BlobReader {
    file: File,
    hasher: Option<DigestHasher>,
    digest: Digest,
    path: PathBuf,
    size: u64,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("digest", &self.digest)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl BlobReader {
    /// The blob's size on disk.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digest being verified.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if let Some(h) = &mut self.hasher {
            if n > 0 || buf.is_empty() {
                h.update(&buf[..n]);
            } else if let Some(h) = self.hasher.take() {
                let actual = h.finish();
                if actual != self.digest {
                    let e = Error::CorruptBlob {
                        digest: self.digest.clone(),
                        actual,
                        path: self.path.clone(),
                    };
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
                }
            }
        }
        Ok(n)
    }
}

impl Store {
    /// A writer for a new blob whose digest is computed from its content.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        BlobWriter::new(self, None, None)
    }

    /// A writer that commits only if the content hashes to `digest` (and has `size` bytes,
    /// when given; longer content fails as soon as it exceeds it).
    pub fn blob_writer_expecting(&self, digest: &Digest, size: Option<u64>) -> Result<BlobWriter> {
        BlobWriter::new(self, Some(digest.clone()), size)
    }

    /// Stores `bytes` as a blob.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<BlobInfo> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(Error::io("write", &*w.temp))?;
        w.commit()
    }

    /// Stores `bytes` only if they hash to `digest`.
    pub fn write_blob_expecting(&self, bytes: &[u8], digest: &Digest) -> Result<BlobInfo> {
        let mut w = self.blob_writer_expecting(digest, Some(bytes.len() as u64))?;
        w.write_all(bytes).map_err(Error::io("write", &*w.temp))?;
        w.commit()
    }

    /// Serializes `value` canonically, stores it and returns its descriptor.
    pub fn put_json<T: Serialize>(&self, media_type: &str, value: &T) -> Result<Descriptor> {
        let bytes = oci::to_canonical_json(value)?;
        Ok(self.write_blob(&bytes)?.descriptor(media_type))
    }

    /// Whether the blob is present (not whether it is intact; see [`Store::fsck`]).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The size of a present blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.blob_path(digest);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", &path)(e)),
        }
    }

    /// Opens a blob for streaming, verified at EOF (see [`BlobReader`]).
    pub fn open_blob(&self, digest: &Digest) -> Result<BlobReader> {
        let hasher = DigestHasher::for_digest(digest);
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|e| self.not_found_or(digest, &path, e))?;
        let size = file.metadata().map_err(Error::io("stat", &path))?.len();
        Ok(BlobReader {
            file,
            hasher: Some(hasher),
            digest: digest.clone(),
            path,
            size,
        })
    }

    /// Reads a whole blob and verifies it before returning it. For small blobs (manifests,
    /// configs); stream layers with [`Store::open_blob`].
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut hasher = DigestHasher::for_digest(digest);
        let path = self.blob_path(digest);
        let bytes = std::fs::read(&path).map_err(|e| self.not_found_or(digest, &path, e))?;
        hasher.update(&bytes);
        let actual = hasher.finish();
        if &actual != digest {
            return Err(Error::CorruptBlob {
                digest: digest.clone(),
                actual,
                path,
            });
        }
        Ok(bytes)
    }

    fn not_found_or(&self, digest: &Digest, path: &std::path::Path, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::NotFound {
            Error::BlobNotFound {
                digest: digest.clone(),
                store: self.root.clone(),
            }
        } else {
            Error::io("read", path)(e)
        }
    }
}
