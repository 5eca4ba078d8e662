//! `oxkit run qemu`: boots a kernel+initrd output, or a UEFI one (raw-efi, qcow2-efi, iso-efi), in
//! QEMU with the guest console on stdout, like `linuxkit run qemu`. Exit code 0 only when the guest powers off; 1 when it times out,
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
    /// Boot a kernel+initrd output (NAME-kernel, NAME-initrd.img, NAME-cmdline) in QEMU, or
    /// a raw-efi (NAME-efi.img), qcow2-efi (NAME-efi.qcow2) or iso-efi (NAME-efi.iso) output
    /// under UEFI firmware
    ///
    /// The guest's serial console is on stdout. The kernel command line is NAME-cmdline, then
    /// the --append arguments, plus console=ttyS0 (amd64) or console=ttyAMA0 (arm64) and
    /// panic=-1 unless already set. With --uefi, OVMF or AAVMF boots NAME-efi.img, else
    /// NAME-efi.qcow2 (with --iso, NAME-efi.iso from a CD drive) and the command line is the one inside it; that is the
    /// default when there is no NAME-kernel but one of those. QEMU runs with -no-reboot, so a
    /// reboot ends the run. Exit status: 0 when the guest powers off; 1 when it reboots or
    /// panics, the timeout expires or QEMU fails; 2 for bad flags.
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
    /// Boot NAME-efi.iso (an iso-efi output) from a CD drive with UEFI firmware
    #[arg(long, conflicts_with = "append")]
    iso: bool,
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
    // A UEFI output alone is booted as one, without asking for --uefi.
    let alone = |suffix| {
        !suffixed(&args.name, "-kernel").exists() && suffixed(&args.name, suffix).is_file()
    };
    let disk_alone = alone("-efi.img") || alone("-efi.qcow2");
    let media = if args.iso || (!args.uefi && !disk_alone && alone("-efi.iso")) {
        Media::Cdrom
    } else {
        Media::Disk
    };
    let uefi = args.uefi || args.iso || args.firmware.is_some() || disk_alone || alone("-efi.iso");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let qemu = oxkit_vm::find_qemu(arch, args.qemu.as_deref(), &path)?;
    let (boot, decision) = if uefi {
        if !args.append.is_empty() {
            bail!(
                "--append cannot change a UEFI output's command line: it is inside the image; rebuild it with another cmdline"
            );
        }
        let image = oxkit_vm::efi_image(&args.name, media)?;
        let firmware = oxkit_vm::uefi_firmware(arch, args.firmware.as_deref())?;
        // The KVM probe boots a bare kernel, which a disk image does not offer: `auto` means TCG.
        let decision = match args.accel {
            AccelChoice::Auto => AccelDecision {
                accel: Accel::Tcg,
                note: Some("--accel auto: no KVM probe for a UEFI boot; using tcg".into()),
            },
            choice => oxkit_vm::resolve_accel(
                choice,
                arch,
                &qemu,
                &firmware,
                Path::new("/dev/kvm"),
                KVM_PROBE_TIMEOUT,
            )?,
        };
        (
            Boot::Uefi {
                firmware,
                image,
                media,
            },
            decision,
        )
    } else {
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
        match (uefi, media) {
            (false, _) => "",
            (true, Media::Disk) => " under UEFI",
            (true, Media::Cdrom) => " under UEFI from CD",
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

fn suffixed(name: &Path, suffix: &str) -> PathBuf {
    let mut s = name.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}
