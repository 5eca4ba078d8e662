//! Whether KVM really works: /dev/kvm can exist and answer ioctls on hosts (paravirtual ones)
//! where every real guest hangs or aborts. So on x86-64 the probe boots a 64 KiB firmware image
//! under `qemu-system-x86_64 -accel kvm` that switches to protected mode, then 64-bit long
//! mode (the first things a Linux kernel does), and reports through QEMU's isa-debug-exit
//! device. The guest is killed after a timeout; the same image under TCG tells a broken KVM
//! from a broken probe.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

use super::{Check, ProbeOptions, Status, find_in_path, tempdir_in};

/// The probe's code, loaded at physical 0xF0000 (the start of the firmware image):
///
/// ```text
///   cli; xor ax,ax; mov ds,ax; lgdtl cs:gdtr          ; real mode
///   mov eax,cr0; or eax,1; mov cr0,eax; ljmpl 0x08:pm32
/// pm32:                                              ; 32-bit protected mode
///   mov ax,0x10; mov ds,ax; mov es,ax; mov ss,ax
///   clear 0x1000..0x4000; PML4[0]=0x2003; PDPT[0]=0x3003; PD[0]=0x83 (2 MiB identity page)
///   cr4 |= PAE; cr3 = 0x1000; EFER |= LME; cr0 |= PG; ljmpl 0x18:lm64
/// lm64:                                              ; 64-bit long mode
///   mov al,0x31; out 0xf4,al                          ; QEMU exits with (0x31 << 1) | 1 = 99
///   hlt; jmp $
/// gdt: null, 32-bit code, data, 64-bit code; gdtr: limit 31, base 0xF0090
/// ```
const PROBE_CODE: [u8; 182] = [
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x2e, 0x66, 0x0f, 0x01, 0x16, 0xb0, 0x00, 0x0f, 0x20, 0xc0, 0x66,
    0x83, 0xc8, 0x01, 0x0f, 0x22, 0xc0, 0x66, 0xea, 0x1e, 0x00, 0x0f, 0x00, 0x08, 0x00, 0x66, 0xb8,
    0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbf, 0x00, 0x10, 0x00, 0x00, 0x31, 0xc0, 0xb9,
    0x00, 0x0c, 0x00, 0x00, 0xf3, 0xab, 0xc7, 0x05, 0x00, 0x10, 0x00, 0x00, 0x03, 0x20, 0x00, 0x00,
    0xc7, 0x05, 0x00, 0x20, 0x00, 0x00, 0x03, 0x30, 0x00, 0x00, 0xc7, 0x05, 0x00, 0x30, 0x00, 0x00,
    0x83, 0x00, 0x00, 0x00, 0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0, 0xb8, 0x00, 0x10,
    0x00, 0x00, 0x0f, 0x22, 0xd8, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x0d, 0x00, 0x01, 0x00,
    0x00, 0x0f, 0x30, 0x0f, 0x20, 0xc0, 0x0d, 0x00, 0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0, 0xea, 0x85,
    0x00, 0x0f, 0x00, 0x18, 0x00, 0xb0, 0x31, 0xe6, 0xf4, 0xf4, 0xeb, 0xfe, 0x8d, 0x74, 0x26, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xaf, 0x00,
    0x1f, 0x00, 0x90, 0x00, 0x0f, 0x00,
];

/// QEMU's exit code when the guest wrote 0x31 to isa-debug-exit.
const PROBE_OK: i32 = 99;

/// The firmware image: code at the start, `jmp far F000:0000` at the reset vector, `hlt` fill.
fn firmware() -> Vec<u8> {
    let mut rom = vec![0xf4u8; 64 * 1024];
    rom[..PROBE_CODE.len()].copy_from_slice(&PROBE_CODE);
    rom[0xfff0..0xfff5].copy_from_slice(&[0xea, 0x00, 0x00, 0x00, 0xf0]);
    rom
}

const TCG_FALLBACK: &str =
    "nothing to do for building; `oxkit run qemu` falls back to TCG (software emulation, slower)";

pub(super) fn check(opts: &ProbeOptions) -> Check {
    let dev = &opts.kvm_device;
    let id = "kvm";
    if !dev.exists() {
        return Check::new(
            id,
            Status::Missing,
            format!("{} does not exist", dev.display()),
            Some(format!(
                "load kvm_intel or kvm_amd (or enable nested virtualisation); otherwise {TCG_FALLBACK}"
            )),
        );
    }
    let fd = match rustix::fs::open(dev, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            return Check::new(
                id,
                Status::Missing,
                format!("cannot open {}: {e}", dev.display()),
                Some(format!(
                    "add yourself to the kvm group (usermod -aG kvm $USER) or run as root; otherwise {TCG_FALLBACK}"
                )),
            );
        }
    };
    // SAFETY: KVM_GET_API_VERSION (_IO(0xAE, 0)) reads and writes no memory; its argument
    // must be 0 (anything else is EINVAL).
    let api = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), 0xAE00, 0usize) };
    drop(fd);
    if api != 12 {
        return Check::new(
            id,
            Status::Missing,
            format!(
                "{} answers KVM_GET_API_VERSION with {api}, not 12",
                dev.display()
            ),
            Some(TCG_FALLBACK.into()),
        );
    }
    if super::super::binfmt::host_arch() != "amd64" {
        return Check::new(
            id,
            Status::Info,
            format!(
                "{} present (API 12); no guest probe on this architecture",
                dev.display()
            ),
            None,
        );
    }
    let Some(qemu) = find_in_path(&opts.search_path, "qemu-system-x86_64") else {
        return Check::new(
            id,
            Status::Info,
            format!(
                "{} present (API 12); not verified: qemu-system-x86_64 is not installed",
                dev.display()
            ),
            Some("apt-get install qemu-system-x86".into()),
        );
    };
    let Ok(dir) = tempdir_in(&opts.scratch_dir, "oxkit-doctor-kvm") else {
        return Check::new(
            id,
            Status::Info,
            format!(
                "not probed: cannot create a directory in {}",
                opts.scratch_dir.display()
            ),
            None,
        );
    };
    let rom = dir.join("probe.rom");
    let result = fs::write(&rom, firmware())
        .map_err(|e| format!("cannot write {}: {e}", rom.display()))
        .map(|()| {
            let kvm = boot(&qemu, &rom, &dir, "kvm", opts.kvm_timeout);
            let tcg = match &kvm {
                Outcome::Ok(_) => None,
                _ => Some(boot(
                    &qemu,
                    &rom,
                    &dir,
                    "tcg",
                    opts.kvm_timeout.max(Duration::from_secs(5)),
                )),
            };
            (kvm, tcg)
        });
    let _ = fs::remove_dir_all(&dir);
    match result {
        Err(e) => Check::new(id, Status::Info, format!("not probed: {e}"), None),
        Ok((Outcome::Ok(t), _)) => Check::new(
            id,
            Status::Ok,
            format!(
                "usable: a probe guest reached 64-bit mode under KVM in {} ms",
                t.as_millis()
            ),
            None,
        ),
        Ok((kvm, Some(Outcome::Ok(_)))) => Check::new(
            id,
            Status::Missing,
            format!(
                "{} exists but guests do not run under KVM: {kvm}; the same guest runs under TCG",
                dev.display()
            ),
            Some(TCG_FALLBACK.into()),
        ),
        Ok((kvm, tcg)) => Check::new(
            id,
            Status::Info,
            format!(
                "could not verify: the probe guest failed under KVM ({kvm}) and under TCG ({})",
                tcg.map(|t| t.to_string()).unwrap_or_default()
            ),
            None,
        ),
    }
}

enum Outcome {
    Ok(Duration),
    Hung(Duration),
    Failed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ok(t) => write!(f, "ran in {} ms", t.as_millis()),
            Self::Hung(t) => write!(f, "it hung and was killed after {} s", t.as_secs_f32()),
            Self::Failed(why) => write!(f, "{why}"),
        }
    }
}

/// Boots the firmware with `accel`, killing QEMU after `timeout`.
fn boot(qemu: &Path, rom: &Path, dir: &Path, accel: &str, timeout: Duration) -> Outcome {
    let log_path = dir.join(format!("{accel}.log"));
    let Ok(log) = fs::File::create(&log_path) else {
        return Outcome::Failed(format!("cannot create {}", log_path.display()));
    };
    let start = Instant::now();
    let child = Command::new(qemu)
        .args([
            "-accel",
            accel,
            "-M",
            "pc",
            "-m",
            "16",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-bios",
        ])
        .arg(rom)
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot start {}: {e}", qemu.display())),
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if status.code() == Some(PROBE_OK) {
                    return Outcome::Ok(start.elapsed());
                }
                let stderr = fs::read_to_string(&log_path).unwrap_or_default();
                let last = stderr
                    .lines()
                    .rev()
                    .find(|l| !l.contains("warning:") && !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
                    .to_string();
                return Outcome::Failed(if last.is_empty() {
                    format!("QEMU exited with {status}")
                } else {
                    format!("QEMU exited with {status}: {last}")
                });
            }
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::Hung(timeout);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Outcome::Failed(format!("waiting for QEMU: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_has_the_reset_vector_and_the_gdt_where_the_code_expects_them() {
        let rom = firmware();
        assert_eq!(rom.len(), 65536);
        assert_eq!(&rom[0xfff0..0xfff5], &[0xea, 0x00, 0x00, 0x00, 0xf0]);
        // lgdtl cs:0x00b0 -> the GDT register: limit 31, base 0xF0090.
        assert_eq!(&rom[0xb0..0xb6], &[0x1f, 0x00, 0x90, 0x00, 0x0f, 0x00]);
        // 64-bit code descriptor (L bit) at selector 0x18.
        assert_eq!(
            &rom[0x90 + 0x18..0x90 + 0x20],
            &[0xff, 0xff, 0, 0, 0, 0x9a, 0xaf, 0]
        );
    }

    /// Runs the probe under TCG when QEMU is installed (CI installs it): proves the firmware
    /// actually reaches long mode, so a KVM failure is KVM's.
    #[test]
    fn probe_guest_reaches_long_mode_under_tcg() {
        let qemu = Path::new("/usr/bin/qemu-system-x86_64");
        if !qemu.exists() || crate::binfmt::host_arch() != "amd64" {
            eprintln!("qemu-system-x86_64 not installed: run ./scripts/install-deps");
            return;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let rom = dir.path().join("probe.rom");
        fs::write(&rom, firmware()).expect("rom");
        match boot(qemu, &rom, dir.path(), "tcg", Duration::from_secs(20)) {
            Outcome::Ok(_) => {}
            other => panic!("probe failed under TCG: {other}"),
        }
    }
}
