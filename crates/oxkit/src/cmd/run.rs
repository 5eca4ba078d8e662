//! `oxkit run qemu`: boots a kernel+initrd output, a UEFI one (raw-efi, qcow2-efi, iso-efi) or
//! an iso-bios one, in QEMU with the guest console on stdout, like `linuxkit run qemu`. Exit code 0 only when the guest powers off; 1 when it times out,
//! reboots, panics or QEMU fails (with one `error:` line saying which); 2 for bad flags.
//! The work is in `oxkit-vm`; here flags become a `VmSpec` and the outcome a message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use oxkit_vm::{
    Accel, AccelChoice, AccelDecision, Arch, Boot, BootFiles, Disk, KVM_PROBE_TIMEOUT, Media,
    Networking, VmSpec,
};

use crate::output::Printer;
use crate::settings::GlobalArgs;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(subcommand)]
    command: RunCommand,
}

#[derive(Debug, Subcommand)]
enum RunCommand {
    /// Boot a kernel+initrd output (NAME-kernel, NAME-initrd.img, NAME-cmdline) in QEMU, a
    /// raw-efi (NAME-efi.img), qcow2-efi (NAME-efi.qcow2) or iso-efi (NAME-efi.iso, or
    /// iso-efi-initrd's NAME-efi-initrd.iso) output
    /// under UEFI firmware, or an iso-bios (NAME.iso), raw-bios (NAME-bios.img), qcow2-bios
    /// (NAME.qcow2), vhd (NAME.vhd) or vmdk (NAME.vmdk) output under the PC BIOS
    ///
    /// The guest's serial console is on stdout. The kernel command line is NAME-cmdline, then
    /// the --append arguments, plus console=ttyS0 (amd64) or console=ttyAMA0 (arm64) and
    /// panic=-1 unless already set. With --uefi, OVMF or AAVMF boots NAME-efi.img, else
    /// NAME-efi.qcow2; with --iso, NAME-efi.iso (else NAME-efi-initrd.iso) from a CD drive (or
    /// NAME.iso under the BIOS
    /// when there is no NAME-efi.iso); with --bios, NAME-bios.img, NAME.qcow2, NAME.vhd,
    /// NAME.vmdk or NAME.iso. The
    /// command line of those is the one inside the image. Without NAME-kernel, the first of
    /// those NAME has is booted. QEMU runs with -no-reboot, so a reboot ends the run. Exit
    /// status: 0 when the guest powers off; 1 when it reboots or panics, the timeout expires
    /// or QEMU fails; 2 for bad flags.
    Qemu(QemuArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NetworkingArg {
    /// No network device
    None,
    /// QEMU user-mode networking on virtio-net
    User,
}

#[derive(Debug, Args)]
struct QemuArgs {
    /// The output's name: the path prefix of its files, e.g. `out/minimal`
    #[arg(value_name = "NAME")]
    name: PathBuf,
    /// Guest architecture: amd64 (x86_64) or arm64 (aarch64) [default: the host's]
    #[arg(long, value_parser = parse_arch, value_name = "ARCH")]
    arch: Option<Arch>,
    /// Guest memory, e.g. 1024M or 2G (a bare number is MiB)
    #[arg(long, default_value = "1024M", value_parser = parse_mem, value_name = "SIZE")]
    mem: u32,
    /// Number of virtual CPUs
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    cpus: u32,
    /// Accelerator: tcg (software, works everywhere), kvm, or auto (probe KVM briefly and fall
    /// back to TCG). KVM hangs on hosts where /dev/kvm exists but does not work: prefer tcg or auto
    #[arg(long, default_value = "tcg", env = "OXKIT_QEMU_ACCEL", value_parser = parse_accel, value_name = "ACCEL")]
    accel: AccelChoice,
    /// Kill the VM and fail if the guest has not powered off after this long (e.g. 90s, 5m)
    #[arg(long, value_parser = parse_timeout, value_name = "DURATION")]
    timeout: Option<Duration>,
    /// Extra kernel command-line argument (repeatable), after the output's own cmdline
    #[arg(long = "append", value_name = "ARG")]
    append: Vec<String>,
    /// Attach a disk as a virtio block device (repeatable): [file=]PATH[,format=raw|qcow2]
    #[arg(long = "disk", value_parser = parse_disk, value_name = "DISK")]
    disks: Vec<Disk>,
    /// Networking mode
    #[arg(long, value_enum, default_value = "user")]
    networking: NetworkingArg,
    /// QEMU binary [default: qemu-system-x86_64 or qemu-system-aarch64 from PATH]
    #[arg(long, value_name = "PATH")]
    qemu: Option<PathBuf>,
    /// Boot NAME-efi.img (a raw-efi output), else NAME-efi.qcow2 (qcow2-efi), with UEFI firmware
    #[arg(long, conflicts_with = "append")]
    uefi: bool,
    /// Boot an ISO from a CD drive: NAME-efi.iso (an iso-efi output; else NAME-efi-initrd.iso,
    /// iso-efi-initrd) with UEFI firmware, or NAME.iso (iso-bios) with the PC BIOS when there is
    /// neither
    #[arg(long, conflicts_with = "append")]
    iso: bool,
    /// Boot NAME-bios.img (raw-bios), else NAME.qcow2 (qcow2-bios), else NAME.vhd (vhd), else
    /// NAME.vmdk (vmdk), else NAME.iso (iso-bios, from a CD drive; with --iso always) with QEMU's PC BIOS (amd64)
    #[arg(long, conflicts_with_all = ["append", "uefi", "firmware"])]
    bios: bool,
    /// UEFI firmware for --uefi [default: Debian's OVMF (ovmf) or AAVMF (qemu-efi-aarch64)]
    #[arg(long, value_name = "FILE")]
    firmware: Option<PathBuf>,
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse().map_err(|e: oxkit_vm::VmError| e.to_string())
}

fn parse_mem(s: &str) -> Result<u32, String> {
    oxkit_vm::parse_memory_mib(s).map_err(|e| e.to_string())
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    oxkit_vm::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_accel(s: &str) -> Result<AccelChoice, String> {
    s.parse()
}

fn parse_disk(s: &str) -> Result<Disk, String> {
    Disk::parse(s).map_err(|e| e.to_string())
}

pub fn run(_global: &GlobalArgs, printer: &Printer, args: RunArgs) -> Result<()> {
    match args.command {
        RunCommand::Qemu(a) => qemu(printer, a),
    }
}

fn qemu(printer: &Printer, args: QemuArgs) -> Result<()> {
    let arch = match args.arch.or_else(Arch::host) {
        Some(arch) => arch,
        None => bail!(
            "cannot guess the guest architecture on this host: pass --arch amd64 or --arch arm64"
        ),
    };
    let choice = choose_boot(&args);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let qemu = oxkit_vm::find_qemu(arch, args.qemu.as_deref(), &path)?;
    // The KVM probe boots a bare kernel, which a disk or CD image does not offer: for those,
    // `auto` means TCG.
    let image_accel = |probe: &Path| -> Result<AccelDecision> {
        Ok(match args.accel {
            AccelChoice::Auto => AccelDecision {
                accel: Accel::Tcg,
                note: Some("--accel auto: no KVM probe for a disk or CD boot; using tcg".into()),
            },
            choice => oxkit_vm::resolve_accel(
                choice,
                arch,
                &qemu,
                probe,
                Path::new("/dev/kvm"),
                KVM_PROBE_TIMEOUT,
            )?,
        })
    };
    if choice != BootChoice::Kernel && !args.append.is_empty() {
        bail!(
            "--append cannot change the command line of a disk or CD image: it is inside the image; rebuild it with another cmdline"
        );
    }
    let (boot, decision) = match choice {
        BootChoice::Uefi(media) => {
            let image = oxkit_vm::efi_image(&args.name, media)?;
            let firmware = oxkit_vm::uefi_firmware(arch, args.firmware.as_deref())?;
            let decision = image_accel(&firmware)?;
            (
                Boot::Uefi {
                    firmware,
                    image,
                    media,
                },
                decision,
            )
        }
        BootChoice::Bios(media) => {
            if arch != Arch::Amd64 {
                bail!(
                    "{} is a BIOS image, for PCs: it boots only as amd64 (use --arch amd64, or build {arch} images as iso-efi or raw-efi)",
                    args.name.display()
                );
            }
            let image = oxkit_vm::bios_image(&args.name, media)?;
            let decision = image_accel(&image)?;
            (Boot::Bios { image, media }, decision)
        }
        BootChoice::Kernel => {
            let files = BootFiles::from_prefix(&args.name)?;
            let decision = oxkit_vm::resolve_accel(
                args.accel,
                arch,
                &qemu,
                &files.kernel,
                Path::new("/dev/kvm"),
                KVM_PROBE_TIMEOUT,
            )?;
            let boot = Boot::Kernel {
                cmdline: oxkit_vm::kernel_cmdline(&files.cmdline, &args.append, arch),
                kernel: files.kernel,
                initrd: files.initrd,
            };
            (boot, decision)
        }
    };
    if let Some(note) = &decision.note {
        printer.status(note);
    }
    let spec = VmSpec {
        arch,
        memory_mib: args.mem,
        cpus: args.cpus,
        boot,
        disks: args.disks,
        networking: match args.networking {
            NetworkingArg::None => Networking::None,
            NetworkingArg::User => Networking::User,
        },
    };
    printer.status(format!(
        "booting {}{} ({arch}, {}, {} MiB, {} CPU{}{})",
        args.name.display(),
        match choice {
            BootChoice::Kernel => "",
            BootChoice::Uefi(Media::Disk) => " under UEFI",
            BootChoice::Uefi(Media::Cdrom) => " under UEFI from CD",
            BootChoice::Bios(Media::Disk) => " under BIOS",
            BootChoice::Bios(Media::Cdrom) => " under BIOS from CD",
        },
        decision.accel.as_str(),
        spec.memory_mib,
        spec.cpus,
        if spec.cpus == 1 { "" } else { "s" },
        args.timeout
            .map(|t| format!(", timeout {:.1} s", t.as_secs_f64()))
            .unwrap_or_default()
    ));
    let report = oxkit_vm::run(&qemu, &spec, decision.accel, args.timeout)
        .with_context(|| format!("running {}", args.name.display()))?;
    if report.outcome.is_success() {
        printer.status(format!(
            "{} after {:.1} s",
            report.outcome,
            report.elapsed.as_secs_f64()
        ));
        Ok(())
    } else {
        bail!(
            "{}: {} ({:.1} s after start)",
            args.name.display(),
            report.outcome,
            report.elapsed.as_secs_f64()
        )
    }
}

/// What `run qemu` boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BootChoice {
    Kernel,
    Uefi(Media),
    Bios(Media),
}

/// The boot the flags ask for, else the one the files NAME has allow: a kernel+initrd output
/// first, then a UEFI disk (raw or qcow2), a UEFI CD, a BIOS disk (raw or qcow2) and a BIOS
/// CD. `--iso` means the UEFI CD when there is one or UEFI is asked for, else the BIOS CD;
/// `--bios` the BIOS disk when there is one, else (or with `--iso`) the BIOS CD.
fn choose_boot(args: &QemuArgs) -> BootChoice {
    let has = |suffix| suffixed(&args.name, suffix).is_file();
    let kernel = suffixed(&args.name, "-kernel").exists();
    let efi_disk = has("-efi.img") || has("-efi.qcow2");
    let efi_cd = has("-efi.iso") || has("-efi-initrd.iso");
    let bios_disk = has("-bios.img") || has(".qcow2") || has(".vhd") || has(".vmdk");
    let bios_cd = has(".iso");
    let uefi_asked = args.uefi || args.firmware.is_some();
    if args.bios {
        if args.iso || (!bios_disk && bios_cd) {
            BootChoice::Bios(Media::Cdrom)
        } else {
            BootChoice::Bios(Media::Disk)
        }
    } else if args.iso {
        if uefi_asked || efi_cd || !bios_cd {
            BootChoice::Uefi(Media::Cdrom)
        } else {
            BootChoice::Bios(Media::Cdrom)
        }
    } else if args.uefi || (kernel && uefi_asked) {
        BootChoice::Uefi(Media::Disk)
    } else if kernel {
        BootChoice::Kernel
    } else if efi_disk {
        BootChoice::Uefi(Media::Disk)
    } else if efi_cd {
        BootChoice::Uefi(Media::Cdrom)
    } else if uefi_asked {
        BootChoice::Uefi(Media::Disk)
    } else if bios_disk {
        BootChoice::Bios(Media::Disk)
    } else if bios_cd {
        BootChoice::Bios(Media::Cdrom)
    } else {
        BootChoice::Kernel
    }
}

fn suffixed(name: &Path, suffix: &str) -> PathBuf {
    let mut s = name.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}
