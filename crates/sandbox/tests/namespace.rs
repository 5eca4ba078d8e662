//! Real runs in real namespaces (as root, like CI): a busybox root filesystem, the command's
//! view from inside, and the host's state before and after.

mod support;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use oxkit_sandbox::{
    Capabilities, ExitStatus, Mount, NamespaceSandbox, Network, Sandbox, SandboxError,
    remove_mount_stubs,
};
use support::{Rootfs, mount_table, require_root, run_ok, run_with};

#[test]
fn exit_codes_propagate() {
    require_root();
    let root = Rootfs::native();
    let ran = run_with(&NamespaceSandbox::new(), &root.spec("echo out; exit 7")).expect("run");
    assert_eq!(ran.outcome.status, ExitStatus::Code(7));
    assert_eq!(ran.output, "out\n");
    assert!(!ran.outcome.status.success());
}

/// Kills the command from the host side once it says it is ready: a signal death must come
/// back as a signal. (PID 1 of a namespace only dies of SIGKILL from outside, or of a signal
/// it has no handler for never: that is why a builder cancels a step with SIGKILL.)
#[test]
fn signals_propagate() {
    require_root();
    let root = Rootfs::native();
    let marker = format!("{}", 900_000 + std::process::id() % 99_999);
    let spec = root.spec(&format!("echo ready; exec sleep {marker}"));
    let mut killed = false;
    let outcome = NamespaceSandbox::new()
        .run(&spec, &mut |chunk: &[u8]| {
            if chunk.starts_with(b"ready") && !killed {
                killed = kill_by_cmdline(&marker, libc::SIGKILL);
            }
        })
        .expect("run");
    assert!(killed, "did not find the sleeping command on the host");
    assert_eq!(outcome.status, ExitStatus::Signal(libc::SIGKILL));
}

fn kill_by_cmdline(marker: &str, sig: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        for entry in fs::read_dir("/proc").expect("proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if cmdline.split(|b| *b == 0).any(|a| a == marker.as_bytes()) {
                // SAFETY: kill(2) on a pid takes no pointers.
                #[allow(unsafe_code)]
                let r = unsafe { libc::kill(pid, sig) };
                return r == 0;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn processes_with_arg(marker: &str) -> usize {
    fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter(|e| {
            fs::read(e.path().join("cmdline"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .any(|a| a == marker.as_bytes())
        })
        .count()
}

#[test]
fn command_is_pid_1_and_its_children_die_with_it() {
    require_root();
    let root = Rootfs::native();
    let out = run_ok(&root.spec("echo $$; ls /proc | grep -c '^[0-9]'"));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"));
    // sh, ls and grep: nothing of the host's.
    let visible: u32 = lines.next().expect("count").parse().expect("number");
    assert!(visible <= 4, "the PID namespace shows {visible} processes");

    let marker = format!("{}", 800_000 + std::process::id() % 99_999);
    let start = Instant::now();
    let ran = run_with(
        &NamespaceSandbox::new(),
        &root.spec(&format!("sleep {marker} & exit 3")),
    )
    .expect("run");
    assert_eq!(ran.outcome.status, ExitStatus::Code(3));
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "waited for the orphan"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        processes_with_arg(&marker),
        0,
        "a background process outlived PID 1"
    );
}

#[test]
fn hostname_is_isolated() {
    require_root();
    let before = rustix::system::uname().nodename().to_owned();
    let root = Rootfs::native();
    let mut spec = root.spec("hostname; cat /etc/hostname; grep -c oxkit-test /etc/hosts; hostname changed 2>/dev/null || echo refused");
    spec.hostname = "oxkit-test".into();
    // Like Docker, a step has no CAP_SYS_ADMIN to change it.
    assert_eq!(run_ok(&spec), "oxkit-test\noxkit-test\n1\nrefused\n");
    assert_eq!(rustix::system::uname().nodename(), before.as_c_str());
    // The files were bind-mounted, not written into the root filesystem.
    assert_eq!(
        fs::read(root.path().join("etc/hostname")).expect("stub"),
        b""
    );
    assert_eq!(fs::read(root.path().join("etc/hosts")).expect("stub"), b"");
}

#[test]
fn no_network_but_loopback_by_default() {
    require_root();
    let root = Rootfs::native();
    let out = run_ok(
        &root.spec("ls /sys/class/net; cat /sys/class/net/lo/flags; grep -c : /proc/net/dev"),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo", "{out}");
    let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).expect("flags");
    assert_eq!(flags & 1, 1, "lo is not up: {out}");
    assert_eq!(lines[2], "1", "only lo in /proc/net/dev: {out}");
}

#[test]
fn host_network_shares_interfaces_and_resolv_conf() {
    require_root();
    let root = Rootfs::native();
    let mut spec = root.spec("ls /sys/class/net; echo ---; cat /etc/resolv.conf");
    spec.network = Network::Host;
    let out = run_ok(&spec);
    let (ifaces, resolv) = out.split_once("---\n").expect("separator");
    let mut host: Vec<String> = fs::read_dir("/sys/class/net")
        .expect("net")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    let mut inside: Vec<&str> = ifaces.split_whitespace().collect();
    inside.sort();
    assert_eq!(inside, host);
    assert_eq!(
        resolv,
        fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    );
    // Bind-mounted read-only over an empty stub: nothing written into the layer.
    assert_eq!(
        fs::read(root.path().join("etc/resolv.conf")).expect("stub"),
        b""
    );
    let mut write = root.spec("echo nameserver 1.1.1.1 > /etc/resolv.conf");
    write.network = Network::Host;
    let ran = run_with(&NamespaceSandbox::new(), &write).expect("run");
    assert!(
        !ran.outcome.status.success(),
        "resolv.conf must be read-only"
    );
}

#[test]
fn env_cwd_and_defaults() {
    require_root();
    let root = Rootfs::native();
    let mut spec = root
        .spec("pwd; echo \"$FOO\"; echo \"$HOME\"; echo \"$PATH\"; cat; readlink /proc/self/fd/0");
    spec.env = vec!["FOO=bar baz".into()];
    spec.cwd = "/work/dir".into();
    let out = run_ok(&spec);
    assert_eq!(
        out,
        "/work/dir\nbar baz\n/root\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/dev/null\n"
    );
    // The working directory is created like runc does, and belongs to the layer.
    assert!(root.path().join("work/dir").is_dir());

    let mut spec = root.spec("echo \"$PATH\"");
    spec.env = vec!["PATH=/bin".into(), "HOME=/x".into()];
    assert_eq!(run_ok(&spec), "/bin\n");
    let spec = oxkit_sandbox::RunSpec::new(root.path(), vec!["echo".into(), "via PATH".into()]);
    assert_eq!(run_ok(&spec), "via PATH\n");
}

#[test]
fn user_from_passwd_and_group() {
    require_root();
    let root = Rootfs::native();
    fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1001::/home/builder:/bin/sh\n",
    )
    .expect("passwd");
    fs::write(
        root.path().join("etc/group"),
        "root:x:0:\nbuilder:x:1001:\nstaff:x:50:builder\n",
    )
    .expect("group");
    let script = "id -u; id -g; id -G; echo $HOME; grep -E '^Cap(Eff|Bnd)' /proc/self/status";
    let mut spec = root.spec(script);
    spec.user = Some("builder".into());
    let out = run_ok(&spec);
    assert_eq!(
        out,
        "1000\n1001\n1001 50\n/home/builder\nCapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n"
    );

    spec.user = Some("1234:staff".into());
    assert_eq!(
        run_ok(&spec).lines().take(3).collect::<Vec<_>>(),
        ["1234", "50", "50"]
    );

    spec.user = Some("nobody".into());
    let err = run_with(&NamespaceSandbox::new(), &spec)
        .err()
        .expect("unknown user");
    assert!(matches!(err, SandboxError::User(_)), "{err}");
    assert!(err.to_string().contains("etc/passwd"), "{err}");
}

#[test]
fn docker_default_capabilities() {
    require_root();
    let root = Rootfs::native();
    let out = run_ok(&root.spec("grep ^Cap /proc/self/status"));
    let expected = "CapInh:\t00000000a80425fb\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n";
    assert_eq!(out, expected);
    assert_eq!(Capabilities::docker_default().bits(), 0xa80425fb);

    let mut spec = root.spec("grep ^CapBnd /proc/self/status");
    spec.capabilities =
        Some(Capabilities::from_names(["CAP_CHOWN", "CAP_SYS_ADMIN"]).expect("caps"));
    assert_eq!(run_ok(&spec), "CapBnd:\t0000000000200001\n");
    // Without CAP_SYS_ADMIN a step cannot mount.
    let ran = run_with(
        &NamespaceSandbox::new(),
        &root.spec("mount -t tmpfs none /tmp"),
    )
    .expect("run");
    assert!(!ran.outcome.status.success());
}

#[test]
fn dev_proc_and_sys() {
    require_root();
    let root = Rootfs::native();
    let script = r#"set -e
for d in null zero full random urandom tty; do stat -c "%n %F %t:%T %a" /dev/$d; done
for l in ptmx fd stdin stdout stderr; do readlink /dev/$l; done
echo x > /dev/null; head -c 5 /dev/zero | wc -c; head -c 7 /dev/urandom | wc -c
touch /dev/shm/ok
grep -E ' /dev/pts | /sys | /proc/sys ' /proc/self/mounts | cut -d' ' -f2-4 | sed 's/,.*//'
if { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; then echo proc-sys-writable; fi
cat /proc/timer_list /proc/keys | wc -c
if touch /sys/x 2>/dev/null; then echo sys-writable; fi
echo done"#;
    let out = run_ok(&root.spec(script));
    let expected = "\
/dev/null character special file 1:3 666
/dev/zero character special file 1:5 666
/dev/full character special file 1:7 666
/dev/random character special file 1:8 666
/dev/urandom character special file 1:9 666
/dev/tty character special file 5:0 666
pts/ptmx
/proc/self/fd
/proc/self/fd/0
/proc/self/fd/1
/proc/self/fd/2
5
7
/dev/pts devpts rw
/sys sysfs ro
/proc/sys proc ro
0
done
";
    assert_eq!(out, expected);
}

#[test]
fn output_streams_while_the_command_runs() {
    require_root();
    let root = Rootfs::native();
    let ran = run_with(
        &NamespaceSandbox::new(),
        &root.spec("echo one; echo two >&2; sleep 0.4; echo three"),
    )
    .expect("run");
    assert_eq!(ran.output, "one\ntwo\nthree\n");
    let first = ran.chunks.first().expect("chunk").0;
    let last = ran.chunks.last().expect("chunk").0;
    assert!(
        last - first >= Duration::from_millis(300),
        "output arrived in one go: {:?}",
        ran.chunks.len()
    );
}

#[test]
fn created_mountpoints_are_reported_and_removable() {
    require_root();
    let root = Rootfs::native();
    let listing = |p: &std::path::Path| {
        let mut v: Vec<String> = fs::read_dir(p)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before_root = listing(root.path());
    let before_etc = listing(&root.path().join("etc"));
    let cache = tempfile::tempdir().expect("cache");
    fs::write(cache.path().join("kept"), "from host").expect("file");
    let secret = tempfile::NamedTempFile::new().expect("secret");
    fs::write(secret.path(), "s3cret").expect("secret");
    let mut spec = root.spec("cat /var/cache/x/kept; cat /run/secrets/token; echo new > /var/cache/x/made; touch /scratch/t");
    spec.mounts = vec![
        Mount::bind(secret.path(), "/run/secrets/token", true),
        Mount::bind(cache.path(), "/var/cache/x", false),
        Mount::tmpfs("/scratch"),
    ];
    let ran = run_with(&NamespaceSandbox::new(), &spec).expect("run");
    assert!(ran.outcome.status.success(), "{}", ran.output);
    assert_eq!(ran.output, "from hosts3cret");
    assert_eq!(
        fs::read_to_string(cache.path().join("made")).expect("rw bind"),
        "new\n"
    );
    let created: Vec<String> = ran
        .outcome
        .created_mountpoints
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        created,
        [
            "/proc",
            "/dev",
            "/sys",
            "/etc/resolv.conf",
            "/etc/hosts",
            "/etc/hostname",
            "/scratch",
            "/run",
            "/run/secrets",
            "/run/secrets/token",
            "/var",
            "/var/cache",
            "/var/cache/x",
        ]
    );
    let removed =
        remove_mount_stubs(root.path(), &ran.outcome.created_mountpoints).expect("remove");
    assert_eq!(removed.len(), created.len());
    assert_eq!(listing(root.path()), before_root);
    assert_eq!(listing(&root.path().join("etc")), before_etc);

    let mut ro = root.spec("touch /run/secrets/token");
    ro.mounts = vec![Mount::bind(secret.path(), "/run/secrets/token", true)];
    assert!(
        !run_with(&NamespaceSandbox::new(), &ro)
            .expect("run")
            .outcome
            .status
            .success()
    );
}

/// Host mount-table lines that mention `path` (other tests may mount things meanwhile, so
/// the whole table is not compared).
fn host_mounts_under(path: &std::path::Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    mount_table()
        .into_iter()
        .filter(|l| l.contains(&needle))
        .collect()
}

#[test]
fn nothing_leaks_onto_the_host_mount_table() {
    require_root();
    let root = Rootfs::native();
    let cache = tempfile::tempdir().expect("cache");
    let mut spec = root.spec("mount | wc -l");
    spec.mounts = vec![
        Mount::bind(cache.path(), "/cache", false),
        Mount::tmpfs("/t"),
    ];
    let inside: usize = run_ok(&spec).trim().parse().expect("count");
    assert!(inside >= 10, "the command should see its own mounts");
    let mut host_net = root.spec("true");
    host_net.network = Network::Host;
    run_ok(&host_net);
    let chroot = NamespaceSandbox::new().with_pivot_root(false);
    assert!(
        run_with(&chroot, &root.spec("true"))
            .expect("chroot run")
            .outcome
            .status
            .success()
    );
    let userns = NamespaceSandbox::new().with_user_namespace(true);
    assert!(
        run_with(&userns, &root.spec("true"))
            .expect("userns run")
            .outcome
            .status
            .success()
    );
    // A failed setup must not leak either.
    let mut bad = root.spec("true");
    bad.mounts = vec![Mount::bind("/nonexistent-oxkit-source", "/x", false)];
    assert!(run_with(&NamespaceSandbox::new(), &bad).is_err());
    assert_eq!(host_mounts_under(root.path()), Vec::<String>::new());
    assert_eq!(host_mounts_under(cache.path()), Vec::<String>::new());
}

/// Unmounts (lazily) on drop.
struct HostMount(PathBuf);

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// On systemd hosts `/` is a shared mount: without making everything private first, the
/// sandbox's mounts would propagate back to the host. Recreate that here: the root filesystem
/// lives under a shared mount, and the host must not see /proc or /dev appear under it while
/// the command runs.
#[test]
fn mounts_do_not_propagate_from_a_shared_parent() {
    require_root();
    let base = tempfile::tempdir().expect("base");
    let sh = |args: &[&str]| {
        let st = std::process::Command::new("mount")
            .args(args)
            .arg(base.path())
            .status()
            .expect("mount");
        assert!(st.success(), "mount {args:?}");
    };
    sh(&["--bind", &base.path().to_string_lossy()]);
    let _guard = HostMount(base.path().to_path_buf());
    sh(&["--make-shared"]);
    assert!(
        mount_table()
            .iter()
            .any(|l| l.contains(&*base.path().to_string_lossy()) && l.contains("shared:")),
        "test setup: the base is not a shared mount"
    );
    let src = Rootfs::native();
    let rootfs = base.path().join("rootfs");
    fs::create_dir(&rootfs).expect("rootfs");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.path().display()))
        .arg(&rootfs)
        .status()
        .expect("cp");
    assert!(cp.success());
    let spec = oxkit_sandbox::RunSpec::new(
        &rootfs,
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo ready; sleep 0.3".into(),
        ],
    );
    let mut seen = None;
    let outcome = NamespaceSandbox::new()
        .run(&spec, &mut |chunk: &[u8]| {
            if chunk.starts_with(b"ready") {
                seen = Some(host_mounts_under(&rootfs));
            }
        })
        .expect("run");
    assert!(outcome.status.success());
    assert_eq!(
        seen,
        Some(Vec::new()),
        "mounts propagated to the host while the step ran"
    );
    assert_eq!(host_mounts_under(&rootfs), Vec::<String>::new());
}

#[test]
fn chroot_fallback_works() {
    require_root();
    let root = Rootfs::native();
    let sandbox = NamespaceSandbox::new().with_pivot_root(false);
    let ran = run_with(&sandbox, &root.spec("echo $$; ls /dev/null; hostname")).expect("run");
    assert!(ran.outcome.status.success(), "{}", ran.output);
    assert_eq!(ran.output, "1\n/dev/null\nbuildkitsandbox\n");
}

#[test]
fn user_namespace_mode_maps_root() {
    require_root();
    let root = Rootfs::native();
    let sandbox = NamespaceSandbox::new().with_user_namespace(true);
    let out = run_with(&sandbox, &root.spec("id -u; cat /proc/self/uid_map; echo x > /dev/null && echo devnull-ok; ls /sys/class/net"))
        .expect("run");
    assert!(out.outcome.status.success(), "{}", out.output);
    let squeezed: Vec<String> = out
        .output
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(squeezed, ["0", "0 0 4294967295", "devnull-ok", "lo"]);
}

#[test]
fn missing_commands_and_bad_specs_are_errors_not_statuses() {
    require_root();
    let root = Rootfs::native();
    let spec = oxkit_sandbox::RunSpec::new(root.path(), vec!["no-such-tool".into()]);
    let err = run_with(&NamespaceSandbox::new(), &spec)
        .err()
        .expect("not found");
    assert!(matches!(err, SandboxError::CommandNotFound { .. }), "{err}");
    assert!(err.to_string().contains("PATH=/usr/local/sbin"), "{err}");
    let spec = oxkit_sandbox::RunSpec::new(root.path(), vec!["/etc".into()]);
    let err = run_with(&NamespaceSandbox::new(), &spec)
        .err()
        .expect("a directory");
    assert!(matches!(err, SandboxError::Exec { .. }), "{err}");

    let spec = oxkit_sandbox::RunSpec::new("/nonexistent-rootfs", vec!["true".into()]);
    assert!(matches!(
        run_with(&NamespaceSandbox::new(), &spec).err(),
        Some(SandboxError::RootfsMissing { .. })
    ));
    let mut spec = root.spec("true");
    spec.cwd = "relative".into();
    assert!(matches!(
        run_with(&NamespaceSandbox::new(), &spec).err(),
        Some(SandboxError::InvalidSpec(_))
    ));
    // Failed runs leave no mount points behind.
    assert!(!root.path().join("proc").exists());
}

#[test]
fn arm64_busybox_runs_through_qemu_binfmt() {
    require_root();
    if oxkit_sandbox::binfmt::host_arch() == "arm64" {
        return;
    }
    let root = Rootfs::new("arm64");
    let mut spec = root.spec("uname -m; echo $$");
    spec.arch = Some("arm64".into());
    let out = run_with(&NamespaceSandbox::new(), &spec).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.outcome.status.success(), "{}", out.output);
    assert_eq!(out.output, "aarch64\n1\n");
}

#[test]
fn missing_binfmt_handler_is_a_clear_error() {
    require_root();
    let root = Rootfs::native();
    let fake = tempfile::tempdir().expect("fake binfmt");
    fs::write(fake.path().join("status"), "enabled\n").expect("status");
    fs::write(fake.path().join("register"), "").expect("register");
    let foreign = if oxkit_sandbox::binfmt::host_arch() == "arm64" {
        "riscv64"
    } else {
        "arm64"
    };
    let mut spec = root.spec("true");
    spec.arch = Some(foreign.into());
    let err = run_with(&NamespaceSandbox::new().with_binfmt_dir(fake.path()), &spec)
        .err()
        .expect("no handler");
    let msg = err.to_string();
    for needle in [
        "apt-get install qemu-user-static binfmt-support",
        "mount -t binfmt_misc binfmt_misc",
        "update-binfmts --enable",
    ] {
        assert!(msg.contains(needle), "{msg}");
    }
    // Nothing was created in the root filesystem.
    assert!(!root.path().join("proc").exists());
    // Native runs do not look at binfmt at all.
    spec.arch = Some(oxkit_sandbox::binfmt::host_arch().into());
    let ran =
        run_with(&NamespaceSandbox::new().with_binfmt_dir(fake.path()), &spec).expect("native");
    assert!(ran.outcome.status.success());
}

#[test]
fn rootfs_symlinks_cannot_escape() {
    require_root();
    let root = Rootfs::native();
    let outside = tempfile::tempdir().expect("outside");
    // A hostile image: /etc is a link to a host directory.
    fs::remove_dir(root.path().join("etc")).expect("rm etc");
    std::os::unix::fs::symlink(outside.path(), root.path().join("etc")).expect("link");
    let ran = run_with(&NamespaceSandbox::new(), &root.spec("cat /etc/hostname")).expect("run");
    assert!(ran.outcome.status.success(), "{}", ran.output);
    assert_eq!(ran.output, "buildkitsandbox\n");
    assert_eq!(
        fs::read_dir(outside.path()).expect("outside").count(),
        0,
        "wrote outside the rootfs"
    );
    // The stubs went where the container sees /etc: under the root filesystem.
    let inner = root
        .path()
        .join(outside.path().strip_prefix("/").expect("absolute"));
    assert!(inner.join("hostname").is_file());
    let created: Vec<PathBuf> = ran.outcome.created_mountpoints;
    assert!(
        created.contains(&PathBuf::from("/").join(outside.path()).join("hosts")),
        "{created:?}"
    );

    // /proc pointing anywhere else (here: the root itself) is refused, not mounted over.
    fs::remove_dir(root.path().join("proc")).expect("rm proc stub");
    std::os::unix::fs::symlink("../../../../../..", root.path().join("proc")).expect("link");
    let err = run_with(&NamespaceSandbox::new(), &root.spec("true"))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("/proc"), "{err}");
}

const UNPRIVILEGED_ROOTFS: &str = "OXKIT_SANDBOX_TEST_UNPRIVILEGED_ROOTFS";

/// The unprivileged path, for real: this test binary re-runs [`unprivileged_helper`] as
/// `nobody`, which must either run in a user namespace mapping it to root or, on kernels that
/// forbid that, fail with the error that says how to enable it.
#[test]
fn unprivileged_run_maps_the_caller_to_root() {
    use std::os::unix::process::CommandExt;
    require_root();
    let root = Rootfs::native();
    let nobody = 65534;
    let chown = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(root.path())
        .status()
        .expect("chown");
    assert!(chown.success());
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "unprivileged_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(UNPRIVILEGED_ROOTFS, root.path())
        .current_dir("/")
        .uid(nobody)
        .gid(nobody)
        .output()
        .expect("re-run as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once("UNPRIVILEGED: ").map(|(_, rest)| rest))
        .collect();
    if let Some(err) = report.iter().find_map(|l| l.strip_prefix("error: ")) {
        assert!(
            err.contains("sysctl kernel.unprivileged_userns_clone=1"),
            "{err}"
        );
        return;
    }
    assert_eq!(
        report,
        ["0", "0 65534 1", "lo", "ok", "exit code 0", "user-error"],
        "{stdout}"
    );
}

/// Not a test on its own: does nothing unless [`unprivileged_run_maps_the_caller_to_root`]
/// started it as `nobody`.
#[test]
fn unprivileged_helper() {
    let Some(rootfs) = std::env::var_os(UNPRIVILEGED_ROOTFS) else {
        return;
    };
    assert!(!rustix::process::geteuid().is_root());
    let spec = oxkit_sandbox::RunSpec::new(
        &rootfs,
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "id -u; tr -s ' ' < /proc/self/uid_map | sed 's/^ //'; ls /sys/class/net; echo x > /dev/null && echo ok".into(),
        ],
    );
    match run_with(&NamespaceSandbox::new(), &spec) {
        Ok(ran) => {
            for line in ran.output.lines() {
                println!("UNPRIVILEGED: {line}");
            }
            println!("UNPRIVILEGED: {}", ran.outcome.status);
        }
        Err(e) => println!("UNPRIVILEGED: error: {e}"),
    }
    let mut other = spec.clone();
    other.user = Some("1000".into());
    match run_with(&NamespaceSandbox::new(), &other) {
        Err(SandboxError::UserNotMapped { .. }) => println!("UNPRIVILEGED: user-error"),
        other => println!("UNPRIVILEGED: unexpected {:?}", other.map(|r| r.outcome)),
    }
}
