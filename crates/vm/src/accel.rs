//! Choosing between KVM and TCG. `/dev/kvm` existing proves nothing: on paravirtual hosts it
//! opens and answers ioctls while every guest hangs or QEMU aborts. So `auto` boots the very
//! kernel about to run under KVM, with no initrd and a short timeout (a working KVM reaches
//! the "no root filesystem" panic in about a second), and falls back to TCG on anything else.
//! It never waits longer than the probe timeout.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::arch::Arch;
use crate::args::{Accel, kvm_probe_args};
use crate::error::VmError;
use crate::process::{QuietOutcome, run_quiet};

/// How long the `auto` probe lets a kernel boot under KVM before calling KVM broken.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// What the user asked for with `--accel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    Tcg,
    Kvm,
    /// KVM if a probe boot under KVM works, else TCG.
    Auto,
}

impl FromStr for AccelChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcg" => Ok(Self::Tcg),
            "kvm" => Ok(Self::Kvm),
            "auto" => Ok(Self::Auto),
            other => Err(format!(
                "unknown accelerator {other:?}: use tcg, kvm or auto"
            )),
        }
    }
}

/// The accelerator to use and, when it was not simply what the user asked for, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelDecision {
    pub accel: Accel,
    pub note: Option<String>,
}

/// Resolves `choice` for a guest of `arch` booting `kernel` with `qemu`. `kvm_device` is
/// normally `/dev/kvm`. `Kvm` is checked (same architecture, device usable) but not probed:
/// the user asked for it, and `--timeout` bounds a hang.
pub fn resolve_accel(
    choice: AccelChoice,
    arch: Arch,
    qemu: &Path,
    kernel: &Path,
    kvm_device: &Path,
    probe_timeout: Duration,
) -> Result<AccelDecision, VmError> {
    let tcg = |note: String| AccelDecision {
        accel: Accel::Tcg,
        note: Some(note),
    };
    match choice {
        AccelChoice::Tcg => Ok(AccelDecision {
            accel: Accel::Tcg,
            note: None,
        }),
        AccelChoice::Kvm => match kvm_precondition(arch, kvm_device) {
            Ok(()) => Ok(AccelDecision {
                accel: Accel::Kvm,
                note: None,
            }),
            Err(reason) => Err(VmError::KvmUnavailable { reason }),
        },
        AccelChoice::Auto => {
            if let Err(reason) = kvm_precondition(arch, kvm_device) {
                return Ok(tcg(format!("{reason}: using TCG")));
            }
            let start = Instant::now();
            match run_quiet(qemu, &kvm_probe_args(arch, kernel), probe_timeout)? {
                QuietOutcome::Exited { status, .. } if status.success() => Ok(AccelDecision {
                    accel: Accel::Kvm,
                    note: Some(format!(
                        "using KVM (a probe boot under KVM took {:.1} s)",
                        start.elapsed().as_secs_f64()
                    )),
                }),
                QuietOutcome::Exited { status, stderr } => Ok(tcg(format!(
                    "KVM does not work on this host: a probe boot under KVM failed ({status}{}); using TCG",
                    last_message(&stderr)
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ))),
                QuietOutcome::TimedOut => Ok(tcg(format!(
                    "KVM does not work on this host: a probe boot under KVM hung for {} s; using TCG",
                    probe_timeout.as_secs_f64()
                ))),
            }
        }
    }
}

/// Why KVM cannot even be tried, if so.
fn kvm_precondition(arch: Arch, kvm_device: &Path) -> Result<(), String> {
    match Arch::host() {
        Some(host) if host == arch => {}
        Some(host) => return Err(format!("KVM cannot run {arch} guests on an {host} host")),
        None => return Err(format!("KVM cannot run {arch} guests on this host")),
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(kvm_device)
        .map(drop)
        .map_err(|e| format!("cannot open {}: {e}", kvm_device.display()))
}

/// QEMU's last line that is not a warning, for a one-line reason.
fn last_message(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.contains("warning:"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn other_arch() -> Arch {
        match Arch::host() {
            Some(Arch::Amd64) => Arch::Arm64,
            _ => Arch::Amd64,
        }
    }

    #[test]
    fn choices_parse() {
        assert_eq!("auto".parse::<AccelChoice>(), Ok(AccelChoice::Auto));
        assert_eq!("kvm".parse::<AccelChoice>(), Ok(AccelChoice::Kvm));
        assert_eq!("tcg".parse::<AccelChoice>(), Ok(AccelChoice::Tcg));
        assert!("hvf".parse::<AccelChoice>().is_err());
    }

    #[test]
    fn tcg_needs_nothing() {
        let d = resolve_accel(
            AccelChoice::Tcg,
            other_arch(),
            Path::new("/nonexistent"),
            Path::new("/k"),
            Path::new("/nonexistent/kvm"),
            KVM_PROBE_TIMEOUT,
        )
        .expect("tcg");
        assert_eq!(
            d,
            AccelDecision {
                accel: Accel::Tcg,
                note: None
            }
        );
    }

    #[test]
    fn kvm_for_a_foreign_guest_is_refused_and_auto_falls_back() {
        let arch = other_arch();
        let err = resolve_accel(
            AccelChoice::Kvm,
            arch,
            Path::new("/nonexistent"),
            Path::new("/k"),
            Path::new("/dev/null"),
            KVM_PROBE_TIMEOUT,
        )
        .expect_err("foreign");
        assert!(err.to_string().contains(arch.as_str()), "{err}");
        let d = resolve_accel(
            AccelChoice::Auto,
            arch,
            Path::new("/nonexistent"),
            Path::new("/k"),
            Path::new("/dev/null"),
            KVM_PROBE_TIMEOUT,
        )
        .expect("auto");
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.note.unwrap_or_default().contains("using TCG"));
    }

    #[test]
    fn a_missing_device_means_tcg_for_auto_and_an_error_for_kvm() {
        let Some(host) = Arch::host() else { return };
        let dev = PathBuf::from("/nonexistent/kvm");
        let d = resolve_accel(
            AccelChoice::Auto,
            host,
            Path::new("/x"),
            Path::new("/k"),
            &dev,
            KVM_PROBE_TIMEOUT,
        )
        .expect("auto");
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.note.unwrap_or_default().contains("/nonexistent/kvm"));
        let err = resolve_accel(
            AccelChoice::Kvm,
            host,
            Path::new("/x"),
            Path::new("/k"),
            &dev,
            KVM_PROBE_TIMEOUT,
        )
        .expect_err("kvm");
        assert!(err.to_string().contains("--accel tcg"), "{err}");
    }

    /// The probe itself, with stand-ins for QEMU: a hang and a failure both mean TCG, within
    /// the probe timeout; a clean exit means KVM. /dev/null plays a usable device.
    #[test]
    fn the_probe_decides_by_how_the_probe_boot_ended() {
        let Some(host) = Arch::host() else { return };
        let dir = tempfile::tempdir().expect("tmp");
        let script = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write");
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .expect("chmod");
            p
        };
        let hang = script("hang", "exec sleep 600");
        let abort = script(
            "abort",
            "echo 'qemu: warning: x' >&2; echo 'KVM internal error' >&2; exit 1",
        );
        let ok = script("ok", "exit 0");
        let null = Path::new("/dev/null");
        let probe = |qemu: &Path| {
            resolve_accel(
                AccelChoice::Auto,
                host,
                qemu,
                Path::new("/k"),
                null,
                Duration::from_millis(600),
            )
            .expect("auto")
        };

        let start = Instant::now();
        let d = probe(&hang);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.note.unwrap_or_default().contains("hung"));

        let d = probe(&abort);
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.note.unwrap_or_default().contains("KVM internal error"));

        assert_eq!(probe(&ok).accel, Accel::Kvm);
    }
}
