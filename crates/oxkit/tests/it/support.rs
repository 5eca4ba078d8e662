//! Shared test harness: a temporary store, the `oxkit` command, a real registry on a free
//! loopback port, and busybox root filesystems for any architecture.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use tempfile::TempDir;

pub use oxkit_testkit::{Opts as RegistryOpts, Registry, require_tool, run_ok};

/// A scratch area with its own store, HOME and DOCKER_CONFIG, so tests never share state.
pub struct Env {
    pub dir: TempDir,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("oxkit-it-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `oxkit` with this environment's store and home; nothing from the caller's environment
    /// that could change its behaviour leaks in.
    pub fn oxkit(&self) -> Command {
        let mut cmd = Command::cargo_bin("oxkit").expect("oxkit binary");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("OXKIT_STORE", self.store())
            .env("DOCKER_CONFIG", self.home().join(".docker"))
            .env("USER", "tester")
            .current_dir(self.path());
        cmd
    }
}

/// cosign with its own HOME and TUF root, so it never reaches the network or the caller's
/// files; the key passphrase (if any) in `COSIGN_PASSWORD`.
pub fn cosign(env: &Env, password: &str) -> Command {
    let home = env.path().join("cosign-home");
    std::fs::create_dir_all(&home).expect("cosign home");
    let mut cmd = Command::new(require_tool("cosign"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("TUF_ROOT", home.join("tuf"))
        .env("COSIGN_PASSWORD", password)
        .current_dir(env.path());
    cmd
}

/// `cosign sign --key KEY IMAGE` offline (no transparency log) against the test's plain-HTTP
/// registry, with `-a` annotations; the key's passphrase is `password`.
pub fn cosign_sign(env: &Env, password: &str, key: &str, image: &str, annotations: &[&str]) {
    let mut cmd = cosign(env, password);
    cmd.args([
        "sign",
        "--key",
        key,
        "--tlog-upload=false",
        "--allow-http-registry",
        "-y",
    ]);
    for a in annotations {
        cmd.args(["-a", a]);
    }
    run_ok(cmd.arg(image));
}

/// Runs a command that must fail with exit code 1; returns stderr.
pub fn run_fail(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{cmd:?} should exit 1:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    stderr
}

/// This machine's architecture, as Debian (and oxkit) names it: `amd64`, `arm64`.
pub fn host_arch() -> String {
    run_ok(Command::new("dpkg").arg("--print-architecture"))
        .trim()
        .to_string()
}

/// A busybox root filesystem for `arch` (Debian's busybox-static for that architecture):
/// `/bin/busybox` plus its applet symlinks. Cached per architecture under the target dir;
/// built in a private directory and renamed into place so parallel tests never see a half-built
/// one.
pub fn busybox_rootfs(arch: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let root = base.join(format!("busybox-rootfs-{arch}"));
    if root.join("bin/busybox").exists() {
        return root;
    }
    std::fs::create_dir_all(&base).expect("target tmpdir");
    let work = tempfile::Builder::new()
        .prefix(&format!("busybox-{arch}-"))
        .tempdir_in(&base)
        .expect("work dir");
    let deb_arch = arch.trim();
    let script = if host_arch() == deb_arch {
        "cp /bin/busybox rootfs/bin/busybox".to_string()
    } else {
        format!(
            "apt-get download busybox-static:{deb_arch} >/dev/null && dpkg-deb -x busybox-static_*_{deb_arch}.deb x && cp x/bin/busybox rootfs/bin/busybox"
        )
    };
    let sh = format!(
        "set -e; cd {c}; mkdir -p rootfs/bin rootfs/sbin rootfs/usr/bin rootfs/usr/sbin rootfs/tmp rootfs/etc rootfs/root
{script}
for a in $(/bin/busybox --list-full 2>/dev/null || true); do case $a in bin/busybox) ;; *) ln -sf /bin/busybox rootfs/$a ;; esac; done
test -e rootfs/bin/sh",
        c = work.path().display()
    );
    run_ok(Command::new("sh").arg("-c").arg(sh));
    // Another test may have won the race; theirs is complete, so either copy is fine.
    if std::fs::rename(work.path().join("rootfs"), &root).is_err() {
        assert!(
            root.join("bin/busybox").exists(),
            "busybox rootfs missing at {}",
            root.display()
        );
    }
    root
}

/// Runs `oxkit ARGS` on a pseudo-terminal (util-linux `script`), typing each answer once its
/// prompt has appeared (as many times as the answers so far with that prompt). Returns (exit
/// success, everything the terminal showed).
pub fn on_terminal(env: &Env, args: &str, answers: &[(&str, &str)]) -> (bool, String) {
    let oxkit = assert_cmd::cargo::cargo_bin("oxkit");
    let mut child = Command::new(require_tool("script"))
        .args(["-qec", &format!("{} {args}", oxkit.display()), "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.home())
        .env("TERM", "dumb")
        .current_dir(env.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let shown = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let sink = Arc::clone(&shown);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    });
    let mut stdin = child.stdin.take().expect("stdin");
    for (i, (prompt, answer)) in answers.iter().enumerate() {
        let seen = answers[..=i].iter().filter(|(p, _)| p == prompt).count();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = String::from_utf8_lossy(&shown.lock().expect("lock")).into_owned();
            if text.matches(prompt).count() >= seen {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no prompt {prompt:?} ({i}); terminal showed: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        stdin
            .write_all(format!("{answer}\n").as_bytes())
            .expect("type");
    }
    let status = child.wait().expect("wait");
    drop(stdin);
    let _ = reader.join();
    let text = String::from_utf8_lossy(&shown.lock().expect("lock")).into_owned();
    (status.success(), text)
}
