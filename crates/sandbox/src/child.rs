//! What the cloned child runs: the steps of a [`Plan`] against a [`Syscalls`], then `execve`.
//! On failure it reports which step failed and the errno through a close-on-exec pipe (nothing
//! arrives when `execve` succeeds) and exits 127.
//!
//! This code runs between `clone` and `execve` in a copy of a possibly multi-threaded process:
//! it must not allocate, lock or panic. Everything it touches was prepared by `plan.rs`.

use std::os::fd::{AsFd, OwnedFd};

use oxkit_linux::child::exec_first;
pub(crate) use oxkit_linux::report::Failure;
use rustix::io::Errno;

use crate::plan::{Action, Plan};
use crate::syscall::{SysResult, Syscalls};

/// Descriptors the child uses, numbered 3 and up so that installing stdio cannot clobber them.
pub(crate) struct ChildFds {
    pub stdin: OwnedFd,
    pub output: OwnedFd,
    /// Write end of the failure report pipe (close-on-exec).
    pub report: OwnedFd,
    /// Read end of the user-namespace handshake pipe.
    pub sync: Option<OwnedFd>,
}

/// Runs the plan; returns only if a step or every `execve` candidate failed.
pub(crate) fn execute(plan: &Plan, fds: &ChildFds, sys: &dyn Syscalls) -> Failure {
    for (i, step) in plan.steps.iter().enumerate() {
        match apply(&step.action, fds, sys) {
            Ok(()) => {}
            Err(Errno::NOENT) if step.may_be_missing => {}
            Err(Errno::EXIST) if step.may_exist => {}
            Err(e) => return Failure::at(i, e),
        }
    }
    let candidates = plan.exec.candidates.iter().map(|c| c.as_c_str());
    let errno = exec_first(candidates, |path| {
        sys.execve(path, &plan.exec.argv, &plan.exec.envp)
    });
    Failure::at(plan.steps.len(), errno)
}

fn apply(action: &Action, fds: &ChildFds, sys: &dyn Syscalls) -> SysResult {
    match action {
        Action::ResetSignals => {
            sys.reset_signals();
            Ok(())
        }
        Action::ParentDeathSignal => sys.set_parent_death_signal(),
        Action::WaitForParent => match &fds.sync {
            Some(fd) => sys.wait_for_parent(fd.as_fd()),
            None => Err(Errno::BADF),
        },
        Action::Stdio => sys.setup_stdio(fds.stdin.as_fd(), fds.output.as_fd()),
        Action::CloseFdsOnExec => {
            sys.close_fds_on_exec();
            Ok(())
        }
        Action::Umask(m) => {
            sys.umask(*m);
            Ok(())
        }
        Action::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => sys.mount(source, target, fstype, *flags, data.as_deref()),
        Action::RemountReadOnly(target) => sys.bind_remount_readonly(target),
        Action::Mkdir(path, mode) => sys.mkdir(path, *mode),
        Action::Mknod { path, major, minor } => sys.mknod_char(path, 0o666, *major, *minor),
        Action::WriteFile(path, contents) => sys.write_file(path, contents, 0o644),
        Action::Unlink(path) => sys.unlink(path),
        Action::Symlink { target, link } => sys.symlink(target, link),
        Action::EnterRoot { root, pivot } => enter_root(root, *pivot, sys),
        Action::SetHostname(name) => sys.sethostname(name),
        Action::LoopbackUp => sys.loopback_up(),
        Action::DropBoundingSet { keep, last_cap } => {
            for cap in 0..=*last_cap {
                if cap >= 64 || keep & (1 << cap) == 0 {
                    sys.drop_bounding_capability(cap)?;
                }
            }
            Ok(())
        }
        Action::ClearAmbient => sys.clear_ambient_capabilities(),
        Action::KeepCaps(keep) => sys.set_keep_capabilities(*keep),
        Action::SetGroups(gids) => sys.set_groups(gids),
        Action::SetIds { uid, gid } => sys.set_ids(*uid, *gid),
        Action::SetCaps(caps) => sys.set_capabilities(*caps, *caps, *caps),
        Action::Chdir(path) => sys.chdir(path),
    }
}

/// pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only the new
/// root. Where pivot_root is impossible (the root is an initramfs), move the mount over `/`
/// and chroot, as runc does.
fn enter_root(root: &std::ffi::CStr, pivot: bool, sys: &dyn Syscalls) -> SysResult {
    sys.chdir(root)?;
    if pivot && sys.pivot_root(c".", c".").is_ok() {
        sys.umount_detach(c".")?;
        return sys.chdir(c"/");
    }
    sys.mount(root, c"/", c"none", libc::MS_MOVE, None)?;
    sys.chroot(c".")?;
    sys.chdir(c"/")
}

/// The child's entry point after `clone`: never returns.
pub(crate) fn main(plan: &Plan, fds: &ChildFds, sys: &dyn Syscalls) -> ! {
    execute(plan, fds, sys).send(&fds.report);
    oxkit_linux::child::exit(127)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::caps::Capabilities;
    use crate::plan::{self, FileSource, Prepared, PreparedMount, Privilege};
    use crate::spec::{MountKind, Network};
    use crate::syscall::fake::{EXEC_REACHED, RecordingSyscalls};
    use crate::user::ResolvedUser;

    fn prepared(privilege: Privilege, network: Network) -> Prepared {
        let r = PathBuf::from("/r");
        Prepared {
            proc_dir: r.join("proc"),
            dev_dir: r.join("dev"),
            sys_dir: r.join("sys"),
            resolv_target: r.join("etc/resolv.conf"),
            hosts_target: r.join("etc/hosts"),
            hostname_target: r.join("etc/hostname"),
            resolv: FileSource::Host("/etc/resolv.conf".into()),
            mounts: vec![
                PreparedMount {
                    target: r.join("cache"),
                    kind: MountKind::Bind {
                        source: "/host/cache".into(),
                        readonly: true,
                    },
                },
                PreparedMount {
                    target: r.join("scratch"),
                    kind: MountKind::Tmpfs {
                        size_bytes: Some(1024),
                    },
                },
            ],
            masked_dirs: vec!["/proc/acpi", "/sys/firmware"],
            cwd: "/work/src".into(),
            hostname: "box".into(),
            network,
            user: ResolvedUser {
                uid: 1000,
                gid: 1000,
                groups: vec![4, 50],
                home: "/home/b".into(),
            },
            capabilities: Capabilities::docker_default().bits(),
            last_cap: 40,
            privilege,
            pivot: true,
            argv: vec!["sh".into(), "-c".into(), "true".into()],
            env: plan::final_env(&["A=1".into()], "/home/b"),
            rootfs: r,
        }
    }

    fn fds() -> ChildFds {
        let null = || OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null"));
        ChildFds {
            stdin: null(),
            output: null(),
            report: null(),
            sync: Some(null()),
        }
    }

    fn run(p: &Prepared, sys: &RecordingSyscalls) -> (Plan, Failure) {
        let plan = plan::build(p).expect("plan");
        let failure = execute(&plan, &fds(), sys);
        (plan, failure)
    }

    /// Asserts `expected` occur in `calls` in this order (not necessarily adjacent).
    fn assert_in_order(calls: &[String], expected: &[&str]) {
        let mut at = 0;
        for want in expected {
            match calls[at..].iter().position(|c| c == want) {
                Some(i) => at += i + 1,
                None => panic!(
                    "{want:?} missing after position {at} in:\n{}",
                    calls.join("\n")
                ),
            }
        }
    }

    #[test]
    fn root_run_sets_up_everything_in_order_then_execs() {
        let sys = RecordingSyscalls::new().fail("execve /usr/local/sbin/sh", Errno::NOENT);
        let (plan, failure) = run(&prepared(Privilege::Root, Network::None), &sys);
        // The fake "execs" the second PATH candidate.
        assert_eq!(failure.errno, EXEC_REACHED.raw_os_error());
        assert_eq!(failure.step as usize, plan.steps.len());
        let calls = sys.calls();
        assert_in_order(
            &calls,
            &[
                "reset_signals",
                "pdeathsig SIGKILL",
                "stdio",
                "cloexec 3..",
                "umask 000",
                "mount none / none rec,private ",
                "mount /r /r none bind,rec ",
                "mount proc /r/proc proc nosuid,nodev,noexec ",
                "mount tmpfs /r/dev tmpfs nosuid,strictatime mode=755,size=65536k",
                "mknod /r/dev/null 666 1:3",
                "mknod /r/dev/tty 666 5:0",
                "mkdir /r/dev/pts 755",
                "mount devpts /r/dev/pts devpts nosuid,noexec newinstance,ptmxmode=0666,mode=0620,gid=5",
                "symlink /r/dev/ptmx -> pts/ptmx",
                "mkdir /r/dev/shm 1777",
                "mount shm /r/dev/shm tmpfs nosuid,nodev,noexec mode=1777,size=65536k",
                "symlink /r/dev/fd -> /proc/self/fd",
                "symlink /r/dev/stderr -> /proc/self/fd/2",
                "mount sysfs /r/sys sysfs ro,nosuid,nodev,noexec ",
                "mount /etc/resolv.conf /r/etc/resolv.conf none bind ",
                "remount-ro /r/etc/resolv.conf",
                "write /r/dev/.oxkit-hosts 644 \"127.0.0.1\\tlocalhost box\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n\"",
                "mount /r/dev/.oxkit-hosts /r/etc/hosts none bind ",
                "unlink /r/dev/.oxkit-hosts",
                "remount-ro /r/etc/hosts",
                "write /r/dev/.oxkit-hostname 644 \"box\\n\"",
                "mount /r/dev/.oxkit-hostname /r/etc/hostname none bind ",
                "mount /host/cache /r/cache none bind,rec ",
                "remount-ro /r/cache",
                "mount tmpfs /r/scratch tmpfs nosuid,nodev mode=1777,size=1024",
                "mount /r/proc/sys /r/proc/sys none bind,rec ",
                "remount-ro /r/proc/sys",
                "mount tmpfs /r/proc/acpi tmpfs ro ",
                "mount /r/dev/null /r/proc/kcore none bind ",
                "mount tmpfs /r/sys/firmware tmpfs ro ",
                "chdir /r",
                "pivot_root . .",
                "umount-detach .",
                "chdir /",
                "sethostname box",
                "loopback_up",
                "mkdir /work 755",
                "mkdir /work/src 755",
                "chdir /work/src",
                "ambient_clear",
                "setgroups [4, 50]",
                "keepcaps true",
                "setids 1000:1000",
                "keepcaps false",
                "capset e=a80425fb p=a80425fb i=a80425fb",
                "umask 022",
                "execve /usr/local/sbin/sh argc=3 envc=3",
                "execve /usr/local/bin/sh argc=3 envc=3",
            ],
        );
        // Exactly the 41 - 14 capabilities outside Docker's set leave the bounding set.
        let dropped: Vec<&String> = calls
            .iter()
            .filter(|c| c.starts_with("capbset_drop "))
            .collect();
        assert_eq!(dropped.len(), 41 - 14);
        assert!(
            dropped.iter().any(|c| *c == "capbset_drop 21"),
            "SYS_ADMIN must go"
        );
        assert!(
            !dropped.iter().any(|c| *c == "capbset_drop 0"),
            "CHOWN must stay"
        );
        assert!(
            !calls
                .iter()
                .any(|c| c == "wait_for_parent" || c.starts_with("chroot"))
        );
        // Nothing touches the root filesystem itself except through mounts.
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("write /r/etc") || c.starts_with("mkdir /r/etc"))
        );
    }

    #[test]
    fn pivot_root_failure_falls_back_to_move_and_chroot() {
        let sys = RecordingSyscalls::new().fail("pivot_root", Errno::INVAL);
        let (_, failure) = run(&prepared(Privilege::Root, Network::None), &sys);
        assert_eq!(failure.errno, EXEC_REACHED.raw_os_error());
        let calls = sys.calls();
        assert_in_order(
            &calls,
            &[
                "chdir /r",
                "pivot_root . .",
                "mount /r / none move ",
                "chroot .",
                "chdir /",
                "sethostname box",
            ],
        );
        assert!(!calls.iter().any(|c| c.starts_with("umount-detach")));

        let mut p = prepared(Privilege::Root, Network::None);
        p.pivot = false;
        let sys = RecordingSyscalls::new();
        run(&p, &sys);
        assert!(!sys.calls().iter().any(|c| c.starts_with("pivot_root")));
        assert!(sys.calls().iter().any(|c| c == "chroot ."));
    }

    #[test]
    fn a_failing_step_stops_the_run_and_names_itself() {
        let sys = RecordingSyscalls::new().fail("mount proc ", Errno::PERM);
        let (plan, failure) = run(&prepared(Privilege::Root, Network::None), &sys);
        assert_eq!(failure.errno, libc::EPERM);
        let step = &plan.steps[failure.step as usize];
        assert_eq!(
            step.action.to_string(),
            "mounting proc on /r/proc (type proc, nosuid,nodev,noexec)"
        );
        assert_eq!(
            sys.calls().last().map(String::as_str),
            Some("mount proc /r/proc proc nosuid,nodev,noexec ")
        );
        assert!(!sys.calls().iter().any(|c| c.starts_with("execve")));
    }

    #[test]
    fn masked_paths_may_be_missing_but_not_forbidden() {
        let sys = RecordingSyscalls::new().fail("mount /r/dev/null /r/proc/kcore", Errno::NOENT);
        let (_, failure) = run(&prepared(Privilege::Root, Network::None), &sys);
        assert_eq!(failure.errno, EXEC_REACHED.raw_os_error());
        let sys = RecordingSyscalls::new().fail("mount /r/dev/null /r/proc/kcore", Errno::PERM);
        let (plan, failure) = run(&prepared(Privilege::Root, Network::None), &sys);
        assert_eq!(failure.errno, libc::EPERM);
        assert!(
            plan.steps[failure.step as usize]
                .action
                .to_string()
                .contains("/r/proc/kcore")
        );
        // An existing working directory is fine; a refused one is not.
        let sys = RecordingSyscalls::new().fail("mkdir /work ", Errno::EXIST);
        assert_eq!(
            run(&prepared(Privilege::Root, Network::None), &sys).1.errno,
            EXEC_REACHED.raw_os_error()
        );
        let sys = RecordingSyscalls::new().fail("mkdir /work ", Errno::ROFS);
        assert_eq!(
            run(&prepared(Privilege::Root, Network::None), &sys).1.errno,
            libc::EROFS
        );
    }

    #[test]
    fn user_namespace_borrows_devices_and_waits_for_the_maps() {
        let mut p = prepared(Privilege::UserNamespace { full_map: false }, Network::Host);
        p.user = ResolvedUser {
            uid: 0,
            gid: 0,
            groups: vec![10],
            home: "/root".into(),
        };
        let sys = RecordingSyscalls::new();
        run(&p, &sys);
        let calls = sys.calls();
        assert_in_order(
            &calls,
            &[
                "pdeathsig SIGKILL",
                "wait_for_parent",
                "stdio",
                "mount none / none rec,private ",
                "write /r/dev/null 644 \"\"",
                "mount /dev/null /r/dev/null none bind ",
                "mount devpts /r/dev/pts devpts nosuid,noexec newinstance,ptmxmode=0666,mode=0620",
                "mount /sys /r/sys none bind,rec ",
                "remount-ro /r/sys",
                "setids 0:0",
            ],
        );
        assert!(!calls.iter().any(|c| c.starts_with("mknod")));
        assert!(
            !calls.iter().any(|c| c.starts_with("setgroups")),
            "setgroups is denied"
        );
        assert!(
            !calls.iter().any(|c| c == "loopback_up"),
            "host network has its own lo"
        );
        assert!(!calls.iter().any(|c| c.contains("sysfs")));
    }

    #[test]
    fn exec_follows_execvp_rules() {
        let p = prepared(Privilege::Root, Network::None);
        let sys = RecordingSyscalls::new().fail("execve ", Errno::NOENT);
        let (plan, failure) = run(&p, &sys);
        assert_eq!(
            (failure.step as usize, failure.errno),
            (plan.steps.len(), libc::ENOENT)
        );
        assert_eq!(
            sys.calls()
                .iter()
                .filter(|c| c.starts_with("execve"))
                .count(),
            6
        );

        let sys = RecordingSyscalls::new()
            .fail("execve /usr/local/sbin/", Errno::ACCESS)
            .fail("execve ", Errno::NOENT);
        assert_eq!(run(&p, &sys).1.errno, libc::EACCES);

        let sys = RecordingSyscalls::new().fail("execve /usr/local/sbin/", Errno::NOEXEC);
        assert_eq!(run(&p, &sys).1.errno, libc::ENOEXEC);
        assert_eq!(
            sys.calls()
                .iter()
                .filter(|c| c.starts_with("execve"))
                .count(),
            1
        );
    }

    #[test]
    fn failures_survive_the_pipe() {
        let f = Failure {
            step: 42,
            errno: libc::EPERM,
        };
        assert_eq!(Failure::decode(f.encode()), f);
    }
}
