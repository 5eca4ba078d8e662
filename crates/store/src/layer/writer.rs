//! Streaming, deterministic layer writers.
//!
//! [`TarWriter`] turns [`Entry`]s into tar bytes on any `Write` while hashing the stream
//! (the diff id); [`LayerWriter`] puts one in front of the pinned compressor and a
//! [`BlobWriter`], and returns the layer descriptor and diff id. Entry order is the
//! caller's: feed entries in a deterministic order (as [`super::layer_from_dir`] does).
//! Nothing here reads the file system.

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;

use oxkit_spec::{Digest, Sha256Hasher};

use super::entry::{Entry, EntryKind, WHITEOUT_PREFIX, normalize_path, split_parent, tar_name};
use super::tar::{self as enc, Header};
use crate::error::{Error, Result};
use crate::oci::Descriptor;
use crate::oci::media_type::{LayerCompression, oci_layer_type};
use crate::store::{BlobWriter, Store};

/// The pinned gzip level: changing it changes every layer digest.
const GZIP_LEVEL: u32 = 6;
/// The pinned zstd level (zstd's default).
const ZSTD_LEVEL: i32 = 3;
/// Copy buffer for file contents.
const COPY_BUF: usize = 256 * 1024;

/// Which extended attributes a directory walk records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XattrPolicy {
    /// None at all.
    None,
    /// Only `security.capability` (file capabilities, what Docker keeps).
    #[default]
    Capabilities,
    /// Everything except `security.selinux` (host-specific labels break reproducibility).
    All,
}

/// How layers are written.
#[derive(Clone, Debug)]
pub struct LayerOptions {
    pub compression: LayerCompression,
    /// Modification times are clamped to at most this (SOURCE_DATE_EPOCH, or 0).
    pub epoch: i64,
    /// Extended attributes a directory walk records (entries given to a writer keep
    /// whatever they carry).
    pub xattrs: XattrPolicy,
}

impl Default for LayerOptions {
    fn default() -> Self {
        Self {
            compression: LayerCompression::Gzip,
            epoch: 0,
            xattrs: XattrPolicy::default(),
        }
    }
}

/// A finished layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// The compressed blob, with its OCI layer media type.
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar (for `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// Bytes of uncompressed tar.
    pub uncompressed_size: u64,
    /// Number of entries written.
    pub entries: u64,
}

/// Hashes and counts bytes on their way to `inner`.
struct Hashing<W> {
    inner: W,
    hasher: Sha256Hasher,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes entries as a deterministic tar stream to `W`, hashing it.
pub struct TarWriter<W: Write> {
    out: Hashing<W>,
    epoch: i64,
    header: Vec<u8>,
    buf: Vec<u8>,
    entries: u64,
}

impl<W: Write> TarWriter<W> {
    /// A writer whose entries' mtimes are clamped to `epoch` (negative means 0).
    pub fn new(out: W, epoch: i64) -> Self {
        Self {
            out: Hashing {
                inner: out,
                hasher: Sha256Hasher::new(),
                count: 0,
            },
            epoch: epoch.max(0),
            header: Vec::with_capacity(3 * enc::BLOCK),
            buf: Vec::new(),
            entries: 0,
        }
    }

    /// Appends `entry`. Regular files need `data`, which must yield exactly the entry's
    /// size in bytes (a file that changed while being read is an error, not a silently
    /// different layer); other kinds ignore it.
    pub fn add(&mut self, entry: &Entry, data: Option<&mut dyn Read>) -> Result<()> {
        let bad = |reason: &str| Error::BadEntry {
            path: entry.path.display().to_string(),
            reason: reason.to_string(),
        };
        let path_bytes = entry.path.as_os_str().as_bytes();
        match normalize_path(path_bytes) {
            Ok(p) if p.as_os_str().as_bytes() == path_bytes && !path_bytes.is_empty() => {}
            Ok(_) if path_bytes.is_empty() => {
                return Err(bad("the root directory is not an entry"));
            }
            Ok(_) => return Err(bad("the path is not normalised (leading '/', '.' or '//')")),
            Err(e) => return Err(bad(e.0)),
        }
        if !matches!(entry.kind, EntryKind::Whiteout | EntryKind::Opaque)
            && split_parent(path_bytes)
                .1
                .starts_with(WHITEOUT_PREFIX.as_bytes())
        {
            // Written as it is, it would come back as a deletion (or, for `.wh..` and
            // `.wh...`, as an entry every careful reader refuses).
            return Err(bad(
                "its name starts with '.wh.', which layer readers take for a whiteout (a deletion, in the OCI image format); rename it",
            ));
        }
        let mut name = tar_name(entry).map_err(|e| bad(e.0))?;
        let (typeflag, size, link, dev): (u8, u64, Vec<u8>, (u32, u32)) = match &entry.kind {
            EntryKind::Dir => {
                name.push(b'/');
                (enc::TYPE_DIR, 0, Vec::new(), (0, 0))
            }
            EntryKind::File { size } => (enc::TYPE_FILE, *size, Vec::new(), (0, 0)),
            EntryKind::Symlink { target } => {
                let t = target.as_os_str().as_bytes();
                if t.is_empty() || t.contains(&0) {
                    return Err(bad(
                        "a symlink target must be non-empty and without NUL bytes",
                    ));
                }
                (enc::TYPE_SYMLINK, 0, t.to_vec(), (0, 0))
            }
            EntryKind::Hardlink { target } => {
                let t = target.as_os_str().as_bytes();
                match normalize_path(t) {
                    Ok(p) if p.as_os_str().as_bytes() == t && !t.is_empty() => {}
                    _ => {
                        return Err(bad(
                            "a hard link target must be a normalised path in the layer",
                        ));
                    }
                }
                (enc::TYPE_HARDLINK, 0, t.to_vec(), (0, 0))
            }
            EntryKind::CharDevice { major, minor } => {
                (enc::TYPE_CHAR, 0, Vec::new(), (*major, *minor))
            }
            EntryKind::BlockDevice { major, minor } => {
                (enc::TYPE_BLOCK, 0, Vec::new(), (*major, *minor))
            }
            EntryKind::Fifo => (enc::TYPE_FIFO, 0, Vec::new(), (0, 0)),
            EntryKind::Whiteout | EntryKind::Opaque => (enc::TYPE_FILE, 0, Vec::new(), (0, 0)),
        };
        let mtime = entry.meta.mtime.clamp(0, self.epoch);
        self.header.clear();
        enc::encode_header(
            &Header {
                name: &name,
                typeflag,
                mode: entry.meta.mode,
                uid: entry.meta.uid,
                gid: entry.meta.gid,
                size,
                mtime: mtime.unsigned_abs(),
                linkname: &link,
                devmajor: dev.0,
                devminor: dev.1,
                xattrs: &entry.meta.xattrs,
            },
            &mut self.header,
        );
        let io_err = |e: io::Error| bad(&format!("cannot write the layer: {e}"));
        self.out.write_all(&self.header).map_err(io_err)?;
        if typeflag == enc::TYPE_FILE && size > 0 {
            let data = data.ok_or_else(|| bad("a regular file needs its content"))?;
            self.copy_exact(data, size).map_err(|e| match e {
                CopyError::Read(e) => bad(&format!("cannot read its content: {e}")),
                CopyError::Write(e) => bad(&format!("cannot write the layer: {e}")),
                CopyError::Short(got) => bad(&format!(
                    "its content ended after {got} of {size} bytes (did the file change while being read?)"
                )),
                CopyError::Long => bad(&format!(
                    "its content is longer than {size} bytes (did the file change while being read?)"
                )),
            })?;
            enc::write_padding(&mut self.out, size).map_err(io_err)?;
        }
        self.entries += 1;
        Ok(())
    }

    fn copy_exact(&mut self, data: &mut dyn Read, size: u64) -> std::result::Result<(), CopyError> {
        if self.buf.is_empty() {
            self.buf = vec![0u8; COPY_BUF];
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match data.read(&mut self.buf[..want]) {
                Ok(0) => return Err(CopyError::Short(size - left)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(CopyError::Write)?;
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        loop {
            match data.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(CopyError::Long),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CopyError::Read(e)),
            }
        }
    }

    /// Convenience for in-memory content.
    pub fn add_bytes(&mut self, entry: &Entry, bytes: &[u8]) -> Result<()> {
        self.add(entry, Some(&mut &bytes[..]))
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Writes the end-of-archive marker; returns the output, the stream's digest and size.
    pub fn finish(mut self) -> Result<(W, Digest, u64)> {
        enc::write_trailer(&mut self.out).map_err(|e| Error::BadEntry {
            path: "(end of archive)".into(),
            reason: format!("cannot write the layer: {e}"),
        })?;
        let Hashing {
            inner,
            hasher,
            count,
        } = self.out;
        Ok((inner, hasher.finish(), count))
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
    Short(u64),
    Long,
}

/// The pinned compressors, writing into a blob.
enum Compressor {
    None(Box<BlobWriter>),
    Gzip(Box<super::pgzip::ParallelGzip<BlobWriter>>),
    /// On its own thread: zstd is the slowest stage, and a plain pipeline keeps its bytes
    /// identical to single-threaded output.
    Zstd(super::offload::Offload<zstd::stream::write::Encoder<'static, BlobWriter>>),
}

impl Compressor {
    fn new(blob: BlobWriter, c: LayerCompression) -> io::Result<Self> {
        Ok(match c {
            LayerCompression::None => Self::None(Box::new(blob)),
            LayerCompression::Gzip => {
                Self::Gzip(Box::new(super::pgzip::ParallelGzip::new(blob, GZIP_LEVEL)))
            }
            LayerCompression::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(blob, ZSTD_LEVEL)?;
                z.include_checksum(true)?;
                Self::Zstd(super::offload::Offload::new(z))
            }
        })
    }

    fn finish(self) -> io::Result<BlobWriter> {
        match self {
            Self::None(b) => Ok(*b),
            Self::Gzip(g) => (*g).finish(),
            Self::Zstd(z) => z.finish()?.finish(),
        }
    }
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::None(b) => b.write(buf),
            Self::Gzip(g) => g.write(buf),
            Self::Zstd(z) => z.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::None(b) => b.flush(),
            Self::Gzip(g) => g.flush(),
            Self::Zstd(z) => z.flush(),
        }
    }
}

/// Writes a layer into the store: entries in, (descriptor, diff id) out.
pub struct LayerWriter {
    tar: TarWriter<io::BufWriter<Compressor>>,
    compression: LayerCompression,
}

impl LayerWriter {
    /// A writer for a new layer blob in `store`.
    pub fn new(store: &Store, opts: &LayerOptions) -> Result<Self> {
        let blob = store.blob_writer()?;
        let comp = Compressor::new(blob, opts.compression).map_err(|e| Error::BadEntry {
            path: "(layer)".into(),
            reason: format!("cannot start the compressor: {e}"),
        })?;
        Ok(Self {
            // Batch the many small header writes before they reach the compressor.
            tar: TarWriter::new(io::BufWriter::with_capacity(COPY_BUF, comp), opts.epoch),
            compression: opts.compression,
        })
    }

    /// Appends an entry (see [`TarWriter::add`]).
    pub fn add(&mut self, entry: &Entry, data: Option<&mut dyn Read>) -> Result<()> {
        self.tar.add(entry, data)
    }

    /// Appends an entry with in-memory content.
    pub fn add_bytes(&mut self, entry: &Entry, bytes: &[u8]) -> Result<()> {
        self.tar.add_bytes(entry, bytes)
    }

    /// Appends every entry under the directory `root` (see [`super::write_tree`]).
    pub fn add_tree(&mut self, root: &std::path::Path, xattrs: XattrPolicy) -> Result<()> {
        super::walk::write_tree(&mut self.tar, root, xattrs)
    }

    /// Finishes the tar and the compression and commits the blob.
    pub fn finish(self) -> Result<LayerInfo> {
        let entries = self.tar.entries();
        let (buffered, diff_id, uncompressed_size) = self.tar.finish()?;
        let fail = |e: io::Error| Error::BadEntry {
            path: "(end of layer)".into(),
            reason: format!("cannot finish the layer: {e}"),
        };
        let comp = buffered.into_inner().map_err(|e| fail(e.into_error()))?;
        let blob = comp.finish().map_err(fail)?;
        let info = blob.commit()?;
        Ok(LayerInfo {
            descriptor: info.descriptor(oci_layer_type(self.compression)),
            diff_id,
            uncompressed_size,
            entries,
        })
    }
}
