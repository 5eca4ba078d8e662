//! The real [`Syscalls`]: rustix's raw syscalls where it has them (they bypass glibc, which
//! matters after a raw `clone`), libc for the few it lacks. Async-signal-safe throughout: it runs
//! in the cloned child before `execve`.

use std::ffi::{CStr, c_char};
use std::os::fd::BorrowedFd;

use rustix::fs::{CWD, FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use rustix::process::{Gid, Uid};
use rustix::thread::{CapabilitySet, CapabilitySets};

use oxkit_linux::child;

use super::{SysResult, Syscalls};

/// Makes the syscalls for real.
pub(crate) struct LinuxSyscalls;

fn mount_flags(flags: u64) -> Result<MountFlags, Errno> {
    u32::try_from(flags)
        .map(MountFlags::from_bits_retain)
        .map_err(|_| Errno::INVAL)
}

impl Syscalls for LinuxSyscalls {
    fn reset_signals(&self) {
        child::reset_signals();
    }

    fn set_parent_death_signal(&self) -> SysResult {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
    }

    fn wait_for_parent(&self, fd: BorrowedFd<'_>) -> SysResult {
        let mut byte = [0u8; 1];
        loop {
            match rustix::io::read(fd, &mut byte) {
                Ok(1) => return Ok(()),
                // The parent went away without releasing us.
                Ok(_) => return Err(Errno::PIPE),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn setup_stdio(&self, stdin: BorrowedFd<'_>, output: BorrowedFd<'_>) -> SysResult {
        rustix::stdio::dup2_stdin(stdin)?;
        rustix::stdio::dup2_stdout(output)?;
        rustix::stdio::dup2_stderr(output)
    }

    fn close_fds_on_exec(&self) {
        child::close_fds_on_exec();
    }

    fn umask(&self, mode: u32) {
        rustix::process::umask(Mode::from_raw_mode(mode));
    }

    fn mount(
        &self,
        source: &CStr,
        target: &CStr,
        fstype: &CStr,
        flags: u64,
        data: Option<&CStr>,
    ) -> SysResult {
        rustix::mount::mount(source, target, fstype, mount_flags(flags)?, data)
    }

    fn bind_remount_readonly(&self, target: &CStr) -> SysResult {
        let current = rustix::fs::statvfs(target)?.f_flag.bits();
        // statvfs's ST_* bits equal MS_* except relatime.
        let mut keep = current
            & (libc::ST_NOSUID
                | libc::ST_NODEV
                | libc::ST_NOEXEC
                | libc::ST_NOATIME
                | libc::ST_NODIRATIME);
        if current & libc::ST_RELATIME != 0 {
            keep |= libc::MS_RELATIME;
        }
        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | keep;
        rustix::mount::mount(c"none", target, c"none", mount_flags(flags)?, None)
    }

    fn umount_detach(&self, target: &CStr) -> SysResult {
        rustix::mount::unmount(target, UnmountFlags::DETACH)
    }

    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> SysResult {
        rustix::process::pivot_root(new_root, put_old)
    }

    fn chroot(&self, path: &CStr) -> SysResult {
        rustix::process::chroot(path)
    }

    fn chdir(&self, path: &CStr) -> SysResult {
        rustix::process::chdir(path)
    }

    fn mkdir(&self, path: &CStr, mode: u32) -> SysResult {
        rustix::fs::mkdir(path, Mode::from_raw_mode(mode))
    }

    fn mknod_char(&self, path: &CStr, mode: u32, major: u32, minor: u32) -> SysResult {
        rustix::fs::mknodat(
            CWD,
            path,
            FileType::CharacterDevice,
            Mode::from_raw_mode(mode),
            rustix::fs::makedev(major, minor),
        )
    }

    fn write_file(&self, path: &CStr, contents: &[u8], mode: u32) -> SysResult {
        let fd = rustix::fs::open(
            path,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(mode),
        )?;
        child::write_all(&fd, contents)
    }

    fn unlink(&self, path: &CStr) -> SysResult {
        rustix::fs::unlink(path)
    }

    fn symlink(&self, target: &CStr, link: &CStr) -> SysResult {
        rustix::fs::symlink(target, link)
    }

    fn sethostname(&self, name: &[u8]) -> SysResult {
        rustix::system::sethostname(name)
    }

    fn loopback_up(&self) -> SysResult {
        child::loopback_up()
    }

    fn drop_bounding_capability(&self, cap: u32) -> SysResult {
        let bit = 1u64.checked_shl(cap).ok_or(Errno::INVAL)?;
        rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(bit))
    }

    fn clear_ambient_capabilities(&self) -> SysResult {
        rustix::thread::clear_ambient_capability_set()
    }

    fn set_keep_capabilities(&self, keep: bool) -> SysResult {
        rustix::thread::set_keep_capabilities(keep)
    }

    fn set_groups(&self, gids: &[u32]) -> SysResult {
        child::set_groups(gids)
    }

    fn set_ids(&self, uid: u32, gid: u32) -> SysResult {
        let g = Gid::from_raw(gid);
        rustix::thread::set_thread_res_gid(g, g, g)?;
        let u = Uid::from_raw(uid);
        rustix::thread::set_thread_res_uid(u, u, u)
    }

    fn set_capabilities(&self, effective: u64, permitted: u64, inheritable: u64) -> SysResult {
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: CapabilitySet::from_bits_retain(effective),
                permitted: CapabilitySet::from_bits_retain(permitted),
                inheritable: CapabilitySet::from_bits_retain(inheritable),
            },
        )
    }

    fn execve(&self, path: &CStr, argv: &[*const c_char], envp: &[*const c_char]) -> Errno {
        child::execve(path, argv, envp)
    }
}
