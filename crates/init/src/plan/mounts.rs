//! The mount part of a plan: root propagation, the rootfs bound on itself, the spec's mounts
//! in order (binds with their remount and propagation calls, `cgroup`, filesystems), runc's
//! default `/dev` nodes and links, `linux.devices`, then pivot_root. Pure like `plan.rs`.

use super::*;

/// Root propagation, the rootfs bind, the spec's mounts, /dev, pivot_root: runc's
/// prepareRoot + mountToRootfs + createDevices order.
pub(super) fn plan_mounts(
    inputs: &Inputs<'_>,
    rootfs: &Path,
    steps: &mut Vec<PlannedStep>,
    notes: &mut Vec<String>,
) -> Result<(), PlanError> {
    let spec = inputs.spec;
    let mut push = |step: Step, tolerate: Tolerate| steps.push(PlannedStep { step, tolerate });
    let linux = spec.linux.as_ref();
    let propagation = match linux
        .and_then(|l| l.rootfs_propagation.as_deref())
        .unwrap_or("")
    {
        "" => MS_SLAVE | MS_REC,
        "private" => MS_PRIVATE,
        "rprivate" => MS_PRIVATE | MS_REC,
        "slave" => MS_SLAVE,
        "rslave" => MS_SLAVE | MS_REC,
        "shared" => MS_SHARED,
        "rshared" => MS_SHARED | MS_REC,
        "unbindable" => mountopt::MS_UNBINDABLE,
        "runbindable" => mountopt::MS_UNBINDABLE | MS_REC,
        other => {
            return Err(PlanError(format!(
                "config.json: unknown linux.rootfsPropagation {other:?}"
            )));
        }
    };
    let root_c = cpath(rootfs)?;
    push(
        Step::Mount {
            source: None,
            target: c"/".into(),
            fstype: None,
            flags: propagation,
            data: None,
        },
        Tolerate::Nothing,
    );
    if let Some(parent) = &inputs.rootfs_parent_mount {
        push(
            Step::Mount {
                source: None,
                target: cpath(parent)?,
                fstype: None,
                flags: MS_PRIVATE,
                data: None,
            },
            Tolerate::Nothing,
        );
    }
    push(
        Step::Mount {
            source: Some(root_c.clone()),
            target: root_c.clone(),
            fstype: None,
            flags: MS_BIND | MS_REC,
            data: None,
        },
        Tolerate::Nothing,
    );

    let mut dev_is_bind = false;
    // runc mounts tmpfs and /dev writable and makes them read-only only at the end
    // (finalizeRootfs): LinuxKit's read-only containers get `/dev` as a `ro` tmpfs, and
    // `/dev/pts`, the device nodes and links must still be created in it.
    let mut read_only_later = Vec::new();
    for m in &spec.mounts {
        let dest = clean(&m.destination);
        let opts = mountopt::parse(m.options());
        let kind = m.kind.as_deref().unwrap_or("");
        let is_bind = kind == "bind" || opts.is_bind();
        dev_is_bind |= dest == "/dev" && is_bind;
        for u in &opts.unsupported {
            notes.push(format!("mount option {u} on {dest}"));
        }
        let target = rootpath::resolve(rootfs, &dest);
        let target_c = cpath(&target)?;
        if is_bind {
            plan_bind(m, inputs.bundle_dir, &target, &target_c, &opts, &mut push)?;
        } else if kind == "cgroup" {
            push(Step::MkdirAll(target_c.clone()), Tolerate::Nothing);
            if inputs.host.cgroup2 {
                push(
                    Step::Mount {
                        source: Some(c"cgroup2".into()),
                        target: target_c.clone(),
                        fstype: Some(c"cgroup2".into()),
                        flags: opts.flags & !MS_REMOUNT,
                        data: None,
                    },
                    Tolerate::Nothing,
                );
            } else {
                // A v1 host: show the host's hierarchies, as runc does without cgroup namespaces.
                push(
                    Step::Mount {
                        source: Some(cpath(&inputs.host.cgroup_root)?),
                        target: target_c.clone(),
                        fstype: None,
                        flags: MS_BIND | MS_REC,
                        data: None,
                    },
                    Tolerate::Nothing,
                );
                if opts.flags & MS_RDONLY != 0 {
                    push(Step::RemountReadonly(target_c.clone()), Tolerate::Nothing);
                }
            }
        } else {
            if kind.is_empty() && opts.flags & MS_REMOUNT == 0 && opts.propagation.is_empty() {
                return Err(PlanError(format!(
                    "config.json: the mount on {dest} has no type"
                )));
            }
            push(Step::MkdirAll(target_c.clone()), Tolerate::Nothing);
            let mut flags = opts.flags;
            if (kind == "tmpfs" || dest == "/dev")
                && flags & MS_RDONLY != 0
                && flags & MS_REMOUNT == 0
            {
                flags &= !MS_RDONLY;
                read_only_later.push(target_c.clone());
            }
            if opts.flags & MS_REMOUNT != 0 || !kind.is_empty() {
                let source = m
                    .source
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .unwrap_or(kind);
                push(
                    Step::Mount {
                        source: (!source.is_empty())
                            .then(|| cstr(source, "mount source"))
                            .transpose()?,
                        target: target_c.clone(),
                        fstype: (!kind.is_empty())
                            .then(|| cstr(kind, "mount type"))
                            .transpose()?,
                        flags,
                        data: (!opts.data.is_empty())
                            .then(|| cstr(&opts.data, "mount options"))
                            .transpose()?,
                    },
                    Tolerate::Nothing,
                );
            }
        }
        for p in &opts.propagation {
            push(
                Step::Mount {
                    source: None,
                    target: target_c.clone(),
                    fstype: None,
                    flags: *p,
                    data: None,
                },
                Tolerate::Nothing,
            );
        }
        if opts.rec_set != 0 || opts.rec_clear != 0 {
            push(
                Step::SetAttr {
                    target: target_c.clone(),
                    set: opts.rec_set,
                    clear: opts.rec_clear,
                },
                Tolerate::Nothing,
            );
        }
    }

    let dev = rootpath::resolve(rootfs, "/dev");
    if !dev_is_bind {
        push(Step::MkdirAll(cpath(&dev)?), Tolerate::Nothing);
        for (name, major, minor) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
            ("tty", 5, 0),
        ] {
            push(
                Step::Mknod {
                    path: cpath(&dev.join(name))?,
                    kind: NodeKind::Char,
                    mode: 0o666,
                    major,
                    minor,
                },
                Tolerate::Exists,
            );
        }
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ] {
            push(
                Step::Symlink {
                    target: cstr(target, "link")?,
                    link: cpath(&dev.join(link))?,
                },
                Tolerate::Exists,
            );
        }
    }
    for d in linux.and_then(|l| l.devices.as_ref()).into_iter().flatten() {
        let kind = match d.kind.as_str() {
            "c" | "u" => NodeKind::Char,
            "b" => NodeKind::Block,
            "p" => NodeKind::Fifo,
            other => {
                return Err(PlanError(format!(
                    "config.json: device {} has unknown type {other:?}",
                    d.path
                )));
            }
        };
        let (Ok(major), Ok(minor)) = (u32::try_from(d.major), u32::try_from(d.minor)) else {
            return Err(PlanError(format!(
                "config.json: device {} has a negative number",
                d.path
            )));
        };
        let path = rootpath::resolve(rootfs, &clean(&d.path));
        if let Some(parent) = path.parent() {
            push(Step::MkdirAll(cpath(parent)?), Tolerate::Nothing);
        }
        let path_c = cpath(&path)?;
        push(
            Step::Mknod {
                path: path_c.clone(),
                kind,
                mode: d.file_mode.unwrap_or(0o666) & 0o7777,
                major,
                minor,
            },
            Tolerate::Exists,
        );
        if d.uid.is_some() || d.gid.is_some() {
            push(
                Step::Chown {
                    path: path_c,
                    uid: d.uid.unwrap_or(0),
                    gid: d.gid.unwrap_or(0),
                },
                Tolerate::Nothing,
            );
        }
    }
    for target in read_only_later {
        push(Step::RemountReadonly(target), Tolerate::Nothing);
    }
    push(
        Step::EnterRoot {
            root: root_c,
            pivot: true,
        },
        Tolerate::Nothing,
    );
    if propagation & MS_SHARED != 0 {
        push(
            Step::Mount {
                source: None,
                target: c"/".into(),
                fstype: None,
                flags: propagation,
                data: None,
            },
            Tolerate::Nothing,
        );
    }
    Ok(())
}

fn plan_bind(
    m: &Mount,
    bundle_dir: &Path,
    target: &Path,
    target_c: &CString,
    opts: &mountopt::MountOptions,
    push: &mut impl FnMut(Step, Tolerate),
) -> Result<(), PlanError> {
    let source = m
        .source
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            PlanError(format!(
                "config.json: the bind mount on {} has no source",
                m.destination
            ))
        })?;
    // A relative source is relative to the bundle (OCI runtime spec).
    let source = bundle_dir.join(source);
    if std::fs::metadata(&source).is_ok_and(|md| !md.is_dir()) {
        if let Some(parent) = target.parent() {
            push(Step::MkdirAll(cpath(parent)?), Tolerate::Nothing);
        }
        push(Step::Touch(target_c.clone()), Tolerate::Nothing);
    } else {
        push(Step::MkdirAll(target_c.clone()), Tolerate::Nothing);
    }
    push(
        Step::Mount {
            source: Some(cpath(&source)?),
            target: target_c.clone(),
            fstype: None,
            flags: MS_BIND | (opts.flags & MS_REC),
            data: None,
        },
        Tolerate::Nothing,
    );
    let extra = opts.bind_remount_flags();
    if extra != 0 {
        push(
            Step::Mount {
                source: None,
                target: target_c.clone(),
                fstype: None,
                flags: MS_BIND | MS_REMOUNT | extra,
                data: None,
            },
            Tolerate::Nothing,
        );
    }
    Ok(())
}
