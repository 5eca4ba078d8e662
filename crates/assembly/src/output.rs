//! Output formats and files, with LinuxKit's names and command-line rules:
//!
//! - `tar`: the whole file system as one tar (`NAME.tar`, or `-o FILE`/`-o -`);
//! - `kernel+initrd`: `NAME-kernel`, `NAME-initrd.img` (a gzip'd newc cpio of everything
//!   except what is under `boot/`, preceded by the uncompressed `boot/ucode.cpio` when there
//!   is one) and `NAME-cmdline`; like LinuxKit, the kernel and cmdline files are only written
//!   when not empty;
//! - `tar-kernel-initrd`: `NAME-initrd.tar` holding `kernel`, `initrd.img` (without the
//!   microcode), `cmdline` and `ucode.cpio`;
//! - `kernel+squashfs`: `NAME-kernel`, `NAME-squashfs.img` (everything the initrd holds, as a
//!   SquashFS image, see [`crate::squashfs`]) and `NAME-cmdline`, for a kernel that mounts the
//!   image as its root file system; `kernel+erofs`: the same with `NAME-erofs.img`, an EROFS
//!   image (see [`crate::erofs`]); `kernel+iso`: the same with `NAME.iso`, an ISO 9660 image
//!   with Rock Ridge and Joliet, as LinuxKit's `genisoimage -R -J` makes it (see
//!   [`crate::rockridge`]);
//! - `raw-efi`: `NAME-efi.img`, a GPT disk whose EFI system partition holds one unified kernel
//!   image (systemd's EFI stub with the kernel, the initrd above and the command line, see
//!   [`crate::uki`]) at the removable-media path `EFI/BOOT/BOOTX64.EFI` (`BOOTAA64.EFI` for
//!   arm64), so UEFI firmware boots it with no boot loader and no configuration. LinuxKit's
//!   `raw-efi` boots the same kernel, initrd and command line through GRUB;
//! - `iso-efi`: `NAME-efi.iso`, an ISO 9660 image whose El Torito catalog boots, on UEFI, a FAT
//!   image holding the same unified kernel image (see [`crate::iso`]); `iso-efi-initrd`:
//!   `NAME-efi-initrd.iso`, the same ISO under the name LinuxKit gives its ISO that boots a
//!   kernel and initrd (its `iso-efi` puts the root file system on the CD instead);
//! - `qcow2-efi`: `NAME-efi.qcow2`, the `raw-efi` disk as a qcow2 image (see [`crate::qcow2`]):
//!   only its clusters that hold data are stored;
//! - `iso-bios`: `NAME.iso`, an ISO 9660 image whose El Torito catalog boots ISOLINUX on a PC
//!   BIOS, which loads `kernel` and `initrd.img` (the initrd above) from the ISO with the
//!   command line (see [`crate::iso`]). It is hybrid, as LinuxKit's: its MBR boots the same
//!   from a disk (a USB stick, a VM's disk). amd64 only. LinuxKit's `iso-bios` has no initrd: its
//!   kernel mounts the CD, a Rock Ridge copy of the file system, as the root; oxkit's runs the
//!   same system from the initrd, as every other format does;
//! - `raw-bios`: `NAME-bios.img`, the `iso-bios` image as a disk (its MBR boots it), and
//!   `aws`: `NAME.raw`, the same, under the name LinuxKit gives its image for AWS's VM import;
//!   `qcow2-bios`: `NAME.qcow2`, the same as a qcow2 disk; `vhd`: `NAME.vhd`, the same as a
//!   fixed VHD (see [`crate::vhd`]), for Hyper-V and Azure, and `dynamic-vhd`, also
//!   `NAME.vhd`, as a dynamic VHD, which stores only the blocks that hold data; `vmdk`:
//!   `NAME.vmdk`, the same as a VMware sparse disk (see [`crate::vmdk`]); `gcp`:
//!   `NAME.img.tar.gz`, the archive Compute Engine imports (see [`crate::gcp`]). LinuxKit's
//!   put syslinux on an ext4 or FAT partition; a BIOS boots either the same way, and both are
//!   read-only systems.
//!
//! Every file is written to a temporary file in its own directory and renamed into place only
//! when all outputs of the build are complete: a failed build leaves nothing behind, and a
//! reader never sees half a file. Nothing is written outside the output directory.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use oxkit_store::Store;
use oxkit_store::layer::{Entry, EntryMeta, TarWriter};
use tempfile::NamedTempFile;

use crate::bootsplit::{BootFiles, BootSplit, RootImage, Ucode};
use crate::cpio::CpioWriter;
use crate::emit::{TarSink, emit};
use crate::erofs::ErofsWriter;
use crate::error::{Error, Result};
use crate::layout::Assembly;
use crate::rockridge::IsoRootWriter;
use crate::squashfs::SquashfsWriter;
use crate::tree::{Node, lookup};
use oxkit_store::layer::ParallelGzip;

/// The gzip level of the initrd (gzip's default, as `gzip -6` and LinuxKit's pgzip).
const GZIP_LEVEL: u32 = 6;

/// What the UEFI formats' files are called after `DIR/NAME`, as LinuxKit names them.
const RAW_EFI_SUFFIX: &str = "-efi.img";
const ISO_EFI_SUFFIX: &str = "-efi.iso";
const ISO_EFI_INITRD_SUFFIX: &str = "-efi-initrd.iso";
const QCOW2_EFI_SUFFIX: &str = "-efi.qcow2";
const ISO_BIOS_SUFFIX: &str = ".iso";
const RAW_BIOS_SUFFIX: &str = "-bios.img";
const QCOW2_BIOS_SUFFIX: &str = ".qcow2";
const VHD_SUFFIX: &str = ".vhd";
const AWS_SUFFIX: &str = ".raw";
const GCP_SUFFIX: &str = ".img.tar.gz";
const SQUASHFS_SUFFIX: &str = "-squashfs.img";
const EROFS_SUFFIX: &str = "-erofs.img";
const KERNEL_ISO_SUFFIX: &str = ".iso";
const VMDK_SUFFIX: &str = ".vmdk";

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    Tar,
    KernelInitrd,
    TarKernelInitrd,
    RawEfi,
    IsoEfi,
    Qcow2Efi,
    IsoBios,
    RawBios,
    Qcow2Bios,
    Vhd,
    Aws,
    Gcp,
    DynamicVhd,
    Vmdk,
    IsoEfiInitrd,
    KernelSquashfs,
    KernelErofs,
    KernelIso,
}

impl Format {
    pub const ALL: [&'static str; 18] = [
        "kernel+initrd",
        "tar",
        "tar-kernel-initrd",
        "raw-efi",
        "iso-efi",
        "qcow2-efi",
        "iso-bios",
        "raw-bios",
        "qcow2-bios",
        "vhd",
        "aws",
        "gcp",
        "dynamic-vhd",
        "vmdk",
        "iso-efi-initrd",
        "kernel+squashfs",
        "kernel+erofs",
        "kernel+iso",
    ];

    /// Whether the format is one stream (it can go to `-o`).
    pub fn streamable(self) -> bool {
        self == Format::Tar
    }

    /// Whether the format is booted by UEFI firmware (it holds a unified kernel image, made
    /// from an EFI stub).
    pub fn is_uefi(self) -> bool {
        matches!(
            self,
            Format::RawEfi | Format::IsoEfi | Format::Qcow2Efi | Format::IsoEfiInitrd
        )
    }

    /// Whether the format is booted by a PC BIOS (it holds the hybrid ISOLINUX image).
    pub fn is_bios(self) -> bool {
        matches!(
            self,
            Format::IsoBios
                | Format::RawBios
                | Format::Qcow2Bios
                | Format::Vhd
                | Format::Aws
                | Format::Gcp
                | Format::DynamicVhd
                | Format::Vmdk
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::KernelInitrd => "kernel+initrd",
            Format::TarKernelInitrd => "tar-kernel-initrd",
            Format::RawEfi => "raw-efi",
            Format::IsoEfi => "iso-efi",
            Format::Qcow2Efi => "qcow2-efi",
            Format::IsoBios => "iso-bios",
            Format::RawBios => "raw-bios",
            Format::Qcow2Bios => "qcow2-bios",
            Format::Vhd => "vhd",
            Format::Aws => "aws",
            Format::Gcp => "gcp",
            Format::DynamicVhd => "dynamic-vhd",
            Format::Vmdk => "vmdk",
            Format::IsoEfiInitrd => "iso-efi-initrd",
            Format::KernelSquashfs => "kernel+squashfs",
            Format::KernelErofs => "kernel+erofs",
            Format::KernelIso => "kernel+iso",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tar" => Ok(Format::Tar),
            "kernel+initrd" => Ok(Format::KernelInitrd),
            "tar-kernel-initrd" => Ok(Format::TarKernelInitrd),
            "raw-efi" => Ok(Format::RawEfi),
            "iso-efi" => Ok(Format::IsoEfi),
            "qcow2-efi" => Ok(Format::Qcow2Efi),
            "iso-bios" => Ok(Format::IsoBios),
            "raw-bios" => Ok(Format::RawBios),
            "qcow2-bios" => Ok(Format::Qcow2Bios),
            "vhd" => Ok(Format::Vhd),
            "aws" => Ok(Format::Aws),
            "gcp" => Ok(Format::Gcp),
            "dynamic-vhd" => Ok(Format::DynamicVhd),
            "vmdk" => Ok(Format::Vmdk),
            "iso-efi-initrd" => Ok(Format::IsoEfiInitrd),
            "kernel+squashfs" => Ok(Format::KernelSquashfs),
            "kernel+erofs" => Ok(Format::KernelErofs),
            "kernel+iso" => Ok(Format::KernelIso),
            other => Err(format!(
                "unknown format {other:?}; oxkit builds {} (LinuxKit's other BIOS, disk and cloud formats are not)",
                Format::ALL.join(", ")
            )),
        }
    }
}

/// Where the tar format goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TarDestination {
    Stdout,
    File(PathBuf),
}

/// What to write where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputPlan {
    pub formats: Vec<Format>,
    /// `DIR/NAME`: the prefix of the non-streamed outputs.
    pub base: PathBuf,
    /// The tar output, when `tar` is the format.
    pub tar: Option<TarDestination>,
    /// systemd's EFI stub, for the UEFI formats (see [`default_efi_stub`]).
    pub efi_stub: Option<PathBuf>,
    /// ISOLINUX's files, for `iso-bios` (see [`Isolinux::find`]).
    pub isolinux: Option<Isolinux>,
}

/// ISOLINUX's files `iso-bios` needs: the boot program, the library it loads first, and the
/// MBR boot code that starts the boot program from a disk (the image is hybrid, as LinuxKit's
/// `isohybrid` makes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Isolinux {
    pub isolinux_bin: PathBuf,
    pub ldlinux_c32: PathBuf,
    pub isohdpfx_bin: PathBuf,
}

/// ISOLINUX's files, read.
struct IsolinuxFiles {
    bin: Vec<u8>,
    ldlinux: Vec<u8>,
    mbr_code: Vec<u8>,
}

/// Where Debian's `isolinux` and `syslinux-common` packages put them.
const DEBIAN_ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
const DEBIAN_LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
const DEBIAN_ISOHDPFX_BIN: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
/// Where Alpine's and Fedora's `syslinux` packages put both.
const SHARED_SYSLINUX_DIR: &str = "/usr/share/syslinux";

impl Isolinux {
    /// Both files in `dir` (`--syslinux DIR`), else, without one, Debian's (`isolinux`,
    /// `syslinux-common`) or those in `/usr/share/syslinux`; Debian's when neither is there,
    /// so that errors name what to install.
    pub fn find(dir: Option<&Path>) -> Self {
        let in_dir = |d: &Path| Isolinux {
            isolinux_bin: d.join("isolinux.bin"),
            ldlinux_c32: d.join("ldlinux.c32"),
            isohdpfx_bin: d.join("isohdpfx.bin"),
        };
        match dir {
            Some(d) => in_dir(d),
            None if !Path::new(DEBIAN_ISOLINUX_BIN).is_file()
                && Path::new(SHARED_SYSLINUX_DIR)
                    .join("isolinux.bin")
                    .is_file() =>
            {
                in_dir(Path::new(SHARED_SYSLINUX_DIR))
            }
            None => Isolinux {
                isolinux_bin: DEBIAN_ISOLINUX_BIN.into(),
                ldlinux_c32: DEBIAN_LDLINUX_C32.into(),
                isohdpfx_bin: DEBIAN_ISOHDPFX_BIN.into(),
            },
        }
    }

    /// The files, in the order their contents go into the image's inputs digest.
    pub fn files(&self) -> [&Path; 3] {
        [&self.isolinux_bin, &self.ldlinux_c32, &self.isohdpfx_bin]
    }

    /// The files' contents, read; errors name the file and what to install.
    fn read(&self) -> std::result::Result<IsolinuxFiles, String> {
        const GET_THEM: &str =
            "install isolinux and syslinux-common (Debian, Ubuntu) or pass --syslinux DIR";
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| {
                format!(
                    "iso-bios needs ISOLINUX: cannot read {}: {e}; {GET_THEM}",
                    p.display()
                )
            })
        };
        let bin = read(&self.isolinux_bin)?;
        if bin.len() < 64 {
            return Err(format!(
                "{} is {} bytes: not ISOLINUX's boot program; {GET_THEM}",
                self.isolinux_bin.display(),
                bin.len()
            ));
        }
        Ok(IsolinuxFiles {
            bin,
            ldlinux: read(&self.ldlinux_c32)?,
            mbr_code: read(&self.isohdpfx_bin)?,
        })
    }
}

/// Where Debian's `systemd-boot-efi` package puts the EFI stub for `arch` (`amd64`, `arm64`).
pub fn default_efi_stub(arch: &str) -> Option<PathBuf> {
    let name = match arch {
        "amd64" => "linuxx64.efi.stub",
        "arm64" => "linuxaa64.efi.stub",
        _ => return None,
    };
    Some(Path::new("/usr/lib/systemd/boot/efi").join(name))
}

impl OutputPlan {
    /// LinuxKit's rules. `formats` may hold comma-separated lists; `last_config` is the last
    /// YAML file given (its stem is the default name, `-` meaning standard input: `moby`).
    pub fn new(
        formats: &[String],
        name: Option<&str>,
        dir: Option<&Path>,
        output: Option<&str>,
        last_config: &str,
    ) -> std::result::Result<Self, String> {
        let mut fs: Vec<Format> = Vec::new();
        for f in formats.iter().flat_map(|f| f.split(',')) {
            let f: Format = f.parse()?;
            if !fs.contains(&f) {
                fs.push(f);
            }
        }
        if fs.is_empty() {
            fs.push(if output.is_some() {
                Format::Tar
            } else {
                Format::KernelInitrd
            });
        }
        if fs.len() > 1
            && let Some(s) = fs.iter().find(|f| f.streamable())
        {
            return Err(format!("format {} must be the only format given", s.name()));
        }
        if fs.contains(&Format::Vhd) && fs.contains(&Format::DynamicVhd) {
            return Err(
                "formats vhd and dynamic-vhd both write NAME.vhd: give one of them (or build the other with another --name)"
                    .into(),
            );
        }
        if fs.contains(&Format::IsoBios) && fs.contains(&Format::KernelIso) {
            return Err(
                "formats iso-bios and kernel+iso both write NAME.iso: give one of them (or build the other with another --name)"
                    .into(),
            );
        }
        let name = match name {
            Some(n) => n.to_string(),
            None if last_config == "-" => "moby".to_string(),
            None => {
                let p = Path::new(last_config);
                p.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "moby".into())
            }
        };
        if name.is_empty() || name.contains('/') {
            return Err(format!("--name {name:?} must be a file name"));
        }
        let dir = dir.map(Path::to_path_buf).unwrap_or_default();
        let tar = match output {
            Some(o) => {
                if fs.len() > 1 {
                    return Err("-o can only be given for a single output format".into());
                }
                if !fs[0].streamable() {
                    return Err(format!(
                        "-o cannot be given for format {}: it is not one stream; use --dir and --name",
                        fs[0].name()
                    ));
                }
                Some(if o == "-" {
                    TarDestination::Stdout
                } else {
                    TarDestination::File(PathBuf::from(o))
                })
            }
            None if fs == [Format::Tar] => {
                Some(TarDestination::File(dir.join(format!("{name}.tar"))))
            }
            None => None,
        };
        Ok(OutputPlan {
            formats: fs,
            base: dir.join(name),
            tar,
            efi_stub: None,
            isolinux: None,
        })
    }

    /// The directory outputs are written in (temporary files live there too).
    pub fn dir(&self) -> PathBuf {
        let p = match &self.tar {
            Some(TarDestination::File(f)) => f.as_path(),
            _ => self.base.as_path(),
        };
        match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Checks what the plan needs from the host before any image is resolved: for the UEFI
    /// formats, a readable EFI stub for x86-64 or arm64.
    pub fn check(&self) -> Result<()> {
        self.efi_stub_for_outputs()?;
        self.isolinux_for_outputs().map(drop)
    }

    /// ISOLINUX's files, read, when a BIOS format is planned.
    fn isolinux_for_outputs(&self) -> Result<Option<IsolinuxFiles>> {
        let Some(path) = self.first_bios_output() else {
            return Ok(None);
        };
        match &self.isolinux {
            Some(i) => i.read().map(Some).map_err(|e| Error::output(path, e)),
            None => Err(Error::output(
                path,
                "the BIOS formats need ISOLINUX's files: none were given",
            )),
        }
    }

    /// The file of the first BIOS format planned (what errors about ISOLINUX name).
    fn first_bios_output(&self) -> Option<PathBuf> {
        self.formats.iter().find_map(|f| match f {
            Format::IsoBios => Some(self.with_suffix(ISO_BIOS_SUFFIX)),
            Format::RawBios => Some(self.with_suffix(RAW_BIOS_SUFFIX)),
            Format::Qcow2Bios => Some(self.with_suffix(QCOW2_BIOS_SUFFIX)),
            Format::Vhd => Some(self.with_suffix(VHD_SUFFIX)),
            Format::Aws => Some(self.with_suffix(AWS_SUFFIX)),
            Format::Gcp => Some(self.with_suffix(GCP_SUFFIX)),
            Format::DynamicVhd => Some(self.with_suffix(VHD_SUFFIX)),
            Format::Vmdk => Some(self.with_suffix(VMDK_SUFFIX)),
            _ => None,
        })
    }

    /// The EFI stub, read and checked, when a UEFI format is planned.
    fn efi_stub_for_outputs(&self) -> Result<Option<Stub>> {
        let Some(first) = self.first_uefi_output() else {
            return Ok(None);
        };
        read_efi_stub(self)
            .map(Some)
            .map_err(|e| Error::output(first, e))
    }

    /// The file of the first UEFI format planned (what errors about the EFI stub name).
    fn first_uefi_output(&self) -> Option<PathBuf> {
        self.formats.iter().find_map(|f| match f {
            Format::RawEfi => Some(self.with_suffix(RAW_EFI_SUFFIX)),
            Format::IsoEfi => Some(self.with_suffix(ISO_EFI_SUFFIX)),
            Format::Qcow2Efi => Some(self.with_suffix(QCOW2_EFI_SUFFIX)),
            Format::IsoEfiInitrd => Some(self.with_suffix(ISO_EFI_INITRD_SUFFIX)),
            _ => None,
        })
    }

    fn with_suffix(&self, suffix: &str) -> PathBuf {
        let mut s = self.base.clone().into_os_string();
        s.push(suffix);
        PathBuf::from(s)
    }
}

/// Files written by a build, in the order they were renamed into place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub files: Vec<PathBuf>,
}

/// A temporary output file that becomes `path` on `persist`.
struct Pending {
    path: PathBuf,
    tmp: NamedTempFile,
}

/// [`temp_for`] an output file whose writing starts now, told to `progress`.
fn started(progress: &dyn Fn(&Path), path: &Path) -> Result<NamedTempFile> {
    progress(path);
    temp_for(path)
}

fn temp_for(path: &Path) -> Result<NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| {
            Error::output(
                path,
                format!("cannot create a temporary file in {}: {e}", dir.display()),
            )
        })
}

/// Writes the outputs of `plan` for the assembled tree.
/// `progress` is told each output file's path as its writing starts.
pub fn write_outputs(
    a: &Assembly,
    store: &Store,
    plan: &OutputPlan,
    progress: &dyn Fn(&Path),
) -> Result<Written> {
    let dir = plan.dir();
    fs_err::create_dir_all(&dir).map_err(|e| Error::output(&dir, e))?;
    let raw_efi = plan.formats.contains(&Format::RawEfi);
    let iso_efi = plan.formats.contains(&Format::IsoEfi);
    let iso_efi_initrd = plan.formats.contains(&Format::IsoEfiInitrd);
    let qcow2_efi = plan.formats.contains(&Format::Qcow2Efi);
    // Read again here (callers check the plan first, see `OutputPlan::check`): what is built
    // is what the file holds now.
    let stub = plan.efi_stub_for_outputs()?;
    let isolinux = plan.isolinux_for_outputs()?;
    let mut pending: Vec<Pending> = Vec::new();
    for f in &plan.formats {
        if *f == Format::Tar {
            match &plan.tar {
                Some(TarDestination::Stdout) => {
                    let out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
                    let mut sink = TarSink {
                        tar: TarWriter::new(out, a.epoch),
                    };
                    emit(a, store, &mut sink, &dir)?;
                    let (mut out, _, _) = sink.tar.finish().map_err(Error::from)?;
                    out.flush()
                        .map_err(|e| Error::output("standard output", e))?;
                }
                Some(TarDestination::File(path)) => {
                    let tmp = started(progress, path)?;
                    let out = BufWriter::with_capacity(
                        1 << 20,
                        tmp.as_file()
                            .try_clone()
                            .map_err(|e| Error::output(path, e))?,
                    );
                    let mut sink = TarSink {
                        tar: TarWriter::new(out, a.epoch),
                    };
                    emit(a, store, &mut sink, &dir)?;
                    let (out, _, _) = sink.tar.finish().map_err(Error::from)?;
                    out.into_inner()
                        .map_err(|e| Error::output(path, e.error().to_string()))?
                        .sync_all()
                        .map_err(|e| Error::output(path, e))?;
                    pending.push(Pending {
                        path: path.clone(),
                        tmp,
                    });
                }
                None => {}
            }
        }
    }
    let kernel_initrd = plan.formats.contains(&Format::KernelInitrd);
    let tar_kernel_initrd = plan.formats.contains(&Format::TarKernelInitrd);
    if kernel_initrd || tar_kernel_initrd || stub.is_some() || isolinux.is_some() {
        let initrd_path = plan.with_suffix("-initrd.img");
        let initrd_tmp = if kernel_initrd {
            started(progress, &initrd_path)?
        } else {
            temp_for(&initrd_path)?
        };
        let kernel_path = plan.with_suffix("-kernel");
        let kernel_tmp = temp_for(&kernel_path)?;
        let ucode_len = match lookup(&a.root, &[b"boot".to_vec(), b"ucode.cpio".to_vec()]) {
            Some(Node::File(id)) => a.inodes.get(*id).size,
            _ => 0,
        };
        let done = write_initrd(
            a,
            store,
            &dir,
            (&initrd_tmp, &initrd_path),
            ucode_len,
            (&kernel_tmp, &kernel_path),
        )?;
        // The boot images hold the kernel and the whole initrd: read back once for all of them.
        let parts = match plan
            .first_uefi_output()
            .or_else(|| plan.first_bios_output())
        {
            Some(first) => Some(
                BootParts::read(&done, &initrd_tmp, &kernel_tmp)
                    .map_err(|e| Error::output(first, e))?,
            ),
            None => None,
        };
        if let (Some(stub), Some(parts)) = (&stub, &parts) {
            let first = plan.first_uefi_output().unwrap_or_default();
            let uki = build_uki(stub, &done, parts).map_err(|e| Error::output(first, e))?;
            let seed = oxkit_spec::Digest::sha256(&uki);
            let boot = [crate::disk::EspFile {
                path: stub.boot_path,
                data: &uki,
            }];
            let mut raw_disk: Option<File> = None;
            if raw_efi {
                let path = plan.with_suffix(RAW_EFI_SUFFIX);
                let tmp = started(progress, &path)?;
                write_raw_efi(tmp.as_file(), &boot, &seed).map_err(|e| Error::output(&path, e))?;
                raw_disk = Some(
                    tmp.as_file()
                        .try_clone()
                        .map_err(|e| Error::output(&path, e))?,
                );
                pending.push(Pending { path, tmp });
            }
            if qcow2_efi {
                let path = plan.with_suffix(QCOW2_EFI_SUFFIX);
                let tmp = started(progress, &path)?;
                write_qcow2_efi(&tmp, raw_disk.take(), &boot, &seed, &dir)
                    .map_err(|e| Error::output(&path, e))?;
                pending.push(Pending { path, tmp });
            }
            // iso-efi-initrd is LinuxKit's name for the ISO that boots a kernel and initrd,
            // which oxkit's iso-efi is.
            for (wanted, suffix) in [
                (iso_efi, ISO_EFI_SUFFIX),
                (iso_efi_initrd, ISO_EFI_INITRD_SUFFIX),
            ] {
                if wanted {
                    let path = plan.with_suffix(suffix);
                    let tmp = started(progress, &path)?;
                    write_iso_efi(&tmp, &boot, &seed, &dir).map_err(|e| Error::output(&path, e))?;
                    pending.push(Pending { path, tmp });
                }
            }
        }
        if let (Some(isolinux), Some(parts)) = (&isolinux, &parts) {
            pending.extend(write_bios_outputs(
                plan,
                (&dir, progress),
                isolinux,
                &done,
                parts,
                a.epoch,
            )?);
        }
        if tar_kernel_initrd {
            let path = plan.with_suffix("-initrd.tar");
            let tmp = started(progress, &path)?;
            write_kernel_initrd_tar(&tmp, &done, &initrd_tmp, &kernel_tmp, a.epoch)
                .map_err(|e| Error::output(&path, e))?;
            pending.push(Pending { path, tmp });
        }
        if kernel_initrd {
            if done.kernel_len > 0 {
                pending.push(Pending {
                    path: kernel_path,
                    tmp: kernel_tmp,
                });
            }
            pending.push(Pending {
                path: initrd_path,
                tmp: initrd_tmp,
            });
            if !done.cmdline.is_empty() {
                let path = plan.with_suffix("-cmdline");
                let mut tmp = temp_for(&path)?;
                tmp.write_all(&done.cmdline)
                    .and_then(|()| tmp.as_file().sync_all())
                    .map_err(|e| Error::output(&path, e))?;
                pending.push(Pending { path, tmp });
            }
        }
    }
    // The kernel and command line come with the first of kernel+initrd, kernel+squashfs,
    // kernel+erofs and kernel+iso.
    let squashfs = plan.formats.contains(&Format::KernelSquashfs);
    if squashfs {
        pending.extend(write_kernel_rootfs::<SquashfsWriter<BufWriter<File>>>(
            a,
            store,
            plan,
            (&dir, progress),
            SQUASHFS_SUFFIX,
            !kernel_initrd,
        )?);
    }
    let erofs = plan.formats.contains(&Format::KernelErofs);
    if erofs {
        pending.extend(write_kernel_rootfs::<ErofsWriter<BufWriter<File>>>(
            a,
            store,
            plan,
            (&dir, progress),
            EROFS_SUFFIX,
            !kernel_initrd && !squashfs,
        )?);
    }
    if plan.formats.contains(&Format::KernelIso) {
        pending.extend(write_kernel_rootfs::<IsoRootWriter<BufWriter<File>>>(
            a,
            store,
            plan,
            (&dir, progress),
            KERNEL_ISO_SUFFIX,
            !kernel_initrd && !squashfs && !erofs,
        )?);
    }
    let mut written = Written::default();
    for p in pending {
        // Outputs are readable by everyone, as LinuxKit writes them.
        set_mode(p.tmp.path(), 0o644).map_err(|e| Error::output(&p.path, e))?;
        p.tmp
            .persist(&p.path)
            .map_err(|e| Error::output(&p.path, e.error))?;
        written.files.push(p.path);
    }
    if let Ok(d) = File::open(&dir) {
        // Make the renames durable; nothing to undo if the directory cannot be synced.
        let _ = d.sync_all();
    }
    Ok(written)
}

/// Writes the initrd (a newc cpio, gzip'd on all cores, of everything but `boot/*`, behind
/// `ucode_len` bytes of `boot/ucode.cpio`) and the kernel to their temporary files.
fn write_initrd(
    a: &Assembly,
    store: &Store,
    dir: &Path,
    (initrd_tmp, initrd_path): (&NamedTempFile, &Path),
    ucode_len: u64,
    (kernel_tmp, kernel_path): (&NamedTempFile, &Path),
) -> Result<InitrdDone> {
    let out = |e| Error::output(initrd_path, e);
    let mut initrd = initrd_tmp.as_file().try_clone().map_err(out)?;
    let head = initrd.try_clone().map_err(out)?;
    initrd.seek(SeekFrom::Start(ucode_len)).map_err(out)?;
    let kernel = kernel_tmp
        .as_file()
        .try_clone()
        .map_err(|e| Error::output(kernel_path, e))?;
    let cpio = CpioWriter::new(ParallelGzip::new(initrd, GZIP_LEVEL), a.epoch);
    let mut sink = BootSplit::new(
        cpio,
        Some(kernel),
        Some(Ucode::new(head, ucode_len)),
        initrd_path,
    );
    emit(a, store, &mut sink, dir)?;
    let (cpio, boot) = sink.finish()?;
    let gz = cpio.finish().map_err(|e| Error::output(initrd_path, e))?;
    let file = gz.finish().map_err(out)?;
    file.sync_all().map_err(out)?;
    let initrd_len = file.metadata().map_err(out)?.len();
    Ok(InitrdDone {
        ucode_len,
        initrd_len,
        kernel_len: boot.kernel_len,
        cmdline: boot.cmdline,
    })
}

/// A root file system image output's files (`kernel+squashfs`'s, `kernel+erofs`'s,
/// `kernel+iso`'s): the image
/// (`NAME` + `suffix`), and (`with_kernel`: unless another output writes the same ones) the
/// kernel and the command line. One more pass over the layers.
fn write_kernel_rootfs<I: RootImage>(
    a: &Assembly,
    store: &Store,
    plan: &OutputPlan,
    (dir, progress): (&Path, &dyn Fn(&Path)),
    suffix: &str,
    with_kernel: bool,
) -> Result<Vec<Pending>> {
    let path = plan.with_suffix(suffix);
    let tmp = started(progress, &path)?;
    let kernel_path = plan.with_suffix("-kernel");
    // The kernel is copied only when this output writes it.
    let kernel_tmp = if with_kernel {
        Some(temp_for(&kernel_path)?)
    } else {
        None
    };
    let out = tmp
        .as_file()
        .try_clone()
        .map_err(|e| Error::output(&path, e))?;
    let image = I::create(
        BufWriter::with_capacity(1 << 20, out),
        a.epoch,
        &a.root.meta,
    )
    .map_err(|e| Error::output(&path, e))?;
    let kernel = kernel_tmp
        .as_ref()
        .map(|t| t.as_file().try_clone())
        .transpose()
        .map_err(|e| Error::output(&kernel_path, e))?;
    let mut sink = BootSplit::new(image, kernel, None, &path);
    emit(a, store, &mut sink, dir)?;
    let (
        image,
        BootFiles {
            kernel_len,
            cmdline,
            ..
        },
    ) = sink.finish()?;
    image
        .finish_image()
        .map_err(|e| Error::output(&path, e))?
        .into_inner()
        .map_err(|e| Error::output(&path, e.error().to_string()))?
        .sync_all()
        .map_err(|e| Error::output(&path, e))?;
    let mut files = vec![Pending { path, tmp }];
    if let Some(kernel_tmp) = kernel_tmp {
        if kernel_len > 0 {
            files.push(Pending {
                path: kernel_path,
                tmp: kernel_tmp,
            });
        }
        if !cmdline.is_empty() {
            let path = plan.with_suffix("-cmdline");
            let mut tmp = temp_for(&path)?;
            tmp.write_all(&cmdline)
                .and_then(|()| tmp.as_file().sync_all())
                .map_err(|e| Error::output(&path, e))?;
            files.push(Pending { path, tmp });
        }
    }
    Ok(files)
}

/// The EFI stub the UEFI formats build on (read whole: about 100 KiB), and where the firmware
/// looks for a program of its architecture.
struct Stub {
    bytes: Vec<u8>,
    boot_path: &'static str,
}

fn read_efi_stub(plan: &OutputPlan) -> std::result::Result<Stub, String> {
    const GET_ONE: &str = "install systemd-boot-efi (Debian, Ubuntu) or pass --efi-stub FILE";
    let Some(path) = &plan.efi_stub else {
        return Err(format!(
            "the UEFI formats need systemd's EFI stub: {GET_ONE}"
        ));
    };
    let bytes = std::fs::read(path).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::NotFound {
            format!("; {GET_ONE}")
        } else {
            String::new()
        };
        format!("cannot read the EFI stub {}: {e}{hint}", path.display())
    })?;
    let boot_path = crate::uki::removable_media_path(&bytes).map_err(|e| {
        format!(
            "{} is not an EFI stub oxkit can use: {e}; pass systemd's linuxx64.efi.stub or linuxaa64.efi.stub",
            path.display()
        )
    })?;
    Ok(Stub { bytes, boot_path })
}

/// The unified kernel image of `raw-efi` and `iso-efi`: the kernel, the whole initrd file
/// (microcode first) and the command line on the EFI stub.
fn build_uki(
    stub: &Stub,
    done: &InitrdDone,
    parts: &BootParts,
) -> std::result::Result<Vec<u8>, String> {
    if done.kernel_len == 0 {
        return Err("a UEFI output needs a kernel: the YAML's kernel section has no image".into());
    }
    crate::uki::build_uki(
        &stub.bytes,
        &crate::uki::UkiParts {
            osrel: b"ID=oxkit\nNAME=oxkit\nPRETTY_NAME=\"oxkit image\"\n",
            cmdline: &done.cmdline,
            linux: &parts.linux,
            initrd: &parts.initrd,
        },
    )
    .map_err(|e| format!("cannot make a unified kernel image from the EFI stub: {e}"))
}

/// The kernel and the whole initrd file (microcode first) the boot images carry.
struct BootParts {
    linux: Vec<u8>,
    initrd: Vec<u8>,
}

impl BootParts {
    /// Reads back what the initrd pass wrote.
    fn read(
        done: &InitrdDone,
        initrd: &NamedTempFile,
        kernel: &NamedTempFile,
    ) -> std::result::Result<Self, String> {
        Ok(Self {
            linux: read_back(kernel, done.kernel_len, "kernel")?,
            initrd: read_back(initrd, done.initrd_len, "initrd")?,
        })
    }
}

/// The first `len` bytes of `f`, the `what` written by the initrd pass.
fn read_back(f: &NamedTempFile, len: u64, what: &str) -> std::result::Result<Vec<u8>, String> {
    let mut v = Vec::with_capacity(len as usize);
    f.as_file()
        .try_clone()
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(0))?;
            f.take(len).read_to_end(&mut v)
        })
        .map_err(|e| format!("cannot read back the {what}: {e}"))?;
    Ok(v)
}

/// ISOLINUX's configuration for `iso-bios`: boot the kernel with the initrd and the command line
/// at once, no menu (as LinuxKit's `iso-bios` configures it, but for the initrd).
fn isolinux_cfg(cmdline: &[u8]) -> String {
    let cmdline = String::from_utf8_lossy(cmdline);
    let cmdline = cmdline.split_whitespace().collect::<Vec<_>>().join(" ");
    format!(
        "DEFAULT linux\nLABEL linux\n  KERNEL /kernel\n  APPEND initrd=/initrd.img{}{cmdline}\n",
        if cmdline.is_empty() { "" } else { " " }
    )
}

/// The BIOS formats' files, to be renamed into place: the hybrid image written once (to
/// `iso-bios`'s file, else `raw-bios`'s, else a temporary file), then copied to `raw-bios`'s
/// and `aws`'s and converted to `qcow2-bios`'s, `vhd`'s (or `dynamic-vhd`'s), `vmdk`'s and
/// `gcp`'s (made at `epoch`).
fn write_bios_outputs(
    plan: &OutputPlan,
    (dir, progress): (&Path, &dyn Fn(&Path)),
    isolinux: &IsolinuxFiles,
    done: &InitrdDone,
    parts: &BootParts,
    epoch: i64,
) -> Result<Vec<Pending>> {
    let first = plan.first_bios_output().unwrap_or_default();
    let wanted = |f: Format| plan.formats.contains(&f);
    let mut written = Vec::new();
    let holder = [Format::IsoBios, Format::RawBios]
        .into_iter()
        .find(|f| wanted(*f));
    let image = match holder {
        Some(f) => {
            let suffix = if f == Format::IsoBios {
                ISO_BIOS_SUFFIX
            } else {
                RAW_BIOS_SUFFIX
            };
            let path = plan.with_suffix(suffix);
            let tmp = started(progress, &path)?;
            let file = tmp
                .as_file()
                .try_clone()
                .map_err(|e| Error::output(&path, e))?;
            written.push(Pending { path, tmp });
            file
        }
        None => tempfile::tempfile_in(dir).map_err(|e| {
            Error::output(
                &first,
                format!("cannot create a temporary file in {}: {e}", dir.display()),
            )
        })?,
    };
    let id = write_iso_bios(&image, isolinux, done, parts).map_err(|e| Error::output(&first, e))?;
    // Copies: raw-bios's when iso-bios's file holds the image, and aws's.
    let copies = [
        (
            Format::RawBios,
            RAW_BIOS_SUFFIX,
            holder != Some(Format::RawBios),
        ),
        (Format::Aws, AWS_SUFFIX, true),
    ];
    for (_, suffix, _) in copies.iter().filter(|(f, _, copy)| *copy && wanted(*f)) {
        let path = plan.with_suffix(suffix);
        let tmp = started(progress, &path)?;
        image
            .metadata()
            .and_then(|m| crate::rawdisk::copy_prefix(&image, m.len(), &mut tmp.as_file()))
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| Error::output(&path, e))?;
        written.push(Pending { path, tmp });
    }
    if wanted(Format::Qcow2Bios) {
        let path = plan.with_suffix(QCOW2_BIOS_SUFFIX);
        let tmp = started(progress, &path)?;
        write_qcow2_of(&tmp, &image).map_err(|e| Error::output(&path, e))?;
        written.push(Pending { path, tmp });
    }
    if wanted(Format::Vhd) || wanted(Format::DynamicVhd) {
        let fixed = wanted(Format::Vhd);
        written.push(buffered_output(
            progress,
            plan.with_suffix(VHD_SUFFIX),
            |w| {
                if fixed {
                    crate::vhd::write_fixed_vhd(&image, w, epoch, id)
                } else {
                    crate::vhd::write_dynamic_vhd(&image, w, epoch, id)
                }
            },
        )?);
    }
    if wanted(Format::Vmdk) {
        let path = plan.with_suffix(VMDK_SUFFIX);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::output(&path, "a VMDK's descriptor names its file in UTF-8"))?
            .to_string();
        written.push(buffered_output(progress, path, |w| {
            crate::vmdk::write_vmdk(&image, w, &name, crate::vmdk::content_id(id))
        })?);
    }
    if wanted(Format::Gcp) {
        let path = plan.with_suffix(GCP_SUFFIX);
        let tmp = started(progress, &path)?;
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(|e| Error::output(&path, e))?;
        crate::gcp::write_gcp(&image, BufWriter::with_capacity(1 << 20, file), epoch)
            .and_then(|w| w.into_inner().map_err(io::IntoInnerError::into_error))
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::output(&path, e))?;
        written.push(Pending { path, tmp });
    }
    Ok(written)
}

/// `path`'s file, written by `write` through a 1 MiB buffer to a temporary file, synced.
fn buffered_output(
    progress: &dyn Fn(&Path),
    path: PathBuf,
    write: impl FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
) -> Result<Pending> {
    let tmp = started(progress, &path)?;
    let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
    write(&mut w)
        .and_then(|()| w.flush())
        .map_err(|e| Error::output(&path, e))?;
    drop(w);
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::output(&path, e))?;
    Ok(Pending { path, tmp })
}

/// `raw` (a whole disk image) as a qcow2 image in `out`.
fn write_qcow2_of(out: &NamedTempFile, raw: &File) -> std::result::Result<(), String> {
    let len = raw
        .metadata()
        .map_err(|e| format!("cannot read back the raw disk: {e}"))?
        .len();
    let mut w = BufWriter::with_capacity(1 << 20, out.as_file());
    crate::qcow2::write_qcow2(raw, len, &mut w)
        .and_then(|_| w.flush())
        .map_err(|e| format!("cannot write the qcow2 image: {e}"))?;
    drop(w);
    out.as_file().sync_all().map_err(|e| e.to_string())
}

/// ISOLINUX with its configuration, the kernel and the initrd on a hybrid ISO 9660 image: its
/// El Torito catalog boots ISOLINUX on a PC BIOS from a CD, its MBR from a disk. The MBR's disk
/// id comes from what the image boots: the first 4 of the 16 bytes returned, which make an id
/// for the disk formats that carry one (VHD's unique id).
fn write_iso_bios(
    out: &File,
    isolinux: &IsolinuxFiles,
    done: &InitrdDone,
    parts: &BootParts,
) -> std::result::Result<[u8; 16], String> {
    if done.kernel_len == 0 {
        return Err("a BIOS output needs a kernel: the YAML's kernel section has no image".into());
    }
    let cfg = isolinux_cfg(&done.cmdline);
    let mut h = oxkit_spec::Sha256Hasher::new();
    for part in [cfg.as_bytes(), &parts.linux, &parts.initrd] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let digest = h.finish();
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = digest
            .hex()
            .get(i * 2..i * 2 + 2)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .unwrap_or(0);
    }
    let hybrid = crate::iso::Hybrid {
        mbr_code: &isolinux.mbr_code,
        disk_id: u32::from_le_bytes([id[0], id[1], id[2], id[3]]),
    };
    let files = [
        crate::iso::IsoFile {
            path: "isolinux/ldlinux.c32",
            data: &isolinux.ldlinux,
        },
        crate::iso::IsoFile {
            path: "isolinux/isolinux.cfg",
            data: cfg.as_bytes(),
        },
        crate::iso::IsoFile {
            path: "kernel",
            data: &parts.linux,
        },
        crate::iso::IsoFile {
            path: "initrd.img",
            data: &parts.initrd,
        },
    ];
    let boot = crate::iso::IsoFile {
        path: "isolinux/isolinux.bin",
        data: &isolinux.bin,
    };
    let mut file = out.try_clone().map_err(|e| e.to_string())?;
    crate::iso::write_bios_iso(&mut file, "OXKIT", &boot, &files, Some(&hybrid))?;
    file.sync_all().map_err(|e| e.to_string())?;
    Ok(id)
}

/// `raw-efi`: the boot program on a fresh EFI system partition. `seed` (the program's digest)
/// makes the GUIDs and volume id.
fn write_raw_efi(
    out: &File,
    boot: &[crate::disk::EspFile<'_>],
    seed: &oxkit_spec::Digest,
) -> std::result::Result<(), String> {
    let mut file = out.try_clone().map_err(|e| e.to_string())?;
    crate::disk::write_esp_disk(&mut file, boot, seed.hex().as_bytes())?;
    file.sync_all().map_err(|e| e.to_string())
}

/// `qcow2-efi`: the `raw-efi` disk (`raw`, when that output was written too; otherwise it is
/// written to a temporary file in `dir`) as a qcow2 image.
fn write_qcow2_efi(
    out: &NamedTempFile,
    raw: Option<File>,
    boot: &[crate::disk::EspFile<'_>],
    seed: &oxkit_spec::Digest,
    dir: &Path,
) -> std::result::Result<(), String> {
    let raw = match raw {
        Some(f) => f,
        None => {
            let mut f = tempfile::tempfile_in(dir)
                .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?;
            crate::disk::write_esp_disk(&mut f, boot, seed.hex().as_bytes())?;
            f
        }
    };
    write_qcow2_of(out, &raw)
}

/// `iso-efi`: the boot program in a FAT image that the ISO's El Torito catalog boots.
fn write_iso_efi(
    out: &NamedTempFile,
    boot: &[crate::disk::EspFile<'_>],
    seed: &oxkit_spec::Digest,
    dir: &Path,
) -> std::result::Result<(), String> {
    let mut fat_file = tempfile::tempfile_in(dir)
        .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?;
    let size = crate::disk::write_fat_image(&mut fat_file, boot, seed.hex().as_bytes())?;
    let mut image = Vec::with_capacity(size as usize);
    fat_file
        .seek(SeekFrom::Start(0))
        .and_then(|_| {
            Read::by_ref(&mut fat_file)
                .take(size)
                .read_to_end(&mut image)
        })
        .map_err(|e| format!("cannot read back the EFI boot image: {e}"))?;
    let mut file = out.as_file().try_clone().map_err(|e| e.to_string())?;
    crate::iso::write_efi_iso(&mut file, "OXKIT", &image, "EFI/BOOT/EFIBOOT.IMG", &[])?;
    file.sync_all().map_err(|e| e.to_string())
}

fn set_mode(p: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// What the initrd pass produced.
struct InitrdDone {
    /// Bytes of `boot/ucode.cpio` at the start of the initrd file.
    ucode_len: u64,
    /// Total bytes of the initrd file (microcode included).
    initrd_len: u64,
    kernel_len: u64,
    cmdline: Vec<u8>,
}

/// The `kernel.tar`-like tarball LinuxKit's `tar-kernel-initrd` writes.
fn write_kernel_initrd_tar(
    out: &NamedTempFile,
    done: &InitrdDone,
    initrd: &NamedTempFile,
    kernel: &NamedTempFile,
    epoch: i64,
) -> io::Result<()> {
    let w = BufWriter::with_capacity(1 << 20, out.as_file().try_clone()?);
    let mut tar = TarWriter::new(w, epoch);
    let meta = EntryMeta {
        mode: 0o644,
        mtime: epoch,
        ..EntryMeta::default()
    };
    fn add<W: Write>(
        tar: &mut TarWriter<W>,
        meta: &EntryMeta,
        name: &str,
        file: &File,
        start: u64,
        len: u64,
    ) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(start))?;
        let mut r = f.take(len);
        tar.add(&Entry::file(name, len, meta.clone()), Some(&mut r))
            .map_err(io::Error::other)
    }
    add(
        &mut tar,
        &meta,
        "kernel",
        kernel.as_file(),
        0,
        done.kernel_len,
    )?;
    add(
        &mut tar,
        &meta,
        "initrd.img",
        initrd.as_file(),
        done.ucode_len,
        done.initrd_len.saturating_sub(done.ucode_len),
    )?;
    // Like the kernel and the microcode, an empty cmdline is left out (as LinuxKit does).
    if !done.cmdline.is_empty() {
        tar.add_bytes(
            &Entry::file("cmdline", done.cmdline.len() as u64, meta.clone()),
            &done.cmdline,
        )
        .map_err(io::Error::other)?;
    }
    add(
        &mut tar,
        &meta,
        "ucode.cpio",
        initrd.as_file(),
        0,
        done.ucode_len,
    )?;
    let (w, _, _) = tar.finish().map_err(io::Error::other)?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(
        formats: &[&str],
        name: Option<&str>,
        dir: Option<&str>,
        output: Option<&str>,
    ) -> std::result::Result<OutputPlan, String> {
        let formats: Vec<String> = formats.iter().map(|f| (*f).to_string()).collect();
        OutputPlan::new(
            &formats,
            name,
            dir.map(Path::new),
            output,
            "conf/linuxkit.yml",
        )
    }

    #[test]
    fn linuxkit_defaults_and_names() {
        let p = plan(&[], None, None, None).unwrap();
        assert_eq!(p.formats, [Format::KernelInitrd]);
        assert_eq!(p.base, PathBuf::from("linuxkit"));
        assert_eq!(p.tar, None);
        assert_eq!(
            p.with_suffix("-initrd.img"),
            PathBuf::from("linuxkit-initrd.img")
        );
        assert_eq!(p.dir(), PathBuf::from("."));
        // -o alone means tar.
        let p = plan(&[], None, None, Some("-")).unwrap();
        assert_eq!(
            (p.formats.as_slice(), p.tar),
            (&[Format::Tar][..], Some(TarDestination::Stdout))
        );
        // tar alone goes to DIR/NAME.tar.
        let p = plan(&["tar"], Some("sys"), Some("out"), None).unwrap();
        assert_eq!(
            p.tar,
            Some(TarDestination::File(PathBuf::from("out/sys.tar")))
        );
        assert_eq!(p.dir(), PathBuf::from("out"));
        // Comma-separated and repeated formats, duplicates once.
        let p = plan(
            &["kernel+initrd,tar-kernel-initrd", "kernel+initrd"],
            None,
            Some("o"),
            None,
        )
        .unwrap();
        assert_eq!(p.formats, [Format::KernelInitrd, Format::TarKernelInitrd]);
        assert_eq!(p.base, PathBuf::from("o/linuxkit"));
        let stdin = OutputPlan::new(&[], None, None, None, "-").unwrap();
        assert_eq!(stdin.base, PathBuf::from("moby"));
    }

    #[test]
    fn linuxkit_refusals() {
        for (formats, output, want) in [
            (
                &["tar", "kernel+initrd"][..],
                None,
                "format tar must be the only format",
            ),
            (&["rpi3"][..], None, "unknown format \"rpi3\""),
            (
                &["vhd,dynamic-vhd"][..],
                None,
                "vhd and dynamic-vhd both write NAME.vhd",
            ),
            (
                &["kernel+iso,iso-bios"][..],
                None,
                "iso-bios and kernel+iso both write NAME.iso",
            ),
            (
                &["raw-efi"][..],
                Some("x"),
                "-o cannot be given for format raw-efi",
            ),
            (
                &["kernel+initrd"][..],
                Some("x"),
                "-o cannot be given for format kernel+initrd",
            ),
        ] {
            let e = plan(formats, None, None, output).unwrap_err();
            assert!(e.contains(want), "{formats:?}: {e}");
        }
        assert!(plan(&[], Some("a/b"), None, None).is_err());
    }
}
