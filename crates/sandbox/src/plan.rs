//! The child's setup sequence as data: [`build`] turns a prepared run (paths already resolved
//! inside the root filesystem, user and capabilities decided) into the ordered list of steps the
//! cloned child performs before `execve`. Everything is converted to C strings and pointer arrays
//! here, in the parent, because the child must not allocate. Pure: no syscalls.

use std::ffi::{CString, c_char};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oxkit_linux::mount::describe_flags;

use crate::error::SandboxError;
use crate::spec::{MountKind, Network};
use crate::user::ResolvedUser;

/// Paths inside `/proc` and `/sys` Docker hides from containers (kernel memory, keys, timers,
/// firmware), and the ones it makes read-only (sysctls, sysrq, irq affinity).
pub(crate) const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
pub(crate) const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Character devices every container gets: (name, major, minor).
pub(crate) const DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Docker's `PATH` for images that set none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How the child gets device nodes and `/sys`, which depends on the privileges it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Privilege {
    /// Real root: mknod and sysfs work.
    Root,
    /// A user namespace. `full_map`: every host id is mapped (oxkit runs as root and was asked
    /// for a user namespace); otherwise only the caller, as root.
    UserNamespace { full_map: bool },
}

impl Privilege {
    pub(crate) fn in_userns(self) -> bool {
        matches!(self, Self::UserNamespace { .. })
    }
    /// Whether setgroups(2) and gids other than 0 are available.
    pub(crate) fn all_ids(self) -> bool {
        matches!(self, Self::Root | Self::UserNamespace { full_map: true })
    }
}

/// Where a bind-mounted `/etc` file (resolv.conf, hosts, hostname) comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FileSource {
    /// A host file (the host's resolv.conf).
    Host(PathBuf),
    /// Generated contents.
    Generated(Vec<u8>),
}

/// An extra mount with its target resolved to a host path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PreparedMount {
    pub target: PathBuf,
    pub kind: MountKind,
}

/// Everything the plan needs, decided in the parent (see `namespace.rs`).
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    /// Canonical host path of the root filesystem.
    pub rootfs: PathBuf,
    /// Host paths (inside `rootfs`, symlinks resolved) of the standard mount points.
    pub proc_dir: PathBuf,
    pub dev_dir: PathBuf,
    pub sys_dir: PathBuf,
    pub resolv_target: PathBuf,
    pub hosts_target: PathBuf,
    pub hostname_target: PathBuf,
    pub resolv: FileSource,
    pub mounts: Vec<PreparedMount>,
    /// Masked paths that are directories on this kernel (the others are files).
    pub masked_dirs: Vec<&'static str>,
    pub cwd: String,
    pub hostname: String,
    pub network: Network,
    pub user: ResolvedUser,
    pub capabilities: u64,
    pub last_cap: u32,
    pub privilege: Privilege,
    /// pivot_root (true) or chroot only (tests of the fallback).
    pub pivot: bool,
    pub argv: Vec<String>,
    pub env: Vec<String>,
}

/// One thing the child does. Paths before [`Action::EnterRoot`] are host paths; after it,
/// container paths.
#[derive(Debug)]
pub(crate) enum Action {
    ResetSignals,
    ParentDeathSignal,
    WaitForParent,
    Stdio,
    CloseFdsOnExec,
    Umask(u32),
    Mount {
        source: CString,
        target: CString,
        fstype: CString,
        flags: u64,
        data: Option<CString>,
    },
    RemountReadOnly(CString),
    Mkdir(CString, u32),
    Mknod {
        path: CString,
        major: u32,
        minor: u32,
    },
    WriteFile(CString, Vec<u8>),
    Unlink(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    /// pivot_root into the directory (chroot when that fails or `pivot` is false).
    EnterRoot {
        root: CString,
        pivot: bool,
    },
    SetHostname(Vec<u8>),
    LoopbackUp,
    /// Drops every capability in 0..=last_cap not in `keep` from the bounding set.
    DropBoundingSet {
        keep: u64,
        last_cap: u32,
    },
    ClearAmbient,
    KeepCaps(bool),
    SetGroups(Vec<u32>),
    SetIds {
        uid: u32,
        gid: u32,
    },
    SetCaps(u64),
    Chdir(CString),
}

/// An action and the errors that do not stop the run.
#[derive(Debug)]
pub(crate) struct Step {
    pub action: Action,
    /// `ENOENT` is fine (Docker's masked paths that this kernel lacks).
    pub may_be_missing: bool,
    /// `EEXIST` is fine (`mkdir -p`).
    pub may_exist: bool,
}

/// The final `execve`.
pub(crate) struct Exec {
    pub program: String,
    /// Paths to try, in order (`PATH` lookup, done in the child because only it sees the root).
    pub candidates: Vec<CString>,
    /// The `PATH` searched, for error messages (`None` when `argv[0]` has a `/`).
    pub searched: Option<String>,
    _strings: Vec<CString>,
    /// NULL-terminated pointer arrays into `_strings`.
    pub argv: Vec<*const c_char>,
    pub envp: Vec<*const c_char>,
}

impl fmt::Debug for Exec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exec")
            .field("program", &self.program)
            .field("candidates", &self.candidates)
            .field("argc", &self.argv.len().saturating_sub(1))
            .field("envc", &self.envp.len().saturating_sub(1))
            .finish()
    }
}

#[derive(Debug)]
pub(crate) struct Plan {
    pub steps: Vec<Step>,
    pub exec: Exec,
}

fn cstr(bytes: impl AsRef<[u8]>, what: &str) -> Result<CString, SandboxError> {
    CString::new(bytes.as_ref())
        .map_err(|_| SandboxError::InvalidSpec(format!("{what} contains a NUL byte")))
}

fn cpath(path: &Path) -> Result<CString, SandboxError> {
    cstr(
        path.as_os_str().as_bytes(),
        &format!("path {}", path.display()),
    )
}

struct Builder {
    steps: Vec<Step>,
}

impl Builder {
    fn push(&mut self, action: Action) {
        self.steps.push(Step {
            action,
            may_be_missing: false,
            may_exist: false,
        });
    }
    fn push_optional(&mut self, action: Action) {
        self.steps.push(Step {
            action,
            may_be_missing: true,
            may_exist: false,
        });
    }
    fn push_mkdir_p(&mut self, action: Action) {
        self.steps.push(Step {
            action,
            may_be_missing: false,
            may_exist: true,
        });
    }
    fn mount(
        &mut self,
        source: &[u8],
        target: &Path,
        fstype: &str,
        flags: u64,
        data: Option<&str>,
    ) -> Result<(), SandboxError> {
        self.push(mount_action(source, target, fstype, flags, data)?);
        Ok(())
    }
}

fn mount_action(
    source: &[u8],
    target: &Path,
    fstype: &str,
    flags: u64,
    data: Option<&str>,
) -> Result<Action, SandboxError> {
    Ok(Action::Mount {
        source: cstr(source, "mount source")?,
        target: cpath(target)?,
        fstype: cstr(fstype, "filesystem type")?,
        flags,
        data: data.map(|d| cstr(d, "mount options")).transpose()?,
    })
}

/// `/etc/hosts` as BuildKit writes it.
pub(crate) fn hosts_file(hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// The environment the command gets: `env` plus Docker's `PATH` and the user's `HOME` when
/// missing.
pub(crate) fn final_env(env: &[String], home: &str) -> Vec<String> {
    let has = |key: &str| {
        env.iter()
            .any(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
    };
    let mut out = env.to_vec();
    if !has("PATH") {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOME") {
        out.push(format!("HOME={home}"));
    }
    out
}

fn exec(argv: &[String], env: &[String]) -> Result<Exec, SandboxError> {
    let program = argv
        .first()
        .ok_or_else(|| SandboxError::InvalidSpec("empty command".into()))?
        .clone();
    let (candidates, searched) = if program.contains('/') {
        (vec![cstr(&program, "command")?], None)
    } else {
        // The last PATH wins, as in a shell's environment.
        let path = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        let candidates = path
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| cstr(format!("{}/{program}", d.trim_end_matches('/')), "command"))
            .collect::<Result<Vec<_>, _>>()?;
        (candidates, Some(path))
    };
    let mut strings = Vec::with_capacity(argv.len() + env.len());
    for a in argv {
        strings.push(cstr(a, "command argument")?);
    }
    for e in env {
        strings.push(cstr(e, "environment entry")?);
    }
    let ptrs = |range: &[CString]| {
        range
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect::<Vec<_>>()
    };
    let argv_ptrs = ptrs(&strings[..argv.len()]);
    let envp_ptrs = ptrs(&strings[argv.len()..]);
    Ok(Exec {
        program,
        candidates,
        searched,
        _strings: strings,
        argv: argv_ptrs,
        envp: envp_ptrs,
    })
}

/// Bind-mounts `source` read-only over `target`. Generated contents are staged in the new
/// `/dev` tmpfs and unlinked once bound (the mount keeps the file alive).
fn bind_etc_file(
    b: &mut Builder,
    dev_dir: &Path,
    name: &str,
    source: &FileSource,
    target: &Path,
) -> Result<(), SandboxError> {
    match source {
        FileSource::Host(host) => {
            b.mount(
                host.as_os_str().as_bytes(),
                target,
                "none",
                libc::MS_BIND,
                None,
            )?;
        }
        FileSource::Generated(contents) => {
            let staged = dev_dir.join(format!(".oxkit-{name}"));
            b.push(Action::WriteFile(cpath(&staged)?, contents.clone()));
            b.mount(
                staged.as_os_str().as_bytes(),
                target,
                "none",
                libc::MS_BIND,
                None,
            )?;
            b.push(Action::Unlink(cpath(&staged)?));
        }
    }
    b.push(Action::RemountReadOnly(cpath(target)?));
    Ok(())
}

/// The child's whole setup sequence, in order.
pub(crate) fn build(p: &Prepared) -> Result<Plan, SandboxError> {
    use libc::{
        MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_STRICTATIME,
    };
    let mut b = Builder { steps: Vec::new() };
    let dev = |name: &str| p.dev_dir.join(name);

    // Process hygiene first: nothing below may be interrupted by an inherited signal mask, and
    // in a user namespace nothing works before the parent has written the id maps.
    b.push(Action::ResetSignals);
    b.push(Action::ParentDeathSignal);
    if p.privilege.in_userns() {
        b.push(Action::WaitForParent);
    }
    b.push(Action::Stdio);
    b.push(Action::CloseFdsOnExec);
    b.push(Action::Umask(0));

    // Nothing may propagate back to the host, and pivot_root needs the root on its own mount.
    b.mount(b"none", Path::new("/"), "none", MS_REC | MS_PRIVATE, None)?;
    let root = p.rootfs.as_os_str().as_bytes();
    b.mount(root, &p.rootfs, "none", MS_BIND | MS_REC, None)?;

    b.mount(
        b"proc",
        &p.proc_dir,
        "proc",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        None,
    )?;

    b.mount(
        b"tmpfs",
        &p.dev_dir,
        "tmpfs",
        MS_NOSUID | MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for &(name, major, minor) in DEVICES {
        let path = cpath(&dev(name))?;
        if p.privilege.in_userns() {
            // mknod needs CAP_MKNOD in the initial namespace: borrow the host's nodes instead.
            b.push(Action::WriteFile(path, Vec::new()));
            b.mount(
                format!("/dev/{name}").as_bytes(),
                &dev(name),
                "none",
                MS_BIND,
                None,
            )?;
        } else {
            b.push(Action::Mknod { path, major, minor });
        }
    }
    b.push(Action::Mkdir(cpath(&dev("pts"))?, 0o755));
    let pts_opts = if p.privilege.all_ids() {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    } else {
        // gid 5 (tty) does not exist in a namespace that maps only the caller.
        "newinstance,ptmxmode=0666,mode=0620"
    };
    b.mount(
        b"devpts",
        &dev("pts"),
        "devpts",
        MS_NOSUID | MS_NOEXEC,
        Some(pts_opts),
    )?;
    b.push(Action::Symlink {
        target: c"pts/ptmx".into(),
        link: cpath(&dev("ptmx"))?,
    });
    b.push(Action::Mkdir(cpath(&dev("shm"))?, 0o1777));
    b.mount(
        b"shm",
        &dev("shm"),
        "tmpfs",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        b.push(Action::Symlink {
            target: cstr(target, "link")?,
            link: cpath(&dev(link))?,
        });
    }

    if p.privilege.in_userns() && p.network == Network::Host {
        // sysfs may only be mounted by the owner of the network namespace: reuse the host's.
        b.mount(b"/sys", &p.sys_dir, "none", MS_BIND | MS_REC, None)?;
        b.push(Action::RemountReadOnly(cpath(&p.sys_dir)?));
    } else {
        b.mount(
            b"sysfs",
            &p.sys_dir,
            "sysfs",
            MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            None,
        )?;
    }

    // resolv.conf, hosts and hostname: read-only bind mounts, never written into the root
    // filesystem.
    bind_etc_file(
        &mut b,
        &p.dev_dir,
        "resolv.conf",
        &p.resolv,
        &p.resolv_target,
    )?;
    let hosts = FileSource::Generated(hosts_file(&p.hostname).into_bytes());
    bind_etc_file(&mut b, &p.dev_dir, "hosts", &hosts, &p.hosts_target)?;
    let hostname = FileSource::Generated(format!("{}\n", p.hostname).into_bytes());
    bind_etc_file(
        &mut b,
        &p.dev_dir,
        "hostname",
        &hostname,
        &p.hostname_target,
    )?;

    for m in &p.mounts {
        match &m.kind {
            MountKind::Bind { source, readonly } => {
                b.mount(
                    source.as_os_str().as_bytes(),
                    &m.target,
                    "none",
                    MS_BIND | MS_REC,
                    None,
                )?;
                if *readonly {
                    b.push(Action::RemountReadOnly(cpath(&m.target)?));
                }
            }
            MountKind::Tmpfs { size_bytes } => {
                let opts = match size_bytes {
                    Some(n) => format!("mode=1777,size={n}"),
                    None => "mode=1777".to_string(),
                };
                b.mount(
                    b"tmpfs",
                    &m.target,
                    "tmpfs",
                    MS_NOSUID | MS_NODEV,
                    Some(&opts),
                )?;
            }
        }
    }

    // Docker's /proc and /sys hardening, applied to the fresh mounts above.
    let inside = |container: &str| -> PathBuf {
        match container.strip_prefix("/proc/") {
            Some(rest) => p.proc_dir.join(rest),
            None => p.sys_dir.join(container.trim_start_matches("/sys/")),
        }
    };
    for path in READONLY_PATHS {
        let host = inside(path);
        b.push_optional(mount_action(
            host.as_os_str().as_bytes(),
            &host,
            "none",
            MS_BIND | MS_REC,
            None,
        )?);
        b.push_optional(Action::RemountReadOnly(cpath(&host)?));
    }
    for path in MASKED_PATHS {
        let host = inside(path);
        if p.masked_dirs.contains(path) {
            b.push_optional(mount_action(b"tmpfs", &host, "tmpfs", MS_RDONLY, None)?);
        } else {
            b.push_optional(mount_action(
                dev("null").as_os_str().as_bytes(),
                &host,
                "none",
                MS_BIND,
                None,
            )?);
        }
    }

    b.push(Action::EnterRoot {
        root: cpath(&p.rootfs)?,
        pivot: p.pivot,
    });

    b.push(Action::SetHostname(p.hostname.as_bytes().to_vec()));
    if p.network == Network::None {
        b.push(Action::LoopbackUp);
    }

    // Working directory: created when missing, like runc, now that the container's own view
    // (mounts included) decides where it lands.
    let mut prefix = PathBuf::from("/");
    for comp in Path::new(&p.cwd).components().skip(1) {
        prefix.push(comp);
        b.push_mkdir_p(Action::Mkdir(cpath(&prefix)?, 0o755));
    }
    b.push(Action::Chdir(cstr(&p.cwd, "working directory")?));

    // Capabilities and identity: bounding set first (needs CAP_SETPCAP), then ids with
    // keep-caps so the permitted set survives a switch away from root, then the final sets.
    b.push(Action::DropBoundingSet {
        keep: p.capabilities,
        last_cap: p.last_cap,
    });
    b.push(Action::ClearAmbient);
    if p.privilege.all_ids() {
        b.push(Action::SetGroups(p.user.groups.clone()));
    }
    b.push(Action::KeepCaps(true));
    b.push(Action::SetIds {
        uid: p.user.uid,
        gid: p.user.gid,
    });
    b.push(Action::KeepCaps(false));
    b.push(Action::SetCaps(p.capabilities));
    b.push(Action::Umask(0o022));

    Ok(Plan {
        steps: b.steps,
        exec: exec(&p.argv, &p.env)?,
    })
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Self::ResetSignals => write!(f, "resetting signal handlers"),
            Self::ParentDeathSignal => write!(f, "setting the parent-death signal"),
            Self::WaitForParent => write!(f, "waiting for the user namespace maps"),
            Self::Stdio => write!(f, "connecting stdin/stdout/stderr"),
            Self::CloseFdsOnExec => write!(f, "closing inherited descriptors"),
            Self::Umask(m) => write!(f, "setting umask {m:03o}"),
            Self::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                write!(
                    f,
                    "mounting {} on {} (type {}, {}",
                    s(source),
                    s(target),
                    s(fstype),
                    describe_flags(*flags)
                )?;
                if let Some(d) = data {
                    write!(f, ", {}", s(d))?;
                }
                write!(f, ")")
            }
            Self::RemountReadOnly(t) => write!(f, "making {} read-only", s(t)),
            Self::Mkdir(p, _) => write!(f, "creating directory {}", s(p)),
            Self::Mknod { path, major, minor } => {
                write!(f, "creating device {} ({major}:{minor})", s(path))
            }
            Self::WriteFile(p, _) => write!(f, "writing {}", s(p)),
            Self::Unlink(p) => write!(f, "removing {}", s(p)),
            Self::Symlink { target, link } => write!(f, "linking {} -> {}", s(link), s(target)),
            Self::EnterRoot { root, .. } => write!(
                f,
                "entering the root filesystem {} (pivot_root/chroot)",
                s(root)
            ),
            Self::SetHostname(h) => write!(f, "setting hostname {:?}", String::from_utf8_lossy(h)),
            Self::LoopbackUp => write!(f, "bringing up the loopback interface"),
            Self::DropBoundingSet { .. } => {
                write!(f, "dropping capabilities from the bounding set")
            }
            Self::ClearAmbient => write!(f, "clearing ambient capabilities"),
            Self::KeepCaps(_) => write!(f, "setting keep-capabilities"),
            Self::SetGroups(g) => write!(f, "setting supplementary groups {g:?}"),
            Self::SetIds { uid, gid } => write!(f, "switching to uid {uid}, gid {gid}"),
            Self::SetCaps(c) => write!(f, "setting capabilities {c:#x}"),
            Self::Chdir(p) => write!(f, "changing to working directory {}", s(p)),
        }
    }
}
