//! The files of a `kernel+initrd` output, found from the name it was built under
//! (`out/minimal` → `out/minimal-kernel`, `out/minimal-initrd.img`, `out/minimal-cmdline`),
//! the way LinuxKit's `run qemu` finds them. It only reads; it never creates state files.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::args::Media;
use crate::error::VmError;

/// The kernel, initrd and kernel command line of one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The contents of `NAME-cmdline`, whitespace-trimmed; empty if that file does not exist
    /// (LinuxKit boots without `-append` then).
    pub cmdline: String,
}

impl BootFiles {
    /// Finds `NAME-kernel` and `NAME-initrd.img` (both required) and reads `NAME-cmdline`.
    pub fn from_prefix(name: &Path) -> Result<Self, VmError> {
        let kernel = suffixed(name, "-kernel");
        let initrd = suffixed(name, "-initrd.img");
        let cmdline_path = suffixed(name, "-cmdline");
        for path in [&kernel, &initrd] {
            if !path.is_file() {
                return Err(VmError::OutputMissing {
                    path: path.clone(),
                    name: name.display().to_string(),
                    hint: hint(name),
                });
            }
        }
        let cmdline = match std::fs::read(&cmdline_path) {
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|_| VmError::CmdlineNotText {
                    path: cmdline_path.clone(),
                })?
                .trim()
                .to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(VmError::Read {
                    path: cmdline_path,
                    source,
                });
            }
        };
        Ok(Self {
            kernel,
            initrd,
            cmdline,
        })
    }
}

/// The image of a UEFI output, which must exist: for [`Media::Disk`] `NAME-efi.img`
/// (`raw-efi`), else `NAME-efi.qcow2` (`qcow2-efi`); for [`Media::Cdrom`] `NAME-efi.iso`
/// (`iso-efi`), else `NAME-efi-initrd.iso` (`iso-efi-initrd`). See [`disk_format`] for how a disk is attached.
pub fn efi_image(name: &Path, media: Media) -> Result<PathBuf, VmError> {
    let (suffixes, format): (&[&str], _) = match media {
        Media::Disk => (&["-efi.img", "-efi.qcow2"], "raw-efi or qcow2-efi"),
        Media::Cdrom => (
            &["-efi.iso", "-efi-initrd.iso"],
            "iso-efi or iso-efi-initrd",
        ),
    };
    find_image(name, suffixes, format)
}

/// The image of a BIOS output, which must exist: for [`Media::Disk`] `NAME-bios.img`
/// (`raw-bios`), else `NAME.qcow2` (`qcow2-bios`), else `NAME.vhd` (`vhd`), else `NAME.vmdk`
/// (`vmdk`); for [`Media::Cdrom`] `NAME.iso` (`iso-bios`).
pub fn bios_image(name: &Path, media: Media) -> Result<PathBuf, VmError> {
    let (suffixes, format): (&[&str], _) = match media {
        Media::Disk => (
            &["-bios.img", ".qcow2", ".vhd", ".vmdk"],
            "raw-bios, qcow2-bios, vhd or vmdk",
        ),
        Media::Cdrom => (&[".iso"], "iso-bios"),
    };
    find_image(name, suffixes, format)
}

/// The first of `NAME` + `suffixes` that exists, or an error naming them and the `format`.
fn find_image(name: &Path, suffixes: &[&str], format: &'static str) -> Result<PathBuf, VmError> {
    let candidates: Vec<PathBuf> = suffixes.iter().map(|s| suffixed(name, s)).collect();
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    Err(VmError::ImageOutputMissing {
        path: candidates[0].clone(),
        name: name.display().to_string(),
        expected: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" or "),
        format,
        hint: hint(name),
    })
}

/// How QEMU reads a disk image: `qcow2` for a `qcow2-efi` or `qcow2-bios` output (`.qcow2`),
/// `vpc` for a `vhd` one (`.vhd`; QEMU does not recognise a fixed VHD by itself), `vmdk` for
/// a `vmdk` one (`.vmdk`), else `raw`.
pub fn disk_format(image: &Path) -> &'static str {
    match image.extension().and_then(|e| e.to_str()) {
        Some("qcow2") => "qcow2",
        Some("vhd") => "vpc",
        Some("vmdk") => "vmdk",
        _ => "raw",
    }
}

/// The UEFI firmware to boot `arch` with: `explicit` if given (it must exist), else the
/// first of Debian's OVMF (package `ovmf`) or AAVMF (`qemu-efi-aarch64`) images that exists.
pub fn uefi_firmware(arch: Arch, explicit: Option<&Path>) -> Result<PathBuf, VmError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(VmError::Read {
                path: p.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
        };
    }
    let (candidates, package): (&[&str], _) = match arch {
        Arch::Amd64 => (
            &["/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"],
            "ovmf",
        ),
        Arch::Arm64 => (
            &[
                "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
                "/usr/share/AAVMF/AAVMF_CODE.fd",
            ],
            "qemu-efi-aarch64",
        ),
    };
    candidates
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| VmError::FirmwareMissing {
            arch: arch.as_str(),
            tried: candidates.join(", "),
            package,
        })
}

fn suffixed(name: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(name.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// A common slip is passing one of the output's files instead of its name.
fn hint(name: &Path) -> String {
    let text = name.to_string_lossy();
    [
        "-kernel",
        "-initrd.img",
        "-cmdline",
        "-efi.img",
        "-efi.iso",
        "-efi-initrd.iso",
        "-efi.qcow2",
        "-bios.img",
        ".iso",
        ".qcow2",
        ".vhd",
        ".vmdk",
    ]
    .iter()
    .find_map(|suffix| text.strip_suffix(suffix))
    .map(|prefix| format!(" (did you mean {prefix}?)"))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(dir: &Path, cmdline: Option<&[u8]>) -> PathBuf {
        let name = dir.join("minimal");
        std::fs::write(dir.join("minimal-kernel"), b"k").expect("kernel");
        std::fs::write(dir.join("minimal-initrd.img"), b"i").expect("initrd");
        if let Some(c) = cmdline {
            std::fs::write(dir.join("minimal-cmdline"), c).expect("cmdline");
        }
        name
    }

    #[test]
    fn finds_the_three_files_and_trims_the_cmdline() {
        let dir = tempfile::tempdir().expect("tmp");
        let name = output(dir.path(), Some(b"console=ttyS0 quiet\n"));
        let files = BootFiles::from_prefix(&name).expect("found");
        assert_eq!(files.kernel, dir.path().join("minimal-kernel"));
        assert_eq!(files.initrd, dir.path().join("minimal-initrd.img"));
        assert_eq!(files.cmdline, "console=ttyS0 quiet");
    }

    #[test]
    fn a_missing_cmdline_file_means_an_empty_cmdline() {
        let dir = tempfile::tempdir().expect("tmp");
        let name = output(dir.path(), None);
        assert_eq!(BootFiles::from_prefix(&name).expect("found").cmdline, "");
    }

    #[test]
    fn missing_files_are_named_with_a_hint() {
        let dir = tempfile::tempdir().expect("tmp");
        let name = output(dir.path(), None);
        std::fs::remove_file(dir.path().join("minimal-initrd.img")).expect("rm");
        let err = BootFiles::from_prefix(&name).expect_err("no initrd");
        assert!(err.to_string().contains("minimal-initrd.img"), "{err}");

        let err = BootFiles::from_prefix(&dir.path().join("minimal-kernel")).expect_err("file");
        let msg = err.to_string();
        assert!(msg.contains("did you mean"), "{msg}");
        assert!(msg.ends_with(&format!("{}?)", name.display())), "{msg}");
    }

    #[test]
    fn a_binary_cmdline_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let name = output(dir.path(), Some(&[0xff, 0xfe]));
        let err = BootFiles::from_prefix(&name).expect_err("binary");
        assert!(err.to_string().contains("minimal-cmdline"), "{err}");
    }

    #[test]
    fn raw_efi_outputs_and_firmware_are_found_or_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let name = dir.path().join("minimal");
        let err = efi_image(&name, Media::Disk).expect_err("no disk");
        assert!(
            err.to_string().contains("minimal-efi.img") && err.to_string().contains("raw-efi"),
            "{err}"
        );
        let err =
            efi_image(&dir.path().join("minimal-efi.img"), Media::Disk).expect_err("file given");
        assert!(err.to_string().contains("did you mean"), "{err}");
        let err = efi_image(&name, Media::Disk).expect_err("no disk");
        assert!(
            err.to_string().contains("minimal-efi.qcow2") && err.to_string().contains("qcow2-efi"),
            "{err}"
        );
        // A qcow2-efi output alone is found, and attached as qcow2.
        std::fs::write(dir.path().join("minimal-efi.qcow2"), b"qcow").expect("qcow2");
        let found = efi_image(&name, Media::Disk).expect("found");
        assert_eq!(found, dir.path().join("minimal-efi.qcow2"));
        assert_eq!(disk_format(&found), "qcow2");
        let err =
            efi_image(&dir.path().join("minimal-efi.qcow2"), Media::Disk).expect_err("file given");
        assert!(err.to_string().contains("did you mean"), "{err}");
        // With both, the raw disk, as raw.
        std::fs::write(dir.path().join("minimal-efi.img"), b"disk").expect("disk");
        let found = efi_image(&name, Media::Disk).expect("found");
        assert_eq!(found, dir.path().join("minimal-efi.img"));
        assert_eq!(disk_format(&found), "raw");

        let err = efi_image(&name, Media::Cdrom).expect_err("no iso");
        assert!(
            err.to_string().contains("minimal-efi.iso")
                && err.to_string().contains("minimal-efi-initrd.iso")
                && err.to_string().contains("iso-efi or iso-efi-initrd"),
            "{err}"
        );
        std::fs::write(dir.path().join("minimal-efi-initrd.iso"), b"i").expect("iso");
        assert_eq!(
            efi_image(&name, Media::Cdrom).expect("found"),
            dir.path().join("minimal-efi-initrd.iso")
        );
        std::fs::write(dir.path().join("minimal-efi.iso"), b"e").expect("iso");
        assert_eq!(
            efi_image(&name, Media::Cdrom).expect("found"),
            dir.path().join("minimal-efi.iso")
        );
        std::fs::remove_file(dir.path().join("minimal-efi.iso")).expect("rm");
        std::fs::remove_file(dir.path().join("minimal-efi-initrd.iso")).expect("rm");

        let err = bios_image(&name, Media::Cdrom).expect_err("no iso");
        assert!(
            err.to_string().contains("minimal.iso") && err.to_string().contains("iso-bios"),
            "{err}"
        );
        std::fs::write(dir.path().join("minimal.iso"), b"cd").expect("iso");
        assert_eq!(
            bios_image(&name, Media::Cdrom).expect("found"),
            dir.path().join("minimal.iso")
        );
        let err = bios_image(&dir.path().join("minimal.iso"), Media::Cdrom).expect_err("file");
        assert!(err.to_string().contains("did you mean"), "{err}");
        let err = bios_image(&name, Media::Disk).expect_err("no disk");
        assert!(
            err.to_string().contains("minimal-bios.img or ")
                && err.to_string().contains("minimal.qcow2")
                && err.to_string().contains("minimal.vhd")
                && err.to_string().contains("minimal.vmdk")
                && err
                    .to_string()
                    .contains("raw-bios, qcow2-bios, vhd or vmdk"),
            "{err}"
        );
        std::fs::write(dir.path().join("minimal.vmdk"), b"k").expect("vmdk");
        let found = bios_image(&name, Media::Disk).expect("found");
        assert_eq!(found, dir.path().join("minimal.vmdk"));
        assert_eq!(disk_format(&found), "vmdk");
        std::fs::write(dir.path().join("minimal.vhd"), b"v").expect("vhd");
        let found = bios_image(&name, Media::Disk).expect("found");
        assert_eq!(found, dir.path().join("minimal.vhd"));
        assert_eq!(disk_format(&found), "vpc");
        std::fs::write(dir.path().join("minimal.qcow2"), b"q").expect("qcow2");
        assert_eq!(
            bios_image(&name, Media::Disk).expect("found"),
            dir.path().join("minimal.qcow2")
        );
        std::fs::write(dir.path().join("minimal-bios.img"), b"d").expect("raw");
        assert_eq!(
            bios_image(&name, Media::Disk).expect("found"),
            dir.path().join("minimal-bios.img")
        );

        let fw = dir.path().join("fw.fd");
        let err = uefi_firmware(Arch::Amd64, Some(&fw)).expect_err("missing");
        assert!(err.to_string().contains("fw.fd"), "{err}");
        std::fs::write(&fw, b"fw").expect("fw");
        assert_eq!(uefi_firmware(Arch::Amd64, Some(&fw)).expect("given"), fw);
    }
}
