//! What the cloned container process runs: a fixed prologue (signals, session, stdio), the
//! steps of its [`Plan`], then execve. On failure it writes which step failed and the errno to a
//! close-on-exec pipe (nothing arrives when execve succeeds) and exits 127.
//!
//! This runs between clone and execve in a copy of a process that may have other threads (the
//! test harness): it must not allocate, lock or panic. Everything it touches was prepared by
//! `plan.rs`; paths are `CStr`s and syscalls are raw (rustix's linux_raw backend, or libc
//! wrappers that are single system calls).

use std::ffi::{CStr, c_char};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{CWD, FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{Rlimit, Signal};
use rustix::thread::{CapabilitySet, CapabilitySets};

use oxkit_linux::child::{
    close_fds_on_exec, exec_first, execve, exit, last_errno, loopback_up, reset_signals,
    set_groups, write_all,
};
pub use oxkit_linux::report::Failure;

use crate::mountopt::{
    MS_BIND, MS_MOVE, MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC,
    MS_RELATIME, MS_REMOUNT, MS_SLAVE,
};
use crate::plan::{NodeKind, Plan, Step, Tolerate};

type SysResult = Result<(), Errno>;

/// Descriptors the child uses; all numbered 3 and up so that installing stdio cannot clobber
/// them.
pub struct ChildFds<'a> {
    pub stdin: BorrowedFd<'a>,
    pub output: BorrowedFd<'a>,
    /// Write end of the failure report pipe (close-on-exec).
    pub report: BorrowedFd<'a>,
    /// Namespace files to join, in `Plan::join` order.
    pub namespaces: &'a [OwnedFd],
}

/// The child's entry point after clone: never returns. `argv`/`envp` are NULL-terminated
/// pointer arrays into `plan.exec`.
pub fn main(plan: &Plan, fds: &ChildFds<'_>, argv: &[*const c_char], envp: &[*const c_char]) -> ! {
    run(plan, fds, argv, envp).send(fds.report);
    exit(127)
}

fn run(plan: &Plan, fds: &ChildFds<'_>, argv: &[*const c_char], envp: &[*const c_char]) -> Failure {
    if let Err(e) = prologue(fds) {
        return Failure {
            step: Failure::PROLOGUE,
            errno: e.raw_os_error(),
        };
    }
    for (i, planned) in plan.steps.iter().enumerate() {
        match apply(&planned.step, fds) {
            Ok(()) => {}
            Err(e) if tolerated(planned.tolerate, e) => {}
            Err(e) => return Failure::at(i, e),
        }
    }
    let candidates = plan.exec.candidates.iter().map(|c| c.as_c_str());
    let errno = exec_first(candidates, |path| execve(path, argv, envp));
    Failure::at(plan.steps.len(), errno)
}

fn tolerated(t: Tolerate, e: Errno) -> bool {
    match t {
        Tolerate::Nothing => false,
        Tolerate::Missing => e == Errno::NOENT,
        Tolerate::Exists => e == Errno::EXIST,
        Tolerate::Any => true,
    }
}

fn prologue(fds: &ChildFds<'_>) -> SysResult {
    reset_signals();
    // Its own session: console signals (^C on the init's terminal) and the init's process
    // group signals do not reach it, and the init can signal its whole group.
    rustix::process::setsid()?;
    rustix::stdio::dup2_stdin(fds.stdin)?;
    rustix::stdio::dup2_stdout(fds.output)?;
    rustix::stdio::dup2_stderr(fds.output)?;
    // Nothing the init has open leaks into the container.
    close_fds_on_exec();
    Ok(())
}

fn check(ret: libc::c_long) -> SysResult {
    if ret < 0 { Err(last_errno()) } else { Ok(()) }
}

fn ptr(c: Option<&CStr>) -> *const c_char {
    c.map_or(std::ptr::null(), CStr::as_ptr)
}

pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: u64,
    data: Option<&CStr>,
) -> SysResult {
    // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null where
    // mount(2) allows it (source, type and data are ignored for remounts and propagation
    // changes).
    let ret = unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags as libc::c_ulong,
            ptr(data).cast(),
        )
    };
    check(ret.into())
}

/// Bind-remounts `target` read-only, keeping nosuid/nodev/noexec/atime flags (a remount that
/// dropped them would be refused where they are locked, and would silently relax them
/// elsewhere).
pub(crate) fn remount_readonly(target: &CStr) -> SysResult {
    let current = rustix::fs::statvfs(target)?.f_flag.bits();
    // statvfs's ST_* bits equal MS_* except relatime.
    let keep_mask = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME;
    let mut keep = current & keep_mask;
    if current & libc::ST_RELATIME != 0 {
        keep |= MS_RELATIME;
    }
    mount(
        None,
        target,
        None,
        MS_REMOUNT | MS_BIND | MS_RDONLY | keep,
        None,
    )
}

fn apply(step: &Step, fds: &ChildFds<'_>) -> SysResult {
    match step {
        Step::SetNs { index } => {
            let fd = fds.namespaces.get(*index).ok_or(Errno::BADF)?;
            // SAFETY: plain setns(2) on a descriptor we own; 0 accepts any namespace type.
            check(unsafe { libc::setns(fd.as_raw_fd(), 0) }.into())
        }
        Step::Unshare { flag, .. } => {
            // SAFETY: this process has a single thread (clone copied only the caller), so
            // unsharing cannot leave other threads with a different view.
            check(unsafe { libc::unshare(*flag) }.into())
        }
        Step::WriteFile { path, data } => write_file(path, data),
        Step::Rlimit {
            resource,
            soft,
            hard,
            ..
        } => {
            let limit = |v: u64| (v != u64::MAX).then_some(v);
            rustix::process::setrlimit(
                *resource,
                Rlimit {
                    current: limit(*soft),
                    maximum: limit(*hard),
                },
            )
        }
        Step::Umask(m) => {
            rustix::process::umask(Mode::from_raw_mode(*m));
            Ok(())
        }
        Step::MkdirAll(p) => mkdir_all(p),
        Step::Touch(p) => {
            let fd = rustix::fs::open(
                p.as_c_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )?;
            drop(fd);
            Ok(())
        }
        Step::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => mount(
            source.as_deref(),
            target,
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        ),
        Step::SetAttr { target, set, clear } => {
            let attr = libc::mount_attr {
                attr_set: *set,
                attr_clr: *clear,
                propagation: 0,
                userns_fd: 0,
            };
            // SAFETY: `attr` is a valid mount_attr whose size is passed along; `target` is a
            // NUL-terminated path resolved relative to no descriptor (absolute).
            check(unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    target.as_ptr(),
                    libc::AT_RECURSIVE as libc::c_uint,
                    &attr as *const libc::mount_attr,
                    std::mem::size_of::<libc::mount_attr>(),
                )
            })
        }
        Step::Mknod {
            path,
            kind,
            mode,
            major,
            minor,
        } => {
            let ft = match kind {
                NodeKind::Char => FileType::CharacterDevice,
                NodeKind::Block => FileType::BlockDevice,
                NodeKind::Fifo => FileType::Fifo,
            };
            rustix::fs::mknodat(
                CWD,
                path.as_c_str(),
                ft,
                Mode::from_raw_mode(*mode),
                rustix::fs::makedev(*major, *minor),
            )
        }
        Step::Chown { path, uid, gid } => rustix::fs::chownat(
            CWD,
            path.as_c_str(),
            Some(rustix::fs::Uid::from_raw(*uid)),
            Some(rustix::fs::Gid::from_raw(*gid)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        ),
        Step::Symlink { target, link } => rustix::fs::symlink(target.as_c_str(), link.as_c_str()),
        Step::EnterRoot { root, pivot } => enter_root(root, *pivot),
        Step::RemountReadonly(p) => remount_readonly(p),
        Step::Mask(p) => {
            let st = rustix::fs::stat(p.as_c_str())?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                mount(Some(c"tmpfs"), p, Some(c"tmpfs"), MS_RDONLY, None)
            } else {
                mount(Some(c"/dev/null"), p, None, MS_BIND, None)
            }
        }
        Step::ReadonlyPath(p) => {
            mount(Some(p), p, None, MS_BIND | MS_REC, None)?;
            remount_readonly(p)
        }
        Step::Hostname(h) => rustix::system::sethostname(h),
        Step::LoopbackUp => loopback_up(),
        Step::Chdir(p) => rustix::process::chdir(p.as_c_str()),
        Step::DropBounding { keep, last_cap } => {
            for cap in 0..=*last_cap {
                if cap >= 64 || keep & (1u64 << cap) == 0 {
                    drop_bounding(cap)?;
                }
            }
            Ok(())
        }
        Step::SetGroups(gids) => set_groups(gids),
        Step::KeepCaps(k) => rustix::thread::set_keep_capabilities(*k),
        Step::SetIds { uid, gid } => {
            let g = rustix::thread::Gid::from_raw(*gid);
            rustix::thread::set_thread_res_gid(g, g, g)?;
            let u = rustix::thread::Uid::from_raw(*uid);
            rustix::thread::set_thread_res_uid(u, u, u)
        }
        Step::SetCaps {
            effective,
            permitted,
            inheritable,
        } => rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: CapabilitySet::from_bits_retain(*effective),
                permitted: CapabilitySet::from_bits_retain(*permitted),
                inheritable: CapabilitySet::from_bits_retain(*inheritable),
            },
        ),
        Step::RaiseAmbient(set) => {
            for cap in 0..64u32 {
                if set & (1u64 << cap) != 0 {
                    // SAFETY: prctl with integer arguments only.
                    check(
                        unsafe {
                            libc::prctl(
                                libc::PR_CAP_AMBIENT,
                                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                                cap as libc::c_ulong,
                                0 as libc::c_ulong,
                                0 as libc::c_ulong,
                            )
                        }
                        .into(),
                    )?;
                }
            }
            Ok(())
        }
        Step::NoNewPrivs => rustix::thread::set_no_new_privs(true),
    }
}

fn drop_bounding(cap: u32) -> SysResult {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAPBSET_DROP,
            cap as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    match check(ret.into()) {
        // A capability newer than this kernel: nothing to drop.
        Err(Errno::INVAL) => Ok(()),
        other => other,
    }
}

fn write_file(path: &CStr, data: &[u8]) -> SysResult {
    let fd = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    write_all(&fd, data)
}

/// mkdir -p without allocating: each prefix is copied into a stack buffer.
pub(crate) fn mkdir_all(path: &CStr) -> SysResult {
    let bytes = path.to_bytes();
    let mut buf = [0u8; 4096];
    if bytes.len() >= buf.len() {
        return Err(Errno::NAMETOOLONG);
    }
    for (i, b) in bytes.iter().enumerate() {
        let end = i + 1;
        let at_boundary = end == bytes.len() || bytes.get(end) == Some(&b'/');
        if *b == b'/' || !at_boundary {
            continue;
        }
        let (prefix, rest) = buf.split_at_mut(end);
        prefix.copy_from_slice(bytes.get(..end).unwrap_or_default());
        if let Some(nul) = rest.first_mut() {
            *nul = 0;
        }
        let c = CStr::from_bytes_until_nul(buf.get(..=end).unwrap_or_default())
            .map_err(|_| Errno::INVAL)?;
        match rustix::fs::mkdir(c, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
    }
    // The whole path must now be a directory (EEXIST above could have been a file).
    let st = rustix::fs::stat(path)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        Ok(())
    } else {
        Err(Errno::NOTDIR)
    }
}

/// pivot_root(".", ".") stacks the old root on the new one; making it a slave before detaching
/// it keeps the unmount from propagating to the host. Where pivot_root is impossible (the
/// root is an initramfs), move the mount over `/` and chroot, as runc's no-pivot mode does.
fn enter_root(root: &CStr, pivot: bool) -> SysResult {
    rustix::process::chdir(root)?;
    if !pivot {
        rustix::process::chroot(c".")?;
        return rustix::process::chdir(c"/");
    }
    if rustix::process::pivot_root(c".", c".").is_ok() {
        mount(None, c".", None, MS_SLAVE | MS_REC, None)?;
        rustix::mount::unmount(c".", rustix::mount::UnmountFlags::DETACH)?;
        return rustix::process::chdir(c"/");
    }
    mount(Some(root), c"/", None, MS_MOVE, None)?;
    rustix::process::chroot(c".")?;
    rustix::process::chdir(c"/")
}

/// Sends `signal` to the child's process group if it has one (it called setsid), else to the
/// process itself.
pub(crate) fn signal_group(pid: rustix::process::Pid, signal: Signal) {
    if rustix::process::kill_process_group(pid, signal).is_err() {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Keeps `fd` usable by the child after dup2 onto 0..2: a close-on-exec duplicate numbered 3
/// or higher.
/// Takes ownership so the original is closed.
pub(crate) fn high_fd(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkdir_all_creates_every_level_and_refuses_files() {
        let t = tempfile::tempdir().expect("tempdir");
        let deep = t.path().join("a/b//c");
        let c = std::ffi::CString::new(deep.to_str().expect("utf8")).expect("cstring");
        mkdir_all(&c).expect("mkdir");
        assert!(t.path().join("a/b/c").is_dir());
        mkdir_all(&c).expect("again");
        std::fs::write(t.path().join("f"), "").expect("file");
        let f =
            std::ffi::CString::new(t.path().join("f/g").to_str().expect("utf8")).expect("cstring");
        assert_eq!(mkdir_all(&f), Err(Errno::NOTDIR));
        let f =
            std::ffi::CString::new(t.path().join("f").to_str().expect("utf8")).expect("cstring");
        assert_eq!(mkdir_all(&f), Err(Errno::NOTDIR));
    }
}
