//! Every host side effect the sandboxed child performs, behind one small trait: the real
//! implementation ([`linux::LinuxSyscalls`]) makes the syscalls, the recording fake
//! (`fake::RecordingSyscalls`, tests only) writes them down so the setup sequence in `child.rs`
//! is tested without root.
//!
//! Implementations run in a freshly cloned child of a possibly multi-threaded process, so the
//! real one must be async-signal-safe: no allocation, no locks, no glibc wrappers that talk to
//! other threads (`setresuid`, `setgroups`): paths arrive as prepared `&CStr`s and ids as
//! numbers.

use std::ffi::{CStr, c_char};
use std::os::fd::BorrowedFd;

use rustix::io::Errno;

pub(crate) mod linux;

#[cfg(test)]
pub(crate) mod fake;

pub(crate) type SysResult = Result<(), Errno>;

/// The child's side effects, in the order `child.rs` uses them.
pub(crate) trait Syscalls {
    /// Restores default dispositions for every signal and unblocks them all: ignored signals
    /// (Rust ignores SIGPIPE) would otherwise stay ignored in the command.
    fn reset_signals(&self);
    /// SIGKILL when the parent thread dies, so a crashed oxkit leaves no build step running.
    fn set_parent_death_signal(&self) -> SysResult;
    /// Blocks until the parent writes one byte (it has written the user namespace maps).
    fn wait_for_parent(&self, fd: BorrowedFd<'_>) -> SysResult;
    /// stdin from `stdin`; stdout and stderr to `output`.
    fn setup_stdio(&self, stdin: BorrowedFd<'_>, output: BorrowedFd<'_>) -> SysResult;
    /// Marks every descriptor from 3 up close-on-exec, so nothing the parent leaked reaches the
    /// command.
    fn close_fds_on_exec(&self);
    fn umask(&self, mode: u32);
    /// mount(2) with raw `MS_*` flags.
    fn mount(
        &self,
        source: &CStr,
        target: &CStr,
        fstype: &CStr,
        flags: u64,
        data: Option<&CStr>,
    ) -> SysResult;
    /// Remounts the bind mount at `target` read-only, keeping its other flags (a user namespace
    /// may not clear locked ones such as nosuid).
    fn bind_remount_readonly(&self, target: &CStr) -> SysResult;
    fn umount_detach(&self, target: &CStr) -> SysResult;
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> SysResult;
    fn chroot(&self, path: &CStr) -> SysResult;
    fn chdir(&self, path: &CStr) -> SysResult;
    fn mkdir(&self, path: &CStr, mode: u32) -> SysResult;
    fn mknod_char(&self, path: &CStr, mode: u32, major: u32, minor: u32) -> SysResult;
    /// Creates (or truncates) a regular file with these contents.
    fn write_file(&self, path: &CStr, contents: &[u8], mode: u32) -> SysResult;
    fn unlink(&self, path: &CStr) -> SysResult;
    fn symlink(&self, target: &CStr, link: &CStr) -> SysResult;
    fn sethostname(&self, name: &[u8]) -> SysResult;
    /// Brings `lo` up in the current network namespace.
    fn loopback_up(&self) -> SysResult;
    fn drop_bounding_capability(&self, cap: u32) -> SysResult;
    fn clear_ambient_capabilities(&self) -> SysResult;
    fn set_keep_capabilities(&self, keep: bool) -> SysResult;
    fn set_groups(&self, gids: &[u32]) -> SysResult;
    /// setresgid then setresuid, this thread only (the child has no other).
    fn set_ids(&self, uid: u32, gid: u32) -> SysResult;
    fn set_capabilities(&self, effective: u64, permitted: u64, inheritable: u64) -> SysResult;
    /// execve(2); returns only on failure. `argv` and `envp` are NULL-terminated.
    fn execve(&self, path: &CStr, argv: &[*const c_char], envp: &[*const c_char]) -> Errno;
}
