//! What this host can do, for `oxkit doctor`: privileges and namespaces (probed by actually
//! cloning), overlayfs (probed by mounting in a private mount namespace), binfmt_misc handlers
//! per architecture, QEMU system emulators, KVM (probed by booting a tiny guest with a timeout,
//! because on some hosts /dev/kvm exists but guests hang) and the cgroup layout. Every probe is
//! bounded in time and leaves nothing behind; nothing here prints.

mod cgroup;
mod kvm;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::binfmt::{self, BinfmtError};
use crate::process;
use crate::spec::ExitStatus;

pub use cgroup::{CgroupLayout, cgroup_layout};

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Works.
    Ok,
    /// Missing or broken; `fix` says what to do.
    Missing,
    /// For information: not something oxkit needs.
    Info,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Missing => "missing",
            Self::Info => "info",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Stable identifier (`root`, `namespaces`, `binfmt/arm64`, `kvm`...).
    pub id: String,
    pub status: Status,
    /// What was found, in a few words.
    pub summary: String,
    /// What to run or change, when something is missing.
    pub fix: Option<String>,
}

impl Check {
    fn new(
        id: impl Into<String>,
        status: Status,
        summary: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Self {
            id: id.into(),
            status,
            summary: summary.into(),
            fix,
        }
    }
}

/// Everything probed, in a stable order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostReport {
    pub checks: Vec<Check>,
}

impl HostReport {
    /// The checks that are [`Status::Missing`].
    pub fn missing(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Missing)
    }

    pub fn get(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// Where and how to probe. The binary fills `search_path` from `PATH` and `scratch_dir` from
/// the temporary directory; this crate reads no environment.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub binfmt_dir: PathBuf,
    /// Directories searched for `qemu-system-*`.
    pub search_path: Vec<PathBuf>,
    /// Where probes may create (and remove) a temporary directory.
    pub scratch_dir: PathBuf,
    /// How long the KVM guest may take before it is declared hung.
    pub kvm_timeout: Duration,
    pub kvm_device: PathBuf,
    /// Architectures whose binfmt handlers are reported.
    pub arches: Vec<String>,
}

impl ProbeOptions {
    pub fn new(search_path: Vec<PathBuf>, scratch_dir: impl Into<PathBuf>) -> Self {
        Self {
            binfmt_dir: PathBuf::from(binfmt::DEFAULT_DIR),
            search_path,
            scratch_dir: scratch_dir.into(),
            kvm_timeout: Duration::from_secs(3),
            kvm_device: PathBuf::from("/dev/kvm"),
            arches: ["amd64", "arm64", "riscv64"].map(String::from).to_vec(),
        }
    }
}

const USERNS_FIX: &str = "run oxkit as root, or enable unprivileged user namespaces: `sysctl kernel.unprivileged_userns_clone=1` (Debian/Ubuntu kernels), `sysctl user.max_user_namespaces=15000`, on Ubuntu 24.04+ `sysctl kernel.apparmor_restrict_unprivileged_userns=0`";

/// Runs every probe.
pub fn probe_host(opts: &ProbeOptions) -> HostReport {
    let mut checks = Vec::new();
    let root = rustix::process::geteuid().is_root();
    let userns = probe_clone(libc::CLONE_NEWUSER, None);
    let ns_flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET;
    let namespaces = probe_clone(
        if root {
            ns_flags
        } else {
            ns_flags | libc::CLONE_NEWUSER
        },
        None,
    );

    checks.push(match (root, &namespaces) {
        (true, Ok(())) => Check::new("root", Status::Ok, "running as root: build steps run as real root in new namespaces", None),
        (false, Ok(())) => Check::new(
            "root",
            Status::Ok,
            "not root: build steps run in a user namespace that maps you to root (USER other than root needs oxkit as root)",
            None,
        ),
        (true, Err(e)) => Check::new(
            "root",
            Status::Missing,
            format!("running as root but namespaces cannot be created ({e}): inside a container without CAP_SYS_ADMIN?"),
            Some("run oxkit on the host or in a privileged container".into()),
        ),
        (false, Err(e)) => Check::new(
            "root",
            Status::Missing,
            format!("not root and no user namespaces ({e}): build steps cannot run"),
            Some(USERNS_FIX.into()),
        ),
    });
    checks.push(match &namespaces {
        Ok(()) => Check::new(
            "namespaces",
            Status::Ok,
            "mount, pid, uts, ipc and network namespaces work",
            None,
        ),
        Err(e) => Check::new(
            "namespaces",
            Status::Missing,
            format!("cannot create mount/pid/uts/ipc/network namespaces: {e}"),
            Some(if root {
                "use a kernel with namespaces enabled (CONFIG_NAMESPACES)".into()
            } else {
                USERNS_FIX.into()
            }),
        ),
    });
    checks.push(match (&userns, root) {
        (Ok(()), _) => Check::new(
            "user-namespaces",
            Status::Ok,
            "unprivileged user namespaces work",
            None,
        ),
        (Err(e), true) => Check::new(
            "user-namespaces",
            Status::Info,
            format!("user namespaces unavailable ({e}); not needed when running as root"),
            None,
        ),
        (Err(e), false) => Check::new(
            "user-namespaces",
            Status::Missing,
            format!("user namespaces unavailable: {e}"),
            Some(USERNS_FIX.into()),
        ),
    });
    checks.push(overlay_check(opts, root));
    checks.extend(binfmt_checks(opts));
    for (bin, pkg) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("qemu-system-aarch64", "qemu-system-arm"),
    ] {
        checks.push(match find_in_path(&opts.search_path, bin) {
            Some(p) => Check::new(bin, Status::Ok, p.display().to_string(), None),
            None => Check::new(
                bin,
                Status::Missing,
                "not found in PATH",
                Some(format!("apt-get install {pkg}")),
            ),
        });
    }
    checks.push(kvm::check(opts));
    checks.push(cgroup::check());
    HostReport { checks }
}

/// First `name` that is a file in one of `dirs`.
pub fn find_in_path(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Clones a child with `flags`; it runs `action` (a mount) if given and exits with 0 or the
/// errno. Ok when the child could be created and the action worked.
fn probe_clone(flags: libc::c_int, action: Option<&ProbeMount>) -> Result<(), std::io::Error> {
    // SAFETY: the child branch makes one mount(2) with C strings prepared by the parent, then
    // _exit: no allocation, no locks.
    let pid = match unsafe { oxkit_linux::child::clone_child(flags) }? {
        oxkit_linux::child::Forked::Child => {
            let code = match action {
                None => 0,
                Some(m) => match rustix::mount::mount(
                    m.source.as_c_str(),
                    m.target.as_c_str(),
                    m.fstype.as_c_str(),
                    rustix::mount::MountFlags::empty(),
                    m.data.as_c_str(),
                ) {
                    Ok(()) => 0,
                    Err(e) => e.raw_os_error().clamp(1, 255),
                },
            };
            oxkit_linux::child::exit(code)
        }
        oxkit_linux::child::Forked::Parent(pid) => pid,
    };
    match process::wait(pid)? {
        ExitStatus::Code(0) => Ok(()),
        ExitStatus::Code(errno) => Err(std::io::Error::from_raw_os_error(errno)),
        ExitStatus::Signal(s) => Err(std::io::Error::other(format!("probe killed by signal {s}"))),
    }
}

/// A mount prepared in the parent for a probe child (which must not allocate).
struct ProbeMount {
    source: CString,
    target: CString,
    fstype: CString,
    data: CString,
}

fn cpath(p: &Path) -> Option<CString> {
    CString::new(p.as_os_str().as_bytes()).ok()
}

fn overlay_check(opts: &ProbeOptions, root: bool) -> Check {
    let fix = Some(
        "modprobe overlay (kernel module `overlay`; for user namespaces Linux 5.11+)".to_string(),
    );
    let Ok(dir) = tempdir_in(&opts.scratch_dir, "oxkit-doctor-overlay") else {
        return Check::new(
            "overlayfs",
            Status::Info,
            format!(
                "not probed: cannot create a directory in {}",
                opts.scratch_dir.display()
            ),
            None,
        );
    };
    let paths: Vec<PathBuf> = ["lower", "upper", "work", "merged"]
        .iter()
        .map(|n| dir.join(n))
        .collect();
    let made = paths.iter().all(|p| fs::create_dir(p).is_ok());
    let mount = (|| {
        let [lower, upper, work, merged] = [&paths[0], &paths[1], &paths[2], &paths[3]];
        Some(ProbeMount {
            source: CString::new("overlay").ok()?,
            target: cpath(merged)?,
            fstype: CString::new("overlay").ok()?,
            data: CString::new(format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            ))
            .ok()?,
        })
    })();
    let flags = if root {
        libc::CLONE_NEWNS
    } else {
        libc::CLONE_NEWNS | libc::CLONE_NEWUSER
    };
    let result = match (made, mount) {
        (true, Some(m)) => probe_clone(flags, Some(&m)),
        _ => Err(std::io::Error::other(
            "cannot prepare the probe directories",
        )),
    };
    let _ = fs::remove_dir_all(&dir);
    match result {
        Ok(()) => Check::new("overlayfs", Status::Ok, "overlay mounts work", None),
        Err(e) => Check::new(
            "overlayfs",
            Status::Missing,
            format!("cannot mount overlay: {e}"),
            fix,
        ),
    }
}

fn tempdir_in(parent: &Path, prefix: &str) -> std::io::Result<PathBuf> {
    for n in 0..100u32 {
        let dir = parent.join(format!("{prefix}-{}-{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary directory name"))
}

fn binfmt_checks(opts: &ProbeOptions) -> Vec<Check> {
    let dir = &opts.binfmt_dir;
    let mut out = Vec::new();
    let mounted = dir.join("status").exists();
    out.push(if !mounted {
        Check::new(
            "binfmt_misc",
            Status::Missing,
            format!("not mounted at {}", dir.display()),
            Some(format!(
                "mount -t binfmt_misc binfmt_misc {}",
                dir.display()
            )),
        )
    } else if !binfmt::globally_enabled(dir) {
        Check::new(
            "binfmt_misc",
            Status::Missing,
            format!("mounted at {} but disabled", dir.display()),
            Some(format!("echo 1 > {}/status", dir.display())),
        )
    } else {
        Check::new(
            "binfmt_misc",
            Status::Ok,
            format!("mounted at {}", dir.display()),
            None,
        )
    });
    for arch in &opts.arches {
        let id = format!("binfmt/{arch}");
        out.push(match binfmt::check(dir, arch, None) {
            Ok(None) => Check::new(id, Status::Ok, format!("native (host is {})", binfmt::host_arch()), None),
            Ok(Some(h)) => Check::new(
                id,
                Status::Ok,
                format!("{}: enabled, flags {}, interpreter {}", h.name, h.flags, h.interpreter.display()),
                None,
            ),
            Err(e) => {
                let summary = match &e {
                    BinfmtError::NotMounted { .. } => "binfmt_misc not mounted".to_string(),
                    BinfmtError::GloballyDisabled { .. } => "binfmt_misc disabled".to_string(),
                    BinfmtError::Missing { qemu, .. } => format!("no handler ({qemu} not registered)"),
                    BinfmtError::Disabled { handler, .. } => format!("{handler} registered but disabled"),
                    BinfmtError::NoFixBinary { handler, .. } => {
                        format!("{handler} enabled but without the F flag: fails inside a chroot")
                    }
                    BinfmtError::UnknownArch { .. } | BinfmtError::Io { .. } => e.to_string(),
                };
                let fix = match &e {
                    BinfmtError::Disabled { handler, .. } => format!("update-binfmts --enable {handler}"),
                    BinfmtError::NoFixBinary { handler, .. } => format!(
                        "re-register {handler} with the F flag (Debian's qemu-user-static does): apt-get install qemu-user-static binfmt-support && update-binfmts --enable {handler}"
                    ),
                    BinfmtError::GloballyDisabled { dir, .. } => format!("echo 1 > {}/status", dir.display()),
                    _ => binfmt::FIX_COMMANDS.to_string(),
                };
                Check::new(id, Status::Missing, summary, Some(fix))
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binfmt_lines_name_the_fix() {
        let dir = tempfile::tempdir().expect("tmp");
        fs::write(dir.path().join("status"), "enabled\n").expect("status");
        let mut opts = ProbeOptions::new(Vec::new(), dir.path());
        opts.binfmt_dir = dir.path().to_path_buf();
        opts.arches = vec![binfmt::host_arch().to_string(), "riscv64".into()];
        let checks = binfmt_checks(&opts);
        assert_eq!(checks[0].status, Status::Ok);
        assert_eq!(checks[1].status, Status::Ok, "{:?}", checks[1]);
        assert!(checks[1].summary.starts_with("native"));
        if binfmt::host_arch() != "riscv64" {
            assert_eq!(checks[2].status, Status::Missing);
            assert!(
                checks[2].summary.contains("qemu-riscv64"),
                "{:?}",
                checks[2]
            );
            assert!(
                checks[2]
                    .fix
                    .as_deref()
                    .is_some_and(|f| f.contains("update-binfmts --enable"))
            );
        }
        let unmounted = tempfile::tempdir().expect("tmp");
        opts.binfmt_dir = unmounted.path().to_path_buf();
        let checks = binfmt_checks(&opts);
        assert_eq!(checks[0].status, Status::Missing);
        assert!(
            checks[0]
                .fix
                .as_deref()
                .is_some_and(|f| f.starts_with("mount -t binfmt_misc"))
        );
    }

    #[test]
    fn path_search_finds_files_only() {
        let dir = tempfile::tempdir().expect("tmp");
        fs::create_dir(dir.path().join("qemu-x")).expect("dir");
        fs::write(dir.path().join("qemu-y"), "").expect("file");
        let dirs = vec![PathBuf::from("/nonexistent"), dir.path().to_path_buf()];
        assert_eq!(
            find_in_path(&dirs, "qemu-y"),
            Some(dir.path().join("qemu-y"))
        );
        assert_eq!(find_in_path(&dirs, "qemu-x"), None);
    }
}
