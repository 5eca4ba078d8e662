//! A streaming writer for the `newc` cpio format (what the kernel unpacks as an initramfs and
//! GNU `cpio -H newc` reads and writes).
//!
//! Deterministic by construction: inode numbers are handed out in write order starting at 1
//! (hard links share one), the archive's own device numbers are 0, mtimes are clamped to the
//! epoch the caller gives, and the archive ends with `TRAILER!!!` padded to a 512-byte block as
//! GNU cpio pads it. Hard links follow GNU cpio's convention: every name of the group carries
//! the same inode and link count, and only the last one carries the data (the kernel and GNU
//! cpio both rebuild the group from that).
//!
//! This module only encodes: it never reads the file system, and it refuses what newc cannot
//! hold (files of 4 GiB or more, ids above 2^32-1) instead of truncating.

use std::io::{self, Read, Write};

use crate::imagefs::{S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG};

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &[u8] = b"TRAILER!!!";
const COPY_BUF: usize = 256 * 1024;

/// Ownership, permission bits (setuid/setgid/sticky included) and time of one cpio entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CpioMeta {
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) mtime: i64,
}

/// What went wrong writing an entry (the caller adds the output file's name).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CpioError {
    #[error("{name}: {reason}")]
    Unrepresentable { name: String, reason: String },
    #[error(
        "{name}: the content ended after {got} of {want} bytes (did it change while being read?)"
    )]
    Short { name: String, got: u64, want: u64 },
    #[error("{name}: the content is longer than {want} bytes (did it change while being read?)")]
    Long { name: String, want: u64 },
    #[error("{name}: cannot read the content: {source}")]
    Read { name: String, source: io::Error },
    #[error("cannot write the archive: {0}")]
    Write(#[source] io::Error),
}

/// Writes newc entries to `W`.
pub(crate) struct CpioWriter<W: Write> {
    out: W,
    epoch: i64,
    next_ino: u32,
    written: u64,
    buf: Vec<u8>,
}

fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl<W: Write> CpioWriter<W> {
    /// A writer whose entries' mtimes are clamped to `epoch` (negative means 0).
    pub(crate) fn new(out: W, epoch: i64) -> Self {
        Self {
            out,
            epoch: epoch.max(0),
            next_ino: 1,
            written: 0,
            buf: Vec::new(),
        }
    }

    fn ino(&mut self) -> u32 {
        let i = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1).max(1);
        i
    }

    pub(crate) fn dir(&mut self, name: &[u8], meta: &CpioMeta) -> Result<(), CpioError> {
        let ino = self.ino();
        self.header(name, ino, S_IFDIR, meta, 2, 0, (0, 0))?;
        Ok(())
    }

    pub(crate) fn symlink(
        &mut self,
        name: &[u8],
        target: &[u8],
        meta: &CpioMeta,
    ) -> Result<(), CpioError> {
        if target.is_empty() || target.contains(&0) {
            return Err(CpioError::Unrepresentable {
                name: shown(name),
                reason: "a symlink target must be non-empty and without NUL bytes".into(),
            });
        }
        let ino = self.ino();
        let size = self.size32(name, target.len() as u64)?;
        self.header(name, ino, S_IFLNK, meta, 1, size, (0, 0))?;
        self.put(target)?;
        self.pad(target.len() as u64)
    }

    pub(crate) fn device(
        &mut self,
        name: &[u8],
        block: bool,
        (major, minor): (u32, u32),
        meta: &CpioMeta,
    ) -> Result<(), CpioError> {
        let ino = self.ino();
        let kind = if block { S_IFBLK } else { S_IFCHR };
        self.header(name, ino, kind, meta, 1, 0, (major, minor))
    }

    pub(crate) fn fifo(&mut self, name: &[u8], meta: &CpioMeta) -> Result<(), CpioError> {
        let ino = self.ino();
        self.header(name, ino, S_IFIFO, meta, 1, 0, (0, 0))
    }

    /// A regular file under one or more names (a hard-link group, names in the order to
    /// write them); `data` must yield exactly `size` bytes.
    pub(crate) fn file(
        &mut self,
        names: &[&[u8]],
        meta: &CpioMeta,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), CpioError> {
        let Some((last, first)) = names.split_last() else {
            return Ok(());
        };
        let size32 = self.size32(last, size)?;
        let nlink = u32::try_from(names.len()).map_err(|_| CpioError::Unrepresentable {
            name: shown(last),
            reason: "too many hard links".into(),
        })?;
        let ino = self.ino();
        for name in first {
            self.header(name, ino, S_IFREG, meta, nlink, 0, (0, 0))?;
        }
        self.header(last, ino, S_IFREG, meta, nlink, size32, (0, 0))?;
        self.copy_exact(last, data, size)?;
        self.pad(size)
    }

    /// Writes the trailer and pads the archive to a 512-byte block; returns the output.
    pub(crate) fn finish(mut self) -> Result<W, CpioError> {
        let meta = CpioMeta::default();
        self.header_raw(TRAILER, 0, 0, &meta, 1, 0, (0, 0))?;
        let rem = self.written % 512;
        if rem != 0 {
            let zeros = [0u8; 512];
            self.put(&zeros[..(512 - rem) as usize])?;
        }
        self.out.flush().map_err(CpioError::Write)?;
        Ok(self.out)
    }

    fn size32(&self, name: &[u8], size: u64) -> Result<u32, CpioError> {
        u32::try_from(size).map_err(|_| CpioError::Unrepresentable {
            name: shown(name),
            reason: format!("{size} bytes: newc cpio cannot hold files of 4 GiB or more"),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn header(
        &mut self,
        name: &[u8],
        ino: u32,
        kind: u16,
        meta: &CpioMeta,
        nlink: u32,
        size: u32,
        rdev: (u32, u32),
    ) -> Result<(), CpioError> {
        if name.is_empty() || name.contains(&0) || name == TRAILER {
            return Err(CpioError::Unrepresentable {
                name: shown(name),
                reason: "not a usable cpio name".into(),
            });
        }
        self.header_raw(
            name,
            ino,
            u32::from(kind) | (meta.mode & 0o7777),
            meta,
            nlink,
            size,
            rdev,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn header_raw(
        &mut self,
        name: &[u8],
        ino: u32,
        mode: u32,
        meta: &CpioMeta,
        nlink: u32,
        size: u32,
        (rmajor, rminor): (u32, u32),
    ) -> Result<(), CpioError> {
        let id = |v: u64, what: &str| {
            u32::try_from(v).map_err(|_| CpioError::Unrepresentable {
                name: shown(name),
                reason: format!("{what} {v} does not fit in newc's 32 bits"),
            })
        };
        let uid = id(meta.uid, "uid")?;
        let gid = id(meta.gid, "gid")?;
        let mtime = u32::try_from(meta.mtime.clamp(0, self.epoch)).unwrap_or(u32::MAX);
        let namesize = u32::try_from(name.len() + 1).map_err(|_| CpioError::Unrepresentable {
            name: shown(name),
            reason: "the name is too long".into(),
        })?;
        let mut h = Vec::with_capacity(110 + name.len() + 4);
        h.extend_from_slice(MAGIC);
        for field in [
            ino, mode, uid, gid, nlink, mtime, size, 0, 0, rmajor, rminor, namesize, 0,
        ] {
            h.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        h.extend_from_slice(name);
        h.push(0);
        while h.len() % 4 != 0 {
            h.push(0);
        }
        self.put(&h)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), CpioError> {
        self.out.write_all(bytes).map_err(CpioError::Write)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, len: u64) -> Result<(), CpioError> {
        let rem = (len % 4) as usize;
        if rem != 0 {
            self.put(&[0u8; 4][..4 - rem])?;
        }
        Ok(())
    }

    fn copy_exact(&mut self, name: &[u8], data: &mut dyn Read, size: u64) -> Result<(), CpioError> {
        if self.buf.is_empty() {
            self.buf = vec![0u8; COPY_BUF];
        }
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left.min(self.buf.len() as u64)).unwrap_or(COPY_BUF);
            let n = match data.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(CpioError::Short {
                        name: shown(name),
                        got: size - left,
                        want: size,
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(CpioError::Read {
                        name: shown(name),
                        source,
                    });
                }
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(CpioError::Write)?;
            self.written += n as u64;
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        loop {
            match data.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(CpioError::Long {
                        name: shown(name),
                        want: size,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CpioError::Read {
                        name: shown(name),
                        source,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
