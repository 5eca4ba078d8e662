//! [`NamespaceSandbox`], the real [`Sandbox`]: prepares a run in the parent (validates the spec,
//! checks binfmt for foreign architectures, resolves the user, creates missing mount points),
//! clones the child into new namespaces, writes user-namespace maps when needed, then streams
//! the output and reaps the command. Host side effects in the child go through `syscall`;
//! here the parent only creates mount points, pipes and the child.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use oxkit_linux::child::{Forked, clone_child};
use rustix::fs::{Mode, OFlags};
use rustix::pipe::PipeFlags;
use rustix::process::Pid;

use crate::Sandbox;
use crate::binfmt;
use crate::caps::Capabilities;
use crate::child::{self, ChildFds, Failure};
use crate::error::SandboxError;
use crate::plan::{self, FileSource, MASKED_PATHS, Plan, Prepared, PreparedMount, Privilege};
use crate::process::{self, ChildGuard};
use crate::rootpath::{self, Kind};
use crate::spec::{ExitStatus, MountKind, Network, RunOutcome, RunSpec};
use crate::stubs::remove_mount_stubs;
use crate::syscall::linux::LinuxSyscalls;
use crate::user::{self, UserFiles};

/// Runs build steps in Linux namespaces (see the crate docs for what a run sets up and what the
/// host needs).
#[derive(Clone, Debug)]
pub struct NamespaceSandbox {
    binfmt_dir: PathBuf,
    force_user_namespace: bool,
    pivot_root: bool,
    host_resolv_conf: PathBuf,
}

impl Default for NamespaceSandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl NamespaceSandbox {
    /// Root when running as root, a user namespace otherwise; pivot_root; the host's
    /// `/proc/sys/fs/binfmt_misc` and `/etc/resolv.conf`.
    pub fn new() -> Self {
        Self {
            binfmt_dir: PathBuf::from(binfmt::DEFAULT_DIR),
            force_user_namespace: false,
            pivot_root: true,
            host_resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }

    /// Where to look for binfmt_misc handlers (tests point this at a fake directory).
    pub fn with_binfmt_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.binfmt_dir = dir.into();
        self
    }

    /// Use a user namespace even when running as root (what an unprivileged run does; as root
    /// every id is mapped).
    pub fn with_user_namespace(mut self, always: bool) -> Self {
        self.force_user_namespace = always;
        self
    }

    /// `false`: enter the root filesystem with chroot only, the fallback used where pivot_root
    /// is impossible.
    pub fn with_pivot_root(mut self, pivot_root: bool) -> Self {
        self.pivot_root = pivot_root;
        self
    }

    /// The resolv.conf bind-mounted into the root filesystem (default `/etc/resolv.conf`).
    pub fn with_host_resolv_conf(mut self, path: impl Into<PathBuf>) -> Self {
        self.host_resolv_conf = path.into();
        self
    }

    fn privilege(&self) -> Privilege {
        let root = rustix::process::geteuid().is_root();
        match (root, self.force_user_namespace) {
            (true, false) => Privilege::Root,
            (true, true) => Privilege::UserNamespace { full_map: true },
            (false, _) => Privilege::UserNamespace { full_map: false },
        }
    }

    /// Parent-side preparation. Mount points it creates are pushed to `created` as it goes, so
    /// the caller can remove them if anything later fails.
    fn prepare(
        &self,
        spec: &RunSpec,
        created: &mut Vec<PathBuf>,
    ) -> Result<Prepared, SandboxError> {
        validate(spec)?;
        let rootfs = fs::canonicalize(&spec.rootfs)
            .ok()
            .filter(|p| p.is_dir())
            .ok_or_else(|| SandboxError::RootfsMissing {
                path: spec.rootfs.clone(),
            })?;
        if let Some(arch) = &spec.arch {
            binfmt::check(&self.binfmt_dir, arch, Some(&rootfs))?;
        }
        let privilege = self.privilege();

        let read = |p: &str| -> Result<(PathBuf, Option<String>), SandboxError> {
            let host = rootpath::resolve(&rootfs, p)?;
            match fs::read_to_string(&host) {
                Ok(text) => Ok((host, Some(text))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((host, None)),
                Err(e) => Err(SandboxError::io("reading", host, e)),
            }
        };
        let (passwd_path, passwd) = read("/etc/passwd")?;
        let (group_path, group) = read("/etc/group")?;
        let user = user::resolve(
            spec.user.as_deref(),
            &UserFiles {
                passwd: passwd.as_deref(),
                group: group.as_deref(),
                passwd_path,
                group_path,
            },
        )?;
        if !privilege.all_ids() && (user.uid != 0 || user.gid != 0) {
            return Err(SandboxError::UserNotMapped {
                user: spec.user.clone().unwrap_or_default(),
                uid: user.uid,
                gid: user.gid,
            });
        }

        // The kernel filesystems go exactly where the container expects them: a symlinked /proc
        // would otherwise get proc mounted over whatever it points to (even the root).
        let fixed = |name: &'static str, created: &mut Vec<PathBuf>| {
            let host = rootpath::ensure(&rootfs, name, Kind::Dir, created)?;
            if host != rootpath::host_path(&rootfs, Path::new(name)) {
                return Err(SandboxError::UnsafePath {
                    rootfs: rootfs.clone(),
                    path: name.to_string(),
                    reason: "is a symbolic link; the sandbox mounts a kernel filesystem there, so it must be a plain directory (remove the link in the image)",
                });
            }
            Ok(host)
        };
        let proc_dir = fixed("/proc", created)?;
        let dev_dir = fixed("/dev", created)?;
        let sys_dir = fixed("/sys", created)?;
        let resolv_target = rootpath::ensure(&rootfs, "/etc/resolv.conf", Kind::File, created)?;
        let hosts_target = rootpath::ensure(&rootfs, "/etc/hosts", Kind::File, created)?;
        let hostname_target = rootpath::ensure(&rootfs, "/etc/hostname", Kind::File, created)?;

        // Parents before children, whatever order the Dockerfile listed them in.
        let mut requested: Vec<_> = spec.mounts.iter().collect();
        requested.sort_by_key(|m| m.target.split('/').filter(|c| !c.is_empty()).count());
        let mut mounts = Vec::with_capacity(requested.len());
        for m in requested {
            let kind = match &m.kind {
                MountKind::Bind { source, .. } => match fs::metadata(source) {
                    Ok(meta) if meta.is_dir() => Kind::Dir,
                    Ok(_) => Kind::File,
                    Err(e) => return Err(SandboxError::io("bind mount source", source, e)),
                },
                MountKind::Tmpfs { .. } => Kind::Dir,
            };
            let target = rootpath::ensure(&rootfs, &m.target, kind, created)?;
            if target == rootfs {
                return Err(SandboxError::UnsafePath {
                    rootfs: rootfs.clone(),
                    path: m.target.clone(),
                    reason: "a mount target may not be the root directory itself",
                });
            }
            mounts.push(PreparedMount {
                target,
                kind: m.kind.clone(),
            });
        }

        let resolv = if fs::metadata(&self.host_resolv_conf).is_ok_and(|m| m.is_file()) {
            FileSource::Host(self.host_resolv_conf.clone())
        } else {
            FileSource::Generated(Vec::new())
        };
        let masked_dirs = MASKED_PATHS
            .iter()
            .copied()
            .filter(|p| fs::metadata(p).is_ok_and(|m| m.is_dir()))
            .collect();
        let last_cap = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(40)
            .min(63);
        let env = plan::final_env(&spec.env, &user.home);
        Ok(Prepared {
            rootfs,
            proc_dir,
            dev_dir,
            sys_dir,
            resolv_target,
            hosts_target,
            hostname_target,
            resolv,
            mounts,
            masked_dirs,
            cwd: spec.cwd.clone(),
            hostname: spec.hostname.clone(),
            network: spec.network,
            user,
            capabilities: spec
                .capabilities
                .unwrap_or_else(Capabilities::docker_default)
                .bits(),
            last_cap,
            privilege,
            pivot: self.pivot_root,
            argv: spec.argv.clone(),
            env,
        })
    }

    fn spawn_and_wait(
        &self,
        p: &Prepared,
        output: &mut dyn FnMut(&[u8]),
    ) -> Result<ExitStatus, SandboxError> {
        let pipe = |what| {
            rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| SandboxError::process(what, e))
        };
        let plan = plan::build(p)?;
        let (report_r, report_w) = pipe("creating the report pipe")?;
        let (out_r, out_w) = pipe("creating the output pipe")?;
        let devnull =
            rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| SandboxError::io("opening", "/dev/null", e.into()))?;
        let userns = p.privilege.in_userns();
        let (sync_r, sync_w) = if userns {
            let (r, w) = pipe("creating the sync pipe")?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        let high = |fd: &OwnedFd| {
            process::high_fd(fd).map_err(|e| SandboxError::process("duplicating descriptors", e))
        };
        let fds = ChildFds {
            stdin: high(&devnull)?,
            output: high(&out_w)?,
            report: high(&report_w)?,
            sync: sync_r.as_ref().map(high).transpose()?,
        };
        drop((devnull, out_w, report_w, sync_r));

        let mut flags =
            libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
        if p.network == Network::None {
            flags |= libc::CLONE_NEWNET;
        }
        if userns {
            flags |= libc::CLONE_NEWUSER;
        }
        // SAFETY: the child branch runs only `child::main`, which works on the prepared plan
        // without allocating or locking and ends in execve or _exit.
        let pid = match unsafe { clone_child(flags) }.map_err(clone_error)? {
            Forked::Child => child::main(&plan, &fds, &LinuxSyscalls),
            Forked::Parent(pid) => pid,
        };
        let guard = ChildGuard::new(pid);
        // The parent must not hold the write ends, or it would never see end-of-file.
        drop(fds);

        if let Some(sync_w) = sync_w {
            let full_map = matches!(p.privilege, Privilege::UserNamespace { full_map: true });
            write_id_maps(pid, full_map)?;
            rustix::io::write(&sync_w, &[1])
                .map_err(|e| SandboxError::process("releasing the child", e))?;
        }

        match Failure::receive(&report_r) {
            Ok(None) => {}
            Ok(Some(failure)) => {
                let _ = guard.wait();
                return Err(describe_failure(p, &plan, failure));
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(SandboxError::process("setting up", e));
            }
            Err(e) => return Err(SandboxError::process("reading the setup report", e)),
        }

        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rustix::io::read(&out_r, &mut buf) {
                Ok(0) => break,
                Ok(n) => output(buf.get(..n).unwrap_or_default()),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(SandboxError::process("reading the command's output", e)),
            }
        }
        guard
            .wait()
            .map_err(|e| SandboxError::process("waiting for the command", e))
    }
}

impl Sandbox for NamespaceSandbox {
    fn run(
        &self,
        spec: &RunSpec,
        output: &mut dyn FnMut(&[u8]),
    ) -> Result<RunOutcome, SandboxError> {
        let start = Instant::now();
        let mut created = Vec::new();
        let result = self
            .prepare(spec, &mut created)
            .and_then(|p| self.spawn_and_wait(&p, output));
        match result {
            Ok(status) => {
                let duration = start.elapsed();
                tracing::debug!(
                    rootfs = %spec.rootfs.display(),
                    argv = ?spec.argv,
                    %status,
                    ms = duration.as_secs_f64() * 1000.0,
                    created = ?created,
                    "sandboxed run finished"
                );
                Ok(RunOutcome {
                    status,
                    created_mountpoints: created,
                    duration,
                })
            }
            Err(e) => {
                // The step never ran: leave the root filesystem as it was.
                let _ = remove_mount_stubs(&spec.rootfs, &created);
                Err(e)
            }
        }
    }
}

fn validate(spec: &RunSpec) -> Result<(), SandboxError> {
    let invalid = |m: String| Err(SandboxError::InvalidSpec(m));
    if spec.argv.is_empty() || spec.argv[0].is_empty() {
        return invalid("empty command".into());
    }
    if let Some(e) = spec
        .env
        .iter()
        .find(|e| e.split_once('=').is_none_or(|(k, _)| k.is_empty()))
    {
        return invalid(format!("environment entry {e:?} is not KEY=VALUE"));
    }
    if !spec.cwd.starts_with('/') {
        return invalid(format!("working directory {:?} must be absolute", spec.cwd));
    }
    if spec.hostname.is_empty() || spec.hostname.len() > 64 || spec.hostname.contains(['/', '\0']) {
        return invalid(format!(
            "hostname {:?} must be 1-64 characters without '/'",
            spec.hostname
        ));
    }
    if let Some(m) = spec.mounts.iter().find(|m| !m.target.starts_with('/')) {
        return invalid(format!("mount target {:?} must be absolute", m.target));
    }
    Ok(())
}

fn clone_error(e: io::Error) -> SandboxError {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EINVAL | libc::ENOSPC | libc::EUSERS | libc::EACCES) => {
            SandboxError::NoPrivileges { source: e }
        }
        _ => SandboxError::process("creating the namespaces (clone)", e),
    }
}

/// Maps root in the child's user namespace: every id when oxkit is root, else just the caller.
fn write_id_maps(pid: Pid, full_map: bool) -> Result<(), SandboxError> {
    let proc = PathBuf::from(format!("/proc/{}", pid.as_raw_nonzero()));
    let write = |name: &str, contents: String| {
        fs::write(proc.join(name), contents).map_err(|source| SandboxError::UserNamespaceMap {
            file: format!("/proc/PID/{name}"),
            source,
        })
    };
    if full_map {
        write("uid_map", "0 0 4294967295\n".into())?;
        write("gid_map", "0 0 4294967295\n".into())
    } else {
        // An unprivileged process may only map its own gid after giving up setgroups(2).
        write("setgroups", "deny\n".into())?;
        write(
            "uid_map",
            format!("0 {} 1\n", rustix::process::geteuid().as_raw()),
        )?;
        write(
            "gid_map",
            format!("0 {} 1\n", rustix::process::getegid().as_raw()),
        )
    }
}

fn describe_failure(p: &Prepared, plan: &Plan, f: Failure) -> SandboxError {
    let errno = io::Error::from_raw_os_error(f.errno);
    let step = usize::try_from(f.step).unwrap_or(usize::MAX);
    if let Some(s) = plan.steps.get(step) {
        return SandboxError::Setup {
            step: s.action.to_string(),
            source: errno,
        };
    }
    let program = plan.exec.program.clone();
    match f.errno {
        libc::ENOENT => {
            if let Some(path) = &plan.exec.searched {
                return SandboxError::CommandNotFound {
                    program,
                    searched: format!(" (searched PATH={path})"),
                };
            }
            let inner = if program.starts_with('/') {
                program.clone()
            } else {
                Path::new(&p.cwd)
                    .join(&program)
                    .to_string_lossy()
                    .into_owned()
            };
            if rootpath::resolve(&p.rootfs, &inner).is_ok_and(|h| h.exists()) {
                SandboxError::Exec {
                    program,
                    source: errno,
                    hint: "; the file exists, so the interpreter it names (its #! line or ELF dynamic loader) is missing from the root filesystem",
                }
            } else {
                SandboxError::CommandNotFound {
                    program,
                    searched: String::new(),
                }
            }
        }
        libc::ENOEXEC => SandboxError::Exec {
            program,
            source: errno,
            hint: "; it is not an executable for this machine: if the root filesystem is for another architecture, pass its platform so oxkit can check binfmt_misc",
        },
        libc::EACCES => SandboxError::Exec {
            program,
            source: errno,
            hint: "; make it executable (chmod +x) and its directories searchable",
        },
        _ => SandboxError::Exec {
            program,
            source: errno,
            hint: "",
        },
    }
}
