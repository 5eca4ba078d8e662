//! Process plumbing for the parent: cloning a child into new namespaces, reaping it, killing it
//! if the parent gives up, and descriptors for the child. The clone itself is
//! `oxkit_linux::child::clone_child`, shared with the init.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;
use rustix::process::{Pid, WaitOptions};

use crate::spec::ExitStatus;

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
