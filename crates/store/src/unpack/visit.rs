//! Reading layers entry by entry without extracting them: compression is detected from the
//! first bytes (gzip, zstd or plain tar), tar entries become [`Entry`]s with normalised
//! paths, whiteouts and opaque markers are recognised, PAX xattrs and times are applied.
//!
//! Names with `..` components are refused here, so no consumer ever sees one. The root
//! entry (`./`) is skipped: a layer does not own the directory it is applied to.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;

use super::super::layer::{Entry, EntryKind, EntryMeta, classify_whiteout, normalize_path};
use crate::error::{Error, Result};
use crate::oci::media_type::LayerCompression;

/// Which decompressor `first_bytes` call for.
pub fn detect_compression(first_bytes: &[u8]) -> LayerCompression {
    if first_bytes.starts_with(&[0x1f, 0x8b]) {
        LayerCompression::Gzip
    } else if first_bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        LayerCompression::Zstd
    } else {
        LayerCompression::None
    }
}

/// Wraps `reader` in the decompressor its first bytes call for.
pub fn decompress<'r, R: Read + 'r>(reader: R) -> io::Result<Box<dyn Read + 'r>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let kind = detect_compression(buffered.fill_buf()?);
    Ok(match kind {
        LayerCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        LayerCompression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        LayerCompression::None => Box::new(buffered),
    })
}

/// Calls `f` for every entry of the layer (compressed or not) read from `reader`, in
/// order, with the entry's content (empty for everything but regular files). `layer`
/// names the layer in errors (its digest, or a file name).
pub fn visit_layer<R, F>(reader: R, layer: &str, mut f: F) -> Result<()>
where
    R: Read,
    F: FnMut(&Entry, &mut dyn Read) -> Result<()>,
{
    let tar_err = |e: io::Error| Error::Tar {
        what: format!("layer {layer}"),
        error: e,
    };
    let input = decompress(reader).map_err(tar_err)?;
    let mut archive = tar::Archive::new(input);
    let entries = archive.entries().map_err(tar_err)?;
    for item in entries {
        let mut te = item.map_err(tar_err)?;
        let raw_path = te.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let fail = |reason: String| Error::Layer {
            layer: layer.to_string(),
            entry: shown.clone(),
            reason,
        };
        let Some(entry) = to_entry(&mut te, &raw_path).map_err(fail)? else {
            continue;
        };
        let size = entry_data_size(&entry);
        let mut data = CountingReader {
            inner: &mut te,
            left: size,
        };
        f(&entry, &mut data)?;
        // Whatever the callback did not read is skipped by the tar reader itself; a
        // truncated stream surfaces as an error on the next entry.
    }
    Ok(())
}

fn entry_data_size(e: &Entry) -> u64 {
    match e.kind {
        EntryKind::File { size } => size,
        _ => 0,
    }
}

/// Limits a file's reader to its size and reports a short read as an error (a truncated
/// layer must not look like a shorter file).
struct CountingReader<'a, R: Read> {
    inner: &'a mut R,
    left: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the layer ends {} bytes before this file does (truncated?)",
                    self.left
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Converts a tar entry; `Ok(None)` for entries that carry nothing for a file system
/// (the root, volume labels, unknown types).
pub(crate) fn to_entry<R: Read>(
    te: &mut tar::Entry<'_, R>,
    raw_path: &[u8],
) -> std::result::Result<Option<Entry>, String> {
    let path = normalize_path(raw_path).map_err(|e| format!("refused: {}", e.0))?;
    let header = te.header().clone();
    let mut meta = EntryMeta {
        mode: header.mode().map_err(|e| e.to_string())? & 0o7777,
        uid: header.uid().map_err(|e| e.to_string())?,
        gid: header.gid().map_err(|e| e.to_string())?,
        mtime: i64::try_from(header.mtime().map_err(|e| e.to_string())?).unwrap_or(i64::MAX),
        xattrs: BTreeMap::new(),
    };
    if let Some(pax) = te.pax_extensions().map_err(|e| e.to_string())? {
        for rec in pax {
            let rec = rec.map_err(|e| e.to_string())?;
            let Ok(key) = rec.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                meta.xattrs
                    .insert(name.to_string(), rec.value_bytes().to_vec());
            } else if key == "mtime"
                && let Some(secs) = rec
                    .value()
                    .ok()
                    .and_then(|v| v.split('.').next())
                    .and_then(|v| v.parse::<i64>().ok())
            {
                meta.mtime = secs;
            }
        }
    }
    use tar::EntryType as T;
    let et = header.entry_type();
    let kind = match et {
        T::Regular | T::Continuous | T::GNUSparse => EntryKind::File { size: te.size() },
        T::Directory => EntryKind::Dir,
        T::Symlink => {
            let target = te.link_name_bytes().ok_or("a symlink without a target")?;
            if target.is_empty() {
                return Err("a symlink with an empty target".into());
            }
            EntryKind::Symlink {
                target: std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&target)),
            }
        }
        T::Link => {
            let target = te.link_name_bytes().ok_or("a hard link without a target")?;
            let target = normalize_path(&target)
                .map_err(|e| format!("refused hard link target: {}", e.0))?;
            if target.as_os_str().is_empty() {
                return Err("refused: a hard link to the root directory".into());
            }
            EntryKind::Hardlink { target }
        }
        T::Char | T::Block => {
            let major = header
                .device_major()
                .map_err(|e| e.to_string())?
                .unwrap_or(0);
            let minor = header
                .device_minor()
                .map_err(|e| e.to_string())?
                .unwrap_or(0);
            if et == T::Char {
                EntryKind::CharDevice { major, minor }
            } else {
                EntryKind::BlockDevice { major, minor }
            }
        }
        T::Fifo => EntryKind::Fifo,
        _ => return Ok(None),
    };
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    if matches!(kind, EntryKind::File { .. })
        && let Some((target, wkind)) =
            classify_whiteout(&path).map_err(|e| format!("refused: {}", e.0))?
    {
        return Ok(Some(Entry {
            path: target,
            kind: wkind,
            meta,
        }));
    }
    Ok(Some(Entry { path, kind, meta }))
}
