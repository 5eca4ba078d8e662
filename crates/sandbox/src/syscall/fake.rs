//! A [`Syscalls`] that records every call as one line of text and fails the calls a test asks
//! it to, so the child's setup sequence (which mounts, in which order, which fallbacks) is
//! checked without root.

use std::cell::RefCell;
use std::ffi::{CStr, c_char};
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::io::Errno;

use super::{SysResult, Syscalls};

/// What the fake's `execve` returns when not told to fail (no real errno is this large).
pub(crate) const EXEC_REACHED: Errno = Errno::from_raw_os_error(4095);

#[derive(Default)]
pub(crate) struct RecordingSyscalls {
    calls: RefCell<Vec<String>>,
    /// (prefix of a recorded line, errno): the first call whose line starts with it fails.
    failures: RefCell<Vec<(String, Errno)>>,
}

impl RecordingSyscalls {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Makes calls whose record starts with `prefix` fail with `errno`.
    pub(crate) fn fail(self, prefix: &str, errno: Errno) -> Self {
        self.failures.borrow_mut().push((prefix.to_string(), errno));
        self
    }

    pub(crate) fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn record(&self, line: String) -> SysResult {
        let failure = self
            .failures
            .borrow()
            .iter()
            .find(|(p, _)| line.starts_with(p.as_str()))
            .map(|(_, e)| *e);
        self.calls.borrow_mut().push(line);
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn s(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}

impl Syscalls for RecordingSyscalls {
    fn reset_signals(&self) {
        let _ = self.record("reset_signals".into());
    }
    fn set_parent_death_signal(&self) -> SysResult {
        self.record("pdeathsig SIGKILL".into())
    }
    fn wait_for_parent(&self, fd: BorrowedFd<'_>) -> SysResult {
        let _ = fd.as_raw_fd();
        self.record("wait_for_parent".into())
    }
    fn setup_stdio(&self, _stdin: BorrowedFd<'_>, _output: BorrowedFd<'_>) -> SysResult {
        self.record("stdio".into())
    }
    fn close_fds_on_exec(&self) {
        let _ = self.record("cloexec 3..".into());
    }
    fn umask(&self, mode: u32) {
        let _ = self.record(format!("umask {mode:03o}"));
    }
    fn mount(
        &self,
        source: &CStr,
        target: &CStr,
        fstype: &CStr,
        flags: u64,
        data: Option<&CStr>,
    ) -> SysResult {
        self.record(format!(
            "mount {} {} {} {} {}",
            s(source),
            s(target),
            s(fstype),
            oxkit_linux::mount::describe_flags(flags),
            data.map(s).unwrap_or_default()
        ))
    }
    fn bind_remount_readonly(&self, target: &CStr) -> SysResult {
        self.record(format!("remount-ro {}", s(target)))
    }
    fn umount_detach(&self, target: &CStr) -> SysResult {
        self.record(format!("umount-detach {}", s(target)))
    }
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> SysResult {
        self.record(format!("pivot_root {} {}", s(new_root), s(put_old)))
    }
    fn chroot(&self, path: &CStr) -> SysResult {
        self.record(format!("chroot {}", s(path)))
    }
    fn chdir(&self, path: &CStr) -> SysResult {
        self.record(format!("chdir {}", s(path)))
    }
    fn mkdir(&self, path: &CStr, mode: u32) -> SysResult {
        self.record(format!("mkdir {} {mode:o}", s(path)))
    }
    fn mknod_char(&self, path: &CStr, mode: u32, major: u32, minor: u32) -> SysResult {
        self.record(format!("mknod {} {mode:o} {major}:{minor}", s(path)))
    }
    fn write_file(&self, path: &CStr, contents: &[u8], mode: u32) -> SysResult {
        self.record(format!(
            "write {} {mode:o} {:?}",
            s(path),
            String::from_utf8_lossy(contents)
        ))
    }
    fn unlink(&self, path: &CStr) -> SysResult {
        self.record(format!("unlink {}", s(path)))
    }
    fn symlink(&self, target: &CStr, link: &CStr) -> SysResult {
        self.record(format!("symlink {} -> {}", s(link), s(target)))
    }
    fn sethostname(&self, name: &[u8]) -> SysResult {
        self.record(format!("sethostname {}", String::from_utf8_lossy(name)))
    }
    fn loopback_up(&self) -> SysResult {
        self.record("loopback_up".into())
    }
    fn drop_bounding_capability(&self, cap: u32) -> SysResult {
        self.record(format!("capbset_drop {cap}"))
    }
    fn clear_ambient_capabilities(&self) -> SysResult {
        self.record("ambient_clear".into())
    }
    fn set_keep_capabilities(&self, keep: bool) -> SysResult {
        self.record(format!("keepcaps {keep}"))
    }
    fn set_groups(&self, gids: &[u32]) -> SysResult {
        self.record(format!("setgroups {gids:?}"))
    }
    fn set_ids(&self, uid: u32, gid: u32) -> SysResult {
        self.record(format!("setids {uid}:{gid}"))
    }
    fn set_capabilities(&self, effective: u64, permitted: u64, inheritable: u64) -> SysResult {
        self.record(format!(
            "capset e={effective:x} p={permitted:x} i={inheritable:x}"
        ))
    }
    fn execve(&self, path: &CStr, argv: &[*const c_char], envp: &[*const c_char]) -> Errno {
        let args = argv.len().saturating_sub(1);
        let envs = envp.len().saturating_sub(1);
        match self.record(format!("execve {} argc={args} envc={envs}", s(path))) {
            Err(e) => e,
            // The fake cannot replace the process: EXEC_REACHED stands for "exec happened".
            Ok(()) => EXEC_REACHED,
        }
    }
}
