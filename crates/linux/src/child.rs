//! What a freshly cloned child does before `execve` that is the same in the build sandbox and
//! in the init.
//!
//! All of it runs between `clone` and `execve` in a copy of a process that may have had other
//! threads: it must not allocate, lock or panic. Paths and argument vectors arrive prepared
//! (`&CStr`, NULL-terminated pointer arrays); system calls are raw or libc wrappers that are
//! single system calls.

use std::ffi::{CStr, c_char};
use std::io;
use std::os::fd::AsFd;

use rustix::io::Errno;
use rustix::process::Pid;

/// Which side of [`clone_child`] this is.
pub enum Forked {
    Child,
    Parent(Pid),
}

/// Clones a child with `flags` (`CLONE_NEW*`), like fork(2): returns twice.
///
/// # Safety
///
/// The process may be multi-threaded, and other threads may hold locks (the allocator's among
/// them) that will never be released in the child. On [`Forked::Child`] the caller must only
/// make async-signal-safe calls (this module's), never allocate, and end with [`execve`] or
/// [`exit`].
pub unsafe fn clone_child(flags: libc::c_int) -> io::Result<Forked> {
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

/// Ends the child at once: no destructors, no atexit handlers, no stdio flushing (those belong
/// to the parent).
pub fn exit(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// The `errno` of the libc call that just failed.
pub fn last_errno() -> Errno {
    Errno::from_raw_os_error(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

/// Restores the default disposition of every signal and unblocks them all. Dispositions set to
/// "ignore" (Rust ignores SIGPIPE) and the signal mask (the init blocks what it reads through a
/// signalfd) both survive `execve`, and the command must not inherit them.
pub fn reset_signals() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no handler code; numbers glibc reserves for itself
        // are refused with EINVAL, which is fine to ignore.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: `set` is a valid, writable sigset_t for sigemptyset and a valid one for
    // sigprocmask; a null old-set pointer is allowed.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Marks every descriptor from 3 up close-on-exec, so nothing the parent has open reaches the
/// command. Kernels before 5.11 refuse it, which loses only that hygiene.
pub fn close_fds_on_exec() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors; it cannot
    // invalidate memory.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
}

/// Sets IFF_UP on `lo` in the current network namespace; the kernel then gives it 127.0.0.1/8
/// and ::1 by itself.
pub fn loopback_up() -> Result<(), Errno> {
    // SAFETY: plain socket(2); the descriptor is closed below on every path.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: ifreq is plain old data (a name array and a union of integers): all zeroes is a
    // valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write `req`, a valid ifreq that outlives the
    // calls; reading the `ifru_flags` union field is what SIOCGIFFLAGS filled in.
    let result = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(last_errno())
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(last_errno())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: `fd` is the socket opened above and owned by nothing else.
    unsafe { libc::close(fd) };
    result
}

/// Sets the supplementary groups of this thread with the raw system call: glibc's setgroups()
/// would try to synchronise with the parent's other threads, which do not exist in the child.
pub fn set_groups(gids: &[u32]) -> Result<(), Errno> {
    // SAFETY: the kernel reads `gids.len()` gid_t (u32) values from a live slice.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) };
    if r < 0 { Err(last_errno()) } else { Ok(()) }
}

/// Writes all of `bytes` to `fd`, going on after short writes and EINTR.
pub fn write_all(fd: impl AsFd, bytes: &[u8]) -> Result<(), Errno> {
    let mut rest = bytes;
    while !rest.is_empty() {
        match rustix::io::write(fd.as_fd(), rest) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// execve(2). Returns only on failure, with its errno; `argv` and `envp` must end with a null
/// pointer (EINVAL, without a system call, when they do not).
pub fn execve(path: &CStr, argv: &[*const c_char], envp: &[*const c_char]) -> Errno {
    if argv.last().is_none_or(|p| !p.is_null()) || envp.last().is_none_or(|p| !p.is_null()) {
        return Errno::INVAL;
    }
    // SAFETY: `path` is a C string; `argv` and `envp` are NULL-terminated (checked above)
    // arrays of pointers to C strings the caller keeps alive. execve returns only on error.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    last_errno()
}

/// Runs `exec` (an `execve` of the same arguments) on each of `candidates` in turn, by
/// execvp's rules: a missing file or directory moves on to the next, EACCES is remembered and
/// moves on, any other error stops. Returns the error to report when none ran: the one that
/// stopped, else EACCES if a candidate had it, else ENOENT.
pub fn exec_first<'a>(
    candidates: impl IntoIterator<Item = &'a CStr>,
    mut exec: impl FnMut(&CStr) -> Errno,
) -> Errno {
    let mut best = Errno::NOENT;
    for candidate in candidates {
        match exec(candidate) {
            Errno::NOENT | Errno::NOTDIR => {}
            Errno::ACCESS => best = Errno::ACCESS,
            other => return other,
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `exec_first` over `results` (one per candidate): the errno reported and how many
    /// candidates were tried.
    fn run(results: &[Errno]) -> (Errno, usize) {
        let names: Vec<std::ffi::CString> = (0..results.len())
            .map(|i| std::ffi::CString::new(format!("/bin{i}/sh")).unwrap_or_default())
            .collect();
        let mut tried = 0;
        let errno = exec_first(names.iter().map(|c| c.as_c_str()), |c| {
            assert_eq!(c, names[tried].as_c_str(), "candidates in order");
            tried += 1;
            results[tried - 1]
        });
        (errno, tried)
    }

    #[test]
    fn exec_first_follows_execvp() {
        assert_eq!(run(&[]), (Errno::NOENT, 0));
        assert_eq!(run(&[Errno::NOENT, Errno::NOTDIR]), (Errno::NOENT, 2));
        assert_eq!(run(&[Errno::ACCESS, Errno::NOENT]), (Errno::ACCESS, 2));
        assert_eq!(run(&[Errno::NOENT, Errno::ACCESS]), (Errno::ACCESS, 2));
        // Anything else stops the search: the next candidate is not tried.
        assert_eq!(run(&[Errno::NOEXEC, Errno::NOENT]), (Errno::NOEXEC, 1));
        assert_eq!(
            run(&[Errno::ACCESS, Errno::NOMEM, Errno::NOENT]),
            (Errno::NOMEM, 2)
        );
    }

    #[test]
    fn execve_refuses_vectors_without_a_terminating_null() {
        let arg = c"x".as_ptr();
        let null = std::ptr::null();
        assert_eq!(execve(c"/nonexistent", &[arg], &[null]), Errno::INVAL);
        assert_eq!(execve(c"/nonexistent", &[arg, null], &[]), Errno::INVAL);
        // Well-formed: the kernel answers (there is no such file).
        assert_eq!(execve(c"/nonexistent", &[arg, null], &[null]), Errno::NOENT);
    }
}
