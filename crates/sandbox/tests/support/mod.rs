//! Busybox root filesystems for the sandbox's real tests (Debian's busybox-static for any
//! architecture), built once per target dir and copied per test because runs create mount
//! points in them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use oxkit_sandbox::{NamespaceSandbox, RunOutcome, RunSpec, Sandbox, SandboxError};
use tempfile::TempDir;

pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the sandbox's real tests run as root (CI does): rerun with sudo"
    );
}

fn sh(script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}\nfailed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A cached busybox rootfs for `arch` (Debian spelling): `/bin/busybox`, its applet links and
/// an empty `/etc`, `/tmp`, `/root`; no `/proc`, `/dev` or `/sys`.
fn cached(arch: &str) -> PathBuf {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("sandbox-busybox-{arch}"));
    let root = cache.join("rootfs");
    if root.join("bin/busybox").exists() {
        return root;
    }
    std::fs::create_dir_all(&cache).expect("cache");
    let work = cache.join(format!("build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let host_arch = String::from_utf8(
        Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .expect("dpkg")
            .stdout,
    )
    .expect("utf8");
    let fetch = if host_arch.trim() == arch {
        "cp /bin/busybox rootfs/bin/busybox".to_string()
    } else {
        format!(
            "apt-get download busybox-static:{arch} >/dev/null 2>&1 || {{ echo 'cannot download busybox-static:{arch}: run ./scripts/install-deps (dpkg --add-architecture {arch} && apt-get update)' >&2; exit 1; }}
dpkg-deb -x busybox-static_*_{arch}.deb x && cp x/bin/busybox rootfs/bin/busybox"
        )
    };
    sh(&format!(
        "set -e; mkdir -p {w}; cd {w}; mkdir -p rootfs/bin rootfs/sbin rootfs/usr/bin rootfs/usr/sbin rootfs/etc rootfs/tmp rootfs/root
{fetch}
for a in $(/bin/busybox --list-full); do case $a in bin/busybox) ;; *) ln -sf /bin/busybox rootfs/$a ;; esac; done
chmod 1777 rootfs/tmp",
        w = work.display()
    ));
    // Another test process may have won the race; either copy is fine.
    let _ = std::fs::rename(work.join("rootfs"), &root);
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        root.join("bin/busybox").exists(),
        "busybox rootfs not built"
    );
    root
}

/// A private copy of the busybox rootfs.
pub struct Rootfs {
    pub dir: TempDir,
}

impl Rootfs {
    pub fn new(arch: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("oxkit-sandbox-")
            .tempdir()
            .expect("tmp");
        sh(&format!(
            "cp -a {}/. {}/",
            cached(arch).display(),
            dir.path().display()
        ));
        Self { dir }
    }

    pub fn native() -> Self {
        let arch = String::from_utf8(
            Command::new("dpkg")
                .arg("--print-architecture")
                .output()
                .expect("dpkg")
                .stdout,
        )
        .expect("utf8");
        Self::new(arch.trim())
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn spec(&self, script: &str) -> RunSpec {
        RunSpec::new(
            self.path(),
            vec!["/bin/sh".into(), "-c".into(), script.into()],
        )
    }
}

/// Output of a run, with when each chunk arrived.
pub struct Ran {
    pub outcome: RunOutcome,
    pub output: String,
    pub chunks: Vec<(Instant, Vec<u8>)>,
}

pub fn run_with(sandbox: &NamespaceSandbox, spec: &RunSpec) -> Result<Ran, SandboxError> {
    let mut chunks = Vec::new();
    let outcome = sandbox.run(spec, &mut |b: &[u8]| {
        chunks.push((Instant::now(), b.to_vec()))
    })?;
    let output = String::from_utf8_lossy(
        &chunks
            .iter()
            .flat_map(|(_, c)| c.clone())
            .collect::<Vec<u8>>(),
    )
    .into_owned();
    Ok(Ran {
        outcome,
        output,
        chunks,
    })
}

/// Runs and expects success; returns the output.
pub fn run_ok(spec: &RunSpec) -> String {
    let ran = run_with(&NamespaceSandbox::new(), spec).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
    assert!(
        ran.outcome.status.success(),
        "{:?} -> {}:\n{}",
        spec.argv,
        ran.outcome.status,
        ran.output
    );
    ran.output
}

/// The host's mount table without the per-line mount ids (they never repeat) to compare.
pub fn mount_table() -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .map(|l| l.split(' ').skip(2).collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines
}
