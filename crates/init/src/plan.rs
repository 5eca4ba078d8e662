//! Turns a parsed `config.json` into a [`Plan`]: the namespaces to create or join and the exact
//! list of steps the container's first process performs between clone(2) and execve(2), in
//! runc's order. Every path, string and number the child needs is prepared here, because the
//! child runs in a copy of a possibly multi-threaded process and must not allocate.
//!
//! Reads the rootfs only to resolve symlinks and to see whether a bind source is a file. Makes
//! no syscalls that change anything; the child (`child.rs`) does that.

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::process::Resource;

use crate::caps::CapSets;
use crate::mountopt::{
    self, MS_BIND, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SHARED, MS_SLAVE,
};
use crate::rootpath;
use crate::spec::{Mount, Spec};

/// Facts about the host the plan depends on, gathered once (see [`Host::detect`]).
#[derive(Clone, Debug)]
pub struct Host {
    /// `/proc/sys/kernel/cap_last_cap`.
    pub last_cap: u32,
    /// Where cgroups are mounted (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// The cgroup root is a cgroup2 (unified) mount; otherwise v1 controllers live below it.
    pub cgroup2: bool,
    /// v1 hierarchies (`cpu`, `memory`, `systemd`, ...) below the cgroup root.
    pub cgroup_v1_dirs: Vec<PathBuf>,
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

impl Host {
    pub fn detect() -> Self {
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        let cgroup_root = PathBuf::from("/sys/fs/cgroup");
        // f_type's width differs between architectures.
        #[allow(clippy::useless_conversion)]
        let cgroup2 = rustix::fs::statfs(&cgroup_root)
            .is_ok_and(|s| i64::try_from(s.f_type).is_ok_and(|t| t == CGROUP2_SUPER_MAGIC));
        let mut cgroup_v1_dirs = Vec::new();
        if !cgroup2 && let Ok(entries) = std::fs::read_dir(&cgroup_root) {
            for e in entries.flatten() {
                // Skip the comounted symlinks (cpu -> cpu,cpuacct): their target is listed too.
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    cgroup_v1_dirs.push(e.path());
                }
            }
            cgroup_v1_dirs.sort();
        }
        Self {
            last_cap,
            cgroup_root,
            cgroup2,
            cgroup_v1_dirs,
        }
    }
}

/// Which errno a step may meet without failing the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tolerate {
    Nothing,
    /// ENOENT: masked and read-only paths that this kernel does not have.
    Missing,
    /// EEXIST: device nodes and symlinks already there.
    Exists,
    /// Best effort (creating the working directory on a read-only root).
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Char,
    Block,
    Fifo,
}

/// One thing the child does. Paths are absolute host paths before [`Step::EnterRoot`] and
/// container paths after it.
#[derive(Debug)]
pub enum Step {
    /// setns(2) into the namespace file opened (by the parent) as `Plan::join[index]`.
    SetNs {
        index: usize,
    },
    /// unshare(2), for the cgroup namespace, created after the process joined its cgroup.
    Unshare {
        flag: i32,
        what: &'static str,
    },
    WriteFile {
        path: CString,
        data: Vec<u8>,
    },
    Rlimit {
        resource: Resource,
        name: String,
        soft: u64,
        hard: u64,
    },
    Umask(u32),
    MkdirAll(CString),
    /// Creates an empty file to bind a file onto.
    Touch(CString),
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: u64,
        data: Option<CString>,
    },
    /// mount_setattr(2) with AT_RECURSIVE.
    SetAttr {
        target: CString,
        set: u64,
        clear: u64,
    },
    Mknod {
        path: CString,
        kind: NodeKind,
        mode: u32,
        major: u32,
        minor: u32,
    },
    Chown {
        path: CString,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    /// pivot_root into `root` (falling back to MS_MOVE + chroot where the old root cannot be
    /// pivoted), or chroot only when the container shares the host's mount namespace.
    EnterRoot {
        root: CString,
        pivot: bool,
    },
    /// Bind-remounts a mount read-only, keeping its other flags.
    RemountReadonly(CString),
    /// A directory gets a read-only tmpfs over it, a file gets /dev/null bound over it.
    Mask(CString),
    /// Bind-mounts a path onto itself read-only.
    ReadonlyPath(CString),
    Hostname(Vec<u8>),
    LoopbackUp,
    Chdir(CString),
    DropBounding {
        keep: u64,
        last_cap: u32,
    },
    SetGroups(Vec<u32>),
    KeepCaps(bool),
    SetIds {
        uid: u32,
        gid: u32,
    },
    SetCaps {
        effective: u64,
        permitted: u64,
        inheritable: u64,
    },
    RaiseAmbient(u64),
    NoNewPrivs,
}

#[derive(Debug)]
pub struct PlannedStep {
    pub step: Step,
    pub tolerate: Tolerate,
}

/// How the program is found and run.
#[derive(Debug)]
pub struct Exec {
    /// `process.args[0]` as written, for messages.
    pub program: String,
    /// Paths tried in order, like execvp with the container's PATH.
    pub candidates: Vec<CString>,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// The PATH searched, for messages.
    pub search_path: String,
}

/// Everything needed to start one container, reusable for every restart.
#[derive(Debug)]
pub struct Plan {
    /// CLONE_NEW* flags for clone(2).
    pub clone_flags: i32,
    /// Namespace files to join: (path, CLONE_NEW* type, spec name).
    pub join: Vec<(PathBuf, i32, &'static str)>,
    pub new_pid_namespace: bool,
    pub steps: Vec<PlannedStep>,
    pub exec: Exec,
    /// cgroup directories the parent creates before each start; the child joins them.
    pub cgroup_dirs: Vec<PathBuf>,
    /// Spec features the init ignores, to be logged once.
    pub notes: Vec<String>,
}

/// A spec that cannot be run at all.
#[derive(Debug, PartialEq, Eq)]
pub struct PlanError(pub String);

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn cstr(s: impl AsRef<[u8]>, what: &str) -> Result<CString, PlanError> {
    CString::new(s.as_ref()).map_err(|_| PlanError(format!("{what} contains a NUL byte")))
}

fn cpath(p: &Path) -> Result<CString, PlanError> {
    cstr(p.as_os_str().as_bytes(), &format!("path {}", p.display()))
}

/// `/a/./b/../c` → `/a/c`, relative paths made absolute: how the spec's container paths are
/// compared.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// Where a container's root filesystem is: `root.path` relative to the bundle directory
/// (`rootfs` by default), or absolute.
pub fn rootfs_of(spec: &Spec, bundle_dir: &Path) -> PathBuf {
    let path = spec
        .root
        .as_ref()
        .map(|r| r.path.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("rootfs");
    bundle_dir.join(path)
}

/// Inputs the parent gathers per bundle.
pub struct Inputs<'a> {
    pub spec: &'a Spec,
    pub bundle_dir: &'a Path,
    pub host: &'a Host,
    /// The mount the rootfs lives on, when it must be made private for pivot_root (rootfs
    /// propagation `shared`).
    pub rootfs_parent_mount: Option<PathBuf>,
}

pub fn build(inputs: &Inputs<'_>) -> Result<Plan, PlanError> {
    let spec = inputs.spec;
    let process = spec
        .process
        .as_ref()
        .ok_or_else(|| PlanError("config.json has no \"process\"".to_string()))?;
    if process.args.is_empty() {
        return Err(PlanError("config.json: process.args is empty".to_string()));
    }
    let rootfs = rootfs_of(spec, inputs.bundle_dir);
    let mut notes = spec.unsupported();
    let mut steps: Vec<PlannedStep> = Vec::new();
    let push = |steps: &mut Vec<PlannedStep>, step: Step, tolerate: Tolerate| {
        steps.push(PlannedStep { step, tolerate });
    };

    // Namespaces: new ones at clone time, paths joined first thing in the child.
    let mut clone_flags = 0;
    let mut join = Vec::new();
    let mut new_pid_namespace = false;
    let mut new_cgroup = false;
    let (mut has_mount, mut has_uts, mut new_net) = (false, false, false);
    for ns in spec
        .linux
        .as_ref()
        .map(|l| l.namespaces.as_slice())
        .unwrap_or_default()
    {
        let (flag, name): (i32, &'static str) = match ns.kind.as_str() {
            "pid" => (libc::CLONE_NEWPID, "pid"),
            "network" => (libc::CLONE_NEWNET, "network"),
            "mount" => (libc::CLONE_NEWNS, "mount"),
            "ipc" => (libc::CLONE_NEWIPC, "ipc"),
            "uts" => (libc::CLONE_NEWUTS, "uts"),
            "cgroup" => (libc::CLONE_NEWCGROUP, "cgroup"),
            "user" | "time" => {
                notes.push(format!(
                    "{} namespace (the container uses the host's)",
                    ns.kind
                ));
                continue;
            }
            other => {
                return Err(PlanError(format!(
                    "config.json: unknown namespace type {other:?}"
                )));
            }
        };
        match ns.path.as_deref().filter(|p| !p.is_empty()) {
            Some(path) if flag == libc::CLONE_NEWPID => {
                notes.push(format!(
                    "joining the pid namespace {path} (the container uses the init's pid namespace)"
                ));
            }
            Some(path) => {
                join.push((PathBuf::from(path), flag, name));
                has_mount |= flag == libc::CLONE_NEWNS;
                has_uts |= flag == libc::CLONE_NEWUTS;
            }
            None => match flag {
                libc::CLONE_NEWCGROUP => new_cgroup = true,
                _ => {
                    clone_flags |= flag;
                    new_pid_namespace |= flag == libc::CLONE_NEWPID;
                    has_mount |= flag == libc::CLONE_NEWNS;
                    has_uts |= flag == libc::CLONE_NEWUTS;
                    new_net |= flag == libc::CLONE_NEWNET;
                }
            },
        }
    }
    for i in 0..join.len() {
        push(&mut steps, Step::SetNs { index: i }, Tolerate::Nothing);
    }

    // cgroupsPath: joined before a new cgroup namespace is made, so that it becomes its root.
    let mut cgroup_dirs = Vec::new();
    if let Some(path) = spec
        .linux
        .as_ref()
        .and_then(|l| l.cgroups_path.as_deref())
        .filter(|p| !p.is_empty())
    {
        let rel = path.trim_start_matches('/');
        if rel.contains(':') {
            notes.push(format!("systemd-style cgroupsPath {path:?}"));
        } else if inputs.host.cgroup2 {
            cgroup_dirs.push(inputs.host.cgroup_root.join(rel));
        } else {
            cgroup_dirs.extend(inputs.host.cgroup_v1_dirs.iter().map(|d| d.join(rel)));
        }
    }
    for dir in &cgroup_dirs {
        push(
            &mut steps,
            Step::WriteFile {
                path: cpath(&dir.join("cgroup.procs"))?,
                data: b"0".to_vec(),
            },
            Tolerate::Nothing,
        );
    }
    if new_cgroup {
        push(
            &mut steps,
            Step::Unshare {
                flag: libc::CLONE_NEWCGROUP,
                what: "cgroup namespace",
            },
            Tolerate::Nothing,
        );
    }

    if let Some(adj) = process.oom_score_adj {
        push(
            &mut steps,
            Step::WriteFile {
                path: c"/proc/self/oom_score_adj".into(),
                data: adj.to_string().into_bytes(),
            },
            Tolerate::Nothing,
        );
    }
    for r in &process.rlimits {
        match rlimit_resource(&r.kind) {
            Some(resource) => push(
                &mut steps,
                Step::Rlimit {
                    resource,
                    name: r.kind.clone(),
                    soft: r.soft,
                    hard: r.hard,
                },
                Tolerate::Nothing,
            ),
            None => notes.push(format!("rlimit {}", r.kind)),
        }
    }

    // Exact modes for the nodes and directories made below.
    push(&mut steps, Step::Umask(0), Tolerate::Nothing);
    let root = spec.root.as_ref();
    let readonly = root.is_some_and(|r| r.readonly);
    if has_mount {
        plan_mounts(inputs, &rootfs, &mut steps, &mut notes)?;
    } else {
        if !spec.mounts.is_empty() {
            notes.push(
                "mounts without a mount namespace (the container is only chrooted)".to_string(),
            );
        }
        push(
            &mut steps,
            Step::EnterRoot {
                root: cpath(&rootfs)?,
                pivot: false,
            },
            Tolerate::Nothing,
        );
    }

    // Inside the new root. The working directory is created like runc does, before the root
    // becomes read-only (best effort: it may be on a read-only bind).
    let cwd = if process.cwd.is_empty() {
        "/".to_string()
    } else {
        clean(&process.cwd)
    };
    let cwd = cstr(&cwd, "process.cwd")?;
    push(&mut steps, Step::MkdirAll(cwd.clone()), Tolerate::Any);
    for (key, value) in spec
        .linux
        .as_ref()
        .and_then(|l| l.sysctl.as_ref())
        .into_iter()
        .flatten()
    {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        push(
            &mut steps,
            Step::WriteFile {
                path: cstr(&path, "sysctl key")?,
                data: value.clone().into_bytes(),
            },
            Tolerate::Nothing,
        );
    }
    if has_mount {
        for p in spec
            .linux
            .as_ref()
            .and_then(|l| l.readonly_paths.as_ref())
            .into_iter()
            .flatten()
        {
            push(
                &mut steps,
                Step::ReadonlyPath(cstr(clean(p), "readonly path")?),
                Tolerate::Missing,
            );
        }
        for p in spec
            .linux
            .as_ref()
            .and_then(|l| l.masked_paths.as_ref())
            .into_iter()
            .flatten()
        {
            push(
                &mut steps,
                Step::Mask(cstr(clean(p), "masked path")?),
                Tolerate::Missing,
            );
        }
        if readonly {
            push(
                &mut steps,
                Step::RemountReadonly(c"/".into()),
                Tolerate::Nothing,
            );
        }
    } else if readonly {
        notes.push("root.readonly without a mount namespace".to_string());
    }

    if let Some(name) = spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        if has_uts {
            push(
                &mut steps,
                Step::Hostname(name.as_bytes().to_vec()),
                Tolerate::Nothing,
            );
        } else {
            notes.push(format!(
                "hostname {name:?} (the container shares the host's UTS namespace)"
            ));
        }
    }
    if new_net {
        push(&mut steps, Step::LoopbackUp, Tolerate::Nothing);
    }

    push(&mut steps, Step::Chdir(cwd), Tolerate::Nothing);

    // Identity and privileges last: everything above needs root's capabilities.
    let (caps, unknown) = CapSets::from_spec(process.capabilities.as_ref());
    if !unknown.is_empty() {
        notes.push(format!("unknown capabilities {}", unknown.join(", ")));
    }
    let user = &process.user;
    push(
        &mut steps,
        Step::DropBounding {
            keep: caps.bounding,
            last_cap: inputs.host.last_cap,
        },
        Tolerate::Nothing,
    );
    push(
        &mut steps,
        Step::SetGroups(user.additional_gids.clone()),
        Tolerate::Nothing,
    );
    push(&mut steps, Step::KeepCaps(true), Tolerate::Nothing);
    push(
        &mut steps,
        Step::SetIds {
            uid: user.uid,
            gid: user.gid,
        },
        Tolerate::Nothing,
    );
    push(&mut steps, Step::KeepCaps(false), Tolerate::Nothing);
    push(
        &mut steps,
        Step::SetCaps {
            effective: caps.effective,
            permitted: caps.permitted,
            inheritable: caps.inheritable,
        },
        Tolerate::Nothing,
    );
    if caps.ambient != 0 {
        push(
            &mut steps,
            Step::RaiseAmbient(caps.ambient),
            Tolerate::Nothing,
        );
    }
    if process.no_new_privileges {
        push(&mut steps, Step::NoNewPrivs, Tolerate::Nothing);
    }
    push(
        &mut steps,
        Step::Umask(user.umask.unwrap_or(0o022)),
        Tolerate::Nothing,
    );

    let exec = plan_exec(&process.args, &process.env)?;
    Ok(Plan {
        clone_flags,
        join,
        new_pid_namespace,
        steps,
        exec,
        cgroup_dirs,
        notes,
    })
}

fn rlimit_resource(name: &str) -> Option<Resource> {
    Some(match name {
        "RLIMIT_CPU" => Resource::Cpu,
        "RLIMIT_FSIZE" => Resource::Fsize,
        "RLIMIT_DATA" => Resource::Data,
        "RLIMIT_STACK" => Resource::Stack,
        "RLIMIT_CORE" => Resource::Core,
        "RLIMIT_RSS" => Resource::Rss,
        "RLIMIT_NPROC" => Resource::Nproc,
        "RLIMIT_NOFILE" => Resource::Nofile,
        "RLIMIT_MEMLOCK" => Resource::Memlock,
        "RLIMIT_AS" => Resource::As,
        "RLIMIT_LOCKS" => Resource::Locks,
        "RLIMIT_SIGPENDING" => Resource::Sigpending,
        "RLIMIT_MSGQUEUE" => Resource::Msgqueue,
        "RLIMIT_NICE" => Resource::Nice,
        "RLIMIT_RTPRIO" => Resource::Rtprio,
        "RLIMIT_RTTIME" => Resource::Rttime,
        _ => return None,
    })
}

fn plan_exec(args: &[String], env: &[String]) -> Result<Exec, PlanError> {
    let program = args.first().cloned().unwrap_or_default();
    let search_path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let candidates = if program.contains('/') {
        vec![cstr(&program, "process.args[0]")?]
    } else {
        search_path
            .split(':')
            .map(|dir| {
                let dir = if dir.is_empty() { "." } else { dir };
                cstr(
                    format!("{}/{program}", dir.trim_end_matches('/')),
                    "PATH entry",
                )
            })
            .collect::<Result<_, _>>()?
    };
    Ok(Exec {
        program,
        candidates,
        argv: args
            .iter()
            .map(|a| cstr(a, "process.args"))
            .collect::<Result<_, _>>()?,
        envp: env
            .iter()
            .map(|e| cstr(e, "process.env"))
            .collect::<Result<_, _>>()?,
        search_path,
    })
}

mod describe;
mod mounts;

use mounts::plan_mounts;

#[cfg(test)]
mod tests;
