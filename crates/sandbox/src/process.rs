//! Process plumbing for the parent: cloning a child into new namespaces, reaping it, killing it
//! if the parent gives up, and descriptors for the child. The only `clone` in oxkit.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;
use rustix::process::{Pid, WaitOptions};

use crate::spec::ExitStatus;

/// Which side of [`clone_child`] this is.
pub(crate) enum Forked {
    Child,
    Parent(Pid),
}

/// Clones a child with `flags` (`CLONE_NEW*`), like fork(2): returns twice.
///
/// # Safety
///
/// The process may be multi-threaded, and other threads may hold locks (the allocator's among
/// them) that will never be released in the child. On [`Forked::Child`] the caller must only
/// make async-signal-safe calls, never allocate, and end with execve or [`exit_child`].
pub(crate) unsafe fn clone_child(flags: libc::c_int) -> io::Result<Forked> {
    let flags = libc::c_ulong::try_from(flags | libc::SIGCHLD)
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: without CLONE_VM, clone behaves like fork: the child gets a copy-on-write copy of
    // this address space and returns here on a copy of this stack (a null stack pointer means
    // "the current one"). What the child may do next is this function's own safety contract.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => {
            let raw = i32::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            Pid::from_raw(raw)
                .map(Forked::Parent)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ECHILD))
        }
    }
}

/// Ends the child immediately: no destructors, no atexit handlers, no stdio flushing (those
/// belong to the parent).
pub(crate) fn exit_child(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// Waits for `pid` and converts its status.
pub(crate) fn wait(pid: Pid) -> io::Result<ExitStatus> {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                if let Some(code) = status.exit_status() {
                    return Ok(ExitStatus::Code(code));
                }
                if let Some(sig) = status.terminating_signal() {
                    return Ok(ExitStatus::Signal(sig));
                }
            }
            Ok(None) => {}
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A child that is killed and reaped if it is dropped before [`ChildGuard::wait`]: an error or
/// a panic in the parent never leaves a build step running.
pub(crate) struct ChildGuard {
    pid: Option<Pid>,
}

impl ChildGuard {
    pub(crate) fn new(pid: Pid) -> Self {
        Self { pid: Some(pid) }
    }

    pub(crate) fn wait(mut self) -> io::Result<ExitStatus> {
        match self.pid.take() {
            Some(pid) => wait(pid),
            None => Err(io::Error::from_raw_os_error(libc::ECHILD)),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            let _ = wait(pid);
        }
    }
}

/// A close-on-exec duplicate numbered 3 or higher, so the child's dup2 onto 0-2 cannot
/// overwrite it even when the parent runs with stdio closed.
pub(crate) fn high_fd(fd: impl AsFd) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 3)?)
}
