//! Boots a `kernel+initrd` output (`NAME-kernel`, `NAME-initrd.img`, `NAME-cmdline`), or a
//! `raw-efi` (`NAME-efi.img`), `qcow2-efi` (`NAME-efi.qcow2`) or `iso-efi` (`NAME-efi.iso`)
//! one under UEFI firmware, or an `iso-bios` (`NAME.iso`), `raw-bios` (`NAME-bios.img`),
//! `qcow2-bios` (`NAME.qcow2`), `vhd` (`NAME.vhd`) or `vmdk` (`NAME.vmdk`) one under QEMU's PC BIOS, in QEMU with the guest's serial
//! console on the caller's terminal: the engine behind `oxkit run qemu`, shaped like LinuxKit's
//! `linuxkit run qemu`.
//!
//! It is split so that everything but the process handling is tested without QEMU:
//! - [`BootFiles`] finds the three files of an output and reads its command line;
//!   [`efi_image`] and [`uefi_firmware`] find a UEFI output and the firmware to boot it,
//!   [`bios_image`] a BIOS output;
//! - [`kernel_cmdline`] and [`qemu_args`] are pure: they turn a [`VmSpec`] into the exact
//!   QEMU arguments (unit-tested against expected argument lists);
//! - [`resolve_accel`] decides between KVM and TCG; `auto` boots the kernel briefly under KVM
//!   with a short timeout, because on some hosts `/dev/kvm` exists but every guest hangs;
//! - [`run`] spawns QEMU, watches it through its QMP socket (so a guest power-off, a guest
//!   reboot or panic and a QEMU failure are told apart), enforces the timeout and kills the
//!   whole process group.
//!
//! The guest is always started with `-no-reboot`: a reboot ends the run instead of looping.
//! This crate never prints (QEMU writes the console to the inherited stdout itself) and never
//! reads the environment: the binary passes `PATH` in.

mod accel;
mod arch;
mod args;
mod error;
mod files;
mod process;
mod qmp;
mod units;

pub use accel::{AccelChoice, AccelDecision, KVM_PROBE_TIMEOUT, resolve_accel};
pub use arch::Arch;
pub use args::{Accel, Boot, Disk, Media, Networking, VmSpec, kernel_cmdline, qemu_args};
pub use error::VmError;
pub use files::{BootFiles, bios_image, disk_format, efi_image, uefi_firmware};
pub use process::{Outcome, RunReport, run};
pub use units::{parse_duration, parse_memory_mib};

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The QEMU system emulator for `arch`: `explicit` if given (it must exist), otherwise
/// `qemu-system-x86_64` / `qemu-system-aarch64` looked up in `search_path` (a `PATH` value).
pub fn find_qemu(
    arch: Arch,
    explicit: Option<&Path>,
    search_path: &OsStr,
) -> Result<PathBuf, VmError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(VmError::QemuNotFound {
                program: path.display().to_string(),
                package: arch.debian_qemu_package(),
            })
        };
    }
    let name = arch.qemu_binary();
    std::env::split_paths(search_path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or(VmError::QemuNotFound {
            program: name.to_string(),
            package: arch.debian_qemu_package(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_qemu_searches_the_given_path_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let bin = dir.path().join("qemu-system-aarch64");
        std::fs::write(&bin, b"").expect("write");
        let found = find_qemu(Arch::Arm64, None, dir.path().as_os_str()).expect("found");
        assert_eq!(found, bin);
        let err = find_qemu(Arch::Amd64, None, dir.path().as_os_str()).expect_err("absent");
        let msg = err.to_string();
        assert!(msg.contains("qemu-system-x86_64"), "{msg}");
        assert!(msg.contains("qemu-system-x86"), "names the package: {msg}");
    }

    #[test]
    fn find_qemu_checks_an_explicit_binary() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("nope");
        let err = find_qemu(Arch::Amd64, Some(&missing), OsStr::new("")).expect_err("missing");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
