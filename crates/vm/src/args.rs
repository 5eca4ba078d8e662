//! The QEMU command line for a VM, built as a pure function of the [`VmSpec`] so every flag is
//! unit-tested without QEMU. Flags follow LinuxKit's `run qemu` (q35 / virt machines, a
//! virtio RNG, user networking on virtio-net) plus what unattended runs need: `-no-reboot`, the
//! console on stdio (`-nographic`) and a QMP socket to learn how the guest stopped.
//! It must not touch the filesystem or spawn anything.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::error::VmError;

/// How QEMU runs guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation: always works, several times slower.
    Tcg,
    /// Hardware virtualisation: only for guests of the host's architecture, and only where
    /// `/dev/kvm` really works (see [`crate::resolve_accel`]).
    Kvm,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcg => "tcg",
            Self::Kvm => "kvm",
        }
    }
}

/// The guest's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Networking {
    /// No network device at all.
    None,
    /// QEMU's user-mode NAT on a virtio-net device (LinuxKit's default).
    User,
}

/// An extra disk, attached as a virtio block device (`/dev/vda`, `/dev/vdb`, ... in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    /// `raw`, `qcow2`, ...; QEMU guesses (and warns) when absent.
    pub format: Option<String>,
}

impl Disk {
    /// Parses `[file=]PATH[,format=FMT]` (LinuxKit's `-disk` keys `file` and `format`; a disk
    /// is never created here, so `size` is refused).
    pub fn parse(value: &str) -> Result<Self, VmError> {
        let invalid = |reason| VmError::InvalidDisk {
            value: value.to_string(),
            reason,
        };
        let mut path = None;
        let mut format = None;
        for (i, part) in value.split(',').enumerate() {
            match part.split_once('=') {
                Some(("file", p)) => path = Some(p),
                Some(("format", f)) if !f.is_empty() => format = Some(f.to_string()),
                Some(("size", _)) => return Err(invalid("oxkit does not create disks (no size=)")),
                None if i == 0 => path = Some(part),
                _ => return Err(invalid("unknown key (only file= and format=)")),
            }
        }
        match path {
            Some(p) if !p.is_empty() => Ok(Self {
                path: PathBuf::from(p),
                format,
            }),
            _ => Err(invalid("no file")),
        }
    }
}

/// What the guest boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// A `kernel+initrd` output, loaded by QEMU itself (`-kernel`, `-initrd`, `-append`).
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        /// The final kernel command line (see [`kernel_cmdline`]); omitted from QEMU's
        /// arguments when empty.
        cmdline: String,
    },
    /// A `raw-efi` or `qcow2-efi` disk image or an `iso-efi` CD image, booted by UEFI firmware
    /// (`-bios`); the command line is inside the image. A disk is the first virtio disk, a CD a SCSI CD
    /// drive on virtio-scsi (which OVMF and AAVMF boot from on every machine type).
    Uefi {
        firmware: PathBuf,
        image: PathBuf,
        media: Media,
    },
    /// An `iso-bios` CD image or a `raw-bios`, `qcow2-bios`, `vhd` or `vmdk` disk image, booted by QEMU's own
    /// PC BIOS (SeaBIOS) from the drive a UEFI image of that kind uses; the command line is
    /// inside the image. amd64 only.
    Bios { image: PathBuf, media: Media },
}

/// How a UEFI boot image is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    Disk,
    Cdrom,
}

/// Everything that decides the QEMU command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    pub arch: Arch,
    pub memory_mib: u32,
    pub cpus: u32,
    pub boot: Boot,
    pub disks: Vec<Disk>,
    pub networking: Networking,
}

/// The kernel command line: the output's own (`NAME-cmdline`), then the user's `--append`
/// arguments, then what an unattended run needs if neither says otherwise:
/// - `console=ttyS0` / `console=ttyAMA0`, so the console reaches QEMU's stdio;
/// - `panic=-1`, so a kernel panic reboots at once, which `-no-reboot` turns into the end of
///   the run (reported as a reboot) instead of a hang until the timeout.
///
/// Defaults go before a `--` (everything after it is for init, not the kernel).
/// Whitespace between words is normalised to single spaces.
pub fn kernel_cmdline(base: &str, append: &[String], arch: Arch) -> String {
    let mut words: Vec<&str> = base.split_whitespace().collect();
    words.extend(append.iter().flat_map(|a| a.split_whitespace()));
    let kernel_end = words.iter().position(|w| *w == "--").unwrap_or(words.len());
    let has = |key: &str| words[..kernel_end].iter().any(|w| w.starts_with(key));
    let console = format!("console={}", arch.console());
    let mut defaults: Vec<&str> = Vec::new();
    if !has("console=") {
        defaults.push(&console);
    }
    if !has("panic=") {
        defaults.push("panic=-1");
    }
    let mut out: Vec<&str> = Vec::with_capacity(words.len() + defaults.len());
    out.extend(&words[..kernel_end]);
    out.extend(defaults);
    out.extend(&words[kernel_end..]);
    out.join(" ")
}

/// `image` as the first boot device: the first virtio disk (raw, or qcow2 for a `.qcow2`), or
/// a SCSI CD drive on virtio-scsi.
fn boot_image(args: &mut Args, disks: &mut Vec<Disk>, image: &Path, media: Media) {
    if media == Media::Disk {
        disks.push(Disk {
            path: image.to_path_buf(),
            format: Some(crate::files::disk_format(image).into()),
        });
        return;
    }
    let mut drive = OsString::from("file=");
    drive.push(escape_option_value(image.as_os_str()));
    drive.push(",if=none,id=cd0,media=cdrom,readonly=on,format=raw");
    args.push2("-drive", drive);
    args.push2("-device", "virtio-scsi-pci,id=scsi0");
    args.push2("-device", "scsi-cd,bus=scsi0.0,drive=cd0,bootindex=0");
}

/// The arguments (without the program) that boot `spec` under `accel`, with QEMU's QMP
/// monitor connecting to the unix socket `qmp_socket` (on which the caller listens).
pub fn qemu_args(spec: &VmSpec, accel: Accel, qmp_socket: &Path) -> Vec<OsString> {
    let mut args = Args::default();
    match (spec.arch, accel) {
        (Arch::Amd64, _) => args.push2("-machine", "q35"),
        (Arch::Arm64, Accel::Tcg) => args.push2("-machine", "virt"),
        (Arch::Arm64, Accel::Kvm) => args.push2("-machine", "virt,gic-version=host"),
    }
    args.push2("-accel", accel.as_str());
    match (spec.arch, accel) {
        (_, Accel::Kvm) => args.push2("-cpu", "host"),
        (Arch::Arm64, Accel::Tcg) => args.push2("-cpu", "cortex-a57"),
        (Arch::Amd64, Accel::Tcg) => {}
    }
    args.push2("-smp", spec.cpus.to_string());
    args.push2("-m", spec.memory_mib.to_string());
    args.push("-nographic");
    args.push("-no-reboot");
    let mut disks: Vec<Disk> = Vec::with_capacity(spec.disks.len() + 1);
    match &spec.boot {
        Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            args.push2("-kernel", kernel);
            args.push2("-initrd", initrd);
            if !cmdline.is_empty() {
                args.push2("-append", cmdline);
            }
        }
        Boot::Uefi {
            firmware,
            image,
            media,
        } => {
            args.push2("-bios", firmware);
            boot_image(&mut args, &mut disks, image, *media);
        }
        Boot::Bios { image, media } => boot_image(&mut args, &mut disks, image, *media),
    }
    disks.extend(spec.disks.iter().cloned());
    args.push2("-object", "rng-random,id=rng0,filename=/dev/urandom");
    args.push2("-device", "virtio-rng-pci,rng=rng0");
    match spec.networking {
        Networking::None => args.push2("-nic", "none"),
        Networking::User => {
            args.push2("-netdev", "user,id=net0");
            // romfile= skips the iPXE boot ROM: the kernel is loaded directly, and QEMU would
            // otherwise fail where the ipxe-qemu package is missing.
            args.push2("-device", "virtio-net-pci,netdev=net0,romfile=");
        }
    }
    for disk in &disks {
        let mut drive = OsString::from("file=");
        drive.push(escape_option_value(disk.path.as_os_str()));
        drive.push(",if=virtio");
        if let Some(format) = &disk.format {
            drive.push(",format=");
            drive.push(escape_option_value(format.as_ref()));
        }
        args.push2("-drive", drive);
    }
    // QEMU connects to oxkit's socket as a client (server=off): it fails at once if it cannot,
    // and never prints "waiting for connection" as a listening QMP server does.
    let mut qmp = OsString::from("socket,id=qmp0,path=");
    qmp.push(escape_option_value(qmp_socket.as_os_str()));
    qmp.push(",server=off");
    args.push2("-chardev", qmp);
    args.push2("-mon", "chardev=qmp0,mode=control");
    args.0
}

/// The arguments of the KVM probe: `kernel` alone (no initrd, no root) under KVM with no
/// devices and no console. A working KVM boots it to "cannot mount root" in about a second;
/// the kernel panics, `panic=-1` reboots, and `-no-reboot` makes QEMU exit 0.
pub(crate) fn kvm_probe_args(arch: Arch, kernel: &Path) -> Vec<OsString> {
    let mut args = Args::default();
    args.push2(
        "-machine",
        match arch {
            Arch::Amd64 => "q35",
            Arch::Arm64 => "virt,gic-version=host",
        },
    );
    args.push2("-accel", "kvm");
    args.push2("-cpu", "host");
    args.push2("-m", "256");
    args.push("-nodefaults");
    args.push2("-display", "none");
    args.push("-no-reboot");
    args.push2("-kernel", kernel);
    args.push2("-append", "panic=-1 loglevel=0");
    args.0
}

/// QEMU option values are comma-separated `key=value` lists; a literal comma is written `,,`.
fn escape_option_value(value: &std::ffi::OsStr) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, a: impl Into<OsString>) {
        self.0.push(a.into());
    }
    fn push2(&mut self, flag: &str, value: impl AsRef<std::ffi::OsStr>) {
        self.0.push(flag.into());
        self.0.push(value.as_ref().to_os_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(arch: Arch) -> VmSpec {
        VmSpec {
            arch,
            memory_mib: 1024,
            cpus: 2,
            boot: Boot::Kernel {
                kernel: PathBuf::from("out/minimal-kernel"),
                initrd: PathBuf::from("out/minimal-initrd.img"),
                cmdline: "console=ttyS0 panic=-1".into(),
            },
            disks: vec![],
            networking: Networking::None,
        }
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn amd64_under_tcg() {
        let args = strings(qemu_args(
            &spec(Arch::Amd64),
            Accel::Tcg,
            Path::new("/run/q.sock"),
        ));
        let expected = [
            "-machine",
            "q35",
            "-accel",
            "tcg",
            "-smp",
            "2",
            "-m",
            "1024",
            "-nographic",
            "-no-reboot",
            "-kernel",
            "out/minimal-kernel",
            "-initrd",
            "out/minimal-initrd.img",
            "-append",
            "console=ttyS0 panic=-1",
            "-object",
            "rng-random,id=rng0,filename=/dev/urandom",
            "-device",
            "virtio-rng-pci,rng=rng0",
            "-nic",
            "none",
            "-chardev",
            "socket,id=qmp0,path=/run/q.sock,server=off",
            "-mon",
            "chardev=qmp0,mode=control",
        ];
        assert_eq!(args, expected);
    }

    #[test]
    fn arm64_under_tcg_uses_virt_and_a_cortex_a57() {
        let args = strings(qemu_args(&spec(Arch::Arm64), Accel::Tcg, Path::new("/q")));
        assert_eq!(
            args[..6],
            ["-machine", "virt", "-accel", "tcg", "-cpu", "cortex-a57"]
        );
    }

    #[test]
    fn kvm_uses_the_host_cpu() {
        let amd = strings(qemu_args(&spec(Arch::Amd64), Accel::Kvm, Path::new("/q")));
        assert_eq!(
            amd[..6],
            ["-machine", "q35", "-accel", "kvm", "-cpu", "host"]
        );
        let arm = strings(qemu_args(&spec(Arch::Arm64), Accel::Kvm, Path::new("/q")));
        assert_eq!(
            arm[..6],
            [
                "-machine",
                "virt,gic-version=host",
                "-accel",
                "kvm",
                "-cpu",
                "host"
            ]
        );
    }

    #[test]
    fn an_empty_cmdline_is_not_passed() {
        let mut s = spec(Arch::Amd64);
        if let Boot::Kernel { cmdline, .. } = &mut s.boot {
            cmdline.clear();
        }
        let args = strings(qemu_args(&s, Accel::Tcg, Path::new("/q")));
        assert!(!args.iter().any(|a| a == "-append"), "{args:?}");
    }

    #[test]
    fn uefi_boots_the_disk_image_first_with_the_firmware_and_no_kernel() {
        let mut s = spec(Arch::Amd64);
        s.boot = Boot::Uefi {
            firmware: "/usr/share/ovmf/OVMF.fd".into(),
            image: "out/minimal-efi.img".into(),
            media: Media::Disk,
        };
        s.disks = vec![Disk::parse("data.img").expect("disk")];
        let args = strings(qemu_args(&s, Accel::Tcg, Path::new("/q")));
        let joined = args.join(" ");
        assert!(joined.contains("-bios /usr/share/ovmf/OVMF.fd"), "{joined}");
        assert!(
            joined.contains(
                "-drive file=out/minimal-efi.img,if=virtio,format=raw -drive file=data.img,if=virtio"
            ),
            "{joined}"
        );
        // A qcow2-efi disk is attached as qcow2.
        s.boot = Boot::Uefi {
            firmware: "/usr/share/ovmf/OVMF.fd".into(),
            image: "out/minimal-efi.qcow2".into(),
            media: Media::Disk,
        };
        let joined = strings(qemu_args(&s, Accel::Tcg, Path::new("/q"))).join(" ");
        assert!(
            joined.contains("-drive file=out/minimal-efi.qcow2,if=virtio,format=qcow2 -drive"),
            "{joined}"
        );
        for flag in ["-kernel", "-initrd", "-append"] {
            assert!(!args.iter().any(|a| a == flag), "{flag}: {joined}");
        }
        // An ISO goes in a CD drive the firmware boots first.
        s.boot = Boot::Uefi {
            firmware: "/fw".into(),
            image: "out/a,b-efi.iso".into(),
            media: Media::Cdrom,
        };
        s.disks.clear();
        let joined = strings(qemu_args(&s, Accel::Tcg, Path::new("/q"))).join(" ");
        assert!(
            joined.contains(
                "-bios /fw -drive file=out/a,,b-efi.iso,if=none,id=cd0,media=cdrom,readonly=on,format=raw \
                 -device virtio-scsi-pci,id=scsi0 -device scsi-cd,bus=scsi0.0,drive=cd0,bootindex=0"
            ),
            "{joined}"
        );
        assert!(!joined.contains("if=virtio"), "{joined}");
    }

    #[test]
    fn a_bios_cd_boots_from_the_cd_drive_with_qemus_own_firmware() {
        let mut s = spec(Arch::Amd64);
        s.boot = Boot::Bios {
            image: "out/minimal.iso".into(),
            media: Media::Cdrom,
        };
        let args = strings(qemu_args(&s, Accel::Tcg, Path::new("/q")));
        let joined = args.join(" ");
        assert!(
            joined.contains(
                "-drive file=out/minimal.iso,if=none,id=cd0,media=cdrom,readonly=on,format=raw \
                 -device virtio-scsi-pci,id=scsi0 -device scsi-cd,bus=scsi0.0,drive=cd0,bootindex=0"
            ),
            "{joined}"
        );
        for flag in ["-bios", "-kernel", "-initrd", "-append"] {
            assert!(!args.iter().any(|a| a == flag), "{flag}: {joined}");
        }
        // A BIOS disk is the first virtio disk, qcow2, raw, VHD or VMDK.
        for (image, format) in [
            ("out/minimal.qcow2", "qcow2"),
            ("out/minimal-bios.img", "raw"),
            ("out/minimal.vhd", "vpc"),
            ("out/minimal.vmdk", "vmdk"),
        ] {
            s.boot = Boot::Bios {
                image: image.into(),
                media: Media::Disk,
            };
            let args = strings(qemu_args(&s, Accel::Tcg, Path::new("/q")));
            let joined = args.join(" ");
            assert!(
                joined.contains(&format!("-drive file={image},if=virtio,format={format}")),
                "{joined}"
            );
            assert!(
                !args.iter().any(|a| a == "-bios" || a == "-cdrom"),
                "{joined}"
            );
        }
    }

    #[test]
    fn user_networking_and_disks() {
        let mut s = spec(Arch::Amd64);
        s.networking = Networking::User;
        s.disks = vec![
            Disk {
                path: "a,b.img".into(),
                format: Some("raw".into()),
            },
            Disk::parse("file=/d/two.qcow2,format=qcow2").expect("disk"),
        ];
        let args = strings(qemu_args(&s, Accel::Tcg, Path::new("/tmp/x,y/q.sock")));
        let joined = args.join(" ");
        assert!(
            joined.contains("-netdev user,id=net0 -device virtio-net-pci,netdev=net0,romfile="),
            "{joined}"
        );
        assert!(!args.iter().any(|a| a == "-nic"), "{joined}");
        assert!(
            joined.contains("-drive file=a,,b.img,if=virtio,format=raw -drive file=/d/two.qcow2,if=virtio,format=qcow2"),
            "{joined}"
        );
        assert!(
            joined.ends_with(
                "-chardev socket,id=qmp0,path=/tmp/x,,y/q.sock,server=off -mon chardev=qmp0,mode=control"
            ),
            "{joined}"
        );
    }

    #[test]
    fn the_kvm_probe_boots_only_the_kernel_silently() {
        let args = strings(kvm_probe_args(Arch::Amd64, Path::new("/k")));
        let expected = [
            "-machine",
            "q35",
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            "/k",
            "-append",
            "panic=-1 loglevel=0",
        ];
        assert_eq!(args, expected);
        let arm = strings(kvm_probe_args(Arch::Arm64, Path::new("/k")));
        assert_eq!(arm[1], "virt,gic-version=host");
    }

    #[test]
    fn disk_parsing() {
        assert_eq!(
            Disk::parse("disk.img").expect("plain"),
            Disk {
                path: "disk.img".into(),
                format: None
            }
        );
        assert_eq!(
            Disk::parse("file=d.qcow2,format=qcow2").expect("keys"),
            Disk {
                path: "d.qcow2".into(),
                format: Some("qcow2".into())
            }
        );
        for bad in ["", "format=raw", "file=", "d.img,size=1G", "d.img,bus=ide"] {
            let err = Disk::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("--disk"), "{bad}: {err}");
        }
    }

    #[test]
    fn cmdline_adds_console_and_panic_when_missing() {
        assert_eq!(
            kernel_cmdline("", &[], Arch::Amd64),
            "console=ttyS0 panic=-1"
        );
        assert_eq!(
            kernel_cmdline("quiet\n", &[], Arch::Arm64),
            "quiet console=ttyAMA0 panic=-1"
        );
    }

    #[test]
    fn cmdline_keeps_what_the_image_or_user_chose() {
        // LinuxKit's usual cmdline names several consoles: keep them all, add nothing.
        assert_eq!(
            kernel_cmdline(
                "console=tty0 console=ttyS0 console=ttyAMA0",
                &[],
                Arch::Arm64
            ),
            "console=tty0 console=ttyS0 console=ttyAMA0 panic=-1"
        );
        assert_eq!(
            kernel_cmdline(
                "console=ttyS0",
                &["panic=30".into(), "loglevel=7".into()],
                Arch::Amd64
            ),
            "console=ttyS0 panic=30 loglevel=7"
        );
    }

    #[test]
    fn cmdline_defaults_go_before_init_arguments() {
        assert_eq!(
            kernel_cmdline("quiet -- single console=x", &[], Arch::Amd64),
            "quiet console=ttyS0 panic=-1 -- single console=x"
        );
    }
}
