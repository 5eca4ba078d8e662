//! `oxkit run qemu` against real QEMU (TCG) and Debian's cloud kernel, with busybox initrds
//! made by hand here (newc cpio, gzip): power-off, timeout, panic/reboot, KVM auto-probe, arm64.
//! The kernels come from scripts/fetch-kernel.sh, cached under the target dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Env, busybox_rootfs, require_tool, run_ok};

const MARKER: &str = "OXKIT-VM-MARKER";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Debian's cloud kernel for `arch` (fetched once, then cached under the target dir).
fn kernel(arch: &str) -> PathBuf {
    require_tool("apt-get");
    require_tool("dpkg-deb");
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.join(format!("kernel-{arch}"));
    run_ok(
        Command::new(repo_root().join("scripts/fetch-kernel.sh"))
            .args([arch, &dir.to_string_lossy()])
            .env("OXKIT_KERNEL_CACHE", tmp.join("kernel-debs")),
    );
    dir.join("vmlinuz")
}

fn busybox(arch: &str) -> PathBuf {
    let host = run_ok(Command::new("dpkg").arg("--print-architecture"));
    if host.trim() == arch {
        require_tool("busybox")
    } else {
        busybox_rootfs(arch).join("bin/busybox")
    }
}

/// A gzip'd newc initrd holding busybox and `/init` = `init` (a shell script).
fn initrd(dir: &Path, arch: &str, init: &str) -> PathBuf {
    require_tool("cpio");
    let root = dir.join(format!("initrd-root-{arch}"));
    std::fs::create_dir_all(root.join("bin")).expect("bin");
    for d in ["dev", "proc", "sys"] {
        std::fs::create_dir_all(root.join(d)).expect("dir");
    }
    std::fs::copy(busybox(arch), root.join("bin/busybox")).expect("busybox");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("sh");
    std::fs::write(root.join("init"), init).expect("init");
    std::fs::set_permissions(
        root.join("init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let out = dir.join(format!("initrd-{arch}.img"));
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "set -e; cd '{}'; find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -n > '{}'",
        root.display(),
        out.display()
    )));
    out
}

/// Lays out `NAME-kernel`, `NAME-initrd.img`, `NAME-cmdline` under `env` and returns NAME.
fn output(env: &Env, arch: &str, init: &str, cmdline: &str) -> PathBuf {
    let out = env.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    let name = out.join(format!("test-{arch}"));
    std::os::unix::fs::symlink(kernel(arch), out.join(format!("test-{arch}-kernel")))
        .expect("kernel");
    std::fs::rename(
        initrd(env.path(), arch, init),
        out.join(format!("test-{arch}-initrd.img")),
    )
    .expect("initrd");
    std::fs::write(out.join(format!("test-{arch}-cmdline")), cmdline).expect("cmdline");
    name
}

fn powering_off_init() -> String {
    format!(
        "#!/bin/sh\n/bin/busybox mount -t proc proc /proc\n\
         echo \"{MARKER} arch=$(/bin/busybox uname -m) cmdline=$(/bin/busybox cat /proc/cmdline)\"\n\
         /bin/busybox poweroff -f\n"
    )
}

/// Runs `oxkit run qemu ARGS...` with stdin on /dev/null; returns the output and the time.
fn run_qemu(env: &Env, args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let out = env
        .oxkit()
        .args(["run", "qemu"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run oxkit");
    (out, start.elapsed())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// No process may still mention `needle` (a path unique to the test) on its command line.
fn assert_no_process_mentions(needle: &str) {
    let needle = needle.as_bytes();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        assert!(
            !cmdline.windows(needle.len()).any(|w| w == needle),
            "process {} survived: {}",
            entry.file_name().to_string_lossy(),
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        );
    }
}

fn boots_and_powers_off(arch: &str, uname: &str, bound: Duration) {
    require_tool(if arch == "arm64" {
        "qemu-system-aarch64"
    } else {
        "qemu-system-x86_64"
    });
    let env = Env::new();
    let name = output(&env, arch, &powering_off_init(), "quiet");
    let (out, took) = run_qemu(
        &env,
        &[
            "--arch",
            arch,
            "--timeout",
            "120s",
            "--append",
            "oxkit.test=1",
            &name.to_string_lossy(),
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let line = stdout
        .lines()
        .find(|l| l.contains(MARKER))
        .unwrap_or_else(|| panic!("no marker on the console:\n{stdout}\nstderr:\n{stderr}"));
    assert!(line.contains(&format!("arch={uname}")), "{line}");
    // The output's cmdline, then --append, then the defaults for the arch's console.
    let console = if arch == "arm64" { "ttyAMA0" } else { "ttyS0" };
    assert!(
        line.contains(&format!("quiet oxkit.test=1 console={console} panic=-1")),
        "{line}"
    );
    assert!(stderr.contains("the guest powered off"), "{stderr}");
    assert!(took < bound, "took {took:?}");
}

#[test]
fn run_qemu_boots_a_busybox_initrd_and_exits_0_on_poweroff() {
    boots_and_powers_off("amd64", "x86_64", Duration::from_secs(90));
}

#[test]
fn run_qemu_boots_arm64_under_tcg() {
    boots_and_powers_off("arm64", "aarch64", Duration::from_secs(90));
}

#[test]
fn run_qemu_timeout_kills_a_guest_that_never_powers_off() {
    require_tool("qemu-system-x86_64");
    let env = Env::new();
    let init = "#!/bin/sh\necho STILL-RUNNING\nwhile :; do /bin/busybox sleep 1; done\n";
    let name = output(&env, "amd64", init, "console=ttyS0");
    let (out, took) = run_qemu(
        &env,
        &[
            "--arch",
            "amd64",
            "--timeout",
            "3s",
            &name.to_string_lossy(),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("error:") && stderr.contains("did not power off within 3 s"),
        "{stderr}"
    );
    assert!(stderr.contains("QEMU was killed"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // 3 s, plus at most the SIGTERM grace period and process start-up.
    assert!(took < Duration::from_secs(9), "took {took:?}");
    assert_no_process_mentions(&env.path().to_string_lossy());
}

#[test]
fn run_qemu_reports_a_guest_panic_as_a_failed_run() {
    require_tool("qemu-system-x86_64");
    let env = Env::new();
    // init exiting makes the kernel panic; panic=-1 (added by oxkit) reboots at once.
    let init = "#!/bin/sh\necho ABOUT-TO-EXIT\nexit 3\n";
    let name = output(&env, "amd64", init, "console=ttyS0");
    let (out, took) = run_qemu(
        &env,
        &[
            "--arch",
            "amd64",
            "--timeout",
            "120s",
            &name.to_string_lossy(),
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("Kernel panic"), "{stdout}");
    assert!(
        stderr.contains("rebooted instead of powering off"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(90), "took {took:?}");
}

#[test]
fn run_qemu_accel_auto_falls_back_or_uses_kvm_without_hanging() {
    require_tool("qemu-system-x86_64");
    let env = Env::new();
    let name = output(&env, "amd64", &powering_off_init(), "console=ttyS0");
    let (out, took) = run_qemu(
        &env,
        &[
            "--arch",
            "amd64",
            "--accel",
            "auto",
            "--timeout",
            "120s",
            &name.to_string_lossy(),
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains(MARKER), "{stdout}");
    // Either way the decision is explained, and the run says which accelerator it used.
    assert!(
        (stderr.contains("using TCG") && stderr.contains("amd64, tcg"))
            || (stderr.contains("using KVM") && stderr.contains("amd64, kvm")),
        "{stderr}"
    );
    // The probe is bounded by oxkit_vm::KVM_PROBE_TIMEOUT (8 s).
    assert!(took < Duration::from_secs(100), "took {took:?}");
}

#[test]
fn run_qemu_names_missing_output_files() {
    let env = Env::new();
    let (out, _) = run_qemu(&env, &["--arch", "amd64", "out/nothing"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("out/nothing-kernel not found"), "{stderr}");

    let (out, _) = run_qemu(&env, &["--timeout", "soon", "out/nothing"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "usage error: {}",
        text(&out.stderr)
    );
}

/// Which boot `run qemu` picks from the files a name has: a kernel+initrd output when there is
/// one, else a UEFI disk (raw or qcow2), else a UEFI CD, else a BIOS CD; `--iso` insists on the CD. QEMU is `false` here, so
/// each run stops right after the line saying what it boots.
#[test]
fn run_qemu_picks_the_boot_from_the_outputs_there() {
    assert!(
        std::path::Path::new("/usr/share/ovmf/OVMF.fd").is_file(),
        "OVMF is missing: apt-get install ovmf"
    );
    let env = Env::new();
    let false_qemu = require_tool("false");
    let picks = |name: &str, extra: &[&str]| -> (Option<i32>, String) {
        let mut args = vec!["--arch", "amd64", "--qemu", false_qemu.to_str().unwrap()];
        args.extend(extra);
        args.push(name);
        let (out, _) = run_qemu(&env, &args);
        (out.status.code(), text(&out.stderr))
    };
    let touch = |f: &str| std::fs::write(env.path().join(f), b"x").unwrap();

    touch("disk-efi.img");
    let (_, stderr) = picks("disk", &[]);
    assert!(
        stderr.contains("booting disk under UEFI (") && !stderr.contains("from CD"),
        "{stderr}"
    );
    touch("q-efi.qcow2");
    let (_, stderr) = picks("q", &[]);
    assert!(
        stderr.contains("booting q under UEFI (") && !stderr.contains("from CD"),
        "{stderr}"
    );
    touch("cd-efi.iso");
    let (_, stderr) = picks("cd", &[]);
    assert!(stderr.contains("booting cd under UEFI from CD"), "{stderr}");
    for f in ["both-kernel", "both-initrd.img", "both-efi.img"] {
        touch(f);
    }
    let (_, stderr) = picks("both", &[]);
    assert!(stderr.contains("booting both (amd64"), "{stderr}");
    let (_, stderr) = picks("both", &["--uefi"]);
    assert!(stderr.contains("booting both under UEFI ("), "{stderr}");

    let (code, stderr) = picks("disk", &["--iso"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("disk-efi.iso not found") && stderr.contains("iso-efi"),
        "{stderr}"
    );
    let (code, stderr) = picks("disk", &["--uefi", "--append", "quiet"]);
    assert_eq!(code, Some(2), "usage error: {stderr}");

    // An iso-bios output: picked alone, by --iso when there is no UEFI CD, by --bios when
    // there is no BIOS disk.
    touch("pc.iso");
    for extra in [&[][..], &["--iso"], &["--bios"]] {
        let (_, stderr) = picks("pc", extra);
        assert!(
            stderr.contains("booting pc under BIOS from CD"),
            "{extra:?}: {stderr}"
        );
    }
    touch("cd.iso");
    let (_, stderr) = picks("cd", &["--iso"]);
    assert!(stderr.contains("booting cd under UEFI from CD"), "{stderr}");
    let (_, stderr) = picks("cd", &["--bios"]);
    assert!(stderr.contains("booting cd under BIOS from CD"), "{stderr}");
    let (code, stderr) = picks("disk", &["--bios"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("disk-bios.img not found")
            && stderr.contains("raw-bios, qcow2-bios, vhd or vmdk"),
        "{stderr}"
    );
    let (code, stderr) = picks("disk", &["--bios", "--iso"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("disk.iso not found") && stderr.contains("iso-bios"),
        "{stderr}"
    );
    // raw-bios, qcow2-bios and vhd disks: picked alone or by --bios, before the CD beside them.
    for f in ["hd-bios.img", "hd.iso", "pcq.qcow2", "hv.vhd"] {
        touch(f);
    }
    for (name, extra, says) in [
        ("hd", &[][..], "booting hd under BIOS ("),
        ("hd", &["--bios"], "booting hd under BIOS ("),
        ("hd", &["--bios", "--iso"], "booting hd under BIOS from CD"),
        ("pcq", &[], "booting pcq under BIOS ("),
        ("hv", &[], "booting hv under BIOS ("),
    ] {
        let (_, stderr) = picks(name, extra);
        assert!(stderr.contains(says), "{name} {extra:?}: {stderr}");
    }
    // A PC BIOS image is not booted as arm64, and --bios is not UEFI.
    let mut arm = vec![
        "--arch",
        "arm64",
        "--qemu",
        false_qemu.to_str().unwrap(),
        "pc",
    ];
    let (out, _) = run_qemu(&env, &arm);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("BIOS image"),
        "{}",
        text(&out.stderr)
    );
    arm.insert(0, "--uefi");
    arm.insert(0, "--bios");
    let (out, _) = run_qemu(&env, &arm);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// The modules in fetch-kernel.sh's kernel.tar load in a guest with busybox modprobe (so its
/// modules.dep is right), overlayfs mounts, and --disk / user networking give virtio devices.
#[test]
fn run_qemu_guest_loads_virtio_and_overlay_from_kernel_tar() {
    require_tool("qemu-system-x86_64");
    let env = Env::new();
    let init = "#!/bin/sh\nexport PATH=/bin\n\
        busybox mount -t proc proc /proc; busybox mount -t sysfs sys /sys\n\
        for m in overlay virtio_pci virtio_blk virtio_net; do busybox modprobe $m && echo \"MOD-OK $m\"; done\n\
        busybox mkdir -p /tmp/l /tmp/u /tmp/w /tmp/m\n\
        busybox mount -t overlay overlay -o lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w /tmp/m && echo OVERLAY-OK\n\
        for b in /sys/block/* /sys/class/net/*; do echo \"DEV ${b##*/}\"; done\n\
        busybox poweroff -f\n";
    let name = output(&env, "amd64", init, "console=ttyS0 quiet");
    // Add the modules (and the depmod index) to the initrd, straight from kernel.tar.
    let ktar = kernel("amd64").with_file_name("kernel.tar");
    let modules = env.path().join("modules");
    std::fs::create_dir_all(&modules).expect("modules");
    let initrd = format!("{}-initrd.img", name.display());
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "set -e; cd '{m}'
        tar -tf '{t}' | grep -E '/(modules\\.dep|(overlay|virtio|virtio_ring|virtio_pci|virtio_pci_modern_dev|virtio_pci_legacy_dev|virtio_blk|virtio_net|net_failover|failover)\\.ko)$' > list
        tar -xf '{t}' -T list
        test -s lib/modules/*/modules.dep
        find lib | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -n >> '{i}'",
        m = modules.display(),
        t = ktar.display(),
        i = initrd,
    )));
    let disk = env.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).expect("disk");
    let disk_arg = format!("file={},format=raw", disk.display());
    let (out, _) = run_qemu(
        &env,
        &[
            "--arch",
            "amd64",
            "--timeout",
            "120s",
            "--networking",
            "user",
            "--disk",
            &disk_arg,
            &name.to_string_lossy(),
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for want in [
        "MOD-OK overlay",
        "MOD-OK virtio_pci",
        "MOD-OK virtio_blk",
        "MOD-OK virtio_net",
        "OVERLAY-OK",
        "DEV vda",
        "DEV eth0",
    ] {
        assert!(
            stdout.lines().any(|l| l.trim_end().ends_with(want)),
            "{want} missing:\n{stdout}"
        );
    }
}
