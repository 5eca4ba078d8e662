//! ADD's archive handling: recognising a local tar (plain, gzip, bzip2, xz or zstd) by its
//! magic bytes as Docker does, and extracting it into a directory with the store's safe
//! unpacker (nothing lands outside the destination). Decides nothing about where.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use oxkit_store::unpack::{DeviceMode, UnpackOptions, apply_layer};

use crate::error::{StepError, io_step};

/// A compression ADD recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// What `path` is, judged by its first bytes; `None` when it is not an archive ADD extracts.
pub(crate) fn detect(path: &Path) -> Result<Option<Kind>, StepError> {
    let mut f = File::open(path).map_err(io_step("read", path))?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_step("read", path)(e)),
        }
    }
    let h = &head[..n];
    Ok(if h.starts_with(&[0x1f, 0x8b]) {
        Some(Kind::Gzip)
    } else if h.starts_with(b"BZh") {
        Some(Kind::Bzip2)
    } else if h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(Kind::Xz)
    } else if h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Kind::Zstd)
    } else if n >= 262 && (&h[257..262] == b"ustar") {
        Some(Kind::Tar)
    } else {
        None
    })
}

/// Extracts the archive at `path` (of `kind`) into `dest`, keeping the archive's owners when
/// running as root. Returns the number of entries.
pub(crate) fn extract(path: &Path, kind: Kind, dest: &Path) -> Result<u64, StepError> {
    let reader = open(path, kind)?;
    let opts = UnpackOptions {
        devices: DeviceMode::Skip,
        ..UnpackOptions::default()
    };
    let stats = apply_layer(reader, dest, &path.display().to_string(), &opts)
        .map_err(|e| StepError::new(format!("cannot extract {}: {e}", path.display())))?;
    apply_root_entry(path, kind, dest)?;
    Ok(stats.entries)
}

fn open(path: &Path, kind: Kind) -> Result<Box<dyn Read>, StepError> {
    let file = BufReader::new(File::open(path).map_err(io_step("read", path))?);
    Ok(match kind {
        // The unpacker recognises gzip and zstd itself.
        Kind::Tar | Kind::Gzip | Kind::Zstd => Box::new(file),
        Kind::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(file)),
        Kind::Xz => Box::new(XzReader::new(file)),
    })
}

/// A `./` entry in the archive describes the destination directory itself: Docker gives the
/// directory its mode and owner.
fn apply_root_entry(path: &Path, kind: Kind, dest: &Path) -> Result<(), StepError> {
    let reader = oxkit_store::unpack::decompress(open(path, kind)?)
        .map_err(|e| StepError::new(format!("cannot read {}: {e}", path.display())))?;
    let mut archive = tar::Archive::new(reader);
    let Ok(mut entries) = archive.entries() else {
        return Ok(());
    };
    let Some(Ok(first)) = entries.next() else {
        return Ok(());
    };
    let name = first.path_bytes().into_owned();
    let is_root = !name.is_empty()
        && name.iter().all(|b| matches!(b, b'.' | b'/'))
        && !name.windows(2).any(|w| w == b"..");
    if !is_root || first.header().entry_type() != tar::EntryType::Directory {
        return Ok(());
    }
    let h = first.header();
    if let Ok(mode) = h.mode() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(io_step("set permissions of", dest))?;
    }
    if let (Ok(uid), Ok(gid)) = (h.uid(), h.gid())
        && crate::fsutil::is_root()
    {
        let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
            return Ok(());
        };
        crate::fsutil::chown(dest, uid, gid)?;
    }
    Ok(())
}

/// xz decompression as a `Read` (lzma-rs decodes into a writer; a thread pipes it).
struct XzReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl XzReader {
    fn new<R: Read + Send + 'static>(input: R) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        std::thread::spawn(move || {
            struct Chunks(std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>);
            impl io::Write for Chunks {
                fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                    self.0
                        .send(Ok(b.to_vec()))
                        .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "reader gone"))?;
                    Ok(b.len())
                }
                fn flush(&mut self) -> io::Result<()> {
                    Ok(())
                }
            }
            let mut input = BufReader::new(input);
            let mut out = io::BufWriter::with_capacity(256 * 1024, Chunks(tx.clone()));
            let r = lzma_rs::xz_decompress(&mut input, &mut out)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("xz: {e}")))
                .and_then(|()| io::Write::flush(&mut out));
            if let Err(e) = r {
                let _ = tx.send(Err(e));
            }
        });
        Self {
            rx,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for XzReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_bytes() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(5);
        h.set_mode(0o640);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "dir/hello.txt", &b"hello"[..])
            .unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn every_compression_is_recognised_and_extracted() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = tar_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(&plain).unwrap();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &plain[..], &mut xz).unwrap();
        let zst = zstd::encode_all(&plain[..], 3).unwrap();
        for (name, bytes, kind) in [
            ("a.tar", plain.clone(), Kind::Tar),
            ("a.tgz", gz.finish().unwrap(), Kind::Gzip),
            ("a.tbz", bz.finish().unwrap(), Kind::Bzip2),
            ("a.txz", xz, Kind::Xz),
            ("a.tzst", zst, Kind::Zstd),
        ] {
            let p = tmp.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            assert_eq!(detect(&p).unwrap(), Some(kind), "{name}");
            let dest = tmp.path().join(format!("out-{name}"));
            extract(&p, kind, &dest).unwrap();
            assert_eq!(
                std::fs::read(dest.join("dir/hello.txt")).unwrap(),
                b"hello",
                "{name}"
            );
        }
        let p = tmp.path().join("text");
        std::fs::write(&p, "just text").unwrap();
        assert_eq!(detect(&p).unwrap(), None);
    }
}
