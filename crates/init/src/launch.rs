//! Starting one container from its [`Plan`]: pipes for its output and for the child's failure
//! report, namespace files to join, clone(2) with the plan's namespace flags, then either the
//! running process (with a pidfd to watch it) or one sentence saying which step failed.
//!
//! The only clone in the crate. Must not wait for the container to finish (the supervisor does).

use std::ffi::c_char;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, WaitOptions};

use oxkit_linux::child::{Forked, clone_child};

use crate::child::{self, ChildFds, Failure};
use crate::plan::Plan;
use crate::rootpath;

/// A container that passed execve.
#[derive(Debug)]
pub struct Started {
    pub pid: Pid,
    /// Readable when the process exits; `None` on kernels without pidfd_open (before 5.3).
    pub pidfd: Option<OwnedFd>,
    /// Read end of its stdout+stderr pipe (non-blocking).
    pub output: OwnedFd,
}

/// Why a start failed, and whether trying again can help.
#[derive(Debug)]
pub struct StartError {
    pub message: String,
    /// The program does not exist or cannot be executed: restarting cannot fix that.
    pub permanent: bool,
}

fn setup(what: &str, e: impl std::fmt::Display) -> StartError {
    StartError {
        message: format!("cannot start: {what}: {e}"),
        permanent: false,
    }
}

/// Starts the container; `rootfs` is only used to word a missing-program message.
pub fn start(plan: &Plan, rootfs: &Path) -> Result<Started, StartError> {
    let (out_r, out_w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .map_err(|e| setup("output pipe", io::Error::from(e)))?;
    let (rep_r, rep_w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .map_err(|e| setup("report pipe", io::Error::from(e)))?;
    let null = std::fs::File::open("/dev/null").map_err(|e| setup("/dev/null", e))?;
    let stdin = child::high_fd(OwnedFd::from(null)).map_err(|e| setup("stdin", e))?;
    // The low-numbered originals must be closed here: a write end left open in the init would
    // keep the report pipe from ever reaching end of file.
    let out_w = child::high_fd(out_w).map_err(|e| setup("output pipe", e))?;
    let rep_w = child::high_fd(rep_w).map_err(|e| setup("report pipe", e))?;
    let mut namespaces = Vec::with_capacity(plan.join.len());
    for (path, _, name) in &plan.join {
        let f = std::fs::File::open(path)
            .map_err(|e| setup(&format!("{name} namespace {}", path.display()), e))?;
        namespaces.push(child::high_fd(OwnedFd::from(f)).map_err(|e| setup("namespace", e))?);
    }
    // NULL-terminated pointer arrays, made before clone: the child may not allocate.
    let mut argv: Vec<*const c_char> = plan.exec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const c_char> = plan.exec.envp.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());

    for dir in &plan.cgroup_dirs {
        std::fs::create_dir_all(dir).map_err(|e| setup(&format!("cgroup {}", dir.display()), e))?;
    }

    let fds = ChildFds {
        stdin: stdin.as_fd(),
        output: out_w.as_fd(),
        report: rep_w.as_fd(),
        namespaces: &namespaces,
    };
    // SAFETY: in the child, `child::main` only makes raw syscalls on data prepared above and
    // ends in execve or _exit (see child.rs).
    let pid = match unsafe { clone_child(plan.clone_flags) } {
        Ok(Forked::Child) => child::main(plan, &fds, &argv, &envp),
        Ok(Forked::Parent(pid)) => pid,
        Err(e) => return Err(setup("clone", e)),
    };
    drop((stdin, out_w, rep_w, namespaces));

    // A report cut short (the child died while setting up) shows as the child's exit.
    if let Ok(Some(failure)) = Failure::receive(&rep_r) {
        // The child exits right after reporting.
        let _ = waitpid_blocking(pid);
        return Err(describe(plan, rootfs, failure));
    }
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok();
    set_nonblocking(&out_r);
    Ok(Started {
        pid,
        pidfd,
        output: out_r,
    })
}

fn set_nonblocking(fd: &OwnedFd) {
    if let Ok(flags) = rustix::fs::fcntl_getfl(fd) {
        let _ = rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK);
    }
}

fn waitpid_blocking(pid: Pid) -> io::Result<()> {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The one sentence for a failed start.
fn describe(plan: &Plan, rootfs: &Path, failure: Failure) -> StartError {
    let err = io::Error::from_raw_os_error(failure.errno);
    if failure.step == Failure::PROLOGUE {
        return StartError {
            message: format!("cannot start: setting up stdio and session: {err}"),
            permanent: false,
        };
    }
    let step = usize::try_from(failure.step).unwrap_or(usize::MAX);
    if let Some(planned) = plan.steps.get(step) {
        return StartError {
            message: format!("cannot start: {}: {err}", planned.step),
            permanent: false,
        };
    }
    let exec = &plan.exec;
    let permanent = matches!(
        failure.errno,
        libc::ENOENT | libc::EACCES | libc::ENOEXEC | libc::ENOTDIR
    );
    let message = if failure.errno == libc::ENOENT {
        let exists = plan.exec.candidates.iter().any(|c| {
            let p = c.to_string_lossy();
            p.starts_with('/') && rootpath::resolve(rootfs, &p).exists()
        });
        if exists {
            format!(
                "cannot start: \"{}\" exists but its ELF interpreter or a library is missing",
                exec.program
            )
        } else if exec.program.contains('/') {
            format!("cannot start: executable \"{}\" not found", exec.program)
        } else {
            format!(
                "cannot start: executable \"{}\" not found in PATH {}",
                exec.program, exec.search_path
            )
        }
    } else {
        format!("cannot start: executing \"{}\": {err}", exec.program)
    };
    StartError { message, permanent }
}
