//! `oxkit doctor`: the real host report, its JSON form, `--strict`, and the binfmt advice
//! against fake binfmt_misc directories. Oracles are read independently from /proc.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Env, run_fail, run_ok};

const IDS: &[&str] = &[
    "root",
    "namespaces",
    "user-namespaces",
    "overlayfs",
    "binfmt_misc",
    "binfmt/amd64",
    "binfmt/arm64",
    "binfmt/riscv64",
    "qemu-system-x86_64",
    "qemu-system-aarch64",
    "kvm",
    "cgroups",
    "efi-stub/amd64",
    "uefi-firmware/amd64",
    "efi-stub/arm64",
    "uefi-firmware/arm64",
    "isolinux",
];

fn doctor_json(env: &Env, extra: &[&str]) -> Value {
    let out = run_ok(
        env.oxkit()
            .args(["doctor", "--json", "--kvm-timeout", "1"])
            .args(extra),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no {id} check in {report:#}"))
}

/// What the kernel says about a handler, read without oxkit: (enabled, has the F flag).
fn handler_state(name: &str) -> Option<(bool, bool)> {
    let text = fs::read_to_string(Path::new("/proc/sys/fs/binfmt_misc").join(name)).ok()?;
    let enabled = text.lines().next() == Some("enabled");
    let fix = text
        .lines()
        .find_map(|l| l.strip_prefix("flags: "))
        .is_some_and(|f| f.contains('F'));
    Some((enabled, fix))
}

#[test]
fn doctor_reports_every_check_quickly_and_exits_zero() {
    let env = Env::new();
    let start = Instant::now();
    let out = run_ok(env.oxkit().args(["doctor", "--kvm-timeout", "1"]));
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "doctor took {:?}",
        start.elapsed()
    );
    for id in IDS {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id))
            .unwrap_or_else(|| panic!("no {id} line in:\n{out}"));
        let status = line.split_whitespace().next().unwrap_or("");
        assert!(["OK", "MISSING", "INFO"].contains(&status), "{line}");
    }
    // Every MISSING line is followed by its fix.
    let lines: Vec<&str> = out.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("MISSING") {
            assert!(
                lines
                    .get(i + 1)
                    .is_some_and(|n| n.trim_start().starts_with("fix: ")),
                "{l} has no fix:\n{out}"
            );
        }
    }
    if rustix::process::geteuid().is_root() {
        let root = lines
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some("root"))
            .expect("root");
        assert!(
            root.starts_with("OK") && root.contains("running as root"),
            "{root}"
        );
    }
}

#[test]
fn doctor_json_agrees_with_the_kernel() {
    let env = Env::new();
    let report = doctor_json(&env, &[]);
    let checks = report["checks"].as_array().expect("checks");
    let ids: Vec<&str> = checks.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, IDS);
    let any_missing = checks.iter().any(|c| c["status"] == "missing");
    assert_eq!(report["ok"], !any_missing);
    for c in checks {
        assert!(
            ["ok", "missing", "info"].contains(&c["status"].as_str().unwrap_or("")),
            "{c}"
        );
        if c["status"] == "missing" {
            assert!(
                c["fix"].as_str().is_some_and(|f| !f.is_empty()),
                "{c} has no fix"
            );
        }
    }

    // binfmt: the kernel's own view of qemu-aarch64 (this CI's registration) is the oracle.
    let host = std::env::consts::ARCH;
    if host == "x86_64" {
        assert_eq!(check(&report, "binfmt/amd64")["status"], "ok");
        assert!(
            check(&report, "binfmt/amd64")["summary"]
                .as_str()
                .unwrap_or("")
                .starts_with("native")
        );
        let arm = check(&report, "binfmt/arm64");
        match handler_state("qemu-aarch64") {
            Some((true, true)) => {
                assert_eq!(arm["status"], "ok", "{arm}");
                assert!(
                    arm["summary"]
                        .as_str()
                        .unwrap_or("")
                        .contains("qemu-aarch64"),
                    "{arm}"
                );
            }
            _ => assert_eq!(arm["status"], "missing", "{arm}"),
        }
    }
    // The boot files: what the checks say is what `oxkit build` and `oxkit run qemu` will find.
    if host == "x86_64" {
        let stub = Path::new("/usr/lib/systemd/boot/efi/linuxx64.efi.stub");
        assert_eq!(
            check(&report, "efi-stub/amd64")["status"],
            if stub.is_file() { "ok" } else { "missing" }
        );
        assert_ne!(check(&report, "efi-stub/arm64")["status"], "missing");
        let ovmf = Path::new("/usr/share/ovmf/OVMF.fd").is_file()
            || Path::new("/usr/share/qemu/OVMF.fd").is_file();
        assert_eq!(
            check(&report, "uefi-firmware/amd64")["status"],
            if ovmf { "ok" } else { "missing" }
        );
        let isolinux = Path::new("/usr/lib/ISOLINUX/isolinux.bin").is_file()
            && Path::new("/usr/lib/ISOLINUX/isohdpfx.bin").is_file()
            && Path::new("/usr/lib/syslinux/modules/bios/ldlinux.c32").is_file();
        assert_eq!(
            check(&report, "isolinux")["status"],
            if isolinux { "ok" } else { "missing" }
        );
    }
    // /dev/kvm missing can never be reported as usable; present, the probe decides.
    if !Path::new("/dev/kvm").exists() {
        assert_eq!(check(&report, "kvm")["status"], "missing");
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let cg = check(&report, "cgroups")["summary"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if mountinfo
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup/unified ") && l.contains(" - cgroup2 "))
    {
        assert!(cg.starts_with("hybrid"), "{cg}");
    } else if mountinfo
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "))
    {
        assert!(cg.contains("v2"), "{cg}");
    }
}

#[test]
fn strict_fails_exactly_when_something_is_missing() {
    let env = Env::new();
    let report = doctor_json(&env, &[]);
    let missing: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] == "missing")
        .filter_map(|c| c["id"].as_str())
        .collect();
    let mut cmd = env.oxkit();
    cmd.args(["doctor", "--strict", "--kvm-timeout", "1"]);
    if missing.is_empty() {
        run_ok(&mut cmd);
    } else {
        let stderr = run_fail(&mut cmd);
        for id in &missing {
            assert!(stderr.contains(id), "{stderr} should name {id}");
        }
    }
    // A fake binfmt_misc with no handlers makes at least the foreign architectures missing.
    let fake = tempfile::tempdir().expect("fake");
    fs::write(fake.path().join("status"), "enabled\n").expect("status");
    let stderr = run_fail(
        env.oxkit()
            .args(["doctor", "--strict", "--kvm-timeout", "1", "--binfmt-dir"])
            .arg(fake.path()),
    );
    assert!(stderr.contains("binfmt/riscv64"), "{stderr}");
}

#[test]
fn binfmt_advice_names_the_exact_commands() {
    let env = Env::new();
    let foreign = if std::env::consts::ARCH == "aarch64" {
        "binfmt/amd64"
    } else {
        "binfmt/arm64"
    };

    let empty = tempfile::tempdir().expect("fake");
    fs::write(empty.path().join("status"), "enabled\n").expect("status");
    let report = doctor_json(
        &env,
        &["--binfmt-dir", empty.path().to_str().expect("utf8")],
    );
    let c = check(&report, foreign);
    assert_eq!(c["status"], "missing");
    let fix = c["fix"].as_str().expect("fix");
    for needle in [
        "apt-get install qemu-user-static binfmt-support",
        "mount -t binfmt_misc binfmt_misc",
        "update-binfmts --enable",
    ] {
        assert!(fix.contains(needle), "{fix}");
    }

    // Registered without F: works on the host, not inside a chroot.
    let no_f = tempfile::tempdir().expect("fake");
    fs::write(no_f.path().join("status"), "enabled\n").expect("status");
    fs::write(
        no_f.path().join("qemu-aarch64"),
        "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: P\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n",
    )
    .expect("handler");
    if std::env::consts::ARCH == "x86_64" {
        let report = doctor_json(&env, &["--binfmt-dir", no_f.path().to_str().expect("utf8")]);
        let c = check(&report, "binfmt/arm64");
        assert_eq!(c["status"], "missing");
        assert!(
            c["summary"]
                .as_str()
                .unwrap_or("")
                .contains("without the F flag"),
            "{c}"
        );
        assert!(
            c["fix"]
                .as_str()
                .unwrap_or("")
                .contains("update-binfmts --enable qemu-aarch64"),
            "{c}"
        );
    }

    // Not mounted at all.
    let unmounted = tempfile::tempdir().expect("fake");
    let out = run_ok(
        env.oxkit()
            .args(["doctor", "--kvm-timeout", "1", "--binfmt-dir"])
            .arg(unmounted.path()),
    );
    let line = out
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("binfmt_misc"))
        .expect("line");
    assert!(line.starts_with("MISSING"), "{line}");
    assert!(
        out.contains(&format!(
            "fix: mount -t binfmt_misc binfmt_misc {}",
            unmounted.path().display()
        )),
        "{out}"
    );
}
