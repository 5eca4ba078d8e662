//! The file system as LinuxKit's `kernel+initrd` and `kernel+squashfs` split it: `boot/kernel`
//! and `boot/cmdline` kept aside for their own files, the microcode `boot/ucode.cpio` too when
//! there is somewhere to put it (in front of the initrd), and everything else but what is under
//! `boot/` (the directory itself stays) written to a root file system image: the initrd's
//! newc cpio, a SquashFS image or an EROFS image.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use oxkit_store::layer::EntryMeta;

use crate::cpio::{CpioError, CpioMeta, CpioWriter};
use crate::emit::Sink;
use crate::error::{Error, Result};
use crate::imagefs::{ImageError, ImageWriter};

/// A root file system image being written: what [`BootSplit`] passes on.
pub(crate) trait RootWriter {
    type Error: std::fmt::Display;
    fn dir(&mut self, path: &[u8], meta: &EntryMeta) -> Result<(), Self::Error>;
    fn symlink(&mut self, path: &[u8], target: &[u8], meta: &EntryMeta) -> Result<(), Self::Error>;
    fn device(
        &mut self,
        path: &[u8],
        block: bool,
        dev: (u32, u32),
        meta: &EntryMeta,
    ) -> Result<(), Self::Error>;
    fn fifo(&mut self, path: &[u8], meta: &EntryMeta) -> Result<(), Self::Error>;
    /// A regular file under `names` (hard links when more than one).
    fn file(
        &mut self,
        names: &[&[u8]],
        meta: &EntryMeta,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), Self::Error>;
}

fn cpio_meta(m: &EntryMeta) -> CpioMeta {
    CpioMeta {
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        mtime: m.mtime,
    }
}

impl<W: Write> RootWriter for CpioWriter<W> {
    type Error = CpioError;
    fn dir(&mut self, path: &[u8], meta: &EntryMeta) -> Result<(), CpioError> {
        CpioWriter::dir(self, path, &cpio_meta(meta))
    }
    fn symlink(&mut self, path: &[u8], target: &[u8], meta: &EntryMeta) -> Result<(), CpioError> {
        CpioWriter::symlink(self, path, target, &cpio_meta(meta))
    }
    fn device(
        &mut self,
        path: &[u8],
        block: bool,
        dev: (u32, u32),
        meta: &EntryMeta,
    ) -> Result<(), CpioError> {
        CpioWriter::device(self, path, block, dev, &cpio_meta(meta))
    }
    fn fifo(&mut self, path: &[u8], meta: &EntryMeta) -> Result<(), CpioError> {
        CpioWriter::fifo(self, path, &cpio_meta(meta))
    }
    fn file(
        &mut self,
        names: &[&[u8]],
        meta: &EntryMeta,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), CpioError> {
        CpioWriter::file(self, names, &cpio_meta(meta), size, data)
    }
}

/// A root file system image in a file (`kernel+squashfs`'s, `kernel+erofs`'s): made with the
/// root directory's metadata, written through [`RootWriter`], finished into its output.
pub(crate) trait RootImage: RootWriter + Sized {
    fn create(out: BufWriter<File>, epoch: i64, root: &EntryMeta) -> Result<Self, Self::Error>;
    /// Writes what is left (tables, superblock) and gives the output back.
    fn finish_image(self) -> Result<BufWriter<File>, Self::Error>;
}

impl<T: ImageWriter<BufWriter<File>>> RootImage for T {
    fn create(out: BufWriter<File>, epoch: i64, root: &EntryMeta) -> Result<Self, ImageError> {
        let mut w = T::new(out, epoch)?;
        w.root(root)?;
        Ok(w)
    }
    /// The file ends where the image does: a writer may have written past that and then
    /// gone back (SquashFS drops the copy of data it stores already).
    fn finish_image(self) -> Result<BufWriter<File>, ImageError> {
        let mut out = self.finish()?;
        out.flush().map_err(ImageError::Write)?;
        let end = out.stream_position().map_err(ImageError::Write)?;
        out.get_ref().set_len(end).map_err(ImageError::Write)?;
        Ok(out)
    }
}

/// `boot/ucode.cpio`, written uncompressed at the start of the initrd, in the `len` bytes its
/// compressed cpio leaves free there.
pub(crate) struct Ucode {
    pub(crate) head: File,
    pub(crate) len: u64,
    written: Option<u64>,
}

impl Ucode {
    pub(crate) fn new(head: File, len: u64) -> Self {
        Self {
            head,
            len,
            written: None,
        }
    }
}

/// What was kept aside from `boot/`.
pub(crate) struct BootFiles {
    /// Where `boot/kernel` was copied (`None`: nowhere, another output writes it), and how
    /// many bytes it has (0: there is no kernel).
    pub(crate) kernel: Option<File>,
    pub(crate) kernel_len: u64,
    pub(crate) cmdline: Vec<u8>,
}

/// A [`Sink`] that splits the file system as the module says; errors name `path`, the root
/// image's file.
pub(crate) struct BootSplit<R> {
    root: R,
    boot: BootFiles,
    ucode: Option<Ucode>,
    path: PathBuf,
}

fn in_boot(p: &[u8]) -> bool {
    p.starts_with(b"boot/")
}

impl<R: RootWriter> BootSplit<R> {
    /// `boot/kernel` goes to `kernel` and `boot/ucode.cpio` to `ucode` when given, else
    /// nowhere.
    pub(crate) fn new(root: R, kernel: Option<File>, ucode: Option<Ucode>, path: &Path) -> Self {
        Self {
            root,
            boot: BootFiles {
                kernel,
                kernel_len: 0,
                cmdline: Vec::new(),
            },
            ucode,
            path: path.to_path_buf(),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::output(&self.path, e)
    }

    /// The root image's writer, to finish it, and the files kept aside (the kernel synced);
    /// an error when the microcode announced was not written whole.
    pub(crate) fn finish(self) -> Result<(R, BootFiles)> {
        if let Some(u) = &self.ucode
            && u.written.unwrap_or(0) != u.len
        {
            return Err(self.err("boot/ucode.cpio was not written completely"));
        }
        if let Some(k) = &self.boot.kernel {
            k.sync_all().map_err(|e| Error::output(&self.path, e))?;
        }
        Ok((self.root, self.boot))
    }

    /// Copies `data` (`size` bytes) in front of the initrd.
    fn write_ucode(&mut self, size: u64, data: &mut dyn Read) -> Result<()> {
        let Some(u) = &mut self.ucode else {
            return Ok(());
        };
        if size != u.len {
            return Err(Error::output(
                &self.path,
                "boot/ucode.cpio changed size during the build",
            ));
        }
        let mut buf = vec![0u8; 256 * 1024];
        let mut at = 0u64;
        loop {
            let n = data
                .read(&mut buf)
                .map_err(|e| Error::output(&self.path, e))?;
            if n == 0 {
                break;
            }
            if at + n as u64 > u.len {
                return Err(Error::output(
                    &self.path,
                    "boot/ucode.cpio is longer than announced",
                ));
            }
            u.head
                .write_all_at(&buf[..n], at)
                .map_err(|e| Error::output(&self.path, e))?;
            at += n as u64;
        }
        u.written = Some(at);
        Ok(())
    }
}

impl<R: RootWriter> Sink for BootSplit<R> {
    fn dir(&mut self, path: &[u8], meta: &EntryMeta) -> Result<()> {
        if in_boot(path) {
            return Ok(());
        }
        self.root.dir(path, meta).map_err(|e| self.err(e))
    }

    fn symlink(&mut self, path: &[u8], target: &[u8], meta: &EntryMeta) -> Result<()> {
        if in_boot(path) {
            return Ok(());
        }
        self.root
            .symlink(path, target, meta)
            .map_err(|e| self.err(e))
    }

    fn device(
        &mut self,
        path: &[u8],
        block: bool,
        dev: (u32, u32),
        meta: &EntryMeta,
    ) -> Result<()> {
        if in_boot(path) {
            return Ok(());
        }
        self.root
            .device(path, block, dev, meta)
            .map_err(|e| self.err(e))
    }

    fn fifo(&mut self, path: &[u8], meta: &EntryMeta) -> Result<()> {
        if in_boot(path) {
            return Ok(());
        }
        self.root.fifo(path, meta).map_err(|e| self.err(e))
    }

    fn file(
        &mut self,
        paths: &[&[u8]],
        meta: &EntryMeta,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<()> {
        match paths {
            [b"boot/kernel"] => {
                self.boot.kernel_len = match &mut self.boot.kernel {
                    Some(k) => io::copy(data, k).map_err(|e| self.err(e))?,
                    None => size,
                };
                return Ok(());
            }
            [b"boot/cmdline"] => {
                self.boot.cmdline.clear();
                data.read_to_end(&mut self.boot.cmdline)
                    .map_err(|e| self.err(e))?;
                return Ok(());
            }
            [b"boot/ucode.cpio"] => return self.write_ucode(size, data),
            _ => {}
        }
        let names: Vec<&[u8]> = paths.iter().copied().filter(|p| !in_boot(p)).collect();
        if names.is_empty() {
            return Ok(());
        }
        self.root
            .file(&names, meta, size, data)
            .map_err(|e| self.err(e))
    }
}
