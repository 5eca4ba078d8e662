//! `oxkit doctor`: reports what this host can do for oxkit (root or user namespaces, mount
//! namespaces, overlayfs, binfmt handlers for other architectures, QEMU, KVM, cgroups, the EFI
//! stubs and UEFI firmware for the UEFI formats, ISOLINUX for `iso-bios`), one line per check
//! with the fix for anything missing. A report, so it exits 0 unless `--strict`.
//!
//! The probing lives in `oxkit_sandbox::probe`; the boot files are looked for where
//! `oxkit build` and `oxkit run qemu` look (`oxkit_assembly::default_efi_stub`,
//! `oxkit_vm::uefi_firmware`, `oxkit_assembly::Isolinux::find`). Here only flags, environment
//! and printing.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use oxkit_sandbox::probe::{self, Check, HostReport, ProbeOptions, Status};
use oxkit_vm::Arch;
use serde::Serialize;

use crate::output::Printer;
use crate::settings::GlobalArgs;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Exit with status 1 when any check is missing (by default the report always exits 0)
    #[arg(long)]
    strict: bool,

    /// Seconds the KVM probe guest may run before KVM is declared hung
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    kvm_timeout: f64,

    /// binfmt_misc directory to inspect instead of /proc/sys/fs/binfmt_misc
    #[arg(long, hide = true, value_name = "DIR")]
    binfmt_dir: Option<PathBuf>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    /// True when nothing is missing.
    ok: bool,
    checks: Vec<JsonCheck<'a>>,
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    id: &'a str,
    status: &'static str,
    summary: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<&'a str>,
}

pub fn run(_global: &GlobalArgs, printer: &Printer, args: DoctorArgs) -> Result<()> {
    if !(args.kvm_timeout.is_finite() && args.kvm_timeout > 0.0 && args.kvm_timeout <= 600.0) {
        bail!(
            "--kvm-timeout must be between 0 and 600 seconds, got {}",
            args.kvm_timeout
        );
    }
    let search_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut opts = ProbeOptions::new(search_path, std::env::temp_dir());
    opts.kvm_timeout = Duration::from_secs_f64(args.kvm_timeout);
    if let Some(dir) = args.binfmt_dir {
        opts.binfmt_dir = dir;
    }
    let mut report = probe::probe_host(&opts);
    report.checks.extend(uefi_checks());
    report.checks.push(bios_check());
    print(printer, &report);
    let missing: Vec<&str> = report.missing().map(|c| c.id.as_str()).collect();
    if args.strict && !missing.is_empty() {
        bail!("{} check(s) missing: {}", missing.len(), missing.join(", "));
    }
    Ok(())
}

/// What `build --format raw-efi` and `run qemu --uefi` need, per architecture: systemd's EFI
/// stub (only the host's can be installed; another architecture's is passed with `--efi-stub`,
/// so its absence is only information) and UEFI firmware.
fn uefi_checks() -> Vec<Check> {
    let host = Arch::host();
    let mut checks = Vec::new();
    for (arch, firmware_package) in [(Arch::Amd64, "ovmf"), (Arch::Arm64, "qemu-efi-aarch64")] {
        let name = arch.as_str();
        let stub = oxkit_assembly::default_efi_stub(name).filter(|p| p.is_file());
        checks.push(match stub {
            Some(p) => Check {
                id: format!("efi-stub/{name}"),
                status: Status::Ok,
                summary: p.display().to_string(),
                fix: None,
            },
            None if host == Some(arch) => Check {
                id: format!("efi-stub/{name}"),
                status: Status::Missing,
                summary: "systemd's EFI stub not found: the UEFI formats (raw-efi, iso-efi, qcow2-efi) cannot be built".into(),
                fix: Some("apt-get install systemd-boot-efi, or pass --efi-stub FILE".into()),
            },
            None => Check {
                id: format!("efi-stub/{name}"),
                status: Status::Info,
                summary: format!("the UEFI formats for {name} need its stub passed with --efi-stub"),
                fix: Some(format!(
                    "apt-get download systemd-boot-efi:{name} && dpkg-deb -x systemd-boot-efi_*_{name}.deb DIR"
                )),
            },
        });
        checks.push(match oxkit_vm::uefi_firmware(arch, None) {
            Ok(p) => Check {
                id: format!("uefi-firmware/{name}"),
                status: Status::Ok,
                summary: p.display().to_string(),
                fix: None,
            },
            Err(_) => Check {
                id: format!("uefi-firmware/{name}"),
                status: Status::Missing,
                summary: "no UEFI firmware: run qemu --uefi cannot boot the UEFI formats".into(),
                fix: Some(format!("apt-get install {firmware_package}")),
            },
        });
    }
    checks
}

/// What `build --format iso-bios` needs: ISOLINUX's files where `oxkit build` looks for them
/// (only PCs boot it, so only an amd64 host misses them).
fn bios_check() -> Check {
    let files = oxkit_assembly::Isolinux::find(None);
    let missing: Vec<String> = files
        .files()
        .into_iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    let id = "isolinux".to_string();
    if missing.is_empty() {
        return Check {
            id,
            status: Status::Ok,
            summary: files.files().map(|p| p.display().to_string()).join(", "),
            fix: None,
        };
    }
    Check {
        id,
        status: if Arch::host() == Some(Arch::Amd64) {
            Status::Missing
        } else {
            Status::Info
        },
        summary: format!(
            "{} not found: iso-bios cannot be built",
            missing.join(" and ")
        ),
        fix: Some("apt-get install isolinux syslinux-common, or pass --syslinux DIR".into()),
    }
}

fn label(status: Status) -> &'static str {
    match status {
        Status::Ok => "OK",
        Status::Missing => "MISSING",
        Status::Info => "INFO",
    }
}

fn print(printer: &Printer, report: &HostReport) {
    if printer.is_json() {
        printer.json(&JsonReport {
            ok: report.missing().next().is_none(),
            checks: report
                .checks
                .iter()
                .map(|c| JsonCheck {
                    id: &c.id,
                    status: c.status.as_str(),
                    summary: &c.summary,
                    fix: c.fix.as_deref(),
                })
                .collect(),
        });
        return;
    }
    let width = report.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for c in &report.checks {
        printer.data(format!(
            "{:<7}  {:<width$}  {}",
            label(c.status),
            c.id,
            c.summary
        ));
        if c.status != Status::Ok
            && let Some(fix) = &c.fix
        {
            printer.data(format!("{:<7}  {:<width$}  fix: {fix}", "", ""));
        }
    }
}
