//! What only PID 1 does: make the initramfs root pivotable, mount the system filesystems, take
//! the console, load modules, name the host, bring up `lo`, hand over to the supervisor, and at
//! the end kill what is left, unmount, and power off or reboot.
//!
//! Nothing here may stop the boot: every failure is one log line and the next step runs. It
//! must never return either (PID 1 exiting panics the kernel): [`run`] ends in reboot(2), or
//! waits forever if even that fails.

use std::path::Path;
use std::time::{Duration, Instant};

use oxkit_linux::child::loopback_up;
use rustix::process::WaitOptions;

use crate::child::{mkdir_all, mount};
use crate::cmdline::{self, Cmdline};
use crate::log::Log;
use crate::modules::Loader;
use crate::mountopt::{
    MS_BIND, MS_MOVE, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_REC, MS_RELATIME, MS_SHARED,
};
use crate::supervisor::{EnsureFilesystem, Options, Request, Supervisor};

const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

fn c(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap_or_default()
}

fn try_mount(
    log: &Log,
    source: &str,
    target: &str,
    fstype: &str,
    flags: u64,
    data: &str,
    quiet: bool,
) {
    if let Err(e) = mkdir_all(&c(target)) {
        if !quiet {
            log.info(format_args!(
                "cannot create {target}: {}",
                std::io::Error::from(e)
            ));
        }
        return;
    }
    let data_c = c(data);
    let data = (!data.is_empty()).then_some(data_c.as_c_str());
    if let Err(e) = mount(Some(&c(source)), &c(target), Some(&c(fstype)), flags, data)
        && !quiet
    {
        log.info(format_args!(
            "cannot mount {fstype} on {target}: {}",
            std::io::Error::from(e)
        ));
    }
}

/// pivot_root refuses to move away from the initramfs (the `rootfs` mount has no parent), so
/// containers could only be chrooted. Binding the root onto a directory of itself and moving
/// that bind over `/` gives a root mount with a parent, at no copying cost.
fn pivotable_root(log: &Log) {
    let on_ramfs = rustix::fs::statfs("/").is_ok_and(|s| {
        // f_type's width differs between architectures.
        #[allow(clippy::useless_conversion)]
        let t = i64::try_from(s.f_type).unwrap_or(0);
        t == RAMFS_MAGIC || t == TMPFS_MAGIC
    });
    if !on_ramfs {
        return;
    }
    let dir = c"/.oxkit-root";
    let result = (|| {
        match rustix::fs::mkdir(dir, rustix::fs::Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
        mount(Some(c"/"), dir, None, MS_BIND, None)?;
        rustix::process::chdir(dir)?;
        mount(Some(c"."), c"/", None, MS_MOVE, None)?;
        rustix::process::chroot(c".")?;
        rustix::process::chdir(c"/")
    })();
    match result {
        Ok(()) => {
            let _ = rustix::fs::rmdir(dir);
        }
        Err(e) => log.info(format_args!(
            "cannot make the root pivotable (containers will be chrooted): {}",
            std::io::Error::from(e)
        )),
    }
}

/// LinuxKit's rc.init mounts, in its order.
fn mount_system(log: &Log, cmdline: &Cmdline) {
    let (nodev, nosuid, noexec, relatime) = (MS_NODEV, MS_NOSUID, MS_NOEXEC, MS_RELATIME);
    try_mount(
        log,
        "tmpfs",
        "/run",
        "tmpfs",
        nodev | nosuid | noexec | relatime,
        "size=10%,mode=755",
        false,
    );
    try_mount(
        log,
        "tmpfs",
        "/tmp",
        "tmpfs",
        nodev | nosuid | noexec | relatime,
        "size=10%,mode=1777",
        false,
    );
    try_mount(
        log,
        "tmpfs",
        "/var",
        "tmpfs",
        nodev | nosuid | noexec | relatime,
        "size=50%,mode=755",
        false,
    );
    for d in [
        "cache", "empty", "lib", "local", "lock", "log", "opt", "spool", "tmp",
    ] {
        let _ = std::fs::create_dir_all(Path::new("/var").join(d));
    }
    let _ = std::os::unix::fs::symlink("/run", "/var/run");
    let _ = std::fs::set_permissions(
        "/var/tmp",
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    );

    let _ = std::os::unix::fs::symlink("/proc/self/fd", "/dev/fd");
    for (i, name) in ["stdin", "stdout", "stderr"].iter().enumerate() {
        let _ = std::os::unix::fs::symlink(format!("/proc/self/fd/{i}"), format!("/dev/{name}"));
    }
    try_mount(
        log,
        "mqueue",
        "/dev/mqueue",
        "mqueue",
        noexec | nosuid | nodev,
        "",
        false,
    );
    try_mount(
        log,
        "shm",
        "/dev/shm",
        "tmpfs",
        noexec | nosuid | nodev,
        "mode=1777",
        false,
    );
    try_mount(
        log,
        "devpts",
        "/dev/pts",
        "devpts",
        noexec | nosuid,
        "gid=5,mode=0620,ptmxmode=0666",
        false,
    );

    for (src, target, fstype) in [
        ("securityfs", "/sys/kernel/security", "securityfs"),
        ("debugfs", "/sys/kernel/debug", "debugfs"),
        ("configfs", "/sys/kernel/config", "configfs"),
        ("fusectl", "/sys/fs/fuse/connections", "fusectl"),
        ("pstore", "/sys/fs/pstore", "pstore"),
        ("bpffs", "/sys/fs/bpf", "bpf"),
        ("efivarfs", "/sys/firmware/efi/efivars", "efivarfs"),
        ("binfmt_misc", "/proc/sys/fs/binfmt_misc", "binfmt_misc"),
    ] {
        // Absent on many kernels and machines: not worth a line.
        if Path::new(target).exists() {
            try_mount(log, src, target, fstype, noexec | nosuid | nodev, "", true);
        }
    }

    if cmdline.cgroup_v1 {
        try_mount(
            log,
            "cgroup_root",
            "/sys/fs/cgroup",
            "tmpfs",
            nodev | noexec | nosuid,
            "mode=755,size=10m",
            false,
        );
        let list = std::fs::read_to_string("/proc/cgroups").unwrap_or_default();
        for line in list.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split('\t').collect();
            if let (Some(name), Some(&"1")) = (f.first(), f.get(3)) {
                try_mount(
                    log,
                    name,
                    &format!("/sys/fs/cgroup/{name}"),
                    "cgroup",
                    noexec | nosuid | nodev,
                    name,
                    false,
                );
            }
        }
        let _ = std::fs::write("/sys/fs/cgroup/memory/memory.use_hierarchy", "1");
        try_mount(
            log,
            "cgroup",
            "/sys/fs/cgroup/systemd",
            "cgroup",
            0,
            "none,name=systemd",
            false,
        );
    } else {
        try_mount(
            log,
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            noexec | nosuid | nodev,
            "",
            false,
        );
    }
    // Containers that ask for shared propagation (LinuxKit's mount package) see host mounts
    // and publish theirs.
    if let Err(e) = mount(None, c"/", None, MS_REC | MS_SHARED, None) {
        log.info(format_args!(
            "cannot make / shared: {}",
            std::io::Error::from(e)
        ));
    }
}

/// stdin, stdout and stderr on /dev/console: the kernel opens it only if the initramfs has the
/// node, and devtmpfs is mounted only now.
fn take_console() {
    if let Ok(console) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        let _ = rustix::stdio::dup2_stdin(&console);
        let _ = rustix::stdio::dup2_stdout(&console);
        let _ = rustix::stdio::dup2_stderr(&console);
    }
}

fn set_hostname(log: &Log) {
    let wanted = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let wanted = wanted.trim();
    let name = if !wanted.is_empty() {
        wanted.to_string()
    } else {
        // LinuxKit's fallback, so that images find the names they expect.
        let mac = std::fs::read_to_string("/sys/class/net/eth0/address").unwrap_or_default();
        let mac = mac.trim().replace(':', "");
        if mac.is_empty() {
            return;
        }
        format!("linuxkit-{mac}")
    };
    if let Err(e) = rustix::system::sethostname(name.as_bytes()) {
        log.info(format_args!(
            "cannot set hostname {name:?}: {}",
            std::io::Error::from(e)
        ));
    }
}

/// A resolv.conf symlink (to /run/resolvconf/...) needs its target to exist, empty, for the
/// DHCP client to fill and other containers to bind.
fn resolv_conf() {
    if let Ok(target) = std::fs::read_link("/etc/resolv.conf") {
        let target = Path::new("/etc").join(target);
        if let Some(dir) = target.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if !target.exists() {
            let _ = std::fs::write(&target, "");
        }
    }
}

fn raise_limits() {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(1_048_576),
            maximum: Some(1_048_576),
        },
    );
    let _ = setrlimit(
        Resource::Nproc,
        Rlimit {
            current: None,
            maximum: None,
        },
    );
}

/// Modules named in `/etc/modules` (one a line, `#` comments) and `oxkit.modules=`, then the
/// ones the devices present need.
fn load_modules(log: &Log, cmdline: &Cmdline) -> Option<Loader> {
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let dir = Path::new("/lib/modules").join(&release);
    if !dir.is_dir() {
        log.debug(format_args!("no modules for kernel {release}"));
        return None;
    }
    let mut loader = match Loader::new(&dir, log.clone()) {
        Ok(l) => l,
        Err(e) => {
            log.info(format_args!("cannot index {}: {e}", dir.display()));
            return None;
        }
    };
    let listed = std::fs::read_to_string("/etc/modules").unwrap_or_default();
    let names = listed
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .chain(cmdline.modules.iter().cloned());
    for name in names {
        if let Err(e) = loader.load(&name) {
            log.info(e);
        }
    }
    if cmdline.coldplug {
        let start = Instant::now();
        loader.coldplug();
        log.debug(format_args!(
            "coldplug took {}ms",
            start.elapsed().as_millis()
        ));
    }
    Some(loader)
}

/// PID 1's whole life.
pub fn run() -> ! {
    let early = Log::stderr(false);
    pivotable_root(&early);
    try_mount(
        &early,
        "proc",
        "/proc",
        "proc",
        MS_NODEV | MS_NOSUID | MS_NOEXEC | MS_RELATIME,
        "",
        false,
    );
    try_mount(
        &early,
        "dev",
        "/dev",
        "devtmpfs",
        MS_NOSUID | MS_NOEXEC | MS_RELATIME,
        "size=10m,mode=755",
        false,
    );
    take_console();
    try_mount(
        &early,
        "sysfs",
        "/sys",
        "sysfs",
        MS_NOEXEC | MS_NOSUID | MS_NODEV,
        "",
        false,
    );
    let cmdline = cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    let log = Log::stderr(cmdline.debug);
    log.info(format_args!(
        "oxkit-init {} starting",
        env!("CARGO_PKG_VERSION")
    ));
    mount_system(&log, &cmdline);
    // Ctrl-Alt-Del becomes SIGINT to us instead of an immediate reboot.
    let _ = rustix::system::reboot(rustix::system::RebootCommand::CadOff);
    raise_limits();
    let loader = load_modules(&log, &cmdline);
    set_hostname(&log);
    if let Err(e) = loopback_up() {
        log.info(format_args!(
            "cannot bring up lo: {}",
            std::io::Error::from(e)
        ));
    }
    resolv_conf();

    let mut options = Options::new("/");
    options.signals = true;
    options.reap_orphans = true;
    let ensure: Option<EnsureFilesystem> =
        loader.map(|mut l| Box::new(move |t: &str| l.ensure_filesystem(t)) as EnsureFilesystem);
    let request = match Supervisor::new(options, log.clone(), ensure) {
        Ok((sup, _controller)) => sup.run(),
        Err(e) => {
            log.info(format_args!("cannot start the supervisor: {e}"));
            wait_forever_for_signal(&log)
        }
    };
    finish(request, &log)
}

/// Without a supervisor: wait for a shutdown signal so that the machine can still be stopped.
fn wait_forever_for_signal(log: &Log) -> Request {
    // SAFETY: plain sigset manipulation and sigwait on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGPWR,
            libc::SIGCHLD,
        ] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        loop {
            let mut sig = 0;
            if libc::sigwait(&set, &mut sig) == 0 {
                if let Some(r) = Request::from_signal(sig) {
                    return r;
                }
                while let Ok(Some(_)) = rustix::process::waitpid(None, WaitOptions::NOHANG) {}
            } else {
                log.info("sigwait failed");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Waits until no child is left or `limit` passed, reaping as they go.
fn reap_for(limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match rustix::process::waitpid(None, WaitOptions::NOHANG) {
            Ok(Some(_)) => continue,
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => return,
        }
    }
}

/// Unmounts what holds data (LinuxKit's list), newest first; network filesystems lazily.
fn unmount_all(log: &Log) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines().rev() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(target), Some(fstype)) = (f.get(1), f.get(2)) else {
            continue;
        };
        let flags = match *fstype {
            "ext2" | "ext3" | "ext4" | "btrfs" | "xfs" | "vfat" | "msdos" | "overlay" => {
                rustix::mount::UnmountFlags::empty()
            }
            "nfs" | "nfs4" | "cifs" => rustix::mount::UnmountFlags::DETACH,
            _ => continue,
        };
        if let Err(e) = rustix::mount::unmount(*target, flags) {
            log.debug(format_args!(
                "cannot unmount {target}: {}",
                std::io::Error::from(e)
            ));
        }
    }
}

fn finish(request: Request, log: &Log) -> ! {
    log.info("sending SIGTERM to all processes");
    // SAFETY: kill(2) with integer arguments; -1 means every process but ourselves.
    unsafe { libc::kill(-1, libc::SIGTERM) };
    reap_for(Duration::from_secs(5));
    // SAFETY: as above.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    reap_for(Duration::from_secs(1));
    rustix::fs::sync();
    unmount_all(log);
    rustix::fs::sync();
    let cmd = match request {
        Request::Poweroff => rustix::system::RebootCommand::PowerOff,
        Request::Reboot => rustix::system::RebootCommand::Restart,
        Request::Halt => rustix::system::RebootCommand::Halt,
    };
    log.info(format_args!("{request}"));
    if let Err(e) = rustix::system::reboot(cmd) {
        log.info(format_args!(
            "reboot(2) failed: {}",
            std::io::Error::from(e)
        ));
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
