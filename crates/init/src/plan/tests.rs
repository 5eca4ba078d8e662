use super::*;

fn host() -> Host {
    Host {
        last_cap: 40,
        cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        cgroup2: true,
        cgroup_v1_dirs: Vec::new(),
    }
}

fn build_for(json: &str, bundle: &Path) -> Plan {
    let spec = Spec::parse(json).expect("spec");
    build(&Inputs {
        spec: &spec,
        bundle_dir: bundle,
        host: &host(),
        rootfs_parent_mount: None,
    })
    .expect("plan")
}

fn lines(plan: &Plan) -> Vec<String> {
    plan.steps.iter().map(|s| s.step.to_string()).collect()
}

/// Asserts `expected` occur in `calls` in this order (not necessarily adjacent).
fn assert_in_order(calls: &[String], expected: &[&str]) {
    let mut at = 0;
    for want in expected {
        match calls
            .get(at..)
            .and_then(|rest| rest.iter().position(|c| c == want))
        {
            Some(i) => at += i + 1,
            None => panic!(
                "{want:?} missing after position {at} in:\n{}",
                calls.join("\n")
            ),
        }
    }
}

#[test]
fn runc_spec_plan_in_runc_order() {
    let b = Path::new("/b");
    let plan = build_for(include_str!("../../tests/fixtures/runc-spec.json"), b);
    assert_eq!(
        plan.clone_flags,
        libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWNS
    );
    assert!(plan.new_pid_namespace);
    assert!(plan.join.is_empty());
    let l = lines(&plan);
    assert_in_order(
        &l,
        &[
            "setting RLIMIT_NOFILE to 1024/1024",
            "setting umask 000",
            "changing propagation of / (rec,slave)",
            "bind-mounting /b/rootfs on /b/rootfs (bind,rec)",
            "creating directory /b/rootfs/proc",
            "mounting proc on /b/rootfs/proc (type proc, defaults)",
            "mounting tmpfs on /b/rootfs/dev (type tmpfs, nosuid,strictatime, mode=755,size=65536k)",
            "mounting devpts on /b/rootfs/dev/pts (type devpts, nosuid,noexec, newinstance,ptmxmode=0666,mode=0620,gid=5)",
            "mounting shm on /b/rootfs/dev/shm (type tmpfs, nosuid,nodev,noexec, mode=1777,size=65536k)",
            "mounting mqueue on /b/rootfs/dev/mqueue (type mqueue, nosuid,nodev,noexec)",
            "mounting sysfs on /b/rootfs/sys (type sysfs, ro,nosuid,nodev,noexec)",
            "mounting cgroup2 on /b/rootfs/sys/fs/cgroup (type cgroup2, ro,nosuid,nodev,noexec,relatime)",
            "creating device /b/rootfs/dev/null (1:3)",
            "creating device /b/rootfs/dev/tty (5:0)",
            "linking /b/rootfs/dev/ptmx -> pts/ptmx",
            "pivoting into /b/rootfs",
            "making /proc/sys read-only",
            "masking /proc/kcore",
            "remounting / read-only",
            "setting hostname \"runc\"",
            "bringing up lo",
            "changing to working directory /",
            "dropping bounding capabilities",
            "setting additional groups []",
            "switching to uid 0 gid 0",
            "setting capabilities",
            "raising ambient capabilities",
            "setting no_new_privs",
            "setting umask 022",
        ],
    );
    // Read-only and masked paths may be missing on a kernel; nothing else may.
    for s in &plan.steps {
        let tolerant = matches!(s.step, Step::Mask(_) | Step::ReadonlyPath(_));
        assert_eq!(s.tolerate == Tolerate::Missing, tolerant, "{}", s.step);
    }
    assert_eq!(plan.exec.program, "sh");
    assert_eq!(
        plan.exec
            .candidates
            .first()
            .map(|c| c.to_str().unwrap_or_default()),
        Some("/usr/local/sbin/sh")
    );
    assert_eq!(plan.exec.candidates.len(), 6);
    assert_eq!(
        plan.notes,
        ["process.terminal (the output goes through a pipe)"]
    );
}

#[test]
fn linuxkit_getty_shares_host_namespaces_and_binds_dev() {
    let plan = build_for(
        include_str!("../../tests/fixtures/linuxkit-getty.json"),
        Path::new("/containers/services/getty"),
    );
    assert_eq!(plan.clone_flags, libc::CLONE_NEWNS);
    assert!(!plan.new_pid_namespace);
    let l = lines(&plan);
    let r = "/containers/services/getty/rootfs";
    assert_in_order(
        &l,
        &[
            &format!("bind-mounting /containers on {r}/containers (bind,rec)"),
            &format!("changing propagation of {r}/containers (rec,shared)"),
            &format!("bind-mounting /dev on {r}/dev (bind,rec)"),
            &format!(
                "mounting devpts on {r}/dev/pts (type devpts, nosuid,noexec, newinstance,ptmxmode=0666,mode=0620)"
            ),
            &format!("creating device {r}/dev/console (5:1)"),
            &format!("creating device {r}/dev/hvc0 (229:0)"),
            &format!("pivoting into {r}"),
        ],
    );
    // /dev is the host's: no default nodes, and the listed ones may already be there.
    assert!(!l.iter().any(|s| s.contains("/dev/null")), "{l:#?}");
    assert!(
        plan.steps
            .iter()
            .filter(|s| matches!(s.step, Step::Mknod { .. }))
            .all(|s| s.tolerate == Tolerate::Exists)
    );
    // Not read-only, no hostname, no new network.
    assert!(!l.iter().any(|s| s == "remounting / read-only"
        || s == "bringing up lo"
        || s.starts_with("setting hostname")));
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);
    // capabilities: all → nothing dropped from the bounding set up to CAP_CHECKPOINT_RESTORE.
    let keep = plan.steps.iter().find_map(|s| match s.step {
        Step::DropBounding { keep, .. } => Some(keep),
        _ => None,
    });
    assert_eq!(keep, Some((1u64 << 41) - 1));
}

#[test]
fn linuxkit_dhcpcd_gets_a_new_pid_namespace_and_its_caps() {
    let plan = build_for(
        include_str!("../../tests/fixtures/linuxkit-dhcpcd.json"),
        Path::new("/c/onboot/000-dhcpcd"),
    );
    assert_eq!(plan.clone_flags, libc::CLONE_NEWPID | libc::CLONE_NEWNS);
    assert_eq!(
        plan.exec.candidates,
        [CString::new("/sbin/dhcpcd").expect("c")]
    );
    let caps = plan.steps.iter().find_map(|s| match s.step {
        Step::SetCaps {
            effective,
            permitted,
            inheritable,
        } => Some((effective, permitted, inheritable)),
        _ => None,
    });
    let want = (1 << 12) | (1 << 10) | (1 << 13) | (1 << 21);
    assert_eq!(caps, Some((want, want, want)));
    assert_in_order(
        &lines(&plan),
        &["bind-mounting /run/resolvconf on /c/onboot/000-dhcpcd/rootfs/etc (bind,rec)"],
    );
}

#[test]
fn namespace_paths_are_joined_and_pid_paths_noted() {
    let json = r#"{"process": {"args": ["x"]}, "linux": {"namespaces": [
        {"type": "network", "path": "/run/netns/a"}, {"type": "pid", "path": "/proc/1/ns/pid"},
        {"type": "mount"}, {"type": "cgroup"}, {"type": "user"}]}}"#;
    let plan = build_for(json, Path::new("/b"));
    assert_eq!(plan.clone_flags, libc::CLONE_NEWNS);
    assert_eq!(
        plan.join,
        [(PathBuf::from("/run/netns/a"), libc::CLONE_NEWNET, "network")]
    );
    assert!(matches!(
        plan.steps.first().map(|s| &s.step),
        Some(Step::SetNs { index: 0 })
    ));
    assert!(lines(&plan).contains(&"creating a cgroup namespace".to_string()));
    assert_eq!(plan.notes.len(), 2, "{:?}", plan.notes);
    assert!(plan.notes.iter().any(|n| n.contains("/proc/1/ns/pid")));
    assert!(plan.notes.iter().any(|n| n.starts_with("user namespace")));
}

#[test]
fn user_cwd_env_sysctl_devices_and_rlimits() {
    let json = r#"{"process": {"args": ["app", "-v"], "env": ["A=1", "PATH=/opt/bin:/bin"], "cwd": "/srv/../work",
        "user": {"uid": 1000, "gid": 100, "additionalGids": [5, 6], "umask": 63}, "oomScoreAdj": -500,
        "rlimits": [{"type": "RLIMIT_NPROC", "soft": 10, "hard": 20}, {"type": "RLIMIT_FLY"}]},
      "hostname": "h", "cgroupsPath": "ignored-at-top-level",
      "linux": {"namespaces": [{"type": "mount"}, {"type": "uts"}], "sysctl": {"net.ipv4.ip_forward": "1"},
        "cgroupsPath": "/oxkit/app",
        "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 8630, "uid": 0, "gid": 7}]}}"#;
    let plan = build_for(json, Path::new("/b"));
    let l = lines(&plan);
    assert_in_order(
        &l,
        &[
            "writing \"0\" to /sys/fs/cgroup/oxkit/app/cgroup.procs",
            "writing \"-500\" to /proc/self/oom_score_adj",
            "setting RLIMIT_NPROC to 10/20",
            "creating device /b/rootfs/dev/fuse (10:229)",
            "chowning /b/rootfs/dev/fuse to 0:7",
            "pivoting into /b/rootfs",
            "creating directory /work",
            "writing \"1\" to /proc/sys/net/ipv4/ip_forward",
            "setting hostname \"h\"",
            "changing to working directory /work",
            "setting additional groups [5, 6]",
            "switching to uid 1000 gid 100",
            "setting umask 077",
        ],
    );
    assert_eq!(
        plan.cgroup_dirs,
        [PathBuf::from("/sys/fs/cgroup/oxkit/app")]
    );
    let mode = plan.steps.iter().find_map(|s| match &s.step {
        Step::Mknod { mode, .. }
            if s.tolerate == Tolerate::Exists && l.iter().any(|x| x.contains("fuse")) =>
        {
            Some(*mode)
        }
        _ => None,
    });
    assert_eq!(mode, Some(0o666));
    assert_eq!(
        plan.exec.candidates,
        [
            CString::new("/opt/bin/app").expect("c"),
            CString::new("/bin/app").expect("c")
        ]
    );
    assert_eq!(plan.exec.argv.len(), 2);
    assert_eq!(plan.exec.search_path, "/opt/bin:/bin");
    assert_eq!(plan.notes, ["rlimit RLIMIT_FLY"]);
}

#[test]
fn symlinked_destinations_stay_in_the_rootfs() {
    let t = tempfile::tempdir().expect("tempdir");
    let rootfs = t.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).expect("etc");
    std::os::unix::fs::symlink(
        "/run/resolvconf/resolv.conf",
        rootfs.join("etc/resolv.conf"),
    )
    .expect("link");
    std::fs::write(t.path().join("resolv.conf"), "nameserver 10.0.0.1\n").expect("file");
    let json = format!(
        r#"{{"process": {{"args": ["x"]}}, "mounts": [{{"destination": "/etc/resolv.conf", "type": "bind", "source": "{}", "options": ["rbind", "ro"]}}],
            "linux": {{"namespaces": [{{"type": "mount"}}]}}}}"#,
        t.path().join("resolv.conf").display()
    );
    let plan = build_for(&json, t.path());
    let target = rootfs.join("run/resolvconf/resolv.conf");
    assert_in_order(
        &lines(&plan),
        &[
            &format!(
                "creating directory {}",
                rootfs.join("run/resolvconf").display()
            ),
            &format!("creating mount point {}", target.display()),
            &format!(
                "bind-mounting {} on {} (bind,rec)",
                t.path().join("resolv.conf").display(),
                target.display()
            ),
            &format!("remounting {} (bind,remount,ro)", target.display()),
        ],
    );
}

#[test]
fn read_only_dev_is_filled_before_it_becomes_read_only() {
    // What LinuxKit's ConfigToOCI writes for `readonly: true` (its poweroff package): /dev is
    // a `ro` tmpfs, yet /dev/pts and the device nodes go in it. runc mounts it writable and
    // remounts it read-only at the end; so must we.
    let json = r#"{"process": {"args": ["/bin/sh"]}, "root": {"path": "rootfs", "readonly": true},
        "mounts": [
          {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k", "ro"]},
          {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
          {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}"#;
    let plan = build_for(json, Path::new("/b"));
    let l = lines(&plan);
    assert_in_order(
        &l,
        &[
            "mounting tmpfs on /b/rootfs/dev (type tmpfs, nosuid,strictatime, mode=755,size=65536k)",
            "mounting devpts on /b/rootfs/dev/pts (type devpts, nosuid,noexec, newinstance,ptmxmode=0666,mode=0620)",
            "mounting sysfs on /b/rootfs/sys (type sysfs, ro,nosuid,nodev,noexec)",
            "creating device /b/rootfs/dev/null (1:3)",
            "linking /b/rootfs/dev/ptmx -> pts/ptmx",
            "remounting /b/rootfs/dev read-only",
            "pivoting into /b/rootfs",
            "remounting / read-only",
        ],
    );
    // Only /dev waits: sysfs has nothing to create and is mounted read-only at once.
    assert!(
        !l.iter().any(|c| c == "remounting /b/rootfs/sys read-only"),
        "{l:#?}"
    );
}

#[test]
fn specs_that_cannot_run() {
    let err = |json: &str| {
        let spec = Spec::parse(json).expect("json");
        build(&Inputs {
            spec: &spec,
            bundle_dir: Path::new("/b"),
            host: &host(),
            rootfs_parent_mount: None,
        })
        .expect_err("invalid")
    };
    assert_eq!(err("{}").0, "config.json has no \"process\"");
    assert_eq!(
        err(r#"{"process": {"args": []}}"#).0,
        "config.json: process.args is empty"
    );
    assert!(
        err(r#"{"process": {"args": ["x"]}, "linux": {"namespaces": [{"type": "wat"}]}}"#)
            .0
            .contains("\"wat\"")
    );
    assert!(
        err(r#"{"process": {"args": ["a\u0000b"]}}"#)
            .0
            .contains("NUL")
    );
    assert!(
        err(r#"{"process": {"args": ["x"]}, "mounts": [{"destination": "/x"}], "linux": {"namespaces": [{"type": "mount"}]}}"#)
            .0
            .contains("has no type")
    );
}

#[test]
fn without_a_mount_namespace_the_container_is_chrooted() {
    let plan = build_for(
        r#"{"process": {"args": ["/bin/x"]}, "root": {"path": "/abs/root", "readonly": true}, "mounts": [{"destination": "/proc", "type": "proc"}]}"#,
        Path::new("/b"),
    );
    assert_eq!(plan.clone_flags, 0);
    let l = lines(&plan);
    assert!(
        l.contains(&"chrooting into /abs/root".to_string()),
        "{l:#?}"
    );
    assert!(!l.iter().any(|s| s.starts_with("mounting")));
    assert_eq!(plan.notes.len(), 2, "{:?}", plan.notes);
}

#[test]
fn clean_paths() {
    assert_eq!(clean("/a/./b/../c/"), "/a/c");
    assert_eq!(clean("rel/x"), "/rel/x");
    assert_eq!(clean("/../.."), "/");
}
